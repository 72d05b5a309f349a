//! Where the database lives, decided at open: on a local disk the shared (WAL) or exclusive
//! mode as asked; on a network file system the lease of
//! [`plexcache_core::lease`], a rollback journal and a file name of its own.
//!
//! On a network file system:
//!
//! * the exclusive mode refuses to open ([`Error::NetworkFileSystem`]): it relies on an
//!   advisory lock that other mounts of the share do not see;
//! * the database is `<stem>.share.<ext>` (`plexcache.share.db`), a name older plexcache
//!   releases, which open `plexcache.db` in WAL mode, never open;
//! * the lease is taken before the database is opened, and checked before every use of a
//!   connection ([`Share::check`]);
//! * connections use a rollback journal (WAL needs shared memory that a network file system
//!   cannot share between machines), `synchronous = FULL` and no memory mapping;
//! * an existing `plexcache.db` (WAL) in the directory is converted under the lease: its WAL
//!   is checkpointed, its journal mode set to `DELETE`, and it is renamed to the share name.

use std::path::{Path, PathBuf};
use std::time::Duration;

use plexcache_core::fskind::{FsInfo, detect};
use plexcache_core::lease::{Lease, LeaseConfig};
use plexcache_core::{Error, Result, StorageInfo};
use rusqlite::{Connection, OpenFlags};

use plexcache_core::fskind::FsChoice;

/// What opening asks of [`prepare`] (from the builder).
pub(crate) struct Request {
    /// The database path the builder resolves (`plexcache.db`).
    pub(crate) legacy: PathBuf,
    pub(crate) fs: Option<FsChoice>,
    pub(crate) exclusive: bool,
    pub(crate) lease_timeout: Duration,
    pub(crate) lease_wait: Option<Duration>,
}

/// The mode names shown in statistics.
pub(crate) const MODE_SHARED: &str = "shared (WAL)";
pub(crate) const MODE_EXCLUSIVE: &str = "exclusive (write-back)";
pub(crate) const MODE_NETWORK: &str = "network share (rollback journal, lease)";

/// The file system of the database and, on a network one, the lease.
pub(crate) struct Share {
    pub(crate) fs: FsInfo,
    pub(crate) lease: Option<Lease>,
    mode: &'static str,
}

impl Share {
    /// Whether this process may use a connection now (always, on a local disk).
    #[inline]
    pub(crate) fn check(&self) -> Result<()> {
        match &self.lease {
            None => Ok(()),
            Some(lease) => lease.check(),
        }
    }

    pub(crate) fn info(&self) -> StorageInfo {
        StorageInfo {
            fs: self.fs.clone(),
            mode: self.mode.to_owned(),
            lease: self.lease.as_ref().map(Lease::status),
        }
    }
}

/// `plexcache.db` -> `plexcache.share.db` (a name that older releases do not open).
pub(crate) fn share_name(legacy: &Path) -> PathBuf {
    let stem = legacy
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "plexcache".into());
    if stem.ends_with(".share") {
        return legacy.to_path_buf();
    }
    let name = match legacy.extension() {
        Some(ext) => format!("{stem}.share.{}", ext.to_string_lossy()),
        None => format!("{stem}.share"),
    };
    legacy.with_file_name(name)
}

