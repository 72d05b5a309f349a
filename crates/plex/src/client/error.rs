//! [`ClientError`]: what went wrong talking to a Plex Media Server, in terms a user can act on.

use std::time::Duration;

use crate::error::ExtractError;

/// Why a request to a Plex Media Server failed.
///
/// Every message names the server address the request went to, shown as
/// `scheme://host:port/path` only: never a query string, user name or password, and never the
/// token (the client sends the token in a header and nothing here can hold it). The underlying
/// cause, when there is one, is the [`source`](std::error::Error::source); print the whole chain
/// to show everything (`plexcache_core::Error::Fetch` wraps this type the same way).
///
/// [`ClientError::is_retryable`] tells which failures the client retried (with backoff) before
/// giving up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The server address is not a usable `http://` or `https://` URL.
    #[error("invalid Plex server URL {url:?}: {reason}")]
    InvalidUrl {
        /// The address as given, with any query string, user name and password removed.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The token cannot be used (empty, or not sendable in an HTTP header). Never shows the token.
    #[error("invalid X-Plex-Token: {reason}")]
    InvalidToken {
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The HTTP client could not be set up (TLS initialisation).
    #[error("cannot set up the HTTP client")]
    Setup {
        /// The HTTP library's error.
        #[source]
        source: reqwest::Error,
    },
    /// No connection could be made: wrong address or port, the server is down, or a firewall.
    #[error(
        "cannot reach the Plex server at {url} (after {attempts} attempt(s)): check the address, port and scheme (http or https), and that the server is running"
    )]
    Unreachable {
        /// The request's address (no query string).
        url: String,
        /// Attempts made.
        attempts: u32,
        /// The connection error.
        #[source]
        source: reqwest::Error,
    },
    /// The server did not answer in time (the per-request timeout, see
    /// [`PlexClientBuilder::timeout`](crate::client::PlexClientBuilder::timeout)).
    #[error(
        "the Plex server at {url} did not answer within {timeout:?} (after {attempts} attempt(s)); the server may be busy, or raise the timeout"
    )]
    Timeout {
        /// The request's address (no query string).
        url: String,
        /// The per-request timeout.
        timeout: Duration,
        /// Attempts made.
        attempts: u32,
        /// The HTTP library's error.
        #[source]
        source: reqwest::Error,
    },
    /// The connection failed after it was made (reset, closed in the middle of a response).
    #[error("the connection to the Plex server at {url} failed (after {attempts} attempt(s))")]
    Connection {
        /// The request's address (no query string).
        url: String,
        /// Attempts made.
        attempts: u32,
        /// The HTTP library's error.
        #[source]
        source: reqwest::Error,
    },
    /// 401: the server does not accept the token.
    #[error(
        "the Plex server at {url} rejected the token (401 Unauthorized): get a new X-Plex-Token"
    )]
    Unauthorized {
        /// The request's address (no query string).
        url: String,
    },
    /// 403: the token is valid but its account may not see this.
    #[error(
        "the Plex server at {url} refused access (403 Forbidden): the token's account has no access to it"
    )]
    Forbidden {
        /// The request's address (no query string).
        url: String,
    },
    /// 404, or an empty answer where one item was asked for: no such library section or item.
    #[error("{what} not found on the Plex server ({url})")]
    NotFound {
        /// What was asked for, e.g. `library section 7` or `item with ratingKey 123`.
        what: String,
        /// The request's address (no query string).
        url: String,
    },
    /// No library section has this name.
    #[error(
        "no library named {name:?} on the Plex server; its libraries are: {}",
        list_names(available)
    )]
    SectionNotFound {
        /// The name asked for.
        name: String,
        /// The names of the server's libraries.
        available: Vec<String>,
    },
    /// Several library sections have this name (compared case-insensitively).
    #[error(
        "{} libraries on the Plex server are named {name:?} (section ids {ids:?}); use a section id",
        ids.len()
    )]
    AmbiguousSection {
        /// The name asked for.
        name: String,
        /// The ids of the matching sections.
        ids: Vec<u32>,
    },
    /// The server redirected to another address (host, port or scheme). The client does not
    /// follow such redirects, since the token would go along to the other address.
    #[error(
        "the Plex server at {url} redirected to another address ({}): use that address as the server URL",
        location.as_deref().unwrap_or("no Location header")
    )]
    Redirected {
        /// The request's address (no query string).
        url: String,
        /// The redirect's target, without query string, user name or password.
        location: Option<String>,
    },
    /// Any other unsuccessful HTTP status; for 5xx and 429, after the retries.
    #[error("the Plex server at {url} answered HTTP {status} (after {attempts} attempt(s))")]
    Status {
        /// The request's address (no query string).
        url: String,
        /// The HTTP status code.
        status: u16,
        /// Attempts made.
        attempts: u32,
    },
    /// The response is not a Plex Media Server response (an HTML page, malformed or truncated
    /// JSON/XML): the address may point at another service. The source says what and where.
    #[error(
        "the response from {url} (HTTP {status}{}) is not a Plex Media Server response; is this the address of a Plex server?",
        content_type.as_deref().map(|c| format!(", {c}")).unwrap_or_default()
    )]
    NotPms {
        /// The request's address (no query string).
        url: String,
        /// The HTTP status.
        status: u16,
        /// The response's `Content-Type`, when sent.
        content_type: Option<String>,
        /// What the extractor found wrong, and where (also [`ClientError::extract_error`]).
        #[source]
        source: Box<ExtractError>,
    },
    /// The server does not page `/library/sections/{id}/all` as asked: it ignored
    /// `X-Plex-Container-Start`, sent a page that adds no new item while claiming more, or
    /// needed more requests than its `totalSize` allows.
    #[error("the Plex server at {url} does not page its answer correctly: {detail}")]
    Paging {
        /// The request's address (no query string).
        url: String,
        /// What went wrong.
        detail: String,
    },
    /// A listing is larger than the client accepts: the server claims (`totalSize`) or sends
    /// more items than [`max_listing_items`](crate::client::PlexClientBuilder::max_listing_items),
    /// or more response bytes than
    /// [`max_listing_bytes`](crate::client::PlexClientBuilder::max_listing_bytes). Not retried.
    #[error("the listing at {url} is larger than this client accepts: {detail}")]
    ListingTooLarge {
        /// The request's address (no query string).
        url: String,
        /// Which limit, and what the server claimed or sent.
        detail: String,
    },
    /// An internal task failed (the extraction thread panicked or was cancelled).
    #[error("internal error while reading the response from {url}: {detail}")]
    Internal {
        /// The request's address (no query string).
        url: String,
        /// What happened.
        detail: String,
    },
}

