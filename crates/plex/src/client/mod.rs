//! An async Plex Media Server (PMS) HTTP client (cargo feature `client`): library sections,
//! paged library listings, search, metadata and children, extracted with the streaming
//! extractor into [`PlexItem`]s.
//!
//! - The token travels in the `X-Plex-Token` header only: never in a URL, never in a log line
//!   or an error message, never in the cache; `Debug` of the client and builder shows
//!   `<redacted>`.
//! - `/library/sections/{id}/all` is fetched in pages (`X-Plex-Container-Start`/`-Size`,
//!   [`DEFAULT_PAGE_SIZE`] items each) until `totalSize`, so memory stays flat however large
//!   the library; each page's body is streamed into the extractor chunk by chunk.
//! - Timeouts, connection failures, HTTP 5xx and 429 are retried with exponential backoff and
//!   jitter, a bounded number of times; other failures are reported at once as a
//!   [`ClientError`] that says what to do.
//! - [`PlexCache`](crate::PlexCache) gains cache-aside helpers over the client:
//!   [`library_items_via`](crate::PlexCache::library_items_via),
//!   [`search_via`](crate::PlexCache::search_via), ...
//!
//! See [`PlexClient`] for an example and `docs/client.md` for the details.

mod body;
mod cache;
mod error;
mod retry;

use std::collections::HashSet;
use std::fmt;
use std::io::BufRead;
use std::time::{Duration, Instant};

use reqwest::Url;
use reqwest::header::{ACCEPT, HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};

pub use cache::LibraryFetch;
pub use error::ClientError;

use crate::error::{ExtractError, Format};
use crate::extract::{extract_items_from_reader, extract_sections_from_reader};
use crate::item::{Extracted, PlexItem, Section};
use body::{BodyError, extract_body};
use retry::RetryPolicy;

/// Items asked for per request when paging a library (`X-Plex-Container-Size`): about 4-5 MB
/// of JSON per page for typical movie libraries, 50 requests for a 50,000-item library.
pub const DEFAULT_PAGE_SIZE: u32 = 1_000;
/// The default time one request (connect, headers and the whole body) may take.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// The default time to establish a connection.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The default number of retries after a failed attempt (so at most 4 attempts).
pub const DEFAULT_MAX_RETRIES: u32 = 3;
/// The value of the `X-Plex-Product` header.
pub const PRODUCT: &str = "plexcache";
/// The default most items one listing may have (claimed in `totalSize` or received); see
/// [`PlexClientBuilder::max_listing_items`].
pub const DEFAULT_MAX_LISTING_ITEMS: u64 = 5_000_000;
/// The default most response bytes one listing (all its pages) may take; see
/// [`PlexClientBuilder::max_listing_bytes`].
pub const DEFAULT_MAX_LISTING_BYTES: u64 = 4 << 30;
/// Requests a paged listing may make beyond the pages its `totalSize` needs (the library may
/// grow while it is paged): this many, plus one in [`PAGING_MARGIN_DIVISOR`].
const PAGING_MARGIN: u64 = 4;
/// See [`PAGING_MARGIN`].
const PAGING_MARGIN_DIVISOR: u64 = 32;

const X_PLEX_TOKEN: HeaderName = HeaderName::from_static("x-plex-token");
const X_PLEX_CLIENT_IDENTIFIER: HeaderName = HeaderName::from_static("x-plex-client-identifier");
const X_PLEX_PRODUCT: HeaderName = HeaderName::from_static("x-plex-product");
const X_PLEX_VERSION: HeaderName = HeaderName::from_static("x-plex-version");
const X_PLEX_CONTAINER_START: HeaderName = HeaderName::from_static("x-plex-container-start");
const X_PLEX_CONTAINER_SIZE: HeaderName = HeaderName::from_static("x-plex-container-size");
const REDACTED: &str = "<redacted>";

/// A library section, by id or by name (its title), for [`PlexClient::search`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SectionRef<'a> {
    /// The section id (the numeric `key` in `/library/sections`).
    Id(u32),
    /// The section title, resolved with [`PlexClient::section_by_name`].
    Name(&'a str),
}

impl From<u32> for SectionRef<'_> {
    fn from(id: u32) -> Self {
        Self::Id(id)
    }
}

impl<'a> From<&'a str> for SectionRef<'a> {
    fn from(name: &'a str) -> Self {
        Self::Name(name)
    }
}

impl<'a> From<&'a String> for SectionRef<'a> {
    fn from(name: &'a String) -> Self {
        Self::Name(name)
    }
}

impl From<&Section> for SectionRef<'_> {
    fn from(section: &Section) -> Self {
        Self::Id(section.id)
    }
}

/// Builds a [`PlexClient`]; see [`PlexClient::builder`].
#[derive(Clone)]
pub struct PlexClientBuilder {
    base_url: String,
    token: String,
    timeout: Duration,
    connect_timeout: Duration,
    page_size: u32,
    retry: RetryPolicy,
    client_identifier: Option<String>,
    format: Format,
    accept_invalid_certs: bool,
    max_listing_items: u64,
    max_listing_bytes: u64,
}

