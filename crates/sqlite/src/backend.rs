//! [`SqliteBackend`]: the default, shared mode. Any number of processes use the database at
//! once: one writer connection and a pool of reader connections per backend, every write one
//! transaction committed before it returns.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use plexcache_core::{Bytes, Entry, Error, Millis, PutOutcome, Result, WriteLimit};
use rusqlite::Connection;
use tokio::sync::Semaphore;

use crate::builder::{Offload, SqliteBuilder};
use crate::common::impl_cache_backend;
use crate::schema::connect;
use crate::store::{self, Ctx, Fetched, NAME, classify, is_busy};
use crate::writer::{Core, Held, has_runtime, run};

/// The SQLite backend in its default, shared mode (see the [crate documentation](crate)).
/// Cheap to clone: clones share the connections. For one process that owns its cache, see
/// [`ExclusiveSqliteBackend`](crate::ExclusiveSqliteBackend).
#[derive(Clone)]
pub struct SqliteBackend {
    inner: Arc<Inner>,
}

struct Inner {
    /// Idle reader connections (at most `cfg.max_readers` exist).
    idle: Mutex<Vec<Connection>>,
    /// One permit per reader connection.
    permits: Arc<Semaphore>,
    /// Reader connections open now.
    readers_open: AtomicUsize,
    /// The change token: a connection that only asks SQLite's `data_version`, which moves on
    /// every commit of any other connection (this process's writer included).
    watch: Mutex<Connection>,
    /// Declared last: the reader connections close first, then the writer, then the lock.
    core: Arc<Core>,
}

impl std::fmt::Debug for SqliteBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteBackend")
            .field("path", &self.inner.core.ctx.path)
            .field("offload", &self.inner.core.cfg.offload)
            .field("max_readers", &self.inner.core.cfg.max_readers)
            .finish_non_exhaustive()
    }
}

impl Inner {
    fn take_reader(&self) -> Result<Connection> {
        self.core.share.check()?;
        if let Some(conn) = self.idle.lock().pop() {
            return Ok(conn);
        }
        let core = &self.core;
        let conn = core.ctx.retry("open a reader connection", || {
            connect(&core.cfg, &core.ctx.path, true)
        })?;
        self.readers_open.fetch_add(1, Ordering::Relaxed);
        Ok(conn)
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
        let out = self.core.ctx.retry(what, || f(&conn));
        self.give_back(conn);
        out
    }
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

    pub(crate) fn open_with(cfg: SqliteBuilder) -> Result<Self> {
        let core = Core::open(cfg)?;
        let watch = core.ctx.retry("open the change-watch connection", || {
            connect(&core.cfg, &core.ctx.path, true)
        })?;
        Ok(Self {
            inner: Arc::new(Inner {
                idle: Mutex::new(Vec::new()),
                permits: Arc::new(Semaphore::new(core.cfg.max_readers)),
                readers_open: AtomicUsize::new(0),
                watch: Mutex::new(watch),
                core: Arc::new(core),
            }),
        })
    }

    /// Connections open now: the writer plus the reader connections opened so far (at most
    /// [`SqliteBuilder::max_readers`]).
    pub fn open_connections(&self) -> usize {
        1 + self.inner.readers_open.load(Ordering::Relaxed)
    }

    fn core(&self) -> &Core {
        &self.inner.core
    }

    /// A read on a pooled reader, inline or off the runtime.
    async fn read<T: Send + 'static>(
        &self,
        what: &'static str,
        inline: bool,
        f: impl FnMut(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T> {
        let permit = Arc::clone(&self.inner.permits)
            .acquire_owned()
            .await
            .map_err(|e| Error::backend(NAME, "reader pool closed", e))?;
        let inner = Arc::clone(&self.inner);
        run(!inline, move || {
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
        let inline = self.core().cfg.offload != Offload::Always || !has_runtime();
        if inline && let Some(out) = self.read_on_idle_writer(what, &mut f) {
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
        let conn = self.core().writer.try_lock().ok()?;
        if let Err(e) = self.core().share.check() {
            return Some(Err(e));
        }
        Some(self.core().ctx.retry(what, || f(&conn)))
    }

    /// A write on the writer connection (queued on an async mutex), off the runtime unless
    /// the offload mode is `Never`; checkpoint and vacuum run after it when due.
    async fn write<T: Send + 'static>(
        &self,
        removing: fn(&T) -> bool,
        f: impl FnOnce(&Ctx, &mut Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let held = Held {
            conn: Arc::clone(&self.core().writer).lock_owned().await,
            inner: Arc::clone(&self.inner.core),
        };
        let offload = self.core().cfg.offload != Offload::Never;
        run(offload, move || {
            let mut held = held;
            let Held { conn, inner: core } = &mut held;
            core.share.check()?;
            let out = f(&core.ctx, conn)?;
            core.maintenance(conn, removing(&out));
            Ok(out)
        })
        .await
    }

    /// One write transaction. With [`Offload::Auto`], a `small` one (a few rows, values up to
    /// the inline limit) first runs inline if the writer connection is free and the database
    /// write lock can be taken without waiting; otherwise (or if another process holds the
    /// lock) it goes off the runtime, where it waits and retries.
    async fn write_txn<T: Send + 'static>(
        &self,
        what: &'static str,
        small: bool,
        removing: fn(&T) -> bool,
        mut f: impl FnMut(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T> {
        if small
            && self.core().cfg.offload == Offload::Auto
            && has_runtime()
            && let Ok(mut conn) = self.core().writer.try_lock()
        {
            self.core().share.check()?;
            match self.try_write_now(&mut conn, &mut f) {
                Ok(out) => {
                    let due = self.core().checkpoint_due();
                    let removed =
                        removing(&out) && store::vacuum_wanted(&conn).ok().flatten().is_some();
                    drop(conn);
                    if due || removed {
                        self.inner.core.queue_maintenance(removed);
                    }
                    return Ok(out);
                }
                Err(e) if is_busy(&e) => {} // another process writes: wait off the runtime
                Err(e) => return Err(classify(&self.core().ctx.path, what, e)),
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
        let restore = conn.busy_timeout(crate::schema::busy_handler_timeout(&self.core().cfg));
        let out = out?;
        restore?;
        Ok(out)
    }

    async fn get_entry(&self, key: &str, now: Millis) -> Result<Option<Entry>> {
        let offload = self.core().cfg.offload;
        if offload != Offload::Always || !has_runtime() {
            let limit = match offload {
                Offload::Auto => self.core().cfg.inline_read_limit,
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

    /// Every put is one write transaction.
    async fn put_value(
        &self,
        key: &str,
        value: Bytes,
        stored_at: Millis,
        expires_at: Option<Millis>,
        limit: WriteLimit,
    ) -> Result<PutOutcome> {
        self.put_in_transaction(key, value, stored_at, expires_at, limit)
            .await
    }

    /// Every commit is visible to other connections at once: nothing to report.
    fn wrote(&self) {}

    fn token(&self) -> Option<u64> {
        self.core().share.check().ok()?;
        let conn = self.inner.watch.lock();
        conn.prepare_cached("PRAGMA data_version")
            .and_then(|mut stmt| stmt.query_row([], |r| r.get::<_, i64>(0)))
            .ok()
            .map(|v| v as u64)
    }

    /// Every write was committed when it returned: nothing can have been lost.
    fn flush_outcome(&self) -> Result<()> {
        Ok(())
    }
}

impl_cache_backend!(SqliteBackend);
