//! Every recorded PMS response in `tests/fixtures/{json,xml,full}` parsed, with expectations
//! checked by hand against the files (item counts, rating keys, Unicode titles, multi-version
//! and multi-part file lists, show Locations, section ids copied down from the container,
//! nested search items excluded, numbers sent as strings), plus the XML form of every JSON
//! fixture (`tests/fixtures/xml_from_json`) giving the same result as the JSON.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::BufReader;
use std::path::{Path, PathBuf};

use plexcache_plex::{
    Extracted, ItemKind, PlexItem, Section, extract_items, extract_items_from_reader,
    extract_items_json, extract_items_xml, extract_sections, extract_sections_from_reader,
};

fn fixture_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(rel)
}

fn fixture(rel: &str) -> Vec<u8> {
    std::fs::read(fixture_path(rel)).unwrap_or_else(|e| panic!("reading fixture {rel}: {e}"))
}

/// Extracts a fixture through every entry point (auto-detect, explicit format, streaming
/// reader with a tiny buffer) and checks they agree.
fn items(rel: &str) -> Extracted {
    let bytes = fixture(rel);
    let page = extract_items(&bytes).unwrap_or_else(|e| panic!("{rel}: {e}"));
    let explicit = if rel.ends_with(".json") {
        extract_items_json(&bytes)
    } else {
        extract_items_xml(&bytes)
    }
    .unwrap_or_else(|e| panic!("{rel}: {e}"));
    assert_eq!(page, explicit, "{rel}: auto-detection changed the result");
    let file = std::fs::File::open(fixture_path(rel)).unwrap();
    let streamed = extract_items_from_reader(BufReader::with_capacity(7, file))
        .unwrap_or_else(|e| panic!("{rel} (reader): {e}"));
    assert_eq!(
        page, streamed,
        "{rel}: the streaming reader disagrees with the slice"
    );
    page
}

fn sections(rel: &str) -> Vec<Section> {
    let bytes = fixture(rel);
    let s = extract_sections(&bytes).unwrap_or_else(|e| panic!("{rel}: {e}"));
    let file = std::fs::File::open(fixture_path(rel)).unwrap();
    let streamed = extract_sections_from_reader(BufReader::new(file)).unwrap();
    assert_eq!(
        s, streamed,
        "{rel}: the streaming reader disagrees with the slice"
    );
    s
}

fn keys(page: &Extracted) -> Vec<&str> {
    page.items.iter().map(|i| i.rating_key.as_str()).collect()
}

fn item<'a>(page: &'a Extracted, rating_key: &str) -> &'a PlexItem {
    page.items
        .iter()
        .find(|i| i.rating_key == rating_key)
        .unwrap_or_else(|| panic!("no item {rating_key}"))
}

// ---------------------------------------------------------------------------------------------
// /library/sections
// ---------------------------------------------------------------------------------------------

#[test]
fn sections_rubyplex_json() {
    let s = sections("json/sections.rubyplex.json");
    assert_eq!(s.iter().map(|s| s.id).collect::<Vec<_>>(), [3, 1, 2]);
    assert_eq!(
        s.iter().map(|s| s.title.as_str()).collect::<Vec<_>>(),
        ["4K Movies", "Movies", "TV Shows"]
    );
    assert_eq!(s[0].kind, ItemKind::Movie);
    assert_eq!(s[2].kind, ItemKind::Show);
    assert_eq!(
        s[1].locations,
        [
            "/volume1/Media/Movies_HEVC",
            "/volume1/Media/downloads",
            "/volume1/Media/Movies"
        ]
    );
    assert_eq!(s[1].key, "1");
    assert_eq!(s[1].updated_at, Some(1_576_428_454));
    assert_eq!(
        s[1].uuid.as_deref(),
        Some("0f2755ad-7ed8-42fb-909a-eb2678369768")
    );
    // Sections have no ratingKey: they are not items.
    let page = items("json/sections.rubyplex.json");
    assert!(page.items.is_empty());
    assert_eq!(page.entries, 3);
}

