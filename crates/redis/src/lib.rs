//! # plexcache-redis
//!
//! A [`CacheBackend`] on a Redis server (5.0 or newer; Valkey works too): one cache shared by
//! many processes and hosts.
//!
//! ```no_run
//! use std::time::Duration;
//! use plexcache_core::Cache;
//! use plexcache_redis::RedisBackend;
//!
//! # async fn demo() -> plexcache_core::Result<()> {
//! let backend = RedisBackend::builder("redis://:secret@cache.lan:6379/0")
//!     .key_prefix("plexcache:")
//!     .command_timeout(Duration::from_secs(2))
//!     .connect()
//!     .await?;
//! let cache = Cache::builder(backend)
//!     .default_ttl(Duration::from_secs(3600))
//!     .build()?;
//! cache.set("library:Movies:all", &vec!["Alien".to_string()]).await?;
//! # Ok(()) }
//! ```
//!
//! The URL carries the password, TLS (`rediss://`, rustls with the platform's root
//! certificates) and the database number. Every key the backend writes starts with the key
//! prefix, so several caches can share one server: `clear` and `remove_prefix` only touch
//! their own keys. A prefix is a name and one `:` that ends it (`plexcache:`, `app-a:`; see
//! [`RedisBackendBuilder::key_prefix`]), so no two caches' keys can overlap.
//!
//! ## Layout (under the prefix `P`)
//!
//! | key | type | holds |
//! |---|---|---|
//! | `P meta` | hash | key → `stored_at,expires_at,accessed_at,access_count,size,seq[,flags]`; and the counters `\xFFentries`, `\xFFbytes`, `\xFFseq` (the write sequence), `\xFFnext-expiry`, `\xFFmax-stored`, `\xFFmax-expiry` |
//! | `P v:<key>` | string | the value |
//! | `P z:new` | sorted set | entries never read since written (flag `n`): member the key, score its `seq` |
//! | `P z:lrs` | sorted set | the other entries: score `stored_at`, member 20-digit `seq` + key |
//! | `P z:lru` | sorted set | the other entries: score `accessed_at`, member 20-digit `seq` + key |
//! | `P z:lfu` | sorted set | the other entries: score `access_count`, member 20-digit `accessed_at` + 20-digit `seq` + key |
//! | `P z:exp-new` | sorted set | expiries written in order (flag `i`): member the key, score its `seq` |
//! | `P z:exp` | sorted set | the other expiries: score `expires_at`, member 20-digit `seq` + key |
//! | `P z:keys` | sorted set | every key with score 0, for byte-ordered prefix ranges |
//! | `P stats` | hash | the persistent statistics counters |
//! | `P t:<id>:<n>` | string | a large value on its way into a write script (see below), for an instant |
//!
//! Sorted sets order equal scores by member bytes, and the members start with zero-padded
//! numbers, so each index walks in exactly the order of
//! [`eviction_rank`](plexcache_core::model::eviction_rank): ties break by write sequence.
//!
//! A write should touch as few members as it can, and move them rather than remove and add
//! them. An entry never read since its write has `accessed_at = stored_at` and no accesses,
//! so its place in all three eviction orders follows from (`stored_at`, `seq`). While
//! `stored_at` does not go down from one write to the next (`\xFFmax-stored` is the largest
//! one written to `z:new`), the `seq` order is that order, so such entries sit in `z:new`
//! with their key as member and their `seq` as score: a rewrite moves the member in place
//! with one `ZADD`. Expiries do the same in `z:exp-new` while `expires_at` does not go down
//! (with one TTL, the usual case). Everything else (entries that were read, writes from a
//! clock behind another's, shorter TTLs after longer ones) is in the indexes ordered by the
//! numbers themselves. Eviction merges `z:new` with the policy's index, purging
//! merges `z:exp-new` with `z:exp`; a recorded read (policies LRU and LFU) moves an entry
//! out of `z:new`. The counters live in `meta` under field names no key can have (they start
//! with the byte 0xFF, never part of UTF-8), so a write reads them with the entry's old
//! metadata in one `HMGET` and writes them back with its new metadata in one `HSET`.
//! `\xFFnext-expiry` is at most every expiry in the store: a write skips the look for
//! expired entries while the clock is below it. A rewrite of a key that was not read is
//! thus `HMGET`, `SET`, two `ZADD`s and `HSET`, in one script.
//!
//! Every mutation is one Lua script (a function of the library this crate loads on Redis 7.0
//! or newer, otherwise a script sent by hash; see
//! [`redis_functions`](RedisBackendBuilder::redis_functions)), so an entry, its index members and the counters change together, atomically, whichever process
//! runs it; `usage()` reads two counters. A cache written by an earlier build (counters in a
//! hash `P counters`) is moved to this layout by the first connection (its entries, all in
//! the three indexes of read entries, stay valid); every process sharing a cache should run
//! the same build.
//!
//! ## Reads and large values
//!
//! A `get` is one transaction (`MULTI`, `HGET` of the metadata, `GET` of the value, `EXEC`):
//! one round trip, metadata and value from one instant, and the value's bytes go from the
//! server's string to the socket as a plain `GET` sends them. No script runs on a read (a value
//! returned from Lua, or passed into it, is copied into a Lua string first, which costs more
//! than the round trip for a library list). `get_if_changed` compares `STRLEN` and a `GETRANGE`
//! of the head in the same way and reads the value only when it changed.
//!
//! A write of a value of 4 KiB or more sends it with a plain `SET` of a key of its own
//! (`P t:...`, with a short server-side expiry) in the same pipeline as the write script, which
//! renames it into place (or deletes it, when the write is refused); smaller values are script
//! arguments. Batches do the same per value.
//!
//! ## Redis Cluster
//!
//! A URL `redis+cluster://[:password@]host:port[,host:port...]` (`rediss+cluster://` for TLS)
//! connects to a cluster through any of the listed nodes. There the prefix's name becomes a hash
//! tag: the keys are `{name}:meta`, `{name}:v:<key>`, and so on, all in one slot, so each
//! script and transaction runs on the one master that serves it (scripts declare
//! `{name}:meta` as their key, which the client routes by). One cache lives on one master
//! (and its replicas): its memory and throughput are that node's. Several caches (prefixes)
//! spread over the masters. A cache cannot be split over slots without giving up what every
//! write keeps atomically (the byte counter, the eviction order across all entries). The
//! client does not retry a call itself (a script may have run); a call that meets a moved
//! slot or a node that went away fails, and the next one goes to the new owner.
//!
//! ## Writes, limits and batches
//!
//! A `put` keeps its [`WriteLimit`] in its one script: the bounded purge, the write, then
//! eviction in policy order (or the refusal, with [`EvictionPolicy::None`]). A `write_batch`
//! is one script too, however many entries it holds, so it is atomic on the server: it plans
//! first (what its purge and prefixes remove, what its puts replace) and changes nothing when
//! the batch cannot fit. A script blocks the server while it runs, so a batch of tens of
//! thousands of entries holds up other clients for a while (past the server's
//! `busy-reply-threshold` they get `BUSY` errors); its call may take one more command timeout
//! per few thousand entries. There is no [`change_token`](CacheBackend::change_token): no
//! counter is cheaper than a round trip.
//!
//! A metadata record this crate did not write (malformed) must not wedge the cache: eviction,
//! purging, prefix removal, `clear` and batches remove such an entry when they meet it and
//! count it (its size taken as its key plus its value), a write over it replaces it, `keys`
//! skips it, reading it is an error, and
//! [`integrity_check`](CacheBackend::integrity_check) reports it.
//!
//! ## Expiry and accounting
//!
//! Entries with `expires_at <= now` are absent for reads at once. `purge_expired` removes them
//! and fixes the counters. The value keys also get a server-side expiry as a safety net that
//! frees the memory of values nobody purges: the entry's time to live (`expires_at -
//! stored_at`) plus [`expiry_grace`](RedisBackendBuilder::expiry_grace) (1 hour by default),
//! counted on the server's clock from the write, so a caller's clock that is off does not
//! move it. An entry with no time left at its write, or one whose expiry is further than
//! about 2,000 years ahead, gets none (it stays until purged). The small metadata record is
//! never expired by the server, so the counters stay exact: a purge still finds the size of
//! an entry whose value the server already dropped.
//!
//! ## When the server goes away
//!
//! Every call fails with an [`Error::Backend`] naming the server (the URL without its
//! password) within the [command timeout](RedisBackendBuilder::command_timeout); the
//! connection is re-established in the background and calls succeed again once the server is
//! back. A write that timed out may or may not have been applied, but never half-applied. The
//! same holds for a cluster master that goes away and comes back.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use plexcache_core::{
    Access, Batch, BatchOutcome, Bytes, CacheBackend, Counters, Entry, EntryMeta, Error,
    EvictionPolicy, Millis, PutOutcome, Removed, Result, Revalidated, Usage, WriteLimit,
    async_trait,
};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, ErrorKind, RedisError, ServerErrorKind, Value};

