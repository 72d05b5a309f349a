//! Damaged, foreign and newer databases; recovery; write failures that leave the cache
//! readable.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use plexcache_core::Batch;
use plexcache_core::WriteLimit;
use plexcache_core::{Bytes, Cache, CacheBackend, Error};
use plexcache_sqlite::{DEFAULT_FILE_NAME, SCHEMA_VERSION, SqliteBackend};

mod common;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A cache with `n` entries of about 1 KiB, closed cleanly (WAL checkpointed and removed).
fn filled(dir: &Path, n: usize) -> PathBuf {
    rt().block_on(async {
        let b = SqliteBackend::open(dir).unwrap();
        let entries: Vec<(String, Bytes)> = (0..n)
            .map(|i| {
                (
                    format!("key-{i:05}"),
                    Bytes::from(vec![(i % 251) as u8; 1000]),
                )
            })
            .collect();
        b.write_batch(&Batch::of(1_000, None, entries), WriteLimit::UNBOUNDED)
            .await
            .unwrap();
        b.path().to_path_buf()
    })
}

fn expect_corrupt(r: plexcache_core::Result<SqliteBackend>, path: &Path, what: &str) -> String {
    match r {
        Err(e @ Error::Corrupt { .. }) => {
            let msg = e.to_string();
            assert!(
                msg.contains(&path.display().to_string()),
                "{what}: message names the path: {msg}"
            );
            msg
        }
        other => panic!("{what}: expected Error::Corrupt, got {other:?}"),
    }
}

fn corrupt_files(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains(".corrupt-"))
        .collect()
}

#[test]
fn not_a_database() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(DEFAULT_FILE_NAME);
    std::fs::write(&path, b"this is a text file, not a database\n".repeat(200)).unwrap();
    let msg = expect_corrupt(SqliteBackend::open(dir.path()), &path, "text file");
    assert!(msg.contains("not a SQLite database"), "{msg}");
    // SQLite magic followed by garbage.
    let mut junk = b"SQLite format 3\0".to_vec();
    junk.extend((0..8192u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8));
    std::fs::write(&path, &junk).unwrap();
    expect_corrupt(SqliteBackend::open(dir.path()), &path, "magic + garbage");
}

#[test]
fn truncated_database() {
    let dir = tempfile::tempdir().unwrap();
    let path = filled(dir.path(), 2_000);
    let len = std::fs::metadata(&path).unwrap().len();
    assert!(len > 1_000_000);
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.set_len(len / 2).unwrap();
    drop(f);
    let msg = expect_corrupt(SqliteBackend::open(dir.path()), &path, "half");
    assert!(msg.contains("truncated"), "{msg}");
    // Not on a page boundary.
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.set_len(len / 2 - 100).unwrap();
    drop(f);
    expect_corrupt(SqliteBackend::open(dir.path()), &path, "mid-page");
    // Shorter than the header.
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.set_len(50).unwrap();
    drop(f);
    expect_corrupt(SqliteBackend::open(dir.path()), &path, "50 bytes");
}

#[test]
fn foreign_schema() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(DEFAULT_FILE_NAME);
    // Shaped like a diskcache database.
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch(
        "CREATE TABLE Settings (key TEXT NOT NULL UNIQUE, value);
         CREATE TABLE Cache (rowid INTEGER PRIMARY KEY, key BLOB, raw INTEGER, value BLOB);",
    )
    .unwrap();
    drop(conn);
    let msg = expect_corrupt(SqliteBackend::open(dir.path()), &path, "diskcache db");
    assert!(msg.contains("not a plexcache cache database"), "{msg}");

    // Our version and id, but a table with the wrong columns.
    std::fs::remove_file(&path).unwrap();
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch(&format!(
        "CREATE TABLE entries (key TEXT PRIMARY KEY, value BLOB);
         PRAGMA application_id = {}; PRAGMA user_version = {SCHEMA_VERSION};",
        0x706c_7863
    ))
    .unwrap();
    drop(conn);
    let msg = expect_corrupt(SqliteBackend::open(dir.path()), &path, "wrong columns");
    assert!(msg.contains("columns"), "{msg}");
}

