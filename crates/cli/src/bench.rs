//! `plexcache bench`: the standard workload on a synthetic Plex library, against every embedded
//! backend (and Redis, given `--redis-url`), in one run, printed with ratios to the fastest.
//! Redis rows also get a ratio to the wire: bare `GET`/`SET` round trips of the same bytes,
//! measured by this process on the backend's own connection.

use std::future::Future;
use std::time::{Duration, Instant};

use clap::Args;
use plexcache_core::{BoxError, Cache};
use plexcache_plex::synthetic::{Spec, expected_items, generate_xml};
use plexcache_plex::{LibraryView, PlexCache, PlexItem, keys};
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use rand_distr::{Distribution, Zipf};
use serde::Serialize;

use crate::backends::{DynBackend, open_backend};
use crate::{BackendKind, EXIT_OK, EXIT_USAGE, Global, output};

/// Arguments of `bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Items in the synthetic library list.
    #[arg(long, default_value_t = 1000)]
    pub items: usize,
    /// Backends to compare (`--redis-url` adds `redis`).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "memory,sqlite,sqlite-exclusive,sled"
    )]
    pub backends: Vec<BackendKind>,
    /// Time budget of each workload on each backend, in seconds.
    #[arg(long, default_value_t = 0.8)]
    pub seconds: f64,
    /// Distinct keys of the small-entry and mixed workloads.
    #[arg(long, default_value_t = 10_000)]
    pub keys: u64,
    /// Items of the generated PMS response that the sync workload extracts and writes with
    /// its match entries in one batch (0 skips it).
    #[arg(long, default_value_t = 50_000)]
    pub sync_items: usize,
    /// Where the disk backends' caches are created (fresh temporary directories inside it,
    /// removed afterwards) [default: the system's temporary directory]. Point it at a
    /// network share to measure a cache there (`--fs` applies).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<std::path::PathBuf>,
}

/// A fresh temporary directory in `--dir` (or the system's).
fn scratch(args: &BenchArgs) -> std::io::Result<tempfile::TempDir> {
    match &args.dir {
        Some(dir) => tempfile::tempdir_in(dir),
        None => tempfile::tempdir(),
    }
}

#[derive(Debug, Clone, Serialize)]
struct Row {
    workload: &'static str,
    backend: &'static str,
    ops: u64,
    seconds: f64,
    ops_per_sec: f64,
    ratio_to_fastest: f64,
    /// Redis rows: operations per second of this workload when measured interleaved with its
    /// bare counterpart (for the ratio to the wire).
    #[serde(skip_serializing_if = "Option::is_none")]
    paired_ops_per_sec: Option<f64>,
    /// Redis rows: operations per second of the bare command this workload is compared with.
    #[serde(skip_serializing_if = "Option::is_none")]
    wire_ops_per_sec: Option<f64>,
    /// Redis rows: the (mean) length of the bare command's value.
    #[serde(skip_serializing_if = "Option::is_none")]
    wire_bytes: Option<u64>,
    /// Redis rows: this row's time per operation over the wire's (plus, for library lists, the
    /// memory backend's time per operation: the decode or encode any backend pays).
    #[serde(skip_serializing_if = "Option::is_none")]
    ratio_to_wire: Option<f64>,
}

/// A Redis workload's bare counterpart: the bare command, the target ratio, and whether the
/// memory backend's time is added to the wire's (library lists: their decode or encode).
struct WireRef {
    workload: &'static str,
    bare: &'static str,
    target: f64,
    plus_codec: bool,
}

const WIRE_REFS: [WireRef; 6] = [
    WireRef {
        workload: WORKLOADS[0],
        bare: "GET of the list ({} bytes)",
        target: 1.5,
        plus_codec: true,
    },
    WireRef {
        workload: WORKLOADS[1],
        bare: "GET of the list ({} bytes)",
        target: 1.5,
        plus_codec: true,
    },
    WireRef {
        workload: WORKLOADS[3],
        bare: "SET of the list ({} bytes)",
        target: 1.5,
        plus_codec: true,
    },
    WireRef {
        workload: WORKLOADS[4],
        bare: "SET of the same bytes ({} on average)",
        target: 1.3,
        plus_codec: false,
    },
    WireRef {
        workload: WORKLOADS[5],
        bare: "GET of the same bytes ({} on average)",
        target: 1.3,
        plus_codec: false,
    },
    WireRef {
        workload: WORKLOADS[6],
        bare: "GET of an absent key",
        target: 1.3,
        plus_codec: false,
    },
];

