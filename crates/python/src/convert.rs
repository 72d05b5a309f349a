//! Python objects to and from [`PlexItem`]s.
//!
//! Items come in as dicts (`key` and `title` required; `rating_key`, `file_paths`, `kind`,
//! `year`, `updated_at`, `library_section_id` optional; any other key is an error) or as
//! python-plexapi objects, which `plexcache._extract.extract_item_data` turns into such
//! dicts. Items go out as dicts of `key`, `rating_key`, `title` and `file_paths`, plus the
//! other fields when `full` is asked for.

use std::borrow::Cow;

use plexcache_plex::{LibraryView, PlexItem, PlexItemRef};
use pyo3::Borrowed;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyDict, PyInt, PyList, PyString};

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
    /// The paths of the item being read (reused from item to item).
    paths: Vec<Slot>,
}

static EXTRACT: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// The fields of an item dict.
#[derive(Clone, Copy)]
enum Key {
    Key,
    Title,
    RatingKey,
    FilePaths,
    Kind,
    Year,
    UpdatedAt,
    Section,
}

impl Key {
    /// A dict key by identity with the interned names (string literals in Python code are
    /// interned, so this is the usual case); `None` when it is another object.
    #[inline]
    fn by_identity(n: &Names, k: *mut pyo3::ffi::PyObject) -> Option<Key> {
        [
            (&n.key, Key::Key),
            (&n.title, Key::Title),
            (&n.rating_key, Key::RatingKey),
            (&n.file_paths, Key::FilePaths),
            (&n.kind, Key::Kind),
            (&n.year, Key::Year),
            (&n.updated_at, Key::UpdatedAt),
            (&n.library_section_id, Key::Section),
        ]
        .into_iter()
        .find(|(name, _)| name.as_ptr() == k)
        .map(|(_, key)| key)
    }

