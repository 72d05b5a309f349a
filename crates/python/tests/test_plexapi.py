"""extract_item_data and set_* on python-plexapi objects built offline from saved PMS XML.

The objects are built as plexapi builds them after a request (PlexObject.findItems /
_buildItem) with a stand-in server that records and refuses every request, so a test that
made plexapi reload an object from the network fails.
"""

import os

import pytest

os.environ.setdefault("PLEXAPI_CONFIG_PATH", os.devnull)
plexapi = pytest.importorskip("plexapi")
from plexapi import audio, utils, video  # noqa: E402,F401  (registers the item classes)
from plexapi.base import PlexObject  # noqa: E402

import plexcache  # noqa: E402
from conftest import FIXTURES  # noqa: E402


class OfflineServer(PlexObject):
    key = "/"

    def __init__(self):
        super().__init__(self, None, initpath="/")
        self._baseurl = "offline:"
        self._token = None
        self.requests = []

    def _loadData(self, data):
        pass

    def query(self, key, *args, **kwargs):
        self.requests.append(key)
        raise RuntimeError(f"offline: plexapi tried to request {key}")

    def url(self, key, includeToken=None):
        return f"offline:{key}"


def build(xml_text, initpath):
    server = OfflineServer()
    root = utils.parseXMLString(xml_text)
    # Building an object with missing attributes reads some of them: build without reloads,
    # then arm every object as a user's would be.
    os.environ["PLEXAPI_PLEXAPI_AUTORELOAD"] = "false"
    try:
        items = [server._buildItemOrNone(elem, None, initpath) for elem in root]
    finally:
        del os.environ["PLEXAPI_PLEXAPI_AUTORELOAD"]
    items = [i for i in items if i is not None]
    assert server.requests == []
    for item in items:
        item._autoReload = True  # what a user gets by default: a missing attribute reloads
    return server, items


def load(name, initpath):
    return build((FIXTURES / name).read_text(encoding="utf-8"), initpath)


def test_the_offline_trap_works():
    # Reading a missing attribute of a partial object through plexapi makes a request.
    server, items = load("xml/movies_all_page.plexdevices.xml", "/library/sections/2/all")
    movie = items[0]
    assert movie.isPartialObject()
    with pytest.raises(Exception):
        movie.editionTitle  # None in a listing: plexapi reloads
    assert server.requests


@pytest.mark.parametrize("fixture, initpath, cls, kind", [
    ("xml/movies_all_page.plexdevices.xml", "/library/sections/2/all", video.Movie, "movie"),
    ("xml_from_json/season_children_episodes.plex-api-rs.xml", "/library/metadata/89/children",
     video.Episode, "episode"),
    ("xml_from_json/album_children_tracks.plex-api-rs.xml", "/library/metadata/157/children",
     audio.Track, "track"),
    ("xml_from_json/movies_all_multiversion.trimmed.plex-api-spec.xml", "/library/sections/1/all",
     video.Movie, "movie"),
])
def test_extraction_matches_plexapi_and_makes_no_request(fixture, initpath, cls, kind):
    server, items = load(fixture, initpath)
    assert items and all(isinstance(i, cls) for i in items)
    extracted = [plexcache.extract_item_data(i) for i in items]
    full = [plexcache.PlexCache.extract_item_data(i, full=True) for i in items]
    assert server.requests == []
    for item, data, f in zip(items, extracted, full):
        assert set(data) == {"key", "rating_key", "title", "file_paths"}
        assert data["rating_key"] == str(item.ratingKey)
        assert data["key"] == item.key
        assert data["title"] == item.title
        assert data["file_paths"] == [p for p in item.locations if p]
        assert f["kind"] == kind
        loaded = vars(item)  # what plexapi loaded, read without triggering a reload
        assert f["year"] == loaded.get("year")
        updated = loaded.get("updatedAt")
        assert f["updated_at"] == (int(updated.timestamp()) if updated else None)
    assert server.requests == []  # the comparisons above read loaded attributes only


