//! [`SqliteBackend`]: the connection pool and the async [`CacheBackend`] implementation.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use plexcache_core::{
    Access, Batch, BatchOutcome, Bytes, CacheBackend, Counters, Entry, EntryMeta, Error,
    EvictionPolicy, Millis, PutOutcome, Removed, Result, Revalidated, Usage, WriteLimit,
    async_trait,
};
use rusqlite::Connection;
use tokio::sync::Semaphore;

use crate::builder::{Offload, SqliteBuilder};
use crate::schema::{connect, open_or_recover, wal_path};
use crate::store::{self, Checked, Ctx, Fetched, NAME, classify, is_busy};

/// The SQLite backend (see the [crate documentation](crate)). Cheap to clone: clones share
/// the connections.
#[derive(Clone)]
pub struct SqliteBackend {
    /// Exclusive mode: stops the commit thread and has it commit the open batch when the last
    /// handle is dropped. Declared before `inner`, so that it runs while `inner` still exists.
    closer: Option<Arc<Closer>>,
    inner: Arc<Inner>,
}

/// Exclusive mode: owned by the handles (never by internal jobs or the commit thread), so its
/// drop is the drop of the last handle. It stops the commit thread and waits for it: the
/// thread commits the open batch, writing deferred rows first, before the drop returns. So a
/// program that drops its cache and returns from `main` loses nothing, even when the commit
/// thread held the backend at that moment.
struct Closer {
    thread: Option<std::thread::JoinHandle<()>>,
    stop: Arc<AtomicBool>,
}

impl Drop for Closer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            if thread.join().is_err() {
                tracing::error!(
                    "the SQLite commit thread panicked; writes acknowledged since the last commit may be lost"
                );
            }
        }
    }
}

/// The writer connection's guard with the backend state, for work moved off the runtime. The
/// guard is declared first, so it is released first: when `inner` is the last reference, the
/// drop of [`Inner`] finds the connection free and commits the open batch.
struct Held {
    conn: tokio::sync::OwnedMutexGuard<Connection>,
    inner: Arc<Inner>,
}

struct Inner {
    ctx: Ctx,
    cfg: SqliteBuilder,
    /// The one writer connection; an async mutex, so tasks queue without blocking threads.
    writer: Arc<tokio::sync::Mutex<Connection>>,
    /// Idle reader connections (at most `cfg.max_readers` exist).
    idle: Mutex<Vec<Connection>>,
    /// One permit per reader connection.
    permits: Arc<Semaphore>,
    /// Reader connections open now.
    readers_open: AtomicUsize,
    /// Frames in the WAL after the writer's last commit (from SQLite's WAL hook).
    wal_pages: Arc<AtomicU32>,
    /// Checkpoint when `wal_pages` reaches this.
    next_checkpoint: AtomicU32,
    /// A deferred checkpoint or vacuum is queued on the blocking pool.
    maintenance_queued: AtomicBool,
    /// The LRU/LFU indexes are known to exist (they are built on first need).
    access_indexes: AtomicBool,
    /// The change token: in the shared mode a connection that only asks SQLite's
    /// `data_version` (which moves on every commit of any other connection, this process's
    /// writer included); in the exclusive mode, where no other connection exists and writes
    /// are not committed at once, a counter of this backend's writes.
    watch: Watch,
    /// Exclusive mode: when the open batch transaction began (`None`: no batch is open).
    batch_started: Mutex<Option<Instant>>,
    /// Exclusive mode: why acknowledged writes were lost (a failed batch commit), reported by
    /// the next `flush`.
    lost_batch: Mutex<Option<String>>,
    /// Exclusive mode: the thread that commits batches when they are due and writes deferred
    /// rows.
    committer: OnceLock<std::thread::Thread>,
    /// Exclusive mode: counted `put`s of large values whose rows are not written yet (see
    /// [`Inner::drain`]).
    pending: Mutex<Pending>,
    /// The process lock (`<database>.lock`), held for the backend's life. Declared after the
    /// connections, so that it is released after they are closed.
    _lock: Option<File>,
    /// The file system and, on a network one, the lease, checked before every use of a
    /// connection. Declared last: released after the connections are closed.
    share: crate::share::Share,
}

/// Where the change token comes from (see `Inner::watch`).
enum Watch {
    DataVersion(Mutex<Connection>),
    Writes(AtomicU64),
}

/// Rows of large values counted in the open batch but not written yet, in write order.
#[derive(Default)]
struct Pending {
    rows: Vec<(String, store::PendingRow, Bytes)>,
    bytes: u64,
}

/// Exclusive mode: why a batch is gone when SQLite itself ended its transaction.
const ROLLED_BACK_BY_SQLITE: &str = "SQLite rolled the batch transaction back after an error";

/// Exclusive mode: the most value bytes whose rows may wait for the commit thread; beyond it a
/// large `put` writes its row itself (backpressure).
const DEFERRED_BYTES_LIMIT: u64 = 64 * 1024 * 1024;

