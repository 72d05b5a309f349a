//! XML extraction: `quick-xml`'s pull reader, a small state machine over the elements that
//! matter (`MediaContainer`, `Hub`, `SearchResult`, items, `Media`, `Part`, `Location`) and a
//! depth counter that skips every other subtree (tags, streams, `OnDeck`, ...).

use std::fmt::Write as _;
use std::io::BufRead;

use quick_xml::XmlVersion;
use quick_xml::errors::{Error as XmlError, IllFormedError, SyntaxError};
use quick_xml::events::attributes::Attribute;
use quick_xml::events::{BytesStart, Event};
use quick_xml::reader::Reader;

use super::{Collector, Entry, Mode, parse_int, stripped_owned};
use crate::error::{ExtractError, Format, Position};
use crate::item::ItemKind;

/// An element on the path that matters.
#[derive(Clone, Copy, Debug)]
enum Frame {
    Container {
        items: u64,
    },
    Hub {
        index: u64,
        first_item: usize,
        section: Option<u32>,
        items: u64,
    },
    SearchResult {
        index: u64,
        items: u64,
    },
    Item {
        tag: &'static str,
        index: u64,
        media: u64,
    },
    Media {
        index: u64,
        parts: u64,
    },
}

const MC: Option<&str> = Some("MediaContainer");

/// The element names that hold items.
fn item_tag(name: &str) -> Option<&'static str> {
    Some(match name {
        "Video" => "Video",
        "Directory" => "Directory",
        "Track" => "Track",
        "Photo" => "Photo",
        "Playlist" => "Playlist",
        "Metadata" => "Metadata",
        _ => return None,
    })
}

enum Step {
    Continue,
    Done,
}

struct State {
    c: Collector,
    frames: Vec<Frame>,
    /// Depth inside a subtree being skipped (0: not skipping).
    skip: usize,
    /// The item being read, and whether it is a direct child of `MediaContainer`.
    entry: Option<(Entry, bool)>,
    hubs: u64,
    search_results: u64,
    /// `</MediaContainer>` has been read.
    closed: bool,
}

impl State {
    fn new(mode: Mode) -> Self {
        Self {
            c: Collector::new(mode),
            frames: Vec::with_capacity(8),
            skip: 0,
            entry: None,
            hubs: 0,
            search_results: 0,
            closed: false,
        }
    }

    fn on_event(&mut self, ev: Event<'_>, pos: u64) -> Result<Step, ExtractError> {
        if self.closed {
            return self.after_root(&ev, pos);
        }
        match ev {
            Event::Start(e) => self.on_start(&e, false, pos),
            Event::Empty(e) => self.on_start(&e, true, pos),
            Event::End(_) => Ok(self.on_end()),
            Event::Eof => self.on_eof(pos).map(|()| Step::Done),
            // Text, CDATA, comments, declarations, processing instructions, DOCTYPE and entity
            // references in text carry nothing an item needs.
            _ => Ok(Step::Continue),
        }
    }

    /// After `</MediaContainer>` only whitespace, comments and processing instructions may
    /// follow; anything else means the response is not one well-formed document.
    fn after_root(&self, ev: &Event<'_>, pos: u64) -> Result<Step, ExtractError> {
        let found = match ev {
            Event::Eof => return Ok(Step::Done),
            Event::Start(e) | Event::Empty(e) => format!("element <{}>", e.name().as_ref()),
            Event::Text(t) if !t.trim().is_empty() => "text".to_owned(),
            Event::CData(_) | Event::GeneralRef(_) => "text".to_owned(),
            Event::End(e) => format!("end tag </{}>", e.name().as_ref()),
            _ => return Ok(Step::Continue),
        };
        Err(ExtractError::Syntax {
            format: Format::Xml,
            position: Position::at_offset(pos),
            path: String::new(),
            message: format!("{found} after the root element"),
        })
    }

