//! `plexcache sync`: fetch libraries from a Plex server into the cache.

use std::io::Read as _;
use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use plexcache_core::BoxError;
use plexcache_plex::client::PlexClient;
use plexcache_plex::keys;
use serde::Serialize;

use crate::{EXIT_OK, Global, backends, output};

/// Arguments of `sync`.
#[derive(Debug, Args)]
pub struct SyncArgs {
    /// Base URL of the Plex Media Server, e.g. http://192.168.1.10:32400.
    #[arg(long, env = "PLEXCACHE_SERVER", value_name = "URL")]
    pub server: String,
    /// X-Plex-Token (sent as a header; never cached, logged or shown). Prefer
    /// PLEXCACHE_TOKEN or --token-file: an argument is visible to other users (ps) and kept in
    /// the shell history.
    #[arg(
        long,
        env = "PLEXCACHE_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub token: Option<String>,
    /// Read the X-Plex-Token from this file (surrounding whitespace ignored); `-` reads it from
    /// standard input. Takes precedence over PLEXCACHE_TOKEN.
    #[arg(long, value_name = "PATH")]
    pub token_file: Option<PathBuf>,
    /// Library to sync (repeatable); default: every library of the server.
    #[arg(long = "library", short = 'l', value_name = "NAME")]
    pub libraries: Vec<String>,
    /// Fetch even when the cached listing is still fresh.
    #[arg(long)]
    pub refresh: bool,
    /// Items per request (X-Plex-Container-Size).
    #[arg(long, default_value_t = 1000)]
    pub page_size: u32,
    /// Do not write `match:` entries for the items' file paths.
    #[arg(long)]
    pub no_matches: bool,
}

#[derive(Debug, Serialize)]
struct Synced {
    library: String,
    items: usize,
    bytes: u64,
    from_server: bool,
    matches: u64,
    seconds: f64,
}

#[derive(Debug, Serialize)]
struct Summary {
    libraries: Vec<Synced>,
    items: usize,
    bytes: u64,
    fetched: usize,
    served_from_cache: usize,
    seconds: f64,
}

fn bar(json: bool, library: &str) -> ProgressBar {
    if json {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new_spinner();
    let style = ProgressStyle::with_template(
        "{spinner} {prefix:.bold} [{bar:30}] {pos}/{len} items ({per_sec}, {eta})",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ");
    bar.set_style(style);
    bar.set_prefix(library.to_owned());
    bar
}

/// The most bytes read from a token file (a token is a few dozen).
const TOKEN_FILE_LIMIT: u64 = 64 * 1024;

/// The token from `--token-file` (`-`: standard input), else from `--token` or
/// `PLEXCACHE_TOKEN`. Errors never show the token or the file's content.
fn token(args: &SyncArgs) -> Result<String, BoxError> {
    let Some(path) = &args.token_file else {
        return args.token.clone().ok_or_else(|| {
            "sync needs the Plex token: set PLEXCACHE_TOKEN, or give --token-file PATH (- for standard input)"
                .into()
        });
    };
    let (shown, read) = if path.as_os_str() == "-" {
        let mut buf = Vec::new();
        let read = std::io::stdin()
            .lock()
            .take(TOKEN_FILE_LIMIT)
            .read_to_end(&mut buf)
            .map(|_| buf);
        ("standard input".to_owned(), read)
    } else {
        let read = std::fs::File::open(path).and_then(|f| {
            let mut buf = Vec::new();
            f.take(TOKEN_FILE_LIMIT).read_to_end(&mut buf).map(|_| buf)
        });
        (path.display().to_string(), read)
    };
    let bytes = read.map_err(|e| format!("cannot read the token from {shown}: {e}"))?;
    let text = String::from_utf8(bytes)
        .map_err(|_| format!("the token read from {shown} is not UTF-8 text"))?;
    let token = text.trim();
    if token.is_empty() {
        return Err(format!("no token in {shown}: it is empty").into());
    }
    if token.contains(['\n', '\r']) {
        return Err(format!(
            "the token read from {shown} spans several lines: the file must hold the token alone"
        )
        .into());
    }
    Ok(token.to_owned())
}

/// Runs `sync`.
pub async fn run(g: &Global, args: SyncArgs) -> Result<u8, BoxError> {
    let started = Instant::now();
    let token = token(&args)?;
    let client = PlexClient::builder(&args.server, token)
        .page_size(args.page_size)
        .build()?;
    let cache = backends::open(g).await?;
    let libraries = if args.libraries.is_empty() {
        client
            .sections()
            .await?
            .into_iter()
            .map(|s| s.title)
            .collect()
    } else {
        args.libraries.clone()
    };
    let mut done = Vec::new();
    for library in libraries {
        let t = Instant::now();
        let bar = bar(g.json, &library);
        let progress = {
            let bar = bar.clone();
            move |n: u64, total: Option<u64>| {
                if let Some(total) = total {
                    bar.set_length(total);
                }
                bar.set_position(n);
            }
        };
        let (items, from_server) = if args.refresh {
            (
                cache
                    .refresh_library_via(&client, &library, progress)
                    .await?,
                true,
            )
        } else {
            let f = cache
                .library_items_via_with_progress(&client, &library, progress)
                .await?;
            (f.items, f.from_server)
        };
        bar.finish_and_clear();
        // A fetched library replaces everything cached for it in one atomic write: the
        // listing, its path matches, and no stale search results or matches.
        let matches = if from_server {
            let written = cache
                .replace_library(&library, &items, !args.no_matches)
                .await?
                .written;
            written.saturating_sub(1)
        } else {
            0
        };
        let bytes = cache
            .cache()
            .get_raw(&keys::library_key(&library))
            .await?
            .map_or(0, |(_, meta)| meta.size);
        let s = Synced {
            library,
            items: items.len(),
            bytes,
            from_server,
            matches,
            seconds: t.elapsed().as_secs_f64(),
        };
        if !g.json {
            eprintln!(
                "{}: {} items, {} cached, {} in {:.2} s",
                s.library,
                s.items,
                output::human_bytes(s.bytes),
                if s.from_server {
                    "fetched from the server"
                } else {
                    "served from the cache"
                },
                s.seconds
            );
        }
        done.push(s);
    }
    cache.flush().await?;
    let summary = Summary {
        items: done.iter().map(|s| s.items).sum(),
        bytes: done.iter().map(|s| s.bytes).sum(),
        fetched: done.iter().filter(|s| s.from_server).count(),
        served_from_cache: done.iter().filter(|s| !s.from_server).count(),
        seconds: started.elapsed().as_secs_f64(),
        libraries: done,
    };
    if g.json {
        output::print_json(&summary)?;
    } else {
        let rows: Vec<Vec<String>> = summary
            .libraries
            .iter()
            .map(|s| {
                vec![
                    s.library.clone(),
                    s.items.to_string(),
                    output::human_bytes(s.bytes),
                    if s.from_server {
                        "server".into()
                    } else {
                        "cache".into()
                    },
                    format!("{:.2} s", s.seconds),
                ]
            })
            .collect();
        print!(
            "{}",
            output::table(&["library", ">items", ">cached", "from", ">time"], &rows)
        );
        println!(
            "{} libraries, {} items, {} cached; {} fetched, {} served from the cache; {:.2} s",
            summary.libraries.len(),
            summary.items,
            output::human_bytes(summary.bytes),
            summary.fetched,
            summary.served_from_cache,
            summary.seconds
        );
    }
    Ok(EXIT_OK)
}
