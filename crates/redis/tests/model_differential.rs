//! Differential test: random operation sequences applied to the Redis backend and to the
//! reference `ModelBackend` give identical results, including which entries eviction and
//! purging pick (equal timestamps are frequent, so ties must break by write order exactly),
//! within a write's own limit (purge, write, evict or refuse) and within batches. Every so
//! often, and at the end, every stored entry (expired ones not yet purged included) and its
//! metadata are compared.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use plexcache_core::model::ModelBackend;
use plexcache_core::{
    Access, Batch, BatchOutcome, BatchPut, Bytes, CacheBackend, EvictionPolicy, Millis, PutOutcome,
    WriteLimit,
};
use plexcache_redis::RedisBackend;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const PREFIXES: [&str; 4] = ["a:", "b:", "ab:", ""];

fn key(rng: &mut Rng) -> String {
    let p = PREFIXES[rng.below(4) as usize];
    format!("{p}{}", rng.below(24))
}

const POLICIES: [EvictionPolicy; 4] = [
    EvictionPolicy::None,
    EvictionPolicy::LeastRecentlyStored,
    EvictionPolicy::LeastRecentlyUsed,
    EvictionPolicy::LeastFrequentlyUsed,
];

fn value(rng: &mut Rng) -> Bytes {
    Bytes::from(vec![b'x'; rng.below(120) as usize])
}

fn expiry(rng: &mut Rng, now: Millis) -> Option<Millis> {
    match rng.below(3) {
        0 => None,
        _ => Some(now + rng.below(20)),
    }
}

/// A write limit: mostly unbounded, else a bound near the current usage (so that refusals and
/// evictions happen), with a purge of a few entries now and then.
fn write_limit(rng: &mut Rng, now: Millis, bytes: u64) -> WriteLimit {
    let mut limit = match rng.below(4) {
        0 => WriteLimit::UNBOUNDED,
        _ => WriteLimit {
            max_bytes: (bytes + 300).saturating_sub(rng.below(900)),
            policy: POLICIES[rng.below(4) as usize],
            ..WriteLimit::UNBOUNDED
        },
    };
    if rng.below(3) == 0 {
        limit = limit.with_purge(now, rng.below(5) as usize);
    }
    limit
}

/// Every stored entry and its metadata, expired or not (at time 0 nothing has expired yet),
/// is the same in both stores.
async fn assert_same_entries(redis: &RedisBackend, model: &ModelBackend, ctx: &str) {
    let keys = model.keys("", 0, usize::MAX).await.unwrap();
    assert_eq!(
        redis.keys("", 0, usize::MAX).await.unwrap(),
        keys,
        "{ctx}: stored keys"
    );
    for k in keys {
        let want = model.get(&k, 0).await.unwrap();
        assert!(want.is_some(), "{ctx}: the model lists {k}");
        assert_eq!(redis.get(&k, 0).await.unwrap(), want, "{ctx}: entry {k}");
    }
}

/// What the writes of the runs did, so that runs that never reach a branch fail.
#[derive(Debug, Default)]
struct Seen {
    put_refused: u32,
    put_purged: u32,
    put_evicted: u32,
    batch_applied: u32,
    batch_refused: u32,
    batch_evicted: u32,
    batch_removed: u32,
}

