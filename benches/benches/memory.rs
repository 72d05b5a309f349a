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

fn bench(c: &mut Criterion) {
    let rt = rt();
    // Small entry: a search result with 2 items (about 250 bytes encoded).
    let small = search_result(2);
    let small_key = search_key(2);
    let lib = library(1_000);

    let plex = cache();
    let moka = moka_cache();
    rt.block_on(async {
        plex.set(&small_key, &small).await.expect("set");
        plex.set("library:Movies:all", &lib).await.expect("set");
    });
    moka.insert(small_key.clone(), small.clone());
    moka.insert("library:Movies:all".into(), lib.clone());

    let mut g = c.benchmark_group("small_get");
    g.bench_function("plexcache_memory", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    black_box(
                        plex.get::<Vec<BenchItem>>(black_box(&small_key))
                            .await
                            .expect("get"),
                    );
                }
                start.elapsed()
            })
        })
    });
    g.bench_function("moka_sync", |b| {
        b.iter_custom(|iters| {
            timed(iters, || {
                black_box(moka.get(black_box(&small_key)));
            })
        })
    });
    g.finish();

    let mut g = c.benchmark_group("small_set");
    g.bench_function("plexcache_memory", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    plex.set(black_box(&small_key), black_box(&small))
                        .await
                        .expect("set");
                }
                start.elapsed()
            })
        })
    });
    g.bench_function("moka_sync", |b| {
        b.iter_custom(|iters| {
            timed(iters, || {
                moka.insert(black_box(small_key.clone()), black_box(small.clone()));
            })
        })
    });
    g.finish();

    let mut g = c.benchmark_group("get_miss");
    g.bench_function("plexcache_memory", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    black_box(
                        plex.get::<Vec<BenchItem>>(black_box("search:Movies:nope"))
                            .await
                            .expect("get"),
                    );
                }
                start.elapsed()
            })
        })
    });
    g.bench_function("moka_sync", |b| {
        b.iter_custom(|iters| {
            timed(iters, || {
                black_box(moka.get(black_box("search:Movies:nope")));
            })
        })
    });
    g.finish();

    let mut g = c.benchmark_group("library_1000_get");
    g.sample_size(30);
    g.bench_function("plexcache_memory", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    black_box(
                        plex.get::<Vec<BenchItem>>(black_box("library:Movies:all"))
                            .await
                            .expect("get"),
                    );
                }
                start.elapsed()
            })
        })
    });
    g.bench_function("moka_sync", |b| {
        b.iter_custom(|iters| {
            timed(iters, || {
                black_box(moka.get(black_box("library:Movies:all")));
            })
        })
    });
    g.finish();

    let mut g = c.benchmark_group("library_1000_set");
    g.sample_size(30);
    g.bench_function("plexcache_memory", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    plex.set(black_box("library:Movies:all"), black_box(&lib))
                        .await
                        .expect("set");
                }
                start.elapsed()
            })
        })
    });
    g.bench_function("moka_sync", |b| {
        b.iter_custom(|iters| {
            timed(iters, || {
                moka.insert(
                    black_box("library:Movies:all".to_string()),
                    black_box(lib.clone()),
                );
            })
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = bench
}
criterion_main!(benches);
