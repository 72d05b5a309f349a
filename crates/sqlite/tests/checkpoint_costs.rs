//! Measures library-list writes and the mixed workload through `Cache` for a few WAL
//! auto-checkpoint thresholds. Ignored by default (timing):
//!
//! `cargo test --release -p plexcache-sqlite --test checkpoint_costs -- --ignored --nocapture`
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::Instant;

use plexcache_core::Cache;
use plexcache_sqlite::SqliteBackend;

#[derive(serde::Serialize, serde::Deserialize, Clone)]
struct Item {
    rating_key: String,
    key: String,
    title: String,
    file_paths: Vec<String>,
    year: Option<u32>,
}
plexcache_core::cache_value!(Item, "plexcache.test.Item", 1);

fn item(i: u64) -> Item {
    Item {
        rating_key: (10_000 + i).to_string(),
        key: format!("/library/metadata/{}", 10_000 + i),
        title: format!("Movie {i} (Director's Cut)"),
        file_paths: vec![format!(
            "/data/media/movies/Movie {i} ({})/Movie {i}.mkv",
            1950 + i % 75
        )],
        year: Some(1950 + (i % 75) as u32),
    }
}

#[test]
#[ignore = "timing; run explicitly with --release --ignored --nocapture"]
fn checkpoint_costs() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let root = tempfile::tempdir().unwrap();
    let lib: Vec<Item> = (0..1_000).map(item).collect();
    let small: Vec<Vec<Item>> = (0..1_000).map(|i| (0..i % 4).map(item).collect()).collect();
    let variants = [250u32, 1_000, 4_000, 16_000];
    let caches: Vec<_> = variants
        .iter()
        .map(|p| {
            let b = SqliteBackend::builder(root.path().join(format!("p{p}")))
                .checkpoint_pages(*p)
                .open()
                .unwrap();
            Cache::builder(b).size_limit(1 << 40).build().unwrap()
        })
        .collect();
    let mut best: BTreeMap<String, f64> = BTreeMap::new();
    for _ in 0..5 {
        for (p, cache) in variants.iter().zip(&caches) {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..100 {
                    cache.set("library:Movies:all", &lib).await.unwrap();
                }
                let us = start.elapsed().as_secs_f64() * 1e6 / 100.0;
                let e = best
                    .entry(format!("set_1000 pages={p:>5}"))
                    .or_insert(f64::MAX);
                *e = e.min(us);
                let start = Instant::now();
                for i in 0..1_000u64 {
                    cache
                        .set(
                            &format!("search:Movies:{}", i * 7 % 1000),
                            &small[i as usize],
                        )
                        .await
                        .unwrap();
                }
                let us = start.elapsed().as_secs_f64() * 1e6 / 1000.0;
                let e = best
                    .entry(format!("set_small pages={p:>5}"))
                    .or_insert(f64::MAX);
                *e = e.min(us);
            });
        }
    }
    for (name, us) in &best {
        println!("{name:<28} {us:9.1} us");
    }
}