/// Found by the corruption suite (`tests/tests/corruption.rs`, SQLite case 590): one bit
/// flipped in the schema text made a column unknown, and the failed prepare (a
/// `SqlInputError`, not a `SqliteFailure`) surfaced as `Error::Backend` instead of the
/// foreign-schema `Error::Corrupt`.
#[test]
fn a_schema_with_a_renamed_column_is_foreign() {
    let dir = tempfile::tempdir().unwrap();
    let path = filled(dir.path(), 3);
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch("ALTER TABLE stats RENAME COLUMN name TO nane;")
        .unwrap();
    drop(conn);
    let msg = expect_corrupt(SqliteBackend::open(dir.path()), &path, "a renamed column");
    assert!(msg.contains("not a plexcache cache"), "{msg}");
    // Ours (our application id and version), so recovery moves it aside and starts empty.
    SqliteBackend::builder(dir.path())
        .recover_corrupt(true)
        .open()
        .expect("recovered");
    let moved = std::fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("plexcache.db.corrupt-")
        })
        .count();
    assert!(moved >= 1, "the damaged database was moved aside");
}

/// Also found by the corruption suite (SQLite cases 596 and 968): a column name in the schema
/// that a bit flip made invalid UTF-8 surfaced as `Error::Backend` ("invalid utf-8 sequence").
#[test]
fn a_schema_with_a_column_name_that_is_no_utf8_is_foreign() {
    let dir = tempfile::tempdir().unwrap();
    let path = filled(dir.path(), 3);
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch(
        "PRAGMA writable_schema = ON;
         UPDATE sqlite_master SET sql = replace(sql, 'size ', CAST(X'73FF7A6520' AS TEXT))
          WHERE name = 'entries';
         PRAGMA writable_schema = OFF;",
    )
    .unwrap();
    drop(conn);
    let msg = expect_corrupt(SqliteBackend::open(dir.path()), &path, "a name no UTF-8");
    assert!(msg.contains("not a plexcache cache"), "{msg}");
}

#[test]
fn newer_schema_version_is_refused_and_never_moved() {
    let dir = tempfile::tempdir().unwrap();
    let path = filled(dir.path(), 3);
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch(&format!("PRAGMA user_version = {};", SCHEMA_VERSION + 1))
        .unwrap();
    drop(conn);
    for recover in [false, true] {
        match SqliteBackend::builder(dir.path())
            .recover_corrupt(recover)
            .open()
        {
            Err(Error::IncompatibleVersion {
                path: p,
                found,
                supported,
            }) => {
                assert_eq!(
                    (p.as_path(), found, supported),
                    (path.as_path(), SCHEMA_VERSION + 1, SCHEMA_VERSION)
                );
            }
            other => panic!("expected IncompatibleVersion, got {other:?}"),
        }
    }
    assert!(
        corrupt_files(dir.path()).is_empty(),
        "a newer store is never moved aside"
    );
    assert!(path.exists());
}

#[test]
fn recover_corrupt_moves_the_file_aside_and_starts_empty() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(DEFAULT_FILE_NAME);
    let garbage = b"garbage garbage garbage".repeat(100);
    std::fs::write(&path, &garbage).unwrap();
    let backend = SqliteBackend::builder(dir.path())
        .recover_corrupt(true)
        .open()
        .unwrap();
    let moved = corrupt_files(dir.path());
    assert_eq!(moved.len(), 1, "{moved:?}");
    assert!(
        moved[0]
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("plexcache.db.corrupt-")
    );
    assert_eq!(
        std::fs::read(&moved[0]).unwrap(),
        garbage,
        "moved, not rewritten"
    );
    rt().block_on(async {
        let cache = Cache::new(backend);
        assert_eq!(cache.stats().await.unwrap().usage.entries, 0);
        cache.set("k", &1u32).await.unwrap();
        assert_eq!(cache.get::<u32>("k").await.unwrap(), Some(1));
    });

    // A truncated database is recovered the same way.
    let dir = tempfile::tempdir().unwrap();
    let path = filled(dir.path(), 500);
    let len = std::fs::metadata(&path).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(len / 3)
        .unwrap();
    let backend = SqliteBackend::builder(dir.path())
        .recover_corrupt(true)
        .open()
        .unwrap();
    assert_eq!(corrupt_files(dir.path()).len(), 1);
    rt().block_on(async { assert_eq!(backend.usage().await.unwrap().entries, 0) });
}

