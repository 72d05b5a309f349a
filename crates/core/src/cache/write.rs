//! Writes: sets, batches, removals, and what they evict.

use super::{Cache, Ttl};
use crate::backend::{
    Batch, BatchOutcome, BatchPut, CacheBackend, Entry, EntryMeta, EvictionPolicy, Millis,
    PutOutcome, Removed, WriteLimit, entry_size,
};
use crate::batch::{BatchReport, WriteBatch};
use crate::codec::{self, CacheValue};
use crate::error::{Error, Result, short_key};
use bytes::Bytes;

impl<B: CacheBackend> Cache<B> {
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

    pub(super) fn expires_at(&self, now: Millis, ttl: Ttl) -> Option<Millis> {
        let ttl = match ttl {
            Ttl::Default => self.inner.config.default_ttl?,
            Ttl::Never => return None,
            Ttl::After(d) => d,
        };
        let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        Some(now.saturating_add(ms))
    }

    /// The bound every write keeps, applied by the backend in the write's own atomic step.
    pub(super) fn write_limit(&self, now: Millis) -> WriteLimit {
        let cfg = &self.inner.config;
        WriteLimit::evict_to(cfg.size_limit, cfg.eviction_policy).with_purge(now, cfg.cull_limit)
    }

    pub(super) async fn put_encoded(&self, key: &str, bytes: Bytes, ttl: Ttl) -> Result<()> {
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
                self.inner.tier.insert(key, &entry, None, false);
            }
        }
        self.maybe_flush_stats(now).await
    }

    /// Counts and logs entries evicted to keep the size limit.
    pub(super) fn note_evicted(&self, evicted: Removed) {
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

    pub(super) async fn evict_to(&self, target: u64, protect: Option<&str>) -> Result<Removed> {
        let policy = self.inner.config.eviction_policy;
        if policy == EvictionPolicy::None {
            return Ok(Removed::default());
        }
        let evicted = self.inner.backend.evict(policy, target, protect).await?;
        self.note_evicted(evicted);
        Ok(evicted)
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
}
