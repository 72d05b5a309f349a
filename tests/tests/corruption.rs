//! Corruption suite: closed SQLite databases and sled directories are damaged at random (bit
//! flips anywhere, bit flips aimed at stored keys, garbage over a range, truncation), seeded by
//! the case number, and then opened, without and with `recover_corrupt(true)`. Each open either
//! fails with an error (never a panic) or gives a cache in which every key written reads back as
//! its own value, a miss or an error: never a value under a key it was not written for, never a
//! panic, on this thread or any other.
//!
//! `PLEXCACHE_CORRUPT_CASES` cases per backend (20 by default); the ignored
//! `*_many_cases` tests run 1000 each:
//!
//! ```sh
//! cargo test -p plexcache-tests --test corruption -- --ignored --nocapture
//! ```
//!
//! The ignored `write_sqlite_open_fuzz_seeds` writes the seed corpus of the `sqlite_open` fuzz
//! target (`scripts/sqlite_open_seeds.sh`).
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use plexcache_core::{Cache, CacheBackend, Error, Ttl};
use plexcache_sled::SledBackend;
use plexcache_sqlite::SqliteBackend;
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};

/// Keys written to the pristine store.
const KEYS: usize = 200;

fn key(i: usize) -> String {
    format!("c:{i:03}")
}

/// The value of key `i`: names its key, and a few are large (overflow pages, sled's separate
/// value tree).
fn value(i: usize) -> String {
    let pad = if i % 40 == 7 { 9_000 } else { (i * 37) % 300 };
    format!("{}|value {i}|{}", key(i), "x".repeat(pad))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Sqlite,
    Sled,
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Writes the pristine store: every key (some with a TTL of an hour), a few removed and written
/// again, flushed and closed.
fn build_pristine(kind: Kind, dir: &Path) -> BTreeMap<String, String> {
    let rt = runtime();
    rt.block_on(async {
        match kind {
            Kind::Sqlite => fill(Cache::new(SqliteBackend::open(dir).unwrap())).await,
            Kind::Sled => fill(Cache::new(SledBackend::open(dir).unwrap())).await,
        }
    })
}

async fn fill<B: CacheBackend>(cache: Cache<B>) -> BTreeMap<String, String> {
    let mut written = BTreeMap::new();
    for i in 0..KEYS {
        let ttl = if i % 3 == 0 {
            Ttl::After(Duration::from_secs(3600))
        } else {
            Ttl::Default
        };
        cache.set_with_ttl(&key(i), &value(i), ttl).await.unwrap();
        written.insert(key(i), value(i));
    }
    for i in (0..KEYS).step_by(17) {
        cache.remove(&key(i)).await.unwrap();
        written.remove(&key(i));
    }
    for i in (0..KEYS).step_by(34) {
        cache.set(&key(i), &value(i)).await.unwrap();
        written.insert(key(i), value(i));
    }
    cache.flush().await.unwrap();
    written
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Every non-empty regular file under `dir`, sorted, largest first for ties of choice.
fn files(dir: &Path) -> Vec<(PathBuf, u64)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let ty = entry.file_type().unwrap();
        if ty.is_dir() {
            out.extend(files(&entry.path()));
        } else if ty.is_file() {
            let len = entry.metadata().unwrap().len();
            if len > 0 {
                out.push((entry.path(), len));
            }
        }
    }
    out.sort();
    out
}

/// Offsets of the digits of stored keys (`c:` and three digits) in `bytes`.
fn key_digit_offsets(bytes: &[u8]) -> Vec<usize> {
    let mut out = Vec::new();
    for at in 0..bytes.len().saturating_sub(5) {
        if &bytes[at..at + 2] == b"c:" && bytes[at + 2..at + 5].iter().all(u8::is_ascii_digit) {
            out.extend([at + 2, at + 3, at + 4]);
        }
    }
    out
}

