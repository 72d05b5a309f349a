//! Hand-written edge cases (`tests/fixtures/edge`) and malformed inputs: every quirk handled,
//! every malformed response an [`ExtractError`] that says what and where, never a panic.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Cursor, Read};
use std::path::Path;

use plexcache_plex::{
    ExtractError, Format, ItemKind, extract_items, extract_items_from_reader, extract_items_json,
    extract_items_xml, extract_sections,
};

fn edge(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/edge")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn fixture(rel: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(rel),
    )
    .unwrap()
}

fn err(name: &str) -> ExtractError {
    let bytes = edge(name);
    let e = extract_items(&bytes).expect_err(name);
    // The streaming reader reports the same kind of error.
    let streamed = extract_items_from_reader(BufReader::with_capacity(5, Cursor::new(&bytes)))
        .expect_err(name);
    assert_eq!(
        std::mem::discriminant(&e),
        std::mem::discriminant(&streamed),
        "{name}: {e} vs {streamed}"
    );
    assert_eq!(e.path(), streamed.path(), "{name}");
    e
}

// ---------------------------------------------------------------------------------------------
// Quirks that must parse
// ---------------------------------------------------------------------------------------------

#[test]
fn windows_paths_and_numbers_as_strings_json() {
    let page = extract_items(&edge("windows_paths.json")).unwrap();
    assert_eq!(
        (
            page.size,
            page.total_size,
            page.offset,
            page.library_section_id
        ),
        (Some(3), Some(3), Some(0), Some(4)),
        "container numbers sent as strings"
    );
    let [amelie, mi, show] = &page.items[..] else {
        panic!("3 items expected, got {:?}", page.items)
    };
    assert_eq!(amelie.rating_key, "5001", "a ratingKey sent as a number");
    assert_eq!(amelie.title, "Amélie");
    assert_eq!(amelie.year, Some(2001));
    assert_eq!(amelie.updated_at, Some(1_700_000_001));
    assert_eq!(
        amelie.file_paths,
        [r"C:\Media\Films\Amélie (2001)\Amélie.mkv"]
    );
    assert_eq!(amelie.library_section_id, Some(4), "copied down");
    assert_eq!(mi.year, Some(2023), "an integral float");
    assert_eq!(mi.library_section_id, Some(7), "the item's own id wins");
    assert_eq!(
        mi.file_paths,
        [
            r"\\NAS\Films\MI7\MI7 cd1.mkv",
            r"\\NAS\Films\MI7\MI7 cd2.mkv"
        ]
    );
    assert_eq!(show.kind, ItemKind::Show);
    assert_eq!(show.title, "東京物語: 特別編");
    assert_eq!(show.year, None, "null is absent");
    assert_eq!(show.file_paths, [r"D:\TV\東京物語"]);
}

#[test]
fn windows_paths_xml() {
    let page = extract_items(&edge("windows_paths.xml")).unwrap();
    assert_eq!(page.items.len(), 2);
    assert_eq!(
        page.items[0].file_paths,
        [r"C:\Media\Films\Amélie (2001)\Amélie.mkv"]
    );
    assert_eq!(page.items[1].file_paths, [r"D:\TV\東京物語"]);
    assert_eq!(page.items[1].title, "東京物語: 特別編");
    assert!(page.items.iter().all(|i| i.library_section_id == Some(4)));
}

