//! Differential test: random operation sequences applied to the sled backend and to the
//! reference `ModelBackend` must give identical results, including which entries eviction and
//! purging pick (also inside `put` and `write_batch` with a random `WriteLimit`), across
//! reopens; at every reopen and at the end every surviving entry (value and metadata, with or
//! without a TTL) must be the same, and every index must agree with the entries.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use plexcache_core::model::ModelBackend;
use plexcache_core::{
    Access, Batch, BatchPut, Bytes, CacheBackend, Counters, EvictionPolicy, WriteLimit,
};
use plexcache_sled::SledBackend;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const PREFIXES: [&str; 4] = ["a:", "b:", "ab:", ""];

fn key(rng: &mut Rng) -> String {
    let p = PREFIXES[rng.below(4) as usize];
    format!("{p}{}", rng.below(24))
}

const POLICIES: [EvictionPolicy; 4] = [
    EvictionPolicy::LeastRecentlyStored,
    EvictionPolicy::LeastRecentlyUsed,
    EvictionPolicy::LeastFrequentlyUsed,
    EvictionPolicy::None,
];

fn value(rng: &mut Rng, fill: u8) -> Bytes {
    let len = match rng.below(10) {
        0 => 0,
        1 => 5_000 + rng.below(3_000) as usize,
        _ => rng.below(300) as usize,
    };
    Bytes::from(vec![fill; len])
}

fn expiry(rng: &mut Rng, now: u64) -> Option<u64> {
    match rng.below(3) {
        0 => None,
        _ => Some(now + rng.below(40)),
    }
}

/// A random write limit: none, refuse above, or evict in a random order (to a fixed size or
/// to somewhat below the current `usage`), with or without a purge of expired entries.
fn write_limit(rng: &mut Rng, now: u64, usage: u64) -> WriteLimit {
    let policy = POLICIES[rng.below(4) as usize];
    let limit = match rng.below(4) {
        0 => WriteLimit::UNBOUNDED,
        1 => WriteLimit::evict_to(usage.saturating_sub(rng.below(usage / 2 + 1)), policy),
        _ => WriteLimit::evict_to(2_000 + rng.below(10_000), policy),
    };
    match rng.below(3) {
        0 => limit.with_purge(now + rng.below(30), rng.below(4) as usize),
        _ => limit,
    }
}

/// Every live entry (value and metadata) is the same in both.
async fn assert_same_entries(sled: &SledBackend, model: &ModelBackend, ctx: &str) {
    let keys = sled.keys("", 0, usize::MAX).await.unwrap();
    assert_eq!(
        keys,
        model.keys("", 0, usize::MAX).await.unwrap(),
        "{ctx}: keys"
    );
    for k in keys {
        assert_eq!(
            sled.get(&k, 0).await.unwrap(),
            model.get(&k, 0).await.unwrap(),
            "{ctx}: entry {k}"
        );
    }
}

