//! JSON extraction: `serde_json`'s streaming deserializer driven by hand-written visitors that
//! keep only the fields of an item and skip the rest with [`IgnoredAny`].

use std::cell::RefCell;
use std::fmt::{self, Write as _};
use std::io::BufRead;
use std::marker::PhantomData;

use serde::de::value::MapAccessDeserializer;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use std::borrow::Cow;

use super::{Collector, Entry, Mode, parse_int, strip_str, strip_string, stripped_owned};
use crate::CompactString;
use crate::error::{ExtractError, Format, Position};

/// One step of the path to the value being read, for error messages.
#[derive(Clone, Copy, Debug)]
enum Seg {
    Key(&'static str),
    Index(usize),
}

/// Shared state of one pass: the path being read (left as is when an error unwinds, so the
/// error can say where it happened).
struct Ctx {
    path: RefCell<Vec<Seg>>,
    /// Top-level keys seen when `MediaContainer` is missing (for the error message).
    top_keys: RefCell<Vec<String>>,
    top_kind: RefCell<Option<&'static str>>,
}

impl Ctx {
    fn new() -> Self {
        Self {
            path: RefCell::new(Vec::with_capacity(8)),
            top_keys: RefCell::new(Vec::new()),
            top_kind: RefCell::new(None),
        }
    }

    #[inline]
    fn push(&self, seg: Seg) {
        self.path.borrow_mut().push(seg);
    }

    #[inline]
    fn pop(&self) {
        self.path.borrow_mut().pop();
    }

    #[inline]
    fn set_index(&self, i: usize) {
        if let Some(Seg::Index(last)) = self.path.borrow_mut().last_mut() {
            *last = i;
        }
    }

    fn path_string(&self) -> String {
        let mut s = String::new();
        for seg in self.path.borrow().iter() {
            match seg {
                Seg::Key(k) => {
                    if !s.is_empty() {
                        s.push('.');
                    }
                    s.push_str(k);
                }
                Seg::Index(i) => {
                    let _ = write!(s, "[{i}]");
                }
            }
        }
        s
    }
}

/// The JSON keys this module cares about; everything else is [`Field::Other`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Field {
    MediaContainer,
    Size,
    TotalSize,
    Offset,
    LibrarySectionId,
    Metadata,
    Directory,
    Hub,
    SearchResult,
    RatingKey,
    Key,
    Title,
    Type,
    Year,
    UpdatedAt,
    Uuid,
    Media,
    Part,
    File,
    Location,
    Path,
    Other,
}

impl Field {
    fn from_name(s: &str) -> Self {
        match s {
            "MediaContainer" => Self::MediaContainer,
            "size" => Self::Size,
            "totalSize" => Self::TotalSize,
            "offset" => Self::Offset,
            "librarySectionID" => Self::LibrarySectionId,
            "Metadata" => Self::Metadata,
            "Directory" => Self::Directory,
            "Hub" => Self::Hub,
            "SearchResult" => Self::SearchResult,
            "ratingKey" => Self::RatingKey,
            "key" => Self::Key,
            "title" => Self::Title,
            "type" => Self::Type,
            "year" => Self::Year,
            "updatedAt" => Self::UpdatedAt,
            "uuid" => Self::Uuid,
            "Media" => Self::Media,
            "Part" => Self::Part,
            "file" => Self::File,
            "Location" => Self::Location,
            "path" => Self::Path,
            _ => Self::Other,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::MediaContainer => "MediaContainer",
            Self::Size => "size",
            Self::TotalSize => "totalSize",
            Self::Offset => "offset",
            Self::LibrarySectionId => "librarySectionID",
            Self::Metadata => "Metadata",
            Self::Directory => "Directory",
            Self::Hub => "Hub",
            Self::SearchResult => "SearchResult",
            Self::RatingKey => "ratingKey",
            Self::Key => "key",
            Self::Title => "title",
            Self::Type => "type",
            Self::Year => "year",
            Self::UpdatedAt => "updatedAt",
            Self::Uuid => "uuid",
            Self::Media => "Media",
            Self::Part => "Part",
            Self::File => "file",
            Self::Location => "Location",
            Self::Path => "path",
            Self::Other => "?",
        }
    }
}

/// Reads a map key as a [`Field`] without allocating.
struct FieldSeed;

impl<'de> DeserializeSeed<'de> for FieldSeed {
    type Value = Field;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Field, D::Error> {
        d.deserialize_identifier(FieldSeed)
    }
}

