//! The synchronous store: sled trees kept in step by one writer at a time, in a crash-safe
//! order.
//!
//! Trees:
//!
//! | tree      | key                                         | value                         |
//! |-----------|---------------------------------------------|-------------------------------|
//! | `entries` | cache key                                   | record: header (+ value)      |
//! | `values`  | `key ++ seq`                                | value (values over 4 KiB)     |
//! | `expiry`  | `expires_at ++ seq ++ key`                  | empty                         |
//! | `stored`  | `stored_at ++ seq ++ key`                   | empty                         |
//! | `used`    | `accessed_at ++ seq ++ key`                 | empty                         |
//! | `freq`    | `access_count ++ accessed_at ++ seq ++ key` | empty                         |
//! | `meta`    | `version`, `usage`, `stats`, `clean`, ...   | big-endian u64s               |
//!
//! ## Why no sled transactions
//!
//! sled 0.34 seals and writes its log buffer at the start and end of every transaction (and
//! every batch), and queues each write on its global I/O thread pool. Under a steady stream of
//! small transactions the pool fills with writers blocked on sled's segment-accountant mutex,
//! while the thread holding that mutex waits for a file-truncation task queued behind them:
//! the process hangs for good (reproduced in our benchmarks; stack traces in
//! `docs/backends.md` (sled section)). Transactions also cost 5-10 times a plain insert.
//!
//! So every mutation holds one in-process writer lock (sled allows one process per directory,
//! so that serializes every writer there is) and uses plain sled operations in an order that
//! is safe at every point of a crash, because sled recovers a prefix of its log:
//!
//! - writing: the separately stored value, then the new index entries, then the record (the
//!   commit point), then the old index entries and value are removed;
//! - removing: the record first (the commit point), then its index entries and value.
//!
//! A crash can therefore leave index entries that point at no record (or at a newer record
//! of the key) and unreferenced values, never a record missing from an index. Walks of an
//! index drop such stale entries when they meet them. The entry count, byte total and write
//! sequence live in memory under the writer lock and are stored, with a clean-shutdown
//! marker, when the store is closed; after an unclean shutdown the next open recounts them
//! with one scan of the entries (and drops unreferenced values).
//!
//! ## Batches
//!
//! A batch ([`Store::write_batch`]) changes many records, which sled cannot make atomic on
//! disk without transactions. Within the process, readers (`get`, `keys`) hold a gate shared
//! and a batch holds it exclusive while it applies, so they see it whole or not at all. On
//! disk, a marker naming what the batch replaces (its prefixes and its other keys) is written
//! to `meta` and flushed before the batch is applied, and removed after it. An open that finds
//! the marker (a crash mid-batch) removes every entry under those prefixes and every key of
//! the batch, so the library reads as absent (a miss), never as a mix of old and new.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard};
use std::time::Instant;

use plexcache_core::{
    Access, Batch, BatchOutcome, BatchPut, Bytes, Counters, Entry, EntryMeta, Error,
    EvictionPolicy, Millis, PutOutcome, Removed, Result, Usage, WriteLimit,
};
use sled::{IVec, Tree};

use crate::guard::{LockFile, catch, contain, in_use, panic_error};
use crate::info::{OpenInfo, Recount};
use crate::record::{
    BatchMarker, EXPIRY_PREFIX_LEN, HEADER_LEN, Header, Order, UsageRec, decode_stats,
    encode_stats, expiry_key, meta_key, u64_from,
};

/// The layout version this build writes and reads.
pub const SCHEMA_VERSION: u64 = 1;

/// Entries handled per writer-lock hold by bulk operations (purge, prefix removal, clear),
/// so that other writers get a turn; also the most entries one index walk collects.
const BATCH: usize = 1024;
/// Attempts of a read that raced a write of a separately stored value.
const READ_ATTEMPTS: usize = 8;

/// The key of a separately stored value: the cache key and the write sequence number of the
/// record that owns it.
fn value_key(key: &[u8], seq: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(key.len() + 8);
    k.extend_from_slice(key);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// Logical size of an entry (key + value bytes), saturating.
fn entry_size(key: &[u8], value_len: usize) -> u64 {
    (key.len() as u64).saturating_add(value_len as u64)
}

/// The smallest key greater than `k`: where a walk that stopped at `k` goes on.
fn after(k: &[u8]) -> Vec<u8> {
    let mut next = Vec::with_capacity(k.len() + 1);
    next.extend_from_slice(k);
    next.push(0);
    next
}

/// Moves the change token when dropped: created in every mutating section while it holds the
/// writer lock, so the token moves after the section's changes (readers read the token before
/// the store), also when the section fails halfway.
struct Changed<'a>(&'a AtomicU64);

impl Drop for Changed<'_> {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::Release);
    }
}

/// Builds an `IVec` from parts. (sled copies a `Vec` once more into its own `Arc`; it offers
/// no way around that.)
fn ivec(parts: &[&[u8]]) -> IVec {
    IVec::from(parts.concat())
}

/// A key for a message: lossy UTF-8, shortened, quoted and escaped.
pub(crate) fn show_key(key: &[u8]) -> String {
    format!(
        "{:?}",
        plexcache_core::short_key(&String::from_utf8_lossy(key))
    )
}

/// Which index a bulk removal walks.
#[derive(Debug, Clone, Copy)]
enum Walk {
    /// Entries found by key (prefix removal): no index entry to check.
    Keys,
    Expiry,
    Order(Order),
}

/// The writer lock and what it guards.
#[derive(Debug, Default)]
pub(crate) struct WriterState {
    /// Entry count, byte total and last write sequence number.
    counts: UsageRec,
    /// Whether the `used` and `freq` indexes are maintained (meta `tracking`). Off until the
    /// first read is recorded or the first LRU/LFU eviction: a cache that evicts least
    /// recently stored (the default) never pays for them.
    tracking: bool,
}

/// What [`Store::open`] needs of the builder's settings.
#[derive(Debug, Clone)]
pub(crate) struct StoreConfig {
    pub(crate) dir: PathBuf,
    pub(crate) cache_capacity: u64,
    pub(crate) flush_every: Option<std::time::Duration>,
    pub(crate) separate_values_over: usize,
    pub(crate) lock_wait: std::time::Duration,
}

/// The sled database of one cache directory.
pub(crate) struct Store {
    pub(crate) path: PathBuf,
    pub(crate) info: OpenInfo,
    db: sled::Db,
    entries: Tree,
    values: Tree,
    expiry: Tree,
    stored: Tree,
    used: Tree,
    freq: Tree,
    meta: Tree,
    separate_over: usize,
    /// Whether sled's files (`conf`, a non-empty `db`, a snapshot) existed before this open: a
    /// database was there, so finding no layout in it means its data is gone.
    had_database: bool,
    /// Held by every mutation.
    writer: Mutex<WriterState>,
    /// Held shared by reads (`get`, `keys`) and exclusive by a batch while it applies, so that
    /// readers see a batch whole or not at all. Taken after the writer lock, never before.
    gate: RwLock<()>,
    /// The change token ([`CacheBackend::change_token`](plexcache_core::CacheBackend)):
    /// moved by every mutating section ([`Changed`]).
    token: AtomicU64,
    /// False until the open completes, and after sled panicked: then no clean-shutdown
    /// marker is written and every call fails.
    healthy: AtomicBool,
    /// Declared last: released after sled has closed its files.
    _lock: Option<LockFile>,
}

