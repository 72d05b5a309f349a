//! [`LibraryView`]: a stored library listing read in place, items borrowing their strings
//! from the stored bytes.
//!
//! A listing is stored as a [`Listing`] in the cache's envelope: all its strings in one text,
//! with tables of where each string ends and fixed records per item (see
//! [`crate::listing`]). Decoding it into owned items allocates five or six strings per item;
//! a view instead checks the envelope once (schema, checksum bound to the key) and the
//! tables once (the text as UTF-8 in one pass, every offset in bounds and on a character
//! boundary), and hands out [`PlexItemRef`]s whose fields are `&str`s into the stored bytes.
//! The view owns those bytes (shared, not copied, with the cache's memory tier), so it can be
//! kept, shared between threads (`Arc<LibraryView>`) and outlive the read.
//!
//! ```
//! use plexcache_plex::{ListingRef, ItemKind, LibraryView, PlexItem};
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
//! let bytes = plexcache_core::codec::encode_borrowed(&key, &ListingRef::new(&items))?;
//! let view = LibraryView::from_envelope(&key, bytes).unwrap();
//! assert_eq!(view.len(), 1);
//! let item = view.find_by_path("/movies/Amélie (2001)/Amélie.mkv").unwrap();
//! assert_eq!(item.title, "Amélie");
//! assert_eq!(item.to_owned(), items[0]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use plexcache_core::Bytes;
use plexcache_core::codec::{self, BorrowedValue, CacheValue, DecodeError};

use crate::item::PlexItem;
#[cfg(test)]
use crate::listing::ListingRef;
pub use crate::listing::PlexItemRef;
use crate::listing::{
    FIXED_STRINGS, HAS_SECTION, HAS_UPDATED_AT, HAS_YEAR, Listing, RECORD_LEN, RawBytes,
    check_records, damaged, item_ref, le_i64, le_u32, split, varint, varint_len,
};

self_cell::self_cell!(
    struct Cell {
        owner: Bytes,
        #[covariant]
        dependent: Tables,
    }

    impl {Debug}
);

self_cell::self_cell!(
    /// Every string of the listing as a `&str`, in stored order: what the items of
    /// [`LibraryView::get`] borrow. Built on first use, sliced from the checked text of the
    /// view's own tables, which it shares.
    struct StringTable {
        owner: Arc<Cell>,
        #[covariant]
        dependent: Strs,
    }
);

type Strs<'a> = Vec<&'a str>;

/// Item `r` with its strings from `strings` (the string table of its listing).
fn item_from<'s>(r: Record, strings: &'s [&'s str]) -> Option<PlexItemRef<'s>> {
    let s = strings.get(r.first..r.first + FIXED_STRINGS + r.paths)?;
    item_ref(s, r.year, r.updated_at, r.library_section_id)
}

/// A stored library listing read in place (see the [module documentation](self)).
pub struct LibraryView {
    cell: Arc<Cell>,
    /// The strings as `&str`s, for [`PlexItemRef`]s that outlive a call (built on the first
    /// [`get`](LibraryView::get) or [`iter`](LibraryView::iter)).
    strings: OnceLock<StringTable>,
    /// The first item of each rating key's hash, built on the second lookup.
    by_rating_key: OnceLock<HashMap<u64, u32>>,
    /// The first item of each path's hash, built on the second lookup.
    by_path: OnceLock<HashMap<u64, u32>>,
    /// Whether a lookup by rating key / by path already scanned the items.
    scanned_rating_key: AtomicBool,
    scanned_path: AtomicBool,
}

impl std::fmt::Debug for LibraryView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LibraryView")
            .field("items", &self.len())
            .field("bytes", &self.cell.borrow_owner().len())
            .finish()
    }
}

/// The tables of a listing, checked: `text` is UTF-8, every end is in order, in bounds and on
/// a character boundary, and every record's strings are in the string table. Strings are
/// sliced out of `text` when asked for, not in advance.
#[derive(Debug)]
struct Tables<'a> {
    text: &'a str,
    ends: &'a [u8],
    records: &'a [u8],
}

/// One item record, read.
#[derive(Clone, Copy)]
struct Record {
    first: usize,
    paths: usize,
    year: Option<u32>,
    updated_at: Option<i64>,
    library_section_id: Option<u32>,
}