mod scripts;
mod url;

pub use url::redact as redact_url;

use scripts::{Lua, Scripts};

/// The backend's name in messages.
const NAME: &str = "redis";
/// Entries one script call removes, purges or evicts at most (a script blocks the server
/// while it runs; bigger jobs are split into calls of this size).
const BATCH: u64 = 1_000;
/// Access records per `record_accesses` script call.
const RECORD_BATCH: usize = 500;
/// A `write_batch` is one script (splitting it would give up its atomicity), whose run time
/// grows with its entries and with the entries its prefixes remove (usually about as many):
/// its call may take one more command timeout per this many puts.
const PUTS_PER_TIMEOUT: usize = 5_000;
/// The client library's own response timeout, in command timeouts: above what any call of this
/// crate allows itself (a batch of a few hundred thousand entries).
const BATCH_TIMEOUTS: u32 = 100;
/// Counts Lua handles exactly (2^53).
const LUA_MAX: u64 = 1 << 53;
/// Values at least this long reach a write script staged under a key of their own (one plain
/// `SET` in the same pipeline, renamed into place by the script) instead of as a script
/// argument, which the server would copy into a Lua string.
const STAGE_AT: usize = 4 * 1024;
/// The counter fields of the `meta` hash (a leading byte 0xFF, which no UTF-8 key holds).
const COUNT_ENTRIES: &[u8] = b"\xffentries";
const COUNT_BYTES: &[u8] = b"\xffbytes";
/// The server-side expiry of a staged value, which only matters when the script that takes it
/// never runs (the connection dropped between the two commands).
const STAGED_TTL_MS: u64 = 600_000;

/// Configures and connects a [`RedisBackend`].
#[derive(Clone)]
pub struct RedisBackendBuilder {
    url: String,
    key_prefix: String,
    command_timeout: Duration,
    connect_timeout: Option<Duration>,
    expiry_grace: Duration,
    functions: bool,
}

impl fmt::Debug for RedisBackendBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBackendBuilder")
            .field("url", &url::redact(&self.url))
            .field("key_prefix", &self.key_prefix)
            .field("command_timeout", &self.command_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("expiry_grace", &self.expiry_grace)
            .field("functions", &self.functions)
            .finish()
    }
}

impl RedisBackendBuilder {
    /// The prefix of every key the backend writes (default `plexcache:`). Caches with
    /// different prefixes on one server do not see each other.
    ///
    /// The prefix is a name followed by one `:`, its only one: `plexcache:`, `app-a:`,
    /// `media.cache:`. The `:` ends the name, so no cache's prefix plus one of its keys can
    /// spell another cache's prefix, and `clear`, `remove_prefix` and
    /// [`destroy`](RedisBackend::destroy) never reach another cache's entries (with nested
    /// prefixes such as `p:` and `p:v:`, the first cache's key `v:meta` would be the second
    /// cache's metadata). Separate words of the name with `-` or `.`, not `:`.
    /// [`connect`](Self::connect) refuses an empty prefix, one that does not end with `:`, and
    /// one with another `:` with [`Error::Config`].
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.key_prefix = prefix.into();
        self
    }

    /// How long one call may take, reconnecting included, before it fails (default 5 s).
    pub fn command_timeout(mut self, timeout: Duration) -> Self {
        self.command_timeout = timeout;
        self
    }

    /// How long one connection attempt may take (default: the command timeout).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = Some(timeout);
        self
    }

    /// How long after its time to live runs out the server itself drops a value that was
    /// never purged (default 1 hour). Accounting never depends on it (see the crate
    /// documentation).
    pub fn expiry_grace(mut self, grace: Duration) -> Self {
        self.expiry_grace = grace;
        self
    }

    /// Whether to run the scripts as Redis Functions (`FCALL` of a library this crate loads
    /// when a call finds it missing; Redis 7.0 or newer) where the server has them (default
    /// `true`), or always as scripts (`EVALSHA`). Without functions on the server, or when the
    /// user may not load them, the backend turns to `EVALSHA` by itself. Functions are
    /// defined once when the library loads; a script defines its helpers again on every
    /// call, which costs a write a few microseconds of server time.
    pub fn redis_functions(mut self, enabled: bool) -> Self {
        self.functions = enabled;
        self
    }

    /// Connects to the server (failing within the connect timeout if it does not answer).
    ///
    /// # Errors
    /// [`Error::Config`] for a key prefix that breaks the rule of
    /// [`key_prefix`](Self::key_prefix) (checked before connecting); [`Error::Backend`] for an
    /// invalid URL or a server that cannot be reached.
    pub async fn connect(self) -> Result<RedisBackend> {
        check_prefix(&self.key_prefix)?;
        let server = url::redact(&self.url);
        let cluster = url::cluster_nodes(&self.url).map_err(|why| {
            Error::backend(
                NAME,
                format!("invalid Redis URL {server}"),
                std::io::Error::other(why),
            )
        })?;
        if self.url.starts_with("rediss") || self.url.starts_with("valkeys://") {
            // rustls needs a process-wide crypto provider; another part of the program may
            // have installed one already, which is just as good.
            let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        }
        let connect_timeout = self.connect_timeout.unwrap_or(self.command_timeout);
        let (conn, key_prefix) = match cluster {
            Some(nodes) => {
                check_cluster_prefix(&self.key_prefix)?;
                let conn = self
                    .connect_cluster(nodes, &server, connect_timeout)
                    .await?;
                // One hash tag for the whole cache: every key of it in one slot, so that a
                // script or transaction may touch any of them.
                let name = self.key_prefix.trim_end_matches(':');
                (Conn::Cluster(conn), format!("{{{name}}}:"))
            }
            None => (
                Conn::Single(self.connect_single(&server, connect_timeout).await?),
                self.key_prefix.clone(),
            ),
        };
        tracing::debug!(%server, prefix = %self.key_prefix, "connected to redis");
        let backend = RedisBackend {
            inner: Arc::new(Inner {
                conn,
                server,
                url: self.url,
                meta_key: format!("{key_prefix}meta").into_bytes(),
                server_prefix: key_prefix,
                prefix: self.key_prefix,
                timeout: self.command_timeout,
                grace_ms: u64::try_from(self.expiry_grace.as_millis()).unwrap_or(u64::MAX),
                scripts: Scripts::new(),
                functions: std::sync::atomic::AtomicBool::new(self.functions),
                staged: std::sync::atomic::AtomicU64::new(0),
                staging_id: staging_id(),
            }),
        };
        backend.migrate().await?;
        Ok(backend)
    }

    async fn connect_cluster(
        &self,
        nodes: Vec<String>,
        server: &str,
        connect_timeout: Duration,
    ) -> Result<ClusterConnection> {
        let client = redis::cluster::ClusterClientBuilder::new(nodes)
            .connection_timeout(connect_timeout)
            // Calls are bounded by this crate's own timeout, which grows with a batch's size
            // (see PUTS_PER_TIMEOUT); the client's own bound only catches what that misses.
            .response_timeout(self.command_timeout.saturating_mul(BATCH_TIMEOUTS))
            // No retries inside the client: a script whose connection dropped may have run, and
            // running it again could count twice. A call that meets a moved slot fails once;
            // the client has refreshed its slot map for the next one.
            .retries(0)
            .build()
            .map_err(|e| self.invalid_url(server, &e))?;
        self.connect_within(server, connect_timeout, client.get_async_connection())
            .await
    }

    /// The error for a URL the `redis` client refuses (the URL's password redacted).
    fn invalid_url(&self, server: &str, e: &redis::RedisError) -> Error {
        Error::backend(
            NAME,
            format!("invalid Redis URL {server}"),
            redact_error(e, &self.url),
        )
    }

    /// Awaits a connection attempt for at most `connect_timeout`, with the errors naming
    /// `server` (and never the URL's password).
    async fn connect_within<T>(
        &self,
        server: &str,
        connect_timeout: Duration,
        connecting: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T> {
        tokio::time::timeout(connect_timeout, connecting)
            .await
            .map_err(|_| {
                Error::backend(
                    NAME,
                    format!("connecting to {server}: no answer within {connect_timeout:?}"),
                    std::io::Error::from(std::io::ErrorKind::TimedOut),
                )
            })?
            .map_err(|e| {
                Error::backend(
                    NAME,
                    format!("connecting to {server}"),
                    redact_error(&e, &self.url),
                )
            })
    }

    async fn connect_single(
        &self,
        server: &str,
        connect_timeout: Duration,
    ) -> Result<ConnectionManager> {
        let client =
            redis::Client::open(self.url.as_str()).map_err(|e| self.invalid_url(server, &e))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(connect_timeout))
            // Calls are bounded by this crate's own timeout, which grows with a batch's size
            // (see PUTS_PER_TIMEOUT); the client's own bound only catches what that misses.
            .set_response_timeout(Some(self.command_timeout.saturating_mul(BATCH_TIMEOUTS)))
            // Fail fast while the server is away (every call tries to reconnect again, and the
            // command timeout bounds the wait); reconnect at once when it is back.
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(200));
        self.connect_within(
            server,
            connect_timeout,
            ConnectionManager::new_with_config(client, config),
        )
        .await
    }
}