#[test]
fn xml_entities_bom_doctype_comments_and_cdata() {
    let bytes = edge("entities.xml");
    assert!(
        bytes.starts_with(b"\xEF\xBB\xBF"),
        "the fixture starts with a BOM"
    );
    let page = extract_items(&bytes).unwrap();
    assert_eq!(page.size, Some(9), "size disagrees with the 3 items");
    assert_eq!(
        page.entries, 4,
        "the All episodes directory has no ratingKey"
    );
    let [movie, track, photo] = &page.items[..] else {
        panic!("3 items expected, got {:?}", page.items)
    };
    assert_eq!(movie.title, "Tom & Jerry: It's \"<Back>\"");
    assert_eq!(
        movie.file_paths,
        ["/movies/Tom & Jerry/Tom & Jerry's Märchen.mkv"]
    );
    assert_eq!(movie.library_section_id, Some(8));
    // Character references survive attribute-value normalisation (as in expat).
    assert_eq!(track.title, "Träumerei\r\n(live)");
    assert_eq!(
        track.kind,
        ItemKind::Track,
        "no type: the element name decides"
    );
    assert_eq!(track.library_section_id, Some(9));
    assert_eq!(track.file_paths, ["/music/Schumann/Träumerei.flac"]);
    assert_eq!(photo.title, "Café");
    assert_eq!(photo.kind, ItemKind::Photo);
}

/// The items of `edge/control_characters.{xml,json}` without the characters python-plexapi
/// strips, through the slice and the streaming extractors alike.
#[test]
fn control_characters_are_stripped_as_plexapi_does() {
    for name in ["control_characters.xml", "control_characters.json"] {
        let bytes = edge(name);
        let page = extract_items(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        let streamed =
            extract_items_from_reader(BufReader::with_capacity(7, Cursor::new(&bytes))).unwrap();
        assert_eq!(page.items, streamed.items, "{name}");
        let [movie, show] = &page.items[..] else {
            panic!("{name}: 2 items expected, got {:?}", page.items)
        };
        assert_eq!(movie.rating_key, "10", "{name}");
        assert_eq!(movie.key, "/library/metadata/10", "{name}");
        // ESC, BEL, CSI (U+009B), U+FFFE, U+FDD0, U+1FFFE and U+10FFFF go; NEL (U+0085) stays.
        assert_eq!(movie.title, "Red [31mAlert[0m 2J\u{85}!", "{name}");
        assert_eq!(
            movie.year,
            Some(1999),
            "{name}: a vertical tab inside the year"
        );
        assert_eq!(movie.file_paths, ["/movies/Red Alert (1999).mkv"], "{name}");
        assert_eq!(show.rating_key, "20", "{name}");
        assert_eq!(
            show.title, "Show Name é\u{1f3ac}",
            "{name}: DEL and U+0084 go"
        );
        assert_eq!(show.file_paths, ["/tv/Show Name"], "{name}");
        for item in &page.items {
            for s in [item.rating_key.as_str(), &item.key, &item.title]
                .into_iter()
                .chain(item.file_paths.iter().map(String::as_str))
            {
                assert!(
                    !s.chars().any(|c| c.is_control() && c != '\u{85}'),
                    "{name}: {s:?}"
                );
            }
        }
    }
}

#[test]
fn control_characters_in_character_references_and_sections() {
    // A character reference to a control character decodes to it, then goes like a raw one.
    let xml = br#"<MediaContainer size="1"><Video ratingKey="1" key="/k" type="movie" title="A&#x1b;[2JB&#7;"/></MediaContainer>"#;
    let page = extract_items_xml(xml).unwrap();
    assert_eq!(page.items[0].title, "A[2JB");
    // Section titles, keys and locations too, in both formats.
    let json = "{\"MediaContainer\":{\"Directory\":[{\"key\":\"1\\u0000\",\"title\":\"Mov\\u001bies\",\"type\":\"movie\",\"Location\":[{\"path\":\"/m\\u0007\"}]}]}}";
    let xml = "<MediaContainer><Directory key=\"1\u{0}\" title=\"Mov\u{1b}ies\" type=\"movie\"><Location path=\"/m\u{7}\"/></Directory></MediaContainer>";
    for doc in [json, xml] {
        let sections = extract_sections(doc.as_bytes()).unwrap_or_else(|e| panic!("{doc}: {e}"));
        assert_eq!(sections.len(), 1, "{doc}");
        assert_eq!(sections[0].id, 1, "{doc}");
        assert_eq!(sections[0].key, "1", "{doc}");
        assert_eq!(sections[0].title, "Movies", "{doc}");
        assert_eq!(sections[0].locations, ["/m"], "{doc}");
    }
}

#[test]
fn nested_hub_items_are_excluded_json() {
    let page = extract_items(&edge("nested_hubs.json")).unwrap();
    let keys: Vec<_> = page.items.iter().map(|i| i.rating_key.as_str()).collect();
    assert_eq!(
        keys,
        ["1389", "50373"],
        "the OnDeck episode and the actor tag are not results"
    );
    assert_eq!(
        page.items[0].file_paths,
        ["/tv/Simpsonians", "/tv/The Simpsons"]
    );
    assert_eq!(
        page.items[0].library_section_id,
        Some(2),
        "copied down from the hub"
    );
    assert_eq!(
        page.items[1].library_section_id,
        Some(3),
        "the item's own, sent as a string"
    );
}

#[test]
fn size_mismatch_and_parts_without_file() {
    let page = extract_items(&edge("size_mismatch.xml")).unwrap();
    assert_eq!(page.size, Some(10));
    assert_eq!(page.items.len(), 2);
    assert_eq!(page.items[0].file_paths, Vec::<String>::new());
    assert_eq!(page.items[1].file_paths, ["/m/two.mkv"]);
    assert_eq!(
        page.next_offset(),
        None,
        "offset 10 + 2 entries reaches totalSize 12"
    );
}

#[test]
fn booleans_in_every_form_are_skipped() {
    let json = br#"{"MediaContainer":{"allowSync":true,"nocache":1,"Metadata":[
        {"ratingKey":"1","key":"/k","title":"t","type":"movie","hasPremiumExtras":"1",
         "skipChildren":false,"Media":[{"optimizedForStreaming":1,"has64bitOffsets":"0",
         "Part":[{"file":"/f","hasThumbnail":true,"size":12345678901234}]}]}]}}"#;
    let page = extract_items(json).unwrap();
    assert_eq!(page.items[0].file_paths, ["/f"]);
}