#[test]
fn sections_14_plex_api_spec_json() {
    let s = sections("json/sections_14.plex-api-spec.json");
    assert_eq!(s.len(), 14);
    let by_id = |id: u32| s.iter().find(|s| s.id == id).unwrap();
    assert_eq!(
        by_id(2).title,
        "TV Series ",
        "a trailing space is kept verbatim"
    );
    assert_eq!(
        by_id(6).locations,
        ["/Movies (Documentaries)", "/Plex Library/Documentaries"]
    );
    assert_eq!(by_id(9).kind, ItemKind::Artist);
    assert_eq!(by_id(9).title, "Music");
    assert_eq!(
        s.iter().filter(|s| s.kind == ItemKind::Show).count(),
        7,
        "7 TV libraries"
    );
    assert!(s.iter().all(|s| s.uuid.is_some() && s.updated_at.is_some()));
}

#[test]
fn sections_home_assistant_xml() {
    let s = sections("xml/sections.home-assistant.xml");
    assert_eq!(
        s.iter()
            .map(|s| (s.id, s.title.as_str(), s.kind.clone()))
            .collect::<Vec<_>>(),
        [
            (1, "Movies", ItemKind::Movie),
            (2, "TV Shows", ItemKind::Show),
            (3, "Music", ItemKind::Artist)
        ]
    );
    assert_eq!(s[1].locations, ["/storage/tvshows"]);
    assert_eq!(s[2].updated_at, Some(1_602_211_102));
    assert_eq!(
        s[0].uuid.as_deref(),
        Some("41a28495-035e-46b0-ac84-878f096614da")
    );
    assert!(items("xml/sections.home-assistant.xml").items.is_empty());
}

// ---------------------------------------------------------------------------------------------
// /library/sections/{id}/all
// ---------------------------------------------------------------------------------------------

#[test]
fn movies_all_page_rubyplex_json_paging_and_unicode_paths() {
    let page = items("json/movies_all_page.rubyplex.json");
    assert_eq!(keys(&page), ["17911", "17901", "17896", "17893", "16380"]);
    assert_eq!(
        (page.offset, page.total_size, page.size),
        (Some(1), Some(2148), Some(5))
    );
    assert_eq!(page.next_offset(), Some(6));
    // librarySectionID is only on the container: copied down to every item.
    assert_eq!(page.library_section_id, Some(1));
    assert!(page.items.iter().all(|i| i.library_section_id == Some(1)));
    let yuma = item(&page, "17896");
    assert_eq!(yuma.title, "3:10 to Yuma");
    assert_eq!(yuma.year, Some(2007));
    assert_eq!(yuma.updated_at, Some(1_575_865_068));
    // The server replaced ':' in the path with U+F022 (a private-use character).
    assert_eq!(
        yuma.file_paths,
        [
            "/volume1/Media/Movies/3\u{f022}10 to Yuma (2007)/3\u{f022}10 to Yuma (2007) [1080p] [AAC 2ch].mp4"
        ]
    );
}

#[test]
fn movies_total_count_rubyplex_json() {
    let page = items("json/movies_total_count.rubyplex.json");
    assert!(page.items.is_empty());
    assert_eq!(
        (page.offset, page.total_size, page.size),
        (Some(0), Some(100), Some(0))
    );
    assert_eq!(
        page.next_offset(),
        None,
        "an empty page never asks for more"
    );
}

#[test]
fn movies_all_plex_api_rs_json() {
    let page = items("json/movies_all.plex-api-rs.json");
    assert_eq!(keys(&page), ["55", "56", "108", "57"]);
    let titles: Vec<_> = page.items.iter().map(|i| i.title.as_str()).collect();
    assert_eq!(
        titles,
        [
            "Big Buck Bunny",
            "Elephants Dream",
            "Interstate 60",
            "Sintel"
        ]
    );
    assert_eq!(
        item(&page, "108").file_paths,
        ["/data/Movies/Interstate 60 (2002).mkv"]
    );
    assert!(page.items.iter().all(|i| i.kind == ItemKind::Movie
        && i.key == format!("/library/metadata/{}", i.rating_key)
        && i.library_section_id == Some(1)));
    assert_eq!(page.total_size, None);
    assert!(!page.has_more());
}

