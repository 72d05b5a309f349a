//! The memory tier of the exclusive mode: recently written and read entries, bounded in bytes,
//! dropped first-in first-out.
//!
//! Only the exclusive mode has one (see [`SqliteBuilder::exclusive`](crate::SqliteBuilder::exclusive)):
//! with no other process writing the database, every change goes through this process's writer
//! connection, which updates the tier while it holds that connection. A tier entry is therefore
//! always the committed-or-pending row itself, and a hit needs no SQLite call.

use std::collections::{HashMap, VecDeque};

use plexcache_core::{Access, Entry, Millis};

/// Bookkeeping bytes counted per entry besides its logical size (key, map slot, queue slot).
const OVERHEAD: u64 = 96;

struct Slot {
    entry: Entry,
    /// Insertion number; the queue's record of an older insertion of the same key is stale.
    stamp: u64,
    cost: u64,
}

/// A byte-bounded map of entries with first-in first-out replacement.
pub(crate) struct Tier {
    map: HashMap<String, Slot>,
    /// Keys in insertion order, with the insertion number (stale records are skipped).
    queue: VecDeque<(String, u64)>,
    bytes: u64,
    capacity: u64,
    max_value: u64,
    next_stamp: u64,
}

impl Tier {
    /// A tier holding at most `capacity` bytes, of values up to a quarter of it each.
    pub(crate) fn new(capacity: u64) -> Self {
        Self {
            map: HashMap::new(),
            queue: VecDeque::new(),
            bytes: 0,
            capacity,
            max_value: capacity / 4,
            next_stamp: 0,
        }
    }

    /// The entry under `key` if it is held and live at `now`.
    pub(crate) fn get(&self, key: &str, now: Millis) -> Option<Entry> {
        let slot = self.map.get(key)?;
        if slot.entry.meta.expires_at.is_some_and(|at| at <= now) {
            return None;
        }
        Some(slot.entry.clone())
    }

    /// Holds `entry` under `key` (replacing what was held), unless its value is too large to
    /// hold, in which case any older entry under `key` is dropped.
    pub(crate) fn insert(&mut self, key: &str, entry: Entry) {
        if entry.value.len() as u64 > self.max_value {
            self.remove(key);
            return;
        }
        let cost = entry.meta.size + OVERHEAD;
        let stamp = self.next_stamp;
        self.next_stamp += 1;
        if let Some(old) = self.map.insert(key.to_owned(), Slot { entry, stamp, cost }) {
            self.bytes -= old.cost;
        }
        self.bytes += cost;
        self.queue.push_back((key.to_owned(), stamp));
        while self.bytes > self.capacity {
            let Some((old_key, old_stamp)) = self.queue.pop_front() else {
                break;
            };
            if self.map.get(&old_key).is_some_and(|s| s.stamp == old_stamp)
                && let Some(slot) = self.map.remove(&old_key)
            {
                self.bytes -= slot.cost;
            }
        }
        // Stale queue records (replaced or removed keys) are dropped when they outnumber the
        // live ones, so the queue stays within a constant factor of the map.
        if self.queue.len() > 2 * self.map.len() + 1024 {
            let map = &self.map;
            self.queue
                .retain(|(k, g)| map.get(k).is_some_and(|s| s.stamp == *g));
        }
    }

    /// Drops `key`.
    pub(crate) fn remove(&mut self, key: &str) {
        if let Some(slot) = self.map.remove(key) {
            self.bytes -= slot.cost;
        }
    }

    /// Drops every key starting with `prefix` (a scan of the tier, which is bounded).
    pub(crate) fn remove_prefix(&mut self, prefix: &str) {
        self.retain(|k, _| !k.starts_with(prefix));
    }

    /// Keeps the entries `keep` accepts, with the byte count kept exact. Queue records of
    /// dropped keys go stale and are skipped.
    fn retain(&mut self, mut keep: impl FnMut(&str, &Entry) -> bool) {
        let mut freed = 0;
        self.map.retain(|k, slot| {
            let kept = keep(k, &slot.entry);
            if !kept {
                freed += slot.cost;
            }
            kept
        });
        self.bytes -= freed;
    }

    /// Drops everything.
    pub(crate) fn clear(&mut self) {
        self.map.clear();
        self.queue.clear();
        self.bytes = 0;
    }

