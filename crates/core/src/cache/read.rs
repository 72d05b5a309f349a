//! Reads: the memory tier, typed and shared gets, access records for LRU/LFU.

use super::{ACCESS_BUFFER_LIMIT, Cache};
use crate::backend::{Access, CacheBackend, Entry, EntryMeta, Millis, Revalidated, Usage};
use crate::codec::{self, CacheValue};
use crate::error::{Result, short_key};
use crate::tier::Decoded;
use bytes::Bytes;
use std::sync::Arc;

/// An entry as a read found it, with the decoded form the memory tier holds for it.
pub(super) struct Read {
    pub(super) value: Bytes,
    pub(super) decoded: Option<Decoded>,
}

impl Read {
    pub(super) fn fresh(entry: Entry) -> Self {
        Self {
            value: entry.value,
            decoded: None,
        }
    }
}

impl<B: CacheBackend> Cache<B> {
    /// Reads a value. Expired entries, missing entries and values that do not decode as `T`
    /// (another type, an older version, damaged bytes) are misses; undecodable values are
    /// removed and counted in `decode_failures`.
    pub async fn get<T: CacheValue>(&self, key: &str) -> Result<Option<T>> {
        self.get_inner(key, true).await
    }

    pub(super) async fn get_inner<T: CacheValue>(
        &self,
        key: &str,
        counted: bool,
    ) -> Result<Option<T>> {
        self.check_key(key)?;
        let now = self.now();
        let Some(read) = self.read_entry(key, now, false).await? else {
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
    /// `shared`: the caller keeps a decoded form in the slot (`get_decoded`), so the value is
    /// held whatever its length; a plain `get` leaves values under the tier's minimum out.
    pub(super) async fn read_entry(
        &self,
        key: &str,
        now: Millis,
        shared: bool,
    ) -> Result<Option<Read>> {
        let tier = &self.inner.tier;
        let backend = &self.inner.backend;
        if !tier.enabled() {
            return Ok(backend.get(key, now).await?.map(Read::fresh));
        }
        if !shared && !tier.holds(key) {
            // Nothing to check against: one read. A value the tier keeps is held unconfirmed
            // (no change token was read before it), so the next read asks the store for its
            // header once before serving it from memory.
            let entry = backend.get(key, now).await?;
            if let Some(entry) = &entry {
                tier.insert(key, entry, None, false);
            }
            return Ok(entry.map(Read::fresh));
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
                        tier.insert(key, &entry, token, shared);
                        Ok(Some(Read::fresh(entry)))
                    }
                }
            }
            None => {
                let entry = backend.get(key, now).await?;
                if let Some(entry) = &entry {
                    tier.insert(key, entry, token, shared);
                }
                Ok(entry.map(Read::fresh))
            }
        }
    }

    /// Counts a hit and notes the access for LRU/LFU.
    pub(super) async fn hit(&self, key: &str, now: Millis, counted: bool) -> Result<()> {
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
    pub(super) async fn undecodable(
        &self,
        key: &str,
        e: &codec::DecodeError,
        counted: bool,
    ) -> Result<()> {
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
        let Some(read) = self.read_entry(key, now, true).await? else {
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

    pub(super) async fn note_access(&self, key: &str, now: Millis) -> Result<()> {
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

    pub(super) async fn flush_accesses(&self) -> Result<()> {
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
}
