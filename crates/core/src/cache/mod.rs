//! [`Cache`]: the policy layer over a [`CacheBackend`], one concern per file:
//!
//! - `builder.rs`: [`CacheBuilder`], the configuration;
//! - `read.rs`: reads through the memory tier, typed, shared and decoded gets, and the access
//!   records that LRU/LFU eviction needs;
//! - `write.rs`: sets, batches and removals, each with the purge and eviction of its one
//!   backend call;
//! - `flight.rs`: `get_or_fetch`, one fetch per key at a time;
//! - `maintenance.rs`: statistics, `expire`/`cull`/`clear`, [`Cache::check`] and the sweeper.

mod builder;
mod flight;
mod maintenance;
mod read;
mod write;

pub use builder::CacheBuilder;
pub use maintenance::{CheckReport, Sweeper};

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::watch;

use crate::backend::{CacheBackend, Counters, EvictionPolicy, Millis};
use crate::clock::Clock;
use crate::error::{Error, Result, short_key};
use crate::stats::{SessionCounters, bump};
use crate::tier::Tier;

/// The default size limit: 100 MiB of logical bytes (key + value).
pub const DEFAULT_SIZE_LIMIT: u64 = 100 * 1024 * 1024;
/// The default number of expired entries purged by each write.
pub const DEFAULT_CULL_LIMIT: usize = 10;
/// The default longest key, in bytes.
pub const DEFAULT_MAX_KEY_LEN: usize = 64 * 1024;
/// Pending access records buffered before they are written (LRU/LFU only).
const ACCESS_BUFFER_LIMIT: usize = 1024;
/// Entries purged per backend call by [`Cache::expire`].
const EXPIRE_BATCH: usize = 1000;

/// How long a written value lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Ttl {
    /// The cache's default TTL (see [`CacheBuilder::default_ttl`]).
    #[default]
    Default,
    /// Never expires.
    Never,
    /// Expires this long after the write.
    After(Duration),
}

impl From<Duration> for Ttl {
    fn from(d: Duration) -> Self {
        Ttl::After(d)
    }
}

impl From<Option<Duration>> for Ttl {
    fn from(d: Option<Duration>) -> Self {
        d.map_or(Ttl::Never, Ttl::After)
    }
}

/// The settings of a [`Cache`], set through [`CacheBuilder`].
#[derive(Debug, Clone)]
pub struct CacheConfig {
    /// TTL of writes that do not give one; `None` means no expiry.
    pub default_ttl: Option<Duration>,
    /// Hard bound on logical bytes (key + value) after every write.
    pub size_limit: u64,
    /// Which entries go first when the size limit is reached.
    pub eviction_policy: EvictionPolicy,
    /// Expired entries purged by each write (0 = purge only on `expire()` and the sweeper).
    pub cull_limit: usize,
    /// Whether hit/miss/... counters are kept.
    pub stats_enabled: bool,
    /// How often counters are merged into the backend's persistent counters (on writes,
    /// `flush()` and the sweeper; a read never writes just to count itself).
    pub stats_flush_interval: Duration,
    /// The longest accepted key, in bytes.
    pub max_key_len: usize,
    /// Budget of the in-process memory tier, in stored bytes (0 turns it off).
    pub memory_tier_bytes: u64,
}

/// Default budget of the in-process memory tier: 64 MiB of stored values.
pub const DEFAULT_MEMORY_TIER_BYTES: u64 = 64 << 20;

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            default_ttl: None,
            size_limit: DEFAULT_SIZE_LIMIT,
            eviction_policy: EvictionPolicy::default(),
            cull_limit: DEFAULT_CULL_LIMIT,
            stats_enabled: true,
            stats_flush_interval: Duration::from_secs(1),
            max_key_len: DEFAULT_MAX_KEY_LEN,
            memory_tier_bytes: DEFAULT_MEMORY_TIER_BYTES,
        }
    }
}

type FlightResult = Option<std::result::Result<Bytes, Arc<dyn std::error::Error + Send + Sync>>>;

struct Inner<B> {
    backend: B,
    config: CacheConfig,
    clock: Arc<dyn Clock>,
    counters: SessionCounters,
    /// Session counters already merged into the backend.
    flushed: tokio::sync::Mutex<Counters>,
    last_stats_flush: AtomicU64,
    /// Reads not yet recorded in the backend: key -> (latest read, count). LRU/LFU only.
    accesses: Mutex<HashMap<String, (Millis, u64)>>,
    /// Single-flight: one fetch per key at a time.
    inflight: Mutex<HashMap<String, watch::Receiver<FlightResult>>>,
    /// The in-process memory tier.
    tier: Tier,
}

