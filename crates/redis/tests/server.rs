//! Behaviour that needs a real server: the server going away and coming back, prefixes
//! isolating caches, several connections sharing one cache, server-side expiry not breaking
//! the counters. Skipped with a notice when redis-server is not installed, unless
//! `PLEXCACHE_REQUIRE_REDIS=1`.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{RedisServer, ServerOptions, connect, free_port, redis_available, unique_prefix};
use plexcache_core::{
    Batch, BatchOutcome, BatchPut, Bytes, Cache, CacheBackend, Error, EvictionPolicy, PutOutcome,
    Removed, Usage, WriteLimit,
};
use plexcache_redis::RedisBackend;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Usage counted directly: every live-or-expired key and its stored size.
async fn direct_usage(b: &RedisBackend) -> Usage {
    let keys = b.keys("", 0, usize::MAX).await.unwrap();
    let mut usage = Usage::default();
    for k in keys {
        let e = b.get(&k, 0).await.unwrap().expect("listed key is readable");
        usage.entries += 1;
        usage.bytes += e.meta.size;
    }
    usage
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_goes_away_gives_errors_and_calls_work_again_when_it_is_back() {
    if !redis_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let password = "s3cret-pw".to_string();
    let opts = ServerOptions {
        durable: true,
        password: Some(password.clone()),
    };
    let mut server = RedisServer::spawn(dir.path(), port, &opts);
    let backend = RedisBackend::builder(server.url())
        .key_prefix("away:")
        .command_timeout(Duration::from_millis(700))
        .connect()
        .await
        .unwrap();
    let debug = format!("{backend:?}");
    assert!(
        !debug.contains(&password),
        "Debug hides the password: {debug}"
    );
    assert!(debug.contains(&format!("127.0.0.1:{port}")), "{debug}");
    let now = now_ms();
    for i in 0..20 {
        backend
            .put(
                &format!("k{i}"),
                Bytes::from(vec![7u8; 100]),
                now,
                None,
                WriteLimit::UNBOUNDED,
            )
            .await
            .unwrap();
    }
    let before = backend.usage().await.unwrap();
    assert_eq!(before.entries, 20);

    server.kill();
    for attempt in 0..3 {
        let started = Instant::now();
        let err = backend.get("k1", now).await.expect_err("server is down");
        // Bounded by the command timeout (700 ms); the bound only catches a hang.
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "errors come within the timeout"
        );
        let msg = format!("{err}");
        let chain = format!("{err:?}");
        eprintln!("server down: {msg}: {chain}");
        assert!(
            matches!(
                err,
                Error::Backend {
                    backend: "redis",
                    ..
                }
            ),
            "{chain}"
        );
        assert!(
            msg.contains(&format!("127.0.0.1:{port}")),
            "names the server: {msg}"
        );
        assert!(
            !msg.contains(&password) && !chain.contains(&password),
            "attempt {attempt}: never the password: {chain}"
        );
    }
    let err = backend
        .put(
            "new",
            Bytes::from_static(b"v"),
            now,
            None,
            WriteLimit::UNBOUNDED,
        )
        .await
        .expect_err("writes fail too");
    assert!(!format!("{err:?}").contains(&password));
    assert!(backend.usage().await.is_err());

    // The same data directory and port: the append-only file brings the data back.
    let _server = RedisServer::spawn(dir.path(), port, &opts);
    let deadline = Instant::now() + Duration::from_secs(60);
    let entry = loop {
        match backend.get("k1", now).await {
            Ok(e) => break e,
            Err(e) => {
                assert!(Instant::now() < deadline, "no recovery within 60 s: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    assert_eq!(entry.expect("k1 survived").value.len(), 100);
    assert_eq!(backend.usage().await.unwrap(), before);
    backend
        .put(
            "after",
            Bytes::from_static(b"v"),
            now,
            None,
            WriteLimit::UNBOUNDED,
        )
        .await
        .unwrap();
    assert_eq!(backend.usage().await.unwrap().entries, 21);
    assert!(backend.integrity_check().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connecting_to_no_server_is_a_clear_error() {
    let port = free_port();
    let started = Instant::now();
    let err = RedisBackend::builder(format!("redis://:hunter2@127.0.0.1:{port}/0"))
        .command_timeout(Duration::from_millis(500))
        .connect()
        .await
        .expect_err("nothing listens there");
    // Bounded by the command timeout (500 ms); the bound only catches a hang.
    assert!(started.elapsed() < Duration::from_secs(60));
    let chain = format!("{err} {err:?}");
    eprintln!("no server: {chain}");
    assert!(chain.contains(&format!("127.0.0.1:{port}")), "{chain}");
    assert!(!chain.contains("hunter2"), "{chain}");
    let err = RedisBackend::connect("http://not-redis")
        .await
        .expect_err("bad url");
    assert!(format!("{err}").contains("invalid Redis URL"), "{err}");
    for bad in [
        "redis://:pw-in-bad-url@127.0.0.1:notaport",
        "redis://user:pw-in-bad-url@127.0.0.1:1/notadb",
        "redis+unix:///nonexistent.sock?pass=pw-in-bad-url",
    ] {
        let err = RedisBackend::builder(bad)
            .command_timeout(Duration::from_millis(500))
            .connect()
            .await
            .expect_err("bad url");
        let chain = format!("{err} {err:?}");
        eprintln!("{chain}");
        assert!(!chain.contains("pw-in-bad-url"), "{chain}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefixes_isolate_caches_on_one_server() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let a = connect(&server.url(), "app-a:").await;
    let b = connect(&server.url(), "app-b:").await;
    let now = now_ms();
    for (backend, tag) in [(&a, "a"), (&b, "b")] {
        for i in 0..5 {
            backend
                .put(
                    &format!("k{i}"),
                    Bytes::from(tag.as_bytes().to_vec()),
                    now,
                    None,
                    WriteLimit::UNBOUNDED,
                )
                .await
                .unwrap();
        }
        backend
            .add_stats(&plexcache_core::Counters {
                sets: 5,
                ..Default::default()
            })
            .await
            .unwrap();
    }
    assert_eq!(
        a.get("k1", now).await.unwrap().unwrap().value,
        Bytes::from_static(b"a")
    );
    assert_eq!(
        b.get("k1", now).await.unwrap().unwrap().value,
        Bytes::from_static(b"b")
    );
    assert_eq!(a.keys("", now, 100).await.unwrap().len(), 5);
    assert_eq!(a.clear().await.unwrap().entries, 5);
    assert_eq!(a.usage().await.unwrap(), Usage::default());
    assert_eq!(b.usage().await.unwrap().entries, 5);
    assert_eq!(b.keys("", now, 100).await.unwrap().len(), 5);
    assert_eq!(
        b.get("k3", now).await.unwrap().unwrap().value,
        Bytes::from_static(b"b")
    );
    // Stats are per prefix and survive clear.
    assert_eq!(a.load_stats().await.unwrap().sets, 5);
    assert_eq!(b.load_stats().await.unwrap().sets, 5);
    // Nothing outside the prefixes was written, and a's clear left only its counters (in its
    // metadata hash) and statistics.
    let client = redis::Client::open(server.url()).unwrap();
    let mut conn = client.get_connection().unwrap();
    let mut all: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut conn).unwrap();
    all.sort();
    assert!(
        all.iter()
            .all(|k| k.starts_with("app-a:") || k.starts_with("app-b:")),
        "{all:?}"
    );
    let a_keys: Vec<&String> = all.iter().filter(|k| k.starts_with("app-a:")).collect();
    assert_eq!(a_keys, ["app-a:meta", "app-a:stats"], "{all:?}");
    // destroy removes the counters and statistics too, and only its own.
    b.destroy().await.unwrap();
    let mut all: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut conn).unwrap();
    all.sort();
    assert_eq!(all, ["app-a:meta", "app-a:stats"]);
}

/// Prefixes that could let one cache's keys fall under another's are refused before any
/// connection is made (so this needs no server).
#[tokio::test]
async fn empty_unterminated_and_nesting_prefixes_are_refused() {
    let url = format!("redis://127.0.0.1:{}", free_port());
    for (prefix, says) in [
        ("", "empty"),
        (":", "the name before the ':' is empty"),
        ("p", "must end with ':'"),
        ("p:v", "must end with ':'"),
        ("p:v:", "':' may only end it"),
        ("app:plexcache:", "such as \"app-plexcache:\""),
    ] {
        let err = RedisBackend::builder(&url)
            .key_prefix(prefix)
            .command_timeout(Duration::from_millis(200))
            .connect()
            .await
            .expect_err(prefix);
        match &err {
            Error::Config(msg) => {
                assert!(msg.contains(says), "{prefix:?}: {msg}");
                assert!(msg.contains(&format!("{prefix:?}")), "{prefix:?}: {msg}");
            }
            other => panic!("{prefix:?}: {other:?}"),
        }
    }
}

/// `p:` and `pv:` (the nearest two valid prefixes come: one name starts the other) are two
/// caches: neither sees, clears, removes or destroys the other's entries, whatever their keys
/// (here keys that spell the other layout's internal names), nor keys of other applications.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn neighbouring_prefixes_never_touch_each_others_entries() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let client = redis::Client::open(server.url()).unwrap();
    let mut conn = client.get_connection().unwrap();
    // Another application's keys, some with the names of the layout's own keys.
    let foreign = ["counters", "stats", "meta", "p", "pv", "v:x", "z:keys"];
    for k in foreign {
        let _: () = redis::cmd("SET")
            .arg(k)
            .arg("theirs")
            .query(&mut conn)
            .unwrap();
    }
    let a = connect(&server.url(), "p:").await;
    let b = connect(&server.url(), "pv:").await;
    let now = now_ms();
    let keys = [
        "k", "v:meta", "meta", "counters", "stats", "z:keys", "v:v:k", "",
    ];
    let fill = |backend: &RedisBackend, tag: &'static str| {
        let backend = backend.clone();
        async move {
            for k in keys {
                backend
                    .put(
                        k,
                        Bytes::from(tag.as_bytes().to_vec()),
                        now,
                        None,
                        WriteLimit::UNBOUNDED,
                    )
                    .await
                    .unwrap();
            }
        }
    };
    let check = |backend: &RedisBackend, tag: &'static str, entries: usize| {
        let backend = backend.clone();
        async move {
            let mut listed = backend.keys("", now, 100).await.unwrap();
            listed.sort();
            let mut want: Vec<&str> = if entries == 0 { vec![] } else { keys.to_vec() };
            want.sort();
            assert_eq!(listed, want, "{tag}");
            assert_eq!(
                backend.usage().await.unwrap().entries,
                entries as u64,
                "{tag}"
            );
            for k in keys {
                let got = backend.get(k, now).await.unwrap().map(|e| e.value);
                let want = (entries > 0).then(|| Bytes::from(tag.as_bytes().to_vec()));
                assert_eq!(got, want, "{tag}: {k:?}");
            }
            assert_eq!(
                backend.integrity_check().await.unwrap(),
                Vec::<String>::new()
            );
        }
    };
    let foreign_intact = |conn: &mut redis::Connection| {
        for k in foreign {
            let v: Option<String> = redis::cmd("GET").arg(k).query(conn).unwrap();
            assert_eq!(v.as_deref(), Some("theirs"), "{k}");
        }
    };
    let n = keys.len();
    fill(&a, "a").await;
    fill(&b, "b").await;
    check(&a, "a", n).await;
    check(&b, "b", n).await;

    assert_eq!(a.clear().await.unwrap().entries, n as u64);
    check(&a, "a", 0).await;
    check(&b, "b", n).await;
    fill(&a, "a").await;
    assert_eq!(b.remove_prefix("").await.unwrap().entries, n as u64);
    check(&b, "b", 0).await;
    check(&a, "a", n).await;
    assert_eq!(a.remove_prefix("v").await.unwrap().entries, 2);
    fill(&a, "a").await;
    fill(&b, "b").await;
    foreign_intact(&mut conn);

    a.destroy().await.unwrap();
    let mut all: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut conn).unwrap();
    all.retain(|k| !foreign.contains(&k.as_str()));
    assert!(all.iter().all(|k| k.starts_with("pv:")), "{all:?}");
    check(&b, "b", n).await;
    b.destroy().await.unwrap();
    let mut all: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut conn).unwrap();
    all.sort();
    let mut want = foreign.to_vec();
    want.sort_unstable();
    assert_eq!(all, want);
    foreign_intact(&mut conn);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_connections_on_one_prefix_keep_exact_usage() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let prefix = unique_prefix("shared");
    // Two backends, two connections: as two processes would share the cache.
    let p1 = connect(&server.url(), &prefix).await;
    let p2 = connect(&server.url(), &prefix).await;
    let mut tasks = Vec::new();
    for t in 0..8u64 {
        let backend = if t % 2 == 0 { p1.clone() } else { p2.clone() };
        let cache = Cache::builder(backend)
            .size_limit(40_000)
            .eviction_policy(EvictionPolicy::LeastRecentlyUsed)
            .build()
            .unwrap();
        tasks.push(tokio::spawn(async move {
            let mut rng = SmallRng::seed_from_u64(t);
            for _ in 0..200 {
                let x: u64 = rng.random();
                let key = format!("k{}", x % 80);
                match x % 6 {
                    0 => {
                        cache.remove(&key).await.unwrap();
                    }
                    1 => {
                        cache.remove_prefix(&format!("k{}", x % 9)).await.unwrap();
                    }
                    2 => {
                        let _ = cache.get::<String>(&key).await.unwrap();
                    }
                    _ => cache
                        .set(&key, &"v".repeat((x % 900) as usize))
                        .await
                        .unwrap(),
                }
            }
            cache.flush().await.unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let usage = p1.usage().await.unwrap();
    assert_eq!(
        usage,
        direct_usage(&p2).await,
        "counters equal a direct count"
    );
    assert_eq!(p2.usage().await.unwrap(), usage);
    assert!(usage.bytes <= 40_000 + 1_000, "{usage:?}");
    assert_eq!(p1.integrity_check().await.unwrap(), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_dropped_by_server_side_expiry_keep_counters_exact() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let prefix = unique_prefix("grace");
    let backend = RedisBackend::builder(server.url())
        .key_prefix(prefix.clone())
        .expiry_grace(Duration::ZERO)
        .connect()
        .await
        .unwrap();
    let now = now_ms();
    backend
        .put(
            "short",
            Bytes::from(vec![1u8; 50]),
            now,
            Some(now + 150),
            WriteLimit::UNBOUNDED,
        )
        .await
        .unwrap();
    backend
        .put(
            "long",
            Bytes::from(vec![1u8; 50]),
            now,
            Some(now + 3_600_000),
            WriteLimit::UNBOUNDED,
        )
        .await
        .unwrap();
    backend
        .put(
            "never",
            Bytes::from(vec![1u8; 50]),
            now,
            None,
            WriteLimit::UNBOUNDED,
        )
        .await
        .unwrap();
    // Wait until the server has dropped the short-lived value on its own (an event, not a
    // time: its expiry runs when the server gets to it).
    let client = redis::Client::open(server.url()).unwrap();
    let mut conn = client.get_connection().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let exists: u64 = redis::cmd("EXISTS")
            .arg(format!("{prefix}v:short"))
            .query(&mut conn)
            .unwrap();
        if exists == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the server never dropped the value itself"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let later = now_ms();
    assert!(backend.get("short", later).await.unwrap().is_none());
    assert_eq!(
        backend.integrity_check().await.unwrap(),
        Vec::<String>::new(),
        "a value dropped by the server after its grace is expected"
    );
    assert_eq!(
        backend.usage().await.unwrap(),
        Usage {
            entries: 3,
            bytes: 55 + 54 + 55
        }
    );
    // The index still finds it, with its size: purging fixes the counters exactly.
    let purged = backend.purge_expired(later, 100).await.unwrap();
    assert_eq!((purged.entries, purged.bytes), (1, 55));
    assert_eq!(
        backend.usage().await.unwrap(),
        Usage {
            entries: 2,
            bytes: 54 + 55
        }
    );
    assert!(backend.integrity_check().await.unwrap().is_empty());
    // A value lost before its time (deleted by hand) is reported.
    let _: u64 = redis::cmd("DEL")
        .arg(format!("{prefix}v:never"))
        .query(&mut conn)
        .unwrap();
    let problems = backend.integrity_check().await.unwrap();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(backend.get("never", later).await.unwrap().is_none());
    assert_eq!(
        backend.remove("never").await.unwrap().map(|m| m.size),
        Some(55)
    );
    assert!(backend.integrity_check().await.unwrap().is_empty());
    // An expiry in the past of the server's clock (a caller's clock far behind it): the
    // server-side expiry counts the entry's time to live (1 s here) from the write on the
    // server's clock, so a reader on that clock still sees it.
    backend
        .put(
            "past",
            Bytes::from_static(b"v"),
            1_000,
            Some(2_000),
            WriteLimit::UNBOUNDED,
        )
        .await
        .unwrap();
    assert!(backend.get("past", 1_500).await.unwrap().is_some());
    assert_eq!(backend.purge_expired(2_000, 10).await.unwrap().entries, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_batches_are_split_and_complete() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let backend = connect(&server.url(), &unique_prefix("batch")).await;
    let now = now_ms();
    for i in 0..2_500u64 {
        backend
            .put(
                &format!("p:{i:05}"),
                Bytes::from_static(b"v"),
                now + i,
                Some(now + 10 + (i % 7)),
                WriteLimit::UNBOUNDED,
            )
            .await
            .unwrap();
    }
    assert_eq!(
        backend.keys("p:", now, usize::MAX).await.unwrap().len(),
        2_500
    );
    assert_eq!(backend.keys("p:", now, 1_500).await.unwrap().len(), 1_500);
    let r = backend
        .evict(EvictionPolicy::LeastRecentlyStored, 500 * 8, None)
        .await
        .unwrap();
    assert_eq!(r.entries, 2_000);
    // The newest 500 stay.
    assert!(backend.get("p:02499", now).await.unwrap().is_some());
    assert!(backend.get("p:01999", now).await.unwrap().is_none());
    assert_eq!(
        backend.purge_expired(now + 100, 300).await.unwrap().entries,
        300
    );
    assert_eq!(
        backend
            .purge_expired(now + 100, usize::MAX)
            .await
            .unwrap()
            .entries,
        200
    );
    for i in 0..2_100u64 {
        backend
            .put(
                &format!("q:{i}"),
                Bytes::from_static(b"v"),
                now,
                None,
                WriteLimit::UNBOUNDED,
            )
            .await
            .unwrap();
    }
    assert_eq!(backend.remove_prefix("q:").await.unwrap().entries, 2_100);
    assert_eq!(backend.usage().await.unwrap(), Usage::default());
}

/// Sets the raw metadata of `key` under `prefix`, as a bug or a hand edit could.
fn plant_metadata(conn: &mut redis::Connection, prefix: &str, key: &str, raw: &str) {
    let _: i64 = redis::cmd("HSET")
        .arg(format!("{prefix}meta"))
        .arg(key)
        .arg(raw)
        .query(conn)
        .unwrap();
}

fn entry_of(size: usize, key: &str) -> Bytes {
    Bytes::from(vec![5u8; size - key.len()])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_metadata_at_the_head_of_eviction_is_evicted_and_the_limit_holds() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let client = redis::Client::open(server.url()).unwrap();
    let mut conn = client.get_connection().unwrap();
    let now = now_ms();
    for policy in [
        EvictionPolicy::LeastRecentlyStored,
        EvictionPolicy::LeastRecentlyUsed,
        EvictionPolicy::LeastFrequentlyUsed,
    ] {
        let prefix = unique_prefix("poison");
        let backend = connect(&server.url(), &prefix).await;
        // "poison" is the oldest write, never read: the head of every eviction order. It has
        // an expiry, so it is in the expiry index too.
        backend
            .put(
                "poison",
                entry_of(100, "poison"),
                now,
                Some(now + 3_600_000),
                WriteLimit::UNBOUNDED,
            )
            .await
            .unwrap();
        for i in 0..3 {
            let k = format!("k{i}");
            backend
                .put(
                    &k,
                    entry_of(100, &k),
                    now + 1 + i,
                    None,
                    WriteLimit::UNBOUNDED,
                )
                .await
                .unwrap();
        }
        plant_metadata(&mut conn, &prefix, "poison", "garbage,1,2");
        let problems = backend.integrity_check().await.unwrap();
        assert!(
            problems.iter().any(|p| p.contains("malformed")),
            "{policy}: reported: {problems:?}"
        );
        assert!(
            backend.get("poison", now).await.is_err(),
            "{policy}: reading the malformed entry is an error"
        );

        // A write that needs room evicts the malformed entry first, and counts it.
        let limit = WriteLimit::evict_to(400, policy);
        let out = backend
            .put("n0", entry_of(100, "n0"), now + 10, None, limit)
            .await
            .unwrap();
        match out {
            PutOutcome::Stored { evicted, usage, .. } => {
                assert_eq!(
                    evicted,
                    Removed {
                        entries: 1,
                        bytes: 100
                    },
                    "{policy}: the malformed entry evicted"
                );
                assert_eq!(
                    usage,
                    Usage {
                        entries: 4,
                        bytes: 400
                    },
                    "{policy}"
                );
            }
            other => panic!("{policy}: {other:?}"),
        }
        assert_eq!(
            backend.keys("", now, 100).await.unwrap(),
            ["k0", "k1", "k2", "n0"],
            "{policy}"
        );
        assert!(backend.get("poison", now).await.unwrap().is_none());
        let value_left: u64 = redis::cmd("EXISTS")
            .arg(format!("{prefix}v:poison"))
            .query(&mut conn)
            .unwrap();
        assert_eq!(value_left, 0, "{policy}: its value is gone");
        // Every index member of it is gone and the counters are exact.
        assert_eq!(
            backend.integrity_check().await.unwrap(),
            Vec::<String>::new(),
            "{policy}"
        );
        assert_eq!(direct_usage(&backend).await, backend.usage().await.unwrap());

        // Poisoned again, at the head of what is left: later writes keep the limit.
        plant_metadata(&mut conn, &prefix, "k0", "1,2,3,4,5");
        for i in 1..8u64 {
            let k = format!("n{i}");
            let out = backend
                .put(&k, entry_of(100, &k), now + 10 + i, None, limit)
                .await
                .unwrap();
            let PutOutcome::Stored { usage, .. } = out else {
                panic!("{policy}: {out:?}");
            };
            assert!(usage.bytes <= 400, "{policy}: limit kept: {usage:?}");
        }
        // The standalone eviction passes it too.
        plant_metadata(&mut conn, &prefix, "n4", "");
        let r = backend.evict(policy, 0, None).await.unwrap();
        assert_eq!(r.entries, 4, "{policy}: everything evicted");
        assert_eq!(backend.usage().await.unwrap(), Usage::default(), "{policy}");
        assert_eq!(
            backend.integrity_check().await.unwrap(),
            Vec::<String>::new(),
            "{policy}"
        );
        backend.destroy().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_metadata_does_not_block_purges_batches_listing_or_clear() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let client = redis::Client::open(server.url()).unwrap();
    let mut conn = client.get_connection().unwrap();
    let prefix = unique_prefix("poison2");
    let backend = connect(&server.url(), &prefix).await;
    let now = now_ms();
    let put = |key: &'static str, expires_at: Option<u64>| {
        let backend = backend.clone();
        async move {
            backend
                .put(
                    key,
                    entry_of(50, key),
                    now,
                    expires_at,
                    WriteLimit::UNBOUNDED,
                )
                .await
                .unwrap()
        }
    };
    // Soonest to expire, malformed: a write's purge removes it and counts it as expired.
    put("e:bad", Some(now + 1)).await;
    put("e:ok", Some(now + 2)).await;
    put("b:bad", None).await;
    put("b:ok", None).await;
    put("keep", None).await;
    for k in ["e:bad", "b:bad"] {
        plant_metadata(&mut conn, &prefix, k, "x");
    }
    // Listing and recording accesses pass over the malformed entries.
    assert_eq!(
        backend.keys("", now, 100).await.unwrap(),
        ["b:ok", "e:ok", "keep"]
    );
    backend
        .record_accesses(&[plexcache_core::Access {
            key: "b:bad".into(),
            at: now + 1,
            count: 1,
        }])
        .await
        .unwrap();
    let out = backend
        .put(
            "w",
            entry_of(50, "w"),
            now,
            None,
            WriteLimit::UNBOUNDED.with_purge(now + 5, 10),
        )
        .await
        .unwrap();
    let PutOutcome::Stored { expired, .. } = out else {
        panic!("{out:?}");
    };
    assert_eq!(
        expired,
        Removed {
            entries: 2,
            bytes: 100
        }
    );
    // A batch replacing the prefix removes its malformed entry and counts it.
    let mut batch = Batch::new(now);
    batch.remove_prefixes = vec!["b:".into()];
    batch.puts.push(BatchPut {
        key: "b:new".into(),
        value: entry_of(50, "b:new"),
        expires_at: None,
    });
    match backend
        .write_batch(&batch, WriteLimit::UNBOUNDED)
        .await
        .unwrap()
    {
        BatchOutcome::Applied {
            removed, written, ..
        } => {
            assert_eq!(
                removed,
                Removed {
                    entries: 2,
                    bytes: 100
                }
            );
            assert_eq!(written, 1);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        backend.integrity_check().await.unwrap(),
        Vec::<String>::new()
    );
    // Rewriting a malformed entry replaces it; clearing removes one.
    plant_metadata(&mut conn, &prefix, "keep", "1,,1,0,50");
    let out = backend
        .put(
            "keep",
            entry_of(60, "keep"),
            now,
            None,
            WriteLimit::UNBOUNDED,
        )
        .await
        .unwrap();
    assert!(
        matches!(
            out,
            PutOutcome::Stored {
                previous_size: Some(50),
                ..
            }
        ),
        "{out:?}"
    );
    plant_metadata(&mut conn, &prefix, "w", "?");
    assert_eq!(
        backend.clear().await.unwrap(),
        Removed {
            entries: 3,
            bytes: 160
        }
    );
    assert_eq!(backend.usage().await.unwrap(), Usage::default());
    assert_eq!(
        backend.integrity_check().await.unwrap(),
        Vec::<String>::new()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_of_tens_of_thousands_of_entries_are_one_call() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let backend = connect(&server.url(), &unique_prefix("big")).await;
    let now = now_ms();
    let generation = |tag: &str, n: u64| {
        let mut batch = Batch::new(now);
        batch.remove_prefixes = vec!["lib:".into()];
        for i in 0..n {
            batch.puts.push(BatchPut {
                key: format!("lib:{tag}:{i:06}"),
                value: Bytes::from_static(b"0123456789"),
                expires_at: (i % 2 == 0).then_some(now + 3_600_000),
            });
        }
        batch
    };
    backend
        .put(
            "other",
            Bytes::from_static(b"v"),
            now,
            None,
            WriteLimit::UNBOUNDED,
        )
        .await
        .unwrap();
    let first = generation("a", 60_000);
    let out = backend
        .write_batch(&first, WriteLimit::UNBOUNDED)
        .await
        .unwrap();
    let BatchOutcome::Applied { written, usage, .. } = out else {
        panic!("{out:?}");
    };
    assert_eq!(written, 60_000);
    assert_eq!(usage.entries, 60_001);
    assert_eq!(usage.bytes, first.put_bytes() + 6);
    // The next generation replaces the first whole, evicting "other" to fit.
    let second = generation("b", 40_000);
    let limit = WriteLimit::evict_to(second.put_bytes(), EvictionPolicy::LeastRecentlyStored);
    match backend.write_batch(&second, limit).await.unwrap() {
        BatchOutcome::Applied {
            removed,
            written,
            evicted,
            usage,
            ..
        } => {
            assert_eq!(removed.entries, 60_000);
            assert_eq!(written, 40_000);
            assert_eq!(evicted.entries, 1);
            assert_eq!(
                usage,
                Usage {
                    entries: 40_000,
                    bytes: second.put_bytes()
                }
            );
        }
        other => panic!("{other:?}"),
    }
    // One byte short of fitting: refused, nothing changes.
    let third = generation("c", 40_001);
    let limit = WriteLimit::evict_to(third.put_bytes() - 1, EvictionPolicy::LeastRecentlyStored);
    assert!(matches!(
        backend.write_batch(&third, limit).await.unwrap(),
        BatchOutcome::Refused { .. }
    ));
    assert_eq!(
        backend.keys("lib:b:", now, usize::MAX).await.unwrap().len(),
        40_000
    );
    assert!(backend.keys("lib:c:", now, 1).await.unwrap().is_empty());
    assert_eq!(
        backend.integrity_check().await.unwrap(),
        Vec::<String>::new()
    );
}

/// Keys of `prefix` that hold staged values (`<prefix>t:...`).
fn staged_keys(conn: &mut redis::Connection, prefix: &str) -> Vec<String> {
    redis::cmd("KEYS")
        .arg(format!("{prefix}t:*"))
        .query(conn)
        .unwrap()
}

/// Large values travel staged under keys of their own; whatever happens to the write (stored,
/// replaced, refused, overwritten within its batch), no staged key is left behind and the
/// counters hold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staged_values_are_taken_or_dropped() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let prefix = unique_prefix("staged");
    let b = connect(&server.url(), &prefix).await;
    let mut conn = redis::Client::open(server.url())
        .unwrap()
        .get_connection()
        .unwrap();
    let big = |fill: u8, len: usize| Bytes::from(vec![fill; len]);
    // Stored, then replaced by another large value, then by a small one.
    b.put("a", big(1, 100_000), 1, None, WriteLimit::UNBOUNDED)
        .await
        .unwrap();
    let got = b.get("a", 2).await.unwrap().unwrap();
    assert_eq!((got.value.len(), got.meta.size), (100_000, 100_001));
    b.put("a", big(2, 60_000), 2, Some(10_000), WriteLimit::UNBOUNDED)
        .await
        .unwrap();
    assert_eq!(b.get("a", 3).await.unwrap().unwrap().value, big(2, 60_000));
    // Refused (policy none): nothing changes, the staged value is dropped.
    let out = b
        .put(
            "b",
            big(3, 50_000),
            3,
            None,
            WriteLimit::refuse_above(70_000),
        )
        .await
        .unwrap();
    assert!(matches!(out, PutOutcome::Refused { .. }), "{out:?}");
    assert!(b.get("b", 4).await.unwrap().is_none());
    // A batch writing one key twice (the last put wins) and other large values.
    let mut batch = Batch::new(5);
    for (key, fill) in [("c", 4u8), ("d", 5), ("c", 6)] {
        batch.puts.push(BatchPut {
            key: key.into(),
            value: big(fill, 30_000),
            expires_at: None,
        });
    }
    batch.puts.push(BatchPut {
        key: "e".into(),
        value: Bytes::from_static(b"small"),
        expires_at: None,
    });
    let out = b.write_batch(&batch, WriteLimit::UNBOUNDED).await.unwrap();
    assert!(
        matches!(out, BatchOutcome::Applied { written: 3, .. }),
        "{out:?}"
    );
    assert_eq!(b.get("c", 6).await.unwrap().unwrap().value, big(6, 30_000));
    assert_eq!(b.get("d", 6).await.unwrap().unwrap().value, big(5, 30_000));
    // A batch that cannot fit: refused whole, its staged values dropped.
    let out = b
        .write_batch(&batch, WriteLimit::refuse_above(50_000))
        .await
        .unwrap();
    assert!(matches!(out, BatchOutcome::Refused { .. }), "{out:?}");
    // Revalidation compares the head and length of a large value without reading it.
    let head = &big(6, 30_000)[..19];
    assert!(matches!(
        b.get_if_changed("c", 6, head, 30_000).await.unwrap(),
        Some(plexcache_core::Revalidated::Same(_))
    ));
    assert!(matches!(
        b.get_if_changed("c", 6, head, 29_999).await.unwrap(),
        Some(plexcache_core::Revalidated::Changed(e)) if e.value.len() == 30_000
    ));
    assert_eq!(staged_keys(&mut conn, &prefix), Vec::<String>::new());
    assert_eq!(b.usage().await.unwrap(), direct_usage(&b).await);
    assert_eq!(b.integrity_check().await.unwrap(), Vec::<String>::new());
    b.destroy().await.unwrap();
}

/// Readers racing writers of large values on the same keys (two connections, as two
/// processes) always get a value with the metadata written with it: the value's length is
/// its metadata's size minus the key, and every byte is the one fill of one write.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reads_racing_large_writes_see_one_write_whole() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let prefix = unique_prefix("race");
    let writer = connect(&server.url(), &prefix).await;
    let reader = connect(&server.url(), &prefix).await;
    let keys = ["x", "y"];
    let w = tokio::spawn({
        let writer = writer.clone();
        async move {
            for i in 0..300u64 {
                let key = keys[(i % 2) as usize];
                // Lengths and fills differ per write, so a mix of two writes shows.
                let len = 5_000 + (i as usize * 7_919) % 60_000;
                let value = Bytes::from(vec![(i % 251) as u8; len]);
                writer
                    .put(key, value, i + 1, None, WriteLimit::UNBOUNDED)
                    .await
                    .unwrap();
            }
        }
    });
    let mut seen = 0;
    while !w.is_finished() {
        for key in keys {
            if let Some(e) = reader.get(key, 0).await.unwrap() {
                assert_eq!(e.meta.size, (key.len() + e.value.len()) as u64);
                let fill = e.value[0];
                assert!(e.value.iter().all(|&x| x == fill), "one write's bytes");
                assert_eq!(u64::from(fill), (e.meta.stored_at - 1) % 251);
                seen += 1;
            }
        }
    }
    w.await.unwrap();
    assert!(seen > 0);
    assert_eq!(
        writer.integrity_check().await.unwrap(),
        Vec::<String>::new()
    );
}

/// An expiry so far ahead that the server-side safety net (`expires_at` + grace) is past what
/// a Redis expiry or a Lua integer holds: the value is kept (with no server-side expiry), by a
/// put and by a batch, small and staged alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn far_future_expiries_keep_their_values() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let backend = connect(&server.url(), &unique_prefix("far")).await;
    let now = now_ms();
    for at in [u64::MAX / 2, u64::MAX - 1, 1 << 53, now + (1 << 50)] {
        for len in [10usize, 100_000] {
            let put_key = format!("put-{at}-{len}");
            backend
                .put(
                    &put_key,
                    Bytes::from(vec![1u8; len]),
                    now,
                    Some(at),
                    WriteLimit::UNBOUNDED,
                )
                .await
                .unwrap();
            let batch_key = format!("batch-{at}-{len}");
            let mut batch = Batch::new(now);
            batch.puts.push(BatchPut {
                key: batch_key.clone(),
                value: Bytes::from(vec![2u8; len]),
                expires_at: Some(at),
            });
            backend
                .write_batch(&batch, WriteLimit::UNBOUNDED)
                .await
                .unwrap();
            for key in [&put_key, &batch_key] {
                let e = backend.get(key, now).await.unwrap();
                assert_eq!(
                    e.map(|e| e.value.len()),
                    Some(len),
                    "{key}: the value is kept"
                );
            }
        }
    }
    assert_eq!(
        backend.integrity_check().await.unwrap(),
        Vec::<String>::new()
    );
    assert_eq!(direct_usage(&backend).await, backend.usage().await.unwrap());
    backend.destroy().await.unwrap();
}

/// A cache written by an earlier build keeps its counters in a hash `counters` of their own
/// and every entry in the three indexes of read entries: the first connection of this build
/// moves the counters, and the entries stay readable, evictable and exactly counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cache_of_the_earlier_layout_is_taken_over() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let client = redis::Client::open(server.url()).unwrap();
    let mut conn = client.get_connection().unwrap();
    let prefix = unique_prefix("layout");
    let now = now_ms();
    // Two entries as the earlier build wrote them (values of 8 bytes, keys of 2).
    for (seq, k) in [(1u64, "k1"), (2, "k2")] {
        let sa = now + seq;
        let mem = format!("{seq:020}{k}");
        let _: () = redis::pipe()
            .cmd("HSET")
            .arg(format!("{prefix}meta"))
            .arg(k)
            .arg(format!("{sa},,{sa},0,10,{seq}"))
            .cmd("SET")
            .arg(format!("{prefix}v:{k}"))
            .arg("8 bytes!")
            .cmd("ZADD")
            .arg(format!("{prefix}z:lrs"))
            .arg(sa)
            .arg(&mem)
            .cmd("ZADD")
            .arg(format!("{prefix}z:lru"))
            .arg(sa)
            .arg(&mem)
            .cmd("ZADD")
            .arg(format!("{prefix}z:lfu"))
            .arg(0)
            .arg(format!("{sa:020}{mem}"))
            .cmd("ZADD")
            .arg(format!("{prefix}z:keys"))
            .arg(0)
            .arg(k)
            .query(&mut conn)
            .unwrap();
    }
    let _: () = redis::cmd("HSET")
        .arg(format!("{prefix}counters"))
        .arg("entries")
        .arg(2)
        .arg("bytes")
        .arg(20)
        .arg("seq")
        .arg(2)
        .query(&mut conn)
        .unwrap();
    let backend = connect(&server.url(), &prefix).await;
    let old: u64 = redis::cmd("EXISTS")
        .arg(format!("{prefix}counters"))
        .query(&mut conn)
        .unwrap();
    assert_eq!(old, 0, "the old counters hash is gone");
    assert_eq!(
        backend.usage().await.unwrap(),
        Usage {
            entries: 2,
            bytes: 20
        }
    );
    assert_eq!(
        backend.integrity_check().await.unwrap(),
        Vec::<String>::new()
    );
    assert_eq!(
        backend.get("k1", now).await.unwrap().unwrap().value,
        Bytes::from_static(b"8 bytes!")
    );
    // A new write goes after both in store order: the oldest, k1, is evicted first.
    let out = backend
        .put(
            "k3",
            Bytes::from_static(b"8 bytes!"),
            now + 3,
            None,
            WriteLimit::evict_to(20, EvictionPolicy::LeastRecentlyStored),
        )
        .await
        .unwrap();
    let PutOutcome::Stored { evicted, usage, .. } = out else {
        panic!("{out:?}");
    };
    assert_eq!((evicted.entries, usage.bytes), (1, 20));
    assert_eq!(backend.keys("", now, 10).await.unwrap(), ["k2", "k3"]);
    assert_eq!(
        backend.integrity_check().await.unwrap(),
        Vec::<String>::new()
    );
    // Connecting again changes nothing.
    let again = connect(&server.url(), &prefix).await;
    assert_eq!(again.usage().await.unwrap(), usage);
    backend.destroy().await.unwrap();
}

/// A user who may not load functions (`-function`) still gets a working cache: its scripts
/// run by `EVALSHA`. Whoever connects first loads the library when a call needs it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_who_may_not_load_functions_runs_scripts_by_evalsha() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let client = redis::Client::open(server.url()).unwrap();
    let mut conn = client.get_connection().unwrap();
    let _: () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg("limited")
        .arg("on")
        .arg(">secret")
        .arg("~*")
        .arg("&*")
        .arg("+@all")
        .arg("-function")
        .query(&mut conn)
        .unwrap();
    let _: () = redis::cmd("FUNCTION")
        .arg("FLUSH")
        .query(&mut conn)
        .unwrap();
    let url = server.url().replace("redis://", "redis://limited:secret@");
    let backend = connect(&url, &unique_prefix("acl")).await;
    let now = now_ms();
    backend
        .put(
            "k",
            Bytes::from_static(b"v"),
            now,
            Some(now + 60_000),
            WriteLimit::evict_to(1_000, EvictionPolicy::LeastRecentlyStored),
        )
        .await
        .unwrap();
    assert_eq!(
        backend.get("k", now).await.unwrap().map(|e| e.value),
        Some(Bytes::from_static(b"v"))
    );
    assert_eq!(backend.usage().await.unwrap().entries, 1);
    let libraries: Vec<redis::Value> = redis::cmd("FUNCTION").arg("LIST").query(&mut conn).unwrap();
    assert!(libraries.is_empty(), "nothing loaded by the limited user");
    // A user who may load them does, on its first call.
    let full = connect(&server.url(), &unique_prefix("acl-full")).await;
    assert_eq!(full.usage().await.unwrap().entries, 0);
    let libraries: Vec<redis::Value> = redis::cmd("FUNCTION").arg("LIST").query(&mut conn).unwrap();
    assert_eq!(libraries.len(), 1, "the library is loaded");
    backend.destroy().await.unwrap();
}