/// Damage inside a database whose header is intact: found by reads, reported as Corrupt
/// naming the path (or read correctly), never a panic.
#[test]
fn damaged_pages_are_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    let path = filled(dir.path(), 2_000);
    let mut bytes = std::fs::read(&path).unwrap();
    let len = bytes.len();
    for (i, b) in bytes[8192..len - 4096].iter_mut().enumerate() {
        if i % 3 == 0 {
            *b = (i.wrapping_mul(2_654_435_761) >> 7) as u8;
        }
    }
    std::fs::write(&path, &bytes).unwrap();
    let opened = SqliteBackend::open(dir.path());
    let backend = match opened {
        Err(e @ Error::Corrupt { .. }) => {
            assert!(e.to_string().contains(&path.display().to_string()));
            return;
        }
        Err(e) => panic!("unexpected error kind: {e:?}"),
        Ok(b) => b,
    };
    rt().block_on(async {
        let mut errors = 0;
        for i in 0..2_000 {
            match backend.get(&format!("key-{i:05}"), 0).await {
                Ok(_) => {}
                Err(e @ Error::Corrupt { .. }) => {
                    assert!(e.to_string().contains(&path.display().to_string()), "{e}");
                    errors += 1;
                }
                Err(e) => panic!("damage must read as Corrupt: {e:?}"),
            }
        }
        let _ = backend.keys("", 0, usize::MAX).await;
        let _ = backend
            .put(
                "new",
                Bytes::from_static(b"x"),
                0,
                None,
                WriteLimit::UNBOUNDED,
            )
            .await;
        assert!(errors > 0, "the damage was noticed");
    });
}

#[cfg(unix)]
#[test]
fn new_directory_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let cache_dir = dir.path().join("a").join("b");
    let b = SqliteBackend::open(&cache_dir).unwrap();
    let mode = std::fs::metadata(&cache_dir).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
    assert_eq!(b.path(), cache_dir.join(DEFAULT_FILE_NAME));
}

const FSIZE_WORKER: &str = "PLEXCACHE_SQLITE_FSIZE_WORKER";

/// Child side of `disk_full_write_fails_and_cache_stays_readable`: runs under a file-size
/// limit, so writes that grow a file fail like on a full disk.
#[test]
fn fsize_worker_entry() {
    let Ok(dir) = std::env::var(FSIZE_WORKER) else {
        return;
    };
    rt().block_on(async {
        let backend = SqliteBackend::open(&dir).unwrap();
        let path = backend.path().to_path_buf();
        let cache = Cache::builder(backend).size_limit(1 << 40).build().unwrap();
        let big = vec![7u8; 256 * 1024];
        let mut failure = None;
        for i in 0..200 {
            if let Err(e) = cache.set(&format!("big-{i}"), &big).await {
                failure = Some(e);
                break;
            }
        }
        let e = failure.expect("a write beyond the file-size limit fails");
        assert!(
            e.to_string().contains(&path.display().to_string()),
            "the error names the database: {e}"
        );
        // Still readable: the entries written before the limit.
        let v = cache.get_raw("key-00007").await.unwrap();
        assert!(
            v.is_some(),
            "old entries still readable after a failed write"
        );
        let keys = cache.keys("key-", usize::MAX).await.unwrap();
        assert_eq!(keys.len(), 50);
        println!("\nFSIZE_WORKER_OK {e}");
    });
}

#[cfg(unix)]
#[test]
fn disk_full_write_fails_and_cache_stays_readable() {
    if std::env::var(FSIZE_WORKER).is_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = filled(dir.path(), 50);
    let exe = std::env::current_exe().unwrap();
    // `trap '' XFSZ` makes the child ignore SIGXFSZ, so an over-limit write fails with EFBIG
    // (like ENOSPC on a full disk) instead of killing the process. Limit: 2 MiB files.
    let script = "trap '' XFSZ; ulimit -f 4096; exec \"$0\" --exact fsize_worker_entry --nocapture --test-threads 1";
    let out = Command::new("sh")
        .args(["-c", script])
        .arg(&exe)
        .env(FSIZE_WORKER, dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("FSIZE_WORKER_OK"),
        "child failed: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!(
        "{}",
        stdout
            .lines()
            .find(|l| l.contains("FSIZE_WORKER_OK"))
            .unwrap_or("")
    );
    // Back without the limit: counters equal the rows, and writes work again.
    rt().block_on(async {
        let backend = SqliteBackend::open(dir.path()).unwrap();
        let usage = backend.usage().await.unwrap();
        let conn = rusqlite::Connection::open(&path).unwrap();
        let (n, bytes): (i64, i64) = conn
            .query_row(
                "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM entries",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!((usage.entries, usage.bytes), (n as u64, bytes as u64));
        backend
            .put(
                "after",
                Bytes::from_static(b"ok"),
                0,
                None,
                WriteLimit::UNBOUNDED,
            )
            .await
            .unwrap();
    });
}

const READ_ONLY_WORKER: &str = "PLEXCACHE_SQLITE_READ_ONLY_WORKER";

/// An unprivileged user for the read-only test when the tests run as root (`nobody`).
#[cfg(unix)]
const UNPRIVILEGED: u32 = 65_534;

#[cfg(unix)]
fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    // The owner of a file this process just created is its effective user.
    let probe = tempfile::NamedTempFile::new().unwrap();
    probe.as_file().metadata().unwrap().uid() == 0
}

