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
                expires_in_seconds: meta.expires_at.map(|at| (at as i64 - now as i64) / 1000),
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