    fn on_start(
        &mut self,
        e: &BytesStart<'_>,
        empty: bool,
        pos: u64,
    ) -> Result<Step, ExtractError> {
        if self.skip > 0 {
            if !empty {
                self.skip += 1;
            }
            return Ok(Step::Continue);
        }
        let name = e.name();
        let name = name.as_ref();
        let mode = self.c.mode;
        match self.frames.last().copied() {
            None => {
                if name != "MediaContainer" {
                    return Err(ExtractError::MissingMediaContainer {
                        format: Format::Xml,
                        position: Position::at_offset(pos),
                        found: format!("the root element is <{}>", name),
                    });
                }
                self.c.saw_container = true;
                self.read_container(e, pos)?;
                if empty {
                    self.closed = true;
                    return Ok(Step::Continue);
                }
                self.frames.push(Frame::Container { items: 0 });
            }
            Some(Frame::Container { .. }) => {
                if let Some(tag) = item_tag(name) {
                    self.start_item(e, tag, empty, pos)?;
                } else if name == "Hub" && mode == Mode::Items {
                    let index = self.hubs;
                    self.hubs += 1;
                    let mut section = None;
                    let label = format!("Hub[{index}]");
                    for attr in e.attributes() {
                        let attr = self.attr(attr, pos, &label, None)?;
                        if attr.key.as_ref() == "librarySectionID" {
                            section = self.number(&attr, pos, Some(&label), "librarySectionID")?;
                        }
                    }
                    if !empty {
                        self.frames.push(Frame::Hub {
                            index,
                            first_item: self.c.items.len(),
                            section,
                            items: 0,
                        });
                    }
                } else if name == "SearchResult" && mode == Mode::Items {
                    let index = self.search_results;
                    self.search_results += 1;
                    if !empty {
                        self.frames.push(Frame::SearchResult { index, items: 0 });
                    }
                } else {
                    self.skip_element(empty);
                }
            }
            Some(Frame::Hub { .. } | Frame::SearchResult { .. }) => {
                if let Some(tag) = item_tag(name) {
                    self.start_item(e, tag, empty, pos)?;
                } else {
                    self.skip_element(empty);
                }
            }
            Some(Frame::Item { media, .. }) => {
                if name == "Media" && mode == Mode::Items {
                    if let Some(Frame::Item { media: m, .. }) = self.frames.last_mut() {
                        *m += 1;
                    }
                    if !empty {
                        self.frames.push(Frame::Media {
                            index: media,
                            parts: 0,
                        });
                    }
                } else if name == "Location" {
                    let path = self.path_attr(e, "path", pos, "Location")?;
                    if let (Some(p), Some((entry, _))) = (path, self.entry.as_mut()) {
                        entry.locations.push(p);
                    }
                    self.skip_element(empty);
                } else {
                    self.skip_element(empty);
                }
            }
            Some(Frame::Media { .. }) => {
                if name == "Part" {
                    let file = self.path_attr(e, "file", pos, "Part")?;
                    if let Some(Frame::Media { parts, .. }) = self.frames.last_mut() {
                        *parts += 1;
                    }
                    if let (Some(f), Some((entry, _))) = (file, self.entry.as_mut()) {
                        entry.files.push(f);
                    }
                }
                self.skip_element(empty);
            }
        }
        Ok(Step::Continue)
    }

    fn skip_element(&mut self, empty: bool) {
        if !empty {
            self.skip = 1;
        }
    }

    fn on_end(&mut self) -> Step {
        if self.skip > 0 {
            self.skip -= 1;
            return Step::Continue;
        }
        match self.frames.pop() {
            Some(Frame::Item { .. }) => {
                if let Some((entry, direct)) = self.entry.take() {
                    self.c.push_entry(entry, direct);
                }
            }
            Some(Frame::Hub {
                first_item,
                section,
                ..
            }) => self.c.copy_down_section(first_item, section),
            Some(Frame::Container { .. }) => self.closed = true,
            Some(Frame::Media { .. } | Frame::SearchResult { .. }) | None => {}
        }
        Step::Continue
    }

    fn on_eof(&mut self, pos: u64) -> Result<(), ExtractError> {
        if !self.c.saw_container {
            return Err(ExtractError::MissingMediaContainer {
                format: Format::Xml,
                position: Position::at_offset(pos),
                found: "the document has no root element".to_owned(),
            });
        }
        let open = self.frames.len() + self.skip;
        Err(ExtractError::Truncated {
            format: Format::Xml,
            position: Position::at_offset(pos),
            path: self.path(None, None),
            message: format!("the document ends with {open} element(s) still open"),
        })
    }

