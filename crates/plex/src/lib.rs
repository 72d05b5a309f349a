//! Plex Media Server support for plexcache: what a sync tool needs from PMS responses, and the
//! cache keys it is stored under.
//!
//! - [`PlexItem`], [`ItemKind`], [`Section`], [`Extracted`]: the essential data of library
//!   entries (key, title, kind, file paths, a few optionals), never the whole response.
//! - Streaming extraction from PMS responses in JSON and XML, tolerant of the quirks real
//!   servers send, with errors that say what went wrong and where: [`extract_items`],
//!   [`extract_items_json`], [`extract_items_xml`], [`extract_items_from_reader`],
//!   [`extract_sections`], [`extract_sections_from_reader`].
//! - [`keys`]: the key schemes `library:{name}:all`, `search:{name}:{title}`,
//!   `match:{name}:{path}` with escaped components, their per-library prefixes and a decoder.
//! - `synthetic` (cargo feature `synthetic`): a deterministic generator of large `/all`
//!   responses for benchmarks and tests.
//! - `client` (cargo feature `client`): an async PMS HTTP client (`PlexClient`) with paging,
//!   retries and a token that never leaves its header, plus `PlexCache` cache-aside helpers
//!   over it (`library_items_via`, `search_via`).
//!
//! ```
//! use plexcache_plex::{extract_items, ItemKind};
//!
//! let xml = br#"<MediaContainer size="1" librarySectionID="2" totalSize="1" offset="0">
//!   <Video ratingKey="53945" key="/library/metadata/53945" type="movie" title="Am&#233;lie" year="2001">
//!     <Media><Part file="/movies/Am&#233;lie (2001)/Am&#233;lie.mkv" size="4630104563"/></Media>
//!     <Genre tag="Comedy"/>
//!   </Video>
//! </MediaContainer>"#;
//! let page = extract_items(xml)?;
//! assert_eq!(page.items[0].title, "Amélie");
//! assert_eq!(page.items[0].kind, ItemKind::Movie);
//! assert_eq!(page.items[0].file_paths, ["/movies/Amélie (2001)/Amélie.mkv"]);
//! assert_eq!(page.items[0].library_section_id, Some(2)); // copied down from the container
//! assert!(!page.has_more());
//! # Ok::<(), plexcache_plex::ExtractError>(())
//! ```

mod cache;
#[cfg(feature = "client")]
pub mod client;
mod error;
mod extract;
mod item;
pub mod keys;
pub mod listing;
#[cfg(feature = "synthetic")]
pub mod synthetic;
pub mod view;

pub use cache::{DEFAULT_LIBRARY_TTL, PlexCache, PlexCacheBuilder, default_cache_dir};
#[cfg(feature = "client")]
pub use client::{ClientError, LibraryFetch, PlexClient, PlexClientBuilder, SectionRef};
pub use error::{ExtractError, Format, Position};
pub use extract::{
    detect_format, extract_items, extract_items_from_reader, extract_items_json, extract_items_xml,
    extract_sections, extract_sections_from_reader,
};
pub use item::{CompactString, Extracted, ItemKind, Page, PlexItem, Section};
pub use keys::{
    KeyKind, ParsedKey, library_key, library_prefixes, match_key, parse_key, search_key,
};
pub use listing::{Listing, ListingRef, PlexItemRef};
pub use view::{LibraryView, ListingBuilder};
