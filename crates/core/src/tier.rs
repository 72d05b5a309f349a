//! The in-process memory tier of [`Cache`](crate::Cache): the one bounded in-process cache
//! that sits above any backend.
//!
//! Each slot holds an entry's stored bytes (the envelope, shared with whoever read them, never
//! copied) and metadata, optionally a decoded form of it (an `Arc` handed out by
//! [`Cache::get_shared`](crate::Cache::get_shared) and views built on it), and the backend's
//! [change token](crate::CacheBackend::change_token) read *before* the bytes were read or
//! last confirmed. A slot is served without asking the store only while the token is still
//! the same, which means nothing was written to the store since; otherwise the store is asked
//! whether the value changed ([`get_if_changed`](crate::CacheBackend::get_if_changed), which
//! compares the length and the envelope header carrying the checksum) before the slot is
//! served again. A store without a token (Redis) is asked on every read. Expired slots are
//! never served.
//!
//! Memory is bounded by a budget charged with each slot's stored length plus its key. Over
//! the budget, the least recently used slots are dropped down to three quarters of it, so the
//! O(n) pass that picks them runs at most once per quarter-budget of inserts. Values larger
//! than a quarter of the budget are not kept, nor, for plain reads and writes, values shorter
//! than [`MIN_VALUE`]: reading one of those from the store costs about what asking the store
//! for its change token does, so a slot would save nothing when valid and add a read whenever
//! the store changed. Shared reads ([`Cache::get_shared`](crate::Cache::get_shared), views)
//! hold values of any length, for the decoded form they keep.

use std::any::Any;
use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;

use crate::backend::{Entry, EntryMeta, Millis};

/// Fixed bookkeeping charged per slot on top of its key and stored length.
const SLOT_OVERHEAD: u64 = 96;

/// Stored values shorter than this are not held (see the [module documentation](self)).
pub(crate) const MIN_VALUE: usize = 4096;

/// A decoded form of a slot's bytes.
pub(crate) type Decoded = Arc<dyn Any + Send + Sync>;

struct Slot {
    value: Bytes,
    meta: EntryMeta,
    stamp: Option<u64>,
    decoded: Option<Decoded>,
    charge: u64,
    last_used: u64,
}

#[derive(Default)]
struct State {
    slots: HashMap<String, Slot>,
    charged: u64,
    tick: u64,
}

/// What the tier holds for a key.
pub(crate) struct Found {
    pub(crate) value: Bytes,
    /// The slot may be served without asking the store.
    pub(crate) valid: bool,
    pub(crate) decoded: Option<Decoded>,
}

pub(crate) struct Tier {
    budget: u64,
    state: Mutex<State>,
}

impl Tier {
    pub(crate) fn new(budget: u64) -> Self {
        Self {
            budget,
            state: Mutex::new(State::default()),
        }
    }

    pub(crate) fn enabled(&self) -> bool {
        self.budget > 0
    }

    /// The slot for `key`, unless it is expired at `now` (then it is dropped). `valid` when
    /// its stamp equals `token`.
    pub(crate) fn lookup(&self, key: &str, now: Millis, token: Option<u64>) -> Option<Found> {
        if !self.enabled() {
            return None;
        }
        let mut state = self.state.lock();
        state.tick += 1;
        let tick = state.tick;
        let slot = state.slots.get_mut(key)?;
        if slot.meta.is_expired(now) {
            if let Some(old) = state.slots.remove(key) {
                state.charged -= old.charge;
            }
            return None;
        }
        slot.last_used = tick;
        Some(Found {
            value: slot.value.clone(),
            valid: token.is_some() && slot.stamp == token,
            decoded: slot.decoded.clone(),
        })
    }

    /// Holds `entry` for `key` with `stamp`, replacing what the slot held. A value shorter
    /// than [`MIN_VALUE`] is held only with `any_length` (a caller that attaches a decoded
    /// form); otherwise the slot is dropped.
    pub(crate) fn insert(&self, key: &str, entry: &Entry, stamp: Option<u64>, any_length: bool) {
        if !self.enabled() {
            return;
        }
        let charge = entry.value.len() as u64 + key.len() as u64 + SLOT_OVERHEAD;
        let mut state = self.state.lock();
        if let Some(old) = state.slots.remove(key) {
            state.charged -= old.charge;
        }
        if charge > self.budget / 4 || (entry.value.len() < MIN_VALUE && !any_length) {
            return;
        }
        state.tick += 1;
        let slot = Slot {
            value: entry.value.clone(),
            meta: entry.meta,
            stamp,
            decoded: None,
            charge,
            last_used: state.tick,
        };
        state.charged += charge;
        state.slots.insert(key.to_owned(), slot);
        if state.charged > self.budget {
            Self::shrink(&mut state, self.budget / 4 * 3);
        }
    }

    /// Whether a slot for `key` exists (valid or not).
    pub(crate) fn holds(&self, key: &str) -> bool {
        self.enabled() && self.state.lock().slots.contains_key(key)
    }

    /// The store confirmed at `stamp` that the slot's bytes are current; `meta` is the
    /// entry's metadata now.
    pub(crate) fn confirm(&self, key: &str, value: &Bytes, meta: EntryMeta, stamp: Option<u64>) {
        let mut state = self.state.lock();
        if let Some(slot) = state.slots.get_mut(key)
            && slot.value == *value
        {
            slot.meta = meta;
            slot.stamp = stamp;
        }
    }