#[test]
fn movies_all_multiversion_trimmed_json() {
    let page = items("json/movies_all_multiversion.trimmed.plex-api-spec.json");
    assert_eq!(
        keys(&page),
        ["28550", "9881", "27545", "41933", "54921", "43904"]
    );
    assert_eq!(item(&page, "9881").title, "9½ Weeks");
    assert_eq!(item(&page, "27545").title, "Pokémon: Detective Pikachu");
    assert_eq!(
        item(&page, "27545").file_paths,
        [
            "/Movies/Pokémon Detective Pikachu (2019)/Pokemon.Detective.Pikachu.2019.PROPER.2160p.UHD.BluRay.x265-TERMiNAL.mkv"
        ]
    );
    // Two versions (two Media), one Part each; ':' in the folder name.
    assert_eq!(
        item(&page, "41933").file_paths,
        [
            "/Movies/Alien: Covenant (2017)/Alien Covenant (2017) Bluray-2160p.mkv",
            "/Movies/Alien: Covenant (2017)/Alien Covenant (2017) Bluray-1080p.mp4"
        ]
    );
    // One Media with four Parts.
    let care_bears = item(&page, "54921");
    assert_eq!(care_bears.file_paths.len(), 4);
    for (i, f) in care_bears.file_paths.iter().enumerate() {
        assert!(f.ends_with(&format!(".part{}.mkv", i + 1)), "{f}");
    }
    // Two versions, the second in two parts (cd1/cd2): every Part of every Media, in order.
    assert_eq!(
        item(&page, "43904").file_paths,
        [
            "/Movies/Indiana Jones 4/Indiana Jones and the Kingdom of the Crystal Skull (2008) WEBDL-2160p.mkv",
            "/Movies/Indiana Jones 4/Indiana Jones 4 DVDRip DiAMOND cd1.avi",
            "/Movies/Indiana Jones 4/Indiana Jones 4 DVDRip DiAMOND cd2.avi"
        ]
    );
    assert_eq!(
        (page.offset, page.total_size, page.size),
        (Some(0), Some(341), Some(6))
    );
    assert_eq!(page.next_offset(), Some(6));
}

#[test]
fn movies_all_341_full_json() {
    let page = items("full/movies_all_341.plex-api-spec.json");
    assert_eq!(page.items.len(), 341);
    assert_eq!(page.total_size, Some(341));
    assert!(!page.has_more());
    assert!(page.items.iter().all(|i| i.kind == ItemKind::Movie));
    assert!(page.items.iter().all(|i| !i.file_paths.is_empty()));
    assert_eq!(
        page.items.iter().map(|i| i.file_paths.len()).sum::<usize>(),
        347
    );
    assert_eq!(
        page.items.iter().filter(|i| i.file_paths.len() > 1).count(),
        3,
        "41933 (2 versions), 54921 (4 parts), 43904 (2 versions, 3 parts)"
    );
    assert!(page.items.iter().all(|i| i.library_section_id == Some(1)));
    assert_eq!(
        page.items.iter().filter(|i| i.title.contains(':')).count(),
        45
    );
    assert_eq!(
        (
            page.items[0].rating_key.as_str(),
            page.items[0].title.as_str()
        ),
        ("28550", "4 for Texas")
    );
    let last = page.items.last().unwrap();
    assert_eq!(
        (last.rating_key.as_str(), last.title.as_str()),
        ("54769", "The Zone of Interest")
    );
    assert_eq!(item(&page, "56826").title, "What's in a Name?");
}

