//! XML extraction of a library page: any bytes give items or an error, never a panic, and the
//! streaming reader agrees with the slice parser.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let slice = plexcache_plex::extract_items_xml(data);
    if data.first() == Some(&b'<') {
        let streamed = plexcache_plex::extract_items_from_reader(std::io::Cursor::new(data));
        if let (Ok(a), Ok(b)) = (&slice, &streamed) {
            assert_eq!(a.items, b.items, "slice and reader disagree");
        }
    }
});
