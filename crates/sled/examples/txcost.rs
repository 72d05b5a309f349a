//! Measures what sled 0.34 charges for atomicity: plain inserts vs batches vs transactions.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]
use std::time::Instant;

use sled::Transactional;

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let db = sled::Config::new()
        .path(dir.path())
        .cache_capacity(64 << 20)
        .open()
        .unwrap();
    let trees: Vec<sled::Tree> = (0..7)
        .map(|i| db.open_tree(format!("t{i}")).unwrap())
        .collect();
    let n = 20_000u64;
    let v = [7u8; 200];
    let t = Instant::now();
    for i in 0..n {
        trees[0].insert(i.to_be_bytes(), &v[..]).unwrap();
    }
    println!("plain insert:        {:?}/op", t.elapsed() / n as u32);
    let t = Instant::now();
    for i in 0..n {
        for tr in &trees {
            tr.insert(i.to_be_bytes(), &v[..]).unwrap();
        }
    }
    println!("7 plain inserts:     {:?}/op", t.elapsed() / n as u32);
    let t = Instant::now();
    for i in 0..n {
        let mut b = sled::Batch::default();
        b.insert(&i.to_be_bytes(), &v[..]);
        trees[0].apply_batch(b).unwrap();
    }
    println!("batch of 1:          {:?}/op", t.elapsed() / n as u32);
    let t = Instant::now();
    for i in 0..n {
        trees[0]
            .transaction(|t| {
                t.insert(&i.to_be_bytes(), &v[..])?;
                Ok::<_, sled::transaction::ConflictableTransactionError<()>>(())
            })
            .unwrap();
    }
    println!("1-tree tx:           {:?}/op", t.elapsed() / n as u32);
    let t = Instant::now();
    for i in 0..n {
        (
            &trees[0], &trees[1], &trees[2], &trees[3], &trees[4], &trees[5], &trees[6],
        )
            .transaction(|(a, b, c, d, e, f, g)| {
                for t in [a, b, c, d, e, f, g] {
                    t.insert(&i.to_be_bytes(), &v[..])?;
                }
                Ok::<_, sled::transaction::ConflictableTransactionError<()>>(())
            })
            .unwrap();
    }
    println!("7-tree tx:           {:?}/op", t.elapsed() / n as u32);
    let t = Instant::now();
    for i in 0..n {
        trees[0]
            .transaction(|t| {
                for j in 0..7u64 {
                    t.insert(&(i * 8 + j).to_be_bytes(), &v[..])?;
                }
                Ok::<_, sled::transaction::ConflictableTransactionError<()>>(())
            })
            .unwrap();
    }
    println!("1-tree tx, 7 keys:   {:?}/op", t.elapsed() / n as u32);
    let t = Instant::now();
    for i in 0..n {
        (
            &trees[0], &trees[1], &trees[2], &trees[3], &trees[4], &trees[5], &trees[6],
        )
            .transaction(|(a, _b, _c, _d, _e, _f, _g)| {
                a.insert(&(i * 8 + 3).to_be_bytes(), &v[..])?;
                Ok::<_, sled::transaction::ConflictableTransactionError<()>>(())
            })
            .unwrap();
    }
    println!("7-tree tx, 1 key:    {:?}/op", t.elapsed() / n as u32);
    let t = Instant::now();
    for i in 0..n / 100 {
        (
            &trees[0], &trees[1], &trees[2], &trees[3], &trees[4], &trees[5], &trees[6],
        )
            .transaction(|(a, b, c, d, e, f, g)| {
                for j in 0..100u64 {
                    for t in [a, b, c, d, e, f, g] {
                        t.insert(&(i * 100 + j).to_be_bytes(), &v[..])?;
                    }
                }
                Ok::<_, sled::transaction::ConflictableTransactionError<()>>(())
            })
            .unwrap();
    }
    println!("7-tree tx x100 keys: {:?}/key", t.elapsed() / n as u32);
    let t = Instant::now();
    for i in 0..n {
        trees[0].get(i.to_be_bytes()).unwrap();
    }
    println!("get:                 {:?}/op", t.elapsed() / n as u32);
    db.flush().unwrap();
    println!("disk: {} MiB", plexcache_sled_du(dir.path()) >> 20);
}

fn plexcache_sled_du(p: &std::path::Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::read_dir(p)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let m = e.metadata().unwrap();
            if m.is_dir() {
                plexcache_sled_du(&e.path())
            } else {
                m.blocks() * 512
            }
        })
        .sum()
}
