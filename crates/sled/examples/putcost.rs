//! Where the time of a write goes: backend put (fresh and replacing) vs raw sled.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]
use std::time::Instant;

use plexcache_core::{Bytes, CacheBackend};
use plexcache_sled::SledBackend;

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let b = SledBackend::open(dir.path().join("c")).unwrap();
    let n = 10_000u64;
    let v = Bytes::from(vec![7u8; 200]);
    rt.block_on(async {
        let t = Instant::now();
        for i in 0..n {
            b.put(
                &format!("search:Movies:title {i}"),
                v.clone(),
                1,
                None,
                None,
            )
            .await
            .unwrap();
        }
        println!("put fresh, no ttl:   {:?}/op", t.elapsed() / n as u32);
        let t = Instant::now();
        for i in 0..n {
            b.put(
                &format!("search:Movies:title {i}"),
                v.clone(),
                2,
                Some(10),
                None,
            )
            .await
            .unwrap();
        }
        println!("put replace, ttl:    {:?}/op", t.elapsed() / n as u32);
        let t = Instant::now();
        for i in 0..n {
            b.put(
                &format!("search:Movies:title {i}"),
                v.clone(),
                3,
                Some(11),
                None,
            )
            .await
            .unwrap();
        }
        println!("put replace, ttl:    {:?}/op", t.elapsed() / n as u32);
        let t = Instant::now();
        for _ in 0..n {
            b.purge_expired(5, 10).await.unwrap();
        }
        println!("purge (nothing due): {:?}/op", t.elapsed() / n as u32);
        let t = Instant::now();
        for i in 0..n {
            b.get(&format!("search:Movies:title {i}"), 5)
                .await
                .unwrap()
                .unwrap();
        }
        println!("get:                 {:?}/op", t.elapsed() / n as u32);
    });
}
