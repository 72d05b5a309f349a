//! Key escaping and parsing: keys built from any names, titles and paths parse back to them;
//! any string that parses is the canonical spelling of what it parses to.
#![no_main]

use libfuzzer_sys::fuzz_target;
use plexcache_plex::keys::{self, ParsedKey};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    // Any string: if it parses, it is the canonical key of what it parses to.
    if let Some(parsed) = keys::parse_key(s) {
        assert_eq!(parsed.to_key(), s);
    }
    // Split into a name and a title/path; build every kind of key and parse it back.
    let (name, rest) = s.split_once('\u{1}').unwrap_or((s, ""));
    assert_eq!(
        keys::parse_key(&keys::library_key(name)),
        Some(ParsedKey::Library { name: name.into() })
    );
    assert_eq!(
        keys::parse_key(&keys::search_key(name, rest)),
        Some(ParsedKey::Search {
            name: name.into(),
            title: rest.into()
        })
    );
    assert_eq!(
        keys::parse_key(&keys::match_key(name, rest)),
        Some(ParsedKey::Match {
            name: name.into(),
            path: rest.into()
        })
    );
    // A library's prefixes cover its keys.
    let prefixes = keys::library_prefixes(name);
    for k in [
        keys::library_key(name),
        keys::search_key(name, rest),
        keys::match_key(name, rest),
    ] {
        assert!(prefixes.iter().any(|p| k.starts_with(p.as_str())), "{k:?}");
    }
});
