//! Soak: several OS processes share one cache: this test binary re-executes itself in worker
//! mode (`PLEXCACHE_SQLITE_WORKER=<dir>:<id>`). Each of the four workers runs eight tasks of
//! mixed get/set/remove/expire through `Cache<SqliteBackend>` under a tight size limit for
//! `PLEXCACHE_MP_SECS` seconds (5 in the default run, 60 in the ignored
//! `soak_for_a_minute`) and prints its session counters as one JSON line. No operation may
//! surface an error; afterwards the stored counters must equal a direct count of the rows, the
//! size limit must hold, `Cache::check()` must find nothing wrong, and the persistent hit/miss
//! counters must equal the sum of what the workers counted.
//!
//! ```sh
//! cargo test -p plexcache-sqlite --test multiprocess -- --include-ignored --nocapture
//! ```
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use plexcache_core::{Cache, CacheBackend, Counters, EvictionPolicy, Ttl};
use plexcache_sqlite::SqliteBackend;

const WORKER_ENV: &str = "PLEXCACHE_SQLITE_WORKER";
const SECS_ENV: &str = "PLEXCACHE_MP_SECS";
const PROCESSES: usize = 4;
const TASKS: u64 = 8;
const SIZE_LIMIT: u64 = 256 * 1024;
const RESULT_PREFIX: &str = "PLEXCACHE_WORKER_RESULT ";

/// `PLEXCACHE_MP_SECS`, else `default` seconds.
fn duration(default: f64) -> Duration {
    let secs = std::env::var(SECS_ENV)
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .unwrap_or(default);
    Duration::from_secs_f64(secs)
}

fn policy_for(id: u64) -> EvictionPolicy {
    match id % 3 {
        0 => EvictionPolicy::LeastRecentlyStored,
        1 => EvictionPolicy::LeastRecentlyUsed,
        _ => EvictionPolicy::LeastFrequentlyUsed,
    }
}

/// The worker: runs only when this binary was started with the worker variable set.
#[test]
fn worker_entry() {
    let Ok(spec) = std::env::var(WORKER_ENV) else {
        return;
    };
    let (dir, id) = spec.rsplit_once(':').expect("dir:id");
    let id: u64 = id.parse().expect("worker id");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (counters, ops, errors) = rt.block_on(run_worker(dir.into(), id));
    let line = serde_json::json!({
        "id": id,
        "ops": ops,
        "errors": errors,
        "counters": counters,
    });
    println!("\n{RESULT_PREFIX}{line}");
}

async fn run_worker(dir: std::path::PathBuf, id: u64) -> (Counters, u64, Vec<String>) {
    let backend = SqliteBackend::builder(dir)
        .open_async()
        .await
        .expect("open");
    let cache = Cache::builder(backend)
        .size_limit(SIZE_LIMIT)
        .eviction_policy(policy_for(id))
        .stats_flush_interval(Duration::from_millis(200))
        .build()
        .unwrap();
    // The parent always sets the duration for its workers.
    let deadline = Instant::now() + duration(0.0);
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let cache = cache.clone();
        tasks.push(tokio::spawn(async move {
            let mut rng = SmallRng::seed_from_u64(id * 131 + t + 1);
            let mut ops = 0u64;
            let mut errors = Vec::new();
            while Instant::now() < deadline {
                let x: u64 = rng.random();
                let key = format!("k:{}:{}", x % 7, (x >> 8) % 64);
                let r = match (x >> 20) % 100 {
                    0..=54 => cache.get::<String>(&key).await.map(|_| ()),
                    55..=84 => {
                        let value = "v".repeat(((x >> 32) % 6000) as usize);
                        let ttl = if (x >> 40).is_multiple_of(10) {
                            Ttl::After(Duration::from_millis(50))
                        } else {
                            Ttl::Default
                        };
                        cache.set_with_ttl(&key, &value, ttl).await
                    }
                    85..=96 => cache.remove(&key).await.map(|_| ()),
                    97 => cache
                        .remove_prefix(&format!("k:{}:", x % 7))
                        .await
                        .map(|_| ()),
                    _ => cache.expire().await.map(|_| ()),
                };
                ops += 1;
                if let Err(e) = r {
                    errors.push(e.to_string());
                }
            }
            (ops, errors)
        }));
    }
    let mut ops = 0;
    let mut errors = Vec::new();
    for t in tasks {
        let (o, e) = t.await.unwrap();
        ops += o;
        errors.extend(e);
    }
    if let Err(e) = cache.flush().await {
        errors.push(format!("flush: {e}"));
    }
    let counters = cache.stats().await.map(|s| s.session).unwrap_or_default();
    (counters, ops, errors)
}

