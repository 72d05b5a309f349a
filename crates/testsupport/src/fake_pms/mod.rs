//! A fake Plex Media Server for tests: an HTTP/1.1 server on a loopback port that serves
//! recorded and synthetic libraries with real paging, checks the `X-Plex-Token`, records every
//! request, and injects faults on demand. Used by the tests of `plexcache-plex`, of the CLI and
//! of the workspace.
//!
//! # Routes
//!
//! | route | answer |
//! |---|---|
//! | `GET /identity` | server identity (no token needed) |
//! | `GET /library/sections` | the libraries (generated from the registered ones, or a recorded response) |
//! | `GET /library/sections/{id}/all` | the library, paged by `X-Plex-Container-Start`/`-Size` (headers or query parameters) with `offset`/`totalSize`/`size`; `?title=` keeps titles containing it (case-insensitive) |
//! | `GET /library/sections/{id}/search?title=` (or `query=`) | the same filter |
//! | `GET /library/metadata/{ratingKey}` | that item from any library |
//! | `GET /library/metadata/{ratingKey}/children` | a registered route, else an empty container for a known item |
//! | any path added with [`FakePmsBuilder::route`] | that body |
//!
//! Answers are JSON when the request's `Accept` mentions `json`, XML otherwise (as PMS does);
//! JSON data is converted to the XML PMS would send. Every route but `/identity` needs the
//! token in the `X-Plex-Token` header, and answers 401 with an HTML page otherwise (a token in
//! the query string is recorded as [`RecordedRequest::token_in_query`] and not accepted).
//! Unknown sections, items and paths answer 404.
//!
//! # Faults
//!
//! [`FaultRule`]s, added at build time or while running ([`FakePms::add_fault`]), make chosen
//! requests fail: a status (500, 503 with `Retry-After`, 401, 404...), a delay (to trigger
//! client timeouts), a connection closed before answering or in the middle of the body, an
//! HTML page or a truncated body with status 200, a redirect, a server that ignores paging, or
//! one whose pages never end.
//!
//! ```
//! # #[cfg(feature = "client")]
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! use plexcache_testsupport::fake_pms::{Fault, FaultRule, FakePms};
//!
//! let pms = FakePms::builder("secret-token")
//!     .recorded_fixtures()                                   // Movies (341), TV Shows, 4K Movies
//!     .fault(FaultRule::new(Fault::Status(500)).on("/library/sections/1/all").times(2))
//!     .start()
//!     .await?;
//! let client = plexcache_plex::client::PlexClient::builder(pms.url(), "secret-token")
//!     .page_size(100)
//!     .retry_backoff(std::time::Duration::from_millis(1), std::time::Duration::from_millis(5))
//!     .build()?;
//! let items = client.library_items(1).await?;
//! assert_eq!(items.len(), 341);
//! assert_eq!(pms.count_path("/library/sections/1/all"), 2 + 4); // 2 failures, then 4 pages
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```

mod render;
mod server;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use serde_json::{Map, Value};

use plexcache_plex::PlexItem;
use plexcache_plex::synthetic::{self, Spec};

/// A registered library (section) of the fake server.
#[derive(Debug)]
pub struct FakeLibrary {
    id: u32,
    title: String,
    kind: String,
    locations: Vec<String>,
    content: Content,
}

#[derive(Debug)]
enum Content {
    /// Entries of a recorded `/all` response, and its container attributes.
    Entries {
        attrs: Map<String, Value>,
        entries: Vec<Value>,
    },
    /// A synthetic library (generated page by page).
    Synthetic {
        spec: Spec,
        items: OnceLock<Vec<PlexItem>>,
    },
}

impl FakeLibrary {
    /// A library serving the entries of a recorded `/library/sections/{id}/all` JSON response
    /// (its `MediaContainer.Metadata`, or `Directory`), paged as asked. The container's other
    /// attributes are kept; `size`, `totalSize` and `offset` are set per page.
    ///
    /// # Errors
    /// When `all_response` is not a JSON document with a `MediaContainer` object.
    pub fn from_json(
        id: u32,
        title: &str,
        kind: &str,
        all_response: &[u8],
    ) -> Result<Self, serde_json::Error> {
        let doc: Value = serde_json::from_slice(all_response)?;
        let Some(Value::Object(mut mc)) = doc.get("MediaContainer").cloned() else {
            return Err(serde::de::Error::custom("no MediaContainer object"));
        };
        let entries = match mc.remove("Metadata").or_else(|| mc.remove("Directory")) {
            Some(Value::Array(list)) => list,
            _ => Vec::new(),
        };
        for k in ["size", "totalSize", "offset"] {
            mc.remove(k);
        }
        Ok(Self {
            id,
            title: title.to_owned(),
            kind: kind.to_owned(),
            locations: Vec::new(),
            content: Content::Entries { attrs: mc, entries },
        })
    }

    /// A movie library of `items` synthetic movies ([`plexcache_plex::synthetic`], seed = `id`),
    /// generated page by page: a 50,000-item library costs nothing until asked for.
    pub fn synthetic(id: u32, title: &str, items: usize) -> Self {
        let spec = Spec {
            items,
            offset: 0,
            total_size: None,
            seed: u64::from(id),
            library_section_id: id,
            library_title: title.to_owned(),
        };
        Self::from_spec(id, title, spec)
    }

    /// A synthetic movie library from an explicit [`Spec`] (its `items` is the library size).
    pub fn from_spec(id: u32, title: &str, spec: Spec) -> Self {
        Self {
            id,
            title: title.to_owned(),
            kind: "movie".to_owned(),
            locations: Vec::new(),
            content: Content::Synthetic {
                spec,
                items: OnceLock::new(),
            },
        }
    }

    /// Sets the library's folders (shown in the generated `/library/sections`).
    pub fn locations(mut self, paths: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.locations = paths.into_iter().map(Into::into).collect();
        self
    }

    /// The section id.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The library name.
    pub fn title(&self) -> &str {
        &self.title
    }

    /// The number of items in the library.
    pub fn len(&self) -> usize {
        match &self.content {
            Content::Entries { entries, .. } => entries.len(),
            Content::Synthetic { spec, .. } => spec.items,
        }
    }

    /// True when the library has no items.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The items a client must extract from this whole library, for synthetic libraries
    /// ([`synthetic::expected_items`]); `None` for recorded ones (extract the fixture instead).
    pub fn expected_items(&self) -> Option<&[PlexItem]> {
        match &self.content {
            Content::Synthetic { .. } => Some(self.synthetic_items()),
            Content::Entries { .. } => None,
        }
    }

    fn synthetic_items(&self) -> &[PlexItem] {
        match &self.content {
            Content::Synthetic { spec, items } => {
                items.get_or_init(|| synthetic::expected_items(spec))
            }
            Content::Entries { .. } => &[],
        }
    }
}

/// What a fault does to a request it applies to.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// Answer with this HTTP status and a small HTML body.
    Status(u16),
    /// Answer with this status and `Retry-After: secs`.
    StatusRetryAfter(u16, u64),
    /// Wait this long, then answer normally (a client with a shorter timeout gives up first).
    Delay(Duration),
    /// Close the connection without answering.
    CloseConnection,
    /// Send the headers and about half of the normal body (with the full `Content-Length`),
    /// then close the connection.
    DropMidBody,
    /// Answer 200 with an HTML page: not a PMS response.
    Html,
    /// Answer 200 with the first half of the normal body as a complete HTTP message: a
    /// truncated document.
    TruncatedBody,
    /// Ignore `X-Plex-Container-Start` (always serve from 0), still honouring the size;
    /// `report_offset` says whether the container still claims `offset="0"`.
    IgnoreContainerStart {
        /// Whether to send `offset` (0) in the container.
        report_offset: bool,
    },
    /// Ignore paging: always serve the whole library in one response.
    IgnorePaging,
    /// Answer `302 Found` with this `Location` (absolute, or a path on this server).
    Redirect(String),
    /// Answer with a made-up page at the asked `X-Plex-Container-Start` (which it reports as
    /// `offset`), however far that is: a server that never runs out. `per_page` entries (at
    /// most the asked size; the asked size when `None`), each with a fresh `ratingKey` (the
    /// entry's index) when `keyed`, without one otherwise; `totalSize` as given (none when
    /// `None`).
    Endless {
        /// The container's `totalSize`.
        total_size: Option<u64>,
        /// Entries per page.
        per_page: Option<u64>,
        /// Whether the entries have a `ratingKey`.
        keyed: bool,
    },
}

/// A [`Fault`] and which requests it applies to: those whose path starts with a prefix
/// (default: every path), after skipping the first `after` of them, `times` times (default:
/// every one).
///
/// Every rule counts the requests matching its path; for each request the first rule that is
/// active applies.
#[derive(Clone, Debug)]
pub struct FaultRule {
    fault: Fault,
    path_prefix: Option<String>,
    after: u64,
    times: Option<u64>,
    delay: Option<Duration>,
}

impl FaultRule {
    /// `fault` on every request.
    pub fn new(fault: Fault) -> Self {
        Self {
            fault,
            path_prefix: None,
            after: 0,
            times: None,
            delay: None,
        }
    }

    /// Only requests whose path starts with `prefix` (e.g. `/library/sections/1/all`).
    pub fn on(mut self, prefix: impl Into<String>) -> Self {
        self.path_prefix = Some(prefix.into());
        self
    }

    /// Only `n` matching requests.
    pub fn times(mut self, n: u64) -> Self {
        self.times = Some(n);
        self
    }

    /// Skip the first `n` matching requests.
    pub fn after(mut self, n: u64) -> Self {
        self.after = n;
        self
    }

    /// Wait this long before applying the fault (e.g. a slow 401, so that concurrent callers
    /// are sure to overlap).
    pub fn delayed(mut self, delay: Duration) -> Self {
        self.delay = Some(delay);
        self
    }
}

#[derive(Debug)]
struct ActiveRule {
    rule: FaultRule,
    seen: u64,
}

/// One request the server received (the token's value is never recorded).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordedRequest {
    /// `GET`, ...
    pub method: String,
    /// The path, e.g. `/library/sections/1/all`.
    pub path: String,
    /// The query string, if any (an `X-Plex-Token` value in it is replaced by `<redacted>`).
    pub query: Option<String>,
    /// `X-Plex-Container-Start`, from the header or the query.
    pub container_start: Option<u64>,
    /// `X-Plex-Container-Size`, from the header or the query.
    pub container_size: Option<u64>,
    /// The `Accept` header.
    pub accept: Option<String>,
    /// The `X-Plex-Token` header was present and right.
    pub token_ok: bool,
    /// A token was sent in the query string (a client must never do that).
    pub token_in_query: bool,
    /// `X-Plex-Client-Identifier`.
    pub client_identifier: Option<String>,
    /// `X-Plex-Product`.
    pub product: Option<String>,
    /// `X-Plex-Version`.
    pub version: Option<String>,
    /// The fault applied to this request, if any.
    pub fault: Option<Fault>,
}

/// Configures and starts a [`FakePms`].
#[derive(Debug)]
pub struct FakePmsBuilder {
    token: String,
    libraries: Vec<FakeLibrary>,
    sections: Option<Vec<u8>>,
    routes: Vec<(String, Vec<u8>)>,
    faults: Vec<FaultRule>,
}

impl FakePmsBuilder {
    /// A server accepting `token`, with no libraries.
    pub fn new(token: impl Into<String>) -> Self {
        Self {
            token: token.into(),
            libraries: Vec::new(),
            sections: None,
            routes: Vec::new(),
            faults: Vec::new(),
        }
    }

    /// Adds a library; a later one with the same id replaces it.
    pub fn library(mut self, library: FakeLibrary) -> Self {
        self.libraries.retain(|l| l.id != library.id);
        self.libraries.push(library);
        self
    }

    /// A synthetic movie library of `items` items (see [`FakeLibrary::synthetic`]).
    pub fn synthetic_library(self, id: u32, title: &str, items: usize) -> Self {
        self.library(FakeLibrary::synthetic(id, title, items))
    }

    /// Serves this recorded JSON `/library/sections` response instead of generating one from
    /// the libraries.
    pub fn sections_response(mut self, json: impl Into<Vec<u8>>) -> Self {
        self.sections = Some(json.into());
        self
    }

    /// Serves `body` (a JSON or XML PMS response) at exactly `path`, before the built-in
    /// routes. A JSON body is converted to XML for clients that ask for XML.
    pub fn route(mut self, path: impl Into<String>, body: impl Into<Vec<u8>>) -> Self {
        self.routes.push((path.into(), body.into()));
        self
    }

    /// Adds a fault rule.
    pub fn fault(mut self, rule: FaultRule) -> Self {
        self.faults.push(rule);
        self
    }

    /// The recorded fixtures of `crates/plex/tests/fixtures/` (compiled in):
    ///
    /// - `/library/sections`: `json/sections.rubyplex.json` (1 "Movies", 2 "TV Shows",
    ///   3 "4K Movies");
    /// - section 1 "Movies": the 341 movies of `full/movies_all_341.plex-api-spec.json`;
    /// - section 2 "TV Shows": `json/shows_all.plex-api-rs.json` (2 shows);
    /// - section 3 "4K Movies": 500 synthetic movies;
    /// - `/library/metadata/22/children` (seasons), `/library/metadata/89/children`
    ///   (episodes), `/library/metadata/159637` (a movie in 2 versions, one in 2 parts),
    ///   `/library/metadata/10401` (a show with its `Location`), `/library/metadata/157/children`
    ///   (album tracks), `/library/metadata/43/children` (a photo album).
    pub fn recorded_fixtures(self) -> Self {
        let mut b = self.sections_response(fixtures::SECTIONS.to_vec());
        if let Ok(lib) = FakeLibrary::from_json(1, "Movies", "movie", fixtures::MOVIES_341) {
            b = b.library(lib);
        }
        if let Ok(lib) = FakeLibrary::from_json(2, "TV Shows", "show", fixtures::SHOWS) {
            b = b.library(lib);
        }
        b = b.synthetic_library(3, "4K Movies", 500);
        for (path, body) in fixtures::ROUTES {
            b = b.route(*path, body.to_vec());
        }
        b
    }

    /// Starts the server on `127.0.0.1` (a free port) in the current tokio runtime. It stops
    /// when the [`FakePms`] is dropped.
    ///
    /// # Errors
    /// When binding the port fails.
    pub async fn start(self) -> std::io::Result<FakePms> {
        let listener = std::net::TcpListener::bind(("127.0.0.1", 0))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(self.into_shared());
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let task = tokio::spawn(server::serve(listener, Arc::clone(&shared)));
        Ok(FakePms {
            shared,
            addr,
            runner: Runner::Task(task),
        })
    }

    /// Starts the server on `127.0.0.1` (a free port) on a thread of its own with its own
    /// runtime, for synchronous tests (e.g. running a CLI binary against it). It stops when
    /// the [`FakePms`] is dropped.
    ///
    /// # Errors
    /// When binding the port or starting the runtime fails.
    pub fn start_blocking(self) -> std::io::Result<FakePms> {
        let listener = std::net::TcpListener::bind(("127.0.0.1", 0))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(self.into_shared());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<std::io::Result<()>>();
        let thread_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name(format!("fake-pms-{}", addr.port()))
            .spawn(move || {
                runtime.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(listener) {
                        Ok(l) => {
                            let _ = ready_tx.send(Ok(()));
                            l
                        }
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return;
                        }
                    };
                    let task = tokio::spawn(server::serve(listener, thread_shared));
                    let _ = stop_rx.await;
                    task.abort();
                });
            })?;
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(std::io::Error::other("the fake PMS thread exited")),
        }
        Ok(FakePms {
            shared,
            addr,
            runner: Runner::Thread {
                stop: Some(stop_tx),
                thread: Some(thread),
            },
        })
    }

    fn into_shared(self) -> Shared {
        Shared {
            token: self.token,
            libraries: self.libraries,
            sections: self.sections,
            routes: self.routes,
            faults: Mutex::new(
                self.faults
                    .into_iter()
                    .map(|rule| ActiveRule { rule, seen: 0 })
                    .collect(),
            ),
            requests: Mutex::new(Vec::new()),
        }
    }
}

/// State shared by the server's connections and the [`FakePms`] handle.
#[derive(Debug)]
struct Shared {
    token: String,
    libraries: Vec<FakeLibrary>,
    sections: Option<Vec<u8>>,
    routes: Vec<(String, Vec<u8>)>,
    faults: Mutex<Vec<ActiveRule>>,
    requests: Mutex<Vec<RecordedRequest>>,
}

impl Shared {
    /// Counts `path` against every rule and returns the fault (and delay) of the first active
    /// one.
    fn next_fault(&self, path: &str) -> Option<(Fault, Option<Duration>)> {
        let mut rules = self.faults.lock().unwrap_or_else(PoisonError::into_inner);
        let mut chosen = None;
        for active in rules.iter_mut() {
            let r = &active.rule;
            if r.path_prefix
                .as_deref()
                .is_some_and(|p| !path.starts_with(p))
            {
                continue;
            }
            let n = active.seen;
            active.seen += 1;
            let on = n >= r.after && r.times.is_none_or(|t| n < r.after.saturating_add(t));
            if on && chosen.is_none() {
                chosen = Some((r.fault.clone(), r.delay));
            }
        }
        chosen
    }
}

enum Runner {
    Task(tokio::task::JoinHandle<()>),
    Thread {
        stop: Option<tokio::sync::oneshot::Sender<()>>,
        thread: Option<std::thread::JoinHandle<()>>,
    },
}

/// A running fake PMS. Dropping it stops the server.
pub struct FakePms {
    shared: Arc<Shared>,
    addr: SocketAddr,
    runner: Runner,
}

impl std::fmt::Debug for FakePms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakePms")
            .field("addr", &self.addr)
            .field("libraries", &self.shared.libraries.len())
            .finish_non_exhaustive()
    }
}

impl FakePms {
    /// A builder for a server accepting `token`.
    pub fn builder(token: impl Into<String>) -> FakePmsBuilder {
        FakePmsBuilder::new(token)
    }

    /// The server's base URL, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The server's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The token the server accepts.
    pub fn token(&self) -> &str {
        &self.shared.token
    }

    /// The library with this section id.
    pub fn library(&self, id: u32) -> Option<&FakeLibrary> {
        self.shared.libraries.iter().find(|l| l.id == id)
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared
            .requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The number of requests received so far.
    pub fn request_count(&self) -> usize {
        self.shared
            .requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// The number of requests whose path starts with `prefix`.
    pub fn count_path(&self, prefix: &str) -> usize {
        self.shared
            .requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|r| r.path.starts_with(prefix))
            .count()
    }

    /// Forgets the requests received so far.
    pub fn clear_requests(&self) {
        self.shared
            .requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    /// Adds a fault rule while running (after the existing ones).
    pub fn add_fault(&self, rule: FaultRule) {
        self.shared
            .faults
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(ActiveRule { rule, seen: 0 });
    }

    /// Removes every fault rule.
    pub fn clear_faults(&self) {
        self.shared
            .faults
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }
}

impl Drop for FakePms {
    fn drop(&mut self) {
        match &mut self.runner {
            Runner::Task(task) => task.abort(),
            Runner::Thread { stop, thread } => {
                if let Some(stop) = stop.take() {
                    let _ = stop.send(());
                }
                if let Some(thread) = thread.take() {
                    let _ = thread.join();
                }
            }
        }
    }
}

/// The recorded responses compiled in for [`FakePmsBuilder::recorded_fixtures`].
mod fixtures {
    pub(super) const SECTIONS: &[u8] =
        include_bytes!("../../../plex/tests/fixtures/json/sections.rubyplex.json");
    pub(super) const MOVIES_341: &[u8] =
        include_bytes!("../../../plex/tests/fixtures/full/movies_all_341.plex-api-spec.json");
    pub(super) const SHOWS: &[u8] =
        include_bytes!("../../../plex/tests/fixtures/json/shows_all.plex-api-rs.json");
    pub(super) const ROUTES: &[(&str, &[u8])] = &[
        (
            "/library/metadata/22/children",
            include_bytes!(
                "../../../plex/tests/fixtures/json/show_children_seasons.plex-api-rs.json"
            ),
        ),
        (
            "/library/metadata/89/children",
            include_bytes!(
                "../../../plex/tests/fixtures/json/season_children_episodes.plex-api-rs.json"
            ),
        ),
        (
            "/library/metadata/159637",
            include_bytes!(
                "../../../plex/tests/fixtures/json/movie_metadata_multiversion_multipart.plex-api-rs.json"
            ),
        ),
        (
            "/library/metadata/10401",
            include_bytes!("../../../plex/tests/fixtures/json/show_metadata.rubyplex.json"),
        ),
        (
            "/library/metadata/157/children",
            include_bytes!(
                "../../../plex/tests/fixtures/json/album_children_tracks.plex-api-rs.json"
            ),
        ),
        (
            "/library/metadata/43/children",
            include_bytes!(
                "../../../plex/tests/fixtures/json/photo_album_children.plex-api-rs.json"
            ),
        ),
    ];
}
