//! Python objects to and from [`PlexItem`]s.
//!
//! Items come in as dicts (`key` and `title` required; `rating_key`, `file_paths`, `kind`,
//! `year`, `updated_at`, `library_section_id` optional; any other key is an error) or as
//! python-plexapi objects, which `plexcache._extract.extract_item_data` turns into such
//! dicts. Items go out as dicts of `key`, `rating_key`, `title` and `file_paths`, plus the
//! other fields when `full` is asked for.

use std::borrow::Cow;

use plexcache_plex::{LibraryView, PlexItem, PlexItemRef};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyDict, PyInt, PyList, PyString, PyTuple};

use crate::errors::{Kind, raise};

/// Which fields a dict carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fields {
    /// `key`, `rating_key`, `title`, `file_paths`.
    Essential,
    /// Those plus `kind`, `year`, `updated_at`, `library_section_id`.
    Full,
}

impl Fields {
    pub(crate) fn of(full: bool) -> Self {
        if full {
            Fields::Full
        } else {
            Fields::Essential
        }
    }
}

/// The dict keys, interned once.
struct Names {
    key: Py<PyString>,
    rating_key: Py<PyString>,
    title: Py<PyString>,
    file_paths: Py<PyString>,
    kind: Py<PyString>,
    year: Py<PyString>,
    updated_at: Py<PyString>,
    library_section_id: Py<PyString>,
}

static NAMES: PyOnceLock<Names> = PyOnceLock::new();

fn names(py: Python<'_>) -> &Names {
    NAMES.get_or_init(py, || {
        let n = |s: &str| PyString::intern(py, s).unbind();
        Names {
            key: n("key"),
            rating_key: n("rating_key"),
            title: n("title"),
            file_paths: n("file_paths"),
            kind: n("kind"),
            year: n("year"),
            updated_at: n("updated_at"),
            library_section_id: n("library_section_id"),
        }
    })
}

/// The keys a dict may have, for error messages.
const KNOWN_KEYS: &str =
    "key, title, rating_key, file_paths, kind, year, updated_at, library_section_id";

// `PyUnicode_AsUTF8AndSize` returns the UTF-8 form a str object caches, without a copy. It is
// in the limited API from 3.10 only, but CPython exports it since 3.3, and on unix an extension
// module's symbols are resolved against the running interpreter, so the abi3 (3.9) wheel can
// call it there. Elsewhere the portable, copying conversion is used.
#[cfg(unix)]
unsafe extern "C" {
    fn PyUnicode_AsUTF8AndSize(
        unicode: *mut pyo3::ffi::PyObject,
        size: *mut pyo3::ffi::Py_ssize_t,
    ) -> *const std::os::raw::c_char;
}

/// The text of a Python str; `Err` (the `UnicodeEncodeError`) for lone surrogates.
fn str_of<'a>(s: &'a Bound<'_, PyString>) -> PyResult<Cow<'a, str>> {
    #[cfg(unix)]
    {
        let mut len: pyo3::ffi::Py_ssize_t = 0;
        // SAFETY: `s` is a live str object (the borrow keeps it alive for 'a); the returned
        // buffer is owned by it, holds `len` bytes of valid UTF-8 and lives as long as it.
        unsafe {
            let ptr = PyUnicode_AsUTF8AndSize(s.as_ptr(), &mut len);
            if ptr.is_null() {
                return Err(PyErr::fetch(s.py()));
            }
            let bytes = std::slice::from_raw_parts(ptr.cast::<u8>(), len as usize);
            Ok(Cow::Borrowed(std::str::from_utf8_unchecked(bytes)))
        }
    }
    #[cfg(not(unix))]
    {
        s.to_cow()
    }
}

fn surrogate_message(what: &str) -> String {
    format!(
        "{what} is not valid UTF-8 text (it holds a lone surrogate, as os.listdir and os.fsdecode \
         give for file names that are not UTF-8); Plex sends UTF-8, so such a string can \
         never match: decode the name correctly or skip the file"
    )
}

/// A library name or search title: a str.
pub(crate) fn text<'a>(obj: &'a Bound<'_, PyAny>, what: &str) -> PyResult<Cow<'a, str>> {
    let s = obj.cast::<PyString>().map_err(|_| {
        pyo3::exceptions::PyTypeError::new_err(format!(
            "{what} must be a str, not {}",
            type_name(obj)
        ))
    })?;
    str_of(s).map_err(|_| raise(Kind::Argument, surrogate_message(what)))
}

