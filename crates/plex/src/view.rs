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
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use plexcache_core::Bytes;
use plexcache_core::codec::{self, CacheValue, DecodeError};

use crate::item::PlexItem;
#[cfg(test)]
use crate::listing::ListingRef;
pub use crate::listing::PlexItemRef;
use crate::listing::{Listing, Parts};

self_cell::self_cell!(
    struct Cell {
        owner: Bytes,
        #[covariant]
        dependent: Parts,
    }

    impl {Debug}
);

/// A stored library listing read in place (see the [module documentation](self)).
pub struct LibraryView {
    cell: Cell,
    /// Item numbers by a hash of their rating key, built on the second lookup.
    by_rating_key: OnceLock<HashMap<u64, Vec<u32>>>,
    /// Item numbers by a hash of each of their paths, built on the second lookup.
    by_path: OnceLock<HashMap<u64, Vec<u32>>>,
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

impl LibraryView {
    /// Checks `envelope` (the stored bytes of a [`Listing`] written under `key`) and its
    /// tables. Any damage, another type or another key is a [`DecodeError`].
    pub fn from_envelope(key: &str, envelope: Bytes) -> Result<Self, DecodeError> {
        codec::check_envelope(key, &envelope, Listing::SCHEMA)?;
        // The envelope was checked: its payload starts after the header.
        let cell = Cell::try_new(envelope, |bytes| {
            Parts::parse(bytes.get(codec::HEADER_LEN..).unwrap_or_default())
        })?;
        Ok(Self {
            cell,
            by_rating_key: OnceLock::new(),
            by_path: OnceLock::new(),
            scanned_rating_key: AtomicBool::new(false),
            scanned_path: AtomicBool::new(false),
        })
    }

    /// Number of items.
    pub fn len(&self) -> usize {
        self.cell.borrow_dependent().len()
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
        self.cell.borrow_dependent().item(i)
    }

    /// Every item, in stored order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = PlexItemRef<'_>> + '_ {
        self.cell.borrow_dependent().items()
    }

    /// Every item, owned.
    pub fn to_vec(&self) -> Vec<PlexItem> {
        self.iter().map(|i| i.to_owned()).collect()
    }

    /// The first item whose `ratingKey` is `rating_key`. The first lookup scans the items
    /// (O(n), nothing allocated: a view read for one lookup pays no more); the second builds
    /// a hash index (O(n)); later ones are O(1).
    pub fn find_by_rating_key(&self, rating_key: &str) -> Option<PlexItemRef<'_>> {
        if self.by_rating_key.get().is_none()
            && !self.scanned_rating_key.swap(true, Ordering::Relaxed)
        {
            return self.iter().find(|i| i.rating_key == rating_key);
        }
        let map = self.by_rating_key.get_or_init(|| {
            let mut map: HashMap<u64, Vec<u32>> = HashMap::with_capacity(self.len());
            for (n, item) in self.iter().enumerate() {
                map.entry(hash(item.rating_key)).or_default().push(n as u32);
            }
            map
        });
        self.first_of(map.get(&hash(rating_key))?, |i| i.rating_key == rating_key)
    }

    /// The first item with `path` among its file paths. The first lookup scans the items
    /// (O(n), nothing allocated); the second builds a hash index (O(n)); later ones are O(1).
    pub fn find_by_path(&self, path: &str) -> Option<PlexItemRef<'_>> {
        if self.by_path.get().is_none() && !self.scanned_path.swap(true, Ordering::Relaxed) {
            return self.iter().find(|i| i.file_paths.contains(&path));
        }
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