#[test]
fn movies_all_page_plexdevices_xml() {
    let page = items("xml/movies_all_page.plexdevices.xml");
    assert_eq!(page.items.len(), 16);
    assert_eq!(
        (page.offset, page.total_size, page.size),
        (Some(0), Some(255), Some(16))
    );
    assert_eq!(page.next_offset(), Some(16));
    assert!(page.items.iter().all(|i| i.library_section_id == Some(2)));
    assert_eq!(
        item(&page, "32730").file_paths,
        [
            "/movies/Revenant, The (2015)/The Revenant.mkv",
            "/movies/The.Revenant.mkv"
        ],
        "two versions"
    );
    assert_eq!(item(&page, "48605").title, "Star Wars: The Force Awakens");
    assert_eq!(item(&page, "53945").year, Some(2016));
    assert_eq!(item(&page, "53945").updated_at, Some(1_461_391_829));
    assert_eq!(page.items[15].rating_key, "35562");
}

#[test]
fn shows_all_json() {
    let page = items("json/shows_all.plex-api-rs.json");
    assert_eq!(keys(&page), ["22", "68"]);
    assert!(page.items.iter().all(|i| i.kind == ItemKind::Show));
    // /all carries no Location for shows: no paths.
    assert!(page.items.iter().all(|i| i.file_paths.is_empty()));
    assert_eq!(item(&page, "68").title, "Game of Thrones");
    assert_eq!(item(&page, "22").key, "/library/metadata/22/children");
    assert!(page.items.iter().all(|i| i.library_section_id == Some(2)));

    let page = items("json/shows_all_page.rubyplex.json");
    assert_eq!(keys(&page), ["10401", "10320"]);
    assert_eq!(
        (page.offset, page.total_size, page.next_offset()),
        (Some(1), Some(59), Some(3))
    );
}

// ---------------------------------------------------------------------------------------------
// /library/metadata/{id}, /children, /allLeaves
// ---------------------------------------------------------------------------------------------

#[test]
fn show_metadata_has_its_location() {
    let page = items("json/show_metadata.rubyplex.json");
    assert_eq!(keys(&page), ["10401"]);
    let show = &page.items[0];
    assert_eq!(show.kind, ItemKind::Show);
    assert_eq!(show.title, "Band of Brothers");
    assert_eq!(show.file_paths, ["/volume1/Media/TV/Band of Brothers"]);
    assert_eq!(show.library_section_id, Some(2));

    let page = items("xml/show_metadata.go-plex-client.xml");
    assert_eq!(keys(&page), ["1"]);
    let show = &page.items[0];
    assert_eq!(show.title, "The Walking Dead");
    assert_eq!(show.file_paths, ["/media/tv/The Walking Dead"]);
    assert_eq!(show.year, Some(2010));
    assert_eq!(show.library_section_id, Some(1));
}

#[test]
fn show_children_skips_the_all_episodes_directory() {
    let page = items("json/show_children_seasons.plex-api-rs.json");
    assert_eq!(keys(&page), ["89", "33"]);
    assert_eq!(
        page.entries, 3,
        "the All episodes Directory is an entry, not an item"
    );
    assert!(page.items.iter().all(|i| i.kind == ItemKind::Season));
    assert_eq!(page.items[0].title, "Season 1");
    assert!(page.items.iter().all(|i| i.file_paths.is_empty()));
    assert!(page.items.iter().all(|i| i.library_section_id == Some(2)));
}

#[test]
fn season_children_trusts_items_over_size() {
    let page = items("json/season_children_episodes.plex-api-rs.json");
    assert_eq!(page.size, Some(9));
    assert_eq!(keys(&page), ["90", "91", "92"]);
    assert_eq!(
        item(&page, "91").file_paths,
        ["/data/TV-Shows/The 100/The.100.S01E02.mkv"]
    );
    assert!(page.items.iter().all(|i| i.kind == ItemKind::Episode));
}

