"""plexcache: Plex Media Server library data cached on disk, for python-plexapi tools.

The drop-in successor of the diskcache-based ``PlexCache`` class of Python Plex tools: library
listings, search results and file-path lookups by library name, a one hour TTL, a 100 MiB size
limit, hit/miss statistics, stored in one SQLite database (``plexcache.db``) in the cache
directory. The storage and the item conversion are Rust (``plexcache._plexcache``); see
``docs/python.md`` in the plexcache repository for the full reference.

    >>> from plexcache import PlexCache
    >>> with PlexCache("/tmp/my-tool/cache") as cache:            # doctest: +SKIP
    ...     cache.set_library_items("Movies", section.all())      # plexapi objects or dicts
    ...     items = cache.get_library_items("Movies")             # list of dicts, or None
    ...     hit = cache.find_by_path("Movies", "/media/Alien (1979)/Alien.mkv")
"""

import os
from typing import List, Optional, TypedDict

from . import _plexcache
from ._errors import (
    CacheClosedError,
    CacheFileError,
    CacheFullError,
    InvalidArgumentError,
    InvalidItemError,
    PlexCacheError,
    ValueTooLargeError,
)
from ._extract import extract_item_data
from ._plexcache import LibraryView

__all__ = [
    "PlexCache",
    "ItemDict",
    "LibraryView",
    "extract_item_data",
    "default_cache_dir",
    "PlexCacheError",
    "CacheClosedError",
    "CacheFileError",
    "CacheFullError",
    "ValueTooLargeError",
    "InvalidItemError",
    "InvalidArgumentError",
]

class _Essential(TypedDict):
    key: str
    rating_key: str
    title: str
    file_paths: List[str]


class ItemDict(_Essential, total=False):
    """An item as plexcache returns it (for type annotations): the four essential keys
    always; ``kind``, ``year``, ``updated_at`` and ``library_section_id`` with ``full=True``."""

    kind: str
    year: Optional[int]
    updated_at: Optional[int]
    library_section_id: Optional[int]


if hasattr(os, "register_at_fork"):
    # No thread may be inside SQLite (holding its locks) when the process forks.
    os.register_at_fork(before=_plexcache.before_fork,
                        after_in_parent=_plexcache.after_fork,
                        after_in_child=_plexcache.after_fork)

DEFAULT_SIZE_LIMIT = 100 * 1024 * 1024
DEFAULT_TTL = 3600


def default_cache_dir():
    """``<platform data dir>/plexcache/cache`` (``~/.local/share/plexcache/cache`` on Linux),
    created with mode 0700 when missing."""
    return _plexcache.default_cache_dir()


def _check_not_diskcache(cache_dir):
    """Refuse a directory that holds a diskcache store and no plexcache one."""
    path = os.fspath(cache_dir)
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    if os.path.isdir(path):
        ours = os.path.join(path, _plexcache.SQLITE_FILE_NAME)
        theirs = os.path.join(path, "cache.db")
        if os.path.exists(theirs) and not os.path.exists(ours):
            raise CacheFileError(
                f"{path}: this is a diskcache directory (it holds diskcache's cache.db); "
                "plexcache does not read diskcache's pickled values: give plexcache a directory "
                "of its own (the data is fetched again from the server on the first miss)"
            )
    return path


class PlexCache(_plexcache.Cache):
    """Plex library data cached on disk: library listings, search results and lookups by
    file path, with a TTL, a hard size limit and hit/miss statistics.

    ``PlexCache(cache_dir=None, size_limit=100 * 1024 * 1024, ttl=3600)``

    - ``cache_dir``: a directory (created with mode 0700; the database is ``plexcache.db`` in
      it) or a ``.db`` file path. ``None``: :func:`default_cache_dir`. A diskcache directory is
      refused with :class:`CacheFileError`.
    - ``size_limit``: bytes (keys plus stored values); a hard bound, the least recently
      stored entries are evicted to keep it.
    - ``ttl``: seconds (an int or a float) each stored listing or search result stays fresh;
      ``None``: never expires.
    - ``max_file_bytes`` (keyword only): a cap on the database file; a write that would grow
      it past the cap fails with :class:`CacheFullError`, as on a full disk.
    - ``memory_tier`` (keyword only): keep recently read listings decoded in this process
      (checked against the store on every read, so another process's write is seen on the
      next read). ``False``: every read reads and checks the stored bytes.

    One object may be used from several threads (the GIL is released while the store is
    read or written) and by several processes on the same directory. After ``os.fork()`` the
    child reopens the store on its first call. Use it as a context manager, or call
    :meth:`close`.
    """

    def __new__(cls, cache_dir=None, size_limit=DEFAULT_SIZE_LIMIT, ttl=DEFAULT_TTL, *,
                max_file_bytes=None, memory_tier=True):
        if cache_dir is None:
            cache_dir = default_cache_dir()
        else:
            cache_dir = _check_not_diskcache(cache_dir)
        return super().__new__(cls, cache_dir, size_limit, ttl, max_file_bytes=max_file_bytes,
                               memory_tier=memory_tier)

    def __init__(self, cache_dir=None, size_limit=DEFAULT_SIZE_LIMIT, ttl=DEFAULT_TTL, *,
                 max_file_bytes=None, memory_tier=True):
        pass

    extract_item_data = staticmethod(extract_item_data)
