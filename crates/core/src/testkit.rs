//! The conformance suite: every rule of the backend contract, checked against any backend.
//!
//! A backend crate implements [`BackendFactory`] and runs the suite, either one test per rule
//! with [`conformance_tests!`](crate::conformance_tests) or all at once with [`run_all`]:
//!
//! ```
//! use plexcache_core::model::ModelBackend;
//! use plexcache_core::testkit::BackendFactory;
//!
//! struct Model;
//!
//! #[plexcache_core::async_trait]
//! impl BackendFactory for Model {
//!     type Backend = ModelBackend;
//!     async fn create(&self) -> ModelBackend {
//!         ModelBackend::new()
//!     }
//!     async fn reopen(&self, _backend: ModelBackend) -> Option<ModelBackend> {
//!         None // not persistent
//!     }
//! }
//!
//! plexcache_core::testkit::block_on(plexcache_core::testkit::run_all(&Model));
//! ```
//!
//! The checks panic with a message naming the rule and the backend on the first violation, like
//! any test assertion. They use a [`ManualClock`] that starts at the current wall-clock time (so
//! backends with server-side expiry see plausible times) and only moves when a check moves it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::backend::{
    Access, Batch, BatchOutcome, BatchPut, CacheBackend, Counters, EvictionPolicy, PutOutcome,
    Removed, Revalidated, Usage, WriteLimit,
};
use crate::{Cache, CacheBuilder, Error, ManualClock, Ttl, codec};

/// Makes stores for the suite.
#[async_trait]
pub trait BackendFactory: Send + Sync {
    /// The backend under test.
    type Backend: CacheBackend;

    /// A new, empty store that no other call shares (its own directory, database or key
    /// prefix).
    async fn create(&self) -> Self::Backend;

    /// Closes `backend` (dropping it must release its files or connections) and opens the same
    /// store again. `None` for backends without persistence; the reopen checks are then
    /// skipped.
    async fn reopen(&self, backend: Self::Backend) -> Option<Self::Backend>;
}

/// Runs a future to completion on a fresh multi-threaded tokio runtime (4 workers), so that
/// concurrency checks really run in parallel.
pub fn block_on<F: std::future::Future>(fut: F) -> F::Output {
    // Building a runtime only fails when the OS refuses threads; a test cannot go on then.
    #[allow(clippy::expect_used)]
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("tokio runtime for the conformance suite");
    rt.block_on(fut)
}

/// A value shaped like the library items plexcache stores.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Item {
    /// Rating key.
    pub rating_key: String,
    /// Title.
    pub title: String,
    /// File paths.
    pub paths: Vec<String>,
}
crate::cache_value!(Item, "plexcache.testkit.Item", 1);

/// The same shape under a newer schema version: old entries must read as misses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemV2 {
    /// Rating key.
    pub rating_key: String,
    /// Title.
    pub title: String,
    /// File paths.
    pub paths: Vec<String>,
}
crate::cache_value!(ItemV2, "plexcache.testkit.Item", 2);

fn item(n: usize) -> Item {
    Item {
        rating_key: n.to_string(),
        title: format!("Title {n}: ünïcødé 🎬"),
        paths: vec![format!("/media/movies/{n}/file.mkv")],
    }
}

fn clock() -> ManualClock {
    ManualClock::starting_now()
}

fn builder<B: CacheBackend>(backend: B, clock: &ManualClock) -> CacheBuilder<B> {
    Cache::builder(backend)
        .clock(clock.clone())
        .stats_flush_interval(Duration::from_secs(3600))
}

async fn usage<B: CacheBackend>(cache: &Cache<B>) -> Usage {
    ok(cache.backend().usage().await, "usage")
}

fn ok<T>(r: crate::Result<T>, what: &str) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("{what}: unexpected error: {e} ({e:?})"),
    }
}

/// Calls `$m!` with the name of every backend check, in order: the one list of the suite, used
/// by [`run_all`] and [`conformance_tests!`](crate::conformance_tests). Checks of `Cache`'s own
/// policy that no backend can change (single-flight) are not in it: they run once, in this
/// crate's tests, over the model (see [`run_policy_checks`]).
#[doc(hidden)]
#[macro_export]
macro_rules! testkit_checks {
    ([$($m:tt)*] ($($args:tt)*)) => {
        $($m)*! { $($args)*;
            basic_operations, raw_put_and_remove, prefix_operations, ttl_boundaries,
            purge_expired_respects_limit_and_order, purge_ties_go_in_write_order,
            put_keeps_the_limit_in_one_call, concurrent_puts_race_for_the_last_bytes,
            refused_replacement_keeps_the_old_entry, remove_prefix_edges,
            previous_size_of_an_expired_entry, a_write_resets_the_access_order,
            batches_replace_atomically, batches_are_seen_whole,
            change_token_moves_on_writes, size_limit_is_a_hard_bound,
            eviction_least_recently_stored, eviction_least_recently_used,
            eviction_least_frequently_used, eviction_protects_the_written_key,
            oversize_values_are_refused, policy_none_refuses_when_full, record_accesses_rules,
            exact_stats, undecodable_values_are_misses, keys_with_any_characters, large_value,
            revalidation_and_shared_values, concurrent_writers_keep_exact_usage,
            clear_keeps_persistent_stats, a_healthy_store_passes_its_checks,
            reopen_keeps_entries_ttl_and_stats }
    };
}

macro_rules! run_checks {
    ($f:expr; $($check:ident),* $(,)?) => {
        $($check($f).await;)*
    };
}

/// Runs every backend check, in order.
pub async fn run_all<F: BackendFactory>(f: &F) {
    crate::testkit_checks!([run_checks](f));
}

/// Runs the checks of `Cache`'s own policy, which do not depend on the backend (single-flight
/// fetches sharing a value or an error). This crate runs them over the model; a custom
/// `Cache` layer can run them over its backend.
pub async fn run_policy_checks<F: BackendFactory>(f: &F) {
    single_flight_shares_a_value(f).await;
    single_flight_shares_an_error(f).await;
}

/// get, set, overwrite, remove, contains, clear through [`Cache`].
pub async fn basic_operations<F: BackendFactory>(f: &F) {
    let clock = clock();
    let cache = ok(builder(f.create().await, &clock).build(), "build");
    let name = cache.backend().name();
    assert_eq!(
        ok(cache.get::<Item>("a").await, "get"),
        None,
        "{name}: empty get"
    );
    ok(cache.set("a", &item(1)).await, "set");
    assert_eq!(
        ok(cache.get::<Item>("a").await, "get"),
        Some(item(1)),
        "{name}: get after set"
    );
    assert!(
        ok(cache.contains("a").await, "contains"),
        "{name}: contains"
    );
    ok(cache.set("a", &item(2)).await, "overwrite");
    assert_eq!(
        ok(cache.get::<Item>("a").await, "get"),
        Some(item(2)),
        "{name}: overwrite"
    );
    let u = usage(&cache).await;
    let raw = ok(cache.get_raw("a").await, "get_raw").map(|(b, m)| (b.len(), m));
    let (len, meta) = raw.unwrap_or_else(|| panic!("{name}: get_raw after set"));
    assert_eq!(
        meta.size,
        1 + len as u64,
        "{name}: size is key + value bytes"
    );
    assert_eq!(
        u,
        Usage {
            entries: 1,
            bytes: meta.size
        },
        "{name}: usage after overwrite"
    );
    assert!(
        ok(cache.remove("a").await, "remove"),
        "{name}: remove returns true"
    );
    assert!(
        !ok(cache.remove("a").await, "remove"),
        "{name}: second remove returns false"
    );
    assert!(
        !ok(cache.contains("a").await, "contains"),
        "{name}: gone after remove"
    );
    assert_eq!(
        usage(&cache).await,
        Usage::default(),
        "{name}: usage after remove"
    );
    for i in 0..10 {
        ok(cache.set(&format!("k{i}"), &item(i)).await, "set");
    }
    assert_eq!(ok(cache.clear().await, "clear"), 10, "{name}: clear count");
    assert_eq!(
        usage(&cache).await,
        Usage::default(),
        "{name}: usage after clear"
    );
    assert_eq!(
        ok(cache.get::<Item>("k3").await, "get"),
        None,
        "{name}: get after clear"
    );
}