/// A random number for this process's staged-value keys (with a counter after it, they never
/// repeat, across processes and hosts too).
fn staging_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    if let Ok(d) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        h.write_u128(d.as_nanos());
    }
    h.finish()
}

/// In a cluster the prefix's name becomes a hash tag (`{name}:`), so it may not hold braces.
fn check_cluster_prefix(prefix: &str) -> Result<()> {
    if prefix.contains(['{', '}']) {
        return Err(Error::Config(format!(
            "invalid Redis key prefix {prefix:?} for a cluster: the name becomes the hash tag {{name}} that keeps the cache in one slot, so it may not hold '{{' or '}}'"
        )));
    }
    Ok(())
}

/// The connection: to one server (reconnecting in the background), or to a cluster.
#[derive(Clone)]
enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl redis::aio::ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> redis::RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

/// The key prefix rule (see [`RedisBackendBuilder::key_prefix`]): a non-empty name without `:`,
/// then `:`. Two distinct valid prefixes never start the same key, since a key's first `:`
/// ends the name of the one prefix it can belong to.
fn check_prefix(prefix: &str) -> Result<()> {
    let invalid = |why: String| {
        Err(Error::Config(format!(
            "invalid Redis key prefix {prefix:?}: {why}"
        )))
    };
    let Some(name) = prefix.strip_suffix(':') else {
        return if prefix.is_empty() {
            invalid(
                "it is empty; every cache needs a prefix of its own, such as \"plexcache:\" (with none, clearing or destroying the cache could delete other applications' keys)"
                    .into(),
            )
        } else {
            invalid(format!(
                "it must end with ':' (such as \"{}:\")",
                prefix.replace(':', "-")
            ))
        };
    };
    if name.is_empty() {
        return invalid("the name before the ':' is empty (such as \"plexcache:\")".into());
    }
    if name.contains(':') {
        return invalid(format!(
            "':' may only end it, so that no cache's prefix can hold another's (\"p:\" and \"p:v:\" would overlap); separate words with '-' or '.', such as \"{}:\"",
            name.replace(':', "-")
        ));
    }
    Ok(())
}

/// A Redis error as a boxed source, with the URL's password removed from its text.
fn redact_error(e: &RedisError, url: &str) -> std::io::Error {
    let text = e.to_string();
    let text = if url.is_empty() {
        text
    } else {
        text.replace(url, &url::redact(url))
    };
    std::io::Error::other(text)
}

/// A cache store on a Redis server (see the [crate documentation](crate)). Cheap to clone:
/// clones share one multiplexed connection.
#[derive(Clone)]
pub struct RedisBackend {
    inner: Arc<Inner>,
}

struct Inner {
    conn: Conn,
    /// The URL without credentials, for messages.
    server: String,
    /// The URL as given (only to scrub it from error texts).
    url: String,
    /// The key prefix as configured.
    prefix: String,
    /// What every key on the server starts with: the prefix, or in a cluster `{name}:`.
    server_prefix: String,
    /// `key_prefix` + `meta`: the key every script declares (a cluster routes by it).
    meta_key: Vec<u8>,
    timeout: Duration,
    grace_ms: u64,
    scripts: Scripts,
    /// Staged values written so far (their keys' counter).
    staged: std::sync::atomic::AtomicU64,
    /// This backend's random part of staged values' keys.
    staging_id: u64,
    /// Whether the scripts run as functions of the loaded library (`FCALL`) rather than by
    /// `EVALSHA`.
    functions: std::sync::atomic::AtomicBool,
}

impl fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBackend")
            .field("server", &self.inner.server)
            .field("key_prefix", &self.inner.prefix)
            .field("command_timeout", &self.inner.timeout)
            .finish()
    }
}

impl RedisBackend {
    /// A builder for a backend on the server at `url` (`redis://[:password@]host[:port][/db]`,
    /// `rediss://` for TLS, `redis+unix:///path?db=N&pass=...` for a Unix socket), or on the
    /// Redis Cluster whose nodes `url` lists
    /// (`redis+cluster://[:password@]host:port[,host:port...]`, `rediss+cluster://` for TLS;
    /// see the crate documentation).
    pub fn builder(url: impl Into<String>) -> RedisBackendBuilder {
        RedisBackendBuilder {
            url: url.into(),
            key_prefix: "plexcache:".to_owned(),
            command_timeout: Duration::from_secs(5),
            connect_timeout: None,
            expiry_grace: Duration::from_secs(3600),
            functions: true,
        }
    }

    /// Connects with the default settings.
    pub async fn connect(url: impl Into<String>) -> Result<Self> {
        Self::builder(url).connect().await
    }

