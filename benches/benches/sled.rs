//! Benchmarks of `Cache<SledBackend>` on Plex-shaped workloads, with raw sled `get`/`insert`
//! baselines in the same run, and calls inline vs on tokio's blocking pool side by side.
//! Figures are in `docs/benchmarks.md` (sled section).
//!
//! `cargo bench -p plexcache-benches --bench sled` (about 6 minutes; the 10,000-, 100,000-
//! and 1,000,000-entry fixtures are built once per run in a temporary directory).
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use plexcache_benches::harness::{
    BIG_LIMIT, encoded_search, expire_10000, library_list, runtime, zipf_mix,
};
use plexcache_benches::workload::{BenchItem, library, search_key, search_result};
use plexcache_core::{
    Batch, BatchPut, Bytes, Cache, CacheBackend, Clock, SystemClock, WriteLimit, codec,
};
use plexcache_sled::SledBackend;
use tokio::runtime::Runtime;

fn open(dir: &Path, spawn_blocking: bool) -> SledBackend {
    SledBackend::builder(dir)
        .spawn_blocking(spawn_blocking)
        .open()
        .unwrap()
}

fn cache(dir: &Path, spawn_blocking: bool, limit: u64) -> Cache<SledBackend> {
    Cache::builder(open(dir, spawn_blocking))
        .size_limit(limit)
        .build()
        .unwrap()
}

/// Bulk-loads `n` search-result entries (keys `search_key(i)`), 100,000 per batch.
fn populate(rt: &Runtime, dir: &Path, n: u64) -> PathBuf {
    let backend = open(dir, false);
    rt.block_on(async {
        let now = SystemClock.now_millis();
        let mut i = 0;
        while i < n {
            let end = (i + 100_000).min(n);
            let mut batch = Batch::new(now);
            batch.puts = (i..end)
                .map(|j| BatchPut {
                    key: search_key(j),
                    value: encoded_search(j),
                    expires_at: None,
                })
                .collect();
            backend
                .write_batch(&batch, WriteLimit::UNBOUNDED)
                .await
                .unwrap();
            i = end;
        }
        backend.flush().await.unwrap();
    });
    backend.path().to_path_buf()
}

/// Bytes allocated under `path` (what `du` reports).
fn du(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    for e in std::fs::read_dir(path).unwrap() {
        let e = e.unwrap();
        let m = e.metadata().unwrap();
        total += if m.is_dir() {
            du(&e.path())
        } else {
            m.blocks() * 512
        };
    }
    total
}

fn library_lists(c: &mut Criterion) {
    let rt = runtime();
    let mut g = c.benchmark_group("sled/library");
    g.sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    for n in [1_000u64, 10_000] {
        let dir = tempfile::tempdir().unwrap();
        let cache = cache(dir.path(), false, BIG_LIMIT);
        let lib = library(n);
        library_list(&mut g, &rt, &cache, &lib, n);
    }
    g.finish();
}

fn small_entries(c: &mut Criterion) {
    let rt = runtime();
    let mut g = c.benchmark_group("sled/small");
    g.sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    const N: u64 = 10_000;
    let values: Vec<Vec<BenchItem>> = (0..N).map(search_result).collect();
    let encoded: Vec<Bytes> = (0..N).map(encoded_search).collect();

    // Raw sled: one tree, key -> the same encoded envelope the cache stores, same page cache
    // bound as the backend's default.
    let raw_dir = tempfile::tempdir().unwrap();
    let raw = sled::Config::new()
        .path(raw_dir.path())
        .cache_capacity(plexcache_sled::DEFAULT_CACHE_CAPACITY)
        .open()
        .unwrap();
    let tree = raw.open_tree("t").unwrap();
    for i in 0..N {
        tree.insert(search_key(i), &encoded[i as usize][..])
            .unwrap();
    }
    let mut i = 0u64;
    g.bench_function("raw_sled_get_hit", |b| {
        b.iter(|| {
            i = (i + 7919) % N;
            black_box(tree.get(search_key(i)).unwrap().unwrap())
        })
    });
    // The same read plus decoding the value into its type (what `Cache::get` returns).
    g.bench_function("raw_sled_get_hit_decode", |b| {
        b.iter(|| {
            i = (i + 7919) % N;
            let key = search_key(i);
            let raw = tree.get(&key).unwrap().unwrap();
            let v: Vec<BenchItem> = codec::decode(&key, &raw).unwrap();
            black_box(v)
        })
    });
    g.bench_function("raw_sled_insert", |b| {
        b.iter(|| {
            i = (i + 7919) % N;
            black_box(
                tree.insert(search_key(i), &encoded[i as usize][..])
                    .unwrap(),
            )
        })
    });

    for (mode, offload) in [("inline", false), ("spawn_blocking", true)] {
        let dir = tempfile::tempdir().unwrap();
        let cache = cache(dir.path(), offload, BIG_LIMIT);
        rt.block_on(async {
            for i in 0..N {
                cache
                    .set(&search_key(i), &values[i as usize])
                    .await
                    .unwrap();
            }
            cache.flush().await.unwrap();
        });
        // Reads first (as for raw sled above), so that they do not run while sled's
        // background thread is still writing out the set benchmark's transactions.
        g.bench_function(format!("get_hit/{mode}"), |b| {
            b.to_async(&rt).iter(|| {
                i = (i + 7919) % N;
                let (cache, key) = (&cache, search_key(i));
                async move {
                    let v: Option<Vec<BenchItem>> = cache.get(&key).await.unwrap();
                    black_box(v.unwrap())
                }
            })
        });
        g.bench_function(format!("get_miss/{mode}"), |b| {
            b.to_async(&rt).iter(|| {
                i = (i + 7919) % N;
                let (cache, key) = (&cache, format!("search:Movies:absent {i}"));
                async move {
                    let v: Option<Vec<BenchItem>> = cache.get(&key).await.unwrap();
                    black_box(v)
                }
            })
        });
        if !offload {
            // The backend alone (bytes and metadata, no decoding): the storage cost.
            g.bench_function("backend_get_hit/inline", |b| {
                let backend = cache.backend();
                let now = SystemClock.now_millis();
                b.to_async(&rt).iter(|| {
                    i = (i + 7919) % N;
                    let key = search_key(i);
                    async move { black_box(backend.get(&key, now).await.unwrap()) }
                })
            });
        }
        g.bench_function(format!("set/{mode}"), |b| {
            b.to_async(&rt).iter(|| {
                i = (i + 7919) % N;
                let (cache, key, v) = (&cache, search_key(i), &values[i as usize]);
                async move { cache.set(&key, v).await.unwrap() }
            })
        });
    }
    g.finish();
}