async fn run(seed: u64, separate_over: usize, ops: usize) {
    let (_dir, path) = common::temp_cache();
    let open = |p: &std::path::Path| {
        SledBackend::builder(p)
            .separate_values_over(separate_over)
            .open()
            .expect("open")
    };
    let mut sled = Some(open(&path));
    let model = ModelBackend::new();
    let mut rng = Rng(seed | 1);
    let mut now: u64 = 1_700_000_000_000;
    for step in 0..ops {
        let s = sled.as_ref().unwrap();
        let ctx = format!("seed {seed} step {step}");
        now += rng.below(3);
        match rng.below(100) {
            0..=5 => {
                // A batch: prefixes replaced, keys possibly repeated (the last put wins).
                let mut batch = Batch::new(now);
                for _ in 0..rng.below(3) {
                    batch.remove_prefixes.push(format!(
                        "{}{}",
                        PREFIXES[rng.below(4) as usize],
                        rng.below(3)
                    ));
                }
                for j in 0..rng.below(8) {
                    let key = key(&mut rng);
                    let value = value(&mut rng, j as u8);
                    let expires_at = expiry(&mut rng, now);
                    batch.puts.push(BatchPut {
                        key,
                        value,
                        expires_at,
                    });
                }
                let usage = model.usage().await.unwrap().bytes;
                let limit = write_limit(&mut rng, now, usage);
                assert_eq!(
                    s.write_batch(&batch, limit).await.unwrap(),
                    model.write_batch(&batch, limit).await.unwrap(),
                    "{ctx}: write_batch {batch:?} {limit:?}"
                );
            }
            6..=34 => {
                let k = key(&mut rng);
                let value = value(&mut rng, (step % 251) as u8);
                let expires = expiry(&mut rng, now);
                let usage = model.usage().await.unwrap().bytes;
                let limit = write_limit(&mut rng, now, usage);
                let a = s.put(&k, value.clone(), now, expires, limit).await.unwrap();
                let b = model.put(&k, value, now, expires, limit).await.unwrap();
                assert_eq!(a, b, "{ctx}: put {k} {limit:?}");
            }
            35..=54 => {
                let k = key(&mut rng);
                let at = now + rng.below(20);
                let a = s.get(&k, at).await.unwrap();
                let b = model.get(&k, at).await.unwrap();
                assert_eq!(a, b, "{ctx}: get {k}");
            }
            55..=60 => {
                let k = key(&mut rng);
                assert_eq!(
                    s.remove(&k).await.unwrap(),
                    model.remove(&k).await.unwrap(),
                    "{ctx}: remove {k}"
                );
            }
            61..=62 => {
                let p = format!("{}{}", PREFIXES[rng.below(4) as usize], rng.below(3));
                assert_eq!(
                    s.remove_prefix(&p).await.unwrap(),
                    model.remove_prefix(&p).await.unwrap(),
                    "{ctx}: remove_prefix {p}"
                );
            }
            63..=69 => {
                let limit = rng.below(6) as usize;
                let at = now + rng.below(30);
                assert_eq!(
                    s.purge_expired(at, limit).await.unwrap(),
                    model.purge_expired(at, limit).await.unwrap(),
                    "{ctx}: purge"
                );
            }
            70..=79 => {
                let policy = POLICIES[rng.below(4) as usize];
                let usage = model.usage().await.unwrap();
                let target = usage.bytes.saturating_sub(rng.below(3_000));
                let protect = (rng.below(2) == 0).then(|| key(&mut rng));
                assert_eq!(
                    s.evict(policy, target, protect.as_deref()).await.unwrap(),
                    model
                        .evict(policy, target, protect.as_deref())
                        .await
                        .unwrap(),
                    "{ctx}: evict {policy} to {target} protecting {protect:?}"
                );
            }
            80..=87 => {
                let batch: Vec<Access> = (0..1 + rng.below(5))
                    .map(|_| Access {
                        key: key(&mut rng),
                        at: now + rng.below(10),
                        count: 1 + rng.below(3),
                    })
                    .collect();
                s.record_accesses(&batch).await.unwrap();
                model.record_accesses(&batch).await.unwrap();
            }
            88..=91 => {
                let p = PREFIXES[rng.below(4) as usize];
                let limit = rng.below(30) as usize;
                assert_eq!(
                    s.keys(p, now, limit).await.unwrap(),
                    model.keys(p, now, limit).await.unwrap(),
                    "{ctx}: keys {p}"
                );
            }
            92..=94 => {
                let delta = Counters {
                    hits: rng.below(5),
                    misses: rng.below(5),
                    evictions: rng.below(2),
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
                // Close and reopen: everything must survive, including the write sequence
                // that orders ties.
                assert_same_entries(s, &model, &ctx).await;
                drop(sled.take());
                let reopened = open(&path);
                assert!(reopened.open_info().recount.is_none(), "{ctx}: clean close");
                assert_eq!(reopened.open_info().interrupted_batch, None, "{ctx}");
                assert_same_entries(&reopened, &model, &ctx).await;
                sled = Some(reopened);
            }
        }
        let s = sled.as_ref().unwrap();
        assert_eq!(
            s.usage().await.unwrap(),
            model.usage().await.unwrap(),
            "{ctx}: usage"
        );
        // Every index agrees with the entries after every step, and so does every entry with
        // the model.
        let v = s.verify().unwrap();
        assert!(v.is_ok(), "{ctx}: {:?}", v.problems);
        assert_same_entries(s, &model, &ctx).await;
    }
    let s = sled.as_ref().unwrap();
    assert_eq!(
        s.load_stats().await.unwrap(),
        model.load_stats().await.unwrap()
    );
    assert_eq!(
        s.keys("", u64::MAX, usize::MAX).await.unwrap(),
        model.keys("", u64::MAX, usize::MAX).await.unwrap()
    );
    assert_same_entries(s, &model, &format!("seed {seed} at the end")).await;
    let v = s.verify().unwrap();
    assert!(v.is_ok(), "seed {seed}: {:?}", v.problems);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn matches_the_model() {
    for seed in 1..=12u64 {
        run(seed * 0x9e37_79b9, 4 * 1024, 1_500).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn matches_the_model_with_separate_values() {
    for seed in 100..=105u64 {
        run(seed * 0x2545_f491, 64, 1_500).await;
    }
}

/// The access-ordered indexes are built on the first recorded read (or LRU/LFU eviction) of
/// a store that has only been used least-recently-stored so far, and kept from then on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_indexes_are_built_when_first_needed() {
    for first in ["record", "evict_lru", "evict_lfu"] {
        let (_dir, path) = common::temp_cache();
        let sled = SledBackend::open(&path).unwrap();
        let model = ModelBackend::new();
        let mut rng = Rng(7);
        let now = 1_700_000_000_000u64;
        for i in 0..3_000u64 {
            let k = format!("k{}", rng.below(2_000));
            let v = Bytes::from(vec![1u8; rng.below(100) as usize]);
            let at = now + i / 10;
            assert_eq!(
                sled.put(&k, v.clone(), at, None, WriteLimit::UNBOUNDED)
                    .await
                    .unwrap(),
                model
                    .put(&k, v, at, None, WriteLimit::UNBOUNDED)
                    .await
                    .unwrap()
            );
        }
        assert!(sled.verify().unwrap().is_ok());
        // Reopen in between: the flag (off) survives.
        drop(sled);
        let sled = SledBackend::open(&path).unwrap();
        let target = model.usage().await.unwrap().bytes - 5_000;
        match first {
            "record" => {
                let batch: Vec<Access> = (0..500u64)
                    .map(|i| Access {
                        key: format!("k{}", (i * 7) % 2_000),
                        at: now + 1_000 + i,
                        count: 1 + i % 3,
                    })
                    .collect();
                sled.record_accesses(&batch).await.unwrap();
                model.record_accesses(&batch).await.unwrap();
            }
            "evict_lru" => {
                assert_eq!(
                    sled.evict(EvictionPolicy::LeastRecentlyUsed, target, None)
                        .await
                        .unwrap(),
                    model
                        .evict(EvictionPolicy::LeastRecentlyUsed, target, None)
                        .await
                        .unwrap()
                );
            }
            _ => {
                assert_eq!(
                    sled.evict(EvictionPolicy::LeastFrequentlyUsed, target, None)
                        .await
                        .unwrap(),
                    model
                        .evict(EvictionPolicy::LeastFrequentlyUsed, target, None)
                        .await
                        .unwrap()
                );
            }
        }
        assert!(sled.verify().unwrap().is_ok(), "{first}");
        drop(sled);
        let sled = SledBackend::open(&path).unwrap();
        for policy in [
            EvictionPolicy::LeastFrequentlyUsed,
            EvictionPolicy::LeastRecentlyUsed,
            EvictionPolicy::LeastRecentlyStored,
        ] {
            let target = model.usage().await.unwrap().bytes.saturating_sub(3_000);
            assert_eq!(
                sled.evict(policy, target, Some("k5")).await.unwrap(),
                model.evict(policy, target, Some("k5")).await.unwrap(),
                "{first}: {policy}"
            );
        }
        let v = sled.verify().unwrap();
        assert!(v.is_ok(), "{first}: {:?}", v.problems);
        assert_eq!(
            sled.keys("", now, usize::MAX).await.unwrap(),
            model.keys("", now, usize::MAX).await.unwrap()
        );
    }
}
