//! Deterministic synthetic `/library/sections/{id}/all` responses, in JSON and XML, for
//! benchmarks and tests (cargo feature `synthetic`).
//!
//! The responses are shaped like the recorded movie libraries: most items have one `Media`
//! with one `Part`, some have several versions and several parts (cd1/cd2); titles and paths
//! hold Unicode, `:`, `&`, quotes and apostrophes; every item carries what extraction must skip
//! (`Stream`s, `Genre`/`Director`/`Writer`/`Role`/`Country` tags, `Guid`s, `Image`s,
//! `UltraBlurColors`, long summaries), numbers are sometimes sent as strings, booleans as
//! `true`, `1` or `"1"`, and `librarySectionID` is usually only on the container.
//!
//! Generation is a pure function of [`Spec`]: the same spec gives the same bytes on every
//! platform (a small xorshift PRNG seeded per item, no `rand`). Each item depends only on the
//! seed and its index in the library, so a page (`offset`, `items`) holds exactly the items of
//! the same positions in the whole library. [`expected_items`] returns what extraction must
//! produce.
//!
//! ```
//! use plexcache_plex::synthetic::{Spec, expected_items, generate_json, generate_xml};
//!
//! let spec = Spec::new(100);
//! let json = generate_json(&spec);
//! let xml = generate_xml(&spec);
//! let expected = expected_items(&spec);
//! assert_eq!(plexcache_plex::extract_items(&json)?.items, expected);
//! assert_eq!(plexcache_plex::extract_items(&xml)?.items, expected);
//! # Ok::<(), plexcache_plex::ExtractError>(())
//! ```

use std::fmt::Write as _;

use crate::error::Format;
use crate::item::{ItemKind, PlexItem};

/// What to generate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Spec {
    /// Number of items in the response (the page size).
    pub items: usize,
    /// Index of the first item in the library (`MediaContainer.offset`).
    pub offset: usize,
    /// `MediaContainer.totalSize`; `None` means `offset + items`.
    pub total_size: Option<usize>,
    /// PRNG seed: different seeds give different libraries.
    pub seed: u64,
    /// The library's section id (`librarySectionID`).
    pub library_section_id: u32,
    /// The library's title (`librarySectionTitle`).
    pub library_title: String,
}

impl Spec {
    /// `items` movies from offset 0 of a library with section id 1 titled "Movies", seed 1.
    pub fn new(items: usize) -> Self {
        Self {
            items,
            offset: 0,
            total_size: None,
            seed: 1,
            library_section_id: 1,
            library_title: "Movies".to_owned(),
        }
    }

    /// The same library, one page of it: items `offset..offset + items`, with `totalSize`
    /// `total`.
    pub fn page(&self, offset: usize, items: usize, total: usize) -> Self {
        Self {
            items,
            offset,
            total_size: Some(total),
            ..self.clone()
        }
    }

    fn total(&self) -> usize {
        self.total_size.unwrap_or(self.offset + self.items)
    }
}

/// Generates the response in `format`.
pub fn generate(spec: &Spec, format: Format) -> Vec<u8> {
    match format {
        Format::Json => generate_json(spec),
        Format::Xml => generate_xml(spec),
    }
}

/// Generates the JSON response (`Accept: application/json`), compact as PMS sends it.
pub fn generate_json(spec: &Spec) -> Vec<u8> {
    let mut out = String::with_capacity(spec.items * 3_200 + 1_024);
    out.push_str("{\"MediaContainer\":{");
    let mut first = true;
    for (name, value) in container_attrs(spec) {
        json_field(&mut out, &mut first, name, &value);
    }
    out.push_str(",\"Metadata\":[");
    for i in 0..spec.items {
        if i > 0 {
            out.push(',');
        }
        let node = movie(spec, spec.offset + i);
        json_node(&mut out, &node);
    }
    out.push_str("]}}");
    out.into_bytes()
}

