//! The process lock beside the database (`<database>.lock`): shared by backends in the default
//! mode, exclusive in the exclusive mode, so the two modes never run on one file at once.
//!
//! An advisory `flock`-style lock held for the backend's life; the operating system drops it
//! when the process ends, however it ends.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Duration;

use plexcache_core::fs::{LockMode, LockOutcome, lock_file};
use plexcache_core::{Error, Result};

/// `<database>.lock`.
pub(crate) fn lock_path(db: &Path) -> PathBuf {
    let mut s = db.as_os_str().to_owned();
    s.push(".lock");
    PathBuf::from(s)
}

/// Takes the lock of the database `db`, waiting up to `wait` for a conflicting holder.
///
/// In the shared mode a lock file that cannot be created (a read-only directory with none in
/// it) or locked (a file system without advisory locks) is not an error: the backend then
/// opens without it, as SQLite itself arbitrates between shared-mode processes.
pub(crate) fn acquire(db: &Path, exclusive: bool, wait: Duration) -> Result<Option<File>> {
    let path = lock_path(db);
    let file = match plexcache_core::fs::open_lock_file(&path) {
        Ok(f) => f,
        Err(e) if !exclusive => {
            tracing::debug!(path = %path.display(), error = %e, "no lock file; opening without it");
            return Ok(None);
        }
        Err(e) => return Err(Error::io(&path, "creating the cache's lock file", e)),
    };
    Ok(relock(db, &file, exclusive, wait)?.then_some(file))
}

/// Takes the lock file exclusively if no one else holds it, without waiting. On failure the
/// shared lock this handle held may be gone too (`flock` converts by unlocking first): take it
/// again with [`relock`].
pub(crate) fn try_exclusive(file: &File) -> bool {
    file.try_lock().is_ok()
}

/// Takes (or converts to) the lock on `file`, waiting up to `wait` for a conflicting holder.
/// `false`: a shared lock cannot be taken on this file system (see [`acquire`]).
pub(crate) fn relock(db: &Path, file: &File, exclusive: bool, wait: Duration) -> Result<bool> {
    let path = lock_path(db);
    let mode = if exclusive {
        LockMode::Exclusive
    } else {
        LockMode::Shared
    };
    match lock_file(file, mode, wait) {
        LockOutcome::Held => Ok(true),
        LockOutcome::Busy => {
            let detail = if exclusive {
                format!(
                    "the SQLite cache is open elsewhere (another process, or another backend in this one) and exclusive mode needs it alone; waited {} ms. Close the other user, or open without exclusive mode to share the cache",
                    wait.as_millis()
                )
            } else {
                format!(
                    "another process holds this SQLite cache in exclusive mode; waited {} ms. Close it, or open it without exclusive mode so that processes share the cache",
                    wait.as_millis()
                )
            };
            Err(Error::InUse {
                path: db.to_path_buf(),
                detail,
            })
        }
        // A file system without advisory locks (some network file systems): the shared mode
        // goes on without (SQLite arbitrates between shared-mode processes itself); the
        // exclusive mode cannot promise exclusivity, so it refuses.
        LockOutcome::Unsupported(e) if !exclusive => {
            tracing::debug!(path = %path.display(), error = %e, "cannot lock; opening without the lock file");
            Ok(false)
        }
        LockOutcome::Unsupported(e) => Err(Error::io(&path, "locking the cache's lock file", e)),
    }
}
