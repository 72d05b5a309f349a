//! Differential test: random operation sequences give the same answers from `MemoryBackend`
//! as from the reference `ModelBackend`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use plexcache_core::Bytes;
use plexcache_core::backend::{Access, Batch, BatchPut, CacheBackend, EvictionPolicy, WriteLimit};
use plexcache_core::model::ModelBackend;
use plexcache_memory::MemoryBackend;
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Put {
        key: u8,
        len: u16,
        ttl: Option<u16>,
        max: Option<u16>,
        policy: u8,
        purge: u8,
    },
    Batch {
        prefix: u8,
        keys: Vec<(u8, u16)>,
        ttl: Option<u16>,
        max: Option<u16>,
        policy: u8,
    },
    Get {
        key: u8,
    },
    Remove {
        key: u8,
    },
    RemovePrefix {
        prefix: u8,
    },
    Purge {
        limit: u8,
    },
    Evict {
        policy: u8,
        target: u16,
        protect: Option<u8>,
    },
    Access {
        key: u8,
        count: u8,
    },
    Keys {
        prefix: u8,
        limit: u8,
    },
    Tick {
        ms: u16,
    },
}

fn key(k: u8) -> String {
    // Shared prefixes ("k1", "k12", ...) and some non-ASCII.
    if k.is_multiple_of(5) {
        format!("ü{}", k / 5)
    } else {
        format!("k{k}")
    }
}

fn prefix(p: u8) -> String {
    match p % 4 {
        0 => String::new(),
        1 => "k".into(),
        2 => format!("k{}", p % 10),
        _ => "ü".into(),
    }
}

fn policy(p: u8) -> EvictionPolicy {
    match p % 4 {
        0 => EvictionPolicy::LeastRecentlyStored,
        1 => EvictionPolicy::LeastRecentlyUsed,
        2 => EvictionPolicy::LeastFrequentlyUsed,
        _ => EvictionPolicy::None,
    }
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..40, 0u16..300, proptest::option::of(0u16..50), proptest::option::of(0u16..3000), any::<u8>(), 0u8..4)
            .prop_map(|(key, len, ttl, max, policy, purge)| Op::Put { key, len, ttl, max, policy, purge }),
        1 => (any::<u8>(), proptest::collection::vec((0u8..40, 0u16..300), 0..6), proptest::option::of(0u16..50), proptest::option::of(0u16..3000), any::<u8>())
            .prop_map(|(prefix, keys, ttl, max, policy)| Op::Batch { prefix, keys, ttl, max, policy }),
        2 => (0u8..40).prop_map(|key| Op::Get { key }),
        1 => (0u8..40).prop_map(|key| Op::Remove { key }),
        1 => any::<u8>().prop_map(|prefix| Op::RemovePrefix { prefix }),
        1 => (0u8..20).prop_map(|limit| Op::Purge { limit }),
        1 => (any::<u8>(), 0u16..3000, proptest::option::of(0u8..40))
            .prop_map(|(policy, target, protect)| Op::Evict { policy, target, protect }),
        2 => (0u8..40, 1u8..4).prop_map(|(key, count)| Op::Access { key, count }),
        1 => (any::<u8>(), 0u8..50).prop_map(|(prefix, limit)| Op::Keys { prefix, limit }),
        2 => (0u16..30).prop_map(|ms| Op::Tick { ms }),
    ]
}

fn limit(max: Option<u16>, p: u8, now: u64, purge: usize) -> WriteLimit {
    match max {
        None => WriteLimit::UNBOUNDED.with_purge(now, purge),
        Some(max) => WriteLimit::evict_to(u64::from(max), policy(p)).with_purge(now, purge),
    }
}

