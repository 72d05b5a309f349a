//! Cache key schemes for Plex data.
//!
//! | kind    | key                         | holds                                   |
//! |---------|-----------------------------|-----------------------------------------|
//! | library | `library:{name}:all`        | every item of the library               |
//! | search  | `search:{name}:{title}`     | the items a title search returned       |
//! | match   | `match:{name}:{path}`       | the item a local file path belongs to   |
//!
//! Each component (`name`, `title`, `path`) is escaped: `%`, `:` and control characters
//! (Unicode category Cc: U+0000–U+001F, U+007F–U+009F) are replaced by `%XX` for each of their
//! UTF-8 bytes, upper-case hex. Everything else is kept, so plain names stay readable
//! (`library:Movies:all`, `search:Movies:Alien%3A Covenant`, `match:Films:/data/Amélie.mkv`).
//!
//! Because escaped components never contain `:`, a key splits back into its parts
//! unambiguously: no two different inputs share a key, and [`parse_key`] decodes every key these
//! functions make. [`parse_key`] accepts only the canonical form, so `parse_key(k)` succeeds
//! exactly when `k` is what [`ParsedKey::to_key`] would produce.
//!
//! All keys of one library start with one of three prefixes ([`library_prefixes`]), each ending
//! in the `:` after the escaped name, so the prefixes of `Movies` never match the keys of
//! `Movies 4K`.

use std::borrow::Cow;
use std::fmt;

/// The three kinds of key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KeyKind {
    /// `library:{name}:all`
    Library,
    /// `search:{name}:{title}`
    Search,
    /// `match:{name}:{path}`
    Match,
}

impl KeyKind {
    /// All kinds, in a fixed order.
    pub const ALL: [KeyKind; 3] = [KeyKind::Library, KeyKind::Search, KeyKind::Match];

    /// The first component of keys of this kind: `library`, `search` or `match`.
    pub fn tag(self) -> &'static str {
        match self {
            KeyKind::Library => "library",
            KeyKind::Search => "search",
            KeyKind::Match => "match",
        }
    }

    /// The prefix shared by every key of this kind for library `name`, e.g.
    /// `search:Movies:`. It ends in `:`, so it matches no key of a library whose name merely
    /// starts with `name`.
    pub fn prefix(self, name: &str) -> String {
        let name = escape_component(name);
        let mut s = String::with_capacity(self.tag().len() + name.len() + 2);
        s.push_str(self.tag());
        s.push(':');
        s.push_str(&name);
        s.push(':');
        s
    }
}

impl fmt::Display for KeyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.tag())
    }
}

/// A key decoded back into its kind and (unescaped) parts.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ParsedKey {
    /// `library:{name}:all`
    Library {
        /// The library name.
        name: String,
    },
    /// `search:{name}:{title}`
    Search {
        /// The library name.
        name: String,
        /// The searched title.
        title: String,
    },
    /// `match:{name}:{path}`
    Match {
        /// The library name.
        name: String,
        /// The local file path.
        path: String,
    },
}

impl ParsedKey {
    /// The kind of the key.
    pub fn kind(&self) -> KeyKind {
        match self {
            ParsedKey::Library { .. } => KeyKind::Library,
            ParsedKey::Search { .. } => KeyKind::Search,
            ParsedKey::Match { .. } => KeyKind::Match,
        }
    }

    /// The library name the key belongs to.
    pub fn library(&self) -> &str {
        match self {
            ParsedKey::Library { name }
            | ParsedKey::Search { name, .. }
            | ParsedKey::Match { name, .. } => name,
        }
    }

    /// Encodes the key again (the inverse of [`parse_key`]).
    pub fn to_key(&self) -> String {
        match self {
            ParsedKey::Library { name } => library_key(name),
            ParsedKey::Search { name, title } => search_key(name, title),
            ParsedKey::Match { name, path } => match_key(name, path),
        }
    }
}

impl fmt::Display for ParsedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_key())
    }
}

