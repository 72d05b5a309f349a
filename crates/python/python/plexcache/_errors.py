"""The exceptions plexcache raises. Every one derives from :class:`PlexCacheError`."""

__all__ = [
    "PlexCacheError",
    "CacheClosedError",
    "CacheFileError",
    "CacheFullError",
    "ValueTooLargeError",
    "InvalidItemError",
    "InvalidArgumentError",
]


class PlexCacheError(Exception):
    """Base class of every plexcache error (the store failed; the message says how)."""


class CacheClosedError(PlexCacheError):
    """The cache was used after ``close()`` (or after its ``with`` block)."""


class CacheFileError(PlexCacheError):
    """The cache file is damaged, is not a plexcache database (a diskcache directory, another
    program's SQLite file), or was written by a newer plexcache. The message names the path."""


class CacheFullError(PlexCacheError):
    """The disk holding the cache is full (or the file reached ``max_file_bytes``). Nothing of
    the failed write was stored; what was cached before is intact."""


class ValueTooLargeError(PlexCacheError, ValueError):
    """One value (a library listing, a search result) is larger than the whole size limit."""


class InvalidItemError(PlexCacheError, ValueError):
    """An item cannot be stored: a missing ``key`` or ``title``, an unknown dict key, a value
    of the wrong type, text that is not valid UTF-8. The message names the item (``items[3]``)
    and the field. Nothing of the call was stored."""


class InvalidArgumentError(PlexCacheError, ValueError):
    """A library name, title, path or setting that cannot be used (for example a path holding
    lone surrogates, which ``os.listdir`` gives for file names that are not UTF-8)."""
