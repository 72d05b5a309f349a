//! `plexcache.LibraryView`: a read-only sequence over a stored library listing, whose items
//! become dicts only when touched.

use std::sync::Arc;

use plexcache_plex::LibraryView;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PySlice};

use crate::convert::{Fields, path_text, rating_key_text, view_item_dict, view_to_list};

/// A cached library read in place (see the Python package's documentation).
#[pyclass(
    frozen,
    sequence,
    module = "plexcache._plexcache",
    name = "LibraryView"
)]
pub struct PyLibraryView {
    view: Arc<LibraryView>,
}

impl PyLibraryView {
    pub(crate) fn new(view: Arc<LibraryView>) -> Self {
        Self { view }
    }

    fn dict<'py>(&self, py: Python<'py>, i: usize, full: bool) -> PyResult<Bound<'py, PyDict>> {
        view_item_dict(py, &self.view, i, Fields::of(full))?.ok_or_else(|| {
            pyo3::exceptions::PyIndexError::new_err("library view index out of range")
        })
    }
}

#[pymethods]
impl PyLibraryView {
    fn __len__(&self) -> usize {
        self.view.len()
    }

    fn __getitem__<'py>(&self, py: Python<'py>, index: &Bound<'py, PyAny>) -> PyResult<Py<PyAny>> {
        let len = self.view.len();
        if let Ok(slice) = index.cast::<PySlice>() {
            let ind = slice.indices(len as isize)?;
            let list = PyList::empty(py);
            let mut i = ind.start;
            for _ in 0..ind.slicelength {
                list.append(self.dict(py, i as usize, false)?)?;
                i += ind.step;
            }
            return Ok(list.into_any().unbind());
        }
        let i: isize = index.extract().map_err(|_| {
            pyo3::exceptions::PyTypeError::new_err(
                "library view indices must be integers or slices",
            )
        })?;
        let i = if i < 0 { i + len as isize } else { i };
        if i < 0 {
            return Err(pyo3::exceptions::PyIndexError::new_err(
                "library view index out of range",
            ));
        }
        Ok(self.dict(py, i as usize, false)?.into_any().unbind())
    }

    /// Item `index` as a dict (`full=True`: every stored field).
    #[pyo3(signature = (index, *, full = false))]
    fn item<'py>(&self, py: Python<'py>, index: usize, full: bool) -> PyResult<Bound<'py, PyDict>> {
        self.dict(py, index, full)
    }

    fn __iter__(slf: Py<Self>) -> ViewIter {
        ViewIter {
            view: slf,
            next: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// The first item with `path` among its file paths, or `None`. The first lookup indexes
    /// the view; later ones are constant time.
    #[pyo3(signature = (path, *, full = false))]
    fn find_by_path<'py>(
        &self,
        py: Python<'py>,
        path: &Bound<'py, PyAny>,
        full: bool,
    ) -> PyResult<Option<Bound<'py, PyDict>>> {
        let path = path_text(path)?;
        let view = &self.view;
        match py.detach(|| view.position_by_path(&path)) {
            Some(i) => view_item_dict(py, view, i, Fields::of(full)),
            None => Ok(None),
        }
    }

    /// The first item with this rating key (a str or an int), or `None`.
    #[pyo3(signature = (rating_key, *, full = false))]
    fn find_by_rating_key<'py>(
        &self,
        py: Python<'py>,
        rating_key: &Bound<'py, PyAny>,
        full: bool,
    ) -> PyResult<Option<Bound<'py, PyDict>>> {
        let key = rating_key_text(rating_key)?;
        let view = &self.view;
        match py.detach(|| view.position_by_rating_key(&key)) {
            Some(i) => view_item_dict(py, view, i, Fields::of(full)),
            None => Ok(None),
        }
    }

    /// Every item as a list of dicts.
    #[pyo3(signature = (*, full = false))]
    fn to_list<'py>(&self, py: Python<'py>, full: bool) -> PyResult<Bound<'py, PyList>> {
        view_to_list(py, &self.view, Fields::of(full))
    }

    fn __repr__(&self) -> String {
        format!("<plexcache.LibraryView of {} items>", self.view.len())
    }
}

/// Iterator over a [`PyLibraryView`].
#[pyclass(frozen, module = "plexcache._plexcache", name = "LibraryViewIterator")]
pub struct ViewIter {
    view: Py<PyLibraryView>,
    next: std::sync::atomic::AtomicUsize,
}

#[pymethods]
impl ViewIter {
    fn __iter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDict>>> {
        let view = self.view.get();
        let i = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if i >= view.view.len() {
            return Ok(None);
        }
        view.dict(py, i, false).map(Some)
    }
}