#[test]
fn empty_container_forms() {
    for input in [
        &b"<MediaContainer size=\"0\"/>"[..],
        b"<MediaContainer></MediaContainer>",
        b"{\"MediaContainer\":{}}",
        b"{\"MediaContainer\":{\"Metadata\":null,\"Directory\":[]}}",
    ] {
        let page = extract_items(input).unwrap();
        assert!(page.items.is_empty());
    }
}

#[test]
fn search_result_metadata_may_be_a_list() {
    let json = br#"{"MediaContainer":{"SearchResult":[{"score":1,"Metadata":[
        {"ratingKey":"1","key":"/library/metadata/1","title":"A","type":"movie"},
        {"ratingKey":"2","key":"/library/metadata/2","title":"B","type":"episode"}]}]}}"#;
    assert_eq!(extract_items(json).unwrap().items.len(), 2);
}

// ---------------------------------------------------------------------------------------------
// Malformed responses
// ---------------------------------------------------------------------------------------------

#[test]
fn truncated_json_says_where() {
    let e = err("truncated.json");
    let ExtractError::Truncated {
        format,
        position,
        path,
        ..
    } = &e
    else {
        panic!("expected Truncated, got {e:?}")
    };
    assert_eq!(*format, Format::Json);
    assert_eq!(position.line, Some(66));
    assert_eq!(
        position.offset,
        Some(2499),
        "the last byte of the 2500-byte file"
    );
    assert_eq!(path, "MediaContainer.Metadata[0]");
    let msg = e.to_string();
    assert!(
        msg.contains("truncated JSON") && msg.contains("line 66"),
        "{msg}"
    );
}

#[test]
fn truncated_xml_inside_a_tag() {
    let e = err("truncated_in_tag.xml");
    let ExtractError::Truncated {
        format,
        position,
        path,
        ..
    } = &e
    else {
        panic!("expected Truncated, got {e:?}")
    };
    assert_eq!(*format, Format::Xml);
    assert_eq!(path, "MediaContainer/Video[1]/Media[0]");
    assert_eq!(
        position.line,
        Some(17),
        "the unclosed <Part> starts on line 17"
    );
    assert!(position.offset.is_some());
}

