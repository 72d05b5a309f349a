//! Shared test helpers: a conformance factory over temporary directories, and filling a
//! capped database.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Mutex;

use plexcache_core::WriteLimit;
use plexcache_core::testkit::BackendFactory;
use plexcache_core::{Bytes, CacheBackend, Error};
use plexcache_sqlite::{Offload, SqliteBackend, SqliteBuilder};
use tempfile::TempDir;

/// Makes a backend per call, each in its own temporary directory (kept until the factory is
/// dropped); `reopen` drops the backend and opens the same file again.
pub struct SqliteFactory {
    offload: Offload,
    configure: fn(SqliteBuilder) -> SqliteBuilder,
    dirs: Mutex<Vec<TempDir>>,
}

impl SqliteFactory {
    pub fn new(offload: Offload) -> Self {
        Self::with(offload, |b| b)
    }

    /// Backends built with `configure` applied to the builder (on create and on reopen).
    pub fn with(offload: Offload, configure: fn(SqliteBuilder) -> SqliteBuilder) -> Self {
        Self {
            offload,
            configure,
            dirs: Mutex::new(Vec::new()),
        }
    }
}

#[plexcache_core::async_trait]
impl BackendFactory for SqliteFactory {
    type Backend = SqliteBackend;

    async fn create(&self) -> SqliteBackend {
        let dir = tempfile::tempdir().expect("tempdir");
        let backend = (self.configure)(SqliteBackend::builder(dir.path().join("cache")))
            .offload(self.offload)
            .open_async()
            .await
            .expect("open");
        self.dirs.lock().unwrap().push(dir);
        backend
    }

    async fn reopen(&self, backend: SqliteBackend) -> Option<SqliteBackend> {
        let path = backend.path().to_path_buf();
        drop(backend);
        Some(
            (self.configure)(SqliteBackend::builder(path))
                .offload(self.offload)
                .open_async()
                .await
                .expect("reopen"),
        )
    }
}

/// Puts 2,000-byte values under `fill-NNNNNN` keys into a capped database until a write fails
/// like on a full disk; returns how many puts succeeded and the error.
pub async fn fill_until_full(b: &SqliteBackend) -> (usize, Error) {
    for i in 0..100_000 {
        let key = format!("fill-{i:06}");
        if let Err(e) = b
            .put(
                &key,
                Bytes::from(vec![7u8; 2000]),
                1,
                None,
                WriteLimit::UNBOUNDED,
            )
            .await
        {
            return (i, e);
        }
    }
    panic!("the capped database never filled up");
}
