//! The native part of the `plexcache` Python package (`plexcache._plexcache`).
//!
//! A thin front end over `plexcache-plex` and the default SQLite backend: it converts between
//! Python objects and [`PlexItem`]s and runs the async API on a current-thread tokio runtime
//! owned by each cache object, with the GIL released around every call that touches the
//! store. The Python package (`python/plexcache/`) adds the plexapi extraction helper, the
//! exception classes and the documentation; see `docs/python.md`.

mod convert;
mod errors;
mod view;

use std::mem::ManuallyDrop;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use plexcache_core::Ttl;
use plexcache_plex::{LibraryView, PlexCache};
use plexcache_sqlite::{Offload, SqliteBackend};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use crate::convert::{
    Fields, item_to_dict, items_from_py, listing_from_py, text, view_item_dict, view_to_list,
};
use crate::errors::{Kind, map_error, raise};
use crate::view::PyLibraryView;

/// Held (shared) by every call into the store, taken exclusively around `os.fork()` (see
/// `register_at_fork` in `__init__.py`), so that no thread of this process is inside SQLite
/// or the runtime, holding one of their locks, at the moment of a fork.
static FORK_GUARD: RwLock<()> = RwLock::new(());

/// `os.register_at_fork(before=...)`: waits until no call is in the store, and keeps new ones
/// out until [`after_fork`].
#[pyfunction]
fn before_fork() {
    std::mem::forget(FORK_GUARD.write());
}

/// `os.register_at_fork(after_in_parent=..., after_in_child=...)`.
#[pyfunction]
fn after_fork() {
    if FORK_GUARD.is_locked_exclusive() {
        // SAFETY: `before_fork` left the lock held exclusively (its guard was forgotten) and
        // nothing else takes it exclusively; in the child no other thread exists.
        unsafe { FORK_GUARD.force_unlock_write() };
    }
}

/// How a cache was configured, kept so that a forked child can open it again.
#[derive(Clone)]
struct Config {
    dir: PathBuf,
    size_limit: u64,
    ttl: Option<Duration>,
    max_file_bytes: Option<u64>,
    memory_tier: bool,
}

impl Config {
    /// The TTL of every kind of entry.
    fn ttl(&self) -> Ttl {
        match self.ttl {
            Some(d) => Ttl::After(d),
            None => Ttl::Never,
        }
    }
}

/// An open cache: its runtime and store, valid in the process that opened it.
struct Open {
    pid: u32,
    runtime: ManuallyDrop<tokio::runtime::Runtime>,
    cache: ManuallyDrop<PlexCache<SqliteBackend>>,
}

impl Drop for Open {
    fn drop(&mut self) {
        // Closing connections and stopping the runtime call into SQLite: not during a fork.
        let _guard = FORK_GUARD.read();
        // SAFETY: each field is dropped once, here, and never used again.
        unsafe {
            ManuallyDrop::drop(&mut self.cache);
            ManuallyDrop::drop(&mut self.runtime);
        }
    }
}

impl Open {
    fn new(cfg: &Config) -> plexcache_core::Result<Self> {
        let _guard = FORK_GUARD.read();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .map_err(|e| plexcache_core::Error::io(&cfg.dir, "starting the cache's runtime", e))?;
        // Every call runs on the calling Python thread (with the GIL released): no hop to a
        // thread pool, and no worker threads that a fork would lose.
        let backend = SqliteBackend::builder(&cfg.dir)
            .offload(Offload::Never)
            .max_file_bytes(cfg.max_file_bytes)
            .open()?;
        let ttl = cfg.ttl();
        let cache = PlexCache::builder(backend)
            .size_limit(cfg.size_limit)
            .library_ttl(ttl)
            .search_ttl(ttl)
            .match_ttl(ttl)
            .configure(|b| {
                if cfg.memory_tier {
                    b
                } else {
                    b.no_memory_tier()
                }
            })
            .build()?;
        Ok(Self {
            pid: std::process::id(),
            runtime: ManuallyDrop::new(runtime),
            cache: ManuallyDrop::new(cache),
        })
    }

    /// Runs one async call of the cache to completion on this thread.
    fn run<T>(&self, f: impl AsyncFnOnce(&PlexCache<SqliteBackend>) -> T) -> T {
        let _guard = FORK_GUARD.read();
        self.runtime.block_on(f(&self.cache))
    }
}

enum State {
    Open(Arc<Open>),
    Closed,
}

