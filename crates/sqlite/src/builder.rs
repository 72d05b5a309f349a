//! [`SqliteBuilder`]: where the database lives and how it is opened.

use std::path::{Path, PathBuf};
use std::time::Duration;

use plexcache_core::Result;
use plexcache_core::fskind::{FsChoice, FsInfo};
use plexcache_core::lease::{DEFAULT_LEASE_TIMEOUT, LeaseHolder};

use crate::{ExclusiveSqliteBackend, SqliteBackend};

/// The database file name used when the builder is given a directory.
pub const DEFAULT_FILE_NAME: &str = "plexcache.db";

/// Where blocking SQLite calls run when the backend is used from async code.
///
/// Outside a tokio runtime every call runs inline, whatever the setting.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Offload {
    /// Every call runs on the calling thread (lowest latency; a slow disk or a lock held by
    /// another process stalls the runtime's worker thread). For synchronous programs and
    /// benchmarks.
    Never,
    /// The default: point reads of values up to [`SqliteBuilder::inline_read_limit`] bytes,
    /// usage and stats reads run inline (a few microseconds; in WAL mode they never wait for a
    /// lock); small writes run inline when the writer connection and the database write lock
    /// are free right now, and otherwise wait off the runtime; larger reads and writes, scans,
    /// checkpoints and flushes run off the runtime. "Off the runtime" is `block_in_place` on a
    /// multi-threaded runtime (this thread, after handing the worker's other tasks to another
    /// one) and tokio's blocking pool on a current-thread runtime.
    #[default]
    Auto,
    /// Every call runs off the runtime (see `Auto`).
    Always,
}

/// Builds a [`SqliteBackend`] ([`SqliteBuilder::open`]) or an [`ExclusiveSqliteBackend`]
/// ([`SqliteBuilder::open_exclusive`]); see [`SqliteBackend::builder`].
#[derive(Debug, Clone)]
pub struct SqliteBuilder {
    pub(crate) location: PathBuf,
    pub(crate) max_readers: usize,
    pub(crate) page_cache_bytes: u64,
    pub(crate) busy_timeout: Duration,
    pub(crate) offload: Offload,
    pub(crate) inline_read_limit: u64,
    pub(crate) recover_corrupt: bool,
    pub(crate) mmap_size: u64,
    pub(crate) wal_size_limit: u64,
    pub(crate) checkpoint_pages: u32,
    pub(crate) exclusive: bool,
    pub(crate) commit_interval: Duration,
    pub(crate) lock_wait: Duration,
    pub(crate) max_file_bytes: Option<u64>,
    pub(crate) fs: Option<FsChoice>,
    pub(crate) lease_timeout: Duration,
    pub(crate) lease_wait: Option<Duration>,
    /// Set at open: the database is on a network file system (rollback journal, lease).
    pub(crate) on_share: bool,
}

/// Default reader connections.
pub(crate) const DEFAULT_MAX_READERS: usize = 4;
/// Default page cache per connection.
pub(crate) const DEFAULT_PAGE_CACHE: u64 = 4 * 1024 * 1024;
/// Default WAL auto-checkpoint threshold in pages.
pub(crate) const DEFAULT_CHECKPOINT_PAGES: u32 = 1000;
/// Default inline read limit.
pub(crate) const DEFAULT_INLINE_READ_LIMIT: u64 = 64 * 1024;
/// Default commit interval of the exclusive mode.
pub const DEFAULT_COMMIT_INTERVAL: Duration = Duration::from_millis(100);

impl SqliteBuilder {
    pub(crate) fn new(location: impl Into<PathBuf>) -> Self {
        Self {
            location: location.into(),
            max_readers: DEFAULT_MAX_READERS,
            page_cache_bytes: DEFAULT_PAGE_CACHE,
            busy_timeout: Duration::from_secs(30),
            offload: Offload::Auto,
            inline_read_limit: DEFAULT_INLINE_READ_LIMIT,
            recover_corrupt: false,
            mmap_size: 0,
            wal_size_limit: 32 * 1024 * 1024,
            checkpoint_pages: DEFAULT_CHECKPOINT_PAGES,
            exclusive: false,
            commit_interval: DEFAULT_COMMIT_INTERVAL,
            lock_wait: Duration::from_secs(5),
            max_file_bytes: None,
            fs: None,
            lease_timeout: DEFAULT_LEASE_TIMEOUT,
            lease_wait: None,
            on_share: false,
        }
    }

    /// Reader connections kept open at most (default 4, at least 1). Readers beyond this wait
    /// (asynchronously) for a free connection; the writer connection is always one more.
    pub fn max_readers(mut self, n: usize) -> Self {
        self.max_readers = n.max(1);
        self
    }

    /// Page cache of each connection in bytes (default 4 MiB; SQLite's `cache_size`). The
    /// process holds at most `(max_readers + 1) * page_cache_bytes` of page cache.
    pub fn page_cache_bytes(mut self, bytes: u64) -> Self {
        self.page_cache_bytes = bytes;
        self
    }