/// A file path to look up: a str, UTF-8 bytes or an `os.PathLike`.
pub(crate) fn path_text(obj: &Bound<'_, PyAny>) -> PyResult<String> {
    if let Ok(s) = obj.cast::<PyString>() {
        return str_of(s)
            .map(Cow::into_owned)
            .map_err(|_| raise(Kind::Argument, surrogate_message("path")));
    }
    if let Ok(b) = obj.cast::<PyBytes>() {
        return std::str::from_utf8(b.as_bytes())
            .map(str::to_owned)
            .map_err(|_| raise(Kind::Argument, "path (bytes) is not valid UTF-8; Plex sends UTF-8 paths, so it can never match"));
    }
    let os = obj.py().import("os")?;
    let fspath = os.call_method1("fspath", (obj,)).map_err(|_| {
        pyo3::exceptions::PyTypeError::new_err(format!(
            "path must be a str, bytes or os.PathLike, not {}",
            type_name(obj)
        ))
    })?;
    path_text(&fspath)
}

/// A rating key to look up: a str or an int (as python-plexapi holds it).
pub(crate) fn rating_key_text(obj: &Bound<'_, PyAny>) -> PyResult<String> {
    if obj.is_instance_of::<PyInt>() {
        return Ok(obj.str()?.to_string());
    }
    text(obj, "rating key").map(Cow::into_owned)
}

fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "an unknown type".into())
}

fn item_error(at: usize, detail: impl std::fmt::Display) -> PyErr {
    raise(Kind::Item, format!("items[{at}]: {detail}"))
}

/// The name of a field in messages: `title`, or `file_paths[2]`.
#[derive(Clone, Copy)]
struct Field(&'static str, Option<usize>);

impl std::fmt::Display for Field {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.1 {
            Some(i) => write!(f, "{}[{i}]", self.0),
            None => f.write_str(self.0),
        }
    }
}

fn field_int<T: for<'a, 'py> FromPyObject<'a, 'py>>(
    v: &Bound<'_, PyAny>,
    at: usize,
    field: &str,
) -> PyResult<Option<T>> {
    if v.is_none() {
        return Ok(None);
    }
    if !v.is_instance_of::<PyInt>() || v.is_instance_of::<pyo3::types::PyBool>() {
        return Err(item_error(
            at,
            format!("'{field}' must be an int or None, not {}", type_name(v)),
        ));
    }
    v.extract::<T>()
        .map(Some)
        .map_err(|_| item_error(at, format!("'{field}' is out of range: {v}")))
}

/// The `ratingKey` a `key` implies: its last segment (`/library/metadata/22/children` -> `22`).
fn rating_key_of(key: &str) -> &str {
    let k = key.trim_end_matches('/');
    let k = k.strip_suffix("/children").unwrap_or(k);
    k.rsplit('/').next().unwrap_or(k)
}

/// Where one string of an item is: a range of [`PyItems::text`].
type Slot = (usize, usize);

/// The numbers of one item and how many paths it has.
struct Meta {
    paths: u32,
    year: Option<u32>,
    updated_at: Option<i64>,
    library_section_id: Option<u32>,
}

/// Items read from Python objects, every string copied once into one text buffer while its
/// object is at hand (one pass over the objects; the listing is then written from contiguous
/// memory, without the GIL).
pub(crate) struct PyItems {
    text: String,
    /// Per item: `ratingKey`, `key`, title, kind, then its paths (the listing's order).
    slots: Vec<Slot>,
    metas: Vec<Meta>,
}

static EXTRACT: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

impl PyItems {
    /// Reads a list (or any iterable) of dicts or python-plexapi objects.
    pub(crate) fn read(items: &Bound<'_, PyAny>) -> PyResult<Self> {
        if items.is_instance_of::<PyString>() || items.is_instance_of::<PyDict>() {
            return Err(pyo3::exceptions::PyTypeError::new_err(format!(
                "items must be a list of dicts or python-plexapi objects, not a {}",
                type_name(items)
            )));
        }
        let mut out = PyItems {
            text: String::new(),
            slots: Vec::new(),
            metas: Vec::new(),
        };
        if let Ok(list) = items.cast::<PyList>() {
            out.reserve(list.len());
            for (i, obj) in list.iter().enumerate() {
                out.push(&obj, i)?;
            }
            return Ok(out);
        }
        let iter = items.try_iter().map_err(|_| {
            pyo3::exceptions::PyTypeError::new_err(format!(
                "items must be a list of dicts or python-plexapi objects, not {}",
                type_name(items)
            ))
        })?;
        for (i, obj) in iter.enumerate() {
            out.push(&obj?, i)?;
        }
        Ok(out)
    }