#[test]
fn truncated_xml_with_open_elements() {
    let e = err("truncated_unclosed.xml");
    let ExtractError::Truncated {
        position, message, ..
    } = &e
    else {
        panic!("expected Truncated, got {e:?}")
    };
    assert_eq!(position.offset, Some(1406), "the end of the file");
    assert!(message.contains("2 element(s) still open"), "{message}");
}

#[test]
fn wrong_types_json() {
    let cases = [
        (
            "wrong_type_media.json",
            "MediaContainer.Metadata[2].Media",
            "invalid type: string \"1080p\", expected a list of objects",
            196,
        ),
        (
            "wrong_type_year.json",
            "MediaContainer.Metadata[1].year",
            "\"two thousand six\" is not an integer",
            99,
        ),
        (
            "wrong_type_title.json",
            "MediaContainer.Metadata[0].title",
            "invalid type: map, expected a string or a number",
            25,
        ),
        (
            "wrong_type_metadata.json",
            "MediaContainer.Metadata",
            "invalid type: integer `42`, expected a list of objects",
            17,
        ),
    ];
    for (name, want_path, want_message, want_line) in cases {
        let bytes = edge(name);
        let e = extract_items(&bytes).unwrap_err();
        let ExtractError::Invalid {
            format,
            position,
            path,
            message,
        } = &e
        else {
            panic!("{name}: expected Invalid, got {e:?}")
        };
        assert_eq!(*format, Format::Json, "{name}");
        assert_eq!(path, want_path, "{name}");
        assert_eq!(message, want_message, "{name}");
        assert_eq!(position.line, Some(want_line), "{name}");
        // The byte offset points into the offending line.
        let offset = usize::try_from(position.offset.unwrap()).unwrap();
        let line_of_offset = bytes[..offset].iter().filter(|&&b| b == b'\n').count() + 1;
        assert_eq!(line_of_offset as u64, want_line, "{name}");
        let shown = e.to_string();
        assert!(
            shown.contains(want_path) && shown.contains("line"),
            "{shown}"
        );
        // The reader reports the same thing.
        let streamed = extract_items_from_reader(Cursor::new(&bytes)).unwrap_err();
        assert_eq!(streamed.path(), want_path, "{name}");
    }
}

#[test]
fn wrong_number_xml() {
    let e = err("wrong_year.xml");
    let ExtractError::Invalid {
        position,
        path,
        message,
        ..
    } = &e
    else {
        panic!("expected Invalid, got {e:?}")
    };
    assert_eq!(path, "MediaContainer/Video[1]@year");
    assert!(message.contains("\"20x6\" is not an integer"), "{message}");
    assert_eq!((position.line, position.column), (Some(4), Some(1)));
}