/// The directory the database is in (the file system to detect).
fn dir_of(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// Detects the file system of the database `legacy` (the path the builder resolves) and
/// returns it with the database path to use there.
pub(crate) fn placement(choice: Option<FsChoice>, legacy: &Path) -> Result<(FsInfo, PathBuf)> {
    let fs = detect(dir_of(legacy), choice)?;
    let path = if fs.is_network() {
        share_name(legacy)
    } else {
        legacy.to_path_buf()
    };
    Ok((fs, path))
}

/// Decides where and how to open (see the module documentation): creates the directory,
/// detects the file system, refuses the exclusive mode on a network file system, takes the
/// lease and converts an older WAL database there. Returns the database path and the
/// [`Share`] (on a network file system when it holds a lease).
pub(crate) fn prepare(cfg: Request) -> Result<(PathBuf, Share)> {
    let legacy = cfg.legacy;
    if let Some(parent) = legacy.parent().filter(|p| !p.as_os_str().is_empty()) {
        plexcache_core::fs::create_private_dir(parent)?;
    }
    let (fs, path) = placement(cfg.fs, &legacy)?;
    if !fs.is_network() {
        let mode = if cfg.exclusive {
            MODE_EXCLUSIVE
        } else {
            MODE_SHARED
        };
        return Ok((
            path,
            Share {
                fs,
                lease: None,
                mode,
            },
        ));
    }
    if cfg.exclusive {
        return Err(Error::NetworkFileSystem {
            path: legacy,
            detail: format!(
                "the exclusive SQLite mode cannot run on a network file system ({}): it relies on an advisory lock that other mounts of the share do not see. Put the cache on a local disk, or use the Redis backend to share a cache between machines; the default (shared) mode works on a share used by one machine at a time. Override the detection with `fs_kind`, {} or --fs if it is wrong",
                fs.describe(),
                plexcache_core::fskind::FS_ENV
            ),
        });
    }
    let mut lease_cfg = LeaseConfig::with_timeout(cfg.lease_timeout);
    if let Some(wait) = cfg.lease_wait {
        lease_cfg.wait = wait;
    }
    let lease = Lease::acquire(&path, &fs, lease_cfg)?;
    tracing::debug!(
        path = %path.display(),
        fs = %fs.describe(),
        domain = lease.domain(),
        "opening the cache on a network file system: rollback journal, under a lease"
    );
    if legacy != path {
        convert_legacy(&legacy, &path)?;
    }
    Ok((
        path,
        Share {
            fs,
            lease: Some(lease),
            mode: MODE_NETWORK,
        },
    ))
}

/// Converts an older release's WAL database `legacy` into `share` (which must not exist),
/// under the lease: checkpoints the WAL, switches to a rollback journal, renames.
fn convert_legacy(legacy: &Path, share: &Path) -> Result<()> {
    if share.exists() || !legacy.is_file() {
        return Ok(());
    }
    // Older releases hold `<legacy>.lock` while they use the file (through this mount).
    let lock = crate::lock::acquire(legacy, true, Duration::from_millis(200)).map_err(|_| {
        Error::InUse {
            path: legacy.to_path_buf(),
            detail: format!(
                "an older plexcache is using this cache on the network file system; close it so the cache can be converted to {}",
                share.display()
            ),
        }
    })?;
    let context = |what: &str, e: rusqlite::Error| context_err(legacy, share, what, e);
    {
        let conn = Connection::open_with_flags(
            legacy,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| context("open", e))?;
        // Before the first access: the WAL index then lives in this connection's memory, not
        // in a shared-memory file mapped from the share.
        conn.execute_batch("PRAGMA locking_mode = EXCLUSIVE;")
            .map_err(|e| context("lock", e))?;
        let app_id: i64 = conn
            .query_row("PRAGMA application_id", [], |r| r.get(0))
            .map_err(|e| context("read the application id", e))?;
        if app_id != crate::schema::APPLICATION_ID {
            tracing::warn!(path = %legacy.display(), "not a plexcache database; left as it is");
            return Ok(());
        }
        let mode: String = conn
            .query_row("PRAGMA journal_mode = DELETE", [], |r| r.get(0))
            .map_err(|e| context("switch to a rollback journal", e))?;
        if !mode.eq_ignore_ascii_case("delete") {
            return Err(context_err(
                legacy,
                share,
                "switch to a rollback journal",
                std::io::Error::other(format!("the journal mode stayed {mode}")),
            ));
        }
    }
    std::fs::rename(legacy, share)
        .map_err(|e| Error::io(legacy, format!("renaming to {}", share.display()), e))?;
    let _ = std::fs::remove_file(crate::schema::shm_path(legacy));
    drop(lock);
    tracing::info!(
        from = %legacy.display(),
        to = %share.display(),
        "converted the cache on a network file system to a rollback journal"
    );
    Ok(())
}

fn context_err(
    legacy: &Path,
    share: &Path,
    what: &str,
    e: impl Into<plexcache_core::BoxError>,
) -> Error {
    Error::backend(
        crate::ctx::NAME,
        format!(
            "converting {} to {}: {what}",
            legacy.display(),
            share.display()
        ),
        e,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn share_names() {
        assert_eq!(
            share_name(Path::new("/n/plexcache.db")),
            Path::new("/n/plexcache.share.db")
        );
        assert_eq!(
            share_name(Path::new("/n/c.sqlite3")),
            Path::new("/n/c.share.sqlite3")
        );
        assert_eq!(
            share_name(Path::new("/n/c.share.db")),
            Path::new("/n/c.share.db")
        );
    }
}
