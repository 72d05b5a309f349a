//! `Cache<MemoryBackend>` against moka, in one run: typed small-entry get/set, a 1,000-item
//! library list get/set, and a get miss.
//!
//! Each measurement runs its whole batch of iterations inside one `block_on`, so the figure is
//! the cost of the operation, not of entering the runtime.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use plexcache_benches::workload::{BenchItem, library, search_key, search_result};
use plexcache_core::Cache;
use plexcache_memory::MemoryBackend;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
}

fn cache() -> Cache<MemoryBackend> {
    Cache::builder(MemoryBackend::new())
        .size_limit(1 << 30)
        .build()
        .expect("cache")
}

fn moka_cache() -> moka::sync::Cache<String, Vec<BenchItem>> {
    moka::sync::Cache::builder().max_capacity(1_000_000).build()
}

fn timed<F: FnMut()>(iters: u64, mut f: F) -> Duration {
    let start = Instant::now();
    for _ in 0..iters {
        f();
    }
    start.elapsed()
}

/// One criterion group: the same operation through `Cache<MemoryBackend>` and through moka.
fn compare<F, Fut, M>(
    c: &mut Criterion,
    rt: &tokio::runtime::Runtime,
    group: &str,
    samples: usize,
    mut plex_op: F,
    mut moka_op: M,
) where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
    M: FnMut(),
{
    let mut g = c.benchmark_group(group);
    g.sample_size(samples);
    g.bench_function("plexcache_memory", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    plex_op().await;
                }
                start.elapsed()
            })
        })
    });
    g.bench_function("moka_sync", |b| {
        b.iter_custom(|iters| timed(iters, &mut moka_op))
    });
    g.finish();
}

fn bench(c: &mut Criterion) {
    let rt = rt();
    // Small entry: a search result with 2 items (about 250 bytes encoded).
    let small = search_result(2);
    let small_key = search_key(2);
    let lib = library(1_000);
    const LIB_KEY: &str = "library:Movies:all";
    const MISSING: &str = "search:Movies:nope";

    let plex = cache();
    let moka = moka_cache();
    rt.block_on(async {
        plex.set(&small_key, &small).await.expect("set");
        plex.set(LIB_KEY, &lib).await.expect("set");
    });
    moka.insert(small_key.clone(), small.clone());
    moka.insert(LIB_KEY.into(), lib.clone());

    let (p, key, small_ref, lib_ref) = (&plex, small_key.as_str(), &small, &lib);

    compare(
        c,
        &rt,
        "small_get",
        100,
        move || async move {
            black_box(p.get::<Vec<BenchItem>>(black_box(key)).await.expect("get"));
        },
        || {
            black_box(moka.get(black_box(key)));
        },
    );
    compare(
        c,
        &rt,
        "small_set",
        100,
        || async move {
            p.set(black_box(key), black_box(small_ref))
                .await
                .expect("set")
        },
        || moka.insert(black_box(key.to_owned()), black_box(small.clone())),
    );
    compare(
        c,
        &rt,
        "get_miss",
        100,
        || async move {
            black_box(
                p.get::<Vec<BenchItem>>(black_box(MISSING))
                    .await
                    .expect("get"),
            );
        },
        || {
            black_box(moka.get(black_box(MISSING)));
        },
    );
    compare(
        c,
        &rt,
        "library_1000_get",
        30,
        || async move {
            black_box(
                p.get::<Vec<BenchItem>>(black_box(LIB_KEY))
                    .await
                    .expect("get"),
            );
        },
        || {
            black_box(moka.get(black_box(LIB_KEY)));
        },
    );
    compare(
        c,
        &rt,
        "library_1000_set",
        30,
        || async move {
            p.set(black_box(LIB_KEY), black_box(lib_ref))
                .await
                .expect("set")
        },
        || moka.insert(black_box(LIB_KEY.to_owned()), black_box(lib.clone())),
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = bench
}
criterion_main!(benches);
