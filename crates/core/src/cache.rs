//! [`Cache`]: the policy layer over a [`CacheBackend`].

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::watch;

use crate::backend::{
    Access, Batch, BatchOutcome, BatchPut, CacheBackend, Counters, Entry, EntryMeta,
    EvictionPolicy, Millis, PutOutcome, Removed, Revalidated, Usage, WriteLimit, entry_size,
};
use crate::batch::{BatchReport, WriteBatch};
use crate::clock::{Clock, SystemClock};
use crate::codec::{self, CacheValue};
use crate::error::{BoxError, Error, Result, short_key};
use crate::stats::{SessionCounters, Stats, bump};
use crate::tier::{Decoded, Tier};

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

/// An entry as a read found it, with the decoded form the memory tier holds for it.
struct Read {
    value: Bytes,
    decoded: Option<Decoded>,
}

impl Read {
    fn fresh(entry: Entry) -> Self {
        Self {
            value: entry.value,
            decoded: None,
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

    fn check_key(&self, key: &str) -> Result<()> {
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
    fn count(&self, counter: impl Fn(&SessionCounters) -> &AtomicU64, n: u64) {
        if self.inner.config.stats_enabled {
            bump(counter(&self.inner.counters), n);
        }
    }

    /// Reads a value. Expired entries, missing entries and values that do not decode as `T`
    /// (another type, an older version, damaged bytes) are misses; undecodable values are
    /// removed and counted in `decode_failures`.
    pub async fn get<T: CacheValue>(&self, key: &str) -> Result<Option<T>> {
        self.get_inner(key, true).await
    }

    async fn get_inner<T: CacheValue>(&self, key: &str, counted: bool) -> Result<Option<T>> {
        self.check_key(key)?;
        let now = self.now();
        let Some(read) = self.read_entry(key, now).await? else {
            if counted {
                self.count(|c| &c.misses, 1);
            }
            return Ok(None);
        };
        match codec::decode::<T>(key, &read.value) {
            Ok(value) => {
                self.hit(key, now, counted).await?;
                Ok(Some(value))
            }
            Err(e) => {
                self.undecodable(key, &e, counted).await?;
                Ok(None)
            }
        }
    }

    /// Reads the live entry for `key`: from the memory tier while the backend's change token
    /// says nothing was written since the slot was read, after asking the store whether the
    /// value changed otherwise, and from the store when the tier holds nothing.
    async fn read_entry(&self, key: &str, now: Millis) -> Result<Option<Read>> {
        let tier = &self.inner.tier;
        let backend = &self.inner.backend;
        if !tier.enabled() {
            return Ok(backend.get(key, now).await?.map(Read::fresh));
        }
        // Read before the store is, so a write that lands in between changes it.
        let token = backend.change_token();
        match tier.lookup(key, now, token) {
            Some(found) if found.valid => Ok(Some(Read {
                value: found.value,
                decoded: found.decoded,
            })),
            Some(found) => {
                let head = found.value.get(..codec::HEADER_LEN).unwrap_or(&found.value);
                match backend
                    .get_if_changed(key, now, head, found.value.len() as u64)
                    .await?
                {
                    None => {
                        tier.remove(key);
                        Ok(None)
                    }
                    Some(Revalidated::Same(meta)) => {
                        tier.confirm(key, &found.value, meta, token);
                        Ok(Some(Read {
                            value: found.value,
                            decoded: found.decoded,
                        }))
                    }
                    Some(Revalidated::Changed(entry)) => {
                        tier.insert(key, &entry, token);
                        Ok(Some(Read::fresh(entry)))
                    }
                }
            }
            None => {
                let entry = backend.get(key, now).await?;
                if let Some(entry) = &entry {
                    tier.insert(key, entry, token);
                }
                Ok(entry.map(Read::fresh))
            }
        }
    }

    /// Counts a hit and notes the access for LRU/LFU.
    async fn hit(&self, key: &str, now: Millis, counted: bool) -> Result<()> {
        if counted {
            self.count(|c| &c.hits, 1);
        }
        if self.inner.config.eviction_policy.tracks_access() {
            self.note_access(key, now).await?;
        }
        Ok(())
    }

    /// A stored value that does not decode as the asked type: counted as a miss and a decode
    /// failure, and removed.
    async fn undecodable(&self, key: &str, e: &codec::DecodeError, counted: bool) -> Result<()> {
        tracing::debug!(key = %short_key(key), error = %e, "stored value does not decode; removing it");
        if counted {
            self.count(|c| &c.misses, 1);
        }
        self.count(|c| &c.decode_failures, 1);
        self.inner.tier.remove(key);
        self.inner.backend.remove(key).await?;
        Ok(())
    }

    /// Values held by the in-process memory tier and the bytes charged for them.
    pub fn memory_tier_usage(&self) -> Usage {
        let (entries, bytes) = self.inner.tier.usage();
        Usage {
            entries: entries as u64,
            bytes,
        }
    }

    /// Like [`Cache::get`], but the value is shared: repeated reads of an unchanged entry
    /// return the same `Arc<T>` without decoding it again. Made for large values that are read
    /// far more often than written, such as a library's item list.
    ///
    /// The decoded value is held by the memory tier (see [`Cache`]): it is returned without
    /// asking the store only while the backend's change token says nothing was written, and
    /// after the store confirmed the value's length and envelope header (schema tag and
    /// checksum) otherwise, so values rewritten by another process, removed, evicted or
    /// expired are never served stale. Hits, misses and accesses count exactly as for `get`.
    ///
    /// ```
    /// # use plexcache_core::model::ModelBackend as MemoryBackend;
    /// use plexcache_core::Cache;
    /// use std::sync::Arc;
    ///
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let cache = Cache::new(MemoryBackend::default());
    /// cache.set("titles", &vec!["Amélie".to_string(), "Alien".to_string()]).await?;
    /// let a: Arc<Vec<String>> = cache.get_shared("titles").await?.unwrap();
    /// let b: Arc<Vec<String>> = cache.get_shared("titles").await?.unwrap();
    /// assert!(Arc::ptr_eq(&a, &b)); // decoded once
    /// cache.set("titles", &vec!["Heat".to_string()]).await?;
    /// let c: Arc<Vec<String>> = cache.get_shared("titles").await?.unwrap();
    /// assert_eq!(*c, vec!["Heat".to_string()]);
    /// # Ok::<(), plexcache_core::Error>(())
    /// # }).unwrap();
    /// ```
    pub async fn get_shared<T: CacheValue>(&self, key: &str) -> Result<Option<Arc<T>>> {
        self.get_decoded(key, |key, bytes| codec::decode::<T>(key, bytes))
            .await
    }

    /// Reads an entry and turns its stored bytes (the whole envelope, shared, not copied)
    /// into a `V` with `decode`, which must check the envelope (for example with
    /// [`codec::check_envelope`]); the result is held by the memory tier like
    /// [`Cache::get_shared`]'s. Made for views that borrow from the stored bytes, such as
    /// `plexcache-plex`'s library view. A `decode` error is a miss: the entry is removed and
    /// counted as a decode failure.
    pub async fn get_decoded<V, F>(&self, key: &str, decode: F) -> Result<Option<Arc<V>>>
    where
        V: Send + Sync + 'static,
        F: FnOnce(&str, &Bytes) -> std::result::Result<V, codec::DecodeError>,
    {
        self.check_key(key)?;
        let now = self.now();
        let Some(read) = self.read_entry(key, now).await? else {
            self.count(|c| &c.misses, 1);
            return Ok(None);
        };
        if let Some(held) = read.decoded.and_then(|d| d.downcast::<V>().ok()) {
            self.hit(key, now, true).await?;
            return Ok(Some(held));
        }
        match decode(key, &read.value) {
            Ok(value) => {
                let value = Arc::new(value);
                self.inner
                    .tier
                    .attach(key, &read.value, Arc::clone(&value) as Decoded);
                self.hit(key, now, true).await?;
                Ok(Some(value))
            }
            Err(e) => {
                self.undecodable(key, &e, true).await?;
                Ok(None)
            }
        }
    }

    /// The raw stored bytes (an envelope) and metadata of an entry, without decoding and
    /// without counting. For tools that inspect a cache.
    pub async fn get_raw(&self, key: &str) -> Result<Option<(Bytes, EntryMeta)>> {
        self.check_key(key)?;
        Ok(self
            .inner
            .backend
            .get(key, self.now())
            .await?
            .map(|e| (e.value, e.meta)))
    }

    async fn note_access(&self, key: &str, now: Millis) -> Result<()> {
        let full = {
            let mut map = self.inner.accesses.lock();
            match map.get_mut(key) {
                Some(slot) => {
                    slot.0 = slot.0.max(now);
                    slot.1 += 1;
                }
                None => {
                    map.insert(key.to_owned(), (now, 1));
                }
            }
            map.len() >= ACCESS_BUFFER_LIMIT
        };
        if full {
            self.flush_accesses().await?;
        }
        Ok(())
    }

    async fn flush_accesses(&self) -> Result<()> {
        let pending = {
            let mut map = self.inner.accesses.lock();
            if map.is_empty() {
                return Ok(());
            }
            std::mem::take(&mut *map)
        };
        let batch: Vec<Access> = pending
            .into_iter()
            .map(|(key, (at, count))| Access { key, at, count })
            .collect();
        self.inner.backend.record_accesses(&batch).await
    }

    /// Whether a live entry exists for `key` (no decoding, not counted as a hit or miss).
    pub async fn contains(&self, key: &str) -> Result<bool> {
        self.check_key(key)?;
        Ok(self.inner.backend.get(key, self.now()).await?.is_some())
    }

    /// Writes a value with the default TTL.
    pub async fn set<T: CacheValue>(&self, key: &str, value: &T) -> Result<()> {
        self.set_with_ttl(key, value, Ttl::Default).await
    }

    /// Writes a value with a TTL (`Duration`, `Ttl::Never`, `Ttl::Default`, or an
    /// `Option<Duration>` where `None` means never).
    ///
    /// When it returns, the logical bytes are at most the size limit. A value larger than the
    /// limit is refused with [`Error::TooLarge`]; with [`EvictionPolicy::None`] a write that
    /// does not fit is refused with [`Error::CacheFull`].
    pub async fn set_with_ttl<T: CacheValue>(
        &self,
        key: &str,
        value: &T,
        ttl: impl Into<Ttl>,
    ) -> Result<()> {
        self.check_key(key)?;
        let bytes = codec::encode(key, value).map_err(|source| Error::Encode {
            key: short_key(key),
            source,
        })?;
        self.put_encoded(key, bytes, ttl.into()).await
    }

    /// Writes a borrowed form of a value (`&[T]` for a `Vec<T>`, `Option<&T>` for an
    /// `Option<T>`) without cloning it first; it reads back as the owned type. Same rules as
    /// [`Cache::set_with_ttl`].
    pub async fn set_borrowed<V: codec::BorrowedValue + ?Sized>(
        &self,
        key: &str,
        value: &V,
        ttl: impl Into<Ttl>,
    ) -> Result<()> {
        self.check_key(key)?;
        let bytes = codec::encode_borrowed(key, value).map_err(|source| Error::Encode {
            key: short_key(key),
            source,
        })?;
        self.put_encoded(key, bytes, ttl.into()).await
    }

    fn expires_at(&self, now: Millis, ttl: Ttl) -> Option<Millis> {
        let ttl = match ttl {
            Ttl::Default => self.inner.config.default_ttl?,
            Ttl::Never => return None,
            Ttl::After(d) => d,
        };
        let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        Some(now.saturating_add(ms))
    }

    /// The bound every write keeps, applied by the backend in the write's own atomic step.
    fn write_limit(&self, now: Millis) -> WriteLimit {
        let cfg = &self.inner.config;
        WriteLimit::evict_to(cfg.size_limit, cfg.eviction_policy).with_purge(now, cfg.cull_limit)
    }

    async fn put_encoded(&self, key: &str, bytes: Bytes, ttl: Ttl) -> Result<()> {
        let cfg = &self.inner.config;
        let size = entry_size(key, bytes.len());
        if size > cfg.size_limit {
            return Err(Error::TooLarge {
                key: short_key(key),
                size,
                limit: cfg.size_limit,
            });
        }
        let now = self.now();
        let expires_at = self.expires_at(now, ttl);
        // Pending access records first, so the eviction order sees them.
        self.flush_accesses().await?;
        self.inner.tier.remove(key);
        let outcome = self
            .inner
            .backend
            .put(key, bytes.clone(), now, expires_at, self.write_limit(now))
            .await?;
        match outcome {
            PutOutcome::Refused { .. } => {
                return Err(Error::CacheFull {
                    key: short_key(key),
                    size,
                    limit: cfg.size_limit,
                });
            }
            PutOutcome::Stored {
                expired, evicted, ..
            } => {
                self.count(|c| &c.sets, 1);
                self.count(|c| &c.expirations, expired.entries);
                self.note_evicted(evicted);
                // Held unconfirmed: the next read asks the store for the header only.
                let entry = Entry {
                    value: bytes,
                    meta: EntryMeta::new(key, size as usize - key.len(), now, expires_at),
                };
                self.inner.tier.insert(key, &entry, None);
            }
        }
        self.maybe_flush_stats(now).await
    }

    /// Counts and logs entries evicted to keep the size limit.
    fn note_evicted(&self, evicted: Removed) {
        if evicted.entries > 0 {
            self.count(|c| &c.evictions, evicted.entries);
            tracing::debug!(
                backend = self.inner.backend.name(),
                policy = %self.inner.config.eviction_policy,
                entries = evicted.entries,
                bytes = evicted.bytes,
                "evicted entries to keep the size limit"
            );
        }
    }

    /// Applies a [`WriteBatch`] in one atomic backend call: every entry under its prefixes is
    /// removed and its entries written, so readers (in any process) see the store before the
    /// batch or after it, never a mix. The size limit is kept as for [`Cache::set`], never by
    /// evicting the batch's own entries: a batch whose entries alone exceed the limit is
    /// refused with [`Error::BatchTooLarge`] and nothing changes.
    pub async fn write_batch(&self, batch: WriteBatch) -> Result<BatchReport> {
        let cfg = &self.inner.config;
        for put in &batch.puts {
            self.check_key(&put.0)?;
        }
        let now = self.now();
        let mut raw = Batch::new(now);
        raw.remove_prefixes = batch.remove_prefixes;
        raw.puts = batch
            .puts
            .into_iter()
            .map(|(key, value, ttl)| BatchPut {
                expires_at: self.expires_at(now, ttl),
                key,
                value,
            })
            .collect();
        let size = raw.put_bytes();
        if size > cfg.size_limit {
            return Err(Error::BatchTooLarge {
                entries: raw.puts.len() as u64,
                size,
                limit: cfg.size_limit,
            });
        }
        self.flush_accesses().await?;
        for prefix in &raw.remove_prefixes {
            self.inner.tier.remove_prefix(prefix);
        }
        for put in &raw.puts {
            self.inner.tier.remove(&put.key);
        }
        match self
            .inner
            .backend
            .write_batch(&raw, self.write_limit(now))
            .await?
        {
            BatchOutcome::Refused { .. } => Err(Error::BatchTooLarge {
                entries: raw.puts.len() as u64,
                size,
                limit: cfg.size_limit,
            }),
            BatchOutcome::Applied {
                removed,
                written,
                expired,
                evicted,
                ..
            } => {
                self.count(|c| &c.sets, written);
                self.count(|c| &c.removes, removed.entries);
                self.count(|c| &c.expirations, expired.entries);
                self.note_evicted(evicted);
                self.maybe_flush_stats(now).await?;
                Ok(BatchReport {
                    removed: removed.entries,
                    written,
                    evicted: evicted.entries,
                })
            }
        }
    }

    async fn evict_to(&self, target: u64, protect: Option<&str>) -> Result<Removed> {
        let policy = self.inner.config.eviction_policy;
        if policy == EvictionPolicy::None {
            return Ok(Removed::default());
        }
        let evicted = self.inner.backend.evict(policy, target, protect).await?;
        self.note_evicted(evicted);
        Ok(evicted)
    }

    async fn maybe_flush_stats(&self, now: Millis) -> Result<()> {
        let every = self.inner.config.stats_flush_interval.as_millis() as u64;
        let last = self.inner.last_stats_flush.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= every || now < last {
            self.flush_stats().await?;
        }
        Ok(())
    }

    async fn flush_stats(&self) -> Result<()> {
        if !self.inner.config.stats_enabled {
            return Ok(());
        }
        let mut flushed = self.inner.flushed.lock().await;
        let current = self.inner.counters.snapshot();
        let delta = current.saturating_sub(&flushed);
        if !delta.is_zero() {
            self.inner.backend.add_stats(&delta).await?;
            *flushed = current;
        }
        self.inner
            .last_stats_flush
            .store(self.now(), Ordering::Relaxed);
        Ok(())
    }

    /// Removes an entry. Returns whether a live entry was removed.
    pub async fn remove(&self, key: &str) -> Result<bool> {
        self.check_key(key)?;
        let now = self.now();
        self.inner.tier.remove(key);
        let removed = self.inner.backend.remove(key).await?;
        let live = match removed {
            Some(meta) if meta.is_expired(now) => {
                self.count(|c| &c.expirations, 1);
                false
            }
            Some(_) => {
                self.count(|c| &c.removes, 1);
                true
            }
            None => false,
        };
        self.maybe_flush_stats(now).await?;
        Ok(live)
    }

    /// Removes every entry whose key starts with `prefix`. Returns how many were removed.
    pub async fn remove_prefix(&self, prefix: &str) -> Result<u64> {
        self.inner.tier.remove_prefix(prefix);
        let removed = self.inner.backend.remove_prefix(prefix).await?;
        self.count(|c| &c.removes, removed.entries);
        self.maybe_flush_stats(self.now()).await?;
        Ok(removed.entries)
    }

    /// Up to `limit` live keys starting with `prefix`, in ascending byte order.
    pub async fn keys(&self, prefix: &str, limit: usize) -> Result<Vec<String>> {
        self.inner.backend.keys(prefix, self.now(), limit).await
    }

    /// Purges every expired entry. Returns how many were purged.
    pub async fn expire(&self) -> Result<u64> {
        let now = self.now();
        let mut total = 0;
        loop {
            let purged = self.inner.backend.purge_expired(now, EXPIRE_BATCH).await?;
            total += purged.entries;
            if purged.entries < EXPIRE_BATCH as u64 {
                break;
            }
        }
        self.count(|c| &c.expirations, total);
        self.maybe_flush_stats(now).await?;
        Ok(total)
    }

    /// Purges expired entries, then evicts until the logical bytes are within the size limit
    /// (useful after reopening a store with a smaller limit). Returns what was removed.
    pub async fn cull(&self) -> Result<Removed> {
        let mut removed = Removed {
            entries: self.expire().await?,
            bytes: 0,
        };
        self.flush_accesses().await?;
        let usage = self.inner.backend.usage().await?;
        if usage.bytes > self.inner.config.size_limit {
            removed.add(self.evict_to(self.inner.config.size_limit, None).await?);
        }
        Ok(removed)
    }

    /// Removes every entry. Persistent statistics are kept. Returns how many were removed.
    pub async fn clear(&self) -> Result<u64> {
        self.inner.accesses.lock().clear();
        self.inner.tier.clear();
        let removed = self.inner.backend.clear().await?;
        Ok(removed.entries)
    }

    /// Counters, usage and settings.
    pub async fn stats(&self) -> Result<Stats> {
        let session = self.inner.counters.snapshot();
        let stored = self.inner.backend.load_stats().await?;
        let unflushed = {
            let flushed = self.inner.flushed.lock().await;
            session.saturating_sub(&flushed)
        };
        Ok(Stats {
            backend: self.inner.backend.name().to_owned(),
            session,
            persistent: stored.saturating_add(&unflushed),
            usage: self.inner.backend.usage().await?,
            size_limit: self.inner.config.size_limit,
            eviction_policy: self.inner.config.eviction_policy,
            disk_bytes: self.inner.backend.disk_usage().await?,
        })
    }

    /// Writes pending access records and counters to the backend and makes every acknowledged
    /// write durable. Call it before a process exits.
    pub async fn flush(&self) -> Result<()> {
        self.flush_accesses().await?;
        self.flush_stats().await?;
        self.inner.backend.flush().await
    }

    /// Checks the whole store: purges expired entries, asks the engine for its own integrity
    /// check, reads every entry to verify its envelope (magic, format, checksum), and compares
    /// the stored usage counters with a direct count. Scans everything: run it when no other
    /// process is writing. Damaged values are reported, not removed.
    pub async fn check(&self) -> Result<CheckReport> {
        let expired = self.expire().await?;
        let engine_problems = self.inner.backend.integrity_check().await?;
        let keys = self.inner.backend.keys("", self.now(), usize::MAX).await?;
        let mut report = CheckReport {
            expired_purged: expired,
            engine_problems,
            ..CheckReport::default()
        };
        for key in keys {
            let Some(entry) = self.inner.backend.get(&key, self.now()).await? else {
                continue;
            };
            report.scanned.entries = report.scanned.entries.saturating_add(1);
            report.scanned.bytes = report.scanned.bytes.saturating_add(entry.meta.size);
            if entry.meta.size != entry_size(&key, entry.value.len()) {
                report.problems.push(format!(
                    "{}: stored size {} but key + value are {} bytes",
                    short_key(&key),
                    entry.meta.size,
                    entry_size(&key, entry.value.len())
                ));
            }
            if let Err(e) = codec::verify(&key, &entry.value) {
                report.undecodable += 1;
                if report.problems.len() < 100 {
                    report.problems.push(format!("{}: {e}", short_key(&key)));
                }
            }
        }
        report.usage = self.inner.backend.usage().await?;
        Ok(report)
    }

    /// Returns the cached value for `key`, or runs `fetch` on a miss, stores its value with
    /// `ttl` and returns it.
    ///
    /// Single-flight: while one caller's fetch for a key runs, other callers for that key wait
    /// for it and share its value or its error ([`Error::Fetch`]) instead of fetching again.
    /// If the fetching caller is cancelled, a waiting caller takes over.
    pub async fn get_or_fetch<T, F, Fut, E>(
        &self,
        key: &str,
        ttl: impl Into<Ttl>,
        fetch: F,
    ) -> Result<T>
    where
        T: CacheValue,
        F: FnOnce() -> Fut,
        Fut: Future<Output = std::result::Result<T, E>>,
        E: Into<BoxError>,
    {
        let ttl = ttl.into();
        let mut fetch = Some(fetch);
        let mut counted = true;
        loop {
            if let Some(v) = self.get_inner::<T>(key, counted).await? {
                return Ok(v);
            }
            counted = false;
            let role = {
                let mut map = self.inner.inflight.lock();
                match map.get(key) {
                    Some(rx) => Err(rx.clone()),
                    None => {
                        let (tx, rx) = watch::channel(None);
                        map.insert(key.to_owned(), rx);
                        Ok(tx)
                    }
                }
            };
            match role {
                Err(mut rx) => {
                    self.count(|c| &c.coalesced, 1);
                    let shared = match rx.wait_for(Option::is_some).await {
                        Ok(r) => r.clone(),
                        // The fetching caller was cancelled: try again (maybe as the fetcher).
                        Err(_) => continue,
                    };
                    match shared {
                        Some(Ok(bytes)) => match codec::decode::<T>(key, &bytes) {
                            Ok(v) => return Ok(v),
                            // Another caller fetched a different type under this key.
                            Err(_) => continue,
                        },
                        Some(Err(source)) => {
                            return Err(Error::Fetch {
                                key: short_key(key),
                                source,
                            });
                        }
                        None => continue,
                    }
                }
                Ok(tx) => {
                    let _guard = FlightGuard {
                        map: &self.inner.inflight,
                        key,
                        tx: &tx,
                    };
                    // Another fetch may have finished between our miss and taking the lead.
                    if let Some(v) = self.get_inner::<T>(key, false).await? {
                        let _ = tx.send(codec::encode(key, &v).ok().map(Ok));
                        return Ok(v);
                    }
                    let Some(fetch) = fetch.take() else {
                        // Unreachable: the lead is taken at most once per call, since a leader
                        // always returns. Treated as a miss rather than a panic.
                        return Err(Error::Config("get_or_fetch: fetch already used".into()));
                    };
                    self.count(|c| &c.fetches, 1);
                    let value = match fetch().await {
                        Ok(v) => v,
                        Err(e) => {
                            let source: Arc<dyn std::error::Error + Send + Sync> =
                                Arc::from(e.into());
                            let _ = tx.send(Some(Err(Arc::clone(&source))));
                            return Err(Error::Fetch {
                                key: short_key(key),
                                source,
                            });
                        }
                    };
                    let stored = match codec::encode(key, &value) {
                        Ok(bytes) => self
                            .put_encoded(key, bytes.clone(), ttl)
                            .await
                            .map(|()| bytes),
                        Err(source) => Err(Error::Encode {
                            key: short_key(key),
                            source,
                        }),
                    };
                    return match stored {
                        Ok(bytes) => {
                            let _ = tx.send(Some(Ok(bytes)));
                            Ok(value)
                        }
                        Err(e) => {
                            let e = Arc::new(e);
                            let _ = tx.send(Some(Err(e.clone())));
                            Err(Arc::try_unwrap(e).unwrap_or_else(|shared| Error::Fetch {
                                key: short_key(key),
                                source: shared,
                            }))
                        }
                    };
                }
            }
        }
    }

    /// Starts a background task (on the current tokio runtime) that purges expired entries and
    /// flushes counters every `every`. It stops when the returned handle or the last clone of
    /// the cache is dropped.
    pub fn spawn_sweeper(&self, every: Duration) -> Result<Sweeper> {
        let handle = tokio::runtime::Handle::try_current()
            .map_err(|_| Error::Config("spawn_sweeper needs a running tokio runtime".into()))?;
        let weak: Weak<Inner<B>> = Arc::downgrade(&self.inner);
        let task = handle.spawn(async move {
            let mut ticker = tokio::time::interval(every);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticker.tick().await;
            loop {
                ticker.tick().await;
                let Some(inner) = weak.upgrade() else { break };
                let cache = Cache { inner };
                if let Err(e) = cache.expire().await {
                    tracing::warn!(error = %e, "sweeper: expire failed");
                }
                if let Err(e) = cache.flush_accesses().await {
                    tracing::warn!(error = %e, "sweeper: recording accesses failed");
                }
                if let Err(e) = cache.flush_stats().await {
                    tracing::warn!(error = %e, "sweeper: flushing counters failed");
                }
            }
        });
        Ok(Sweeper { task })
    }
}

/// Removes a key's in-flight marker when its fetching caller finishes or is cancelled.
struct FlightGuard<'a> {
    map: &'a Mutex<HashMap<String, watch::Receiver<FlightResult>>>,
    key: &'a str,
    tx: &'a watch::Sender<FlightResult>,
}

impl Drop for FlightGuard<'_> {
    fn drop(&mut self) {
        let mut map = self.map.lock();
        if map
            .get(self.key)
            .is_some_and(|rx| rx.same_channel(&self.tx.subscribe()))
        {
            map.remove(self.key);
        }
    }
}

/// The result of [`Cache::check`].
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CheckReport {
    /// Expired entries purged before the scan.
    pub expired_purged: u64,
    /// Problems the storage engine reported.
    pub engine_problems: Vec<String>,
    /// Entries and bytes found by reading every entry.
    pub scanned: crate::backend::Usage,
    /// The store's usage counters after the scan.
    pub usage: crate::backend::Usage,
    /// Entries whose value is not a valid envelope (damaged, or not written by plexcache).
    pub undecodable: u64,
    /// One line per problem found in entries (at most about 100).
    pub problems: Vec<String>,
}

impl CheckReport {
    /// Whether the usage counters equal the direct count.
    pub fn counters_match(&self) -> bool {
        self.scanned == self.usage
    }

    /// Whether nothing is wrong.
    pub fn is_ok(&self) -> bool {
        self.counters_match()
            && self.engine_problems.is_empty()
            && self.undecodable == 0
            && self.problems.is_empty()
    }
}

/// The background sweeper started by [`Cache::spawn_sweeper`]; dropping it stops the task.
#[derive(Debug)]
pub struct Sweeper {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Sweeper {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ManualClock;
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
