//! The exclusive, write-back mode beyond the conformance suite: who may open the file while it
//! is held, what a crash keeps and loses, and the memory tier against writes it did not see
//! coming (bulk loads).
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;
use std::time::{Duration, Instant};

use plexcache_core::WriteLimit;
use plexcache_core::{Bytes, CacheBackend, Error};
use plexcache_sqlite::SqliteBackend;

mod common;

const CHILD_ENV: &str = "PLEXCACHE_EXCLUSIVE_CHILD";
/// Values of 1 MiB the `exit-without-flush` child writes.
const EXIT_VALUES: usize = 12;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A builder for the exclusive mode (opened with `open_exclusive`).
fn exclusive(dir: &std::path::Path) -> plexcache_sqlite::SqliteBuilder {
    SqliteBackend::builder(dir)
}

fn assert_in_use<B>(result: plexcache_core::Result<B>, mentions: &str) {
    match result {
        Err(e @ Error::InUse { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains(mentions), "{msg}");
            assert!(msg.contains("plexcache.db"), "names the file: {msg}");
        }
        Err(e) => panic!("expected InUse, got {e}"),
        Ok(_) => panic!("expected InUse, the open succeeded"),
    }
}

#[test]
fn a_second_opener_gets_in_use_until_the_owner_closes() {
    let dir = tempfile::tempdir().unwrap();
    let owner = exclusive(dir.path()).open_exclusive().unwrap();
    let wait = Duration::from_millis(100);
    assert_in_use(
        SqliteBackend::builder(dir.path()).lock_wait(wait).open(),
        "exclusive mode",
    );
    assert_in_use(
        exclusive(dir.path()).lock_wait(wait).open_exclusive(),
        "exclusive mode",
    );
    drop(owner);
    let shared = SqliteBackend::builder(dir.path())
        .lock_wait(wait)
        .open()
        .unwrap();
    let other_shared = SqliteBackend::builder(dir.path())
        .lock_wait(wait)
        .open()
        .unwrap();
    // Shared users keep an exclusive opener out too, and it gets in once they are gone.
    assert_in_use(
        exclusive(dir.path()).lock_wait(wait).open_exclusive(),
        "alone",
    );
    let closing = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let closer = {
        let closing = std::sync::Arc::clone(&closing);
        std::thread::spawn(move || {
            // Give the opener time to start waiting; the assertion below does not depend on it.
            std::thread::sleep(Duration::from_millis(200));
            closing.store(true, std::sync::atomic::Ordering::SeqCst);
            drop(shared);
            drop(other_shared);
        })
    };
    exclusive(dir.path())
        .lock_wait(Duration::from_secs(60))
        .open_exclusive()
        .expect("gets in once the shared users close");
    assert!(
        closing.load(std::sync::atomic::Ordering::SeqCst),
        "the exclusive open succeeded before the shared users closed"
    );
    closer.join().unwrap();
}

