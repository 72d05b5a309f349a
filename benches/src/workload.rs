//! Deterministic workloads shaped like Plex library data.

use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use rand_distr::{Distribution, Zipf};
use serde::{Deserialize, Serialize};

/// An item shaped like `plexcache_plex::PlexItem`: key, rating key, title and 1-2 file paths.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BenchItem {
    /// Rating key.
    pub rating_key: String,
    /// Metadata key.
    pub key: String,
    /// Title.
    pub title: String,
    /// File paths.
    pub file_paths: Vec<String>,
    /// Year.
    pub year: Option<u32>,
}
plexcache_core::cache_value!(BenchItem, "plexcache.bench.BenchItem", 1);

/// Item `i` of a synthetic library (deterministic).
pub fn item(i: u64) -> BenchItem {
    let title = match i % 5 {
        0 => format!("The Movie Number {i}"),
        1 => format!("Amélie {i}: Le Fabuleux Destin"),
        2 => format!("Crouching Tiger {i} 卧虎藏龙"),
        3 => format!("Movie {i} (Director's Cut)"),
        _ => format!("Star Voyage {i}: Part II"),
    };
    let mut file_paths = vec![format!(
        "/data/media/movies/{title} ({})/{title}.mkv",
        1950 + i % 75
    )];
    if i.is_multiple_of(7) {
        file_paths.push(format!(
            "/data/media/movies/{title} ({})/{title} - 4K.mkv",
            1950 + i % 75
        ));
    }
    BenchItem {
        rating_key: (10_000 + i).to_string(),
        key: format!("/library/metadata/{}", 10_000 + i),
        title,
        file_paths,
        year: Some(1950 + (i % 75) as u32),
    }
}

/// A library list of `n` items.
pub fn library(n: u64) -> Vec<BenchItem> {
    (0..n).map(item).collect()
}

/// A search result of 0 to 3 items (deterministic by `i`).
pub fn search_result(i: u64) -> Vec<BenchItem> {
    (0..i % 4).map(|j| item(i * 4 + j)).collect()
}

/// A deterministic key stream with a Zipf(s) distribution over `n` keys.
pub struct ZipfKeys {
    rng: SmallRng,
    dist: Zipf<f64>,
}

impl ZipfKeys {
    /// Keys `0..n` with exponent `s` (0.99 in the standard mix), seeded.
    pub fn new(n: u64, s: f64, seed: u64) -> Self {
        // n >= 1 and s > 0 are constants at every call site.
        #[allow(clippy::expect_used)]
        let dist = Zipf::new(n as f64, s).expect("valid Zipf parameters");
        Self {
            rng: SmallRng::seed_from_u64(seed),
            dist,
        }
    }

    /// The next key index in `0..n`.
    pub fn next_index(&mut self) -> u64 {
        (self.dist.sample(&mut self.rng) as u64).saturating_sub(1)
    }

    /// A uniform draw in `0..100`, for choosing between get and set.
    pub fn percent(&mut self) -> u32 {
        self.rng.random_range(0..100)
    }
}

/// The cache key of search result `i` in the standard workloads.
pub fn search_key(i: u64) -> String {
    format!("search:Movies:title {i}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic() {
        assert_eq!(library(10), library(10));
        let mut a = ZipfKeys::new(10_000, 0.99, 7);
        let mut b = ZipfKeys::new(10_000, 0.99, 7);
        for _ in 0..100 {
            let (x, y) = (a.next_index(), b.next_index());
            assert_eq!(x, y);
            assert!(x < 10_000);
        }
        assert!(search_result(3).len() == 3 && search_result(4).is_empty());
    }
}