impl Visitor<'_> for FieldSeed {
    type Value = Field;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Field, E> {
        Ok(Field::from_name(v))
    }
}

/// Reads a map key as a [`Field`], also keeping the name of an unknown key (top level only).
struct NamedFieldSeed;

impl<'de> DeserializeSeed<'de> for NamedFieldSeed {
    type Value = (Field, Option<String>);
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_identifier(NamedFieldSeed)
    }
}

impl Visitor<'_> for NamedFieldSeed {
    type Value = (Field, Option<String>);
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        let field = Field::from_name(v);
        Ok((
            field,
            (field != Field::MediaContainer).then(|| v.to_owned()),
        ))
    }
}

/// A string field. Numbers are accepted and kept in their decimal form (a `ratingKey` or a
/// section `key` sent as a number); `null` is absent. The characters python-plexapi strips
/// ([`super::is_stripped`]) are removed, as from XML.
struct StrSeed<T = String>(PhantomData<T>);

/// A string field (or a number, kept as its decimal text) read as a `String`.
const STR: StrSeed = StrSeed(PhantomData);
/// A short string field (rating key, key, title) read as a [`CompactString`].
const SHORT: StrSeed<CompactString> = StrSeed(PhantomData);

impl<'de, T: for<'a> From<&'a str> + From<String>> DeserializeSeed<'de> for StrSeed<T> {
    type Value = Option<T>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<T: for<'a> From<&'a str> + From<String>> Visitor<'_> for StrSeed<T> {
    type Value = Option<T>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string or a number")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Some(stripped_owned(Cow::Borrowed(v))))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Some(T::from(strip_string(v))))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Some(T::from(v.to_string())))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Some(T::from(v.to_string())))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Some(T::from(v.to_string())))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}

/// An integer field, sent as a number or as a numeric string; `null` and `""` are absent.
struct NumSeed<T>(PhantomData<T>);

impl<T> NumSeed<T> {
    fn new() -> Self {
        Self(PhantomData)
    }
}

impl<'de, T> DeserializeSeed<'de> for NumSeed<T>
where
    T: TryFrom<i128> + TryFrom<u64> + TryFrom<i64>,
{
    type Value = Option<T>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<T> Visitor<'_> for NumSeed<T>
where
    T: TryFrom<i128> + TryFrom<u64> + TryFrom<i64>,
{
    type Value = Option<T>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an integer or a string holding one")
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        T::try_from(v)
            .map(Some)
            .map_err(|_| E::custom(format_args!("number {v} is out of range")))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        T::try_from(v)
            .map(Some)
            .map_err(|_| E::custom(format_args!("number {v} is out of range")))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        if v.is_finite() && v.fract() == 0.0 && v.abs() < 1e30 {
            T::try_from(v as i128)
                .map(Some)
                .map_err(|_| E::custom(format_args!("number {v} is out of range")))
        } else {
            Err(E::invalid_value(de::Unexpected::Float(v), &self))
        }
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        parse_int::<T>(&strip_str(v)).map_err(E::custom)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}

/// Reads one element of a list (or a lone object standing for a list of one).
trait Each<'de> {
    fn one<D: Deserializer<'de>>(&mut self, d: D) -> Result<(), D::Error>;
}

/// Adapts an [`Each`] to a [`DeserializeSeed`] for one element.
struct Elem<'a, E>(&'a mut E);

impl<'de, E: Each<'de>> DeserializeSeed<'de> for Elem<'_, E> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        self.0.one(d)
    }
}

/// A list of objects (`Metadata`, `Media`, `Part`, `Location`, ...). A single object is taken as
/// a list of one (`SearchResult.Metadata` is an object); `null` is an empty list.
struct OneOrMany<'a, 'c, E> {
    each: &'a mut E,
    ctx: &'c Ctx,
}

impl<'de, E: Each<'de>> DeserializeSeed<'de> for OneOrMany<'_, '_, E> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, E: Each<'de>> Visitor<'de> for OneOrMany<'_, '_, E> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of objects")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        self.ctx.push(Seg::Index(0));
        let mut i = 0usize;
        loop {
            self.ctx.set_index(i);
            if seq.next_element_seed(Elem(&mut *self.each))?.is_none() {
                break;
            }
            i += 1;
        }
        self.ctx.pop();
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        self.each.one(MapAccessDeserializer::new(map))
    }
    fn visit_unit<Er: de::Error>(self) -> Result<(), Er> {
        Ok(())
    }
    fn visit_none<Er: de::Error>(self) -> Result<(), Er> {
        Ok(())
    }
}