/// Generates the XML response, one element per line as PMS sends it.
pub fn generate_xml(spec: &Spec) -> Vec<u8> {
    let mut out = String::with_capacity(spec.items * 2_600 + 1_024);
    out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<MediaContainer");
    for (name, value) in container_attrs(spec) {
        xml_attr(&mut out, name, &value);
    }
    out.push_str(">\n");
    for i in 0..spec.items {
        let node = movie(spec, spec.offset + i);
        xml_node(&mut out, "Video", &node);
    }
    out.push_str("</MediaContainer>\n");
    out.into_bytes()
}

/// The items extraction must produce from [`generate_json`] or [`generate_xml`] with `spec`.
pub fn expected_items(spec: &Spec) -> Vec<PlexItem> {
    (0..spec.items)
        .map(|i| {
            let m = MovieFacts::new(spec, spec.offset + i);
            PlexItem {
                rating_key: m.rating_key.to_string().into(),
                key: format!("/library/metadata/{}", m.rating_key).into(),
                title: m.title.clone().into(),
                kind: ItemKind::Movie,
                file_paths: m.files.iter().flatten().map(|p| p.path.clone()).collect(),
                year: Some(m.year),
                updated_at: Some(m.updated_at),
                library_section_id: Some(spec.library_section_id),
            }
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// PRNG
// ---------------------------------------------------------------------------------------------

/// xorshift64* (Vigna), seeded through splitmix64 so that any seed, 0 included, works.
#[derive(Clone, Debug)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64, stream: u64) -> Self {
        let mut z = seed ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        Self(if z == 0 { 0x2545_F491_4F6C_DD1D } else { z })
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (`n > 0`; the modulo bias is irrelevant here).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    fn percent(&mut self, p: u64) -> bool {
        self.below(100) < p
    }

    fn pick<'a>(&mut self, xs: &'a [&'a str]) -> &'a str {
        xs[usize::try_from(self.below(xs.len() as u64)).unwrap_or(0)]
    }
}

// ---------------------------------------------------------------------------------------------
// A tiny document model rendered to both formats
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Debug)]
enum Val {
    Str(String),
    Int(i64),
    /// A number sent as a string in JSON (the same digits in XML).
    IntStr(i64),
    Float(f64),
    /// A boolean, rendered in JSON as `true`, `1` or `"1"` (form 0, 1, 2); `1`/`0` in XML.
    Bool(bool, u8),
}

/// An element / object: attributes, then children grouped by name. A group with `one` set is a
/// single JSON object (`UltraBlurColors`); other groups are JSON arrays.
#[derive(Clone, Debug, Default)]
struct Node {
    attrs: Vec<(&'static str, Val)>,
    children: Vec<Group>,
}

#[derive(Clone, Debug)]
struct Group {
    name: &'static str,
    one: bool,
    nodes: Vec<Node>,
}

impl Node {
    fn attr(&mut self, name: &'static str, v: Val) -> &mut Self {
        self.attrs.push((name, v));
        self
    }
    fn s(&mut self, name: &'static str, v: impl Into<String>) -> &mut Self {
        self.attr(name, Val::Str(v.into()))
    }
    fn i(&mut self, name: &'static str, v: i64) -> &mut Self {
        self.attr(name, Val::Int(v))
    }
    fn group(&mut self, name: &'static str, nodes: Vec<Node>) {
        if !nodes.is_empty() {
            self.children.push(Group {
                name,
                one: false,
                nodes,
            });
        }
    }
    fn single(&mut self, name: &'static str, node: Node) {
        self.children.push(Group {
            name,
            one: true,
            nodes: vec![node],
        });
    }
}

fn json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn json_val(out: &mut String, v: &Val) {
    match v {
        Val::Str(s) => json_str(out, s),
        Val::Int(n) => {
            let _ = write!(out, "{n}");
        }
        Val::IntStr(n) => {
            let _ = write!(out, "\"{n}\"");
        }
        Val::Float(f) => {
            let _ = write!(out, "{f:.1}");
        }
        Val::Bool(b, form) => out.push_str(match (form, b) {
            (0, true) => "true",
            (0, false) => "false",
            (1, true) => "1",
            (1, false) => "0",
            (_, true) => "\"1\"",
            (_, false) => "\"0\"",
        }),
    }
}

fn json_field(out: &mut String, first: &mut bool, name: &str, v: &Val) {
    if !*first {
        out.push(',');
    }
    *first = false;
    json_str(out, name);
    out.push(':');
    json_val(out, v);
}

fn json_node(out: &mut String, node: &Node) {
    out.push('{');
    let mut first = true;
    for (name, v) in &node.attrs {
        json_field(out, &mut first, name, v);
    }
    for g in &node.children {
        if !first {
            out.push(',');
        }
        first = false;
        json_str(out, g.name);
        out.push(':');
        if g.one {
            if let Some(n) = g.nodes.first() {
                json_node(out, n);
            }
        } else {
            out.push('[');
            for (i, n) in g.nodes.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                json_node(out, n);
            }
            out.push(']');
        }
    }
    out.push('}');
}

fn xml_escape_into(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\r' => out.push_str("&#xD;"),
            '\n' => out.push_str("&#xA;"),
            '\t' => out.push_str("&#x9;"),
            c => out.push(c),
        }
    }
}

