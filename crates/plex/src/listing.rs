//! How a library listing is stored: a columnar layout that a reader checks in a few passes
//! over whole tables instead of one check per string.
//!
//! A listing of `n` items is three postcard fields (a tuple, so each is its length and its
//! bytes):
//!
//! 1. `text`, a `str`: every string of every item, back to back, in item order; per item its
//!    `ratingKey`, `key`, title, type string, then its file paths.
//! 2. `ends`, bytes: for each string of `text`, the offset where it ends (`u32`, little
//!    endian); a string starts where the previous one ends.
//! 3. `records`, bytes: one fixed record of [`RECORD_LEN`] bytes per item (little endian):
//!    the number of its first string (`u32`), its number of file paths (`u32`), a presence
//!    mask (`u32`: bit 0 `year`, bit 1 `updatedAt`, bit 2 `librarySectionID`), `year` (`u32`),
//!    `librarySectionID` (`u32`) and `updatedAt` (`i64`); an absent field is stored as 0.
//!
//! Checking it (see [`Parts::check`]) is one UTF-8 validation of `text`, one pass over `ends`
//! (in order, in bounds, on character boundaries) and one over `records` (consistent string
//! numbers, known mask bits, absent fields zero), slicing every string out of `text` once on
//! the way, without another UTF-8 check; item `i` is then found without walking items
//! `0..i`.

use std::fmt;

use plexcache_core::codec::{BorrowedValue, DecodeError};
use serde::de::{self, SeqAccess, Visitor};
use serde::ser::SerializeTuple;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::item::{ItemKind, PlexItem};

/// Bytes of one item record.
pub(crate) const RECORD_LEN: usize = 28;
/// Strings of an item before its file paths.
pub(crate) const FIXED_STRINGS: usize = 4;
pub(crate) const HAS_YEAR: u32 = 1;
pub(crate) const HAS_UPDATED_AT: u32 = 2;
pub(crate) const HAS_SECTION: u32 = 4;

/// A library listing as stored under `library:{name}:all`: the owned items, read and written
/// in the columnar layout of this module. Most callers use
/// [`PlexCache::library_items`](crate::PlexCache::library_items) or
/// [`PlexCache::library_view`](crate::PlexCache::library_view) instead; this type is what a
/// plain [`Cache`](plexcache_core::Cache) reads such an entry as.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Listing(pub Vec<PlexItem>);

plexcache_core::cache_value!(Listing, "plexcache.Listing", 1);

impl From<Vec<PlexItem>> for Listing {
    fn from(items: Vec<PlexItem>) -> Self {
        Self(items)
    }
}

impl From<Listing> for Vec<PlexItem> {
    fn from(listing: Listing) -> Self {
        listing.0
    }
}

/// Items borrowed for writing in the stored layout, without copying them into a [`Listing`]:
/// `cache.set_borrowed(key, &ListingRef::new(&items), ttl)`. The layout is written straight
/// into the stored value's buffer. [`ListingRef::from_refs`] writes [`PlexItemRef`]s, whose
/// strings may be borrowed from anywhere (another language's string objects, a parser's
/// buffer), so a listing can be stored without allocating a `String` per field.
#[derive(Clone, Copy, Debug)]
pub struct ListingRef<'a> {
    items: Items<'a>,
    text_len: usize,
    strings: usize,
}

#[derive(Clone, Copy, Debug)]
enum Items<'a> {
    Owned(&'a [PlexItem]),
    Borrowed(&'a [PlexItemRef<'a>]),
}

/// What the writer needs of an item, owned or borrowed.
trait Record {
    /// Calls `f` with each string of the item, in stored order.
    fn each_string(&self, f: impl FnMut(&str));
    fn path_count(&self) -> usize;
    fn numbers(&self) -> (Option<u32>, Option<i64>, Option<u32>);
}

impl Record for PlexItem {
    #[inline]
    fn each_string(&self, mut f: impl FnMut(&str)) {
        f(&self.rating_key);
        f(&self.key);
        f(&self.title);
        f(self.kind.as_str());
        for p in &self.file_paths {
            f(p);
        }
    }

