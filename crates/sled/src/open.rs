//! Opening a cache directory: the builder, the directory lock, panic containment, and
//! recovery from a damaged directory.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use plexcache_core::fskind::{FS_ENV, FsChoice, FsInfo};
use plexcache_core::{Error, Result};

use crate::SledBackend;
use crate::guard::LockFile;
use crate::store::{Store, StoreConfig};

/// Default bound on sled's page cache: 64 MiB.
pub const DEFAULT_CACHE_CAPACITY: u64 = 64 * 1024 * 1024;
/// Default interval of sled's background flush: 500 ms.
pub const DEFAULT_FLUSH_EVERY: Duration = Duration::from_millis(500);
/// Default threshold above which a value is stored in its own tree: 4 KiB.
pub const DEFAULT_SEPARATE_VALUES_OVER: usize = 4 * 1024;

/// Builds a [`SledBackend`]; see [`SledBackend::builder`].
#[derive(Debug, Clone)]
pub struct SledBackendBuilder {
    pub(crate) dir: PathBuf,
    pub(crate) cache_capacity: u64,
    pub(crate) flush_every: Option<Duration>,
    pub(crate) recover_corrupt: bool,
    pub(crate) spawn_blocking: bool,
    pub(crate) separate_values_over: usize,
    pub(crate) lock_wait: Duration,
    pub(crate) fs: Option<FsChoice>,
}

impl SledBackendBuilder {
    pub(crate) fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            cache_capacity: DEFAULT_CACHE_CAPACITY,
            flush_every: Some(DEFAULT_FLUSH_EVERY),
            recover_corrupt: false,
            spawn_blocking: false,
            separate_values_over: DEFAULT_SEPARATE_VALUES_OVER,
            lock_wait: Duration::from_secs(5),
            fs: None,
        }
    }

    /// Upper bound, in bytes, on sled's in-memory page cache. Default 64 MiB (sled's own
    /// default is 1 GiB).
    pub fn cache_capacity(mut self, bytes: u64) -> Self {
        self.cache_capacity = bytes;
        self
    }

    /// How often sled writes and fsyncs its log in the background. Writes acknowledged since
    /// the last flush are lost if the process or machine dies, so this is the durability window
    /// (call [`Cache::flush`](plexcache_core::Cache::flush) to close it). `None` turns the
    /// background flush off: only explicit flushes and a clean close make writes durable.
    /// Default 500 ms.
    pub fn flush_every(mut self, every: Option<Duration>) -> Self {
        self.flush_every = every;
        self
    }

    /// When the directory is damaged (opening it fails with [`Error::Corrupt`]), move it
    /// aside to `<dir>.corrupt-<unix millis>` and start an empty cache, with a warning log,
    /// instead of failing. Default off.
    pub fn recover_corrupt(mut self, recover: bool) -> Self {
        self.recover_corrupt = recover;
        self
    }

    /// Run each sled call off the runtime (`block_in_place` on a multi-threaded runtime,
    /// tokio's blocking pool on a current-thread one; see
    /// [`plexcache_core::blocking::off_runtime`]) instead of inline in the calling task.
    /// Default off: sled answers from memory in microseconds (see `docs/backends.md`, sled
    /// section). Turn it on when the
    /// cache is much larger than [`cache_capacity`](Self::cache_capacity), so reads often go
    /// to disk. Outside a tokio runtime calls always run inline.
    pub fn spawn_blocking(mut self, offload: bool) -> Self {
        self.spawn_blocking = offload;
        self
    }

    /// Values longer than this many bytes are stored in a tree of their own, so that
    /// recording reads (LRU/LFU) and listing keys do not rewrite or load them. Default 4 KiB.
    /// A tuning knob; reads of such values do one more lookup.
    pub fn separate_values_over(mut self, bytes: usize) -> Self {
        self.separate_values_over = bytes;
        self
    }

    /// How long to wait for sled's own directory lock once plexcache's lock is held (a
    /// database dropped a moment ago in this process may still be releasing it). Default
    /// 5 s; then the open fails with [`Error::InUse`].
    pub fn lock_wait(mut self, wait: Duration) -> Self {
        self.lock_wait = wait;
        self
    }

    /// What file system the directory is on: [`FsChoice::Auto`] detects it (the default,
    /// unless the `PLEXCACHE_FS` environment variable says otherwise); `Network` or `Local`
    /// overrule detection. sled refuses to open on a network file system.
    pub fn fs_kind(mut self, choice: FsChoice) -> Self {
        self.fs = Some(choice);
        self
    }

    /// Opens (or creates) the cache.
    ///
    /// # Errors
    ///
    /// - [`Error::InUse`] when another process (or another `SledBackend` in this process)
    ///   has the directory open;
    /// - [`Error::Corrupt`], naming the path, when the directory is damaged or is not a sled
    ///   cache (unless [`recover_corrupt`](Self::recover_corrupt) is on);
    /// - [`Error::IncompatibleVersion`] when a newer plexcache wrote it;
    /// - [`Error::Io`] when the directory cannot be created or read;
    /// - [`Error::NetworkFileSystem`] when the directory is on a network file system: sled's
    ///   directory lock is an advisory lock that other mounts of a share do not see.
    pub fn open(self) -> Result<SledBackend> {
        let started = Instant::now();
        let fs = refuse_network(&self.dir, self.fs)?;
        let (store, recovered_from) = match self.open_once() {
            Ok(store) => (store, None),
            Err((e, lock)) if e.is_corrupt() && self.recover_corrupt => {
                let aside = move_aside(&self.dir, lock)?;
                tracing::warn!(
                    path = %self.dir.display(),
                    moved_to = %aside.display(),
                    error = %e,
                    "sled cache directory is damaged; moved it aside and starting an empty cache"
                );
                let store = self.open_once().map_err(|(e, _)| e)?;
                (store, Some(aside))
            }
            Err((e, _)) => return Err(e),
        };
        let mut info = store.info.clone();
        info.open_time = started.elapsed();
        info.recovered_from = recovered_from;
        info.fs = Some(fs);
        tracing::debug!(path = %self.dir.display(), took = ?info.open_time, "opened sled cache");
        Ok(SledBackend::from_store(store, info, self.spawn_blocking))
    }

    fn open_once(&self) -> std::result::Result<Store, (Error, Option<LockFile>)> {
        prepare_dir(&self.dir).map_err(|e| (e, None))?;
        let lock = LockFile::acquire(&self.dir).map_err(|e| (e, None))?;
        let cfg = StoreConfig {
            dir: self.dir.clone(),
            cache_capacity: self.cache_capacity,
            flush_every: self.flush_every,
            separate_values_over: self.separate_values_over,
            lock_wait: self.lock_wait,
        };
        Store::open(&cfg, lock)
    }
}

