//! Crash suite: a child process (this test binary run again with `PLEXCACHE_CRASH_CHILD` set)
//! writes through `Cache` (sets, TTL sets, removes, flushes), printing `ACK <seq>` after each
//! one returns, and is killed with SIGKILL after a random number of them. After each kill the
//! store is reopened and must hold exactly what the acknowledged operations say, give or take
//! what was not yet durable:
//!
//! - SQLite, shared mode: every write that returned is committed, so the store equals the
//!   operations up to the last acknowledged one, or up to the one after it (in flight at the
//!   kill);
//! - SQLite, exclusive mode: write-back, committed every `commit_interval` and by `flush()`, so
//!   the store equals the operations up to some point between the last acknowledged `flush()`
//!   and the operation in flight (a prefix: a commit is one transaction);
//! - sled: write-back, flushed every `flush_every` and by `flush()`, so each key holds what
//!   some point between the last acknowledged `flush()` and the operation in flight gave it.
//!
//! Every operation is a pure function of (seed, sequence number), so the parent knows the
//! operation in flight without being told; every value names its key and its sequence number,
//! and is compared byte for byte, so a value under the wrong key or an older version is caught.
//! After every reopen `Cache::check()` must find no damage and usage counters equal to a direct
//! count of the entries.
//!
//! `PLEXCACHE_CRASH_KILLS` kills per backend and mode (5 by default); the ignored
//! `*_many_kills` tests do 100 each:
//!
//! ```sh
//! cargo test -p plexcache-tests --test crash -- --ignored --nocapture
//! ```
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use plexcache_core::{Cache, CacheBackend, Ttl};
use plexcache_sled::SledBackend;
use plexcache_sqlite::SqliteBackend;
use plexcache_testsupport::child::Child;
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};

const ENV: &str = "PLEXCACHE_CRASH_CHILD";

