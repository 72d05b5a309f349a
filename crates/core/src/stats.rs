//! Statistics: session counters (atomics) and the snapshot [`Stats`] returned by
//! [`Cache::stats`](crate::Cache::stats).

use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::backend::{Counters, EvictionPolicy, Usage};

/// Lock-free counters of one [`Cache`](crate::Cache) since it was built.
#[derive(Debug, Default)]
pub(crate) struct SessionCounters {
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    pub sets: AtomicU64,
    pub removes: AtomicU64,
    pub evictions: AtomicU64,
    pub expirations: AtomicU64,
    pub decode_failures: AtomicU64,
    pub fetches: AtomicU64,
    pub coalesced: AtomicU64,
}

impl SessionCounters {
    pub fn snapshot(&self) -> Counters {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Counters {
            hits: l(&self.hits),
            misses: l(&self.misses),
            sets: l(&self.sets),
            removes: l(&self.removes),
            evictions: l(&self.evictions),
            expirations: l(&self.expirations),
            decode_failures: l(&self.decode_failures),
            fetches: l(&self.fetches),
            coalesced: l(&self.coalesced),
        }
    }
}

/// Adds `n` to a counter (relaxed: counters are statistics, not synchronisation).
#[inline]
pub(crate) fn bump(counter: &AtomicU64, n: u64) {
    if n > 0 {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// A snapshot of a cache's statistics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// Backend name.
    pub backend: String,
    /// Counters of this `Cache` value (and its clones) since it was built.
    pub session: Counters,
    /// Counters kept by the backend across restarts and processes, including this session's
    /// not yet flushed counts.
    pub persistent: Counters,
    /// Entries and logical bytes stored now (expired entries not yet purged included).
    pub usage: Usage,
    /// The size limit in bytes.
    pub size_limit: u64,
    /// The eviction policy.
    pub eviction_policy: EvictionPolicy,
    /// Bytes on disk, for backends with a disk footprint.
    pub disk_bytes: Option<u64>,
    /// Where and how a disk backend stores the cache (file system kind, mode, lease).
    #[serde(default)]
    pub storage: Option<StorageInfo>,
}

/// Where and how a disk backend keeps its store: the file system it detected, the mode it
/// chose for it, and on a network file system the lease holder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StorageInfo {
    /// The file system (see [`crate::fskind::detect`]).
    pub fs: crate::fskind::FsInfo,
    /// The mode chosen: for SQLite `shared (WAL)`, `exclusive (write-back)` or
    /// `network share (rollback journal, lease)`.
    pub mode: String,
    /// On a network file system: this process's domain's lease.
    pub lease: Option<crate::lease::LeaseStatus>,
}
