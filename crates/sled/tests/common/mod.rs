//! Shared test helpers: a conformance factory over temporary directories with real reopen.

#![allow(dead_code, clippy::expect_used, clippy::unwrap_used)]

use std::path::PathBuf;
use std::sync::Mutex;

use plexcache_core::testkit::BackendFactory;
use plexcache_sled::{SledBackend, SledBackendBuilder};

/// Makes each store in its own temporary directory; `reopen` drops the backend (closing sled)
/// and opens the same directory again.
pub struct SledFactory {
    dirs: Mutex<Vec<tempfile::TempDir>>,
    configure: fn(SledBackendBuilder) -> SledBackendBuilder,
}

impl SledFactory {
    pub fn new() -> Self {
        Self::with(|b| b)
    }

    pub fn with(configure: fn(SledBackendBuilder) -> SledBackendBuilder) -> Self {
        Self {
            dirs: Mutex::new(Vec::new()),
            configure,
        }
    }

    pub fn open(&self, path: PathBuf) -> SledBackend {
        (self.configure)(SledBackend::builder(path))
            .open()
            .expect("open sled backend")
    }
}

#[plexcache_core::async_trait]
impl BackendFactory for SledFactory {
    type Backend = SledBackend;

    async fn create(&self) -> SledBackend {
        let dir = tempfile::tempdir().expect("tempdir");
        let backend = self.open(dir.path().join("cache"));
        self.dirs.lock().unwrap().push(dir);
        backend
    }

    async fn reopen(&self, backend: SledBackend) -> Option<SledBackend> {
        let path = backend.path().to_path_buf();
        drop(backend);
        let reopened = self.open(path);
        assert!(
            reopened.open_info().recount.is_none(),
            "a clean close must not need a recount"
        );
        Some(reopened)
    }
}

/// A temporary directory and a cache path inside it.
pub fn temp_cache() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("cache");
    (dir, path)
}