/// Reads the value of `field` with `seed`, keeping the path for error messages.
#[inline]
fn value<'de, A, S>(map: &mut A, ctx: &Ctx, field: Field, seed: S) -> Result<S::Value, A::Error>
where
    A: MapAccess<'de>,
    S: DeserializeSeed<'de>,
{
    ctx.push(Seg::Key(field.name()));
    let v = map.next_value_seed(seed)?;
    ctx.pop();
    Ok(v)
}

#[inline]
fn skip<'de, A: MapAccess<'de>>(map: &mut A) -> Result<(), A::Error> {
    map.next_value::<IgnoredAny>().map(|_| ())
}

// ---------------------------------------------------------------------------------------------
// Top level and MediaContainer
// ---------------------------------------------------------------------------------------------

struct Top<'a> {
    c: &'a mut Collector,
    ctx: &'a Ctx,
}

impl<'de> Visitor<'de> for Top<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object with a MediaContainer")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        *self.ctx.top_kind.borrow_mut() = Some("an object");
        while let Some((field, name)) = map.next_key_seed(NamedFieldSeed)? {
            if field == Field::MediaContainer {
                if self.c.saw_container {
                    return Err(de::Error::duplicate_field("MediaContainer"));
                }
                self.c.saw_container = true;
                value(
                    &mut map,
                    self.ctx,
                    field,
                    ContainerSeed {
                        c: &mut *self.c,
                        ctx: self.ctx,
                    },
                )?;
            } else {
                if let Some(name) = name {
                    let mut keys = self.ctx.top_keys.borrow_mut();
                    if keys.len() < 5 {
                        keys.push(name);
                    }
                }
                skip(&mut map)?;
            }
        }
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        *self.ctx.top_kind.borrow_mut() = Some("an array");
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(())
    }
}

struct ContainerSeed<'a> {
    c: &'a mut Collector,
    ctx: &'a Ctx,
}

impl<'de> DeserializeSeed<'de> for ContainerSeed<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ContainerSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a MediaContainer object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let ctx = self.ctx;
        let c = self.c;
        while let Some(field) = map.next_key_seed(FieldSeed)? {
            match field {
                Field::Size => c.size = value(&mut map, ctx, field, NumSeed::new())?,
                Field::TotalSize => c.total_size = value(&mut map, ctx, field, NumSeed::new())?,
                Field::Offset => c.offset = value(&mut map, ctx, field, NumSeed::new())?,
                Field::LibrarySectionId => {
                    c.library_section_id = value(&mut map, ctx, field, NumSeed::new())?;
                }
                Field::Metadata | Field::Directory => {
                    let mut each = EntryEach {
                        c: &mut *c,
                        ctx,
                        direct: true,
                    };
                    value(
                        &mut map,
                        ctx,
                        field,
                        OneOrMany {
                            each: &mut each,
                            ctx,
                        },
                    )?;
                }
                Field::Hub if c.mode == Mode::Items => {
                    let mut each = HubEach { c: &mut *c, ctx };
                    value(
                        &mut map,
                        ctx,
                        field,
                        OneOrMany {
                            each: &mut each,
                            ctx,
                        },
                    )?;
                }
                Field::SearchResult if c.mode == Mode::Items => {
                    let mut each = SearchResultEach { c: &mut *c, ctx };
                    value(
                        &mut map,
                        ctx,
                        field,
                        OneOrMany {
                            each: &mut each,
                            ctx,
                        },
                    )?;
                }
                _ => skip(&mut map)?,
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Hubs and search results
// ---------------------------------------------------------------------------------------------

struct HubEach<'a> {
    c: &'a mut Collector,
    ctx: &'a Ctx,
}

impl<'de> Each<'de> for HubEach<'_> {
    fn one<D: Deserializer<'de>>(&mut self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(HubVisitor {
            c: &mut *self.c,
            ctx: self.ctx,
        })
    }
}

struct HubVisitor<'a> {
    c: &'a mut Collector,
    ctx: &'a Ctx,
}

impl<'de> Visitor<'de> for HubVisitor<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a Hub object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let ctx = self.ctx;
        let c = self.c;
        let first_item = c.items.len();
        let mut section: Option<u32> = None;
        while let Some(field) = map.next_key_seed(FieldSeed)? {
            match field {
                Field::Metadata | Field::Directory => {
                    let mut each = EntryEach {
                        c: &mut *c,
                        ctx,
                        direct: false,
                    };
                    value(
                        &mut map,
                        ctx,
                        field,
                        OneOrMany {
                            each: &mut each,
                            ctx,
                        },
                    )?;
                }
                Field::LibrarySectionId => section = value(&mut map, ctx, field, NumSeed::new())?,
                _ => skip(&mut map)?,
            }
        }
        c.copy_down_section(first_item, section);
        Ok(())
    }
}