/// What a user who may read but not write the files sees: writes fail with an error, reads
/// keep working (or the open itself fails, naming the path).
fn read_only_checks(dir: &Path) {
    rt().block_on(async {
        match SqliteBackend::open(dir) {
            Ok(backend) => {
                let err = backend
                    .put(
                        "x",
                        Bytes::from_static(b"1"),
                        0,
                        None,
                        WriteLimit::UNBOUNDED,
                    )
                    .await;
                assert!(err.is_err(), "write to a read-only database fails");
                assert!(backend.get("key-00003", 0).await.unwrap().is_some());
            }
            Err(e) => {
                assert!(e.to_string().contains(&dir.display().to_string()), "{e}");
            }
        }
    });
}

/// Child side of `read_only_files_fail_writes_but_stay_readable` when the tests run as root:
/// runs as an unprivileged user, for whom the permissions hold.
#[test]
fn read_only_worker_entry() {
    let Ok(dir) = std::env::var(READ_ONLY_WORKER) else {
        return;
    };
    read_only_checks(Path::new(&dir));
    println!("\nREAD_ONLY_WORKER_OK");
}

/// A read-only directory and database file: writes fail with an error, reads keep working.
/// Root ignores permissions, so as root (as in CI) the checks run in a child process of this
/// test binary started as `nobody` (a copy of the binary that user may execute).
#[cfg(unix)]
#[test]
fn read_only_files_fail_writes_but_stay_readable() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    if std::env::var(READ_ONLY_WORKER).is_ok() {
        return;
    }
    let mode = |p: &Path, m: u32| std::fs::set_permissions(p, std::fs::Permissions::from_mode(m));
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let path = filled(&cache, 10);
    mode(&path, 0o444).unwrap();
    mode(&cache, 0o555).unwrap();
    let result = std::panic::catch_unwind(|| {
        if !is_root() {
            read_only_checks(&cache);
            return;
        }
        // Let the unprivileged user reach the cache (read and traverse, not write) and run
        // a copy of this binary.
        mode(dir.path(), 0o755).unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        mode(&bin, 0o755).unwrap();
        let exe = bin.join("faults");
        std::fs::copy(std::env::current_exe().unwrap(), &exe).unwrap();
        mode(&exe, 0o755).unwrap();
        let out = Command::new(&exe)
            .args([
                "--exact",
                "read_only_worker_entry",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env(READ_ONLY_WORKER, &cache)
            .current_dir(&bin)
            .uid(UNPRIVILEGED)
            .gid(UNPRIVILEGED)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("READ_ONLY_WORKER_OK"),
            "child failed: {}\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    });
    mode(&cache, 0o755).unwrap();
    mode(&path, 0o644).unwrap();
    if let Err(p) = result {
        std::panic::resume_unwind(p);
    }
}

/// A write that fails because the file cannot grow (SQLite's page cap, which fails like a
/// full disk, and works as root where permissions do not) returns an error naming the file,
/// changes nothing, and leaves the cache readable, consistent and writable once space is
/// made.
#[test]
fn a_write_that_finds_the_disk_full_fails_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let b = SqliteBackend::builder(dir.path())
            .max_file_bytes(Some(512 * 1024))
            .open()
            .unwrap();
        let (stored, err) = common::fill_until_full(&b).await;
        assert!(err.to_string().contains(DEFAULT_FILE_NAME), "{err}");
        assert!(!err.is_corrupt(), "{err}");
        let usage = b.usage().await.unwrap();
        assert_eq!(
            usage.entries, stored as u64,
            "the failed put changed nothing"
        );
        assert!(b.get("fill-000000", 2).await.unwrap().is_some());
        b.remove_prefix("fill-00000").await.unwrap();
        b.put(
            "after",
            Bytes::from(vec![1u8; 2000]),
            2,
            None,
            WriteLimit::UNBOUNDED,
        )
        .await
        .expect("writable again once space is made");
        assert_eq!(b.usage().await.unwrap().entries, stored as u64 - 10 + 1);
    });
}

