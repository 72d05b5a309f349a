//! # plexcache-core
//!
//! The foundation of plexcache: the [`CacheBackend`] contract that storage engines implement,
//! the [`Cache`] policy layer (TTL, a hard size limit with eviction, statistics, single-flight
//! fetches), the checksummed [`codec`], the [`Clock`] abstraction, the one [`Error`] type, and
//! the conformance suite [`testkit`] (cargo feature `testkit`).
//!
//! Applications pick a backend crate (`plexcache-sqlite`, `plexcache-memory`,
//! `plexcache-sled`, `plexcache-redis`) and use [`Cache`] over it; Plex-specific code lives in
//! `plexcache-plex`.
//!
//! ```
//! use std::time::Duration;
//! use plexcache_core::{Cache, ManualClock};
//! // The reference backend keeps this example self-contained; real code uses a backend crate.
//! use plexcache_core::model::ModelBackend;
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let clock = ManualClock::new(0);
//! let cache = Cache::builder(ModelBackend::new())
//!     .default_ttl(Duration::from_secs(60))
//!     .clock(clock.clone())
//!     .build()?;
//!
//! cache.set("library:Movies:all", &vec!["Alien".to_string()]).await?;
//! assert!(cache.get::<Vec<String>>("library:Movies:all").await?.is_some());
//!
//! clock.advance(Duration::from_secs(60));
//! assert_eq!(cache.get::<Vec<String>>("library:Movies:all").await?, None);
//! assert_eq!(cache.stats().await?.session.hits, 1);
//! # Ok::<(), plexcache_core::Error>(())
//! # }).unwrap();
//! ```

pub mod backend;
mod batch;
pub mod blocking;
mod cache;
pub mod clock;
pub mod codec;
mod error;
pub mod fs;
pub mod fskind;
pub mod lease;
pub mod model;
mod stats;
#[cfg(feature = "testkit")]
pub mod testkit;
mod tier;

pub use backend::{
    Access, Batch, BatchOutcome, BatchPut, CacheBackend, Counters, Entry, EntryMeta,
    EvictionPolicy, Millis, PutOutcome, Removed, Revalidated, Usage, WriteLimit,
};
pub use batch::{BatchReport, WriteBatch};
pub use cache::{
    Cache, CacheBuilder, CacheConfig, CheckReport, DEFAULT_CULL_LIMIT, DEFAULT_MAX_KEY_LEN,
    DEFAULT_MEMORY_TIER_BYTES, DEFAULT_SIZE_LIMIT, Sweeper, Ttl,
};
pub use clock::{Clock, ManualClock, SystemClock};
pub use codec::{BorrowedValue, CacheValue, DecodeError, SchemaTag};
pub use error::{BoxError, Error, Result, short_key};
pub use stats::{Stats, StorageInfo};

/// Re-exported so backend crates and users name the same versions.
pub use async_trait::async_trait;
pub use bytes::Bytes;
