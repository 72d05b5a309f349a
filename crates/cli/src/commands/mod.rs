//! The subcommands.

pub mod admin;
pub mod get;
pub mod import;
pub mod keys;
pub mod sync;

use plexcache_plex::PlexItem;

/// Table rows for items: rating key, kind, title, year, files.
pub fn item_rows(items: &[PlexItem]) -> Vec<Vec<String>> {
    items
        .iter()
        .map(|i| {
            vec![
                i.rating_key.clone(),
                i.kind.to_string(),
                i.title.clone(),
                i.year.map(|y| y.to_string()).unwrap_or_default(),
                i.file_paths.first().cloned().unwrap_or_default()
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
