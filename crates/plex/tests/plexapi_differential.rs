//! Differential test against python-plexapi 4.18: `tests/python/plexapi_extract.py` builds
//! plexapi objects from the same XML files (without a server) and prints each item's ratingKey,
//! key, title, class, year and `locations`; the Rust extraction must agree.
//!
//! Skipped with a notice when `python3` or `plexapi` is missing, unless
//! `PLEXCACHE_REQUIRE_PLEXAPI=1`, in which case it fails.
//!
//! Deliberate differences, checked here rather than hidden (see `docs/plex.md`):
//! - plexapi also builds entries without a `ratingKey` (library sections, the "All episodes"
//!   directory, actor/genre tags in search results); plexcache does not count them as items;
//! - plexapi drops an item element that has no `type` attribute (it cannot pick a class);
//!   plexcache keeps it, its kind from the element name (`<Track>`, `<Photo>`);
//! - plexapi strips `/children` from the `key` of shows, seasons, artists, albums and photo
//!   albums; plexcache keeps the key as sent;
//! - plexapi's `locations` holds `None` for a `Part` without a `file`; plexcache skips it;
//! - plexapi has no `locations` for seasons, albums and photo albums; plexcache gives them their
//!   `Location` paths when the response has them (none of the fixtures does), else none.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use plexcache_plex::synthetic::{Spec, generate_xml};
use plexcache_plex::{ItemKind, PlexItem, extract_items, extract_sections};
use serde::Deserialize;

/// Writes to the real stderr, past the test harness's output capture, so that a skip or the
/// summary shows in `cargo test` output.
macro_rules! notice {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn workspace_dir() -> PathBuf {
    crate_dir().join("../..")
}

fn required() -> bool {
    std::env::var("PLEXCACHE_REQUIRE_PLEXAPI").is_ok_and(|v| v == "1")
}

/// `Some(version)` when `python3` can import plexapi; otherwise prints a notice and returns
/// `None`, or panics when plexapi is required.
fn plexapi_version() -> Option<String> {
    let out = Command::new("python3")
        .args(["-c", "import plexapi; print(plexapi.VERSION)"])
        .env("PLEXAPI_CONFIG_PATH", "/dev/null")
        .output();
    let reason = match out {
        Ok(o) if o.status.success() => {
            let version = String::from_utf8_lossy(&o.stdout).trim().to_owned();
            if !version.starts_with("4.18.") {
                notice!("notice: plexapi {version} found; this test was written against 4.18");
            }
            return Some(version);
        }
        Ok(o) => format!(
            "python3 cannot import plexapi: {}",
            String::from_utf8_lossy(&o.stderr)
                .lines()
                .last()
                .unwrap_or_default()
                .trim()
        ),
        Err(e) => format!("python3 is not available: {e}"),
    };
    assert!(
        !required(),
        "PLEXCACHE_REQUIRE_PLEXAPI=1 but {reason} (pip install 'plexapi==4.18.*')"
    );
    notice!("notice: plexapi differential test skipped: {reason}");
    None
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PyItem {
    file: String,
    rating_key: Option<String>,
    key: Option<String>,
    title: Option<String>,
    cls: String,
    year: Option<u32>,
    locations: Option<Vec<Option<String>>>,
}

#[derive(Debug, Deserialize)]
struct PySection {
    file: String,
    key: Option<String>,
    title: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    uuid: Option<String>,
    locations: Vec<String>,
}

fn run_script<T: for<'de> Deserialize<'de>>(args: &[PathBuf], sections: bool) -> Vec<T> {
    let script = workspace_dir().join("tests/python/plexapi_extract.py");
    let mut cmd = Command::new("python3");
    cmd.arg(&script);
    if sections {
        cmd.arg("--sections");
    }
    cmd.args(args);
    let out = cmd.output().expect("running python3");
    assert!(
        out.status.success(),
        "{} failed ({}): {}",
        script.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("UTF-8 output")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn xml_files(dir: &str, sections: bool) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(crate_dir().join("tests/fixtures").join(dir))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "xml"))
        .filter(|p| {
            let is_sections = p
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("sections"));
            is_sections == sections
        })
        .collect();
    files.sort();
    files
}

/// The plexapi class an item of this kind is built as.
fn plexapi_class(kind: &ItemKind) -> &str {
    match kind {
        ItemKind::Movie => "Movie",
        ItemKind::Show => "Show",
        ItemKind::Season => "Season",
        ItemKind::Episode => "Episode",
        ItemKind::Artist => "Artist",
        ItemKind::Album => "Album",
        ItemKind::Track => "Track",
        ItemKind::Photo => "Photo",
        ItemKind::PhotoAlbum => "Photoalbum",
        ItemKind::Clip => "Clip",
        ItemKind::Playlist => "Playlist",
        ItemKind::Collection => "Collection",
        ItemKind::Other(_) => "?",
    }
}

