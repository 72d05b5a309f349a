//! The data-path comparison with diskcache: the default SQLite backend (shared mode, as
//! `SqliteBackend::open(dir)` gives it) on the workload of `plexcache_benches::plexdata`, each
//! operation timed on its own, medians and p99 printed as JSON lines; the raw rusqlite floor
//! and the memory backend beside it. `benches/python/run_datapath.sh` runs it with the same
//! operations through diskcache 5.6.3 and prints the ratios.
//!
//! ```sh
//! cargo bench -p plexcache-benches --bench datapath            # every row
//! cargo bench -p plexcache-benches --bench datapath -- quick   # 1k and 10k only, fewer rounds
//! cargo bench -p plexcache-benches --bench datapath -- small    # one group: library, small,
//!                                  # exclusive, cull, tier, import, raw or rss
//! # for perf: a listing set and read in a loop, or a 50k-item sync's batch
//! cargo bench -p plexcache-benches --bench datapath -- profile 10000 300 [INLINE_LIMIT]
//! cargo bench -p plexcache-benches --bench datapath -- profile-import
//! ```
//!
//! Get rows read the store every time: the memory tier is off (`no_memory_tier`), except in
//! the rows named `tier`, where another process writes other keys every 100 ms, and the
//! exclusive mode's small rows, which run as users get it.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use plexcache_benches::plexdata::{
    absent_key, plex_library, shuffled, small_key, small_value, zipf_ops,
};
use plexcache_core::{Cache, CacheBackend, codec};
use plexcache_memory::MemoryBackend;
use plexcache_plex::{LibraryView, PlexCache, PlexItem, keys};
use plexcache_sqlite::SqliteBackend;

const SMALL: u64 = 10_000;
const MIX_OPS: usize = 50_000;
const CULL_LIMIT: u64 = 5 * 1024 * 1024;

struct Row {
    name: String,
    samples: Vec<Duration>,
}

impl Row {
    fn print(mut self) {
        self.samples.sort_unstable();
        let n = self.samples.len();
        let at = |q: f64| {
            let i = ((n as f64 - 1.0) * q).round() as usize;
            self.samples[i.min(n - 1)].as_secs_f64() * 1e6
        };
        println!(
            "{{\"row\":\"{}\",\"median_us\":{:.3},\"p99_us\":{:.3},\"ops\":{}}}",
            self.name,
            at(0.5),
            at(0.99),
            n
        );
    }
}

