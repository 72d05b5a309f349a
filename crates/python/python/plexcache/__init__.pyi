"""Type stubs of the plexcache package."""

import os
from typing import Any, Dict, List, Optional, TypedDict, Union

from ._errors import (
    CacheClosedError as CacheClosedError,
    CacheFileError as CacheFileError,
    CacheFullError as CacheFullError,
    InvalidArgumentError as InvalidArgumentError,
    InvalidItemError as InvalidItemError,
    PlexCacheError as PlexCacheError,
    ValueTooLargeError as ValueTooLargeError,
)
from ._plexcache import Cache, LibraryView as LibraryView

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
    """An item as plexcache returns it: the four essential keys always; ``kind``, ``year``,
    ``updated_at`` and ``library_section_id`` with ``full=True``."""

    kind: str
    year: Optional[int]
    updated_at: Optional[int]
    library_section_id: Optional[int]

DEFAULT_SIZE_LIMIT: int
DEFAULT_TTL: int

def default_cache_dir() -> os.PathLike[str]: ...
def extract_item_data(item: Any, *, full: bool = False) -> Dict[str, Any]: ...

class PlexCache(Cache):
    def __new__(
        cls,
        cache_dir: Optional[Union[str, os.PathLike[str]]] = None,
        size_limit: int = ...,
        ttl: Optional[float] = ...,
        *,
        max_file_bytes: Optional[int] = None,
        memory_tier: bool = True,
    ) -> "PlexCache": ...
    def __init__(
        self,
        cache_dir: Optional[Union[str, os.PathLike[str]]] = None,
        size_limit: int = ...,
        ttl: Optional[float] = ...,
        *,
        max_file_bytes: Optional[int] = None,
        memory_tier: bool = True,
    ) -> None: ...
    def __enter__(self) -> "PlexCache": ...
    @staticmethod
    def extract_item_data(item: Any, *, full: bool = False) -> Dict[str, Any]: ...