/// Each Redis workload compared with its bare counterpart: (workload, ops, seconds of the
/// workload, ops, seconds of the bare command, mean bytes of the bare command's value),
/// measured interleaved.
type Wire = Vec<(&'static str, u64, f64, u64, f64, u64)>;

/// Runs `a(i)` and `b(i)` in alternating rounds of 8 until twice the budget is spent, so that
/// both see the same machine (a shared machine's load comes and goes); returns each one's
/// operations and seconds.
async fn measure_pair<A, AF, B, BF>(
    budget: Duration,
    mut a: A,
    mut b: B,
) -> Result<(u64, f64, u64, f64), BoxError>
where
    A: FnMut(u64) -> AF,
    AF: Future<Output = Result<(), BoxError>>,
    B: FnMut(u64) -> BF,
    BF: Future<Output = Result<(), BoxError>>,
{
    let start = Instant::now();
    let (mut na, mut ta, mut nb, mut tb) = (0u64, 0.0, 0u64, 0.0);
    while start.elapsed() < budget * 2 {
        let t = Instant::now();
        for _ in 0..8 {
            a(na).await?;
            na += 1;
        }
        ta += t.elapsed().as_secs_f64();
        let t = Instant::now();
        for _ in 0..8 {
            b(nb).await?;
            nb += 1;
        }
        tb += t.elapsed().as_secs_f64();
    }
    Ok((na, ta, nb, tb))
}

/// Each Redis workload compared with a bare `GET`/`SET` of the bytes it stores (see
/// [`WIRE_REFS`]), on the backend's own connection, interleaved.
async fn against_the_wire(
    redis: &plexcache_redis::RedisBackend,
    budget: Duration,
    store: &PlexCache<DynBackend>,
    library: &[PlexItem],
    list: &[u8],
    populated: u64,
) -> Result<Wire, BoxError> {
    let cache = store.cache();
    let mut stored = Vec::new();
    for i in 0..4 {
        let entry = cache
            .backend()
            .get(&small_key(i), now_ms())
            .await?
            .ok_or("small entry missing")?;
        stored.push(entry.value);
    }
    let small_mean = stored.iter().map(|v| v.len() as u64).sum::<u64>() / stored.len() as u64;
    let names: Vec<String> = (0..stored.len()).map(|i| format!("small-{i}")).collect();
    for (name, value) in names.iter().zip(&stored) {
        redis.bare_set(name, value).await?;
    }
    redis.bare_set("list", list).await?;
    // The main run removed the listing after its reads.
    store.set_library_items("Movies", library).await?;
    let bare_list_get = |_| async move {
        redis.bare_get("list").await?.ok_or("bare list missing")?;
        Ok(())
    };
    let mut out = Vec::new();
    let r = measure_pair(budget, |_| read_view(store), bare_list_get).await?;
    out.push((WORKLOADS[0], r.0, r.1, r.2, r.3, list.len() as u64));
    let r = measure_pair(
        budget,
        |_| async move {
            store
                .library_items("Movies")
                .await?
                .ok_or("library list missing")?;
            Ok(())
        },
        bare_list_get,
    )
    .await?;
    out.push((WORKLOADS[1], r.0, r.1, r.2, r.3, list.len() as u64));
    let r = measure_pair(
        budget,
        |_| async move { Ok(store.set_library_items("Movies", library).await?) },
        |_| async move { Ok(redis.bare_set("list", list).await?) },
    )
    .await?;
    out.push((WORKLOADS[3], r.0, r.1, r.2, r.3, list.len() as u64));
    // Rewrites of the small entries the hits read, each against a bare SET of the same shape.
    let r = measure_pair(
        budget,
        |i| async move {
            let k = i % populated;
            Ok(cache.set(&small_key(k), &small(k, library)).await?)
        },
        |i| {
            let n = (i % populated) as usize % 4;
            let (name, value) = (&names[n], &stored[n]);
            async move { Ok(redis.bare_set(name, value).await?) }
        },
    )
    .await?;
    out.push((WORKLOADS[4], r.0, r.1, r.2, r.3, small_mean));
    let r = measure_pair(
        budget,
        |i| async move {
            cache
                .get::<Vec<PlexItem>>(&small_key(i.wrapping_mul(7919) % populated))
                .await?
                .ok_or("small entry missing")?;
            Ok(())
        },
        |i| {
            let name = &names[(i.wrapping_mul(7919) % populated) as usize % 4];
            async move {
                redis.bare_get(name).await?.ok_or("bare entry missing")?;
                Ok(())
            }
        },
    )
    .await?;
    out.push((WORKLOADS[5], r.0, r.1, r.2, r.3, small_mean));
    let r = measure_pair(
        budget,
        |i| async move {
            if cache
                .get::<Vec<PlexItem>>(&format!("search:Movies:absent {i}"))
                .await?
                .is_some()
            {
                return Err("unexpected hit".into());
            }
            Ok(())
        },
        |_| async move {
            if redis.bare_get("absent").await?.is_some() {
                return Err("unexpected bare hit".into());
            }
            Ok(())
        },
    )
    .await?;
    out.push((WORKLOADS[6], r.0, r.1, r.2, r.3, 0));
    redis.bare_delete("list").await?;
    for name in &names {
        redis.bare_delete(name).await?;
    }
    Ok(out)
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

const WORKLOADS: [&str; 10] = [
    "library list get, view",
    "library list get, owned",
    "library list get, tier",
    "library list set",
    "small set",
    "small get hit",
    "small get miss",
    "zipf 90/10 mix",
    "set under eviction",
    "sync (extract + replace)",
];

fn small(i: u64, pool: &[PlexItem]) -> Vec<PlexItem> {
    // Search results of 0-3 items, like real title searches.
    let n = (i % 4) as usize;
    (0..n)
        .map(|j| pool[(i as usize * 3 + j) % pool.len()].clone())
        .collect()
}

fn small_key(i: u64) -> String {
    keys::search_key("Movies", &format!("title {i}"))
}

/// Runs `op(i)` for i = 0.. until the budget is spent or `max` ops ran.
async fn measure<F, Fut>(budget: Duration, max: u64, mut op: F) -> Result<(u64, f64), BoxError>
where
    F: FnMut(u64) -> Fut,
    Fut: Future<Output = Result<(), BoxError>>,
{
    let start = Instant::now();
    let mut n = 0;
    while n < max {
        op(n).await?;
        n += 1;
        if n % 16 == 0 && start.elapsed() >= budget {
            break;
        }
    }
    Ok((n, start.elapsed().as_secs_f64()))
}

/// A fresh store of `kind`: in `dir`, or for Redis under a key prefix of this run's own (the
/// returned handle deletes it after the run).
async fn fresh_backend(
    kind: BackendKind,
    dir: &std::path::Path,
    redis_url: Option<&str>,
    n: u32,
) -> Result<(DynBackend, Option<plexcache_redis::RedisBackend>), BoxError> {
    match (kind, redis_url) {
        (BackendKind::Redis, Some(url)) => {
            let millis = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis());
            let prefix = format!("plexcache-bench-{}-{millis}-{n}:", std::process::id());
            let redis = plexcache_redis::RedisBackend::builder(url)
                .key_prefix(prefix)
                .connect()
                .await?;
            Ok((std::sync::Arc::new(redis.clone()), Some(redis)))
        }
        _ => Ok((open_backend(kind, dir).await?, None)),
    }
}

/// Opens the library's view and reads what a sync tool reads of every item.
async fn read_view(store: &PlexCache<DynBackend>) -> Result<(), BoxError> {
    let view = store
        .library_view("Movies")
        .await?
        .ok_or("library list missing")?;
    std::hint::black_box(touch(&view));
    Ok(())
}

/// Reads what a sync tool reads of every item.
fn touch(view: &LibraryView) -> usize {
    view.iter()
        .map(|i| i.key.len() + i.title.len() + i.file_paths.iter().map(|p| p.len()).sum::<usize>())
        .sum()
}

async fn bench_backend(
    kind: BackendKind,
    args: &BenchArgs,
    library: &[PlexItem],
    sync_xml: Option<&[u8]>,
    redis_url: Option<&str>,
) -> Result<(Vec<(&'static str, u64, f64)>, Wire), BoxError> {
    let budget = Duration::from_secs_f64(args.seconds);
    // A fresh subdirectory, created 0700 by the backend like any cache directory (a temporary
    // directory itself may be readable by others, which the backends warn about).
    let dir = scratch(args)?;
    let (backend, redis) = fresh_backend(kind, &dir.path().join("cache"), redis_url, 1).await?;
    let store = PlexCache::builder(backend)
        .size_limit(1 << 34)
        .configure(|b| b.no_memory_tier())
        .build()?;
    let library = library.to_vec();
    let mut out = Vec::new();

    // Listing reads from the store (no in-process tier): the view, touching what a sync tool
    // reads of every item, and owned items.
    store.set_library_items("Movies", &library).await?;
    // The stored bytes, for the bare round trips of the same value (Redis).
    let list_bytes = match &redis {
        Some(_) => Some(
            store
                .cache()
                .backend()
                .get(&keys::library_key("Movies"), now_ms())
                .await?
                .ok_or("library list missing")?
                .value,
        ),
        None => None,
    };
    let r = measure(budget, u64::MAX, |_| read_view(&store)).await?;
    out.push((WORKLOADS[0], r.0, r.1));
    let r = measure(budget, u64::MAX, |_| {
        let store = &store;
        async move {
            store
                .library_items("Movies")
                .await?
                .ok_or("library list missing")?;
            Ok(())
        }
    })
    .await?;
    out.push((WORKLOADS[1], r.0, r.1));
    let r = measure(budget, u64::MAX, |_| {
        let (store, library) = (&store, &library);
        async move { Ok(store.set_library_items("Movies", library).await?) }
    })
    .await?;
    let set = (WORKLOADS[3], r.0, r.1);
    let cache = store.cache();

    // The same view reads through the memory tier, on a second handle of the same store.
    {
        let tiered = PlexCache::builder(cache.backend().clone())
            .size_limit(1 << 34)
            .build()?;
        let r = measure(budget, u64::MAX, |_| read_view(&tiered)).await?;
        out.push((WORKLOADS[2], r.0, r.1));
    }
    out.push(set);
    let lib_key = keys::library_key("Movies");
    cache.remove(&lib_key).await?;

    let nkeys = args.keys;
    let r = measure(budget.max(Duration::from_secs(60)), nkeys, |i| {
        let (cache, library) = (&cache, &library);
        async move { Ok(cache.set(&small_key(i), &small(i, library)).await?) }
    })
    .await?;
    out.push((WORKLOADS[4], r.0, r.1));
    let populated = r.0.max(1);

    let r = measure(budget, u64::MAX, |i| {
        let cache = &cache;
        async move {
            cache
                .get::<Vec<PlexItem>>(&small_key(i.wrapping_mul(7919) % populated))
                .await?
                .ok_or("small entry missing")?;
            Ok(())
        }
    })
    .await?;
    out.push((WORKLOADS[5], r.0, r.1));

    let r = measure(budget, u64::MAX, |i| {
        let cache = &cache;
        async move {
            let got = cache
                .get::<Vec<PlexItem>>(&format!("search:Movies:absent {i}"))
                .await?;
            if got.is_some() {
                return Err("unexpected hit".into());
            }
            Ok(())
        }
    })
    .await?;
    out.push((WORKLOADS[6], r.0, r.1));

    let mut rng = SmallRng::seed_from_u64(42);
    let zipf = Zipf::new(populated as f64, 0.99).map_err(|e| format!("zipf: {e}"))?;
    let draws: Vec<(u64, bool)> = (0..1_000_000)
        .map(|_| {
            let k = (zipf.sample(&mut rng) as u64).saturating_sub(1);
            (k, rng.random_range(0..100u32) < 10)
        })
        .collect();
    let r = measure(budget, draws.len() as u64, |i| {
        let (cache, library, draws) = (&cache, &library, &draws);
        async move {
            let (k, is_set) = draws[i as usize];
            if is_set {
                cache.set(&small_key(k), &small(k, library)).await?;
            } else {
                let _ = cache.get::<Vec<PlexItem>>(&small_key(k)).await?;
            }
            Ok(())
        }
    })
    .await?;
    out.push((WORKLOADS[7], r.0, r.1));
    let mut wire = Vec::new();
    if let (Some(redis), Some(list)) = (&redis, &list_bytes) {
        wire = against_the_wire(redis, budget, &store, &library, list, populated).await?;
    }
    drop(store);
    if let Some(redis) = redis {
        redis.destroy().await?;
    }

    // Eviction pressure: a 1 MiB limit, every set evicts.
    let dir2 = scratch(args)?;
    let (backend, redis) = fresh_backend(kind, &dir2.path().join("cache"), redis_url, 2).await?;
    let tight: Cache<DynBackend> = Cache::builder(backend).size_limit(1 << 20).build()?;
    for i in 0..5_000 {
        tight.set(&small_key(i), &small(i | 1, &library)).await?;
    }
    let r = measure(budget, u64::MAX, |i| {
        let (cache, library) = (&tight, &library);
        async move {
            Ok(cache
                .set(&small_key(5_000 + i), &small(i | 1, library))
                .await?)
        }
    })
    .await?;
    out.push((WORKLOADS[8], r.0, r.1));
    tight.flush().await?;
    drop(tight);
    if let Some(redis) = redis {
        redis.destroy().await?;
    }

    // A sync without a server: extract a generated PMS response and write the listing with a
    // match entry per file path in one batch.
    if let Some(xml) = sync_xml {
        let dir3 = scratch(args)?;
        let (backend, redis) =
            fresh_backend(kind, &dir3.path().join("cache"), redis_url, 3).await?;
        let store = PlexCache::builder(backend).size_limit(1 << 34).build()?;
        let r = measure(budget, u64::MAX, |_| {
            let store = &store;
            async move {
                let items = plexcache_plex::extract_items(xml)?.items;
                store.replace_library("Movies", &items, true).await?;
                store.flush().await?;
                Ok(())
            }
        })
        .await?;
        out.push((WORKLOADS[9], r.0, r.1));
        drop(store);
        if let Some(redis) = redis {
            redis.destroy().await?;
        }
    }
    Ok((out, wire))
}

/// Runs `bench`.
pub async fn run(g: &Global, args: BenchArgs) -> Result<u8, BoxError> {
    let started = Instant::now();
    let library = expected_items(&Spec::new(args.items));
    let sync_xml = (args.sync_items > 0).then(|| generate_xml(&Spec::new(args.sync_items)));
    let mut rows: Vec<Row> = Vec::new();
    let mut backends = args.backends.clone();
    if g.redis_url.is_some() && !backends.contains(&BackendKind::Redis) {
        backends.push(BackendKind::Redis);
    }
    if backends.contains(&BackendKind::Redis) && g.redis_url.is_none() {
        eprintln!(
            "error: benchmarking redis needs the server's URL: --redis-url URL (or PLEXCACHE_REDIS_URL)"
        );
        return Ok(EXIT_USAGE);
    }
    backends.dedup();
    let mut wire = Wire::new();
    for kind in &backends {
        let name = backend_name(*kind);
        if !g.json {
            eprintln!("benchmarking {name} ...");
        }
        let (measured, bare) = bench_backend(
            *kind,
            &args,
            &library,
            sync_xml.as_deref(),
            g.redis_url.as_deref(),
        )
        .await?;
        wire.extend(bare);
        for (workload, ops, seconds) in measured {
            rows.push(Row {
                workload,
                backend: name,
                ops,
                seconds,
                ops_per_sec: ops as f64 / seconds.max(1e-9),
                ratio_to_fastest: 0.0,
                paired_ops_per_sec: None,
                wire_ops_per_sec: None,
                wire_bytes: None,
                ratio_to_wire: None,
            });
        }
    }
    let per_op = |ops: u64, seconds: f64| seconds / (ops.max(1) as f64);
    let memory_per_op: Vec<(&str, f64)> = rows
        .iter()
        .filter(|r| r.backend == "memory")
        .map(|r| (r.workload, per_op(r.ops, r.seconds)))
        .collect();
    for r in rows.iter_mut().filter(|r| r.backend == "redis") {
        let Some(&(_, ops, seconds, wire_ops, wire_seconds, bytes)) =
            wire.iter().find(|w| w.0 == r.workload)
        else {
            continue;
        };
        let Some(reference) = WIRE_REFS.iter().find(|w| w.workload == r.workload) else {
            continue;
        };
        let codec = if reference.plus_codec {
            memory_per_op
                .iter()
                .find(|m| m.0 == r.workload)
                .map_or(0.0, |m| m.1)
        } else {
            0.0
        };
        r.paired_ops_per_sec = Some(ops as f64 / seconds.max(1e-9));
        r.wire_ops_per_sec = Some(wire_ops as f64 / wire_seconds.max(1e-9));
        r.wire_bytes = Some(bytes);
        r.ratio_to_wire = Some(per_op(ops, seconds) / (per_op(wire_ops, wire_seconds) + codec));
    }
    for w in WORKLOADS {
        let best = rows
            .iter()
            .filter(|r| r.workload == w)
            .map(|r| r.ops_per_sec)
            .fold(0.0, f64::max);
        for r in rows.iter_mut().filter(|r| r.workload == w) {
            r.ratio_to_fastest = if r.ops_per_sec > 0.0 {
                best / r.ops_per_sec
            } else {
                f64::INFINITY
            };
        }
    }
    if g.json {
        output::print_json(&rows)?;
        return Ok(EXIT_OK);
    }
    let mut headers = vec!["workload".to_string()];
    headers.extend(
        backends
            .iter()
            .map(|b| format!(">{} ops/s", backend_name(*b))),
    );
    let header_refs: Vec<&str> = headers.iter().map(String::as_str).collect();
    let table: Vec<Vec<String>> = WORKLOADS
        .iter()
        .map(|w| {
            let mut row = vec![(*w).to_string()];
            for b in &backends {
                let cell = rows
                    .iter()
                    .find(|r| r.workload == *w && r.backend == backend_name(*b))
                    .map_or("-".into(), |r| {
                        if r.ratio_to_fastest <= 1.0 {
                            format!("{} (fastest)", si(r.ops_per_sec))
                        } else {
                            format!("{} ({:.1}x slower)", si(r.ops_per_sec), r.ratio_to_fastest)
                        }
                    });
                row.push(cell);
            }
            row
        })
        .collect();
    println!(
        "synthetic library of {} items, {} small-entry keys, a {}-item sync, {:.1} s per workload per backend",
        args.items, args.keys, args.sync_items, args.seconds
    );
    print!("{}", output::table(&header_refs, &table));
    if rows.iter().any(|r| r.ratio_to_wire.is_some()) {
        let with_memory = rows.iter().any(|r| r.backend == "memory");
        println!();
        println!(
            "redis against the wire: each workload interleaved with bare round trips of the same bytes, on the backend's connection{}",
            if with_memory {
                ""
            } else {
                " (without memory among the backends, the lists' decode/encode time is not added)"
            }
        );
        let table: Vec<Vec<String>> = WIRE_REFS
            .iter()
            .filter_map(|w| {
                let r = rows
                    .iter()
                    .find(|r| r.backend == "redis" && r.workload == w.workload)?;
                let ratio = r.ratio_to_wire?;
                let wire_ops = r.wire_ops_per_sec?;
                let ops = r.paired_ops_per_sec?;
                let bare = w.bare.replace("{}", &r.wire_bytes.unwrap_or(0).to_string());
                let reference = if w.plus_codec && with_memory {
                    format!("{bare} + memory backend")
                } else {
                    bare
                };
                Some(vec![
                    w.workload.to_owned(),
                    si(ops),
                    format!("{reference}: {}", si(wire_ops)),
                    format!("{ratio:.2}x"),
                    format!(
                        "{:.1}x: {}",
                        w.target,
                        if ratio <= w.target { "met" } else { "missed" }
                    ),
                ])
            })
            .collect();
        print!(
            "{}",
            output::table(
                &["workload", ">redis ops/s", "against", ">ratio", "target"],
                &table
            )
        );
    }
    println!("finished in {:.1} s", started.elapsed().as_secs_f64());
    Ok(EXIT_OK)
}

fn backend_name(kind: BackendKind) -> &'static str {
    match kind {
        BackendKind::Sqlite => "sqlite",
        BackendKind::SqliteExclusive => "sqlite-exclusive",
        BackendKind::Sled => "sled",
        BackendKind::Memory => "memory",
        BackendKind::Redis => "redis",
    }
}

/// Operations per second with an SI suffix.
fn si(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else {
        format!("{v:.1}")
    }
}