fn xml_attr(out: &mut String, name: &str, v: &Val) {
    out.push(' ');
    out.push_str(name);
    out.push_str("=\"");
    match v {
        Val::Str(s) => xml_escape_into(out, s),
        Val::Int(n) | Val::IntStr(n) => {
            let _ = write!(out, "{n}");
        }
        Val::Float(f) => {
            let _ = write!(out, "{f:.1}");
        }
        Val::Bool(b, _) => out.push(if *b { '1' } else { '0' }),
    }
    out.push('"');
}

fn xml_node(out: &mut String, tag: &str, node: &Node) {
    out.push('<');
    out.push_str(tag);
    for (name, v) in &node.attrs {
        xml_attr(out, name, v);
    }
    if node.children.is_empty() {
        out.push_str(" />\n");
        return;
    }
    out.push_str(">\n");
    for g in &node.children {
        for n in &g.nodes {
            xml_node(out, g.name, n);
        }
    }
    out.push_str("</");
    out.push_str(tag);
    out.push_str(">\n");
}

// ---------------------------------------------------------------------------------------------
// The library
// ---------------------------------------------------------------------------------------------

fn container_attrs(spec: &Spec) -> Vec<(&'static str, Val)> {
    let id = i64::from(spec.library_section_id);
    vec![
        ("size", Val::Int(spec.items as i64)),
        ("totalSize", Val::Int(spec.total() as i64)),
        ("offset", Val::Int(spec.offset as i64)),
        ("allowSync", Val::Bool(true, 0)),
        ("art", Val::Str("/:/resources/movie-fanart.jpg".into())),
        ("identifier", Val::Str("com.plexapp.plugins.library".into())),
        ("librarySectionID", Val::Int(id)),
        ("librarySectionTitle", Val::Str(spec.library_title.clone())),
        (
            "librarySectionUUID",
            Val::Str(format!(
                "00000000-0000-4000-8000-{:012}",
                spec.seed % 1_000_000_000_000
            )),
        ),
        (
            "mediaTagPrefix",
            Val::Str("/system/bundle/media/flags/".into()),
        ),
        ("mediaTagVersion", Val::Int(1_700_000_000)),
        ("thumb", Val::Str("/:/resources/movie.png".into())),
        ("title1", Val::Str(spec.library_title.clone())),
        ("title2", Val::Str("All Movies".into())),
        ("viewGroup", Val::Str("movie".into())),
        ("viewMode", Val::Int(65_592)),
    ]
}

