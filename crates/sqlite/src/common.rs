//! The [`CacheBackend`](plexcache_core::CacheBackend) implementation both modes share: every
//! operation as the same `store` function, run through the mode's own plumbing. A mode type
//! provides, as inherent methods: `core()`, `get_entry`, `put_value`, `read`, `quick_read`,
//! `write`, `write_txn`, `wrote`, `token` and `flush_outcome` (see `backend.rs` for the shared
//! mode and `exclusive.rs` for the exclusive one); `put_value` may end in the shared
//! `put_in_transaction`.

/// Implements `CacheBackend` (and `compact`) for a mode type.
macro_rules! impl_cache_backend {
    ($ty:ty) => {
        #[plexcache_core::async_trait]
        impl plexcache_core::CacheBackend for $ty {
            fn name(&self) -> &'static str {
                crate::store::NAME
            }

            async fn get(
                &self,
                key: &str,
                now: plexcache_core::Millis,
            ) -> plexcache_core::Result<Option<plexcache_core::Entry>> {
                self.get_entry(key, now).await
            }

            async fn get_if_changed(
                &self,
                key: &str,
                now: plexcache_core::Millis,
                head: &[u8],
                len: u64,
            ) -> plexcache_core::Result<Option<plexcache_core::Revalidated>> {
                use crate::store::Checked;
                use plexcache_core::Revalidated;
                let limit = self.core().cfg.inline_read_limit;
                let checked = {
                    let head = head.to_vec();
                    let key = key.to_owned();
                    self.quick_read("get_if_changed", move |conn| {
                        crate::store::get_if_changed(conn, &key, now, &head, len, limit)
                    })
                    .await?
                };
                Ok(match checked {
                    Checked::Gone => None,
                    Checked::Same(meta) => Some(Revalidated::Same(meta)),
                    Checked::Changed(entry) => Some(Revalidated::Changed(entry)),
                    Checked::ChangedLarge => {
                        self.get_entry(key, now).await?.map(Revalidated::Changed)
                    }
                })
            }

            async fn put(
                &self,
                key: &str,
                value: plexcache_core::Bytes,
                stored_at: plexcache_core::Millis,
                expires_at: Option<plexcache_core::Millis>,
                limit: plexcache_core::WriteLimit,
            ) -> plexcache_core::Result<plexcache_core::PutOutcome> {
                crate::writer::check_len(key, value.len())?;
                self.put_value(key, value, stored_at, expires_at, limit)
                    .await
            }

            async fn write_batch(
                &self,
                batch: &plexcache_core::Batch,
                limit: plexcache_core::WriteLimit,
            ) -> plexcache_core::Result<plexcache_core::BatchOutcome> {
                use plexcache_core::BatchOutcome;
                for put in &batch.puts {
                    crate::writer::check_len(&put.key, put.value.len())?;
                }
                let batch = batch.clone();
                let out = self
                    .write(
                        |o: &BatchOutcome| {
                            matches!(o, BatchOutcome::Applied { removed, .. } if removed.entries > 0)
                        },
                        move |ctx, conn| {
                            ctx.write_or_rollback(conn, "write_batch", |tx| {
                                crate::store::write_batch(tx, &batch, limit)
                            })
                        },
                    )
                    .await?;
                self.wrote();
                Ok(out)
            }

            fn change_token(&self) -> Option<u64> {
                self.token()
            }

            async fn remove(
                &self,
                key: &str,
            ) -> plexcache_core::Result<Option<plexcache_core::EntryMeta>> {
                let key: std::sync::Arc<str> = std::sync::Arc::from(key);
                self.write_txn("remove", true, Option::is_some, move |tx| {
                    crate::store::remove(tx, &key)
                })
                .await
            }

            async fn remove_prefix(
                &self,
                prefix: &str,
            ) -> plexcache_core::Result<plexcache_core::Removed> {
                let prefix: std::sync::Arc<str> = std::sync::Arc::from(prefix);
                self.write_txn(
                    "remove_prefix",
                    false,
                    crate::writer::removed_some,
                    move |tx| crate::store::remove_prefix(tx, &prefix),
                )
                .await
            }

            async fn clear(&self) -> plexcache_core::Result<plexcache_core::Removed> {
                self.write_txn(
                    "clear",
                    false,
                    crate::writer::removed_some,
                    crate::store::clear,
                )
                .await
            }

            async fn usage(&self) -> plexcache_core::Result<plexcache_core::Usage> {
                self.quick_read("usage", crate::store::usage).await
            }

            async fn purge_expired(
                &self,
                now: plexcache_core::Millis,
                limit: usize,
            ) -> plexcache_core::Result<plexcache_core::Removed> {
                if limit == 0 {
                    return Ok(plexcache_core::Removed::default());
                }
                // The common case, nothing expired, is an index probe: no write lock.
                let any = self
                    .quick_read("purge_expired", move |conn| {
                        crate::store::any_expired(conn, now)
                    })
                    .await?;
                if !any {
                    return Ok(plexcache_core::Removed::default());
                }
                self.write_txn(
                    "purge_expired",
                    limit <= 100,
                    crate::writer::removed_some,
                    move |tx| crate::store::purge_expired(tx, now, limit),
                )
                .await
            }

            async fn evict(
                &self,
                policy: plexcache_core::EvictionPolicy,
                target_bytes: u64,
                protect: Option<&str>,
            ) -> plexcache_core::Result<plexcache_core::Removed> {
                use plexcache_core::EvictionPolicy;
                if policy == EvictionPolicy::None {
                    return Ok(plexcache_core::Removed::default());
                }
                let protect = protect.map(str::to_owned);
                let build = policy != EvictionPolicy::LeastRecentlyStored
                    && self.core().access_indexes_unknown();
                // Building the indexes scans the table: never inline on the runtime.
                let removing =
                    |(r, _): &(plexcache_core::Removed, Vec<String>)| r.entries > 0;
                let (removed, _) = self
                    .write_txn("evict", !build, removing, move |tx| {
                        if build {
                            crate::store::ensure_access_indexes(tx)?;
                        }
                        crate::store::evict(tx, policy, target_bytes, &|k| {
                            Some(k) == protect.as_deref()
                        })
                    })
                    .await?;
                self.core().access_indexes_built(build);
                Ok(removed)
            }

            async fn keys(
                &self,
                prefix: &str,
                now: plexcache_core::Millis,
                limit: usize,
            ) -> plexcache_core::Result<Vec<String>> {
                let prefix = prefix.to_owned();
                let inline = self.core().cfg.offload == crate::builder::Offload::Never;
                self.read("keys", inline, move |conn| {
                    crate::store::keys(conn, &prefix, now, limit)
                })
                .await
            }

            async fn record_accesses(
                &self,
                accesses: &[plexcache_core::Access],
            ) -> plexcache_core::Result<()> {
                if accesses.is_empty() {
                    return Ok(());
                }
                let build = self.core().access_indexes_unknown();
                let small = accesses.len() <= 32 && !build;
                let accesses: std::sync::Arc<[plexcache_core::Access]> =
                    std::sync::Arc::from(accesses);
                self.write_txn(
                    "record_accesses",
                    small,
                    crate::writer::no_removal,
                    move |tx| {
                        if build {
                            crate::store::ensure_access_indexes(tx)?;
                        }
                        crate::store::record_accesses(tx, &accesses)
                    },
                )
                .await?;
                self.core().access_indexes_built(build);
                Ok(())
            }

            async fn load_stats(&self) -> plexcache_core::Result<plexcache_core::Counters> {
                self.quick_read("load_stats", crate::store::load_stats)
                    .await
            }

            async fn add_stats(
                &self,
                delta: &plexcache_core::Counters,
            ) -> plexcache_core::Result<()> {
                if delta.is_zero() {
                    return Ok(());
                }
                let delta = *delta;
                self.write_txn("add_stats", true, crate::writer::no_removal, move |tx| {
                    crate::store::add_stats(tx, &delta)
                })
                .await
            }

            async fn flush(&self) -> plexcache_core::Result<()> {
                self.write(crate::writer::no_removal, |ctx, conn| {
                    crate::store::flush(conn, ctx)
                })
                .await?;
                self.flush_outcome()
            }

            async fn integrity_check(&self) -> plexcache_core::Result<Vec<String>> {
                self.read("integrity_check", false, crate::store::integrity_check)
                    .await
            }

            fn storage_info(&self) -> Option<plexcache_core::StorageInfo> {
                Some(self.core().share.info())
            }

            async fn disk_usage(&self) -> plexcache_core::Result<Option<u64>> {
                self.core().disk_usage()
            }
        }

        impl $ty {
            /// A put in one write transaction of the mode (`write_txn`), inline when the
            /// value is small.
            async fn put_in_transaction(
                &self,
                key: &str,
                value: plexcache_core::Bytes,
                stored_at: plexcache_core::Millis,
                expires_at: Option<plexcache_core::Millis>,
                limit: plexcache_core::WriteLimit,
            ) -> plexcache_core::Result<plexcache_core::PutOutcome> {
                let small = value.len() as u64 <= self.core().cfg.inline_read_limit;
                let key: std::sync::Arc<str> = std::sync::Arc::from(key);
                // The LRU/LFU indexes are built by the first eviction in those orders, which
                // scans the table: never inline on the runtime.
                let build =
                    limit.policy.tracks_access() && self.core().access_indexes_unknown();
                let out = self
                    .write_txn(
                        "put",
                        small && !build,
                        crate::writer::no_removal,
                        move |tx| {
                            crate::store::put(tx, &key, &value, stored_at, expires_at, limit, build)
                        },
                    )
                    .await?;
                self.core().access_indexes_built(
                    build
                        && matches!(
                            out,
                            plexcache_core::PutOutcome::Stored { evicted, .. } if evicted.entries > 0
                        ),
                );
                Ok(out)
            }

            /// The database file.
            pub fn path(&self) -> &std::path::Path {
                &self.core().ctx.path
            }

            /// The file system the database is on, the mode chosen for it and, on a network
            /// file system, the lease.
            pub fn storage_info(&self) -> plexcache_core::StorageInfo {
                self.core().share.info()
            }

            /// Where blocking calls run.
            pub fn offload(&self) -> crate::builder::Offload {
                self.core().cfg.offload
            }

            /// Returns every free page to the file system and truncates the WAL (when no
            /// other connection is reading). Not needed in normal operation: freed pages are
            /// reused, and large removals trigger an incremental vacuum.
            pub async fn compact(&self) -> plexcache_core::Result<()> {
                self.write(crate::writer::no_removal, |ctx, conn| {
                    ctx.retry("incremental vacuum", || {
                        conn.execute_batch("PRAGMA incremental_vacuum;")
                    })?;
                    ctx.retry("checkpoint", || {
                        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
                    })
                })
                .await
            }
        }
    };
}

pub(crate) use impl_cache_backend;
