//! `stats`, `expire`, `invalidate`, `clear`, `check`.

use plexcache_core::BoxError;
use serde::Serialize;

use crate::{EXIT_ERROR, EXIT_OK, Global, backends, output};

/// What `stats` and `check` report when a SQLite cache on a network file system is held
/// through another mount or machine: read-only, from the lease file, without opening it.
#[derive(Serialize)]
struct HeldElsewhere {
    backend: &'static str,
    storage: plexcache_core::StorageInfo,
    lease_holder: Option<plexcache_core::lease::LeaseHolder>,
    error: String,
}

/// Opens the cache; when the SQLite cache is refused because its lease is held elsewhere,
/// prints who holds it (the file system, the mode, the holder) and returns the exit code.
async fn open_or_report(
    g: &Global,
) -> Result<Result<plexcache_plex::PlexCache<backends::DynBackend>, u8>, BoxError> {
    let err = match backends::open(g).await {
        Ok(cache) => return Ok(Ok(cache)),
        Err(e) => e,
    };
    let in_use = matches!(
        err.downcast_ref::<plexcache_core::Error>(),
        Some(plexcache_core::Error::InUse { .. })
    );
    if !in_use || g.backend != crate::BackendKind::Sqlite {
        return Err(err);
    }
    let builder = backends::sqlite_builder(&backends::cache_dir(g)?, g.fs_choice());
    let fs = builder.detect_fs()?;
    if !fs.is_network() {
        return Err(err);
    }
    let report = HeldElsewhere {
        backend: "sqlite",
        storage: plexcache_core::StorageInfo {
            fs,
            mode: "network share (rollback journal, lease): held elsewhere".into(),
            lease: None,
        },
        lease_holder: builder.lease_holder()?,
        error: output::error_chain(err.as_ref()),
    };
    if g.json {
        output::print_json(&report)?;
    } else {
        let holder = report.lease_holder.as_ref().map_or_else(
            || "none (the lease was released meanwhile)".to_owned(),
            |h| format!("{} (lock domain {})", h.describe(), h.domain),
        );
        let rows = vec![
            vec!["backend".into(), "sqlite".into()],
            vec!["file system".into(), report.storage.fs.describe()],
            vec!["mode".into(), report.storage.mode.clone()],
            vec!["lease holder".into(), holder],
        ];
        print!("{}", output::table(&["statistic", "value"], &rows));
        eprintln!("error: {}", report.error);
    }
    Ok(Err(EXIT_ERROR))
}

/// Table rows for the storage of a disk backend.
fn storage_rows(storage: &plexcache_core::StorageInfo) -> Vec<Vec<String>> {
    let mut rows = vec![
        vec!["file system".into(), storage.fs.describe()],
        vec!["mode".into(), storage.mode.clone()],
    ];
    if let Some(lease) = &storage.lease {
        rows.push(vec![
            "lease holder".into(),
            format!(
                "this machine: {} (lock domain {}); renewed {} ms ago{}",
                lease.holder.describe(),
                lease.holder.domain,
                lease.renewed_ms_ago,
                if lease.valid { "" } else { "; NOT VALID" }
            ),
        ]);
    }
    rows
}

/// `plexcache stats`.
pub async fn stats(g: &Global) -> Result<u8, BoxError> {
    let cache = match open_or_report(g).await? {
        Ok(cache) => cache,
        Err(code) => return Ok(code),
    };
    let stats = cache.stats().await?;
    if g.json {
        output::print_json(&stats)?;
        return Ok(EXIT_OK);
    }
    let p = &stats.persistent;
    let ratio = p
        .hit_ratio()
        .map_or("-".to_string(), |r| format!("{:.1} %", r * 100.0));
    let mut rows = vec![
        vec!["backend".into(), stats.backend.clone()],
        vec!["entries".into(), stats.usage.entries.to_string()],
        vec![
            "size".into(),
            format!(
                "{} of {} ({:.1} %)",
                output::human_bytes(stats.usage.bytes),
                output::human_bytes(stats.size_limit),
                stats.usage.bytes as f64 * 100.0 / stats.size_limit.max(1) as f64
            ),
        ],
    ];
    if let Some(disk) = stats.disk_bytes {
        rows.push(vec!["on disk".into(), output::human_bytes(disk)]);
    }
    if let Some(storage) = &stats.storage {
        rows.extend(storage_rows(storage));
    }
    rows.push(vec![
        "eviction policy".into(),
        stats.eviction_policy.to_string(),
    ]);
    rows.push(vec!["hit ratio (all time)".into(), ratio]);
    for (name, value) in p.fields() {
        rows.push(vec![name.replace('_', " "), value.to_string()]);
    }
    print!("{}", output::table(&["statistic", "value"], &rows));
    Ok(EXIT_OK)
}

#[derive(Serialize)]
struct Count {
    removed: u64,
}

fn report_count(g: &Global, removed: u64, what: &str) -> Result<u8, BoxError> {
    if g.json {
        output::print_json(&Count { removed })?;
    } else {
        println!("{removed} {what}");
    }
    Ok(EXIT_OK)
}

/// `plexcache expire`.
pub async fn expire(g: &Global) -> Result<u8, BoxError> {
    let cache = backends::open(g).await?;
    let n = cache.expire().await?;
    cache.flush().await?;
    report_count(g, n, "expired entries purged")
}

/// `plexcache invalidate NAME`.
pub async fn invalidate(g: &Global, name: &str) -> Result<u8, BoxError> {
    let cache = backends::open(g).await?;
    let n = cache.invalidate_library(name).await?;
    cache.flush().await?;
    report_count(g, n, &format!("entries of library {name:?} removed"))
}

/// `plexcache clear`.
pub async fn clear(g: &Global) -> Result<u8, BoxError> {
    let cache = backends::open(g).await?;
    let n = cache.cache().clear().await?;
    cache.flush().await?;
    report_count(g, n, "entries removed")
}

/// `plexcache check`: exit 1 when a problem is found.
pub async fn check(g: &Global) -> Result<u8, BoxError> {
    let cache = match open_or_report(g).await? {
        Ok(cache) => cache,
        Err(code) => return Ok(code),
    };
    let report = cache.cache().check().await?;
    let storage = cache.cache().backend().storage_info();
    cache.flush().await?;
    if g.json {
        #[derive(Serialize)]
        struct CheckOut<'a> {
            #[serde(flatten)]
            report: &'a plexcache_core::CheckReport,
            storage: Option<plexcache_core::StorageInfo>,
        }
        output::print_json(&CheckOut {
            report: &report,
            storage,
        })?;
    } else {
        if let Some(storage) = &storage {
            for row in storage_rows(storage) {
                println!("{}: {}", row[0], row[1]);
            }
        }
        println!("expired entries purged: {}", report.expired_purged);
        println!(
            "entries: {} counted, {} in the counters; bytes: {} counted, {} in the counters",
            report.scanned.entries, report.usage.entries, report.scanned.bytes, report.usage.bytes
        );
        println!("undecodable values: {}", report.undecodable);
        for p in report.engine_problems.iter().chain(&report.problems) {
            println!("problem: {p}");
        }
        println!(
            "{}",
            if report.is_ok() {
                "ok"
            } else {
                "PROBLEMS FOUND"
            }
        );
    }
    Ok(if report.is_ok() { EXIT_OK } else { EXIT_ERROR })
}
