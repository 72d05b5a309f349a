//! # plexcache-sled
//!
//! A [`CacheBackend`] on [sled] 0.34: an embedded, pure-Rust log-structured store. One
//! process at a time owns a cache directory.
//!
//! ```no_run
//! use std::time::Duration;
//! use plexcache_core::Cache;
//! use plexcache_sled::SledBackend;
//!
//! # async fn demo() -> plexcache_core::Result<()> {
//! let backend = SledBackend::builder("/var/cache/myapp/plexcache-sled")
//!     .cache_capacity(32 * 1024 * 1024)
//!     .recover_corrupt(true)
//!     .open()?;
//! let cache = Cache::builder(backend)
//!     .default_ttl(Duration::from_secs(3600))
//!     .build()?;
//! cache.set("library:Movies:all", &vec!["Alien".to_string()]).await?;
//! cache.flush().await?; // durable now, not only within the background flush window
//! # Ok(()) }
//! ```
//!
//! ## How it stores entries
//!
//! Each entry is a record in an `entries` tree (metadata followed by the value; values over
//! 4 KiB go to a `values` tree). An expiry index and one index per eviction order (least
//! recently stored, least recently used, least frequently used) hold big-endian rank tuples
//! followed by the key, so purging expired entries and evicting are O(k log n) walks from the
//! front of an index. A `meta` tree holds the layout version, the persistent statistics and,
//! at close, the entry count, byte total and write sequence.
//!
//! Writes do **not** use sled transactions: in sled 0.34 a steady stream of small
//! transactions deadlocks sled's I/O thread pool (reproduced; see `docs/backends.md` (sled section)) and
//! costs 5x more. Instead one in-process writer lock serializes every mutation (sled allows one
//! process per directory anyway) and each write uses plain sled operations in a crash-safe
//! order: index entries before the record, the record removed before its index entries. A
//! crash can leave stale index entries (dropped when a walk meets them), never an entry
//! missing from an index. A [`put`](CacheBackend::put) purges, writes and evicts to its
//! [`WriteLimit`] in one hold of that lock.
//!
//! ## Batches
//!
//! [`write_batch`](CacheBackend::write_batch) (replacing a library: its prefixes removed, its
//! entries written) is atomic to readers in this process: `get` and `keys` never see part of
//! a batch. It is not atomic on disk, as sled cannot make it so without transactions; instead
//! the batch records what it replaces, durably, before applying, and an open after a crash
//! mid-batch removes all of it ([`OpenInfo::interrupted_batch`]): the library reads as absent
//! (a miss), never as a mix of old and new entries. Each batch that replaces a prefix or
//! writes more than one entry therefore costs one flush to disk. A
//! [`change_token`](CacheBackend::change_token) (an in-memory counter) moves on every write.
//!
//! ## Durability
//!
//! sled writes its log in the background every
//! [`flush_every`](SledBackendBuilder::flush_every) (500 ms by default): an acknowledged write
//! can be lost if the process or the machine dies within that window.
//! [`Cache::flush`](plexcache_core::Cache::flush) (and dropping the backend) makes everything
//! acknowledged before it durable.
//!
//! ## Counters after a crash
//!
//! The entry count, byte total and write sequence are kept in memory and stored with a
//! clean-shutdown marker when the backend is closed; opening clears the marker. After an
//! unclean shutdown the next open recounts them with one scan of the entries (1.4 s for a
//! million entries; see [`OpenInfo::recount`]) and logs how long it took. A clean open scans
//! nothing.
//!
//! ## One process at a time
//!
//! sled locks its directory. A second process, or a second open in the same process, gets
//! [`Error::InUse`], which says so and points at the backends
//! that share a cache between processes (SQLite, Redis).
//!
//! ## Damaged directories
//!
//! A damaged or truncated directory gives [`Error::Corrupt`]
//! naming the path. sled 0.34 panics on some damaged files; those panics are contained (see
//! `docs/backends.md` (sled section)). [`SledBackendBuilder::recover_corrupt`] moves a damaged directory
//! aside and starts empty.
//!
//! [sled]: https://docs.rs/sled/0.34.7

use std::path::{Path, PathBuf};
use std::sync::Arc;

use plexcache_core::{
    Access, Batch, BatchOutcome, Bytes, CacheBackend, Counters, Entry, EntryMeta, EvictionPolicy,
    Millis, PutOutcome, Removed, Result, Usage, WriteLimit, async_trait,
};