impl<'a> Tables<'a> {
    /// Reads and checks the payload of a listing's envelope: the rules of the owned decode
    /// (`Parts::check`), without slicing every string.
    fn parse(payload: &'a [u8]) -> Result<Self, DecodeError> {
        let (text, ends, records) = split(payload)?;
        let text = simdutf8::basic::from_utf8(text)
            .map_err(|_| damaged("the listing's text is not valid UTF-8"))?;
        if !ends.len().is_multiple_of(4) || !records.len().is_multiple_of(RECORD_LEN) {
            return Err(damaged("a table of the listing has a partial row"));
        }
        // Ends in order and the last one at the end of the text: then every end is in bounds.
        // A byte at an end (if any) must start a character.
        let bytes = text.as_bytes();
        let mut prev = 0u32;
        let mut bad = false;
        for end in ends.chunks_exact(4) {
            let end = le_u32(end, 0);
            bad |= end < prev;
            bad |= bytes.get(end as usize).is_some_and(|b| (*b as i8) < -0x40);
            prev = end;
        }
        if bad {
            return Err(damaged("a string of the listing is out of bounds"));
        }
        if prev as usize != text.len() {
            return Err(damaged("the listing's strings do not cover its text"));
        }
        check_records(records, ends.len() / 4)?;
        Ok(Self {
            text,
            ends,
            records,
        })
    }

    fn len(&self) -> usize {
        self.records.len() / RECORD_LEN
    }

    fn record(&self, i: usize) -> Option<Record> {
        let r = self.records.get(i * RECORD_LEN..(i + 1) * RECORD_LEN)?;
        let mask = le_u32(r, 8);
        Some(Record {
            first: le_u32(r, 0) as usize,
            paths: le_u32(r, 4) as usize,
            year: (mask & HAS_YEAR != 0).then(|| le_u32(r, 12)),
            updated_at: (mask & HAS_UPDATED_AT != 0).then(|| le_i64(r, 20)),
            library_section_id: (mask & HAS_SECTION != 0).then(|| le_u32(r, 16)),
        })
    }

    /// Where string `j` is in the text.
    #[inline]
    fn span(&self, j: usize) -> (usize, usize) {
        let start = match j {
            0 => 0,
            _ => le_u32(self.ends, (j - 1) * 4) as usize,
        };
        (start, le_u32(self.ends, j * 4) as usize)
    }

    /// String `j` (checked in bounds and on character boundaries by `parse`, so never the
    /// empty fallback for a `j` a record names).
    #[inline]
    fn str(&self, j: usize) -> &'a str {
        let (start, end) = self.span(j);
        self.text.get(start..end).unwrap_or_default()
    }

    /// The bytes of string `j`, without slicing a `str`.
    #[inline]
    fn bytes(&self, j: usize) -> &'a [u8] {
        let (start, end) = self.span(j);
        self.text.as_bytes().get(start..end).unwrap_or_default()
    }

    /// The first item with a path of these bytes, scanning.
    fn scan_path(&self, path: &[u8]) -> Option<usize> {
        (0..self.len()).find(|&i| {
            self.record(i).is_some_and(|r| {
                let first = r.first + FIXED_STRINGS;
                (first..first + r.paths).any(|j| self.bytes(j) == path)
            })
        })
    }

    /// The first item with this rating key, scanning.
    fn scan_rating_key(&self, key: &[u8]) -> Option<usize> {
        (0..self.len()).find(|&i| self.record(i).is_some_and(|r| self.bytes(r.first) == key))
    }

    /// An item with its paths in `file_paths` (a slice the caller provides).
    fn item<'p>(&self, r: Record, file_paths: &'p [&'a str]) -> PlexItemRef<'p>
    where
        'a: 'p,
    {
        // The item's strings are consecutive: each starts where the previous one ends.
        let mut start = self.span(r.first).0;
        let mut next = |j: usize| {
            let end = le_u32(self.ends, j * 4) as usize;
            let s = self.text.get(start..end).unwrap_or_default();
            start = end;
            s
        };
        PlexItemRef {
            rating_key: next(r.first),
            key: next(r.first + 1),
            title: next(r.first + 2),
            kind_str: next(r.first + 3),
            file_paths,
            year: r.year,
            updated_at: r.updated_at,
            library_section_id: r.library_section_id,
        }
    }
}

