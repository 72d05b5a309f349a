//! What every operation needs besides a connection: [`Ctx`] (the path for messages and the
//! time to wait for locks), the retry loop on `SQLITE_BUSY`/`SQLITE_LOCKED`, the
//! classification of engine errors, and `BEGIN IMMEDIATE` transactions.

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use plexcache_core::{Error, Result};
use rusqlite::{Connection, ErrorCode};

/// The backend's name in errors.
pub(crate) const NAME: &str = "sqlite";

/// What every operation needs besides a connection: the path (for messages) and the total
/// time to wait for locks.
#[derive(Debug, Clone)]
pub(crate) struct Ctx {
    pub(crate) path: PathBuf,
    pub(crate) busy_timeout: Duration,
}

/// Maps an engine error: damage becomes [`Error::Corrupt`] naming the path, the rest
/// [`Error::Backend`] with the path in the context.
pub(crate) fn classify(path: &Path, what: &str, e: rusqlite::Error) -> Error {
    let code = e.sqlite_error_code();
    if matches!(
        code,
        Some(ErrorCode::NotADatabase) | Some(ErrorCode::DatabaseCorrupt)
    ) {
        return Error::Corrupt {
            path: path.to_path_buf(),
            detail: format!("damaged cache database ({what}): {e}"),
            source: Some(Box::new(e)),
        };
    }
    Error::backend(NAME, format!("{what} in {}", path.display()), e)
}

pub(crate) fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(ErrorCode::DatabaseBusy) | Some(ErrorCode::DatabaseLocked)
    )
}

thread_local! {
    static RNG: Cell<u64> = Cell::new(seed());
}

fn seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(u64::from(std::process::id()));
    h.finish() | 1
}

fn jitter(max: u64) -> u64 {
    RNG.with(|r| {
        let mut x = r.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        r.set(x);
        x % max.max(1)
    })
}

impl Ctx {
    /// Runs `f`, retrying on busy/locked with jittered exponential backoff until the busy
    /// timeout has passed (each attempt also waits in SQLite's busy handler).
    pub(crate) fn retry_raw<T>(
        &self,
        mut f: impl FnMut() -> rusqlite::Result<T>,
    ) -> rusqlite::Result<T> {
        let start = Instant::now();
        let mut delay_us: u64 = 200;
        loop {
            match f() {
                Err(e) if is_busy(&e) && start.elapsed() < self.busy_timeout => {
                    let pause = delay_us / 2 + jitter(delay_us);
                    std::thread::sleep(Duration::from_micros(pause));
                    delay_us = (delay_us * 2).min(20_000);
                }
                r => return r,
            }
        }
    }

    /// [`Ctx::retry_raw`] with the error classified.
    pub(crate) fn retry<T>(&self, what: &str, f: impl FnMut() -> rusqlite::Result<T>) -> Result<T> {
        self.retry_raw(f).map_err(|e| classify(&self.path, what, e))
    }

    /// Runs `f` in a `BEGIN IMMEDIATE` transaction, committed when `f` returns `Ok`, retried
    /// as a whole on busy/locked.
    pub(crate) fn write<T>(
        &self,
        conn: &mut Connection,
        what: &str,
        mut f: impl FnMut(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T> {
        self.retry(what, || immediate(conn, |tx| f(tx).map(|out| (out, true))))
    }
}

/// Runs `f` in a `BEGIN IMMEDIATE` transaction on `conn`, committed when `f` returns
/// `(_, true)`, rolled back when it returns `(_, false)` or fails. The statements that begin
/// and end it are prepared once per connection (a small write is a handful of statements, so
/// parsing these two each time would be a visible share of it).
pub(crate) fn immediate<T>(
    conn: &Connection,
    f: impl FnOnce(&Connection) -> rusqlite::Result<(T, bool)>,
) -> rusqlite::Result<T> {
    conn.prepare_cached("BEGIN IMMEDIATE")?.execute([])?;
    let ended = match f(conn) {
        Ok((out, true)) => conn
            .prepare_cached("COMMIT")
            .and_then(|mut s| s.execute([]))
            .map(|_| out),
        Ok((out, false)) => conn
            .prepare_cached("ROLLBACK")
            .and_then(|mut s| s.execute([]))
            .map(|_| out),
        Err(e) => Err(e),
    };
    if ended.is_err() && !conn.is_autocommit() {
        // The error is the one to report; a failed rollback leaves nothing more to undo
        // (SQLite then rolls the transaction back itself).
        let _ = conn.execute_batch("ROLLBACK");
    }
    ended
}

impl Ctx {
    /// Like [`Ctx::write`], but `f` decides whether its transaction is committed (`true`) or
    /// rolled back (`false`).
    pub(crate) fn write_or_rollback<T>(
        &self,
        conn: &mut Connection,
        what: &str,
        mut f: impl FnMut(&Connection) -> rusqlite::Result<(T, bool)>,
    ) -> Result<T> {
        self.retry(what, || immediate(conn, &mut f))
    }
}