/// Beside sled's files: the counters as they were stored by the last clean close, written
/// after sled's final flush. sled recovers the longest undamaged prefix of its log without
/// saying so, so damage inside the log can bring back an older state; the next open compares
/// what sled recovered with this record and refuses (as damaged) a store that lost what a
/// clean close had made durable. Removed by every successful open.
const CLOSED_FILE: &str = "plexcache.closed";

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Store {
    // ----- opening -----

    pub(crate) fn open(
        cfg: &StoreConfig,
        lock: LockFile,
    ) -> std::result::Result<Store, (Error, Option<LockFile>)> {
        let mut store = match contain(&cfg.dir, "opening the database", || open_trees(cfg)) {
            Ok(s) => s,
            Err(e) => return Err((e, Some(lock))),
        };
        store._lock = Some(lock);
        match contain(&cfg.dir, "reading the database", || store.init()) {
            Ok(()) => {
                store.healthy.store(true, Ordering::Release);
                Ok(store)
            }
            Err(e) => {
                // Give the lock back to the caller (it may move the directory aside).
                let lock = store._lock.take();
                drop(store);
                Err((e, lock))
            }
        }
    }

    /// Checks the layout version, loads the counters (recounting after an unclean shutdown),
    /// and marks the store as open (not clean).
    fn init(&mut self) -> Result<()> {
        let version = self
            .meta
            .get(meta_key::VERSION)
            .map_err(|e| self.sled_err("reading the layout version", e))?;
        match version {
            None => {
                if !self.is_blank()? {
                    return Err(self.corrupt(
                        "holds a sled database that plexcache did not write (no layout version)",
                    ));
                }
                if self.had_database {
                    return Err(self.corrupt(
                        "held a sled database whose data is gone (truncated or damaged: sled \
                         found no plexcache layout in it)",
                    ));
                }
                self.meta
                    .insert(meta_key::VERSION, &SCHEMA_VERSION.to_be_bytes()[..])
                    .map_err(|e| self.sled_err("writing the layout version", e))?;
                self.info.created = true;
            }
            Some(v) => match u64_from(&v) {
                Some(found) if found > SCHEMA_VERSION => {
                    return Err(Error::IncompatibleVersion {
                        path: self.path.clone(),
                        found,
                        supported: SCHEMA_VERSION,
                    });
                }
                Some(found) if found >= 1 => {}
                _ => return Err(self.corrupt("has a malformed layout version")),
            },
        }
        let flag = |key: &[u8], what: &str| -> Result<bool> {
            Ok(self
                .meta
                .get(key)
                .map_err(|e| self.sled_err(what, e))?
                .is_some_and(|v| v.as_ref() == [1]))
        };
        let clean = flag(meta_key::CLEAN, "reading the clean-shutdown marker")?;
        let tracking = flag(meta_key::TRACKING, "reading the tracking flag")?;
        let stored = self
            .meta
            .get(meta_key::USAGE)
            .map_err(|e| self.sled_err("reading counters", e))?;
        let counts = UsageRec::decode(stored.as_deref()).map_err(|d| self.corrupt(d))?;
        let closed_path = self.path.join(CLOSED_FILE);
        let closed = match std::fs::read(&closed_path) {
            Ok(bytes) => Some(bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(Error::io(&closed_path, "reading the clean-close record", e)),
        };
        if let Some(closed) = &closed {
            let recovered = counts.encode();
            if !clean || closed.as_slice() != recovered.as_slice() {
                let was = UsageRec::decode(Some(closed)).ok();
                return Err(self.corrupt(format!(
                    "sled recovered an older state than the one its last clean close made \
                     durable (closed with {}; found {} entries of {} bytes{}): its log is damaged",
                    was.map_or_else(
                        || "an unreadable record".to_owned(),
                        |w| format!("{} entries of {} bytes", w.entries, w.bytes)
                    ),
                    counts.entries,
                    counts.bytes,
                    if clean { "" } else { ", not marked clean" },
                )));
            }
        }
        {
            let state = self
                .writer
                .get_mut()
                .unwrap_or_else(PoisonError::into_inner);
            state.counts = counts;
            state.tracking = tracking;
        }
        if !self.info.created && !clean {
            let r = self.recount()?;
            if r.corrected {
                tracing::warn!(
                    path = %self.path.display(), entries = r.entries, bytes = r.bytes, took = ?r.took,
                    "sled cache was not shut down cleanly; recounted its entries and corrected the stored counters"
                );
            } else {
                tracing::info!(
                    path = %self.path.display(), entries = r.entries, bytes = r.bytes, took = ?r.took,
                    "sled cache was not shut down cleanly; recounted its entries (the stored counters were right)"
                );
            }
            self.info.recount = Some(r);
        }
        self.finish_interrupted_batch()?;
        self.meta
            .insert(meta_key::CLEAN, &[0u8][..])
            .map_err(|e| self.sled_err("clearing the clean-shutdown marker", e))?;
        self.flush_sync()?;
        if closed.is_some() {
            std::fs::remove_file(&closed_path)
                .map_err(|e| Error::io(&closed_path, "removing the clean-close record", e))?;
        }
        Ok(())
    }

    /// After a crash mid-batch (the batch-in-progress marker is there): removes every entry
    /// under the batch's prefixes and every key it wrote, so that what it was replacing reads
    /// as absent rather than as a mix of old and new entries.
    fn finish_interrupted_batch(&mut self) -> Result<()> {
        let Some(raw) = self
            .meta
            .get(meta_key::BATCH)
            .map_err(|e| self.sled_err("reading the batch-in-progress marker", e))?
        else {
            return Ok(());
        };
        let marker = BatchMarker::decode(&raw).map_err(|d| self.corrupt(d))?;
        let removed = {
            let mut state = self.write_lock();
            let removed = self.discard(&mut state, &marker)?;
            self.meta
                .remove(meta_key::BATCH)
                .map_err(|e| self.sled_err("removing the batch-in-progress marker", e))?;
            removed
        };
        tracing::warn!(
            path = %self.path.display(), prefixes = marker.prefixes.len(),
            keys = marker.keys.len(), removed = removed.entries,
            "a batch write was interrupted; removed what it was replacing, which now reads as absent"
        );
        self.info.interrupted_batch = Some(removed);
        Ok(())
    }

    /// Removes every entry under the marker's prefixes and every one of its keys.
    fn discard(&self, state: &mut WriterState, marker: &BatchMarker) -> Result<Removed> {
        let mut removed = Removed::default();
        for p in &marker.prefixes {
            removed.add(self.remove_prefix_locked(state, p)?);
        }
        for k in &marker.keys {
            if let Some((_, h)) = self.record(k)? {
                removed.add_one(self.delete(state, k, &h)?);
            }
        }
        Ok(removed)
    }

    /// Whether the database holds nothing at all (a new one).
    fn is_blank(&self) -> Result<bool> {
        let ours = [
            "entries", "values", "expiry", "stored", "used", "freq", "meta",
        ];
        let default = self.db.name();
        for name in self.db.tree_names() {
            if name == default {
                if !self.db.is_empty() {
                    return Ok(false);
                }
            } else if !ours.iter().any(|o| name.as_ref() == o.as_bytes()) {
                return Ok(false);
            }
        }
        Ok(self.entries.is_empty() && self.meta.is_empty())
    }

    /// Recomputes the entry count, byte total and write sequence with a scan of the entries,
    /// and drops separately stored values that no record owns (left by a crash).
    pub(crate) fn recount(&self) -> Result<Recount> {
        let started = Instant::now();
        let mut state = self.write_lock();
        let (mut entries, mut bytes, mut max_seq) = (0u64, 0u64, 0u64);
        for item in self.entries.iter() {
            let (k, v) = item.map_err(|e| self.sled_err("scanning entries", e))?;
            let h = Header::decode(&v)
                .map_err(|d| self.corrupt(format!("key {}: {d}", show_key(&k))))?;
            entries = entries.saturating_add(1);
            bytes = bytes.saturating_add(h.size(&k));
            max_seq = max_seq.max(h.seq);
        }
        let mut orphans = Vec::new();
        for item in self.values.iter().keys() {
            let vk = item.map_err(|e| self.sled_err("scanning values", e))?;
            if !self.owns_value(&vk)? {
                orphans.push(vk);
            }
        }
        for vk in &orphans {
            self.values
                .remove(vk)
                .map_err(|e| self.sled_err("dropping an unreferenced value", e))?;
        }
        let old = state.counts;
        state.counts = UsageRec {
            entries,
            bytes,
            seq: old.seq.max(max_seq),
        };
        Ok(Recount {
            took: started.elapsed(),
            entries,
            bytes,
            corrected: (old.entries, old.bytes) != (entries, bytes),
        })
    }

    /// Whether the record of the key in a `values` key points at it.
    fn owns_value(&self, vk: &[u8]) -> Result<bool> {
        let Some(split) = vk.len().checked_sub(8) else {
            return Ok(false);
        };
        let (key, seq) = vk.split_at(split);
        Ok(self
            .record(key)?
            .is_some_and(|(_, h)| h.separate && Some(h.seq) == u64_from(seq)))
    }

    // ----- errors and plumbing -----

    pub(crate) fn corrupt(&self, detail: impl Into<String>) -> Error {
        Error::Corrupt {
            path: self.path.clone(),
            detail: detail.into(),
            source: None,
        }
    }

    pub(crate) fn sled_err(&self, what: &str, e: sled::Error) -> Error {
        match e {
            sled::Error::Corruption { .. } | sled::Error::ReportableBug(_) => Error::Corrupt {
                path: self.path.clone(),
                detail: format!("sled found damaged data while {what}"),
                source: Some(Box::new(e)),
            },
            other => Error::backend("sled", format!("{what} in {}", self.path.display()), other),
        }
    }

    fn write_lock(&self) -> MutexGuard<'_, WriterState> {
        // A panic while it was held marks the store unhealthy (see `guarded`), so the state
        // behind a poisoned lock is never used again.
        self.writer.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The readers' side of the batch gate. (Poisoned only by a panic in a batch, which marks
    /// the store unhealthy; the gate guards no data.)
    fn read_gate(&self) -> RwLockReadGuard<'_, ()> {
        self.gate.read().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn change_token(&self) -> u64 {
        self.token.load(Ordering::Acquire)
    }

    fn order_tree(&self, o: Order) -> &Tree {
        match o {
            Order::Stored => &self.stored,
            Order::Used => &self.used,
            Order::Frequency => &self.freq,
        }
    }

    fn walked(&self, walk: Walk) -> Option<&Tree> {
        match walk {
            Walk::Keys => None,
            Walk::Expiry => Some(&self.expiry),
            Walk::Order(o) => Some(self.order_tree(o)),
        }
    }

    /// Runs `f`, containing a sled panic (after which the store refuses every call).
    pub(crate) fn guarded<T>(&self, what: &str, f: impl FnOnce(&Store) -> Result<T>) -> Result<T> {
        if !self.healthy.load(Ordering::Acquire) {
            return Err(self.corrupt(
                "an earlier sled call panicked; reopen the cache (recover_corrupt(true) moves a \
                 damaged directory aside)",
            ));
        }
        match catch(|| f(self)) {
            Ok(r) => r,
            Err(msg) => {
                self.healthy.store(false, Ordering::Release);
                Err(panic_error(&self.path, what, &msg))
            }
        }
    }

    /// The record of `key` (raw bytes and parsed header).
    fn record(&self, key: &[u8]) -> Result<Option<(IVec, Header)>> {
        match self
            .entries
            .get(key)
            .map_err(|e| self.sled_err("reading an entry", e))?
        {
            None => Ok(None),
            Some(raw) => match Header::decode(&raw) {
                Ok(h) => Ok(Some((raw, h))),
                Err(d) => Err(self.corrupt(format!("key {}: {d}", show_key(key)))),
            },
        }
    }

    /// The orders whose indexes are maintained.
    fn orders(tracking: bool) -> impl Iterator<Item = Order> {
        Order::ALL
            .into_iter()
            .filter(move |o| tracking || !o.tracks_access())
    }

    /// The index entries of a record: (tree, index key).
    fn index_keys(&self, key: &[u8], h: &Header, tracking: bool) -> Vec<(&Tree, Vec<u8>)> {
        let mut out = Vec::with_capacity(4);
        if let Some(xk) = expiry_key(h, key) {
            out.push((&self.expiry, xk));
        }
        for o in Self::orders(tracking) {
            out.push((self.order_tree(o), o.key(h, key)));
        }
        out
    }

    fn insert_index(&self, tree: &Tree, ik: &[u8]) -> Result<()> {
        tree.insert(ik, IVec::default())
            .map(|_| ())
            .map_err(|e| self.sled_err("writing an index entry", e))
    }

    fn remove_index(&self, tree: &Tree, ik: &[u8]) -> Result<()> {
        tree.remove(ik)
            .map(|_| ())
            .map_err(|e| self.sled_err("removing an index entry", e))
    }

    /// Removes the record of `key` (the commit point), then its index entries and value, and
    /// counts it out.
    fn delete(&self, state: &mut WriterState, key: &[u8], h: &Header) -> Result<u64> {
        self.entries
            .remove(key)
            .map_err(|e| self.sled_err("removing an entry", e))?;
        let size = h.size(key);
        state.counts.entries = state.counts.entries.saturating_sub(1);
        state.counts.bytes = state.counts.bytes.saturating_sub(size);
        for (tree, ik) in self.index_keys(key, h, state.tracking) {
            self.remove_index(tree, &ik)?;
        }
        if h.separate {
            self.values
                .remove(value_key(key, h.seq))
                .map_err(|e| self.sled_err("removing a value", e))?;
        }
        Ok(size)
    }

    /// Writes `value` under `key`, replacing `old`; returns the new usage.
    #[allow(clippy::too_many_arguments)]
    fn write(
        &self,
        state: &mut WriterState,
        key: &[u8],
        value: &[u8],
        stored_at: Millis,
        expires_at: Option<Millis>,
        old: Option<&Header>,
    ) -> Result<Usage> {
        let Some(seq) = state.counts.seq.checked_add(1) else {
            return Err(self.corrupt("the write sequence number is exhausted (damaged counters)"));
        };
        state.counts.seq = seq;
        let separate = value.len() > self.separate_over;
        let h = Header {
            stored_at,
            expires_at,
            accessed_at: stored_at,
            access_count: 0,
            seq,
            value_len: value.len() as u64,
            separate,
        };
        if separate {
            self.values
                .insert(value_key(key, seq), value)
                .map_err(|e| self.sled_err("writing a value", e))?;
        }
        let new_index = self.index_keys(key, &h, state.tracking);
        for (tree, ik) in &new_index {
            self.insert_index(tree, ik)?;
        }
        let record = if separate {
            ivec(&[&h.encode(&[])])
        } else {
            ivec(&[&h.encode(&[]), value])
        };
        self.entries
            .insert(key, record)
            .map_err(|e| self.sled_err("writing an entry", e))?;
        // Committed: count it, then clean up what the old record had.
        let size = h.size(key);
        match old {
            Some(oh) => {
                state.counts.bytes = state
                    .counts
                    .bytes
                    .saturating_sub(oh.size(key))
                    .saturating_add(size);
            }
            None => {
                state.counts.entries = state.counts.entries.saturating_add(1);
                state.counts.bytes = state.counts.bytes.saturating_add(size);
            }
        }
        if let Some(oh) = old {
            for (tree, ik) in self.index_keys(key, oh, state.tracking) {
                // The same expiry time gives the same expiry entry: keep it.
                if !new_index
                    .iter()
                    .any(|(t, k)| std::ptr::eq(*t, tree) && *k == ik)
                {
                    self.remove_index(tree, &ik)?;
                }
            }
            if oh.separate {
                self.values
                    .remove(value_key(key, oh.seq))
                    .map_err(|e| self.sled_err("removing a value", e))?;
            }
        }
        Ok(state.counts.usage())
    }

    // ----- reads -----

    pub(crate) fn get(&self, key: &str, now: Millis) -> Result<Option<Entry>> {
        let k = key.as_bytes();
        let _gate = self.read_gate();
        for _ in 0..READ_ATTEMPTS {
            let Some((rec, h)) = self.record(k)? else {
                return Ok(None);
            };
            if h.is_expired(now) {
                return Ok(None);
            }
            let meta = h.meta(k);
            if !h.separate {
                return Ok(Some(Entry {
                    value: Bytes::from_owner(rec).slice(HEADER_LEN..),
                    meta,
                }));
            }
            let value = self
                .values
                .get(value_key(k, h.seq))
                .map_err(|e| self.sled_err("reading a value", e))?;
            match value {
                Some(v) if v.len() as u64 == h.value_len => {
                    return Ok(Some(Entry {
                        value: Bytes::from_owner(v),
                        meta,
                    }));
                }
                // A write replaced the record (and dropped this value) since we read it.
                _ => continue,
            }
        }
        Err(self.corrupt(format!(
            "key {}: its separately stored value is missing",
            show_key(k)
        )))
    }

    pub(crate) fn usage(&self) -> Usage {
        self.write_lock().counts.usage()
    }

    pub(crate) fn keys(&self, prefix: &str, now: Millis, limit: usize) -> Result<Vec<String>> {
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        let _gate = self.read_gate();
        for item in self.entries.scan_prefix(prefix.as_bytes()) {
            let (k, v) = item.map_err(|e| self.sled_err("listing keys", e))?;
            let h = Header::decode(&v)
                .map_err(|d| self.corrupt(format!("key {}: {d}", show_key(&k))))?;
            if h.is_expired(now) {
                continue;
            }
            let key = String::from_utf8(k.to_vec())
                .map_err(|_| self.corrupt(format!("key {} is not UTF-8", show_key(&k))))?;
            out.push(key);
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    pub(crate) fn load_stats(&self) -> Result<Counters> {
        let raw = self
            .meta
            .get(meta_key::STATS)
            .map_err(|e| self.sled_err("reading statistics", e))?;
        decode_stats(raw.as_deref()).map_err(|d| self.corrupt(d))
    }

    // ----- writes -----

    /// Purges, writes and evicts as `limit` says, in one writer-lock section.
    pub(crate) fn put(
        &self,
        key: &str,
        value: &[u8],
        stored_at: Millis,
        expires_at: Option<Millis>,
        limit: WriteLimit,
    ) -> Result<PutOutcome> {
        let k = key.as_bytes();
        let order = Order::for_policy(limit.policy);
        let mut state = self.write_lock();
        let _changed = Changed(&self.token);
        if order.is_some_and(Order::tracks_access) {
            self.enable_tracking(&mut state)?;
        }
        let expired = self.purge_locked(&mut state, limit.now, limit.purge)?;
        let old = self.record(k)?.map(|(_, h)| h);
        let previous_size = old.as_ref().map(|h| h.size(k));
        let after = state
            .counts
            .bytes
            .saturating_sub(previous_size.unwrap_or(0))
            .saturating_add(entry_size(k, value.len()));
        if order.is_none() && after > limit.max_bytes {
            return Ok(PutOutcome::Refused {
                usage: state.counts.usage(),
            });
        }
        self.write(&mut state, k, value, stored_at, expires_at, old.as_ref())?;
        let evicted = match order {
            Some(o) => self.evict_locked(&mut state, o, limit.max_bytes, &|c| c == k)?,
            None => Removed::default(),
        };
        Ok(PutOutcome::Stored {
            previous_size,
            usage: state.counts.usage(),
            expired,
            evicted,
        })
    }

    /// Applies a batch (see the module documentation): refused whole when its entries cannot
    /// fit; otherwise its purge, prefix removals, writes and eviction happen in one writer-lock
    /// section, with the readers' gate held exclusive, between writing its marker and removing
    /// it.
    pub(crate) fn write_batch(&self, batch: &Batch, limit: WriteLimit) -> Result<BatchOutcome> {
        let puts: Vec<&BatchPut> = batch.effective_puts();
        let own: HashSet<&[u8]> = puts.iter().map(|p| p.key.as_bytes()).collect();
        let order = Order::for_policy(limit.policy);
        let mut state = self.write_lock();
        let after = match order {
            // Every other entry may be evicted: only the batch's own entries must fit.
            Some(_) => puts.iter().fold(0u64, |n, p| {
                n.saturating_add(entry_size(p.key.as_bytes(), p.value.len()))
            }),
            None => self.bytes_after_batch(&state, batch, &puts, limit)?,
        };
        if after > limit.max_bytes {
            return Ok(BatchOutcome::Refused {
                usage: state.counts.usage(),
            });
        }
        if order.is_some_and(Order::tracks_access) {
            self.enable_tracking(&mut state)?;
        }
        // A single put without prefix removals commits with its record: no marker needed.
        let marker = (!batch.remove_prefixes.is_empty() || puts.len() > 1).then(|| BatchMarker {
            prefixes: batch
                .remove_prefixes
                .iter()
                .map(|p| p.as_bytes().to_vec())
                .collect(),
            keys: puts
                .iter()
                .map(|p| p.key.as_bytes())
                .filter(|k| {
                    !batch
                        .remove_prefixes
                        .iter()
                        .any(|p| k.starts_with(p.as_bytes()))
                })
                .map(<[u8]>::to_vec)
                .collect(),
        });
        if let Some(m) = &marker {
            self.meta
                .insert(meta_key::BATCH, m.encode())
                .map_err(|e| self.sled_err("writing the batch-in-progress marker", e))?;
            if let Err(e) = self.flush_sync() {
                // Nothing applied yet. Should the marker stay, the next open drops what the
                // batch would have replaced: a miss, never a mix.
                let _ = self.meta.remove(meta_key::BATCH);
                return Err(e);
            }
        }
        let _gate = self.gate.write().unwrap_or_else(PoisonError::into_inner);
        let _changed = Changed(&self.token);
        let applied = self
            .apply_batch(&mut state, batch, &puts, &own, order, limit)
            .and_then(|outcome| {
                if marker.is_some() {
                    self.meta
                        .remove(meta_key::BATCH)
                        .map_err(|e| self.sled_err("removing the batch-in-progress marker", e))?;
                }
                Ok(outcome)
            });
        applied.map_err(|e| self.abandon_batch(&mut state, marker.as_ref(), e))
    }

    /// The purge, prefix removals, writes and eviction of a batch that fits.
    fn apply_batch(
        &self,
        state: &mut WriterState,
        batch: &Batch,
        puts: &[&BatchPut],
        own: &HashSet<&[u8]>,
        order: Option<Order>,
        limit: WriteLimit,
    ) -> Result<BatchOutcome> {
        let expired = self.purge_locked(state, limit.now, limit.purge)?;
        let mut removed = Removed::default();
        for p in &batch.remove_prefixes {
            removed.add(self.remove_prefix_locked(state, p.as_bytes())?);
        }
        for p in puts {
            let k = p.key.as_bytes();
            let old = self.record(k)?.map(|(_, h)| h);
            self.write(
                state,
                k,
                &p.value,
                batch.stored_at,
                p.expires_at,
                old.as_ref(),
            )?;
        }
        let evicted = match order {
            Some(o) => self.evict_locked(state, o, limit.max_bytes, &|k| own.contains(k))?,
            None => Removed::default(),
        };
        Ok(BatchOutcome::Applied {
            removed,
            written: puts.len() as u64,
            expired,
            evicted,
            usage: state.counts.usage(),
        })
    }

    /// The logical bytes after `batch` without eviction, changing nothing: what its purge
    /// would remove, the entries under its prefixes and the entries its puts replace come off,
    /// its entries go on.
    fn bytes_after_batch(
        &self,
        state: &WriterState,
        batch: &Batch,
        puts: &[&BatchPut],
        limit: WriteLimit,
    ) -> Result<u64> {
        let mut gone: HashSet<Vec<u8>> = HashSet::new();
        let mut bytes = state.counts.bytes;
        let mut purged = 0usize;
        if limit.purge > 0 {
            // The entries `purge_locked` would remove: valid index entries in index order.
            for item in self.expiry.iter() {
                let (ik, _) = item.map_err(|e| self.sled_err("walking the expiry index", e))?;
                let (at, key) = self.expiry_entry(&ik)?;
                if at > limit.now {
                    break;
                }
                if let Some((_, h)) = self.record(key)?
                    && expiry_key(&h, key).is_some_and(|x| x == ik.as_ref())
                    && gone.insert(key.to_vec())
                {
                    bytes = bytes.saturating_sub(h.size(key));
                    purged += 1;
                    if purged >= limit.purge {
                        break;
                    }
                }
            }
        }
        for p in &batch.remove_prefixes {
            for item in self.entries.scan_prefix(p.as_bytes()) {
                let (k, raw) = item.map_err(|e| self.sled_err("listing keys", e))?;
                let h = Header::decode(&raw)
                    .map_err(|d| self.corrupt(format!("key {}: {d}", show_key(&k))))?;
                if gone.insert(k.to_vec()) {
                    bytes = bytes.saturating_sub(h.size(&k));
                }
            }
        }
        for p in puts {
            let k = p.key.as_bytes();
            if !gone.contains(k)
                && let Some((_, h)) = self.record(k)?
            {
                bytes = bytes.saturating_sub(h.size(k));
            }
            bytes = bytes.saturating_add(entry_size(k, p.value.len()));
        }
        Ok(bytes)
    }

    /// After a batch failed halfway: removes what it was replacing, as an open after a crash
    /// would, and its marker. If that fails too, the store refuses every later call (and
    /// writes no clean-shutdown marker), and the next open finishes the job. Returns `e`.
    fn abandon_batch(
        &self,
        state: &mut WriterState,
        marker: Option<&BatchMarker>,
        e: Error,
    ) -> Error {
        let Some(marker) = marker else { return e };
        let cleaned = self.discard(state, marker).and_then(|_| {
            self.meta
                .remove(meta_key::BATCH)
                .map(|_| ())
                .map_err(|e| self.sled_err("removing the batch-in-progress marker", e))
        });
        match cleaned {
            Ok(()) => tracing::warn!(
                path = %self.path.display(), error = %e,
                "a batch write failed halfway; removed what it was replacing, which now reads as absent"
            ),
            Err(again) => {
                tracing::error!(
                    path = %self.path.display(), error = %e, cleanup_error = %again,
                    "a batch write failed halfway and could not be undone; the cache refuses every call until it is reopened"
                );
                self.healthy.store(false, Ordering::Release);
            }
        }
        e
    }

    pub(crate) fn remove(&self, key: &str) -> Result<Option<EntryMeta>> {
        let k = key.as_bytes();
        let mut state = self.write_lock();
        let _changed = Changed(&self.token);
        let Some((_, h)) = self.record(k)? else {
            return Ok(None);
        };
        self.delete(&mut state, k, &h)?;
        Ok(Some(h.meta(k)))
    }

    /// Removes candidates `(index key, key)` found by walking `walk`, checking each against
    /// its record. With `target`, stops once the logical bytes are at most `target`. Returns
    /// what was removed and how many stale index entries were dropped.
    fn remove_found(
        &self,
        state: &mut WriterState,
        walk: Walk,
        found: &[(IVec, Vec<u8>)],
        target: Option<u64>,
    ) -> Result<(Removed, u64)> {
        let mut removed = Removed::default();
        let mut stale = 0u64;
        for (ik, key) in found {
            if target.is_some_and(|t| state.counts.bytes <= t) {
                break;
            }
            let rec = self.record(key)?;
            let matches = match (&rec, walk) {
                (None, _) => false,
                (Some(_), Walk::Keys) => true,
                (Some((_, h)), Walk::Expiry) => {
                    expiry_key(h, key).is_some_and(|x| x == ik.as_ref())
                }
                (Some((_, h)), Walk::Order(o)) => o.key(h, key) == ik.as_ref(),
            };
            match rec {
                Some((_, h)) if matches => removed.add_one(self.delete(state, key, &h)?),
                _ => {
                    // An index entry a crash left behind: drop it so the walk moves on.
                    if let Some(index) = self.walked(walk) {
                        self.remove_index(index, ik)?;
                        stale = stale.saturating_add(1);
                    }
                }
            }
        }
        Ok((removed, stale))
    }

    fn note_stale(&self, stale: u64, walk: Walk) {
        if stale > 0 {
            tracing::debug!(
                path = %self.path.display(), stale, index = ?walk,
                "dropped index entries left by an unclean shutdown"
            );
        }
    }

    /// The expiry time and key of an expiry index entry.
    fn expiry_entry<'a>(&self, ik: &'a [u8]) -> Result<(Millis, &'a [u8])> {
        match (ik.get(..8).and_then(u64_from), ik.get(EXPIRY_PREFIX_LEN..)) {
            (Some(at), Some(key)) => Ok((at, key)),
            _ => Err(self.corrupt("malformed expiry index entry")),
        }
    }

    pub(crate) fn remove_prefix(&self, prefix: &str) -> Result<Removed> {
        let p = prefix.as_bytes();
        let mut total = Removed::default();
        let mut from = Some(p.to_vec());
        while let Some(start) = from {
            let mut state = self.write_lock();
            let _changed = Changed(&self.token);
            let (removed, next) = self.remove_prefix_step(&mut state, p, &start)?;
            total.add(removed);
            from = next;
        }
        Ok(total)
    }

    /// Removes every entry under `prefix` without letting go of the writer lock.
    fn remove_prefix_locked(&self, state: &mut WriterState, prefix: &[u8]) -> Result<Removed> {
        let mut total = Removed::default();
        let mut from = Some(prefix.to_vec());
        while let Some(start) = from {
            let (removed, next) = self.remove_prefix_step(state, prefix, &start)?;
            total.add(removed);
            from = next;
        }
        Ok(total)
    }

    /// Removes up to [`BATCH`] entries under `prefix` from key `from` on; returns what it
    /// removed and where the next step starts (`None`: there is no more).
    fn remove_prefix_step(
        &self,
        state: &mut WriterState,
        prefix: &[u8],
        from: &[u8],
    ) -> Result<(Removed, Option<Vec<u8>>)> {
        let mut found = Vec::new();
        for item in self.entries.range(from..) {
            let (k, _) = item.map_err(|e| self.sled_err("listing keys", e))?;
            if !k.starts_with(prefix) {
                break;
            }
            found.push((IVec::default(), k.to_vec()));
            if found.len() >= BATCH {
                break;
            }
        }
        let next = if found.len() >= BATCH {
            found.last().map(|(_, k)| after(k))
        } else {
            None
        };
        let (removed, _) = self.remove_found(state, Walk::Keys, &found, None)?;
        Ok((removed, next))
    }

    pub(crate) fn clear(&self) -> Result<Removed> {
        let removed = self.remove_prefix("")?;
        let state = self.write_lock();
        if state.counts.entries == 0 {
            // Whatever the indexes still hold is stale (left by a crash): drop it too.
            for tree in [
                &self.expiry,
                &self.stored,
                &self.used,
                &self.freq,
                &self.values,
            ] {
                tree.clear()
                    .map_err(|e| self.sled_err("clearing an index", e))?;
            }
        }
        Ok(removed)
    }

    pub(crate) fn purge_expired(&self, now: Millis, limit: usize) -> Result<Removed> {
        let mut total = Removed::default();
        let mut left = limit;
        while left > 0 {
            let want = left.min(BATCH);
            let mut state = self.write_lock();
            let _changed = Changed(&self.token);
            let removed = self.purge_locked(&mut state, now, want)?;
            total.add(removed);
            let n = usize::try_from(removed.entries).unwrap_or(usize::MAX);
            // Fewer than asked for: that was every expired entry there is.
            if n < want {
                break;
            }
            left -= want;
        }
        Ok(total)
    }

    /// Removes up to `limit` entries expired at `now` in expiry index order (soonest expiry
    /// first, ties in write order), holding the writer lock throughout.
    fn purge_locked(&self, state: &mut WriterState, now: Millis, limit: usize) -> Result<Removed> {
        let mut total = Removed::default();
        let mut left = limit;
        let mut from = Vec::new();
        while left > 0 {
            let want = left.min(BATCH);
            let mut found = Vec::new();
            for item in self.expiry.range(from.as_slice()..) {
                let (ik, _) = item.map_err(|e| self.sled_err("walking the expiry index", e))?;
                let (at, key) = self.expiry_entry(&ik)?;
                if at > now {
                    break;
                }
                let key = key.to_vec();
                found.push((ik, key));
                if found.len() >= want {
                    break;
                }
            }
            let Some((last, _)) = found.last() else { break };
            // Every entry up to `last` is removed (or dropped as stale) below.
            from = after(last);
            let (removed, stale) = self.remove_found(state, Walk::Expiry, &found, None)?;
            self.note_stale(stale, Walk::Expiry);
            left = left.saturating_sub(usize::try_from(removed.entries).unwrap_or(usize::MAX));
            total.add(removed);
            if found.len() < want {
                break;
            }
        }
        Ok(total)
    }

    pub(crate) fn evict(
        &self,
        policy: EvictionPolicy,
        target: u64,
        protect: Option<&str>,
    ) -> Result<Removed> {
        let Some(order) = Order::for_policy(policy) else {
            return Ok(Removed::default());
        };
        let protect = protect.map(str::as_bytes);
        let mut state = self.write_lock();
        let _changed = Changed(&self.token);
        if order.tracks_access() {
            self.enable_tracking(&mut state)?;
        }
        self.evict_locked(&mut state, order, target, &|k| Some(k) == protect)
    }

    /// Evicts in `order` until the logical bytes are at most `target`, never a key `protect`
    /// accepts. The walk goes on from where the previous round stopped, so protected entries
    /// at the front of the order are passed once.
    fn evict_locked(
        &self,
        state: &mut WriterState,
        order: Order,
        target: u64,
        protect: &dyn Fn(&[u8]) -> bool,
    ) -> Result<Removed> {
        let tree = self.order_tree(order);
        let mut total = Removed::default();
        let mut from = Vec::new();
        let mut batch = 8usize;
        while state.counts.bytes > target {
            let mut found = Vec::new();
            let mut seen = None;
            for item in tree.range(from.as_slice()..) {
                let (ik, _) = item.map_err(|e| self.sled_err("walking an eviction index", e))?;
                let Some(key) = ik.get(order.prefix_len()..) else {
                    return Err(self.corrupt("malformed eviction index entry"));
                };
                if !protect(key) {
                    let key = key.to_vec();
                    found.push((ik.clone(), key));
                }
                seen = Some(ik);
                if found.len() >= batch {
                    break;
                }
            }
            if found.is_empty() {
                break;
            }
            if let Some(seen) = seen {
                from = after(&seen);
            }
            let (removed, stale) =
                self.remove_found(state, Walk::Order(order), &found, Some(target))?;
            self.note_stale(stale, Walk::Order(order));
            total.add(removed);
            batch = (batch * 4).min(BATCH);
        }
        Ok(total)
    }

    /// Switches on the access-ordered indexes, building them from the entries (once per
    /// store: O(n log n), logged). The writer lock is held throughout.
    fn enable_tracking(&self, state: &mut WriterState) -> Result<()> {
        if state.tracking {
            return Ok(());
        }
        let started = Instant::now();
        // Leftovers of a build that a crash interrupted.
        for tree in [&self.used, &self.freq] {
            tree.clear()
                .map_err(|e| self.sled_err("clearing an access index", e))?;
        }
        let mut built = 0u64;
        for item in self.entries.iter() {
            let (k, raw) = item.map_err(|e| self.sled_err("listing keys", e))?;
            let h = Header::decode(&raw)
                .map_err(|d| self.corrupt(format!("key {}: {d}", show_key(&k))))?;
            for o in [Order::Used, Order::Frequency] {
                self.insert_index(self.order_tree(o), &o.key(&h, &k))?;
            }
            built += 1;
        }
        self.meta
            .insert(meta_key::TRACKING, &[1u8][..])
            .map_err(|e| self.sled_err("writing the tracking flag", e))?;
        state.tracking = true;
        tracing::info!(
            path = %self.path.display(), entries = built, took = ?started.elapsed(),
            "built the least-recently/frequently-used indexes (first recorded read or LRU/LFU eviction)"
        );
        Ok(())
    }

    pub(crate) fn record_accesses(&self, accesses: &[Access]) -> Result<()> {
        for chunk in accesses.chunks(BATCH) {
            let mut state = self.write_lock();
            self.enable_tracking(&mut state)?;
            for a in chunk {
                let k = a.key.as_bytes();
                let Some((raw, h)) = self.record(k)? else {
                    continue;
                };
                let new = Header {
                    accessed_at: h.accessed_at.max(a.at),
                    access_count: h.access_count.saturating_add(a.count),
                    ..h
                };
                if new == h {
                    continue;
                }
                let orders = || Order::ALL.into_iter().filter(|o| o.tracks_access());
                for o in orders() {
                    self.insert_index(self.order_tree(o), &o.key(&new, k))?;
                }
                let inline = raw.get(HEADER_LEN..).unwrap_or_default();
                self.entries
                    .insert(k, ivec(&[&new.encode(&[]), inline]))
                    .map_err(|e| self.sled_err("recording reads", e))?;
                for o in orders() {
                    let old_key = o.key(&h, k);
                    // A read older than the last one moves the entry in `freq` only: its
                    // `used` key is the same, and now the new record's.
                    if old_key != o.key(&new, k) {
                        self.remove_index(self.order_tree(o), &old_key)?;
                    }
                }
            }
        }
        Ok(())
    }

    pub(crate) fn add_stats(&self, delta: &Counters) -> Result<()> {
        let _state = self.write_lock();
        let old = self.load_stats()?;
        self.meta
            .insert(meta_key::STATS, encode_stats(&old.saturating_add(delta)))
            .map(|_| ())
            .map_err(|e| self.sled_err("writing statistics", e))
    }

    // ----- durability and disk -----

    pub(crate) fn db(&self) -> &sled::Db {
        &self.db
    }

    pub(crate) fn flush_sync(&self) -> Result<()> {
        self.db
            .flush()
            .map(|_| ())
            .map_err(|e| self.sled_err("flushing", e))
    }

    pub(crate) fn disk_usage(&self) -> Result<u64> {
        plexcache_core::fs::disk_bytes(&self.path)
    }

    // ----- verification -----

    /// Checks every entry against every index, the values and the counters; O(n log n).
    pub(crate) fn verify(&self) -> Result<crate::Verification> {
        let state = self.write_lock();
        let tracking = state.tracking;
        let mut v = crate::Verification::default();
        let mut problems = Vec::new();
        let mut note = |p: String| {
            if problems.len() < 100 {
                problems.push(p);
            }
        };
        let sled_err = |e| self.sled_err("verifying", e);
        let mut expiring = 0u64;
        for item in self.entries.iter() {
            let (k, raw) = item.map_err(sled_err)?;
            let h = match Header::decode(&raw) {
                Ok(h) => h,
                Err(d) => {
                    note(format!("key {}: {d}", show_key(&k)));
                    continue;
                }
            };
            v.entries = v.entries.saturating_add(1);
            v.bytes = v.bytes.saturating_add(h.size(&k));
            v.max_seq = v.max_seq.max(h.seq);
            expiring = expiring.saturating_add(u64::from(h.expires_at.is_some()));
            for (tree, ik) in self.index_keys(&k, &h, tracking) {
                if !tree.contains_key(ik).map_err(sled_err)? {
                    note(format!("key {}: missing from an index", show_key(&k)));
                }
            }
            if h.separate {
                let val = self.values.get(value_key(&k, h.seq)).map_err(sled_err)?;
                if val.is_none_or(|val| val.len() as u64 != h.value_len) {
                    note(format!(
                        "key {}: its separate value is missing",
                        show_key(&k)
                    ));
                }
            }
        }
        // Index entries beyond one per record (or per expiring record) are stale: harmless,
        // dropped when a walk meets them.
        let count = |t: &Tree| -> Result<u64> {
            let mut n = 0u64;
            for item in t.iter().keys() {
                item.map_err(sled_err)?;
                n = n.saturating_add(1);
            }
            Ok(n)
        };
        let per_entry = |on: bool| if on { v.entries } else { 0 };
        for (tree, want) in [
            (&self.expiry, expiring),
            (&self.stored, v.entries),
            (&self.used, per_entry(tracking)),
            (&self.freq, per_entry(tracking)),
        ] {
            v.stale_index_entries = v
                .stale_index_entries
                .saturating_add(count(tree)?.saturating_sub(want));
        }
        for item in self.values.iter().keys() {
            let vk = item.map_err(sled_err)?;
            if !self.owns_value(&vk)? {
                v.stale_index_entries = v.stale_index_entries.saturating_add(1);
            }
        }
        let counts = state.counts;
        if (counts.entries, counts.bytes) != (v.entries, v.bytes) {
            note(format!(
                "counters say {} entries / {} bytes, the entries tree holds {} / {}",
                counts.entries, counts.bytes, v.entries, v.bytes
            ));
        }
        if counts.seq < v.max_seq {
            note(format!(
                "write sequence {} is behind an entry's {}",
                counts.seq, v.max_seq
            ));
        }
        v.problems = problems;
        Ok(v)
    }

    /// Stores the counters and marks a clean shutdown: everything flushed, then the counters
    /// and the marker, flushed again.
    fn close(&self) -> Result<()> {
        let state = self.write_lock();
        self.flush_sync()?;
        self.meta
            .insert(meta_key::USAGE, &state.counts.encode()[..])
            .map_err(|e| self.sled_err("storing the counters", e))?;
        self.meta
            .insert(meta_key::CLEAN, &[1u8][..])
            .map_err(|e| self.sled_err("writing the clean-shutdown marker", e))?;
        self.flush_sync()?;
        self.write_closed_record(&state.counts.encode())
    }

    /// Writes [`CLOSED_FILE`] (a temporary file renamed over it, then the directory synced).
    fn write_closed_record(&self, counts: &[u8]) -> Result<()> {
        use std::io::Write;
        let path = self.path.join(CLOSED_FILE);
        let tmp = self.path.join(format!("{CLOSED_FILE}.tmp"));
        let io = |e, what| Error::io(&path, what, e);
        let mut f =
            std::fs::File::create(&tmp).map_err(|e| io(e, "writing the clean-close record"))?;
        f.write_all(counts)
            .and_then(|()| f.sync_all())
            .map_err(|e| io(e, "writing the clean-close record"))?;
        std::fs::rename(&tmp, &path).map_err(|e| io(e, "writing the clean-close record"))?;
        if let Ok(d) = std::fs::File::open(&self.path) {
            let _ = d.sync_all();
        }
        Ok(())
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        if !self.healthy.load(Ordering::Acquire) {
            return;
        }
        let path = self.path.clone();
        if let Err(e) = contain(&path, "closing", || self.close()) {
            tracing::warn!(path = %path.display(), error = %e, "closing the sled cache failed; the next open will recount");
        }
    }
}

/// Whether `dir` holds any of sled's files: its `conf`, a non-empty `db` file, or a snapshot.
/// sled starts a new database when `conf` is missing, silently dropping whatever its `db`
/// file held; a `db` file (or a snapshot) without `conf` is a damaged database, not a new one.
fn had_sled_files(dir: &Path) -> bool {
    if dir.join("conf").exists() {
        return true;
    }
    if std::fs::metadata(dir.join("db")).is_ok_and(|m| m.len() > 0) {
        return true;
    }
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with("snap."))
    })
}