const WORDS: &[&str] = &[
    "The",
    "Last",
    "Night",
    "House",
    "Return",
    "City",
    "Star",
    "Love",
    "Lost",
    "Shadow",
    "River",
    "Winter",
    "Dream",
    "Empire",
    "Secret",
    "Garden",
    "Ghost",
    "Island",
    "Storm",
    "Letters",
    "Amélie",
    "Pokémon",
    "Straße",
    "Ærøskøbing",
    "東京",
    "物語",
    "Café",
    "Señor",
    "Zoë",
    "Война",
    "мир",
    "Ἀχιλλεύς",
    "Ünïcödé",
    "Smörgåsbord",
    "Łódź",
    "İstanbul",
    "😀",
];

const SUBTITLES: &[&str] = &[
    ": Part II",
    ": A New Hope",
    ": The Director's Cut",
    ": Reloaded",
    " & Sons",
    " \"Redux\"",
    ": <Uncut>",
    " – Épisode 1",
];

const GENRES: &[&str] = &[
    "Action",
    "Adventure",
    "Animation",
    "Comedy",
    "Crime",
    "Drama",
    "Fantasy",
    "Horror",
    "Science Fiction",
    "Thriller",
    "Western",
    "Documentary",
];

const PEOPLE: &[&str] = &[
    "Ryan Reynolds",
    "Léa Seydoux",
    "Juliette Binoche",
    "Antonio Banderas",
    "Ken Watanabe",
    "Zhang Ziyi",
    "Mads Mikkelsen",
    "Penélope Cruz",
    "Samuel L. Jackson",
    "Tilda Swinton",
    "Bong Joon-ho",
    "Agnès Varda",
    "Denis Villeneuve",
    "Hayao Miyazaki",
    "Greta Gerwig",
    "Park Chan-wook",
];

const COUNTRIES: &[&str] = &[
    "USA",
    "France",
    "Japan",
    "United Kingdom",
    "Germany",
    "España",
];
const STUDIOS: &[&str] = &[
    "Columbia Pictures",
    "Studio Ghibli",
    "Gaumont",
    "Twentieth Century Fox",
    "A24",
    "Toho",
];
const RESOLUTIONS: &[&str] = &["sd", "480", "720", "1080", "4k"];
const LANGUAGES: &[(&str, &str)] = &[
    ("English", "eng"),
    ("Français", "fra"),
    ("Deutsch", "deu"),
    ("Español", "spa"),
    ("日本語", "jpn"),
];

struct PartFacts {
    path: String,
    size: u64,
}

/// The facts of one movie: what extraction keeps, plus the seed for the rest.
struct MovieFacts {
    rating_key: u64,
    title: String,
    year: u32,
    updated_at: i64,
    /// Parts of each Media (version).
    files: Vec<Vec<PartFacts>>,
    rng: Rng,
}

impl MovieFacts {
    fn new(spec: &Spec, index: usize) -> Self {
        let mut rng = Rng::new(spec.seed, index as u64);
        let rating_key = 10_000 + index as u64;
        let words = rng.range(1, 4);
        let mut title = String::new();
        for w in 0..words {
            if w > 0 {
                title.push(' ');
            }
            title.push_str(rng.pick(WORDS));
        }
        if rng.percent(20) {
            title.push_str(rng.pick(SUBTITLES));
        }
        if rng.percent(3) {
            title.push_str(" 's Tale");
        }
        let year = u32::try_from(rng.range(1930, 2025)).unwrap_or(2000);
        let updated_at = 1_600_000_000 + i64::try_from(rng.below(150_000_000)).unwrap_or(0);
        // The folder name keeps ':' (allowed on Linux); Windows-style servers replace it.
        let folder = format!("{title} ({year})");
        let versions = match rng.below(100) {
            0..=84 => 1,
            85..=96 => 2,
            _ => 3,
        };
        let mut files = Vec::with_capacity(versions);
        for v in 0..versions {
            let parts = if rng.percent(8) { rng.range(2, 3) } else { 1 };
            let res = rng.pick(RESOLUTIONS);
            let ext = if rng.percent(80) { "mkv" } else { "mp4" };
            let mut version = Vec::new();
            for p in 0..parts {
                let name = if parts > 1 {
                    format!("{title} ({year}) {res}p v{v} cd{}.{ext}", p + 1)
                } else {
                    format!("{title} ({year}) {res}p v{v}.{ext}")
                };
                version.push(PartFacts {
                    path: format!("/data/Movies/{folder}/{name}"),
                    size: rng.range(300_000_000, 60_000_000_000),
                });
            }
            files.push(version);
        }
        Self {
            rating_key,
            title,
            year,
            updated_at,
            files,
            rng,
        }
    }
}

