//! The data extracted from Plex Media Server responses: [`PlexItem`], [`ItemKind`], [`Section`]
//! and the paged result [`Extracted`].

use std::fmt;
use std::str::FromStr;

pub use compact_str::CompactString;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// What kind of library entry an item is, from the PMS `type` attribute.
///
/// Serialized as the PMS type string (`"movie"`, `"show"`, `"photoalbum"`, ...), so a value
/// round-trips through serde as long as [`ItemKind::Other`] holds a type that is not one of the
/// named variants (which [`ItemKind::from_plex_type`] guarantees).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ItemKind {
    /// `movie`
    Movie,
    /// `show` (a TV series; its files are its `Location` folders)
    Show,
    /// `season`
    Season,
    /// `episode`
    Episode,
    /// `artist`
    Artist,
    /// `album`
    Album,
    /// `track`
    Track,
    /// `photo` (a single picture)
    Photo,
    /// `photoalbum`, or a `photo` entry that is a folder (XML `<Directory type="photo">`, or a
    /// JSON `photo` whose `key` ends in `/children`)
    PhotoAlbum,
    /// `clip` (trailers, extras, web clips)
    Clip,
    /// `playlist`
    Playlist,
    /// `collection`
    Collection,
    /// Any other type string, kept verbatim (empty when the entry had no `type`).
    Other(String),
}

impl ItemKind {
    /// Parses a PMS `type` attribute. Unknown types become [`ItemKind::Other`].
    pub fn from_plex_type(s: &str) -> Self {
        match s {
            "movie" => Self::Movie,
            "show" => Self::Show,
            "season" => Self::Season,
            "episode" => Self::Episode,
            "artist" => Self::Artist,
            "album" => Self::Album,
            "track" => Self::Track,
            "photo" => Self::Photo,
            "photoalbum" => Self::PhotoAlbum,
            "clip" => Self::Clip,
            "playlist" => Self::Playlist,
            "collection" => Self::Collection,
            other => Self::Other(other.to_owned()),
        }
    }

    /// The PMS type string of this kind (`"movie"`, `"photoalbum"`, ...).
    pub fn as_str(&self) -> &str {
        match self {
            Self::Movie => "movie",
            Self::Show => "show",
            Self::Season => "season",
            Self::Episode => "episode",
            Self::Artist => "artist",
            Self::Album => "album",
            Self::Track => "track",
            Self::Photo => "photo",
            Self::PhotoAlbum => "photoalbum",
            Self::Clip => "clip",
            Self::Playlist => "playlist",
            Self::Collection => "collection",
            Self::Other(s) => s,
        }
    }

    /// True for kinds whose files are `Media`/`Part`s (movies, episodes, tracks, photos, clips);
    /// false for containers (shows, seasons, artists, albums, photo albums, ...), whose
    /// [`PlexItem::file_paths`] are `Location` folders when the response has them.
    pub fn is_leaf(&self) -> bool {
        matches!(
            self,
            Self::Movie | Self::Episode | Self::Track | Self::Photo | Self::Clip
        )
    }
}

impl fmt::Display for ItemKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ItemKind {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self::from_plex_type(s))
    }
}

impl From<&str> for ItemKind {
    fn from(s: &str) -> Self {
        Self::from_plex_type(s)
    }
}

impl Serialize for ItemKind {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ItemKind {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KindVisitor;
        impl serde::de::Visitor<'_> for KindVisitor {
            type Value = ItemKind;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a Plex item type string")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ItemKind, E> {
                Ok(ItemKind::from_plex_type(v))
            }
        }
        deserializer.deserialize_str(KindVisitor)
    }
}

/// One library entry (movie, show, season, episode, track, photo, ...) with only the data a
/// sync tool needs.
///
/// The rating key, key and title are [`CompactString`]s: strings of up to 24 bytes (every
/// rating key, the usual `/library/metadata/{id}` key, many titles) are stored inline, without
/// an allocation; they deref to `&str` and are built from `&str` or `String` with `.into()`.
///
/// Built by the extraction functions ([`crate::extract_items`] and friends) from PMS responses;
/// never the whole response.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PlexItem {
    /// The item's `ratingKey` (its id on the server), e.g. `"17896"`.
    pub rating_key: CompactString,
    /// The item's `key`, e.g. `"/library/metadata/17896"` or `"/library/metadata/22/children"`.
    pub key: CompactString,
    /// The item's title, entities decoded, Unicode kept.
    pub title: CompactString,
    /// The item's kind, from its `type`.
    pub kind: ItemKind,
    /// Every `Part` `file` of every `Media`, in document order (several versions and several
    /// parts each). For items without parts (shows, seasons, artists, ...) the `Location`
    /// `path`s when the response has them; otherwise empty.
    pub file_paths: Vec<String>,
    /// `year`, when present.
    pub year: Option<u32>,
    /// `updatedAt` (seconds since the Unix epoch), when present.
    pub updated_at: Option<i64>,
    /// `librarySectionID` of the item, or of its container when the item lacks it.
    pub library_section_id: Option<u32>,
}

