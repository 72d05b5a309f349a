//! The data-path workload: items with the fields of `PlexItem`, shaped like what the Python
//! `PlexCache` stored, and the key streams of the comparison with diskcache
//! (`benches/benches/datapath.rs`, `benches/python/diskcache_datapath.py`). The Python side
//! reads the very same items from a JSON file written by [`write_dataset`].

use plexcache_plex::{ItemKind, PlexItem};
use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};

/// Titles of the generated items: about 40 % of them are not ASCII.
const TITLES: [&str; 10] = [
    "The Long Goodbye",
    "Amélie",
    "Heat",
    "Crouching Tiger, Hidden Dragon 卧虎藏龙",
    "Alien: Covenant",
    "Léon: The Professional",
    "Spirited Away 千と千尋の神隠し",
    "Blade Runner 2049",
    "Das Boot",
    "Oldboy 올드보이",
];

/// Item `i` of the generated library (deterministic): one or two file paths (one item in
/// eight is a two-part movie), a year, an update time and a section id.
pub fn plex_item(i: u64) -> PlexItem {
    let title = format!("{} {}", TITLES[(i % 10) as usize], i / 10);
    let year = 1950 + (i % 75) as u32;
    let dir = format!("/data/media/movies/{title} ({year})");
    let file_paths = if i % 8 == 3 {
        vec![
            format!("{dir}/{title} ({year}) - pt1.mkv"),
            format!("{dir}/{title} ({year}) - pt2.mkv"),
        ]
    } else {
        vec![format!("{dir}/{title} ({year}).mkv")]
    };
    let rating_key = (100_000 + i).to_string();
    PlexItem {
        key: format!("/library/metadata/{rating_key}").into(),
        rating_key: rating_key.into(),
        title: title.into(),
        kind: ItemKind::Movie,
        file_paths,
        year: Some(year),
        updated_at: Some(1_700_000_000 + i as i64),
        library_section_id: Some(1),
    }
}

/// A library listing of `n` items.
pub fn plex_library(n: u64) -> Vec<PlexItem> {
    (0..n).map(plex_item).collect()
}

/// The value of small entry `i`: a search result of 0 to 3 items.
pub fn small_value(i: u64) -> Vec<PlexItem> {
    (0..i % 4)
        .map(|j| plex_item(1_000_000 + i * 4 + j))
        .collect()
}

/// The key of small entry `i` (`search:Movies:{title}`).
pub fn small_key(i: u64) -> String {
    format!("search:Movies:{} {i}", TITLES[(i % 10) as usize])
}

/// A key no entry has.
pub fn absent_key(i: u64) -> String {
    format!("search:Movies:absent title {i}")
}

/// `0..n` shuffled with a fixed seed.
pub fn shuffled(n: u64, seed: u64) -> Vec<u64> {
    let mut v: Vec<u64> = (0..n).collect();
    v.shuffle(&mut SmallRng::seed_from_u64(seed));
    v
}

/// The 90/10 Zipf(0.99) mix: `(is_set, key index)` for `ops` operations over `keys` keys.
pub fn zipf_ops(ops: usize, keys: u64, seed: u64) -> Vec<(bool, u64)> {
    let mut z = crate::workload::ZipfKeys::new(keys, 0.99, seed);
    let mut rng = SmallRng::seed_from_u64(seed ^ 0x5eed);
    (0..ops)
        .map(|_| (rng.random_range(0..100) < 10, z.next_index()))
        .collect()
}

/// The dataset as JSON for the Python side: the libraries' item counts, the small entries,
/// the shuffled orders and the mix, so both sides run exactly the same operations.
pub fn write_dataset(
    path: &std::path::Path,
    sizes: &[u64],
    small: u64,
    mix: usize,
) -> std::io::Result<()> {
    let item = |it: &PlexItem| {
        serde_json::json!({
            "rating_key": it.rating_key,
            "key": it.key,
            "title": it.title,
            "kind": it.kind.as_str(),
            "file_paths": it.file_paths,
            "year": it.year,
            "updated_at": it.updated_at,
            "library_section_id": it.library_section_id,
        })
    };
    let largest = sizes.iter().copied().max().unwrap_or(0);
    let doc = serde_json::json!({
        "sizes": sizes,
        "library": plex_library(largest).iter().map(item).collect::<Vec<_>>(),
        "small_keys": (0..small).map(small_key).collect::<Vec<_>>(),
        "small_values": (0..small).map(|i| small_value(i).iter().map(item).collect::<Vec<_>>()).collect::<Vec<_>>(),
        "absent_keys": (0..small).map(absent_key).collect::<Vec<_>>(),
        "get_order": shuffled(small, 11),
        "mix": zipf_ops(mix, small, 7),
    });
    std::fs::write(
        path,
        serde_json::to_vec(&doc).map_err(std::io::Error::other)?,
    )
}