/// The backend-level contract of put (previous size, usage, metadata reset) and remove.
pub async fn raw_put_and_remove<F: BackendFactory>(f: &F) {
    let b = f.create().await;
    let name = b.name();
    let now = crate::SystemClock.now_millis_for_testkit();
    let out = ok(
        b.put(
            "k",
            Bytes::from_static(b"12345"),
            now,
            None,
            WriteLimit::UNBOUNDED,
        )
        .await,
        "put",
    );
    assert_eq!(
        out,
        PutOutcome::Stored {
            previous_size: None,
            usage: Usage {
                entries: 1,
                bytes: 6
            },
            expired: Removed::default(),
            evicted: Removed::default(),
        },
        "{name}: first put"
    );
    ok(
        b.record_accesses(&[Access {
            key: "k".into(),
            at: now + 5,
            count: 3,
        }])
        .await,
        "access",
    );
    let e = ok(b.get("k", now).await, "get").unwrap_or_else(|| panic!("{name}: get after put"));
    assert_eq!(
        (e.meta.accessed_at, e.meta.access_count),
        (now + 5, 3),
        "{name}: accesses"
    );
    let out = ok(
        b.put(
            "k",
            Bytes::from_static(b"123"),
            now + 10,
            Some(now + 100),
            WriteLimit::UNBOUNDED,
        )
        .await,
        "put",
    );
    assert_eq!(
        out,
        PutOutcome::Stored {
            previous_size: Some(6),
            usage: Usage {
                entries: 1,
                bytes: 4
            },
            expired: Removed::default(),
            evicted: Removed::default(),
        },
        "{name}: replacing put"
    );
    let e = ok(b.get("k", now + 10).await, "get").unwrap_or_else(|| panic!("{name}: get"));
    assert_eq!(&e.value[..], b"123", "{name}: value replaced");
    assert_eq!(e.meta.stored_at, now + 10, "{name}: stored_at");
    assert_eq!(e.meta.expires_at, Some(now + 100), "{name}: expires_at");
    assert_eq!(
        (e.meta.accessed_at, e.meta.access_count),
        (now + 10, 0),
        "{name}: access reset"
    );
    // A refused put changes nothing.
    let out = ok(
        b.put(
            "j",
            Bytes::from_static(b"0123456789"),
            now,
            None,
            WriteLimit::refuse_above(10),
        )
        .await,
        "put",
    );
    assert_eq!(
        out,
        PutOutcome::Refused {
            usage: Usage {
                entries: 1,
                bytes: 4
            }
        },
        "{name}: refused"
    );
    assert!(
        ok(b.get("j", now).await, "get").is_none(),
        "{name}: refused put wrote nothing"
    );
    // Replacing within max_bytes counts the replaced size out.
    let out = ok(
        b.put(
            "k",
            Bytes::from_static(b"123456789"),
            now,
            None,
            WriteLimit::refuse_above(10),
        )
        .await,
        "put",
    );
    assert!(
        matches!(out, PutOutcome::Stored { .. }),
        "{name}: replace within max_bytes"
    );
    let removed = ok(b.remove("k").await, "remove").map(|m| m.size);
    assert_eq!(removed, Some(10), "{name}: remove returns the metadata");
    assert_eq!(
        ok(b.remove("k").await, "remove"),
        None,
        "{name}: remove missing"
    );
    assert_eq!(
        ok(b.usage().await, "usage"),
        Usage::default(),
        "{name}: usage at end"
    );
}

/// remove_prefix and keys only touch keys with the prefix, in byte order, without expired ones.
pub async fn prefix_operations<F: BackendFactory>(f: &F) {
    let clock = clock();
    let cache = ok(builder(f.create().await, &clock).build(), "build");
    let name = cache.backend().name();
    for k in [
        "lib:a:1", "lib:a:2", "lib:a:3", "lib:ab:1", "lib:b:1", "lia", "lib:",
    ] {
        ok(cache.set(k, &1u32).await, "set");
    }
    ok(
        cache
            .set_with_ttl("lib:a:0", &1u32, Duration::from_millis(10))
            .await,
        "set",
    );
    clock.advance(Duration::from_millis(10));
    assert_eq!(
        ok(cache.keys("lib:a:", 100).await, "keys"),
        vec!["lib:a:1", "lib:a:2", "lib:a:3"],
        "{name}: keys by prefix leave out expired entries"
    );
    assert_eq!(
        ok(cache.keys("lib:a:", 2).await, "keys"),
        vec!["lib:a:1", "lib:a:2"],
        "{name}: limit"
    );
    assert_eq!(
        ok(cache.keys("", 100).await, "keys").len(),
        7,
        "{name}: all keys"
    );
    assert_eq!(
        ok(cache.remove_prefix("lib:a:").await, "remove_prefix"),
        4,
        "{name}: removed"
    );
    assert_eq!(
        ok(cache.keys("", 100).await, "keys"),
        vec!["lia", "lib:", "lib:ab:1", "lib:b:1"],
        "{name}: the rest is untouched"
    );
    assert_eq!(
        usage(&cache).await.entries,
        4,
        "{name}: usage after remove_prefix"
    );
    assert_eq!(
        ok(cache.remove_prefix("zzz").await, "remove_prefix"),
        0,
        "{name}: no match"
    );
}

/// An entry is present before `expires_at`, absent at and after it; expiry counts.
pub async fn ttl_boundaries<F: BackendFactory>(f: &F) {
    let clock = clock();
    let cache = ok(
        builder(f.create().await, &clock)
            .default_ttl(Duration::from_secs(10))
            .cull_limit(0)
            .build(),
        "build",
    );
    let name = cache.backend().name();
    ok(cache.set("default", &1u32).await, "set");
    ok(
        cache
            .set_with_ttl("short", &2u32, Duration::from_millis(1))
            .await,
        "set",
    );
    ok(cache.set_with_ttl("never", &3u32, Ttl::Never).await, "set");
    ok(cache.set_with_ttl("none", &4u32, None).await, "set");
    ok(
        cache.set_with_ttl("zero", &5u32, Duration::ZERO).await,
        "set",
    );
    assert_eq!(
        ok(cache.get::<u32>("zero").await, "get"),
        None,
        "{name}: zero TTL is expired"
    );
    assert_eq!(
        ok(cache.get::<u32>("short").await, "get"),
        Some(2),
        "{name}: before expiry"
    );
    clock.advance(Duration::from_millis(1));
    assert_eq!(
        ok(cache.get::<u32>("short").await, "get"),
        None,
        "{name}: at expires_at"
    );
    assert!(
        !ok(cache.contains("short").await, "contains"),
        "{name}: contains at expiry"
    );
    clock.advance(Duration::from_millis(9_998));
    assert_eq!(
        ok(cache.get::<u32>("default").await, "get"),
        Some(1),
        "{name}: 1 ms before"
    );
    clock.advance(Duration::from_millis(1));
    assert_eq!(
        ok(cache.get::<u32>("default").await, "get"),
        None,
        "{name}: default TTL at expiry"
    );
    clock.advance(Duration::from_secs(86_400 * 365));
    assert_eq!(
        ok(cache.get::<u32>("never").await, "get"),
        Some(3),
        "{name}: Ttl::Never"
    );
    assert_eq!(
        ok(cache.get::<u32>("none").await, "get"),
        Some(4),
        "{name}: None = never"
    );
    assert_eq!(
        usage(&cache).await.entries,
        5,
        "{name}: expired entries stay until purged"
    );
    assert!(
        !ok(cache.remove("short").await, "remove"),
        "{name}: removing an expired entry"
    );
    assert_eq!(
        ok(cache.expire().await, "expire"),
        2,
        "{name}: expire() purges the rest"
    );
    assert_eq!(usage(&cache).await.entries, 2, "{name}: usage after expire");
    let s = ok(cache.stats().await, "stats");
    assert_eq!(s.session.expirations, 3, "{name}: expirations counted");
    // Lazy purge on writes: cull_limit entries per write.
    let cache = ok(
        builder(f.create().await, &clock).cull_limit(2).build(),
        "build",
    );
    for i in 0..5 {
        ok(
            cache
                .set_with_ttl(&format!("e{i}"), &1u32, Duration::from_millis(5))
                .await,
            "set",
        );
    }
    clock.advance(Duration::from_millis(5));
    ok(cache.set("fresh", &1u32).await, "set");
    assert_eq!(
        usage(&cache).await.entries,
        4,
        "{name}: a write purges cull_limit expired entries"
    );
}

/// purge_expired removes at most `limit`, soonest expiry first, and never live entries.
pub async fn purge_expired_respects_limit_and_order<F: BackendFactory>(f: &F) {
    let b = f.create().await;
    let name = b.name();
    let now = crate::SystemClock.now_millis_for_testkit();
    for i in 0..30u64 {
        let key = format!("x{:02}", 29 - i);
        ok(
            b.put(
                &key,
                Bytes::from_static(b"v"),
                now,
                Some(now + 1 + i),
                WriteLimit::UNBOUNDED,
            )
            .await,
            "put",
        );
    }
    ok(
        b.put(
            "live",
            Bytes::from_static(b"v"),
            now,
            Some(now + 1_000),
            WriteLimit::UNBOUNDED,
        )
        .await,
        "put",
    );
    ok(
        b.put(
            "forever",
            Bytes::from_static(b"v"),
            now,
            None,
            WriteLimit::UNBOUNDED,
        )
        .await,
        "put",
    );
    let later = now + 100;
    let r = ok(b.purge_expired(later, 10).await, "purge");
    assert_eq!(r.entries, 10, "{name}: purge respects its limit");
    // The soonest to expire were x29..x20 (expires now+1..now+10).
    for i in 20..30 {
        assert!(
            ok(b.get(&format!("x{i}"), now).await, "get").is_none(),
            "{name}: x{i} purged first"
        );
    }
    assert!(
        ok(b.get("x19", now).await, "get").is_some(),
        "{name}: x19 not yet purged"
    );
    let r = ok(b.purge_expired(later, 1000).await, "purge");
    assert_eq!(r.entries, 20, "{name}: the remaining expired entries");
    assert_eq!(
        ok(b.usage().await, "usage").entries,
        2,
        "{name}: live entries kept"
    );
    assert_eq!(
        ok(b.purge_expired(later, 1000).await, "purge").entries,
        0,
        "{name}: idempotent"
    );
}

/// Ties in expiry are purged in write order (the entry written first goes first), and a
/// rewrite moves an entry to the end of that order.
pub async fn purge_ties_go_in_write_order<F: BackendFactory>(f: &F) {
    let b = f.create().await;
    let name = b.name();
    let now = crate::SystemClock.now_millis_for_testkit();
    let at = Some(now + 10);
    for key in ["c", "a", "b"] {
        ok(
            b.put(
                key,
                Bytes::from_static(b"v"),
                now,
                at,
                WriteLimit::UNBOUNDED,
            )
            .await,
            "put",
        );
    }
    // Rewriting "c" makes it the latest write.
    ok(
        b.put(
            "c",
            Bytes::from_static(b"w"),
            now,
            at,
            WriteLimit::UNBOUNDED,
        )
        .await,
        "put",
    );
    let mut order = Vec::new();
    for _ in 0..3 {
        ok(b.purge_expired(now + 10, 1).await, "purge");
        let left: Vec<String> = ok(b.keys("", now, 10).await, "keys");
        let gone: Vec<&str> = ["a", "b", "c"]
            .into_iter()
            .filter(|k| !left.iter().any(|l| l == k) && !order.contains(k))
            .collect();
        assert_eq!(gone.len(), 1, "{name}: one purged per call");
        order.push(gone[0]);
    }
    assert_eq!(order, ["a", "b", "c"], "{name}: ties purged in write order");
}