    fn path_count(&self) -> usize {
        self.file_paths.len()
    }

    fn numbers(&self) -> (Option<u32>, Option<i64>, Option<u32>) {
        (self.year, self.updated_at, self.library_section_id)
    }
}

impl Record for PlexItemRef<'_> {
    #[inline]
    fn each_string(&self, mut f: impl FnMut(&str)) {
        f(self.rating_key);
        f(self.key);
        f(self.title);
        f(self.kind_str);
        for p in self.file_paths {
            f(p);
        }
    }

    fn path_count(&self) -> usize {
        self.file_paths.len()
    }

    fn numbers(&self) -> (Option<u32>, Option<i64>, Option<u32>) {
        (self.year, self.updated_at, self.library_section_id)
    }
}

pub(crate) fn varint(out: &mut Vec<u8>, mut n: usize) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

pub(crate) fn varint_len(n: usize) -> usize {
    (usize::BITS - (n | 1).leading_zeros()).div_ceil(7) as usize
}

/// (strings, text bytes) of `items`.
fn measure<R: Record>(items: &[R]) -> (usize, usize) {
    let mut strings = 0usize;
    let mut text_len = 0usize;
    for item in items {
        strings = strings.saturating_add(FIXED_STRINGS + item.path_count());
        item.each_string(|s| text_len = text_len.saturating_add(s.len()));
    }
    (strings, text_len)
}

/// Fills the three tables, sized by [`measure`], in one pass over the items. Returns false,
/// leaving them partly written, if the items do not match their measure.
fn write_tables<R: Record>(
    items: &[R],
    text: &mut [u8],
    ends: &mut [u8],
    records: &mut [u8],
) -> bool {
    // In range: `fits` was checked, and every offset is checked against the tables.
    let (mut at, mut end_at, mut first) = (0usize, 0usize, 0u32);
    let mut ok = true;
    for (item, record) in items.iter().zip(records.chunks_exact_mut(RECORD_LEN)) {
        item.each_string(|s| {
            let next = at + s.len();
            match (text.get_mut(at..next), ends.get_mut(end_at..end_at + 4)) {
                (Some(t), Some(e)) => {
                    t.copy_from_slice(s.as_bytes());
                    e.copy_from_slice(&(next as u32).to_le_bytes());
                }
                _ => ok = false,
            }
            at = next;
            end_at += 4;
        });
        let paths = item.path_count() as u32;
        let (year, updated_at, section) = item.numbers();
        let mask = (u32::from(year.is_some()) * HAS_YEAR)
            | (u32::from(updated_at.is_some()) * HAS_UPDATED_AT)
            | (u32::from(section.is_some()) * HAS_SECTION);
        record[0..4].copy_from_slice(&first.to_le_bytes());
        record[4..8].copy_from_slice(&paths.to_le_bytes());
        record[8..12].copy_from_slice(&mask.to_le_bytes());
        record[12..16].copy_from_slice(&year.unwrap_or(0).to_le_bytes());
        record[16..20].copy_from_slice(&section.unwrap_or(0).to_le_bytes());
        record[20..28].copy_from_slice(&updated_at.unwrap_or(0).to_le_bytes());
        first = first.wrapping_add(FIXED_STRINGS as u32 + paths);
    }
    ok && at == text.len() && end_at == ends.len() && records.len() == items.len() * RECORD_LEN
}

impl<'a> ListingRef<'a> {
    /// Borrows `items` for writing. A listing over 4 GiB of strings does not fit the layout:
    /// writing it fails with an encode error.
    pub fn new(items: &'a [PlexItem]) -> Self {
        let (strings, text_len) = measure(items);
        Self {
            items: Items::Owned(items),
            text_len,
            strings,
        }
    }

