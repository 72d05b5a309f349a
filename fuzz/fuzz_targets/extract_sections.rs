//! `/library/sections` extraction, JSON or XML: sections or an error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = plexcache_plex::extract_sections(data);
    let _ = plexcache_plex::extract_sections_from_reader(std::io::Cursor::new(data));
});
