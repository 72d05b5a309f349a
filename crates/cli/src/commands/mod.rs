//! The subcommands.

pub mod admin;
pub mod get;
pub mod import;
pub mod keys;
pub mod sync;

use plexcache_plex::PlexItem;

use crate::output::escape;

/// Table rows for items: rating key, kind, title, year, files; the server's text escaped for
/// the terminal ([`escape`]).
pub fn item_rows(items: &[PlexItem]) -> Vec<Vec<String>> {
    items
        .iter()
        .map(|i| {
            vec![
                escape(&i.rating_key).into_owned(),
                escape(&i.kind.to_string()).into_owned(),
                escape(&i.title).into_owned(),
                i.year.map(|y| y.to_string()).unwrap_or_default(),
                i.file_paths
                    .first()
                    .map(|p| escape(p).into_owned())
                    .unwrap_or_default()
                    + &if i.file_paths.len() > 1 {
                        format!(" (+{} more)", i.file_paths.len() - 1)
                    } else {
                        String::new()
                    },
            ]
        })
        .collect()
}

/// The headers matching [`item_rows`].
pub const ITEM_HEADERS: [&str; 5] = [">rating key", "kind", "title", ">year", "files"];