    /// Borrows items whose strings are borrowed too; stored exactly as [`ListingRef::new`]
    /// stores the same items owned (the kind as its type string, `kind_str`).
    pub fn from_refs(items: &'a [PlexItemRef<'a>]) -> Self {
        let (strings, text_len) = measure(items);
        Self {
            items: Items::Borrowed(items),
            text_len,
            strings,
        }
    }

    /// Number of items.
    pub fn len(&self) -> usize {
        match self.items {
            Items::Owned(i) => i.len(),
            Items::Borrowed(i) => i.len(),
        }
    }

    /// Whether there are no items.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn fits(&self) -> bool {
        u32::try_from(self.text_len).is_ok() && u32::try_from(self.strings).is_ok()
    }

    /// Writes the three tables into `text`, `ends` and `records` (sized by [`Self::tables`]).
    fn write_tables(&self, text: &mut [u8], ends: &mut [u8], records: &mut [u8]) -> bool {
        match self.items {
            Items::Owned(i) => write_tables(i, text, ends, records),
            Items::Borrowed(i) => write_tables(i, text, ends, records),
        }
    }

    fn tables(&self) -> (usize, usize, usize) {
        (self.text_len, self.strings * 4, self.len() * RECORD_LEN)
    }
}

/// Serializes as `serialize_bytes` (postcard: its length, then the bytes).
pub(crate) struct RawBytes<'a>(pub(crate) &'a [u8]);

impl Serialize for RawBytes<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(self.0)
    }
}

impl Serialize for ListingRef<'_> {
    /// The serde path (the cache writes through [`BorrowedValue::write_payload`] instead):
    /// the same bytes, built in three buffers first.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if !self.fits() {
            return Err(serde::ser::Error::custom(
                "a library listing over 4 GiB of strings cannot be stored",
            ));
        }
        let (t, e, r) = self.tables();
        let (mut text, mut ends, mut records) = (vec![0u8; t], vec![0u8; e], vec![0u8; r]);
        if !self.write_tables(&mut text, &mut ends, &mut records) {
            return Err(serde::ser::Error::custom(
                "the items changed while the listing was written",
            ));
        }
        let text = std::str::from_utf8(&text).map_err(serde::ser::Error::custom)?;
        let mut tuple = s.serialize_tuple(3)?;
        tuple.serialize_element(text)?;
        tuple.serialize_element(&RawBytes(&ends))?;
        tuple.serialize_element(&RawBytes(&records))?;
        tuple.end()
    }
}

impl BorrowedValue for ListingRef<'_> {
    type Owned = Listing;

    fn payload_len(&self) -> Option<usize> {
        if !self.fits() {
            return None; // serde then reports the error
        }
        let (t, e, r) = self.tables();
        Some(varint_len(t) + t + varint_len(e) + e + varint_len(r) + r)
    }

    fn write_payload(&self, out: &mut Vec<u8>) {
        let (t, e, r) = self.tables();
        // The three tables are filled in one pass, each at its place after its length.
        let start = out.len();
        varint(out, t);
        let text_at = out.len();
        out.resize(text_at + t, 0);
        varint(out, e);
        let ends_at = out.len();
        out.resize(ends_at + e, 0);
        varint(out, r);
        let records_at = out.len();
        out.resize(records_at + r, 0);
        let (head, records) = out.split_at_mut(records_at);
        let (head, ends) = head.split_at_mut(ends_at);
        let text = &mut head[text_at..text_at + t];
        let ends = &mut ends[..e];
        if !self.write_tables(text, ends, records) {
            // The caller checks the length against `payload_len` and refuses the value.
            out.truncate(start);
        }
    }
}

impl Serialize for Listing {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        ListingRef::new(&self.0).serialize(s)
    }
}

impl<'de> Deserialize<'de> for Listing {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Listing;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a library listing (text, ends, records)")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Listing, A::Error> {
                let missing = || de::Error::custom("a library listing has three fields");
                let text: &'de str = seq.next_element()?.ok_or_else(missing)?;
                let ends: &'de [u8] = seq.next_element()?.ok_or_else(missing)?;
                let records: &'de [u8] = seq.next_element()?.ok_or_else(missing)?;
                let parts = Parts::check(text, ends, records).map_err(de::Error::custom)?;
                Ok(Listing(parts.items().map(|i| i.to_owned()).collect()))
            }
        }
        d.deserialize_tuple(3, V)
    }
}

