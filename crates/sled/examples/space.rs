//! Where sled's disk use comes from: the same write stream with plain inserts, one-tree
//! transactions, and multi-tree transactions. `cargo run --release --example space -- <mode>`
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]
use std::path::Path;
use std::time::Instant;

use sled::Transactional;
use sled::transaction::ConflictableTransactionError;

fn du(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    for e in std::fs::read_dir(path).unwrap() {
        let e = e.unwrap();
        let Ok(m) = e.metadata() else { continue };
        total += if m.is_dir() {
            du(&e.path())
        } else {
            m.blocks() * 512
        };
    }
    total
}

fn main() {
    let mode = std::env::args().nth(1).unwrap_or_else(|| "plain".into());
    let dir = tempfile::tempdir().unwrap();
    let high = std::env::args().nth(2).is_some_and(|m| m == "high");
    let db = sled::Config::new()
        .path(dir.path())
        .cache_capacity(64 << 20)
        .mode(if high {
            sled::Mode::HighThroughput
        } else {
            sled::Mode::LowSpace
        })
        .open()
        .unwrap();
    let mut seqs = std::collections::HashMap::<String, u64>::new();
    let trees: Vec<sled::Tree> = (0..7)
        .map(|i| db.open_tree(format!("t{i}")).unwrap())
        .collect();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut written = 0u64;
    let started = Instant::now();
    let mut n = 0u64;
    while written
        < std::env::var("MB")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(200)
            * 1_000_000
    {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let key = format!("search:Movies:title {}", x % 100_000);
        let value = vec![(x % 251) as u8; 100 + (x % 800) as usize];
        written += (key.len() + value.len()) as u64;
        n += 1;
        match mode.as_str() {
            "plain" => {
                trees[0].insert(key.as_bytes(), &value[..]).unwrap();
            }
            "plain4" => {
                trees[0].insert(key.as_bytes(), &value[..]).unwrap();
                for t in &trees[1..4] {
                    t.insert(format!("{n:016}{key}").as_bytes(), &[][..])
                        .unwrap();
                }
            }
            "batch" => {
                let mut b = sled::Batch::default();
                b.insert(key.as_bytes(), &value[..]);
                trees[0].apply_batch(b).unwrap();
            }
            "tx1" => {
                trees[0]
                    .transaction(|t| {
                        t.insert(key.as_bytes(), &value[..])?;
                        Ok::<_, ConflictableTransactionError<()>>(())
                    })
                    .unwrap();
            }
            "idx" => {
                // Like the cache: the entry plus three index entries, old ones removed.
                if let Some(old) = seqs.insert(key.clone(), n) {
                    for t in &trees[1..4] {
                        t.remove(format!("{old:016}{key}").as_bytes()).unwrap();
                    }
                }
                trees[0].insert(key.as_bytes(), &value[..]).unwrap();
                for t in &trees[1..4] {
                    t.insert(format!("{n:016}{key}").as_bytes(), &[][..])
                        .unwrap();
                }
            }
            "idxtx" => {
                let old = seqs.insert(key.clone(), n);
                (&trees[0], &trees[1], &trees[2], &trees[3])
                    .transaction(|(a, b, c, d)| {
                        if let Some(old) = old {
                            for t in [b, c, d] {
                                t.remove(format!("{old:016}{key}").as_bytes())?;
                            }
                        }
                        a.insert(key.as_bytes(), &value[..])?;
                        for t in [b, c, d] {
                            t.insert(format!("{n:016}{key}").as_bytes(), &[][..])?;
                        }
                        Ok::<_, ConflictableTransactionError<()>>(())
                    })
                    .unwrap();
            }
            "tx4" => {
                (&trees[0], &trees[1], &trees[2], &trees[3])
                    .transaction(|(a, b, c, d)| {
                        a.insert(key.as_bytes(), &value[..])?;
                        for t in [b, c, d] {
                            t.insert(format!("{n:016}{key}").as_bytes(), &[][..])?;
                        }
                        Ok::<_, ConflictableTransactionError<()>>(())
                    })
                    .unwrap();
            }
            _ => panic!("mode"),
        }
        if n % 50_000 == 0 {
            println!(
                "{mode}: {} MB written, {} MB on disk",
                written / 1_000_000,
                du(dir.path()) / 1_000_000
            );
        }
    }
    db.flush().unwrap();
    println!(
        "{mode}: {n} writes, {} MB in {:.1?}; on disk {} MB; live data about {} MB",
        written / 1_000_000,
        started.elapsed(),
        du(dir.path()) / 1_000_000,
        100_000 * 520 / 1_000_000
    );
}
