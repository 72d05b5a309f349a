//! File-system helpers shared by the disk backends.

use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// Creates `dir` and its missing parents. The directory itself is created with mode 0700 on
/// Unix: a cache holds library data that other local users should not read. An existing
/// directory is left as it is, with a warning when other users can read it.
pub fn create_private_dir(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        if !dir.is_dir() {
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent).map_err(|e| {
                    Error::io(parent, "cannot create the cache directory's parent", e)
                })?;
            }
            match std::fs::DirBuilder::new().mode(0o700).create(dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && dir.is_dir() => {}
                Err(e) => return Err(Error::io(dir, "cannot create the cache directory", e)),
            }
        }
        let mode = std::fs::metadata(dir)
            .map_err(|e| Error::io(dir, "cannot read the cache directory", e))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            tracing::warn!(
                dir = %dir.display(),
                mode = format!("{:o}", mode & 0o777),
                "cache directory is accessible to other users"
            );
        }
    }
    #[cfg(not(unix))]
    {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io(dir, "cannot create the cache directory", e))?;
    }
    Ok(())
}

/// Total bytes of the regular files under `path` (a file or a directory), following no links.
pub fn disk_bytes(path: &Path) -> Result<u64> {
    let meta = std::fs::symlink_metadata(path)
        .map_err(|e| Error::io(path, "cannot read the size of", e))?;
    if meta.is_file() {
        return Ok(meta.len());
    }
    if !meta.is_dir() {
        return Ok(0);
    }
    let mut total = 0;
    let entries =
        std::fs::read_dir(path).map_err(|e| Error::io(path, "cannot list the directory", e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(path, "cannot list the directory", e))?;
        total += disk_bytes(&entry.path())?;
    }
    Ok(total)
}

/// Renames a damaged store (a file or a directory) to `<name>.corrupt-<unix millis>` beside
/// it (with `-1`, `-2`... if that name is taken) and returns the new path. `what` names the
/// store in the error. The old store stays readable there for inspection; the caller starts
/// an empty one.
pub fn move_aside(path: &Path, what: &str) -> Result<PathBuf> {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let mut base = path.as_os_str().to_owned();
    base.push(format!(".corrupt-{millis}"));
    let mut target = PathBuf::from(&base);
    let mut n = 0u32;
    while target.exists() {
        n += 1;
        let mut name = base.clone();
        name.push(format!("-{n}"));
        target = PathBuf::from(name);
    }
    std::fs::rename(path, &target).map_err(|e| {
        Error::io(
            path,
            format!("moving the damaged {what} aside to {}", target.display()),
            e,
        )
    })?;
    Ok(target)
}

/// How a lock file is held: by many holders at once, or by one alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockMode {
    /// Held together with other shared holders; excludes an exclusive one.
    Shared,
    /// Held alone.
    Exclusive,
}

/// What [`lock_file`] got.
#[derive(Debug)]
pub enum LockOutcome {
    /// The lock is held (until the file is closed or locked again).
    Held,
    /// Another holder kept a conflicting lock for the whole wait.
    Busy,
    /// The file system does not support advisory locks (some network file systems).
    Unsupported(std::io::Error),
}

/// Opens (creating it, mode 0600 on unix) the lock file at `path`, the advisory-lock file
/// the disk backends keep beside their data. In a read-only directory a lock file left by
/// an earlier run is opened read-only: it can still be locked.
pub fn open_lock_file(path: &Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    match options.open(path) {
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem
            ) =>
        {
            std::fs::File::open(path)
        }
        r => r,
    }
}

/// Takes (or converts to) an advisory lock on `file` (`flock` on unix), retrying with a
/// growing pause while another holder keeps a conflicting one, for up to `wait` (zero: one
/// try). The operating system drops the lock when the process ends, however it ends.
pub fn lock_file(file: &std::fs::File, mode: LockMode, wait: std::time::Duration) -> LockOutcome {
    use std::fs::TryLockError;
    use std::time::{Duration, Instant};
    let started = Instant::now();
    let mut pause = Duration::from_millis(2);
    loop {
        let attempt = match mode {
            LockMode::Exclusive => file.try_lock(),
            LockMode::Shared => file.try_lock_shared(),
        };
        match attempt {
            Ok(()) => return LockOutcome::Held,
            Err(TryLockError::WouldBlock) if started.elapsed() < wait => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            Err(TryLockError::WouldBlock) => return LockOutcome::Busy,
            Err(TryLockError::Error(e)) => return LockOutcome::Unsupported(e),
        }
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn creates_0700_with_parents() {
        let base = std::env::temp_dir().join(format!("plexcache-fs-{}", std::process::id()));
        let dir = base.join("a").join("cache");
        create_private_dir(&dir).unwrap();
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        create_private_dir(&dir).unwrap(); // idempotent
        std::fs::write(dir.join("f"), b"12345").unwrap();
        assert_eq!(disk_bytes(&base).unwrap(), 5);
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn lock_files_are_private_and_exclusive_locks_exclude() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.lock");
        let a = open_lock_file(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let b = open_lock_file(&path).unwrap();
        let zero = std::time::Duration::ZERO;
        assert!(matches!(
            lock_file(&a, LockMode::Shared, zero),
            LockOutcome::Held
        ));
        assert!(matches!(
            lock_file(&b, LockMode::Shared, zero),
            LockOutcome::Held
        ));
        let short = std::time::Duration::from_millis(20);
        assert!(matches!(
            lock_file(&b, LockMode::Exclusive, short),
            LockOutcome::Busy
        ));
        drop(a);
        assert!(matches!(
            lock_file(&b, LockMode::Exclusive, zero),
            LockOutcome::Held
        ));
    }

    #[test]
    fn a_file_in_the_way_is_an_error_naming_the_path() {
        let f = std::env::temp_dir().join(format!("plexcache-fs-file-{}", std::process::id()));
        std::fs::write(&f, b"x").unwrap();
        let err = create_private_dir(&f).unwrap_err().to_string();
        assert!(err.contains(&f.display().to_string()), "{err}");
        std::fs::remove_file(&f).unwrap();
    }
}

#[cfg(test)]
mod move_aside_tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn move_aside_picks_a_free_name_and_keeps_the_content() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("store.db");
        std::fs::write(&file, b"one").unwrap();
        let first = move_aside(&file, "cache database").unwrap();
        assert!(!file.exists());
        assert_eq!(std::fs::read(&first).unwrap(), b"one");
        let name = first.file_name().unwrap().to_string_lossy().into_owned();
        assert!(name.starts_with("store.db.corrupt-"), "{name}");
        // The same millisecond twice: the second gets a suffix instead of replacing the first.
        std::fs::write(&file, b"two").unwrap();
        let second = move_aside(&file, "cache database").unwrap();
        assert_ne!(first, second);
        assert_eq!(std::fs::read(&first).unwrap(), b"one");
        assert_eq!(std::fs::read(&second).unwrap(), b"two");
        let err = move_aside(&file, "cache database").unwrap_err();
        assert!(err.to_string().contains("store.db"), "{err}");
    }
}