    /// How long an operation waits, in total, for locks held by other connections or
    /// processes before it fails (default 30 s). Waits are a SQLite busy handler plus a
    /// retry loop with jittered backoff.
    pub fn busy_timeout(mut self, timeout: Duration) -> Self {
        self.busy_timeout = timeout;
        self
    }

    /// Where blocking calls run (default [`Offload::Auto`]).
    pub fn offload(mut self, offload: Offload) -> Self {
        self.offload = offload;
        self
    }

    /// With [`Offload::Auto`], values up to this many bytes are read inline; larger ones on the
    /// blocking pool (default 64 KiB).
    pub fn inline_read_limit(mut self, bytes: u64) -> Self {
        self.inline_read_limit = bytes;
        self
    }

    /// When the file is damaged, move it aside as `<name>.corrupt-<unix-millis>` (with its
    /// `-wal`), log a warning and start empty, instead of failing with
    /// [`Error::Corrupt`](plexcache_core::Error::Corrupt). Only a file that carries
    /// plexcache's application id, or is no SQLite database at all, is moved, and only while
    /// no other process holds it; another application's SQLite database is rejected unchanged,
    /// and a store written by a newer plexcache is never moved
    /// ([`Error::IncompatibleVersion`](plexcache_core::Error)). Default off.
    pub fn recover_corrupt(mut self, recover: bool) -> Self {
        self.recover_corrupt = recover;
        self
    }

    /// Memory-map up to this many bytes of the database (SQLite's `mmap_size`; default 0 =
    /// off). Faster reads of a warm cache; an I/O error then becomes a signal instead of an
    /// error, so it is off by default.
    pub fn mmap_size(mut self, bytes: u64) -> Self {
        self.mmap_size = bytes;
        self
    }

    /// The WAL file is truncated back to this size after checkpoints (SQLite's
    /// `journal_size_limit`; default 32 MiB).
    pub fn wal_size_limit(mut self, bytes: u64) -> Self {
        self.wal_size_limit = bytes;
        self
    }

    /// The WAL is checkpointed into the database after a commit that leaves it at least this
    /// many pages long (SQLite's `wal_autocheckpoint`; default 1000 pages = 4 MiB).
    pub fn checkpoint_pages(mut self, pages: u32) -> Self {
        self.checkpoint_pages = pages.max(1);
        self
    }

    /// Opens in the exclusive, write-back mode: this process owns the cache.
    ///
    /// * Another process (or another backend in this one) opening the same file gets
    ///   [`Error::InUse`](plexcache_core::Error::InUse) after [`SqliteBuilder::lock_wait`],
    ///   whichever mode it asks for; this one waits the same way for others to close it.
    /// * Writes are grouped: operations run inside one open transaction (an engine error
    ///   during it rolls the whole batch back and says so), which is committed at most [`SqliteBuilder::commit_interval`] after its first
    ///   write (by the next operation or by a background thread), and by
    ///   [`flush`](plexcache_core::CacheBackend::flush) and when the last handle is dropped
    ///   (the drop waits for that commit, deferred rows included, and logs a failure). A
    ///   crash of the process or the machine loses at most that window of acknowledged writes;
    ///   the size limit, counters and everything else hold as in the shared mode.
    /// * The change token is a counter of this backend's writes, so the memory tier of
    ///   [`Cache`](plexcache_core::Cache) serves repeated reads without asking SQLite.
    /// * A value over [`SqliteBuilder::inline_read_limit`] is counted when `put` returns and its
    ///   row written by the background thread (any later operation writes it first), so the
    ///   caller's next work overlaps with it.
    ///
    /// Pick it for a single process that owns its cache (a tool, a server) and wants the
    /// fastest writes; keep the default for caches several processes share. See
    /// `docs/decisions.md` ("The exclusive, write-back SQLite mode").
    ///
    /// Blocking, like [`SqliteBuilder::open`].
    pub fn open_exclusive(self) -> Result<ExclusiveSqliteBackend> {
        ExclusiveSqliteBackend::open_with(self)
    }

    /// In exclusive mode, the longest time an acknowledged write waits to be committed
    /// (default [`DEFAULT_COMMIT_INTERVAL`], 100 ms; at least 1 ms). Longer batches fewer
    /// commits; it is also the window a crash can lose.
    pub fn commit_interval(mut self, interval: Duration) -> Self {
        self.commit_interval = interval.max(Duration::from_millis(1));
        self
    }

    /// How long opening waits for another backend holding the cache in a conflicting mode
    /// (exclusive against anything) before it fails with
    /// [`Error::InUse`](plexcache_core::Error::InUse) (default 5 s).
    pub fn lock_wait(mut self, wait: Duration) -> Self {
        self.lock_wait = wait;
        self
    }