/// Paths an item usually has at most: [`LibraryView::with_item`] holds them on the stack.
const INLINE_PATHS: usize = 8;

impl LibraryView {
    /// Checks `envelope` (the stored bytes of a [`Listing`] written under `key`) and its
    /// tables. Any damage, another type or another key is a [`DecodeError`].
    pub fn from_envelope(key: &str, envelope: Bytes) -> Result<Self, DecodeError> {
        codec::check_envelope(key, &envelope, Listing::SCHEMA)?;
        // The envelope was checked: its payload starts after the header.
        let cell = Cell::try_new(envelope, |bytes| {
            Tables::parse(bytes.get(codec::HEADER_LEN..).unwrap_or_default())
        })?;
        Ok(Self {
            cell: Arc::new(cell),
            strings: OnceLock::new(),
            by_rating_key: OnceLock::new(),
            by_path: OnceLock::new(),
            scanned_rating_key: AtomicBool::new(false),
            scanned_path: AtomicBool::new(false),
        })
    }

    fn tables(&self) -> &Tables<'_> {
        self.cell.borrow_dependent()
    }

    /// Number of items.
    pub fn len(&self) -> usize {
        self.tables().len()
    }

    /// Whether the library has no items.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The stored bytes the view reads (the whole envelope).
    pub fn stored_bytes(&self) -> &Bytes {
        self.cell.borrow_owner()
    }

    /// Every string of the listing as a `&str`, sliced once, on first use (16 bytes each): what
    /// the items of [`get`](LibraryView::get) and [`iter`](LibraryView::iter) borrow, so that
    /// reading a whole listing slices each string once.
    fn string_table(&self) -> &[&str] {
        self.strings
            .get_or_init(|| {
                StringTable::new(Arc::clone(&self.cell), |cell| {
                    let t = cell.borrow_dependent();
                    // Strings are consecutive: each is split off the front of the rest.
                    let (mut rest, mut start) = (t.text, 0usize);
                    t.ends
                        .chunks_exact(4)
                        .map(|end| {
                            let end = le_u32(end, 0) as usize;
                            // Checked by `Tables::parse`: never the empty fallback.
                            let (s, r) = rest
                                .split_at_checked(end.saturating_sub(start))
                                .unwrap_or(("", rest));
                            (rest, start) = (r, end);
                            s
                        })
                        .collect()
                })
            })
            .borrow_dependent()
    }

    /// Item `i`, in stored order. Its strings borrow a table of every string of the listing,
    /// built on the first call (O(strings), 16 bytes each); [`with_item`](LibraryView::with_item)
    /// needs none.
    pub fn get(&self, i: usize) -> Option<PlexItemRef<'_>> {
        let r = self.tables().record(i)?;
        item_from(r, self.string_table())
    }

    /// Calls `f` with item `i` (in stored order), its paths collected for the call only: no
    /// table is built, so a view read for a few items costs no more than its bytes.
    pub fn with_item<R>(&self, i: usize, f: impl FnOnce(&PlexItemRef<'_>) -> R) -> Option<R> {
        let t = self.tables();
        let r = t.record(i)?;
        let first = r.first + FIXED_STRINGS;
        if r.paths <= INLINE_PATHS {
            let mut buf = [""; INLINE_PATHS];
            for (slot, j) in buf.iter_mut().zip(first..first + r.paths) {
                *slot = t.str(j);
            }
            Some(f(&t.item(r, &buf[..r.paths])))
        } else {
            let paths: Vec<&str> = (first..first + r.paths).map(|j| t.str(j)).collect();
            Some(f(&t.item(r, &paths)))
        }
    }

    /// Calls `f` with every item in stored order, each lent for its call as by
    /// [`with_item`](LibraryView::with_item) (no table), stopping at the first error.
    pub fn try_for_each<E>(
        &self,
        mut f: impl FnMut(&PlexItemRef<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        let t = self.tables();
        // Items hold consecutive strings (checked by `Tables::parse`): one pass over the end
        // table, each string starting where the previous one ended.
        let mut start = 0usize;
        let mut next = 0usize;
        let mut more: Vec<&str> = Vec::new();
        for i in 0..t.len() {
            let Some(r) = t.record(i) else { break };
            if r.first != next {
                start = t.span(r.first).0;
            }
            let mut string = |j: usize| {
                let end = le_u32(t.ends, j * 4) as usize;
                let s = t.text.get(start..end).unwrap_or_default();
                start = end;
                s
            };
            let fixed = [
                string(r.first),
                string(r.first + 1),
                string(r.first + 2),
                string(r.first + 3),
            ];
            let first_path = r.first + FIXED_STRINGS;
            next = first_path + r.paths;
            let mut buf = [""; INLINE_PATHS];
            let paths: &[&str] = if r.paths <= INLINE_PATHS {
                for (slot, j) in buf.iter_mut().zip(first_path..next) {
                    *slot = string(j);
                }
                &buf[..r.paths]
            } else {
                more.clear();
                more.extend((first_path..next).map(&mut string));
                &more
            };
            f(&PlexItemRef {
                rating_key: fixed[0],
                key: fixed[1],
                title: fixed[2],
                kind_str: fixed[3],
                file_paths: paths,
                year: r.year,
                updated_at: r.updated_at,
                library_section_id: r.library_section_id,
            })?;
        }
        Ok(())
    }

    /// Every item, in stored order (see [`get`](LibraryView::get)).
    pub fn iter(&self) -> impl ExactSizeIterator<Item = PlexItemRef<'_>> + '_ {
        // Every `i < len` has a record whose strings were checked, so the fallback is never
        // taken; it keeps the iterator exact-sized without a panic path.
        let t = self.tables();
        let strings = self.string_table();
        (0..t.len()).map(move |i| {
            t.record(i)
                .and_then(|r| item_from(r, strings))
                .unwrap_or(PlexItemRef::EMPTY)
        })
    }

    /// Every item, owned.
    pub fn to_vec(&self) -> Vec<PlexItem> {
        let mut out = Vec::with_capacity(self.len());
        let _ = self.try_for_each(|item| {
            out.push(item.to_owned());
            Ok::<(), std::convert::Infallible>(())
        });
        out
    }

    /// The first item whose `ratingKey` is `rating_key`. The first lookup scans the items
    /// (O(n), nothing allocated: a view read for one lookup pays no more); the second builds
    /// a hash index (O(n)); later ones are O(1).
    pub fn find_by_rating_key(&self, rating_key: &str) -> Option<PlexItemRef<'_>> {
        self.get(self.position_by_rating_key(rating_key)?)
    }

    /// The first item with `path` among its file paths. The first lookup scans the items
    /// (O(n), nothing allocated); the second builds a hash index (O(n)); later ones are O(1).
    pub fn find_by_path(&self, path: &str) -> Option<PlexItemRef<'_>> {
        self.get(self.position_by_path(path)?)
    }

    /// The number of the item [`find_by_rating_key`](LibraryView::find_by_rating_key)
    /// finds, for [`with_item`](LibraryView::with_item).
    pub fn position_by_rating_key(&self, rating_key: &str) -> Option<usize> {
        let t = self.tables();
        let key = rating_key.as_bytes();
        if self.by_rating_key.get().is_none()
            && !self.scanned_rating_key.swap(true, Ordering::Relaxed)
        {
            return t.scan_rating_key(key);
        }
        let map = self.by_rating_key.get_or_init(|| {
            let mut map = HashMap::with_capacity(t.len());
            for i in 0..t.len() {
                if let Some(r) = t.record(i) {
                    first_wins(&mut map, t.bytes(r.first), i);
                }
            }
            map
        });
        let n = *map.get(&hash(key))? as usize;
        if t.record(n).is_some_and(|r| t.bytes(r.first) == key) {
            Some(n)
        } else {
            // Another key with the same hash came first: rare enough to scan.
            t.scan_rating_key(key)
        }
    }

    /// The number of the item [`find_by_path`](LibraryView::find_by_path) finds, for
    /// [`with_item`](LibraryView::with_item).
    pub fn position_by_path(&self, path: &str) -> Option<usize> {
        let t = self.tables();
        let path = path.as_bytes();
        if self.by_path.get().is_none() && !self.scanned_path.swap(true, Ordering::Relaxed) {
            return t.scan_path(path);
        }
        let map = self.by_path.get_or_init(|| {
            let mut map = HashMap::with_capacity(t.len());
            for i in 0..t.len() {
                if let Some(r) = t.record(i) {
                    let first = r.first + FIXED_STRINGS;
                    for j in first..first + r.paths {
                        first_wins(&mut map, t.bytes(j), i);
                    }
                }
            }
            map
        });
        let n = *map.get(&hash(path))? as usize;
        let holds = t.record(n).is_some_and(|r| {
            let first = r.first + FIXED_STRINGS;
            (first..first + r.paths).any(|j| t.bytes(j) == path)
        });
        if holds {
            Some(n)
        } else {
            // Another path with the same hash came first: rare enough to scan.
            t.scan_path(path)
        }
    }
}

