//! Behaviour beyond the conformance suite: a differential test against the reference model,
//! prefix ranges at awkward code points, the bounded connection pool, reopen with the system
//! clock, and the file size under sustained churn.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use std::time::Duration;

use plexcache_core::WriteLimit;
use plexcache_core::{Bytes, Cache, CacheBackend, EvictionPolicy, Ttl};
use plexcache_sqlite::{Offload, SqliteBackend};
use plexcache_testsupport::differential::{AWKWARD_ALPHABET, Coverage, Target, run};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Random raw backend operations on SQLite and on the model give the same results (the
/// shared driver of `plexcache_testsupport::differential`, keys of awkward code points), with
/// reopens.
#[test]
fn differential_against_the_model() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    rt().block_on(async {
        let mut seen = Coverage::default();
        for seed in [3, 17] {
            let p = path.join(format!("c{seed}"));
            let reopen_at = p.clone();
            let target = Target::new(SqliteBackend::open(&p).unwrap())
                .key_alphabet(AWKWARD_ALPHABET)
                .reopen_with(move |old| {
                    drop(old);
                    SqliteBackend::open(&reopen_at).unwrap()
                });
            seen.add(run(target, seed, 2_000).await.1);
        }
        seen.assert_complete();
    });
}

/// The same in exclusive mode, with a commit interval short enough that batches commit
/// during the run.
#[test]
fn differential_against_the_model_in_exclusive_mode() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = SqliteBackend::builder(dir.path())
        .commit_interval(Duration::from_millis(2))
        .open_exclusive()
        .unwrap();
    rt().block_on(async {
        let target = Target::new(sqlite).key_alphabet(AWKWARD_ALPHABET);
        run(target, 5, 2_000).await;
    });
}

/// The same with many values "large" (over a 100-byte inline limit), so those `put`s are
/// counted at once and their rows written later by the commit thread or by the next use of
/// the connection: results must not show it.
#[test]
fn differential_against_the_model_with_deferred_rows() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = SqliteBackend::builder(dir.path())
        .inline_read_limit(100)
        .commit_interval(Duration::from_millis(3))
        .open_exclusive()
        .unwrap();
    rt().block_on(async {
        let target = Target::new(sqlite).key_alphabet(AWKWARD_ALPHABET);
        run(target, 11, 2_000).await;
    });
}

#[test]
fn prefixes_at_awkward_code_points() {
    rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let b = SqliteBackend::open(dir.path()).unwrap();
        let keys = [
            "a",
            "a\u{10FFFF}",
            "a\u{10FFFF}\u{10FFFF}",
            "a\u{10FFFF}x",
            "b",
            "\u{10FFFF}",
            "\u{10FFFF}z",
            "x\0",
            "x\0y",
            "x\u{1}",
            "x%",
            "x_",
            "xa",
        ];
        for k in keys {
            b.put(k, Bytes::from_static(b"1"), 0, None, WriteLimit::UNBOUNDED)
                .await
                .unwrap();
        }
        for p in ["a\u{10FFFF}", "\u{10FFFF}", "x\0", "x%", "x_", "x", ""] {
            let mut want: Vec<&str> = keys.iter().copied().filter(|k| k.starts_with(p)).collect();
            want.sort();
            assert_eq!(b.keys(p, 0, 100).await.unwrap(), want, "prefix {p:?}");
        }
        let r = b.remove_prefix("a\u{10FFFF}").await.unwrap();
        assert_eq!(r.entries, 3);
        let r = b.remove_prefix("\u{10FFFF}").await.unwrap();
        assert_eq!(r.entries, 2);
        let r = b.remove_prefix("x\0").await.unwrap();
        assert_eq!(r.entries, 2);
        assert_eq!(
            b.keys("", 0, 100).await.unwrap(),
            vec!["a", "b", "x%", "x\u{1}", "x_", "xa"]
                .into_iter()
                .map(String::from)
                .collect::<Vec<_>>()
                .tap_sort()
        );
    });
}

trait TapSort {
    fn tap_sort(self) -> Self;
}
impl TapSort for Vec<String> {
    fn tap_sort(mut self) -> Self {
        self.sort();
        self
    }
}

