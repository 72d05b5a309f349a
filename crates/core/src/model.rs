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
use crate::backend::{
    Access, CacheBackend, Counters, Entry, EntryMeta, EvictionPolicy, Millis, PutOutcome, Removed,
    Usage,
};

/// The position of an entry in an eviction order: smaller goes first. `seq` is a per-store
/// write sequence number that breaks ties between equal timestamps. Every backend orders
/// eviction candidates by exactly this key.
pub fn eviction_rank(policy: EvictionPolicy, meta: &EntryMeta, seq: u64) -> (u64, u64, u64) {
    match policy {
        EvictionPolicy::LeastRecentlyStored | EvictionPolicy::None => (meta.stored_at, seq, 0),
        EvictionPolicy::LeastRecentlyUsed => (meta.accessed_at, seq, 0),
        EvictionPolicy::LeastFrequentlyUsed => (meta.access_count, meta.accessed_at, seq),
    }
}

#[derive(Debug, Default)]
struct State {
    map: BTreeMap<String, (Bytes, EntryMeta, u64)>,
    bytes: u64,
    seq: u64,
    stats: Counters,
}

impl State {
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
        max_bytes: Option<u64>,
    ) -> Result<PutOutcome> {
        let mut state = self.state.lock();
        let meta = EntryMeta::new(key, value.len(), stored_at, expires_at);
        let previous_size = state.map.get(key).map(|(_, m, _)| m.size);
        let after = state.bytes - previous_size.unwrap_or(0) + meta.size;
        if max_bytes.is_some_and(|max| after > max) {
            return Ok(PutOutcome::Refused {
                usage: state.usage(),
            });
        }
        state.seq += 1;
        let seq = state.seq;
        state.remove(key);
        state.bytes += meta.size;
        state.map.insert(key.to_owned(), (value, meta, seq));
        Ok(PutOutcome::Stored {
            previous_size,
            usage: state.usage(),
        })
    }

    async fn remove(&self, key: &str) -> Result<Option<EntryMeta>> {
        Ok(self.state.lock().remove(key))
    }

    async fn remove_prefix(&self, prefix: &str) -> Result<Removed> {
        let mut state = self.state.lock();
        let keys: Vec<String> = state
            .map
            .range(prefix.to_owned()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, _)| k.clone())
            .collect();
        let mut removed = Removed::default();
        for k in keys {
            if let Some(meta) = state.remove(&k) {
                removed.add_one(meta.size);
            }
        }
        Ok(removed)
    }

    async fn clear(&self) -> Result<Removed> {
        let mut state = self.state.lock();
        let removed = Removed {
            entries: state.map.len() as u64,
            bytes: state.bytes,
        };
        state.map.clear();
        state.bytes = 0;
        Ok(removed)
    }

    async fn usage(&self) -> Result<Usage> {
        Ok(self.state.lock().usage())
    }

    async fn purge_expired(&self, now: Millis, limit: usize) -> Result<Removed> {
        let mut state = self.state.lock();
        let mut expired: Vec<(Millis, u64, String)> = state
            .map
            .iter()
            .filter(|(_, (_, m, _))| m.is_expired(now))
            .map(|(k, (_, m, seq))| (m.expires_at.unwrap_or(0), *seq, k.clone()))
            .collect();
        expired.sort();
        let mut removed = Removed::default();
        for (_, _, k) in expired.into_iter().take(limit) {
            if let Some(meta) = state.remove(&k) {
                removed.add_one(meta.size);
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
        if policy == EvictionPolicy::None {
            return Ok(removed);
        }
        let mut state = self.state.lock();
        while state.bytes > target_bytes {
            let victim = state
                .map
                .iter()
                .filter(|(k, _)| Some(k.as_str()) != protect)
                .min_by_key(|(_, (_, m, seq))| eviction_rank(policy, m, *seq))
                .map(|(k, _)| k.clone());
            let Some(victim) = victim else { break };
            if let Some(meta) = state.remove(&victim) {
                removed.add_one(meta.size);
            }
        }
        Ok(removed)
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
