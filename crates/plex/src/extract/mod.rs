//! Streaming extraction of [`PlexItem`]s and [`Section`]s from PMS responses.
//!
//! Both parsers read the response once, front to back, keep only the fields of
//! [`PlexItem`]/[`Section`] and skip everything else without building a document tree:
//! JSON through `serde_json`'s streaming deserializer with hand-written visitors (skipped values
//! go through [`serde::de::IgnoredAny`]), XML through `quick-xml`'s pull reader.
//!
//! The rules (see `docs/plex.md` for the full list):
//! - items are the direct entries of `MediaContainer` (JSON `Metadata[]` and `Directory[]`; XML
//!   `<Video>`, `<Directory>`, `<Track>`, `<Photo>`, `<Playlist>`, `<Metadata>`), of its hubs
//!   (`/hubs/search`: JSON `Hub[].Metadata[]`, XML `<Hub>` children) and of its search results
//!   (`/library/search`: JSON `SearchResult[].Metadata`); entries nested deeper (an `OnDeck`
//!   episode inside a show) are not;
//! - an entry without a `ratingKey` is not an item;
//! - `file_paths` are every `Part` `file` of every `Media`, else the `Location` `path`s;
//! - `librarySectionID` is copied down from the hub or container to items that lack it;
//! - numbers may be sent as numbers or numeric strings; `MediaContainer.size` is not trusted;
//! - the characters python-plexapi removes before parsing (XML 1.0's forbidden control
//!   characters, and a few more: [`is_stripped`]) are removed from every string kept.

mod json;
mod xml;

use std::borrow::Cow;
use std::io::{BufRead, Read as _};

use crate::error::{ExtractError, Format};
use crate::item::{CompactString, Extracted, ItemKind, PlexItem, Section};

/// What a pass collects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Items (entries with a `ratingKey`).
    Items,
    /// Library sections (entries without a `ratingKey` whose `key` is a number).
    Sections,
}

/// The fields of one entry, as read.
#[derive(Debug, Default)]
pub(crate) struct Entry {
    pub rating_key: Option<CompactString>,
    pub key: Option<CompactString>,
    pub title: Option<CompactString>,
    pub kind: Option<String>,
    pub year: Option<u32>,
    pub updated_at: Option<i64>,
    pub library_section_id: Option<u32>,
    pub uuid: Option<String>,
    pub files: Vec<String>,
    pub locations: Vec<String>,
    /// XML only: the element was a `<Directory>` (a `photo` directory is a photo album).
    pub is_directory_tag: bool,
    /// XML only: kind implied by the element name when `type` is missing.
    pub tag_kind: Option<ItemKind>,
}

impl Entry {
    fn kind(&self) -> ItemKind {
        match self.kind.as_deref() {
            Some("photo")
                if self.is_directory_tag
                    || self
                        .key
                        .as_deref()
                        .is_some_and(|k| k.ends_with("/children")) =>
            {
                ItemKind::PhotoAlbum
            }
            Some(t) => ItemKind::from_plex_type(t),
            None => self
                .tag_kind
                .clone()
                .unwrap_or_else(|| ItemKind::Other(String::new())),
        }
    }
}

/// What one pass over a container collects.
#[derive(Debug)]
pub(crate) struct Collector {
    pub mode: Mode,
    pub items: Vec<PlexItem>,
    pub sections: Vec<Section>,
    pub entries: u64,
    pub size: Option<u64>,
    pub total_size: Option<u64>,
    pub offset: Option<u64>,
    pub library_section_id: Option<u32>,
    /// Set once a `MediaContainer` was seen.
    pub saw_container: bool,
}

impl Collector {
    pub(crate) fn new(mode: Mode) -> Self {
        Self {
            mode,
            items: Vec::new(),
            sections: Vec::new(),
            entries: 0,
            size: None,
            total_size: None,
            offset: None,
            library_section_id: None,
            saw_container: false,
        }
    }