/// However many tasks read at once, at most `max_readers` reader connections are opened.
#[test]
fn connections_are_bounded() {
    rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        for offload in [Offload::Auto, Offload::Always] {
            let b = SqliteBackend::builder(dir.path())
                .max_readers(3)
                .offload(offload)
                .open()
                .unwrap();
            b.put(
                "k",
                Bytes::from(vec![1u8; 200_000]),
                0,
                None,
                WriteLimit::UNBOUNDED,
            )
            .await
            .unwrap();
            b.put(
                "s",
                Bytes::from_static(b"small"),
                0,
                None,
                WriteLimit::UNBOUNDED,
            )
            .await
            .unwrap();
            let mut tasks = Vec::new();
            for i in 0..64 {
                let b = b.clone();
                tasks.push(tokio::spawn(async move {
                    for _ in 0..20 {
                        let k = if i % 2 == 0 { "k" } else { "s" };
                        assert!(b.get(k, 1).await.unwrap().is_some());
                        b.keys("", 1, 10).await.unwrap();
                    }
                }));
            }
            for t in tasks {
                t.await.unwrap();
            }
            assert!(
                b.open_connections() <= 4,
                "{} connections",
                b.open_connections()
            );
        }
    });
}

/// Entries, TTLs and persistent stats survive a normal close with the system clock.
#[test]
fn reopen_with_the_system_clock() {
    let dir = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let cache = Cache::builder(SqliteBackend::open(dir.path()).unwrap())
            .build()
            .unwrap();
        cache
            .set_with_ttl("short", &1u32, Duration::from_millis(300))
            .await
            .unwrap();
        cache
            .set_with_ttl("long", &2u32, Duration::from_secs(3600))
            .await
            .unwrap();
        cache
            .set_with_ttl("never", &3u32, Ttl::Never)
            .await
            .unwrap();
        assert_eq!(cache.get::<u32>("long").await.unwrap(), Some(2));
        assert_eq!(cache.get::<u32>("missing").await.unwrap(), None);
        cache.flush().await.unwrap();
    });
    std::thread::sleep(Duration::from_millis(350));
    rt().block_on(async {
        let cache = Cache::builder(SqliteBackend::open(dir.path()).unwrap())
            .build()
            .unwrap();
        let s = cache.stats().await.unwrap();
        assert_eq!(
            (s.persistent.hits, s.persistent.misses, s.persistent.sets),
            (1, 1, 3)
        );
        assert_eq!(s.usage.entries, 3);
        assert_eq!(
            cache.get::<u32>("short").await.unwrap(),
            None,
            "expired across reopen"
        );
        assert_eq!(cache.get::<u32>("long").await.unwrap(), Some(2));
        assert_eq!(cache.get::<u32>("never").await.unwrap(), Some(3));
        let (_, meta) = cache.get_raw("long").await.unwrap().unwrap();
        assert_eq!(
            meta.expires_at,
            Some(meta.stored_at + 3_600_000),
            "TTL kept exactly"
        );
    });
}

/// Sustained churn through `Cache` at the size limit: the database file stays within 1.25x
/// the limit plus a constant (freed pages are reused).
#[test]
fn file_size_under_churn() {
    let dir = tempfile::tempdir().unwrap();
    let limit: u64 = 8 * 1024 * 1024;
    rt().block_on(async {
        let backend = SqliteBackend::open(dir.path()).unwrap();
        let path = backend.path().to_path_buf();
        let cache = Cache::builder(backend).size_limit(limit).build().unwrap();
        let mut rng = SmallRng::seed_from_u64(88_172_645_463_325_252);
        let mut max_db = 0;
        let mut written = 0u64;
        for i in 0..3_000u64 {
            let x: u64 = rng.random();
            // Plex-like mix: mostly small search results, some library lists of 10-300 KiB.
            let len = if x.is_multiple_of(10) { 10_000 + (x >> 20) % 300_000 } else { (x >> 20) % 2_000 };
            let value = vec![(i % 251) as u8; len as usize];
            cache.set(&format!("k{}", (x >> 40) % 2_000), &value).await.unwrap();
            written += len;
            if i % 100 == 0 {
                max_db = max_db.max(std::fs::metadata(&path).unwrap().len());
            }
        }
        let usage = cache.backend().usage().await.unwrap();
        cache.flush().await.unwrap();
        let db = std::fs::metadata(&path).unwrap().len();
        max_db = max_db.max(db);
        eprintln!(
            "churn: wrote {} MiB through a {} MiB limit; logical {} bytes; db file max {} bytes ({:.3}x limit), end {} bytes",
            written >> 20,
            limit >> 20,
            usage.bytes,
            max_db,
            max_db as f64 / limit as f64,
            db
        );
        assert!(usage.bytes <= limit);
        assert!(
            max_db <= limit + limit / 4 + 2 * 1024 * 1024,
            "db file {max_db} bytes > 1.25 x {limit} + 2 MiB"
        );
    });
}

