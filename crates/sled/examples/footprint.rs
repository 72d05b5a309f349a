//! Disk footprint of a sled cache under sustained churn against its size limit.
//!
//! Writes `CHURN_MB` (default 500) MB of Plex-shaped values over a key space much larger than
//! what fits, through `Cache<SledBackend>` with a `LIMIT_MB` (default 50) MB size limit, and
//! prints the directory size (allocated blocks, as `du` counts) as it goes, then after a
//! flush, a close, a reopen and a `clear()`. `WORKLOAD=mixed` (default): 90% search results
//! of 0-3 items, 10% library lists of 100-300 items; `WORKLOAD=small`: search results only.
//! (1 MB = 10^6 bytes.)
//!
//! ```text
//! cargo run --release -p plexcache-sled --example footprint
//! WORKLOAD=small LIMIT_MB=50 CHURN_MB=500 cargo run --release -p plexcache-sled --example footprint
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use std::path::Path;
use std::time::Instant;

use plexcache_core::{Cache, CacheBackend};
use plexcache_sled::SledBackend;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Item {
    rating_key: String,
    key: String,
    title: String,
    file_paths: Vec<String>,
}
plexcache_core::cache_value!(Item, "footprint.Item", 1);

fn item(i: u64) -> Item {
    Item {
        rating_key: (10_000 + i).to_string(),
        key: format!("/library/metadata/{}", 10_000 + i),
        title: format!("The Movie Number {i}"),
        file_paths: vec![format!(
            "/data/media/movies/The Movie Number {i} ({})/The Movie Number {i}.mkv",
            1950 + i % 75
        )],
    }
}

fn du(path: &Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let (mut alloc, mut apparent) = (0, 0);
    for e in std::fs::read_dir(path).unwrap() {
        let e = e.unwrap();
        let Ok(m) = e.metadata() else { continue };
        if m.is_dir() {
            let (a, b) = du(&e.path());
            alloc += a;
            apparent += b;
        } else {
            alloc += m.blocks() * 512;
            apparent += m.len();
        }
    }
    (alloc, apparent)
}

fn mb(b: u64) -> f64 {
    b as f64 / 1e6
}

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let limit = env("LIMIT_MB", 50) * 1_000_000;
    let churn = env("CHURN_MB", 500) * 1_000_000;
    // WORKLOAD=mixed (default): 10% library lists of 100-300 items over 2,000 libraries, 90%
    // search results of 0-3 items over 200,000 titles. WORKLOAD=small: search results only,
    // over 1,000,000 titles.
    let small_only = std::env::var("WORKLOAD").is_ok_and(|w| w == "small");
    let search_keys: u64 = if small_only { 1_000_000 } else { 200_000 };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cache");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let cache = Cache::builder(SledBackend::open(&path).unwrap())
        .size_limit(limit)
        .build()
        .unwrap();
    println!(
        "workload {}, size limit {:.0} MB, churn {:.0} MB",
        if small_only { "small" } else { "mixed" },
        mb(limit),
        mb(churn)
    );
    println!(
        "| written MB | logical MB | entries | on disk MB (du) | of which blobs/ MB | disk / limit |"
    );
    println!("|---:|---:|---:|---:|---:|---:|");
    let started = Instant::now();
    let (mut written, mut next_report, mut i) = (0u64, 0u64, 0u64);
    let mut rng = SmallRng::seed_from_u64(0x9e37_79b9_7f4a_7c15);
    let mut peak = 0u64;
    rt.block_on(async {
        while written < churn {
            let x: u64 = rng.random();
            let library = !small_only && x.is_multiple_of(10);
            let (key, value): (String, Vec<Item>) = if library {
                let n = 100 + (x >> 8) % 200;
                (
                    format!("library:Lib{}:all", (x >> 20) % 2_000),
                    (0..n).map(|j| item(x % 100_000 + j)).collect(),
                )
            } else {
                (
                    format!("search:Movies:title {}", (x >> 20) % search_keys),
                    (0..x % 4).map(|j| item(x % 100_000 + j)).collect(),
                )
            };
            cache.set(&key, &value).await.unwrap();
            let raw = cache.get_raw(&key).await.unwrap().unwrap();
            written += raw.1.size;
            i += 1;
            if written >= next_report {
                let usage = cache.backend().usage().await.unwrap();
                let (alloc, _) = du(&path);
                let (blobs, _) = du(&path.join("blobs"));
                peak = peak.max(alloc);
                println!(
                    "| {:.0} | {:.1} | {} | {:.1} | {:.1} | {:.2}x |",
                    mb(written),
                    mb(usage.bytes),
                    usage.entries,
                    mb(alloc),
                    mb(blobs),
                    alloc as f64 / limit as f64
                );
                next_report += churn / 20;
            }
        }
        cache.flush().await.unwrap();
    });
    let usage = rt.block_on(cache.backend().usage()).unwrap();
    let (alloc, apparent) = du(&path);
    peak = peak.max(alloc);
    println!(
        "\n{i} writes in {:.1?}; after flush: logical {:.1} MB in {} entries, on disk {:.1} MB (apparent {:.1} MB)",
        started.elapsed(),
        mb(usage.bytes),
        usage.entries,
        mb(alloc),
        mb(apparent)
    );
    drop(cache);
    let (alloc, apparent) = du(&path);
    println!(
        "after close: on disk {:.1} MB (apparent {:.1} MB)",
        mb(alloc),
        mb(apparent)
    );
    let started = Instant::now();
    let b = SledBackend::open(&path).unwrap();
    let opened = started.elapsed();
    let (alloc, apparent) = du(&path);
    println!(
        "after reopen ({opened:.1?}): on disk {:.1} MB (apparent {:.1} MB); peak during churn {:.1} MB = {:.2}x the limit",
        mb(alloc),
        mb(apparent),
        mb(peak),
        peak as f64 / limit as f64
    );
    // And after clear(): does sled give the space back?
    let cache = Cache::new(b);
    rt.block_on(async {
        cache.clear().await.unwrap();
        cache.flush().await.unwrap();
    });
    std::thread::sleep(std::time::Duration::from_secs(3));
    let (alloc, _) = du(&path);
    println!("after clear() and 3 s: on disk {:.1} MB", mb(alloc));
    drop(cache);
    let (alloc, _) = du(&path);
    println!("after clear() and close: on disk {:.1} MB", mb(alloc));
}
