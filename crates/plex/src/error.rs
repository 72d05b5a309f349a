//! [`ExtractError`]: what went wrong while extracting a PMS response, and where.

use std::fmt;

/// The two response formats PMS speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Format {
    /// `Accept: application/json`
    Json,
    /// XML, the PMS default.
    Xml,
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Json => "JSON",
            Format::Xml => "XML",
        })
    }
}

/// Where in a response something went wrong.
///
/// `offset` is a byte offset from the start of the input (after a UTF-8 byte-order mark, if
/// any); `line` and `column` are 1-based, the column counted in bytes. Each part is present when
/// it is known: JSON errors always carry line and column (and the offset when extracting from a
/// slice), XML errors always carry the offset (and line and column when extracting from a slice).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Position {
    /// Byte offset from the start of the document.
    pub offset: Option<u64>,
    /// 1-based line number.
    pub line: Option<u64>,
    /// 1-based column, in bytes.
    pub column: Option<u64>,
}

impl Position {
    /// A position known only by its byte offset.
    pub fn at_offset(offset: u64) -> Self {
        Self {
            offset: Some(offset),
            ..Self::default()
        }
    }

    /// Fills in line and column from `offset`, counting newlines in `input`.
    pub(crate) fn with_line_column_from(mut self, input: &[u8]) -> Self {
        if let Some(off) = self.offset {
            let end = usize::try_from(off).unwrap_or(usize::MAX).min(input.len());
            let before = &input[..end];
            let line = before.iter().filter(|&&b| b == b'\n').count() as u64 + 1;
            let line_start = before
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(0, |i| i + 1);
            self.line = Some(line);
            self.column = Some((end - line_start) as u64 + 1);
        }
        self
    }

    /// Fills in the byte offset from line and column (as reported by `serde_json`).
    pub(crate) fn with_offset_from(mut self, input: &[u8]) -> Self {
        if let (Some(line), Some(column)) = (self.line, self.column) {
            let mut line_start = 0usize;
            let mut remaining = line.saturating_sub(1);
            if remaining > 0 {
                for (i, &b) in input.iter().enumerate() {
                    if b == b'\n' {
                        remaining -= 1;
                        if remaining == 0 {
                            line_start = i + 1;
                            break;
                        }
                    }
                }
            }
            // serde_json reports the column of the last byte it consumed (0 before the first).
            let col = usize::try_from(column).unwrap_or(usize::MAX);
            let off = line_start
                .saturating_add(col.saturating_sub(1))
                .min(input.len());
            self.offset = Some(off as u64);
        }
        self
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.column, self.offset) {
            (Some(l), Some(c), Some(o)) => write!(f, "line {l}, column {c} (byte {o})"),
            (Some(l), Some(c), None) => write!(f, "line {l}, column {c}"),
            (_, _, Some(o)) => write!(f, "byte {o}"),
            _ => f.write_str("an unknown position"),
        }
    }
}

