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

/// Entries of the real cache the damage tests start from.
const ENTRIES: u32 = 3_000;

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

/// Opening a damaged directory: an error naming the path, or, when sled recovered a
/// consistent prefix of its log, a working, consistent store whose open says what happened
/// (what the docs promise). `original`: the entries the directory held before the damage.
///
/// An open that succeeds must not call the store new (`created`), and must either keep every
/// entry or report the recovery (`open_info().recount`: the store found it was not shut down
/// cleanly and recounted). Silent loss fails.
fn open_damaged(path: &Path, what: &str, original: u32) -> Option<SledBackend> {
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
            let info = b.open_info().clone();
            eprintln!("{what}: opened (sled recovered a prefix of its log): {info:?}");
            assert!(
                !info.created,
                "{what}: a damaged directory was opened as a new, empty cache"
            );
            // Whatever it recovered must be usable and consistent.
            match b.verify() {
                Ok(v) => assert!(v.is_ok(), "{what}: {:?}", v.problems),
                Err(e) => assert!(e.is_corrupt(), "{what}: verify: {e}"),
            }
            let kept = all_kept(&b, original);
            assert!(
                kept || info.recount.is_some(),
                "{what}: entries were lost and the open did not report a recovery: {info:?}"
            );
            if let Some(r) = info.recount {
                let usage = block_on(b.usage()).unwrap();
                assert_eq!(
                    (usage.entries, usage.bytes),
                    (r.entries, r.bytes),
                    "{what}: the recount is what the store holds"
                );
            }
            Some(b)
        }
    }
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(f)
}

/// Whether every entry [`real_cache`] wrote reads back with its value.
fn all_kept(b: &SledBackend, n: u32) -> bool {
    let cache = Cache::new(b.clone());
    block_on(async {
        for i in 0..n {
            let got: Option<String> = cache
                .get(&format!("library:Movies:{i}"))
                .await
                .unwrap_or(None);
            if got.as_deref() != Some(format!("/media/movies/{i}/file.mkv").as_str()) {
                return false;
            }
        }
        true
    })
}

/// Damage that leaves nothing to recover: an error naming the path.
fn expect_corrupt(path: &Path, what: &str) {
    assert!(
        open_damaged(path, what, 0).is_none(),
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
        // No plexcache database was ever there: nothing may be opened as if it were new.
        expect_corrupt(&path, what);
        recovers(&path, what);
    }
}

#[test]
fn truncated_and_flipped_real_databases() {
    let (dir, original) = common::temp_cache();
    real_cache(&original, ENTRIES);
    let db_len = fs::metadata(original.join("db")).unwrap().len();
    let conf_len = fs::metadata(original.join("conf")).unwrap().len();
    let mut n = 0;
    let mut case = |what: String, damage: &dyn Fn(&Path)| {
        n += 1;
        let path = dir.path().join(format!("case{n}")).join("cache");
        copy_dir(&original, &path);
        damage(&path);
        if open_damaged(&path, &what, ENTRIES).is_none() {
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
        // ... and no clean-shutdown marker (nor the clean-close record beside sled's files,
        // which the crashed session's open removed).
        fs::remove_file(path.join("plexcache.closed")).unwrap();
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

/// A cache written in two sessions, each closed cleanly, then truncated anywhere: an open
/// that succeeds either keeps every entry or reports its recovery, even where the cut could
/// leave the first session's clean-shutdown marker as the last word.
#[test]
fn a_truncated_second_session_is_never_lost_silently() {
    let (dir, original) = common::temp_cache();
    real_cache(&original, ENTRIES / 2);
    block_on(async {
        let cache = Cache::new(SledBackend::open(&original).unwrap());
        for i in ENTRIES / 2..ENTRIES {
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
    let db_len = fs::metadata(original.join("db")).unwrap().len();
    for k in 1..30u64 {
        let len = db_len * k / 30;
        let path = dir.path().join(format!("cut{k}")).join("cache");
        copy_dir(&original, &path);
        fs::OpenOptions::new()
            .write(true)
            .open(path.join("db"))
            .unwrap()
            .set_len(len)
            .unwrap();
        open_damaged(&path, &format!("db cut to {len} of {db_len}"), ENTRIES);
    }
}

/// A clean close leaves a record of the counters beside sled's files; a store that sled
/// recovers in an older state than that (damage inside its log, which sled's recovery
/// silently cuts off) is refused as damaged, and `recover_corrupt` moves it aside. A normal
/// reopen removes the record.
#[test]
fn a_store_older_than_its_last_clean_close_is_refused() {
    let (_dir, path) = common::temp_cache();
    real_cache(&path, 10);
    let record = path.join("plexcache.closed");
    assert!(record.exists(), "a clean close writes the record");
    // A normal reopen accepts and removes it; the next clean close writes it again.
    drop(SledBackend::open(&path).unwrap());
    assert!(record.exists());
    let good = fs::read(&record).unwrap();
    {
        let b = SledBackend::open(&path).unwrap();
        assert!(!record.exists(), "an open removes the record");
        assert!(all_kept(&b, 10));
    }
    // The record says the store held more than sled recovers: as after a cut-off log.
    let mut claims_more = good.clone();
    claims_more[7] = claims_more[7].wrapping_add(5); // entries, big-endian u64
    fs::write(&record, &claims_more).unwrap();
    let err = SledBackend::open(&path).expect_err("an older state is refused");
    assert!(err.is_corrupt(), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("older state"), "{msg}");
    assert!(
        msg.contains(&path.display().to_string()),
        "names the path: {msg}"
    );
    recovers(&path, "older than its clean close");
}
