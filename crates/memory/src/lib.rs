//! # plexcache-memory
//!
//! The in-process backend of plexcache: the fastest, with no disk and nothing shared between
//! processes. Entries live in sharded hash maps; each shard keeps ordered indexes (keys, expiry,
//! and the three eviction orders), so every operation is O(log n), or O(k log n) for k entries
//! touched, plus a small constant per shard.
//!
//! Pick it for tests, for short-lived tools, and as a first-level cache; pick
//! `plexcache-sqlite` when the cache must survive restarts.
//!
//! ```
//! use std::time::Duration;
//! use plexcache_core::Cache;
//! use plexcache_memory::MemoryBackend;
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let cache = Cache::builder(MemoryBackend::new())
//!     .default_ttl(Duration::from_secs(3600))
//!     .size_limit(64 * 1024 * 1024)
//!     .build()?;
//! cache.set("search:Movies:Alien", &vec!["12345".to_string()]).await?;
//! assert_eq!(cache.get::<Vec<String>>("search:Movies:Alien").await?.map(|v| v.len()), Some(1));
//! # Ok::<(), plexcache_core::Error>(())
//! # }).unwrap();
//! ```

use std::collections::hash_map::RandomState;
use std::collections::{BTreeSet, HashMap};
use std::hash::BuildHasher;
use std::ops::Bound;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::{Mutex, RwLock};
use plexcache_core::backend::{
    Access, CacheBackend, Counters, Entry, EntryMeta, EvictionPolicy, Millis, PutOutcome, Removed,
    Usage,
};
use plexcache_core::model::eviction_rank;
use plexcache_core::{Bytes, Result, async_trait};

type Rank = (u64, u64, u64);
type Key = Arc<str>;

const POLICIES: [EvictionPolicy; 3] = [
    EvictionPolicy::LeastRecentlyStored,
    EvictionPolicy::LeastRecentlyUsed,
    EvictionPolicy::LeastFrequentlyUsed,
];

fn policy_index(policy: EvictionPolicy) -> Option<usize> {
    match policy {
        EvictionPolicy::LeastRecentlyStored => Some(0),
        EvictionPolicy::LeastRecentlyUsed => Some(1),
        EvictionPolicy::LeastFrequentlyUsed => Some(2),
        EvictionPolicy::None => None,
    }
}

#[derive(Debug)]
struct Slot {
    value: Bytes,
    meta: EntryMeta,
    seq: u64,
}

impl Slot {
    fn ranks(&self) -> [Rank; 3] {
        POLICIES.map(|p| eviction_rank(p, &self.meta, self.seq))
    }
}

#[derive(Debug, Default)]
struct Shard {
    map: HashMap<Key, Slot>,
    /// Keys in byte order, for prefix operations.
    keys: BTreeSet<Key>,
    /// (expires_at, seq, key) for entries that expire.
    expiry: BTreeSet<(Millis, u64, Key)>,
    /// One index per eviction policy, ordered by `eviction_rank`.
    order: [BTreeSet<(Rank, Key)>; 3],
}

impl Shard {
    fn insert(&mut self, key: Key, slot: Slot) {
        if let Some(at) = slot.meta.expires_at {
            self.expiry.insert((at, slot.seq, key.clone()));
        }
        for (index, rank) in self.order.iter_mut().zip(slot.ranks()) {
            index.insert((rank, key.clone()));
        }
        self.keys.insert(key.clone());
        self.map.insert(key, slot);
    }

    fn remove(&mut self, key: &str) -> Option<(Key, Slot)> {
        let (key, slot) = self.map.remove_entry(key)?;
        self.unindex(&key, &slot);
        self.keys.remove(&key);
        Some((key, slot))
    }

    fn unindex(&mut self, key: &Key, slot: &Slot) {
        if let Some(at) = slot.meta.expires_at {
            self.expiry.remove(&(at, slot.seq, key.clone()));
        }
        for (index, rank) in self.order.iter_mut().zip(slot.ranks()) {
            index.remove(&(rank, key.clone()));
        }
    }

    /// The first entry of an eviction order that is not `protect`.
    fn first_candidate(&self, policy: usize, protect: Option<&str>) -> Option<(Rank, Key)> {
        self.order[policy]
            .iter()
            .find(|(_, k)| Some(&**k) != protect)
            .cloned()
    }

    /// Keys in `[prefix, successor)`.
    fn prefix_range<'a>(&'a self, prefix: &str) -> impl Iterator<Item = &'a Key> + 'a {
        let start: Key = Arc::from(prefix);
        let prefix = start.clone();
        self.keys
            .range::<Key, _>((Bound::Included(start), Bound::Unbounded))
            .take_while(move |k| k.starts_with(&*prefix))
    }
}

/// Builds a [`MemoryBackend`].
#[derive(Debug, Clone)]
pub struct MemoryBackendBuilder {
    shards: usize,
}

