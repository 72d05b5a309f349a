//! Shared test helpers: a conformance factory over temporary directories, and filling a
//! capped database.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Mutex;

use plexcache_core::WriteLimit;
use plexcache_core::testkit::BackendFactory;
use plexcache_core::{Bytes, CacheBackend, Error};
use plexcache_sqlite::{ExclusiveSqliteBackend, Offload, SqliteBackend, SqliteBuilder};
use tempfile::TempDir;

/// A SQLite backend type the factory can open: the shared mode or the exclusive one.
pub trait Mode: CacheBackend + Sized + 'static {
    fn open_with(builder: SqliteBuilder) -> plexcache_core::Result<Self>;
    fn db_path(&self) -> std::path::PathBuf;
}

impl Mode for SqliteBackend {
    fn open_with(builder: SqliteBuilder) -> plexcache_core::Result<Self> {
        builder.open()
    }
    fn db_path(&self) -> std::path::PathBuf {
        self.path().to_path_buf()
    }
}

impl Mode for ExclusiveSqliteBackend {
    fn open_with(builder: SqliteBuilder) -> plexcache_core::Result<Self> {
        builder.open_exclusive()
    }
    fn db_path(&self) -> std::path::PathBuf {
        self.path().to_path_buf()
    }
}

/// Makes a backend per call, each in its own temporary directory (kept until the factory is
/// dropped); `reopen` drops the backend and opens the same file again.
pub struct SqliteFactory<B = SqliteBackend> {
    offload: Offload,
    configure: fn(SqliteBuilder) -> SqliteBuilder,
    dirs: Mutex<Vec<TempDir>>,
    mode: std::marker::PhantomData<fn() -> B>,
}

impl SqliteFactory<SqliteBackend> {
    pub fn new(offload: Offload) -> Self {
        Self::with(offload, |b| b)
    }

    /// Backends built with `configure` applied to the builder (on create and on reopen).
    pub fn with(offload: Offload, configure: fn(SqliteBuilder) -> SqliteBuilder) -> Self {
        SqliteFactory::of_mode(offload, configure)
    }
}

impl<B: Mode> SqliteFactory<B> {
    /// Backends of mode `B` built with `configure` applied to the builder.
    pub fn of_mode(offload: Offload, configure: fn(SqliteBuilder) -> SqliteBuilder) -> Self {
        Self {
            offload,
            configure,
            dirs: Mutex::new(Vec::new()),
            mode: std::marker::PhantomData,
        }
    }

    async fn open(&self, location: std::path::PathBuf) -> B {
        let builder = (self.configure)(SqliteBackend::builder(location)).offload(self.offload);
        tokio::task::spawn_blocking(move || B::open_with(builder))
            .await
            .expect("open task")
            .expect("open")
    }
}

#[plexcache_core::async_trait]
impl<B: Mode> BackendFactory for SqliteFactory<B> {
    type Backend = B;

    async fn create(&self) -> B {
        let dir = tempfile::tempdir().expect("tempdir");
        let backend = self.open(dir.path().join("cache")).await;
        self.dirs.lock().unwrap().push(dir);
        backend
    }

    async fn reopen(&self, backend: B) -> Option<B> {
        let path = backend.db_path();
        drop(backend);
        Some(self.open(path).await)
    }
}

/// Puts 2,000-byte values under `fill-NNNNNN` keys into a capped database until a write fails
/// like on a full disk; returns how many puts succeeded and the error.
pub async fn fill_until_full<B: CacheBackend>(b: &B) -> (usize, Error) {
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