impl fmt::Debug for PlexClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PlexClientBuilder")
            .field("base_url", &sanitize_raw_url(&self.base_url, &self.token))
            .field("token", &REDACTED)
            .field("timeout", &self.timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("page_size", &self.page_size)
            .field("retry", &self.retry)
            .field("client_identifier", &self.client_identifier)
            .field("format", &self.format)
            .field("accept_invalid_certs", &self.accept_invalid_certs)
            .field("max_listing_items", &self.max_listing_items)
            .field("max_listing_bytes", &self.max_listing_bytes)
            .finish()
    }
}

impl PlexClientBuilder {
    fn new(base_url: &str, token: String) -> Self {
        Self {
            base_url: base_url.to_owned(),
            token,
            timeout: DEFAULT_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            page_size: DEFAULT_PAGE_SIZE,
            retry: RetryPolicy::default(),
            client_identifier: None,
            format: Format::Json,
            accept_invalid_certs: false,
            max_listing_items: DEFAULT_MAX_LISTING_ITEMS,
            max_listing_bytes: DEFAULT_MAX_LISTING_BYTES,
        }
    }

    /// The longest one request may take, from connecting to the end of the body. Default 60 s.
    /// A request that times out is retried (see [`max_retries`](Self::max_retries)).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The longest connecting may take. Default 10 s.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Items per page when listing a library (`X-Plex-Container-Size`). Default
    /// [`DEFAULT_PAGE_SIZE`]; 0 is taken as 1. Memory per request grows with it.
    pub fn page_size(mut self, items: u32) -> Self {
        self.page_size = items.max(1);
        self
    }

    /// Retries after a failed attempt, for timeouts, connection failures, HTTP 5xx and 429.
    /// Default 3; 0 disables retrying. Other failures (401, 404, a response that is not from
    /// PMS) are never retried.
    pub fn max_retries(mut self, retries: u32) -> Self {
        self.retry.max_retries = retries;
        self
    }

    /// The delay before the first retry (doubled for each further one, with jitter) and the
    /// longest delay between two attempts. Defaults 250 ms and 8 s. A `Retry-After` header (in
    /// seconds) on a 429 or 503 replaces the computed delay, capped at the maximum.
    pub fn retry_backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.retry.initial_backoff = initial;
        self.retry.max_backoff = max.max(initial);
        self
    }

    /// The `X-Plex-Client-Identifier` header: a stable id of this installation (PMS lists each
    /// identifier as a device). Default `plexcache-` followed by a hash of the host name.
    pub fn client_identifier(mut self, id: impl Into<String>) -> Self {
        self.client_identifier = Some(id.into());
        self
    }

    /// The response format asked for with `Accept`: JSON (the default) or XML (what PMS sends
    /// without an `Accept` header). Either is extracted, whatever the server sends.
    pub fn format(mut self, format: Format) -> Self {
        self.format = format;
        self
    }

    /// Accept any TLS certificate for `https://` addresses (a server reached by IP address with
    /// a `*.plex.direct` certificate). Dangerous: the connection is then not authenticated and
    /// the token could be read by whoever answers. Default false.
    pub fn danger_accept_invalid_certs(mut self, accept: bool) -> Self {
        self.accept_invalid_certs = accept;
        self
    }

    /// The most items one listing (a library, a search) may have: a server whose `totalSize`
    /// claims more, or that sends more, gets [`ClientError::ListingTooLarge`] instead of being
    /// read on. Default [`DEFAULT_MAX_LISTING_ITEMS`]; 0 is taken as 1.
    pub fn max_listing_items(mut self, items: u64) -> Self {
        self.max_listing_items = items.max(1);
        self
    }

    /// The most response bytes one listing may take, all its pages together (and any single
    /// response, such as an item's metadata): past it the body is no longer read and the call
    /// fails with [`ClientError::ListingTooLarge`]. Default [`DEFAULT_MAX_LISTING_BYTES`]
    /// (4 GiB); 0 is taken as 1.
    pub fn max_listing_bytes(mut self, bytes: u64) -> Self {
        self.max_listing_bytes = bytes.max(1);
        self
    }

    /// Builds the client.
    ///
    /// # Errors
    /// [`ClientError::InvalidUrl`] for an address that is not `http://` or `https://` with a
    /// host, or that carries a query string (pass the token separately, not as
    /// `?X-Plex-Token=`); [`ClientError::InvalidToken`] for an empty token or one that cannot
    /// be sent in a header; [`ClientError::Setup`] when TLS cannot be initialised.
    pub fn build(self) -> Result<PlexClient, ClientError> {
        let token_str = self.token.trim();
        let base = parse_base_url(&self.base_url, token_str)?;
        if token_str.is_empty() {
            return Err(ClientError::InvalidToken {
                reason: "it is empty",
            });
        }
        let mut token =
            HeaderValue::from_str(token_str).map_err(|_| ClientError::InvalidToken {
                reason: "it contains characters that cannot be sent in an HTTP header",
            })?;
        token.set_sensitive(true);

        let client_identifier = self
            .client_identifier
            .unwrap_or_else(default_client_identifier);
        let mut headers = HeaderMap::new();
        headers.insert(
            X_PLEX_CLIENT_IDENTIFIER,
            HeaderValue::from_str(&client_identifier).map_err(|_| ClientError::InvalidUrl {
                url: sanitize_raw_url(&self.base_url, token_str),
                reason: "the client identifier cannot be sent in an HTTP header".into(),
            })?,
        );
        headers.insert(X_PLEX_PRODUCT, HeaderValue::from_static(PRODUCT));
        headers.insert(
            X_PLEX_VERSION,
            HeaderValue::from_static(env!("CARGO_PKG_VERSION")),
        );
        headers.insert(
            ACCEPT,
            HeaderValue::from_static(match self.format {
                Format::Json => "application/json",
                Format::Xml => "application/xml",
            }),
        );

        let http = reqwest::Client::builder()
            .user_agent(concat!("plexcache/", env!("CARGO_PKG_VERSION")))
            .default_headers(headers)
            .timeout(self.timeout)
            .connect_timeout(self.connect_timeout)
            .redirect(same_origin_redirects())
            // This client retries (with backoff and its own bounds); reqwest must not add more.
            .retry(reqwest::retry::never())
            .tls_danger_accept_invalid_certs(self.accept_invalid_certs)
            .build()
            .map_err(|e| ClientError::Setup {
                source: e.without_url(),
            })?;
        let redact = (token_str.len() >= 4).then(|| token_str.to_owned());
        Ok(PlexClient {
            inner: std::sync::Arc::new(Inner {
                http,
                base,
                token,
                redact,
                timeout: self.timeout,
                page_size: self.page_size,
                retry: self.retry,
                client_identifier,
                format: self.format,
                max_listing_items: self.max_listing_items,
                max_listing_bytes: self.max_listing_bytes,
            }),
        })
    }
}