#[test]
fn four_processes_share_one_cache() {
    if std::env::var(WORKER_ENV).is_ok() {
        return;
    }
    soak(duration(5.0));
}

#[test]
#[ignore = "long: a minute of four processes with eight tasks each"]
fn soak_for_a_minute() {
    if std::env::var(WORKER_ENV).is_ok() {
        return;
    }
    soak(duration(60.0));
}

fn soak(duration: Duration) {
    let dir = tempfile::tempdir().unwrap();
    let cache_dir = dir.path().join("shared");
    // Create the store first, so the workers also exercise concurrent opens of an existing one.
    drop(SqliteBackend::open(&cache_dir).unwrap());
    let exe = std::env::current_exe().unwrap();
    let started = Instant::now();
    let children: Vec<_> = (0..PROCESSES)
        .map(|id| {
            Command::new(&exe)
                .args([
                    "--exact",
                    "worker_entry",
                    "--nocapture",
                    "--test-threads",
                    "1",
                ])
                .env(WORKER_ENV, format!("{}:{id}", cache_dir.display()))
                .env(SECS_ENV, duration.as_secs_f64().to_string())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut total = Counters::default();
    let mut total_ops = 0;
    for child in children {
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "worker failed: {}\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let line = stdout
            .lines()
            .find_map(|l| l.split_once(RESULT_PREFIX).map(|(_, json)| json))
            .unwrap_or_else(|| panic!("no result line in worker output:\n{stdout}"));
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let errors = v["errors"].as_array().unwrap();
        assert!(
            errors.is_empty(),
            "worker {} surfaced errors: {errors:?}",
            v["id"]
        );
        let c: Counters = serde_json::from_value(v["counters"].clone()).unwrap();
        total_ops += v["ops"].as_u64().unwrap();
        total = total.saturating_add(&c);
    }
    let elapsed = started.elapsed();
    assert!(elapsed >= duration, "ran {elapsed:?}");
    eprintln!(
        "{PROCESSES} processes x {TASKS} tasks, {total_ops} operations in {elapsed:.1?}: {total:?}"
    );
    assert!(total.hits > 0 && total.misses > 0 && total.sets > 0 && total.evictions > 0);

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let backend = SqliteBackend::open(&cache_dir).unwrap();
        let usage = backend.usage().await.unwrap();
        let stored = backend.load_stats().await.unwrap();
        let conn = rusqlite_count(backend.path());
        assert_eq!(
            (usage.entries, usage.bytes),
            conn,
            "stored counters equal COUNT(*) and SUM(size)"
        );
        assert!(usage.bytes <= SIZE_LIMIT, "size limit holds: {usage:?}");
        assert_eq!(stored.hits, total.hits, "persistent hits = sum of sessions");
        assert_eq!(
            stored.misses, total.misses,
            "persistent misses = sum of sessions"
        );
        assert_eq!(stored.sets, total.sets, "persistent sets = sum of sessions");
        assert_eq!(stored.evictions, total.evictions, "persistent evictions");
        // The engine finds no damage, every value decodes, and the counters equal a scan.
        let cache = Cache::builder(backend)
            .size_limit(SIZE_LIMIT)
            .build()
            .unwrap();
        let report = cache.check().await.unwrap();
        assert!(report.is_ok(), "check after the soak: {report:?}");
        assert!(report.usage.bytes <= SIZE_LIMIT, "{report:?}");
    });
}

fn rusqlite_count(path: &std::path::Path) -> (u64, u64) {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.query_row(
        "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM entries",
        [],
        |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64)),
    )
    .unwrap()
}