/// The tables of a listing, checked (see the [module documentation](self)), with every
/// string sliced out of the text once.
#[derive(Debug)]
pub(crate) struct Parts<'a> {
    strings: Vec<&'a str>,
    records: &'a [u8],
}

pub(crate) fn damaged(detail: impl Into<String>) -> DecodeError {
    DecodeError::Payload(detail.into())
}

#[inline]
pub(crate) fn le_u32(b: &[u8], at: usize) -> u32 {
    let mut w = [0u8; 4];
    if let Some(s) = b.get(at..at + 4) {
        w.copy_from_slice(s);
    }
    u32::from_le_bytes(w)
}

#[inline]
pub(crate) fn le_i64(b: &[u8], at: usize) -> i64 {
    let mut w = [0u8; 8];
    if let Some(s) = b.get(at..at + 8) {
        w.copy_from_slice(s);
    }
    i64::from_le_bytes(w)
}

/// The text's bytes, the string table and the item table of a listing, unchecked.
pub(crate) type RawTables<'a> = (&'a [u8], &'a [u8], &'a [u8]);

/// The three fields of a listing's postcard payload (the envelope's payload): the text's
/// bytes (not yet checked as UTF-8), the string table and the item table.
pub(crate) fn split(payload: &[u8]) -> Result<RawTables<'_>, DecodeError> {
    let mut at = 0usize;
    let mut field = |name: &str| -> Result<&[u8], DecodeError> {
        let mut len = 0u64;
        let mut shift = 0u32;
        loop {
            let b = *payload
                .get(at)
                .ok_or_else(|| damaged(format!("the listing ends inside the length of {name}")))?;
            at += 1;
            // The tenth byte holds bit 63 only: anything more does not fit in 64 bits.
            if shift == 63 && b > 1 {
                return Err(damaged("a length of the listing is too long"));
            }
            len |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                break;
            }
            shift += 7;
            if shift > 63 {
                return Err(damaged("a length of the listing is too long"));
            }
        }
        let end = usize::try_from(len)
            .ok()
            .and_then(|len| at.checked_add(len))
            .filter(|end| *end <= payload.len())
            .ok_or_else(|| damaged(format!("{name} runs past the end of the listing")))?;
        let bytes = &payload[at..end];
        at = end;
        Ok(bytes)
    };
    let text = field("the text")?;
    let ends = field("the string table")?;
    let records = field("the item table")?;
    if at != payload.len() {
        return Err(damaged(format!(
            "{} trailing bytes after the listing",
            payload.len() - at
        )));
    }
    Ok((text, ends, records))
}

/// An item from its strings (`ratingKey`, `key`, title, type, then its paths) and numbers;
/// `None` if fewer than the fixed strings are given.
pub(crate) fn item_ref<'s>(
    s: &'s [&'s str],
    year: Option<u32>,
    updated_at: Option<i64>,
    library_section_id: Option<u32>,
) -> Option<PlexItemRef<'s>> {
    let [rating_key, key, title, kind_str, file_paths @ ..] = s else {
        return None;
    };
    Some(PlexItemRef {
        rating_key,
        key,
        title,
        kind_str,
        file_paths,
        year,
        updated_at,
        library_section_id,
    })
}