/// `put` keeps its [`WriteLimit`] in the same call: expired entries purged first, the write,
/// then eviction in policy order down to `max_bytes`, never the key just written; the outcome
/// reports both.
pub async fn put_keeps_the_limit_in_one_call<F: BackendFactory>(f: &F) {
    let b = f.create().await;
    let name = b.name();
    let now = crate::SystemClock.now_millis_for_testkit();
    let v = Bytes::from(vec![1u8; 98]);
    // e0..e4 expire at now + 5; k0..k4 never. 100 bytes each.
    for i in 0..5u64 {
        ok(
            b.put(
                &format!("e{i}"),
                v.clone(),
                now + i,
                Some(now + 5),
                WriteLimit::UNBOUNDED,
            )
            .await,
            "put",
        );
        ok(
            b.put(
                &format!("k{i}"),
                v.clone(),
                now + 10 + i,
                None,
                WriteLimit::UNBOUNDED,
            )
            .await,
            "put",
        );
    }
    // Purge 2 expired (e0, e1), write 100 bytes, then evict down to 700 bytes: 9 entries of
    // 100 after the purge and write, so 2 go, the least recently stored: e2 and e3 (stored
    // first among what is left).
    let limit =
        WriteLimit::evict_to(700, EvictionPolicy::LeastRecentlyStored).with_purge(now + 6, 2);
    let out = ok(b.put("n0", v.clone(), now + 20, None, limit).await, "put");
    match out {
        PutOutcome::Stored {
            previous_size: None,
            usage,
            expired,
            evicted,
        } => {
            assert_eq!(
                expired,
                Removed {
                    entries: 2,
                    bytes: 200
                },
                "{name}: purged in the put"
            );
            assert_eq!(
                evicted,
                Removed {
                    entries: 2,
                    bytes: 200
                },
                "{name}: evicted in the put"
            );
            assert_eq!(
                usage,
                Usage {
                    entries: 7,
                    bytes: 700
                },
                "{name}: usage after the put"
            );
        }
        other => panic!("{name}: unexpected outcome {other:?}"),
    }
    let left = ok(b.keys("", now, 100).await, "keys");
    assert_eq!(
        left,
        ["e4", "k0", "k1", "k2", "k3", "k4", "n0"],
        "{name}: survivors"
    );
    // A value that needs everything else gone: only the written key survives.
    let big = Bytes::from(vec![2u8; 697]);
    let out = ok(
        b.put(
            "big",
            big,
            now + 30,
            None,
            WriteLimit::evict_to(700, EvictionPolicy::LeastRecentlyStored),
        )
        .await,
        "put",
    );
    assert!(
        matches!(
            out,
            PutOutcome::Stored {
                usage: Usage {
                    entries: 1,
                    bytes: 700
                },
                ..
            }
        ),
        "{name}: everything else evicted for a value at the limit: {out:?}"
    );
    assert_eq!(
        ok(b.keys("", now, 100).await, "keys"),
        ["big"],
        "{name}: only the written key"
    );
}

/// Puts racing for the last bytes under the limit: the check and the write are one atomic
/// step, so with refusal exactly as many entries as fit are stored and the others refused,
/// and with eviction every put is stored and the limit holds; no outcome ever reports usage
/// above the limit.
pub async fn concurrent_puts_race_for_the_last_bytes<F: BackendFactory>(f: &F) {
    const TASKS: u64 = 24;
    const FIT: u64 = 8;
    for policy in [EvictionPolicy::None, EvictionPolicy::LeastRecentlyStored] {
        let b = Arc::new(f.create().await);
        let name = b.name();
        let now = crate::SystemClock.now_millis_for_testkit();
        // Keys of 3 bytes and values of 97: 100 bytes an entry.
        let limit = WriteLimit::evict_to(FIT * 100, policy);
        let tasks: Vec<_> = (0..TASKS)
            .map(|t| {
                let b = Arc::clone(&b);
                tokio::spawn(async move {
                    let key = format!("r{t:02}");
                    b.put(&key, Bytes::from(vec![t as u8; 97]), now, None, limit)
                        .await
                })
            })
            .collect();
        let mut stored = 0u64;
        let mut refused = 0u64;
        for t in tasks {
            let out = ok(
                t.await
                    .map_err(|e| Error::Config(e.to_string()))
                    .and_then(|r| r),
                "put",
            );
            let usage = match out {
                PutOutcome::Stored { usage, .. } => {
                    stored += 1;
                    usage
                }
                PutOutcome::Refused { usage } => {
                    refused += 1;
                    usage
                }
            };
            assert!(
                usage.bytes <= FIT * 100,
                "{name} ({policy:?}): an outcome reports usage above the limit: {usage:?}"
            );
        }
        let usage = ok(b.usage().await, "usage");
        assert_eq!(
            usage,
            Usage {
                entries: FIT,
                bytes: FIT * 100
            },
            "{name} ({policy:?}): the store ends full, never above"
        );
        let keys = ok(b.keys("", now, usize::MAX).await, "keys");
        assert_eq!(keys.len() as u64, FIT, "{name} ({policy:?}): {keys:?}");
        if policy == EvictionPolicy::None {
            assert_eq!(
                (stored, refused),
                (FIT, TASKS - FIT),
                "{name}: exactly the puts that fit are stored"
            );
        } else {
            assert_eq!(
                (stored, refused),
                (TASKS, 0),
                "{name}: with eviction every put is stored"
            );
        }
    }
}

/// A replacement that would take the store above the limit is refused whole: the old entry
/// stays as it was (value, metadata), and so does the usage.
pub async fn refused_replacement_keeps_the_old_entry<F: BackendFactory>(f: &F) {
    let b = f.create().await;
    let name = b.name();
    let now = crate::SystemClock.now_millis_for_testkit();
    for key in ["k", "j"] {
        ok(
            b.put(
                key,
                Bytes::from(vec![1u8; 99]),
                now,
                Some(now + 1_000),
                WriteLimit::UNBOUNDED,
            )
            .await,
            "put",
        );
    }
    let out = ok(
        b.put(
            "k",
            Bytes::from(vec![2u8; 199]),
            now + 1,
            None,
            WriteLimit::refuse_above(250),
        )
        .await,
        "put",
    );
    assert_eq!(
        out,
        PutOutcome::Refused {
            usage: Usage {
                entries: 2,
                bytes: 200
            }
        },
        "{name}: a replacement above the limit is refused"
    );
    let e = ok(b.get("k", now).await, "get")
        .unwrap_or_else(|| panic!("{name}: the refused replacement removed the old entry"));
    assert_eq!(&e.value[..], &[1u8; 99][..], "{name}: the old value stays");
    assert_eq!(
        (e.meta.stored_at, e.meta.expires_at, e.meta.size),
        (now, Some(now + 1_000), 100),
        "{name}: the old metadata stays"
    );
    assert_eq!(
        ok(b.usage().await, "usage"),
        Usage {
            entries: 2,
            bytes: 200
        },
        "{name}: usage unchanged"
    );
    // A replacement that fits once the old entry is counted out is stored.
    let out = ok(
        b.put(
            "k",
            Bytes::from(vec![3u8; 149]),
            now + 2,
            None,
            WriteLimit::refuse_above(250),
        )
        .await,
        "put",
    );
    assert!(
        matches!(
            out,
            PutOutcome::Stored {
                previous_size: Some(100),
                usage: Usage {
                    entries: 2,
                    bytes: 250
                },
                ..
            }
        ),
        "{name}: a replacement that fits exactly: {out:?}"
    );
}

/// `remove_prefix`: a key equal to the prefix is under it; the empty prefix is every key;
/// `Removed` counts the entries and their bytes, expired ones included.
pub async fn remove_prefix_edges<F: BackendFactory>(f: &F) {
    let b = f.create().await;
    let name = b.name();
    let now = crate::SystemClock.now_millis_for_testkit();
    let puts: [(&str, usize, Option<u64>); 5] = [
        ("lib:", 10, None),
        ("lib:a", 20, None),
        ("lib:b", 30, Some(now + 1)),
        ("lia", 40, None),
        ("other", 50, None),
    ];
    for (key, len, expires) in puts {
        ok(
            b.put(
                key,
                Bytes::from(vec![0u8; len]),
                now,
                expires,
                WriteLimit::UNBOUNDED,
            )
            .await,
            "put",
        );
    }
    let removed = ok(b.remove_prefix("lib:").await, "remove_prefix");
    assert_eq!(
        removed,
        Removed {
            entries: 3,
            bytes: (4 + 10) + (5 + 20) + (5 + 30)
        },
        "{name}: the key equal to the prefix and an expired one are removed and counted"
    );
    assert_eq!(
        ok(b.keys("", now, usize::MAX).await, "keys"),
        ["lia", "other"],
        "{name}: the rest stays"
    );
    let removed = ok(b.remove_prefix("").await, "remove_prefix");
    assert_eq!(
        removed,
        Removed {
            entries: 2,
            bytes: (3 + 40) + (5 + 50)
        },
        "{name}: the empty prefix removes every entry"
    );
    assert_eq!(
        ok(b.usage().await, "usage"),
        Usage::default(),
        "{name}: empty after remove_prefix(\"\")"
    );
    assert_eq!(
        ok(b.remove_prefix("").await, "remove_prefix"),
        Removed::default(),
        "{name}: nothing left to remove"
    );
}