mod guard;
mod info;
mod open;
mod record;
mod store;

pub use guard::LOCK_FILE;
pub use info::{OpenInfo, Recount};
pub use open::{
    DEFAULT_CACHE_CAPACITY, DEFAULT_FLUSH_EVERY, DEFAULT_SEPARATE_VALUES_OVER, SledBackendBuilder,
};
pub use plexcache_core::fskind::FsChoice;
pub use store::SCHEMA_VERSION;

use store::Store;

/// A cache store in one sled database directory. Cheap to clone (clones share the database);
/// the database closes, flushed and marked clean, when the last clone is dropped.
#[derive(Clone)]
pub struct SledBackend {
    store: Arc<Store>,
    info: Arc<OpenInfo>,
    offload: bool,
}

impl std::fmt::Debug for SledBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledBackend")
            .field("path", &self.store.path)
            .field("spawn_blocking", &self.offload)
            .finish_non_exhaustive()
    }
}

/// The result of [`SledBackend::verify`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Verification {
    /// Entries found by the scan.
    pub entries: u64,
    /// Logical bytes found by the scan.
    pub bytes: u64,
    /// The highest write sequence number of any entry.
    pub max_seq: u64,
    /// Index entries and separately stored values that no entry refers to, left by an
    /// unclean shutdown. Harmless: walks of an index drop them when they meet them.
    pub stale_index_entries: u64,
    /// Everything that is out of step (at most 100); empty when the store is consistent.
    pub problems: Vec<String>,
}

impl Verification {
    /// Whether the store is consistent.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

impl SledBackend {
    /// A builder for the cache in directory `dir` (created 0700 if missing). The directory
    /// belongs to the backend: give each cache its own.
    pub fn builder(dir: impl Into<PathBuf>) -> SledBackendBuilder {
        SledBackendBuilder::new(dir.into())
    }

    /// Opens (or creates) the cache in `dir` with the default settings.
    pub fn open(dir: impl Into<PathBuf>) -> Result<SledBackend> {
        Self::builder(dir).open()
    }

    pub(crate) fn from_store(store: Store, info: OpenInfo, offload: bool) -> Self {
        Self {
            store: Arc::new(store),
            info: Arc::new(info),
            offload,
        }
    }

    /// The cache directory.
    pub fn path(&self) -> &Path {
        &self.store.path
    }

    /// What happened while opening: time taken, whether the store was created, recounted
    /// after an unclean shutdown, or recovered from a damaged directory.
    pub fn open_info(&self) -> &OpenInfo {
        &self.info
    }

    /// Checks every entry against every index and the counters with a full scan
    /// (O(n log n); for `plexcache check` and tests, not for the hot path).
    pub fn verify(&self) -> Result<Verification> {
        self.store.guarded("verifying", |s| s.verify())
    }

    /// Recomputes the entry count and byte total with a full scan and stores them. Opening
    /// does this by itself after an unclean shutdown.
    pub fn recount(&self) -> Result<Recount> {
        self.store.guarded("recounting", |s| s.recount())
    }

    /// Runs `f` on the store inline, or off the runtime when configured (see
    /// [`plexcache_core::blocking::off_runtime`]).
    async fn call<T, F>(&self, what: &'static str, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Store) -> Result<T> + Send + 'static,
    {
        if self.offload {
            let store = Arc::clone(&self.store);
            return plexcache_core::blocking::off_runtime("sled", move || store.guarded(what, f))
                .await;
        }
        self.store.guarded(what, f)
    }
}

#[async_trait]
impl CacheBackend for SledBackend {
    fn name(&self) -> &'static str {
        "sled"
    }

    async fn get(&self, key: &str, now: Millis) -> Result<Option<Entry>> {
        if !self.offload {
            return self.store.guarded("reading an entry", |s| s.get(key, now));
        }
        let key = key.to_owned();
        self.call("reading an entry", move |s| s.get(&key, now))
            .await
    }

    async fn put(
        &self,
        key: &str,
        value: Bytes,
        stored_at: Millis,
        expires_at: Option<Millis>,
        limit: WriteLimit,
    ) -> Result<PutOutcome> {
        if !self.offload {
            return self.store.guarded("writing an entry", |s| {
                s.put(key, &value, stored_at, expires_at, limit)
            });
        }
        let key = key.to_owned();
        self.call("writing an entry", move |s| {
            s.put(&key, &value, stored_at, expires_at, limit)
        })
        .await
    }

