//! [`ExclusiveSqliteBackend`]: the write-back mode for one process that owns its cache. One
//! connection, writes committed in batches by a commit thread, large values written after
//! their `put` returns; see `docs/decisions.md` ("The exclusive, write-back SQLite mode").

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use plexcache_core::{Bytes, Entry, Error, Millis, PutOutcome, Result, WriteLimit};
use rusqlite::Connection;

use crate::builder::{Offload, SqliteBuilder};
use crate::common::impl_cache_backend;
use crate::store::{self, Ctx, Fetched, NAME, classify};
use crate::writer::{Core, Held, has_runtime, run};

/// The SQLite backend in its exclusive, write-back mode: one process holds the database
/// alone (other openers get [`Error::InUse`]), writes are committed in batches within
/// [`SqliteBuilder::commit_interval`], by [`flush`](plexcache_core::CacheBackend::flush) and
/// by the drop of the last handle. Opened with [`SqliteBuilder::open_exclusive`]. Cheap to
/// clone: clones share the connection.
#[derive(Clone)]
pub struct ExclusiveSqliteBackend {
    /// Stops the commit thread and has it commit the open batch when the last handle is
    /// dropped. Declared before `inner`, so that it runs while `inner` still exists.
    _closer: Arc<Closer>,
    inner: Arc<Inner>,
}

/// Owned by the handles (never by internal jobs or the commit thread), so its drop is the
/// drop of the last handle. It stops the commit thread and waits for it: the thread commits
/// the open batch, writing deferred rows first, before the drop returns. So a program that
/// drops its cache and returns from `main` loses nothing, even when the commit thread held
/// the backend at that moment.
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

struct Inner {
    /// The change token: a counter of this backend's writes (no other connection exists, and
    /// writes are not committed at once, so SQLite's `data_version` would not move).
    writes: AtomicU64,
    /// When the open batch transaction began (`None`: no batch is open).
    batch_started: Mutex<Option<Instant>>,
    /// Why acknowledged writes were lost (a failed batch commit), reported by the next
    /// `flush`.
    lost_batch: Mutex<Option<String>>,
    /// The thread that commits batches when they are due and writes deferred rows.
    committer: OnceLock<std::thread::Thread>,
    /// Counted `put`s of large values whose rows are not written yet (see [`Inner::drain`]).
    pending: Mutex<Pending>,
    core: Arc<Core>,
}

/// Rows of large values counted in the open batch but not written yet, in write order.
#[derive(Default)]
struct Pending {
    rows: Vec<(String, store::PendingRow, Bytes)>,
    bytes: u64,
}

/// Why a batch is gone when SQLite itself ended its transaction.
const ROLLED_BACK_BY_SQLITE: &str = "SQLite rolled the batch transaction back after an error";

/// The most value bytes whose rows may wait for the commit thread; beyond it a large `put`
/// writes its row itself (backpressure).
const DEFERRED_BYTES_LIMIT: u64 = 64 * 1024 * 1024;

impl Drop for Inner {
    /// Commits what is left when the last reference goes. Normally the commit thread has
    /// committed the batch already (see [`Closer`]); this covers work that ran after it, such
    /// as a job moved off the runtime whose caller was cancelled.
    fn drop(&mut self) {
        match self.core.writer.try_lock() {
            Ok(mut conn) => self.close(&mut conn),
            Err(_) => {
                // Not reached: every holder of the connection holds `Inner` too and releases
                // the connection first (see `Held`).
                let pending = self.pending.lock().rows.len();
                if self.batch_started.lock().is_some() || pending > 0 {
                    tracing::error!(
                        path = %self.core.ctx.path.display(),
                        deferred_rows = pending,
                        "the connection is still in use at close; writes acknowledged since the last commit are lost"
                    );
                }
            }
        }
    }
}

impl std::fmt::Debug for ExclusiveSqliteBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExclusiveSqliteBackend")
            .field("path", &self.inner.core.ctx.path)
            .field("offload", &self.inner.core.cfg.offload)
            .field("commit_interval", &self.inner.core.cfg.commit_interval)
            .finish_non_exhaustive()
    }
}