/// Notes item `i` under the hash of `s` unless an earlier item is there.
fn first_wins(map: &mut HashMap<u64, u32>, s: &[u8], i: usize) {
    if let Entry::Vacant(e) = map.entry(hash(s)) {
        e.insert(i as u32);
    }
}

fn hash(s: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(s)
}

/// A listing written item by item into the stored layout, for callers that hold each item's
/// strings only for a moment (another language's string objects, a parser's buffer): each
/// [`push`](ListingBuilder::push) copies the item's strings once, and storing the builder
/// (`cache.set_borrowed(key, &builder, ttl)`) copies the finished tables once into the stored
/// value. The bytes are those [`ListingRef`](crate::ListingRef) writes for the same items;
/// it reads back as a [`Listing`] or through a [`LibraryView`].
#[derive(Debug, Default, Clone)]
pub struct ListingBuilder {
    text: Vec<u8>,
    ends: Vec<u8>,
    records: Vec<u8>,
    strings: u64,
}

impl ListingBuilder {
    /// An empty listing with room for `items` items of `text_bytes` bytes of strings in all.
    pub fn with_capacity(items: usize, text_bytes: usize) -> Self {
        Self {
            text: Vec::with_capacity(text_bytes),
            ends: Vec::with_capacity(items.saturating_mul((FIXED_STRINGS + 1) * 4)),
            records: Vec::with_capacity(items.saturating_mul(RECORD_LEN)),
            strings: 0,
        }
    }

