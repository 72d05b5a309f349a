//! [`LibraryView`]: a stored library listing read in place, items borrowing their strings
//! from the stored bytes.
//!
//! A listing is stored as a `Vec<PlexItem>` in the cache's envelope. Decoding it into owned
//! items allocates five or six strings per item; a view instead checks the envelope once
//! (schema, checksum bound to the key), walks the payload once (every string checked as
//! UTF-8 there), and hands out [`PlexItemRef`]s whose fields are `&str`s into the stored
//! bytes. The view owns those bytes (shared, not copied, with the cache's memory tier), so it
//! can be kept, shared between threads (`Arc<LibraryView>`) and outlive the read.
//!
//! ```
//! use plexcache_plex::{ItemKind, LibraryView, PlexItem};
//!
//! let items = vec![PlexItem {
//!     rating_key: "7".into(),
//!     key: "/library/metadata/7".into(),
//!     title: "Amélie".into(),
//!     kind: ItemKind::Movie,
//!     file_paths: vec!["/movies/Amélie (2001)/Amélie.mkv".into()],
//!     year: Some(2001),
//!     updated_at: None,
//!     library_section_id: Some(1),
//! }];
//! let key = plexcache_plex::keys::library_key("Movies");
//! let bytes = plexcache_core::codec::encode(&key, &items).unwrap();
//! let view = LibraryView::from_envelope(&key, bytes).unwrap();
//! assert_eq!(view.len(), 1);
//! let item = view.find_by_path("/movies/Amélie (2001)/Amélie.mkv").unwrap();
//! assert_eq!(item.title, "Amélie");
//! assert_eq!(item.to_owned(), items[0]);
//! ```

use std::collections::HashMap;
use std::sync::OnceLock;

use plexcache_core::Bytes;
use plexcache_core::codec::{self, CacheValue, DecodeError};

use crate::item::{ItemKind, PlexItem};

/// One item of a [`LibraryView`]: the fields of [`PlexItem`], borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlexItemRef<'a> {
    /// The item's `ratingKey`.
    pub rating_key: &'a str,
    /// The item's `key`.
    pub key: &'a str,
    /// The item's title.
    pub title: &'a str,
    /// The item's PMS type string (`movie`, `episode`, ...; see [`PlexItemRef::kind`]).
    pub kind_str: &'a str,
    /// Every file path of the item, in document order.
    pub file_paths: &'a [&'a str],
    /// `year`, when present.
    pub year: Option<u32>,
    /// `updatedAt`, when present.
    pub updated_at: Option<i64>,
    /// `librarySectionID`, when present.
    pub library_section_id: Option<u32>,
}

impl PlexItemRef<'_> {
    /// The item's kind.
    pub fn kind(&self) -> ItemKind {
        ItemKind::from_plex_type(self.kind_str)
    }

    /// An owned copy.
    #[allow(clippy::wrong_self_convention)] // `to_owned` is the name users look for
    pub fn to_owned(&self) -> PlexItem {
        PlexItem {
            rating_key: self.rating_key.to_owned(),
            key: self.key.to_owned(),
            title: self.title.to_owned(),
            kind: self.kind(),
            file_paths: self.file_paths.iter().map(|p| (*p).to_owned()).collect(),
            year: self.year,
            updated_at: self.updated_at,
            library_section_id: self.library_section_id,
        }
    }
}

/// An item's fields, with its paths as a range of the view's path table.
#[derive(Debug)]
struct Row<'a> {
    rating_key: &'a str,
    key: &'a str,
    title: &'a str,
    kind: &'a str,
    paths: (u32, u32),
    year: Option<u32>,
    updated_at: Option<i64>,
    library_section_id: Option<u32>,
}

#[derive(Debug)]
struct Index<'a> {
    rows: Vec<Row<'a>>,
    paths: Vec<&'a str>,
}

self_cell::self_cell!(
    struct Cell {
        owner: Bytes,
        #[covariant]
        dependent: Index,
    }

    impl {Debug}
);