/// Damages the store in `dir` as case `seed` says; returns what it did.
fn damage(dir: &Path, seed: u64) -> String {
    let mut rng = SmallRng::seed_from_u64(seed);
    let all = files(dir);
    assert!(!all.is_empty(), "no files in {}", dir.display());
    // Mostly the largest file (the database, sled's log), sometimes any file.
    let (path, len) = if rng.random_range(0..10) < 7 {
        all.iter().max_by_key(|(_, len)| *len).unwrap().clone()
    } else {
        all[rng.random_range(0..all.len())].clone()
    };
    let name = path.strip_prefix(dir).unwrap().display().to_string();
    let mut bytes = std::fs::read(&path).unwrap();
    let what = match rng.random_range(0..10) {
        0..=3 => {
            let flips = rng.random_range(1..=16);
            for _ in 0..flips {
                let at = rng.random_range(0..bytes.len());
                bytes[at] ^= 1 << rng.random_range(0..8);
            }
            format!("{flips} bit flips in {name}")
        }
        4..=6 => {
            // A damaged key: a low bit of a key digit, which often makes another written key.
            let digits = key_digit_offsets(&bytes);
            if digits.is_empty() {
                let at = rng.random_range(0..bytes.len());
                bytes[at] ^= 1;
                format!("no key in {name}: one bit flip at {at}")
            } else {
                let flips = rng.random_range(1..=4);
                for _ in 0..flips {
                    let at = digits[rng.random_range(0..digits.len())];
                    bytes[at] ^= 1 << rng.random_range(0..3);
                }
                format!("{flips} key digit flips in {name}")
            }
        }
        7 => {
            let at = rng.random_range(0..bytes.len());
            let n = rng.random_range(1..=4096).min(bytes.len() - at);
            for b in &mut bytes[at..at + n] {
                *b = rng.random();
            }
            format!("{n} garbage bytes at {at} in {name}")
        }
        _ => {
            let to = rng.random_range(0..len as usize);
            bytes.truncate(to);
            format!("{name} truncated from {len} to {to} bytes")
        }
    };
    std::fs::write(&path, bytes).unwrap();
    what
}

/// Panics seen by the hook, on any thread.
static PANICS: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let thread = std::thread::current();
            PANICS
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(format!("thread {:?}: {info}", thread.name().unwrap_or("?")));
            previous(info);
        }));
    });
}

fn panics() -> usize {
    PANICS.lock().unwrap_or_else(|e| e.into_inner()).len()
}

/// What one open and the reads after it came to.
#[derive(Debug, Default)]
struct Outcome {
    /// `None` when the open succeeded, else the error's class.
    open_error: Option<&'static str>,
    right: usize,
    /// A value once written for the key but since replaced or removed (damage that rolls a
    /// store back): its own key's value, so allowed, and counted.
    stale: usize,
    misses: usize,
    errors: usize,
    /// Values returned under a key they were not written for (or a wrong value).
    wrong: Vec<String>,
    /// What the open said it found (sled's `OpenInfo`).
    info: String,
}

/// The error's message with its sources.
fn chain(e: &Error) -> String {
    let mut out = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        out.push_str(&format!(": {s}"));
        source = s.source();
    }
    out
}

fn class(e: &Error) -> &'static str {
    match e {
        Error::Corrupt { .. } => "corrupt",
        Error::IncompatibleVersion { .. } => "incompatible version",
        Error::Backend { .. } => "backend",
        Error::Io { .. } => "io",
        Error::InUse { .. } => "in use",
        _ => "other",
    }
}

/// Whether `got` is a value the pristine store once held under `k` (every key `c:NNN` was
/// written with `value(NNN)`, and `after` with its one value).
fn ever_written(k: &str, got: &str) -> bool {
    k.strip_prefix("c:")
        .and_then(|n| n.parse::<usize>().ok())
        .is_some_and(|i| i < KEYS && k == key(i) && got == value(i))
        || (k == AFTER && got == AFTER_VALUE)
}

const AFTER: &str = "after";
const AFTER_VALUE: &str = "written after the damage";