/// The most requests a paged listing may make: the pages of the largest `totalSize` claimed
/// so far (capped at `max_items`), or of `max_items` when no `totalSize` was sent, plus a
/// margin.
fn request_limit(claimed: Option<u64>, page_size: u64, max_items: u64) -> u64 {
    let items = claimed.unwrap_or(max_items).min(max_items);
    let pages = items.div_ceil(page_size.max(1));
    pages
        .saturating_add(PAGING_MARGIN)
        .saturating_add(pages / PAGING_MARGIN_DIVISOR)
}

/// Redirects are followed (up to 5) only to the same scheme, host and port, since the token
/// header would go along: PMS itself does not redirect API requests.
fn same_origin_redirects() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        let same = attempt.previous().first().is_some_and(|first| {
            first.scheme() == attempt.url().scheme()
                && first.host_str() == attempt.url().host_str()
                && first.port_or_known_default() == attempt.url().port_or_known_default()
        });
        if same && attempt.previous().len() <= 5 {
            attempt.follow()
        } else {
            attempt.stop()
        }
    })
}

/// An async client of one Plex Media Server.
///
/// Cheap to clone (clones share connections); `Send + Sync`. Needs a tokio runtime.
///
/// ```no_run
/// use plexcache_plex::client::PlexClient;
/// use plexcache_plex::PlexCache;
/// use plexcache_memory::MemoryBackend;
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let client = PlexClient::builder("http://192.168.1.10:32400", "my-plex-token")
///     .page_size(1_000)
///     .max_retries(3)
///     .build()?;
///
/// for section in client.sections().await? {
///     println!("{} {} ({})", section.id, section.title, section.kind);
/// }
/// let movies = client.section_by_name("Movies").await?;
/// let items = client
///     .library_items_with_progress(movies.id, |done, total| {
///         eprintln!("{done}/{}", total.unwrap_or(0));
///     })
///     .await?;
/// println!("{} movies", items.len());
///
/// // Cache-aside: the first call fetches, later calls within the TTL are served from the cache.
/// let cache = PlexCache::new(MemoryBackend::new())?;
/// let items = cache.library_items_via(&client, "Movies").await?;
/// let hits = cache.search_via(&client, "Movies", "Alien").await?;
/// # let _ = (items, hits);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct PlexClient {
    inner: std::sync::Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    base: Url,
    /// Marked sensitive: reqwest and `http` print it as `Sensitive`.
    token: HeaderValue,
    /// The token, only to scrub it from addresses shown in errors and logs.
    redact: Option<String>,
    timeout: Duration,
    page_size: u32,
    retry: RetryPolicy,
    client_identifier: String,
    format: Format,
    max_listing_items: u64,
    max_listing_bytes: u64,
}

impl fmt::Debug for PlexClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &self.inner;
        f.debug_struct("PlexClient")
            .field("base_url", &self.base_url())
            .field("token", &REDACTED)
            .field("timeout", &i.timeout)
            .field("page_size", &i.page_size)
            .field("retry", &i.retry)
            .field("client_identifier", &i.client_identifier)
            .field("format", &i.format)
            .field("max_listing_items", &i.max_listing_items)
            .field("max_listing_bytes", &i.max_listing_bytes)
            .finish()
    }
}

