"""Item dicts from python-plexapi objects, reading only what is already loaded.

python-plexapi reloads a partial object from the server when an attribute it lacks is read
(``PlexPartialObject.__getattribute__``). Extraction here never reads attributes through the
object: it reads the XML element the object was built from (``obj._data``, which plexapi
keeps; underscore names never trigger a reload) and, for objects without one, the instance
``__dict__``. So extraction never makes a network request, and never raises on a missing
attribute: what is missing is ``None`` (or an empty list of paths).

The element is read with the rules plexcache's own PMS extraction uses (``docs/plex.md``):
``file_paths`` are the ``file`` of every ``Media/Part`` in order, else the ``path`` of every
``Location``; ``key`` and ``ratingKey`` are taken as the server sent them (plexapi removes
``/children`` from the ``key`` of shows and seasons; plexcache keeps it, so a listing cached by
the ``plexcache`` command and one cached from plexapi objects agree).
"""

from datetime import datetime

__all__ = ["extract_item_data"]

_ESSENTIAL = ("key", "rating_key", "title", "file_paths")
_FULL = _ESSENTIAL + ("kind", "year", "updated_at", "library_section_id")


def _loaded(obj):
    """The attributes an object holds now (its ``__dict__``), without calling any hook."""
    try:
        return vars(obj)
    except TypeError:  # no __dict__ (slots, namedtuple, ...): not a plexapi object
        return _Getattr(obj)


class _Getattr:
    """``dict.get`` over plain attributes, for objects without a ``__dict__``."""

    def __init__(self, obj):
        self._obj = obj

    def get(self, name, default=None):
        return getattr(self._obj, name, default)


def _int(value):
    """An int from an int, a numeric string (spaces ignored), an integral float or a
    datetime (seconds since the epoch); ``None`` for anything else."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, datetime):
        try:
            return int(value.timestamp())
        except (OverflowError, OSError, ValueError):
            return None
    if isinstance(value, float):
        return int(value) if value.is_integer() else None
    if isinstance(value, str):
        text = value.strip()
        try:
            return int(text)
        except ValueError:
            try:
                number = float(text)
            except ValueError:
                return None
            return int(number) if number.is_integer() else None
    return None


def _str(value):
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def _is_element(data):
    return hasattr(data, "attrib") and hasattr(data, "findall")


def _from_element(elem, loaded):
    attrib = elem.attrib
    paths = [
        part.attrib.get("file")
        for media in elem.findall("Media")
        for part in media.findall("Part")
    ]
    paths = [p for p in paths if p]
    if not paths:
        paths = [p for p in (loc.attrib.get("path") for loc in elem.findall("Location")) if p]
    kind = attrib.get("type")
    if kind is None:
        kind = {"Track": "track", "Photo": "photo", "Playlist": "playlist"}.get(elem.tag)
    elif kind == "photo" and elem.tag == "Directory":
        kind = "photoalbum"
    section = _int(attrib.get("librarySectionID"))
    if section is None:
        section = _int(loaded.get("librarySectionID"))
    return {
        "key": attrib.get("key"),
        "rating_key": attrib.get("ratingKey"),
        "title": attrib.get("title"),
        "file_paths": paths,
        "kind": kind,
        "year": _int(attrib.get("year")),
        "updated_at": _int(attrib.get("updatedAt")),
        "library_section_id": section,
    }


def _paths_from_attributes(loaded):
    paths = loaded.get("file_paths")
    if paths is None:
        paths = loaded.get("locations")
    if isinstance(paths, (list, tuple)):
        return [p for p in paths if isinstance(p, str) and p]
    out = []
    for media in loaded.get("media") or ():
        for part in _loaded(media).get("parts") or ():
            f = _loaded(part).get("file")
            if isinstance(f, str) and f:
                out.append(f)
    return out


def _from_attributes(obj, loaded):
    kind = loaded.get("type")
    if kind is None:
        kind = loaded.get("kind")
    if kind is None:
        kind = getattr(type(obj), "TYPE", None)  # a class attribute: no reload
    rating_key = loaded.get("ratingKey")
    if rating_key is None:
        rating_key = loaded.get("rating_key")
    section = loaded.get("librarySectionID")
    if section is None:
        section = loaded.get("library_section_id")
    updated = loaded.get("updatedAt")
    if updated is None:
        updated = loaded.get("updated_at")
    return {
        "key": _str(loaded.get("key")),
        "rating_key": _str(rating_key),
        "title": _str(loaded.get("title")),
        "file_paths": _paths_from_attributes(loaded),
        "kind": kind if isinstance(kind, str) else None,
        "year": _int(loaded.get("year")),
        "updated_at": _int(updated),
        "library_section_id": _int(section),
    }


def extract_item_data(item, *, full=False):
    """The data plexcache keeps of one item, as a dict, from a python-plexapi object (a
    ``Movie``, ``Episode``, ``Track``, ``Show``, ...), any object with such attributes, or a
    dict.

    Returns ``key``, ``rating_key`` (a str, as the server sent it), ``title`` and
    ``file_paths`` (a list of str); with ``full=True`` also ``kind`` (the PMS type string),
    ``year``, ``updated_at`` (seconds since the epoch) and ``library_section_id``.

    Reads only what the object has loaded: never triggers python-plexapi's auto-reload (no
    network request), never raises on a missing attribute (it is ``None``; missing paths are
    ``[]``).
    """
    if isinstance(item, dict):
        data = {
            "key": item.get("key"),
            "rating_key": _str(item.get("rating_key")),
            "title": item.get("title"),
            "file_paths": list(item.get("file_paths") or []),
            "kind": item.get("kind"),
            "year": item.get("year"),
            "updated_at": item.get("updated_at"),
            "library_section_id": item.get("library_section_id"),
        }
    else:
        loaded = _loaded(item)
        elem = loaded.get("_data")
        if _is_element(elem):
            data = _from_element(elem, loaded)
        else:
            data = _from_attributes(item, loaded)
    if data["rating_key"] is None and isinstance(data["key"], str):
        key = data["key"].rstrip("/")
        if key.endswith("/children"):
            key = key[: -len("/children")]
        data["rating_key"] = key.rsplit("/", 1)[-1]
    if full:
        return data
    return {name: data[name] for name in _ESSENTIAL}


def item_dict_for_store(obj):
    """What ``set_*`` stores for a non-dict item: every field, ``None`` ones left out (the
    store then applies its defaults and reports what is missing)."""
    data = extract_item_data(obj, full=True)
    return {k: v for k, v in data.items() if v is not None}