#[test]
fn show_all_leaves() {
    let page = items("json/show_allLeaves.rubyplex.json");
    let expected: Vec<String> = (10403..=10412).map(|k| k.to_string()).collect();
    assert_eq!(keys(&page), expected);
    assert_eq!(item(&page, "10403").title, "Currahee");
    assert_eq!(
        item(&page, "10412").file_paths,
        [
            "/volume1/Media/TV/Band of Brothers/Band of Brothers S01/Band of Brothers S01E10 [1080p].mp4"
        ]
    );
}

#[test]
fn album_children_tracks() {
    let page = items("json/album_children_tracks.plex-api-rs.json");
    assert_eq!(keys(&page), ["158", "159", "160"]);
    assert!(page.items.iter().all(|i| i.kind == ItemKind::Track));
    assert!(page.items.iter().all(|i| i.library_section_id == Some(5)));
    assert_eq!(
        item(&page, "158").file_paths,
        ["/data/Music/Skrillex - Try It Out (2003)/01 - TRY IT OUT (NEON MIX).aac"]
    );
    assert_eq!(item(&page, "159").year, None);
}

#[test]
fn photo_album_children() {
    let page = items("json/photo_album_children.plex-api-rs.json");
    assert_eq!(page.size, Some(5));
    assert_eq!(keys(&page), ["64", "59"]);
    // A `photo` whose key lists children is a sub-album.
    assert_eq!(item(&page, "64").kind, ItemKind::PhotoAlbum);
    assert!(item(&page, "64").file_paths.is_empty());
    assert_eq!(item(&page, "59").kind, ItemKind::Photo);
    assert_eq!(
        item(&page, "59").file_paths,
        ["/data/Photos/Cats/Picture1.jpg"]
    );
}

#[test]
fn movie_metadata_multiversion_multipart() {
    let page = items("json/movie_metadata_multiversion_multipart.plex-api-rs.json");
    assert_eq!(keys(&page), ["159637"]);
    let movie = &page.items[0];
    assert_eq!(movie.title, "Black Panther: Wakanda Forever");
    let dir = "/mnt/media/Libraries/movies/Black Panther Wakanda Forever (2022)";
    assert_eq!(
        movie.file_paths,
        [
            format!("{dir}/Black Panther Wakanda Forever (2022).mkv"),
            format!("{dir}/Black Panther Wakanda Forever (2022) Pt1.mp4"),
            format!("{dir}/Black Panther Wakanda Forever (2022) Pt2.mp4"),
        ]
    );
    assert_eq!(movie.year, Some(2022));
    assert_eq!(movie.library_section_id, Some(1));
}

// ---------------------------------------------------------------------------------------------
// /hubs/search and /library/search
// ---------------------------------------------------------------------------------------------

#[test]
fn hubs_search_excludes_nested_on_deck_items() {
    let page = items("xml/hubs_search.plexdevices.xml");
    // The show hub holds The Simpsons, whose <OnDeck> holds episode 33237: not a result.
    assert_eq!(keys(&page), ["1389", "50373", "140", "48592"]);
    assert!(page.items.iter().all(|i| i.rating_key != "33237"));
    let simpsons = item(&page, "1389");
    assert_eq!(simpsons.kind, ItemKind::Show);
    assert_eq!(simpsons.file_paths, ["/tv/Simpsonians", "/tv/The Simpsons"]);
    assert_eq!(simpsons.library_section_id, Some(1));
    let clip_show = item(&page, "48592");
    assert_eq!(
        clip_show.title,
        "So It's Come to This: A Simpsons Clip Show"
    );
    assert_eq!(
        clip_show.file_paths,
        [
            "/tv/Simpsonians/The.Simpsons.S04/04x18.So It's Come To This-A Simpsons Clip Show.x264.ac3.mkv"
        ]
    );
    assert_eq!(
        clip_show.library_section_id, None,
        "neither item nor container has one"
    );
    assert_eq!(page.size, Some(12));
}