impl Drop for Inner {
    /// Exclusive mode: commits what is left when the last reference goes. Normally the commit
    /// thread has committed the batch already (see [`Closer`]); this covers work that ran
    /// after it, such as a job moved off the runtime whose caller was cancelled.
    fn drop(&mut self) {
        if !self.cfg.exclusive {
            return;
        }
        match self.writer.try_lock() {
            Ok(mut conn) => self.close(&mut conn),
            Err(_) => {
                // Not reached: every holder of the connection holds `Inner` too and releases
                // the connection first (see `Held`).
                let pending = self.pending.lock().rows.len();
                if self.batch_started.lock().is_some() || pending > 0 {
                    tracing::error!(
                        path = %self.ctx.path.display(),
                        deferred_rows = pending,
                        "the connection is still in use at close; writes acknowledged since the last commit are lost"
                    );
                }
            }
        }
    }
}

impl std::fmt::Debug for SqliteBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteBackend")
            .field("path", &self.inner.ctx.path)
            .field("offload", &self.inner.cfg.offload)
            .field("max_readers", &self.inner.cfg.max_readers)
            .finish_non_exhaustive()
    }
}

impl Inner {
    fn take_reader(&self) -> Result<Connection> {
        self.share.check()?;
        if let Some(conn) = self.idle.lock().pop() {
            return Ok(conn);
        }
        let conn = self.ctx.retry("open a reader connection", || {
            connect(&self.cfg, &self.ctx.path, true)
        })?;
        self.readers_open.fetch_add(1, Ordering::Relaxed);
        Ok(conn)
    }

    fn checkpoint_due(&self) -> bool {
        self.wal_pages.load(Ordering::Relaxed) >= self.next_checkpoint.load(Ordering::Relaxed)
    }

    /// Runs a passive checkpoint on the writer connection (SQLite's own auto-checkpoint is
    /// replaced by the WAL hook, so that a commit made inline never runs one).
    fn checkpoint(&self, conn: &Connection) {
        let threshold = self.cfg.checkpoint_pages;
        match store::checkpoint(conn, &self.ctx) {
            Ok((log, done)) => {
                let log = u32::try_from(log.max(0)).unwrap_or(u32::MAX);
                // Fully checkpointed: the next writer restarts the WAL. Otherwise (a reader
                // still uses old frames) try again after another `threshold` frames.
                let next = if done >= i64::from(log) {
                    threshold
                } else {
                    log.saturating_add(threshold)
                };
                self.next_checkpoint.store(next, Ordering::Relaxed);
            }
            Err(e) => tracing::debug!(error = %e, "checkpoint failed; will retry later"),
        }
    }

    /// Checkpoint and incremental vacuum when due, on the writer connection (held by the
    /// caller, off the async runtime).
    fn maintenance(&self, conn: &Connection, removed: bool) {
        if self.share.check().is_err() {
            return;
        }
        if self.checkpoint_due() {
            self.checkpoint(conn);
        }
        if removed && let Err(e) = store::maybe_vacuum(conn, &self.ctx) {
            tracing::debug!(error = %e, "incremental vacuum failed; will retry later");
        }
    }