/// Replacing an entry that has expired (but was not purged) reports its size as
/// `previous_size`, and the usage counts only the new entry.
pub async fn previous_size_of_an_expired_entry<F: BackendFactory>(f: &F) {
    let b = f.create().await;
    let name = b.name();
    let now = crate::SystemClock.now_millis_for_testkit();
    ok(
        b.put(
            "k",
            Bytes::from_static(b"12345"),
            now,
            Some(now + 5),
            WriteLimit::UNBOUNDED,
        )
        .await,
        "put",
    );
    let out = ok(
        b.put(
            "k",
            Bytes::from_static(b"12"),
            now + 10,
            None,
            WriteLimit::refuse_above(1_000).with_purge(now + 10, 0),
        )
        .await,
        "put",
    );
    assert_eq!(
        out,
        PutOutcome::Stored {
            previous_size: Some(6),
            usage: Usage {
                entries: 1,
                bytes: 3
            },
            expired: Removed::default(),
            evicted: Removed::default(),
        },
        "{name}: replacing an expired entry"
    );
    let e = ok(b.get("k", now + 10).await, "get")
        .unwrap_or_else(|| panic!("{name}: the new entry is live"));
    assert_eq!(
        (&e.value[..], e.meta.expires_at),
        (&b"12"[..], None),
        "{name}: the new entry"
    );
}

/// A write resets the entry's place in the access orders: it counts as accessed when it was
/// written, with no accesses (so it goes after older entries in LRU order, before accessed
/// ones in LFU order).
pub async fn a_write_resets_the_access_order<F: BackendFactory>(f: &F) {
    for policy in [
        EvictionPolicy::LeastRecentlyUsed,
        EvictionPolicy::LeastFrequentlyUsed,
    ] {
        let b = f.create().await;
        let name = b.name();
        let now = crate::SystemClock.now_millis_for_testkit();
        for (i, key) in ["a", "b", "c"].into_iter().enumerate() {
            ok(
                b.put(
                    key,
                    Bytes::from(vec![0u8; 9]),
                    now + i as u64,
                    None,
                    WriteLimit::UNBOUNDED,
                )
                .await,
                "put",
            );
        }
        ok(
            b.record_accesses(&[
                Access {
                    key: "a".into(),
                    at: now + 5,
                    count: 3,
                },
                Access {
                    key: "b".into(),
                    at: now + 6,
                    count: 5,
                },
            ])
            .await,
            "record_accesses",
        );
        // Rewriting b drops its accesses: accessed at now + 10, count 0.
        ok(
            b.put(
                "b",
                Bytes::from(vec![1u8; 9]),
                now + 10,
                None,
                WriteLimit::UNBOUNDED,
            )
            .await,
            "put",
        );
        // LRU: c (now + 2), a (now + 5), b (now + 10). LFU: c (0, now + 2), b (0, now + 10),
        // a (3).
        let order: &[&str] = if policy == EvictionPolicy::LeastRecentlyUsed {
            &["c", "a", "b"]
        } else {
            &["c", "b", "a"]
        };
        let mut left = 30u64;
        for (i, gone) in order.iter().enumerate() {
            left -= 10;
            let removed = ok(b.evict(policy, left, None).await, "evict");
            assert_eq!(
                removed,
                Removed {
                    entries: 1,
                    bytes: 10
                },
                "{name} ({policy:?}): eviction {i}"
            );
            assert!(
                ok(b.get(gone, now + 11).await, "get").is_none(),
                "{name} ({policy:?}): eviction {i} should remove {gone}"
            );
        }
    }
}

/// `write_batch`: removes every entry under its prefixes, writes its entries (the last put of
/// a key wins), evicts other entries (never its own) to keep the limit, and is refused as a
/// whole, changing nothing, when its own entries cannot fit. Entries outside its prefixes are
/// untouched.
pub async fn batches_replace_atomically<F: BackendFactory>(f: &F) {
    let b = f.create().await;
    let name = b.name();
    let now = crate::SystemClock.now_millis_for_testkit();
    let v = |n: usize| Bytes::from(vec![3u8; n]);
    let unbounded = WriteLimit::UNBOUNDED;
    for key in ["l:A:old1", "l:A:old2", "l:B:keep", "other"] {
        ok(b.put(key, v(10), now, None, unbounded).await, "put");
    }
    let mut batch = Batch::new(now + 1);
    batch.remove_prefixes = vec!["l:A:".into()];
    for (key, n) in [("l:A:new1", 10), ("l:A:new2", 10), ("l:A:new1", 20)] {
        batch.puts.push(BatchPut {
            key: key.into(),
            value: v(n),
            expires_at: Some(now + 1000),
        });
    }
    match ok(b.write_batch(&batch, unbounded).await, "write_batch") {
        BatchOutcome::Applied {
            removed,
            written,
            usage,
            evicted,
            ..
        } => {
            assert_eq!(
                removed.entries, 2,
                "{name}: the prefix's old entries removed"
            );
            assert_eq!(written, 2, "{name}: distinct keys written");
            assert_eq!(
                evicted.entries, 0,
                "{name}: nothing evicted without a limit"
            );
            assert_eq!(usage.entries, 4, "{name}: usage after the batch");
        }
        other => panic!("{name}: batch refused: {other:?}"),
    }
    assert_eq!(
        ok(b.keys("", now + 1, 100).await, "keys"),
        ["l:A:new1", "l:A:new2", "l:B:keep", "other"],
        "{name}: keys after the batch"
    );
    let e = ok(b.get("l:A:new1", now + 1).await, "get").unwrap_or_else(|| panic!("{name}: new1"));
    assert_eq!(e.value.len(), 20, "{name}: the last put of a key wins");
    assert_eq!(e.meta.stored_at, now + 1, "{name}: batch stored_at");
    assert_eq!(
        e.meta.expires_at,
        Some(now + 1000),
        "{name}: batch expires_at"
    );
    let before = ok(b.usage().await, "usage");

    // Under a limit: other entries are evicted, never the batch's own.
    let mut batch = Batch::new(now + 2);
    batch.remove_prefixes = vec!["l:A:".into()];
    for i in 0..3 {
        batch.puts.push(BatchPut {
            key: format!("l:A:g2-{i}"),
            value: v(40),
            expires_at: None,
        });
    }
    let limit = WriteLimit::evict_to(160, EvictionPolicy::LeastRecentlyStored);
    match ok(b.write_batch(&batch, limit).await, "write_batch") {
        BatchOutcome::Applied { usage, evicted, .. } => {
            assert!(usage.bytes <= 160, "{name}: limit kept: {usage:?}");
            assert!(evicted.entries >= 1, "{name}: others evicted");
        }
        other => panic!("{name}: batch refused: {other:?}"),
    }
    for i in 0..3 {
        assert!(
            ok(b.get(&format!("l:A:g2-{i}"), now + 2).await, "get").is_some(),
            "{name}: the batch's own entries are never evicted"
        );
    }
    let before_refusal = ok(b.keys("", now + 2, 100).await, "keys");
    let usage_before_refusal = ok(b.usage().await, "usage");
    assert!(usage_before_refusal.bytes < before.bytes + 200);

    // Too large for the limit: refused, nothing changes (the old library stays).
    let mut batch = Batch::new(now + 3);
    batch.remove_prefixes = vec!["l:A:".into()];
    for i in 0..5 {
        batch.puts.push(BatchPut {
            key: format!("l:A:g3-{i}"),
            value: v(40),
            expires_at: None,
        });
    }
    let out = ok(b.write_batch(&batch, limit).await, "write_batch");
    assert!(
        matches!(out, BatchOutcome::Refused { .. }),
        "{name}: oversized batch refused: {out:?}"
    );
    assert_eq!(
        ok(b.keys("", now + 3, 100).await, "keys"),
        before_refusal,
        "{name}: nothing changed"
    );
    assert_eq!(
        ok(b.usage().await, "usage"),
        usage_before_refusal,
        "{name}: usage unchanged"
    );

    // With policy None a batch that does not fit is refused too.
    let out = ok(
        b.write_batch(&batch, WriteLimit::refuse_above(usage_before_refusal.bytes))
            .await,
        "write_batch",
    );
    assert!(
        matches!(out, BatchOutcome::Refused { .. }),
        "{name}: refused without eviction"
    );
}

/// While batches replace one library again and again, every `keys` of its prefix sees exactly
/// one generation: the whole old one or the whole new one.
pub async fn batches_are_seen_whole<F: BackendFactory>(f: &F) {
    let b = Arc::new(f.create().await);
    let name = b.name();
    let now = crate::SystemClock.now_millis_for_testkit();
    let write = move |generation: usize| {
        let mut batch = Batch::new(now);
        batch.remove_prefixes = vec!["lib:".into()];
        for i in 0..20 {
            batch.puts.push(BatchPut {
                key: format!("lib:{i:02}:g{generation}"),
                value: Bytes::from_static(b"v"),
                expires_at: None,
            });
        }
        batch
    };
    ok(
        b.write_batch(&write(0), WriteLimit::UNBOUNDED).await,
        "write_batch",
    );
    let writer = {
        let b = Arc::clone(&b);
        tokio::spawn(async move {
            for generation in 1..40 {
                let r = b
                    .write_batch(&write(generation), WriteLimit::UNBOUNDED)
                    .await;
                if let Err(e) = r {
                    panic!("write_batch: {e}");
                }
                tokio::task::yield_now().await;
            }
        })
    };
    let mut reads = 0;
    while !writer.is_finished() || reads < 10 {
        let keys = ok(b.keys("lib:", now, 1000).await, "keys");
        assert_eq!(
            keys.len(),
            20,
            "{name}: a read saw {} entries of a 20-entry library",
            keys.len()
        );
        let generation = keys[0].rsplit(':').next().map(str::to_owned);
        assert!(
            keys.iter()
                .all(|k| k.rsplit(':').next().map(str::to_owned) == generation),
            "{name}: a read saw two generations: {keys:?}"
        );
        reads += 1;
        tokio::task::yield_now().await;
    }
    if let Err(e) = writer.await {
        panic!("{name}: writer task: {e}");
    }
}