#[test]
fn bad_entity_and_mismatched_tags_xml() {
    let e = err("bad_entity.xml");
    assert!(
        matches!(
            e,
            ExtractError::Syntax {
                format: Format::Xml,
                ..
            }
        ),
        "{e:?}"
    );
    assert_eq!(e.path(), "MediaContainer/Video[0]@title");
    assert!(e.to_string().contains("eacute"), "{e}");

    let e = err("mismatched_tags.xml");
    assert!(
        matches!(
            e,
            ExtractError::Syntax {
                format: Format::Xml,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("</Media>"), "{e}");
    assert_eq!(e.position().and_then(|p| p.line), Some(3));
}

#[test]
fn not_a_pms_response() {
    let e = err("not_pms.html");
    let ExtractError::MissingMediaContainer { format, found, .. } = &e else {
        panic!("expected MissingMediaContainer, got {e:?}")
    };
    assert_eq!(*format, Format::Xml);
    assert_eq!(found, "the root element is <html>");

    let e = err("no_media_container.json");
    let ExtractError::MissingMediaContainer { format, found, .. } = &e else {
        panic!("expected MissingMediaContainer, got {e:?}")
    };
    assert_eq!(*format, Format::Json);
    assert!(found.contains("\"errors\""), "{found}");

    let e = err("not_json_or_xml.txt");
    let ExtractError::NotJsonOrXml { offset, found } = &e else {
        panic!("expected NotJsonOrXml, got {e:?}")
    };
    assert_eq!(*offset, 0);
    assert!(found.starts_with("401 Unauthorized"), "{found}");

    assert!(matches!(err("whitespace_only.json"), ExtractError::Empty));
    assert!(matches!(extract_items(b""), Err(ExtractError::Empty)));
    assert!(matches!(
        extract_items_from_reader(Cursor::new(Vec::new())),
        Err(ExtractError::Empty)
    ));

    let e = err("trailing_garbage.json");
    assert!(
        matches!(
            e,
            ExtractError::Syntax {
                format: Format::Json,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("trailing characters"), "{e}");
}

#[test]
fn other_shapes_without_media_container() {
    for (input, want) in [
        (&b"[1, 2, 3]"[..], "the document is an array"),
        (b"{}", "the top-level object is empty"),
        (
            b"<?xml version=\"1.0\"?>\n<!-- nothing -->\n",
            "the document has no root element",
        ),
        (
            b"<Response code=\"401\" status=\"Unauthorized\"/>",
            "the root element is <Response>",
        ),
    ] {
        match extract_items(input) {
            Err(ExtractError::MissingMediaContainer { found, .. }) => assert_eq!(found, want),
            other => panic!("{}: {other:?}", String::from_utf8_lossy(input)),
        }
    }
    // A MediaContainer of the wrong type.
    let e = extract_items(br#"{"MediaContainer": [1]}"#).unwrap_err();
    assert!(matches!(e, ExtractError::Invalid { .. }), "{e:?}");
    assert_eq!(e.path(), "MediaContainer");
    let e = extract_items(br#"{"MediaContainer": {}, "MediaContainer": {}}"#).unwrap_err();
    assert!(e.to_string().contains("duplicate field"), "{e}");
}

#[test]
fn content_after_the_root_element() {
    let ok = b"<MediaContainer size=\"0\"/>\n<!-- served by PMS -->\n  ";
    assert!(extract_items(ok).is_ok());
    for (input, want) in [
        (
            &b"<MediaContainer/><MediaContainer/>"[..],
            "element <MediaContainer> after the root element",
        ),
        (
            b"<MediaContainer></MediaContainer>garbage",
            "text after the root element",
        ),
    ] {
        let e = extract_items(input).unwrap_err();
        assert!(
            matches!(
                e,
                ExtractError::Syntax {
                    format: Format::Xml,
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(e.to_string().contains(want), "{e}");
        let streamed = extract_items_from_reader(input).unwrap_err();
        assert!(streamed.to_string().contains(want), "{streamed}");
    }
}

#[test]
fn out_of_range_and_wrong_numbers() {
    for (json, path) in [
        (
            r#"{"MediaContainer":{"librarySectionID":5000000000}}"#,
            "MediaContainer.librarySectionID",
        ),
        (
            r#"{"MediaContainer":{"Metadata":[{"ratingKey":"1","year":-3}]}}"#,
            "MediaContainer.Metadata[0].year",
        ),
        (
            r#"{"MediaContainer":{"Metadata":[{"ratingKey":"1","year":1.5}]}}"#,
            "MediaContainer.Metadata[0].year",
        ),
        (
            r#"{"MediaContainer":{"Metadata":[{"ratingKey":"1","updatedAt":true}]}}"#,
            "MediaContainer.Metadata[0].updatedAt",
        ),
        (
            r#"{"MediaContainer":{"Metadata":[{"ratingKey":true}]}}"#,
            "MediaContainer.Metadata[0].ratingKey",
        ),
        (
            r#"{"MediaContainer":{"Metadata":[{"ratingKey":"1","Media":[{"Part":[{"file":7.5},{"file":["x"]}]}]}]}}"#,
            "MediaContainer.Metadata[0].Media[0].Part[1].file",
        ),
        (
            r#"{"MediaContainer":{"Metadata":[{"ratingKey":"1","Location":[{"path":{}}]}]}}"#,
            "MediaContainer.Metadata[0].Location[0].path",
        ),
        (
            r#"{"MediaContainer":{"Metadata":["not an object"]}}"#,
            "MediaContainer.Metadata[0]",
        ),
        (
            r#"{"MediaContainer":{"Hub":[{"Metadata":[{"ratingKey":"1","year":"x"}]}]}}"#,
            "MediaContainer.Hub[0].Metadata[0].year",
        ),
    ] {
        let e = extract_items_json(json.as_bytes()).unwrap_err();
        assert!(matches!(e, ExtractError::Invalid { .. }), "{json}: {e:?}");
        assert_eq!(e.path(), path, "{json}: {e}");
    }
    let e = extract_items_xml(br#"<MediaContainer totalSize="-1"/>"#).unwrap_err();
    assert_eq!(e.path(), "MediaContainer@totalSize", "{e}");
    let e = extract_items_xml(
        br#"<MediaContainer><Hub librarySectionID="x"><Video ratingKey="1"/></Hub></MediaContainer>"#,
    )
    .unwrap_err();
    assert_eq!(e.path(), "MediaContainer/Hub[0]@librarySectionID", "{e}");
}

#[test]
fn deep_nesting_never_overflows_the_stack() {
    // Skipped values are skipped iteratively, however deep.
    let deep = format!(
        r#"{{"MediaContainer":{{"Metadata":[{{"ratingKey":"1","x":{}{}}}]}}}}"#,
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    assert_eq!(extract_items(deep.as_bytes()).unwrap().items.len(), 1);
    let unclosed = format!(
        r#"{{"MediaContainer":{{"Metadata":[{{"ratingKey":"1","x":{}"#,
        "[".repeat(100_000)
    );
    let e = extract_items(unclosed.as_bytes()).unwrap_err();
    assert!(matches!(e, ExtractError::Truncated { .. }), "{e:?}");
    // Values the visitors descend into are bounded by serde_json's recursion limit.
    let mut nested = String::from(r#"{"MediaContainer":{"Metadata":[{"ratingKey":"1","title":"#);
    nested.push_str(&"{\"a\":".repeat(200));
    let e = extract_items(nested.as_bytes()).unwrap_err();
    assert!(
        matches!(
            e,
            ExtractError::Invalid { .. } | ExtractError::Truncated { .. }
        ),
        "{e:?}"
    );

    let mut xml = String::from("<MediaContainer><Video ratingKey=\"1\">");
    xml.push_str(&"<a>".repeat(100_000));
    xml.push_str(&"</a>".repeat(100_000));
    xml.push_str("</Video></MediaContainer>");
    let page = extract_items(xml.as_bytes()).unwrap();
    assert_eq!(page.items.len(), 1, "deep XML is skipped iteratively");
}

/// Every prefix of a real response is either a complete parse or an error; none panics, and
/// the reader agrees with the slice on which.
#[test]
fn every_prefix_of_a_response_is_handled() {
    for (rel, step) in [
        ("json/show_children_seasons.plex-api-rs.json", 3),
        ("xml/hubs_search.plexdevices.xml", 7),
        ("json/library_search_tags.plex-api-spec.json", 2),
        (
            "json/movie_metadata_multiversion_multipart.plex-api-rs.json",
            97,
        ),
    ] {
        let bytes = fixture(rel);
        let full = extract_items(&bytes).unwrap();
        for end in (0..bytes.len()).step_by(step) {
            let prefix = &bytes[..end];
            let slice = extract_items(prefix);
            let reader = extract_items_from_reader(BufReader::with_capacity(64, prefix));
            match (&slice, &reader) {
                (Ok(a), Ok(b)) => assert_eq!(a, b, "{rel}[..{end}]"),
                (Err(a), Err(b)) => assert_eq!(
                    std::mem::discriminant(a),
                    std::mem::discriminant(b),
                    "{rel}[..{end}]: {a} vs {b}"
                ),
                _ => panic!("{rel}[..{end}]: slice {slice:?} vs reader {reader:?}"),
            }
            if let Ok(page) = slice {
                // Only a document cut in trailing whitespace parses.
                assert_eq!(page, full, "{rel}[..{end}]");
            }
            let _ = extract_sections(prefix);
        }
    }
}

/// Corrupting single bytes never panics.
#[test]
fn corrupted_bytes_never_panic() {
    let original = fixture("xml/movies_all_page.plexdevices.xml");
    let json = fixture("json/show_children_seasons.plex-api-rs.json");
    for (bytes, step) in [(original, 257usize), (json, 23)] {
        for i in (0..bytes.len()).step_by(step) {
            for replacement in [b'<', b'"', b'{', b'}', b'&', 0xFF, b':', b'\\'] {
                let mut corrupted = bytes.clone();
                corrupted[i] = replacement;
                let _ = extract_items(&corrupted);
                let _ = extract_sections(&corrupted);
            }
        }
    }
}

#[test]
fn invalid_utf8_is_an_error() {
    let e = extract_items(
        b"<MediaContainer><Video ratingKey=\"1\" title=\"\xFF\xFE\"/></MediaContainer>",
    )
    .unwrap_err();
    assert!(matches!(e, ExtractError::Syntax { .. }), "{e:?}");
    let e = extract_items(
        b"{\"MediaContainer\":{\"Metadata\":[{\"ratingKey\":\"1\",\"title\":\"\xFF\"}]}}",
    )
    .unwrap_err();
    assert!(
        matches!(
            e,
            ExtractError::Syntax { .. } | ExtractError::Invalid { .. }
        ),
        "{e:?}"
    );
}

/// A reader that fails half-way: an I/O error, not a parse error.
#[test]
fn io_errors_are_reported_as_io() {
    struct Failing {
        data: Cursor<Vec<u8>>,
        fail_after: u64,
    }
    impl Read for Failing {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.data.position() >= self.fail_after {
                return Err(std::io::Error::other("connection reset"));
            }
            let n = buf.len().min(16);
            self.data.read(&mut buf[..n])
        }
    }
    for rel in [
        "json/movies_all.plex-api-rs.json",
        "xml/movies_all_page.plexdevices.xml",
    ] {
        let reader = BufReader::with_capacity(
            16,
            Failing {
                data: Cursor::new(fixture(rel)),
                fail_after: 512,
            },
        );
        let e = extract_items_from_reader(reader).unwrap_err();
        assert!(matches!(e, ExtractError::Io(_)), "{rel}: {e:?}");
        assert!(e.to_string().contains("connection reset"), "{e}");
    }
}

/// A reader whose first read returns only part of the byte-order mark.
#[test]
fn bom_split_across_reads() {
    struct Trickle(Cursor<Vec<u8>>);
    impl Read for Trickle {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = buf.len().min(1);
            self.0.read(&mut buf[..n])
        }
    }
    impl BufRead for Trickle {
        fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
            let pos = usize::try_from(self.0.position()).unwrap();
            let data = self.0.get_ref();
            let end = (pos + 1).min(data.len());
            Ok(&data[pos..end])
        }
        fn consume(&mut self, amt: usize) {
            self.0.set_position(self.0.position() + amt as u64);
        }
    }
    let bytes = edge("entities.xml");
    let page = extract_items_from_reader(Trickle(Cursor::new(bytes.clone()))).unwrap();
    assert_eq!(page, extract_items(&bytes).unwrap());
    let mut json = b"\xEF\xBB\xBF \n ".to_vec();
    json.extend_from_slice(&edge("windows_paths.json"));
    let page = extract_items_from_reader(Trickle(Cursor::new(json.clone()))).unwrap();
    assert_eq!(page.items.len(), 3);
    let e =
        extract_items_from_reader(Trickle(Cursor::new(b"\xEF\xBB\x00{}".to_vec()))).unwrap_err();
    assert!(matches!(e, ExtractError::NotJsonOrXml { .. }), "{e:?}");
}
