//! Errors as Python exceptions. The classes live in `plexcache/_errors.py` (so they can
//! also derive from `ValueError`); this module raises them with the message of the Rust error
//! and its causes.

use std::error::Error as _;

use plexcache_core::Error;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyType;

/// Which exception class to raise.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Kind {
    /// `PlexCacheError`: anything else that went wrong in the store.
    Base,
    /// `CacheClosedError`: the cache was closed.
    Closed,
    /// `CacheFileError`: the cache file is damaged, foreign or from a newer plexcache.
    File,
    /// `CacheFullError`: the disk (or the file size cap) is full.
    Full,
    /// `ValueTooLargeError`: one value is larger than the size limit.
    TooLarge,
    /// `InvalidItemError`: an item cannot be stored.
    Item,
    /// `InvalidArgumentError`: a name, path or setting that cannot be used.
    Argument,
}

impl Kind {
    fn class_name(self) -> &'static str {
        match self {
            Kind::Base => "PlexCacheError",
            Kind::Closed => "CacheClosedError",
            Kind::File => "CacheFileError",
            Kind::Full => "CacheFullError",
            Kind::TooLarge => "ValueTooLargeError",
            Kind::Item => "InvalidItemError",
            Kind::Argument => "InvalidArgumentError",
        }
    }
}

static CLASSES: [PyOnceLock<Py<PyType>>; 7] = [
    PyOnceLock::new(),
    PyOnceLock::new(),
    PyOnceLock::new(),
    PyOnceLock::new(),
    PyOnceLock::new(),
    PyOnceLock::new(),
    PyOnceLock::new(),
];

/// A `PyErr` of `kind` with `message`.
pub(crate) fn raise(kind: Kind, message: impl Into<String>) -> PyErr {
    let message = message.into();
    Python::attach(|py| {
        match CLASSES[kind as usize].import(py, "plexcache._errors", kind.class_name()) {
            Ok(class) => PyErr::from_type(class.clone(), message),
            // The package is broken (its Python part is missing): still raise something clear.
            Err(e) => pyo3::exceptions::PyRuntimeError::new_err(format!(
                "{message} (and plexcache._errors could not be imported: {e})"
            )),
        }
    })
}

/// The message of an error and of each of its causes, `: `-separated, without repeats.
fn chain(e: &Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

fn is_full(e: &Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>()
            && (io.kind() == std::io::ErrorKind::StorageFull || io.raw_os_error() == Some(28))
        {
            return true;
        }
        // SQLITE_FULL: "database or disk is full" (a full disk, or the file size cap).
        if s.to_string().contains("database or disk is full") {
            return true;
        }
        source = s.source();
    }
    false
}

/// The Python exception for an error of the cache.
pub(crate) fn map_error(e: Error) -> PyErr {
    let kind = match &e {
        Error::Corrupt { .. } | Error::IncompatibleVersion { .. } => Kind::File,
        Error::TooLarge { .. } | Error::BatchTooLarge { .. } => Kind::TooLarge,
        Error::CacheFull { .. } => Kind::Full,
        Error::InvalidKey { .. } => Kind::Argument,
        Error::Config(_) => Kind::Argument,
        _ if is_full(&e) => Kind::Full,
        _ => Kind::Base,
    };
    raise(kind, chain(&e))
}
