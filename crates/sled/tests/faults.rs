//! Damaged directories: garbage files, truncated and bit-flipped real databases, a file where
//! the directory should be, a foreign sled database, a newer layout. Each gives an error that
//! names the path (never a panic, never a hang), and `recover_corrupt(true)` moves the damage
//! aside and starts empty.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use plexcache_core::{Cache, CacheBackend, Error};
use plexcache_sled::SledBackend;

/// Deterministic pseudo-random bytes.
fn garbage(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            fs::copy(e.path(), target).unwrap();
        }
    }
}

/// A real, cleanly closed cache with `n` entries.
fn real_cache(path: &Path, n: u32) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async {
        let cache = Cache::new(SledBackend::open(path).unwrap());
        for i in 0..n {
            cache
                .set(
                    &format!("library:Movies:{i}"),
                    &format!("/media/movies/{i}/file.mkv"),
                )
                .await
                .unwrap();
        }
        cache.flush().await.unwrap();
    });
}

/// Opening a damaged directory: either an error naming the path, or (when sled recovers a
/// consistent prefix of its log) a working, consistent store. Never a panic or another error.
fn open_damaged(path: &Path, what: &str) -> Option<SledBackend> {
    match SledBackend::open(path) {
        Err(e @ Error::Corrupt { .. }) => {
            let msg = e.to_string();
            assert!(
                msg.contains(&path.display().to_string()),
                "{what}: names the path: {msg}"
            );
            eprintln!("{what}: {msg}");
            None
        }
        Err(other) => panic!("{what}: expected Corrupt, got {other:?}"),
        Ok(b) => {
            eprintln!("{what}: opened (sled recovered a prefix of its log)");
            // Whatever it recovered must be usable and consistent.
            match b.verify() {
                Ok(v) => assert!(v.is_ok(), "{what}: {:?}", v.problems),
                Err(e) => assert!(e.is_corrupt(), "{what}: verify: {e}"),
            }
            Some(b)
        }
    }
}

fn expect_corrupt(path: &Path, what: &str) {
    assert!(
        open_damaged(path, what).is_none(),
        "{what}: should not open"
    );
}

fn recovers(path: &Path, what: &str) {
    let b = SledBackend::builder(path)
        .recover_corrupt(true)
        .open()
        .unwrap_or_else(|e| panic!("{what}: recover_corrupt: {e}"));
    let aside: PathBuf = b.open_info().recovered_from.clone().expect("moved aside");
    assert!(
        aside.exists(),
        "{what}: the damaged directory is kept at {}",
        aside.display()
    );
    let name = aside.file_name().unwrap().to_string_lossy().into_owned();
    assert!(name.starts_with("cache.corrupt-"), "{what}: {name}");
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    assert_eq!(
        rt.block_on(b.usage()).unwrap().entries,
        0,
        "{what}: starts empty"
    );
    drop(b);
    // And the fresh cache opens normally afterwards.
    let again = SledBackend::open(path).unwrap();
    assert!(again.open_info().recovered_from.is_none());
}