/// The change token, where a backend offers one, changes on every kind of write.
pub async fn change_token_moves_on_writes<F: BackendFactory>(f: &F) {
    let b = f.create().await;
    let name = b.name();
    let now = crate::SystemClock.now_millis_for_testkit();
    if b.change_token().is_none() {
        return;
    }
    let moved = |what: &str, before: Option<u64>| {
        assert_ne!(
            b.change_token(),
            before,
            "{name}: the change token did not move after {what}"
        );
    };
    let unbounded = WriteLimit::UNBOUNDED;
    let t = b.change_token();
    ok(
        b.put("a", Bytes::from_static(b"1"), now, Some(now + 5), unbounded)
            .await,
        "put",
    );
    moved("put", t);
    let t = b.change_token();
    ok(
        b.put("a", Bytes::from_static(b"2"), now, Some(now + 5), unbounded)
            .await,
        "put",
    );
    moved("a rewrite", t);
    let t = b.change_token();
    ok(b.remove("a").await, "remove");
    moved("remove", t);
    ok(
        b.put(
            "p:1",
            Bytes::from_static(b"1"),
            now,
            Some(now + 5),
            unbounded,
        )
        .await,
        "put",
    );
    let t = b.change_token();
    ok(b.remove_prefix("p:").await, "remove_prefix");
    moved("remove_prefix", t);
    let t = b.change_token();
    let mut batch = Batch::new(now);
    batch.puts.push(BatchPut {
        key: "e".into(),
        value: Bytes::from_static(b"1"),
        expires_at: Some(now + 5),
    });
    ok(b.write_batch(&batch, unbounded).await, "write_batch");
    moved("write_batch", t);
    let t = b.change_token();
    ok(b.purge_expired(now + 10, 10).await, "purge");
    moved("purge_expired", t);
    ok(
        b.put("f", Bytes::from_static(b"1"), now, None, unbounded)
            .await,
        "put",
    );
    let t = b.change_token();
    ok(
        b.evict(EvictionPolicy::LeastRecentlyStored, 0, None).await,
        "evict",
    );
    moved("evict", t);
    ok(
        b.put("g", Bytes::from_static(b"1"), now, None, unbounded)
            .await,
        "put",
    );
    let t = b.change_token();
    ok(b.clear().await, "clear");
    moved("clear", t);
}

/// After every write, logical bytes are at most the size limit.
pub async fn size_limit_is_a_hard_bound<F: BackendFactory>(f: &F) {
    let clock = clock();
    let limit = 20_000;
    for policy in [
        EvictionPolicy::LeastRecentlyStored,
        EvictionPolicy::LeastRecentlyUsed,
        EvictionPolicy::LeastFrequentlyUsed,
    ] {
        let cache = ok(
            builder(f.create().await, &clock)
                .size_limit(limit)
                .eviction_policy(policy)
                .build(),
            "build",
        );
        let name = cache.backend().name();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for i in 0..300u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let len = (x % 3_000) as usize;
            let key = format!("key-{}", x % 97);
            ok(cache.set(&key, &"v".repeat(len)).await, "set");
            if i % 3 == 0 {
                let _ = ok(
                    cache.get::<String>(&format!("key-{}", (x >> 8) % 97)).await,
                    "get",
                );
            }
            clock.advance(Duration::from_millis(1));
            let u = usage(&cache).await;
            assert!(
                u.bytes <= limit,
                "{name} {policy}: {} bytes > limit {limit} after write {i}",
                u.bytes
            );
            assert!(
                ok(cache.contains(&key).await, "contains"),
                "{name} {policy}: the key just written survives its own eviction"
            );
        }
        let s = ok(cache.stats().await, "stats");
        assert!(
            s.session.evictions > 0,
            "{name} {policy}: evictions counted"
        );
    }
}

async fn eviction_case<F: BackendFactory>(
    f: &F,
    policy: EvictionPolicy,
    reads: &[&str],
    expect_evicted: &str,
) {
    let clock = clock();
    // Each entry: 1-byte key + 19-byte envelope + 80-byte string (1 length byte + 79) = 100.
    let value = "v".repeat(79);
    let cache = ok(
        builder(f.create().await, &clock)
            .size_limit(400)
            .eviction_policy(policy)
            .build(),
        "build",
    );
    let name = cache.backend().name();
    for k in ["a", "b", "c", "d"] {
        ok(cache.set(k, &value).await, "set");
        clock.advance(Duration::from_millis(10));
    }
    assert_eq!(
        usage(&cache).await,
        Usage {
            entries: 4,
            bytes: 400
        },
        "{name}: 4 entries of 100"
    );
    for k in reads {
        assert!(
            ok(cache.get::<String>(k).await, "get").is_some(),
            "{name}: read {k}"
        );
        clock.advance(Duration::from_millis(10));
    }
    ok(cache.set("e", &value).await, "set");
    let left: Vec<String> = ok(cache.keys("", 10).await, "keys");
    let mut want: Vec<String> = ["a", "b", "c", "d", "e"]
        .iter()
        .filter(|k| **k != expect_evicted)
        .map(|k| k.to_string())
        .collect();
    want.sort();
    assert_eq!(
        left, want,
        "{name} {policy}: expected {expect_evicted:?} to be evicted"
    );
    assert_eq!(
        ok(cache.stats().await, "stats").session.evictions,
        1,
        "{name}: one eviction"
    );
}

/// Least recently stored evicts the oldest write, whatever was read.
pub async fn eviction_least_recently_stored<F: BackendFactory>(f: &F) {
    eviction_case(
        f,
        EvictionPolicy::LeastRecentlyStored,
        &["a", "a", "b"],
        "a",
    )
    .await;
}

/// Least recently used evicts the entry read longest ago (a never-read entry counts as read
/// when stored).
pub async fn eviction_least_recently_used<F: BackendFactory>(f: &F) {
    eviction_case(f, EvictionPolicy::LeastRecentlyUsed, &["a", "c", "d"], "b").await;
}

/// Least frequently used evicts the entry read least often (ties: read longest ago).
pub async fn eviction_least_frequently_used<F: BackendFactory>(f: &F) {
    eviction_case(
        f,
        EvictionPolicy::LeastFrequentlyUsed,
        &["a", "a", "b", "d", "d", "c"],
        "b",
    )
    .await;
    eviction_case(
        f,
        EvictionPolicy::LeastFrequentlyUsed,
        &["b", "c", "d"],
        "a",
    )
    .await;
}

/// evict never removes the protected key and stops when only it is left.
pub async fn eviction_protects_the_written_key<F: BackendFactory>(f: &F) {
    let b = f.create().await;
    let name = b.name();
    let now = crate::SystemClock.now_millis_for_testkit();
    ok(
        b.put(
            "old",
            Bytes::from(vec![0u8; 50]),
            now,
            None,
            WriteLimit::UNBOUNDED,
        )
        .await,
        "put",
    );
    ok(
        b.put(
            "new",
            Bytes::from(vec![0u8; 50]),
            now + 1,
            None,
            WriteLimit::UNBOUNDED,
        )
        .await,
        "put",
    );
    let r = ok(
        b.evict(EvictionPolicy::LeastFrequentlyUsed, 0, Some("old"))
            .await,
        "evict",
    );
    assert_eq!(r.entries, 1, "{name}: evicts what is not protected");
    assert!(
        ok(b.get("old", now).await, "get").is_some(),
        "{name}: protected key kept"
    );
    assert_eq!(
        ok(b.usage().await, "usage").bytes,
        53,
        "{name}: usage after evict"
    );
    let r = ok(b.evict(EvictionPolicy::None, 0, None).await, "evict");
    assert_eq!(r.entries, 0, "{name}: policy none evicts nothing");
    let r = ok(
        b.evict(EvictionPolicy::LeastRecentlyStored, 53, None).await,
        "evict",
    );
    assert_eq!(r.entries, 0, "{name}: nothing to do at the target");
}

/// A value larger than the limit is refused with a clear error and changes nothing.
pub async fn oversize_values_are_refused<F: BackendFactory>(f: &F) {
    let clock = clock();
    let cache = ok(
        builder(f.create().await, &clock).size_limit(1_000).build(),
        "build",
    );
    let name = cache.backend().name();
    ok(cache.set("k", &"small".to_string()).await, "set");
    let err = cache.set("k", &"x".repeat(1_000)).await;
    match err {
        Err(Error::TooLarge {
            ref key,
            size,
            limit,
        }) => {
            assert_eq!(
                (key.as_str(), limit),
                ("k", 1_000),
                "{name}: error names key and limit"
            );
            assert!(size > 1_000, "{name}: error gives the size");
        }
        other => panic!("{name}: expected TooLarge, got {other:?}"),
    }
    assert_eq!(
        ok(cache.get::<String>("k").await, "get"),
        Some("small".into()),
        "{name}: the previous value survives a refused write"
    );
    let msg = cache
        .set("k", &"x".repeat(2_000))
        .await
        .err()
        .map(|e| e.to_string());
    assert!(
        msg.is_some_and(|m| m.contains("\"k\"") && m.contains("1000")),
        "{name}: message"
    );
}

