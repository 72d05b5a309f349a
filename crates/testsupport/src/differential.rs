//! The model-differential driver: a seeded random sequence of backend operations applied to a
//! backend and to the reference [`ModelBackend`], which must give identical results, including
//! which entries eviction and purging pick (inside `put` and `write_batch` with a random
//! [`WriteLimit`] too), across reopens where the backend has them; after every step the usage
//! and every live entry (value and metadata) must be the same, and at the end every stored
//! entry, expired or not, and the persistent statistics.
//!
//! ```no_run
//! # async fn demo() {
//! use plexcache_testsupport::differential::{Target, run};
//! for seed in 1..=4 {
//!     run(Target::new(plexcache_core::model::ModelBackend::new()), seed, 2_000).await;
//! }
//! # }
//! ```

// Test support: a mismatch is a failed assertion, on purpose.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use plexcache_core::model::ModelBackend;
use plexcache_core::{
    Access, Batch, BatchOutcome, BatchPut, Bytes, CacheBackend, Counters, EvictionPolicy, Millis,
    PutOutcome, WriteLimit,
};
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};

type Reopen<B> = Box<dyn FnMut(B) -> B>;
type Check<B> = Box<dyn Fn(&B, &str)>;

/// The backend under test, with what the driver may do to it besides operations.
pub struct Target<B> {
    backend: Option<B>,
    reopen: Option<Reopen<B>>,
    check: Option<Check<B>>,
    compare_every: usize,
    alphabet: Option<&'static [&'static str]>,
}

/// Code points where prefix ranges and byte order are easy to get wrong: NUL, DEL and the
/// C1 boundary, the surrogate gap's edges, the last code point, and `%`/`_` (SQL wildcards).
pub const AWKWARD_ALPHABET: &[&str] = &[
    "a",
    "b",
    "\0",
    "\u{10FFFF}",
    "é",
    "%",
    "_",
    "\u{7F}",
    "\u{D7FF}",
    "\u{E000}",
];

/// How often a run took the branches that matter, so that a test can assert its runs reach
/// them all.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Coverage {
    /// Puts refused by their limit.
    pub put_refused: u64,
    /// Puts that purged expired entries.
    pub put_purged: u64,
    /// Puts that evicted entries.
    pub put_evicted: u64,
    /// Batches applied.
    pub batch_applied: u64,
    /// Batches refused.
    pub batch_refused: u64,
    /// Batches that evicted entries.
    pub batch_evicted: u64,
    /// Batches that removed entries under a prefix.
    pub batch_removed: u64,
    /// Reopens.
    pub reopens: u64,
}

impl Coverage {
    /// Adds another run's counts.
    pub fn add(&mut self, other: Coverage) {
        self.put_refused += other.put_refused;
        self.put_purged += other.put_purged;
        self.put_evicted += other.put_evicted;
        self.batch_applied += other.batch_applied;
        self.batch_refused += other.batch_refused;
        self.batch_evicted += other.batch_evicted;
        self.batch_removed += other.batch_removed;
        self.reopens += other.reopens;
    }

    /// Panics naming the first branch no run took.
    pub fn assert_complete(&self) {
        for (what, n) in [
            ("refused puts", self.put_refused),
            ("puts that purged", self.put_purged),
            ("puts that evicted", self.put_evicted),
            ("applied batches", self.batch_applied),
            ("refused batches", self.batch_refused),
            ("batches that evicted", self.batch_evicted),
            ("batches that removed a prefix", self.batch_removed),
        ] {
            assert!(n > 0, "no {what}: the runs miss a branch ({self:?})");
        }
    }
}

impl<B: CacheBackend> Target<B> {
    /// A backend without reopens or extra checks.
    pub fn new(backend: B) -> Self {
        Self {
            backend: Some(backend),
            reopen: None,
            check: None,
            compare_every: 1,
            alphabet: None,
        }
    }

