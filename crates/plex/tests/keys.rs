//! Property tests of the key schemes: no two different inputs share a key, every key decodes
//! back to its parts, and a library's prefixes match its own keys and no other library's.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use plexcache_plex::keys::{
    KeyKind, ParsedKey, escape_component, library_key, library_prefixes, match_key, parse_key,
    search_key, unescape_component,
};
use proptest::prelude::*;

/// Strings biased towards the characters that matter: separators, escapes, controls, Unicode.
fn component() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => proptest::collection::vec(
            prop_oneof![
                Just(':'), Just('%'), Just('A'), Just('3'), Just(' '), Just('\n'),
                Just('\u{0}'), Just('\u{7f}'), Just('\u{85}'), Just('é'), Just('東'),
                Just('\\'), Just('/'), Just('😀'),
            ],
            0..12,
        ).prop_map(|cs| cs.into_iter().collect()),
        2 => any::<String>(),
        1 => "[a-zA-Z0-9 ]{0,12}",
    ]
}

fn parsed_key() -> impl Strategy<Value = ParsedKey> {
    prop_oneof![
        component().prop_map(|name| ParsedKey::Library { name }),
        (component(), component()).prop_map(|(name, title)| ParsedKey::Search { name, title }),
        (component(), component()).prop_map(|(name, path)| ParsedKey::Match { name, path }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1_000))]

    #[test]
    fn keys_round_trip(k in parsed_key()) {
        let key = k.to_key();
        prop_assert_eq!(parse_key(&key), Some(k.clone()));
        // Components never leak separators or control characters into the key.
        prop_assert_eq!(key.matches(':').count(), 2);
        prop_assert!(!key.chars().any(char::is_control));
    }

    #[test]
    fn different_inputs_never_share_a_key(a in parsed_key(), b in parsed_key()) {
        prop_assert_eq!(a == b, a.to_key() == b.to_key());
    }

    #[test]
    fn search_keys_do_not_collide_on_colons(n1 in component(), t1 in component(), n2 in component(), t2 in component()) {
        let same = n1 == n2 && t1 == t2;
        prop_assert_eq!(same, search_key(&n1, &t1) == search_key(&n2, &t2));
        prop_assert_eq!(n1 == n2 && t1 == t2, match_key(&n1, &t1) == match_key(&n2, &t2));
        prop_assert_ne!(search_key(&n1, &t1), match_key(&n2, &t2));
        prop_assert_ne!(library_key(&n1), search_key(&n2, &t2));
    }

    #[test]
    fn prefixes_select_exactly_one_library(k in parsed_key(), other in component()) {
        let key = k.to_key();
        let own = library_prefixes(k.library());
        prop_assert!(own.iter().any(|p| key.starts_with(p.as_str())));
        prop_assert!(key.starts_with(&k.kind().prefix(k.library())));
        let matches_other = library_prefixes(&other).iter().any(|p| key.starts_with(p.as_str()));
        prop_assert_eq!(matches_other, other == k.library(), "{} vs library {:?}", key, other);
        // The same holds for a name that extends this one (Movies vs Movies 4K).
        let longer = format!("{} 4K", k.library());
        prop_assert!(!library_prefixes(&longer).iter().any(|p| key.starts_with(p.as_str())));
    }

    #[test]
    fn escaping_round_trips(s in component()) {
        let escaped = escape_component(&s);
        prop_assert!(!escaped.contains(':'));
        prop_assert_eq!(unescape_component(&escaped), Some(s.clone()));
    }

    #[test]
    fn arbitrary_strings_parse_only_in_canonical_form(s in "(library|search|match|x):[A-Za-z%:0-9]{0,10}(:[A-Za-z%0-9:]{0,8})?") {
        if let Some(k) = parse_key(&s) {
            prop_assert_eq!(k.to_key(), s);
        }
    }
}

#[test]
fn plain_names_are_readable() {
    assert_eq!(library_key("Movies"), "library:Movies:all");
    assert_eq!(search_key("Movies", "Amélie"), "search:Movies:Amélie");
    assert_eq!(search_key("TV: Kids", "Bluey"), "search:TV%3A Kids:Bluey");
    assert_eq!(KeyKind::Match.prefix("Music"), "match:Music:");
    assert_eq!(
        parse_key("match:Films:C%3A\\Films\\x.mkv"),
        Some(ParsedKey::Match {
            name: "Films".into(),
            path: "C:\\Films\\x.mkv".into()
        })
    );
}
