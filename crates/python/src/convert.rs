//! Python objects to and from [`PlexItem`]s.
//!
//! Items come in as dicts (`key` and `title` required; `rating_key`, `file_paths`, `kind`,
//! `year`, `updated_at`, `library_section_id` optional; any other key is an error) or as
//! python-plexapi objects, which `plexcache._extract.extract_item_data` turns into such
//! dicts. Items go out as dicts of `key`, `rating_key`, `title` and `file_paths`, plus the
//! other fields when `full` is asked for.

use std::borrow::Cow;

use plexcache_plex::{LibraryView, ListingBuilder, PlexItem, PlexItemRef};
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
    // SAFETY: `s` is a live str object, kept alive for 'a by the borrow.
    unsafe { text_at(s.py(), s.as_ptr()) }
}

/// The text of the str object at `ptr`, borrowed from it where the platform allows.
///
/// # Safety
///
/// `ptr` must point to a live str object (or a subclass) that stays alive, and is not
/// changed, for 'a.
unsafe fn text_at<'a>(py: Python<'_>, ptr: *mut pyo3::ffi::PyObject) -> PyResult<Cow<'a, str>> {
    #[cfg(unix)]
    {
        let mut len: pyo3::ffi::Py_ssize_t = 0;
        // SAFETY: the caller guarantees a live str for 'a; the returned buffer is owned by it,
        // holds `len` bytes of valid UTF-8 and lives as long as it (str objects are immutable).
        unsafe {
            let data = PyUnicode_AsUTF8AndSize(ptr, &mut len);
            if data.is_null() {
                return Err(PyErr::fetch(py));
            }
            let bytes = std::slice::from_raw_parts(data.cast::<u8>(), len as usize);
            Ok(Cow::Borrowed(std::str::from_utf8_unchecked(bytes)))
        }
    }
    #[cfg(not(unix))]
    {
        // SAFETY: the caller guarantees a live str object.
        let s = unsafe { Borrowed::from_ptr(py, ptr).cast_unchecked::<PyString>() };
        s.to_cow().map(|c| Cow::Owned(c.into_owned()))
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

/// Where items read from Python go: a listing being built, or owned items.
pub(crate) trait Sink {
    fn reserve(&mut self, items: usize);
    fn push(&mut self, item: &PlexItemRef<'_>);
}

impl Sink for ListingBuilder {
    fn reserve(&mut self, items: usize) {
        if self.is_empty() {
            *self = ListingBuilder::with_capacity(items, items.saturating_mul(128));
        }
    }

    fn push(&mut self, item: &PlexItemRef<'_>) {
        ListingBuilder::push(self, item);
    }
}

impl Sink for Vec<PlexItem> {
    fn reserve(&mut self, items: usize) {
        Vec::reserve(self, items);
    }

    fn push(&mut self, item: &PlexItemRef<'_>) {
        Vec::push(self, item.to_owned());
    }
}

static EXTRACT: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// The fields of an item dict, by their key.
#[derive(Clone, Copy)]
enum Name {
    Key,
    Title,
    RatingKey,
    FilePaths,
    Kind,
    Year,
    UpdatedAt,
    Section,
}

impl Name {
    /// A dict key by identity with the interned names (string literals in Python code are
    /// interned, so this is the usual case); `None` when it is another object.
    #[inline]
    fn by_identity(n: &Names, k: *mut pyo3::ffi::PyObject) -> Option<Name> {
        [
            (&n.key, Name::Key),
            (&n.title, Name::Title),
            (&n.rating_key, Name::RatingKey),
            (&n.file_paths, Name::FilePaths),
            (&n.kind, Name::Kind),
            (&n.year, Name::Year),
            (&n.updated_at, Name::UpdatedAt),
            (&n.library_section_id, Name::Section),
        ]
        .into_iter()
        .find(|(name, _)| name.as_ptr() == k)
        .map(|(_, key)| key)
    }

    fn by_name(name: &str) -> Option<Name> {
        Some(match name {
            "key" => Name::Key,
            "title" => Name::Title,
            "rating_key" => Name::RatingKey,
            "file_paths" => Name::FilePaths,
            "kind" => Name::Kind,
            "year" => Name::Year,
            "updated_at" => Name::UpdatedAt,
            "library_section_id" => Name::Section,
            _ => return None,
        })
    }
}

/// Paths an item usually has at most: held without an allocation while it is read.
const INLINE_PATHS: usize = 8;

/// The paths of one item being read.
struct ItemPaths<'d> {
    inline: [Cow<'d, str>; INLINE_PATHS],
    len: usize,
    more: Vec<Cow<'d, str>>,
}

impl<'d> ItemPaths<'d> {
    fn new() -> Self {
        Self {
            inline: std::array::from_fn(|_| Cow::Borrowed("")),
            len: 0,
            more: Vec::new(),
        }
    }

    fn push(&mut self, p: Cow<'d, str>) {
        if let Some(slot) = self.inline.get_mut(self.len) {
            *slot = p;
        } else {
            self.more.push(p);
        }
        self.len += 1;
    }

    fn clear(&mut self) {
        self.len = 0;
        self.more.clear();
    }

    /// Calls `f` with the paths as `&str`s.
    fn with<R>(&self, f: impl FnOnce(&[&str]) -> R) -> R {
        if self.len <= INLINE_PATHS {
            let strs: [&str; INLINE_PATHS] = std::array::from_fn(|i| &*self.inline[i]);
            f(&strs[..self.len])
        } else {
            let strs: Vec<&str> = self.inline.iter().chain(&self.more).map(|p| &**p).collect();
            f(&strs)
        }
    }
}

/// Reads a list (or any iterable) of dicts or python-plexapi objects into `sink`.
pub(crate) fn read_items<S: Sink>(items: &Bound<'_, PyAny>, sink: &mut S) -> PyResult<()> {
    if items.is_instance_of::<PyString>() || items.is_instance_of::<PyDict>() {
        return Err(pyo3::exceptions::PyTypeError::new_err(format!(
            "items must be a list of dicts or python-plexapi objects, not a {}",
            type_name(items)
        )));
    }
    if let Ok(list) = items.cast::<PyList>() {
        sink.reserve(list.len());
        let mut i = 0;
        // The length is read again each time: extracting a non-dict item runs Python code,
        // which may change the list.
        while i < list.len() {
            // SAFETY: `list` is a live list and `i` is below its current length, so the item
            // is a valid borrowed reference. It is used before any Python code runs (reading
            // a dict runs none), or turned into an owned reference first.
            let obj = unsafe {
                let ptr = pyo3::ffi::PyList_GetItem(list.as_ptr(), i as pyo3::ffi::Py_ssize_t);
                if ptr.is_null() {
                    return Err(PyErr::fetch(items.py()));
                }
                Borrowed::from_ptr(items.py(), ptr)
            };
            push_item(sink, &obj, i)?;
            i += 1;
        }
        return Ok(());
    }
    let iter = items.try_iter().map_err(|_| {
        pyo3::exceptions::PyTypeError::new_err(format!(
            "items must be a list of dicts or python-plexapi objects, not {}",
            type_name(items)
        ))
    })?;
    for (i, obj) in iter.enumerate() {
        push_item(sink, &obj?, i)?;
    }
    Ok(())
}

/// One item: a dict, or an object `extract_item_data` understands (python-plexapi's).
fn push_item<S: Sink>(sink: &mut S, obj: &Bound<'_, PyAny>, at: usize) -> PyResult<()> {
    // SAFETY: `obj` is a live object (borrowed for this call).
    if unsafe { pyo3::ffi::PyDict_CheckExact(obj.as_ptr()) } != 0 {
        // SAFETY: checked to be a dict just above.
        return push_dict(sink, unsafe { obj.cast_unchecked::<PyDict>() }, at);
    }
    if let Ok(d) = obj.cast::<PyDict>() {
        return push_dict(sink, d, at);
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
        Ok(d) => push_dict(sink, d, at),
        Err(_) => Err(item_error(at, "extraction did not give a dict")),
    }
}

/// A str field of an item dict, borrowed from the dict's value for 'd.
///
/// # Safety
///
/// `v` must be a value of a live dict that no code changes for 'd.
#[inline]
unsafe fn str_field<'d>(v: &Bound<'_, PyAny>, at: usize, field: Field) -> PyResult<Cow<'d, str>> {
    // SAFETY: `v` is a live object; an exact str needs no subclass check.
    let is_str = unsafe { pyo3::ffi::PyUnicode_CheckExact(v.as_ptr()) } != 0
        || v.is_instance_of::<PyString>();
    if !is_str {
        return Err(item_error(
            at,
            format!("'{field}' must be a str, not {}", type_name(v)),
        ));
    }
    // SAFETY: a str (checked above) that the caller keeps alive and unchanged for 'd.
    unsafe { text_at(v.py(), v.as_ptr()) }
        .map_err(|_| item_error(at, surrogate_message(&format!("'{field}'"))))
}

