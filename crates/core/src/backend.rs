//! The backend contract: what a storage engine must do for [`Cache`](crate::Cache).
//!
//! Backends are storage engines, not policies. They store entries (a UTF-8 key, a value of
//! bytes, and [`EntryMeta`]) and answer ordered questions fast: which entries expired, which
//! entry is the least recently stored, used, or the least frequently used. The policy (TTL
//! arithmetic, when to evict, statistics, value encoding) lives once, in
//! [`Cache`](crate::Cache).
//!
//! Every operation is O(log n), or O(k log n) for k entries touched; none scans the whole
//! store, neither on the hot path nor on open. Every backend runs the conformance suite in
//! [`testkit`](crate::testkit) (cargo feature `testkit`).
//!
//! Times are wall-clock milliseconds since the Unix epoch ([`Millis`]) and are always passed in
//! by the caller, so backends need no clock of their own, expiry survives restarts, and several
//! processes sharing one store agree on it.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::Result;

/// Wall-clock milliseconds since the Unix epoch.
pub type Millis = u64;

/// Metadata kept with every entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryMeta {
    /// When the value was written.
    pub stored_at: Millis,
    /// When the entry expires; `None` means never. An entry with `expires_at <= now` is absent.
    pub expires_at: Option<Millis>,
    /// When the entry was last read (equals `stored_at` until an access is recorded).
    pub accessed_at: Millis,
    /// How many reads were recorded since the value was written.
    pub access_count: u64,
    /// Logical size: key bytes plus value bytes.
    pub size: u64,
}

impl EntryMeta {
    /// Metadata of a freshly written entry.
    pub fn new(key: &str, value_len: usize, stored_at: Millis, expires_at: Option<Millis>) -> Self {
        Self {
            stored_at,
            expires_at,
            accessed_at: stored_at,
            access_count: 0,
            size: entry_size(key, value_len),
        }
    }

    /// Whether the entry is expired at `now` (`expires_at <= now`).
    pub fn is_expired(&self, now: Millis) -> bool {
        matches!(self.expires_at, Some(at) if at <= now)
    }
}

/// Logical size of an entry: key bytes plus value bytes.
pub fn entry_size(key: &str, value_len: usize) -> u64 {
    key.len() as u64 + value_len as u64
}

/// A stored entry as a backend returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The stored bytes (an encoded envelope when written through [`Cache`](crate::Cache)).
    pub value: Bytes,
    /// The entry's metadata.
    pub meta: EntryMeta,
}

/// Entry count and logical bytes of a store, kept by the backend without scans.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Number of stored entries (expired entries not yet purged included).
    pub entries: u64,
    /// Sum of the entries' logical sizes (key bytes + value bytes).
    pub bytes: u64,
}

/// What an operation removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Removed {
    /// Entries removed.
    pub entries: u64,
    /// Logical bytes removed.
    pub bytes: u64,
}

impl Removed {
    /// Adds another removal to this one.
    pub fn add(&mut self, other: Removed) {
        self.entries = self.entries.saturating_add(other.entries);
        self.bytes = self.bytes.saturating_add(other.bytes);
    }

    /// Records one removed entry of `size` bytes.
    pub fn add_one(&mut self, size: u64) {
        self.entries = self.entries.saturating_add(1);
        self.bytes = self.bytes.saturating_add(size);
    }
}

/// The result of [`CacheBackend::put`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    /// The entry was written.
    Stored {
        /// Logical size of the entry it replaced, if there was one (expired or not).
        previous_size: Option<u64>,
        /// Usage right after the write (after its purge and eviction).
        usage: Usage,
        /// Expired entries purged by this write ([`WriteLimit::purge`]).
        expired: Removed,
        /// Entries evicted by this write to keep [`WriteLimit::max_bytes`].
        evicted: Removed,
    },
    /// The write was refused because the logical bytes after it would exceed
    /// [`WriteLimit::max_bytes`] and [`WriteLimit::policy`] is [`EvictionPolicy::None`];
    /// nothing changed.
    Refused {
        /// Usage at the time of the refusal.
        usage: Usage,
    },
}

/// The bound a write keeps, applied by the backend in the same atomic step as the write
/// itself (one SQLite transaction, one Lua script, one locked section), so that the store is
/// never above `max_bytes` after a write returns, even when the write fails.
///
/// In order: up to `purge` entries expired at `now` are removed (soonest expiry first), the
/// write is applied, then entries are evicted in `policy` order, never the entries this write
/// wrote, until the logical bytes are at most `max_bytes`. With [`EvictionPolicy::None`]
/// nothing is evicted and a write that would end above `max_bytes` is refused instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteLimit {
    /// The most logical bytes (keys + values) the store may hold after the write.
    pub max_bytes: u64,
    /// How to make room: an eviction order, or [`EvictionPolicy::None`] to refuse.
    pub policy: EvictionPolicy,
    /// Expired entries to purge before writing (0: none).
    pub purge: usize,
    /// The time `purge` compares expiries with.
    pub now: Millis,
}

