//! Read path costs, in one process: raw sled get vs `SledBackend::get` vs `Cache::get`.
//! `MODE=raw|backend|cache|all` (default all) so one path can be profiled alone.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]
use std::hint::black_box;
use std::time::Instant;

use plexcache_core::{Cache, CacheBackend, Clock, SystemClock, codec};
use plexcache_sled::SledBackend;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Item {
    rating_key: String,
    key: String,
    title: String,
    file_paths: Vec<String>,
    year: Option<u32>,
}
plexcache_core::cache_value!(Item, "getcost.Item", 1);

fn result(i: u64) -> Vec<Item> {
    (0..i % 4)
        .map(|j| Item {
            rating_key: (10_000 + i * 4 + j).to_string(),
            key: format!("/library/metadata/{}", 10_000 + i * 4 + j),
            title: format!("The Movie Number {i}"),
            file_paths: vec![format!("/data/media/movies/The Movie Number {i}/movie.mkv")],
            year: Some(1990),
        })
        .collect()
}

fn key(i: u64) -> String {
    format!("search:Movies:title {i}")
}

fn main() {
    let mode = std::env::var("MODE").unwrap_or_else(|_| "all".into());
    let rounds: u64 = std::env::var("ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let n = 10_000u64;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let raw = sled::Config::new()
        .path(dir.path().join("raw"))
        .cache_capacity(64 << 20)
        .open()
        .unwrap();
    let tree = raw.open_tree("t").unwrap();
    let cache = Cache::new(SledBackend::open(dir.path().join("cache")).unwrap());
    rt.block_on(async {
        for i in 0..n {
            tree.insert(key(i), &codec::encode(&result(i)).unwrap()[..])
                .unwrap();
            cache.set(&key(i), &result(i)).await.unwrap();
        }
    });
    let now = SystemClock.now_millis();
    if mode == "all" || mode == "raw" {
        let t = Instant::now();
        let mut i = 0;
        for _ in 0..rounds {
            i = (i + 7919) % n;
            black_box(tree.get(key(i)).unwrap().unwrap());
        }
        println!("raw sled get:     {:?}", t.elapsed() / rounds as u32);
    }
    if mode == "all" || mode == "backend" {
        let b = cache.backend();
        let t = Instant::now();
        rt.block_on(async {
            let mut i = 0;
            for _ in 0..rounds {
                i = (i + 7919) % n;
                black_box(b.get(&key(i), now).await.unwrap().unwrap());
            }
        });
        println!("backend get:      {:?}", t.elapsed() / rounds as u32);
    }
    if mode == "all" || mode == "cache" {
        let t = Instant::now();
        rt.block_on(async {
            let mut i = 0;
            for _ in 0..rounds {
                i = (i + 7919) % n;
                let v: Vec<Item> = cache.get(&key(i)).await.unwrap().unwrap();
                black_box(v);
            }
        });
        println!("cache get:        {:?}", t.elapsed() / rounds as u32);
    }
    if mode == "all" || mode == "decode" {
        let bytes: Vec<_> = (0..n).map(|i| codec::encode(&result(i)).unwrap()).collect();
        let t = Instant::now();
        let mut i = 0;
        for _ in 0..rounds {
            i = (i + 7919) % n;
            let v: Vec<Item> = codec::decode(&bytes[i as usize]).unwrap();
            black_box(v);
        }
        println!("decode only:      {:?}", t.elapsed() / rounds as u32);
    }
}