/// Opens the database at `path` directly, checking that it is at this build's version.
fn at_current_version(path: &Path) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(path).unwrap();
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version as u64, SCHEMA_VERSION);
    conn
}

/// Databases of the earlier layouts are migrated on open: version 1 (values not bound to
/// their keys) and version 2 (a counters table and a store-order index). Their entries, which
/// would only read as misses, are dropped; their statistics stay; the new layout works.
#[test]
fn databases_of_versions_1_and_2_are_migrated() {
    for old in [1, 2] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(DEFAULT_FILE_NAME);
        let conn = rusqlite::Connection::open(&path).unwrap();
        // The version-2 schema as that release created it.
        conn.execute_batch(&format!(
            "PRAGMA auto_vacuum = INCREMENTAL;
             PRAGMA journal_mode = WAL;
             CREATE TABLE entries (key TEXT PRIMARY KEY NOT NULL, stored_at INTEGER NOT NULL,
                 expires_at INTEGER, accessed_at INTEGER NOT NULL,
                 access_count INTEGER NOT NULL, size INTEGER NOT NULL, seq INTEGER NOT NULL,
                 value BLOB NOT NULL);
             CREATE INDEX entries_expiry ON entries (expires_at, seq)
                 WHERE expires_at IS NOT NULL;
             CREATE INDEX entries_lrs ON entries (stored_at, seq);
             CREATE TABLE counters (id INTEGER PRIMARY KEY CHECK (id = 1),
                 entries INTEGER NOT NULL, bytes INTEGER NOT NULL, seq INTEGER NOT NULL);
             INSERT INTO counters VALUES (1, 1, 6, 1);
             CREATE TABLE stats (name TEXT PRIMARY KEY NOT NULL, value INTEGER NOT NULL)
                 WITHOUT ROWID;
             INSERT INTO stats VALUES ('hits', 7);
             INSERT INTO entries VALUES ('k', 1, NULL, 1, 0, 6, 1, x'0102030405');
             PRAGMA application_id = {}; PRAGMA user_version = {old};",
            0x706c_7863
        ))
        .unwrap();
        drop(conn);
        rt().block_on(async {
            let b = SqliteBackend::open(dir.path()).unwrap();
            assert_eq!(
                b.usage().await.unwrap(),
                plexcache_core::Usage::default(),
                "version {old}"
            );
            assert_eq!(b.keys("", 0, 100).await.unwrap(), Vec::<String>::new());
            assert_eq!(b.load_stats().await.unwrap().hits, 7, "statistics kept");
            b.put(
                "k",
                Bytes::from_static(b"v"),
                1,
                None,
                WriteLimit::UNBOUNDED,
            )
            .await
            .unwrap();
            assert_eq!(b.usage().await.unwrap().entries, 1);
            assert!(b.integrity_check().await.unwrap().is_empty());
        });
        let conn = at_current_version(&path);
        let gone: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM sqlite_master WHERE name IN ('counters', 'entries_lrs')",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(gone, 0, "version {old}: the old table and index are gone");
    }
}