/// Checks the item table against a string table of `strings` strings: each record's first
/// string follows the previous record's, its mask has known bits only and absent fields are
/// zero, and the records hold every string exactly once.
pub(crate) fn check_records(records: &[u8], strings: usize) -> Result<(), DecodeError> {
    let mut next = 0usize;
    for r in records.chunks_exact(RECORD_LEN) {
        let (first, paths, mask) = (le_u32(r, 0), le_u32(r, 4), le_u32(r, 8));
        if first as usize != next || mask & !(HAS_YEAR | HAS_UPDATED_AT | HAS_SECTION) != 0 {
            return Err(damaged("an item record of the listing is inconsistent"));
        }
        let absent_nonzero = (mask & HAS_YEAR == 0 && le_u32(r, 12) != 0)
            || (mask & HAS_SECTION == 0 && le_u32(r, 16) != 0)
            || (mask & HAS_UPDATED_AT == 0 && le_i64(r, 20) != 0);
        if absent_nonzero {
            return Err(damaged("an item record of the listing is inconsistent"));
        }
        next = next
            .checked_add(FIXED_STRINGS + paths as usize)
            .filter(|n| *n <= strings)
            .ok_or_else(|| damaged("an item of the listing has strings it does not hold"))?;
    }
    if next != strings {
        return Err(damaged("the listing has strings no item holds"));
    }
    Ok(())
}

impl<'a> Parts<'a> {
    /// Checks the string and item tables against `text`.
    pub(crate) fn check(
        text: &'a str,
        ends: &'a [u8],
        records: &'a [u8],
    ) -> Result<Self, DecodeError> {
        if !ends.len().is_multiple_of(4) || !records.len().is_multiple_of(RECORD_LEN) {
            return Err(damaged("a table of the listing has a partial row"));
        }
        let mut strings = Vec::with_capacity(ends.len() / 4);
        let mut prev = 0usize;
        for end in ends.chunks_exact(4) {
            let end = le_u32(end, 0) as usize;
            let s = text
                .get(prev..end)
                .ok_or_else(|| damaged("a string of the listing is out of bounds"))?;
            strings.push(s);
            prev = end;
        }
        if prev != text.len() {
            return Err(damaged("the listing's strings do not cover its text"));
        }
        check_records(records, strings.len())?;
        Ok(Self { strings, records })
    }

    /// Number of items.
    pub(crate) fn len(&self) -> usize {
        self.records.len() / RECORD_LEN
    }

    /// Item `i`.
    pub(crate) fn item(&self, i: usize) -> Option<PlexItemRef<'_>> {
        let r = self.records.get(i * RECORD_LEN..(i + 1) * RECORD_LEN)?;
        let (first, paths, mask) = (le_u32(r, 0) as usize, le_u32(r, 4) as usize, le_u32(r, 8));
        // Checked: every record's strings are in the table.
        let s = self.strings.get(first..first + FIXED_STRINGS + paths)?;
        item_ref(
            s,
            (mask & HAS_YEAR != 0).then(|| le_u32(r, 12)),
            (mask & HAS_UPDATED_AT != 0).then(|| le_i64(r, 20)),
            (mask & HAS_SECTION != 0).then(|| le_u32(r, 16)),
        )
    }

    /// Every item, in stored order.
    pub(crate) fn items(&self) -> impl ExactSizeIterator<Item = PlexItemRef<'_>> {
        // Every `i < len` has a record whose strings were checked, so the fallback is never
        // taken; it keeps the iterator exact-sized without a panic path.
        (0..self.len()).map(|i| self.item(i).unwrap_or(PlexItemRef::EMPTY))
    }
}

/// One item of a [`LibraryView`](crate::LibraryView): the fields of [`PlexItem`], borrowed
/// from the stored bytes.
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
    pub(crate) const EMPTY: Self = PlexItemRef {
        rating_key: "",
        key: "",
        title: "",
        kind_str: "",
        file_paths: &[],
        year: None,
        updated_at: None,
        library_section_id: None,
    };

    /// The item's kind.
    pub fn kind(&self) -> ItemKind {
        ItemKind::from_plex_type(self.kind_str)
    }

    /// An owned copy.
    #[allow(clippy::wrong_self_convention)] // `to_owned` is the name users look for
    pub fn to_owned(&self) -> PlexItem {
        PlexItem {
            rating_key: self.rating_key.into(),
            key: self.key.into(),
            title: self.title.into(),
            kind: self.kind(),
            file_paths: self.file_paths.iter().map(|p| (*p).to_owned()).collect(),
            year: self.year,
            updated_at: self.updated_at,
            library_section_id: self.library_section_id,
        }
    }
}