    /// The server's URL without credentials.
    pub fn server(&self) -> &str {
        &self.inner.server
    }

    /// The key prefix.
    pub fn key_prefix(&self) -> &str {
        &self.inner.prefix
    }

    /// Deletes everything this cache keeps on the server: its entries, and also its counters
    /// and persistent statistics (which [`clear`](CacheBackend::clear) keeps). Other
    /// prefixes are untouched.
    pub async fn destroy(&self) -> Result<()> {
        self.remove_range("destroying the cache", "").await?;
        let keys = [
            format!("{}meta", self.inner.server_prefix),
            format!("{}stats", self.inner.server_prefix),
            // The counters of the earlier layout, should a process of an earlier build have
            // written them since.
            format!("{}counters", self.inner.server_prefix),
        ];
        let _: i64 = self
            .call(
                || "destroying the cache".to_owned(),
                |mut conn| {
                    let keys = &keys;
                    async move { redis::cmd("DEL").arg(keys).query_async(&mut conn).await }
                },
            )
            .await?;
        Ok(())
    }

    /// A plain `SET` of `value` under `<key prefix>wire:<name>` on the backend's own
    /// connection, without any of the cache's bookkeeping: what the bytes cost on the wire
    /// (`plexcache bench` shows its Redis rows against it). Not part of the cache: delete it
    /// with [`bare_delete`](Self::bare_delete) (`clear` and `destroy` do not know it).
    pub async fn bare_set(&self, name: &str, value: &[u8]) -> Result<()> {
        let key = self.wire_key(name);
        self.call(
            || "a bare SET".to_owned(),
            |mut conn| {
                let key = &key;
                async move {
                    redis::cmd("SET")
                        .arg(key)
                        .arg(value)
                        .query_async::<()>(&mut conn)
                        .await
                }
            },
        )
        .await
    }

    /// A plain `GET` of `<key prefix>wire:<name>` (see [`bare_set`](Self::bare_set)).
    pub async fn bare_get(&self, name: &str) -> Result<Option<Bytes>> {
        let key = self.wire_key(name);
        let v: Value = self
            .call(
                || "a bare GET".to_owned(),
                |mut conn| {
                    let key = &key;
                    async move { redis::cmd("GET").arg(key).query_async(&mut conn).await }
                },
            )
            .await?;
        match v {
            Value::Nil => Ok(None),
            Value::BulkString(b) => Ok(Some(Bytes::from(b))),
            other => Err(self.bad_reply("a bare GET", &other)),
        }
    }

    /// Deletes `<key prefix>wire:<name>` (see [`bare_set`](Self::bare_set)).
    pub async fn bare_delete(&self, name: &str) -> Result<()> {
        let key = self.wire_key(name);
        self.call(
            || "a bare DEL".to_owned(),
            |mut conn| {
                let key = &key;
                async move {
                    redis::cmd("DEL")
                        .arg(key)
                        .query_async::<()>(&mut conn)
                        .await
                }
            },
        )
        .await
    }

    /// Moves the counters of the earlier layout into `meta` (once; see the MIGRATE script).
    async fn migrate(&self) -> Result<()> {
        let v = self
            .script(
                || "upgrading the cache's layout".to_owned(),
                &self.inner.scripts.migrate,
                &[],
            )
            .await?;
        if as_i64(&v) == Some(1) {
            tracing::info!(prefix = %self.inner.prefix, "moved the cache's counters into its metadata hash");
        }
        Ok(())
    }

    fn wire_key(&self, name: &str) -> String {
        format!("{}wire:{name}", self.inner.server_prefix)
    }

    fn err(&self, what: &str, source: impl Into<plexcache_core::BoxError>) -> Error {
        Error::backend(
            NAME,
            format!(
                "{what} on {} (key prefix {:?})",
                self.inner.server, self.inner.prefix
            ),
            source,
        )
    }

    /// Runs `op` with a connection, within the command timeout. A command that could not even
    /// be sent (the connection was refused, as while the manager reconnects) is tried once
    /// more; nothing else is retried, since a script may have run.
    async fn call<T, F, Fut>(&self, what: impl Fn() -> String, op: F) -> Result<T>
    where
        F: Fn(Conn) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        self.call_within(self.inner.timeout, what, op).await
    }

    /// [`call`](Self::call) with another timeout than the command timeout.
    async fn call_within<T, F, Fut>(
        &self,
        timeout: Duration,
        what: impl Fn() -> String,
        op: F,
    ) -> Result<T>
    where
        F: Fn(Conn) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let attempt = async {
            match op(self.inner.conn.clone()).await {
                Err(e) if e.is_connection_refusal() => {
                    tracing::debug!(server = %self.inner.server, "redis connection refused; retrying once");
                    op(self.inner.conn.clone()).await
                }
                other => other,
            }
        };
        match tokio::time::timeout(timeout, attempt).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                tracing::debug!(server = %self.inner.server, error = %e, "redis call failed");
                Err(self.err(&what(), redact_error(&e, &self.inner.url)))
            }
            Err(_) => Err(self.err(
                &format!("{}: no answer within {timeout:?}", what()),
                std::io::Error::from(std::io::ErrorKind::TimedOut),
            )),
        }
    }

    async fn script(
        &self,
        what: impl Fn() -> String,
        script: &Lua,
        args: &[&[u8]],
    ) -> Result<Value> {
        self.script_within(self.inner.timeout, what, script, args)
            .await
    }

    /// `FCALL` (or `EVALSHA`) of `script` with the prefix's `meta` key as its one key (which a
    /// cluster routes by) and the prefix then `args` as its arguments.
    fn eval(&self, script: &Lua, args: &[&[u8]]) -> Cmd {
        let mut cmd = if self.uses_functions() {
            let mut cmd = redis::cmd("FCALL");
            cmd.arg(&script.function);
            cmd
        } else {
            let mut cmd = redis::cmd("EVALSHA");
            cmd.arg(&script.hash);
            cmd
        };
        cmd.arg(1)
            .arg(&self.inner.meta_key)
            .arg(self.inner.server_prefix.as_bytes());
        for a in args {
            cmd.arg(*a);
        }
        cmd
    }

    fn uses_functions(&self) -> bool {
        self.inner
            .functions
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// After a call failed with `e`: whether it did not run and may be sent again, once what
    /// it needs is in place. A server that did not know the function or script gets the
    /// library (or the script) loaded; one without Redis Functions (before 7.0), or one that
    /// refuses to load them (a user without the permission), gets `EVALSHA` from then on.
    async fn recover(
        &self,
        conn: &mut Conn,
        script: &Lua,
        e: &RedisError,
    ) -> redis::RedisResult<bool> {
        if !self.uses_functions() {
            if !is_noscript(e) {
                return Ok(false);
            }
            load(conn, script).await?;
            return Ok(true);
        }
        if is_unknown_command(e) {
            self.use_evalsha("the server has no Redis Functions");
            return Ok(true);
        }
        if !is_noscript(e) {
            return Ok(false);
        }
        match load_library(conn, &self.inner.scripts).await {
            Ok(()) => Ok(true),
            Err(le) if le.is_io_error() || le.is_timeout() || le.is_connection_dropped() => Err(le),
            Err(le) => {
                self.use_evalsha(&le.to_string());
                Ok(true)
            }
        }
    }

    fn use_evalsha(&self, why: &str) {
        tracing::debug!(server = %self.inner.server, why, "running scripts by EVALSHA");
        self.inner
            .functions
            .store(false, std::sync::atomic::Ordering::Relaxed);
    }

    /// [`script`](Self::script) with another timeout than the command timeout.
    async fn script_within(
        &self,
        timeout: Duration,
        what: impl Fn() -> String,
        script: &Lua,
        args: &[&[u8]],
    ) -> Result<Value> {
        self.call_within(timeout, what, |mut conn| async move {
            let mut tries = 0;
            loop {
                let cmd = self.eval(script, args);
                match cmd.query_async::<Value>(&mut conn).await {
                    Err(e) if tries < 2 && self.recover(&mut conn, script, &e).await? => {
                        tries += 1;
                    }
                    other => return other,
                }
            }
        })
        .await
    }

    /// An error for a reply of an unexpected shape, described by its shape only (a reply may
    /// hold a whole value).
    fn bad_reply(&self, what: &str, v: &Value) -> Error {
        self.err(
            what,
            std::io::Error::other(format!("unexpected reply from the server: {}", describe(v))),
        )
    }

    /// Runs `pipe`, an atomic pipeline (`MULTI` ... `EXEC`, one round trip) of `n` commands,
    /// and returns their replies.
    async fn transaction(
        &self,
        what: impl Fn() -> String,
        pipe: &redis::Pipeline,
        n: usize,
    ) -> Result<Vec<Value>> {
        let replies: Vec<Value> = self
            .call(&what, |mut conn| async move {
                pipe.query_async(&mut conn).await
            })
            .await?;
        if replies.len() != n {
            return Err(self.err(
                &what(),
                std::io::Error::other(format!(
                    "{} replies to a transaction of {n} commands",
                    replies.len()
                )),
            ));
        }
        Ok(replies)
    }

    /// The server-side key of `key`'s value.
    fn value_key(&self, key: &str) -> Vec<u8> {
        let mut k = Vec::with_capacity(self.inner.server_prefix.len() + 2 + key.len());
        k.extend_from_slice(self.inner.server_prefix.as_bytes());
        k.extend_from_slice(b"v:");
        k.extend_from_slice(key.as_bytes());
        k
    }

    /// A key for a staged value that no other write uses.
    fn staged_key(&self) -> Vec<u8> {
        let n = self
            .inner
            .staged
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        format!(
            "{}t:{:016x}:{n}",
            self.inner.server_prefix, self.inner.staging_id
        )
        .into_bytes()
    }

    /// Runs `script` after `SET staged value PX ...` in one pipeline (one round trip): the
    /// script takes the value from `staged` without a copy through Lua.
    async fn staged_script(
        &self,
        timeout: Duration,
        what: impl Fn() -> String,
        script: &Lua,
        staged: &[(Vec<u8>, &[u8])],
        args: &[&[u8]],
    ) -> Result<Value> {
        let pipeline = || {
            let mut pipe = redis::pipe();
            for (key, value) in staged {
                pipe.cmd("SET")
                    .arg(key)
                    .arg(*value)
                    .arg("PX")
                    .arg(STAGED_TTL_MS);
            }
            pipe.add_command(self.eval(script, args));
            pipe.ignore_errors();
            pipe
        };
        self.call_within(timeout, what, |mut conn| async move {
            let mut tries = 0;
            loop {
                // On a second try the values are staged again (the same bytes, the same keys).
                let pipe = pipeline();
                match script_reply(pipe.query_async(&mut conn).await?) {
                    Err(e) if tries < 2 && self.recover(&mut conn, script, &e).await? => {
                        tries += 1;
                    }
                    other => return other,
                }
            }
        })
        .await
    }
}