/// With eviction policy none, a write that does not fit is refused and nothing is lost.
pub async fn policy_none_refuses_when_full<F: BackendFactory>(f: &F) {
    let clock = clock();
    let cache = ok(
        builder(f.create().await, &clock)
            .size_limit(300)
            .eviction_policy(EvictionPolicy::None)
            .build(),
        "build",
    );
    let name = cache.backend().name();
    let value = "v".repeat(79); // 100-byte entries
    ok(cache.set("a", &value).await, "set");
    ok(cache.set("b", &value).await, "set");
    ok(cache.set("c", &value).await, "set");
    match cache.set("d", &value).await {
        Err(Error::CacheFull { .. }) => {}
        other => panic!("{name}: expected CacheFull, got {other:?}"),
    }
    assert_eq!(
        usage(&cache).await,
        Usage {
            entries: 3,
            bytes: 300
        },
        "{name}: nothing changed"
    );
    ok(
        cache.set("a", &"w".repeat(79)).await,
        "replacing within the limit is allowed",
    );
    assert_eq!(
        ok(cache.stats().await, "stats").session.evictions,
        0,
        "{name}: no evictions"
    );
}

/// record_accesses updates existing keys only, and keeps the latest time.
pub async fn record_accesses_rules<F: BackendFactory>(f: &F) {
    let b = f.create().await;
    let name = b.name();
    let now = crate::SystemClock.now_millis_for_testkit();
    ok(
        b.put(
            "a",
            Bytes::from_static(b"1"),
            now,
            None,
            WriteLimit::UNBOUNDED,
        )
        .await,
        "put",
    );
    let batch = [
        Access {
            key: "a".into(),
            at: now + 50,
            count: 2,
        },
        Access {
            key: "missing".into(),
            at: now + 60,
            count: 1,
        },
    ];
    ok(b.record_accesses(&batch).await, "record");
    ok(
        b.record_accesses(&[Access {
            key: "a".into(),
            at: now + 20,
            count: 1,
        }])
        .await,
        "record",
    );
    let e = ok(b.get("a", now).await, "get").unwrap_or_else(|| panic!("{name}: a"));
    assert_eq!(
        (e.meta.accessed_at, e.meta.access_count),
        (now + 50, 3),
        "{name}: accesses"
    );
    assert!(
        ok(b.get("missing", now).await, "get").is_none(),
        "{name}: no entry created"
    );
    assert_eq!(ok(b.usage().await, "usage").entries, 1, "{name}: usage");
}

/// A scripted sequence gives exact session and persistent counters.
pub async fn exact_stats<F: BackendFactory>(f: &F) {
    let clock = clock();
    let cache = ok(
        builder(f.create().await, &clock).size_limit(250).build(),
        "build",
    );
    let name = cache.backend().name();
    let v = "v".repeat(79); // 100-byte entries with 1-byte keys
    ok(cache.set("a", &v).await, "set"); // sets 1
    ok(cache.set("b", &v).await, "set"); // sets 2
    let _ = ok(cache.get::<String>("a").await, "get"); // hit 1
    let _ = ok(cache.get::<String>("z").await, "get"); // miss 1
    ok(cache.set("c", &v).await, "set"); // sets 3, evicts a (eviction 1)
    let _ = ok(cache.get::<String>("a").await, "get"); // miss 2
    let _ = ok(cache.get::<u32>("b").await, "get"); // miss 3, decode failure 1 (b removed)
    assert!(ok(cache.remove("c").await, "remove"), "{name}"); // removes 1
    ok(
        cache.set_with_ttl("t", &1u32, Duration::from_secs(1)).await,
        "set",
    ); // sets 4
    clock.advance(Duration::from_secs(1));
    assert_eq!(ok(cache.expire().await, "expire"), 1, "{name}"); // expirations 1
    let fetched: u32 = ok(
        cache
            .get_or_fetch("f", Ttl::Default, || async { Ok::<_, Error>(7u32) })
            .await,
        "get_or_fetch",
    ); // miss 4, fetches 1, sets 5
    assert_eq!(fetched, 7);
    let again: u32 = ok(
        cache
            .get_or_fetch("f", Ttl::Default, || async { Ok::<_, Error>(8u32) })
            .await,
        "get_or_fetch",
    ); // hit 2
    assert_eq!(
        again, 7,
        "{name}: second get_or_fetch is served from the cache"
    );
    let want = Counters {
        hits: 2,
        misses: 4,
        sets: 5,
        removes: 1,
        evictions: 1,
        expirations: 1,
        decode_failures: 1,
        fetches: 1,
        coalesced: 0,
    };
    let s = ok(cache.stats().await, "stats");
    assert_eq!(s.session, want, "{name}: session counters");
    assert_eq!(
        s.persistent, want,
        "{name}: persistent = stored + unflushed"
    );
    assert_eq!(s.session.hit_ratio(), Some(2.0 / 6.0), "{name}: hit ratio");
    ok(cache.flush().await, "flush");
    assert_eq!(
        ok(cache.backend().load_stats().await, "load_stats"),
        want,
        "{name}: flushed"
    );
    // A second session adds to the persistent counters.
    let backend_view = ok(cache.stats().await, "stats");
    assert_eq!(
        backend_view.persistent, want,
        "{name}: no double counting after flush"
    );
    assert_eq!(
        s.usage,
        Usage {
            entries: 1,
            bytes: 1 + 19 + 1
        },
        "{name}: usage in stats"
    );
}

/// Wrong-schema, damaged and foreign values are misses, removed and counted.
pub async fn undecodable_values_are_misses<F: BackendFactory>(f: &F) {
    let clock = clock();
    let cache = ok(builder(f.create().await, &clock).build(), "build");
    let name = cache.backend().name();
    let now = clock.now_millis_for_testkit();
    // Written by an older version of the type.
    ok(cache.set("old", &item(1)).await, "set");
    assert_eq!(
        ok(cache.get::<ItemV2>("old").await, "get"),
        None,
        "{name}: old schema is a miss"
    );
    assert!(
        !ok(cache.contains("old").await, "contains"),
        "{name}: old value removed"
    );
    // Damaged bytes.
    let good = ok(
        codec::encode("k", &item(2)).map_err(|e| Error::Config(e.to_string())),
        "encode",
    );
    let mut bad = good.to_vec();
    let last = bad.len() - 1;
    bad[last] ^= 0x40;
    ok(
        cache
            .backend()
            .put("bad", Bytes::from(bad), now, None, WriteLimit::UNBOUNDED)
            .await,
        "put",
    );
    assert_eq!(
        ok(cache.get::<Item>("bad").await, "get"),
        None,
        "{name}: damaged is a miss"
    );
    // Foreign bytes (not an envelope at all), empty, and truncated.
    for (k, v) in [
        (
            "pickle",
            Bytes::from_static(b"\x80\x04\x95\x10\x00\x00\x00\x00\x00\x00\x00}\x94."),
        ),
        ("empty", Bytes::new()),
        ("short", good.slice(..good.len() - 3)),
    ] {
        ok(
            cache
                .backend()
                .put(k, v, now, None, WriteLimit::UNBOUNDED)
                .await,
            "put",
        );
        assert_eq!(
            ok(cache.get::<Item>(k).await, "get"),
            None,
            "{name}: {k} is a miss"
        );
        assert!(
            !ok(cache.contains(k).await, "contains"),
            "{name}: {k} removed"
        );
    }
    let s = ok(cache.stats().await, "stats");
    assert_eq!(
        s.session.decode_failures, 5,
        "{name}: decode failures counted"
    );
    assert_eq!(s.session.misses, 5, "{name}: and counted as misses");
    assert_eq!(s.usage, Usage::default(), "{name}: all removed");
}

/// Waits until `n` callers have joined a fetch in flight (the session's `coalesced` counter),
/// so that a fetch can end only once every caller waits for it: an event, not a time. Gives
/// up after a minute (the caller's assertions then say what went wrong).
async fn joined<B: CacheBackend>(cache: &Cache<B>, n: u64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while std::time::Instant::now() < deadline {
        match cache.stats().await {
            Ok(s) if s.session.coalesced >= n => return,
            _ => tokio::time::sleep(Duration::from_millis(1)).await,
        }
    }
}

/// 50 concurrent callers on one key run one fetch and all get its value.
pub async fn single_flight_shares_a_value<F: BackendFactory>(f: &F) {
    let clock = clock();
    let cache = ok(builder(f.create().await, &clock).build(), "build");
    let name = cache.backend().name();
    let calls = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(tokio::sync::Barrier::new(50));
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let (cache, calls, gate) = (cache.clone(), calls.clone(), gate.clone());
        tasks.push(tokio::spawn(async move {
            gate.wait().await;
            let watcher = cache.clone();
            cache
                .get_or_fetch("library:Movies:all", Ttl::Default, || async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    joined(&watcher, 49).await;
                    Ok::<_, std::io::Error>(vec![item(1), item(2)])
                })
                .await
        }));
    }
    for t in tasks {
        let got = ok(
            t.await
                .map_err(|e| Error::Config(e.to_string()))
                .and_then(|r| r),
            "task",
        );
        assert_eq!(
            got,
            vec![item(1), item(2)],
            "{name}: every caller gets the value"
        );
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "{name}: exactly one fetch ran"
    );
    let s = ok(cache.stats().await, "stats");
    assert_eq!(s.session.fetches, 1, "{name}: fetches");
    assert_eq!(s.session.coalesced, 49, "{name}: coalesced waits");
    assert_eq!(s.session.misses, 50, "{name}: each caller missed once");
    assert_eq!(s.session.sets, 1, "{name}: stored once");
    assert!(
        ok(cache.contains("library:Movies:all").await, "contains"),
        "{name}: stored"
    );
}