async fn run(url: &str, seed: u64, ops: usize, seen: &mut Seen) {
    let redis = common::connect(url, &common::unique_prefix("diff")).await;
    let model = ModelBackend::new();
    let mut rng = Rng(seed | 1);
    let mut now: u64 = 1_700_000_000_000;
    for step in 0..ops {
        let ctx = format!("seed {seed} step {step}");
        now += rng.below(3);
        match rng.below(100) {
            0..=31 => {
                let k = key(&mut rng);
                let value = value(&mut rng);
                let expires = expiry(&mut rng, now);
                let bytes = model.usage().await.unwrap().bytes;
                let limit = write_limit(&mut rng, now, bytes);
                let a = redis
                    .put(&k, value.clone(), now, expires, limit)
                    .await
                    .unwrap();
                let b = model.put(&k, value, now, expires, limit).await.unwrap();
                assert_eq!(a, b, "{ctx}: put {k} {limit:?}");
                match b {
                    PutOutcome::Refused { .. } => seen.put_refused += 1,
                    PutOutcome::Stored {
                        expired, evicted, ..
                    } => {
                        seen.put_purged += u32::from(expired.entries > 0);
                        seen.put_evicted += u32::from(evicted.entries > 0);
                    }
                }
            }
            32..=41 => {
                let mut batch = Batch::new(now);
                for _ in 0..rng.below(3) {
                    batch
                        .remove_prefixes
                        .push(PREFIXES[rng.below(4) as usize].to_owned());
                }
                // Half the puts rewrite a stored entry.
                let stored = model.keys("", 0, usize::MAX).await.unwrap();
                for _ in 0..rng.below(8) {
                    let key = match rng.below(2) {
                        0 if !stored.is_empty() => {
                            stored[rng.below(stored.len() as u64) as usize].clone()
                        }
                        _ => key(&mut rng),
                    };
                    batch.puts.push(BatchPut {
                        key,
                        value: value(&mut rng),
                        expires_at: expiry(&mut rng, now),
                    });
                }
                let bytes = model.usage().await.unwrap().bytes;
                // Often just above the usage without eviction: whether the batch fits then
                // depends on exactly what it removes and replaces.
                let limit = match rng.below(3) {
                    0 => WriteLimit::refuse_above(bytes + rng.below(400)),
                    _ => write_limit(&mut rng, now, bytes),
                };
                let a = redis.write_batch(&batch, limit).await.unwrap();
                let b = model.write_batch(&batch, limit).await.unwrap();
                assert_eq!(a, b, "{ctx}: write_batch {batch:?} {limit:?}");
                match b {
                    BatchOutcome::Refused { .. } => seen.batch_refused += 1,
                    BatchOutcome::Applied {
                        removed, evicted, ..
                    } => {
                        seen.batch_applied += 1;
                        seen.batch_removed += u32::from(removed.entries > 0);
                        seen.batch_evicted += u32::from(evicted.entries > 0);
                    }
                }
            }
            42..=49 => {
                let k = key(&mut rng);
                let a = redis.get(&k, now).await.unwrap();
                let b = model.get(&k, now).await.unwrap();
                assert_eq!(a, b, "{ctx}: get {k}");
            }
            50..=57 => {
                let batch: Vec<Access> = (0..1 + rng.below(4))
                    .map(|_| Access {
                        key: key(&mut rng),
                        at: now + rng.below(5),
                        count: 1 + rng.below(3),
                    })
                    .collect();
                redis.record_accesses(&batch).await.unwrap();
                model.record_accesses(&batch).await.unwrap();
            }
            58..=63 => {
                let k = key(&mut rng);
                assert_eq!(
                    redis.remove(&k).await.unwrap(),
                    model.remove(&k).await.unwrap(),
                    "{ctx}: remove {k}"
                );
            }
            64..=66 => {
                let p = PREFIXES[rng.below(4) as usize];
                let p = if p.is_empty() { "b:1" } else { p };
                assert_eq!(
                    redis.remove_prefix(p).await.unwrap(),
                    model.remove_prefix(p).await.unwrap(),
                    "{ctx}: remove_prefix {p}"
                );
            }
            67..=74 => {
                let limit = rng.below(6) as usize;
                assert_eq!(
                    redis.purge_expired(now, limit).await.unwrap(),
                    model.purge_expired(now, limit).await.unwrap(),
                    "{ctx}: purge"
                );
            }
            75..=89 => {
                let policy = [
                    EvictionPolicy::LeastRecentlyStored,
                    EvictionPolicy::LeastRecentlyUsed,
                    EvictionPolicy::LeastFrequentlyUsed,
                ][rng.below(3) as usize];
                let usage = model.usage().await.unwrap();
                let target = usage.bytes.saturating_sub(rng.below(400));
                let protect = (rng.below(2) == 0).then(|| key(&mut rng));
                assert_eq!(
                    redis
                        .evict(policy, target, protect.as_deref())
                        .await
                        .unwrap(),
                    model
                        .evict(policy, target, protect.as_deref())
                        .await
                        .unwrap(),
                    "{ctx}: evict {policy}"
                );
            }
            90..=95 => {
                let p = PREFIXES[rng.below(4) as usize];
                let limit = rng.below(30) as usize;
                assert_eq!(
                    redis.keys(p, now, limit).await.unwrap(),
                    model.keys(p, now, limit).await.unwrap(),
                    "{ctx}: keys {p}"
                );
            }
            _ => {
                if rng.below(10) == 0 {
                    assert_eq!(
                        redis.clear().await.unwrap(),
                        model.clear().await.unwrap(),
                        "{ctx}: clear"
                    );
                }
            }
        }
        assert_eq!(
            redis.usage().await.unwrap(),
            model.usage().await.unwrap(),
            "{ctx}: usage"
        );
        if step % 50 == 49 {
            assert_same_entries(&redis, &model, &ctx).await;
        }
    }
    // Same survivors, same metadata.
    assert_same_entries(&redis, &model, &format!("seed {seed} end")).await;
    assert_eq!(redis.integrity_check().await.unwrap(), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_results_as_the_model() {
    let Some(server) = common::RedisServer::start() else {
        return;
    };
    let mut seen = Seen::default();
    for seed in [1, 7, 42, 1234, 98_765] {
        run(&server.url(), seed, 1_500, &mut seen).await;
    }
    eprintln!("{seen:?}");
    let Seen {
        put_refused,
        put_purged,
        put_evicted,
        batch_applied,
        batch_refused,
        batch_evicted,
        batch_removed,
    } = seen;
    for (what, n) in [
        ("refused puts", put_refused),
        ("puts that purged", put_purged),
        ("puts that evicted", put_evicted),
        ("applied batches", batch_applied),
        ("refused batches", batch_refused),
        ("batches that evicted", batch_evicted),
        ("batches that removed a prefix", batch_removed),
    ] {
        assert!(n > 0, "no {what}: the runs miss a branch");
    }
}