/// A key for a message: shortened, then quoted and escaped.
fn short(key: &str) -> String {
    format!("{:?}", plexcache_core::short_key(key))
}

fn num(n: u64) -> Vec<u8> {
    n.to_string().into_bytes()
}

/// The last reply of a pipeline (its script's), or the first error among its replies.
fn script_reply(mut replies: Vec<Value>) -> redis::RedisResult<Value> {
    let last = replies.pop().ok_or_else(|| {
        RedisError::from((ErrorKind::UnexpectedReturnType, "empty pipeline reply"))
    })?;
    for reply in replies {
        if let Value::ServerError(e) = reply {
            return Err(e.into());
        }
    }
    match last {
        Value::ServerError(e) => Err(e.into()),
        v => Ok(v),
    }
}

/// Whether the server did not know a script's hash or a function's name (nothing ran).
fn is_noscript(e: &RedisError) -> bool {
    e.kind() == ErrorKind::Server(ServerErrorKind::NoScript)
        || (e.code() == Some("ERR")
            && e.detail()
                .is_some_and(|d| d.starts_with("Function not found")))
}

/// Whether a server did not know the command (`FCALL` before Redis 7.0; nothing ran).
fn is_unknown_command(e: &RedisError) -> bool {
    e.code() == Some("ERR") && e.detail().is_some_and(|d| d.starts_with("unknown command"))
}

/// Loads the function library (`REPLACE`: loading the same code again changes nothing; on
/// every master of a cluster).
async fn load_library(conn: &mut Conn, scripts: &Scripts) -> redis::RedisResult<()> {
    redis::cmd("FUNCTION")
        .arg("LOAD")
        .arg("REPLACE")
        .arg(&scripts.library)
        .query_async::<Value>(conn)
        .await
        .map(drop)
}

/// Loads `script` (on every master of a cluster).
async fn load(conn: &mut Conn, script: &Lua) -> redis::RedisResult<()> {
    redis::cmd("SCRIPT")
        .arg("LOAD")
        .arg(&script.code)
        .query_async::<Value>(conn)
        .await
        .map(drop)
}

/// The shape of a reply, for messages: never its bytes.
fn describe(v: &Value) -> String {
    match v {
        Value::Array(a) => format!(
            "an array of {} ({})",
            a.len(),
            a.iter()
                .take(12)
                .map(describe)
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Value::BulkString(b) => format!("a string of {} bytes", b.len()),
        Value::Int(i) => format!("the integer {i}"),
        Value::Nil => "nil".to_owned(),
        Value::SimpleString(s) => format!("the status {:?}", plexcache_core::short_key(s)),
        Value::Okay => "OK".to_owned(),
        Value::ServerError(e) => format!("the server error {}", e.code()),
        _ => "a reply of another RESP type".to_owned(),
    }
}

fn as_i64(v: &Value) -> Option<i64> {
    match v {
        Value::Int(i) => Some(*i),
        Value::BulkString(b) => std::str::from_utf8(b).ok()?.parse().ok(),
        Value::SimpleString(s) => s.parse().ok(),
        _ => None,
    }
}

fn as_u64(v: &Value) -> Option<u64> {
    as_i64(v).map(|i| u64::try_from(i).unwrap_or(0))
}

fn as_bytes(v: Value) -> Option<Vec<u8>> {
    match v {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.into_bytes()),
        _ => None,
    }
}

/// Parses `stored_at,expires_at,accessed_at,access_count,size,seq`.
fn parse_meta(raw: &[u8]) -> Option<EntryMeta> {
    let text = std::str::from_utf8(raw).ok()?;
    let mut parts = text.split(',');
    let stored_at = parts.next()?.parse().ok()?;
    let expires_at = match parts.next()? {
        "" => None,
        s => Some(s.parse().ok()?),
    };
    let accessed_at = parts.next()?.parse().ok()?;
    let access_count = parts.next()?.parse().ok()?;
    let size = parts.next()?.parse().ok()?;
    let _seq: u64 = parts.next()?.parse().ok()?;
    // Flags: which indexes hold the entry (see the scripts); "i" only with an expiry.
    if let Some(flags) = parts.next()
        && !(matches!(flags, "n") || (matches!(flags, "i" | "ni") && expires_at.is_some()))
    {
        return None;
    }
    parts.next().is_none().then_some(EntryMeta {
        stored_at,
        expires_at,
        accessed_at,
        access_count,
        size,
    })
}

