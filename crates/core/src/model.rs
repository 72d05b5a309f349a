//! [`ModelBackend`]: the executable specification of the backend contract.
//!
//! One mutex around one `BTreeMap`, with linear scans for expiry and eviction: obviously
//! correct, deliberately simple, and **not** for production (eviction and purging are O(n)).
//! It exists so that core's own tests and examples need no backend crate, and as the oracle
//! that real backends are compared against in differential tests. Use `plexcache-memory` for
//! an in-process cache.

use std::collections::BTreeMap;

use async_trait::async_trait;
use bytes::Bytes;
use parking_lot::Mutex;

use crate::Result;
use std::collections::HashSet;

use crate::backend::{
    Access, Batch, BatchOutcome, CacheBackend, Counters, Entry, EntryMeta, EvictionPolicy, Millis,
    PutOutcome, Removed, Usage, WriteLimit,
};

pub use crate::backend::eviction_rank;

#[derive(Debug, Default, Clone)]
struct State {
    map: BTreeMap<String, (Bytes, EntryMeta, u64)>,
    bytes: u64,
    seq: u64,
    stats: Counters,
    /// Changes on every write (the change token).
    version: u64,
}

impl State {
    fn insert(&mut self, key: &str, value: Bytes, meta: EntryMeta) -> Option<u64> {
        let previous = self.remove(key).map(|m| m.size);
        self.seq += 1;
        self.bytes += meta.size;
        self.map.insert(key.to_owned(), (value, meta, self.seq));
        previous
    }

    fn purge(&mut self, now: Millis, limit: usize) -> Removed {
        let mut expired: Vec<(Millis, u64, String)> = self
            .map
            .iter()
            .filter(|(_, (_, m, _))| m.is_expired(now))
            .map(|(k, (_, m, seq))| (m.expires_at.unwrap_or(0), *seq, k.clone()))
            .collect();
        expired.sort();
        let mut removed = Removed::default();
        for (_, _, k) in expired.into_iter().take(limit) {
            if let Some(meta) = self.remove(&k) {
                removed.add_one(meta.size);
            }
        }
        removed
    }

    fn evict(
        &mut self,
        policy: EvictionPolicy,
        target: u64,
        protect: &dyn Fn(&str) -> bool,
    ) -> Removed {
        let mut removed = Removed::default();
        if policy == EvictionPolicy::None {
            return removed;
        }
        while self.bytes > target {
            let victim = self
                .map
                .iter()
                .filter(|(k, _)| !protect(k))
                .min_by_key(|(_, (_, m, seq))| eviction_rank(policy, m, *seq))
                .map(|(k, _)| k.clone());
            let Some(victim) = victim else { break };
            if let Some(meta) = self.remove(&victim) {
                removed.add_one(meta.size);
            }
        }
        removed
    }

    fn remove_prefix(&mut self, prefix: &str) -> Removed {
        let keys: Vec<String> = self
            .map
            .range(prefix.to_owned()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, _)| k.clone())
            .collect();
        let mut removed = Removed::default();
        for k in keys {
            if let Some(meta) = self.remove(&k) {
                removed.add_one(meta.size);
            }
        }
        removed
    }

    fn remove(&mut self, key: &str) -> Option<EntryMeta> {
        let (_, meta, _) = self.map.remove(key)?;
        self.bytes -= meta.size;
        Some(meta)
    }

    fn usage(&self) -> Usage {
        Usage {
            entries: self.map.len() as u64,
            bytes: self.bytes,
        }
    }
}

/// The reference backend (see the [module documentation](self)).
#[derive(Debug, Default)]
pub struct ModelBackend {
    state: Mutex<State>,
}

impl ModelBackend {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl CacheBackend for ModelBackend {
    fn name(&self) -> &'static str {
        "model"
    }