/// What one request is for, to name it in a 404.
type What<'a> = &'a (dyn Fn() -> String + Send + Sync);

impl PlexClient {
    /// A builder for a client of the server at `base_url` (`http://host:32400`, or
    /// `https://...`; a path prefix behind a reverse proxy is kept) with this `X-Plex-Token`.
    pub fn builder(base_url: impl AsRef<str>, token: impl Into<String>) -> PlexClientBuilder {
        PlexClientBuilder::new(base_url.as_ref(), token.into())
    }

    /// A client with the defaults.
    ///
    /// # Errors
    /// See [`PlexClientBuilder::build`].
    pub fn new(base_url: impl AsRef<str>, token: impl Into<String>) -> Result<Self, ClientError> {
        Self::builder(base_url, token).build()
    }

    /// The server address, as shown in messages (no query string, user name or password).
    pub fn base_url(&self) -> String {
        self.show(&self.inner.base)
    }

    /// Items per page when listing a library.
    pub fn page_size(&self) -> u32 {
        self.inner.page_size
    }

    /// The longest one call to the server can take, including its retries:
    /// `(max_retries + 1) * timeout` plus the longest backoff between the attempts. A paged
    /// listing makes one such call per page.
    pub fn max_request_time(&self) -> Duration {
        let i = &self.inner;
        i.timeout
            .saturating_mul(i.retry.max_retries.saturating_add(1))
            .saturating_add(i.retry.max_total_backoff())
    }

    /// The `X-Plex-Client-Identifier` sent.
    pub fn client_identifier(&self) -> &str {
        &self.inner.client_identifier
    }

    /// The library sections (`/library/sections`).
    ///
    /// # Errors
    /// [`ClientError`]: the server cannot be reached, rejects the token, or does not answer
    /// like PMS.
    pub async fn sections(&self) -> Result<Vec<Section>, ClientError> {
        let url = self.endpoint(&["library", "sections"]);
        self.fetch(&url, &[], &|| "the library section list".to_owned(), |r| {
            extract_sections_from_reader(r)
        })
        .await
    }

    /// The library section titled `name`: an exact match, else the only one whose title matches
    /// ignoring case and surrounding spaces.
    ///
    /// # Errors
    /// [`ClientError::SectionNotFound`] (listing the server's libraries),
    /// [`ClientError::AmbiguousSection`], or any error of [`PlexClient::sections`].
    pub async fn section_by_name(&self, name: &str) -> Result<Section, ClientError> {
        let sections = self.sections().await?;
        find_section(sections, name).map_err(|e| match e {
            ClientError::SectionNotFound { name, available } => ClientError::SectionNotFound {
                name: self.scrub(name),
                available,
            },
            ClientError::AmbiguousSection { name, ids } => ClientError::AmbiguousSection {
                name: self.scrub(name),
                ids,
            },
            other => other,
        })
    }

    /// Every item of a library section (`/library/sections/{id}/all`), fetched in pages of
    /// [`page_size`](PlexClientBuilder::page_size) items until `totalSize`.
    ///
    /// The paging always ends: a page that adds no new item while the server claims more is an
    /// error, and so is needing more requests than `totalSize` allows (a few pages of margin
    /// for a library that grows meanwhile; without `totalSize`, as many as
    /// [`max_listing_items`](PlexClientBuilder::max_listing_items) allows).
    ///
    /// # Errors
    /// [`ClientError::NotFound`] when there is no such section, [`ClientError::Paging`] when the
    /// server does not page as asked (it ignores `X-Plex-Container-Start`, repeats pages,
    /// sends pages of entries without a `ratingKey`, or keeps sending pages past its
    /// `totalSize`), [`ClientError::ListingTooLarge`] past the client's
    /// [item](PlexClientBuilder::max_listing_items) or
    /// [byte](PlexClientBuilder::max_listing_bytes) limit, and the errors of
    /// [`PlexClient::sections`].
    pub async fn library_items(&self, section_id: u32) -> Result<Vec<PlexItem>, ClientError> {
        self.library_items_with_progress(section_id, |_, _| {})
            .await
    }

    /// [`library_items`](Self::library_items), calling `progress(items_so_far, total)` after each
    /// page (`total` is the server's `totalSize`, when sent), e.g. to drive a progress bar.
    ///
    /// # Errors
    /// See [`PlexClient::library_items`].
    pub async fn library_items_with_progress<F>(
        &self,
        section_id: u32,
        progress: F,
    ) -> Result<Vec<PlexItem>, ClientError>
    where
        F: FnMut(u64, Option<u64>) + Send,
    {
        let url = self.section_all_url(section_id);
        let what = move || format!("library section {section_id}");
        self.fetch_all(&url, &what, progress).await
    }