impl WriteLimit {
    /// No bound: nothing is purged, evicted or refused.
    pub const UNBOUNDED: WriteLimit = WriteLimit {
        max_bytes: u64::MAX,
        policy: EvictionPolicy::None,
        purge: 0,
        now: 0,
    };

    /// Refuse a write that would take the store above `max_bytes`; nothing is evicted.
    pub fn refuse_above(max_bytes: u64) -> Self {
        Self {
            max_bytes,
            ..Self::UNBOUNDED
        }
    }

    /// Evict in `policy` order down to `max_bytes` after the write.
    pub fn evict_to(max_bytes: u64, policy: EvictionPolicy) -> Self {
        Self {
            max_bytes,
            policy,
            ..Self::UNBOUNDED
        }
    }

    /// Also purge up to `limit` entries expired at `now` before the write.
    pub fn with_purge(mut self, now: Millis, limit: usize) -> Self {
        self.now = now;
        self.purge = limit;
        self
    }
}

/// One entry of a [`Batch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchPut {
    /// The key.
    pub key: String,
    /// The stored bytes.
    pub value: Bytes,
    /// When the entry expires (`None`: never).
    pub expires_at: Option<Millis>,
}

/// Several changes applied as one ([`CacheBackend::write_batch`]): every entry under each of
/// `remove_prefixes` is removed, then every put is written (a later put of the same key wins),
/// all at `stored_at`. Readers see the store before the batch or after it, never between.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Batch {
    /// Prefixes whose entries the batch replaces (for example one library's three key kinds).
    pub remove_prefixes: Vec<String>,
    /// The entries written.
    pub puts: Vec<BatchPut>,
    /// The write time of every entry.
    pub stored_at: Millis,
}

impl Batch {
    /// An empty batch written at `stored_at`.
    pub fn new(stored_at: Millis) -> Self {
        Self {
            stored_at,
            ..Self::default()
        }
    }

    /// A batch of `entries` written at `stored_at`, all expiring at `expires_at`, removing
    /// nothing.
    pub fn of(
        stored_at: Millis,
        expires_at: Option<Millis>,
        entries: impl IntoIterator<Item = (String, Bytes)>,
    ) -> Self {
        Self {
            remove_prefixes: Vec::new(),
            puts: entries
                .into_iter()
                .map(|(key, value)| BatchPut {
                    key,
                    value,
                    expires_at,
                })
                .collect(),
            stored_at,
        }
    }

    /// The puts that take effect: each key's last put, in the order of those last puts (the
    /// order a backend writes them in).
    pub fn effective_puts(&self) -> Vec<&BatchPut> {
        let mut last: std::collections::HashMap<&str, usize> =
            std::collections::HashMap::with_capacity(self.puts.len());
        for (i, p) in self.puts.iter().enumerate() {
            last.insert(&p.key, i);
        }
        self.puts
            .iter()
            .enumerate()
            .filter(|(i, p)| last.get(p.key.as_str()) == Some(i))
            .map(|(_, p)| p)
            .collect()
    }

    /// Logical bytes of the puts (a key written twice counts once per put).
    pub fn put_bytes(&self) -> u64 {
        self.puts
            .iter()
            .map(|p| entry_size(&p.key, p.value.len()))
            .sum()
    }
}

/// The result of [`CacheBackend::write_batch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchOutcome {
    /// The batch was applied.
    Applied {
        /// Entries removed by `remove_prefixes` (replaced puts are not counted here).
        removed: Removed,
        /// Distinct keys written.
        written: u64,
        /// Expired entries purged.
        expired: Removed,
        /// Entries evicted to keep the limit (never an entry of the batch).
        evicted: Removed,
        /// Usage afterwards.
        usage: Usage,
    },
    /// The batch's own entries do not fit under the limit (even with every other entry
    /// evicted, or with [`EvictionPolicy::None`], without evicting); nothing changed.
    Refused {
        /// Usage at the time of the refusal.
        usage: Usage,
    },
}