fn tags(rng: &mut Rng, list: &[&str], lo: u64, hi: u64, with_ids: bool) -> Vec<Node> {
    let n = rng.range(lo, hi);
    (0..n)
        .map(|_| {
            let mut t = Node::default();
            if with_ids {
                t.i("id", i64::try_from(rng.range(1, 400_000)).unwrap_or(1));
                t.s("filter", format!("genre={}", rng.below(5_000)));
            }
            t.s("tag", rng.pick(list));
            t
        })
        .collect()
}

fn streams(rng: &mut Rng, part_id: i64, duration: i64) -> Vec<Node> {
    let mut out = Vec::new();
    let mut video = Node::default();
    video
        .i("id", part_id * 10)
        .i("streamType", 1)
        .attr("default", Val::Bool(true, 2))
        .s("codec", "h264")
        .i("index", 0)
        .i(
            "bitrate",
            i64::try_from(rng.range(1_000, 40_000)).unwrap_or(0),
        )
        .i("bitDepth", 8)
        .s("chromaSubsampling", "4:2:0")
        .s("colorRange", "tv")
        .s("colorSpace", "bt709")
        .i("duration", duration)
        .attr("frameRate", Val::Float(23.976))
        .i("height", 1080)
        .i("level", 41)
        .s("profile", "high")
        .i("refFrames", 4)
        .s("scanType", "progressive")
        .i("width", 1920)
        .s("displayTitle", "1080p (H.264)")
        .s("extendedDisplayTitle", "1080p (H.264)");
    out.push(video);
    for a in 0..rng.range(1, 2) {
        let (lang, code) =
            LANGUAGES[usize::try_from(rng.below(LANGUAGES.len() as u64)).unwrap_or(0)];
        let mut audio = Node::default();
        audio
            .i("id", part_id * 10 + 1 + i64::try_from(a).unwrap_or(0))
            .i("streamType", 2)
            .attr("selected", Val::Bool(a == 0, 1))
            .s("codec", "eac3")
            .i("index", 1 + i64::try_from(a).unwrap_or(0))
            .i("channels", 6)
            .i("bitrate", 640)
            .s("language", lang)
            .s("languageCode", code)
            .s("audioChannelLayout", "5.1(side)")
            .i("samplingRate", 48_000)
            .s("displayTitle", format!("{lang} (EAC3 5.1)"))
            .s("extendedDisplayTitle", format!("{lang} (EAC3 5.1)"));
        out.push(audio);
    }
    for s in 0..rng.below(3) {
        let (lang, code) =
            LANGUAGES[usize::try_from(rng.below(LANGUAGES.len() as u64)).unwrap_or(0)];
        let mut sub = Node::default();
        sub.i("id", part_id * 10 + 5 + i64::try_from(s).unwrap_or(0))
            .i("streamType", 3)
            .s("codec", "srt")
            .s("language", lang)
            .s("languageCode", code)
            .attr("forced", Val::Bool(false, 0))
            .s("displayTitle", format!("{lang} (SRT)"))
            .s("extendedDisplayTitle", format!("{lang} (SRT External)"));
        out.push(sub);
    }
    out
}