fn mixed(c: &mut Criterion) {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let cache = cache(dir.path(), false, BIG_LIMIT);
    zipf_mix(c, "sled", &rt, &cache);
}

fn expire(c: &mut Criterion) {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let cache = cache(dir.path(), false, BIG_LIMIT);
    expire_10000(c, "sled", &rt, &cache, |entries, stored_at, expires_at| {
        let backend = cache.backend();
        let mut batch = Batch::new(stored_at);
        batch.puts = entries
            .into_iter()
            .map(|(key, value)| BatchPut {
                key,
                value,
                expires_at: Some(expires_at),
            })
            .collect();
        async move {
            backend
                .write_batch(&batch, WriteLimit::UNBOUNDED)
                .await
                .unwrap();
        }
    });
}

/// Opening existing caches (plus one get) and sets under eviction pressure, on fixtures of
/// 10,000, 100,000 and 1,000,000 search-result entries built once.
fn big_stores(c: &mut Criterion) {
    let rt = runtime();
    let root = tempfile::tempdir().unwrap();
    let mut fixtures = Vec::new();
    for n in [10_000u64, 100_000, 1_000_000] {
        let dir = root.path().join(format!("n{n}"));
        let start = Instant::now();
        let path = populate(&rt, &dir, n);
        let built = start.elapsed();
        let backend = open(&path, false);
        let usage = rt.block_on(backend.usage()).unwrap();
        let info = backend.open_info().clone();
        // What an open after an unclean shutdown adds: one scan of the entries.
        let recount = backend.recount().unwrap();
        drop(backend);
        eprintln!(
            "fixture: {n} entries built in {built:.1?}; logical {:.1} MiB, on disk {:.1} MiB \
             (du), first reopen {:.1?}, recount scan {:.1?}",
            usage.bytes as f64 / 1048576.0,
            du(&path) as f64 / 1048576.0,
            info.open_time,
            recount.took,
        );
        fixtures.push((n, dir));
    }

    let mut g = c.benchmark_group("sled/open");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(5));
    for (n, dir) in &fixtures {
        g.bench_function(format!("open_and_get_{n}"), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for k in 0..iters {
                    let key = search_key((k * 7919) % n);
                    let start = Instant::now();
                    let cache = Cache::new(open(dir, false));
                    let got: Option<Vec<BenchItem>> = rt.block_on(cache.get(&key)).unwrap();
                    total += start.elapsed();
                    assert!(got.is_some());
                    drop(cache);
                }
                total
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("sled/evict");
    g.sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    for (n, dir) in fixtures.iter().filter(|(n, _)| *n != 100_000) {
        let backend = open(dir, false);
        let limit = rt.block_on(backend.usage()).unwrap().bytes;
        let cache = Cache::builder(backend).size_limit(limit).build().unwrap();
        let mut i = *n;
        g.bench_function(format!("set_under_pressure_{n}"), |b| {
            b.to_async(&rt).iter(|| {
                i += 1;
                let (cache, key, v) = (&cache, search_key(i), search_result(i % 10_000));
                async move { cache.set(&key, &v).await.unwrap() }
            })
        });
        let usage = rt.block_on(cache.backend().usage()).unwrap();
        assert!(usage.bytes <= limit);
    }
    g.finish();
    for (n, dir) in &fixtures {
        eprintln!(
            "fixture {n}: on disk {:.1} MiB (du) after the benches",
            du(dir) as f64 / 1048576.0
        );
    }
}

criterion_group!(
    benches,
    library_lists,
    small_entries,
    mixed,
    expire,
    big_stores
);
criterion_main!(benches);