/// Keys the operations spread over.
const KEYSPACE: u64 = 150;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    SqliteShared,
    SqliteExclusive,
    Sled,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::SqliteShared => "sqlite-shared",
            Mode::SqliteExclusive => "sqlite-exclusive",
            Mode::Sled => "sled",
        }
    }

    fn parse(s: &str) -> Mode {
        match s {
            "sqlite-shared" => Mode::SqliteShared,
            "sqlite-exclusive" => Mode::SqliteExclusive,
            "sled" => Mode::Sled,
            other => panic!("unknown mode {other}"),
        }
    }

    /// Whether a returned write is durable only once a `flush()` covering it returned.
    fn write_back(self) -> bool {
        !matches!(self, Mode::SqliteShared)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TtlClass {
    /// No expiry.
    Never,
    /// An hour: must still be there after the reopen, with an expiry set.
    Hour,
    /// Two seconds: may have expired by the time the parent reads.
    Short,
}

impl TtlClass {
    fn ttl(self) -> Ttl {
        match self {
            TtlClass::Never => Ttl::Default,
            TtlClass::Hour => Ttl::After(Duration::from_secs(3600)),
            TtlClass::Short => Ttl::After(Duration::from_secs(2)),
        }
    }

    fn tag(self) -> &'static str {
        match self {
            TtlClass::Never => "never",
            TtlClass::Hour => "hour",
            TtlClass::Short => "short",
        }
    }

    fn from_tag(s: &str) -> Option<TtlClass> {
        match s {
            "never" => Some(TtlClass::Never),
            "hour" => Some(TtlClass::Hour),
            "short" => Some(TtlClass::Short),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Set(u64, TtlClass),
    Remove(u64),
    Flush,
}

/// Operation `seq` of a child run with `seed`.
fn op_at(seed: u64, seq: u64) -> Op {
    let mut rng = SmallRng::seed_from_u64(seed ^ seq.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let key = rng.random_range(0..KEYSPACE);
    match rng.random_range(0..100) {
        0..=54 => Op::Set(key, TtlClass::Never),
        55..=66 => Op::Set(key, TtlClass::Hour),
        67..=71 => Op::Set(key, TtlClass::Short),
        72..=93 => Op::Remove(key),
        _ => Op::Flush,
    }
}

fn key_name(key: u64) -> String {
    format!("crash:{key:03}")
}

/// The value operation `seq` writes under `key`: names both, with a length that varies with
/// them (now and then over SQLite's inline read limit and sled's separate-value threshold).
fn value(key: u64, seq: u64, ttl: TtlClass) -> String {
    let pad = if seq % 97 == 5 {
        70_000
    } else {
        ((seq * 7_919 + key * 13) % 900) as usize
    };
    format!("{}|{seq}|{}|{}", key_name(key), ttl.tag(), "p".repeat(pad))
}

/// (key, seq, ttl) of a value made by [`value`], if it is one.
fn parse_value(v: &str) -> Option<(u64, u64, TtlClass)> {
    let mut parts = v.splitn(4, '|');
    let key = parts.next()?.strip_prefix("crash:")?.parse().ok()?;
    let seq = parts.next()?.parse().ok()?;
    let ttl = TtlClass::from_tag(parts.next()?)?;
    Some((key, seq, ttl))
}

async fn open(mode: Mode, dir: &Path) -> Cache<Box<dyn CacheBackend>> {
    let backend: Box<dyn CacheBackend> = match mode {
        Mode::SqliteShared => Box::new(SqliteBackend::builder(dir).open_async().await.unwrap()),
        Mode::SqliteExclusive => Box::new(
            SqliteBackend::builder(dir)
                .open_exclusive_async()
                .await
                .unwrap(),
        ),
        Mode::Sled => Box::new(SledBackend::open(dir).unwrap()),
    };
    Cache::new(backend)
}

/// The writer. Does nothing in a normal test run.
#[test]
fn child() {
    let Ok(spec) = std::env::var(ENV) else { return };
    let parts: Vec<&str> = spec.split('|').collect();
    let [mode, seed, from, dir] = parts[..] else {
        panic!("bad {ENV}: {spec}")
    };
    let (mode, seed, from) = (
        Mode::parse(mode),
        seed.parse::<u64>().unwrap(),
        from.parse::<u64>().unwrap(),
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let cache = open(mode, Path::new(dir)).await;
        println!("OPEN");
        for seq in from.. {
            match op_at(seed, seq) {
                Op::Set(key, ttl) => cache
                    .set_with_ttl(&key_name(key), &value(key, seq, ttl), ttl.ttl())
                    .await
                    .unwrap(),
                Op::Remove(key) => {
                    cache.remove(&key_name(key)).await.unwrap();
                }
                Op::Flush => cache.flush().await.unwrap(),
            }
            // One line, written at once (stdout is line-buffered): the parent never sees an
            // acknowledgement of an operation that had not returned.
            println!("ACK {seq} .");
        }
    });
}

/// What a key holds: absent, or the value of operation `seq`.
type State = BTreeMap<u64, (u64, TtlClass)>;

fn apply(state: &mut State, seq: u64, op: Op) {
    match op {
        Op::Set(key, ttl) => {
            state.insert(key, (seq, ttl));
        }
        Op::Remove(key) => {
            state.remove(&key);
        }
        Op::Flush => {}
    }
}

/// Whether what the store holds for one key agrees with what the model says it should.
fn key_agrees(observed: Option<&(u64, TtlClass)>, model: Option<&(u64, TtlClass)>) -> bool {
    match (observed, model) {
        (Some(o), Some(m)) => o == m,
        (None, None) => true,
        // A two-second TTL may have run out by the time the parent reads.
        (None, Some((_, TtlClass::Short))) => true,
        _ => false,
    }
}

fn agrees(observed: &State, model: &State) -> Option<u64> {
    (0..KEYSPACE).find(|k| !key_agrees(observed.get(k), model.get(k)))
}

/// Reads the reopened store: every key's state (its value checked byte for byte and its expiry
/// against its TTL class), after `check()` found no damage and exact counters.
async fn observe(mode: Mode, dir: &Path, round: u64) -> State {
    let cache = open(mode, dir).await;
    let report = cache.check().await.unwrap();
    assert!(
        report.is_ok(),
        "{} round {round}: check after the kill: {report:?}",
        mode.name()
    );
    let mut state = State::new();
    for key in 0..KEYSPACE {
        let name = key_name(key);
        let Some(v) = cache.get::<String>(&name).await.unwrap() else {
            continue;
        };
        let (k, seq, ttl) = parse_value(&v).unwrap_or_else(|| {
            panic!(
                "{} round {round}: {name} holds a value that is not ours: {:?}",
                mode.name(),
                v.chars().take(60).collect::<String>()
            )
        });
        assert_eq!(
            k,
            key,
            "{} round {round}: {name} holds the value of {}",
            mode.name(),
            key_name(k)
        );
        assert!(
            v == value(key, seq, ttl),
            "{} round {round}: {name} holds a damaged value of operation {seq}",
            mode.name()
        );
        let (_, meta) = cache.get_raw(&name).await.unwrap().unwrap();
        let expiry_right = match ttl {
            TtlClass::Never => meta.expires_at.is_none(),
            TtlClass::Hour => meta
                .expires_at
                .is_some_and(|at| at > cache.now() + 50 * 60 * 1000),
            TtlClass::Short => meta.expires_at.is_some(),
        };
        assert!(
            expiry_right,
            "{} round {round}: {name} ({ttl:?}) expires at {:?}",
            mode.name(),
            meta.expires_at
        );
        state.insert(key, (seq, ttl));
    }
    let listed = cache.keys("", usize::MAX).await.unwrap();
    assert!(
        listed.len() >= state.len() && listed.iter().all(|k| k.starts_with("crash:")),
        "{} round {round}: listing {listed:?}",
        mode.name()
    );
    drop(cache);
    state
}

fn kills_from_env(default: u64) -> u64 {
    std::env::var("PLEXCACHE_CRASH_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `kills` rounds of: a child writes from sequence number `next`, is killed after a random
/// number of acknowledgements, and the store is checked against the model.
fn run(mode: Mode, kills: u64) {
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cache");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let base: u64 = std::env::var("PLEXCACHE_CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let mut rng = SmallRng::seed_from_u64(base ^ mode as u64);
    let mut state = State::new();
    let mut next = 1u64;
    let (mut acked_total, mut lost_total, mut in_flight_seen) = (0u64, 0u64, 0u64);
    for round in 0..kills {
        let seed: u64 = rng.random();
        // Mostly within a few hundred operations (before the first background commit or flush),
        // sometimes longer (across several), sometimes at once (while opening).
        let wait_for: u64 = match round % 10 {
            9 => 0,
            4 | 7 => rng.random_range(400..=2_000),
            _ => rng.random_range(1..=400),
        };
        let mut child = Child::spawn(
            "child",
            &[(
                ENV,
                format!("{}|{seed}|{next}|{}", mode.name(), dir.display()),
            )],
        );
        // Acknowledgements seen: the last one, and the last acknowledged flush.
        let mut last: Option<u64> = None;
        let mut flushed: Option<u64> = None;
        let mut note = |line: &str| {
            let Some(rest) = line.split("ACK ").nth(1) else {
                return;
            };
            let mut parts = rest.split_whitespace();
            let (Some(seq), Some(".")) = (parts.next(), parts.next()) else {
                return; // cut short by the kill
            };
            let seq: u64 = seq.parse().unwrap();
            assert_eq!(
                seq,
                last.map_or(next, |l| l + 1),
                "acknowledgements in order"
            );
            last = Some(seq);
            if op_at(seed, seq) == Op::Flush {
                flushed = Some(seq);
            }
        };
        let mut acks = 0;
        while acks < wait_for {
            let Some(line) = child.next_line() else {
                panic!("{} round {round}: the child ended", mode.name())
            };
            if line.contains("ACK ") {
                acks += 1;
            }
            note(&line);
        }
        for line in child.kill_and_drain() {
            note(&line);
        }

        // The model: the state at the round's start is durable (the last reopen closed the
        // store cleanly); from there, the operations up to `floor` are durable, and the store
        // may also hold any later prefix up to the operation in flight.
        let last_seq = last.unwrap_or(next - 1);
        let in_flight = last_seq + 1;
        let floor = if mode.write_back() {
            flushed.unwrap_or(next - 1)
        } else {
            last_seq
        };
        let mut model = state.clone();
        for seq in next..=floor {
            apply(&mut model, seq, op_at(seed, seq));
        }
        let observed = rt.block_on(observe(mode, &dir, round));
        let describe = |p: u64| {
            format!(
                "{} round {round} (seed {seed}, operations {next}..={last_seq} acknowledged, \
                 last acknowledged flush {flushed:?}, durable up to {floor}, in flight {in_flight:?}) \
                 after {p}",
                mode.name(),
                in_flight = op_at(seed, in_flight),
            )
        };
        let matched = if matches!(mode, Mode::Sled) {
            // Per key: each key holds what some point in [floor, in flight] gave it.
            let mut candidates: BTreeMap<u64, Vec<Option<(u64, TtlClass)>>> = (0..KEYSPACE)
                .map(|k| (k, vec![model.get(&k).copied()]))
                .collect();
            let mut m = model.clone();
            for seq in floor + 1..=in_flight {
                let op = op_at(seed, seq);
                apply(&mut m, seq, op);
                if let Op::Set(k, _) | Op::Remove(k) = op {
                    candidates.get_mut(&k).unwrap().push(m.get(&k).copied());
                }
            }
            for (k, allowed) in &candidates {
                assert!(
                    allowed
                        .iter()
                        .any(|a| key_agrees(observed.get(k), a.as_ref())),
                    "{}: {} holds {:?}, expected one of {allowed:?}",
                    describe(floor),
                    key_name(*k),
                    observed.get(k)
                );
            }
            None
        } else {
            // A prefix: the whole store equals the model after some operation in
            // [floor, in flight].
            let mut m = model.clone();
            let mut found = None;
            for seq in floor..=in_flight {
                if seq > floor {
                    apply(&mut m, seq, op_at(seed, seq));
                }
                if agrees(&observed, &m).is_none() {
                    found = Some(seq);
                    break;
                }
            }
            if found.is_none() {
                let k = agrees(&observed, &model).unwrap_or(0);
                panic!(
                    "{}: the store is no prefix of the operations; {} holds {:?}, the durable \
                     model says {:?}",
                    describe(floor),
                    key_name(k),
                    observed.get(&k),
                    model.get(&k)
                );
            }
            found
        };
        if let Some(p) = matched {
            if p == in_flight {
                in_flight_seen += 1;
            }
            lost_total += last_seq.saturating_sub(p);
        }
        acked_total += last.map_or(0, |l| l + 1 - next);
        state = observed;
        next = in_flight + 1;
    }
    eprintln!(
        "{}: {kills} kills in {:.1?}, {acked_total} operations acknowledged, {} in the store \
         at the end; {lost_total} acknowledged but unflushed operations lost (write-back \
         window); the operation in flight was found applied {in_flight_seen} times",
        mode.name(),
        started.elapsed(),
        state.len()
    );
}

#[test]
fn sqlite_shared_keeps_every_acknowledged_write() {
    run(Mode::SqliteShared, kills_from_env(5));
}

#[test]
fn sqlite_exclusive_keeps_every_flushed_write() {
    run(Mode::SqliteExclusive, kills_from_env(5));
}

#[test]
fn sled_keeps_every_flushed_write() {
    run(Mode::Sled, kills_from_env(5));
}

#[test]
#[ignore = "long: 100 kills"]
fn sqlite_shared_many_kills() {
    run(Mode::SqliteShared, kills_from_env(100));
}

#[test]
#[ignore = "long: 100 kills"]
fn sqlite_exclusive_many_kills() {
    run(Mode::SqliteExclusive, kills_from_env(100));
}

#[test]
#[ignore = "long: 100 kills"]
fn sled_many_kills() {
    run(Mode::Sled, kills_from_env(100));
}
