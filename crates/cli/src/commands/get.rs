//! `plexcache get`: read one cached entry.

use clap::{Args, Subcommand};
use plexcache_core::{BoxError, codec};
use plexcache_plex::{ParsedKey, PlexItem, keys, parse_key};
use serde::Serialize;

use super::{ITEM_HEADERS, item_rows};
use crate::{EXIT_NOT_FOUND, EXIT_OK, Global, backends, output};

/// Arguments of `get`.
#[derive(Debug, Args)]
pub struct GetArgs {
    #[command(subcommand)]
    what: What,
}

#[derive(Debug, Subcommand)]
enum What {
    /// Every item of a library.
    Library {
        /// Library name.
        name: String,
    },
    /// The results of a title search.
    Search {
        /// Library name.
        name: String,
        /// Searched title.
        title: String,
    },
    /// The item a local file path belongs to.
    Match {
        /// Library name.
        name: String,
        /// File path as the Plex server sees it.
        path: String,
    },
    /// Any key, as stored.
    Key {
        /// The exact key.
        key: String,
    },
}

#[derive(Debug, Serialize)]
struct RawEntry {
    key: String,
    size: u64,
    stored_at: u64,
    expires_at: Option<u64>,
    accessed_at: u64,
    access_count: u64,
    schema_tag: Option<String>,
    valid: bool,
    problem: Option<String>,
}

/// Runs `get`.
pub async fn run(g: &Global, args: GetArgs) -> Result<u8, BoxError> {
    let cache = backends::open(g).await?;
    let (key, items): (String, Option<Vec<PlexItem>>) = match args.what {
        What::Library { name } => (keys::library_key(&name), cache.library_items(&name).await?),
        What::Search { name, title } => (
            keys::search_key(&name, &title),
            cache.search(&name, &title).await?,
        ),
        What::Match { name, path } => {
            let key = keys::match_key(&name, &path);
            let found = cache.match_path(&name, &path).await?;
            (key, found.map(|m| m.into_iter().collect()))
        }
        What::Key { key } => {
            let typed: Option<Vec<PlexItem>> = match parse_key(&key) {
                Some(ParsedKey::Library { name }) => cache.library_items(&name).await?,
                Some(ParsedKey::Search { .. }) => cache.cache().get(&key).await?,
                Some(ParsedKey::Match { .. }) => cache
                    .cache()
                    .get::<Option<PlexItem>>(&key)
                    .await?
                    .map(|m| m.into_iter().collect()),
                None => None,
            };
            if typed.is_some() {
                (key, typed)
            } else {
                return raw(g, &cache, &key).await;
            }
        }
    };
    cache.flush().await?;
    let Some(items) = items else {
        eprintln!("not found: {key:?} is not cached (or expired)");
        return Ok(EXIT_NOT_FOUND);
    };
    if g.json {
        output::print_json(&items)?;
    } else {
        print!("{}", output::table(&ITEM_HEADERS, &item_rows(&items)));
        println!("{} item(s) under {key:?}", items.len());
    }
    Ok(EXIT_OK)
}

async fn raw(
    g: &Global,
    cache: &plexcache_plex::PlexCache<backends::DynBackend>,
    key: &str,
) -> Result<u8, BoxError> {
    let Some((bytes, meta)) = cache.cache().get_raw(key).await? else {
        eprintln!("not found: {key:?} is not cached (or expired)");
        return Ok(EXIT_NOT_FOUND);
    };
    let verified = codec::verify(key, &bytes);
    let entry = RawEntry {
        key: key.to_owned(),
        size: meta.size,
        stored_at: meta.stored_at,
        expires_at: meta.expires_at,
        accessed_at: meta.accessed_at,
        access_count: meta.access_count,
        schema_tag: verified.as_ref().ok().map(|t| format!("{:#018x}", t.0)),
        valid: verified.is_ok(),
        problem: verified.err().map(|e| e.to_string()),
    };
    if g.json {
        output::print_json(&entry)?;
    } else {
        let rows = vec![
            vec!["key".into(), output::escape(&entry.key).into_owned()],
            vec!["size".into(), output::human_bytes(entry.size)],
            vec!["stored at (ms)".into(), entry.stored_at.to_string()],
            vec![
                "expires at (ms)".into(),
                entry.expires_at.map_or("never".into(), |e| e.to_string()),
            ],
            vec!["reads recorded".into(), entry.access_count.to_string()],
            vec![
                "schema tag".into(),
                entry.schema_tag.clone().unwrap_or_default(),
            ],
            vec![
                "envelope".into(),
                entry
                    .problem
                    .as_deref()
                    .map_or_else(|| "ok".into(), |p| output::escape(p).into_owned()),
            ],
        ];
        print!("{}", output::table(&["field", "value"], &rows));
    }
    Ok(EXIT_OK)
}
