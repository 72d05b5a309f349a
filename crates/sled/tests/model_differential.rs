//! Differential test: random operation sequences applied to the sled backend and to the
//! reference `ModelBackend` (the shared driver of `plexcache_testsupport::differential`) must
//! give identical results, across reopens, with sled's own index check after every step.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use plexcache_core::model::ModelBackend;
use plexcache_core::{Access, Bytes, CacheBackend, EvictionPolicy, WriteLimit};
use plexcache_sled::SledBackend;
use plexcache_testsupport::differential::{Coverage, Target, run};

/// A few lines of xorshift for the index test below (its sequence is part of its setup).
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

async fn run_sled(seed: u64, separate_over: usize, ops: usize) -> Coverage {
    let (_dir, path) = common::temp_cache();
    let open = move |p: &std::path::Path| {
        SledBackend::builder(p)
            .separate_values_over(separate_over)
            .open()
            .expect("open")
    };
    let reopen_path = path.clone();
    let target = Target::new(open(&path))
        .reopen_with(move |old| {
            drop(old);
            let b = open(&reopen_path);
            assert!(b.open_info().recount.is_none(), "clean close");
            assert_eq!(b.open_info().interrupted_batch, None);
            b
        })
        .check_each_step(|s, ctx| {
            let v = s.verify().unwrap();
            assert!(v.is_ok(), "{ctx}: {:?}", v.problems);
        });
    run(target, seed, ops).await.1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn matches_the_model() {
    let mut seen = Coverage::default();
    for seed in 1..=12u64 {
        seen.add(run_sled(seed * 0x9e37_79b9, 4 * 1024, 1_500).await);
    }
    seen.assert_complete();
    assert!(seen.reopens > 0, "no reopen: {seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn matches_the_model_with_separate_values() {
    for seed in 100..=105u64 {
        run_sled(seed * 0x2545_f491, 64, 1_500).await;
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