    /// Builds keys and prefixes of one to three (prefixes: zero to two) symbols of `alphabet`
    /// instead of the default nested ASCII and non-ASCII prefixes.
    pub fn key_alphabet(mut self, alphabet: &'static [&'static str]) -> Self {
        self.alphabet = Some(alphabet);
        self
    }

    /// Compares every live entry after every `n`th step instead of every step (for backends
    /// where each read is a network round trip); usage is still compared after every step.
    pub fn compare_every(mut self, n: usize) -> Self {
        self.compare_every = n.max(1);
        self
    }

    /// Closes and reopens the store now and then: `reopen` gets the open backend and returns
    /// a fresh one over the same store (everything must survive, including the write
    /// sequence that orders ties).
    pub fn reopen_with(mut self, reopen: impl FnMut(B) -> B + 'static) -> Self {
        self.reopen = Some(Box::new(reopen));
        self
    }

    /// An extra invariant checked after every step (for example that the backend's indexes
    /// agree with its entries); `ctx` names the seed and step for the message.
    pub fn check_each_step(mut self, check: impl Fn(&B, &str) + 'static) -> Self {
        self.check = Some(Box::new(check));
        self
    }

    fn get(&self) -> &B {
        // Taken only inside a reopen, which puts it back before returning.
        self.backend.as_ref().expect("backend present")
    }
}

/// Nested prefixes, the empty one, and a non-ASCII one.
const PREFIXES: [&str; 5] = ["a:", "b:", "ab:", "", "ü"];

const POLICIES: [EvictionPolicy; 4] = [
    EvictionPolicy::LeastRecentlyStored,
    EvictionPolicy::LeastRecentlyUsed,
    EvictionPolicy::LeastFrequentlyUsed,
    EvictionPolicy::None,
];

struct Gen(SmallRng, Option<&'static [&'static str]>);

impl Gen {
    fn below(&mut self, n: u64) -> u64 {
        self.0.random_range(0..n.max(1))
    }

    fn symbols(&mut self, alphabet: &[&str], n: u64) -> String {
        (0..n)
            .map(|_| alphabet[self.below(alphabet.len() as u64) as usize])
            .collect()
    }

    fn key(&mut self) -> String {
        if let Some(alphabet) = self.1 {
            let n = 1 + self.below(3);
            return self.symbols(alphabet, n);
        }
        let p = PREFIXES[self.below(PREFIXES.len() as u64) as usize];
        format!("{p}{}", self.below(24))
    }

    fn prefix(&mut self) -> String {
        if let Some(alphabet) = self.1 {
            let n = self.below(3);
            return self.symbols(alphabet, n);
        }
        format!(
            "{}{}",
            PREFIXES[self.below(PREFIXES.len() as u64) as usize],
            self.below(3)
        )
    }

    /// Mostly small values, some empty, some over the separate-value thresholds of the disk
    /// backends.
    fn value(&mut self, fill: u8) -> Bytes {
        let len = match self.below(10) {
            0 => 0,
            1 => 5_000 + self.below(3_000) as usize,
            _ => self.below(300) as usize,
        };
        Bytes::from(vec![fill; len])
    }

    fn expiry(&mut self, now: Millis) -> Option<Millis> {
        match self.below(3) {
            0 => None,
            _ => Some(now + self.below(40)),
        }
    }

    /// None, refuse above, or evict in a random order (to a fixed size or to somewhat below
    /// the current `usage`), with or without a purge of expired entries.
    fn write_limit(&mut self, now: Millis, usage: u64) -> WriteLimit {
        let policy = POLICIES[self.below(4) as usize];
        let limit = match self.below(4) {
            0 => WriteLimit::UNBOUNDED,
            1 => WriteLimit::evict_to(usage.saturating_sub(self.below(usage / 2 + 1)), policy),
            _ => WriteLimit::evict_to(2_000 + self.below(10_000), policy),
        };
        match self.below(3) {
            0 => limit.with_purge(now + self.below(30), self.below(4) as usize),
            _ => limit,
        }
    }
}

