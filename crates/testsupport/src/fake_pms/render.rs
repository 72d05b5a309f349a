//! Rendering PMS containers in JSON and XML for the fake server.

use serde_json::{Map, Value};

use plexcache_plex::PlexItem;

/// `{"MediaContainer": {attrs..., list_key: [entries]}}`.
pub(super) fn container_json<'a>(
    attrs: &Map<String, Value>,
    list_key: &str,
    entries: impl Iterator<Item = &'a Value>,
) -> Vec<u8> {
    let mut mc = attrs.clone();
    mc.insert(
        list_key.to_owned(),
        Value::Array(entries.cloned().collect()),
    );
    let mut doc = Map::new();
    doc.insert("MediaContainer".to_owned(), Value::Object(mc));
    serde_json::to_vec(&Value::Object(doc)).unwrap_or_default()
}

/// The XML form of a container: attributes from `attrs`, one element per entry (named by its
/// `type` for `Metadata` lists, else by `list_key`).
pub(super) fn container_xml<'a>(
    attrs: &Map<String, Value>,
    list_key: &str,
    entries: impl Iterator<Item = &'a Value>,
) -> Vec<u8> {
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<MediaContainer");
    write_attrs(&mut out, attrs);
    out.push_str(">\n");
    for entry in entries {
        if let Value::Object(obj) = entry {
            write_element(&mut out, &child_name(list_key, obj), obj);
        }
    }
    out.push_str("</MediaContainer>\n");
    out.into_bytes()
}

/// Converts a whole JSON PMS document (`{"MediaContainer": {...}}`) to its XML form; `None`
/// when it has no `MediaContainer` object.
pub(super) fn json_doc_to_xml(doc: &Value) -> Option<Vec<u8>> {
    let mc = doc.get("MediaContainer")?.as_object()?;
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    write_element(&mut out, "MediaContainer", mc);
    Some(out.into_bytes())
}

fn child_name(list_key: &str, obj: &Map<String, Value>) -> String {
    if list_key != "Metadata" {
        return list_key.to_owned();
    }
    let kind = obj.get("type").and_then(Value::as_str).unwrap_or("");
    let is_folder = obj
        .get("key")
        .and_then(Value::as_str)
        .is_some_and(|k| k.ends_with("/children"));
    match kind {
        "movie" | "episode" | "clip" | "trailer" => "Video",
        "track" => "Track",
        "photo" if !is_folder => "Photo",
        "playlist" => "Playlist",
        _ => "Directory",
    }
    .to_owned()
}

fn write_attrs(out: &mut String, obj: &Map<String, Value>) {
    for (k, v) in obj {
        let text = match v {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => if *b { "1" } else { "0" }.to_owned(),
            _ => continue,
        };
        out.push(' ');
        out.push_str(k);
        out.push_str("=\"");
        escape_into(out, &text);
        out.push('"');
    }
}

fn write_element(out: &mut String, name: &str, obj: &Map<String, Value>) {
    out.push('<');
    out.push_str(name);
    write_attrs(out, obj);
    let children: Vec<(&String, &Value)> = obj
        .iter()
        .filter(|(_, v)| matches!(v, Value::Array(_) | Value::Object(_)))
        .collect();
    if children.is_empty() {
        out.push_str("/>\n");
        return;
    }
    out.push_str(">\n");
    for (k, v) in children {
        match v {
            Value::Array(list) => {
                for item in list {
                    if let Value::Object(o) = item {
                        write_element(out, &child_name(k, o), o);
                    }
                }
            }
            Value::Object(o) => write_element(out, k, o),
            _ => {}
        }
    }
    out.push_str("</");
    out.push_str(name);
    out.push_str(">\n");
}

fn escape_into(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            '\t' => out.push_str("&#9;"),
            c => out.push(c),
        }
    }
}

/// A JSON `Metadata` entry that extracts back to `item` (each path as its own `Media`/`Part`
/// for leaf kinds, `Location`s otherwise).
pub(super) fn item_to_json(item: &PlexItem) -> Value {
    let mut m = Map::new();
    m.insert(
        "ratingKey".into(),
        Value::String(item.rating_key.to_string()),
    );
    m.insert("key".into(), Value::String(item.key.to_string()));
    m.insert("title".into(), Value::String(item.title.to_string()));
    m.insert("type".into(), Value::String(item.kind.as_str().to_owned()));
    if let Some(y) = item.year {
        m.insert("year".into(), Value::from(y));
    }
    if let Some(u) = item.updated_at {
        m.insert("updatedAt".into(), Value::from(u));
    }
    if let Some(id) = item.library_section_id {
        m.insert("librarySectionID".into(), Value::from(id));
    }
    let paths = item.file_paths.iter().map(|p| {
        let mut o = Map::new();
        if item.kind.is_leaf() {
            o.insert("file".into(), Value::String(p.clone()));
            let mut media = Map::new();
            media.insert("Part".into(), Value::Array(vec![Value::Object(o)]));
            Value::Object(media)
        } else {
            o.insert("path".into(), Value::String(p.clone()));
            Value::Object(o)
        }
    });
    let key = if item.kind.is_leaf() {
        "Media"
    } else {
        "Location"
    };
    m.insert(key.into(), Value::Array(paths.collect()));
    Value::Object(m)
}

/// Case-insensitive "title contains" as PMS filters `title=`.
pub(super) fn title_matches(title: &str, filter: &str) -> bool {
    title.to_lowercase().contains(&filter.to_lowercase())
}

/// Decodes a `application/x-www-form-urlencoded` query into pairs.
pub(super) fn query_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'+' {
            out.push(b' ');
        } else if b == b'%'
            && let Some(v) = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
            continue;
        } else {
            out.push(b);
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