impl Default for MemoryBackendBuilder {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(4, |n| n.get());
        Self {
            shards: (cores * 4).next_power_of_two().clamp(4, 64),
        }
    }
}

impl MemoryBackendBuilder {
    /// Number of shards (rounded up to a power of two, at least 1). Default: 4 per core, 4 to 64.
    pub fn shards(mut self, n: usize) -> Self {
        self.shards = n.max(1).next_power_of_two();
        self
    }

    /// Builds the backend.
    pub fn build(self) -> MemoryBackend {
        MemoryBackend {
            shards: (0..self.shards)
                .map(|_| RwLock::new(Shard::default()))
                .collect(),
            hasher: RandomState::new(),
            entries: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            seq: AtomicU64::new(0),
            stats: Mutex::new(Counters::default()),
        }
    }
}

/// The in-process backend (see the [crate documentation](crate)).
#[derive(Debug)]
pub struct MemoryBackend {
    shards: Box<[RwLock<Shard>]>,
    hasher: RandomState,
    entries: AtomicU64,
    bytes: AtomicU64,
    seq: AtomicU64,
    stats: Mutex<Counters>,
}

impl Default for MemoryBackend {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryBackend {
    /// A backend with the default number of shards.
    pub fn new() -> Self {
        MemoryBackendBuilder::default().build()
    }

    /// A builder.
    pub fn builder() -> MemoryBackendBuilder {
        MemoryBackendBuilder::default()
    }

    fn shard_of(&self, key: &str) -> usize {
        // The shard count is a power of two.
        (self.hasher.hash_one(key) as usize) & (self.shards.len() - 1)
    }

    fn usage_now(&self) -> Usage {
        Usage {
            entries: self.entries.load(Ordering::Acquire),
            bytes: self.bytes.load(Ordering::Acquire),
        }
    }

    fn account_removed(&self, size: u64) {
        self.entries.fetch_sub(1, Ordering::AcqRel);
        self.bytes.fetch_sub(size, Ordering::AcqRel);
    }

    /// Removes `key` from shard `i` if its rank in `policy` is still `rank`.
    fn evict_one(&self, i: usize, policy: usize, rank: Rank, key: &str) -> Option<u64> {
        let mut shard = self.shards[i].write();
        let still = shard
            .map
            .get(key)
            .is_some_and(|slot| slot.ranks()[policy] == rank);
        if !still {
            return None;
        }
        let (_, slot) = shard.remove(key)?;
        self.account_removed(slot.meta.size);
        Some(slot.meta.size)
    }
}

#[async_trait]
impl CacheBackend for MemoryBackend {
    fn name(&self) -> &'static str {
        "memory"
    }

    async fn get(&self, key: &str, now: Millis) -> Result<Option<Entry>> {
        let shard = self.shards[self.shard_of(key)].read();
        Ok(shard.map.get(key).and_then(|slot| {
            (!slot.meta.is_expired(now)).then(|| Entry {
                value: slot.value.clone(),
                meta: slot.meta,
            })
        }))
    }