    /// Appends one item (its strings are copied).
    pub fn push(&mut self, item: &PlexItemRef<'_>) {
        let first = self.strings;
        for s in [item.rating_key, item.key, item.title, item.kind_str]
            .into_iter()
            .chain(item.file_paths.iter().copied())
        {
            self.text.extend_from_slice(s.as_bytes());
            // Truncated past 4 GiB, but then `fits` fails and nothing is stored.
            self.ends
                .extend_from_slice(&(self.text.len() as u32).to_le_bytes());
        }
        let paths = item.file_paths.len();
        self.strings += (FIXED_STRINGS + paths) as u64;
        let mask = (u32::from(item.year.is_some()) * HAS_YEAR)
            | (u32::from(item.updated_at.is_some()) * HAS_UPDATED_AT)
            | (u32::from(item.library_section_id.is_some()) * HAS_SECTION);
        let r = &mut self.records;
        r.extend_from_slice(&(first as u32).to_le_bytes());
        r.extend_from_slice(&(paths as u32).to_le_bytes());
        r.extend_from_slice(&mask.to_le_bytes());
        r.extend_from_slice(&item.year.unwrap_or(0).to_le_bytes());
        r.extend_from_slice(&item.library_section_id.unwrap_or(0).to_le_bytes());
        r.extend_from_slice(&item.updated_at.unwrap_or(0).to_le_bytes());
    }

    /// Number of items.
    pub fn len(&self) -> usize {
        self.records.len() / RECORD_LEN
    }

    /// Whether there are no items.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    fn fits(&self) -> bool {
        u32::try_from(self.text.len()).is_ok() && u32::try_from(self.strings).is_ok()
    }
}

impl serde::Serialize for ListingBuilder {
    /// The serde path (the cache writes through [`BorrowedValue::write_payload`] instead).
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeTuple;
        if !self.fits() {
            return Err(serde::ser::Error::custom(
                "a library listing over 4 GiB of strings cannot be stored",
            ));
        }
        let text = std::str::from_utf8(&self.text).map_err(serde::ser::Error::custom)?;
        let mut tuple = s.serialize_tuple(3)?;
        tuple.serialize_element(text)?;
        tuple.serialize_element(&RawBytes(&self.ends))?;
        tuple.serialize_element(&RawBytes(&self.records))?;
        tuple.end()
    }
}