    /// A hard cap on the database file (SQLite's `max_page_count`; default none). A write
    /// that would grow the file past it fails with an error (as on a full disk) and changes
    /// nothing; the size limit of [`Cache`](plexcache_core::Cache) is what normally keeps the
    /// file small, this is a guard for disks shared with other data.
    pub fn max_file_bytes(mut self, bytes: Option<u64>) -> Self {
        self.max_file_bytes = bytes;
        self
    }

    /// What file system the cache is on: [`FsChoice::Auto`] detects it (the default, unless
    /// the `PLEXCACHE_FS` environment variable says otherwise); `Network` or `Local` overrule
    /// detection. On a network file system the cache is opened in the network mode (a lease
    /// file, a rollback journal, its own file name; see `docs/backends.md`, "Where to put a
    /// cache"), and the exclusive mode refuses to open.
    pub fn fs_kind(mut self, choice: FsChoice) -> Self {
        self.fs = Some(choice);
        self
    }

    /// On a network file system, how long the lease may go without renewal before another
    /// machine (or mount) takes it over (default 90 s, more than the attribute cache times of
    /// NFS and sshfs; at least 100 ms). This process stops using the cache, with an error, when
    /// its last renewal is older than half of it.
    pub fn lease_timeout(mut self, timeout: Duration) -> Self {
        self.lease_timeout = timeout;
        self
    }

    /// On a network file system, how long opening waits for a lease held elsewhere that shows
    /// no renewal (default the lease timeout plus two renewal intervals, enough to take over
    /// the lease of a holder that died). A renewal seen meanwhile ends the wait at once with
    /// [`Error::InUse`](plexcache_core::Error::InUse) naming the holder.
    pub fn lease_wait(mut self, wait: Duration) -> Self {
        self.lease_wait = Some(wait);
        self
    }

    /// The database file this builder opens: the location itself if it is an existing file or
    /// ends in `.db`, `.sqlite` or `.sqlite3`, else [`DEFAULT_FILE_NAME`] inside the location
    /// (a directory). On a network file system the name gains `.share` (`plexcache.share.db`),
    /// so that older releases do not open it; this detects the file system (an unknown
    /// `PLEXCACHE_FS` value counts as `auto` here).
    pub fn db_path(&self) -> PathBuf {
        let legacy = resolve(&self.location);
        let mut cfg = self.clone();
        if cfg.fs.is_none() {
            cfg.fs = Some(FsChoice::from_env().ok().flatten().unwrap_or_default());
        }
        crate::share::placement(cfg.fs, &legacy).map_or(legacy, |(_, path)| path)
    }

    /// The file system the cache is on, as opening would see it (see
    /// [`SqliteBuilder::fs_kind`]).
    pub fn detect_fs(&self) -> Result<FsInfo> {
        let legacy = resolve(&self.location);
        crate::share::placement(self.fs, &legacy).map(|(fs, _)| fs)
    }

    /// Who holds the cache's lease on a network file system, read without opening the cache
    /// or taking the lease (for reports in a process the lease refused). `None`: no lease
    /// file (or not on a network file system).
    pub fn lease_holder(&self) -> Result<Option<LeaseHolder>> {
        let legacy = resolve(&self.location);
        let (fs, path) = crate::share::placement(self.fs, &legacy)?;
        if !fs.is_network() {
            return Ok(None);
        }
        plexcache_core::lease::read_holder(&path)
    }

    /// Opens (creating the directory, mode 0700 on unix, and the database if needed).
    ///
    /// This is a blocking call (file system and a short schema check, no scans); from async
    /// code prefer [`SqliteBuilder::open_async`].
    pub fn open(self) -> Result<SqliteBackend> {
        SqliteBackend::open_with(self)
    }

    /// [`SqliteBuilder::open`] on tokio's blocking pool (inline outside a runtime).
    pub async fn open_async(self) -> Result<SqliteBackend> {
        off_runtime(move || self.open()).await
    }

    /// [`SqliteBuilder::open_exclusive`] on tokio's blocking pool (inline outside a runtime).
    pub async fn open_exclusive_async(self) -> Result<ExclusiveSqliteBackend> {
        off_runtime(move || self.open_exclusive()).await
    }
}

/// Runs a blocking open on tokio's blocking pool, or here outside a runtime.
async fn off_runtime<T: Send + 'static>(
    open: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => handle
            .spawn_blocking(open)
            .await
            .map_err(|e| plexcache_core::Error::backend("sqlite", "open", e))?,
        Err(_) => open(),
    }
}

pub(crate) fn resolve(location: &Path) -> PathBuf {
    if location.is_file() {
        return location.to_path_buf();
    }
    if location.is_dir() {
        return location.join(DEFAULT_FILE_NAME);
    }
    let is_file_name = location
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| matches!(e, "db" | "sqlite" | "sqlite3"));
    if is_file_name {
        location.to_path_buf()
    } else {
        location.join(DEFAULT_FILE_NAME)
    }
}