impl Inner {
    /// Runs `f` inside the batch transaction (beginning one if none is open), so its effects
    /// are visible to every later operation at once; the batch is committed later (see
    /// [`Inner::commit_batch`]).
    ///
    /// No savepoint per operation: SQLite copies every page the operation touches into a
    /// sub-journal, a large part of a small write. The operations' statements fail only on
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
            self.core
                .ctx
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
                Err(classify(&self.core.ctx.path, &what, e))
            }
        }
    }

    /// Writes the rows of deferred `put`s, in order. Every use of the connection starts with
    /// this (reads included), so no statement ever sees the database without a row whose
    /// `put` has returned; the counters already include them.
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
                    &self.core.ctx.path,
                    "write a deferred value (the writes acknowledged since the last commit were rolled back)",
                    e,
                ));
            }
        }
        Ok(())
    }

    /// Queues the row of a counted `put` for the commit thread.
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

    /// Whether a value of `len` bytes may be deferred now.
    fn may_defer(&self, len: u64) -> bool {
        self.pending.lock().bytes.saturating_add(len) <= DEFERRED_BYTES_LIMIT
    }

    /// How long until the open batch is due (`None`: no batch is open).
    fn batch_due(&self) -> Option<Duration> {
        let started = (*self.batch_started.lock())?;
        Some(
            self.core
                .cfg
                .commit_interval
                .saturating_sub(started.elapsed()),
        )
    }

    /// Commits the open batch, if any, then checkpoints or vacuums when due.
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
        match self
            .core
            .ctx
            .retry("commit", || conn.execute_batch("COMMIT"))
        {
            Ok(()) => {
                self.core.maintenance(conn, true);
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

    /// At close: commits the open batch (deferred rows first); what cannot be committed is
    /// logged as lost.
    fn close(&self, conn: &mut Connection) {
        if let Err(e) = self.commit_batch(conn) {
            tracing::error!(
                path = %self.core.ctx.path.display(),
                error = %e,
                "the last batch of writes could not be committed at close; it is lost"
            );
        }
    }

    /// Acknowledged writes of the batch are gone; the next `flush` reports it.
    fn batch_lost(&self, why: &str) {
        tracing::error!(
            path = %self.core.ctx.path.display(),
            reason = why,
            "writes acknowledged since the last commit were lost"
        );
        self.wrote();
        *self.pending.lock() = Pending::default();
        *self.lost_batch.lock() = Some(why.to_owned());
    }

    /// Moves the change token (every write calls it while it holds the connection).
    fn wrote(&self) {
        self.writes.fetch_add(1, Ordering::AcqRel);
    }
}

/// Commits each batch when it reaches the commit interval. Holds the backend only while it
/// looks or commits. When `stop` is set (the last handle is being dropped, see [`Closer`]) it
/// commits the open batch and ends; it also ends when the backend is gone.
fn commit_loop(weak: &Weak<Inner>, stop: &AtomicBool) {
    loop {
        let Some(inner) = weak.upgrade() else {
            return;
        };
        if stop.load(Ordering::Acquire) {
            let mut conn = inner.core.writer.blocking_lock();
            inner.close(&mut conn);
            return;
        }
        let due = inner.batch_due();
        let has_pending = !inner.pending.lock().rows.is_empty();
        if has_pending || due.is_some_and(|left| left.is_zero()) {
            let mut conn = inner.core.writer.blocking_lock();
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
        let wait = due.unwrap_or(inner.core.cfg.commit_interval);
        drop(inner);
        std::thread::park_timeout(wait);
    }
}

impl ExclusiveSqliteBackend {
    /// A builder for the database in `dir_or_file` (see [`SqliteBuilder`]); open it with
    /// [`SqliteBuilder::open_exclusive`].
    pub fn builder(dir_or_file: impl Into<PathBuf>) -> SqliteBuilder {
        SqliteBuilder::new(dir_or_file)
    }

    /// Opens `dir_or_file` in the exclusive mode with the default settings.
    pub fn open(dir_or_file: impl Into<PathBuf>) -> Result<Self> {
        Self::builder(dir_or_file).open_exclusive()
    }

    pub(crate) fn open_with(mut cfg: SqliteBuilder) -> Result<Self> {
        cfg.exclusive = true;
        let core = Arc::new(Core::open(cfg)?);
        let path = core.ctx.path.clone();
        let inner = Arc::new(Inner {
            writes: AtomicU64::new(0),
            batch_started: Mutex::new(None),
            lost_batch: Mutex::new(None),
            committer: OnceLock::new(),
            pending: Mutex::new(Pending::default()),
            core,
        });
        let weak = Arc::downgrade(&inner);
        let stop = Arc::new(AtomicBool::new(false));
        let thread_stop = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("plexcache-sqlite-commit".into())
            .spawn(move || commit_loop(&weak, &thread_stop))
            .map_err(|e| Error::io(&path, "starting the commit thread", e))?;
        // Set once, here, before any operation can run: `set` cannot fail.
        let _ = inner.committer.set(thread.thread().clone());
        Ok(Self {
            _closer: Arc::new(Closer {
                thread: Some(thread),
                stop,
            }),
            inner,
        })
    }

    /// Connections open now: always one (this mode has no reader pool).
    pub fn open_connections(&self) -> usize {
        1
    }

    fn core(&self) -> &Core {
        &self.inner.core
    }

    /// Runs `f` with the connection (the only one), awaiting it asynchronously; inline when
    /// `inline`, else off the runtime. Deferred rows are written first.
    async fn on_writer<T: Send + 'static>(
        &self,
        inline: bool,
        f: impl FnOnce(&Inner, &mut Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        if inline || !has_runtime() {
            let mut conn = self.core().writer.lock().await;
            if !self.drain_off_runtime() {
                self.inner.drain(&mut conn)?;
                return f(&self.inner, &mut conn);
            }
        }
        let held = Held {
            conn: Arc::clone(&self.core().writer).lock_owned().await,
            inner: Arc::clone(&self.inner),
        };
        run(true, move || {
            let mut held = held;
            held.inner.drain(&mut held.conn)?;
            f(&held.inner, &mut held.conn)
        })
        .await
    }

    /// Whether deferred rows wait and must be written off the runtime before the connection
    /// is used. They are large values: off the runtime unless everything runs inline anyway.
    /// Reads and writes follow the same rule.
    fn drain_off_runtime(&self) -> bool {
        has_runtime()
            && self.core().cfg.offload != Offload::Never
            && !self.inner.pending.lock().rows.is_empty()
    }

    /// A read on the connection, which sees the open batch.
    async fn read<T: Send + 'static>(
        &self,
        what: &'static str,
        inline: bool,
        mut f: impl FnMut(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T> {
        self.on_writer(inline, move |inner, conn| {
            inner.core.ctx.retry(what, || f(conn))
        })
        .await
    }

    /// A read that is short enough to run inline unless the offload mode is `Always`.
    async fn quick_read<T: Send + 'static>(
        &self,
        what: &'static str,
        f: impl FnMut(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T> {
        let inline = self.core().cfg.offload != Offload::Always || !has_runtime();
        self.read(what, inline, f).await
    }

    /// A write outside the batch: the open batch is committed first, then `f` runs (off the
    /// runtime unless the offload mode is `Never`); checkpoint and vacuum run after it when
    /// due.
    async fn write<T: Send + 'static>(
        &self,
        removing: fn(&T) -> bool,
        f: impl FnOnce(&Ctx, &mut Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let held = Held {
            conn: Arc::clone(&self.core().writer).lock_owned().await,
            inner: Arc::clone(&self.inner),
        };
        let offload = self.core().cfg.offload != Offload::Never;
        run(offload, move || {
            let mut held = held;
            let Held { conn, inner } = &mut held;
            inner.commit_batch(conn)?;
            let out = f(&inner.core.ctx, conn)?;
            inner.core.maintenance(conn, removing(&out));
            Ok(out)
        })
        .await
    }

    /// One write inside the open batch (see [`Inner::batch_op`]); `small` ones run inline
    /// with [`Offload::Auto`].
    async fn write_txn<T: Send + 'static>(
        &self,
        what: &'static str,
        small: bool,
        _removing: fn(&T) -> bool,
        mut f: impl FnMut(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T> {
        let inline = match self.core().cfg.offload {
            Offload::Never => true,
            Offload::Auto => small,
            Offload::Always => false,
        };
        self.on_writer(inline, move |inner, conn| {
            let out = inner.batch_op(conn, what, &mut f)?;
            inner.wrote();
            // The commit thread sleeps until the batch is due (it was woken when the batch
            // began), so nothing to signal here.
            Ok(out)
        })
        .await
    }

    /// A read on the connection (the only one), which sees the open batch.
    async fn get_entry(&self, key: &str, now: Millis) -> Result<Option<Entry>> {
        let read = move |inner: &Inner, conn: &Connection, key: &str, limit: u64| {
            inner
                .core
                .ctx
                .retry("get", || store::get(conn, key, now, limit))
        };
        let offload = self.core().cfg.offload;
        if offload != Offload::Always || !has_runtime() {
            let limit = match offload {
                Offload::Auto if has_runtime() => self.core().cfg.inline_read_limit,
                _ => u64::MAX,
            };
            let got = {
                let mut conn = self.core().writer.lock().await;
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

    async fn put_value(
        &self,
        key: &str,
        value: Bytes,
        stored_at: Millis,
        expires_at: Option<Millis>,
        limit: WriteLimit,
    ) -> Result<PutOutcome> {
        let small = value.len() as u64 <= self.core().cfg.inline_read_limit;
        if !small
            && self.core().cfg.offload != Offload::Never
            && self.inner.may_defer(value.len() as u64)
        {
            return self
                .deferred_put(key, value, stored_at, expires_at, limit)
                .await;
        }
        self.put_in_transaction(key, value, stored_at, expires_at, limit)
            .await
    }

    /// A large value: counts the `put` in the batch (so the outcome, the counters and the
    /// size limit are exact when it returns) and leaves writing the row to the commit thread,
    /// which does it while the caller goes on (encoding its next value, say). Any later use
    /// of the connection writes it first ([`Inner::drain`]).
    async fn deferred_put(
        &self,
        key: &str,
        value: Bytes,
        stored_at: Millis,
        expires_at: Option<Millis>,
        limit: WriteLimit,
    ) -> Result<PutOutcome> {
        let key = key.to_owned();
        // The counting is a few row reads and deletes: inline unless everything is to run
        // off the runtime.
        let inline = self.core().cfg.offload != Offload::Always;
        self.on_writer(inline, move |inner, conn| {
            let len = value.len();
            let mut count = |tx: &Connection| {
                // The eviction runs before the row is written, so its key is no candidate.
                store::put_counted(tx, &key, len, stored_at, expires_at, limit, true)
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

    /// A batch written outside the open batch moves the change token.
    fn wrote(&self) {
        self.inner.wrote();
    }

    fn token(&self) -> Option<u64> {
        Some(self.inner.writes.load(Ordering::Acquire))
    }

    /// A failed batch commit since the last `flush` lost acknowledged writes: reported once.
    fn flush_outcome(&self) -> Result<()> {
        match self.inner.lost_batch.lock().take() {
            None => Ok(()),
            Some(why) => Err(Error::backend(
                NAME,
                format!(
                    "{}: writes acknowledged before a failed commit were lost",
                    self.core().ctx.path.display()
                ),
                std::io::Error::other(why),
            )),
        }
    }
}

impl_cache_backend!(ExclusiveSqliteBackend);