#[test]
fn garbage_files() {
    type Files = Vec<(&'static str, Vec<u8>)>;
    let cases: Vec<(&str, Files)> = vec![
        (
            "garbage db and conf",
            vec![("db", garbage(1 << 20, 1)), ("conf", garbage(64, 2))],
        ),
        ("garbage db only", vec![("db", garbage(300_000, 3))]),
        ("garbage conf only", vec![("conf", garbage(40, 4))]),
        (
            "empty conf",
            vec![("conf", Vec::new()), ("db", garbage(4096, 5))],
        ),
        ("zero-filled db", vec![("db", vec![0; 600_000])]),
        (
            "snapshot garbage",
            vec![("snap.0000000000001000", garbage(500, 6))],
        ),
    ];
    for (what, files) in cases {
        let (_dir, path) = common::temp_cache();
        fs::create_dir_all(&path).unwrap();
        for (name, bytes) in &files {
            fs::write(path.join(name), bytes).unwrap();
        }
        if open_damaged(&path, what).is_none() {
            recovers(&path, what);
        }
    }
}

#[test]
fn truncated_and_flipped_real_databases() {
    let (dir, original) = common::temp_cache();
    real_cache(&original, 3_000);
    let db_len = fs::metadata(original.join("db")).unwrap().len();
    let conf_len = fs::metadata(original.join("conf")).unwrap().len();
    let mut n = 0;
    let mut case = |what: String, damage: &dyn Fn(&Path)| {
        n += 1;
        let path = dir.path().join(format!("case{n}")).join("cache");
        copy_dir(&original, &path);
        damage(&path);
        if open_damaged(&path, &what).is_none() {
            recovers(&path, &what);
        }
    };
    for len in [0, 1, 7, 100, 4096, db_len / 3, db_len / 2, db_len - 1] {
        case(format!("db truncated to {len} of {db_len} bytes"), &|p| {
            fs::OpenOptions::new()
                .write(true)
                .open(p.join("db"))
                .unwrap()
                .set_len(len)
                .unwrap();
        });
    }
    for len in [0, conf_len / 2] {
        case(format!("conf truncated to {len}"), &|p| {
            fs::OpenOptions::new()
                .write(true)
                .open(p.join("conf"))
                .unwrap()
                .set_len(len)
                .unwrap();
        });
    }
    for (i, at) in [0, 13, 64, 1000, db_len / 4, db_len / 2, db_len - 10]
        .into_iter()
        .enumerate()
    {
        case(format!("db damaged at {at}"), &|p| {
            let mut bytes = fs::read(p.join("db")).unwrap();
            let end = (at as usize + 64).min(bytes.len());
            let noise = garbage(end - at as usize, 99 + i as u64);
            bytes[at as usize..end].copy_from_slice(&noise);
            fs::write(p.join("db"), bytes).unwrap();
        });
    }
    case("db deleted".into(), &|p| {
        fs::remove_file(p.join("db")).unwrap()
    });
    case("snapshot file emptied".into(), &|p| {
        for e in fs::read_dir(p).unwrap() {
            let e = e.unwrap();
            if e.file_name().to_string_lossy().starts_with("snap.") {
                fs::write(e.path(), b"").unwrap();
            }
        }
    });
}

#[test]
fn a_file_where_the_directory_should_be() {
    let (_dir, path) = common::temp_cache();
    fs::write(&path, b"not a directory").unwrap();
    expect_corrupt(&path, "file instead of directory");
    recovers(&path, "file instead of directory");
}

#[test]
fn a_foreign_sled_database_is_not_taken_over() {
    let (_dir, path) = common::temp_cache();
    {
        let db = common::raw_sled_open(&path);
        db.insert(b"someone else's", b"data").unwrap();
        db.flush().unwrap();
    }
    match SledBackend::open(&path) {
        Err(e @ Error::Corrupt { .. }) => assert!(e.to_string().contains("did not write"), "{e}"),
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[test]
fn a_newer_layout_is_incompatible_and_never_moved_aside() {
    let (_dir, path) = common::temp_cache();
    drop(SledBackend::open(&path).unwrap());
    {
        let db = common::raw_sled_open(&path);
        let meta = db.open_tree("meta").unwrap();
        meta.insert(b"version", &99u64.to_be_bytes()[..]).unwrap();
        db.flush().unwrap();
    }
    for recover in [false, true] {
        match SledBackend::builder(&path).recover_corrupt(recover).open() {
            Err(Error::IncompatibleVersion {
                found: 99,
                supported,
                ..
            }) => {
                assert_eq!(supported, plexcache_sled::SCHEMA_VERSION)
            }
            other => panic!("expected IncompatibleVersion, got {other:?}"),
        }
    }
}

#[test]
fn a_malformed_record_is_an_error_naming_the_path_not_a_panic() {
    let (_dir, path) = common::temp_cache();
    real_cache(&path, 10);
    {
        let db = common::raw_sled_open(&path);
        let entries = db.open_tree("entries").unwrap();
        entries.insert(b"library:Movies:3", &b"junk"[..]).unwrap();
        db.flush().unwrap();
    }
    let b = SledBackend::open(&path).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    match rt.block_on(b.get("library:Movies:3", 0)) {
        Err(e @ Error::Corrupt { .. }) => {
            let msg = e.to_string();
            assert!(
                msg.contains(&path.display().to_string()) && msg.contains("library:Movies:3"),
                "{msg}"
            );
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    // Other keys still work, and verify reports the damage.
    assert!(rt.block_on(b.get("library:Movies:4", 0)).unwrap().is_some());
    assert!(!b.verify().unwrap().is_ok());
}

#[test]
fn stale_index_entries_are_dropped_by_the_walks_that_meet_them() {
    let (_dir, path) = common::temp_cache();
    real_cache(&path, 5);
    {
        // What a crash between the steps of a write can leave: index entries for a key with
        // no record, and a value no record owns.
        let db = common::raw_sled_open(&path);
        let mut ik = Vec::new();
        ik.extend_from_slice(&1u64.to_be_bytes());
        ik.extend_from_slice(&999u64.to_be_bytes());
        ik.extend_from_slice(b"ghost");
        db.open_tree("stored")
            .unwrap()
            .insert(&ik, &[][..])
            .unwrap();
        db.open_tree("expiry")
            .unwrap()
            .insert(&ik, &[][..])
            .unwrap();
        let mut vk = b"ghost".to_vec();
        vk.extend_from_slice(&999u64.to_be_bytes());
        db.open_tree("values")
            .unwrap()
            .insert(vk, &b"x"[..])
            .unwrap();
        // ... and no clean-shutdown marker.
        db.open_tree("meta")
            .unwrap()
            .insert(b"clean", &[0u8][..])
            .unwrap();
        db.flush().unwrap();
    }
    let b = SledBackend::open(&path).unwrap();
    // The recount after the unclean shutdown drops the unreferenced value.
    assert!(b.open_info().recount.is_some());
    let v = b.verify().unwrap();
    assert!(v.is_ok(), "{:?}", v.problems);
    assert_eq!((v.entries, v.stale_index_entries), (5, 2));
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    // Nothing expired (the real entries have no TTL); the stale expiry entry is dropped.
    assert_eq!(
        rt.block_on(b.purge_expired(u64::MAX, 10)).unwrap().entries,
        0
    );
    // Evicting one entry walks past the stale one first and drops it.
    let usage = rt.block_on(b.usage()).unwrap();
    let r = rt
        .block_on(b.evict(
            plexcache_core::EvictionPolicy::LeastRecentlyStored,
            usage.bytes - 1,
            None,
        ))
        .unwrap();
    assert_eq!(r.entries, 1);
    let v = b.verify().unwrap();
    assert!(v.is_ok(), "{:?}", v.problems);
    assert_eq!((v.entries, v.stale_index_entries), (4, 0));
}
