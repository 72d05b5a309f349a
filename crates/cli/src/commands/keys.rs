//! `plexcache keys`: list cached keys.

use clap::Args;
use plexcache_core::BoxError;
use serde::Serialize;

use crate::{EXIT_OK, Global, backends, output};

/// Arguments of `keys`.
#[derive(Debug, Args)]
pub struct KeysArgs {
    /// Only keys starting with this (byte-wise, no wildcards).
    #[arg(long, short, default_value = "")]
    pub prefix: String,
    /// At most this many keys.
    #[arg(long, default_value_t = 1000)]
    pub limit: usize,
}

#[derive(Debug, Serialize)]
struct KeyRow {
    key: String,
    size: u64,
    expires_in_seconds: Option<i64>,
}

/// Whole seconds from `now` until `at` (negative if past), both in milliseconds. Saturating:
/// the expiry comes from the store, which a damaged or hostile store controls.
fn seconds_until(now: u64, at: u64) -> i64 {
    let seconds = |ms: u64| i64::try_from(ms / 1000).unwrap_or(i64::MAX);
    if at >= now {
        seconds(at - now)
    } else {
        -seconds(now - at)
    }
}

/// Runs `keys`.
pub async fn run(g: &Global, args: KeysArgs) -> Result<u8, BoxError> {
    let cache = backends::open(g).await?;
    let keys = cache.cache().keys(&args.prefix, args.limit).await?;
    let now = cache.cache().now();
    let mut rows = Vec::with_capacity(keys.len());
    for key in keys {
        if let Some((_, meta)) = cache.cache().get_raw(&key).await? {
            rows.push(KeyRow {
                key,
                size: meta.size,
                expires_in_seconds: meta.expires_at.map(|at| seconds_until(now, at)),
            });
        }
    }
    if g.json {
        output::print_json(&rows)?;
    } else {
        let table: Vec<Vec<String>> = rows
            .iter()
            .map(|r| {
                vec![
                    output::escape(&r.key).into_owned(),
                    output::human_bytes(r.size),
                    r.expires_in_seconds
                        .map_or("never".into(), |s| format!("{s} s")),
                ]
            })
            .collect();
        print!(
            "{}",
            output::table(&["key", ">size", ">expires in"], &table)
        );
        println!("{} key(s)", rows.len());
    }
    Ok(EXIT_OK)
}

#[cfg(test)]
mod tests {
    use super::seconds_until;

    #[test]
    fn expiry_seconds_saturate() {
        assert_eq!(seconds_until(1_000, 62_999), 61);
        assert_eq!(seconds_until(62_999, 1_000), -61);
        assert_eq!(seconds_until(0, u64::MAX), 18_446_744_073_709_551);
        assert_eq!(seconds_until(u64::MAX, 0), -18_446_744_073_709_551);
        assert_eq!(seconds_until(1 << 63, 0), -9_223_372_036_854_775);
    }
}
