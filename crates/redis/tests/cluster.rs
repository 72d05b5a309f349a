//! The backend on a real Redis Cluster (three masters on loopback ports, started by the test):
//! the whole conformance suite, the model differential, keys of one cache in one slot, and
//! several caches spread over the masters. Skipped with a notice when redis-server or
//! redis-cli is not installed, unless `PLEXCACHE_REQUIRE_REDIS=1`.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;

use common::{ClusterFactory, RedisCluster, connect};
use plexcache_core::{Batch, Bytes, CacheBackend, WriteLimit};
use plexcache_testsupport::redis_cluster::command;

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[test]
fn conformance_on_a_cluster() {
    let Some(cluster) = RedisCluster::start() else {
        return;
    };
    let factory = ClusterFactory { cluster };
    plexcache_core::testkit::block_on(plexcache_core::testkit::run_all(&factory));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_results_as_the_model_on_a_cluster() {
    let Some(cluster) = RedisCluster::start() else {
        return;
    };
    common::differential(&cluster.url(), "cluster-diff", true, &[3, 1_234]).await;
}

/// Every key one cache writes (entries, large staged values, indexes, counters) is on the
/// master that serves its hash tag, and caches with other prefixes land on other masters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cache_lives_in_one_slot_and_caches_spread_over_the_masters() {
    let Some(cluster) = RedisCluster::start() else {
        return;
    };
    let mut owners = BTreeSet::new();
    for n in 0..12 {
        let prefix = format!("spread-{n}:");
        let backend = connect(&cluster.url(), &prefix).await;
        let mut batch = Batch::new(1);
        batch.puts.push(plexcache_core::BatchPut {
            key: "library:Movies:all".into(),
            value: Bytes::from(vec![1u8; 100_000]),
            expires_at: None,
        });
        batch.puts.push(plexcache_core::BatchPut {
            key: "search:Movies:alien".into(),
            value: Bytes::from_static(b"small"),
            expires_at: Some(now_ms() + 3_600_000),
        });
        backend
            .write_batch(&batch, WriteLimit::UNBOUNDED)
            .await
            .unwrap();
        backend
            .put(
                "big",
                Bytes::from(vec![2u8; 50_000]),
                1,
                None,
                WriteLimit::UNBOUNDED,
            )
            .await
            .unwrap();
        let name = prefix.trim_end_matches(':');
        let owner = cluster.owner_of(&format!("{{{name}}}:meta"));
        owners.insert(owner);
        for port in cluster.ports() {
            let keys = command(port, &format!("KEYS {{{name}}}:*")).unwrap();
            let count = keys
                .lines()
                .next()
                .and_then(|l| l.strip_prefix('*'))
                .and_then(|n| n.trim().parse::<usize>().ok())
                .unwrap();
            if port == owner {
                // meta (with the counters), three values, three indexes (z:new, z:exp-new
                // for the expiring one, z:keys; nothing was read).
                assert_eq!(count, 7, "{prefix} on its master: {keys}");
            } else {
                assert_eq!(count, 0, "{prefix} on another master: {keys}");
            }
        }
        assert_eq!(
            backend.get("big", 2).await.unwrap().unwrap().value.len(),
            50_000
        );
        assert!(backend.integrity_check().await.unwrap().is_empty());
        backend.destroy().await.unwrap();
    }
    assert!(owners.len() > 1, "twelve caches on one master: {owners:?}");
}

#[tokio::test]
async fn braces_in_a_cluster_prefix_are_refused() {
    let Some(cluster) = RedisCluster::start() else {
        return;
    };
    let err = plexcache_redis::RedisBackend::builder(cluster.url())
        .key_prefix("a{b}:")
        .connect()
        .await
        .expect_err("braces refused");
    assert!(matches!(err, plexcache_core::Error::Config(_)), "{err:?}");
}
