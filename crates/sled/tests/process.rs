//! Tests with real second OS processes: the test binary re-executes itself with
//! `PLEXCACHE_SLED_CHILD` set, and the `child` test below plays the other process.
//!
//! - a second process opening a cache that is open gets `Error::InUse` (both directions);
//! - the OS releases the lock when the owner is killed, and the next open recounts;
//! - a process killed (SIGKILL) mid-write loses nothing that `flush()` acknowledged, and the
//!   store it leaves behind is consistent after the recount on open: every entry is in every
//!   index and the counters equal a direct count;
//! - a process killed while batches replace a library leaves it whole (one generation) or
//!   absent after the next open, never a mix.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use plexcache_core::{Bytes, Cache, CacheBackend, Error, WriteLimit};
use plexcache_sled::SledBackend;
use plexcache_testsupport::child::Child;
use plexcache_testsupport::library::{library_batch, one_generation};

const ENV: &str = "PLEXCACHE_SLED_CHILD";

/// Entries of each generation of the library the "batches" child replaces.
const LIBRARY: usize = 4_000;

/// A child process running `mode` on the cache at `path`.
struct Proc;

impl Proc {
    fn spawn(mode: &str, path: &Path) -> Child {
        Self::spawn_with(mode, path, &[])
    }

    fn spawn_with(mode: &str, path: &Path, env: &[(&str, String)]) -> Child {
        let mut env = env.to_vec();
        env.push((ENV, format!("{mode}|{}", path.display())));
        Child::spawn("child", &env)
    }
}

/// The other process. Does nothing in a normal test run.
#[test]
fn child() {
    let Ok(spec) = std::env::var(ENV) else { return };
    let (mode, path) = spec.split_once('|').unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    match mode {
        "open" => match SledBackend::open(path) {
            Ok(_) => println!("RESULT ok"),
            Err(e @ Error::InUse { .. }) => println!("RESULT in-use {e}"),
            Err(e) => println!("RESULT error {e}"),
        },
        "hold" => {
            let b = SledBackend::open(path).expect("child open");
            println!("READY");
            std::io::stdout().flush().unwrap();
            let mut s = String::new();
            let _ = std::io::stdin().read_line(&mut s);
            drop(b);
            println!("CLOSED");
        }
        "write" => rt.block_on(async {
            // No background flush: only flush() makes writes durable.
            let b = SledBackend::builder(path).flush_every(None).open().unwrap();
            // No eviction: every flushed entry must survive the kill.
            let cache = Cache::new(b);
            for i in 0..2_000u32 {
                cache
                    .set(&format!("durable:{i}"), &vec![i; 20])
                    .await
                    .unwrap();
            }
            cache.flush().await.unwrap();
            println!("FLUSHED 2000");
            std::io::stdout().flush().unwrap();
            // Keep writing (with evictions and removals) until killed.
            let mut i = 0u32;
            loop {
                cache
                    .set(
                        &format!("churn:{}", i % 5_000),
                        &vec![i; (i % 200) as usize],
                    )
                    .await
                    .unwrap();
                if i.is_multiple_of(7) {
                    cache
                        .remove(&format!("churn:{}", (i / 3) % 5_000))
                        .await
                        .unwrap();
                }
                i += 1;
            }
        }),
        "churn" => rt.block_on(async {
            // Background flush on (the default 500 ms), TTLs, evictions: killed at a random time.
            let b = SledBackend::builder(path)
                .flush_every(Some(Duration::from_millis(20)))
                .open()
                .unwrap();
            let cache = Cache::builder(b)
                .size_limit(300_000)
                .default_ttl(Duration::from_millis(300))
                .build()
                .unwrap();
            println!("STARTED");
            std::io::stdout().flush().unwrap();
            let mut i = 0u64;
            loop {
                let k = format!("k:{}", i.wrapping_mul(0x9e37_79b9) % 3_000);
                cache
                    .set(&k, &vec![i as u8; (i % 700) as usize])
                    .await
                    .unwrap();
                if i.is_multiple_of(11) {
                    cache.remove_prefix(&format!("k:{}", i % 10)).await.unwrap();
                }
                i += 1;
            }
        }),
        "batches" => rt.block_on(async {
            let b = SledBackend::builder(path)
                .flush_every(Some(Duration::from_millis(10)))
                .open()
                .unwrap();
            let start: u64 = std::env::var("PLEXCACHE_SLED_GENERATION")
                .unwrap()
                .parse()
                .unwrap();
            for generation in start.. {
                println!("BATCH {generation}");
                std::io::stdout().flush().unwrap();
                let t = std::time::Instant::now();
                b.write_batch(&library_batch(generation, LIBRARY), WriteLimit::UNBOUNDED)
                    .await
                    .unwrap();
                println!("DONE {}", t.elapsed().as_micros());
                std::io::stdout().flush().unwrap();
                b.put(
                    &format!("other:{generation}"),
                    Bytes::from_static(b"x"),
                    1,
                    None,
                    WriteLimit::UNBOUNDED,
                )
                .await
                .unwrap();
            }
        }),
        other => panic!("unknown child mode {other}"),
    }
}

