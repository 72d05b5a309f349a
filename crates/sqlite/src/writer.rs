//! What both modes share: the writer connection and its WAL bookkeeping (checkpoints and
//! vacuum), the process lock, where blocking work runs, and the checks every write makes
//! before it reaches SQLite.

use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use plexcache_core::{Error, Removed, Result};
use rusqlite::Connection;

use crate::builder::SqliteBuilder;
use crate::schema::{open_or_recover, wal_path};
use crate::store::{self, Ctx, NAME, classify};

/// The writer connection and the state that goes with it, whatever the mode.
pub(crate) struct Core {
    pub(crate) ctx: Ctx,
    pub(crate) cfg: SqliteBuilder,
    /// The one writer connection; an async mutex, so tasks queue without blocking threads.
    pub(crate) writer: Arc<tokio::sync::Mutex<Connection>>,
    /// Frames in the WAL after the writer's last commit (from SQLite's WAL hook).
    wal_pages: Arc<AtomicU32>,
    /// Checkpoint when `wal_pages` reaches this.
    next_checkpoint: AtomicU32,
    /// A deferred checkpoint or vacuum is queued on the blocking pool.
    maintenance_queued: AtomicBool,
    /// The LRU/LFU indexes are known to exist (they are built on first need).
    access_indexes: AtomicBool,
    /// The process lock (`<database>.lock`), held for the backend's life. Declared after the
    /// connection, so that it is released after it is closed.
    _lock: Option<File>,
    /// The file system and, on a network one, the lease, checked before every use of a
    /// connection. Declared last: released after the connections are closed.
    pub(crate) share: crate::share::Share,
}

impl Core {
    /// Creates the directory, takes the process lock (shared, or exclusive for the exclusive
    /// mode) and opens the writer connection, recovering a damaged file if configured.
    pub(crate) fn open(mut cfg: SqliteBuilder) -> Result<Core> {
        let (path, share) = crate::share::prepare(crate::share::Request {
            legacy: crate::builder::resolve(&cfg.location),
            fs: cfg.fs,
            exclusive: cfg.exclusive,
            lease_timeout: cfg.lease_timeout,
            lease_wait: cfg.lease_wait,
        })?;
        cfg.on_share = share.lease.is_some();
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
        let mut writer = open_or_recover(&cfg, &ctx, guard)?;
        let wal_pages = Arc::new(AtomicU32::new(0));
        let hook_pages = Arc::clone(&wal_pages);
        // Replaces SQLite's auto-checkpoint on this connection: commits only record the WAL
        // length, and checkpoints run where blocking is allowed (see `Core::maintenance`).
        writer
            .wal_hook(Some(
                move |_: &mut rusqlite::hooks::Wal, pages: std::os::raw::c_int| {
                    hook_pages.store(u32::try_from(pages).unwrap_or(0), Ordering::Relaxed);
                    Ok(())
                },
            ))
            .map_err(|e| classify(&path, "install the WAL hook", e))?;
        let next_checkpoint = AtomicU32::new(cfg.checkpoint_pages);
        Ok(Core {
            ctx,
            cfg,
            writer: Arc::new(tokio::sync::Mutex::new(writer)),
            wal_pages,
            next_checkpoint,
            maintenance_queued: AtomicBool::new(false),
            access_indexes: AtomicBool::new(false),
            _lock: lock,
            share,
        })
    }

    pub(crate) fn checkpoint_due(&self) -> bool {
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
    pub(crate) fn maintenance(&self, conn: &Connection, removed: bool) {
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

    /// Queues a checkpoint (and a vacuum check) on the blocking pool, once at a time.
    pub(crate) fn queue_maintenance(self: &Arc<Self>, removed: bool) {
        if self.maintenance_queued.swap(true, Ordering::AcqRel) {
            return;
        }
        let core = Arc::clone(self);
        let job = move || {
            let conn = core.writer.blocking_lock();
            core.maintenance(&conn, removed);
            drop(conn);
            core.maintenance_queued.store(false, Ordering::Release);
        };
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn_blocking(job);
            }
            Err(_) => self.maintenance_queued.store(false, Ordering::Release),
        }
    }

    /// Whether this backend has not yet seen the LRU/LFU indexes exist (then the next call
    /// that needs them builds them if missing, in its write transaction).
    pub(crate) fn access_indexes_unknown(&self) -> bool {
        !self.access_indexes.load(Ordering::Acquire)
    }

    /// Records that a committed transaction made sure the indexes exist.
    pub(crate) fn access_indexes_built(&self, built: bool) {
        if built {
            self.access_indexes.store(true, Ordering::Release);
        }
    }

    /// The database and its WAL on disk.
    pub(crate) fn disk_usage(&self) -> Result<Option<u64>> {
        let files: [PathBuf; 2] = [self.ctx.path.clone(), wal_path(&self.ctx.path)];
        let mut total = 0;
        for p in files {
            match std::fs::metadata(&p) {
                Ok(m) => total += m.len(),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(&p, "reading the cache database's size", e)),
            }
        }
        Ok(Some(total))
    }
}

/// The writer connection's guard with the backend state, for work moved off the runtime. The
/// guard is declared first, so it is released first: when `inner` is the last reference, its
/// drop finds the connection free (the exclusive mode commits its open batch there).
pub(crate) struct Held<I> {
    pub(crate) conn: tokio::sync::OwnedMutexGuard<Connection>,
    pub(crate) inner: Arc<I>,
}

pub(crate) fn has_runtime() -> bool {
    tokio::runtime::Handle::try_current().is_ok()
}

/// Runs `job` off the runtime when `offload` (see [`plexcache_core::blocking::off_runtime`]),
/// else here.
pub(crate) async fn run<T: Send + 'static>(
    offload: bool,
    job: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    if offload {
        return plexcache_core::blocking::off_runtime(NAME, job).await;
    }
    job()
}

/// SQLite's `SQLITE_MAX_LENGTH` in the bundled build: the longest string or blob it stores.
const SQLITE_MAX_LENGTH: u64 = 1_000_000_000;

/// SQLite refuses strings and blobs over its length limit: refused here, before any
/// statement runs, so the refusal is never an engine error (which in the exclusive mode rolls
/// back the open batch).
pub(crate) fn check_len(key: &str, value_len: usize) -> Result<()> {
    if key.len().max(value_len) as u64 >= SQLITE_MAX_LENGTH {
        return Err(Error::TooLarge {
            key: plexcache_core::short_key(key),
            size: plexcache_core::backend::entry_size(key, value_len),
            limit: SQLITE_MAX_LENGTH - 1,
        });
    }
    Ok(())
}

pub(crate) fn no_removal<T>(_: &T) -> bool {
    false
}

/// Whether a removal removed something (then a vacuum may be due).
pub(crate) fn removed_some(r: &Removed) -> bool {
    r.entries > 0
}
