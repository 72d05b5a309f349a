//! [`WriteBatch`]: several writes applied as one by [`Cache::write_batch`](crate::Cache::write_batch).

use bytes::Bytes;

use crate::cache::Ttl;
use crate::codec::{self, BorrowedValue, CacheValue};
use crate::error::{Error, Result, short_key};

/// Writes applied together by [`Cache::write_batch`](crate::Cache::write_batch): prefixes whose
/// entries are replaced, and entries to write. Values are encoded when added, so an encoding
/// error names its key before anything is written.
///
/// ```
/// # use plexcache_core::model::ModelBackend;
/// use plexcache_core::{Cache, Ttl, WriteBatch};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let cache = Cache::new(ModelBackend::new());
/// cache.set("lib:Movies:old", &1u32).await?;
/// let mut batch = WriteBatch::new();
/// batch.remove_prefix("lib:Movies:");
/// batch.set("lib:Movies:a", &2u32, Ttl::Default)?;
/// batch.set("lib:Movies:b", &3u32, Ttl::Default)?;
/// let report = cache.write_batch(batch).await?;
/// assert_eq!((report.removed, report.written), (1, 2));
/// assert_eq!(cache.get::<u32>("lib:Movies:old").await?, None);
/// # Ok::<(), plexcache_core::Error>(())
/// # }).unwrap();
/// ```
#[derive(Debug, Default, Clone)]
pub struct WriteBatch {
    pub(crate) remove_prefixes: Vec<String>,
    pub(crate) puts: Vec<(String, Bytes, Ttl)>,
}

/// What [`Cache::write_batch`](crate::Cache::write_batch) did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchReport {
    /// Entries removed under the batch's prefixes (entries it replaced included).
    pub removed: u64,
    /// Distinct keys written.
    pub written: u64,
    /// Other entries evicted to keep the size limit.
    pub evicted: u64,
}

impl WriteBatch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Removes every entry whose key starts with `prefix` (before the batch's writes).
    pub fn remove_prefix(&mut self, prefix: impl Into<String>) -> &mut Self {
        self.remove_prefixes.push(prefix.into());
        self
    }

    /// Writes `value` under `key`.
    pub fn set<T: CacheValue>(
        &mut self,
        key: &str,
        value: &T,
        ttl: impl Into<Ttl>,
    ) -> Result<&mut Self> {
        let bytes = codec::encode(key, value).map_err(|source| Error::Encode {
            key: short_key(key),
            source,
        })?;
        Ok(self.set_encoded(key, bytes, ttl.into()))
    }

    /// Writes a borrowed form of a value (see [`Cache::set_borrowed`](crate::Cache::set_borrowed)).
    pub fn set_borrowed<V: BorrowedValue + ?Sized>(
        &mut self,
        key: &str,
        value: &V,
        ttl: impl Into<Ttl>,
    ) -> Result<&mut Self> {
        let bytes = codec::encode_borrowed(key, value).map_err(|source| Error::Encode {
            key: short_key(key),
            source,
        })?;
        Ok(self.set_encoded(key, bytes, ttl.into()))
    }

    fn set_encoded(&mut self, key: &str, bytes: Bytes, ttl: Ttl) -> &mut Self {
        self.puts.push((key.to_owned(), bytes, ttl));
        self
    }

    /// Entries to write.
    pub fn len(&self) -> usize {
        self.puts.len()
    }

    /// Whether the batch writes nothing.
    pub fn is_empty(&self) -> bool {
        self.puts.is_empty()
    }
}
