//! One process (and one backend) per directory: a second open gets a clear `Error::InUse`.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use plexcache_core::Error;
use plexcache_sled::SledBackend;

fn assert_in_use(r: plexcache_core::Result<SledBackend>, path: &std::path::Path) {
    match r {
        Err(e @ Error::InUse { .. }) => {
            let msg = e.to_string();
            assert!(
                msg.contains(&path.display().to_string()),
                "names the path: {msg}"
            );
            assert!(msg.contains("in use by another process"), "says why: {msg}");
            assert!(
                msg.contains("SQLite") && msg.contains("Redis"),
                "names the sharing backends: {msg}"
            );
        }
        other => panic!("expected Error::InUse, got {other:?}"),
    }
}

#[test]
fn second_open_in_the_same_process_is_in_use() {
    let (_dir, path) = common::temp_cache();
    let first = SledBackend::open(&path).expect("first open");
    // plexcache's own lock answers at once: even with an hour of lock_wait the second open
    // fails without waiting for it (the bound only tells "did not wait" from "waited").
    let started = Instant::now();
    assert_in_use(
        SledBackend::builder(&path)
            .lock_wait(Duration::from_secs(3600))
            .open(),
        &path,
    );
    assert!(
        started.elapsed() < Duration::from_secs(120),
        "no wait: {:?}",
        started.elapsed()
    );
    // A clone is the same backend, not a second open.
    let clone = first.clone();
    drop(first);
    assert_in_use(SledBackend::open(&path), &path);
    drop(clone);
    SledBackend::open(&path).expect("open after the last clone is dropped");
}

#[test]
fn reopen_right_after_drop_works_repeatedly() {
    let (_dir, path) = common::temp_cache();
    for _ in 0..50 {
        let b = SledBackend::open(&path).expect("open");
        drop(b);
    }
}

#[test]
fn a_foreign_sled_user_holding_the_directory_is_in_use_after_lock_wait() {
    let (_dir, path) = common::temp_cache();
    // Create the cache, then hold sled's own lock without plexcache's lock file.
    drop(SledBackend::open(&path).expect("create"));
    let raw = common::raw_sled_open(&path);
    let started = Instant::now();
    assert_in_use(
        SledBackend::builder(&path)
            .lock_wait(Duration::from_millis(300))
            .open(),
        &path,
    );
    let waited = started.elapsed();
    // At least lock_wait; the upper bound only catches a hang, not a slow machine.
    assert!(
        waited >= Duration::from_millis(300) && waited < Duration::from_secs(120),
        "waits lock_wait, then gives up: {waited:?}"
    );
    drop(raw);
}

#[cfg(unix)]
#[test]
fn directory_is_created_private() {
    use std::os::unix::fs::PermissionsExt;
    let (_dir, path) = common::temp_cache();
    let nested = path.join("a").join("b");
    drop(SledBackend::open(&nested).expect("open"));
    let mode = std::fs::metadata(&nested).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "cache directory mode {mode:o}");
}
