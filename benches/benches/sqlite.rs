//! Benchmarks of `Cache<SqliteBackend>` on Plex-shaped workloads, with raw rusqlite baselines
//! and the offload modes side by side. Figures and the diskcache comparison are in
//! `docs/benchmarks.md (SQLite section)`.
//!
//! `cargo bench -p plexcache-benches --bench sqlite` (about 5 minutes; the 1,000,000-entry
//! fixture is built once per run in a temporary directory).
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, criterion_group, criterion_main};
use plexcache_benches::harness::{
    BIG_LIMIT, LIBRARY_KEY, encoded_search, expire_10000, library_list, runtime, zipf_mix,
};
use plexcache_benches::workload::{BenchItem, library, search_key, search_result};
use plexcache_core::{Batch, Cache, CacheBackend, Clock, SystemClock, WriteLimit, codec};
use plexcache_sqlite::{Offload, SqliteBackend};
use tokio::runtime::Runtime;

fn open(dir: &Path, offload: Offload) -> SqliteBackend {
    SqliteBackend::builder(dir).offload(offload).open().unwrap()
}

fn cache(dir: &Path, offload: Offload, limit: u64) -> Cache<SqliteBackend> {
    Cache::builder(open(dir, offload))
        .size_limit(limit)
        .build()
        .unwrap()
}

/// Bulk-loads `n` search-result entries (keys `search_key(i)`) in one transaction.
fn populate(rt: &Runtime, dir: &Path, n: u64) -> PathBuf {
    let backend = open(dir, Offload::Auto);
    rt.block_on(async {
        let now = SystemClock.now_millis();
        let mut i = 0;
        while i < n {
            let end = (i + 200_000).min(n);
            let batch = (i..end).map(|j| (search_key(j), encoded_search(j)));
            backend
                .write_batch(&Batch::of(now, None, batch), WriteLimit::UNBOUNDED)
                .await
                .unwrap();
            i = end;
        }
    });
    backend.path().to_path_buf()
}

fn library_lists(c: &mut Criterion) {
    let rt = runtime();
    let mut g = c.benchmark_group("sqlite/library");
    g.sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    for n in [1_000u64, 10_000] {
        let dir = tempfile::tempdir().unwrap();
        let cache = cache(dir.path(), Offload::Auto, BIG_LIMIT);
        let lib = library(n);
        library_list(&mut g, &rt, &cache, &lib, n);
        // Where a get's time goes: the stored bytes alone, and decoding alone.
        g.bench_function(format!("backend_get_bytes_{n}"), |b| {
            let now = SystemClock.now_millis();
            let backend = cache.backend();
            b.to_async(&rt)
                .iter(|| async move { black_box(backend.get(LIBRARY_KEY, now).await.unwrap()) })
        });
        let encoded = codec::encode(LIBRARY_KEY, &lib).unwrap();
        g.bench_function(format!("decode_only_{n}"), |b| {
            b.iter(|| black_box(codec::decode::<Vec<BenchItem>>(LIBRARY_KEY, &encoded).unwrap()))
        });
        // Where a set's time goes: encoding alone, and the stored bytes alone.
        g.bench_function(format!("encode_only_{n}"), |b| {
            b.iter(|| black_box(codec::encode(LIBRARY_KEY, &lib).unwrap()))
        });
        g.bench_function(format!("backend_put_bytes_{n}"), |b| {
            let now = SystemClock.now_millis();
            let backend = cache.backend();
            let encoded = &encoded;
            b.to_async(&rt).iter(|| async move {
                black_box(
                    backend
                        .put(
                            LIBRARY_KEY,
                            encoded.clone(),
                            now,
                            None,
                            WriteLimit::UNBOUNDED,
                        )
                        .await
                        .unwrap(),
                )
            })
        });
    }
    g.finish();
}

/// Raw rusqlite with the same pragmas: a table (key TEXT PRIMARY KEY, value BLOB).
fn raw_table(dir: &Path) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(dir.join("raw.db")).unwrap();
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;
         CREATE TABLE IF NOT EXISTS t (key TEXT PRIMARY KEY, value BLOB NOT NULL);",
    )
    .unwrap();
    conn
}

/// Fills `cache` with one search result per key of `values`, then `set{suffix}` and
/// `get_hit{suffix}` (and `get_miss{suffix}` when `miss`) over those keys in a fixed stride.
fn small_set_get<B: plexcache_core::CacheBackend>(
    g: &mut BenchmarkGroup<'_, WallTime>,
    rt: &Runtime,
    cache: &Cache<B>,
    values: &[Vec<BenchItem>],
    suffix: &str,
    miss: bool,
) {
    let n = values.len() as u64;
    rt.block_on(async {
        for i in 0..n {
            cache
                .set(&search_key(i), &values[i as usize])
                .await
                .unwrap();
        }
    });
    let mut i = 0u64;
    g.bench_function(format!("set{suffix}"), |b| {
        b.to_async(rt).iter(|| {
            i = (i + 7919) % n;
            let (key, v) = (search_key(i), &values[i as usize]);
            async move { cache.set(&key, v).await.unwrap() }
        })
    });
    g.bench_function(format!("get_hit{suffix}"), |b| {
        b.to_async(rt).iter(|| {
            i = (i + 7919) % n;
            let key = search_key(i);
            async move {
                let v: Option<Vec<BenchItem>> = cache.get(&key).await.unwrap();
                black_box(v.unwrap())
            }
        })
    });
    if miss {
        g.bench_function(format!("get_miss{suffix}"), |b| {
            b.to_async(rt).iter(|| {
                i = (i + 7919) % n;
                let key = format!("search:Movies:absent {i}");
                async move {
                    let v: Option<Vec<BenchItem>> = cache.get(&key).await.unwrap();
                    black_box(v)
                }
            })
        });
    }
}