    /// Drops entries expired at `now`.
    pub(crate) fn purge(&mut self, now: Millis) {
        self.retain(|_, e| e.meta.expires_at.is_none_or(|at| at > now));
    }

    /// Applies recorded reads to the held metadata, as the database does.
    pub(crate) fn record(&mut self, accesses: &[Access]) {
        for a in accesses {
            if let Some(slot) = self.map.get_mut(a.key.as_str()) {
                let meta = &mut slot.entry.meta;
                meta.accessed_at = meta.accessed_at.max(a.at);
                meta.access_count = meta
                    .access_count
                    .saturating_add(a.count)
                    .min(i64::MAX as u64);
            }
        }
    }

    /// Bytes held (logical sizes plus bookkeeping).
    #[cfg(test)]
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Entries held.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use plexcache_core::{Bytes, EntryMeta};

    fn entry(len: usize, expires_at: Option<Millis>) -> Entry {
        Entry {
            value: Bytes::from(vec![1u8; len]),
            meta: EntryMeta {
                stored_at: 1,
                expires_at,
                accessed_at: 1,
                access_count: 0,
                size: len as u64 + 1,
            },
        }
    }

    #[test]
    fn holds_at_most_its_capacity_dropping_the_oldest_first() {
        let mut t = Tier::new(10 * (100 + 1 + OVERHEAD));
        for i in 0..25 {
            t.insert(&format!("{i}"), entry(100, None));
            assert!(t.bytes() <= 10 * (101 + OVERHEAD));
        }
        assert_eq!(t.len(), 10);
        assert!(t.get("14", 0).is_none());
        assert!(t.get("15", 0).is_some());
        assert!(t.get("24", 0).is_some());
    }

    #[test]
    fn a_value_too_large_to_hold_drops_the_older_one() {
        let mut t = Tier::new(4000);
        t.insert("k", entry(10, None));
        t.insert("k", entry(5000, None));
        assert!(t.get("k", 0).is_none());
        assert_eq!(t.bytes(), 0);
    }

    #[test]
    fn replacing_a_key_keeps_the_byte_count_exact_and_the_queue_bounded() {
        let mut t = Tier::new(1 << 30);
        for i in 0..100_000u64 {
            t.insert("same", entry((i % 7) as usize, None));
        }
        assert_eq!(t.len(), 1);
        assert_eq!(t.bytes(), 99_999 % 7 + 1 + OVERHEAD);
        assert!(t.queue.len() <= 2 + 1024 + 1);
    }

    #[test]
    fn expired_entries_are_not_returned_and_purge_drops_them() {
        let mut t = Tier::new(1 << 20);
        t.insert("a", entry(1, Some(10)));
        t.insert("b", entry(1, None));
        assert!(t.get("a", 9).is_some());
        assert!(t.get("a", 10).is_none());
        t.purge(10);
        assert_eq!(t.len(), 1);
        assert_eq!(t.bytes(), 2 + OVERHEAD);
    }

    #[test]
    fn prefix_removal_drops_exactly_the_prefixed_keys() {
        let mut t = Tier::new(1 << 20);
        for k in ["lib:a", "lib:b", "li", "other"] {
            t.insert(k, entry(1, None));
        }
        t.remove_prefix("lib:");
        assert!(t.get("lib:a", 0).is_none() && t.get("lib:b", 0).is_none());
        assert!(t.get("li", 0).is_some() && t.get("other", 0).is_some());
        assert_eq!(t.bytes(), 2 * (2 + OVERHEAD));
    }

    #[test]
    fn recorded_reads_update_the_held_metadata_like_the_database() {
        let mut t = Tier::new(1 << 20);
        t.insert("a", entry(1, None));
        t.record(&[Access {
            key: "a".into(),
            at: 50,
            count: 3,
        }]);
        let m = t.get("a", 0).unwrap().meta;
        assert_eq!((m.accessed_at, m.access_count), (50, 3));
        t.record(&[Access {
            key: "a".into(),
            at: 20,
            count: 1,
        }]);
        let m = t.get("a", 0).unwrap().meta;
        assert_eq!((m.accessed_at, m.access_count), (50, 4));
    }
}
