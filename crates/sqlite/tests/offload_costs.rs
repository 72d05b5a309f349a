//! Measures what running SQLite calls inline or on tokio's blocking pool costs, against raw
//! rusqlite with the same settings. Ignored by default (timing, not correctness):
//!
//! `cargo test --release -p plexcache-sqlite --test offload_costs -- --ignored --nocapture`
//!
//! Variants run interleaved in rounds so that load from other processes hits all of them
//! alike; the figure per variant is the best round's mean.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use plexcache_core::Batch;
use plexcache_core::WriteLimit;
use plexcache_core::{Bytes, CacheBackend};
use plexcache_sqlite::{Offload, SqliteBackend};

const N: u64 = 10_000;
const ROUND: u64 = 2_000;
const ROUNDS: usize = 7;

fn key(i: u64) -> String {
    format!("search:Movies:title {i}")
}

fn value(i: u64) -> Vec<u8> {
    vec![(i % 251) as u8; 100 + (i % 200) as usize]
}

#[test]
#[ignore = "timing; run explicitly with --release --ignored --nocapture"]
fn offload_costs() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();

    let raw = rusqlite::Connection::open(dir.path().join("raw.db")).unwrap();
    raw.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;
         CREATE TABLE t (key TEXT PRIMARY KEY, value BLOB NOT NULL);",
    )
    .unwrap();
    let backends: Vec<(&str, SqliteBackend)> = [
        ("never", Offload::Never),
        ("auto", Offload::Auto),
        ("always", Offload::Always),
    ]
    .into_iter()
    .map(|(name, o)| {
        let b = SqliteBackend::builder(dir.path().join(name))
            .offload(o)
            .open()
            .unwrap();
        (name, b)
    })
    .collect();
    for i in 0..N {
        raw.execute(
            "INSERT OR REPLACE INTO t (key, value) VALUES (?1, ?2)",
            rusqlite::params![key(i), value(i)],
        )
        .unwrap();
    }
    rt.block_on(async {
        for (_, b) in &backends {
            let batch: Vec<(String, Bytes)> =
                (0..N).map(|i| (key(i), Bytes::from(value(i)))).collect();
            b.write_batch(&Batch::of(1, None, batch), WriteLimit::UNBOUNDED)
                .await
                .unwrap();
        }
    });

    let mut best: std::collections::BTreeMap<String, f64> = Default::default();
    let mut note = |name: String, start: Instant| {
        let us = start.elapsed().as_secs_f64() * 1e6 / ROUND as f64;
        let e = best.entry(name).or_insert(f64::MAX);
        *e = e.min(us);
    };
    let mut i = 0u64;
    for _ in 0..ROUNDS {
        {
            let mut stmt = raw
                .prepare_cached("SELECT value FROM t WHERE key = ?1")
                .unwrap();
            let start = Instant::now();
            for _ in 0..ROUND {
                i = (i + 7919) % N;
                let v: Vec<u8> = stmt.query_row([key(i)], |r| r.get(0)).unwrap();
                std::hint::black_box(v);
            }
            note("get raw rusqlite".into(), start);
            let mut stmt = raw
                .prepare_cached("INSERT OR REPLACE INTO t (key, value) VALUES (?1, ?2)")
                .unwrap();
            let start = Instant::now();
            for _ in 0..ROUND {
                i = (i + 7919) % N;
                stmt.execute(rusqlite::params![key(i), value(i)]).unwrap();
            }
            note("put raw rusqlite".into(), start);
        }
        for (name, b) in &backends {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..ROUND {
                    i = (i + 7919) % N;
                    std::hint::black_box(b.get(&key(i), 2).await.unwrap().unwrap());
                }
                note(format!("get backend {name}"), start);
                let start = Instant::now();
                for _ in 0..ROUND {
                    i = (i + 7919) % N;
                    b.put(
                        &key(i),
                        Bytes::from(value(i)),
                        2,
                        None,
                        WriteLimit::UNBOUNDED,
                    )
                    .await
                    .unwrap();
                }
                note(format!("put backend {name}"), start);
            });
        }
    }
    for (name, us) in &best {
        println!("{name:<22} {us:8.2} us/op");
    }
}
