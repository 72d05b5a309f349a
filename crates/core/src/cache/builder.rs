//! [`CacheBuilder`]: the configuration of a [`Cache`].

use super::{Cache, CacheConfig, Inner};
use crate::backend::{CacheBackend, Counters, EvictionPolicy};
use crate::clock::{Clock, SystemClock};
use crate::error::{Error, Result};
use crate::stats::SessionCounters;
use crate::tier::Tier;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

/// Builds a [`Cache`].
///
/// ```
/// use std::time::Duration;
/// use plexcache_core::{Cache, EvictionPolicy, ManualClock};
/// # use plexcache_core::model::ModelBackend as MemoryBackend;
///
/// let cache = Cache::builder(MemoryBackend::default())
///     .default_ttl(Duration::from_secs(3600))
///     .size_limit(10 * 1024 * 1024)
///     .eviction_policy(EvictionPolicy::LeastRecentlyUsed)
///     .clock(ManualClock::new(0))
///     .build()
///     .unwrap();
/// assert_eq!(cache.config().size_limit, 10 * 1024 * 1024);
/// ```
#[derive(Debug)]
pub struct CacheBuilder<B> {
    backend: B,
    config: CacheConfig,
    clock: Arc<dyn Clock>,
}

impl<B: CacheBackend> CacheBuilder<B> {
    /// A builder with the defaults: no TTL, 100 MiB, least recently stored, cull limit 10,
    /// stats on, the system clock.
    pub fn new(backend: B) -> Self {
        Self {
            backend,
            config: CacheConfig::default(),
            clock: Arc::new(SystemClock),
        }
    }

    /// TTL of writes that do not give one.
    pub fn default_ttl(mut self, ttl: Duration) -> Self {
        self.config.default_ttl = Some(ttl);
        self
    }

    /// Writes that do not give a TTL never expire (the default).
    pub fn no_default_ttl(mut self) -> Self {
        self.config.default_ttl = None;
        self
    }

    /// Hard bound on logical bytes (key + value). Default 100 MiB.
    pub fn size_limit(mut self, bytes: u64) -> Self {
        self.config.size_limit = bytes;
        self
    }

    /// Eviction order. Default: least recently stored.
    pub fn eviction_policy(mut self, policy: EvictionPolicy) -> Self {
        self.config.eviction_policy = policy;
        self
    }

    /// Expired entries purged by each write. Default 10; 0 leaves purging to
    /// [`Cache::expire`] and the sweeper.
    pub fn cull_limit(mut self, entries: usize) -> Self {
        self.config.cull_limit = entries;
        self
    }

    /// Turns statistics counters on or off. Default on.
    pub fn stats(mut self, enabled: bool) -> Self {
        self.config.stats_enabled = enabled;
        self
    }

    /// How often counters are merged into the backend. Default 1 s.
    pub fn stats_flush_interval(mut self, every: Duration) -> Self {
        self.config.stats_flush_interval = every;
        self
    }

    /// The longest accepted key in bytes. Default 64 KiB.
    pub fn max_key_len(mut self, bytes: usize) -> Self {
        self.config.max_key_len = bytes;
        self
    }

    /// Budget of the in-process memory tier (see [`Cache`]), charged with each held value's
    /// stored length plus its key. Default 64 MiB; 0 turns the tier off (then every read asks
    /// the store and `get_shared` decodes on every call, like `get`).
    pub fn memory_tier_bytes(mut self, bytes: u64) -> Self {
        self.config.memory_tier_bytes = bytes;
        self
    }

    /// Turns the in-process memory tier off (the same as `memory_tier_bytes(0)`).
    pub fn no_memory_tier(self) -> Self {
        self.memory_tier_bytes(0)
    }

    /// The time source. Default: the system clock. Use a [`ManualClock`](crate::ManualClock)
    /// to test TTL logic.
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The time source, shared.
    pub fn shared_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Builds the cache.
    pub fn build(self) -> Result<Cache<B>> {
        if self.config.size_limit == 0 {
            return Err(Error::Config("size_limit must be greater than 0".into()));
        }
        if self.config.max_key_len == 0 {
            return Err(Error::Config("max_key_len must be greater than 0".into()));
        }
        let now = self.clock.now_millis();
        let tier = Tier::new(self.config.memory_tier_bytes);
        Ok(Cache {
            inner: Arc::new(Inner {
                tier,
                backend: self.backend,
                config: self.config,
                clock: self.clock,
                counters: SessionCounters::default(),
                flushed: tokio::sync::Mutex::new(Counters::default()),
                last_stats_flush: AtomicU64::new(now),
                accesses: Mutex::new(HashMap::new()),
                inflight: Mutex::new(HashMap::new()),
            }),
        })
    }
}
