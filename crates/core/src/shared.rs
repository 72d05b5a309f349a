//! The shared-value memo behind [`Cache::get_shared`](crate::Cache::get_shared): decoded
//! values kept in this process as `Arc<T>`, each with the envelope header and length it was
//! decoded from. A memoized value is only returned after the backend confirms that the stored
//! value still has that header (which carries the payload's xxh3 checksum and schema tag) and
//! length ([`CacheBackend::get_if_changed`](crate::CacheBackend::get_if_changed)), so a value
//! rewritten by another process, removed, evicted or expired is never served from here.
//!
//! Memory is bounded by a budget charged with each value's encoded length plus its key (the
//! decoded form is typically 1.5-3x the encoded one; see `docs/decisions.md`). Over the budget,
//! the least recently used values are dropped down to three quarters of it, so the O(n) pass
//! that picks them runs at most once per quarter-budget of inserts.

use std::any::Any;
use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::codec::{CacheValue, HEADER_LEN};

/// Fixed bookkeeping charged per memoized value on top of its key and encoded length.
const SLOT_OVERHEAD: u64 = 96;

struct Slot {
    head: [u8; HEADER_LEN],
    len: u64,
    charge: u64,
    last_used: u64,
    value: Arc<dyn Any + Send + Sync>,
}

#[derive(Default)]
struct State {
    slots: HashMap<String, Slot>,
    charged: u64,
    tick: u64,
}

/// A value held by the memo, with what identifies the bytes it was decoded from.
pub(crate) struct Held<T> {
    pub(crate) head: [u8; HEADER_LEN],
    pub(crate) len: u64,
    pub(crate) value: Arc<T>,
}

pub(crate) struct SharedMemo {
    budget: u64,
    state: Mutex<State>,
}

impl SharedMemo {
    pub(crate) fn new(budget: u64) -> Self {
        Self {
            budget,
            state: Mutex::new(State::default()),
        }
    }

    /// The value memoized for `key` if it is a `T` (same schema tag and Rust type).
    pub(crate) fn lookup<T: CacheValue>(&self, key: &str) -> Option<Held<T>> {
        if self.budget == 0 {
            return None;
        }
        let mut state = self.state.lock();
        state.tick += 1;
        let tick = state.tick;
        let slot = state.slots.get_mut(key)?;
        if slot.head[3..11] != T::SCHEMA.0.to_le_bytes() {
            return None;
        }
        let value = Arc::clone(&slot.value).downcast::<T>().ok()?;
        slot.last_used = tick;
        Some(Held {
            head: slot.head,
            len: slot.len,
            value,
        })
    }

    /// Memoizes `value`, decoded from `encoded` (a whole envelope), replacing what `key` held.
    /// Values whose charge exceeds a quarter of the budget are not kept (they would flush
    /// everything else), only the stale slot is dropped.
    pub(crate) fn insert<T: CacheValue>(&self, key: &str, encoded: &[u8], value: &Arc<T>) {
        if self.budget == 0 {
            return;
        }
        let Some(head) = encoded
            .get(..HEADER_LEN)
            .and_then(|h| <[u8; HEADER_LEN]>::try_from(h).ok())
        else {
            return;
        };
        let len = encoded.len() as u64;
        let charge = len + key.len() as u64 + SLOT_OVERHEAD;
        let mut state = self.state.lock();
        if let Some(old) = state.slots.remove(key) {
            state.charged -= old.charge;
        }
        if charge > self.budget / 4 {
            return;
        }
        state.tick += 1;
        let slot = Slot {
            head,
            len,
            charge,
            last_used: state.tick,
            value: Arc::clone(value) as Arc<dyn Any + Send + Sync>,
        };
        state.charged += charge;
        state.slots.insert(key.to_owned(), slot);
        if state.charged > self.budget {
            Self::shrink(&mut state, self.budget / 4 * 3);
        }
    }

    /// Drops least recently used values until at most `target` is charged.
    fn shrink(state: &mut State, target: u64) {
        let mut order: Vec<(u64, &String)> =
            state.slots.iter().map(|(k, s)| (s.last_used, k)).collect();
        order.sort_unstable();
        let mut charged = state.charged;
        let mut victims = Vec::new();
        for (_, key) in order {
            if charged <= target {
                break;
            }
            charged -= state.slots.get(key.as_str()).map_or(0, |s| s.charge);
            victims.push(key.clone());
        }
        for key in victims {
            if let Some(slot) = state.slots.remove(&key) {
                state.charged -= slot.charge;
            }
        }
    }

