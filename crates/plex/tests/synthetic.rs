//! The synthetic `/all` generator: its responses extract to exactly the items it says, in both
//! formats, through slices and streams, paged or not.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::BufReader;

use plexcache_plex::synthetic::{Spec, expected_items, generate, generate_json, generate_xml};
use plexcache_plex::{Format, extract_items, extract_items_from_reader};

#[test]
fn ten_thousand_items_in_both_formats() {
    let spec = Spec::new(10_000);
    let expected = expected_items(&spec);
    assert_eq!(expected.len(), 10_000);
    for format in [Format::Json, Format::Xml] {
        let bytes = generate(&spec, format);
        let page = extract_items(&bytes).unwrap_or_else(|e| panic!("{format}: {e}"));
        assert_eq!(page.items.len(), 10_000);
        assert!(
            page.items == expected,
            "{format}: extraction differs from the expected items"
        );
        assert_eq!(
            (page.offset, page.total_size, page.size),
            (Some(0), Some(10_000), Some(10_000))
        );
    }
}

#[test]
fn streamed_extraction_agrees() {
    let spec = Spec::new(1_000);
    for format in [Format::Json, Format::Xml] {
        let bytes = generate(&spec, format);
        let streamed =
            extract_items_from_reader(BufReader::with_capacity(4096, &bytes[..])).unwrap();
        assert!(
            streamed == extract_items(&bytes).unwrap(),
            "{format}: the reader disagrees"
        );
        assert!(streamed.items == expected_items(&spec), "{format}");
    }
}

#[test]
fn shape_is_like_the_real_fixtures() {
    let spec = Spec::new(2_000);
    let items = expected_items(&spec);
    let multi_version_or_part = items.iter().filter(|i| i.file_paths.len() > 1).count();
    assert!(
        (200..700).contains(&multi_version_or_part),
        "{multi_version_or_part} items with several files"
    );
    assert!(items.iter().any(|i| i.title.contains(':')));
    assert!(items.iter().any(|i| !i.title.is_ascii()));
    assert!(
        items
            .iter()
            .any(|i| i.title.contains('&') || i.title.contains('"'))
    );
    let json = String::from_utf8(generate_json(&spec)).unwrap();
    for needle in [
        "\"Stream\":[",
        "\"Genre\":[",
        "\"Role\":[",
        "\"Director\":[",
        "\"UltraBlurColors\":{",
        "\"year\":\"",
        "\"size\":\"",
        "\"hasThumbnail\":\"1\"",
        "\"optimizedForStreaming\":1",
        "\"allowSync\":true",
    ] {
        assert!(json.contains(needle), "JSON lacks {needle}");
    }
    let xml = String::from_utf8(generate_xml(&spec)).unwrap();
    for needle in [
        "<Stream ",
        "<Genre ",
        "<Role ",
        "&apos;",
        "&amp;",
        "&#xD;&#xA;",
        "<Part ",
    ] {
        assert!(xml.contains(needle), "XML lacks {needle}");
    }
    // About 3 KB of JSON per item, like the recorded 341-movie library.
    let per_item = json.len() / spec.items;
    assert!(
        (1_500..6_000).contains(&per_item),
        "{per_item} bytes per item"
    );
}

#[test]
fn pages_of_a_library_concatenate_to_the_library() {
    let library = Spec::new(250);
    let whole = expected_items(&library);
    let mut collected = Vec::new();
    let mut offset = 0u64;
    loop {
        let spec = library.page(
            usize::try_from(offset).unwrap(),
            100.min(250 - offset as usize),
            250,
        );
        let page = extract_items(&generate_xml(&spec)).unwrap();
        collected.extend(page.items.iter().cloned());
        match page.next_offset() {
            Some(next) => offset = next,
            None => break,
        }
    }
    assert_eq!(collected, whole);
}
