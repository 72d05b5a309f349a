//! What opening decides about a file it cannot use: a healthy database that other processes
//! are checkpointing is never called damaged, a file another process holds is never moved
//! aside, and another application's SQLite database is never changed or moved.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use plexcache_core::{Batch, Bytes, CacheBackend, Error, WriteLimit};
use plexcache_sqlite::{DEFAULT_FILE_NAME, SqliteBackend};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn moved_aside(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains(".corrupt-"))
        .collect()
}

fn batch(round: u64, n: usize, len: usize) -> Batch {
    Batch::of(
        round,
        None,
        (0..n).map(|i| (format!("r{round}-{i:04}"), Bytes::from(vec![7u8; len]))),
    )
}

/// While one backend keeps growing the database and checkpointing it into the file (the file
/// grows, its header changes, the WAL is truncated), other backends open the same file with
/// `recover_corrupt(true)` over and over: none reports it damaged, none moves it aside.
#[test]
fn a_database_being_checkpointed_is_never_called_damaged() {
    let dir = tempfile::tempdir().unwrap();
    let writer = SqliteBackend::open(dir.path()).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let writing = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            rt().block_on(async {
                let mut round = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    round += 1;
                    writer
                        .write_batch(&batch(round, 3, 3000), WriteLimit::UNBOUNDED)
                        .await
                        .unwrap();
                    writer.compact().await.unwrap();
                    if round.is_multiple_of(50) {
                        writer.clear().await.unwrap();
                        writer.compact().await.unwrap();
                    }
                }
                round
            })
        })
    };
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut opens = 0u64;
    let mut failures = Vec::new();
    while Instant::now() < deadline {
        match SqliteBackend::builder(dir.path())
            .recover_corrupt(true)
            .open()
        {
            Ok(b) => drop(b),
            Err(e) => failures.push(e.to_string()),
        }
        opens += 1;
    }
    stop.store(true, Ordering::Relaxed);
    let rounds = writing.join().unwrap();
    assert!(rounds > 10 && opens > 10, "{rounds} rounds, {opens} opens");
    assert!(
        failures.is_empty(),
        "{} of {opens} opens failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(3)]
    );
    assert!(
        moved_aside(dir.path()).is_empty(),
        "a healthy file was moved aside"
    );
}

/// A cache with `n` entries of 1 KB, closed cleanly (no WAL left).
fn filled(dir: &Path, n: usize) -> PathBuf {
    rt().block_on(async {
        let b = SqliteBackend::open(dir).unwrap();
        b.write_batch(&batch(1, n, 1000), WriteLimit::UNBOUNDED)
            .await
            .unwrap();
        b.path().to_path_buf()
    })
}

fn set_len(path: &Path, len: u64) {
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(len)
        .unwrap();
}

fn corrupt_message<T>(r: plexcache_core::Result<T>, what: &str) -> String {
    match r {
        Err(e @ Error::Corrupt { .. }) => e.to_string(),
        Err(e) => panic!("{what}: expected Error::Corrupt, got {e}"),
        Ok(_) => panic!("{what}: expected Error::Corrupt, the open succeeded"),
    }
}

/// A file that looks damaged while another backend has it open is never moved aside, even
/// with `recover_corrupt`: the error says why. Once nobody else holds it, it is.
#[test]
fn a_damaged_file_another_backend_holds_is_never_moved_aside() {
    let dir = tempfile::tempdir().unwrap();
    let path = filled(dir.path(), 500);
    let holder = SqliteBackend::open(dir.path()).unwrap();
    let len = std::fs::metadata(&path).unwrap().len();
    set_len(&path, len / 2);
    let msg = corrupt_message(
        SqliteBackend::builder(dir.path())
            .recover_corrupt(true)
            .open(),
        "held by another backend",
    );
    assert!(msg.contains("truncated"), "{msg}");
    assert!(msg.contains("it is open elsewhere"), "{msg}");
    assert!(moved_aside(dir.path()).is_empty(), "moved a file in use");
    assert_eq!(std::fs::metadata(&path).unwrap().len(), len / 2);
    drop(holder);
    let b = SqliteBackend::builder(dir.path())
        .recover_corrupt(true)
        .open()
        .unwrap();
    assert_eq!(moved_aside(dir.path()).len(), 1, "alone, it is moved aside");
    rt().block_on(async { assert_eq!(b.usage().await.unwrap().entries, 0) });
}

