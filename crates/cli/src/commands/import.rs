//! `plexcache import`: saved PMS responses into a library's cache entries.

use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use plexcache_core::BoxError;
use plexcache_plex::{PlexItem, extract_items};
use serde::Serialize;

use crate::{EXIT_OK, Global, backends, output};

/// Arguments of `import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The library the items belong to.
    #[arg(long, short)]
    pub library: String,
    /// Saved responses of `/library/sections/{id}/all` (JSON or XML); pages are concatenated.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Do not write `match:` entries for the items' file paths.
    #[arg(long)]
    pub no_matches: bool,
}

#[derive(Debug, Serialize)]
struct Summary {
    library: String,
    files: usize,
    items: usize,
    matches: u64,
    response_bytes: u64,
    seconds: f64,
}

/// Runs `import`.
pub async fn run(g: &Global, args: ImportArgs) -> Result<u8, BoxError> {
    let start = Instant::now();
    let mut items: Vec<PlexItem> = Vec::new();
    let mut response_bytes = 0u64;
    for file in &args.files {
        let bytes =
            std::fs::read(file).map_err(|e| format!("{}: cannot read: {e}", file.display()))?;
        response_bytes += bytes.len() as u64;
        let page = extract_items(&bytes).map_err(|e| format!("{}: {e}", file.display()))?;
        items.extend(page.items);
    }
    let cache = backends::open(g).await?;
    // One atomic write: the listing, its path matches, and no stale entries of the library.
    let written = cache
        .replace_library(&args.library, &items, !args.no_matches)
        .await?
        .written;
    let matches = written.saturating_sub(1);
    cache.flush().await?;
    let summary = Summary {
        library: args.library,
        files: args.files.len(),
        items: items.len(),
        matches,
        response_bytes,
        seconds: start.elapsed().as_secs_f64(),
    };
    if g.json {
        output::print_json(&summary)?;
    } else {
        println!(
            "imported {} items ({} file paths) into library {:?} from {} file(s), {} of responses, in {:.2} s",
            summary.items,
            summary.matches,
            summary.library,
            summary.files,
            output::human_bytes(summary.response_bytes),
            summary.seconds
        );
    }
    Ok(EXIT_OK)
}