    /// Attaches `decoded`, a decoded form of `value`, to the slot of `key` if the slot still
    /// holds those bytes.
    pub(crate) fn attach(&self, key: &str, value: &Bytes, decoded: Decoded) {
        let mut state = self.state.lock();
        if let Some(slot) = state.slots.get_mut(key)
            && slot.value.len() == value.len()
            && (slot.value.as_ptr() == value.as_ptr() || slot.value == *value)
        {
            slot.decoded = Some(decoded);
        }
    }

    /// Drops least recently used slots until at most `target` is charged.
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
        if !self.enabled() {
            return;
        }
        let mut state = self.state.lock();
        if let Some(old) = state.slots.remove(key) {
            state.charged -= old.charge;
        }
    }

    pub(crate) fn remove_prefix(&self, prefix: &str) {
        if !self.enabled() {
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

    /// Slots held and bytes charged.
    pub(crate) fn usage(&self) -> (usize, u64) {
        let state = self.state.lock();
        (state.slots.len(), state.charged)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shortest value the tier holds.
    const N: usize = MIN_VALUE;

    fn entry(n: usize) -> Entry {
        Entry {
            value: Bytes::from(vec![7u8; n]),
            meta: EntryMeta::new("k", n, 0, None),
        }
    }

    #[test]
    fn a_slot_is_valid_only_under_the_token_it_was_stamped_with() {
        let tier = Tier::new(1 << 20);
        tier.insert("k", &entry(N), Some(5), false);
        assert!(tier.lookup("k", 0, Some(5)).unwrap().valid);
        assert!(!tier.lookup("k", 0, Some(6)).unwrap().valid);
        assert!(!tier.lookup("k", 0, None).unwrap().valid);
        let e = entry(N);
        tier.insert("u", &e, None, false);
        assert!(
            !tier.lookup("u", 0, None).unwrap().valid,
            "no token: always asked"
        );
        tier.confirm("u", &e.value, e.meta, Some(6));
        assert!(tier.lookup("u", 0, Some(6)).unwrap().valid);
    }

    #[test]
    fn expired_slots_are_dropped_not_served() {
        let tier = Tier::new(1 << 20);
        let mut e = entry(N);
        e.meta.expires_at = Some(100);
        tier.insert("k", &e, Some(1), false);
        assert!(tier.lookup("k", 99, Some(1)).is_some());
        assert!(tier.lookup("k", 100, Some(1)).is_none());
        assert_eq!(tier.usage(), (0, 0));
    }

    #[test]
    fn the_budget_is_kept_by_dropping_the_least_recently_used() {
        let charge = N as u64 + 2 + SLOT_OVERHEAD;
        let tier = Tier::new(charge * 8);
        for i in 0..8 {
            tier.insert(&format!("k{i}"), &entry(N), Some(1), false);
        }
        assert_eq!(tier.usage().0, 8);
        assert!(tier.lookup("k0", 0, Some(1)).is_some());
        tier.insert("k8", &entry(N), Some(1), false);
        let (n, charged) = tier.usage();
        assert!(
            charged <= charge * 6,
            "shrunk to 3/4 of the budget: {charged}"
        );
        assert_eq!(n, 6);
        assert!(
            tier.lookup("k0", 0, Some(1)).is_some(),
            "recently used kept"
        );
        assert!(
            tier.lookup("k8", 0, Some(1)).is_some(),
            "just inserted kept"
        );
        assert!(tier.lookup("k1", 0, Some(1)).is_none(), "oldest dropped");
    }

    #[test]
    fn values_over_a_quarter_of_the_budget_are_not_kept() {
        let tier = Tier::new(4 * N as u64);
        tier.insert("big", &entry(N), Some(1), false);
        assert_eq!(tier.usage(), (0, 0));
    }

    #[test]
    fn decoded_forms_attach_only_to_the_bytes_they_came_from() {
        let tier = Tier::new(1 << 20);
        let e = entry(N);
        tier.insert("k", &e, Some(1), false);
        tier.attach("k", &Bytes::from(vec![1u8; N]), Arc::new(1u32));
        assert!(tier.lookup("k", 0, Some(1)).unwrap().decoded.is_none());
        tier.attach("k", &e.value, Arc::new(2u32));
        let d = tier.lookup("k", 0, Some(1)).unwrap().decoded.unwrap();
        assert_eq!(d.downcast::<u32>().ok().map(|v| *v), Some(2));
    }

    #[test]
    fn remove_prefix_and_clear_release_their_charge() {
        let tier = Tier::new(1 << 20);
        for k in ["a:1", "a:2", "b:1"] {
            tier.insert(k, &entry(N), Some(1), false);
        }
        tier.remove_prefix("a:");
        assert_eq!(tier.usage(), (1, N as u64 + 3 + SLOT_OVERHEAD));
        tier.remove("b:1");
        assert_eq!(tier.usage(), (0, 0));
        tier.insert("c", &entry(N), None, false);
        tier.clear();
        assert_eq!(tier.usage(), (0, 0));
    }

    #[test]
    fn short_values_are_not_held_and_drop_what_the_slot_held() {
        let tier = Tier::new(1 << 20);
        tier.insert("k", &entry(N), Some(1), false);
        assert!(tier.holds("k"));
        tier.insert("k", &entry(N - 1), Some(1), false);
        assert!(
            !tier.holds("k"),
            "a shorter value replaced it: not served from the slot"
        );
        assert_eq!(tier.usage(), (0, 0));
    }

    #[test]
    fn a_zero_budget_keeps_nothing() {
        let tier = Tier::new(0);
        tier.insert("k", &entry(N), Some(1), false);
        assert!(tier.lookup("k", 0, Some(1)).is_none());
    }
}