/// The LRU/LFU indexes of the file, read with a plain connection.
fn access_indexes(dir: &std::path::Path) -> Vec<String> {
    let conn = rusqlite::Connection::open(dir.join("plexcache.db")).unwrap();
    let mut stmt = conn
        .prepare(
            "SELECT name FROM sqlite_master WHERE type = 'index'
             AND name IN ('entries_lru', 'entries_lfu') ORDER BY name",
        )
        .unwrap();
    stmt.query_map([], |r| r.get(0))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap()
}

#[test]
fn access_indexes_are_built_only_when_an_access_order_is_used() {
    // Least recently stored (the default): writes never maintain the LRU/LFU indexes.
    let lrs = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let cache = Cache::new(SqliteBackend::open(lrs.path()).unwrap());
        for i in 0..50u32 {
            cache.set(&format!("k{i}"), &i).await.unwrap();
            let _: Option<u32> = cache.get(&format!("k{i}")).await.unwrap();
        }
        cache.flush().await.unwrap();
    });
    assert!(access_indexes(lrs.path()).is_empty());

    // Least recently used: the first recorded read builds them over the existing rows, and
    // eviction then follows the access order.
    let lru = tempfile::tempdir().unwrap();
    let clock = plexcache_core::ManualClock::starting_now();
    rt().block_on(async {
        let cache = Cache::builder(SqliteBackend::open(lru.path()).unwrap())
            .clock(clock.clone())
            .eviction_policy(EvictionPolicy::LeastRecentlyUsed)
            // Ten entries of 2 + 20 bytes fit; "k10" (3 + 20) forces exactly one eviction.
            .size_limit(10 * 22 + 1)
            .build()
            .unwrap();
        for i in 0..10u32 {
            cache.set(&format!("k{i}"), &i).await.unwrap();
        }
        assert!(access_indexes(lru.path()).is_empty());
        clock.advance(Duration::from_secs(1));
        let _: Option<u32> = cache.get("k0").await.unwrap();
        // The read is recorded before the next write, which then evicts the least recently
        // used entry (k1), not the least recently stored one (k0).
        cache.set("k10", &10u32).await.unwrap();
        assert_eq!(
            access_indexes(lru.path()),
            vec!["entries_lfu".to_string(), "entries_lru".to_string()]
        );
        assert!(cache.contains("k0").await.unwrap());
        assert!(!cache.contains("k1").await.unwrap());
    });
    // A plain eviction by LFU on a fresh database builds them too.
    let lfu = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let b = SqliteBackend::open(lfu.path()).unwrap();
        b.put(
            "a",
            Bytes::from_static(b"1"),
            1,
            None,
            WriteLimit::UNBOUNDED,
        )
        .await
        .unwrap();
        b.evict(EvictionPolicy::LeastFrequentlyUsed, 0, None)
            .await
            .unwrap();
        assert_eq!(b.usage().await.unwrap().entries, 0);
    });
    assert_eq!(access_indexes(lfu.path()).len(), 2);
}

#[test]
fn get_shared_sees_writes_of_another_connection() {
    // Two backends on one file are two connections, as two processes would be. Lists of
    // equal length whose contents differ, small (compared inline) and large (compared by the
    // header read with blob I/O).
    let dir = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let a = Cache::new(SqliteBackend::open(dir.path()).unwrap());
        let b = Cache::new(SqliteBackend::open(dir.path()).unwrap());
        for n in [10usize, 20_000] {
            let key = format!("library:Movies {n}:all");
            let first: Vec<String> = (0..n).map(|i| format!("/media/{i:08}.mkv")).collect();
            let second: Vec<String> = (0..n).map(|i| format!("/media/{:08}.mkv", i + 1)).collect();
            a.set(&key, &first).await.unwrap();
            let seen = a.get_shared::<Vec<String>>(&key).await.unwrap().unwrap();
            assert_eq!(*seen, first);
            let again = a.get_shared::<Vec<String>>(&key).await.unwrap().unwrap();
            assert!(std::sync::Arc::ptr_eq(&seen, &again), "{n}: reused");

            b.set(&key, &second).await.unwrap();
            let fresh = a.get_shared::<Vec<String>>(&key).await.unwrap().unwrap();
            assert_eq!(*fresh, second, "{n}: the other connection's write");

            b.remove(&key).await.unwrap();
            assert!(
                a.get_shared::<Vec<String>>(&key).await.unwrap().is_none(),
                "{n}"
            );
        }
    });
}