    /// Exclusive mode: runs `f` inside the batch transaction (beginning one if none is open),
    /// so its effects are visible to every later operation at once; the batch is committed
    /// later (see [`Inner::commit_batch`]).
    ///
    /// No savepoint per operation: it cost 4.5 µs of a 10 µs `set` (SQLite copies every page
    /// the operation touches into a sub-journal). The operations' statements fail only on
    /// engine errors (disk full, I/O, damage, out of memory; input that SQLite would refuse
    /// is refused before), and after such an error SQLite may already have rolled the whole
    /// transaction back. So a failed operation rolls the batch back, whatever SQLite did: the
    /// writes acknowledged since the last commit are lost, as in a crash, and the error says
    /// so (also the next `flush`); the database and its counters stay consistent.
    fn batch_op<T>(
        &self,
        conn: &mut Connection,
        what: &str,
        f: &mut impl FnMut(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T> {
        if conn.is_autocommit() {
            let stale = self.batch_started.lock().take().is_some();
            if stale {
                self.batch_lost(ROLLED_BACK_BY_SQLITE);
            }
            self.ctx
                .retry(what, || conn.execute_batch("BEGIN IMMEDIATE"))?;
            *self.batch_started.lock() = Some(Instant::now());
            if let Some(t) = self.committer.get() {
                t.unpark();
            }
        }
        match f(conn) {
            Ok(out) => Ok(out),
            Err(e) => {
                if !conn.is_autocommit() {
                    let _ = conn.execute_batch("ROLLBACK");
                }
                let lost = self.batch_started.lock().take().is_some();
                if lost {
                    self.batch_lost(&format!("{what} failed: {e}"));
                }
                let what = if lost {
                    format!(
                        "{what} (the writes acknowledged since the last commit were rolled back)"
                    )
                } else {
                    what.to_owned()
                };
                Err(classify(&self.ctx.path, &what, e))
            }
        }
    }

    /// Exclusive mode: writes the rows of deferred `put`s, in order. Every use of the writer
    /// connection starts with this (reads included), so no statement ever sees the database
    /// without a row whose `put` has returned; the counters already include them.
    fn drain(&self, conn: &mut Connection) -> Result<()> {
        let rows = {
            let mut p = self.pending.lock();
            if p.rows.is_empty() {
                return Ok(());
            }
            p.bytes = 0;
            std::mem::take(&mut p.rows)
        };
        tracing::trace!(deferred_rows = rows.len(), "writing deferred rows");
        for (key, row, value) in rows {
            if let Err(e) = row.write(conn, &key, &value) {
                if !conn.is_autocommit() {
                    let _ = conn.execute_batch("ROLLBACK");
                }
                self.batch_started.lock().take();
                self.batch_lost(&format!("writing a deferred value failed: {e}"));
                return Err(classify(
                    &self.ctx.path,
                    "write a deferred value (the writes acknowledged since the last commit were rolled back)",
                    e,
                ));
            }
        }
        Ok(())
    }

    /// Exclusive mode: queues the row of a counted `put` for the commit thread.
    fn defer(&self, key: String, row: store::PendingRow, value: Bytes) {
        {
            let mut p = self.pending.lock();
            p.bytes = p.bytes.saturating_add(value.len() as u64);
            p.rows.push((key, row, value));
        }
        if let Some(t) = self.committer.get() {
            t.unpark();
        }
    }

    /// Exclusive mode: whether a value of `len` bytes may be deferred now.
    fn may_defer(&self, len: u64) -> bool {
        self.pending.lock().bytes.saturating_add(len) <= DEFERRED_BYTES_LIMIT
    }

    /// Exclusive mode: whether the open batch is older than the commit interval.
    fn batch_due(&self) -> Option<Duration> {
        let started = (*self.batch_started.lock())?;
        Some(self.cfg.commit_interval.saturating_sub(started.elapsed()))
    }

    /// Exclusive mode: commits the open batch, if any, then checkpoints or vacuums when due.
    fn commit_batch(&self, conn: &mut Connection) -> Result<()> {
        self.drain(conn)?;
        let started = self.batch_started.lock().take();
        if started.is_none() {
            return Ok(());
        }
        if conn.is_autocommit() {
            self.batch_lost(ROLLED_BACK_BY_SQLITE);
            return Ok(());
        }
        match self.ctx.retry("commit", || conn.execute_batch("COMMIT")) {
            Ok(()) => {
                self.maintenance(conn, true);
                Ok(())
            }
            Err(e) => {
                if !conn.is_autocommit() {
                    let _ = conn.execute_batch("ROLLBACK");
                }
                self.batch_lost(&e.to_string());
                Err(e)
            }
        }
    }

    /// Exclusive mode, at close: commits the open batch (deferred rows first); what cannot be
    /// committed is logged as lost.
    fn close(&self, conn: &mut Connection) {
        if let Err(e) = self.commit_batch(conn) {
            tracing::error!(
                path = %self.ctx.path.display(),
                error = %e,
                "the last batch of writes could not be committed at close; it is lost"
            );
        }
    }

    /// Exclusive mode: acknowledged writes of the batch are gone; the next `flush` reports it.
    fn batch_lost(&self, why: &str) {
        tracing::error!(
            path = %self.ctx.path.display(),
            reason = why,
            "writes acknowledged since the last commit were lost"
        );
        self.wrote();
        *self.pending.lock() = Pending::default();
        *self.lost_batch.lock() = Some(why.to_owned());
    }

    /// Exclusive mode: moves the change token (every write calls it while it holds the writer
    /// connection).
    fn wrote(&self) {
        if let Watch::Writes(n) = &self.watch {
            n.fetch_add(1, Ordering::AcqRel);
        }
    }

    fn give_back(&self, conn: Connection) {
        self.idle.lock().push(conn);
    }

    /// Runs a read on a pooled reader connection, on this thread.
    fn read_here<T>(
        &self,
        what: &str,
        mut f: impl FnMut(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T> {
        let conn = self.take_reader()?;
        let out = self.ctx.retry(what, || f(&conn));
        self.give_back(conn);
        out
    }
}

/// SQLite's `SQLITE_MAX_LENGTH` in the bundled build: the longest string or blob it stores.
const SQLITE_MAX_LENGTH: u64 = 1_000_000_000;

fn no_removal<T>(_: &T) -> bool {
    false
}

/// Whether a removal removed something (then a vacuum may be due).
fn removed_some(r: &Removed) -> bool {
    r.entries > 0
}

/// Exclusive mode: commits each batch when it reaches the commit interval. Holds the backend
/// only while it looks or commits. When `stop` is set (the last handle is being dropped, see
/// [`Closer`]) it commits the open batch and ends; it also ends when the backend is gone.
fn commit_loop(weak: &Weak<Inner>, stop: &AtomicBool) {
    loop {
        let Some(inner) = weak.upgrade() else {
            return;
        };
        if stop.load(Ordering::Acquire) {
            let mut conn = inner.writer.blocking_lock();
            inner.close(&mut conn);
            return;
        }
        let due = inner.batch_due();
        let has_pending = !inner.pending.lock().rows.is_empty();
        if has_pending || due.is_some_and(|left| left.is_zero()) {
            let mut conn = inner.writer.blocking_lock();
            let done = inner.drain(&mut conn).and_then(|()| {
                if inner.batch_due().is_some_and(|left| left.is_zero()) {
                    inner.commit_batch(&mut conn)
                } else {
                    Ok(())
                }
            });
            if let Err(e) = done {
                tracing::error!(error = %e, "a batch of writes could not be committed");
            }
            continue;
        }
        let wait = due.unwrap_or(inner.cfg.commit_interval);
        drop(inner);
        std::thread::park_timeout(wait);
    }
}

fn join_error(e: tokio::task::JoinError) -> Error {
    Error::backend(NAME, "a blocking SQLite task failed", e)
}

impl SqliteBackend {
    /// A builder for the database in `dir_or_file`: a directory (the database is
    /// [`DEFAULT_FILE_NAME`](crate::DEFAULT_FILE_NAME) inside it) or a file path ending in
    /// `.db`, `.sqlite` or `.sqlite3` (see [`SqliteBuilder::db_path`]).
    pub fn builder(dir_or_file: impl Into<PathBuf>) -> SqliteBuilder {
        SqliteBuilder::new(dir_or_file)
    }

    /// Opens `dir_or_file` with the default settings.
    pub fn open(dir_or_file: impl Into<PathBuf>) -> Result<Self> {
        Self::builder(dir_or_file).open()
    }

    pub(crate) fn open_with(mut cfg: SqliteBuilder) -> Result<Self> {
        let (path, share) = crate::share::prepare(&mut cfg)?;
        let ctx = Ctx {
            path: path.clone(),
            busy_timeout: cfg.busy_timeout,
        };
        // On a network file system the lease stands in for the lock file.
        let lock = match share.lease {
            Some(_) => None,
            None => crate::lock::acquire(&path, cfg.exclusive, cfg.lock_wait)?,
        };
        // On a share the domain's lock stands in for it (no other process of the domain has
        // the file open when it can be taken exclusively; other domains are kept out by the
        // lease).
        let guard = lock
            .as_ref()
            .or_else(|| share.lease.as_ref().and_then(|l| l.domain_lock()));
        let writer = open_or_recover(&cfg, &ctx, guard)?;
        let mut writer = writer;
        let wal_pages = Arc::new(AtomicU32::new(0));
        let hook_pages = Arc::clone(&wal_pages);
        // Replaces SQLite's auto-checkpoint on this connection: commits only record the WAL
        // length, and checkpoints run where blocking is allowed (see `Inner::maintenance`).
        writer
            .wal_hook(Some(
                move |_: &mut rusqlite::hooks::Wal, pages: std::os::raw::c_int| {
                    hook_pages.store(u32::try_from(pages).unwrap_or(0), Ordering::Relaxed);
                    Ok(())
                },
            ))
            .map_err(|e| classify(&path, "install the WAL hook", e))?;
        let permits = Arc::new(Semaphore::new(cfg.max_readers));
        let next_checkpoint = AtomicU32::new(cfg.checkpoint_pages);
        let watch = if cfg.exclusive {
            Watch::Writes(AtomicU64::new(0))
        } else {
            let conn = ctx.retry("open the change-watch connection", || {
                connect(&cfg, &path, true)
            })?;
            Watch::DataVersion(Mutex::new(conn))
        };
        let exclusive = cfg.exclusive;
        let mut backend = Self {
            closer: None,
            inner: Arc::new(Inner {
                ctx,
                cfg,
                writer: Arc::new(tokio::sync::Mutex::new(writer)),
                idle: Mutex::new(Vec::new()),
                permits,
                readers_open: AtomicUsize::new(0),
                wal_pages,
                next_checkpoint,
                maintenance_queued: AtomicBool::new(false),
                access_indexes: AtomicBool::new(false),
                watch,
                batch_started: Mutex::new(None),
                lost_batch: Mutex::new(None),
                committer: OnceLock::new(),
                pending: Mutex::new(Pending::default()),
                _lock: lock,
                share,
            }),
        };
        if exclusive {
            let weak = Arc::downgrade(&backend.inner);
            let stop = Arc::new(AtomicBool::new(false));
            let thread_stop = Arc::clone(&stop);
            let thread = std::thread::Builder::new()
                .name("plexcache-sqlite-commit".into())
                .spawn(move || commit_loop(&weak, &thread_stop))
                .map_err(|e| Error::io(&path, "starting the commit thread", e))?;
            // Set once, here, before any operation can run: `set` cannot fail.
            let _ = backend.inner.committer.set(thread.thread().clone());
            backend.closer = Some(Arc::new(Closer {
                thread: Some(thread),
                stop,
            }));
        }
        Ok(backend)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.ctx.path
    }

    /// The file system the database is on, the mode chosen for it and, on a network file
    /// system, the lease.
    pub fn storage_info(&self) -> plexcache_core::StorageInfo {
        self.inner.share.info()
    }

    /// Where blocking calls run.
    pub fn offload(&self) -> Offload {
        self.inner.cfg.offload
    }

    /// Connections open now: the writer plus the reader connections opened so far (at most
    /// [`SqliteBuilder::max_readers`]).
    pub fn open_connections(&self) -> usize {
        1 + self.inner.readers_open.load(Ordering::Relaxed)
    }

    fn has_runtime() -> bool {
        tokio::runtime::Handle::try_current().is_ok()
    }

    /// Runs `job` off the runtime when `offload` and a runtime is available, else here. On a
    /// multi-threaded runtime "off the runtime" is `block_in_place`: the job runs on this
    /// thread while the worker's other tasks move to another one, so the caller does not wait
    /// for a hop to the blocking pool and back. A current-thread runtime cannot do that: there
    /// it runs on the blocking pool.
    async fn run<T: Send + 'static>(
        offload: bool,
        job: impl FnOnce() -> Result<T> + Send + 'static,
    ) -> Result<T> {
        if offload && let Ok(handle) = tokio::runtime::Handle::try_current() {
            if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread {
                return tokio::task::block_in_place(job);
            }
            return handle.spawn_blocking(job).await.map_err(join_error)?;
        }
        job()
    }

    /// A read on a pooled reader, inline or on the blocking pool.
    async fn read<T: Send + 'static>(
        &self,
        what: &'static str,
        inline: bool,
        mut f: impl FnMut(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T> {
        if self.inner.cfg.exclusive {
            return self
                .on_writer(inline, move |inner, conn| inner.ctx.retry(what, || f(conn)))
                .await;
        }
        let permit = Arc::clone(&self.inner.permits)
            .acquire_owned()
            .await
            .map_err(|e| Error::backend(NAME, "reader pool closed", e))?;
        let inner = Arc::clone(&self.inner);
        Self::run(!inline, move || {
            let out = inner.read_here(what, f);
            drop(permit);
            out
        })
        .await
    }

    /// A read that is short enough to run inline unless the offload mode is `Always`.
    async fn quick_read<T: Send + 'static>(
        &self,
        what: &'static str,
        mut f: impl FnMut(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T> {
        let inline = self.inner.cfg.offload != Offload::Always || !Self::has_runtime();
        if inline
            && !self.inner.cfg.exclusive
            && let Some(out) = self.read_on_idle_writer(what, &mut f)
        {
            return out;
        }
        self.read(what, inline, f).await
    }

    /// Runs a short read inline on the writer connection if no write holds it. Its page cache
    /// stays valid across this process's writes, while a reader connection's cache is dropped
    /// by SQLite after every commit of another connection; reads go to the reader pool only
    /// while a write is in progress.
    fn read_on_idle_writer<T>(
        &self,
        what: &str,
        f: &mut impl FnMut(&Connection) -> rusqlite::Result<T>,
    ) -> Option<Result<T>> {
        let conn = self.inner.writer.try_lock().ok()?;
        if let Err(e) = self.inner.share.check() {
            return Some(Err(e));
        }
        Some(self.inner.ctx.retry(what, || f(&conn)))
    }

    /// Exclusive mode: runs `f` with the writer connection (the only connection), awaiting it
    /// asynchronously; inline when `inline`, else on the blocking pool.
    async fn on_writer<T: Send + 'static>(
        &self,
        inline: bool,
        f: impl FnOnce(&Inner, &mut Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        if inline || !Self::has_runtime() {
            let mut conn = self.inner.writer.lock().await;
            if !self.drain_off_runtime() {
                self.inner.drain(&mut conn)?;
                return f(&self.inner, &mut conn);
            }
        }
        let held = Held {
            conn: Arc::clone(&self.inner.writer).lock_owned().await,
            inner: Arc::clone(&self.inner),
        };
        Self::run(true, move || {
            let mut held = held;
            held.inner.drain(&mut held.conn)?;
            f(&held.inner, &mut held.conn)
        })
        .await
    }

    /// Exclusive mode: whether deferred rows wait and must be written off the runtime before
    /// the writer connection is used. They are large values: off the runtime unless
    /// everything runs inline anyway. Reads and writes follow the same rule.
    fn drain_off_runtime(&self) -> bool {
        Self::has_runtime()
            && self.inner.cfg.offload != Offload::Never
            && !self.inner.pending.lock().rows.is_empty()
    }

    /// A write on the writer connection (queued on an async mutex), on the blocking pool
    /// unless the offload mode is `Never`; checkpoint and vacuum run after it when due. In
    /// exclusive mode the open batch is committed first: `f` runs outside a transaction.
    async fn write<T: Send + 'static>(
        &self,
        removing: fn(&T) -> bool,
        f: impl FnOnce(&Ctx, &mut Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let held = Held {
            conn: Arc::clone(&self.inner.writer).lock_owned().await,
            inner: Arc::clone(&self.inner),
        };
        let offload = self.inner.cfg.offload != Offload::Never;
        Self::run(offload, move || {
            let mut held = held;
            let Held { conn, inner } = &mut held;
            inner.share.check()?;
            if inner.cfg.exclusive {
                inner.commit_batch(conn)?;
            }
            let out = f(&inner.ctx, conn)?;
            inner.maintenance(conn, removing(&out));
            Ok(out)
        })
        .await
    }

    /// One write transaction. With [`Offload::Auto`], a `small` one (a few rows, values up to
    /// the inline limit) first runs inline if the writer connection is free and the database
    /// write lock can be taken without waiting; otherwise (or if another process holds the
    /// lock) it goes to the blocking pool, where it waits and retries.
    ///
    /// In exclusive mode the transaction runs inside the open batch (see
    /// [`Inner::batch_op`]).
    async fn write_txn<T: Send + 'static>(
        &self,
        what: &'static str,
        small: bool,
        removing: fn(&T) -> bool,
        mut f: impl FnMut(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T> {
        if self.inner.cfg.exclusive {
            let inline = match self.inner.cfg.offload {
                Offload::Never => true,
                Offload::Auto => small,
                Offload::Always => false,
            };
            return self
                .on_writer(inline, move |inner, conn| {
                    let out = inner.batch_op(conn, what, &mut f)?;
                    inner.wrote();
                    // The commit thread sleeps until the batch is due (it was woken when the
                    // batch began), so nothing to signal here.
                    Ok(out)
                })
                .await;
        }
        if small
            && self.inner.cfg.offload == Offload::Auto
            && Self::has_runtime()
            && let Ok(mut conn) = self.inner.writer.try_lock()
        {
            self.inner.share.check()?;
            match self.try_write_now(&mut conn, &mut f) {
                Ok(out) => {
                    let due = self.inner.checkpoint_due();
                    let removed =
                        removing(&out) && store::vacuum_wanted(&conn).ok().flatten().is_some();
                    drop(conn);
                    if due || removed {
                        self.queue_maintenance(removed);
                    }
                    return Ok(out);
                }
                Err(e) if is_busy(&e) => {} // another process writes: wait off the runtime
                Err(e) => return Err(classify(&self.inner.ctx.path, what, e)),
            }
        }
        self.write(removing, move |ctx, conn| ctx.write(conn, what, f))
            .await
    }

    /// Runs `f` in a transaction once, failing at once with `SQLITE_BUSY` instead of waiting.
    fn try_write_now<T>(
        &self,
        conn: &mut Connection,
        f: &mut impl FnMut(&Connection) -> rusqlite::Result<T>,
    ) -> rusqlite::Result<T> {
        conn.busy_timeout(Duration::ZERO)?;
        let out = store::immediate(conn, |tx| f(tx).map(|out| (out, true)));
        let restore = conn.busy_timeout(crate::schema::busy_handler_timeout(&self.inner.cfg));
        let out = out?;
        restore?;
        Ok(out)
    }

    /// Whether this backend has not yet seen the LRU/LFU indexes exist (then the next call
    /// that needs them builds them if missing, in its write transaction).
    fn access_indexes_unknown(&self) -> bool {
        !self.inner.access_indexes.load(Ordering::Acquire)
    }

    /// Records that a committed transaction made sure the indexes exist.
    fn access_indexes_built(&self, built: bool) {
        if built {
            self.inner.access_indexes.store(true, Ordering::Release);
        }
    }

    /// Queues a checkpoint (and a vacuum check) on the blocking pool, once at a time.
    fn queue_maintenance(&self, removed: bool) {
        if self.inner.maintenance_queued.swap(true, Ordering::AcqRel) {
            return;
        }
        let inner = Arc::clone(&self.inner);
        let job = move || {
            let conn = inner.writer.blocking_lock();
            inner.maintenance(&conn, removed);
            drop(conn);
            inner.maintenance_queued.store(false, Ordering::Release);
        };
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn_blocking(job);
            }
            Err(_) => self
                .inner
                .maintenance_queued
                .store(false, Ordering::Release),
        }
    }

    /// Exclusive mode, a large value: counts the `put` in the batch (so the outcome, the
    /// counters and the size limit are exact when it returns), puts the entry in the memory
    /// tier, and leaves writing the row to the commit thread, which does it while the caller
    /// goes on (encoding its next value, say). Any later use of the connection writes it
    /// first ([`Inner::drain`]).
    async fn deferred_put(
        &self,
        key: &str,
        value: Bytes,
        stored_at: Millis,
        expires_at: Option<Millis>,
        limit: WriteLimit,
    ) -> Result<PutOutcome> {
        let key = key.to_owned();
        // The counting is a few row reads and one update: inline unless everything is to run
        // on the blocking pool.
        let inline = self.inner.cfg.offload != Offload::Always;
        self.on_writer(inline, move |inner, conn| {
            let len = value.len();
            let mut count = |tx: &Connection| {
                let (outcome, row) =
                    store::put_counted(tx, &key, len, stored_at, expires_at, limit)?;
                // The row is not written yet; its key is protected like a written one.
                let outcome = store::finish_put(tx, &key, outcome, limit, true)?;
                Ok((outcome, row))
            };
            let (outcome, row) = inner.batch_op(conn, "put", &mut count)?;
            inner.wrote();
            if let Some(row) = row {
                inner.defer(key, row, value);
            }
            Ok(outcome)
        })
        .await
    }

    /// Exclusive mode: a read on the writer connection (the only one), which sees the open
    /// batch.
    async fn exclusive_get(&self, key: &str, now: Millis) -> Result<Option<Entry>> {
        let read = move |inner: &Inner, conn: &Connection, key: &str, limit: u64| {
            inner.ctx.retry("get", || store::get(conn, key, now, limit))
        };
        let offload = self.inner.cfg.offload;
        if offload != Offload::Always || !Self::has_runtime() {
            let limit = match offload {
                Offload::Auto if Self::has_runtime() => self.inner.cfg.inline_read_limit,
                _ => u64::MAX,
            };
            let got = {
                let mut conn = self.inner.writer.lock().await;
                if self.drain_off_runtime() {
                    None
                } else {
                    self.inner.drain(&mut conn)?;
                    Some(read(&self.inner, &conn, key, limit)?)
                }
            };
            match got {
                Some(None) => return Ok(None),
                Some(Some(Fetched::Entry(e))) => return Ok(Some(e)),
                // Too large to read inline, or deferred rows to write first: off the runtime.
                Some(Some(Fetched::TooLargeForInline)) | None => {}
            }
        }
        let key = key.to_owned();
        let got = self
            .on_writer(false, move |inner, conn| read(inner, conn, &key, u64::MAX))
            .await?;
        Ok(match got {
            Some(Fetched::Entry(e)) => Some(e),
            _ => None,
        })
    }

    /// Returns every free page to the file system and truncates the WAL (when no other
    /// connection is reading). Not needed in normal operation: freed pages are reused, and
    /// large removals trigger an incremental vacuum.
    pub async fn compact(&self) -> Result<()> {
        self.write(no_removal, |ctx, conn| {
            ctx.retry("incremental vacuum", || {
                conn.execute_batch("PRAGMA incremental_vacuum;")
            })?;
            ctx.retry("checkpoint", || {
                conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            })
        })
        .await
    }
}

#[async_trait]
impl CacheBackend for SqliteBackend {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn get(&self, key: &str, now: Millis) -> Result<Option<Entry>> {
        if self.inner.cfg.exclusive {
            return self.exclusive_get(key, now).await;
        }
        let offload = self.inner.cfg.offload;
        if offload != Offload::Always || !Self::has_runtime() {
            let limit = match offload {
                Offload::Auto => self.inner.cfg.inline_read_limit,
                _ => u64::MAX,
            };
            let mut read = |conn: &Connection| store::get(conn, key, now, limit);
            let got = match self.read_on_idle_writer("get", &mut read) {
                Some(got) => got,
                None => {
                    let _permit = self
                        .inner
                        .permits
                        .acquire()
                        .await
                        .map_err(|e| Error::backend(NAME, "reader pool closed", e))?;
                    self.inner.read_here("get", read)
                }
            };
            match got? {
                None => return Ok(None),
                Some(Fetched::Entry(e)) => return Ok(Some(e)),
                Some(Fetched::TooLargeForInline) => {}
            }
        }
        let got = self
            .read("get", false, {
                let key = key.to_owned();
                move |conn| store::get(conn, &key, now, u64::MAX)
            })
            .await?;
        Ok(match got {
            Some(Fetched::Entry(e)) => Some(e),
            _ => None,
        })
    }

    async fn get_if_changed(
        &self,
        key: &str,
        now: Millis,
        head: &[u8],
        len: u64,
    ) -> Result<Option<Revalidated>> {
        let limit = self.inner.cfg.inline_read_limit;
        let checked = {
            let head = head.to_vec();
            let key = key.to_owned();
            self.quick_read("get_if_changed", move |conn| {
                store::get_if_changed(conn, &key, now, &head, len, limit)
            })
            .await?
        };
        Ok(match checked {
            Checked::Gone => None,
            Checked::Same(meta) => Some(Revalidated::Same(meta)),
            Checked::Changed(entry) => Some(Revalidated::Changed(entry)),
            Checked::ChangedLarge => self.get(key, now).await?.map(Revalidated::Changed),
        })
    }

    async fn put(
        &self,
        key: &str,
        value: Bytes,
        stored_at: Millis,
        expires_at: Option<Millis>,
        limit: WriteLimit,
    ) -> Result<PutOutcome> {
        // SQLite refuses strings and blobs over its length limit (1e9 bytes in this build):
        // refused here, before any statement runs, so the refusal is never an engine error
        // (which in exclusive mode rolls back the open batch).
        if key.len().max(value.len()) as u64 >= SQLITE_MAX_LENGTH {
            return Err(Error::TooLarge {
                key: plexcache_core::short_key(key),
                size: plexcache_core::backend::entry_size(key, value.len()),
                limit: SQLITE_MAX_LENGTH - 1,
            });
        }
        let small = value.len() as u64 <= self.inner.cfg.inline_read_limit;
        if self.inner.cfg.exclusive
            && !small
            && self.inner.cfg.offload != Offload::Never
            && self.inner.may_defer(value.len() as u64)
        {
            return self
                .deferred_put(key, value, stored_at, expires_at, limit)
                .await;
        }
        let key: Arc<str> = Arc::from(key);
        // The LRU/LFU indexes are built by the first eviction in those orders, which scans
        // the table: never inline on the runtime.
        let build = limit.policy.tracks_access() && self.access_indexes_unknown();
        let out = self
            .write_txn("put", small && !build, no_removal, move |tx| {
                store::put(tx, &key, &value, stored_at, expires_at, limit, build)
            })
            .await?;
        self.access_indexes_built(
            build && matches!(out, PutOutcome::Stored { evicted, .. } if evicted.entries > 0),
        );
        Ok(out)
    }

    async fn write_batch(&self, batch: &Batch, limit: WriteLimit) -> Result<BatchOutcome> {
        if let Some(put) = batch
            .puts
            .iter()
            .find(|p| p.key.len().max(p.value.len()) as u64 >= SQLITE_MAX_LENGTH)
        {
            return Err(Error::TooLarge {
                key: plexcache_core::short_key(&put.key),
                size: plexcache_core::backend::entry_size(&put.key, put.value.len()),
                limit: SQLITE_MAX_LENGTH - 1,
            });
        }
        let batch = batch.clone();
        let inner = Arc::clone(&self.inner);
        self.write(
            |o: &BatchOutcome| matches!(o, BatchOutcome::Applied { removed, .. } if removed.entries > 0),
            move |ctx, conn| {
                let out = ctx.write_or_rollback(conn, "write_batch", |tx| {
                    store::write_batch(tx, &batch, limit)
                })?;
                inner.wrote();
                Ok(out)
            },
        )
        .await
    }

    fn change_token(&self) -> Option<u64> {
        match &self.inner.watch {
            Watch::Writes(n) => Some(n.load(Ordering::Acquire)),
            Watch::DataVersion(conn) => {
                self.inner.share.check().ok()?;
                let conn = conn.lock();
                conn.prepare_cached("PRAGMA data_version")
                    .and_then(|mut stmt| stmt.query_row([], |r| r.get::<_, i64>(0)))
                    .ok()
                    .map(|v| v as u64)
            }
        }
    }

    async fn remove(&self, key: &str) -> Result<Option<EntryMeta>> {
        let key: Arc<str> = Arc::from(key);
        self.write_txn("remove", true, Option::is_some, move |tx| {
            store::remove(tx, &key)
        })
        .await
    }

    async fn remove_prefix(&self, prefix: &str) -> Result<Removed> {
        let prefix: Arc<str> = Arc::from(prefix);
        self.write_txn("remove_prefix", false, removed_some, move |tx| {
            store::remove_prefix(tx, &prefix)
        })
        .await
    }

    async fn clear(&self) -> Result<Removed> {
        self.write_txn("clear", false, removed_some, store::clear)
            .await
    }

    async fn usage(&self) -> Result<Usage> {
        self.quick_read("usage", store::usage).await
    }

    async fn purge_expired(&self, now: Millis, limit: usize) -> Result<Removed> {
        if limit == 0 {
            return Ok(Removed::default());
        }
        // The common case, nothing expired, is an index probe on a reader: no write lock.
        let any = self
            .quick_read("purge_expired", move |conn| store::any_expired(conn, now))
            .await?;
        if !any {
            return Ok(Removed::default());
        }
        self.write_txn("purge_expired", limit <= 100, removed_some, move |tx| {
            store::purge_expired(tx, now, limit)
        })
        .await
    }

    async fn evict(
        &self,
        policy: EvictionPolicy,
        target_bytes: u64,
        protect: Option<&str>,
    ) -> Result<Removed> {
        if policy == EvictionPolicy::None {
            return Ok(Removed::default());
        }
        let protect = protect.map(str::to_owned);
        let build = policy != EvictionPolicy::LeastRecentlyStored && self.access_indexes_unknown();
        // Building the indexes scans the table: never inline on the runtime.
        let removing = |(r, _): &(Removed, Vec<String>)| r.entries > 0;
        let (removed, _) = self
            .write_txn("evict", !build, removing, move |tx| {
                if build {
                    store::ensure_access_indexes(tx)?;
                }
                store::evict(tx, policy, target_bytes, &|k| Some(k) == protect.as_deref())
            })
            .await?;
        self.access_indexes_built(build);
        Ok(removed)
    }

    async fn keys(&self, prefix: &str, now: Millis, limit: usize) -> Result<Vec<String>> {
        let prefix = prefix.to_owned();
        let inline = self.inner.cfg.offload == Offload::Never;
        self.read("keys", inline, move |conn| {
            store::keys(conn, &prefix, now, limit)
        })
        .await
    }

    async fn record_accesses(&self, accesses: &[Access]) -> Result<()> {
        if accesses.is_empty() {
            return Ok(());
        }
        let build = self.access_indexes_unknown();
        let small = accesses.len() <= 32 && !build;
        let accesses: Arc<[Access]> = Arc::from(accesses);
        self.write_txn("record_accesses", small, no_removal, move |tx| {
            if build {
                store::ensure_access_indexes(tx)?;
            }
            store::record_accesses(tx, &accesses)
        })
        .await?;
        self.access_indexes_built(build);
        Ok(())
    }

    async fn load_stats(&self) -> Result<Counters> {
        self.quick_read("load_stats", store::load_stats).await
    }

    async fn add_stats(&self, delta: &Counters) -> Result<()> {
        if delta.is_zero() {
            return Ok(());
        }
        let delta = *delta;
        self.write_txn("add_stats", true, no_removal, move |tx| {
            store::add_stats(tx, &delta)
        })
        .await
    }

    async fn flush(&self) -> Result<()> {
        self.write(no_removal, |ctx, conn| store::flush(conn, ctx))
            .await?;
        match self.inner.lost_batch.lock().take() {
            None => Ok(()),
            Some(why) => Err(Error::backend(
                NAME,
                format!(
                    "{}: writes acknowledged before a failed commit were lost",
                    self.inner.ctx.path.display()
                ),
                std::io::Error::other(why),
            )),
        }
    }

    async fn integrity_check(&self) -> Result<Vec<String>> {
        self.read("integrity_check", false, store::integrity_check)
            .await
    }

    fn storage_info(&self) -> Option<plexcache_core::StorageInfo> {
        Some(self.inner.share.info())
    }

    async fn disk_usage(&self) -> Result<Option<u64>> {
        let mut total = 0;
        for p in [self.inner.ctx.path.clone(), wal_path(&self.inner.ctx.path)] {
            match std::fs::metadata(&p) {
                Ok(m) => total += m.len(),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(&p, "reading the cache database's size", e)),
            }
        }
        Ok(Some(total))
    }
}