/// The order in which entries are evicted when the size limit is reached.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EvictionPolicy {
    /// Evict the entry written longest ago (ordered by `stored_at`). The default; reads stay
    /// read-only.
    #[default]
    LeastRecentlyStored,
    /// Evict the entry read longest ago (ordered by `accessed_at`, which a write resets).
    LeastRecentlyUsed,
    /// Evict the entry read least often since it was written (ordered by `access_count`, then
    /// `accessed_at`).
    LeastFrequentlyUsed,
    /// Never evict: a write that would exceed the size limit is refused with
    /// [`Error::CacheFull`](crate::Error::CacheFull).
    None,
}

impl EvictionPolicy {
    /// Whether reads must be recorded (accessed_at, access_count) for this policy.
    pub fn tracks_access(self) -> bool {
        matches!(self, Self::LeastRecentlyUsed | Self::LeastFrequentlyUsed)
    }

    /// A short stable name (`lrs`, `lru`, `lfu`, `none`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::LeastRecentlyStored => "lrs",
            Self::LeastRecentlyUsed => "lru",
            Self::LeastFrequentlyUsed => "lfu",
            Self::None => "none",
        }
    }
}

impl std::fmt::Display for EvictionPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for EvictionPolicy {
    type Err = crate::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "lrs" | "least-recently-stored" => Ok(Self::LeastRecentlyStored),
            "lru" | "least-recently-used" => Ok(Self::LeastRecentlyUsed),
            "lfu" | "least-frequently-used" => Ok(Self::LeastFrequentlyUsed),
            "none" => Ok(Self::None),
            other => Err(crate::Error::Config(format!(
                "unknown eviction policy {other:?} (expected lrs, lru, lfu or none)"
            ))),
        }
    }
}

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

/// Reads of one key to record (see [`CacheBackend::record_accesses`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    /// The key read.
    pub key: String,
    /// The time of the latest read.
    pub at: Millis,
    /// How many reads.
    pub count: u64,
}

/// Statistics counters. Used for the session counters of one [`Cache`](crate::Cache) and for
/// the persistent counters a backend stores (merged by delta flushes).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Reads that returned a value.
    pub hits: u64,
    /// Reads that found nothing, an expired entry, or an undecodable value.
    pub misses: u64,
    /// Values written.
    pub sets: u64,
    /// Entries removed on request (`remove`, `remove_prefix`).
    pub removes: u64,
    /// Entries evicted to keep the size limit.
    pub evictions: u64,
    /// Expired entries purged.
    pub expirations: u64,
    /// Stored values that could not be decoded (wrong schema, corrupt) and were removed.
    pub decode_failures: u64,
    /// Fetches run by `get_or_fetch` on a miss.
    pub fetches: u64,
    /// `get_or_fetch` callers that waited for another caller's fetch instead of fetching.
    pub coalesced: u64,
}

impl Counters {
    /// The counters as `(name, value)` pairs, in a stable order (used by backends to store them).
    pub fn fields(&self) -> [(&'static str, u64); 9] {
        [
            ("hits", self.hits),
            ("misses", self.misses),
            ("sets", self.sets),
            ("removes", self.removes),
            ("evictions", self.evictions),
            ("expirations", self.expirations),
            ("decode_failures", self.decode_failures),
            ("fetches", self.fetches),
            ("coalesced", self.coalesced),
        ]
    }

    /// Sets the counter called `name` (one of [`Counters::fields`]); unknown names are ignored.
    pub fn set_field(&mut self, name: &str, value: u64) {
        match name {
            "hits" => self.hits = value,
            "misses" => self.misses = value,
            "sets" => self.sets = value,
            "removes" => self.removes = value,
            "evictions" => self.evictions = value,
            "expirations" => self.expirations = value,
            "decode_failures" => self.decode_failures = value,
            "fetches" => self.fetches = value,
            "coalesced" => self.coalesced = value,
            _ => {}
        }
    }

    /// Field-wise saturating sum.
    pub fn saturating_add(&self, other: &Counters) -> Counters {
        let mut out = *self;
        for (name, v) in other.fields() {
            let cur = out.get_field(name);
            out.set_field(name, cur.saturating_add(v));
        }
        out
    }

    /// Field-wise saturating difference (`self - other`).
    pub fn saturating_sub(&self, other: &Counters) -> Counters {
        let mut out = *self;
        for (name, v) in other.fields() {
            let cur = out.get_field(name);
            out.set_field(name, cur.saturating_sub(v));
        }
        out
    }

    /// The counter called `name`, or 0 for an unknown name.
    pub fn get_field(&self, name: &str) -> u64 {
        self.fields()
            .iter()
            .find(|(n, _)| *n == name)
            .map_or(0, |(_, v)| *v)
    }

    /// Whether every counter is zero.
    pub fn is_zero(&self) -> bool {
        self.fields().iter().all(|(_, v)| *v == 0)
    }

    /// `hits / (hits + misses)`, or `None` before the first read.
    pub fn hit_ratio(&self) -> Option<f64> {
        let total = self.hits + self.misses;
        (total > 0).then(|| self.hits as f64 / total as f64)
    }
}

/// A storage engine for [`Cache`](crate::Cache).
///
/// Object-safe: `Arc<dyn CacheBackend>` and `Box<dyn CacheBackend>` are backends too. All
/// times are passed in by the caller. See the [module documentation](self) for the rules, and
/// [`testkit`](crate::testkit) for the suite that checks them.
#[async_trait]
pub trait CacheBackend: Send + Sync + 'static {
    /// A short name for messages and tables (`memory`, `sqlite`, ...).
    fn name(&self) -> &'static str;