#[test]
fn library_search_results() {
    let page = items("json/library_search.trimmed.plex-api-spec.json");
    assert_eq!(
        keys(&page),
        ["72618", "119424", "81793", "48538", "7253", "7211"]
    );
    assert_eq!(item(&page, "72618").title, "House II, aún más alucinante");
    assert_eq!(
        item(&page, "119424").title,
        "Road House (De profesión: duro)"
    );
    let dragon = item(&page, "81793");
    assert_eq!(dragon.kind, ItemKind::Show);
    assert_eq!(dragon.title, "La casa del dragón");
    assert_eq!(
        dragon.file_paths,
        ["/media/Multimedia/Series/La Casa del Dragón"]
    );
    assert_eq!(dragon.library_section_id, Some(1));
    assert_eq!(item(&page, "7211").kind, ItemKind::Episode);
    assert_eq!(
        item(&page, "7211").file_paths,
        ["/media/Multimedia/Series/House/T2/House_S02E24_Sin razón.mp4"]
    );

    let full = items("full/library_search_house.plex-api-spec.json");
    assert_eq!(full.items.len(), 100);
    let count = |k: ItemKind| full.items.iter().filter(|i| i.kind == k).count();
    assert_eq!(
        (
            count(ItemKind::Episode),
            count(ItemKind::Movie),
            count(ItemKind::Show)
        ),
        (81, 11, 8)
    );
    assert!(
        full.items
            .iter()
            .filter(|i| i.kind == ItemKind::Show)
            .all(|i| i.file_paths.len() == 1 && i.library_section_id == Some(1))
    );
    assert_eq!(
        item(&full, "113421").file_paths,
        ["/media/Multimedia/Series/La caída de la casa Usher"]
    );
}

#[test]
fn library_search_tag_results_are_not_items() {
    let page = items("json/library_search_tags.plex-api-spec.json");
    assert!(page.items.is_empty());
    assert_eq!(page.size, Some(3));
}

// ---------------------------------------------------------------------------------------------
// JSON and XML agree
// ---------------------------------------------------------------------------------------------

fn json_fixtures() -> Vec<String> {
    let mut out = Vec::new();
    for dir in ["json", "full"] {
        let mut names: Vec<String> = std::fs::read_dir(fixture_path(dir))
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".json"))
            .collect();
        names.sort();
        out.extend(names.into_iter().map(|n| format!("{dir}/{n}")));
    }
    out
}

#[test]
fn xml_form_of_every_json_fixture_extracts_the_same() {
    let fixtures = json_fixtures();
    assert_eq!(fixtures.len(), 19, "every JSON fixture is covered");
    for rel in fixtures {
        let name = Path::new(&rel).file_stem().unwrap().to_string_lossy();
        let xml_rel = format!("xml_from_json/{name}.xml");
        let from_json = items(&rel);
        let from_xml = items(&xml_rel);
        assert_eq!(from_json, from_xml, "{rel} vs {xml_rel}");
        assert_eq!(sections(&rel), sections(&xml_rel), "{rel} vs {xml_rel}");
    }
}

#[test]
fn every_fixture_file_parses() {
    let mut count = 0;
    for dir in ["json", "xml", "full", "xml_from_json"] {
        for entry in std::fs::read_dir(fixture_path(dir)).unwrap() {
            let path = entry.unwrap().path();
            let bytes = std::fs::read(&path).unwrap();
            extract_items(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            extract_sections(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            count += 1;
        }
    }
    assert_eq!(count, 17 + 4 + 2 + 19);
}

#[test]
fn items_serialize_with_serde() {
    let page = items("json/movies_all_multiversion.trimmed.plex-api-spec.json");
    let json = serde_json::to_string(&page).unwrap();
    assert!(json.contains("\"kind\":\"movie\""));
    let back: Extracted = serde_json::from_str(&json).unwrap();
    assert_eq!(back, page);
}