fn open_trees(cfg: &StoreConfig) -> Result<Store> {
    let dir = &cfg.dir;
    let had_database = had_sled_files(dir);
    let deadline = Instant::now() + cfg.lock_wait;
    let mut pause = std::time::Duration::from_millis(2);
    let db = loop {
        let config = sled::Config::new()
            .path(dir)
            .cache_capacity(cfg.cache_capacity)
            .mode(sled::Mode::LowSpace)
            .flush_every_ms(
                cfg.flush_every
                    .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)),
            );
        match config.open() {
            Ok(db) => break db,
            // We hold plexcache's lock, so sled's is held by a database dropped a moment ago in
            // this process (its threads are finishing) or by a program that is not plexcache.
            Err(e) if is_sled_lock_error(&e) => {
                if Instant::now() >= deadline {
                    return Err(in_use(dir));
                }
                std::thread::sleep(pause);
                pause = (pause * 2).min(std::time::Duration::from_millis(100));
            }
            Err(e) => return Err(open_error(dir, e)),
        }
    };
    let tree = |name: &str| db.open_tree(name).map_err(|e| open_error(dir, e));
    Ok(Store {
        path: dir.clone(),
        info: OpenInfo::default(),
        entries: tree("entries")?,
        values: tree("values")?,
        expiry: tree("expiry")?,
        stored: tree("stored")?,
        used: tree("used")?,
        freq: tree("freq")?,
        meta: tree("meta")?,
        db,
        separate_over: cfg.separate_values_over,
        had_database,
        writer: Mutex::new(WriterState::default()),
        gate: RwLock::new(()),
        token: AtomicU64::new(0),
        healthy: AtomicBool::new(false),
        _lock: None,
    })
}
fn is_sled_lock_error(e: &sled::Error) -> bool {
    matches!(e, sled::Error::Io(io) if io.to_string().contains("could not acquire lock"))
}