    /// Records one entry of the container, of a hub or of a search result. `direct` entries
    /// (children of `MediaContainer` itself) are counted in [`Extracted::entries`].
    pub(crate) fn push_entry(&mut self, mut entry: Entry, direct: bool) {
        if direct {
            self.entries += 1;
        }
        match self.mode {
            Mode::Items => {
                let Some(rating_key) = entry.rating_key.take() else {
                    return;
                };
                let kind = entry.kind();
                let file_paths = if entry.files.is_empty() {
                    std::mem::take(&mut entry.locations)
                } else {
                    std::mem::take(&mut entry.files)
                };
                self.items.push(PlexItem {
                    rating_key,
                    key: entry.key.take().unwrap_or_default(),
                    title: entry.title.take().unwrap_or_default(),
                    kind,
                    file_paths,
                    year: entry.year,
                    updated_at: entry.updated_at,
                    library_section_id: entry.library_section_id,
                });
            }
            Mode::Sections => {
                if entry.rating_key.is_some() {
                    return;
                }
                let Some(key) = entry.key.take() else {
                    return;
                };
                let Ok(id) = key.trim().parse::<u32>() else {
                    return;
                };
                let kind = entry
                    .kind
                    .as_deref()
                    .map_or_else(|| ItemKind::Other(String::new()), ItemKind::from_plex_type);
                self.sections.push(Section {
                    id,
                    key: key.into(),
                    title: entry.title.take().unwrap_or_default().into(),
                    kind,
                    locations: std::mem::take(&mut entry.locations),
                    updated_at: entry.updated_at,
                    uuid: entry.uuid.take(),
                });
            }
        }
    }

    /// Copies `section_id` down to the items from index `from` on that lack one.
    pub(crate) fn copy_down_section(&mut self, from: usize, section_id: Option<u32>) {
        if let Some(id) = section_id {
            for item in self.items.iter_mut().skip(from) {
                if item.library_section_id.is_none() {
                    item.library_section_id = Some(id);
                }
            }
        }
    }

    pub(crate) fn into_extracted(mut self) -> Extracted {
        self.copy_down_section(0, self.library_section_id);
        Extracted {
            items: self.items,
            entries: self.entries,
            offset: self.offset,
            total_size: self.total_size,
            size: self.size,
            library_section_id: self.library_section_id,
        }
    }
}

/// Whether `c` is one of the characters python-plexapi removes from a response before parsing
/// it (`plexapi.utils.cleanXMLString`, used by `parseXMLString`): C0 controls but tab, line
/// feed and carriage return; DEL and the C1 controls but U+0085; U+FDD0..=U+FDDF; and
/// U+xFFFE, U+xFFFF in every plane. The extractors drop them from every string they keep.
pub(crate) fn is_stripped(c: char) -> bool {
    let u = u32::from(c);
    matches!(
        u,
        0x00..=0x08 | 0x0B..=0x0C | 0x0E..=0x1F | 0x7F..=0x84 | 0x86..=0x9F | 0xFDD0..=0xFDDF
    ) || u & 0xFFFE == 0xFFFE
}

/// A cheap first look: false when `s` surely holds no [`is_stripped`] character. Every such
/// character is ASCII below 0x20 or 0x7F, or its UTF-8 form starts with 0xC2 (U+0080..U+00BF),
/// 0xEF (U+F000..U+FFFF) or 0xF0..=0xF4 (the other planes).
fn may_need_stripping(s: &str) -> bool {
    s.bytes().any(|b| {
        (b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r')) || b == 0x7F || b == 0xC2 || b >= 0xEF
    })
}

/// `s` without the [`is_stripped`] characters; borrowed (no allocation) when it has none.
pub(crate) fn strip_str(s: &str) -> Cow<'_, str> {
    if may_need_stripping(s) && s.chars().any(is_stripped) {
        Cow::Owned(s.chars().filter(|&c| !is_stripped(c)).collect())
    } else {
        Cow::Borrowed(s)
    }
}

/// `s` without the [`is_stripped`] characters, removed in place.
pub(crate) fn strip_string(mut s: String) -> String {
    if may_need_stripping(&s) {
        s.retain(|c| !is_stripped(c));
    }
    s
}

/// An owned copy of `s` without the [`is_stripped`] characters: at most one allocation (none
/// for a short [`CompactString`]).
pub(crate) fn stripped_owned<T: for<'a> From<&'a str> + From<String>>(s: Cow<'_, str>) -> T {
    match s {
        Cow::Borrowed(b) => match strip_str(b) {
            Cow::Borrowed(b) => T::from(b),
            Cow::Owned(o) => T::from(o),
        },
        Cow::Owned(o) => T::from(strip_string(o)),
    }
}

/// Parses an integer sent as a decimal string (XML attributes, JSON numeric strings).
///
/// Surrounding whitespace is ignored; an empty string is `None`; an integral float such as
/// `"2016.0"` is accepted. Anything else is an error message.
pub(crate) fn parse_int<T>(s: &str) -> Result<Option<T>, String>
where
    T: TryFrom<i128>,
{
    let t = s.trim();
    if t.is_empty() {
        return Ok(None);
    }
    let wide: i128 = match t.parse::<i128>() {
        Ok(v) => v,
        Err(_) => match t.parse::<f64>() {
            Ok(f) if f.is_finite() && f.fract() == 0.0 && f.abs() < 1e30 => f as i128,
            _ => return Err(format!("{s:?} is not an integer")),
        },
    };
    T::try_from(wide)
        .map(Some)
        .map_err(|_| format!("{t} is out of range"))
}

