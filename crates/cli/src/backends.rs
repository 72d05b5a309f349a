//! Opening the selected backend.

use std::path::PathBuf;
use std::sync::Arc;

use plexcache_core::fskind::FsChoice;
use plexcache_core::{BoxError, CacheBackend};
use plexcache_plex::PlexCache;

use crate::{BackendKind, Global};

/// A backend chosen at run time.
pub type DynBackend = Arc<dyn CacheBackend>;

/// The cache directory: `--cache-dir`, or the platform default (created 0700).
pub fn cache_dir(g: &Global) -> Result<PathBuf, BoxError> {
    match &g.cache_dir {
        Some(dir) => {
            plexcache_core::fs::create_private_dir(dir)?;
            Ok(dir.clone())
        }
        None => Ok(plexcache_plex::default_cache_dir()?),
    }
}

/// Opens `kind` in `dir`: SQLite (either mode) as `dir/plexcache.db`, sled in `dir/sled/`. Redis needs a
/// URL: see [`open_redis`].
pub async fn open_backend(
    kind: BackendKind,
    dir: &std::path::Path,
) -> Result<DynBackend, BoxError> {
    open_backend_on(kind, dir, None).await
}

/// The SQLite builder for `dir` with the file system choice `fs` (`None`: the environment's,
/// else detection).
pub fn sqlite_builder(
    dir: &std::path::Path,
    fs: Option<FsChoice>,
) -> plexcache_sqlite::SqliteBuilder {
    let b = plexcache_sqlite::SqliteBackend::builder(dir);
    match fs {
        Some(choice) => b.fs_kind(choice),
        None => b,
    }
}

/// [`open_backend`] with a file system choice (`--fs`).
pub async fn open_backend_on(
    kind: BackendKind,
    dir: &std::path::Path,
    fs: Option<FsChoice>,
) -> Result<DynBackend, BoxError> {
    Ok(match kind {
        BackendKind::Sqlite => Arc::new(sqlite_builder(dir, fs).open_async().await?),
        BackendKind::SqliteExclusive => {
            Arc::new(sqlite_builder(dir, fs).open_exclusive_async().await?)
        }
        BackendKind::Sled => {
            let dir = dir.join("sled");
            let mut builder = plexcache_sled::SledBackend::builder(dir);
            if let Some(choice) = fs {
                builder = builder.fs_kind(choice);
            }
            let backend = tokio::task::spawn_blocking(move || builder.open()).await??;
            Arc::new(backend)
        }
        BackendKind::Memory => Arc::new(plexcache_memory::MemoryBackend::new()),
        BackendKind::Redis => return Err("the redis backend needs a URL (--redis-url)".into()),
    })
}

/// Connects to the Redis server at `url`, with every key under `prefix`.
pub async fn open_redis(url: &str, prefix: &str) -> Result<DynBackend, BoxError> {
    Ok(Arc::new(
        plexcache_redis::RedisBackend::builder(url)
            .key_prefix(prefix)
            .connect()
            .await?,
    ))
}

/// Opens the cache the global options describe.
pub async fn open(g: &Global) -> Result<PlexCache<DynBackend>, BoxError> {
    let backend = match (g.backend, g.redis_url.as_deref()) {
        (BackendKind::Redis, Some(url)) => open_redis(url, &g.redis_prefix).await?,
        // main() refuses `--backend redis` without a URL before any command runs.
        (BackendKind::Redis, None) => return Err("--backend redis needs --redis-url".into()),
        (BackendKind::Memory, _) => open_backend(g.backend, &PathBuf::new()).await?,
        (kind, _) => open_backend_on(kind, &cache_dir(g)?, g.fs_choice()).await?,
    };
    let ttl = g.ttl();
    Ok(PlexCache::builder(backend)
        .size_limit(g.size_limit)
        .library_ttl(ttl)
        .search_ttl(ttl)
        .match_ttl(ttl)
        .configure(|b| b.default_ttl(ttl))
        .build()?)
}
