//! Opening a damaged SQLite cache file: any bytes as `plexcache.db` give an error or a cache
//! that answers (reads, a write, a listing) without a panic, with and without
//! `recover_corrupt`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use plexcache_core::{Bytes, CacheBackend, WriteLimit};
use plexcache_sqlite::SqliteBackend;

fuzz_target!(|data: &[u8]| {
    let Ok(dir) = tempfile::tempdir() else { return };
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    for recover in [false, true] {
        let cache_dir = dir.path().join(if recover { "r" } else { "p" });
        if std::fs::create_dir(&cache_dir).is_err()
            || std::fs::write(cache_dir.join("plexcache.db"), data).is_err()
        {
            return;
        }
        let Ok(b) = SqliteBackend::builder(&cache_dir)
            .recover_corrupt(recover)
            .open()
        else {
            continue;
        };
        rt.block_on(async {
            let _ = b.usage().await;
            let _ = b.get("library:Movies:all", 0).await;
            let _ = b.keys("", 0, 100).await;
            let _ = b
                .put(
                    "k",
                    Bytes::from_static(b"v"),
                    1,
                    None,
                    WriteLimit::UNBOUNDED,
                )
                .await;
            let _ = b.get("k", 0).await;
            let _ = b.purge_expired(u64::MAX, 10).await;
        });
    }
});