/// Three integers `{entries, bytes, n}` from a batch script.
fn triple(v: &Value) -> Option<(u64, u64, u64)> {
    match v {
        Value::Array(a) if a.len() == 3 => Some((as_u64(&a[0])?, as_u64(&a[1])?, as_u64(&a[2])?)),
        _ => None,
    }
}

/// `N` integers from a script's reply (negative numbers included).
fn ints<const N: usize>(v: &Value) -> Option<[i64; N]> {
    let Value::Array(a) = v else { return None };
    let mut out = [0i64; N];
    if a.len() != N {
        return None;
    }
    for (slot, item) in out.iter_mut().zip(a) {
        *slot = as_i64(item)?;
    }
    Some(out)
}

/// A count or size from a script's reply (never negative; clamped to 0 if it were).
fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// `Removed` from an `(entries, bytes)` pair of a script's reply.
fn removed(entries: i64, bytes: i64) -> Removed {
    Removed {
        entries: count(entries),
        bytes: count(bytes),
    }
}

/// The name of a policy's index (`z:<name>`), or empty for [`EvictionPolicy::None`] (the
/// scripts then refuse instead of evicting).
fn policy_index(policy: EvictionPolicy) -> &'static [u8] {
    match policy {
        EvictionPolicy::None => b"",
        EvictionPolicy::LeastRecentlyStored => b"lrs",
        EvictionPolicy::LeastRecentlyUsed => b"lru",
        EvictionPolicy::LeastFrequentlyUsed => b"lfu",
    }
}

/// The [`WriteLimit`] as the PUT and WRITE_BATCH scripts take it: max bytes, policy index,
/// purge limit, now. Numbers above what Lua counts exactly are clamped: no store holds that
/// many bytes or entries.
fn limit_args(limit: &WriteLimit) -> [Vec<u8>; 4] {
    [
        num(limit.max_bytes.min(LUA_MAX)),
        policy_index(limit.policy).to_vec(),
        num(u64::try_from(limit.purge).unwrap_or(u64::MAX).min(LUA_MAX)),
        num(limit.now),
    ]
}

/// The lexicographic range of the keys starting with `prefix` (keys are UTF-8, which never
/// holds the byte 0xFF, so `prefix + 0xFF` bounds them).
fn lex_range(prefix: &str) -> (Vec<u8>, Vec<u8>) {
    if prefix.is_empty() {
        return (b"-".to_vec(), b"+".to_vec());
    }
    let mut min = Vec::with_capacity(prefix.len() + 1);
    min.push(b'[');
    min.extend_from_slice(prefix.as_bytes());
    let mut max = Vec::with_capacity(prefix.len() + 2);
    max.push(b'(');
    max.extend_from_slice(prefix.as_bytes());
    max.push(0xff);
    (min, max)
}

impl RedisBackend {
    fn meta_of(&self, what: &str, raw: &[u8]) -> Result<EntryMeta> {
        parse_meta(raw).ok_or_else(|| {
            self.err(
                what,
                std::io::Error::other(format!(
                    "malformed entry metadata {:?}",
                    String::from_utf8_lossy(raw)
                )),
            )
        })
    }

    /// Runs a batch script until it reports fewer members than a batch (or `limit` entries
    /// were removed).
    async fn remove_range(&self, what: &str, prefix: &str) -> Result<Removed> {
        let (min, max) = lex_range(prefix);
        let mut removed = Removed::default();
        loop {
            let v = self
                .script(
                    || what.to_owned(),
                    &self.inner.scripts.remove_range,
                    &[&min, &max, &num(BATCH)],
                )
                .await?;
            let (n, bytes, examined) = triple(&v).ok_or_else(|| self.bad_reply(what, &v))?;
            removed.add(Removed { entries: n, bytes });
            if examined < BATCH {
                return Ok(removed);
            }
        }
    }
}

#[async_trait]
impl CacheBackend for RedisBackend {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn get(&self, key: &str, now: Millis) -> Result<Option<Entry>> {
        let what = || format!("reading key {}", short(key));
        // One transaction, one round trip: the metadata and the value as one consistent pair,
        // the value's bytes straight from the server's string (never through Lua).
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("HGET")
            .arg(&self.inner.meta_key)
            .arg(key)
            .cmd("GET")
            .arg(self.value_key(key));
        let mut replies = self.transaction(what, &pipe, 2).await?.into_iter();
        let (Some(raw), Some(value)) = (replies.next(), replies.next()) else {
            return Err(self.err(&what(), std::io::Error::other("short reply")));
        };
        let raw = match raw {
            Value::Nil => return Ok(None),
            Value::BulkString(b) => b,
            other => return Err(self.bad_reply(&what(), &other)),
        };
        let meta = self.meta_of(&what(), &raw)?;
        if meta.is_expired(now) {
            return Ok(None);
        }
        match value {
            // Dropped by the server's safety-net expiry (or by hand): absent.
            Value::Nil => Ok(None),
            Value::BulkString(b) => Ok(Some(Entry {
                value: Bytes::from(b),
                meta,
            })),
            other => Err(self.bad_reply(&what(), &other)),
        }
    }

    async fn get_if_changed(
        &self,
        key: &str,
        now: Millis,
        head: &[u8],
        len: u64,
    ) -> Result<Option<Revalidated>> {
        let what = || format!("revalidating key {}", short(key));
        let vk = self.value_key(key);
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("HGET")
            .arg(&self.inner.meta_key)
            .arg(key)
            .cmd("EXISTS")
            .arg(&vk)
            .cmd("STRLEN")
            .arg(&vk);
        if !head.is_empty() {
            pipe.cmd("GETRANGE").arg(&vk).arg(0).arg(head.len() - 1);
        }
        let n = if head.is_empty() { 3 } else { 4 };
        let replies = self.transaction(what, &pipe, n).await?;
        let raw = match &replies[0] {
            Value::Nil => return Ok(None),
            Value::BulkString(b) => b,
            other => return Err(self.bad_reply(&what(), other)),
        };
        let meta = self.meta_of(&what(), raw)?;
        if meta.is_expired(now) || as_i64(&replies[1]) != Some(1) {
            return Ok(None);
        }
        let same_len = as_u64(&replies[2]) == Some(len);
        let same_head = head.is_empty()
            || matches!(replies.get(3), Some(Value::BulkString(b)) if b.as_slice() == head);
        if same_len && same_head {
            return Ok(Some(Revalidated::Same(meta)));
        }
        // Changed: read it whole (a second round trip, only when the value changed).
        Ok(self.get(key, now).await?.map(Revalidated::Changed))
    }