fn timed<T>(samples: &mut Vec<Duration>, f: impl FnOnce() -> T) -> T {
    let t = Instant::now();
    let out = f();
    samples.push(t.elapsed());
    out
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Touches what a sync tool reads of every item.
fn touch_view(view: &LibraryView) -> usize {
    let mut n = 0;
    for item in view.iter() {
        n += item.key.len() + item.title.len();
        for p in item.file_paths {
            n += p.len();
        }
    }
    n
}

fn touch_owned(items: &[PlexItem]) -> usize {
    let mut n = 0;
    for item in items {
        n += item.key.len() + item.title.len();
        for p in &item.file_paths {
            n += p.len();
        }
    }
    n
}

fn plex<B: CacheBackend>(backend: B, tier: bool, limit: u64) -> PlexCache<B> {
    PlexCache::builder(backend)
        .size_limit(limit)
        .configure(|b| if tier { b } else { b.no_memory_tier() })
        .build()
        .unwrap()
}

fn rounds(n: u64, quick: bool) -> usize {
    let r = match n {
        0..=1_000 => 200,
        1_001..=10_000 => 40,
        _ => 10,
    };
    if quick { r / 2 } else { r }
}

async fn library_rows<B: CacheBackend>(
    prefix: &str,
    cache: &PlexCache<B>,
    sizes: &[u64],
    quick: bool,
) {
    for &n in sizes {
        let items = plex_library(n);
        let r = rounds(n, quick);
        let mut set = Vec::new();
        for _ in 0..r {
            let t = Instant::now();
            cache.set_library_items("Movies", &items).await.unwrap();
            set.push(t.elapsed());
        }
        Row {
            name: format!("{prefix}list_set_{n}"),
            samples: set,
        }
        .print();
        let mut view = Vec::new();
        for _ in 0..r {
            let t = Instant::now();
            let v = cache.library_view("Movies").await.unwrap().unwrap();
            black_box(touch_view(&v));
            view.push(t.elapsed());
        }
        Row {
            name: format!("{prefix}list_get_view_{n}"),
            samples: view,
        }
        .print();
        let mut owned = Vec::new();
        for _ in 0..r {
            let t = Instant::now();
            let v = cache.library_items("Movies").await.unwrap().unwrap();
            black_box(touch_owned(&v));
            owned.push(t.elapsed());
        }
        Row {
            name: format!("{prefix}list_get_owned_{n}"),
            samples: owned,
        }
        .print();
    }
}

async fn small_rows<B: CacheBackend>(prefix: &str, cache: &Cache<B>) {
    let values: Vec<Vec<PlexItem>> = (0..SMALL).map(small_value).collect();
    let keys: Vec<String> = (0..SMALL).map(small_key).collect();
    let mut set = Vec::new();
    for i in 0..SMALL as usize {
        let t = Instant::now();
        cache.set(&keys[i], &values[i]).await.unwrap();
        set.push(t.elapsed());
    }
    Row {
        name: format!("{prefix}small_set"),
        samples: set,
    }
    .print();
    let mut hit = Vec::new();
    for i in shuffled(SMALL, 11) {
        let t = Instant::now();
        let v: Option<Vec<PlexItem>> = cache.get(&keys[i as usize]).await.unwrap();
        hit.push(t.elapsed());
        assert!(v.is_some());
    }
    Row {
        name: format!("{prefix}small_get_hit"),
        samples: hit,
    }
    .print();
    let mut miss = Vec::new();
    for i in 0..SMALL {
        let key = absent_key(i);
        let t = Instant::now();
        let v: Option<Vec<PlexItem>> = cache.get(&key).await.unwrap();
        miss.push(t.elapsed());
        assert!(v.is_none());
    }
    Row {
        name: format!("{prefix}small_get_miss"),
        samples: miss,
    }
    .print();
    let mut gets = Vec::new();
    let mut sets = Vec::new();
    let mut all = Vec::new();
    for (is_set, i) in zipf_ops(MIX_OPS, SMALL, 7) {
        let t = Instant::now();
        if is_set {
            cache
                .set(&keys[i as usize], &values[i as usize])
                .await
                .unwrap();
        } else {
            let _: Option<Vec<PlexItem>> = cache.get(&keys[i as usize]).await.unwrap();
        }
        let d = t.elapsed();
        all.push(d);
        if is_set { sets.push(d) } else { gets.push(d) }
    }
    Row {
        name: format!("{prefix}mix_90_10"),
        samples: all,
    }
    .print();
    Row {
        name: format!("{prefix}mix_90_10_gets"),
        samples: gets,
    }
    .print();
    Row {
        name: format!("{prefix}mix_90_10_sets"),
        samples: sets,
    }
    .print();
}

async fn cull_rows(dir: &Path) {
    let cache = Cache::builder(SqliteBackend::open(dir).unwrap())
        .size_limit(CULL_LIMIT)
        .no_memory_tier()
        .build()
        .unwrap();
    let total = 4 * SMALL;
    let mut samples = Vec::new();
    for i in 0..total {
        let value = small_value(i);
        let key = format!("{}#{i}", small_key(i));
        let t = Instant::now();
        cache.set(&key, &value).await.unwrap();
        if i >= total / 2 {
            samples.push(t.elapsed());
        }
    }
    assert!(cache.backend().usage().await.unwrap().bytes <= CULL_LIMIT);
    assert!(cache.stats().await.unwrap().session.evictions > 0);
    Row {
        name: "cull_set_5mib".into(),
        samples,
    }
    .print();
}

/// The floor: raw rusqlite, the backend's pragmas, a bare key/value table.
fn raw_rows(dir: &Path, sizes: &[u64], quick: bool) {
    let conn = rusqlite::Connection::open(dir.join("raw.db")).unwrap();
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;
         CREATE TABLE t (key TEXT PRIMARY KEY, value BLOB NOT NULL);",
    )
    .unwrap();
    let keys: Vec<String> = (0..SMALL).map(small_key).collect();
    let values: Vec<_> = (0..SMALL)
        .map(|i| codec::encode(&keys[i as usize], &small_value(i)).unwrap())
        .collect();
    let mut set = Vec::new();
    {
        let mut put = conn
            .prepare_cached("INSERT OR REPLACE INTO t (key, value) VALUES (?1, ?2)")
            .unwrap();
        for i in 0..SMALL as usize {
            timed(&mut set, || {
                put.execute(rusqlite::params![keys[i], &values[i][..]])
                    .unwrap()
            });
        }
    }
    Row {
        name: "raw_set".into(),
        samples: set,
    }
    .print();
    let mut get = conn
        .prepare_cached("SELECT value FROM t WHERE key = ?1")
        .unwrap();
    let mut hit = Vec::new();
    for i in shuffled(SMALL, 11) {
        timed(&mut hit, || {
            let v: Vec<u8> = get.query_row([&keys[i as usize]], |r| r.get(0)).unwrap();
            black_box(v)
        });
    }
    Row {
        name: "raw_get_hit".into(),
        samples: hit,
    }
    .print();
    let mut miss = Vec::new();
    for i in 0..SMALL {
        let key = absent_key(i);
        timed(&mut miss, || {
            let v: Option<Vec<u8>> =
                rusqlite::OptionalExtension::optional(get.query_row([&key], |r| r.get(0))).unwrap();
            black_box(v)
        });
    }
    Row {
        name: "raw_get_miss".into(),
        samples: miss,
    }
    .print();
    let mut gets = Vec::new();
    let mut sets = Vec::new();
    {
        let mut put = conn
            .prepare_cached("INSERT OR REPLACE INTO t (key, value) VALUES (?1, ?2)")
            .unwrap();
        for (is_set, i) in zipf_ops(MIX_OPS, SMALL, 7) {
            let i = i as usize;
            if is_set {
                timed(&mut sets, || {
                    put.execute(rusqlite::params![keys[i], &values[i][..]])
                        .unwrap()
                });
            } else {
                timed(&mut gets, || {
                    let v: Vec<u8> = get.query_row([&keys[i]], |r| r.get(0)).unwrap();
                    black_box(v)
                });
            }
        }
    }
    Row {
        name: "raw_mix_gets".into(),
        samples: gets,
    }
    .print();
    Row {
        name: "raw_mix_sets".into(),
        samples: sets,
    }
    .print();
    // The cull workload on a bare table that keeps its total size in the process and deletes
    // the oldest rows (rowid order) in the same transaction until it is under the limit: the
    // least an engine does to set while culling.
    conn.execute_batch(
        "CREATE TABLE c (key TEXT PRIMARY KEY, size INTEGER NOT NULL, value BLOB NOT NULL);",
    )
    .unwrap();
    let mut total_bytes = 0u64;
    let mut cull = Vec::new();
    let total = 4 * SMALL;
    for i in 0..total {
        let key = format!("{}#{i}", small_key(i));
        let value = codec::encode(&key, &small_value(i)).unwrap();
        let t = Instant::now();
        let tx = conn.unchecked_transaction().unwrap();
        let size = (key.len() + value.len()) as u64;
        tx.prepare_cached("INSERT INTO c (key, size, value) VALUES (?1, ?2, ?3)")
            .unwrap()
            .execute(rusqlite::params![key, size as i64, &value[..]])
            .unwrap();
        total_bytes += size;
        while total_bytes > CULL_LIMIT {
            let freed: i64 = tx
                .prepare_cached(
                    "DELETE FROM c WHERE rowid = (SELECT min(rowid) FROM c) RETURNING size",
                )
                .unwrap()
                .query_row([], |r| r.get(0))
                .unwrap();
            total_bytes -= freed as u64;
        }
        tx.commit().unwrap();
        if i >= total / 2 {
            cull.push(t.elapsed());
        }
    }
    Row {
        name: "raw_cull_set".into(),
        samples: cull,
    }
    .print();
    for &n in sizes {
        let key = keys::library_key("Movies");
        let lib = codec::encode_borrowed(&key, &plexcache_plex::ListingRef::new(&plex_library(n)))
            .unwrap();
        conn.execute(
            "INSERT OR REPLACE INTO t (key, value) VALUES (?1, ?2)",
            rusqlite::params![key, &lib[..]],
        )
        .unwrap();
        let mut samples = Vec::new();
        for _ in 0..rounds(n, quick) {
            timed(&mut samples, || {
                let v: Vec<u8> = get.query_row([&key], |r| r.get(0)).unwrap();
                black_box(v)
            });
        }
        Row {
            name: format!("raw_list_select_{n}"),
            samples,
        }
        .print();
        let mut samples = Vec::new();
        let mut set = Vec::new();
        for _ in 0..rounds(n, quick) {
            timed(&mut set, || {
                conn.execute(
                    "INSERT OR REPLACE INTO t (key, value) VALUES (?1, ?2)",
                    rusqlite::params![key, &lib[..]],
                )
                .unwrap()
            });
            let rowid: i64 = conn
                .query_row("SELECT rowid FROM t WHERE key = ?1", [&key], |r| r.get(0))
                .unwrap();
            timed(&mut samples, || {
                let blob = conn
                    .blob_open(rusqlite::MAIN_DB, "t", "value", rowid, true)
                    .unwrap();
                let mut buf = vec![0u8; blob.len()];
                blob.read_at_exact(&mut buf, 0).unwrap();
                black_box(buf)
            });
        }
        Row {
            name: format!("raw_list_blob_{n}"),
            samples,
        }
        .print();
        Row {
            name: format!("raw_list_set_{n}"),
            samples: set,
        }
        .print();
    }
}