/// The text of an int `rating_key`, without running Python code: an int subclass is read as
/// its value, an exact int of any size through `str()`.
fn int_text(v: &Bound<'_, PyAny>, at: usize) -> PyResult<String> {
    // SAFETY: `v` is a live int (or subclass); these read its value without calling methods.
    unsafe {
        if pyo3::ffi::PyLong_CheckExact(v.as_ptr()) != 0 {
            return Ok(v.str()?.to_cow()?.into_owned());
        }
        let n = pyo3::ffi::PyLong_AsLongLong(v.as_ptr());
        if n != -1 || pyo3::ffi::PyErr_Occurred().is_null() {
            return Ok(n.to_string());
        }
        pyo3::ffi::PyErr_Clear();
        let n = pyo3::ffi::PyLong_AsUnsignedLongLong(v.as_ptr());
        if n != u64::MAX || pyo3::ffi::PyErr_Occurred().is_null() {
            return Ok(n.to_string());
        }
        pyo3::ffi::PyErr_Clear();
    }
    Err(item_error(at, format!("'rating_key' is out of range: {v}")))
}

/// One item dict. Its entries are read with `PyDict_Next` as borrowed references and its
/// strings borrowed in place: nothing here runs Python code, so the dict and its values stay
/// as they are until the item is pushed (and copied).
fn push_dict<S: Sink>(sink: &mut S, d: &Bound<'_, PyDict>, at: usize) -> PyResult<()> {
    let py = d.py();
    let n = names(py);
    let mut key: Option<Cow<'_, str>> = None;
    let mut title: Option<Cow<'_, str>> = None;
    let mut rating_key: Option<Cow<'_, str>> = None;
    let mut kind: Cow<'_, str> = Cow::Borrowed("");
    let mut paths = ItemPaths::new();
    let mut year = None;
    let mut updated_at = None;
    let mut library_section_id = None;
    let mut pos: pyo3::ffi::Py_ssize_t = 0;
    let mut k: *mut pyo3::ffi::PyObject = std::ptr::null_mut();
    let mut v: *mut pyo3::ffi::PyObject = std::ptr::null_mut();
    // SAFETY: `d` is a live dict; `PyDict_Next` hands out borrowed references to its keys and
    // values, valid while the dict is unchanged, which only Python code could change.
    while unsafe { pyo3::ffi::PyDict_Next(d.as_ptr(), &mut pos, &mut k, &mut v) } != 0 {
        // SAFETY: non-null borrowed references from `PyDict_Next` (see above).
        let (k, v) = unsafe { (Borrowed::from_ptr(py, k), Borrowed::from_ptr(py, v)) };
        let field = match Name::by_identity(n, k.as_ptr()) {
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
                Name::by_name(&name).ok_or_else(|| {
                    item_error(
                        at,
                        format!("unknown key '{name}' (an item dict may have: {KNOWN_KEYS})"),
                    )
                })?
            }
        };
        // SAFETY: `v` is a value of `d`, which nothing changes while the item is read (see
        // above), so its str stays alive and unchanged until the item is pushed.
        let str_of_v = |f: Field| unsafe { str_field(&v, at, f) };
        match field {
            Name::Key => key = Some(str_of_v(Field("key", None))?),
            Name::Title => title = Some(str_of_v(Field("title", None))?),
            Name::RatingKey => {
                if v.is_instance_of::<PyInt>() && !v.is_instance_of::<pyo3::types::PyBool>() {
                    rating_key = Some(Cow::Owned(int_text(&v, at)?));
                } else if !v.is_none() {
                    rating_key = Some(str_of_v(Field("rating_key", None))?);
                }
            }
            Name::FilePaths => {
                paths.clear();
                read_paths(&v, at, &mut paths)?;
            }
            Name::Kind => {
                if !v.is_none() {
                    kind = str_of_v(Field("kind", None))?;
                }
            }
            Name::Year => year = field_int::<u32>(&v, at, "year")?,
            Name::UpdatedAt => updated_at = field_int::<i64>(&v, at, "updated_at")?,
            Name::Section => library_section_id = field_int::<u32>(&v, at, "library_section_id")?,
        }
    }
    let key = key.ok_or_else(|| item_error(at, "missing 'key' (a str)"))?;
    let title = title.ok_or_else(|| item_error(at, "missing 'title' (a str)"))?;
    let rating_key = match &rating_key {
        Some(r) => r,
        None => rating_key_of(&key),
    };
    paths.with(|file_paths| {
        sink.push(&PlexItemRef {
            rating_key,
            key: &key,
            title: &title,
            kind_str: &kind,
            file_paths,
            year,
            updated_at,
            library_section_id,
        })
    });
    Ok(())
}