/// Every live entry (value and metadata) is the same in both.
async fn assert_same_entries<B: CacheBackend>(b: &B, model: &ModelBackend, now: Millis, ctx: &str) {
    let keys = b.keys("", now, usize::MAX).await.unwrap();
    assert_eq!(
        keys,
        model.keys("", now, usize::MAX).await.unwrap(),
        "{ctx}: keys"
    );
    for k in keys {
        assert_eq!(
            b.get(&k, now).await.unwrap(),
            model.get(&k, now).await.unwrap(),
            "{ctx}: entry {k}"
        );
    }
}

/// Runs `ops` random operations from `seed` on the target and the model; returns the backend
/// and which branches the run took.
pub async fn run<B: CacheBackend>(mut target: Target<B>, seed: u64, ops: usize) -> (B, Coverage) {
    let model = ModelBackend::new();
    let mut seen = Coverage::default();
    let mut g = Gen(SmallRng::seed_from_u64(seed), target.alphabet);
    let mut now: Millis = 1_700_000_000_000;
    for step in 0..ops {
        let ctx = format!("seed {seed} step {step}");
        now += g.below(3);
        let reopen_due = target.reopen.is_some() && g.below(100) == 0;
        let s = target.get();
        match g.below(100) {
            0..=5 => {
                // A batch: prefixes replaced, keys possibly repeated (the last put wins).
                let mut batch = Batch::new(now);
                for _ in 0..g.below(3) {
                    batch.remove_prefixes.push(g.prefix());
                }
                for j in 0..g.below(8) {
                    let key = g.key();
                    let value = g.value(j as u8);
                    let expires_at = g.expiry(now);
                    batch.puts.push(BatchPut {
                        key,
                        value,
                        expires_at,
                    });
                }
                let usage = model.usage().await.unwrap().bytes;
                let limit = g.write_limit(now, usage);
                let outcome = model.write_batch(&batch, limit).await.unwrap();
                assert_eq!(
                    s.write_batch(&batch, limit).await.unwrap(),
                    outcome,
                    "{ctx}: write_batch {batch:?} {limit:?}"
                );
                match outcome {
                    BatchOutcome::Applied {
                        removed, evicted, ..
                    } => {
                        seen.batch_applied += 1;
                        seen.batch_evicted += u64::from(evicted.entries > 0);
                        seen.batch_removed += u64::from(removed.entries > 0);
                    }
                    BatchOutcome::Refused { .. } => seen.batch_refused += 1,
                }
            }
            6..=34 => {
                let k = g.key();
                let value = g.value((step % 251) as u8);
                let expires = g.expiry(now);
                let usage = model.usage().await.unwrap().bytes;
                let limit = g.write_limit(now, usage);
                let a = s.put(&k, value.clone(), now, expires, limit).await.unwrap();
                let b = model.put(&k, value, now, expires, limit).await.unwrap();
                assert_eq!(a, b, "{ctx}: put {k} {limit:?}");
                match b {
                    PutOutcome::Stored {
                        expired, evicted, ..
                    } => {
                        seen.put_purged += u64::from(expired.entries > 0);
                        seen.put_evicted += u64::from(evicted.entries > 0);
                    }
                    PutOutcome::Refused { .. } => seen.put_refused += 1,
                }
            }
            35..=54 => {
                let k = g.key();
                let at = now + g.below(20);
                assert_eq!(
                    s.get(&k, at).await.unwrap(),
                    model.get(&k, at).await.unwrap(),
                    "{ctx}: get {k}"
                );
            }
            55..=60 => {
                let k = g.key();
                assert_eq!(
                    s.remove(&k).await.unwrap(),
                    model.remove(&k).await.unwrap(),
                    "{ctx}: remove {k}"
                );
            }
            61..=62 => {
                let p = g.prefix();
                assert_eq!(
                    s.remove_prefix(&p).await.unwrap(),
                    model.remove_prefix(&p).await.unwrap(),
                    "{ctx}: remove_prefix {p:?}"
                );
            }
            63..=69 => {
                let limit = g.below(6) as usize;
                let at = now + g.below(30);
                assert_eq!(
                    s.purge_expired(at, limit).await.unwrap(),
                    model.purge_expired(at, limit).await.unwrap(),
                    "{ctx}: purge"
                );
            }
            70..=79 => {
                let policy = POLICIES[g.below(4) as usize];
                let usage = model.usage().await.unwrap();
                let target_bytes = usage.bytes.saturating_sub(g.below(3_000));
                let protect = (g.below(2) == 0).then(|| g.key());
                assert_eq!(
                    s.evict(policy, target_bytes, protect.as_deref())
                        .await
                        .unwrap(),
                    model
                        .evict(policy, target_bytes, protect.as_deref())
                        .await
                        .unwrap(),
                    "{ctx}: evict {policy} to {target_bytes} protecting {protect:?}"
                );
            }
            80..=87 => {
                let batch: Vec<Access> = (0..1 + g.below(5))
                    .map(|_| Access {
                        key: g.key(),
                        at: now + g.below(10),
                        count: 1 + g.below(3),
                    })
                    .collect();
                s.record_accesses(&batch).await.unwrap();
                model.record_accesses(&batch).await.unwrap();
            }
            88..=91 => {
                let p = g.prefix();
                let limit = g.below(30) as usize;
                assert_eq!(
                    s.keys(&p, now, limit).await.unwrap(),
                    model.keys(&p, now, limit).await.unwrap(),
                    "{ctx}: keys {p:?}"
                );
            }
            92..=94 => {
                let delta = Counters {
                    hits: g.below(5),
                    misses: g.below(5),
                    evictions: g.below(2),
                    ..Counters::default()
                };
                s.add_stats(&delta).await.unwrap();
                model.add_stats(&delta).await.unwrap();
            }
            95 => {
                assert_eq!(
                    s.clear().await.unwrap(),
                    model.clear().await.unwrap(),
                    "{ctx}: clear"
                );
            }
            _ => {
                assert_same_entries(s, &model, 0, &ctx).await;
            }
        }
        if reopen_due {
            assert_same_entries(target.get(), &model, 0, &ctx).await;
            target.get().flush().await.unwrap();
            let b = target.backend.take().expect("backend present");
            if let Some(reopen) = target.reopen.as_mut() {
                target.backend = Some(reopen(b));
            }
            seen.reopens += 1;
            assert_same_entries(target.get(), &model, 0, &format!("{ctx}, reopened")).await;
        }
        let s = target.get();
        assert_eq!(
            s.usage().await.unwrap(),
            model.usage().await.unwrap(),
            "{ctx}: usage"
        );
        if let Some(check) = &target.check {
            check(s, &ctx);
        }
        if step % target.compare_every == target.compare_every - 1 {
            assert_same_entries(s, &model, now, &ctx).await;
        }
    }
    let s = target.get();
    let ctx = format!("seed {seed} at the end");
    assert_eq!(
        s.load_stats().await.unwrap(),
        model.load_stats().await.unwrap(),
        "{ctx}: statistics"
    );
    // Every stored entry, expired ones not yet purged included.
    assert_eq!(
        s.keys("", 0, usize::MAX).await.unwrap(),
        model.keys("", 0, usize::MAX).await.unwrap(),
        "{ctx}: stored keys"
    );
    assert_same_entries(s, &model, 0, &ctx).await;
    assert_eq!(
        s.integrity_check().await.unwrap(),
        Vec::<String>::new(),
        "{ctx}: integrity"
    );
    (target.backend.take().expect("backend present"), seen)
}