    /// One page of a library section: items `start..start + size` as the server pages them.
    /// `size` 0 asks for no items, only `totalSize`.
    ///
    /// # Errors
    /// See [`PlexClient::library_items`].
    pub async fn library_page(
        &self,
        section_id: u32,
        start: u64,
        size: u64,
    ) -> Result<Extracted, ClientError> {
        let url = self.section_all_url(section_id);
        let what = move || format!("library section {section_id}");
        self.fetch_page(&url, start, size, &what, self.inner.max_listing_bytes)
            .await
            .map(|(page, _)| page)
    }

    /// The items of a library section whose title contains `title` (case-insensitive, as PMS
    /// filters): `/library/sections/{id}/all?title=...`, the filter python-plexapi's
    /// `LibrarySection.search(title=...)` uses. Paged like [`library_items`](Self::library_items).
    /// A section given by name is resolved first (one more request).
    ///
    /// # Errors
    /// See [`PlexClient::library_items`] and [`PlexClient::section_by_name`].
    pub async fn search<'a>(
        &self,
        section: impl Into<SectionRef<'a>>,
        title: &str,
    ) -> Result<Vec<PlexItem>, ClientError> {
        let section_id = match section.into() {
            SectionRef::Id(id) => id,
            SectionRef::Name(name) => self.section_by_name(name).await?.id,
        };
        let mut url = self.section_all_url(section_id);
        url.query_pairs_mut().append_pair("title", title);
        let what = move || format!("library section {section_id}");
        self.fetch_all(&url, &what, |_, _| {}).await
    }

    /// The item with this rating key (`/library/metadata/{rating_key}`), with every file path of
    /// every version, or a show's `Location` folders.
    ///
    /// # Errors
    /// [`ClientError::NotFound`] when there is no such item; see [`PlexClient::sections`].
    pub async fn metadata(&self, rating_key: &str) -> Result<PlexItem, ClientError> {
        let url = self.endpoint(&["library", "metadata", rating_key]);
        let what = || format!("item with ratingKey {rating_key:?}");
        let page = self
            .fetch(&url, &[], &what, |r| extract_items_from_reader(r))
            .await?;
        page.items
            .into_iter()
            .next()
            .ok_or_else(|| ClientError::NotFound {
                what: self.scrub(what()),
                url: self.show(&url),
            })
    }

    /// The children of an item (`/library/metadata/{rating_key}/children`): a show's seasons, a
    /// season's episodes, an album's tracks, a photo album's photos.
    ///
    /// # Errors
    /// [`ClientError::NotFound`] when there is no such item; see [`PlexClient::sections`].
    pub async fn children(&self, rating_key: &str) -> Result<Vec<PlexItem>, ClientError> {
        let url = self.endpoint(&["library", "metadata", rating_key, "children"]);
        let what = || format!("item with ratingKey {rating_key:?}");
        let page = self
            .fetch(&url, &[], &what, |r| extract_items_from_reader(r))
            .await?;
        Ok(page.items)
    }

    fn section_all_url(&self, section_id: u32) -> Url {
        let id = section_id.to_string();
        self.endpoint(&["library", "sections", &id, "all"])
    }

    /// `base` + path segments (each percent-encoded).
    fn endpoint(&self, segments: &[&str]) -> Url {
        let mut url = self.inner.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    /// An address as shown in errors and logs: no query, user name, password or token.
    fn show(&self, url: &Url) -> String {
        show_url(url, self.inner.redact.as_deref())
    }

    /// A user-given string (a rating key, a library name) as shown in errors: the token
    /// scrubbed, should it hold it.
    fn scrub(&self, s: String) -> String {
        scrub(s, self.inner.redact.as_deref())
    }

    /// Fetches every page of a paged listing.
    async fn fetch_all<F>(
        &self,
        url: &Url,
        what: What<'_>,
        mut progress: F,
    ) -> Result<Vec<PlexItem>, ClientError>
    where
        F: FnMut(u64, Option<u64>) + Send,
    {
        let size = u64::from(self.inner.page_size);
        let max_items = self.inner.max_listing_items;
        let max_bytes = self.inner.max_listing_bytes;
        let started = Instant::now();
        let mut items: Vec<PlexItem> = Vec::new();
        let mut seen: HashSet<crate::CompactString> = HashSet::new();
        let mut start = 0u64;
        let mut requests = 0u64;
        let mut bytes = 0u64;
        // The largest totalSize claimed so far (the library may grow while it is paged).
        let mut claimed: Option<u64> = None;
        loop {
            let allowed = request_limit(claimed, size, max_items);
            if requests >= allowed {
                let detail = match claimed {
                    Some(total) => format!(
                        "{requests} pages of up to {size} items did not reach the end of a listing of {total} items (totalSize); the server keeps claiming more"
                    ),
                    None => format!(
                        "{requests} full pages of {size} items and still no end (the server sends no totalSize)"
                    ),
                };
                return Err(ClientError::Paging {
                    url: self.show(url),
                    detail,
                });
            }
            let budget = max_bytes.saturating_sub(bytes);
            let (mut page, page_bytes) = self
                .fetch_page(url, start, size, what, budget)
                .await
                .map_err(|e| match e {
                    ClientError::ListingTooLarge { url, .. } => ClientError::ListingTooLarge {
                        url,
                        detail: format!(
                            "its pages take more than {max_bytes} bytes (PlexClientBuilder::max_listing_bytes)"
                        ),
                    },
                    other => other,
                })?;
            requests += 1;
            bytes = bytes.saturating_add(page_bytes);
            if let Some(offset) = page.offset
                && offset != start
            {
                return Err(ClientError::Paging {
                    url: self.show(url),
                    detail: format!(
                        "asked for items from {start} (X-Plex-Container-Start), got a page starting at {offset}"
                    ),
                });
            }
            if let Some(total) = page.total_size {
                if total > max_items {
                    return Err(self.too_many(
                        url,
                        max_items,
                        format!("claims {total} items (totalSize)"),
                    ));
                }
                claimed = Some(claimed.map_or(total, |c| c.max(total)));
            }
            page.offset = Some(start);
            let next = match page.total_size {
                Some(_) => page.next_offset(),
                // No totalSize: only a full page may have a next one.
                None => (page.entries > 0 && page.entries == size).then(|| start + page.entries),
            };
            let received = page.items.len();
            let before = items.len();
            for item in page.items {
                if seen.insert(item.rating_key.clone()) {
                    items.push(item);
                }
            }
            let new = items.len() - before;
            if items.len() as u64 > max_items {
                return Err(self.too_many(
                    url,
                    max_items,
                    format!("sent more than {max_items} items"),
                ));
            }
            if received > 0 && new < received {
                tracing::debug!(
                    url = %self.show(url),
                    start,
                    duplicates = received - new,
                    "PMS page repeats items already received (the library changed while paging?)"
                );
            }
            if new == 0 && next.is_some() {
                let detail = if received > 0 {
                    format!(
                        "the page from {start} repeats items already received (is X-Plex-Container-Start ignored?)"
                    )
                } else {
                    format!(
                        "the page from {start} has {} entries and no item with a ratingKey, yet claims more{}",
                        page.entries,
                        page.total_size
                            .map(|t| format!(" (totalSize {t})"))
                            .unwrap_or_default()
                    )
                };
                return Err(ClientError::Paging {
                    url: self.show(url),
                    detail,
                });
            }
            progress(items.len() as u64, page.total_size);
            match next {
                Some(n) => start = n,
                None => break,
            }
        }
        tracing::debug!(
            url = %self.show(url),
            items = items.len(),
            requests,
            bytes,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "fetched PMS listing"
        );
        Ok(items)
    }

    fn too_many(&self, url: &Url, max_items: u64, what: String) -> ClientError {
        ClientError::ListingTooLarge {
            url: self.show(url),
            detail: format!(
                "the server {what}, more than the limit of {max_items} (PlexClientBuilder::max_listing_items)"
            ),
        }
    }

    async fn fetch_page(
        &self,
        url: &Url,
        start: u64,
        size: u64,
        what: What<'_>,
        budget: u64,
    ) -> Result<(Extracted, u64), ClientError> {
        let headers = [
            (X_PLEX_CONTAINER_START, HeaderValue::from(start)),
            (X_PLEX_CONTAINER_SIZE, HeaderValue::from(size)),
        ];
        self.fetch_counted(url, &headers, what, budget, |r| {
            extract_items_from_reader(r)
        })
        .await
    }

    /// One GET with retries, its body streamed into `extract`, at most
    /// [`max_listing_bytes`](PlexClientBuilder::max_listing_bytes) of it.
    async fn fetch<T: Send + 'static>(
        &self,
        url: &Url,
        headers: &[(HeaderName, HeaderValue)],
        what: What<'_>,
        extract: fn(&mut dyn BufRead) -> Result<T, ExtractError>,
    ) -> Result<T, ClientError> {
        let budget = self.inner.max_listing_bytes;
        self.fetch_counted(url, headers, what, budget, extract)
            .await
            .map(|(v, _)| v)
    }

    /// One GET with retries, its body (at most `budget` bytes of it) streamed into `extract`;
    /// the result and the body's length.
    async fn fetch_counted<T: Send + 'static>(
        &self,
        url: &Url,
        headers: &[(HeaderName, HeaderValue)],
        what: What<'_>,
        budget: u64,
        extract: fn(&mut dyn BufRead) -> Result<T, ExtractError>,
    ) -> Result<(T, u64), ClientError> {
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let started = Instant::now();
            tracing::debug!(url = %self.show(url), attempt, "PMS request");
            match self.attempt(url, headers, budget, extract).await {
                Ok(v) => {
                    tracing::debug!(
                        url = %self.show(url),
                        elapsed_ms = started.elapsed().as_millis() as u64,
                        "PMS response read"
                    );
                    return Ok(v);
                }
                Err(failure) => {
                    if failure.retryable() && attempt <= self.inner.retry.max_retries {
                        let delay = self.inner.retry.delay(attempt, failure.retry_after());
                        tracing::warn!(
                            url = %self.show(url),
                            attempt,
                            retry_in_ms = delay.as_millis() as u64,
                            error = %failure.describe(),
                            "PMS request failed; retrying"
                        );
                        tokio::time::sleep(delay).await;
                        continue;
                    }
                    let err = self.to_error(failure, url, attempt, what);
                    tracing::debug!(url = %self.show(url), attempt, error = %err, "PMS request failed");
                    return Err(err);
                }
            }
        }
    }

    async fn attempt<T: Send + 'static>(
        &self,
        url: &Url,
        headers: &[(HeaderName, HeaderValue)],
        budget: u64,
        extract: fn(&mut dyn BufRead) -> Result<T, ExtractError>,
    ) -> Result<(T, u64), Failure> {
        let mut request = self
            .inner
            .http
            .get(url.clone())
            .header(X_PLEX_TOKEN, self.inner.token.clone());
        for (name, value) in headers {
            request = request.header(name.clone(), value.clone());
        }
        let response = request
            .send()
            .await
            .map_err(|e| Failure::Transport(e.without_url()))?;
        let status = response.status().as_u16();
        if !response.status().is_success() {
            let retry_after = response
                .headers()
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            let location = response
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .map(|l| match url.join(l) {
                    Ok(u) => self.show(&u),
                    Err(_) => sanitize_raw_url(l, self.inner.redact.as_deref().unwrap_or("")),
                });
            return Err(Failure::Status {
                status,
                retry_after,
                location,
            });
        }
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.chars().take(80).collect::<String>());
        extract_body(response, budget, extract)
            .await
            .map_err(|error| Failure::Body {
                status,
                content_type,
                error,
            })
    }

    fn to_error(&self, failure: Failure, url: &Url, attempts: u32, what: What<'_>) -> ClientError {
        let shown = self.show(url);
        let transport = |source: reqwest::Error| {
            if source.is_timeout() {
                ClientError::Timeout {
                    url: shown.clone(),
                    timeout: self.inner.timeout,
                    attempts,
                    source,
                }
            } else if source.is_connect() {
                ClientError::Unreachable {
                    url: shown.clone(),
                    attempts,
                    source,
                }
            } else {
                ClientError::Connection {
                    url: shown.clone(),
                    attempts,
                    source,
                }
            }
        };
        match failure {
            Failure::Transport(source) => transport(source),
            Failure::Status {
                status, location, ..
            } => match status {
                401 => ClientError::Unauthorized { url: shown },
                403 => ClientError::Forbidden { url: shown },
                404 => ClientError::NotFound {
                    what: self.scrub(what()),
                    url: shown,
                },
                300..=399 => ClientError::Redirected {
                    url: shown,
                    location,
                },
                _ => ClientError::Status {
                    url: shown,
                    status,
                    attempts,
                },
            },
            Failure::Body {
                status,
                content_type,
                error,
            } => match error {
                BodyError::Network(source) => transport(source.without_url()),
                BodyError::Extract(source) => ClientError::NotPms {
                    url: shown,
                    status,
                    content_type,
                    source: Box::new(source),
                },
                BodyError::Task(detail) => ClientError::Internal { url: shown, detail },
                BodyError::TooLarge { limit } => ClientError::ListingTooLarge {
                    url: shown,
                    detail: format!(
                        "the response is longer than {limit} bytes (PlexClientBuilder::max_listing_bytes)"
                    ),
                },
            },
        }
    }
}