/// A stored library listing read in place (see the [module documentation](self)).
pub struct LibraryView {
    cell: Cell,
    /// Item numbers by a hash of their rating key, built on the first lookup.
    by_rating_key: OnceLock<HashMap<u64, Vec<u32>>>,
    /// Item numbers by a hash of each of their paths, built on the first lookup.
    by_path: OnceLock<HashMap<u64, Vec<u32>>>,
}

impl std::fmt::Debug for LibraryView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LibraryView")
            .field("items", &self.len())
            .field("bytes", &self.cell.borrow_owner().len())
            .finish()
    }
}

impl LibraryView {
    /// Checks `envelope` (the stored bytes of a `Vec<PlexItem>` written under `key`) and
    /// indexes its items. Any damage, another type or another key is a [`DecodeError`].
    pub fn from_envelope(key: &str, envelope: Bytes) -> Result<Self, DecodeError> {
        codec::check_envelope(key, &envelope, <Vec<PlexItem>>::SCHEMA)?;
        // The envelope was checked: its payload starts after the header.
        let cell = Cell::try_new(envelope, |bytes| {
            parse(bytes.get(codec::HEADER_LEN..).unwrap_or_default())
        })?;
        Ok(Self {
            cell,
            by_rating_key: OnceLock::new(),
            by_path: OnceLock::new(),
        })
    }

    /// Number of items.
    pub fn len(&self) -> usize {
        self.cell.borrow_dependent().rows.len()
    }

    /// Whether the library has no items.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The stored bytes the view reads (the whole envelope).
    pub fn stored_bytes(&self) -> &Bytes {
        self.cell.borrow_owner()
    }

    /// Item `i`, in stored order.
    pub fn get(&self, i: usize) -> Option<PlexItemRef<'_>> {
        let index = self.cell.borrow_dependent();
        index.rows.get(i).map(|row| item(index, row))
    }

    /// Every item, in stored order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = PlexItemRef<'_>> + '_ {
        let index = self.cell.borrow_dependent();
        index.rows.iter().map(move |row| item(index, row))
    }

    /// Every item, owned.
    pub fn to_vec(&self) -> Vec<PlexItem> {
        self.iter().map(|i| i.to_owned()).collect()
    }

    /// The first item whose `ratingKey` is `rating_key`. The first lookup builds a hash index
    /// of the view (O(n)); later ones are O(1).
    pub fn find_by_rating_key(&self, rating_key: &str) -> Option<PlexItemRef<'_>> {
        let map = self.by_rating_key.get_or_init(|| {
            let mut map: HashMap<u64, Vec<u32>> = HashMap::with_capacity(self.len());
            for (n, item) in self.iter().enumerate() {
                map.entry(hash(item.rating_key)).or_default().push(n as u32);
            }
            map
        });
        self.first_of(map.get(&hash(rating_key))?, |i| i.rating_key == rating_key)
    }

    /// The first item with `path` among its file paths. The first lookup builds a hash
    /// index of the view (O(n)); later ones are O(1).
    pub fn find_by_path(&self, path: &str) -> Option<PlexItemRef<'_>> {
        let map = self.by_path.get_or_init(|| {
            let mut map: HashMap<u64, Vec<u32>> = HashMap::with_capacity(self.len());
            for (n, item) in self.iter().enumerate() {
                for p in item.file_paths {
                    map.entry(hash(p)).or_default().push(n as u32);
                }
            }
            map
        });
        self.first_of(map.get(&hash(path))?, |i| i.file_paths.contains(&path))
    }

    fn first_of(
        &self,
        candidates: &[u32],
        matches: impl Fn(&PlexItemRef<'_>) -> bool,
    ) -> Option<PlexItemRef<'_>> {
        candidates
            .iter()
            .filter_map(|n| self.get(*n as usize))
            .find(|i| matches(i))
    }
}

fn hash(s: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(s.as_bytes())
}