/// The child processes of the tests below: what they do is in the variable.
#[test]
fn child_entry() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let (what, dir) = spec.split_once(':').expect("what:dir");
    let dir = std::path::PathBuf::from(dir);
    match what {
        "open-shared" => {
            let r = SqliteBackend::builder(&dir)
                .lock_wait(Duration::from_millis(200))
                .open();
            println!(
                "\nRESULT {}",
                r.err().map(|e| e.to_string()).unwrap_or_default()
            );
        }
        "crash-long-interval" => rt().block_on(async {
            let b = exclusive(&dir)
                .commit_interval(Duration::from_secs(3600))
                .open_exclusive()
                .unwrap();
            b.put(
                "flushed",
                Bytes::from_static(b"1"),
                1,
                None,
                WriteLimit::UNBOUNDED,
            )
            .await
            .unwrap();
            b.flush().await.unwrap();
            b.put(
                "unflushed",
                Bytes::from_static(b"2"),
                1,
                None,
                WriteLimit::UNBOUNDED,
            )
            .await
            .unwrap();
            std::process::abort();
        }),
        "crash-short-interval" => rt().block_on(async {
            let b = exclusive(&dir)
                .commit_interval(Duration::from_millis(20))
                .open_exclusive()
                .unwrap();
            let wal = dir.join("plexcache.db-wal");
            let wal_state = || {
                std::fs::metadata(&wal)
                    .ok()
                    .map(|m| (m.len(), m.modified().ok()))
            };
            let before = wal_state();
            b.put(
                "committed",
                Bytes::from_static(b"3"),
                1,
                None,
                WriteLimit::UNBOUNDED,
            )
            .await
            .unwrap();
            // Wait for the commit thread's commit (its frames are written to the WAL file),
            // not for a time; the parent's assertion fails if it never comes.
            let deadline = Instant::now() + Duration::from_secs(60);
            while Instant::now() < deadline && wal_state() == before {
                std::thread::sleep(Duration::from_millis(5));
            }
            std::process::abort();
        }),
        "exit-without-flush" => {
            // Returns from `main` (the test harness exits the process right after) with the
            // last handle dropped and nothing flushed: the drop must commit the batch.
            rt().block_on(async {
                let backend = exclusive(&dir)
                    .commit_interval(Duration::from_secs(3600))
                    .open_exclusive()
                    .unwrap();
                let cache = plexcache_core::Cache::new(backend);
                for i in 0..EXIT_VALUES {
                    cache
                        .set(&format!("big{i}"), &vec![i as u8; 1024 * 1024])
                        .await
                        .unwrap();
                }
                drop(cache);
            });
        }
        other => panic!("unknown child task {other}"),
    }
}

fn child(what: &str, dir: &std::path::Path) -> std::process::Output {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_entry",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(CHILD_ENV, format!("{what}:{}", dir.display()))
        .output()
        .unwrap()
}

#[test]
fn another_process_gets_in_use_naming_the_mode() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let _owner = exclusive(dir.path()).open_exclusive().unwrap();
    let out = child("open-shared", dir.path());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .unwrap_or_else(|| panic!("no result line: {stdout}"));
    assert!(
        line.contains("another process holds this SQLite cache in exclusive mode"),
        "{line}"
    );
}

/// A crash loses at most the writes acknowledged since the last commit: what `flush` or the
/// commit interval made durable survives an abort, the rest of the open batch does not, and
/// the counters agree with the rows either way.
#[test]
fn a_crash_keeps_committed_batches_and_loses_only_the_open_one() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = child("crash-long-interval", dir.path());
    assert!(!out.status.success(), "the child aborts");
    let out = child("crash-short-interval", dir.path());
    assert!(!out.status.success(), "the child aborts");
    rt().block_on(async {
        let b = exclusive(dir.path()).open_exclusive().unwrap();
        assert!(
            b.get("flushed", 2).await.unwrap().is_some(),
            "flushed survives"
        );
        assert!(
            b.get("committed", 2).await.unwrap().is_some(),
            "committed by the interval"
        );
        assert!(
            b.get("unflushed", 2).await.unwrap().is_none(),
            "the open batch is lost"
        );
        let usage = b.usage().await.unwrap();
        assert_eq!(usage.entries, 2);
        assert_eq!(
            usage.bytes,
            ("flushed".len() + 1 + "committed".len() + 1) as u64
        );
    });
}

/// A process that writes large values (rows the commit thread writes), drops its cache without
/// `flush()` and returns from `main` keeps every value: the last drop commits the batch before
/// it returns, whichever thread holds the backend at that moment.
#[test]
fn returning_from_main_without_flush_keeps_every_write() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let runs: usize = std::env::var("PLEXCACHE_EXIT_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(25);
    let mut lost = Vec::new();
    for run in 0..runs {
        let dir = tempfile::tempdir().unwrap();
        let out = child("exit-without-flush", dir.path());
        assert!(
            out.status.success(),
            "run {run}: the child failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let found = rt().block_on(async {
            let b = SqliteBackend::open(dir.path()).unwrap();
            let mut found = 0;
            for i in 0..EXIT_VALUES {
                if b.get(&format!("big{i}"), 2).await.unwrap().is_some() {
                    found += 1;
                }
            }
            assert_eq!(b.usage().await.unwrap().entries, found as u64);
            found
        });
        if found != EXIT_VALUES {
            lost.push((run, found));
        }
    }
    assert!(
        lost.is_empty(),
        "runs that lost writes (run, values found of {EXIT_VALUES}): {lost:?}"
    );
}

