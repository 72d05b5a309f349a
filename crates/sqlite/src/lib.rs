//! # plexcache-sqlite
//!
//! The embedded default backend of plexcache: one SQLite database file (bundled SQLite, via
//! `rusqlite`) in the cache directory, shared safely by several threads and several processes.
//!
//! * WAL journal, `synchronous=NORMAL`, a busy timeout plus a bounded retry loop, so processes
//!   sharing one cache never see "database is locked".
//! * One writer connection and at most [`SqliteBuilder::max_readers`] reader connections, each
//!   with a bounded page cache, whatever the number of threads or tasks.
//! * Indexes for expiry and for each eviction order; entry count, byte total, write sequence and
//!   statistics counters kept in the same transaction as every write: no `COUNT(*)` or `SUM()`
//!   on the hot path or on open.
//! * Short reads, and small writes that need not wait for a lock, run inline; large values,
//!   lock waits, scans, checkpoints and flushes run off the runtime's worker (`block_in_place`
//!   on a multi-threaded runtime, the blocking pool on a current-thread one; see [`Offload`]),
//!   so a busy or slow disk never stalls the async runtime.
//! * A damaged or foreign file gives [`Error::Corrupt`](plexcache_core::Error::Corrupt) naming
//!   the path; a foreign SQLite database is left as found, and
//!   [`SqliteBuilder::recover_corrupt`] moves a damaged one of plexcache's aside and starts
//!   empty.
//! * [`ExclusiveSqliteBackend`] ([`SqliteBuilder::open_exclusive`]): an opt-in mode for one process that owns its cache, with
//!   writes committed in batches (within [`SqliteBuilder::commit_interval`]) and a change token
//!   that lets `Cache`'s memory tier answer repeated reads; other openers get [`Error::InUse`](plexcache_core::Error::InUse).
//! * On a network file system (detected at open, or declared with
//!   [`SqliteBuilder::fs_kind`]): a lease file gives one machine and mount at a time the
//!   cache (others get [`Error::InUse`](plexcache_core::Error::InUse) naming the holder), with
//!   a rollback journal, `synchronous = FULL` and its own file name (`plexcache.share.db`);
//!   the exclusive mode refuses
//!   ([`Error::NetworkFileSystem`](plexcache_core::Error::NetworkFileSystem)). Several
//!   machines share a cache through the Redis backend.
//!
//! ```
//! use plexcache_core::Cache;
//! use plexcache_sqlite::SqliteBackend;
//! use std::time::Duration;
//!
//! # let dir = tempfile::tempdir().unwrap();
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let backend = SqliteBackend::builder(dir.path().join("cache")).open()?;
//! let cache = Cache::builder(backend)
//!     .default_ttl(Duration::from_secs(3600))
//!     .build()?;
//! cache.set("library:Movies:all", &vec!["Alien".to_string()]).await?;
//! assert!(cache.get::<Vec<String>>("library:Movies:all").await?.is_some());
//! cache.flush().await?;
//! # Ok::<(), plexcache_core::Error>(())
//! # }).unwrap();
//! ```
//!
//! The exclusive mode, for a process that owns its cache:
//!
//! ```
//! use plexcache_core::Cache;
//! use plexcache_sqlite::SqliteBackend;
//! use std::time::Duration;
//!
//! # let dir = tempfile::tempdir().unwrap();
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let backend = SqliteBackend::builder(dir.path().join("cache"))
//!     .commit_interval(Duration::from_millis(100))
//!     .open_exclusive()?;
//! // A second opener, here or in another process, is refused while this one is open.
//! let second = SqliteBackend::builder(dir.path().join("cache"))
//!     .lock_wait(Duration::from_millis(10))
//!     .open();
//! assert!(matches!(second, Err(plexcache_core::Error::InUse { .. })));
//! let cache = Cache::new(backend);
//! cache.set("search:Movies:alien", &vec!["Alien".to_string()]).await?;
//! cache.flush().await?; // commits the open batch and makes it durable
//! # Ok::<(), plexcache_core::Error>(())
//! # }).unwrap();
//! ```

mod backend;
mod builder;
mod common;
mod ctx;
mod exclusive;
mod lock;
mod prefix;
mod schema;
mod share;
mod store;
mod writer;

pub use backend::SqliteBackend;
pub use builder::{DEFAULT_COMMIT_INTERVAL, DEFAULT_FILE_NAME, Offload, SqliteBuilder};
pub use exclusive::ExclusiveSqliteBackend;
pub use plexcache_core::fskind::FsChoice;
pub use schema::SCHEMA_VERSION;
