#!/usr/bin/env python3
"""Build python-plexapi objects from saved PMS XML responses, without a server.

For every XML file given, parse it as PlexServer.query does (plexapi.utils.parseXMLString on the
decoded text: xml.etree.ElementTree, and when that fails, again after cleanXMLString has removed
the characters XML forbids) and build plexapi objects the way plexapi does after an HTTP request
(PlexObject.findItems -> _buildItem, with the classes registered by
plexapi.video/audio/photo/library/...), with an offline stand-in for the PlexServer that refuses
every request. Print one JSON object per line:

  items mode (default):
    {"file": F, "ratingKey": "17896" | null, "key": ..., "title": ..., "cls": "Movie",
     "year": 2007 | null, "locations": [...] | null}
  --sections:
    {"file": F, "key": "1", "title": ..., "type": "movie", "uuid": ..., "locations": [...]}

Which entries count, as in plexapi:
- direct children of MediaContainer, built by findItems (unknown element types are skipped,
  as plexapi's _buildItemOrNone does);
- /hubs/search: the items of each <Hub>, as PlexServer.search returns them (hub._partialItems);
- /library/search: plexapi has no support for it (it would build plexapi.media.SearchResult
  objects); like a hub, the children of each <SearchResult> are built with findItems.

`locations` is the object's `locations` property (Part files for videos, tracks and photos;
<Location> paths for shows and artists); null for classes without one (Season, Album,
Photoalbum, ...). An item plexapi builds without a ratingKey is printed with ratingKey null.

Exit status: 0 on success, 3 when plexapi cannot be imported, 1 on any other failure.
"""

import json
import os
import sys
import xml.etree.ElementTree as ET

# Never reload partial objects from a server, never read a user's plexapi config file.
os.environ["PLEXAPI_PLEXAPI_AUTORELOAD"] = "false"
os.environ.setdefault("PLEXAPI_CONFIG_PATH", os.devnull)

try:
    import plexapi
    from plexapi import audio, collection, library, media, photo, playlist, utils, video  # noqa: F401
    from plexapi.base import PlexObject
except Exception as exc:  # pragma: no cover - depends on the machine
    print(f"plexapi is not importable: {exc}", file=sys.stderr)
    sys.exit(3)


class OfflineServer(PlexObject):
    """Stands in for plexapi.server.PlexServer: objects keep a reference to it, but it never
    answers a request (a test that needed the network would fail loudly)."""

    key = "/"

    def __init__(self):
        super().__init__(self, None, initpath="/")
        self._baseurl = "offline:"
        self._token = None

    def _loadData(self, data):
        pass

    def query(self, key, *args, **kwargs):
        raise RuntimeError(f"offline: plexapi tried to request {key}")

    def url(self, key, includeToken=None):
        return f"offline:{key}"


def section_of(elem):
    libcls = {
        "movie": library.MovieSection,
        "show": library.ShowSection,
        "artist": library.MusicSection,
        "photo": library.PhotoSection,
    }
    return libcls.get(elem.attrib.get("type"), library.LibrarySection)


def build_items(server, root, initpath):
    """The items plexapi returns for this response, in document order."""
    items = []
    for elem in root:
        if elem.tag == "Hub":
            hub = server._buildItem(elem, library.Hub, initpath)
            items.extend(hub._partialItems)
        elif elem.tag == "SearchResult":
            items.extend(server.findItems(elem, initpath=initpath))
        else:
            item = server._buildItemOrNone(elem, None, initpath)
            if item is not None:
                items.append(item)
    return items


def locations_of(item):
    if "locations" not in dir(type(item)):
        return None
    return list(item.locations)


def item_record(path, item):
    rating_key = getattr(item, "ratingKey", None)
    year = getattr(item, "year", None)
    return {
        "file": path,
        "ratingKey": None if rating_key is None else str(rating_key),
        "key": getattr(item, "key", None),
        "title": getattr(item, "title", None),
        "cls": type(item).__name__,
        "year": year if isinstance(year, int) else None,
        "locations": locations_of(item),
    }


def section_record(path, section):
    return {
        "file": path,
        "key": None if section.key is None else str(section.key),
        "title": section.title,
        "type": section.type,
        "uuid": section.uuid,
        "locations": list(section.locations),
    }


def main(argv):
    sections_mode = "--sections" in argv
    files = [a for a in argv if a != "--sections"]
    if not files:
        print(__doc__, file=sys.stderr)
        return 2
    server = OfflineServer()
    out = sys.stdout
    for path in files:
        with open(path, "rb") as f:
            root = utils.parseXMLString(f.read().decode("utf-8"))
        if sections_mode:
            key = "/library/sections"
            for elem in root:
                if elem.tag == "Directory":
                    rec = section_record(path, section_of(elem)(server, elem, initpath=key))
                    out.write(json.dumps(rec, ensure_ascii=False) + "\n")
        else:
            for item in build_items(server, root, "/library/sections/1/all"):
                out.write(json.dumps(item_record(path, item), ensure_ascii=False) + "\n")
    out.flush()
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except Exception as exc:
        print(f"plexapi_extract: {type(exc).__name__}: {exc}", file=sys.stderr)
        sys.exit(1)