/// A batch write commits the open batch and runs as its own transaction; reads see its rows.
#[test]
fn a_batch_write_replaces_what_the_open_batch_wrote() {
    let dir = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let b = exclusive(dir.path()).open_exclusive().unwrap();
        b.put(
            "k",
            Bytes::from_static(b"old"),
            1,
            None,
            WriteLimit::UNBOUNDED,
        )
        .await
        .unwrap();
        assert_eq!(b.get("k", 1).await.unwrap().unwrap().value, "old");
        let batch =
            plexcache_core::Batch::of(2, None, [("k".to_string(), Bytes::from_static(b"new"))]);
        b.write_batch(&batch, WriteLimit::UNBOUNDED).await.unwrap();
        let got = b.get("k", 2).await.unwrap().unwrap();
        assert_eq!(got.value, "new");
        assert_eq!(got.meta.stored_at, 2);
    });
}

/// Dropping the last handle commits the batch: a long interval loses nothing on a normal
/// close.
#[test]
fn a_normal_close_commits_the_open_batch() {
    let dir = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let b = exclusive(dir.path())
            .commit_interval(Duration::from_secs(3600))
            .open_exclusive()
            .unwrap();
        for i in 0..100 {
            b.put(
                &format!("k{i}"),
                Bytes::from(vec![1u8; 10]),
                1,
                None,
                WriteLimit::UNBOUNDED,
            )
            .await
            .unwrap();
        }
        drop(b);
        let b = SqliteBackend::open(dir.path()).unwrap();
        assert_eq!(b.usage().await.unwrap().entries, 100);
        assert_eq!(b.keys("k", 2, usize::MAX).await.unwrap().len(), 100);
    });
}

/// A write that fails on an engine error (here SQLite's page cap, which fails like a full
/// disk) rolls the open batch back: the error says so, `flush` reports the loss, the tier
/// forgets what it held, and the database (what the last commit left) stays consistent and
/// writable.
#[test]
fn a_failed_write_rolls_the_batch_back_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let b = exclusive(dir.path())
            .commit_interval(Duration::from_secs(3600))
            .max_file_bytes(Some(512 * 1024))
            .open_exclusive()
            .unwrap();
        b.put(
            "before",
            Bytes::from_static(b"kept"),
            1,
            None,
            WriteLimit::UNBOUNDED,
        )
        .await
        .unwrap();
        b.flush().await.unwrap();
        let (stored, err) = common::fill_until_full(&b).await;
        assert!(stored > 10, "{stored} puts before the cap");
        let msg = err.to_string();
        assert!(msg.contains("rolled back"), "{msg}");
        assert!(msg.contains("plexcache.db"), "{msg}");
        let flushed = b.flush().await.expect_err("flush reports the lost batch");
        assert!(flushed.to_string().contains("lost"), "{flushed}");
        b.flush().await.expect("reported once");
        // Only the committed state is left, in the tier as in the database.
        assert!(b.get("fill-000000", 2).await.unwrap().is_none());
        assert_eq!(b.get("before", 2).await.unwrap().unwrap().value, "kept");
        let usage = b.usage().await.unwrap();
        assert_eq!(usage.entries, 1);
        assert_eq!(usage.bytes, ("before".len() + 4) as u64);
        // Still writable within the cap.
        b.put(
            "after",
            Bytes::from_static(b"x"),
            2,
            None,
            WriteLimit::UNBOUNDED,
        )
        .await
        .unwrap();
        b.flush().await.unwrap();
        drop(b);
        let b = SqliteBackend::open(dir.path()).unwrap();
        assert_eq!(b.usage().await.unwrap().entries, 2);
        assert_eq!(
            b.keys("", 3, usize::MAX).await.unwrap(),
            ["after", "before"]
        );
    });
}

