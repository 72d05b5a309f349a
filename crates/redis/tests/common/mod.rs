//! Shared test helpers: a `redis-server` of the test's own on a free loopback port, and a
//! conformance factory over it.
//!
//! When `redis-server` is not installed the tests print a notice and pass without checking
//! anything, unless `PLEXCACHE_REQUIRE_REDIS=1`, which turns the notice into a failure (CI
//! sets it, so a missing server cannot hide).

#![allow(dead_code, clippy::expect_used, clippy::unwrap_used)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use plexcache_core::testkit::BackendFactory;
use plexcache_redis::RedisBackend;
#[allow(unused_imports)] // each test crate uses a different part
pub use plexcache_testsupport::redis_server::{
    RedisServer, ServerOptions, free_port, redis_available, send,
};

static PREFIXES: AtomicU64 = AtomicU64::new(0);

/// A key prefix no other test of this process uses: `{tag}-{pid}-{n}:` (a prefix has one `:`,
/// at its end).
pub fn unique_prefix(tag: &str) -> String {
    format!(
        "{tag}-{}-{}:",
        std::process::id(),
        PREFIXES.fetch_add(1, Ordering::Relaxed)
    )
}

/// Connects to `url` with the prefix and a short command timeout.
pub async fn connect(url: &str, prefix: &str) -> RedisBackend {
    connect_with(url, prefix, true).await
}

/// The model differential (`plexcache_testsupport::differential`) on a new cache (prefix
/// from `tag`, scripts as functions or by `EVALSHA`) per seed: 1,500 operations, every entry
/// compared every 50; each cache destroyed after its run; together the runs must cover every
/// case.
pub async fn differential(url: &str, tag: &str, functions: bool, seeds: &[u64]) {
    use plexcache_testsupport::differential::{Coverage, Target, run};
    let mut seen = Coverage::default();
    for &seed in seeds {
        let redis = connect_with(url, &unique_prefix(tag), functions).await;
        let target = Target::new(redis).compare_every(50);
        let (redis, run_seen) = run(target, seed, 1_500).await;
        seen.add(run_seen);
        redis.destroy().await.unwrap();
    }
    eprintln!("{seen:?}");
    seen.assert_complete();
}

/// [`connect`], with the scripts run as Redis Functions (`FCALL`) or by `EVALSHA`.
pub async fn connect_with(url: &str, prefix: &str, functions: bool) -> RedisBackend {
    RedisBackend::builder(url)
        .key_prefix(prefix)
        .command_timeout(Duration::from_secs(10))
        .redis_functions(functions)
        .connect()
        .await
        .expect("connect to the test redis-server")
}

/// The conformance factory: every store is a fresh key prefix on this factory's own server;
/// `reopen` drops the backend and connects again to the same server and prefix.
pub struct RedisFactory {
    pub server: RedisServer,
    /// Scripts as Redis Functions (`FCALL`), or by `EVALSHA`.
    pub functions: bool,
}

impl RedisFactory {
    /// `None` when redis-server is missing (see [`redis_available`]).
    pub fn start() -> Option<Self> {
        RedisServer::start().map(|server| Self {
            server,
            functions: true,
        })
    }

    /// [`start`](Self::start), for a backend that runs its scripts by `EVALSHA`.
    pub fn start_eval() -> Option<Self> {
        RedisServer::start().map(|server| Self {
            server,
            functions: false,
        })
    }
}

#[plexcache_core::async_trait]
impl BackendFactory for RedisFactory {
    type Backend = RedisBackend;

    async fn create(&self) -> RedisBackend {
        connect_with(
            &self.server.url(),
            &unique_prefix("conformance"),
            self.functions,
        )
        .await
    }

    async fn reopen(&self, backend: RedisBackend) -> Option<RedisBackend> {
        let prefix = backend.key_prefix().to_owned();
        drop(backend);
        Some(connect_with(&self.server.url(), &prefix, self.functions).await)
    }
}

#[allow(unused_imports)]
pub use plexcache_testsupport::redis_cluster::RedisCluster;

/// The conformance factory over a test cluster: every store a fresh prefix (so a fresh hash
/// tag, on whichever master serves its slot).
pub struct ClusterFactory {
    pub cluster: RedisCluster,
}

#[plexcache_core::async_trait]
impl BackendFactory for ClusterFactory {
    type Backend = RedisBackend;

    async fn create(&self) -> RedisBackend {
        connect(&self.cluster.url(), &unique_prefix("cluster")).await
    }

    async fn reopen(&self, backend: RedisBackend) -> Option<RedisBackend> {
        let prefix = backend.key_prefix().to_owned();
        drop(backend);
        Some(connect(&self.cluster.url(), &prefix).await)
    }
}