/// A database of version 3 (values always in their entry's row) is migrated with its
/// entries: they read back as they were, the counters stay exact, and new large values go to
/// the out-of-line table beside the old inline ones.
#[test]
fn a_database_of_version_3_is_migrated_with_its_entries() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(DEFAULT_FILE_NAME);
    let large = vec![9u8; 100_000];
    let conn = rusqlite::Connection::open(&path).unwrap();
    // The version-3 schema as that release created it, with two entries, one large.
    conn.execute_batch(&format!(
        "PRAGMA auto_vacuum = INCREMENTAL;
         PRAGMA journal_mode = WAL;
         CREATE TABLE entries (key TEXT NOT NULL UNIQUE, stored_at INTEGER NOT NULL,
             expires_at INTEGER, accessed_at INTEGER NOT NULL, access_count INTEGER NOT NULL,
             size INTEGER NOT NULL, seq INTEGER NOT NULL, total_entries INTEGER NOT NULL,
             total_bytes INTEGER NOT NULL, total_seq INTEGER NOT NULL, value BLOB NOT NULL);
         CREATE INDEX entries_expiry ON entries (expires_at, seq) WHERE expires_at IS NOT NULL;
         CREATE INDEX entries_lru ON entries (accessed_at, seq);
         CREATE TABLE stats (name TEXT PRIMARY KEY NOT NULL, value INTEGER NOT NULL)
             WITHOUT ROWID;
         INSERT INTO stats VALUES ('hits', 7);
         INSERT INTO entries VALUES ('a', 1, NULL, 1, 0, 6, 1, 0, 0, 0, x'0102030405');
         PRAGMA application_id = {}; PRAGMA user_version = 3;",
        0x706c_7863
    ))
    .unwrap();
    conn.execute(
        "INSERT INTO entries VALUES ('big', 2, NULL, 2, 0, ?1, 2, 2, ?2, 2, ?3)",
        rusqlite::params![3 + large.len() as i64, 9 + large.len() as i64, large],
    )
    .unwrap();
    drop(conn);
    rt().block_on(async {
        let b = SqliteBackend::open(dir.path()).unwrap();
        let usage = b.usage().await.unwrap();
        assert_eq!((usage.entries, usage.bytes), (2, 9 + large.len() as u64));
        assert_eq!(b.load_stats().await.unwrap().hits, 7, "statistics kept");
        let got = |key: &'static str| {
            let b = &b;
            async move { b.get(key, 10).await.unwrap().map(|e| e.value.to_vec()) }
        };
        assert_eq!(got("a").await, Some(vec![1, 2, 3, 4, 5]));
        assert_eq!(got("big").await, Some(large.clone()));
        assert!(b.integrity_check().await.unwrap().is_empty());
        let other = vec![3u8; 50_000];
        b.put(
            "new",
            Bytes::from(other.clone()),
            20,
            None,
            WriteLimit::UNBOUNDED,
        )
        .await
        .unwrap();
        b.remove("big").await.unwrap();
        assert_eq!(got("new").await, Some(other));
        assert_eq!(b.usage().await.unwrap().entries, 2);
        assert!(b.integrity_check().await.unwrap().is_empty());
    });
    let conn = at_current_version(&path);
    let blobs: i64 = conn
        .query_row("SELECT COUNT(*) FROM blobs", [], |r| r.get(0))
        .unwrap();
    assert_eq!(blobs, 1, "the new large value is out of line");
}

/// `integrity_check` (what `Cache::check` and `plexcache check` report as engine problems):
/// empty on a healthy file; counters that disagree with the rows, a row whose size is not its
/// key plus its value, and a key that is not text are each reported.
#[test]
fn integrity_check_reports_rows_and_counters_that_disagree() {
    let dir = tempfile::tempdir().unwrap();
    let path = filled(dir.path(), 20);
    let check = || {
        rt().block_on(async {
            let b = SqliteBackend::open(dir.path()).unwrap();
            b.integrity_check().await.unwrap()
        })
    };
    assert_eq!(check(), Vec::<String>::new(), "healthy");
    let damage = |sql: &str| {
        rusqlite::Connection::open(&path)
            .unwrap()
            .execute_batch(sql)
            .unwrap();
    };
    // The counters live in the newest row (schema version 3).
    let newest = "rowid = (SELECT max(rowid) FROM entries)";
    damage(&format!(
        "UPDATE entries SET total_bytes = total_bytes + 5 WHERE {newest};"
    ));
    let problems = check();
    assert!(
        problems.iter().any(|p| p.contains("the counters say")),
        "{problems:?}"
    );
    damage(&format!(
        "UPDATE entries SET total_bytes = total_bytes - 5 WHERE {newest};
         UPDATE entries SET size = size + 1 WHERE key = 'key-00003';"
    ));
    let problems = check();
    assert!(
        problems
            .iter()
            .any(|p| p.contains("not their key plus their value")),
        "{problems:?}"
    );
    damage(
        "UPDATE entries SET size = size - 1 WHERE key = 'key-00003';
         UPDATE entries SET key = CAST(key AS BLOB) WHERE key = 'key-00004';",
    );
    let problems = check();
    assert!(
        problems.iter().any(|p| p.contains("not text")),
        "{problems:?}"
    );
    rt().block_on(async {
        let cache = Cache::new(SqliteBackend::open(dir.path()).unwrap());
        let report = cache.check().await.unwrap();
        assert!(!report.engine_problems.is_empty(), "{report:?}");
        assert!(!report.is_ok());
    });
}