/// Many tasks writing small and "large" values (deferred rows: the inline limit is 200 bytes),
/// reading, removing and evicting through one `Cache` under a tight size limit; after a close
/// the rows on disk agree with the stored counters and every remaining row decodes.
#[test]
fn concurrent_tasks_with_deferred_rows_leave_rows_and_counters_in_agreement() {
    use plexcache_core::Cache;
    let dir = tempfile::tempdir().unwrap();
    let path = rt().block_on(async {
        let backend = exclusive(dir.path())
            .inline_read_limit(200)
            .commit_interval(Duration::from_millis(5))
            .open_exclusive()
            .unwrap();
        let path = backend.path().to_path_buf();
        let cache = std::sync::Arc::new(
            Cache::builder(backend)
                .size_limit(64 * 1024)
                .build()
                .unwrap(),
        );
        let tasks: Vec<_> = (0..8u64)
            .map(|t| {
                let cache = std::sync::Arc::clone(&cache);
                tokio::spawn(async move {
                    let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ t;
                    for _ in 0..1_500 {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        let key = format!("k{}", x % 97);
                        match x % 10 {
                            0..=4 => {
                                let len = if x.is_multiple_of(3) { 2_000 } else { 20 };
                                let value = vec![(x % 251) as u8; (len + x % 50) as usize];
                                cache.set(&key, &value).await.unwrap();
                            }
                            5..=7 => {
                                let got: Option<Vec<u8>> = cache.get(&key).await.unwrap();
                                if let Some(v) = got {
                                    assert!(v.iter().all(|b| *b == v[0]), "a torn value");
                                }
                            }
                            8 => {
                                cache.remove(&key).await.unwrap();
                            }
                            _ => {
                                cache.remove_prefix(&format!("k{}", x % 9)).await.unwrap();
                            }
                        }
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        let usage = cache.backend().usage().await.unwrap();
        assert!(usage.bytes <= 64 * 1024, "{usage:?}");
        cache.flush().await.unwrap();
        path
    });
    // The exclusive owner is closed (its last drop committed and stopped the commit thread);
    // a shared backend holds the lock while the file is read directly, beside it.
    let _shared = SqliteBackend::open(dir.path()).unwrap();
    let conn = rusqlite::Connection::open(&path).unwrap();
    let (rows, bytes): (i64, i64) = conn
        .query_row(
            "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM entries",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    let (entries, counted): (i64, i64) = conn
        .query_row(
            "SELECT total_entries, total_bytes FROM entries ORDER BY rowid DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((rows, bytes), (entries, counted));
    let sizes_match: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM entries WHERE size IS NOT length(CAST(key AS BLOB)) + coalesce(
                 length(value), (SELECT length(value) FROM blobs WHERE id = entries.blob))",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(sizes_match, 0, "every row's size is its key plus its value");
    assert!(rows > 0);
}

/// Records the threads on which the backend wrote deferred rows, on the thread that sets it
/// as its default subscriber.
struct DrainThreads(std::sync::Arc<std::sync::Mutex<Vec<std::thread::ThreadId>>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for DrainThreads {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        if event.metadata().fields().field("deferred_rows").is_some() {
            self.0.lock().unwrap().push(std::thread::current().id());
        }
    }
}

/// A read that finds large values' rows still unwritten writes them off the runtime, like a
/// write does: never on the runtime's thread (here a current-thread runtime, whose offloaded
/// work runs on the blocking pool).
#[test]
fn reads_write_deferred_rows_off_the_runtime() {
    use tracing_subscriber::layer::SubscriberExt;
    let dir = tempfile::tempdir().unwrap();
    let on_runtime = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let subscriber =
        tracing_subscriber::registry().with(DrainThreads(std::sync::Arc::clone(&on_runtime)));
    let _default = tracing::subscriber::set_default(subscriber);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let b = exclusive(dir.path()).open_exclusive().unwrap();
        b.put(
            "small",
            Bytes::from_static(b"s"),
            1,
            None,
            WriteLimit::UNBOUNDED,
        )
        .await
        .unwrap();
        for i in 0..50u8 {
            b.put(
                &format!("large{i}"),
                Bytes::from(vec![i; 256 * 1024]),
                1,
                None,
                WriteLimit::UNBOUNDED,
            )
            .await
            .unwrap();
            assert!(b.get("small", 2).await.unwrap().is_some());
        }
        b.flush().await.unwrap();
    });
    let here = std::thread::current().id();
    let inline = on_runtime
        .lock()
        .unwrap()
        .iter()
        .filter(|t| **t == here)
        .count();
    assert_eq!(inline, 0, "deferred rows written on the runtime's thread");
}