    fn by_name(name: &str) -> Option<Key> {
        Some(match name {
            "key" => Key::Key,
            "title" => Key::Title,
            "rating_key" => Key::RatingKey,
            "file_paths" => Key::FilePaths,
            "kind" => Key::Kind,
            "year" => Key::Year,
            "updated_at" => Key::UpdatedAt,
            "library_section_id" => Key::Section,
            _ => return None,
        })
    }
}

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
            paths: Vec::new(),
        };
        if let Ok(list) = items.cast::<PyList>() {
            out.reserve(list.len());
            let mut i = 0;
            // The length is read again each time: extracting a non-dict item runs Python
            // code, which may change the list.
            while i < list.len() {
                // SAFETY: `list` is a live list and `i` is below its current length, so the
                // item is a valid borrowed reference. It is used before any Python code runs
                // (reading a dict runs none), or turned into an owned reference first.
                let obj = unsafe {
                    let ptr = pyo3::ffi::PyList_GetItem(list.as_ptr(), i as pyo3::ffi::Py_ssize_t);
                    if ptr.is_null() {
                        return Err(PyErr::fetch(items.py()));
                    }
                    Borrowed::from_ptr(items.py(), ptr)
                };
                out.push(&obj, i)?;
                i += 1;
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
        // SAFETY: `obj` is a live object (borrowed for this call).
        if unsafe { pyo3::ffi::PyDict_CheckExact(obj.as_ptr()) } != 0 {
            // SAFETY: checked to be a dict just above.
            return self.push_dict(unsafe { obj.cast_unchecked::<PyDict>() }, at);
        }
        if let Ok(d) = obj.cast::<PyDict>() {
            return self.push_dict(d, at);
        }
        let obj = obj.clone(); // owned: the extraction runs Python code
        let py = obj.py();
        let extract = EXTRACT.import(py, "plexcache._extract", "item_dict_for_store")?;
        let d = extract.call1((&obj,)).map_err(|e| {
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
    #[inline]
    fn text(&mut self, v: &Bound<'_, PyAny>, at: usize, field: Field) -> PyResult<Slot> {
        // SAFETY: `v` is a live object; an exact str needs no subclass check.
        let s = if unsafe { pyo3::ffi::PyUnicode_CheckExact(v.as_ptr()) } != 0 {
            // SAFETY: checked to be a str just above.
            unsafe { v.cast_unchecked::<PyString>() }
        } else {
            v.cast::<PyString>().map_err(|_| {
                item_error(at, format!("'{field}' must be a str, not {}", type_name(v)))
            })?
        };
        match str_of(s) {
            Ok(text) => Ok(self.own(&text)),
            Err(_) => Err(item_error(at, surrogate_message(&format!("'{field}'")))),
        }
    }

    #[inline]
    fn own(&mut self, s: &str) -> Slot {
        let start = self.text.len();
        self.text.push_str(s);
        (start, self.text.len())
    }

    /// One item dict. Its entries are read with `PyDict_Next` as borrowed references: nothing
    /// here runs Python code while one is in use (an int `rating_key` is turned into its
    /// text through an owned reference).
    fn push_dict(&mut self, d: &Bound<'_, PyDict>, at: usize) -> PyResult<()> {
        let py = d.py();
        let n = names(py);
        let mut key = None;
        let mut title = None;
        let mut rating_key = None;
        let mut kind: Slot = (0, 0);
        let mut year = None;
        let mut updated_at = None;
        let mut library_section_id = None;
        self.paths.clear();
        let mut pos: pyo3::ffi::Py_ssize_t = 0;
        let mut k: *mut pyo3::ffi::PyObject = std::ptr::null_mut();
        let mut v: *mut pyo3::ffi::PyObject = std::ptr::null_mut();
        // SAFETY: `d` is a live dict; `PyDict_Next` hands out borrowed references to its keys
        // and values, valid until the dict changes, which only Python code could do.
        while unsafe { pyo3::ffi::PyDict_Next(d.as_ptr(), &mut pos, &mut k, &mut v) } != 0 {
            // SAFETY: non-null borrowed references from `PyDict_Next`, used before any Python
            // code runs.
            let (k, v) = unsafe { (Borrowed::from_ptr(py, k), Borrowed::from_ptr(py, v)) };
            let field = match Key::by_identity(n, k.as_ptr()) {
                Some(f) => f,
                None => {
                    let Ok(ks) = k.cast::<PyString>() else {
                        return Err(item_error(
                            at,
                            format!("dict keys must be str, not {}", type_name(&k)),
                        ));
                    };
                    let name =
                        str_of(&ks).map_err(|_| item_error(at, "a dict key is not valid text"))?;
                    Key::by_name(&name).ok_or_else(|| {
                        item_error(
                            at,
                            format!("unknown key '{name}' (an item dict may have: {KNOWN_KEYS})"),
                        )
                    })?
                }
            };
            match field {
                Key::Key => key = Some(self.text(&v, at, Field("key", None))?),
                Key::Title => title = Some(self.text(&v, at, Field("title", None))?),
                Key::RatingKey => {
                    if v.is_instance_of::<PyInt>() && !v.is_instance_of::<pyo3::types::PyBool>() {
                        let s = v.to_owned().str()?;
                        rating_key = Some(self.own(&s.to_cow()?));
                    } else if !v.is_none() {
                        rating_key = Some(self.text(&v, at, Field("rating_key", None))?);
                    }
                }
                Key::FilePaths => self.paths(&v, at)?,
                Key::Kind => {
                    if !v.is_none() {
                        kind = self.text(&v, at, Field("kind", None))?;
                    }
                }
                Key::Year => year = field_int::<u32>(&v, at, "year")?,
                Key::UpdatedAt => updated_at = field_int::<i64>(&v, at, "updated_at")?,
                Key::Section => {
                    library_section_id = field_int::<u32>(&v, at, "library_section_id")?
                }
            }
        }
        let key = key.ok_or_else(|| item_error(at, "missing 'key' (a str)"))?;
        let title = title.ok_or_else(|| item_error(at, "missing 'title' (a str)"))?;
        let rating_key = match rating_key {
            Some(r) => r,
            None => {
                // A part of the key's text: its range, without a copy.
                let derived = rating_key_of(self.resolve(key));
                match (derived.as_ptr() as usize).checked_sub(self.text.as_ptr() as usize) {
                    Some(start) => (start, start + derived.len()),
                    None => (0, 0),
                }
            }
        };
        self.slots.extend([rating_key, key, title, kind]);
        self.slots.extend_from_slice(&self.paths);
        self.metas.push(Meta {
            paths: self.paths.len() as u32,
            year,
            updated_at,
            library_section_id,
        });
        Ok(())
    }

    /// The `file_paths` of an item, into `self.paths`.
    fn paths(&mut self, v: &Bound<'_, PyAny>, at: usize) -> PyResult<()> {
        self.paths.clear();
        if v.is_none() {
            return Ok(());
        }
        let field = |i| Field("file_paths", Some(i));
        // SAFETY: `v` is a live object.
        let (is_list, is_tuple) = unsafe {
            (
                pyo3::ffi::PyList_Check(v.as_ptr()) != 0,
                pyo3::ffi::PyTuple_Check(v.as_ptr()) != 0,
            )
        };
        if !is_list && !is_tuple {
            return Err(item_error(
                at,
                format!("'file_paths' must be a list of str, not {}", type_name(v)),
            ));
        }
        // SAFETY: `v` is a live list or tuple (checked above); the size functions read its
        // storage (a subclass's `__len__` is not called).
        let len = unsafe {
            if is_list {
                pyo3::ffi::PyList_Size(v.as_ptr())
            } else {
                pyo3::ffi::PyTuple_Size(v.as_ptr())
            }
        };
        for i in 0..len.max(0) as usize {
            // SAFETY: `v` is a live list or tuple and `i` is below its length, which cannot
            // change meanwhile (no Python code runs here): a borrowed reference.
            let p = unsafe {
                let ptr = if is_list {
                    pyo3::ffi::PyList_GetItem(v.as_ptr(), i as pyo3::ffi::Py_ssize_t)
                } else {
                    pyo3::ffi::PyTuple_GetItem(v.as_ptr(), i as pyo3::ffi::Py_ssize_t)
                };
                if ptr.is_null() {
                    return Err(PyErr::fetch(v.py()));
                }
                Borrowed::from_ptr(v.py(), ptr)
            };
            let slot = self.text(&p, at, field(i))?;
            self.paths.push(slot);
        }
        Ok(())
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

/// Item `i` of a view as a dict (`None`: out of range). No table of the view's strings is
/// built: its paths are collected for this call only.
pub(crate) fn view_item_dict<'py>(
    py: Python<'py>,
    view: &LibraryView,
    i: usize,
    fields: Fields,
) -> PyResult<Option<Bound<'py, PyDict>>> {
    view.with_item(i, |item| item_to_dict(py, &item.into(), fields))
        .transpose()
}

/// Every item of a view as a list of dicts.
pub(crate) fn view_to_list<'py>(
    py: Python<'py>,
    view: &LibraryView,
    fields: Fields,
) -> PyResult<Bound<'py, PyList>> {
    let dicts = (0..view.len())
        .filter_map(|i| view_item_dict(py, view, i, fields).transpose())
        .collect::<PyResult<Vec<_>>>()?;
    PyList::new(py, dicts)
}
