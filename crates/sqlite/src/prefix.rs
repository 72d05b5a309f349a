//! Prefix ranges on the primary key: `key >= prefix AND key < successor(prefix)`.
//!
//! SQLite compares `TEXT` with the BINARY collation by `memcmp` over the full length (NUL
//! bytes included), which for UTF-8 is code point order. The successor is computed on code
//! points so that it stays valid UTF-8 and can be bound as text: the last code point that can
//! be incremented is incremented (skipping the surrogate gap) and everything after it dropped;
//! a prefix made only of U+10FFFF has no upper bound.

/// The smallest string greater than every string that starts with `prefix`, or `None` when
/// there is none (empty prefix, or only U+10FFFF).
pub(crate) fn successor(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        if let Some(next) = next_char(last) {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

fn next_char(c: char) -> Option<char> {
    match c {
        '\u{D7FF}' => Some('\u{E000}'),
        char::MAX => None,
        c => char::from_u32(c as u32 + 1),
    }
}

#[cfg(test)]
mod tests {
    use super::successor;

    fn covers(prefix: &str, key: &str) -> bool {
        key >= prefix && successor(prefix).is_none_or(|s| key < s.as_str())
    }

    #[test]
    fn successors() {
        assert_eq!(successor(""), None);
        assert_eq!(successor("a").as_deref(), Some("b"));
        assert_eq!(successor("lib:a:").as_deref(), Some("lib:a;"));
        assert_eq!(successor("a\u{10FFFF}").as_deref(), Some("b"));
        assert_eq!(successor("\u{10FFFF}\u{10FFFF}"), None);
        assert_eq!(successor("x\u{D7FF}").as_deref(), Some("x\u{E000}"));
        assert_eq!(successor("x\u{7F}").as_deref(), Some("x\u{80}"));
        assert_eq!(successor("x\u{FFFF}").as_deref(), Some("x\u{10000}"));
        assert_eq!(successor("x\0").as_deref(), Some("x\u{1}"));
    }

    #[test]
    fn range_matches_starts_with() {
        let samples = [
            "",
            "a",
            "ab",
            "b",
            "a\0",
            "a\0b",
            "a\u{7F}",
            "a\u{80}",
            "a\u{10FFFF}",
            "a\u{10FFFF}z",
            "b\0",
            "\u{10FFFF}",
            "\u{10FFFF}\u{10FFFF}",
            "é",
            "éa",
            "ê",
            "x\u{D7FF}",
            "x\u{D7FF}q",
            "x\u{E000}",
            "x\u{FFFF}",
            "x\u{10000}",
            "%",
            "%a",
            "_",
        ];
        for p in samples {
            for k in samples {
                assert_eq!(covers(p, k), k.starts_with(p), "prefix {p:?} key {k:?}");
            }
        }
    }
}