    async fn put(
        &self,
        key: &str,
        value: Bytes,
        stored_at: Millis,
        expires_at: Option<Millis>,
        limit: WriteLimit,
    ) -> Result<PutOutcome> {
        let what = || format!("writing key {}", short(key));
        let ea = expires_at.map(num).unwrap_or_default();
        let [max, policy, purge, now] = limit_args(&limit);
        let staged = (value.len() >= STAGE_AT).then(|| self.staged_key());
        let grace = num(self.inner.grace_ms.min(LUA_MAX));
        let stored_at = num(stored_at);
        let args: [&[u8]; 10] = [
            key.as_bytes(),
            staged.as_deref().unwrap_or(&value),
            &stored_at,
            &ea,
            &max,
            &policy,
            &purge,
            &now,
            &grace,
            if staged.is_some() { b"1" } else { b"" },
        ];
        let v = match &staged {
            Some(sk) => {
                self.staged_script(
                    self.inner.timeout,
                    what,
                    &self.inner.scripts.put,
                    &[(sk.clone(), &value)],
                    &args,
                )
                .await?
            }
            None => self.script(what, &self.inner.scripts.put, &args).await?,
        };
        let Some([stored, previous, entries, bytes, xn, xb, en, eb]) = ints::<8>(&v) else {
            return Err(self.bad_reply(&what(), &v));
        };
        let usage = Usage {
            entries: count(entries),
            bytes: count(bytes),
        };
        let expired = removed(xn, xb);
        if expired.entries > 0 {
            tracing::debug!(
                entries = expired.entries,
                bytes = expired.bytes,
                "purged expired entries"
            );
        }
        Ok(if stored == 1 {
            PutOutcome::Stored {
                previous_size: u64::try_from(previous).ok(),
                usage,
                expired,
                evicted: removed(en, eb),
            }
        } else {
            PutOutcome::Refused { usage }
        })
    }

    async fn write_batch(&self, batch: &Batch, limit: WriteLimit) -> Result<BatchOutcome> {
        let what = || {
            format!(
                "writing a batch of {} entries (removing {} prefixes)",
                batch.puts.len(),
                batch.remove_prefixes.len()
            )
        };
        let [max, policy, purge, now] = limit_args(&limit);
        let stored_at = num(batch.stored_at);
        let grace = num(self.inner.grace_ms.min(LUA_MAX));
        let nprefixes = num(u64::try_from(batch.remove_prefixes.len()).unwrap_or(u64::MAX));
        let expiries: Vec<Vec<u8>> = batch
            .puts
            .iter()
            .map(|p| p.expires_at.map(num).unwrap_or_default())
            .collect();
        // Large values travel staged (see STAGE_AT), the rest as arguments.
        let staged: Vec<Option<Vec<u8>>> = batch
            .puts
            .iter()
            .map(|p| (p.value.len() >= STAGE_AT).then(|| self.staged_key()))
            .collect();
        // One script call, whatever the size (see PUTS_PER_TIMEOUT).
        let rounds = 1 + batch.puts.len().div_ceil(PUTS_PER_TIMEOUT);
        let timeout = self
            .inner
            .timeout
            .saturating_mul(u32::try_from(rounds).unwrap_or(u32::MAX));
        let mut args: Vec<&[u8]> =
            Vec::with_capacity(7 + batch.remove_prefixes.len() + 4 * batch.puts.len());
        args.extend([
            stored_at.as_slice(),
            &max,
            &policy,
            &purge,
            &now,
            &grace,
            &nprefixes,
        ]);
        args.extend(batch.remove_prefixes.iter().map(|p| p.as_bytes()));
        let mut stage: Vec<(Vec<u8>, &[u8])> = Vec::new();
        for ((put, expires_at), sk) in batch.puts.iter().zip(&expiries).zip(&staged) {
            match sk {
                Some(sk) => {
                    args.extend([put.key.as_bytes(), sk, expires_at.as_slice(), b"1"]);
                    stage.push((sk.clone(), &put.value));
                }
                None => args.extend([put.key.as_bytes(), &put.value, expires_at.as_slice(), b""]),
            }
        }
        let script = &self.inner.scripts.write_batch;
        let v = if stage.is_empty() {
            self.script_within(timeout, what, script, &args).await?
        } else {
            self.staged_script(timeout, what, script, &stage, &args)
                .await?
        };
        let Some([applied, entries, bytes, rn, rb, written, xn, xb, en, eb]) = ints::<10>(&v)
        else {
            return Err(self.bad_reply(&what(), &v));
        };
        let usage = Usage {
            entries: count(entries),
            bytes: count(bytes),
        };
        Ok(if applied == 1 {
            BatchOutcome::Applied {
                removed: removed(rn, rb),
                written: count(written),
                expired: removed(xn, xb),
                evicted: removed(en, eb),
                usage,
            }
        } else {
            BatchOutcome::Refused { usage }
        })
    }

    async fn remove(&self, key: &str) -> Result<Option<EntryMeta>> {
        let what = || format!("removing key {}", short(key));
        let v = self
            .script(what, &self.inner.scripts.remove, &[key.as_bytes()])
            .await?;
        if v == Value::Nil {
            return Ok(None);
        }
        let raw = match v {
            Value::BulkString(b) => b,
            other => return Err(self.bad_reply(&what(), &other)),
        };
        self.meta_of(&what(), &raw).map(Some)
    }

    async fn remove_prefix(&self, prefix: &str) -> Result<Removed> {
        self.remove_range(
            &format!("removing keys with prefix {}", short(prefix)),
            prefix,
        )
        .await
    }

    async fn clear(&self) -> Result<Removed> {
        self.remove_range("clearing the cache", "").await
    }

    async fn usage(&self) -> Result<Usage> {
        let (entries, bytes): (Option<u64>, Option<u64>) = self
            .call(
                || "reading usage".to_owned(),
                |mut conn| async move {
                    redis::cmd("HMGET")
                        .arg(&self.inner.meta_key)
                        .arg(COUNT_ENTRIES)
                        .arg(COUNT_BYTES)
                        .query_async(&mut conn)
                        .await
                },
            )
            .await?;
        Ok(Usage {
            entries: entries.unwrap_or(0),
            bytes: bytes.unwrap_or(0),
        })
    }

    async fn purge_expired(&self, now: Millis, limit: usize) -> Result<Removed> {
        let what = "purging expired entries";
        let mut removed = Removed::default();
        let mut left = u64::try_from(limit).unwrap_or(u64::MAX);
        while left > 0 {
            let batch = left.min(BATCH);
            let v = self
                .script(
                    || what.to_owned(),
                    &self.inner.scripts.purge,
                    &[&num(now), &num(batch)],
                )
                .await?;
            let (n, bytes, done) = triple(&v).ok_or_else(|| self.bad_reply(what, &v))?;
            removed.add(Removed { entries: n, bytes });
            left = left.saturating_sub(n);
            if done == 1 {
                break;
            }
        }
        if removed.entries > 0 {
            tracing::debug!(
                entries = removed.entries,
                bytes = removed.bytes,
                "purged expired entries"
            );
        }
        Ok(removed)
    }

    async fn evict(
        &self,
        policy: EvictionPolicy,
        target_bytes: u64,
        protect: Option<&str>,
    ) -> Result<Removed> {
        if policy == EvictionPolicy::None {
            return Ok(Removed::default());
        }
        let index = policy_index(policy);
        let what = format!("evicting ({policy}) down to {target_bytes} bytes");
        let (guarded, protected): (&[u8], &[u8]) = match protect {
            Some(k) => (b"1", k.as_bytes()),
            None => (b"0", b""),
        };
        let mut removed = Removed::default();
        loop {
            let v = self
                .script(
                    || what.clone(),
                    &self.inner.scripts.evict,
                    &[
                        index,
                        &num(target_bytes.min(i64::MAX as u64)),
                        guarded,
                        protected,
                        &num(BATCH),
                    ],
                )
                .await?;
            let (n, bytes, done) = triple(&v).ok_or_else(|| self.bad_reply(&what, &v))?;
            removed.add(Removed { entries: n, bytes });
            if done == 1 {
                return Ok(removed);
            }
        }
    }