    async fn write_batch(&self, batch: &Batch, limit: WriteLimit) -> Result<BatchOutcome> {
        if !self.offload {
            return self
                .store
                .guarded("writing a batch", |s| s.write_batch(batch, limit));
        }
        let batch = batch.clone();
        self.call("writing a batch", move |s| s.write_batch(&batch, limit))
            .await
    }

    fn change_token(&self) -> Option<u64> {
        Some(self.store.change_token())
    }

    fn storage_info(&self) -> Option<plexcache_core::StorageInfo> {
        Some(plexcache_core::StorageInfo {
            fs: self.info.fs.clone()?,
            mode: "one process (directory lock)".to_owned(),
            lease: None,
        })
    }

    async fn remove(&self, key: &str) -> Result<Option<EntryMeta>> {
        let key = key.to_owned();
        self.call("removing an entry", move |s| s.remove(&key))
            .await
    }

    async fn remove_prefix(&self, prefix: &str) -> Result<Removed> {
        let prefix = prefix.to_owned();
        self.call("removing by prefix", move |s| s.remove_prefix(&prefix))
            .await
    }

    async fn clear(&self) -> Result<Removed> {
        self.call("clearing", |s| s.clear()).await
    }

    async fn usage(&self) -> Result<Usage> {
        self.store.guarded("reading usage", |s| Ok(s.usage()))
    }

    async fn purge_expired(&self, now: Millis, limit: usize) -> Result<Removed> {
        self.call("purging expired entries", move |s| {
            s.purge_expired(now, limit)
        })
        .await
    }

    async fn evict(
        &self,
        policy: EvictionPolicy,
        target_bytes: u64,
        protect: Option<&str>,
    ) -> Result<Removed> {
        let protect = protect.map(str::to_owned);
        self.call("evicting", move |s| {
            s.evict(policy, target_bytes, protect.as_deref())
        })
        .await
    }

    async fn keys(&self, prefix: &str, now: Millis, limit: usize) -> Result<Vec<String>> {
        let prefix = prefix.to_owned();
        self.call("listing keys", move |s| s.keys(&prefix, now, limit))
            .await
    }

    async fn record_accesses(&self, accesses: &[Access]) -> Result<()> {
        if accesses.is_empty() {
            return Ok(());
        }
        let accesses = accesses.to_vec();
        self.call("recording reads", move |s| s.record_accesses(&accesses))
            .await
    }

    async fn load_stats(&self) -> Result<Counters> {
        self.store.guarded("reading statistics", |s| s.load_stats())
    }

    async fn add_stats(&self, delta: &Counters) -> Result<()> {
        let delta = *delta;
        self.call("adding statistics", move |s| s.add_stats(&delta))
            .await
    }

    async fn flush(&self) -> Result<()> {
        // sled runs the flush (write + fsync) on its own thread pool; awaiting it does not
        // block the runtime.
        self.store.guarded("flushing", |_| Ok(()))?;
        self.store
            .db()
            .flush_async()
            .await
            .map(|_| ())
            .map_err(|e| self.store.sled_err("flushing", e))
    }

    async fn integrity_check(&self) -> Result<Vec<String>> {
        self.call("checking integrity", |s| s.verify().map(|v| v.problems))
            .await
    }

    async fn disk_usage(&self) -> Result<Option<u64>> {
        self.call("measuring disk usage", |s| s.disk_usage().map(Some))
            .await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::expect_used, clippy::unwrap_used)]

    use super::*;
    use plexcache_core::Error;

    #[test]
    fn a_panic_inside_a_call_is_contained_and_poisons_the_backend() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cache");
        let b = SledBackend::open(&path).unwrap();
        let r: Result<()> = b.store.guarded("testing", |_| panic!("boom"));
        match r {
            Err(e @ Error::Corrupt { .. }) => {
                let msg = e.to_string();
                assert!(
                    msg.contains("boom") && msg.contains(&path.display().to_string()),
                    "{msg}"
                );
            }
            other => panic!("expected Corrupt, got {other:?}"),
        }
        // Every later call refuses, and no clean-shutdown marker is written on drop.
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        assert!(rt.block_on(b.usage()).unwrap_err().is_corrupt());
        assert!(rt.block_on(b.flush()).unwrap_err().is_corrupt());
        drop(b);
        let b = SledBackend::open(&path).unwrap();
        assert!(b.open_info().recount.is_some(), "the next open recounts");
    }
}