/// Repeated reads through the tier while another process writes other keys every 100 ms.
async fn tier_rows(dir: &Path, sizes: &[u64], quick: bool) {
    let cache = plex(SqliteBackend::open(dir).unwrap(), true, 1 << 30);
    let exe = std::env::current_exe().unwrap();
    let mut writer = std::process::Command::new(exe)
        .arg("writer")
        .arg(dir)
        .spawn()
        .unwrap();
    for &n in sizes {
        cache
            .set_library_items("Movies", &plex_library(n))
            .await
            .unwrap();
        let mut samples = Vec::new();
        let until = Instant::now() + Duration::from_millis(if quick { 500 } else { 1500 });
        while Instant::now() < until {
            let t = Instant::now();
            let v = cache.library_view("Movies").await.unwrap().unwrap();
            black_box(touch_view(&v));
            samples.push(t.elapsed());
        }
        Row {
            name: format!("tier_list_get_view_{n}"),
            samples,
        }
        .print();
    }
    let _ = writer.kill();
    let _ = writer.wait();
}

/// The other process of the tier rows: writes a small entry every 100 ms until killed.
fn writer(dir: &Path) {
    let rt = runtime();
    rt.block_on(async {
        let cache = Cache::new(SqliteBackend::open(dir).unwrap());
        for i in 0.. {
            cache.set(&format!("other:{i}"), &i).await.unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
}

/// A fresh process: opens the cache, then reads a library through the view; prints the
/// growth of its peak RSS above the RSS just before the read, and the stored value's size.
fn rss(dir: &Path, n: u64) {
    let rt = runtime();
    rt.block_on(async {
        let cache = plex(SqliteBackend::open(dir).unwrap(), false, 1 << 30);
        if cache
            .cache()
            .get_raw(&keys::library_key("Movies"))
            .await
            .unwrap()
            .is_none()
        {
            cache
                .set_library_items("Movies", &plex_library(n))
                .await
                .unwrap();
            return;
        }
        let _ = std::fs::write("/proc/self/clear_refs", "5");
        let before = status_kib("VmRSS");
        let v = cache.library_view("Movies").await.unwrap().unwrap();
        black_box(touch_view(&v));
        let peak = status_kib("VmHWM");
        println!(
            "{{\"row\":\"rss_view_{n}\",\"growth_kib\":{},\"stored_kib\":{}}}",
            peak.saturating_sub(before),
            v.stored_bytes().len() / 1024
        );
    });
}

fn status_kib(field: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// An import of a generated `n`-item response, with and without match entries.
async fn import_rows(root: &Path, n: usize) {
    use plexcache_plex::synthetic::{Spec, generate_xml};
    let xml = generate_xml(&Spec::new(n));
    // Three of each, taking turns, each into a new cache.
    let (mut without, mut with) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        for matches in [false, true] {
            let dir = tempfile::tempdir_in(root).unwrap();
            let cache = plex(SqliteBackend::open(dir.path()).unwrap(), true, 1 << 30);
            let t = Instant::now();
            let items = plexcache_plex::extract_items(&xml).unwrap().items;
            cache
                .replace_library("Movies", &items, matches)
                .await
                .unwrap();
            cache.flush().await.unwrap();
            if matches { &mut with } else { &mut without }.push(t.elapsed());
        }
    }
    for (name, samples) in [
        ("import_no_matches", without),
        ("import_with_matches", with),
    ] {
        Row {
            name: format!("{name}_{n}"),
            samples,
        }
        .print();
    }
}

/// CPU time of this thread (the profile modes: robust to other load on the machine).
fn thread_cpu() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    match args.first().map(String::as_str) {
        Some("writer") => return writer(Path::new(&args[1])),
        Some("rss") => return rss(Path::new(&args[1]), args[2].parse().unwrap()),
        Some("profile") => {
            let n: u64 = args[1].parse().unwrap();
            let iters: usize = args[2].parse().unwrap();
            let inline: u64 = args.get(3).map(|a| a.parse().unwrap()).unwrap_or(64 * 1024);
            let dir = tempfile::tempdir().unwrap();
            let rt = runtime();
            rt.block_on(async {
                let b = SqliteBackend::builder(dir.path())
                    .inline_read_limit(inline)
                    .open()
                    .unwrap();
                let cache = plex(b, false, 1 << 30);
                cache
                    .set_library_items("Movies", &plex_library(n))
                    .await
                    .unwrap();
                let items = plex_library(n);
                let t = Instant::now();
                let mut each = Vec::new();
                for _ in 0..iters {
                    let cpu = thread_cpu();
                    cache.set_library_items("Movies", &items).await.unwrap();
                    each.push((thread_cpu() - cpu).as_micros());
                }
                eprintln!("set {n}: {:?}/iter", t.elapsed() / iters as u32);
                for c in each.chunks(50) {
                    let mut c = c.to_vec();
                    c.sort();
                    eprintln!("  median {} max {}", c[c.len() / 2], c[c.len() - 1]);
                }
                let t = Instant::now();
                for _ in 0..iters {
                    let v = cache.library_view("Movies").await.unwrap().unwrap();
                    black_box(touch_view(&v));
                }
                eprintln!("view {n}: {:?}/iter", t.elapsed() / iters as u32);
                let cpu = thread_cpu();
                for _ in 0..iters {
                    let v = cache.library_items("Movies").await.unwrap().unwrap();
                    black_box(touch_owned(&v));
                }
                eprintln!(
                    "owned {n}: {:?}/iter (cpu)",
                    (thread_cpu() - cpu) / iters as u32
                );
            });
            return;
        }
        Some("profile-view") => {
            // A view of an n-item listing in memory: opening it, then touching every item.
            let n: u64 = args[1].parse().unwrap();
            let iters: u32 = args[2].parse().unwrap();
            let rt = runtime();
            rt.block_on(async {
                let cache = plex(MemoryBackend::new(), false, 1 << 30);
                cache
                    .set_library_items("Movies", &plex_library(n))
                    .await
                    .unwrap();
                let cpu = thread_cpu();
                for _ in 0..iters {
                    black_box(cache.library_view("Movies").await.unwrap().unwrap());
                }
                let open = (thread_cpu() - cpu) / iters;
                let cpu = thread_cpu();
                for _ in 0..iters {
                    let v = cache.library_view("Movies").await.unwrap().unwrap();
                    black_box(touch_view(&v));
                }
                let all = (thread_cpu() - cpu) / iters;
                eprintln!("view {n}: open {open:?}, open and touch {all:?} (cpu)");
            });
            return;
        }
        Some("profile-small") => {
            // Small sets of new keys, then rewrites, in thread CPU time per operation.
            let rounds: usize = args.get(1).map_or(3, |a| a.parse().unwrap());
            let dir = tempfile::tempdir().unwrap();
            let rt = runtime();
            rt.block_on(async {
                let cache = Cache::builder(SqliteBackend::open(dir.path()).unwrap())
                    .no_memory_tier()
                    .build()
                    .unwrap();
                let values: Vec<Vec<PlexItem>> = (0..SMALL).map(small_value).collect();
                let keys: Vec<String> = (0..SMALL).map(small_key).collect();
                for round in 0..rounds {
                    let cpu = thread_cpu();
                    for i in 0..SMALL as usize {
                        cache.set(&keys[i], &values[i]).await.unwrap();
                    }
                    let per = (thread_cpu() - cpu) / SMALL as u32;
                    eprintln!("small set round {round}: {per:?}/op (cpu)");
                }
            });
            return;
        }
        Some("profile-import") => {
            use plexcache_plex::synthetic::{Spec, generate_xml};
            let xml = generate_xml(&Spec::new(50_000));
            let items = plexcache_plex::extract_items(&xml).unwrap().items;
            let rt = runtime();
            let t = Instant::now();
            plexcache_plex::extract_items(&xml).unwrap();
            eprintln!("extraction {:?}", t.elapsed());
            rt.block_on(async {
                for _ in 0..3 {
                    for matches in [false, true] {
                        let dir = tempfile::tempdir().unwrap();
                        let cache = plex(SqliteBackend::open(dir.path()).unwrap(), true, 1 << 30);
                        let t = Instant::now();
                        let cpu = thread_cpu();
                        cache
                            .replace_library("Movies", &items, matches)
                            .await
                            .unwrap();
                        let (written, cpu) = (t.elapsed(), thread_cpu() - cpu);
                        cache.flush().await.unwrap();
                        eprintln!(
                            "matches {matches}: write {written:?} (cpu {cpu:?}), with flush {:?}",
                            t.elapsed()
                        );
                    }
                }
            });
            return;
        }
        Some("dataset") => {
            let sizes = [1_000, 10_000, 50_000];
            plexcache_benches::plexdata::write_dataset(Path::new(&args[1]), &sizes, SMALL, MIX_OPS)
                .unwrap();
            return;
        }
        _ => {}
    }
    let quick = args.iter().any(|a| a == "quick");
    let only: Option<&String> = args.iter().find(|a| a.as_str() != "quick");
    let want = |group: &str| only.is_none_or(|o| o == group);
    let sizes: &[u64] = if quick {
        &[1_000, 10_000]
    } else {
        &[1_000, 10_000, 50_000]
    };
    let root = tempfile::tempdir().unwrap();
    let rt = runtime();
    rt.block_on(async {
        if want("library") {
            let dir = tempfile::tempdir_in(root.path()).unwrap();
            let cache = plex(SqliteBackend::open(dir.path()).unwrap(), false, 1 << 30);
            library_rows("", &cache, sizes, quick).await;
            let mem = plex(MemoryBackend::new(), false, 1 << 30);
            library_rows("memory_", &mem, sizes, quick).await;
        }
        if want("small") {
            let dir = tempfile::tempdir_in(root.path()).unwrap();
            let cache = Cache::builder(SqliteBackend::open(dir.path()).unwrap())
                .no_memory_tier()
                .build()
                .unwrap();
            small_rows("", &cache).await;
        }
        if want("exclusive") {
            // The exclusive write-back mode as users get it (memory tier on), for comparison
            // with the default rows; the listing rows keep the tier off like the default ones.
            let dir = tempfile::tempdir_in(root.path()).unwrap();
            let backend = SqliteBackend::builder(dir.path()).open_exclusive().unwrap();
            let cache = Cache::builder(backend).build().unwrap();
            small_rows("exclusive_", &cache).await;
            drop(cache);
            let dir = tempfile::tempdir_in(root.path()).unwrap();
            let backend = SqliteBackend::builder(dir.path()).open_exclusive().unwrap();
            let cache = plex(backend, false, 1 << 30);
            library_rows("exclusive_", &cache, &sizes[..2], quick).await;
        }
        if want("cull") {
            let dir = tempfile::tempdir_in(root.path()).unwrap();
            cull_rows(dir.path()).await;
        }
        if want("tier") {
            let dir = tempfile::tempdir_in(root.path()).unwrap();
            tier_rows(dir.path(), sizes, quick).await;
        }
        if want("import") {
            import_rows(root.path(), 50_000).await;
        }
    });
    if want("raw") {
        let dir = tempfile::tempdir_in(root.path()).unwrap();
        raw_rows(dir.path(), sizes, quick);
    }
    if want("rss") {
        let exe = std::env::current_exe().unwrap();
        for n in [10_000u64] {
            let dir = tempfile::tempdir_in(root.path()).unwrap();
            for _ in 0..2 {
                let out = std::process::Command::new(&exe)
                    .arg("rss")
                    .arg(dir.path())
                    .arg(n.to_string())
                    .output()
                    .unwrap();
                print!("{}", String::from_utf8_lossy(&out.stdout));
            }
        }
    }
}