fn item<'a>(index: &'a Index<'a>, row: &Row<'a>) -> PlexItemRef<'a> {
    let (start, len) = (row.paths.0 as usize, row.paths.1 as usize);
    PlexItemRef {
        rating_key: row.rating_key,
        key: row.key,
        title: row.title,
        kind_str: row.kind,
        file_paths: index.paths.get(start..start + len).unwrap_or(&[]),
        year: row.year,
        updated_at: row.updated_at,
        library_section_id: row.library_section_id,
    }
}

/// A cursor over postcard bytes, for the layout of `Vec<PlexItem>`.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

fn payload(detail: impl Into<String>) -> DecodeError {
    DecodeError::Payload(detail.into())
}

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Result<u8, DecodeError> {
        let b = *self
            .bytes
            .get(self.at)
            .ok_or_else(|| payload("unexpected end of the library listing"))?;
        self.at += 1;
        Ok(b)
    }

    fn varint(&mut self, max_bytes: u32) -> Result<u64, DecodeError> {
        let mut out = 0u64;
        for i in 0..max_bytes {
            let b = self.byte()?;
            out |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(out);
            }
        }
        Err(payload("varint too long"))
    }

    fn len(&mut self) -> Result<usize, DecodeError> {
        let n = self.varint(10)?;
        let n = usize::try_from(n).map_err(|_| payload("length out of range"))?;
        // A length longer than what is left is damage, not an allocation request.
        if n > self.bytes.len() - self.at {
            return Err(payload("length beyond the end of the listing"));
        }
        Ok(n)
    }

    fn str(&mut self) -> Result<&'a str, DecodeError> {
        let n = self.len()?;
        let raw = &self.bytes[self.at..self.at + n];
        self.at += n;
        simdutf8::basic::from_utf8(raw).map_err(|_| payload("a string is not valid UTF-8"))
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        u32::try_from(self.varint(5)?).map_err(|_| payload("u32 out of range"))
    }

    fn i64(&mut self) -> Result<i64, DecodeError> {
        let z = self.varint(10)?;
        Ok(((z >> 1) as i64) ^ -((z & 1) as i64))
    }

    fn option<T>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<T, DecodeError>,
    ) -> Result<Option<T>, DecodeError> {
        match self.byte()? {
            0 => Ok(None),
            1 => f(self).map(Some),
            b => Err(payload(format!("option tag {b}"))),
        }
    }
}