fn small_entries(c: &mut Criterion) {
    let rt = runtime();
    let mut g = c.benchmark_group("sqlite/small");
    g.sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    const N: u64 = 10_000;
    let values: Vec<Vec<BenchItem>> = (0..N).map(search_result).collect();

    // Raw rusqlite baselines.
    let raw_dir = tempfile::tempdir().unwrap();
    let raw = raw_table(raw_dir.path());
    {
        let tx = raw.unchecked_transaction().unwrap();
        for i in 0..N {
            tx.execute(
                "INSERT OR REPLACE INTO t (key, value) VALUES (?1, ?2)",
                rusqlite::params![search_key(i), &encoded_search(i)[..]],
            )
            .unwrap();
        }
        tx.commit().unwrap();
    }
    let mut i = 0u64;
    g.bench_function("raw_rusqlite_select_hit", |b| {
        let mut stmt = raw.prepare("SELECT value FROM t WHERE key = ?1").unwrap();
        b.iter(|| {
            i = (i + 7919) % N;
            let v: Vec<u8> = stmt.query_row([search_key(i)], |r| r.get(0)).unwrap();
            black_box(v)
        })
    });
    g.bench_function("raw_rusqlite_insert_or_replace", |b| {
        let mut stmt = raw
            .prepare("INSERT OR REPLACE INTO t (key, value) VALUES (?1, ?2)")
            .unwrap();
        b.iter(|| {
            i = (i + 7919) % N;
            stmt.execute(rusqlite::params![search_key(i), &encoded_search(i)[..]])
                .unwrap()
        })
    });

    for (mode, offload) in [
        ("auto", Offload::Auto),
        ("never", Offload::Never),
        ("always", Offload::Always),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let cache = cache(dir.path(), offload, BIG_LIMIT);
        let miss = offload == Offload::Auto;
        small_set_get(&mut g, &rt, &cache, &values, &format!("/{mode}"), miss);
        if offload == Offload::Auto {
            g.bench_function("backend_get_hit/auto", |b| {
                let backend = cache.backend();
                let now = SystemClock.now_millis();
                b.to_async(&rt).iter(|| {
                    i = (i + 7919) % N;
                    let key = search_key(i);
                    async move { black_box(backend.get(&key, now).await.unwrap()) }
                })
            });
        }
    }
    g.finish();
}

fn mixed(c: &mut Criterion) {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let cache = cache(dir.path(), Offload::Auto, BIG_LIMIT);
    zipf_mix(c, "sqlite", &rt, &cache);
}

fn expire(c: &mut Criterion) {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let cache = cache(dir.path(), Offload::Auto, BIG_LIMIT);
    expire_10000(c, "sqlite", &rt, &cache, |batch, stored_at, expires_at| {
        let backend = cache.backend();
        async move {
            backend
                .write_batch(
                    &Batch::of(stored_at, Some(expires_at), batch),
                    WriteLimit::UNBOUNDED,
                )
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
        let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        eprintln!(
            "fixture: {n} entries built in {:.1?}, {} MiB on disk",
            start.elapsed(),
            size >> 20
        );
        fixtures.push((n, dir));
    }

    let mut g = c.benchmark_group("sqlite/open");
    g.sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    for (n, dir) in &fixtures {
        g.bench_function(format!("open_and_get_{n}"), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for k in 0..iters {
                    let key = search_key((k * 7919) % n);
                    let start = Instant::now();
                    let cache = Cache::new(open(dir, Offload::Auto));
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

    let mut g = c.benchmark_group("sqlite/evict");
    g.sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    for (n, dir) in fixtures.iter().filter(|(n, _)| *n != 100_000) {
        let backend = open(dir, Offload::Auto);
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
}

/// The exclusive, write-back mode (`SqliteBuilder::open_exclusive`, default commit interval and
/// memory tier) on the same workloads: library lists, small entries, the Zipf mix.
fn exclusive_mode(c: &mut Criterion) {
    let rt = runtime();
    let open_exclusive = |dir: &Path| {
        let backend = SqliteBackend::builder(dir).open_exclusive().unwrap();
        Cache::builder(backend)
            .size_limit(BIG_LIMIT)
            .build()
            .unwrap()
    };

    let mut g = c.benchmark_group("sqlite_exclusive/library");
    g.sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    for n in [1_000u64, 10_000] {
        let dir = tempfile::tempdir().unwrap();
        let cache = open_exclusive(dir.path());
        let lib = library(n);
        library_list(&mut g, &rt, &cache, &lib, n);
    }
    g.finish();

    let mut g = c.benchmark_group("sqlite_exclusive/small");
    g.sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    let values: Vec<Vec<BenchItem>> = (0..10_000).map(search_result).collect();
    let dir = tempfile::tempdir().unwrap();
    let cache = open_exclusive(dir.path());
    small_set_get(&mut g, &rt, &cache, &values, "", true);
    g.finish();
    drop(cache);

    let dir = tempfile::tempdir().unwrap();
    let cache = open_exclusive(dir.path());
    zipf_mix(c, "sqlite_exclusive", &rt, &cache);
}

criterion_group!(
    benches,
    library_lists,
    small_entries,
    mixed,
    exclusive_mode,
    expire,
    big_stores
);
criterion_main!(benches);
