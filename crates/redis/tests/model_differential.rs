//! Differential test: random operation sequences applied to the Redis backend and to the
//! reference `ModelBackend` (the shared driver of `plexcache_testsupport::differential`) give
//! identical results, including which entries eviction and purging pick (equal timestamps are
//! frequent, so ties must break by write order exactly), within a write's own limit and within
//! batches; every stored entry is compared every 50 steps and at the end.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use plexcache_testsupport::differential::{Coverage, Target, run};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_results_as_the_model() {
    let Some(server) = common::RedisServer::start() else {
        return;
    };
    let mut seen = Coverage::default();
    for seed in [1, 7, 42, 1234, 98_765] {
        let redis = common::connect(&server.url(), &common::unique_prefix("differential")).await;
        let (redis, run_seen) = run(Target::new(redis).compare_every(50), seed, 1_500).await;
        seen.add(run_seen);
        redis.destroy().await.unwrap();
    }
    eprintln!("{seen:?}");
    seen.assert_complete();
}

/// The same with the scripts run by `EVALSHA` instead of as functions (`FCALL`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_results_as_the_model_by_evalsha() {
    let Some(server) = common::RedisServer::start() else {
        return;
    };
    let mut seen = Coverage::default();
    for seed in [5, 4_321] {
        let redis = common::connect_with(
            &server.url(),
            &common::unique_prefix("differential-eval"),
            false,
        )
        .await;
        let (redis, run_seen) = run(Target::new(redis).compare_every(50), seed, 1_500).await;
        seen.add(run_seen);
        redis.destroy().await.unwrap();
    }
    eprintln!("{seen:?}");
    seen.assert_complete();
}