    fn read_container(&mut self, e: &BytesStart<'_>, pos: u64) -> Result<(), ExtractError> {
        for attr in e.attributes() {
            let attr = self.attr(attr, pos, "MediaContainer", None)?;
            match attr.key.as_ref() {
                "size" => self.c.size = self.number(&attr, pos, MC, "size")?,
                "totalSize" => self.c.total_size = self.number(&attr, pos, MC, "totalSize")?,
                "offset" => self.c.offset = self.number(&attr, pos, MC, "offset")?,
                "librarySectionID" => {
                    self.c.library_section_id = self.number(&attr, pos, MC, "librarySectionID")?;
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn start_item(
        &mut self,
        e: &BytesStart<'_>,
        tag: &'static str,
        empty: bool,
        pos: u64,
    ) -> Result<(), ExtractError> {
        let mode = self.c.mode;
        let direct = matches!(self.frames.last(), Some(Frame::Container { .. }));
        let index = match self.frames.last_mut() {
            Some(
                Frame::Container { items }
                | Frame::Hub { items, .. }
                | Frame::SearchResult { items, .. },
            ) => {
                *items += 1;
                *items - 1
            }
            _ => 0,
        };
        // Push the frame first so that errors in attributes name this item.
        self.frames.push(Frame::Item {
            tag,
            index,
            media: 0,
        });
        let mut entry = Entry {
            is_directory_tag: tag == "Directory",
            tag_kind: match tag {
                "Track" => Some(ItemKind::Track),
                "Photo" => Some(ItemKind::Photo),
                "Playlist" => Some(ItemKind::Playlist),
                _ => None,
            },
            ..Entry::default()
        };
        for attr in e.attributes() {
            let attr = self.attr(attr, pos, tag, None)?;
            match attr.key.as_ref() {
                "ratingKey" => entry.rating_key = Some(self.text(&attr, pos, None, "ratingKey")?),
                "key" => entry.key = Some(self.text(&attr, pos, None, "key")?),
                "title" => entry.title = Some(self.text(&attr, pos, None, "title")?),
                "type" => entry.kind = Some(self.text(&attr, pos, None, "type")?),
                "year" => entry.year = self.number(&attr, pos, None, "year")?,
                "updatedAt" => entry.updated_at = self.number(&attr, pos, None, "updatedAt")?,
                "librarySectionID" => {
                    entry.library_section_id = self.number(&attr, pos, None, "librarySectionID")?;
                }
                "uuid" if mode == Mode::Sections => {
                    entry.uuid = Some(self.text(&attr, pos, None, "uuid")?);
                }
                _ => {}
            }
        }
        if empty {
            self.frames.pop();
            self.c.push_entry(entry, direct);
        } else {
            self.entry = Some((entry, direct));
        }
        Ok(())
    }

    /// The value of attribute `want` of a `Part` or `Location` (empty values are dropped).
    fn path_attr(
        &self,
        e: &BytesStart<'_>,
        want: &str,
        pos: u64,
        element: &'static str,
    ) -> Result<Option<String>, ExtractError> {
        let mut found: Option<String> = None;
        for attr in e.attributes() {
            let attr = self.attr(attr, pos, element, None)?;
            if attr.key.as_ref() == want {
                found = Some(self.text(&attr, pos, Some(element), want)?);
            }
        }
        Ok(found.filter(|p| !p.is_empty()))
    }

    fn attr<'a>(
        &self,
        attr: Result<Attribute<'a>, quick_xml::events::attributes::AttrError>,
        pos: u64,
        element: &str,
        name: Option<&str>,
    ) -> Result<Attribute<'a>, ExtractError> {
        attr.map_err(|err| ExtractError::Syntax {
            format: Format::Xml,
            position: Position::at_offset(pos),
            path: self.path(Some(element), name),
            message: format!("malformed attribute: {err}"),
        })
    }

    /// The decoded value of an attribute (entities and character references resolved, the
    /// value normalised as XML 1.0 says), without the characters python-plexapi strips
    /// ([`super::is_stripped`]).
    fn text<T: for<'a> From<&'a str> + From<String>>(
        &self,
        attr: &Attribute<'_>,
        pos: u64,
        element: Option<&str>,
        name: &str,
    ) -> Result<T, ExtractError> {
        attr.normalized_value(XmlVersion::Implicit1_0)
            .map(stripped_owned)
            .map_err(|err| ExtractError::Syntax {
                format: Format::Xml,
                position: Position::at_offset(pos),
                path: self.path(element, Some(name)),
                message: format!("bad attribute value: {err}"),
            })
    }

    fn number<T: TryFrom<i128>>(
        &self,
        attr: &Attribute<'_>,
        pos: u64,
        element: Option<&str>,
        name: &str,
    ) -> Result<Option<T>, ExtractError> {
        let raw: String = self.text(attr, pos, element, name)?;
        parse_int::<T>(&raw).map_err(|message| ExtractError::Invalid {
            format: Format::Xml,
            position: Position::at_offset(pos),
            path: self.path(element, Some(name)),
            message: format!("attribute {name}: {message}"),
        })
    }

    /// `MediaContainer/Hub[1]/Video[0]/Media[1]/Part[0]@file`: the open frames, then `element`
    /// (the element being read, when it has no frame yet), then `@attr`.
    fn path(&self, element: Option<&str>, attr: Option<&str>) -> String {
        let mut s = String::new();
        for f in &self.frames {
            if !s.is_empty() {
                s.push('/');
            }
            let _ = match f {
                Frame::Container { .. } => write!(s, "MediaContainer"),
                Frame::Hub { index, .. } => write!(s, "Hub[{index}]"),
                Frame::SearchResult { index, .. } => write!(s, "SearchResult[{index}]"),
                Frame::Item { tag, index, .. } => write!(s, "{tag}[{index}]"),
                Frame::Media { index, .. } => write!(s, "Media[{index}]"),
            };
        }
        if let Some(el) = element {
            let framed = matches!(self.frames.last(), Some(Frame::Item { tag, .. }) if *tag == el);
            if !framed {
                if !s.is_empty() {
                    s.push('/');
                }
                match (el, self.frames.last()) {
                    ("Part", Some(Frame::Media { parts, .. })) => {
                        let _ = write!(s, "Part[{parts}]");
                    }
                    _ => s.push_str(el),
                }
            }
        }
        if let Some(a) = attr {
            s.push('@');
            s.push_str(a);
        }
        s
    }

    fn reader_error(&self, err: XmlError, pos: u64) -> ExtractError {
        let position = Position::at_offset(pos);
        let path = self.path(None, None);
        match err {
            XmlError::Io(e) => ExtractError::Io(std::io::Error::new(e.kind(), e.to_string())),
            XmlError::Syntax(
                s @ (SyntaxError::UnclosedPI
                | SyntaxError::UnclosedXmlDecl
                | SyntaxError::UnclosedComment
                | SyntaxError::UnclosedDoctype
                | SyntaxError::UnclosedCData
                | SyntaxError::UnclosedTag
                | SyntaxError::UnclosedSingleQuotedAttributeValue
                | SyntaxError::UnclosedDoubleQuotedAttributeValue),
            ) => ExtractError::Truncated {
                format: Format::Xml,
                position,
                path,
                message: s.to_string(),
            },
            XmlError::IllFormed(IllFormedError::MissingEndTag(tag)) => ExtractError::Truncated {
                format: Format::Xml,
                position,
                path,
                message: format!("missing end tag </{tag}>"),
            },
            other => ExtractError::Syntax {
                format: Format::Xml,
                position,
                path,
                message: other.to_string(),
            },
        }
    }

    fn finish(self) -> Collector {
        self.c
    }
}

fn configure<R>(reader: &mut Reader<R>) {
    let config = reader.config_mut();
    config.check_end_names = true;
    config.expand_empty_elements = false;
    config.trim_text(false);
}

pub(super) fn extract_slice(bytes: &[u8], mode: Mode) -> Result<Collector, ExtractError> {
    let mut reader = Reader::from_reader(bytes);
    configure(&mut reader);
    let mut state = State::new(mode);
    loop {
        let pos = reader.buffer_position();
        let step = match reader.read_event() {
            Ok(ev) => state.on_event(ev, pos),
            Err(err) => Err(state.reader_error(err, reader.error_position())),
        };
        match step {
            Ok(Step::Continue) => {}
            Ok(Step::Done) => break,
            Err(e) => return Err(e.locate_in(bytes)),
        }
    }
    Ok(state.finish())
}

pub(super) fn extract_reader<R: BufRead>(reader: R, mode: Mode) -> Result<Collector, ExtractError> {
    let mut reader = Reader::from_reader(reader);
    configure(&mut reader);
    let mut state = State::new(mode);
    let mut buf = Vec::with_capacity(8 * 1024);
    loop {
        buf.clear();
        let pos = reader.buffer_position();
        let step = match reader.read_event_into(&mut buf) {
            Ok(ev) => state.on_event(ev, pos),
            Err(err) => Err(state.reader_error(err, reader.error_position())),
        };
        match step {
            Ok(Step::Continue) => {}
            Ok(Step::Done) => break,
            Err(e) => return Err(e),
        }
    }
    Ok(state.finish())
}