/// Whether the XML element of `item` has a `type` attribute (plexapi skips it otherwise).
fn element_has_type(xml: &str, item: &PlexItem) -> bool {
    let needle = format!("ratingKey=\"{}\"", item.rating_key);
    let Some(at) = xml.find(&needle) else {
        return true;
    };
    let start = xml[..at].rfind('<').unwrap_or(0);
    let end = at + xml[at..].find('>').unwrap_or(0);
    xml[start..end].contains(" type=\"")
}

#[derive(Default)]
struct Report {
    files: usize,
    items: usize,
    without_rating_key: BTreeMap<String, usize>,
    untyped_kept: Vec<String>,
    children_keys: usize,
    parts_without_file: usize,
    no_locations_attr: BTreeMap<String, usize>,
}

fn compare_items(path: &Path, py: &[&PyItem], report: &mut Report) {
    let name = path.display();
    let bytes = std::fs::read(path).unwrap();
    let xml = String::from_utf8_lossy(&bytes);
    let rust = extract_items(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
    report.files += 1;
    let mut with_key = Vec::new();
    for p in py {
        if p.rating_key.is_some() {
            with_key.push(*p);
        } else {
            *report.without_rating_key.entry(p.cls.clone()).or_default() += 1;
        }
    }
    let mut expected: Vec<&PlexItem> = Vec::new();
    for item in &rust.items {
        if element_has_type(&xml, item) {
            expected.push(item);
        } else {
            assert!(
                !with_key
                    .iter()
                    .any(|p| p.rating_key.as_deref() == Some(&item.rating_key)),
                "{name}: plexapi built untyped item {}",
                item.rating_key
            );
            report
                .untyped_kept
                .push(format!("{} ({})", item.rating_key, item.kind));
        }
    }
    let rust_keys: Vec<&str> = expected.iter().map(|i| i.rating_key.as_str()).collect();
    let py_keys: Vec<&str> = with_key
        .iter()
        .filter_map(|p| p.rating_key.as_deref())
        .collect();
    assert_eq!(rust_keys, py_keys, "{name}: items differ");
    for (r, p) in expected.iter().zip(&with_key) {
        let what = format!("{name}: item {}", r.rating_key);
        assert_eq!(Some(r.title.as_str()), p.title.as_deref(), "{what}: title");
        assert_eq!(plexapi_class(&r.kind), p.cls, "{what}: class");
        assert_eq!(r.year, p.year, "{what}: year");
        let py_key = p.key.as_deref().unwrap_or_default();
        if py_key != r.key {
            assert_eq!(format!("{py_key}/children"), r.key, "{what}: key");
            report.children_keys += 1;
        }
        match &p.locations {
            Some(locations) => {
                // plexapi lists `None` for a Part without a `file`; plexcache skips it.
                let files: Vec<String> = locations.iter().flatten().cloned().collect();
                report.parts_without_file += locations.len() - files.len();
                assert_eq!(r.file_paths, files, "{what}: locations");
            }
            None => {
                assert!(r.file_paths.is_empty(), "{what}: plexapi has no locations");
                *report.no_locations_attr.entry(p.cls.clone()).or_default() += 1;
            }
        }
        report.items += 1;
    }
}

#[test]
fn rust_extraction_matches_plexapi() {
    let Some(version) = plexapi_version() else {
        return;
    };
    let synthetic = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("plexapi_synthetic_all.xml");
    std::fs::write(&synthetic, generate_xml(&Spec::new(500))).unwrap();

    let mut files = xml_files("xml", false);
    files.extend(xml_files("xml_from_json", false));
    files.extend(
        [
            "windows_paths.xml",
            "entities.xml",
            "size_mismatch.xml",
            "control_characters.xml",
        ]
        .iter()
        .map(|n| crate_dir().join("tests/fixtures/edge").join(n)),
    );
    files.push(synthetic);
    let py: Vec<PyItem> = run_script(&files, false);

    let mut report = Report::default();
    for path in &files {
        let shown = path.to_string_lossy();
        let of_file: Vec<&PyItem> = py.iter().filter(|p| p.file == shown).collect();
        compare_items(path, &of_file, &mut report);
    }
    assert!(report.items > 1_000, "compared {} items", report.items);
    assert_eq!(report.untyped_kept.len(), 2, "{:?}", report.untyped_kept);
    assert_eq!(
        report.parts_without_file, 1,
        "the <Part/> of size_mismatch.xml"
    );

    // Sections.
    let mut section_files = xml_files("xml", true);
    section_files.extend(xml_files("xml_from_json", true));
    let py_sections: Vec<PySection> = run_script(&section_files, true);
    let mut sections = 0;
    for path in &section_files {
        let shown = path.to_string_lossy();
        let rust = extract_sections(&std::fs::read(path).unwrap()).unwrap();
        let of_file: Vec<&PySection> = py_sections.iter().filter(|p| p.file == shown).collect();
        assert_eq!(rust.len(), of_file.len(), "{shown}: sections");
        for (r, p) in rust.iter().zip(of_file) {
            assert_eq!(Some(r.key.as_str()), p.key.as_deref(), "{shown}");
            assert_eq!(Some(r.title.as_str()), p.title.as_deref(), "{shown}");
            assert_eq!(Some(r.kind.as_str()), p.kind.as_deref(), "{shown}");
            assert_eq!(r.uuid, p.uuid, "{shown}");
            assert_eq!(r.locations, p.locations, "{shown}");
            sections += 1;
        }
    }
    assert_eq!(sections, 3 + 3 + 14);

    notice!(
        "plexapi {version}: {} items in {} files and {sections} sections agree. Deliberate \
         differences: entries without ratingKey built by plexapi only: {:?}; untyped items kept \
         by plexcache only: {:?}; keys with /children stripped by plexapi: {}; Parts without a file \
         (None in plexapi locations, skipped by plexcache): {}; classes without plexapi \
         locations (plexcache: none either): {:?}",
        report.items,
        report.files,
        report.without_rating_key,
        report.untyped_kept,
        report.children_keys,
        report.parts_without_file,
        report.no_locations_attr,
    );
}

/// Every character python-plexapi's `cleanXMLString` removes is removed from extracted strings,
/// and no other: a title holding every Unicode scalar value, extracted from JSON and from XML,
/// equals `cleanXMLString` of it (in XML, after attribute-value normalisation turns tab, line
/// feed and carriage return into spaces, as ElementTree does too).
#[test]
fn stripped_characters_are_those_of_plexapi_clean_xml_string() {
    if plexapi_version().is_none() {
        return;
    }
    let every: String = (0..=0x10_FFFFu32).filter_map(char::from_u32).collect();
    let out = Command::new("python3")
        .args([
            "-c",
            "import sys\n\
             from plexapi import utils\n\
             s = ''.join(chr(i) for i in range(0x110000) if not 0xD800 <= i <= 0xDFFF)\n\
             sys.stdout.buffer.write(utils.cleanXMLString(s).encode('utf-8'))",
        ])
        .env("PLEXAPI_CONFIG_PATH", "/dev/null")
        .output()
        .expect("running python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cleaned = String::from_utf8(out.stdout).expect("UTF-8 output");
    assert!(cleaned.len() < every.len(), "plexapi removed nothing");

    let json = format!(
        r#"{{"MediaContainer":{{"Metadata":[{{"ratingKey":"1","title":{}}}]}}}}"#,
        serde_json::to_string(&every).unwrap()
    );
    let from_json = extract_items(json.as_bytes()).unwrap();
    assert!(
        from_json.items[0].title == cleaned,
        "JSON: the stripped characters differ from plexapi's"
    );

    let escaped = every
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('"', "&quot;");
    let xml =
        format!(r#"<MediaContainer><Video ratingKey="1" title="{escaped}"/></MediaContainer>"#);
    let from_xml = extract_items(xml.as_bytes()).unwrap();
    let normalised: String = cleaned
        .chars()
        .map(|c| {
            if matches!(c, '\t' | '\n' | '\r') {
                ' '
            } else {
                c
            }
        })
        .collect();
    assert!(
        from_xml.items[0].title == normalised,
        "XML: the stripped characters differ from plexapi's"
    );
}

/// The committed XML forms of the JSON fixtures are what `json_to_xml.py` makes today.
#[test]
fn xml_from_json_fixtures_are_up_to_date() {
    let fixtures = crate_dir().join("tests/fixtures");
    let out = Command::new("python3")
        .arg(workspace_dir().join("tests/python/json_to_xml.py"))
        .arg("--check")
        .arg("--dir")
        .arg(fixtures.join("json"))
        .arg(fixtures.join("full"))
        .arg(fixtures.join("xml_from_json"))
        .output();
    match out {
        Ok(o) => assert!(
            o.status.success(),
            "xml_from_json is stale; regenerate with tests/python/json_to_xml.py: {}",
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => {
            assert!(!required(), "python3 is not available: {e}");
            notice!("notice: python3 is not available ({e}); xml_from_json check skipped");
        }
    }
}
