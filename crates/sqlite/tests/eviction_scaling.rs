//! Measures a set under eviction pressure (through `Cache`) at 10,000 and 1,000,000 entries,
//! and opening those stores, for a few connection settings. Ignored by default (timing):
//!
//! `cargo test --release -p plexcache-sqlite --test eviction_scaling -- --ignored --nocapture`
//!
//! Variants run interleaved in rounds; each figure is the best round's mean.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use plexcache_core::Batch;
use plexcache_core::WriteLimit;
use plexcache_core::{Bytes, Cache, CacheBackend};
use plexcache_sqlite::{SqliteBackend, SqliteBuilder};

const ROUND: u64 = 500;
const ROUNDS: usize = 5;

fn key(i: u64) -> String {
    format!("search:Movies:title {i}")
}

fn value(i: u64) -> Vec<u8> {
    vec![(i % 251) as u8; 50 + (i % 300) as usize]
}

fn configs(dir: &Path) -> Vec<(&'static str, SqliteBuilder)> {
    vec![
        ("default", SqliteBackend::builder(dir)),
        (
            "cache16m",
            SqliteBackend::builder(dir).page_cache_bytes(16 << 20),
        ),
        ("mmap1g", SqliteBackend::builder(dir).mmap_size(1 << 30)),
    ]
}

#[test]
#[ignore = "timing; run explicitly with --release --ignored --nocapture"]
fn eviction_scaling() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let root = tempfile::tempdir().unwrap();
    let sizes = [10_000u64, 1_000_000];
    for n in sizes {
        let b = SqliteBackend::open(root.path().join(format!("n{n}"))).unwrap();
        let start = Instant::now();
        rt.block_on(async {
            let mut i = 0;
            while i < n {
                let end = (i + 100_000).min(n);
                let batch: Vec<(String, Bytes)> =
                    (i..end).map(|j| (key(j), Bytes::from(value(j)))).collect();
                b.write_batch(&Batch::of(1_000, None, batch), WriteLimit::UNBOUNDED)
                    .await
                    .unwrap();
                i = end;
            }
        });
        println!("fixture {n}: {:.1?}", start.elapsed());
        let path = b.path().to_path_buf();
        drop(b);
        let conn = rusqlite::Connection::open(&path).unwrap();
        let c: i64 = conn
            .query_row("SELECT COUNT(*) FROM entries", [], |r| r.get(0))
            .unwrap();
        let k: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM entries WHERE key = ?1",
                [key(n / 2)],
                |r| r.get(0),
            )
            .unwrap();
        println!("rows {c}, has key {k}");
    }
    let mut best: BTreeMap<String, f64> = BTreeMap::new();
    let mut next = [10_000_000u64, 20_000_000];
    for _ in 0..ROUNDS {
        for (si, n) in sizes.iter().enumerate() {
            let dir = root.path().join(format!("n{n}"));
            for (name, cfg) in configs(&dir) {
                let start = Instant::now();
                let backend = cfg.open().unwrap();
                let cache = Cache::new(backend);
                let got: Option<Vec<u8>> = rt
                    .block_on(cache.get_raw(&key(n - 1)))
                    .unwrap()
                    .map(|(b, _)| b.to_vec());
                if got.is_none() {
                    let c = cache.backend().clone();
                    let u = rt.block_on(c.usage()).unwrap();
                    let k = rt.block_on(c.keys("", 0, 3)).unwrap();
                    let g = rt.block_on(c.get(&key(n / 2), 0)).unwrap();
                    panic!("{n} {name}: {u:?} {k:?} {g:?} {:?}", c.path());
                }
                let open_us = start.elapsed().as_secs_f64() * 1e6;
                let e = best
                    .entry(format!("open+get {n:>8} {name}"))
                    .or_insert(f64::MAX);
                *e = e.min(open_us);
                let backend = cache.into_backend().unwrap();
                let limit = rt.block_on(backend.usage()).unwrap().bytes;
                let cache = Cache::builder(backend).size_limit(limit).build().unwrap();
                rt.block_on(async {
                    let start = Instant::now();
                    for _ in 0..ROUND {
                        next[si] += 1;
                        let i = next[si];
                        cache.set(&key(i), &value(i % 10_000)).await.unwrap();
                    }
                    let us = start.elapsed().as_secs_f64() * 1e6 / ROUND as f64;
                    let e = best
                        .entry(format!("set-evict {n:>8} {name}"))
                        .or_insert(f64::MAX);
                    *e = e.min(us);
                    assert!(cache.backend().usage().await.unwrap().bytes <= limit);
                });
            }
        }
    }
    for (name, us) in &best {
        println!("{name:<32} {us:9.1} us");
    }
}