/// A failing fetch shares its error with every waiting caller and stores nothing.
pub async fn single_flight_shares_an_error<F: BackendFactory>(f: &F) {
    let clock = clock();
    let cache = ok(builder(f.create().await, &clock).build(), "build");
    let name = cache.backend().name();
    let calls = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(tokio::sync::Barrier::new(50));
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let (cache, calls, gate) = (cache.clone(), calls.clone(), gate.clone());
        tasks.push(tokio::spawn(async move {
            gate.wait().await;
            let watcher = cache.clone();
            cache
                .get_or_fetch::<u32, _, _, _>("k", Ttl::Default, || async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    joined(&watcher, 49).await;
                    Err(std::io::Error::other("server said no"))
                })
                .await
        }));
    }
    for t in tasks {
        match t.await {
            Ok(Err(Error::Fetch { key, source })) => {
                assert_eq!(key, "k", "{name}: error names the key");
                assert_eq!(
                    source.to_string(),
                    "server said no",
                    "{name}: the fetch's error"
                );
            }
            other => panic!("{name}: expected a shared fetch error, got {other:?}"),
        }
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "{name}: exactly one fetch ran"
    );
    assert!(
        !ok(cache.contains("k").await, "contains"),
        "{name}: nothing stored"
    );
    // The next call fetches again.
    let v: u32 = ok(
        cache
            .get_or_fetch("k", Ttl::Default, || async { Ok::<_, Error>(5u32) })
            .await,
        "get_or_fetch",
    );
    assert_eq!(v, 5, "{name}: a later call fetches again");
}

/// Keys with any UTF-8: separators, percent signs, spaces, emoji, control characters, 1 KiB.
pub async fn keys_with_any_characters<F: BackendFactory>(f: &F) {
    let clock = clock();
    let cache = ok(builder(f.create().await, &clock).build(), "build");
    let name = cache.backend().name();
    let long = "ж".repeat(512); // 1 KiB
    let keys: Vec<String> = vec![
        "search:Movies:Alien: Covenant".into(),
        "50%25 off %".into(),
        "  spaces  ".into(),
        "emoji 🎬🍿".into(),
        "line\nbreak\ttab\r".into(),
        "nul\0byte".into(),
        "quote'\"\\back".into(),
        "*?[glob]{x}".into(),
        "".into(),
        long.clone(),
        format!("{long}:suffix"),
    ];
    for (i, k) in keys.iter().enumerate() {
        ok(cache.set(k, &(i as u32)).await, "set");
    }
    for (i, k) in keys.iter().enumerate() {
        assert_eq!(
            ok(cache.get::<u32>(k).await, "get"),
            Some(i as u32),
            "{name}: key {k:?}"
        );
    }
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(
        ok(cache.keys("", 100).await, "keys"),
        sorted,
        "{name}: keys in byte order"
    );
    assert_eq!(
        ok(cache.keys(&long, 100).await, "keys").len(),
        2,
        "{name}: long prefix"
    );
    assert_eq!(
        ok(cache.remove_prefix("search:Movies:").await, "rp"),
        1,
        "{name}: ':' prefix"
    );
    assert_eq!(
        ok(cache.remove_prefix("50%").await, "rp"),
        1,
        "{name}: '%' is not a wildcard"
    );
    assert_eq!(
        ok(cache.remove_prefix("*").await, "rp"),
        1,
        "{name}: '*' is not a wildcard"
    );
    assert_eq!(
        ok(cache.keys("", 100).await, "keys").len(),
        keys.len() - 3,
        "{name}: rest kept"
    );
    let too_long = "k".repeat(crate::DEFAULT_MAX_KEY_LEN + 1);
    assert!(
        matches!(
            cache.set(&too_long, &1u32).await,
            Err(Error::InvalidKey { .. })
        ),
        "{name}: over-long keys are refused"
    );
}

/// A 10 MiB value round-trips.
pub async fn large_value<F: BackendFactory>(f: &F) {
    let clock = clock();
    let cache = ok(builder(f.create().await, &clock).build(), "build");
    let name = cache.backend().name();
    let big: Vec<u8> = (0..10 * 1024 * 1024)
        .map(|i: u32| (i % 251) as u8)
        .collect();
    ok(cache.set("big", &big).await, "set 10 MiB");
    let got = ok(cache.get::<Vec<u8>>("big").await, "get 10 MiB");
    assert!(
        got.as_ref() == Some(&big),
        "{name}: 10 MiB value round-trips"
    );
    assert!(
        usage(&cache).await.bytes > 10 * 1024 * 1024,
        "{name}: usage counts it"
    );
}

fn encoded<T: crate::CacheValue>(key: &str, value: &T) -> Bytes {
    match codec::encode(key, value) {
        Ok(b) => b,
        Err(e) => panic!("encode: {e}"),
    }
}

/// `get_if_changed` answers `Same` only for the same length and head, for small values and
/// for a 1 MiB one (stores may read a large value's head on its own), and `None` exactly when
/// `get` would; `Cache::get_shared` reuses a decoded value only while the stored one is
/// unchanged, and never serves a value rewritten behind its back, removed or expired.
pub async fn revalidation_and_shared_values<F: BackendFactory>(f: &F) {
    let clock = clock();
    let cache = ok(builder(f.create().await, &clock).build(), "build");
    let name = cache.backend().name();
    let b = cache.backend();
    let now = crate::Clock::now_millis(&clock);
    for len in [40usize, 1 << 20] {
        let v1 = encoded("r", &(0..len).map(|i| (i % 251) as u8).collect::<Vec<u8>>());
        // Same length, one payload byte different: a different checksum in the header.
        let v2 = encoded(
            "r",
            &(0..len).map(|i| ((i + 1) % 251) as u8).collect::<Vec<u8>>(),
        );
        assert_eq!(v1.len(), v2.len());
        let head = &v1[..codec::HEADER_LEN];
        let n = v1.len() as u64;
        ok(
            b.put(
                "r",
                v1.clone(),
                now,
                Some(now + 1000),
                WriteLimit::UNBOUNDED,
            )
            .await,
            "put",
        );
        match ok(b.get_if_changed("r", now, head, n).await, "revalidate") {
            Some(Revalidated::Same(meta)) => {
                assert_eq!(meta.size, 1 + n, "{name}/{len}: Same carries the metadata");
                assert_eq!(meta.expires_at, Some(now + 1000), "{name}/{len}: expiry");
            }
            other => panic!("{name}/{len}: unchanged value must be Same, got {other:?}"),
        }
        for (what, h, l) in [
            ("another length", head, n + 1),
            ("another head", &v2[..codec::HEADER_LEN], n),
        ] {
            match ok(b.get_if_changed("r", now, h, l).await, "revalidate") {
                Some(Revalidated::Changed(e)) => {
                    assert!(e.value == v1, "{name}/{len}: {what} gives the whole value")
                }
                other => panic!("{name}/{len}: {what} must be Changed, got {other:?}"),
            }
        }
        ok(
            b.put(
                "r",
                v2.clone(),
                now,
                Some(now + 1000),
                WriteLimit::UNBOUNDED,
            )
            .await,
            "rewrite",
        );
        match ok(b.get_if_changed("r", now, head, n).await, "revalidate") {
            Some(Revalidated::Changed(e)) => {
                assert!(e.value == v2, "{name}/{len}: the rewritten value")
            }
            other => panic!("{name}/{len}: a rewrite must be Changed, got {other:?}"),
        }
        let head2 = &v2[..codec::HEADER_LEN];
        assert!(
            ok(
                b.get_if_changed("r", now + 1000, head2, n).await,
                "revalidate"
            )
            .is_none(),
            "{name}/{len}: expired at expires_at"
        );
        assert!(
            ok(
                b.get_if_changed("absent", now, head2, n).await,
                "revalidate"
            )
            .is_none(),
            "{name}/{len}: absent"
        );
        ok(b.remove("r").await, "remove");
        assert!(
            ok(b.get_if_changed("r", now, head2, n).await, "revalidate").is_none(),
            "{name}/{len}: removed"
        );
    }

    // Through the cache.
    let titles = |n: usize| -> Vec<String> { (0..n).map(|i| format!("Title {i} ✓")).collect() };
    ok(cache.set("s", &titles(3)).await, "set");
    let a = ok(cache.get_shared::<Vec<String>>("s").await, "get_shared")
        .unwrap_or_else(|| panic!("{name}: get_shared after set"));
    let again = ok(cache.get_shared::<Vec<String>>("s").await, "get_shared")
        .unwrap_or_else(|| panic!("{name}: second get_shared"));
    assert!(
        Arc::ptr_eq(&a, &again),
        "{name}: unchanged value decoded once"
    );
    assert_eq!(*a, titles(3));
    // `get` of the same entry still decodes its own copy.
    assert_eq!(
        ok(cache.get::<Vec<String>>("s").await, "get"),
        Some(titles(3))
    );
    // Rewritten behind the cache's back (as another process would): never the old value.
    let rewritten = encoded("s", &titles(4));
    ok(
        b.put("s", rewritten, now, None, WriteLimit::UNBOUNDED)
            .await,
        "put behind",
    );
    let fresh = ok(cache.get_shared::<Vec<String>>("s").await, "get_shared")
        .unwrap_or_else(|| panic!("{name}: get_shared after a rewrite"));
    assert_eq!(*fresh, titles(4), "{name}: rewritten value");
    // Removed behind its back: a miss.
    ok(b.remove("s").await, "remove behind");
    assert!(
        ok(cache.get_shared::<Vec<String>>("s").await, "get_shared").is_none(),
        "{name}: removed value"
    );
    // Expired: a miss.
    ok(
        cache
            .set_with_ttl("t", &titles(2), Duration::from_secs(10))
            .await,
        "set ttl",
    );
    assert!(ok(cache.get_shared::<Vec<String>>("t").await, "get_shared").is_some());
    clock.advance(Duration::from_secs(10));
    assert!(
        ok(cache.get_shared::<Vec<String>>("t").await, "get_shared").is_none(),
        "{name}: expired value"
    );
    // Another type under the same key is a decode failure, as with `get`.
    ok(cache.set("u", &titles(1)).await, "set");
    assert!(ok(cache.get_shared::<Vec<String>>("u").await, "get_shared").is_some());
    assert!(
        ok(cache.get_shared::<Vec<u64>>("u").await, "get_shared").is_none(),
        "{name}: wrong type is a miss"
    );
    let stats = ok(cache.stats().await, "stats");
    assert_eq!(
        (
            stats.session.hits,
            stats.session.misses,
            stats.session.decode_failures
        ),
        (6, 3, 1),
        "{name}: get_shared counts hits and misses like get"
    );
}