fn movie(spec: &Spec, index: usize) -> Node {
    let MovieFacts {
        rating_key,
        title,
        year,
        updated_at,
        files,
        mut rng,
    } = MovieFacts::new(spec, index);
    let rk = i64::try_from(rating_key).unwrap_or(0);
    let as_strings = rng.percent(10);
    let num = |n: i64| {
        if as_strings {
            Val::IntStr(n)
        } else {
            Val::Int(n)
        }
    };
    let duration = i64::try_from(rng.range(4_800_000, 10_800_000)).unwrap_or(0);
    let added_at = updated_at - i64::try_from(rng.below(10_000_000)).unwrap_or(0);

    let mut m = Node::default();
    m.s("ratingKey", rating_key.to_string())
        .s("key", format!("/library/metadata/{rk}"))
        .s(
            "guid",
            format!("plex://movie/{:024x}", rng.next() as u128 * 7),
        )
        .s("slug", title.to_lowercase().replace(' ', "-"))
        .s("studio", rng.pick(STUDIOS))
        .s("type", "movie")
        .s("title", title.clone())
        .s("titleSort", title.trim_start_matches("The ").to_owned())
        .s(
            "contentRating",
            rng.pick(&["G", "PG", "PG-13", "R", "de/16"]),
        );
    let mut summary = String::new();
    for s in 0..rng.range(1, 4) {
        if s > 0 {
            summary.push_str(if rng.percent(15) { "\r\n" } else { " " });
        }
        for w in 0..rng.range(6, 14) {
            if w > 0 {
                summary.push(' ');
            }
            summary.push_str(rng.pick(WORDS));
        }
        summary.push('.');
    }
    m.s("summary", summary)
        .attr("rating", Val::Float(rng.range(10, 99) as f64 / 10.0))
        .attr(
            "audienceRating",
            Val::Float(rng.range(10, 99) as f64 / 10.0),
        )
        .attr("year", num(i64::from(year)))
        .s("tagline", "Every ending has a beginning.")
        .s(
            "thumb",
            format!("/library/metadata/{rk}/thumb/{updated_at}"),
        )
        .s("art", format!("/library/metadata/{rk}/art/{updated_at}"))
        .i("duration", duration)
        .s(
            "originallyAvailableAt",
            format!("{year}-0{}-1{}", rng.range(1, 9), rng.below(10)),
        )
        .attr("addedAt", num(added_at))
        .attr("updatedAt", num(updated_at))
        .s(
            "audienceRatingImage",
            "rottentomatoes://image.rating.upright",
        )
        .s("chapterSource", "media")
        .s(
            "primaryExtraKey",
            format!("/library/metadata/{}", rk + 900_000),
        )
        .s("ratingImage", "rottentomatoes://image.rating.ripe");
    if rng.percent(30) {
        m.i("viewCount", i64::try_from(rng.range(1, 20)).unwrap_or(1))
            .i("lastViewedAt", updated_at + 1_000);
    }
    if rng.percent(20) {
        // Most items rely on the container's librarySectionID; some repeat it.
        m.attr("librarySectionID", num(i64::from(spec.library_section_id)));
    }
    if rng.percent(25) {
        m.attr("hasPremiumExtras", Val::Bool(true, 2));
    }

    let mut images = Vec::new();
    for (alt, kind) in [("coverPoster", "coverPoster"), ("background", "background")] {
        let mut img = Node::default();
        img.s("alt", title.clone())
            .s("type", kind)
            .s("url", format!("/library/metadata/{rk}/{alt}/{updated_at}"));
        images.push(img);
    }
    m.group("Image", images);
    let mut blur = Node::default();
    blur.s("topLeft", "1c3a4f")
        .s("topRight", "5e2a1b")
        .s("bottomRight", "0d1e2f")
        .s("bottomLeft", "4a3b2c");
    m.single("UltraBlurColors", blur);

    let mut media_nodes = Vec::new();
    for (v, parts) in files.iter().enumerate() {
        let media_id = rk * 10 + i64::try_from(v).unwrap_or(0);
        let res = rng.pick(RESOLUTIONS);
        let mut media = Node::default();
        media
            .attr("id", num(media_id))
            .i("duration", duration)
            .i(
                "bitrate",
                i64::try_from(rng.range(1_000, 40_000)).unwrap_or(0),
            )
            .i("width", 1920)
            .i("height", 1080)
            .attr("aspectRatio", Val::Float(1.78))
            .i("audioChannels", 6)
            .s("audioCodec", "eac3")
            .s("videoCodec", "h264")
            .s("videoResolution", res)
            .s("container", "mkv")
            .s("videoFrameRate", "24p")
            .attr("optimizedForStreaming", Val::Bool(rng.percent(50), 1))
            .s("audioProfile", "dolby digital plus")
            .attr("has64bitOffsets", Val::Bool(false, 0))
            .s("videoProfile", "high");
        let mut part_nodes = Vec::new();
        for (p, part) in parts.iter().enumerate() {
            let part_id = media_id * 10 + i64::try_from(p).unwrap_or(0);
            let size = i64::try_from(part.size).unwrap_or(i64::MAX);
            let mut pn = Node::default();
            pn.i("id", part_id)
                .s(
                    "key",
                    format!("/library/parts/{part_id}/{updated_at}/file.mkv"),
                )
                .i("duration", duration)
                .s("file", part.path.clone())
                .attr("size", num(size))
                .s("audioProfile", "dolby digital plus")
                .s("container", "mkv")
                .s("indexes", "sd")
                .s("videoProfile", "high")
                .attr("hasThumbnail", Val::Bool(true, 2));
            pn.group("Stream", streams(&mut rng, part_id, duration));
            part_nodes.push(pn);
        }
        media.group("Part", part_nodes);
        media_nodes.push(media);
    }
    m.group("Media", media_nodes);

    m.group("Genre", tags(&mut rng, GENRES, 1, 3, true));
    m.group("Country", tags(&mut rng, COUNTRIES, 1, 2, true));
    let mut guids = Vec::new();
    for scheme in ["imdb://tt", "tmdb://", "tvdb://"] {
        let mut g = Node::default();
        g.s("id", format!("{scheme}{}", rng.range(10_000, 9_999_999)));
        guids.push(g);
    }
    m.group("Guid", guids);
    m.group("Director", tags(&mut rng, PEOPLE, 1, 2, true));
    m.group("Writer", tags(&mut rng, PEOPLE, 1, 3, true));
    let roles: Vec<Node> = (0..rng.range(2, 6))
        .map(|r| {
            let mut role = Node::default();
            role.i("id", i64::try_from(rng.range(1, 400_000)).unwrap_or(1))
                .s("filter", format!("actor={r}"))
                .s("tag", rng.pick(PEOPLE))
                .s("tagKey", format!("{:024x}", rng.next()))
                .s("role", format!("Character {}", r + 1))
                .s("thumb", format!("/library/people/{:032x}.jpg", rng.next()));
            role
        })
        .collect();
    m.group("Role", roles);
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_is_deterministic_and_pages_agree() {
        let spec = Spec::new(50);
        assert_eq!(generate_json(&spec), generate_json(&spec));
        assert_eq!(generate_xml(&spec), generate_xml(&spec));
        let whole = expected_items(&spec);
        let page = expected_items(&spec.page(20, 10, 50));
        assert_eq!(&whole[20..30], &page[..]);
        let other = Spec {
            seed: 2,
            ..Spec::new(50)
        };
        assert_ne!(expected_items(&other), whole);
    }

    #[test]
    fn prng_is_stable() {
        let mut r = Rng::new(1, 0);
        let first: Vec<u64> = (0..3).map(|_| r.next()).collect();
        let mut again = Rng::new(1, 0);
        assert_eq!(first, (0..3).map(|_| again.next()).collect::<Vec<_>>());
        assert_ne!(Rng::new(0, 0).next(), 0);
    }
}