    async fn put(
        &self,
        key: &str,
        value: Bytes,
        stored_at: Millis,
        expires_at: Option<Millis>,
        max_bytes: Option<u64>,
    ) -> Result<PutOutcome> {
        let meta = EntryMeta::new(key, value.len(), stored_at, expires_at);
        let mut shard = self.shards[self.shard_of(key)].write();
        let previous_size = shard.map.get(key).map(|s| s.meta.size);
        let old = previous_size.unwrap_or(0);
        if let Some(max) = max_bytes {
            // Reserve the bytes atomically, so writers on other shards cannot overshoot.
            let reserved = self
                .bytes
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |cur| {
                    let next = cur.saturating_sub(old) + meta.size;
                    (next <= max).then_some(next)
                });
            if reserved.is_err() {
                return Ok(PutOutcome::Refused {
                    usage: self.usage_now(),
                });
            }
        } else {
            self.bytes.fetch_add(meta.size, Ordering::AcqRel);
            self.bytes.fetch_sub(old, Ordering::AcqRel);
        }
        let key: Key = match shard.remove(key) {
            Some((k, _)) => k,
            None => {
                self.entries.fetch_add(1, Ordering::AcqRel);
                Arc::from(key)
            }
        };
        let seq = self.seq.fetch_add(1, Ordering::AcqRel) + 1;
        shard.insert(key, Slot { value, meta, seq });
        drop(shard);
        Ok(PutOutcome::Stored {
            previous_size,
            usage: self.usage_now(),
        })
    }

    async fn remove(&self, key: &str) -> Result<Option<EntryMeta>> {
        let mut shard = self.shards[self.shard_of(key)].write();
        Ok(shard.remove(key).map(|(_, slot)| {
            self.account_removed(slot.meta.size);
            slot.meta
        }))
    }

    async fn remove_prefix(&self, prefix: &str) -> Result<Removed> {
        let mut removed = Removed::default();
        for lock in self.shards.iter() {
            let mut shard = lock.write();
            let keys: Vec<Key> = shard.prefix_range(prefix).cloned().collect();
            for k in keys {
                if let Some((_, slot)) = shard.remove(&k) {
                    self.account_removed(slot.meta.size);
                    removed.add_one(slot.meta.size);
                }
            }
        }
        Ok(removed)
    }

    async fn clear(&self) -> Result<Removed> {
        let mut removed = Removed::default();
        for lock in self.shards.iter() {
            let mut shard = lock.write();
            for slot in shard.map.values() {
                self.account_removed(slot.meta.size);
                removed.add_one(slot.meta.size);
            }
            *shard = Shard::default();
        }
        Ok(removed)
    }

    async fn usage(&self) -> Result<Usage> {
        Ok(self.usage_now())
    }

    async fn purge_expired(&self, now: Millis, limit: usize) -> Result<Removed> {
        // Soonest expiry first across shards: take up to `limit` candidates from each shard,
        // merge, keep the first `limit`.
        let mut candidates: Vec<(Millis, u64, usize, Key)> = Vec::new();
        for (i, lock) in self.shards.iter().enumerate() {
            let shard = lock.read();
            candidates.extend(
                shard
                    .expiry
                    .iter()
                    .take_while(|(at, _, _)| *at <= now)
                    .take(limit)
                    .map(|(at, seq, k)| (*at, *seq, i, k.clone())),
            );
        }
        candidates.sort_unstable();
        candidates.truncate(limit);
        let mut removed = Removed::default();
        for (_, _, i, key) in candidates {
            let mut shard = self.shards[i].write();
            // Re-check under the write lock: the entry may have been rewritten meanwhile.
            if shard.map.get(&key).is_some_and(|s| s.meta.is_expired(now))
                && let Some((_, slot)) = shard.remove(&key)
            {
                self.account_removed(slot.meta.size);
                removed.add_one(slot.meta.size);
            }
        }
        Ok(removed)
    }

    async fn evict(
        &self,
        policy: EvictionPolicy,
        target_bytes: u64,
        protect: Option<&str>,
    ) -> Result<Removed> {
        let mut removed = Removed::default();
        let Some(p) = policy_index(policy) else {
            return Ok(removed);
        };
        while self.bytes.load(Ordering::Acquire) > target_bytes {
            let best = self
                .shards
                .iter()
                .enumerate()
                .filter_map(|(i, lock)| lock.read().first_candidate(p, protect).map(|c| (c, i)))
                .min();
            let Some(((rank, key), i)) = best else { break };
            if let Some(size) = self.evict_one(i, p, rank, &key) {
                removed.add_one(size);
            }
        }
        Ok(removed)
    }

    async fn keys(&self, prefix: &str, now: Millis, limit: usize) -> Result<Vec<String>> {
        let mut out: Vec<String> = Vec::new();
        for lock in self.shards.iter() {
            let shard = lock.read();
            out.extend(
                shard
                    .prefix_range(prefix)
                    .filter(|k| {
                        shard
                            .map
                            .get(&***k)
                            .is_some_and(|s| !s.meta.is_expired(now))
                    })
                    .take(limit)
                    .map(|k| k.to_string()),
            );
        }
        out.sort_unstable();
        out.truncate(limit);
        Ok(out)
    }

    async fn record_accesses(&self, accesses: &[Access]) -> Result<()> {
        for a in accesses {
            let mut shard = self.shards[self.shard_of(&a.key)].write();
            let Some((key, mut slot)) = shard.remove(&a.key) else {
                continue;
            };
            slot.meta.accessed_at = slot.meta.accessed_at.max(a.at);
            slot.meta.access_count = slot.meta.access_count.saturating_add(a.count);
            shard.insert(key, slot);
        }
        Ok(())
    }

    async fn load_stats(&self) -> Result<Counters> {
        Ok(*self.stats.lock())
    }

    async fn add_stats(&self, delta: &Counters) -> Result<()> {
        let mut stats = self.stats.lock();
        *stats = stats.saturating_add(delta);
        Ok(())
    }

    async fn flush(&self) -> Result<()> {
        Ok(())
    }

    async fn disk_usage(&self) -> Result<Option<u64>> {
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use plexcache_core::testkit::BackendFactory;

    struct Factory {
        shards: usize,
    }

    #[async_trait]
    impl BackendFactory for Factory {
        type Backend = MemoryBackend;
        async fn create(&self) -> MemoryBackend {
            MemoryBackend::builder().shards(self.shards).build()
        }
        async fn reopen(&self, _backend: MemoryBackend) -> Option<MemoryBackend> {
            None
        }
    }

    plexcache_core::conformance_tests!(Factory { shards: 16 });

    mod single_shard {
        use super::Factory;
        plexcache_core::conformance_tests!(Factory { shards: 1 });
    }
}