fn list_names(names: &[String]) -> String {
    if names.is_empty() {
        "(none)".to_owned()
    } else {
        names
            .iter()
            .map(|n| format!("{n:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl ClientError {
    /// True for failures the client retries: timeouts, connection failures, HTTP 5xx and 429.
    /// When a request finally fails with one of these, the retries were used up.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Unreachable { .. } | Self::Timeout { .. } | Self::Connection { .. } => true,
            Self::Status { status, .. } => is_retryable_status(*status),
            _ => false,
        }
    }

    /// The HTTP status of the failed response, when there was one.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Unauthorized { .. } => Some(401),
            Self::Forbidden { .. } => Some(403),
            Self::NotFound { .. } => Some(404),
            Self::Status { status, .. } | Self::NotPms { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// For [`ClientError::NotPms`]: what the extractor found wrong in the response, and where.
    pub fn extract_error(&self) -> Option<&ExtractError> {
        match self {
            Self::NotPms { source, .. } => Some(source),
            _ => None,
        }
    }

    /// True when the thing asked for does not exist (404, no such library or item).
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::NotFound { .. } | Self::SectionNotFound { .. })
    }

    /// Finds a `ClientError` in an error's source chain, e.g. inside the
    /// `plexcache_core::Error::Fetch` returned by the `PlexCache::*_via` helpers.
    ///
    /// ```
    /// # use plexcache_plex::client::ClientError;
    /// fn exit_code(err: &plexcache_core::Error) -> i32 {
    ///     match ClientError::find(err) {
    ///         Some(e) if e.is_not_found() => 3,
    ///         _ => 1,
    ///     }
    /// }
    /// ```
    pub fn find<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a ClientError> {
        let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
        while let Some(e) = cur {
            if let Some(found) = e.downcast_ref::<ClientError>() {
                return Some(found);
            }
            // `plexcache_core::Error::Fetch` shares the fetch error as an `Arc<dyn Error>`,
            // which is itself the source (an `Error` that shows the inner error's message but
            // reports the inner error's source as its own): look inside it.
            if let Some(shared) = e.downcast_ref::<SharedError>()
                && let Some(found) = (**shared).downcast_ref::<ClientError>()
            {
                return Some(found);
            }
            cur = e.source();
        }
        None
    }
}

type SharedError = std::sync::Arc<dyn std::error::Error + Send + Sync + 'static>;

/// HTTP statuses worth retrying: server errors and "too many requests".
pub(crate) fn is_retryable_status(status: u16) -> bool {
    status == 429 || status == 408 || (500..=599).contains(&status)
}
