//! The database and its `-wal` and `-shm` files are private to their owner (0600), like the
//! cache directory (0700): new ones whatever the umask leaves, and ones an older release made
//! 0644 once the cache is opened again.
#![cfg(unix)]
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use plexcache_core::WriteLimit;
use plexcache_core::{Bytes, CacheBackend};
use plexcache_sqlite::SqliteBackend;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn mode(path: &Path) -> String {
    let mode = std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode();
    format!("{:o}", mode & 0o777)
}

fn with_suffix(db: &Path, suffix: &str) -> PathBuf {
    let mut s = db.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Writes an entry, so that the WAL (and in the shared mode its index) is in use.
fn write(backend: &impl CacheBackend) {
    rt().block_on(async {
        backend
            .put(
                "k",
                Bytes::from_static(b"value"),
                1_000,
                None,
                WriteLimit::UNBOUNDED,
            )
            .await
            .unwrap();
    });
}

/// The files of a database in use, with their modes.
fn modes(db: &Path, exclusive: bool) -> Vec<(String, String)> {
    let mut suffixes = vec!["", "-wal"];
    if !exclusive {
        suffixes.push("-shm");
    }
    suffixes
        .into_iter()
        .map(|s| (format!("plexcache.db{s}"), mode(&with_suffix(db, s))))
        .collect()
}

fn all_private(db: &Path, exclusive: bool) -> Vec<(String, String)> {
    modes(db, exclusive)
        .into_iter()
        .map(|(name, _)| (name, "600".to_owned()))
        .collect()
}

#[test]
fn a_new_database_and_its_wal_files_are_private() {
    for exclusive in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let cache_dir = dir.path().join("cache");
        let builder = SqliteBackend::builder(&cache_dir);
        let (backend, db): (Box<dyn CacheBackend>, _) = if exclusive {
            let b = builder.open_exclusive().unwrap();
            let db = b.path().to_path_buf();
            (Box::new(b), db)
        } else {
            let b = builder.open().unwrap();
            let db = b.path().to_path_buf();
            (Box::new(b), db)
        };
        write(&backend);
        assert_eq!(mode(&cache_dir), "700");
        assert_eq!(
            modes(&db, exclusive),
            all_private(&db, exclusive),
            "exclusive: {exclusive}"
        );
        drop(backend);
        assert_eq!(mode(&db), "600", "exclusive: {exclusive}");
    }
}

#[test]
fn files_left_world_readable_by_an_older_release_are_made_private() {
    let dir = tempfile::tempdir().unwrap();
    let backend = SqliteBackend::open(dir.path()).unwrap();
    write(&backend);
    let db = backend.path().to_path_buf();
    // As an older release left them: 0644, open, with a -wal and -shm beside the database.
    for suffix in ["", "-wal", "-shm"] {
        std::fs::set_permissions(
            with_suffix(&db, suffix),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
    }
    // A second backend on the same database (another process would do the same).
    let second = SqliteBackend::open(dir.path()).unwrap();
    write(&second);
    assert_eq!(modes(&db, false), all_private(&db, false));
    drop(second);
    drop(backend);

    // Closed and reopened: SQLite makes new -wal and -shm files with the database's mode.
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
    let backend = SqliteBackend::open(dir.path()).unwrap();
    write(&backend);
    assert_eq!(modes(&db, false), all_private(&db, false));
}