def test_several_versions_and_parts_give_every_path():
    _, items = load("xml_from_json/movies_all_multiversion.trimmed.plex-api-spec.xml",
                    "/library/sections/1/all")
    counts = [len(plexcache.extract_item_data(i)["file_paths"]) for i in items]
    assert max(counts) >= 2


def test_shows_keep_the_key_as_sent_and_have_no_paths_in_a_listing():
    server, items = load("xml_from_json/shows_all.plex-api-rs.xml", "/library/sections/2/all")
    shows = [plexcache.extract_item_data(i, full=True) for i in items]
    assert shows and all(s["kind"] == "show" for s in shows)
    assert all(s["key"].endswith("/children") for s in shows)
    assert all(s["rating_key"] == s["key"].split("/")[-2] for s in shows)
    assert all(s["file_paths"] == [] for s in shows)
    assert server.requests == []


MISSING = """<MediaContainer size="3" librarySectionID="4">
  <Video ratingKey="1" key="/library/metadata/1" type="movie"/>
  <Video type="movie" title="No keys"><Media><Part/><Part file=""/></Media></Video>
  <Video ratingKey="3" key="/library/metadata/3" type="movie" title="Odd" year="20x6"
         updatedAt="" librarySectionID=" 7 "><Media><Part file="/m/odd.mkv"/></Media></Video>
</MediaContainer>"""


def test_missing_attributes_are_none_and_never_raise():
    server, items = build(MISSING, "/library/sections/4/all")
    a, b, c = (plexcache.extract_item_data(i, full=True) for i in items)
    assert a["title"] is None and a["file_paths"] == [] and a["rating_key"] == "1"
    assert b["key"] is None and b["rating_key"] is None and b["file_paths"] == []
    assert c["year"] is None and c["updated_at"] is None and c["library_section_id"] == 7
    assert server.requests == []


def test_set_accepts_plexapi_objects(cache):
    server, movies = load("xml/movies_all_page.plexdevices.xml", "/library/sections/2/all")
    cache.set_library_items("Movies", movies)
    cache.set_search_results("Movies", "Confirmation", movies[:1])
    stored = cache.get_library_items("Movies", full=True)
    assert [s["rating_key"] for s in stored] == [str(m.ratingKey) for m in movies]
    assert stored[0]["kind"] == "movie" and stored[0]["year"] == movies[0].year
    assert cache.get_search_results("Movies", "Confirmation")[0]["title"] == movies[0].title
    path = movies[3].locations[0]
    assert cache.find_by_path("Movies", path)["rating_key"] == str(movies[3].ratingKey)
    assert server.requests == []


def test_an_object_missing_key_or_title_is_refused(cache):
    _, items = build(MISSING, "/library/sections/4/all")
    with pytest.raises(plexcache.InvalidItemError, match=r"items\[0\]: missing 'title'"):
        cache.set_library_items("Movies", items)
    with pytest.raises(plexcache.InvalidItemError, match=r"items\[0\]: missing 'key'"):
        cache.set_library_items("Movies", [items[1]])
    with pytest.raises(plexcache.InvalidItemError, match=r"items\[0\]"):
        cache.set_library_items("Movies", [object()])


def test_plain_objects_and_dicts():
    class Thing:
        def __init__(self):
            self.key = "/library/metadata/5"
            self.title = "Thing"
            self.ratingKey = 5
            self.locations = ["/a.mkv"]

    assert plexcache.extract_item_data(Thing()) == {
        "key": "/library/metadata/5", "rating_key": "5", "title": "Thing",
        "file_paths": ["/a.mkv"]}
    assert plexcache.extract_item_data({"key": "/x/9", "title": "T"}) == {
        "key": "/x/9", "rating_key": "9", "title": "T", "file_paths": []}
    assert plexcache.extract_item_data(42) == {
        "key": None, "rating_key": None, "title": None, "file_paths": []}
