//! Maintenance: statistics, expiry and culls, the consistency check, the sweeper.

use super::{Cache, EXPIRE_BATCH, Inner};
use crate::backend::{CacheBackend, Millis, Removed, entry_size};
use crate::codec::{self};
use crate::error::{Error, Result, short_key};
use crate::stats::Stats;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

impl<B: CacheBackend> Cache<B> {
    pub(super) async fn maybe_flush_stats(&self, now: Millis) -> Result<()> {
        let every = self.inner.config.stats_flush_interval.as_millis() as u64;
        let last = self.inner.last_stats_flush.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= every || now < last {
            self.flush_stats().await?;
        }
        Ok(())
    }

    pub(super) async fn flush_stats(&self) -> Result<()> {
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

    /// Up to `limit` live keys starting with `prefix`, in ascending byte order.
    pub async fn keys(&self, prefix: &str, limit: usize) -> Result<Vec<String>> {
        self.inner.backend.keys(prefix, self.now(), limit).await
    }

    /// Purges every expired entry. Returns how many were purged.
    pub async fn expire(&self) -> Result<u64> {
        self.expire_at(self.now()).await
    }

    /// [`Cache::expire`] for the time `now`.
    async fn expire_at(&self, now: Millis) -> Result<u64> {
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
            storage: self.inner.backend.storage_info(),
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
        // One time for the whole check: an entry that expires while the check runs would
        // otherwise be counted by `usage` but not by the scan.
        let now = self.now();
        let expired = self.expire_at(now).await?;
        let engine_problems = self.inner.backend.integrity_check().await?;
        let keys = self.inner.backend.keys("", now, usize::MAX).await?;
        let mut report = CheckReport {
            expired_purged: expired,
            engine_problems,
            ..CheckReport::default()
        };
        for key in keys {
            let Some(entry) = self.inner.backend.get(&key, now).await? else {
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