/// Why a PMS response could not be extracted. Every variant says what went wrong; those about
/// the document's content also say where ([`Position`], plus the path of the entry being read
/// such as `MediaContainer.Metadata[3].year` or `MediaContainer/Video[3]@year`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExtractError {
    /// The input was empty or only whitespace.
    #[error("empty response: expected a JSON or XML MediaContainer")]
    Empty,
    /// The first non-whitespace byte is neither `{`/`[` (JSON) nor `<` (XML).
    #[error("response is neither JSON nor XML: it starts with {found:?} at byte {offset}")]
    NotJsonOrXml {
        /// Byte offset of the first non-whitespace byte.
        offset: u64,
        /// The first few characters found there (lossy UTF-8).
        found: String,
    },
    /// The document ended before it was complete.
    #[error(
        "truncated {format} response: it ends at {position}{}: {message}",
        in_path(path)
    )]
    Truncated {
        /// JSON or XML.
        format: Format,
        /// Where the input ended.
        position: Position,
        /// The entry being read when it ended.
        path: String,
        /// The parser's description.
        message: String,
    },
    /// The document is not well-formed JSON or XML.
    #[error("malformed {format} at {position}{}: {message}", in_path(path))]
    Syntax {
        /// JSON or XML.
        format: Format,
        /// Where the parser stopped.
        position: Position,
        /// The entry being read.
        path: String,
        /// The parser's description.
        message: String,
    },
    /// The document is well-formed but a value has the wrong type or is out of range (an object
    /// where a list of `Media` belongs, a `year` that is not a number, ...).
    #[error("invalid {format} response at {position}{}: {message}", in_path(path))]
    Invalid {
        /// JSON or XML.
        format: Format,
        /// Where the bad value is.
        position: Position,
        /// The entry and field being read, e.g. `MediaContainer.Metadata[3].year`.
        path: String,
        /// What was wrong.
        message: String,
    },
    /// The document has no `MediaContainer` (JSON: no top-level `MediaContainer` key; XML: the
    /// root element is something else, e.g. an HTML error page).
    #[error(
        "{format} response has no MediaContainer: {found}{}",
        at_position(position)
    )]
    MissingMediaContainer {
        /// JSON or XML.
        format: Format,
        /// Where this was noticed (the root element, or the end of the JSON object).
        position: Position,
        /// What was there instead.
        found: String,
    },
    /// Reading the input failed.
    #[error("I/O error while reading the response: {0}")]
    Io(#[from] std::io::Error),
}

fn at_position(position: &Position) -> String {
    if *position == Position::default() {
        String::new()
    } else {
        format!(", at {position}")
    }
}

fn in_path(path: &str) -> String {
    if path.is_empty() {
        String::new()
    } else {
        format!(" in {path}")
    }
}

impl ExtractError {
    /// The position the error refers to, when it has one.
    pub fn position(&self) -> Option<Position> {
        match self {
            Self::Truncated { position, .. }
            | Self::Syntax { position, .. }
            | Self::Invalid { position, .. }
            | Self::MissingMediaContainer { position, .. } => Some(*position),
            Self::NotJsonOrXml { offset, .. } => Some(Position::at_offset(*offset)),
            Self::Empty | Self::Io(_) => None,
        }
    }

    /// The format of the document, when it was recognised.
    pub fn format(&self) -> Option<Format> {
        match self {
            Self::Truncated { format, .. }
            | Self::Syntax { format, .. }
            | Self::Invalid { format, .. }
            | Self::MissingMediaContainer { format, .. } => Some(*format),
            Self::Empty | Self::NotJsonOrXml { .. } | Self::Io(_) => None,
        }
    }

    /// The path of the entry being read (`MediaContainer.Metadata[3].year`), or `""`.
    pub fn path(&self) -> &str {
        match self {
            Self::Truncated { path, .. }
            | Self::Syntax { path, .. }
            | Self::Invalid { path, .. } => path,
            _ => "",
        }
    }

    /// Adds line and column (XML) or the byte offset (JSON) computed from the whole input.
    pub(crate) fn locate_in(mut self, input: &[u8]) -> Self {
        match &mut self {
            Self::Truncated { position, .. }
            | Self::Syntax { position, .. }
            | Self::Invalid { position, .. }
            | Self::MissingMediaContainer { position, .. } => {
                if position.offset.is_none() {
                    *position = position.with_offset_from(input);
                } else if position.line.is_none() {
                    *position = position.with_line_column_from(input);
                }
            }
            _ => {}
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_column_and_offset_agree() {
        let input = b"{\n  \"a\": 1,\n  \"b\": x\n}";
        let p = Position::at_offset(19).with_line_column_from(input);
        assert_eq!((p.line, p.column), (Some(3), Some(8)));
        let q = Position {
            offset: None,
            line: Some(3),
            column: Some(8),
        }
        .with_offset_from(input);
        assert_eq!(q.offset, Some(19));
        assert_eq!(p.to_string(), "line 3, column 8 (byte 19)");
    }
}
