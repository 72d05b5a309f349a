//! `plexcache`: sync Plex libraries into a cache, inspect any cache, compare backends.
//!
//! Exit codes: 0 success, 1 error, 2 usage error, 3 not found (a `get` that found nothing).

mod backends;
mod bench;
mod commands;
mod output;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::parser::ValueSource;
use clap::{ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};

/// Exit code of a successful run.
pub const EXIT_OK: u8 = 0;
/// Exit code of a failed run.
pub const EXIT_ERROR: u8 = 1;
/// Exit code of a usage error (clap uses it too).
pub const EXIT_USAGE: u8 = 2;
/// Exit code of a `get` that found nothing.
pub const EXIT_NOT_FOUND: u8 = 3;

/// Cache Plex Media Server library data; inspect and benchmark the cache.
#[derive(Debug, Parser)]
#[command(name = "plexcache", version, about, long_about = None)]
#[command(after_help = "Exit codes: 0 ok, 1 error, 2 usage error, 3 not found.")]
pub struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

/// Options shared by every command.
#[derive(Debug, Args)]
pub struct Global {
    /// Storage backend.
    #[arg(
        long,
        global = true,
        value_enum,
        env = "PLEXCACHE_BACKEND",
        default_value = "sqlite"
    )]
    pub backend: BackendKind,
    /// Redis server URL for `--backend redis` (`redis://[:password@]host[:port][/db]`,
    /// `rediss://` for TLS); with `bench`, adds Redis to the compared backends. With a
    /// password, prefer PLEXCACHE_REDIS_URL: an argument is visible to other users (ps) and
    /// kept in the shell history.
    #[arg(
        long,
        global = true,
        env = "PLEXCACHE_REDIS_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    pub redis_url: Option<String>,
    /// Prefix of every Redis key the cache writes: a name and one final `:` (caches with
    /// different prefixes share a server without seeing each other).
    #[arg(
        long,
        global = true,
        env = "PLEXCACHE_REDIS_PREFIX",
        value_name = "PREFIX",
        default_value = "plexcache:"
    )]
    pub redis_prefix: String,
    /// Cache directory [default: <platform data dir>/plexcache/cache].
    #[arg(long, global = true, env = "PLEXCACHE_CACHE_DIR", value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Size limit of the cache, in bytes (key + value).
    #[arg(long, global = true, env = "PLEXCACHE_SIZE_LIMIT", default_value_t = plexcache_core::DEFAULT_SIZE_LIMIT)]
    pub size_limit: u64,
    /// TTL of written entries, in seconds.
    #[arg(long, global = true, env = "PLEXCACHE_TTL", default_value_t = 3600)]
    pub ttl: u64,
    /// What file system the cache directory is on: detect it (auto), or say so. On a network
    /// file system the SQLite backend uses a lease and a rollback journal, and sled and
    /// sqlite-exclusive refuse to open.
    #[arg(
        long,
        global = true,
        value_enum,
        env = "PLEXCACHE_FS",
        value_name = "KIND"
    )]
    pub fs: Option<FsArg>,
    /// Machine-readable JSON output.
    #[arg(long, global = true)]
    pub json: bool,
    /// Log more (repeat for more detail); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

/// `--fs`: see [`plexcache_core::fskind::FsChoice`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FsArg {
    /// Detect the file system.
    Auto,
    /// Treat it as a network file system.
    Network,
    /// Treat it as a local file system.
    Local,
}

impl Global {
    /// The file system choice of `--fs` (or PLEXCACHE_FS); `None`: detect.
    pub fn fs_choice(&self) -> Option<plexcache_core::fskind::FsChoice> {
        use plexcache_core::fskind::FsChoice;
        self.fs.map(|f| match f {
            FsArg::Auto => FsChoice::Auto,
            FsArg::Network => FsChoice::Network,
            FsArg::Local => FsChoice::Local,
        })
    }

    /// The TTL as a duration.
    pub fn ttl(&self) -> Duration {
        Duration::from_secs(self.ttl)
    }
}