/// Returns the document format from the first non-whitespace byte (after a UTF-8 byte-order
/// mark): `{` or `[` is JSON, `<` is XML. `None` for anything else, including empty input.
pub fn detect_format(bytes: &[u8]) -> Option<Format> {
    let body = strip_bom(bytes);
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{' | b'[') => Some(Format::Json),
        Some(b'<') => Some(Format::Xml),
        _ => None,
    }
}

fn strip_bom(bytes: &[u8]) -> &[u8] {
    bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes)
}

fn format_or_error(bytes: &[u8]) -> Result<Format, ExtractError> {
    if let Some(f) = detect_format(bytes) {
        return Ok(f);
    }
    let body = strip_bom(bytes);
    match body.iter().position(|b| !b.is_ascii_whitespace()) {
        None => Err(ExtractError::Empty),
        Some(i) => Err(not_json_or_xml(
            (bytes.len() - body.len() + i) as u64,
            &body[i..],
        )),
    }
}

fn not_json_or_xml(offset: u64, rest: &[u8]) -> ExtractError {
    let found: String = String::from_utf8_lossy(&rest[..rest.len().min(40)])
        .chars()
        .take(20)
        .collect();
    ExtractError::NotJsonOrXml { offset, found }
}

/// Extracts the items and paging info of a PMS response, JSON or XML (detected from the first
/// non-whitespace byte; a UTF-8 byte-order mark is skipped).
///
/// Works for `/library/sections/{id}/all`, `/library/metadata/{id}`, `/children`,
/// `/allLeaves`, `/hubs/search` and `/library/search` responses.
///
/// # Errors
/// [`ExtractError`] when the input is empty, not JSON/XML, malformed, truncated, has values of
/// the wrong type, or has no `MediaContainer`.
pub fn extract_items(bytes: &[u8]) -> Result<Extracted, ExtractError> {
    match format_or_error(bytes)? {
        Format::Json => extract_items_json(bytes),
        Format::Xml => extract_items_xml(bytes),
    }
}

/// Extracts the items of a JSON response (`Accept: application/json`).
///
/// # Errors
/// See [`extract_items`].
pub fn extract_items_json(bytes: &[u8]) -> Result<Extracted, ExtractError> {
    let result = json::extract_slice(strip_bom(bytes), Mode::Items).map(Collector::into_extracted);
    trace_items(Some(Format::Json), Some(bytes.len()), &result);
    result
}

/// Extracts the items of an XML response.
///
/// # Errors
/// See [`extract_items`].
pub fn extract_items_xml(bytes: &[u8]) -> Result<Extracted, ExtractError> {
    let result = xml::extract_slice(strip_bom(bytes), Mode::Items).map(Collector::into_extracted);
    trace_items(Some(Format::Xml), Some(bytes.len()), &result);
    result
}

/// Extracts the items of a response read from a stream (a file, an HTTP body), JSON or XML,
/// without reading the whole response into memory first.
///
/// # Errors
/// See [`extract_items`]; also [`ExtractError::Io`] when reading fails.
pub fn extract_items_from_reader<R: BufRead>(reader: R) -> Result<Extracted, ExtractError> {
    let result = from_reader(reader, Mode::Items).map(Collector::into_extracted);
    trace_items(None, None, &result);
    result
}

/// Logs the outcome of an extraction at debug level (the error is also returned).
fn trace_items(
    format: Option<Format>,
    bytes: Option<usize>,
    result: &Result<Extracted, ExtractError>,
) {
    match result {
        Ok(page) => tracing::debug!(
            format = ?format,
            bytes = ?bytes,
            items = page.items.len(),
            entries = page.entries,
            total_size = ?page.total_size,
            "extracted PMS response"
        ),
        Err(e) => {
            tracing::debug!(format = ?format, bytes = ?bytes, error = %e, "PMS response rejected")
        }
    }
}

/// Extracts the library sections of a `/library/sections` response, JSON or XML.
///
/// Sections are the container's entries without a `ratingKey` whose `key` is a number; other
/// entries are skipped.
///
/// # Errors
/// See [`extract_items`].
pub fn extract_sections(bytes: &[u8]) -> Result<Vec<Section>, ExtractError> {
    let body = strip_bom(bytes);
    let collector = match format_or_error(bytes)? {
        Format::Json => json::extract_slice(body, Mode::Sections)?,
        Format::Xml => xml::extract_slice(body, Mode::Sections)?,
    };
    Ok(collector.sections)
}

