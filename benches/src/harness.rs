//! Benchmark pieces shared by the disk backends' criterion benches (`sqlite`, `sled`): the same
//! runtime, constants and workloads, so their figures compare like with like.

use std::future::Future;
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, Throughput};
use plexcache_core::{Bytes, Cache, CacheBackend, Clock, Millis, SystemClock, codec};
use tokio::runtime::Runtime;

use crate::workload::{BenchItem, ZipfKeys, search_key, search_result};

/// The key of the library-list workloads.
pub const LIBRARY_KEY: &str = "library:Movies:all";
/// A size limit no workload reaches (for the workloads without eviction).
pub const BIG_LIMIT: u64 = 1 << 40;

/// The runtime every disk-backend bench runs on: 2 worker threads, like the machine.
pub fn runtime() -> Runtime {
    // Building a runtime only fails when the OS refuses threads; a bench cannot go on then.
    #[allow(clippy::expect_used)]
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Search result `i` in its stored form (an envelope), for bulk loads.
pub fn encoded_search(i: u64) -> Bytes {
    // Encoding a `Vec<BenchItem>` cannot fail: postcard only fails on unsupported types.
    #[allow(clippy::expect_used)]
    codec::encode(&search_key(i), &search_result(i)).expect("encode a search result")
}

/// `set_{n}`, `get_{n}` (owned, decoded every call) and `get_shared_{n}` (the decoded list,
/// revalidated every call) of an `n`-item library list under [`LIBRARY_KEY`], with `n` items
/// as the throughput.
pub fn library_list<B: CacheBackend>(
    g: &mut BenchmarkGroup<'_, WallTime>,
    rt: &Runtime,
    cache: &Cache<B>,
    lib: &Vec<BenchItem>,
    n: u64,
) {
    g.throughput(Throughput::Elements(n));
    #[allow(clippy::expect_used)]
    {
        g.bench_function(format!("set_{n}"), |b| {
            b.to_async(rt)
                .iter(|| async { cache.set(LIBRARY_KEY, lib).await.expect("set") })
        });
        g.bench_function(format!("get_{n}"), |b| {
            b.to_async(rt).iter(|| async {
                let v: Vec<BenchItem> = cache
                    .get(LIBRARY_KEY)
                    .await
                    .expect("get")
                    .expect("the library list is stored");
                black_box(v)
            })
        });
        g.bench_function(format!("get_shared_{n}"), |b| {
            b.to_async(rt).iter(|| async {
                let v: std::sync::Arc<Vec<BenchItem>> = cache
                    .get_shared(LIBRARY_KEY)
                    .await
                    .expect("get_shared")
                    .expect("the library list is stored");
                black_box(v)
            })
        });
    }
}

/// `<prefix>/mixed`: 90% get / 10% set over 10,000 search-result keys with Zipf(0.99).
pub fn zipf_mix<B: CacheBackend>(c: &mut Criterion, prefix: &str, rt: &Runtime, cache: &Cache<B>) {
    const N: u64 = 10_000;
    let mut g = c.benchmark_group(format!("{prefix}/mixed"));
    g.sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    let values: Vec<Vec<BenchItem>> = (0..N).map(search_result).collect();
    rt.block_on(async {
        for i in 0..N {
            #[allow(clippy::expect_used)]
            cache
                .set(&search_key(i), &values[i as usize])
                .await
                .expect("populate");
        }
    });
    let mut keys = ZipfKeys::new(N, 0.99, 42);
    g.throughput(Throughput::Elements(1));
    g.bench_function("zipf_90get_10set", |b| {
        b.to_async(rt).iter(|| {
            let i = keys.next_index();
            let set = keys.percent() < 10;
            let (key, v) = (search_key(i), &values[i as usize]);
            async move {
                #[allow(clippy::expect_used)]
                if set {
                    cache.set(&key, v).await.expect("set");
                } else {
                    let got: Option<Vec<BenchItem>> = cache.get(&key).await.expect("get");
                    black_box(got);
                }
            }
        })
    });
    g.finish();
}

/// `<prefix>/expire`: `expire()` of 10,000 expired entries, loaded (untimed) by `load(batch,
/// stored_at, expires_at)` before each run.
pub fn expire_10000<B, L, Fut>(
    c: &mut Criterion,
    prefix: &str,
    rt: &Runtime,
    cache: &Cache<B>,
    load: L,
) where
    B: CacheBackend,
    L: Fn(Vec<(String, Bytes)>, Millis, Millis) -> Fut,
    Fut: Future<Output = ()>,
{
    let mut g = c.benchmark_group(format!("{prefix}/expire"));
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(5));
    let batch: Vec<(String, Bytes)> = (0..10_000u64)
        .map(|i| (search_key(i), encoded_search(i)))
        .collect();
    g.throughput(Throughput::Elements(10_000));
    g.bench_function("expire_10000_expired", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                rt.block_on(async {
                    let now = SystemClock.now_millis();
                    load(batch.clone(), now - 10, now - 1).await;
                    let start = Instant::now();
                    #[allow(clippy::expect_used)]
                    let n = cache.expire().await.expect("expire");
                    total += start.elapsed();
                    assert_eq!(n, 10_000, "every loaded entry was expired");
                });
            }
            total
        })
    });
    g.finish();
}