/// The storage backends the command can open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BackendKind {
    /// One SQLite file in the cache directory (shared safely by several processes).
    Sqlite,
    /// The same SQLite file owned by this process alone: writes committed in batches (within
    /// 100 ms) and recent entries kept in memory; other processes get "in use" meanwhile.
    SqliteExclusive,
    /// A sled directory (one process at a time).
    Sled,
    /// In-process memory: empty at every start (useful with `bench`).
    Memory,
    /// A Redis server (`--redis-url`): one cache shared by many processes and hosts.
    Redis,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Fetch libraries from a Plex server into the cache.
    Sync(commands::sync::SyncArgs),
    /// Load saved PMS responses (JSON or XML) as a library's items.
    Import(commands::import::ImportArgs),
    /// Read one cached entry.
    Get(commands::get::GetArgs),
    /// List cached keys.
    Keys(commands::keys::KeysArgs),
    /// Show hit/miss statistics and usage.
    Stats,
    /// Purge expired entries.
    Expire,
    /// Drop a library's listing, searches and matches.
    Invalidate {
        /// Library name.
        name: String,
    },
    /// Remove every entry (statistics are kept).
    Clear,
    /// Check integrity: engine check, every value's checksum, usage counters.
    Check,
    /// Compare backends on a synthetic Plex library (no server needed).
    Bench(bench::BenchArgs),
}

fn init_tracing(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .try_init();
}

/// Whether argument `id` was given on the command line (not from the environment), at the top
/// level or in the subcommand.
fn on_command_line(matches: &ArgMatches, id: &str) -> bool {
    let here = matches.try_contains_id(id).unwrap_or(false)
        && matches.value_source(id) == Some(ValueSource::CommandLine);
    here || matches
        .subcommand()
        .is_some_and(|(_, sub)| on_command_line(sub, id))
}

/// Warns on stderr, once for each, about secrets given as command-line arguments, which other
/// users of the machine can read (`ps`, `/proc`) and shells keep in their history. The secret
/// itself is never printed.
fn warn_about_secret_arguments(cli: &Cli, matches: &ArgMatches) {
    if let Command::Sync(args) = &cli.command
        && args.token.is_some()
        && on_command_line(matches, "token")
    {
        eprintln!(
            "warning: --token puts the Plex token on the command line, where other users can see it (ps) and the shell history keeps it; set PLEXCACHE_TOKEN or use --token-file PATH (- for standard input) instead"
        );
    }
    if let Some(url) = cli.global.redis_url.as_deref()
        && plexcache_redis::redact_url(url) != url
        && on_command_line(matches, "redis_url")
    {
        eprintln!(
            "warning: --redis-url carries a password on the command line, where other users can see it (ps) and the shell history keeps it; set PLEXCACHE_REDIS_URL instead"
        );
    }
}

fn main() -> ExitCode {
    let parsed = Cli::command()
        .try_get_matches()
        .and_then(|matches| Cli::from_arg_matches(&matches).map(|cli| (cli, matches)));
    let (cli, matches) = match parsed {
        Ok(parsed) => parsed,
        Err(e) => {
            // --help and --version are successes; everything else is a usage error (2).
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { EXIT_USAGE } else { EXIT_OK });
        }
    };
    init_tracing(cli.global.verbose);
    warn_about_secret_arguments(&cli, &matches);
    if let Command::Sync(args) = &cli.command {
        if args.token_file.is_some() && on_command_line(&matches, "token") {
            eprintln!("error: give the Plex token once: --token-file or --token, not both");
            return ExitCode::from(EXIT_USAGE);
        }
        if args.token_file.is_none() && args.token.is_none() {
            eprintln!(
                "error: sync needs the Plex token: set PLEXCACHE_TOKEN, or give --token-file PATH (- for standard input)"
            );
            return ExitCode::from(EXIT_USAGE);
        }
    }
    if cli.global.backend == BackendKind::Redis && cli.global.redis_url.is_none() {
        eprintln!(
            "error: --backend redis needs the server's URL: --redis-url URL (or PLEXCACHE_REDIS_URL)"
        );
        return ExitCode::from(EXIT_USAGE);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_ERROR);
        }
    };
    let code = runtime.block_on(run(cli));
    ExitCode::from(code)
}

async fn run(cli: Cli) -> u8 {
    let g = &cli.global;
    let result = match cli.command {
        Command::Sync(args) => commands::sync::run(g, args).await,
        Command::Import(args) => commands::import::run(g, args).await,
        Command::Get(args) => commands::get::run(g, args).await,
        Command::Keys(args) => commands::keys::run(g, args).await,
        Command::Stats => commands::admin::stats(g).await,
        Command::Expire => commands::admin::expire(g).await,
        Command::Invalidate { name } => commands::admin::invalidate(g, &name).await,
        Command::Clear => commands::admin::clear(g).await,
        Command::Check => commands::admin::check(g).await,
        Command::Bench(args) => bench::run(g, args).await,
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", output::error_chain(e.as_ref()));
            EXIT_ERROR
        }
    }
}