/// The `file_paths` of an item dict, borrowed like its other strings (see `push_dict`).
fn read_paths<'d>(v: &Bound<'_, PyAny>, at: usize, out: &mut ItemPaths<'d>) -> PyResult<()> {
    if v.is_none() {
        return Ok(());
    }
    let field = |i| Field("file_paths", Some(i));
    // SAFETY: `v` is a live object.
    let (is_list, is_tuple) = unsafe {
        let p = v.as_ptr();
        let list = pyo3::ffi::PyList_CheckExact(p) != 0 || pyo3::ffi::PyList_Check(p) != 0;
        (list, !list && pyo3::ffi::PyTuple_Check(p) != 0)
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
        // change meanwhile (no Python code runs here): a borrowed reference, whose str (if it
        // is one) lives as long as the item dict is unchanged.
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
        // SAFETY: an item of `v`, a value of the item dict, which nothing changes while the
        // item is read (see `push_dict`).
        out.push(unsafe { str_field(&p, at, field(i)) }?);
    }
    Ok(())
}

/// Every item of a list (or any iterable) of dicts or plexapi objects, owned.
pub(crate) fn items_from_py(items: &Bound<'_, PyAny>) -> PyResult<Vec<PlexItem>> {
    let mut out = Vec::new();
    read_items(items, &mut out)?;
    Ok(out)
}

/// Every item of a list (or any iterable) of dicts or plexapi objects, as a listing.
pub(crate) fn listing_from_py(items: &Bound<'_, PyAny>) -> PyResult<ListingBuilder> {
    let mut out = ListingBuilder::default();
    read_items(items, &mut out)?;
    Ok(out)
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
    let mut dicts = Vec::with_capacity(view.len());
    view.try_for_each(|item| {
        dicts.push(item_to_dict(py, &item.into(), fields)?);
        Ok::<_, PyErr>(())
    })?;
    PyList::new(py, dicts)
}