async fn run(ops: Vec<Op>) {
    let model = ModelBackend::new();
    let memory = MemoryBackend::builder().shards(4).build();
    let mut now: u64 = 1_000_000;
    for (i, op) in ops.into_iter().enumerate() {
        let ctx = format!("op {i}: {op:?}");
        match op {
            Op::Put {
                key: k,
                len,
                ttl,
                max,
                policy: p,
                purge,
            } => {
                let v = Bytes::from(vec![k; len as usize]);
                let exp = ttl.map(|t| now + t as u64);
                let limit = limit(max, p, now, purge as usize);
                let a = model
                    .put(&key(k), v.clone(), now, exp, limit)
                    .await
                    .unwrap();
                let b = memory.put(&key(k), v, now, exp, limit).await.unwrap();
                assert_eq!(a, b, "{ctx}");
            }
            Op::Batch {
                prefix: p,
                keys,
                ttl,
                max,
                policy: pol,
            } => {
                let mut batch = Batch::new(now);
                batch.remove_prefixes = vec![prefix(p)];
                for (k, len) in keys {
                    batch.puts.push(BatchPut {
                        key: key(k),
                        value: Bytes::from(vec![k; len as usize]),
                        expires_at: ttl.map(|t| now + t as u64),
                    });
                }
                let limit = limit(max, pol, now, 2);
                let a = model.write_batch(&batch, limit).await.unwrap();
                let b = memory.write_batch(&batch, limit).await.unwrap();
                assert_eq!(a, b, "{ctx}");
            }
            Op::Get { key: k } => {
                let a = model.get(&key(k), now).await.unwrap();
                let b = memory.get(&key(k), now).await.unwrap();
                assert_eq!(a, b, "{ctx}");
            }
            Op::Remove { key: k } => {
                assert_eq!(
                    model.remove(&key(k)).await.unwrap(),
                    memory.remove(&key(k)).await.unwrap(),
                    "{ctx}"
                );
            }
            Op::RemovePrefix { prefix: p } => {
                assert_eq!(
                    model.remove_prefix(&prefix(p)).await.unwrap(),
                    memory.remove_prefix(&prefix(p)).await.unwrap(),
                    "{ctx}"
                );
            }
            Op::Purge { limit } => {
                assert_eq!(
                    model.purge_expired(now, limit as usize).await.unwrap(),
                    memory.purge_expired(now, limit as usize).await.unwrap(),
                    "{ctx}"
                );
            }
            Op::Evict {
                policy: p,
                target,
                protect,
            } => {
                let protect = protect.map(key);
                let a = model
                    .evict(policy(p), target as u64, protect.as_deref())
                    .await
                    .unwrap();
                let b = memory
                    .evict(policy(p), target as u64, protect.as_deref())
                    .await
                    .unwrap();
                assert_eq!(a, b, "{ctx}");
            }
            Op::Access { key: k, count } => {
                let acc = [Access {
                    key: key(k),
                    at: now,
                    count: count as u64,
                }];
                model.record_accesses(&acc).await.unwrap();
                memory.record_accesses(&acc).await.unwrap();
            }
            Op::Keys { prefix: p, limit } => {
                assert_eq!(
                    model.keys(&prefix(p), now, limit as usize).await.unwrap(),
                    memory.keys(&prefix(p), now, limit as usize).await.unwrap(),
                    "{ctx}"
                );
            }
            Op::Tick { ms } => now += ms as u64,
        }
        assert_eq!(
            model.usage().await.unwrap(),
            memory.usage().await.unwrap(),
            "usage after {ctx}"
        );
    }
    // Same survivors (expired or not), same values and metadata.
    let keys = model.keys("", 0, usize::MAX).await.unwrap();
    assert_eq!(keys, memory.keys("", 0, usize::MAX).await.unwrap());
    for k in keys {
        assert_eq!(
            model.get(&k, 0).await.unwrap(),
            memory.get(&k, 0).await.unwrap(),
            "survivor {k}"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn memory_matches_model(ops in proptest::collection::vec(op(), 1..120)) {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(run(ops));
    }
}