    async fn keys(&self, prefix: &str, now: Millis, limit: usize) -> Result<Vec<String>> {
        let what = || format!("listing keys with prefix {}", short(prefix));
        let (mut min, max) = lex_range(prefix);
        let limit = u64::try_from(limit).unwrap_or(u64::MAX);
        let mut out: Vec<String> = Vec::new();
        while (out.len() as u64) < limit {
            let want = (limit - out.len() as u64).min(LUA_MAX);
            let v = self
                .script(
                    what,
                    &self.inner.scripts.keys,
                    &[&min, &max, &num(now), &num(want), &num(BATCH)],
                )
                .await?;
            let mut parts = match v {
                Value::Array(a) => a.into_iter(),
                other => return Err(self.bad_reply(&what(), &other)),
            };
            let examined = parts.next().as_ref().and_then(as_u64);
            let last = parts.next().and_then(as_bytes);
            let (Some(examined), Some(last)) = (examined, last) else {
                return Err(self.err(&what(), std::io::Error::other("short reply")));
            };
            let before = out.len();
            for k in parts {
                let k = as_bytes(k)
                    .and_then(|b| String::from_utf8(b).ok())
                    .ok_or_else(|| self.err(&what(), std::io::Error::other("non-UTF-8 key")))?;
                out.push(k);
            }
            if examined < BATCH || ((out.len() - before) as u64) >= want {
                break;
            }
            min = Vec::with_capacity(last.len() + 1);
            min.push(b'(');
            min.extend_from_slice(&last);
        }
        Ok(out)
    }

    async fn record_accesses(&self, accesses: &[Access]) -> Result<()> {
        for chunk in accesses.chunks(RECORD_BATCH) {
            let mut args: Vec<Vec<u8>> = Vec::with_capacity(chunk.len() * 3);
            for a in chunk {
                args.push(a.key.as_bytes().to_vec());
                args.push(num(a.at));
                args.push(num(a.count.min(LUA_MAX)));
            }
            let refs: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
            self.script(
                || format!("recording {} accesses", chunk.len()),
                &self.inner.scripts.record,
                &refs,
            )
            .await?;
        }
        Ok(())
    }

    async fn load_stats(&self) -> Result<Counters> {
        let key = format!("{}stats", self.inner.server_prefix);
        let fields: std::collections::HashMap<String, i64> = self
            .call(
                || "reading statistics".to_owned(),
                |mut conn| {
                    let key = &key;
                    async move { redis::cmd("HGETALL").arg(key).query_async(&mut conn).await }
                },
            )
            .await?;
        let mut counters = Counters::default();
        for (name, value) in fields {
            counters.set_field(&name, u64::try_from(value).unwrap_or(0));
        }
        Ok(counters)
    }

    async fn add_stats(&self, delta: &Counters) -> Result<()> {
        let mut args: Vec<Vec<u8>> = Vec::new();
        for (name, value) in delta.fields() {
            if value > 0 {
                args.push(name.as_bytes().to_vec());
                args.push(num(value.min(i64::MAX as u64)));
            }
        }
        if args.is_empty() {
            return Ok(());
        }
        let refs: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
        self.script(
            || "adding statistics".to_owned(),
            &self.inner.scripts.add_stats,
            &refs,
        )
        .await?;
        Ok(())
    }

    async fn flush(&self) -> Result<()> {
        // Acknowledged writes are in the server; its persistence settings decide the rest.
        Ok(())
    }

    async fn disk_usage(&self) -> Result<Option<u64>> {
        Ok(None)
    }

    async fn integrity_check(&self) -> Result<Vec<String>> {
        let what = "checking integrity";
        let v = self
            .script(
                || what.to_owned(),
                &self.inner.scripts.integrity,
                &[&num(self.inner.grace_ms.min(LUA_MAX))],
            )
            .await?;
        let nums: Option<Vec<u64>> = match &v {
            Value::Array(a) if a.len() == 16 => a.iter().map(as_u64).collect(),
            _ => None,
        };
        let Some(n) = nums else {
            return Err(self.bad_reply(what, &v));
        };
        let (entries, bytes, count, sum, with_exp) = (n[0], n[1], n[2], n[3], n[4]);
        let mut problems = Vec::new();
        if entries != count {
            problems.push(format!(
                "entry counter is {entries} but {count} entries are stored"
            ));
        }
        if bytes != sum {
            problems.push(format!(
                "byte counter is {bytes} but the stored entries hold {sum} bytes"
            ));
        }
        let (missing, malformed, fresh, in_expi) = (n[11], n[12], n[13], n[15]);
        // Entries never read since written are in z:new (or, written with a clock that went
        // back, in the others), the others in z:lrs, z:lru and z:lfu; expiries in z:exp-new or
        // z:exp. A malformed entry's members could be in any of them: with one, only z:keys
        // is checked.
        let read = count.saturating_sub(fresh).saturating_sub(malformed);
        for (name, card, want, always) in [
            ("z:new", n[5], fresh, false),
            ("z:lrs", n[6], read, false),
            ("z:lru", n[7], read, false),
            ("z:lfu", n[8], read, false),
            ("z:exp", n[9], with_exp.saturating_sub(in_expi), false),
            ("z:exp-new", n[14], in_expi, false),
            ("z:keys", n[10], count, true),
        ] {
            if card != want && (always || malformed == 0) {
                problems.push(format!(
                    "index {}{name} has {card} members, expected {want}",
                    self.inner.server_prefix
                ));
            }
        }
        if missing > 0 {
            problems.push(format!(
                "{} entries have lost their value before their expiry (removed by hand, by the server's maxmemory eviction, or a caller's clock runs ahead of the server's); remove them",
                missing
            ));
        }
        if malformed > 0 {
            problems.push(format!(
                "{} entries have malformed metadata in {}meta (written by something else than this crate); remove them, or let eviction, purging or clear drop them",
                malformed, self.inner.server_prefix
            ));
        }
        Ok(problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_round_trip() {
        let m = parse_meta(b"10,,12,3,40,7").unwrap_or_else(|| panic!("parse"));
        assert_eq!(
            m,
            EntryMeta {
                stored_at: 10,
                expires_at: None,
                accessed_at: 12,
                access_count: 3,
                size: 40
            }
        );
        assert_eq!(
            parse_meta(b"10,20,12,3,40,7").map(|m| m.expires_at),
            Some(Some(20))
        );
        assert_eq!(
            parse_meta(b"10,20,12,3,40,7,n").map(|m| m.size),
            Some(40),
            "never read since written"
        );
        assert!(parse_meta(b"10,20,12,3,40,7,x").is_none());
        assert_eq!(
            parse_meta(b"10,20,12,3,40,7,ni").map(|m| m.expires_at),
            Some(Some(20))
        );
        assert!(
            parse_meta(b"10,,12,3,40,7,i").is_none(),
            "no expiry to index"
        );
        assert!(parse_meta(b"10,20,12,3,40,7,").is_none());
        assert!(parse_meta(b"10,20,12,3,40").is_none());
        assert!(parse_meta(b"10,20,12,3,40,7,1").is_none());
        assert!(parse_meta(b"a,20,12,3,40,7").is_none());
    }

    #[test]
    fn replies_are_described_by_shape_never_by_bytes() {
        let v = Value::Array(vec![
            Value::BulkString(b"secret-bytes".to_vec()),
            Value::Int(3),
            Value::Nil,
        ]);
        let text = describe(&v);
        assert_eq!(
            text,
            "an array of 3 (a string of 12 bytes, the integer 3, nil)"
        );
        assert!(!text.contains("secret"));
    }

    #[test]
    fn lex_ranges() {
        assert_eq!(lex_range(""), (b"-".to_vec(), b"+".to_vec()));
        assert_eq!(
            lex_range("ab"),
            (b"[ab".to_vec(), vec![b'(', b'a', b'b', 0xff])
        );
    }
}