/// Extracts the library sections of a `/library/sections` response read from a stream.
///
/// # Errors
/// See [`extract_items_from_reader`].
pub fn extract_sections_from_reader<R: BufRead>(reader: R) -> Result<Vec<Section>, ExtractError> {
    from_reader(reader, Mode::Sections).map(|c| c.sections)
}

fn from_reader<R: BufRead>(mut reader: R, mode: Mode) -> Result<Collector, ExtractError> {
    // Peek past a byte-order mark and leading whitespace to find the format. The whitespace is
    // handed back to the parser (so JSON line numbers and XML offsets count it); the BOM is not,
    // as with slices.
    let mut prefix: Vec<u8> = Vec::new();
    let mut bom_checked = false;
    let format = loop {
        let buf = match reader.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(ExtractError::Io(e)),
        };
        if buf.is_empty() {
            return Err(ExtractError::Empty);
        }
        if !bom_checked {
            bom_checked = true;
            if buf.len() < 3 && buf[0] == 0xEF {
                // A short read of what may be a BOM.
                let mut bom = [0u8; 3];
                reader.read_exact(&mut bom).map_err(ExtractError::Io)?;
                if bom != *b"\xEF\xBB\xBF" {
                    return Err(not_json_or_xml(0, &bom));
                }
                continue;
            }
            if buf.starts_with(b"\xEF\xBB\xBF") {
                reader.consume(3);
                continue;
            }
        }
        let ws = buf.iter().take_while(|b| b.is_ascii_whitespace()).count();
        if ws == buf.len() {
            prefix.extend_from_slice(buf);
            reader.consume(ws);
            continue;
        }
        let format = match buf[ws] {
            b'{' | b'[' => Format::Json,
            b'<' => Format::Xml,
            _ => return Err(not_json_or_xml((prefix.len() + ws) as u64, &buf[ws..])),
        };
        break format;
    };
    let reader = std::io::Cursor::new(prefix).chain(reader);
    match format {
        Format::Json => json::extract_reader(reader, mode),
        Format::Xml => xml::extract_reader(reader, mode),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_int_accepts_numbers_as_strings() {
        assert_eq!(parse_int::<u32>("2016"), Ok(Some(2016)));
        assert_eq!(parse_int::<u32>(" 2016 "), Ok(Some(2016)));
        assert_eq!(parse_int::<u32>("2016.0"), Ok(Some(2016)));
        assert_eq!(parse_int::<u32>(""), Ok(None));
        assert_eq!(parse_int::<i64>("-5"), Ok(Some(-5)));
        assert!(parse_int::<u32>("-5").is_err());
        assert!(parse_int::<u32>("abc").is_err());
        assert!(parse_int::<u32>("1.5").is_err());
        assert!(parse_int::<u64>("5000000000").is_ok());
        assert!(parse_int::<u32>("5000000000").is_err());
    }

    #[test]
    fn strings_without_stripped_characters_are_not_copied() {
        for clean in [
            "",
            "Alien",
            "Amélie © 2001 🎬",
            "tab\there\r\n",
            "NEL\u{85}",
            "\u{FFFD}",
        ] {
            assert!(matches!(strip_str(clean), Cow::Borrowed(_)), "{clean:?}");
            assert_eq!(strip_string(clean.to_owned()), clean);
        }
        assert_eq!(strip_str("a\u{1b}[31mb\u{7f}\u{9b}\u{10FFFF}"), "a[31mb");
        assert_eq!(stripped_owned::<String>(Cow::Borrowed("x\u{0}y")), "xy");
        assert_eq!(
            stripped_owned::<String>(Cow::Owned("x\u{FDD0}y".to_owned())),
            "xy"
        );
        assert_eq!(
            stripped_owned::<CompactString>(Cow::Borrowed("x\u{0}y")),
            "xy"
        );
    }

    #[test]
    fn detects_format() {
        assert_eq!(detect_format(b"  {\"a\":1}"), Some(Format::Json));
        assert_eq!(detect_format(b"\xEF\xBB\xBF<?xml?>"), Some(Format::Xml));
        assert_eq!(detect_format(b"\n\t<MediaContainer/>"), Some(Format::Xml));
        assert_eq!(detect_format(b"HTTP/1.1 401"), None);
        assert_eq!(detect_format(b""), None);
    }
}
