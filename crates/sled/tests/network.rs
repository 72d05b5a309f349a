//! sled refuses a directory on a network file system (declared one here with `fs_kind`).
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use plexcache_core::Error;
use plexcache_sled::{FsChoice, SledBackend};

#[test]
fn refuses_a_network_file_system_and_says_what_to_use() {
    let dir = tempfile::tempdir().unwrap();
    let cache_dir = dir.path().join("cache");
    let err = SledBackend::builder(&cache_dir)
        .fs_kind(FsChoice::Network)
        .open()
        .unwrap_err();
    assert!(matches!(err, Error::NetworkFileSystem { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("local disk") && msg.contains("Redis") && msg.contains("SQLite"),
        "{msg}"
    );
    assert!(!cache_dir.exists(), "nothing is created");
    let backend = SledBackend::builder(&cache_dir)
        .fs_kind(FsChoice::Local)
        .open()
        .unwrap();
    let info = plexcache_core::CacheBackend::storage_info(&backend).unwrap();
    assert_eq!(info.fs.kind, plexcache_core::fskind::FsKind::Local);
}