    /// Returns the entry for `key`, or `None` if there is none or it is expired at `now`
    /// (`expires_at <= now`). Does not record the access.
    async fn get(&self, key: &str, now: Millis) -> Result<Option<Entry>>;

    /// Like [`get`](CacheBackend::get), for a caller that already holds a copy of the value:
    /// returns [`Revalidated::Same`] when the live value is `len` bytes long and starts with
    /// `head` (an envelope's header, which carries the payload's checksum), without reading
    /// the rest of it; otherwise [`Revalidated::Changed`] with the whole entry. `None` exactly
    /// when `get` would return `None`. Does not record the access.
    ///
    /// The default reads the whole entry and compares; stores that can read the head of a large
    /// value on its own (SQLite's blob I/O) override it.
    async fn get_if_changed(
        &self,
        key: &str,
        now: Millis,
        head: &[u8],
        len: u64,
    ) -> Result<Option<Revalidated>> {
        Ok(self
            .get(key, now)
            .await?
            .map(|entry| Revalidated::compare(entry, head, len)))
    }

    /// Inserts or replaces the entry for `key`, keeping `limit` in the same atomic step (see
    /// [`WriteLimit`]). A replaced entry's access data is reset (`accessed_at = stored_at`,
    /// `access_count = 0`).
    async fn put(
        &self,
        key: &str,
        value: Bytes,
        stored_at: Millis,
        expires_at: Option<Millis>,
        limit: WriteLimit,
    ) -> Result<PutOutcome>;

    /// Applies a [`Batch`] atomically, keeping `limit` as [`put`](CacheBackend::put) does,
    /// never evicting the batch's own entries. When they cannot fit, nothing changes and the
    /// answer is [`BatchOutcome::Refused`].
    async fn write_batch(&self, batch: &Batch, limit: WriteLimit) -> Result<BatchOutcome>;

    /// A number that changes whenever the store may have changed (any write, by this process
    /// or another), cheap enough to ask on every read; `None` when the store offers none.
    /// The in-process tier of [`Cache`](crate::Cache) serves an entry without asking the
    /// store only while this number is what it was when the entry was read.
    fn change_token(&self) -> Option<u64> {
        None
    }

    /// Where and how the store is kept (file system, mode, lease), for statistics; `None`
    /// for stores without a file system (memory, Redis).
    fn storage_info(&self) -> Option<crate::StorageInfo> {
        None
    }

    /// Removes the entry for `key`, returning its metadata if there was one (expired or not).
    async fn remove(&self, key: &str) -> Result<Option<EntryMeta>>;

    /// Removes every entry whose key starts with `prefix`. O(k log n).
    async fn remove_prefix(&self, prefix: &str) -> Result<Removed>;

    /// Removes every entry. Persistent counters are kept.
    async fn clear(&self) -> Result<Removed>;

    /// Entry count and logical bytes, O(1).
    async fn usage(&self) -> Result<Usage>;

    /// Removes up to `limit` entries with `expires_at <= now`, soonest expiry first (ties in
    /// write order: the entry written first goes first).
    async fn purge_expired(&self, now: Millis, limit: usize) -> Result<Removed>;

    /// Evicts entries in `policy` order until the logical bytes are at most `target_bytes`,
    /// never evicting `protect` (the key just written). Returns what was evicted. With
    /// [`EvictionPolicy::None`] nothing is evicted.
    async fn evict(
        &self,
        policy: EvictionPolicy,
        target_bytes: u64,
        protect: Option<&str>,
    ) -> Result<Removed>;

    /// Up to `limit` keys starting with `prefix`, in ascending byte order, leaving out entries
    /// expired at `now`.
    async fn keys(&self, prefix: &str, now: Millis, limit: usize) -> Result<Vec<String>>;