/// One library section from `/library/sections`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Section {
    /// The section id (its numeric `key`), as used in `/library/sections/{id}/all`.
    pub id: u32,
    /// The section's `key` attribute as sent (`"1"`).
    pub key: String,
    /// The section's title (the library name), verbatim: trailing spaces are kept.
    pub title: String,
    /// The section's `type`: movie, show, artist or photo.
    pub kind: ItemKind,
    /// The section's `Location` folders, in document order.
    pub locations: Vec<String>,
    /// `updatedAt` (seconds since the Unix epoch), when present.
    pub updated_at: Option<i64>,
    /// The section's `uuid`, when present.
    pub uuid: Option<String>,
}

/// The items of one response plus the container's paging information.
///
/// PMS pages `/library/sections/{id}/all` with `X-Plex-Container-Start`/`-Size`; the response
/// carries `offset`, `totalSize` and `size`. `size` is reported as sent but is not trusted:
/// [`Extracted::items`] and [`Extracted::entries`] are what the response really held.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Extracted {
    /// The items, in document order. Entries without a `ratingKey` are not items.
    pub items: Vec<PlexItem>,
    /// Number of direct entries in the container (items plus entries without a `ratingKey`,
    /// such as the "All episodes" directory), used to advance a paged request.
    pub entries: u64,
    /// `MediaContainer.offset`, when sent.
    pub offset: Option<u64>,
    /// `MediaContainer.totalSize`, when sent.
    pub total_size: Option<u64>,
    /// `MediaContainer.size` as sent (it can disagree with the items; trust the items).
    pub size: Option<u64>,
    /// `MediaContainer.librarySectionID`, when sent.
    pub library_section_id: Option<u32>,
}

// Schema tags for the cache codec: bump the version when a stored type changes, so that
// entries written by an older release read as misses instead of garbage.
plexcache_core::cache_value!(PlexItem, "plexcache.PlexItem", 1);
plexcache_core::cache_value!(Section, "plexcache.Section", 1);

/// Another name for [`Extracted`], for code that thinks in pages.
pub type Page = Extracted;

impl Extracted {
    /// The `X-Plex-Container-Start` of the next page, or `None` when this page was the last one
    /// (no `totalSize`, an empty page, or `offset + entries >= totalSize`).
    ///
    /// `offset` defaults to 0 when the container did not send it.
    pub fn next_offset(&self) -> Option<u64> {
        let total = self.total_size?;
        if self.entries == 0 {
            return None;
        }
        let next = self.offset.unwrap_or(0).saturating_add(self.entries);
        (next < total).then_some(next)
    }

    /// True when [`Extracted::next_offset`] says there is another page.
    pub fn has_more(&self) -> bool {
        self.next_offset().is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_through_their_type_string() {
        for t in [
            "movie",
            "show",
            "season",
            "episode",
            "artist",
            "album",
            "track",
            "photo",
            "photoalbum",
            "clip",
            "playlist",
            "collection",
            "tag",
            "",
        ] {
            let k = ItemKind::from_plex_type(t);
            assert_eq!(k.as_str(), t);
            let json = serde_json::to_string(&k).unwrap_or_default();
            assert_eq!(json, format!("\"{t}\""));
            let back: ItemKind = serde_json::from_str(&json).unwrap_or(ItemKind::Movie);
            assert_eq!(back, k);
        }
        assert_eq!(
            ItemKind::from_plex_type("tag"),
            ItemKind::Other("tag".into())
        );
        assert!(ItemKind::Episode.is_leaf());
        assert!(!ItemKind::Show.is_leaf());
    }

    #[test]
    fn items_round_trip_through_the_cache_codec() {
        let item = PlexItem {
            rating_key: "41933".into(),
            key: "/library/metadata/41933".into(),
            title: "Alien: Covenant".into(),
            kind: ItemKind::Other("trailer".into()),
            file_paths: vec![
                "/Movies/Alien: Covenant (2017)/a.mkv".into(),
                "b.mp4".into(),
            ],
            year: Some(2017),
            updated_at: Some(-1),
            library_section_id: None,
        };
        let items = vec![item.clone(), item];
        let bytes = plexcache_core::codec::encode("k", &items).map_err(|e| e.to_string());
        let back = bytes.map_err(|e| e.to_string()).and_then(|b| {
            plexcache_core::codec::decode::<Vec<PlexItem>>("k", &b).map_err(|e| e.to_string())
        });
        assert_eq!(back, Ok(items));
    }

    #[test]
    fn next_offset_stops_on_total_size() {
        let mut page = Extracted {
            entries: 5,
            offset: Some(0),
            total_size: Some(12),
            ..Extracted::default()
        };
        assert_eq!(page.next_offset(), Some(5));
        page.offset = Some(10);
        page.entries = 2;
        assert_eq!(page.next_offset(), None);
        page.entries = 0;
        page.offset = Some(0);
        assert!(!page.has_more(), "an empty page must stop a paged fetch");
        page.entries = 3;
        page.total_size = None;
        assert!(!page.has_more());
    }
}
