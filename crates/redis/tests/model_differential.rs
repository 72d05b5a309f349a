//! Differential test: random operation sequences applied to the Redis backend and to the
//! reference `ModelBackend` (the shared driver of `plexcache_testsupport::differential`) give
//! identical results, including which entries eviction and purging pick (equal timestamps are
//! frequent, so ties must break by write order exactly), within a write's own limit and within
//! batches; every stored entry is compared every 50 steps and at the end.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_results_as_the_model() {
    let Some(server) = common::RedisServer::start() else {
        return;
    };
    common::differential(
        &server.url(),
        "differential",
        true,
        &[1, 7, 42, 1234, 98_765],
    )
    .await;
}

/// The same with the scripts run by `EVALSHA` instead of as functions (`FCALL`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_results_as_the_model_by_evalsha() {
    let Some(server) = common::RedisServer::start() else {
        return;
    };
    common::differential(&server.url(), "differential-eval", false, &[5, 4_321]).await;
}

/// Writers whose clocks disagree: stored_at and expires_at go back and forth (the common case
/// of the scripts assumes they do not). Puts, batches, evictions in every order, purges and
/// recorded reads give the model's results, and the store stays consistent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clocks_that_go_back_keep_the_model_order() {
    use plexcache_core::model::ModelBackend;
    use plexcache_core::{
        Access, Batch, BatchPut, Bytes, CacheBackend, EvictionPolicy, WriteLimit,
    };
    use rand::rngs::SmallRng;
    use rand::{RngExt, SeedableRng};

    let Some(server) = common::RedisServer::start() else {
        return;
    };
    let policies = [
        EvictionPolicy::LeastRecentlyStored,
        EvictionPolicy::LeastRecentlyUsed,
        EvictionPolicy::LeastFrequentlyUsed,
    ];
    for seed in [11u64, 12, 13] {
        let redis = common::connect(&server.url(), &common::unique_prefix("clocks")).await;
        let model = ModelBackend::new();
        let mut rng = SmallRng::seed_from_u64(seed);
        let base: u64 = 1_700_000_000_000;
        for step in 0..800 {
            let ctx = format!("seed {seed} step {step}");
            let at = base + rng.random_range(0..60u64);
            let key = format!("k{}", rng.random_range(0..30u32));
            let expires = match rng.random_range(0..3u32) {
                0 => None,
                _ => Some(at + rng.random_range(0..80u64)),
            };
            match rng.random_range(0..10u32) {
                0..=4 => {
                    let value = Bytes::from(vec![7u8; rng.random_range(0..200usize)]);
                    let policy = policies[rng.random_range(0..3usize)];
                    let limit = WriteLimit::evict_to(1_000 + rng.random_range(0..2_000u64), policy)
                        .with_purge(at, rng.random_range(0..3usize));
                    assert_eq!(
                        redis
                            .put(&key, value.clone(), at, expires, limit)
                            .await
                            .unwrap(),
                        model.put(&key, value, at, expires, limit).await.unwrap(),
                        "{ctx}: put {key}"
                    );
                }
                5 => {
                    let mut batch = Batch::new(at);
                    for _ in 0..rng.random_range(1..4u32) {
                        batch.puts.push(BatchPut {
                            key: format!("k{}", rng.random_range(0..30u32)),
                            value: Bytes::from(vec![3u8; rng.random_range(0..100usize)]),
                            expires_at: expires.map(|e| e + rng.random_range(0..5u64)),
                        });
                    }
                    let limit = WriteLimit::evict_to(2_500, policies[rng.random_range(0..3usize)])
                        .with_purge(at, 2);
                    assert_eq!(
                        redis.write_batch(&batch, limit).await.unwrap(),
                        model.write_batch(&batch, limit).await.unwrap(),
                        "{ctx}: batch"
                    );
                }
                6 => {
                    let reads = [Access {
                        key,
                        at,
                        count: rng.random_range(1..3u64),
                    }];
                    redis.record_accesses(&reads).await.unwrap();
                    model.record_accesses(&reads).await.unwrap();
                }
                7 => {
                    let policy = policies[rng.random_range(0..3usize)];
                    let target = model.usage().await.unwrap().bytes.saturating_sub(300);
                    assert_eq!(
                        redis.evict(policy, target, None).await.unwrap(),
                        model.evict(policy, target, None).await.unwrap(),
                        "{ctx}: evict {policy}"
                    );
                }
                _ => {
                    let n = rng.random_range(0..4usize);
                    assert_eq!(
                        redis.purge_expired(at, n).await.unwrap(),
                        model.purge_expired(at, n).await.unwrap(),
                        "{ctx}: purge"
                    );
                }
            }
            assert_eq!(
                redis.usage().await.unwrap(),
                model.usage().await.unwrap(),
                "{ctx}: usage"
            );
        }
        assert_eq!(redis.integrity_check().await.unwrap(), Vec::<String>::new());
        for k in model.keys("", 0, usize::MAX).await.unwrap() {
            assert_eq!(
                redis.get(&k, 0).await.unwrap(),
                model.get(&k, 0).await.unwrap(),
                "seed {seed}: {k}"
            );
        }
        redis.destroy().await.unwrap();
    }
}