    async fn get(&self, key: &str, now: Millis) -> Result<Option<Entry>> {
        let state = self.state.lock();
        Ok(state.map.get(key).and_then(|(value, meta, _)| {
            (!meta.is_expired(now)).then(|| Entry {
                value: value.clone(),
                meta: *meta,
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
        let mut state = self.state.lock();
        let meta = EntryMeta::new(key, value.len(), stored_at, expires_at);
        let expired = state.purge(limit.now, limit.purge);
        if expired.entries > 0 {
            state.version += 1;
        }
        let previous_size = state.map.get(key).map(|(_, m, _)| m.size);
        let after = state.bytes - previous_size.unwrap_or(0) + meta.size;
        if limit.policy == EvictionPolicy::None && after > limit.max_bytes {
            return Ok(PutOutcome::Refused {
                usage: state.usage(),
            });
        }
        state.version += 1;
        state.insert(key, value, meta);
        let evicted = state.evict(limit.policy, limit.max_bytes, &|k| k == key);
        Ok(PutOutcome::Stored {
            previous_size,
            usage: state.usage(),
            expired,
            evicted,
        })
    }

    async fn write_batch(&self, batch: &Batch, limit: WriteLimit) -> Result<BatchOutcome> {
        let mut state = self.state.lock();
        // Applied to a copy, swapped in only when it fits: all or nothing.
        let mut next = state.clone();
        let expired = next.purge(limit.now, limit.purge);
        let mut removed = Removed::default();
        for prefix in &batch.remove_prefixes {
            removed.add(next.remove_prefix(prefix));
        }
        let mut written: HashSet<&str> = HashSet::new();
        for put in &batch.puts {
            let meta = EntryMeta::new(&put.key, put.value.len(), batch.stored_at, put.expires_at);
            next.insert(&put.key, put.value.clone(), meta);
            written.insert(&put.key);
        }
        let evicted = next.evict(limit.policy, limit.max_bytes, &|k| written.contains(k));
        if next.bytes > limit.max_bytes {
            return Ok(BatchOutcome::Refused {
                usage: state.usage(),
            });
        }
        next.version += 1;
        *state = next;
        Ok(BatchOutcome::Applied {
            removed,
            written: written.len() as u64,
            expired,
            evicted,
            usage: state.usage(),
        })
    }

    fn change_token(&self) -> Option<u64> {
        Some(self.state.lock().version)
    }

    async fn remove(&self, key: &str) -> Result<Option<EntryMeta>> {
        let mut state = self.state.lock();
        state.version += 1;
        Ok(state.remove(key))
    }

    async fn remove_prefix(&self, prefix: &str) -> Result<Removed> {
        let mut state = self.state.lock();
        state.version += 1;
        Ok(state.remove_prefix(prefix))
    }

    async fn clear(&self) -> Result<Removed> {
        let mut state = self.state.lock();
        let removed = Removed {
            entries: state.map.len() as u64,
            bytes: state.bytes,
        };
        state.map.clear();
        state.bytes = 0;
        state.version += 1;
        Ok(removed)
    }

    async fn usage(&self) -> Result<Usage> {
        Ok(self.state.lock().usage())
    }

    async fn purge_expired(&self, now: Millis, limit: usize) -> Result<Removed> {
        let mut state = self.state.lock();
        state.version += 1;
        Ok(state.purge(now, limit))
    }

    async fn evict(
        &self,
        policy: EvictionPolicy,
        target_bytes: u64,
        protect: Option<&str>,
    ) -> Result<Removed> {
        let mut state = self.state.lock();
        state.version += 1;
        Ok(state.evict(policy, target_bytes, &|k| Some(k) == protect))
    }

    async fn keys(&self, prefix: &str, now: Millis, limit: usize) -> Result<Vec<String>> {
        let state = self.state.lock();
        Ok(state
            .map
            .range(prefix.to_owned()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .filter(|(_, (_, m, _))| !m.is_expired(now))
            .take(limit)
            .map(|(k, _)| k.clone())
            .collect())
    }

    async fn record_accesses(&self, accesses: &[Access]) -> Result<()> {
        let mut state = self.state.lock();
        for a in accesses {
            if let Some((_, meta, _)) = state.map.get_mut(&a.key) {
                meta.accessed_at = meta.accessed_at.max(a.at);
                meta.access_count = meta.access_count.saturating_add(a.count);
            }
        }
        Ok(())
    }

    async fn load_stats(&self) -> Result<Counters> {
        Ok(self.state.lock().stats)
    }

    async fn add_stats(&self, delta: &Counters) -> Result<()> {
        let mut state = self.state.lock();
        state.stats = state.stats.saturating_add(delta);
        Ok(())
    }

    async fn flush(&self) -> Result<()> {
        Ok(())
    }

    async fn disk_usage(&self) -> Result<Option<u64>> {
        Ok(None)
    }
}