/// How one attempt failed.
enum Failure {
    /// No response (connect error, timeout, reset before the headers).
    Transport(reqwest::Error),
    /// An unsuccessful status.
    Status {
        status: u16,
        retry_after: Option<Duration>,
        location: Option<String>,
    },
    /// The body could not be read or extracted.
    Body {
        status: u16,
        content_type: Option<String>,
        error: BodyError,
    },
}

impl Failure {
    fn retryable(&self) -> bool {
        match self {
            Self::Transport(_) => true,
            Self::Status { status, .. } => error::is_retryable_status(*status),
            Self::Body { error, .. } => matches!(error, BodyError::Network(_)),
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// A one-line description for the retry log (no address: the log line has it).
    fn describe(&self) -> String {
        match self {
            Self::Transport(e) => error_chain(e),
            Self::Status { status, .. } => format!("HTTP {status}"),
            Self::Body { error, .. } => match error {
                BodyError::Network(e) => format!("reading the body: {}", error_chain(e)),
                BodyError::Extract(e) => e.to_string(),
                BodyError::Task(d) => d.clone(),
                BodyError::TooLarge { limit } => format!("longer than {limit} bytes"),
            },
        }
    }
}

/// `error: cause: cause ...` on one line.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}

fn find_section(sections: Vec<Section>, name: &str) -> Result<Section, ClientError> {
    let exact: Vec<usize> = (0..sections.len())
        .filter(|&i| sections[i].title == name)
        .collect();
    let matches = if exact.is_empty() {
        let folded = name.trim().to_lowercase();
        (0..sections.len())
            .filter(|&i| sections[i].title.trim().to_lowercase() == folded)
            .collect()
    } else {
        exact
    };
    match matches.as_slice() {
        [i] => {
            let i = *i;
            let mut sections = sections;
            Ok(sections.swap_remove(i))
        }
        [] => Err(ClientError::SectionNotFound {
            name: name.to_owned(),
            available: sections.into_iter().map(|s| s.title).collect(),
        }),
        many => Err(ClientError::AmbiguousSection {
            name: name.to_owned(),
            ids: many.iter().map(|&i| sections[i].id).collect(),
        }),
    }
}

/// Parses and checks the server address.
fn parse_base_url(input: &str, token: &str) -> Result<Url, ClientError> {
    let invalid = |reason: String| ClientError::InvalidUrl {
        url: sanitize_raw_url(input, token),
        reason,
    };
    let trimmed = input.trim();
    if trimmed.is_empty() {
        return Err(invalid("it is empty".into()));
    }
    if !trimmed.contains("://") {
        return Err(invalid(format!(
            "it has no scheme: give it as http://{} (or https://)",
            sanitize_raw_url(trimmed, token)
        )));
    }
    let url = Url::parse(trimmed).map_err(|e| invalid(e.to_string()))?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(invalid(format!(
            "the scheme must be http or https, not {:?} (e.g. http://host:32400)",
            url.scheme()
        )));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(invalid("it has no host".into()));
    }
    if url.query().is_some() {
        return Err(invalid(
            "remove the query string: the token is passed separately and sent in a header, never in the URL"
                .into(),
        ));
    }
    let mut url = url;
    url.set_fragment(None);
    Ok(url)
}

/// An address as shown: `scheme://host:port/path`, the token scrubbed.
fn show_url(url: &Url, token: Option<&str>) -> String {
    let mut u = url.clone();
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u.set_query(None);
    u.set_fragment(None);
    scrub(u.to_string(), token)
}

/// An address that may not parse, as shown: cut at `?` or `#`, user info dropped, the token
/// scrubbed.
fn sanitize_raw_url(input: &str, token: &str) -> String {
    let mut s = input.trim();
    if let Some(i) = s.find(['?', '#']) {
        s = &s[..i];
    }
    let s = match (s.find("://"), s.find('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            format!("{}{}", &s[..scheme_end + 3], &s[at + 1..])
        }
        (None, Some(at)) => s[at + 1..].to_owned(),
        _ => s.to_owned(),
    };
    let s: String = s.chars().take(200).collect();
    scrub(s, (token.len() >= 4).then_some(token))
}

fn scrub(s: String, token: Option<&str>) -> String {
    match token {
        Some(t) if !t.is_empty() && s.contains(t) => s.replace(t, REDACTED),
        _ => s,
    }
}

/// `plexcache-` + 16 hex digits of an FNV-1a hash of the host name: stable per machine.
fn default_client_identifier() -> String {
    let host = std::env::var("HOSTNAME")
        .or_else(|_| std::env::var("COMPUTERNAME"))
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .unwrap_or_default();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in host.trim().bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{PRODUCT}-{h:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_are_checked_and_shown_without_secrets() {
        let ok = parse_base_url(" http://u:p@host:32400/plex/ ", "tok3n");
        assert!(ok.is_ok());
        if let Ok(u) = ok {
            assert_eq!(show_url(&u, None), "http://host:32400/plex/");
        }
        for bad in [
            "",
            "host:32400",
            "ftp://host",
            "http://host:32400/?X-Plex-Token=tok3n",
            "not a url",
        ] {
            match parse_base_url(bad, "tok3n") {
                Err(e @ ClientError::InvalidUrl { .. }) => {
                    let msg = format!("{e} {e:?}");
                    assert!(!msg.contains("tok3n"), "{msg}");
                }
                other => panic!("{bad:?}: {other:?}"),
            }
        }
        assert_eq!(
            sanitize_raw_url("http://a:b@h/x?X-Plex-Token=zzz", "zzz"),
            "http://h/x"
        );
        assert_eq!(sanitize_raw_url("h/zzzz/x", "zzzz"), "h/<redacted>/x");
    }

    #[test]
    fn sections_are_found_by_name() {
        let s = |id: u32, title: &str| Section {
            id,
            key: id.to_string(),
            title: title.into(),
            kind: crate::item::ItemKind::Movie,
            locations: vec![],
            updated_at: None,
            uuid: None,
        };
        let all = vec![s(1, "Movies"), s(2, "movies "), s(3, "TV"), s(4, "tv")];
        assert_eq!(
            find_section(all.clone(), "Movies").map(|s| s.id).ok(),
            Some(1)
        );
        assert_eq!(find_section(all.clone(), "TV").map(|s| s.id).ok(), Some(3));
        assert!(matches!(
            find_section(all.clone(), "Tv"),
            Err(ClientError::AmbiguousSection { .. })
        ));
        assert!(matches!(
            find_section(all, "Music"),
            Err(ClientError::SectionNotFound { .. })
        ));
    }

    #[test]
    fn default_identifier_is_stable() {
        assert_eq!(default_client_identifier(), default_client_identifier());
        assert!(default_client_identifier().starts_with("plexcache-"));
    }
}