#[inline]
fn needs_escape(c: char) -> bool {
    c == '%' || c == ':' || c.is_control()
}

/// The byte offset of the first character of `s` that [`needs_escape`], found on the bytes
/// without decoding characters: `%`, `:`, U+0000-U+001F and U+007F are one byte each, and the
/// other control characters, U+0080-U+009F, are `C2 80` to `C2 9F`.
fn first_escape(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    (0..b.len()).find(|&i| match b[i] {
        0x00..=0x1F | 0x7F | b'%' | b':' => true,
        0xC2 => b.get(i + 1).is_some_and(|n| (0x80..=0x9F).contains(n)),
        _ => false,
    })
}

/// Escapes one key component: `%`, `:` and control characters become `%XX` per UTF-8 byte
/// (upper-case hex); every other character is kept. Borrows when nothing needs escaping.
pub fn escape_component(s: &str) -> Cow<'_, str> {
    let Some(first) = first_escape(s) else {
        return Cow::Borrowed(s);
    };
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(s.len() + 8);
    out.push_str(&s[..first]);
    let mut utf8 = [0u8; 4];
    for c in s[first..].chars() {
        if needs_escape(c) {
            for &b in c.encode_utf8(&mut utf8).as_bytes() {
                out.push('%');
                out.push(char::from(HEX[usize::from(b >> 4)]));
                out.push(char::from(HEX[usize::from(b & 0x0F)]));
            }
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Reverses [`escape_component`]. `None` unless `s` is the canonical escaped form of some
/// string (no raw `:` or control characters, no `%` that is not followed by two upper-case hex
/// digits, no escape of a character that needs none, valid UTF-8 once decoded).
pub fn unescape_component(s: &str) -> Option<String> {
    if !s.contains('%') {
        return (!s.chars().any(needs_escape)).then(|| s.to_owned());
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hi = hex_value(*bytes.get(i + 1)?)?;
            let lo = hex_value(*bytes.get(i + 2)?)?;
            out.push(hi << 4 | lo);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    let decoded = String::from_utf8(out).ok()?;
    // Canonical form only: this rejects `%41`, lower-case hex and raw characters that need
    // escaping, so every key has exactly one spelling.
    (escape_component(&decoded) == s).then_some(decoded)
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// `library:{name}:all`: every item of library `name`.
pub fn library_key(name: &str) -> String {
    let mut s = KeyKind::Library.prefix(name);
    s.push_str("all");
    s
}

/// `search:{name}:{title}`: the results of searching library `name` for `title`.
pub fn search_key(name: &str, title: &str) -> String {
    let mut s = KeyKind::Search.prefix(name);
    s.push_str(&escape_component(title));
    s
}

/// `match:{name}:{path}`: the item of library `name` that local file `path` belongs to.
pub fn match_key(name: &str, path: &str) -> String {
    let path = escape_component(path);
    let mut s = KeyKind::Match.prefix(name);
    s.reserve_exact(path.len());
    s.push_str(&path);
    s
}

/// The prefixes of all keys of library `name`, one per kind (`library:{name}:`,
/// `search:{name}:`, `match:{name}:`). Removing every key under these three prefixes drops the
/// library's data and nothing else: the escaped name is followed by `:`, so `Movies` does not
/// match `Movies 4K`.
pub fn library_prefixes(name: &str) -> [String; 3] {
    KeyKind::ALL.map(|k| k.prefix(name))
}

/// Decodes a key made by [`library_key`], [`search_key`] or [`match_key`]. `None` for anything
/// else (another scheme, a wrong number of parts, a non-canonical escape).
pub fn parse_key(key: &str) -> Option<ParsedKey> {
    let mut parts = key.split(':');
    let tag = parts.next()?;
    let name = unescape_component(parts.next()?)?;
    let last = parts.next()?;
    if parts.next().is_some() {
        return None;
    }
    match tag {
        "library" if last == "all" => Some(ParsedKey::Library { name }),
        "search" => Some(ParsedKey::Search {
            name,
            title: unescape_component(last)?,
        }),
        "match" => Some(ParsedKey::Match {
            name,
            path: unescape_component(last)?,
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The byte scan finds the same first character as the definition on characters, for
    /// every character that needs escaping or borders one (U+007E-U+00A0, C2 lead bytes of
    /// printable characters) and in every position.
    #[test]
    fn the_byte_scan_agrees_with_the_characters() {
        let specials: Vec<char> = (0u32..=0xA1)
            .chain([0x100, 0x2028, 0xFEFF, 0x1F3AC])
            .filter_map(char::from_u32)
            .collect();
        for &c in &specials {
            for s in [
                format!("{c}"),
                format!("ab{c}"),
                format!("é{c}x"),
                format!("\u{a0}{c}\u{85}"),
                format!("/m/{c}/{c}"),
            ] {
                assert_eq!(
                    first_escape(&s),
                    s.find(needs_escape),
                    "{s:?} ({:X})",
                    u32::from(c)
                );
            }
        }
        assert_eq!(first_escape(""), None);
    }

    #[test]
    fn plain_names_stay_readable() {
        assert_eq!(library_key("Movies"), "library:Movies:all");
        assert_eq!(search_key("Movies", "Alien"), "search:Movies:Alien");
        assert_eq!(
            match_key("TV Shows", "/tv/The Simpsons/S01E01.mkv"),
            "match:TV Shows:/tv/The Simpsons/S01E01.mkv"
        );
        assert_eq!(
            match_key("Films", r"D:\Films\Amélie (2001).mkv"),
            r"match:Films:D%3A\Films\Amélie (2001).mkv"
        );
    }

    #[test]
    fn colons_and_percents_are_escaped() {
        assert_eq!(search_key("a:b", "c"), "search:a%3Ab:c");
        assert_eq!(search_key("a", "b:c"), "search:a:b%3Ac");
        assert_ne!(search_key("a:b", "c"), search_key("a", "b:c"));
        assert_eq!(library_key("100%"), "library:100%25:all");
        assert_eq!(library_key("tab\there"), "library:tab%09here:all");
        assert_eq!(library_key("c1\u{85}"), "library:c1%C2%85:all");
    }

    #[test]
    fn parse_round_trips_and_rejects_non_canonical_keys() {
        for key in [
            library_key("Movies"),
            search_key("Movies 4K", "Alien: Covenant"),
            match_key("Music", "/music/100% Hits/01.flac"),
        ] {
            let parsed = parse_key(&key);
            assert_eq!(parsed.as_ref().map(ParsedKey::to_key), Some(key));
        }
        assert_eq!(
            parse_key("search:a%3Ab:c"),
            Some(ParsedKey::Search {
                name: "a:b".into(),
                title: "c".into()
            })
        );
        for bad in [
            "library:Movies",
            "library:Movies:some",
            "library:Movies:all:x",
            "search:a:b:c",
            "other:a:b",
            "search:%41:b",
            "search:%3a:b",
            "search:%3:b",
            "search:%FF:b",
            "search:a\tb:c",
            "",
        ] {
            assert_eq!(parse_key(bad), None, "{bad:?} must not parse");
        }
    }

    #[test]
    fn library_prefixes_do_not_leak_to_similar_names() {
        let prefixes = library_prefixes("Movies");
        assert_eq!(
            prefixes,
            ["library:Movies:", "search:Movies:", "match:Movies:"]
        );
        for key in [
            library_key("Movies 4K"),
            search_key("Movies 4K", "x"),
            match_key("Movies:4K", "/x"),
        ] {
            assert!(
                prefixes.iter().all(|p| !key.starts_with(p.as_str())),
                "{key}"
            );
        }
        for key in [
            library_key("Movies"),
            search_key("Movies", "x"),
            match_key("Movies", "/x"),
        ] {
            assert!(
                prefixes.iter().any(|p| key.starts_with(p.as_str())),
                "{key}"
            );
        }
    }
}