async fn read_back<B: CacheBackend>(
    cache: Cache<B>,
    written: &BTreeMap<String, String>,
    out: &mut Outcome,
) {
    for (k, v) in written {
        match cache.get::<String>(k).await {
            Ok(Some(got)) if &got == v => out.right += 1,
            Ok(Some(got)) if ever_written(k, &got) => out.stale += 1,
            Ok(Some(got)) => out.wrong.push(format!(
                "{k} read {:?}",
                got.chars().take(40).collect::<String>()
            )),
            Ok(None) => out.misses += 1,
            Err(_) => out.errors += 1,
        }
    }
    // Other keys the listing shows (removed ones, damaged keys) read as a miss, an error or
    // a value once written under that very key, never another key's value.
    if let Ok(listed) = cache.keys("", usize::MAX).await {
        for k in listed.iter().filter(|k| !written.contains_key(*k)) {
            match cache.get::<String>(k).await {
                Ok(Some(got)) if ever_written(k, &got) => out.stale += 1,
                Ok(Some(got)) => out.wrong.push(format!(
                    "{k:?} (not written with that value) read {:?}",
                    got.chars().take(40).collect::<String>()
                )),
                _ => {}
            }
        }
    }
    // The damaged cache still takes a write and a check, or refuses them with an error.
    let _ = cache.set(AFTER, &AFTER_VALUE.to_owned()).await;
    if let Ok(Some(got)) = cache.get::<String>(AFTER).await
        && got != AFTER_VALUE
    {
        out.wrong.push(format!("{AFTER} read {got:?}"));
    }
    let _ = cache.check().await;
}

fn open_and_read(
    kind: Kind,
    dir: &Path,
    recover: bool,
    written: &BTreeMap<String, String>,
) -> Outcome {
    let rt = runtime();
    let mut out = Outcome::default();
    rt.block_on(async {
        match kind {
            Kind::Sqlite => {
                match SqliteBackend::builder(dir)
                    .recover_corrupt(recover)
                    .open_async()
                    .await
                {
                    Ok(b) => read_back(Cache::new(b), written, &mut out).await,
                    Err(e) => {
                        out.open_error = Some(class(&e));
                        out.info = chain(&e);
                    }
                }
            }
            Kind::Sled => match SledBackend::builder(dir).recover_corrupt(recover).open() {
                Ok(b) => {
                    out.info = format!("{:?}", b.open_info());
                    read_back(Cache::new(b), written, &mut out).await
                }
                Err(e) => {
                    out.open_error = Some(class(&e));
                    out.info = chain(&e);
                }
            },
        }
    });
    out
}