/// A file seen truncated for a moment while another backend has it open (as a checkpoint of
/// another process can make it look) is checked again and opened, not moved aside.
#[test]
fn a_file_that_looks_truncated_for_a_moment_is_checked_again() {
    let dir = tempfile::tempdir().unwrap();
    let path = filled(dir.path(), 500);
    let holder = SqliteBackend::open(dir.path()).unwrap();
    let original = std::fs::read(&path).unwrap();
    let half = original.len() / 2;
    set_len(&path, half as u64);
    let restorer = {
        let path = path.clone();
        std::thread::spawn(move || {
            use std::io::{Seek, SeekFrom, Write};
            std::thread::sleep(Duration::from_millis(30));
            // Write the cut tail back in place: the file never looks empty or new meanwhile.
            let mut f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
            f.seek(SeekFrom::Start(half as u64)).unwrap();
            f.write_all(&original[half..]).unwrap();
        })
    };
    let b = SqliteBackend::builder(dir.path())
        .recover_corrupt(true)
        .open()
        .expect("opened after a second look");
    restorer.join().unwrap();
    assert!(
        moved_aside(dir.path()).is_empty(),
        "a healthy file was moved aside"
    );
    rt().block_on(async { assert_eq!(b.usage().await.unwrap().entries, 500) });
    drop(holder);
}

/// Other applications' SQLite databases: one with its own application id, one with tables
/// and no id (shaped like diskcache's), one in WAL mode, and a truncated one with its own id.
fn foreign_databases(dir: &Path) -> Vec<(&'static str, PathBuf)> {
    let make = |name: &str, sql: &str| {
        let path = dir.join(name);
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(sql).unwrap();
        drop(conn);
        path
    };
    let with_id = make(
        "with-id.db",
        "PRAGMA application_id = 1234567; PRAGMA user_version = 7;
         CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT);
         INSERT INTO notes (body) VALUES ('keep me');",
    );
    let tables_only = make(
        "tables-only.db",
        "CREATE TABLE Settings (key TEXT NOT NULL UNIQUE, value);
         CREATE TABLE Cache (rowid INTEGER PRIMARY KEY, key BLOB, raw INTEGER, value BLOB);
         INSERT INTO Settings VALUES ('count', 0);",
    );
    let wal = make(
        "wal.db",
        "PRAGMA journal_mode = WAL; CREATE TABLE t (x); INSERT INTO t VALUES (1);",
    );
    let truncated = make(
        "truncated.db",
        "PRAGMA application_id = 1234567;
         CREATE TABLE blobs (b BLOB);
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 200)
         INSERT INTO blobs SELECT zeroblob(1000) FROM n;",
    );
    let len = std::fs::metadata(&truncated).unwrap().len();
    set_len(&truncated, len / 2);
    vec![
        ("with-id", with_id),
        ("tables-only", tables_only),
        ("wal", wal),
        ("truncated", truncated),
    ]
}

/// Every file in `dir` with its bytes and mode.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>, u32)> {
    use std::os::unix::fs::PermissionsExt;
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| !p.to_string_lossy().ends_with(".lock"))
        .map(|p| {
            let mode = std::fs::metadata(&p).unwrap().permissions().mode();
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes, mode)
        })
        .collect();
    files.sort();
    files
}

/// Another application's SQLite database is rejected as it was found: byte for byte, mode
/// included, with no file added or moved, whatever the mode and `recover_corrupt`.
#[test]
fn another_applications_database_is_rejected_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let databases = foreign_databases(dir.path());
    for (_, path) in &databases {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let before = snapshot(dir.path());
    for (name, path) in &databases {
        for recover in [false, true] {
            for exclusive in [false, true] {
                let what = format!("{name}, recover {recover}, exclusive {exclusive}");
                let builder = SqliteBackend::builder(path)
                    .recover_corrupt(recover)
                    .lock_wait(Duration::from_millis(100));
                let opened = if exclusive {
                    builder.open_exclusive().map(|_| ())
                } else {
                    builder.open().map(|_| ())
                };
                let msg = corrupt_message(opened, &what);
                if *name == "truncated" {
                    assert!(msg.contains("truncated"), "{what}: {msg}");
                } else {
                    assert!(
                        msg.contains("not a plexcache cache database"),
                        "{what}: {msg}"
                    );
                }
                assert_eq!(snapshot(dir.path()), before, "{what}: files changed");
            }
        }
    }
}

/// A file with no SQLite header at all is nobody's database: `recover_corrupt` still moves it
/// aside (renamed, not rewritten).
#[test]
fn a_file_that_is_no_database_is_still_recovered() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(DEFAULT_FILE_NAME);
    std::fs::write(&path, b"not a database at all\n".repeat(100)).unwrap();
    SqliteBackend::builder(dir.path())
        .recover_corrupt(true)
        .open()
        .unwrap();
    assert_eq!(moved_aside(dir.path()).len(), 1);
}
