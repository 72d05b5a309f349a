//! Reproduces the sled 0.34 deadlock that made plexcache-sled stop using sled transactions:
//! a steady stream of small multi-tree transactions (what a cache write would be), with a
//! watchdog that reports when progress stops.
//!
//! ```text
//! cargo run --release -p plexcache-sled --example sled_tx_deadlock [seconds]
//! PLAIN=1 cargo run --release -p plexcache-sled --example sled_tx_deadlock [seconds]
//! ```
//!
//! `PLAIN=1` does the same writes as plain sled operations instead of transactions (what
//! plexcache-sled does).
//!
//! Exits 0 if it ran for the whole time, 1 (after printing "DEADLOCK") if no transaction
//! completed for 20 seconds; on this project's 2-vCPU machine it deadlocked after about
//! 3 minutes. With `HOLD=1` it waits 2 minutes before exiting, so that
//! `gdb -p <pid> -batch -ex "thread apply all bt"` can show the threads: sled-io workers
//! waiting for the SegmentAccountant mutex in `write_to_log`, the transaction holding it in
//! `SegmentAccountant::bump_tip`, waiting for a file truncation queued behind them.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sled::Transactional;
use sled::transaction::ConflictableTransactionError;

fn main() {
    let seconds: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(300);
    let dir = tempfile::tempdir().unwrap();
    let db = sled::Config::new()
        .path(dir.path())
        .cache_capacity(64 << 20)
        .open()
        .unwrap();
    let t: Vec<sled::Tree> = (0..4)
        .map(|i| db.open_tree(format!("t{i}")).unwrap())
        .collect();
    let done = Arc::new(AtomicU64::new(0));
    let watched = Arc::clone(&done);
    std::thread::spawn(move || {
        let started = Instant::now();
        let mut last = (0, Instant::now());
        loop {
            std::thread::sleep(Duration::from_secs(1));
            let n = watched.load(Ordering::Relaxed);
            if n != last.0 {
                last = (n, Instant::now());
            } else if last.1.elapsed() > Duration::from_secs(20) {
                println!(
                    "DEADLOCK: no transaction completed for 20 s, after {n} in {:.0?}",
                    started.elapsed()
                );
                // Time to attach a debugger (set HOLD=1).
                if std::env::var_os("HOLD").is_some() {
                    std::thread::sleep(Duration::from_secs(120));
                }
                std::process::exit(1);
            }
            if started.elapsed().as_secs() >= seconds {
                println!("no deadlock: {n} transactions in {:.0?}", started.elapsed());
                std::process::exit(0);
            }
        }
    });
    // A second database in the process (sled's I/O thread pool is global), written and
    // read now and then, and the transactions issued from changing threads, as tokio's
    // blocking pool does: the conditions of the benchmark that hung.
    let other_dir = tempfile::tempdir().unwrap();
    let other = sled::Config::new().path(other_dir.path()).open().unwrap();
    let value = vec![7u8; 300];
    let mut i = 0u64;
    loop {
        let (t, done, v) = (t.clone(), Arc::clone(&done), value.clone());
        let start = i;
        std::thread::spawn(move || {
            for i in start..start + 200 {
                tx(&t, i, &v);
                done.store(i + 1, Ordering::Relaxed);
            }
        })
        .join()
        .unwrap();
        i += 200;
        other.insert(i.to_be_bytes(), &value[..]).unwrap();
        let _ = other.get((i / 2).to_be_bytes()).unwrap();
    }
}

fn tx(t: &[sled::Tree], i: u64, value: &[u8]) {
    if std::env::var_os("PLAIN").is_some() {
        // The same writes as plain operations (what plexcache-sled does).
        let key = (i % 20_000).to_be_bytes();
        let old = i.saturating_sub(20_000).to_be_bytes();
        t[0].insert(key, value).unwrap();
        t[1].remove(old).unwrap();
        t[1].insert(i.to_be_bytes(), &[][..]).unwrap();
        t[2].insert(key, &i.to_be_bytes()[..]).unwrap();
        t[3].insert(b"usage", &i.to_be_bytes()[..]).unwrap();
    } else {
        let key = (i % 20_000).to_be_bytes();
        let old = i.saturating_sub(20_000).to_be_bytes();
        (&t[0], &t[1], &t[2], &t[3])
            .transaction(|(entries, a, b, meta)| {
                entries.insert(&key, value)?;
                a.remove(&old)?;
                a.insert(&i.to_be_bytes(), &[][..])?;
                b.insert(&key, &i.to_be_bytes())?;
                meta.insert(b"usage", &i.to_be_bytes())?;
                Ok::<_, ConflictableTransactionError<()>>(())
            })
            .unwrap();
    }
}
