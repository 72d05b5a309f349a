//! The value envelope and the library listing: arbitrary stored bytes, and arbitrary payloads
//! sealed with a valid checksum (so that the payload checks, not the checksum, are what
//! stands between them and a reader), decode or fail with an error, never panic; what a view
//! accepts reads back the same through the owned decode.
#![no_main]

use libfuzzer_sys::fuzz_target;
use plexcache_core::Bytes;
use plexcache_core::codec::{self, CacheValue};
use plexcache_plex::{LibraryView, Listing, PlexItem};

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

fuzz_target!(|data: &[u8]| {
    let key = "library:Movies:all";
    // As stored bytes.
    let _ = codec::verify(key, data);
    let _ = codec::decode::<Vec<PlexItem>>(key, data);
    let _ = codec::decode::<Listing>(key, data);
    let _ = LibraryView::from_envelope(key, Bytes::copy_from_slice(data));
    // As a payload under a valid checksum.
    let Ok(sealed) = codec::encode_tagged(key, &Raw(data), Listing::SCHEMA) else {
        return;
    };
    let view = LibraryView::from_envelope(key, sealed.clone());
    let owned = codec::decode::<Listing>(key, &sealed);
    match (view, owned) {
        (Ok(view), Ok(owned)) => {
            assert_eq!(view.to_vec(), owned.0, "view and owned decode disagree");
            for item in view.iter() {
                let _ = view.find_by_rating_key(item.rating_key);
                for p in item.file_paths {
                    assert!(view.find_by_path(p).is_some());
                }
            }
        }
        (Err(_), Err(_)) => {}
        (v, o) => panic!("view {:?} but owned {:?}", v.is_ok(), o.is_ok()),
    }
    let Ok(sealed) = codec::encode_tagged(key, &Raw(data), <Vec<PlexItem>>::SCHEMA) else {
        return;
    };
    let _ = codec::decode::<Vec<PlexItem>>(key, &sealed);
});