    fn reserve(&mut self, n: usize) {
        self.text.reserve(n * 128);
        self.slots.reserve(n * 5);
        self.metas.reserve(n);
    }

    /// One item: a dict, or an object `extract_item_data` understands (python-plexapi's).
    fn push(&mut self, obj: &Bound<'_, PyAny>, at: usize) -> PyResult<()> {
        if let Ok(d) = obj.cast::<PyDict>() {
            return self.push_dict(d, at);
        }
        let py = obj.py();
        let extract = EXTRACT.import(py, "plexcache._extract", "item_dict_for_store")?;
        let d = extract.call1((obj,)).map_err(|e| {
            if e.is_instance_of::<pyo3::exceptions::PyException>(py) {
                item_error(at, e.value(py).to_string())
            } else {
                e
            }
        })?;
        match d.cast::<PyDict>() {
            Ok(d) => self.push_dict(d, at),
            Err(_) => Err(item_error(at, "extraction did not give a dict")),
        }
    }

    /// A str field, copied into the text.
    fn text(&mut self, v: &Bound<'_, PyAny>, at: usize, field: Field) -> PyResult<Slot> {
        let s = v.cast::<PyString>().map_err(|_| {
            item_error(at, format!("'{field}' must be a str, not {}", type_name(v)))
        })?;
        match str_of(s) {
            Ok(text) => Ok(self.own(&text)),
            Err(_) => Err(item_error(at, surrogate_message(&format!("'{field}'")))),
        }
    }

    fn own(&mut self, s: &str) -> Slot {
        let start = self.text.len();
        self.text.push_str(s);
        (start, self.text.len())
    }

    fn push_dict(&mut self, d: &Bound<'_, PyDict>, at: usize) -> PyResult<()> {
        let mut key = None;
        let mut title = None;
        let mut rating_key = None;
        let mut kind: Slot = (0, 0);
        let mut paths = Vec::new();
        let mut year = None;
        let mut updated_at = None;
        let mut library_section_id = None;
        for (k, v) in d.iter() {
            let Ok(ks) = k.cast::<PyString>() else {
                return Err(item_error(
                    at,
                    format!("dict keys must be str, not {}", type_name(&k)),
                ));
            };
            let name = str_of(ks).map_err(|_| item_error(at, "a dict key is not valid text"))?;
            match &*name {
                "key" => key = Some(self.text(&v, at, Field("key", None))?),
                "title" => title = Some(self.text(&v, at, Field("title", None))?),
                "rating_key" => {
                    if v.is_instance_of::<PyInt>() && !v.is_instance_of::<pyo3::types::PyBool>() {
                        let s = v.str()?.to_string();
                        rating_key = Some(self.own(&s));
                    } else if !v.is_none() {
                        rating_key = Some(self.text(&v, at, Field("rating_key", None))?);
                    }
                }
                "file_paths" => paths = self.paths(&v, at)?,
                "kind" => {
                    if !v.is_none() {
                        kind = self.text(&v, at, Field("kind", None))?;
                    }
                }
                "year" => year = field_int::<u32>(&v, at, "year")?,
                "updated_at" => updated_at = field_int::<i64>(&v, at, "updated_at")?,
                "library_section_id" => {
                    library_section_id = field_int::<u32>(&v, at, "library_section_id")?
                }
                other => {
                    return Err(item_error(
                        at,
                        format!("unknown key '{other}' (an item dict may have: {KNOWN_KEYS})"),
                    ));
                }
            }
        }
        let key = key.ok_or_else(|| item_error(at, "missing 'key' (a str)"))?;
        let title = title.ok_or_else(|| item_error(at, "missing 'title' (a str)"))?;
        let rating_key = match rating_key {
            Some(r) => r,
            None => {
                let derived = rating_key_of(self.resolve(key)).to_owned();
                self.own(&derived)
            }
        };
        self.slots.extend([rating_key, key, title, kind]);
        self.slots.extend_from_slice(&paths);
        self.metas.push(Meta {
            paths: paths.len() as u32,
            year,
            updated_at,
            library_section_id,
        });
        Ok(())
    }

    fn paths(&mut self, v: &Bound<'_, PyAny>, at: usize) -> PyResult<Vec<Slot>> {
        if v.is_none() {
            return Ok(Vec::new());
        }
        let field = |i| Field("file_paths", Some(i));
        if let Ok(list) = v.cast::<PyList>() {
            return list
                .iter()
                .enumerate()
                .map(|(i, p)| self.text(&p, at, field(i)))
                .collect();
        }
        if let Ok(tuple) = v.cast::<PyTuple>() {
            return tuple
                .iter()
                .enumerate()
                .map(|(i, p)| self.text(&p, at, field(i)))
                .collect();
        }
        Err(item_error(
            at,
            format!("'file_paths' must be a list of str, not {}", type_name(v)),
        ))
    }