struct SearchResultEach<'a> {
    c: &'a mut Collector,
    ctx: &'a Ctx,
}

impl<'de> Each<'de> for SearchResultEach<'_> {
    fn one<D: Deserializer<'de>>(&mut self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(SearchResultVisitor {
            c: &mut *self.c,
            ctx: self.ctx,
        })
    }
}

struct SearchResultVisitor<'a> {
    c: &'a mut Collector,
    ctx: &'a Ctx,
}

impl<'de> Visitor<'de> for SearchResultVisitor<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a SearchResult object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let ctx = self.ctx;
        let c = self.c;
        while let Some(field) = map.next_key_seed(FieldSeed)? {
            match field {
                // `SearchResult.Directory` holds tags (actors, genres): not items.
                Field::Metadata => {
                    let mut each = EntryEach {
                        c: &mut *c,
                        ctx,
                        direct: false,
                    };
                    value(
                        &mut map,
                        ctx,
                        field,
                        OneOrMany {
                            each: &mut each,
                            ctx,
                        },
                    )?;
                }
                _ => skip(&mut map)?,
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Entries (items and sections)
// ---------------------------------------------------------------------------------------------

struct EntryEach<'a> {
    c: &'a mut Collector,
    ctx: &'a Ctx,
    /// A direct child of `MediaContainer` (not of a hub or search result).
    direct: bool,
}

impl<'de> Each<'de> for EntryEach<'_> {
    fn one<D: Deserializer<'de>>(&mut self, d: D) -> Result<(), D::Error> {
        let entry = d.deserialize_map(EntryVisitor {
            mode: self.c.mode,
            ctx: self.ctx,
        })?;
        self.c.push_entry(entry, self.direct);
        Ok(())
    }
}

struct EntryVisitor<'a> {
    mode: Mode,
    ctx: &'a Ctx,
}

impl<'de> Visitor<'de> for EntryVisitor<'_> {
    type Value = Entry;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a metadata object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Entry, A::Error> {
        let ctx = self.ctx;
        let mut e = Entry::default();
        while let Some(field) = map.next_key_seed(FieldSeed)? {
            match field {
                Field::RatingKey => e.rating_key = value(&mut map, ctx, field, SHORT)?,
                Field::Key => e.key = value(&mut map, ctx, field, SHORT)?,
                Field::Title => e.title = value(&mut map, ctx, field, SHORT)?,
                Field::Type => e.kind = value(&mut map, ctx, field, STR)?,
                Field::Year => e.year = value(&mut map, ctx, field, NumSeed::new())?,
                Field::UpdatedAt => e.updated_at = value(&mut map, ctx, field, NumSeed::new())?,
                Field::LibrarySectionId => {
                    e.library_section_id = value(&mut map, ctx, field, NumSeed::new())?;
                }
                Field::Uuid if self.mode == Mode::Sections => {
                    e.uuid = value(&mut map, ctx, field, STR)?;
                }
                Field::Media if self.mode == Mode::Items => {
                    let mut each = MediaEach {
                        files: &mut e.files,
                        ctx,
                    };
                    value(
                        &mut map,
                        ctx,
                        field,
                        OneOrMany {
                            each: &mut each,
                            ctx,
                        },
                    )?;
                }
                Field::Location => {
                    let mut each = PathEach {
                        out: &mut e.locations,
                        field: Field::Path,
                        ctx,
                    };
                    value(
                        &mut map,
                        ctx,
                        field,
                        OneOrMany {
                            each: &mut each,
                            ctx,
                        },
                    )?;
                }
                _ => skip(&mut map)?,
            }
        }
        Ok(e)
    }
}

struct MediaEach<'a> {
    files: &'a mut Vec<String>,
    ctx: &'a Ctx,
}

impl<'de> Each<'de> for MediaEach<'_> {
    fn one<D: Deserializer<'de>>(&mut self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(MediaVisitor {
            files: &mut *self.files,
            ctx: self.ctx,
        })
    }
}

struct MediaVisitor<'a> {
    files: &'a mut Vec<String>,
    ctx: &'a Ctx,
}

