//! The network-file-system mode, on a local directory declared a network one
//! (`fs_kind(FsChoice::Network)`): the lease, the rollback journal, the file name, the
//! conversion of an older WAL cache, and the refusal of the exclusive mode. Real network
//! mounts (sshfs) are tested in `tests/tests/shares.rs`.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use plexcache_core::{Cache, CacheBackend, Error};
use plexcache_sqlite::{FsChoice, SqliteBackend};

fn network(dir: &std::path::Path) -> plexcache_sqlite::SqliteBuilder {
    SqliteBackend::builder(dir).fs_kind(FsChoice::Network)
}

/// The conformance suite in the network mode (rollback journal, lease checks).
mod conformance {
    plexcache_core::conformance_tests!(crate::common::SqliteFactory::with(
        plexcache_sqlite::Offload::Auto,
        |b| b.fs_kind(plexcache_sqlite::FsChoice::Network)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opens_with_a_lease_a_rollback_journal_and_its_own_name() {
    let dir = tempfile::tempdir().unwrap();
    let builder = network(dir.path());
    assert_eq!(builder.db_path(), dir.path().join("plexcache.share.db"));
    let backend = builder.open().unwrap();
    assert_eq!(backend.path(), dir.path().join("plexcache.share.db"));
    let info = backend.storage_info();
    assert!(info.fs.is_network());
    assert!(info.mode.contains("lease"), "{}", info.mode);
    let lease = info.lease.expect("a lease");
    assert!(lease.valid);
    let cache = Cache::new(backend.clone());
    cache.set("k", &"v".to_string()).await.unwrap();
    assert_eq!(
        cache.get::<String>("k").await.unwrap().as_deref(),
        Some("v")
    );
    cache.flush().await.unwrap();
    let lease_file = dir.path().join("plexcache.share.db.lease");
    assert!(lease_file.exists());
    assert!(
        !dir.path().join("plexcache.share.db-wal").exists(),
        "no WAL on a share"
    );
    assert!(!dir.path().join("plexcache.db").exists());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&lease_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let stats = cache.stats().await.unwrap();
    assert!(stats.storage.unwrap().lease.is_some());
    drop(cache);
    drop(backend);
    assert!(
        plexcache_core::lease::read_holder(&dir.path().join("plexcache.share.db"))
            .unwrap()
            .is_none(),
        "the last process releases the lease"
    );
}

#[test]
fn the_exclusive_mode_and_sled_refuse_a_network_file_system() {
    let dir = tempfile::tempdir().unwrap();
    let err = network(dir.path()).open_exclusive().unwrap_err();
    assert!(matches!(err, Error::NetworkFileSystem { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("Redis") && msg.contains("local disk"), "{msg}");
    assert!(!dir.path().join("plexcache.db").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_wal_cache_is_converted_when_the_lease_is_taken() {
    let dir = tempfile::tempdir().unwrap();
    {
        let local = SqliteBackend::builder(dir.path())
            .fs_kind(FsChoice::Local)
            .open()
            .unwrap();
        let cache = Cache::new(local);
        cache.set("old", &"entry".to_string()).await.unwrap();
        cache.flush().await.unwrap();
    }
    assert!(dir.path().join("plexcache.db").exists());
    let backend = network(dir.path()).open().unwrap();
    assert!(!dir.path().join("plexcache.db").exists(), "renamed");
    assert!(!dir.path().join("plexcache.db-wal").exists());
    let cache = Cache::new(backend);
    assert_eq!(
        cache.get::<String>("old").await.unwrap().as_deref(),
        Some("entry")
    );
    assert!(cache.check().await.unwrap().is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_taken_over_stops_every_use_reads_included() {
    let dir = tempfile::tempdir().unwrap();
    let backend = network(dir.path())
        .lease_timeout(Duration::from_millis(900))
        .open()
        .unwrap();
    backend
        .put(
            "k",
            plexcache_core::Bytes::from_static(b"v"),
            1,
            None,
            plexcache_core::WriteLimit::UNBOUNDED,
        )
        .await
        .unwrap();
    // Another domain's lease replaces this one (as a takeover after a long pause would).
    let lease = dir.path().join("plexcache.share.db.lease");
    std::fs::write(
        &lease,
        "plexcache-lease 1\ndomain other-boot/0:99\nhost nas-client\nmount /mnt/other\npid 1\nsince 0\nrenewals 0\nrenewed 0\nend .\n",
    )
    .unwrap();
    // The next renewal (every tenth of a second here) finds it.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let err = backend.get("k", 2).await.unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("taken over") && msg.contains("/mnt/other"),
        "{msg}"
    );
    assert!(backend.usage().await.is_err());
    assert!(backend.keys("", 2, 10).await.is_err());
    assert!(backend.remove("k").await.is_err());
    drop(backend);
    assert!(lease.exists(), "another domain's lease is left alone");
}

#[test]
fn a_damaged_database_on_a_share_is_moved_aside_under_the_lease() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("plexcache.share.db");
    std::fs::write(
        &db,
        b"this is not a database, and it is long enough to be one",
    )
    .unwrap();
    let err = network(dir.path()).open().unwrap_err();
    assert!(err.is_corrupt(), "{err}");
    let backend = network(dir.path()).recover_corrupt(true).open().unwrap();
    drop(backend);
    let moved = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .any(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("plexcache.share.db.corrupt-")
        });
    assert!(moved, "moved aside");
}
