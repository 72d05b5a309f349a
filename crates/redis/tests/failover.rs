//! A node restarted in the middle of a workload (a single server, and the cluster master that
//! serves the cache's slot): calls fail with errors while it is away, never with a wrong value,
//! calls work again once it is back, and the counters still equal the entries. The nodes keep
//! an append-only file (fsync on every write), so the data comes back with them. Skipped with
//! a notice when redis-server (or, for the cluster, redis-cli) is not installed, unless
//! `PLEXCACHE_REQUIRE_REDIS=1`.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{RedisCluster, RedisServer, ServerOptions, free_port, redis_available, unique_prefix};
use plexcache_core::{Bytes, CacheBackend, Usage, WriteLimit};
use plexcache_redis::RedisBackend;

/// The value of write `n` of `key`: `key:n:` then fill bytes up to a length that depends on
/// `n` (some over the staging threshold), so a reader can tell exactly which write it got.
fn value_of(key: &str, n: u64) -> Bytes {
    let head = format!("{key}:{n}:");
    let len = if n.is_multiple_of(3) { 20_000 } else { 100 } + (n % 97) as usize;
    let mut v = head.into_bytes();
    v.resize(len, (n % 251) as u8);
    Bytes::from(v)
}

/// Checks that `value` under `key` is exactly one write's value.
fn check_value(key: &str, value: &[u8], size: u64) {
    let text = String::from_utf8_lossy(&value[..value.len().min(40)]).into_owned();
    let rest = text
        .strip_prefix(&format!("{key}:"))
        .unwrap_or_else(|| panic!("value of {key} starts with another key: {text:?}"));
    let n: u64 = rest.split(':').next().unwrap().parse().unwrap();
    assert_eq!(
        value,
        &value_of(key, n)[..],
        "value of {key} is write {n} whole"
    );
    assert_eq!(
        size,
        (key.len() + value.len()) as u64,
        "metadata of the same write"
    );
}

#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    errors: AtomicU64,
}

/// Runs a read/write workload on `backend` while `outage` takes the node away (and returns
/// what brings it back); returns (calls that succeeded, calls that failed) before, during and after.
async fn workload_through(
    backend: RedisBackend,
    outage: impl FnOnce() -> Box<dyn FnOnce()>,
) -> [(u64, u64); 3] {
    let phase = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let tallies: Arc<[Tally; 3]> = Arc::new(Default::default());
    let mut tasks = Vec::new();
    for t in 0..2u64 {
        let (backend, phase, stop, tallies) = (
            backend.clone(),
            phase.clone(),
            stop.clone(),
            tallies.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut n = t;
            while !stop.load(Ordering::Relaxed) {
                n += 2;
                let key = format!("k{}", n % 16);
                let result = if n % 4 < 2 {
                    backend
                        .put(&key, value_of(&key, n), n, None, WriteLimit::UNBOUNDED)
                        .await
                        .map(drop)
                } else {
                    backend.get(&key, 0).await.map(|e| {
                        if let Some(e) = e {
                            check_value(&key, &e.value, e.meta.size);
                        }
                    })
                };
                let tally = &tallies[phase.load(Ordering::Relaxed) as usize];
                match result {
                    Ok(()) => tally.ok.fetch_add(1, Ordering::Relaxed),
                    Err(e) => {
                        let n = tally.errors.fetch_add(1, Ordering::Relaxed);
                        if n == 0 {
                            eprintln!(
                                "first error in phase {}: {e}",
                                phase.load(Ordering::Relaxed)
                            );
                        }
                        n
                    }
                };
                tokio::task::yield_now().await;
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    let restart = outage();
    phase.store(1, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(600)).await;
    restart();
    phase.store(2, Ordering::Relaxed);
    // Until calls succeed again (the client reconnects), then a while more.
    let deadline = Instant::now() + Duration::from_secs(60);
    while tallies[2].ok.load(Ordering::Relaxed) < 50 {
        assert!(Instant::now() < deadline, "no recovery within 60 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.expect("no wrong value was read");
    }
    let out = [0, 1, 2].map(|i| {
        (
            tallies[i].ok.load(Ordering::Relaxed),
            tallies[i].errors.load(Ordering::Relaxed),
        )
    });
    eprintln!("(ok, errors) before, during, after the outage: {out:?}");
    out
}

/// Usage counted directly, every entry read and checked.
async fn direct_usage(b: &RedisBackend) -> Usage {
    let mut usage = Usage::default();
    for k in b.keys("", 0, usize::MAX).await.unwrap() {
        let e = b.get(&k, 0).await.unwrap().expect("listed key is readable");
        check_value(&k, &e.value, e.meta.size);
        usage.entries += 1;
        usage.bytes += e.meta.size;
    }
    usage
}

async fn after_the_outage(backend: &RedisBackend, phases: [(u64, u64); 3]) {
    assert!(phases[0].0 > 0, "calls worked before: {phases:?}");
    assert!(
        phases[1].1 > 0,
        "calls failed while the node was away: {phases:?}"
    );
    assert!(phases[2].0 > 0, "calls work again: {phases:?}");
    assert_eq!(backend.usage().await.unwrap(), direct_usage(backend).await);
    assert_eq!(
        backend.integrity_check().await.unwrap(),
        Vec::<String>::new()
    );
    backend
        .put(
            "after",
            value_of("after", 1),
            1,
            None,
            WriteLimit::UNBOUNDED,
        )
        .await
        .unwrap();
    assert_eq!(backend.usage().await.unwrap(), direct_usage(backend).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_restarted_mid_run_gives_errors_not_wrong_values() {
    if !redis_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let opts = ServerOptions {
        durable: true,
        password: None,
    };
    let server = Arc::new(std::sync::Mutex::new(RedisServer::spawn(
        dir.path(),
        port,
        &opts,
    )));
    let url = server.lock().unwrap().url();
    let backend = RedisBackend::builder(url)
        .key_prefix(unique_prefix("failover"))
        .command_timeout(Duration::from_millis(500))
        .connect()
        .await
        .unwrap();
    let path = dir.path().to_path_buf();
    // The test keeps a handle, so the restarted server lives to the end of it.
    let handle = server.clone();
    let phases = workload_through(backend.clone(), move || {
        server.lock().unwrap().kill();
        Box::new(move || {
            *server.lock().unwrap() = RedisServer::spawn(&path, port, &opts);
        })
    })
    .await;
    after_the_outage(&backend, phases).await;
    drop(handle);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_master_restarted_mid_run_gives_errors_not_wrong_values() {
    let Some(cluster) = RedisCluster::start_durable() else {
        return;
    };
    let prefix = unique_prefix("cluster-failover");
    let backend = RedisBackend::builder(cluster.url())
        .key_prefix(prefix.clone())
        .command_timeout(Duration::from_millis(500))
        .connect()
        .await
        .unwrap();
    let owner = cluster.owner_of(&format!("{{{}}}:meta", prefix.trim_end_matches(':')));
    let cluster = Arc::new(std::sync::Mutex::new(cluster));
    let phases = workload_through(backend.clone(), {
        let cluster = cluster.clone();
        move || {
            cluster.lock().unwrap().kill(owner);
            Box::new(move || {
                cluster.lock().unwrap().restart(owner);
            })
        }
    })
    .await;
    after_the_outage(&backend, phases).await;
}