    pub(crate) fn remove(&self, key: &str) {
        if self.budget == 0 {
            return;
        }
        let mut state = self.state.lock();
        if let Some(old) = state.slots.remove(key) {
            state.charged -= old.charge;
        }
    }

    pub(crate) fn remove_prefix(&self, prefix: &str) {
        if self.budget == 0 {
            return;
        }
        let mut state = self.state.lock();
        let mut freed = 0;
        state.slots.retain(|k, s| {
            let keep = !k.starts_with(prefix);
            if !keep {
                freed += s.charge;
            }
            keep
        });
        state.charged -= freed;
    }

    pub(crate) fn clear(&self) {
        let mut state = self.state.lock();
        state.slots.clear();
        state.charged = 0;
    }

    /// Values held and bytes charged.
    pub(crate) fn usage(&self) -> (usize, u64) {
        let state = self.state.lock();
        (state.slots.len(), state.charged)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec;

    fn enc(v: &Vec<String>) -> Vec<u8> {
        codec::encode(v).unwrap().to_vec()
    }

    #[test]
    fn holds_and_returns_the_same_arc_for_the_same_type() {
        let memo = SharedMemo::new(1 << 20);
        let v = Arc::new(vec!["a".to_string()]);
        memo.insert("k", &enc(&v), &v);
        let held = memo.lookup::<Vec<String>>("k").unwrap();
        assert!(Arc::ptr_eq(&held.value, &v));
        assert_eq!(held.len, enc(&v).len() as u64);
        // Another type with another schema tag is not served from the memo.
        assert!(memo.lookup::<Vec<u64>>("k").is_none());
    }

    #[test]
    fn the_budget_is_kept_by_dropping_the_least_recently_used() {
        let one = Arc::new(vec!["x".repeat(100)]);
        let charge = enc(&one).len() as u64 + 2 + SLOT_OVERHEAD;
        let memo = SharedMemo::new(charge * 8);
        for i in 0..8 {
            memo.insert(&format!("k{i}"), &enc(&one), &one);
        }
        assert_eq!(memo.usage().0, 8);
        // Touch k0 so that it is the most recently used.
        assert!(memo.lookup::<Vec<String>>("k0").is_some());
        memo.insert("k8", &enc(&one), &one);
        let (n, charged) = memo.usage();
        assert!(
            charged <= charge * 6,
            "shrunk to 3/4 of the budget: {charged}"
        );
        assert_eq!(n, 6);
        assert!(
            memo.lookup::<Vec<String>>("k0").is_some(),
            "recently used kept"
        );
        assert!(
            memo.lookup::<Vec<String>>("k8").is_some(),
            "just inserted kept"
        );
        assert!(memo.lookup::<Vec<String>>("k1").is_none(), "oldest dropped");
    }

    #[test]
    fn values_over_a_quarter_of_the_budget_are_not_kept() {
        let big = Arc::new(vec!["y".repeat(1000)]);
        let memo = SharedMemo::new(2000);
        memo.insert("big", &enc(&big), &big);
        assert_eq!(memo.usage(), (0, 0));
    }

    #[test]
    fn remove_prefix_and_clear_release_their_charge() {
        let v = Arc::new(vec!["z".to_string()]);
        let memo = SharedMemo::new(1 << 20);
        for k in ["a:1", "a:2", "b:1"] {
            memo.insert(k, &enc(&v), &v);
        }
        memo.remove_prefix("a:");
        let (n, charged) = memo.usage();
        assert_eq!(n, 1);
        assert_eq!(charged, enc(&v).len() as u64 + 3 + SLOT_OVERHEAD);
        memo.remove("b:1");
        assert_eq!(memo.usage(), (0, 0));
        memo.insert("c", &enc(&v), &v);
        memo.clear();
        assert_eq!(memo.usage(), (0, 0));
    }

    #[test]
    fn a_zero_budget_keeps_nothing() {
        let v = Arc::new(vec!["z".to_string()]);
        let memo = SharedMemo::new(0);
        memo.insert("k", &enc(&v), &v);
        assert!(memo.lookup::<Vec<String>>("k").is_none());
    }
}