/// A typed cache with TTL, a hard size limit, eviction and statistics over any
/// [`CacheBackend`]. Cheap to clone (clones share everything).
///
/// ```
/// # use plexcache_core::model::ModelBackend as MemoryBackend;
/// use plexcache_core::{Cache, Ttl};
/// use std::time::Duration;
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let cache = Cache::builder(MemoryBackend::default()).build()?;
/// cache.set("greeting", &"hello".to_string()).await?;
/// assert_eq!(cache.get::<String>("greeting").await?, Some("hello".into()));
///
/// cache.set_with_ttl("short", &42u32, Duration::from_secs(5)).await?;
/// let n: u32 = cache
///     .get_or_fetch("answer", Ttl::Never, || async { Ok::<_, std::io::Error>(42u32) })
///     .await?;
/// assert_eq!(n, 42);
/// # Ok::<(), plexcache_core::Error>(())
/// # }).unwrap();
/// ```
pub struct Cache<B> {
    inner: Arc<Inner<B>>,
}

impl<B> Clone for Cache<B> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<B: CacheBackend> std::fmt::Debug for Cache<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("backend", &self.inner.backend.name())
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl<B: CacheBackend> Cache<B> {
    /// A builder over `backend`.
    pub fn builder(backend: B) -> CacheBuilder<B> {
        CacheBuilder::new(backend)
    }

    /// A cache over `backend` with the default settings.
    pub fn new(backend: B) -> Self {
        // The defaults are valid: size_limit and max_key_len are non-zero constants.
        #[allow(clippy::expect_used)]
        CacheBuilder::new(backend)
            .build()
            .expect("default configuration is valid")
    }

    /// The backend.
    pub fn backend(&self) -> &B {
        &self.inner.backend
    }

    /// Takes the backend back, if this is the last clone of the cache (otherwise returns the
    /// cache). Pending access records and counters that were not flushed are dropped: call
    /// [`Cache::flush`] first.
    pub fn into_backend(self) -> std::result::Result<B, Self> {
        Arc::try_unwrap(self.inner)
            .map(|inner| inner.backend)
            .map_err(|inner| Cache { inner })
    }

    /// The settings.
    pub fn config(&self) -> &CacheConfig {
        &self.inner.config
    }

    /// The current time of the cache's clock.
    pub fn now(&self) -> Millis {
        self.inner.clock.now_millis()
    }

    pub(super) fn check_key(&self, key: &str) -> Result<()> {
        if key.len() > self.inner.config.max_key_len {
            return Err(Error::InvalidKey {
                key: short_key(key),
                reason: format!(
                    "{} bytes, longer than the limit of {} bytes",
                    key.len(),
                    self.inner.config.max_key_len
                ),
            });
        }
        Ok(())
    }

    #[inline]
    pub(super) fn count(&self, counter: impl Fn(&SessionCounters) -> &AtomicU64, n: u64) {
        if self.inner.config.stats_enabled {
            bump(counter(&self.inner.counters), n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ManualClock;
    use crate::backend::WriteLimit;
    use crate::model::ModelBackend;

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn works_over_a_trait_object() {
        rt().block_on(async {
            let backend: Arc<dyn CacheBackend> = Arc::new(ModelBackend::new());
            let cache = Cache::new(backend);
            cache.set("k", &"v".to_string()).await.unwrap();
            assert_eq!(
                cache.get::<String>("k").await.unwrap().as_deref(),
                Some("v")
            );
        });
    }

    #[test]
    fn check_finds_damaged_values_and_counts() {
        rt().block_on(async {
            let cache = Cache::new(ModelBackend::new());
            cache.set("good", &1u32).await.unwrap();
            cache
                .backend()
                .put(
                    "bad",
                    Bytes::from_static(b"not an envelope at all!"),
                    0,
                    None,
                    WriteLimit::UNBOUNDED,
                )
                .await
                .unwrap();
            let report = cache.check().await.unwrap();
            assert_eq!(report.undecodable, 1);
            assert!(report.counters_match());
            assert!(!report.is_ok());
            assert!(report.problems[0].starts_with("bad: "));
            cache.remove("bad").await.unwrap();
            assert!(cache.check().await.unwrap().is_ok());
        });
    }

    #[test]
    fn zero_size_limit_is_a_config_error() {
        let err = Cache::builder(ModelBackend::new()).size_limit(0).build();
        assert!(matches!(err, Err(Error::Config(_))));
    }

    #[test]
    fn reads_do_not_write_counters_until_a_write_or_flush() {
        rt().block_on(async {
            let clock = ManualClock::new(1_000);
            let cache = Cache::builder(ModelBackend::new())
                .clock(clock.clone())
                .stats_flush_interval(Duration::from_secs(1))
                .build()
                .unwrap();
            cache.set("a", &1u32).await.unwrap();
            clock.advance(Duration::from_secs(5));
            for _ in 0..10 {
                let _ = cache.get::<u32>("a").await.unwrap();
            }
            // Reads alone never flush, however much time passed.
            assert_eq!(cache.backend().load_stats().await.unwrap().hits, 0);
            // stats() still shows them as persistent (stored + unflushed).
            assert_eq!(cache.stats().await.unwrap().persistent.hits, 10);
            // A write after the interval flushes the delta.
            cache.set("b", &2u32).await.unwrap();
            let stored = cache.backend().load_stats().await.unwrap();
            assert_eq!((stored.hits, stored.sets), (10, 2));
            // Flushing twice does not double count.
            cache.flush().await.unwrap();
            cache.flush().await.unwrap();
            assert_eq!(cache.backend().load_stats().await.unwrap().hits, 10);
        });
    }

    #[test]
    fn stats_off_counts_nothing() {
        rt().block_on(async {
            let cache = Cache::builder(ModelBackend::new())
                .stats(false)
                .build()
                .unwrap();
            cache.set("a", &1u32).await.unwrap();
            let _ = cache.get::<u32>("a").await.unwrap();
            cache.flush().await.unwrap();
            let s = cache.stats().await.unwrap();
            assert!(s.session.is_zero() && s.persistent.is_zero());
            assert_eq!(s.usage.entries, 1);
        });
    }

    #[test]
    fn lru_reads_are_buffered_then_recorded_before_eviction() {
        rt().block_on(async {
            let clock = ManualClock::new(1_000);
            let cache = Cache::builder(ModelBackend::new())
                .clock(clock.clone())
                .eviction_policy(EvictionPolicy::LeastRecentlyUsed)
                .build()
                .unwrap();
            cache.set("a", &1u32).await.unwrap();
            clock.advance(Duration::from_millis(5));
            let _ = cache.get::<u32>("a").await.unwrap();
            let _ = cache.get::<u32>("a").await.unwrap();
            let meta = cache.get_raw("a").await.unwrap().unwrap().1;
            assert_eq!(meta.access_count, 0, "buffered, not yet written");
            cache.flush().await.unwrap();
            let meta = cache.get_raw("a").await.unwrap().unwrap().1;
            assert_eq!((meta.access_count, meta.accessed_at), (2, 1_005));
        });
    }

    #[test]
    fn default_policy_reads_do_not_touch_the_store() {
        rt().block_on(async {
            let cache = Cache::new(ModelBackend::new());
            cache.set("a", &1u32).await.unwrap();
            let _ = cache.get::<u32>("a").await.unwrap();
            cache.flush().await.unwrap();
            assert_eq!(cache.get_raw("a").await.unwrap().unwrap().1.access_count, 0);
        });
    }

    #[test]
    fn sweeper_purges_expired_entries_and_stops_with_the_cache() {
        rt().block_on(async {
            let cache = Cache::builder(ModelBackend::new())
                .cull_limit(0)
                .build()
                .unwrap();
            cache
                .set_with_ttl("a", &1u32, Duration::from_millis(1))
                .await
                .unwrap();
            let sweeper = cache.spawn_sweeper(Duration::from_millis(10)).unwrap();
            // Wait for the sweep (an event), not for a time.
            let swept = tokio::time::timeout(Duration::from_secs(60), async {
                while cache.backend().usage().await.unwrap().entries > 0 {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            })
            .await;
            assert!(swept.is_ok(), "the sweeper purged the expired entry");
            assert_eq!(cache.stats().await.unwrap().session.expirations, 1);
            drop(sweeper);
        });
    }

    #[test]
    fn sweeper_needs_a_runtime() {
        let cache = Cache::new(ModelBackend::new());
        assert!(matches!(
            cache.spawn_sweeper(Duration::from_secs(1)),
            Err(Error::Config(_))
        ));
    }

    #[test]
    fn cancelled_fetcher_hands_over_to_a_waiter() {
        rt().block_on(async {
            let cache = Cache::new(ModelBackend::new());
            let c1 = cache.clone();
            let (started, fetching) = tokio::sync::oneshot::channel();
            let leader = tokio::spawn(async move {
                c1.get_or_fetch("k", Ttl::Never, || async {
                    let _ = started.send(());
                    std::future::pending::<()>().await;
                    Ok::<_, Error>(1u32)
                })
                .await
            });
            fetching.await.unwrap();
            let c2 = cache.clone();
            let waiter = tokio::spawn(async move {
                c2.get_or_fetch("k", Ttl::Never, || async { Ok::<_, Error>(2u32) })
                    .await
            });
            // Abort the leader once the waiter waits for its fetch.
            while cache.stats().await.unwrap().session.coalesced < 1 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            leader.abort();
            let got = tokio::time::timeout(Duration::from_secs(5), waiter)
                .await
                .expect("waiter finished")
                .unwrap()
                .unwrap();
            assert_eq!(got, 2);
        });
    }

    #[test]
    fn cull_brings_a_store_back_under_a_smaller_limit() {
        rt().block_on(async {
            let backend = Arc::new(ModelBackend::new());
            let big = Cache::new(backend.clone());
            for i in 0..10 {
                big.set(&format!("k{i}"), &"v".repeat(100)).await.unwrap();
            }
            drop(big);
            let small = Cache::builder(backend).size_limit(500).build().unwrap();
            let removed = small.cull().await.unwrap();
            assert!(removed.entries >= 5);
            assert!(small.backend().usage().await.unwrap().bytes <= 500);
        });
    }
}
