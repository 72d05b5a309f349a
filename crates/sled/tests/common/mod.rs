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

/// Opens `path` with plain sled, for tests that plant damage. A backend dropped a moment ago
/// still holds sled's directory lock until its background threads finish, so a lock error is
/// retried for up to 10 s (the same wait the backend applies to itself, made longer for busy
/// CI machines).
pub fn raw_sled_open(path: &std::path::Path) -> sled::Db {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match sled::open(path) {
            Ok(db) => return db,
            Err(sled::Error::Io(e))
                if e.to_string().contains("could not acquire lock")
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => panic!("raw sled open of {}: {e}", path.display()),
        }
    }
}