impl<'de> Visitor<'de> for MediaVisitor<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a Media object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let ctx = self.ctx;
        while let Some(field) = map.next_key_seed(FieldSeed)? {
            match field {
                Field::Part => {
                    let mut each = PathEach {
                        out: &mut *self.files,
                        field: Field::File,
                        ctx,
                    };
                    value(
                        &mut map,
                        ctx,
                        field,
                        OneOrMany {
                            each: &mut each,
                            ctx,
                        },
                    )?;
                }
                _ => skip(&mut map)?,
            }
        }
        Ok(())
    }
}

/// A `Part` (keeps its `file`) or a `Location` (keeps its `path`).
struct PathEach<'a> {
    out: &'a mut Vec<String>,
    field: Field,
    ctx: &'a Ctx,
}

impl<'de> Each<'de> for PathEach<'_> {
    fn one<D: Deserializer<'de>>(&mut self, d: D) -> Result<(), D::Error> {
        let found = d.deserialize_map(PathVisitor {
            field: self.field,
            ctx: self.ctx,
        })?;
        if let Some(p) = found {
            self.out.push(p);
        }
        Ok(())
    }
}

struct PathVisitor<'a> {
    field: Field,
    ctx: &'a Ctx,
}

impl<'de> Visitor<'de> for PathVisitor<'_> {
    type Value = Option<String>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field == Field::File {
            f.write_str("a Part object")
        } else {
            f.write_str("a Location object")
        }
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Option<String>, A::Error> {
        let mut found = None;
        while let Some(field) = map.next_key_seed(FieldSeed)? {
            if field == self.field {
                found = value(&mut map, self.ctx, field, STR)?;
            } else {
                skip(&mut map)?;
            }
        }
        Ok(found.filter(|p| !p.is_empty()))
    }
}

// ---------------------------------------------------------------------------------------------
// Drivers
// ---------------------------------------------------------------------------------------------

fn run<'de, R: serde_json::de::Read<'de>>(
    de: &mut serde_json::Deserializer<R>,
    c: &mut Collector,
    ctx: &Ctx,
) -> Result<(), serde_json::Error> {
    de.deserialize_any(Top { c, ctx })?;
    de.end()
}

pub(super) fn extract_slice(bytes: &[u8], mode: Mode) -> Result<Collector, ExtractError> {
    let mut collector = Collector::new(mode);
    let ctx = Ctx::new();
    let mut de = serde_json::Deserializer::from_slice(bytes);
    run(&mut de, &mut collector, &ctx)
        .map_err(|e| convert(e, &ctx).locate_in(bytes))
        .and_then(|()| finish(collector, &ctx, Some(bytes.len() as u64)))
}

pub(super) fn extract_reader<R: BufRead>(reader: R, mode: Mode) -> Result<Collector, ExtractError> {
    let mut collector = Collector::new(mode);
    let ctx = Ctx::new();
    let mut de = serde_json::Deserializer::from_reader(reader);
    run(&mut de, &mut collector, &ctx).map_err(|e| convert(e, &ctx))?;
    finish(collector, &ctx, None)
}

fn finish(c: Collector, ctx: &Ctx, end: Option<u64>) -> Result<Collector, ExtractError> {
    if c.saw_container {
        return Ok(c);
    }
    let keys = ctx.top_keys.borrow();
    let found = match *ctx.top_kind.borrow() {
        Some("an object") if keys.is_empty() => "the top-level object is empty".to_owned(),
        Some("an object") => format!("the top-level object has the keys {keys:?}"),
        Some(other) => format!("the document is {other}"),
        None => "the document is not an object".to_owned(),
    };
    Err(ExtractError::MissingMediaContainer {
        format: Format::Json,
        position: Position {
            offset: end,
            ..Position::default()
        },
        found,
    })
}

/// Turns a `serde_json` error into an [`ExtractError`] with position and path.
fn convert(e: serde_json::Error, ctx: &Ctx) -> ExtractError {
    use serde_json::error::Category;
    let position = Position {
        offset: None,
        line: Some(e.line() as u64),
        column: Some(e.column() as u64),
    };
    let full = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    let message = full.strip_suffix(&suffix).unwrap_or(&full).to_owned();
    let path = ctx.path_string();
    match e.classify() {
        Category::Io => ExtractError::Io(e.into()),
        Category::Eof => ExtractError::Truncated {
            format: Format::Json,
            position,
            path,
            message,
        },
        Category::Syntax => ExtractError::Syntax {
            format: Format::Json,
            position,
            path,
            message,
        },
        Category::Data => ExtractError::Invalid {
            format: Format::Json,
            position,
            path,
            message,
        },
    }
}