/// A library in-process: the view and the list built from it, reused while the store holds
/// the same listing (the view is the same `Arc`).
struct Shared {
    view: Arc<LibraryView>,
    full: bool,
    list: Py<PyList>,
}

/// The cache (see `PlexCache` in the Python package for the documentation users read).
#[pyclass(subclass, frozen, module = "plexcache._plexcache", name = "Cache")]
pub struct Cache {
    cfg: Config,
    state: Mutex<State>,
    shared: Mutex<Vec<(String, Shared)>>,
}

impl Cache {
    /// The open cache for this process. After `os.fork()` the child opens the store again
    /// (the parent's runtime and connections are left untouched: they belong to the parent).
    fn open(&self) -> PyResult<Arc<Open>> {
        let mut state = self.state.lock();
        match &*state {
            State::Closed => Err(raise(Kind::Closed, "the cache is closed")),
            State::Open(open) if open.pid == std::process::id() => Ok(Arc::clone(open)),
            State::Open(_) => {
                let fresh = Arc::new(Open::new(&self.cfg).map_err(map_error)?);
                let old = std::mem::replace(&mut *state, State::Open(Arc::clone(&fresh)));
                // The parent's runtime and SQLite connections must not be used or closed here.
                std::mem::forget(old);
                self.shared.lock().clear();
                Ok(fresh)
            }
        }
    }

    fn view(&self, py: Python<'_>, name: &str) -> PyResult<Option<Arc<LibraryView>>> {
        let open = self.open()?;
        py.detach(|| open.run(async |c| c.library_view(name).await))
            .map_err(map_error)
    }
}

impl Drop for Cache {
    fn drop(&mut self) {
        let state = std::mem::replace(&mut *self.state.lock(), State::Closed);
        if let State::Open(open) = state
            && open.pid != std::process::id()
        {
            // Inherited from a parent process: leave its runtime and connections alone.
            std::mem::forget(open);
        }
    }
}

fn ttl_of(ttl: Option<f64>) -> PyResult<Option<Duration>> {
    match ttl {
        None => Ok(None),
        Some(s) if s.is_finite() && s > 0.0 => Duration::try_from_secs_f64(s)
            .map(Some)
            .map_err(|e| raise(Kind::Argument, format!("ttl {s}: {e}"))),
        Some(s) => Err(raise(
            Kind::Argument,
            format!("ttl must be a positive number of seconds or None (never expires), not {s}"),
        )),
    }
}

#[pymethods]
impl Cache {
    #[new]
    #[pyo3(signature = (cache_dir, size_limit = 100 * 1024 * 1024, ttl = Some(3600.0), *, max_file_bytes = None, memory_tier = true))]
    fn new(
        py: Python<'_>,
        cache_dir: PathBuf,
        size_limit: u64,
        ttl: Option<f64>,
        max_file_bytes: Option<u64>,
        memory_tier: bool,
    ) -> PyResult<Self> {
        if size_limit == 0 {
            return Err(raise(Kind::Argument, "size_limit must be at least 1 byte"));
        }
        let cfg = Config {
            dir: cache_dir,
            size_limit,
            ttl: ttl_of(ttl)?,
            max_file_bytes,
            memory_tier,
        };
        let open = py.detach(|| Open::new(&cfg)).map_err(map_error)?;
        Ok(Self {
            cfg,
            state: Mutex::new(State::Open(Arc::new(open))),
            shared: Mutex::new(Vec::new()),
        })
    }

    /// The directory (or database file) the cache was opened on.
    #[getter]
    fn cache_dir(&self) -> PathBuf {
        self.cfg.dir.clone()
    }

    /// The size limit in bytes.
    #[getter]
    fn size_limit(&self) -> u64 {
        self.cfg.size_limit
    }

    /// The TTL in seconds (`None`: entries never expire).
    #[getter]
    fn ttl(&self) -> Option<f64> {
        self.cfg.ttl.map(|d| d.as_secs_f64())
    }

    /// Whether `close()` was called.
    #[getter]
    fn closed(&self) -> bool {
        matches!(*self.state.lock(), State::Closed)
    }

