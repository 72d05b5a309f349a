//! Differential test: random operation sequences applied to the Redis backend and to the
//! reference `ModelBackend` give identical results, including which entries eviction and
//! purging pick (equal timestamps are frequent, so ties must break by write order exactly).

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use plexcache_core::model::ModelBackend;
use plexcache_core::{Access, Bytes, CacheBackend, EvictionPolicy};

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

async fn run(url: &str, seed: u64, ops: usize) {
    let redis = common::connect(url, &common::unique_prefix("diff")).await;
    let model = ModelBackend::new();
    let mut rng = Rng(seed | 1);
    let mut now: u64 = 1_700_000_000_000;
    for step in 0..ops {
        let ctx = format!("seed {seed} step {step}");
        now += rng.below(3);
        match rng.below(100) {
            0..=39 => {
                let k = key(&mut rng);
                let value = Bytes::from(vec![b'x'; rng.below(120) as usize]);
                let expires = match rng.below(3) {
                    0 => None,
                    _ => Some(now + rng.below(20)),
                };
                let max = (rng.below(4) == 0).then(|| 500 + rng.below(3_000));
                let a = redis
                    .put(&k, value.clone(), now, expires, max)
                    .await
                    .unwrap();
                let b = model.put(&k, value, now, expires, max).await.unwrap();
                assert_eq!(a, b, "{ctx}: put {k}");
            }
            40..=49 => {
                let k = key(&mut rng);
                let a = redis.get(&k, now).await.unwrap();
                let b = model.get(&k, now).await.unwrap();
                assert_eq!(a, b, "{ctx}: get {k}");
            }
            50..=57 => {
                let batch: Vec<Access> = (0..1 + rng.below(4))
                    .map(|_| Access {
                        key: key(&mut rng),
                        at: now + rng.below(5),
                        count: 1 + rng.below(3),
                    })
                    .collect();
                redis.record_accesses(&batch).await.unwrap();
                model.record_accesses(&batch).await.unwrap();
            }
            58..=63 => {
                let k = key(&mut rng);
                assert_eq!(
                    redis.remove(&k).await.unwrap(),
                    model.remove(&k).await.unwrap(),
                    "{ctx}: remove {k}"
                );
            }
            64..=66 => {
                let p = PREFIXES[rng.below(4) as usize];
                let p = if p.is_empty() { "b:1" } else { p };
                assert_eq!(
                    redis.remove_prefix(p).await.unwrap(),
                    model.remove_prefix(p).await.unwrap(),
                    "{ctx}: remove_prefix {p}"
                );
            }
            67..=74 => {
                let limit = rng.below(6) as usize;
                assert_eq!(
                    redis.purge_expired(now, limit).await.unwrap(),
                    model.purge_expired(now, limit).await.unwrap(),
                    "{ctx}: purge"
                );
            }
            75..=89 => {
                let policy = [
                    EvictionPolicy::LeastRecentlyStored,
                    EvictionPolicy::LeastRecentlyUsed,
                    EvictionPolicy::LeastFrequentlyUsed,
                ][rng.below(3) as usize];
                let usage = model.usage().await.unwrap();
                let target = usage.bytes.saturating_sub(rng.below(400));
                let protect = (rng.below(2) == 0).then(|| key(&mut rng));
                assert_eq!(
                    redis
                        .evict(policy, target, protect.as_deref())
                        .await
                        .unwrap(),
                    model
                        .evict(policy, target, protect.as_deref())
                        .await
                        .unwrap(),
                    "{ctx}: evict {policy}"
                );
            }
            90..=95 => {
                let p = PREFIXES[rng.below(4) as usize];
                let limit = rng.below(30) as usize;
                assert_eq!(
                    redis.keys(p, now, limit).await.unwrap(),
                    model.keys(p, now, limit).await.unwrap(),
                    "{ctx}: keys {p}"
                );
            }
            _ => {
                if rng.below(10) == 0 {
                    assert_eq!(
                        redis.clear().await.unwrap(),
                        model.clear().await.unwrap(),
                        "{ctx}: clear"
                    );
                }
            }
        }
        assert_eq!(
            redis.usage().await.unwrap(),
            model.usage().await.unwrap(),
            "{ctx}: usage"
        );
    }
    // Same survivors, same metadata.
    let keys = model.keys("", 0, usize::MAX).await.unwrap();
    assert_eq!(redis.keys("", 0, usize::MAX).await.unwrap(), keys);
    for k in keys {
        assert_eq!(
            redis.get(&k, 0).await.unwrap(),
            model.get(&k, 0).await.unwrap(),
            "end: {k}"
        );
    }
    assert_eq!(redis.integrity_check().await.unwrap(), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_results_as_the_model() {
    let Some(server) = common::RedisServer::start() else {
        return;
    };
    for seed in [1, 7, 42, 1234, 98_765] {
        run(&server.url(), seed, 1_500).await;
    }
}
