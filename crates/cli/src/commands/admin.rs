//! `stats`, `expire`, `invalidate`, `clear`, `check`.

use plexcache_core::BoxError;
use serde::Serialize;

use crate::{EXIT_ERROR, EXIT_OK, Global, backends, output};

/// `plexcache stats`.
pub async fn stats(g: &Global) -> Result<u8, BoxError> {
    let cache = backends::open(g).await?;
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
    let cache = backends::open(g).await?;
    let report = cache.cache().check().await?;
    cache.flush().await?;
    if g.json {
        output::print_json(&report)?;
    } else {
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