    /// Writes pending statistics and closes the store. Later calls raise `CacheClosedError`;
    /// closing twice is allowed.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        self.shared.lock().clear();
        let state = std::mem::replace(&mut *self.state.lock(), State::Closed);
        let State::Open(open) = state else {
            return Ok(());
        };
        if open.pid != std::process::id() {
            std::mem::forget(open);
            return Ok(());
        }
        py.detach(move || {
            let flushed = open.run(async |c| c.flush().await);
            drop(open);
            flushed
        })
        .map_err(map_error)
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, py: Python<'_>, _args: &Bound<'_, pyo3::types::PyTuple>) -> PyResult<bool> {
        self.close(py)?;
        Ok(false)
    }

    /// Every item of a library as a list of dicts, or `None` when it is not cached (or has
    /// expired).
    #[pyo3(signature = (name, *, full = false, shared = false))]
    fn get_library_items<'py>(
        &self,
        py: Python<'py>,
        name: &Bound<'py, PyAny>,
        full: bool,
        shared: bool,
    ) -> PyResult<Option<Bound<'py, PyList>>> {
        let name = text(name, "library name")?;
        let Some(view) = self.view(py, &name)? else {
            self.shared.lock().retain(|(n, _)| *n != *name);
            return Ok(None);
        };
        if !shared {
            return view_to_list(py, &view, Fields::of(full)).map(Some);
        }
        {
            let cached = self.shared.lock();
            if let Some((_, s)) = cached.iter().find(|(n, _)| *n == *name)
                && Arc::ptr_eq(&s.view, &view)
                && s.full == full
            {
                return Ok(Some(s.list.bind(py).clone()));
            }
        }
        let list = view_to_list(py, &view, Fields::of(full))?;
        let mut cached = self.shared.lock();
        cached.retain(|(n, _)| *n != *name);
        cached.push((
            name.into_owned(),
            Shared {
                view,
                full,
                list: list.clone().unbind(),
            },
        ));
        Ok(Some(list))
    }

    /// Stores every item of a library (dicts or python-plexapi objects), replacing what was
    /// cached for it.
    fn set_library_items(
        &self,
        py: Python<'_>,
        name: &Bound<'_, PyAny>,
        items: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let name = text(name, "library name")?;
        let listing = listing_from_py(items)?;
        let key = plexcache_plex::keys::library_key(&name);
        let ttl = self.cfg.ttl();
        let open = self.open()?;
        py.detach(|| open.run(async |c| c.cache().set_borrowed(&key, &listing, ttl).await))
            .map_err(map_error)
    }

    /// The cached results of a title search, or `None`.
    #[pyo3(signature = (name, title, *, full = false))]
    fn get_search_results<'py>(
        &self,
        py: Python<'py>,
        name: &Bound<'py, PyAny>,
        title: &Bound<'py, PyAny>,
        full: bool,
    ) -> PyResult<Option<Bound<'py, PyList>>> {
        let name = text(name, "library name")?;
        let title = text(title, "search title")?;
        let open = self.open()?;
        let found = py
            .detach(|| open.run(async |c| c.search(&name, &title).await))
            .map_err(map_error)?;
        let Some(items) = found else {
            return Ok(None);
        };
        let fields = Fields::of(full);
        let list = PyList::empty(py);
        for item in &items {
            list.append(item_to_dict(py, &item.into(), fields)?)?;
        }
        Ok(Some(list))
    }

    /// Stores the results of a title search (dicts or python-plexapi objects).
    fn set_search_results(
        &self,
        py: Python<'_>,
        name: &Bound<'_, PyAny>,
        title: &Bound<'_, PyAny>,
        items: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let name = text(name, "library name")?;
        let title = text(title, "search title")?;
        let items = items_from_py(items)?;
        let open = self.open()?;
        py.detach(|| open.run(async |c| c.set_search(&name, &title, &items).await))
            .map_err(map_error)
    }

    /// A read-only, lazy view of a cached library, or `None`.
    fn library(&self, py: Python<'_>, name: &Bound<'_, PyAny>) -> PyResult<Option<PyLibraryView>> {
        let name = text(name, "library name")?;
        Ok(self.view(py, &name)?.map(PyLibraryView::new))
    }

    /// The item of a cached library that has `path` among its file paths, or `None`.
    #[pyo3(signature = (name, path, *, full = false))]
    fn find_by_path<'py>(
        &self,
        py: Python<'py>,
        name: &Bound<'py, PyAny>,
        path: &Bound<'py, PyAny>,
        full: bool,
    ) -> PyResult<Option<Bound<'py, PyDict>>> {
        let name = text(name, "library name")?;
        let path = convert::path_text(path)?;
        let Some(view) = self.view(py, &name)? else {
            return Ok(None);
        };
        match py.detach(|| view.position_by_path(&path)) {
            Some(i) => view_item_dict(py, &view, i, Fields::of(full)),
            None => Ok(None),
        }
    }

    /// The item of a cached library with this rating key, or `None`.
    #[pyo3(signature = (name, rating_key, *, full = false))]
    fn find_by_rating_key<'py>(
        &self,
        py: Python<'py>,
        name: &Bound<'py, PyAny>,
        rating_key: &Bound<'py, PyAny>,
        full: bool,
    ) -> PyResult<Option<Bound<'py, PyDict>>> {
        let name = text(name, "library name")?;
        let rating_key = convert::rating_key_text(rating_key)?;
        let Some(view) = self.view(py, &name)? else {
            return Ok(None);
        };
        match py.detach(|| view.position_by_rating_key(&rating_key)) {
            Some(i) => view_item_dict(py, &view, i, Fields::of(full)),
            None => Ok(None),
        }
    }

    /// Drops the listing and search results of one library; returns how many entries went.
    fn invalidate_library(&self, py: Python<'_>, name: &Bound<'_, PyAny>) -> PyResult<u64> {
        let name = text(name, "library name")?;
        let open = self.open()?;
        py.detach(|| open.run(async |c| c.invalidate_library(&name).await))
            .map_err(map_error)
    }

    /// Removes every entry; returns how many.
    fn clear(&self, py: Python<'_>) -> PyResult<u64> {
        self.shared.lock().clear();
        let open = self.open()?;
        py.detach(|| open.run(async |c| c.cache().clear().await))
            .map_err(map_error)
    }

    /// Purges expired entries; returns how many.
    fn expire(&self, py: Python<'_>) -> PyResult<u64> {
        let open = self.open()?;
        py.detach(|| open.run(async |c| c.expire().await))
            .map_err(map_error)
    }

    /// Writes pending statistics counters to the store.
    fn flush(&self, py: Python<'_>) -> PyResult<()> {
        let open = self.open()?;
        py.detach(|| open.run(async |c| c.flush().await))
            .map_err(map_error)
    }

    /// Hit and miss counters of this object, the store's counters and usage.
    fn get_stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let open = self.open()?;
        let stats = py
            .detach(|| open.run(async |c| c.stats().await))
            .map_err(map_error)?;
        let s = &stats.session;
        let d = PyDict::new(py);
        d.set_item("hits", s.hits)?;
        d.set_item("misses", s.misses)?;
        let lookups = s.hits + s.misses;
        d.set_item(
            "hit_rate",
            if lookups == 0 {
                0.0
            } else {
                s.hits as f64 / lookups as f64
            },
        )?;
        d.set_item("sets", s.sets)?;
        d.set_item("removes", s.removes)?;
        d.set_item("evictions", s.evictions)?;
        d.set_item("expirations", s.expirations)?;
        d.set_item("decode_failures", s.decode_failures)?;
        d.set_item("count", stats.usage.entries)?;
        d.set_item("size", stats.usage.bytes)?;
        d.set_item("size_limit", stats.size_limit)?;
        d.set_item("disk_bytes", stats.disk_bytes)?;
        d.set_item("backend", &stats.backend)?;
        d.set_item("eviction_policy", stats.eviction_policy.as_str())?;
        d.set_item("cache_dir", self.cfg.dir.clone())?;
        let p = PyDict::new(py);
        for (k, v) in stats.persistent.fields() {
            p.set_item(k, v)?;
        }
        d.set_item("store", p)?;
        Ok(d)
    }

    fn __repr__(&self) -> String {
        format!(
            "PlexCache(cache_dir={:?}, size_limit={}, ttl={})",
            self.cfg.dir,
            self.cfg.size_limit,
            match self.cfg.ttl {
                Some(d) => d.as_secs_f64().to_string(),
                None => "None".into(),
            }
        )
    }
}

/// The default cache directory, `<platform data dir>/plexcache/cache/`, created 0700.
#[pyfunction]
fn default_cache_dir() -> PyResult<PathBuf> {
    plexcache_plex::default_cache_dir().map_err(map_error)
}

/// The native module.
#[pymodule]
fn _plexcache(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Cache>()?;
    m.add_class::<PyLibraryView>()?;
    m.add_function(wrap_pyfunction!(default_cache_dir, m)?)?;
    m.add_function(wrap_pyfunction!(before_fork, m)?)?;
    m.add_function(wrap_pyfunction!(after_fork, m)?)?;
    m.add("SQLITE_FILE_NAME", plexcache_sqlite::DEFAULT_FILE_NAME)?;
    Ok(())
}