#[test]
fn a_second_process_gets_in_use_while_the_first_has_it_open() {
    let (_dir, path) = common::temp_cache();
    let backend = SledBackend::open(&path).unwrap();
    let mut child = Proc::spawn("open", &path);
    let result = child.wait_for("RESULT");
    child.wait();
    assert!(result.starts_with("in-use"), "child got: {result}");
    assert!(result.contains("in use by another process"), "{result}");
    assert!(
        result.contains("SQLite") && result.contains("Redis"),
        "{result}"
    );
    drop(backend);
    let mut child = Proc::spawn("open", &path);
    let result = child.wait_for("RESULT");
    child.wait();
    assert_eq!(result, "ok", "after the first process closed it");
}

#[test]
fn this_process_gets_in_use_while_a_child_holds_it_and_the_lock_dies_with_the_child() {
    let (_dir, path) = common::temp_cache();
    let mut child = Proc::spawn("hold", &path);
    child.wait_for("READY");
    match SledBackend::open(&path) {
        Err(Error::InUse { .. }) => {}
        other => panic!("expected InUse, got {other:?}"),
    }
    // A clean close by the child: no recount needed afterwards.
    child.send_line("");
    child.wait_for("CLOSED");
    child.wait();
    let b = SledBackend::open(&path).expect("open after the child closed");
    assert!(b.open_info().recount.is_none());
    drop(b);

    // Killed while holding it: the OS releases the lock, and the next open recounts.
    let mut child = Proc::spawn("hold", &path);
    child.wait_for("READY");
    child.kill();
    let b = SledBackend::open(&path).expect("open after the child was killed");
    let recount = b.open_info().recount.expect("unclean shutdown is detected");
    assert!(!recount.corrected);
}

#[tokio::test]
async fn a_killed_writer_loses_nothing_it_flushed_and_leaves_a_consistent_store() {
    let (_dir, path) = common::temp_cache();
    let mut child = Proc::spawn("write", &path);
    assert_eq!(child.wait_for("FLUSHED"), "2000");
    std::thread::sleep(Duration::from_millis(300));
    child.kill();

    let b = SledBackend::open(&path).expect("reopen after kill");
    let recount = b
        .open_info()
        .recount
        .expect("recounted after an unclean shutdown");
    eprintln!("recount after kill: {recount:?}");
    // Counters are stored at a clean close; the child never closed, so the recount corrects
    // them. Afterwards they equal a direct count and every entry is in every index.
    assert!(recount.corrected, "{recount:?}");
    let v = b.verify().unwrap();
    assert!(v.is_ok(), "{:?}", v.problems);
    let usage = b.usage().await.unwrap();
    assert_eq!((usage.entries, usage.bytes), (v.entries, v.bytes));
    let cache = Cache::new(b);
    for i in 0..2_000u32 {
        let got: Option<Vec<u32>> = cache.get(&format!("durable:{i}")).await.unwrap();
        assert_eq!(got, Some(vec![i; 20]), "flushed entry durable:{i}");
    }
}

