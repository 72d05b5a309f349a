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

use parking_lot::{Mutex, RwLock, RwLockWriteGuard};
use plexcache_core::backend::{
    Access, Batch, BatchOutcome, CacheBackend, Counters, Entry, EntryMeta, EvictionPolicy, Millis,
    PutOutcome, Removed, Usage, WriteLimit, eviction_rank,
};
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

    /// The first entry of an eviction order that is not protected.
    fn first_candidate(
        &self,
        policy: usize,
        protect: &dyn Fn(&str) -> bool,
    ) -> Option<(Rank, Key)> {
        self.order[policy]
            .iter()
            .find(|(_, k)| !protect(k))
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
            writer: Mutex::new(()),
            version: AtomicU64::new(0),
            next_expiry: AtomicU64::new(u64::MAX),
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
    /// Serializes writers, so that a write, its purge and its eviction are one step.
    writer: Mutex<()>,
    /// Moves on every write (the change token).
    version: AtomicU64,
    /// No entry expires before this (a lower bound), so writes skip the purge while nothing
    /// can have expired.
    next_expiry: AtomicU64,
}

type Guards<'a> = Vec<RwLockWriteGuard<'a, Shard>>;

/// What a batch changed, to take it back when it is refused.
#[derive(Default)]
struct Undo {
    removed: Vec<(usize, Key, Slot)>,
    inserted: Vec<(usize, Key)>,
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

    fn bump(&self) {
        self.version.fetch_add(1, Ordering::AcqRel);
    }

