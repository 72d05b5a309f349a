//! What every part of the backend leans on: the directory lock, the "in use" error, and
//! containment of sled's panics.

use std::fs::File;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::time::Duration;

use plexcache_core::fs::{LockMode, LockOutcome, lock_file, open_lock_file};
use plexcache_core::{Error, Result};

/// The lock file plexcache keeps inside the cache directory (besides sled's own lock on its
/// `db` file).
pub const LOCK_FILE: &str = "plexcache-sled.lock";

pub(crate) const IN_USE_DETAIL: &str = "the cache is in use by another process (or by another \
    SledBackend in this process): sled allows one process per cache directory. Close the other \
    user, or use the SQLite or Redis backend to share one cache between processes";

/// An exclusive advisory lock (`flock` on unix, `LockFileEx` on Windows) on
/// `<dir>/plexcache-sled.lock`, held for the life of the backend. The OS releases it when the
/// process dies, however it dies.
#[derive(Debug)]
pub(crate) struct LockFile {
    _file: File,
}

impl LockFile {
    pub(crate) fn acquire(dir: &Path) -> Result<LockFile> {
        let path = dir.join(LOCK_FILE);
        let file =
            open_lock_file(&path).map_err(|e| Error::io(&path, "opening the lock file", e))?;
        match lock_file(&file, LockMode::Exclusive, Duration::ZERO) {
            LockOutcome::Held => Ok(LockFile { _file: file }),
            LockOutcome::Busy => Err(in_use(dir)),
            LockOutcome::Unsupported(e) => Err(Error::io(&path, "locking the cache directory", e)),
        }
    }
}

pub(crate) fn in_use(dir: &Path) -> Error {
    Error::InUse {
        path: dir.to_path_buf(),
        detail: IN_USE_DETAIL.into(),
    }
}

/// Runs `f`, turning a panic inside sled into [`Error::Corrupt`] for `path`.
///
/// sled 0.34 panics on some damaged files instead of returning an error. Catching the panic
/// is sound here: the panic happens while sled is *reading* a store into fresh in-memory
/// structures that are all dropped during unwinding (nothing half-built is kept or reused),
/// sled's locks are `parking_lot` locks that unwinding releases without poisoning, and the
/// caller only learns that the directory is unusable. It does not help when the program is
/// built with `panic = "abort"`, and the default panic hook still prints the message.
pub(crate) fn contain<T>(path: &Path, what: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    catch(f).unwrap_or_else(|msg| Err(panic_error(path, what, &msg)))
}

/// Runs `f`, returning the panic message if it panicked.
pub(crate) fn catch<T>(f: impl FnOnce() -> T) -> std::result::Result<T, String> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|payload| {
        payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into())
    })
}

/// The error for a sled panic while doing `what` on the cache at `path`.
pub(crate) fn panic_error(path: &Path, what: &str, msg: &str) -> Error {
    tracing::error!(path = %path.display(), panic = %msg, "sled panicked while {what}");
    Error::Corrupt {
        path: path.to_path_buf(),
        detail: format!(
            "sled panicked while {what} ({msg}); the cache directory is damaged (open it with \
             recover_corrupt(true) to move it aside and start empty)"
        ),
        source: None,
    }
}
