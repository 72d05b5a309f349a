//! The one error type of plexcache.

use std::path::PathBuf;
use std::sync::Arc;

/// A boxed error from a backend's engine or a fetch function.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in plexcache. Messages name the key or path involved; the
/// underlying engine error is the [`source`](std::error::Error::source).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The storage engine failed.
    #[error("{backend} backend: {context}")]
    Backend {
        /// Backend name (`sqlite`, `sled`, ...).
        backend: &'static str,
        /// What was being done, with the key or path.
        context: String,
        /// The engine's error.
        #[source]
        source: BoxError,
    },
    /// An I/O error on a path.
    #[error("{}: {context}", path.display())]
    Io {
        /// The path involved.
        path: PathBuf,
        /// What was being done.
        context: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The store on disk is damaged or is not a cache store.
    #[error("{}: {detail}", path.display())]
    Corrupt {
        /// The file or directory.
        path: PathBuf,
        /// What is wrong.
        detail: String,
        /// The engine's error, if any.
        #[source]
        source: Option<BoxError>,
    },
    /// The store was written by a newer version of plexcache.
    #[error(
        "{}: written by a newer plexcache (store schema version {found}, this build reads up to {supported}); upgrade plexcache or use another cache directory",
        path.display()
    )]
    IncompatibleVersion {
        /// The store.
        path: PathBuf,
        /// The version found.
        found: u64,
        /// The newest version this build reads.
        supported: u64,
    },
    /// The store is locked by another process.
    #[error("{}: {detail}", path.display())]
    InUse {
        /// The store.
        path: PathBuf,
        /// What to do about it.
        detail: String,
    },
    /// A single value is larger than the whole cache.
    #[error(
        "value for key {key:?} is {size} bytes (key + value), larger than the cache size limit of {limit} bytes; raise the size limit or store less"
    )]
    TooLarge {
        /// The key.
        key: String,
        /// Key bytes + encoded value bytes.
        size: u64,
        /// The size limit.
        limit: u64,
    },
    /// The entries of one batch write are larger than the whole cache (or do not fit with the
    /// eviction policy `none`); nothing was written.
    #[error(
        "batch of {entries} entries is {size} bytes (keys + values), more than the cache size limit of {limit} bytes allows; nothing was written (raise the size limit or write less)"
    )]
    BatchTooLarge {
        /// Entries in the batch.
        entries: u64,
        /// Key bytes + encoded value bytes of the batch.
        size: u64,
        /// The size limit.
        limit: u64,
    },
    /// The cache is full and its eviction policy is `none`.
    #[error(
        "cache is full: writing key {key:?} ({size} bytes) would exceed the size limit of {limit} bytes and the eviction policy is none"
    )]
    CacheFull {
        /// The key.
        key: String,
        /// Key bytes + encoded value bytes.
        size: u64,
        /// The size limit.
        limit: u64,
    },
    /// A key that cannot be stored.
    #[error("invalid key {key:?}: {reason}")]
    InvalidKey {
        /// The key (shortened when very long).
        key: String,
        /// Why.
        reason: String,
    },
    /// A value could not be encoded.
    #[error("cannot encode the value for key {key:?}")]
    Encode {
        /// The key.
        key: String,
        /// The codec error.
        #[source]
        source: postcard::Error,
    },
    /// The fetch function of `get_or_fetch` failed. Every caller that waited for that fetch gets
    /// the same error.
    #[error("fetching the value for key {key:?} failed")]
    Fetch {
        /// The key.
        key: String,
        /// The fetch function's error, shared by every waiting caller.
        #[source]
        source: Arc<dyn std::error::Error + Send + Sync + 'static>,
    },
    /// The store cannot be used safely on the network file system it is on (sled and the
    /// exclusive SQLite mode rely on locks that other mounts of a share do not see).
    #[error("{}: {detail}", path.display())]
    NetworkFileSystem {
        /// The store.
        path: PathBuf,
        /// Why, and what to use instead.
        detail: String,
    },
    /// A configuration value is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),
}

impl Error {
    /// A backend error with context.
    pub fn backend(
        backend: &'static str,
        context: impl Into<String>,
        source: impl Into<BoxError>,
    ) -> Self {
        Self::Backend {
            backend,
            context: context.into(),
            source: source.into(),
        }
    }

    /// An I/O error on a path.
    pub fn io(
        path: impl Into<PathBuf>,
        context: impl Into<String>,
        source: std::io::Error,
    ) -> Self {
        Self::Io {
            path: path.into(),
            context: context.into(),
            source,
        }
    }

    /// Whether this error means the store is damaged (see [`Error::Corrupt`]).
    pub fn is_corrupt(&self) -> bool {
        matches!(self, Self::Corrupt { .. })
    }
}

/// Shortens a key for an error or log message (keys can be long; messages stay one line):
/// the first 200 bytes, cut at a character boundary, and the full length. Every backend uses
/// it, so a key reads the same in every message.
///
/// ```
/// let long = "k".repeat(300);
/// assert_eq!(plexcache_core::short_key("movies"), "movies");
/// assert!(plexcache_core::short_key(&long).ends_with("… (300 bytes)"));
/// ```
pub fn short_key(key: &str) -> String {
    const MAX: usize = 200;
    if key.len() <= MAX {
        return key.to_owned();
    }
    let mut end = MAX;
    while !key.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes)", &key[..end], key.len())
}