#[tokio::test]
async fn random_kills_during_churn_leave_consistent_stores() {
    let (_dir, path) = common::temp_cache();
    for round in 0..6u64 {
        let mut child = Proc::spawn("churn", &path);
        child.wait_for("STARTED");
        std::thread::sleep(Duration::from_millis(150 + (round * 97) % 400));
        child.kill();
        let b = SledBackend::open(&path).expect("reopen after kill");
        let recount = b.open_info().recount.expect("recount");
        let v = b.verify().unwrap();
        eprintln!(
            "round {round}: {recount:?}, {} stale index entries",
            v.stale_index_entries
        );
        assert!(v.is_ok(), "round {round}: {:?}", v.problems);
        let usage = b.usage().await.unwrap();
        assert_eq!((usage.entries, usage.bytes), (v.entries, v.bytes));
        assert!(
            b.usage().await.unwrap().bytes <= 300_000,
            "round {round}: size limit"
        );
        if round == 5 {
            // Stale index entries a crash left are dropped by the walks that meet them, and
            // by clear().
            b.purge_expired(u64::MAX, usize::MAX).await.unwrap();
            b.evict(plexcache_core::EvictionPolicy::LeastRecentlyStored, 0, None)
                .await
                .unwrap();
            b.clear().await.unwrap();
            let v = b.verify().unwrap();
            assert!(v.is_ok(), "{:?}", v.problems);
            assert_eq!((v.entries, v.stale_index_entries), (0, 0));
        }
    }
}

/// A child replaces library `lib:` with batch after batch and is killed at varying points; after
/// each reopen the library holds exactly one whole generation or nothing (when the open found
/// the batch marker and removed it), every other entry is intact, and the store is consistent.
#[tokio::test]
async fn a_batch_killed_midway_leaves_the_library_whole_or_absent() {
    let (_dir, path) = common::temp_cache();
    let mut generation = 0u64;
    let mut interrupted = 0;
    for round in 0..8u64 {
        let mut child = Proc::spawn_with(
            "batches",
            &path,
            &[("PLEXCACHE_SLED_GENERATION", generation.to_string())],
        );
        // After one whole batch, kill at a varying fraction of that batch's time into the
        // next one: mostly while it is being applied, sometimes before its marker is durable.
        child.wait_for("BATCH");
        let took: u64 = child.wait_for("DONE").parse().unwrap();
        let last: u64 = child.wait_for("BATCH").parse().unwrap();
        std::thread::sleep(Duration::from_micros(took * (2 + round % 7) / 10));
        child.kill();
        generation = last + 1;

        let b = SledBackend::open(&path).expect("reopen after kill");
        if let Some(removed) = b.open_info().interrupted_batch {
            interrupted += 1;
            eprintln!("round {round}: the open removed an interrupted batch: {removed:?}");
        }
        let keys = b.keys("lib:", 0, usize::MAX).await.unwrap();
        if !keys.is_empty() {
            let g = one_generation(&keys, LIBRARY, &format!("round {round}"));
            let e = b.get(&keys[0], 0).await.unwrap().unwrap();
            assert_eq!(
                e.value[0], g as u8,
                "round {round}: value of its generation"
            );
        }
        let v = b.verify().unwrap();
        assert!(v.is_ok(), "round {round}: {:?}", v.problems);
        let usage = b.usage().await.unwrap();
        assert_eq!((usage.entries, usage.bytes), (v.entries, v.bytes));
        drop(b);
    }
    eprintln!("{interrupted} of 8 kills landed inside a batch");
    assert!(interrupted > 0, "no kill landed inside a batch");
}