    fn resolve(&self, (start, end): Slot) -> &str {
        // Every slot is a range `own` returned: in bounds, on character boundaries.
        self.text.get(start..end).unwrap_or_default()
    }

    /// Every string, in slot order.
    pub(crate) fn strs(&self) -> Vec<&str> {
        self.slots.iter().map(|s| self.resolve(*s)).collect()
    }

    /// The items, borrowing `strs` (from [`PyItems::strs`]).
    pub(crate) fn refs<'s>(&self, strs: &'s [&'s str]) -> Vec<PlexItemRef<'s>> {
        let mut at = 0usize;
        let mut out = Vec::with_capacity(self.metas.len());
        for m in &self.metas {
            let n = 4 + m.paths as usize;
            let s = strs.get(at..at + n).unwrap_or_default();
            at += n;
            if let [rating_key, key, title, kind_str, file_paths @ ..] = s {
                out.push(PlexItemRef {
                    rating_key,
                    key,
                    title,
                    kind_str,
                    file_paths,
                    year: m.year,
                    updated_at: m.updated_at,
                    library_section_id: m.library_section_id,
                });
            }
        }
        out
    }
}

/// Every item of a list (or any iterable) of dicts or plexapi objects, owned.
pub(crate) fn items_from_py(items: &Bound<'_, PyAny>) -> PyResult<Vec<PlexItem>> {
    let read = PyItems::read(items)?;
    let strs = read.strs();
    Ok(read.refs(&strs).iter().map(|i| i.to_owned()).collect())
}

/// The fields of one item, borrowed from a view or from an owned item.
pub(crate) struct Row<'a> {
    rating_key: &'a str,
    key: &'a str,
    title: &'a str,
    kind: &'a str,
    paths: Paths<'a>,
    year: Option<u32>,
    updated_at: Option<i64>,
    library_section_id: Option<u32>,
}

enum Paths<'a> {
    Borrowed(&'a [&'a str]),
    Owned(&'a [String]),
}

impl<'a> From<&PlexItemRef<'a>> for Row<'a> {
    fn from(i: &PlexItemRef<'a>) -> Self {
        Row {
            rating_key: i.rating_key,
            key: i.key,
            title: i.title,
            kind: i.kind_str,
            paths: Paths::Borrowed(i.file_paths),
            year: i.year,
            updated_at: i.updated_at,
            library_section_id: i.library_section_id,
        }
    }
}

impl<'a> From<&'a PlexItem> for Row<'a> {
    fn from(i: &'a PlexItem) -> Self {
        Row {
            rating_key: &i.rating_key,
            key: &i.key,
            title: &i.title,
            kind: i.kind.as_str(),
            paths: Paths::Owned(&i.file_paths),
            year: i.year,
            updated_at: i.updated_at,
            library_section_id: i.library_section_id,
        }
    }
}

/// One item as a dict.
pub(crate) fn item_to_dict<'py>(
    py: Python<'py>,
    row: &Row<'_>,
    fields: Fields,
) -> PyResult<Bound<'py, PyDict>> {
    let n = names(py);
    let d = PyDict::new(py);
    d.set_item(n.key.bind(py), PyString::new(py, row.key))?;
    d.set_item(n.rating_key.bind(py), PyString::new(py, row.rating_key))?;
    d.set_item(n.title.bind(py), PyString::new(py, row.title))?;
    let paths = match row.paths {
        Paths::Borrowed(p) => PyList::new(py, p.iter().map(|s| PyString::new(py, s)))?,
        Paths::Owned(p) => PyList::new(py, p.iter().map(|s| PyString::new(py, s)))?,
    };
    d.set_item(n.file_paths.bind(py), paths)?;
    if fields == Fields::Full {
        d.set_item(n.kind.bind(py), PyString::new(py, row.kind))?;
        d.set_item(n.year.bind(py), row.year)?;
        d.set_item(n.updated_at.bind(py), row.updated_at)?;
        d.set_item(n.library_section_id.bind(py), row.library_section_id)?;
    }
    Ok(d)
}

/// Every item of a view as a list of dicts.
pub(crate) fn view_to_list<'py>(
    py: Python<'py>,
    view: &LibraryView,
    fields: Fields,
) -> PyResult<Bound<'py, PyList>> {
    let dicts = view
        .iter()
        .map(|i| item_to_dict(py, &(&i).into(), fields))
        .collect::<PyResult<Vec<_>>>()?;
    PyList::new(py, dicts)
}