impl BorrowedValue for ListingBuilder {
    type Owned = Listing;

    fn payload_len(&self) -> Option<usize> {
        if !self.fits() {
            return None; // serde then reports the error
        }
        let (t, e, r) = (self.text.len(), self.ends.len(), self.records.len());
        Some(varint_len(t) + t + varint_len(e) + e + varint_len(r) + r)
    }

    fn write_payload(&self, out: &mut Vec<u8>) {
        for table in [&self.text, &self.ends, &self.records] {
            varint(out, table.len());
            out.extend_from_slice(table);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::item::ItemKind;

    fn items() -> Vec<PlexItem> {
        (0..50)
            .map(|i| PlexItem {
                rating_key: format!("{}", 1000 + i).into(),
                key: format!("/library/metadata/{}", 1000 + i).into(),
                title: if i % 3 == 0 {
                    format!("Ünïcødé {i} 🎬").into()
                } else {
                    format!("Title {i}").into()
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

    fn enc(key: &str, items: &[PlexItem]) -> Bytes {
        codec::encode_borrowed(key, &ListingRef::new(items)).unwrap()
    }

    #[test]
    fn a_view_reads_exactly_what_serde_decodes() {
        let items = items();
        let bytes = enc("lib", &items);
        assert_eq!(codec::decode::<Listing>("lib", &bytes).unwrap().0, items);
        assert_eq!(
            codec::encode("lib", &Listing(items.clone())).unwrap(),
            bytes
        );
        let view = LibraryView::from_envelope("lib", bytes).unwrap();
        assert_eq!(view.to_vec(), items);
        assert_eq!(view.len(), items.len());
        assert_eq!(view.get(3).unwrap().to_owned(), items[3]);
        assert!(view.get(50).is_none());
    }

    #[test]
    fn lookups_by_rating_key_and_path() {
        let items = items();
        let view = LibraryView::from_envelope("lib", enc("lib", &items)).unwrap();
        assert_eq!(view.find_by_rating_key("1007").unwrap().title, "Title 7");
        assert!(view.find_by_rating_key("1").is_none());
        assert_eq!(
            view.find_by_path("/m/8/part1.mkv").unwrap().rating_key,
            "1008"
        );
        assert!(view.find_by_path("/m/8/part2.mkv").is_none());
    }

    #[test]
    fn the_scanning_first_lookup_and_the_indexed_ones_agree() {
        // Duplicates: the first item with a rating key or a path wins, scanned or indexed.
        let mut items = items();
        let mut dup = items[9].clone();
        dup.title = "duplicate".into();
        items.push(dup);
        let view = LibraryView::from_envelope("lib", enc("lib", &items)).unwrap();
        let queries = ["1009", "1049", "1", "", "1000"];
        let paths = ["/m/9/part0.mkv", "/m/49/part0.mkv", "/nope", ""];
        for round in 0..3 {
            for q in queries {
                let want = items
                    .iter()
                    .find(|i| i.rating_key == q)
                    .map(|i| i.title.as_str());
                let got = view.find_by_rating_key(q).map(|i| i.title);
                assert_eq!(got, want, "rating key {q:?}, round {round}");
            }
            for p in paths {
                let want = items
                    .iter()
                    .find(|i| i.file_paths.iter().any(|f| f == p))
                    .map(|i| i.title.as_str());
                let got = view.find_by_path(p).map(|i| i.title);
                assert_eq!(got, want, "path {p:?}, round {round}");
            }
        }
        assert!(view.by_path.get().is_some() && view.by_rating_key.get().is_some());
    }

    #[test]
    fn a_built_listing_is_stored_as_the_same_items_borrowed() {
        let mut items = items();
        items[4].file_paths = (0..INLINE_PATHS + 3)
            .map(|p| format!("/many/{p}.mkv"))
            .collect();
        for items in [&items[..], &items[..1], &[]] {
            let mut b = ListingBuilder::with_capacity(1, 10);
            for i in items {
                let paths: Vec<&str> = i.file_paths.iter().map(String::as_str).collect();
                b.push(&PlexItemRef {
                    rating_key: &i.rating_key,
                    key: &i.key,
                    title: &i.title,
                    kind_str: i.kind.as_str(),
                    file_paths: &paths,
                    year: i.year,
                    updated_at: i.updated_at,
                    library_section_id: i.library_section_id,
                });
            }
            assert_eq!(b.len(), items.len());
            assert_eq!(b.is_empty(), items.is_empty());
            let built = codec::encode_borrowed("lib", &b).unwrap();
            assert_eq!(built, enc("lib", items));
            // The serde path writes the same bytes.
            let serde = codec::encode_tagged("lib", &b, Listing::SCHEMA).unwrap();
            assert_eq!(serde, built);
        }
    }

    #[test]
    fn with_item_and_positions_read_what_get_reads_without_a_table() {
        let mut items = items();
        items[4].file_paths = (0..INLINE_PATHS + 3)
            .map(|p| format!("/many/{p}.mkv"))
            .collect();
        let view = LibraryView::from_envelope("lib", enc("lib", &items)).unwrap();
        for (i, want) in items.iter().enumerate() {
            assert_eq!(
                view.with_item(i, |item| item.to_owned()).as_ref(),
                Some(want)
            );
        }
        assert!(view.with_item(items.len(), |_| ()).is_none());
        for round in 0..3 {
            assert_eq!(
                view.position_by_path("/many/9.mkv"),
                Some(4),
                "round {round}"
            );
            assert_eq!(view.position_by_path("/m/8/part1.mkv"), Some(8));
            assert_eq!(view.position_by_path("/nope"), None);
            assert_eq!(view.position_by_rating_key("1013"), Some(13));
            assert_eq!(view.position_by_rating_key("13"), None);
        }
        assert_eq!(view.to_vec(), items);
        let mut seen = Vec::new();
        let stopped = view.try_for_each(|item| {
            seen.push(item.to_owned());
            if seen.len() == 7 {
                Err(seen.len())
            } else {
                Ok(())
            }
        });
        assert_eq!((stopped, &seen[..]), (Err(7), &items[..7]));
        assert!(view.strings.get().is_none(), "no string table was needed");
        assert_eq!(view.get(4).unwrap().to_owned(), items[4]);
        assert!(view.strings.get().is_some());
        assert_eq!(view.iter().map(|i| i.to_owned()).collect::<Vec<_>>(), items);
    }

    #[test]
    fn borrowed_items_are_stored_as_the_same_items_owned() {
        let items = items();
        let paths: Vec<Vec<&str>> = items
            .iter()
            .map(|i| i.file_paths.iter().map(String::as_str).collect())
            .collect();
        let refs: Vec<PlexItemRef<'_>> = items
            .iter()
            .zip(&paths)
            .map(|(i, p)| PlexItemRef {
                rating_key: &i.rating_key,
                key: &i.key,
                title: &i.title,
                kind_str: i.kind.as_str(),
                file_paths: p,
                year: i.year,
                updated_at: i.updated_at,
                library_section_id: i.library_section_id,
            })
            .collect();
        let borrowed = codec::encode_borrowed("lib", &ListingRef::from_refs(&refs)).unwrap();
        assert_eq!(borrowed, enc("lib", &items));
        assert_eq!(ListingRef::from_refs(&refs).len(), items.len());
    }

    #[test]
    fn damage_another_key_or_another_type_is_an_error() {
        let items = items();
        let bytes = enc("lib", &items);
        assert_eq!(
            LibraryView::from_envelope("other", bytes.clone()).err(),
            Some(DecodeError::Checksum)
        );
        let strings = codec::encode("lib", &vec!["a".to_string()]).unwrap();
        assert!(matches!(
            LibraryView::from_envelope("lib", strings),
            Err(DecodeError::SchemaMismatch { .. })
        ));
        // A listing of an earlier release (a plain `Vec<PlexItem>`) is another type.
        let old = codec::encode("lib", &items).unwrap();
        assert!(matches!(
            LibraryView::from_envelope("lib", old),
            Err(DecodeError::SchemaMismatch { .. })
        ));
        for cut in [0, 1, bytes.len() / 2, bytes.len() - 1] {
            assert!(LibraryView::from_envelope("lib", bytes.slice(..cut)).is_err());
        }
    }

    #[test]
    fn a_payload_with_a_valid_checksum_but_bad_contents_is_an_error() {
        // Tables that disagree with the text or with each other, invalid UTF-8, lengths past
        // the end, trailing bytes: re-sealed with a valid checksum, so only the table checks
        // can catch them, in the view and in the owned decode alike.
        fn varint(out: &mut Vec<u8>, mut n: usize) {
            while n >= 0x80 {
                out.push((n as u8) | 0x80);
                n >>= 7;
            }
            out.push(n as u8);
        }
        fn payload(text: &[u8], ends: &[u32], records: &[[u32; 7]]) -> Vec<u8> {
            let mut out = Vec::new();
            varint(&mut out, text.len());
            out.extend_from_slice(text);
            varint(&mut out, ends.len() * 4);
            ends.iter()
                .for_each(|e| out.extend_from_slice(&e.to_le_bytes()));
            varint(&mut out, records.len() * 28);
            for r in records {
                r.iter()
                    .for_each(|w| out.extend_from_slice(&w.to_le_bytes()));
            }
            out
        }
        let seal =
            |payload: &[u8]| codec::encode_tagged("lib", &Raw(payload), Listing::SCHEMA).unwrap();
        // "1" "/k" "Amé" "movie" "/p": five strings, one item with one path.
        let text = "1/kAmémovie/p".as_bytes();
        let ends = [1, 3, 7, 12, 14];
        let good = [0, 1, 0, 0, 0, 0, 0];
        let fine = payload(text, &ends, &[good]);
        let view = LibraryView::from_envelope("lib", seal(&fine)).unwrap();
        assert_eq!(view.get(0).unwrap().title, "Amé");
        assert_eq!(view.get(0).unwrap().file_paths, ["/p"]);
        let mut trailing = fine.clone();
        trailing.push(0);
        let mut cut = fine.clone();
        cut.pop();
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("trailing bytes", trailing),
            ("cut short", cut),
            ("a length past the end", vec![0x05]),
            // Found by fuzzing: a ten-byte length whose last byte has bits beyond 64 (the view
            // read it as zero, the owned decode rejected it).
            ("a length that overflows", {
                let mut p = vec![0x00, 0x00];
                p.extend_from_slice(&[0x80; 9]);
                p.push(0x28);
                p
            }),
            (
                "invalid UTF-8",
                payload(b"1/kAm\xff\xffmovie/p", &ends, &[good]),
            ),
            (
                "an end past the text",
                payload(text, &[1, 3, 7, 12, 15], &[good]),
            ),
            (
                "ends out of order",
                payload(text, &[3, 1, 7, 12, 14], &[good]),
            ),
            (
                "an end inside a character",
                payload(text, &[1, 3, 6, 12, 14], &[good]),
            ),
            (
                "text no string covers",
                payload(text, &[1, 3, 7, 12, 13], &[good]),
            ),
            (
                "a record's first string",
                payload(text, &ends, &[[1, 1, 0, 0, 0, 0, 0]]),
            ),
            (
                "an unknown mask bit",
                payload(text, &ends, &[[0, 1, 8, 0, 0, 0, 0]]),
            ),
            (
                "an absent year set",
                payload(text, &ends, &[[0, 1, 0, 1999, 0, 0, 0]]),
            ),
            (
                "an absent date set",
                payload(text, &ends, &[[0, 1, 5, 1, 1, 0, 1]]),
            ),
            (
                "paths past the strings",
                payload(text, &ends, &[[0, 2, 0, 0, 0, 0, 0]]),
            ),
            (
                "strings no item holds",
                payload(text, &ends, &[[0, 0, 0, 0, 0, 0, 0]]),
            ),
            ("a partial record", {
                let mut p = payload(text, &ends, &[]);
                p.pop();
                p.extend_from_slice(&[3, 0, 0, 0]);
                p
            }),
        ];
        for (what, payload) in cases {
            let sealed = seal(&payload);
            assert!(
                LibraryView::from_envelope("lib", sealed.clone()).is_err(),
                "{what}"
            );
            assert!(codec::decode::<Listing>("lib", &sealed).is_err(), "{what}");
        }
        let empty = payload(b"", &[], &[]);
        assert!(
            LibraryView::from_envelope("lib", seal(&empty))
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            codec::decode::<Listing>("lib", &seal(&empty)).unwrap().0,
            vec![]
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