    /// Every shard, write-locked in index order (the one order, so no deadlock).
    fn lock_all(&self) -> Guards<'_> {
        self.shards.iter().map(|s| s.write()).collect()
    }

    /// Inserts an entry into its (locked) shard; returns the replaced entry's size.
    fn insert_in(
        &self,
        shard: &mut Shard,
        key: &str,
        value: Bytes,
        meta: EntryMeta,
    ) -> Option<u64> {
        if let Some(at) = meta.expires_at {
            self.next_expiry.fetch_min(at, Ordering::AcqRel);
        }
        let previous = shard.remove(key);
        let previous_size = previous.as_ref().map(|(_, s)| s.meta.size);
        let key: Key = match previous {
            Some((k, _)) => k,
            None => {
                self.entries.fetch_add(1, Ordering::AcqRel);
                Arc::from(key)
            }
        };
        self.bytes.fetch_add(meta.size, Ordering::AcqRel);
        if let Some(old) = previous_size {
            self.bytes.fetch_sub(old, Ordering::AcqRel);
        }
        let seq = self.seq.fetch_add(1, Ordering::AcqRel) + 1;
        shard.insert(key, Slot { value, meta, seq });
        previous_size
    }

    /// Purges up to `limit` entries expired at `now`, soonest first (ties in write order).
    fn purge_in(&self, shards: &mut Guards<'_>, now: Millis, limit: usize) -> Removed {
        self.purge_logged(shards, now, limit, &mut None)
    }

    /// [`purge_in`](Self::purge_in), keeping what it removed in `undo` when given one.
    fn purge_logged(
        &self,
        shards: &mut Guards<'_>,
        now: Millis,
        limit: usize,
        undo: &mut Option<Undo>,
    ) -> Removed {
        let mut removed = Removed::default();
        if limit == 0 || self.next_expiry.load(Ordering::Acquire) > now {
            return removed;
        }
        let mut candidates: Vec<(Millis, u64, usize, Key)> = Vec::new();
        for (i, shard) in shards.iter().enumerate() {
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
        let complete = candidates.len() <= limit;
        candidates.truncate(limit);
        for (_, _, i, key) in candidates {
            if let Some((key, slot)) = shards[i].remove(&key) {
                self.account_removed(slot.meta.size);
                removed.add_one(slot.meta.size);
                if let Some(undo) = undo {
                    undo.removed.push((i, key, slot));
                }
            }
        }
        if complete && undo.is_none() {
            // Everything expired is gone: the next expiry is the smallest left.
            let next = shards
                .iter()
                .filter_map(|s| s.expiry.first().map(|(at, _, _)| *at))
                .min()
                .unwrap_or(u64::MAX);
            self.next_expiry.store(next, Ordering::Release);
        }
        removed
    }

    /// Evicts in `policy` order, skipping protected keys, until at most `target` bytes.
    fn evict_in(
        &self,
        shards: &mut Guards<'_>,
        policy: usize,
        target: u64,
        protect: &dyn Fn(&str) -> bool,
    ) -> Removed {
        let mut removed = Removed::default();
        while self.bytes.load(Ordering::Acquire) > target {
            let best = shards
                .iter()
                .enumerate()
                .filter_map(|(i, s)| s.first_candidate(policy, protect).map(|c| (c, i)))
                .min();
            let Some(((_, key), i)) = best else { break };
            if let Some((_, slot)) = shards[i].remove(&key) {
                self.account_removed(slot.meta.size);
                removed.add_one(slot.meta.size);
            }
        }
        removed
    }

    /// Whether a purge could find something at `now`.
    fn may_purge(&self, limit: &WriteLimit) -> bool {
        limit.purge > 0 && self.next_expiry.load(Ordering::Acquire) <= limit.now
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
        limit: WriteLimit,
    ) -> Result<PutOutcome> {
        let meta = EntryMeta::new(key, value.len(), stored_at, expires_at);
        let _writer = self.writer.lock();
        let mut expired = Removed::default();
        if self.may_purge(&limit) {
            let mut all = self.lock_all();
            expired = self.purge_in(&mut all, limit.now, limit.purge);
        }
        if expired.entries > 0 {
            self.bump();
        }
        let i = self.shard_of(key);
        let previous_size = {
            let mut shard = self.shards[i].write();
            let old = shard.map.get(key).map_or(0, |s| s.meta.size);
            let after = self.bytes.load(Ordering::Acquire).saturating_sub(old) + meta.size;
            if limit.policy == EvictionPolicy::None && after > limit.max_bytes {
                return Ok(PutOutcome::Refused {
                    usage: self.usage_now(),
                });
            }
            self.bump();
            self.insert_in(&mut shard, key, value, meta)
        };
        let mut evicted = Removed::default();
        if let Some(p) = policy_index(limit.policy)
            && self.bytes.load(Ordering::Acquire) > limit.max_bytes
        {
            let mut all = self.lock_all();
            evicted = self.evict_in(&mut all, p, limit.max_bytes, &|k| k == key);
        }
        Ok(PutOutcome::Stored {
            previous_size,
            usage: self.usage_now(),
            expired,
            evicted,
        })
    }

    async fn write_batch(&self, batch: &Batch, limit: WriteLimit) -> Result<BatchOutcome> {
        let _writer = self.writer.lock();
        // Every shard is locked for the whole batch: readers see it all or nothing.
        let mut all = self.lock_all();
        let before = self.usage_now();
        let puts = batch.effective_puts();
        let own: u64 = puts
            .iter()
            .map(|p| plexcache_core::backend::entry_size(&p.key, p.value.len()))
            .sum();
        if limit.policy != EvictionPolicy::None && own > limit.max_bytes {
            return Ok(BatchOutcome::Refused { usage: before });
        }
        // Applied with an undo log, taken back if the result does not fit.
        let mut undo = Some(Undo::default());
        let expired = self.purge_logged(&mut all, limit.now, limit.purge, &mut undo);
        let mut log = undo.unwrap_or_default();
        let mut removed = Removed::default();
        for (i, shard) in all.iter_mut().enumerate() {
            for prefix in &batch.remove_prefixes {
                let keys: Vec<Key> = shard.prefix_range(prefix).cloned().collect();
                for k in keys {
                    if let Some((k, slot)) = shard.remove(&k) {
                        self.account_removed(slot.meta.size);
                        removed.add_one(slot.meta.size);
                        log.removed.push((i, k, slot));
                    }
                }
            }
        }
        for put in &puts {
            let key = put.key.as_str();
            let i = self.shard_of(key);
            if let Some((k, slot)) = all[i].remove(key) {
                self.account_removed(slot.meta.size);
                log.removed.push((i, k, slot));
            }
            let meta = EntryMeta::new(key, put.value.len(), batch.stored_at, put.expires_at);
            self.insert_in(&mut all[i], key, put.value.clone(), meta);
            log.inserted.push((i, Arc::from(key)));
        }
        if limit.policy == EvictionPolicy::None
            && self.bytes.load(Ordering::Acquire) > limit.max_bytes
        {
            for (i, key) in log.inserted {
                if let Some((_, slot)) = all[i].remove(&key) {
                    self.account_removed(slot.meta.size);
                }
            }
            for (i, key, slot) in log.removed {
                self.entries.fetch_add(1, Ordering::AcqRel);
                self.bytes.fetch_add(slot.meta.size, Ordering::AcqRel);
                all[i].insert(key, slot);
            }
            return Ok(BatchOutcome::Refused { usage: before });
        }
        self.bump();
        let mut evicted = Removed::default();
        if let Some(p) = policy_index(limit.policy) {
            let own_keys: std::collections::HashSet<&str> =
                puts.iter().map(|p| p.key.as_str()).collect();
            evicted = self.evict_in(&mut all, p, limit.max_bytes, &|k| own_keys.contains(k));
        }
        Ok(BatchOutcome::Applied {
            removed,
            written: puts.len() as u64,
            expired,
            evicted,
            usage: self.usage_now(),
        })
    }

    fn change_token(&self) -> Option<u64> {
        Some(self.version.load(Ordering::Acquire))
    }

    async fn remove(&self, key: &str) -> Result<Option<EntryMeta>> {
        let _writer = self.writer.lock();
        self.bump();
        let mut shard = self.shards[self.shard_of(key)].write();
        Ok(shard.remove(key).map(|(_, slot)| {
            self.account_removed(slot.meta.size);
            slot.meta
        }))
    }

    async fn remove_prefix(&self, prefix: &str) -> Result<Removed> {
        let _writer = self.writer.lock();
        self.bump();
        let mut removed = Removed::default();
        for mut shard in self.lock_all() {
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
        let _writer = self.writer.lock();
        self.bump();
        let mut removed = Removed::default();
        for mut shard in self.lock_all() {
            for slot in shard.map.values() {
                self.account_removed(slot.meta.size);
                removed.add_one(slot.meta.size);
            }
            *shard = Shard::default();
        }
        self.next_expiry.store(u64::MAX, Ordering::Release);
        Ok(removed)
    }

    async fn usage(&self) -> Result<Usage> {
        Ok(self.usage_now())
    }

    async fn purge_expired(&self, now: Millis, limit: usize) -> Result<Removed> {
        let _writer = self.writer.lock();
        self.bump();
        let mut all = self.lock_all();
        Ok(self.purge_in(&mut all, now, limit))
    }

    async fn evict(
        &self,
        policy: EvictionPolicy,
        target_bytes: u64,
        protect: Option<&str>,
    ) -> Result<Removed> {
        let Some(p) = policy_index(policy) else {
            return Ok(Removed::default());
        };
        let _writer = self.writer.lock();
        self.bump();
        let mut all = self.lock_all();
        Ok(self.evict_in(&mut all, p, target_bytes, &|k| Some(k) == protect))
    }

    async fn keys(&self, prefix: &str, now: Millis, limit: usize) -> Result<Vec<String>> {
        let mut out: Vec<String> = Vec::new();
        // All shards at once, so a batch is seen whole or not at all.
        let all: Vec<_> = self.shards.iter().map(|s| s.read()).collect();
        for shard in &all {
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
        let _writer = self.writer.lock();
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