fn cases_from_env(default: u64) -> u64 {
    std::env::var("PLEXCACHE_CORRUPT_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Runs `cases` damaged copies of one pristine store of `kind`; fails on any panic or wrong
/// value, and prints what the opens and reads came to.
fn run(kind: Kind, cases: u64) {
    // One backend at a time: the panic hook counts panics of the whole process.
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    install_panic_hook();
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let pristine = tmp.path().join("pristine");
    let written = build_pristine(kind, &pristine);
    let mut failures = Vec::new();
    let mut tally: BTreeMap<String, u64> = BTreeMap::new();
    let (mut right, mut stale, mut misses, mut errors) = (0, 0, 0, 0);
    let base: u64 = std::env::var("PLEXCACHE_CORRUPT_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    for case in 0..cases {
        let seed = base + case + if kind == Kind::Sled { 1 << 32 } else { 0 };
        let dir = tmp.path().join(format!("case{case}"));
        copy_dir(&pristine, &dir);
        let what = damage(&dir, seed);
        for recover in [false, true] {
            let before = panics();
            let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
                open_and_read(kind, &dir, recover, &written)
            }));
            let label = format!("case {case} (seed {seed}, {what}, recover_corrupt {recover})");
            match result {
                Err(_) => failures.push(format!("{label}: panicked")),
                Ok(out) => {
                    if panics() > before {
                        failures.push(format!("{label}: a panic on another thread"));
                    }
                    // A damaged store is reported as such (the error names the path), not as
                    // an engine failure.
                    if let Some(class) = out.open_error
                        && !matches!(class, "corrupt" | "incompatible version")
                    {
                        failures.push(format!(
                            "{label}: open failed with a {class} error: {}",
                            out.info
                        ));
                    }
                    if !out.wrong.is_empty() {
                        failures.push(format!("{label}: wrong values: {:?}", out.wrong));
                    }
                    let key = match out.open_error {
                        Some(class) => {
                            if class != "corrupt" || recover {
                                eprintln!(
                                    "  case {case} ({what}), recover_corrupt {recover}: {}",
                                    out.info
                                );
                            }
                            format!("recover {recover}: open failed ({class})")
                        }
                        None if out.right == written.len() => {
                            format!("recover {recover}: opened, every value right")
                        }
                        None if out.right == 0 && out.errors == 0 => {
                            if !recover {
                                eprintln!(
                                    "  case {case} ({what}): opened, every key a miss {}",
                                    out.info
                                );
                            }
                            format!("recover {recover}: opened, every key a miss")
                        }
                        None => format!("recover {recover}: opened, some misses or errors"),
                    };
                    *tally.entry(key).or_default() += 1;
                    right += out.right;
                    stale += out.stale;
                    misses += out.misses;
                    errors += out.errors;
                }
            }
        }
        std::fs::remove_dir_all(&dir).unwrap();
        for entry in std::fs::read_dir(tmp.path()).unwrap() {
            let entry = entry.unwrap();
            if entry.file_name().to_string_lossy().contains(".corrupt-") {
                let _ = std::fs::remove_dir_all(entry.path());
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
    eprintln!(
        "{kind:?}: {cases} damaged copies in {:.1?}; reads: {right} right, {stale} stale (a value the key once had), {misses} misses, {errors} errors",
        started.elapsed()
    );
    for (what, n) in &tally {
        eprintln!("  {what}: {n}");
    }
    let distinct: BTreeSet<_> = PANICS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .cloned()
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {cases} cases failed:\n{}\npanics: {distinct:?}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn sqlite_damaged_files_give_errors_or_right_values() {
    run(Kind::Sqlite, cases_from_env(20));
}

#[test]
fn sled_damaged_directories_give_errors_or_right_values() {
    run(Kind::Sled, cases_from_env(20));
}

#[test]
#[ignore = "long: 1000 damaged SQLite files"]
fn sqlite_many_cases() {
    run(Kind::Sqlite, cases_from_env(1000));
}

#[test]
#[ignore = "long: 1000 damaged sled directories"]
fn sled_many_cases() {
    run(Kind::Sled, cases_from_env(1000));
}

/// Writes small real plexcache databases as the seed corpus of the `sqlite_open` fuzz target,
/// into `PLEXCACHE_SEED_DIR` (default `fuzz/seeds/sqlite_open`).
#[test]
#[ignore = "writes the sqlite_open fuzz seeds; run by scripts/sqlite_open_seeds.sh"]
fn write_sqlite_open_fuzz_seeds() {
    let out = std::env::var("PLEXCACHE_SEED_DIR").map_or_else(
        |_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds/sqlite_open"),
        PathBuf::from,
    );
    std::fs::create_dir_all(&out).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let rt = runtime();
    let seeds: [(&str, bool, usize); 4] = [
        ("empty", false, 0),
        ("few_entries", false, 6),
        ("exclusive_entries", true, 10),
        ("library", false, 40),
    ];
    for (name, exclusive, entries) in seeds {
        let dir = tmp.path().join(name);
        rt.block_on(async {
            let builder = SqliteBackend::builder(&dir);
            let b: Box<dyn plexcache_core::CacheBackend> = if exclusive {
                Box::new(builder.open_exclusive_async().await.unwrap())
            } else {
                Box::new(builder.open_async().await.unwrap())
            };
            let cache = Cache::new(b);
            for i in 0..entries {
                let ttl = if i % 2 == 0 {
                    Ttl::After(Duration::from_secs(3600))
                } else {
                    Ttl::Default
                };
                if name == "library" {
                    cache
                        .set_with_ttl(
                            &format!("library:Movies:item:{i}"),
                            &format!("movie {i}"),
                            ttl,
                        )
                        .await
                        .unwrap();
                } else {
                    cache
                        .set_with_ttl(&key(i), &value(i % 5), ttl)
                        .await
                        .unwrap();
                }
            }
            if entries > 2 {
                cache.remove(&key(1)).await.unwrap();
                let _ = cache.get::<String>(&key(0)).await.unwrap();
            }
            cache.flush().await.unwrap();
        });
        // Closed: the WAL is checkpointed into the database file.
        let db = dir.join("plexcache.db");
        let target = out.join(name);
        std::fs::copy(&db, &target).unwrap();
        eprintln!(
            "{}: {} bytes",
            target.display(),
            std::fs::metadata(&target).unwrap().len()
        );
    }
}
