//! Generations of a library for batch tests: each generation replaces the keys under `lib:`
//! with keys that carry its number, so a listing of `lib:` shows which generations it holds.

// Test support: a mixed library is a failed assertion, on purpose.
#![allow(clippy::unwrap_used, clippy::panic)]

use plexcache_core::{Batch, BatchPut, Bytes};

/// Generation `generation` of library `lib:` with `entries` keys, replacing the previous one.
/// Every value is filled with the generation's low byte.
pub fn library_batch(generation: u64, entries: usize) -> Batch {
    let mut batch = Batch::new(1_000 + generation);
    batch.remove_prefixes = vec!["lib:".into()];
    batch.puts = (0..entries)
        .map(|i| BatchPut {
            key: format!("lib:{i:04}:g{generation}"),
            value: Bytes::from(vec![generation as u8; 60 + i % 100]),
            expires_at: None,
        })
        .collect();
    batch
}

/// The generation of a key made by [`library_batch`].
pub fn generation_of(key: &str) -> u64 {
    key.rsplit(":g").next().unwrap().parse().unwrap()
}

/// Checks that `keys` (a listing of `lib:`) is one whole generation of `entries` keys, and
/// returns it; `what` names the read in the message.
pub fn one_generation(keys: &[String], entries: usize, what: &str) -> u64 {
    assert_eq!(keys.len(), entries, "{what}: a partial library");
    let g = generation_of(&keys[0]);
    assert!(
        keys.iter().all(|k| generation_of(k) == g),
        "{what}: two generations mixed"
    );
    g
}