/// Maps an error from opening sled: damage is [`Error::Corrupt`], anything else about the
/// file system is [`Error::Io`].
fn open_error(dir: &Path, e: sled::Error) -> Error {
    use std::io::ErrorKind;
    let corrupt = |detail: String, e: sled::Error| Error::Corrupt {
        path: dir.to_path_buf(),
        detail,
        source: Some(Box::new(e)),
    };
    match e {
        sled::Error::Io(io)
            if matches!(io.kind(), ErrorKind::UnexpectedEof | ErrorKind::InvalidData) =>
        {
            corrupt(
                format!("the sled database is truncated or damaged ({io})"),
                sled::Error::Io(io),
            )
        }
        sled::Error::Io(io) => Error::io(dir, "opening the sled database", io),
        sled::Error::Corruption { .. } => {
            corrupt("sled found damaged data in the database".into(), e)
        }
        sled::Error::Unsupported(ref msg) => {
            corrupt(format!("sled cannot open this directory: {msg}"), e.clone())
        }
        sled::Error::ReportableBug(ref msg) => corrupt(
            format!("sled failed to read the database: {msg}"),
            e.clone(),
        ),
        other => corrupt("sled could not open the database".into(), other),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::expect_used, clippy::unwrap_used)]

    use super::*;
    use crate::SledBackend;
    use plexcache_core::CacheBackend;

    fn put(key: &str, n: usize) -> BatchPut {
        BatchPut {
            key: key.into(),
            value: Bytes::from(vec![7u8; n]),
            expires_at: None,
        }
    }

    /// A crash after the marker was flushed and part of the batch applied (simulated: the
    /// marker written, some old entries removed and some new ones written, then no clean
    /// close): the next open removes the library and the batch's other keys, and nothing else.
    #[tokio::test]
    async fn an_interrupted_batch_reads_as_absent_after_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cache");
        let b = SledBackend::open(&path).unwrap();
        let mut old = Batch::new(1_000);
        old.remove_prefixes = vec!["lib:A:".into()];
        old.puts = (0..50)
            .map(|i| put(&format!("lib:A:{i:02}:old"), 30))
            .collect();
        b.write_batch(&old, WriteLimit::UNBOUNDED).await.unwrap();
        for key in ["lib:B:1", "other", "loose"] {
            b.put(
                key,
                Bytes::from_static(b"keep"),
                1_000,
                None,
                WriteLimit::UNBOUNDED,
            )
            .await
            .unwrap();
        }

        // The new generation, half applied.
        let s = &b.store;
        let marker = BatchMarker {
            prefixes: vec![b"lib:A:".to_vec()],
            keys: vec![b"loose".to_vec()],
        };
        s.meta.insert(meta_key::BATCH, marker.encode()).unwrap();
        s.flush_sync().unwrap();
        s.remove_prefix("lib:A:1").unwrap();
        for i in 0..20 {
            s.put(
                &format!("lib:A:{i:02}:new"),
                &[1u8; 40],
                2_000,
                None,
                WriteLimit::UNBOUNDED,
            )
            .unwrap();
        }
        s.put("loose", b"new", 2_000, None, WriteLimit::UNBOUNDED)
            .unwrap();
        // The process dies: no clean close.
        s.healthy.store(false, Ordering::Release);
        drop(b);

        let b = SledBackend::open(&path).unwrap();
        assert!(b.open_info().recount.is_some());
        let removed = b.open_info().interrupted_batch.expect("interrupted batch");
        assert_eq!(removed.entries, 40 + 20 + 1, "{removed:?}");
        assert!(b.keys("lib:A:", 0, usize::MAX).await.unwrap().is_empty());
        assert_eq!(b.get("loose", 0).await.unwrap(), None);
        assert_eq!(b.keys("", 0, 10).await.unwrap(), ["lib:B:1", "other"]);
        let v = b.verify().unwrap();
        assert!(v.is_ok(), "{:?}", v.problems);
        assert_eq!(
            b.usage().await.unwrap(),
            Usage {
                entries: 2,
                bytes: 7 + 4 + 5 + 4
            }
        );
        drop(b);
        let b = SledBackend::open(&path).unwrap();
        assert_eq!(b.open_info().interrupted_batch, None, "the marker is gone");
        assert_eq!(b.open_info().recount, None);
    }

    /// A batch that completes leaves no marker; the reader gate and the token work across
    /// batches.
    #[tokio::test]
    async fn a_completed_batch_leaves_no_marker() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cache");
        let b = SledBackend::open(&path).unwrap();
        let t0 = b.change_token();
        let mut batch = Batch::new(1_000);
        batch.remove_prefixes = vec!["lib:".into()];
        batch.puts = vec![put("lib:1", 10), put("lib:2", 10), put("x", 10)];
        b.write_batch(&batch, WriteLimit::UNBOUNDED).await.unwrap();
        assert_ne!(b.change_token(), t0);
        assert_eq!(b.store.meta.get(meta_key::BATCH).unwrap(), None);
        // Refused: no marker, no change.
        let t1 = b.change_token();
        let out = b
            .write_batch(&batch, WriteLimit::refuse_above(10))
            .await
            .unwrap();
        assert!(matches!(out, BatchOutcome::Refused { .. }));
        assert_eq!(b.change_token(), t1);
        assert_eq!(b.store.meta.get(meta_key::BATCH).unwrap(), None);
        drop(b);
        let b = SledBackend::open(&path).unwrap();
        assert_eq!(b.open_info().interrupted_batch, None);
        assert_eq!(b.keys("", 0, 10).await.unwrap(), ["lib:1", "lib:2", "x"]);
    }

    /// A damaged record's `value_len` does not overflow the recount.
    #[tokio::test]
    async fn recount_saturates_on_a_damaged_length() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cache");
        let b = SledBackend::builder(&path)
            .separate_values_over(0)
            .open()
            .unwrap();
        for key in ["a", "b"] {
            b.put(
                key,
                Bytes::from_static(b"v"),
                1,
                None,
                WriteLimit::UNBOUNDED,
            )
            .await
            .unwrap();
        }
        for key in [b"a", b"b"] {
            let (_, h) = b.store.record(key).unwrap().unwrap();
            let damaged = Header {
                value_len: u64::MAX - 1,
                ..h
            };
            b.store.entries.insert(key, damaged.encode(&[])).unwrap();
        }
        let r = b.recount().unwrap();
        assert_eq!((r.entries, r.bytes), (2, u64::MAX));
        let v = b.verify().unwrap();
        assert_eq!(v.bytes, u64::MAX);
    }
}