/// Walks a `Vec<PlexItem>` in postcard (the layout serde gives [`PlexItem`]'s fields, in
/// declaration order), checking every string.
fn parse(bytes: &[u8]) -> Result<Index<'_>, DecodeError> {
    let mut r = Reader { bytes, at: 0 };
    let n = r.len()?;
    let mut rows = Vec::with_capacity(n);
    let mut paths = Vec::with_capacity(n + n / 4);
    for _ in 0..n {
        let rating_key = r.str()?;
        let key = r.str()?;
        let title = r.str()?;
        let kind = r.str()?;
        let count = r.len()?;
        let start = paths.len();
        for _ in 0..count {
            paths.push(r.str()?);
        }
        let year = r.option(Reader::u32)?;
        let updated_at = r.option(Reader::i64)?;
        let library_section_id = r.option(Reader::u32)?;
        let range = (
            u32::try_from(start).map_err(|_| payload("too many paths"))?,
            u32::try_from(count).map_err(|_| payload("too many paths"))?,
        );
        rows.push(Row {
            rating_key,
            key,
            title,
            kind,
            paths: range,
            year,
            updated_at,
            library_section_id,
        });
    }
    if r.at != bytes.len() {
        return Err(payload(format!(
            "{} trailing bytes after the listing",
            bytes.len() - r.at
        )));
    }
    Ok(Index { rows, paths })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn items() -> Vec<PlexItem> {
        (0..50)
            .map(|i| PlexItem {
                rating_key: format!("{}", 1000 + i),
                key: format!("/library/metadata/{}", 1000 + i),
                title: if i % 3 == 0 {
                    format!("Ünïcødé {i} 🎬")
                } else {
                    format!("Title {i}")
                },
                kind: if i % 7 == 0 {
                    ItemKind::Other("trailer".into())
                } else {
                    ItemKind::Movie
                },
                file_paths: (0..(i % 3))
                    .map(|p| format!("/m/{i}/part{p}.mkv"))
                    .collect(),
                year: (i % 2 == 0).then_some(1990 + i as u32),
                updated_at: (i % 5 != 0).then_some(-(i as i64) * 1_000_003),
                library_section_id: (i % 4 != 0).then_some(i as u32),
            })
            .collect()
    }

    #[test]
    fn a_view_reads_exactly_what_serde_decodes() {
        let items = items();
        let bytes = codec::encode("lib", &items).unwrap();
        let view = LibraryView::from_envelope("lib", bytes).unwrap();
        assert_eq!(view.to_vec(), items);
        assert_eq!(view.len(), items.len());
        assert_eq!(view.get(3).unwrap().to_owned(), items[3]);
        assert!(view.get(50).is_none());
    }

    #[test]
    fn lookups_by_rating_key_and_path() {
        let items = items();
        let view =
            LibraryView::from_envelope("lib", codec::encode("lib", &items).unwrap()).unwrap();
        assert_eq!(view.find_by_rating_key("1007").unwrap().title, "Title 7");
        assert!(view.find_by_rating_key("1").is_none());
        assert_eq!(
            view.find_by_path("/m/8/part1.mkv").unwrap().rating_key,
            "1008"
        );
        assert!(view.find_by_path("/m/8/part2.mkv").is_none());
    }

    #[test]
    fn damage_another_key_or_another_type_is_an_error() {
        let items = items();
        let bytes = codec::encode("lib", &items).unwrap();
        assert_eq!(
            LibraryView::from_envelope("other", bytes.clone()).err(),
            Some(DecodeError::Checksum)
        );
        let strings = codec::encode("lib", &vec!["a".to_string()]).unwrap();
        assert!(matches!(
            LibraryView::from_envelope("lib", strings),
            Err(DecodeError::SchemaMismatch { .. })
        ));
        for cut in [0, 1, bytes.len() / 2, bytes.len() - 1] {
            assert!(LibraryView::from_envelope("lib", bytes.slice(..cut)).is_err());
        }
    }

    #[test]
    fn a_payload_with_a_valid_checksum_but_bad_contents_is_an_error() {
        // Lengths that point past the end, invalid UTF-8, bad option tags, trailing bytes:
        // re-sealed with a valid checksum, so only the walk can catch them.
        let seal = |payload: &[u8]| {
            codec::encode_tagged("lib", &Raw(payload), <Vec<PlexItem>>::SCHEMA).unwrap()
        };
        for payload in [
            &[0x05][..],
            &[0x01, 0x03, b'a'][..],
            &[0x01, 0x01, 0xff, 0, 0, 0, 0, 0, 0, 0][..],
            &[0x01, 0, 0, 0, 0, 0, 7, 0, 0][..],
            &[0x00, 0x00][..],
            &[
                0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
            ][..],
        ] {
            assert!(
                LibraryView::from_envelope("lib", seal(payload)).is_err(),
                "{payload:?}"
            );
        }
        assert!(
            LibraryView::from_envelope("lib", seal(&[0x00]))
                .unwrap()
                .is_empty()
        );
    }

    /// Serializes as its bytes verbatim (postcard writes a tuple of u8 byte by byte).
    struct Raw<'a>(&'a [u8]);
    impl serde::Serialize for Raw<'_> {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            use serde::ser::SerializeTuple;
            let mut t = s.serialize_tuple(self.0.len())?;
            for b in self.0 {
                t.serialize_element(b)?;
            }
            t.end()
        }
    }
}