/// Many tasks writing and removing at once leave exact usage counters.
pub async fn concurrent_writers_keep_exact_usage<F: BackendFactory>(f: &F) {
    let clock = clock();
    let cache = ok(builder(f.create().await, &clock).build(), "build");
    let name = cache.backend().name();
    let mut tasks = Vec::new();
    for t in 0..16u64 {
        let cache = cache.clone();
        tasks.push(tokio::spawn(async move {
            let mut x = t.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
            for _ in 0..150 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let key = format!("k{}", x % 64);
                match x % 4 {
                    0 => {
                        cache.remove(&key).await?;
                    }
                    1 => {
                        cache.remove_prefix(&format!("k{}", x % 7)).await?;
                    }
                    _ => cache.set(&key, &"v".repeat((x % 500) as usize)).await?,
                }
            }
            Ok::<_, Error>(())
        }));
    }
    for t in tasks {
        ok(
            t.await
                .map_err(|e| Error::Config(e.to_string()))
                .and_then(|r| r),
            "writer",
        );
    }
    let keys = ok(cache.keys("", usize::MAX).await, "keys");
    let mut bytes = 0;
    for k in &keys {
        let (_, meta) = ok(cache.get_raw(k).await, "get_raw")
            .unwrap_or_else(|| panic!("{name}: listed key {k} is readable"));
        bytes += meta.size;
    }
    assert_eq!(
        usage(&cache).await,
        Usage {
            entries: keys.len() as u64,
            bytes
        },
        "{name}: usage counters equal a direct count"
    );
}

/// After a mix of writes, replacements, removals, expiries and a batch, the store passes
/// its own checks: `integrity_check` finds nothing, `Cache::check` finds nothing and its
/// direct count equals the counters; `disk_usage` answers, and a store with a disk footprint
/// reports one.
pub async fn a_healthy_store_passes_its_checks<F: BackendFactory>(f: &F) {
    let clock = clock();
    let cache = ok(
        builder(f.create().await, &clock).size_limit(20_000).build(),
        "build",
    );
    let name = cache.backend().name();
    for i in 0..60usize {
        ok(cache.set(&format!("k{}", i % 40), &item(i)).await, "set");
        if i % 7 == 0 {
            ok(
                cache
                    .set_with_ttl(
                        &format!("t{i}"),
                        &"x".repeat(i * 50),
                        Duration::from_millis(5),
                    )
                    .await,
                "set",
            );
        }
        if i % 9 == 0 {
            ok(cache.remove(&format!("k{}", i % 13)).await, "remove");
        }
    }
    ok(cache.set("big", &vec![7u8; 5_000]).await, "set");
    let mut batch = crate::WriteBatch::new();
    batch.remove_prefix("k1");
    ok(
        batch.set("b:1", &item(1), Ttl::Default).map(|_| ()),
        "batch set",
    );
    ok(cache.write_batch(batch).await, "write_batch");
    clock.advance(Duration::from_millis(5));
    ok(cache.flush().await, "flush");
    let engine = ok(cache.backend().integrity_check().await, "integrity_check");
    assert!(engine.is_empty(), "{name}: engine problems {engine:?}");
    let report = ok(cache.check().await, "check");
    assert!(report.is_ok(), "{name}: check found problems: {report:?}");
    assert!(
        report.scanned.entries > 10,
        "{name}: check scanned the entries: {report:?}"
    );
    if let Some(bytes) = ok(cache.backend().disk_usage().await, "disk_usage") {
        assert!(bytes > 0, "{name}: a store on disk occupies some");
    }
}

/// clear removes entries and keeps persistent counters.
pub async fn clear_keeps_persistent_stats<F: BackendFactory>(f: &F) {
    let clock = clock();
    let cache = ok(builder(f.create().await, &clock).build(), "build");
    let name = cache.backend().name();
    ok(cache.set("a", &1u32).await, "set");
    let _ = ok(cache.get::<u32>("a").await, "get");
    ok(cache.flush().await, "flush");
    ok(cache.clear().await, "clear");
    let stored = ok(cache.backend().load_stats().await, "load_stats");
    assert_eq!(
        (stored.sets, stored.hits),
        (1, 1),
        "{name}: counters survive clear"
    );
}

/// Entries, TTLs, usage and persistent counters survive closing and reopening the store.
pub async fn reopen_keeps_entries_ttl_and_stats<F: BackendFactory>(f: &F) {
    let clock = clock();
    let cache = ok(builder(f.create().await, &clock).build(), "build");
    let name = cache.backend().name();
    ok(
        cache
            .set_with_ttl("ttl", &1u32, Duration::from_secs(10))
            .await,
        "set",
    );
    ok(cache.set("keep", &item(7)).await, "set");
    ok(cache.set("gone", &2u32).await, "set");
    ok(cache.remove("gone").await.map(|_| ()), "remove");
    let _ = ok(cache.get::<u32>("ttl").await, "get");
    let _ = ok(cache.get::<u32>("nope").await, "get");
    ok(cache.flush().await, "flush");
    let before = usage(&cache).await;
    let counters = ok(cache.backend().load_stats().await, "load_stats");
    let backend = match cache.into_backend() {
        Ok(b) => b,
        Err(_) => panic!("{name}: the cache has no other clones"),
    };
    let Some(backend) = f.reopen(backend).await else {
        return; // not a persistent backend
    };
    let cache = ok(builder(backend, &clock).build(), "build after reopen");
    assert_eq!(
        usage(&cache).await,
        before,
        "{name}: usage counters survive reopen"
    );
    assert_eq!(
        ok(cache.backend().load_stats().await, "load_stats"),
        counters,
        "{name}: stats"
    );
    assert_eq!(
        ok(cache.get::<Item>("keep").await, "get"),
        Some(item(7)),
        "{name}: entry kept"
    );
    assert_eq!(
        ok(cache.get::<u32>("gone").await, "get"),
        None,
        "{name}: removal kept"
    );
    clock.advance(Duration::from_millis(9_999));
    assert_eq!(
        ok(cache.get::<u32>("ttl").await, "get"),
        Some(1),
        "{name}: TTL kept (before)"
    );
    clock.advance(Duration::from_millis(1));
    assert_eq!(
        ok(cache.get::<u32>("ttl").await, "get"),
        None,
        "{name}: TTL kept (at expiry)"
    );
    ok(cache.flush().await, "flush");
    let after = ok(cache.backend().load_stats().await, "load_stats");
    assert_eq!(
        after.hits,
        counters.hits + 2,
        "{name}: a new session adds to stored counters"
    );
    // Misses after reopen: "gone" (removed before the reopen) and "ttl" at its expiry.
    assert_eq!(
        after.misses,
        counters.misses + 2,
        "{name}: misses add up too"
    );
}

impl crate::SystemClock {
    /// The current time (a helper for the suite's raw backend checks).
    fn now_millis_for_testkit(&self) -> crate::Millis {
        crate::Clock::now_millis(self)
    }
}

impl ManualClock {
    fn now_millis_for_testkit(&self) -> crate::Millis {
        crate::Clock::now_millis(self)
    }
}

/// `Arc<dyn CacheBackend>` must work: the trait is object-safe.
#[allow(dead_code)]
fn assert_object_safe(b: Arc<dyn CacheBackend>) -> Cache<Arc<dyn CacheBackend>> {
    Cache::new(b)
}

/// Generates one `#[test]` per conformance rule for a [`BackendFactory`] expression (evaluated
/// afresh for every test), in a module called `conformance`.
///
/// ```ignore
/// plexcache_core::conformance_tests!(my_backend::TestFactory::new());
/// ```
#[macro_export]
macro_rules! conformance_tests {
    ($factory:expr) => {
        $crate::testkit_checks!([$crate::conformance_tests](@tests $factory));
    };
    (@tests $factory:expr; $($check:ident),* $(,)?) => {
        mod conformance {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[test]
                fn $check() {
                    let factory = $factory;
                    $crate::testkit::block_on($crate::testkit::$check(&factory));
                }
            )*
        }
    };
}

#[cfg(test)]
mod model_conformance {
    use super::BackendFactory;
    use crate::model::ModelBackend;

    pub struct ModelFactory;

    #[async_trait::async_trait]
    impl BackendFactory for ModelFactory {
        type Backend = ModelBackend;
        async fn create(&self) -> ModelBackend {
            ModelBackend::new()
        }
        async fn reopen(&self, _b: ModelBackend) -> Option<ModelBackend> {
            None
        }
    }

    crate::conformance_tests!(ModelFactory);

    #[test]
    fn policy_checks() {
        super::block_on(super::run_policy_checks(&ModelFactory));
    }
}