/// Refuses a directory on a network file system (see [`SledBackendBuilder::open`]).
fn refuse_network(dir: &Path, choice: Option<FsChoice>) -> Result<FsInfo> {
    let fs = plexcache_core::fskind::detect(dir, choice)?;
    if !fs.is_network() {
        return Ok(fs);
    }
    Err(Error::NetworkFileSystem {
        path: dir.to_path_buf(),
        detail: format!(
            "the sled backend cannot run on a network file system ({}): its directory lock is an advisory lock that other mounts of the share do not see, so two machines could open it at once and destroy it. Put the cache on a local disk, use the SQLite backend (it takes a lease on a share used by one machine at a time), or the Redis backend to share a cache between machines. Override the detection with `fs_kind`, {FS_ENV} or --fs if it is wrong",
            fs.describe()
        ),
    })
}

/// Creates the directory (0700 on unix) if needed; an existing non-directory is corrupt.
fn prepare_dir(dir: &Path) -> Result<()> {
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(Error::Corrupt {
            path: dir.to_path_buf(),
            detail: "exists and is not a directory, so it cannot hold a sled cache".into(),
            source: None,
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            plexcache_core::fs::create_private_dir(dir)
        }
        Err(e) => Err(Error::io(dir, "reading the cache directory", e)),
    }
}

/// Renames a damaged directory to `<dir>.corrupt-<unix millis>` (plus `-N` if taken). The
/// lock is held across the rename where the OS allows it (unix), so that two processes
/// recovering at once do not move each other's fresh directory.
fn move_aside(dir: &Path, lock: Option<LockFile>) -> Result<PathBuf> {
    #[cfg(not(unix))]
    drop(lock);
    let aside = plexcache_core::fs::move_aside(dir, "cache")?;
    #[cfg(unix)]
    drop(lock);
    Ok(aside)
}