    /// Records reads: for each existing key, `accessed_at = max(accessed_at, at)` and
    /// `access_count += count`. Keys that no longer exist are skipped.
    async fn record_accesses(&self, accesses: &[Access]) -> Result<()>;

    /// The persistent statistics counters.
    async fn load_stats(&self) -> Result<Counters>;

    /// Adds `delta` to the persistent statistics counters, atomically.
    async fn add_stats(&self, delta: &Counters) -> Result<()>;

    /// Makes every acknowledged write durable (a no-op for stores without durability).
    async fn flush(&self) -> Result<()>;

    /// Bytes the store occupies on disk, or `None` for stores without a disk footprint.
    async fn disk_usage(&self) -> Result<Option<u64>>;

    /// Engine-level integrity problems (for example indexes that disagree with the records, or
    /// stored counters that disagree with the entries), as human-readable lines; empty when the
    /// engine found none. May scan the whole store: for `plexcache check`, not the hot path.
    /// The default checks nothing.
    async fn integrity_check(&self) -> Result<Vec<String>> {
        Ok(Vec::new())
    }
}

/// What [`CacheBackend::get_if_changed`] found for a live entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revalidated {
    /// The value has the length and head the caller holds; its metadata.
    Same(EntryMeta),
    /// The value differs: the whole entry.
    Changed(Entry),
}

impl Revalidated {
    /// `Same` when `entry`'s value is `len` bytes long and starts with `head`, else `Changed`.
    pub fn compare(entry: Entry, head: &[u8], len: u64) -> Self {
        if entry.value.len() as u64 == len && entry.value.starts_with(head) {
            Revalidated::Same(entry.meta)
        } else {
            Revalidated::Changed(entry)
        }
    }
}

macro_rules! forward_backend {
    ($ty:ty) => {
        #[async_trait]
        impl<T: CacheBackend + ?Sized> CacheBackend for $ty {
            fn name(&self) -> &'static str {
                (**self).name()
            }
            async fn get(&self, key: &str, now: Millis) -> Result<Option<Entry>> {
                (**self).get(key, now).await
            }
            async fn get_if_changed(
                &self,
                key: &str,
                now: Millis,
                head: &[u8],
                len: u64,
            ) -> Result<Option<Revalidated>> {
                (**self).get_if_changed(key, now, head, len).await
            }
            async fn put(
                &self,
                key: &str,
                value: Bytes,
                stored_at: Millis,
                expires_at: Option<Millis>,
                limit: WriteLimit,
            ) -> Result<PutOutcome> {
                (**self).put(key, value, stored_at, expires_at, limit).await
            }
            async fn write_batch(&self, batch: &Batch, limit: WriteLimit) -> Result<BatchOutcome> {
                (**self).write_batch(batch, limit).await
            }
            fn change_token(&self) -> Option<u64> {
                (**self).change_token()
            }
            fn storage_info(&self) -> Option<crate::StorageInfo> {
                (**self).storage_info()
            }
            async fn remove(&self, key: &str) -> Result<Option<EntryMeta>> {
                (**self).remove(key).await
            }
            async fn remove_prefix(&self, prefix: &str) -> Result<Removed> {
                (**self).remove_prefix(prefix).await
            }
            async fn clear(&self) -> Result<Removed> {
                (**self).clear().await
            }
            async fn usage(&self) -> Result<Usage> {
                (**self).usage().await
            }
            async fn purge_expired(&self, now: Millis, limit: usize) -> Result<Removed> {
                (**self).purge_expired(now, limit).await
            }
            async fn evict(
                &self,
                policy: EvictionPolicy,
                target_bytes: u64,
                protect: Option<&str>,
            ) -> Result<Removed> {
                (**self).evict(policy, target_bytes, protect).await
            }
            async fn keys(&self, prefix: &str, now: Millis, limit: usize) -> Result<Vec<String>> {
                (**self).keys(prefix, now, limit).await
            }
            async fn record_accesses(&self, accesses: &[Access]) -> Result<()> {
                (**self).record_accesses(accesses).await
            }
            async fn load_stats(&self) -> Result<Counters> {
                (**self).load_stats().await
            }
            async fn add_stats(&self, delta: &Counters) -> Result<()> {
                (**self).add_stats(delta).await
            }
            async fn flush(&self) -> Result<()> {
                (**self).flush().await
            }
            async fn disk_usage(&self) -> Result<Option<u64>> {
                (**self).disk_usage().await
            }
            async fn integrity_check(&self) -> Result<Vec<String>> {
                (**self).integrity_check().await
            }
        }
    };
}

forward_backend!(Arc<T>);
forward_backend!(Box<T>);
