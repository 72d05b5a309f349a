//! Batches seen from other processes: a library replaced by `write_batch` is one transaction, so
//! a reader in another process sees the old library or the new one, never a mix, and a writer
//! killed in the middle of a batch leaves the old library whole. This test binary re-executes
//! itself as the writer (`PLEXCACHE_SQLITE_BATCH_CHILD=<dir>`).
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::{Duration, Instant};

use plexcache_core::{CacheBackend, EvictionPolicy, WriteLimit};
use plexcache_sqlite::SqliteBackend;
use plexcache_testsupport::child::Child;
use plexcache_testsupport::library::{library_batch, one_generation};

const ENV: &str = "PLEXCACHE_SQLITE_BATCH_CHILD";

/// Entries of each generation of the library the child replaces.
const LIBRARY: usize = 3_000;

fn limit() -> WriteLimit {
    WriteLimit::evict_to(1 << 30, EvictionPolicy::LeastRecentlyStored)
}

/// The writer: replaces the library with generation after generation until killed, printing
/// `BATCH <generation>` after each commit.
#[test]
fn child() {
    let Ok(dir) = std::env::var(ENV) else { return };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let b = SqliteBackend::open(&dir).expect("child open");
        let start: u64 = std::env::var("PLEXCACHE_BATCH_FROM")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1);
        for generation in start.. {
            let t = Instant::now();
            b.write_batch(&library_batch(generation, LIBRARY), limit())
                .await
                .expect("batch");
            println!("BATCH {generation} {}", t.elapsed().as_micros());
        }
    });
}

/// The writer process.
struct Writer(Child);

impl Writer {
    fn spawn(dir: &Path, from: u64) -> Writer {
        Writer(Child::spawn(
            "child",
            &[
                (ENV, dir.display().to_string()),
                ("PLEXCACHE_BATCH_FROM", from.to_string()),
            ],
        ))
    }

    /// Waits for the next committed batch: (generation, microseconds it took).
    fn next_batch(&mut self) -> (u64, u64) {
        let line = self.0.wait_for("BATCH ");
        let mut parts = line.split_whitespace();
        let g = parts.next().unwrap().parse().unwrap();
        let took = parts.next().unwrap().parse().unwrap();
        (g, took)
    }

    fn kill(&mut self) {
        self.0.kill();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_in_another_process_never_sees_a_mix() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cache");
    let reader = SqliteBackend::open(&path).unwrap();
    let mut writer = Writer::spawn(&path, 1);
    writer.next_batch();
    let until = Instant::now() + Duration::from_secs(3);
    let (mut reads, mut seen) = (0u32, std::collections::BTreeSet::new());
    while Instant::now() < until {
        let keys = reader.keys("lib:", 0, usize::MAX).await.unwrap();
        let g = one_generation(&keys, LIBRARY, &format!("read {reads}"));
        let e = reader.get(&keys[LIBRARY / 2], 0).await.unwrap();
        // The entry may be gone already (a newer generation replaced it), never another value.
        if let Some(e) = e {
            assert_eq!(e.value[0], g as u8, "read {reads}: value of its generation");
        }
        seen.insert(g);
        reads += 1;
    }
    writer.kill();
    eprintln!("{reads} reads saw {} generations", seen.len());
    assert!(seen.len() > 1, "the reader never saw the library change");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_killed_midway_leaves_the_old_library_whole() {
    let rounds: u64 = std::env::var("PLEXCACHE_BATCH_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cache");
    let mut next = 1;
    for round in 0..rounds {
        let mut writer = Writer::spawn(&path, next);
        // After one whole batch, kill at a varying fraction of that batch's time into the next.
        let (_, took) = writer.next_batch();
        let (last, _) = writer.next_batch();
        std::thread::sleep(Duration::from_micros(took * (1 + round % 9) / 10));
        writer.kill();
        next = last + 10;

        let b = SqliteBackend::open(&path).expect("reopen after kill");
        let keys = b.keys("lib:", 0, usize::MAX).await.unwrap();
        let g = one_generation(&keys, LIBRARY, &format!("round {round}"));
        assert!(
            g >= last,
            "round {round}: an older generation than the last committed"
        );
        let e = b.get(&keys[0], 0).await.unwrap().unwrap();
        assert_eq!(
            e.value[0], g as u8,
            "round {round}: value of its generation"
        );
        // The counters row agrees with the rows themselves, and SQLite finds no damage.
        let usage = b.usage().await.unwrap();
        assert_eq!(
            usage.entries, LIBRARY as u64,
            "round {round}: entries counted"
        );
        let conn = rusqlite::Connection::open(path.join("plexcache.db")).unwrap();
        let (rows, bytes): (i64, i64) = conn
            .query_row(
                "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM entries",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!(
            (usage.entries, usage.bytes),
            (rows as u64, bytes as u64),
            "round {round}: counters match the rows"
        );
        let check: String = conn
            .query_row("PRAGMA quick_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(check, "ok", "round {round}: quick_check");
    }
}
