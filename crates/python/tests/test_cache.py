"""PlexCache: storage, TTL, size limit, statistics, keys, the lazy view, bad input."""

import os
import stat
import time

import pytest

import plexcache
from plexcache import PlexCache
from conftest import library, movie


def test_creates_the_cache_directory_0700(cache_dir):
    assert not cache_dir.parent.exists()
    with PlexCache(cache_dir):
        pass
    assert stat.S_IMODE(os.stat(cache_dir).st_mode) == 0o700
    assert (cache_dir / "plexcache.db").is_file()


def test_default_cache_dir_is_under_the_platform_data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    with PlexCache() as c:
        assert os.fspath(c.cache_dir) == str(tmp_path / "data" / "plexcache" / "cache")
    assert stat.S_IMODE(os.stat(tmp_path / "data" / "plexcache" / "cache").st_mode) == 0o700


def test_defaults_mirror_the_old_class(cache):
    assert cache.size_limit == 100 * 1024 * 1024
    assert cache.ttl == 3600
    assert cache.get_stats()["size_limit"] == 100 * 1024 * 1024


def test_library_items_round_trip(cache):
    assert cache.get_library_items("Movies") is None
    items = library(50, paths=2)
    cache.set_library_items("Movies", items)
    assert cache.get_library_items("Movies") == items
    full = cache.get_library_items("Movies", full=True)
    assert full[0] == {**items[0], "kind": "", "year": None, "updated_at": None,
                       "library_section_id": None}


def test_item_defaults_and_full_fields(cache):
    cache.set_library_items("Shows", [
        {"key": "/library/metadata/22/children", "title": "Show"},
        {"key": "/library/metadata/7", "title": "Ep", "rating_key": 7, "kind": "episode",
         "year": 2001, "updated_at": -5, "library_section_id": 3, "file_paths": ("/a.mkv",)},
    ])
    a, b = cache.get_library_items("Shows", full=True)
    assert a["rating_key"] == "22" and a["file_paths"] == [] and a["kind"] == ""
    assert b == {"key": "/library/metadata/7", "rating_key": "7", "title": "Ep",
                 "file_paths": ["/a.mkv"], "kind": "episode", "year": 2001, "updated_at": -5,
                 "library_section_id": 3}


def test_unusual_but_valid_items_read_the_same(cache):
    # The dict reader's fast paths (interned keys, exact types, borrowed strings, paths held
    # inline up to eight) and their fallbacks must agree.
    class S(str):
        pass

    class I(int):
        def __str__(self):
            return "not this"

    class L(list):
        def __len__(self):
            return 0

    many = [f"/m/{i}.mkv" for i in range(20)]
    key = "".join(["k", "ey"])  # a key that is not the interned literal
    items = [
        {key: "/library/metadata/1", "title": S("Süß"), "file_paths": many},
        {"key": "/library/metadata/2", "title": "t", "rating_key": I(2),
         "file_paths": L(["/l.mkv"])},
        {"key": "/library/metadata/3", "title": "t", "rating_key": 2 ** 70,
         "file_paths": tuple(many[:8])},
        {"key": "/library/metadata/4", "title": "t", "rating_key": I(-5), "file_paths": None,
         "kind": None},
        dict(key="/5", title="", file_paths=["/é" * 3, ""]),
    ]
    for put, get in ((cache.set_library_items, lambda: cache.get_library_items("M")),
                     (lambda n, i: cache.set_search_results(n, "q", i),
                      lambda: cache.get_search_results("M", "q"))):
        put("M", items)
        got = get()
        assert [i["rating_key"] for i in got] == ["1", "2", str(2 ** 70), "-5", "5"]
        assert got[0]["file_paths"] == many and got[0]["title"] == "Süß"
        assert got[1]["file_paths"] == ["/l.mkv"] and got[2]["file_paths"] == many[:8]
        assert got[3]["file_paths"] == [] and got[4]["file_paths"] == ["/é" * 3, ""]
    view = cache.library("M")
    assert view.find_by_path("/m/19.mkv")["rating_key"] == "1"
    assert view.find_by_path("/m/19.mkv")["rating_key"] == "1"  # through the index
    assert view[0]["file_paths"] == many and view.find_by_rating_key(2 ** 70) == got[2]


def test_search_results_round_trip(cache):
    assert cache.get_search_results("Movies", "Alien") is None
    cache.set_search_results("Movies", "Alien", [movie(1), movie(2)])
    cache.set_search_results("Movies", "Nothing", [])
    assert cache.get_search_results("Movies", "Alien") == [movie(1), movie(2)]
    assert cache.get_search_results("Movies", "Nothing") == []
    assert cache.get_search_results("Films", "Alien") is None


@pytest.mark.parametrize("name", ["Movies", "Movies:4K", "Movies%3A4K", "100%", "a:b:c",
                                  "tab\there\nnewline", "Fïlms 🎬", "", " trailing ",
                                  "library:Movies:all", "\x00nul"])
def test_keys_with_any_characters_stay_apart(cache, name):
    others = ["Movies", "Movies:4K", "Movies%3A4K", "Movies 4K", "a", "a:b"]
    for other in others:
        if other != name:
            cache.set_library_items(other, [movie(0, title=f"other {other}")])
            cache.set_search_results(other, name, [movie(0, title=f"search {other}")])
    cache.set_library_items(name, [movie(1, title=f"mine {name}")])
    cache.set_search_results(name, name, [movie(1, title=f"search mine {name}")])
    assert cache.get_library_items(name)[0]["title"] == f"mine {name}"
    assert cache.get_search_results(name, name)[0]["title"] == f"search mine {name}"
    for other in others:
        if other != name:
            assert cache.get_library_items(other)[0]["title"] == f"other {other}"


def test_ttl_expiry(cache_dir):
    with PlexCache(cache_dir, ttl=0.3) as c:
        c.set_library_items("Movies", library(3))
        c.set_search_results("Movies", "x", library(1))
        assert c.get_library_items("Movies") is not None
        assert c.library("Movies") is not None
        time.sleep(0.45)
        assert c.get_library_items("Movies") is None
        assert c.library("Movies") is None
        assert c.get_search_results("Movies", "x") is None
        assert c.expire() >= 0


def test_no_ttl_and_bad_ttl(cache_dir):
    with PlexCache(cache_dir, ttl=None) as c:
        assert c.ttl is None
        c.set_library_items("Movies", library(1))
        assert c.get_library_items("Movies") is not None
    for bad in (0, -1, float("nan"), float("inf")):
        with pytest.raises(plexcache.InvalidArgumentError, match="ttl"):
            PlexCache(cache_dir, ttl=bad)


def test_size_limit_evicts_least_recently_stored(cache_dir):
    limit = 64 * 1024
    with PlexCache(cache_dir, size_limit=limit) as c:
        for i in range(12):
            c.set_library_items(f"lib{i}", library(100, tag=f" of lib{i}"))  # ~12 KB each
            assert c.get_stats()["size"] <= limit
        assert c.get_library_items("lib11") is not None
        assert c.get_library_items("lib0") is None
        assert c.get_stats()["evictions"] > 0


def test_a_value_over_the_size_limit_is_refused(cache_dir):
    with PlexCache(cache_dir, size_limit=4096) as c:
        c.set_library_items("Movies", library(2))
        with pytest.raises(plexcache.ValueTooLargeError, match="size limit"):
            c.set_library_items("Movies", library(500))
        assert c.get_library_items("Movies") == library(2)


def test_stats_count_hits_and_misses(cache):
    cache.get_library_items("Movies")
    cache.set_library_items("Movies", library(2))
    cache.get_library_items("Movies")
    cache.get_library_items("Movies")
    cache.get_search_results("Movies", "x")
    s = cache.get_stats()
    assert (s["hits"], s["misses"], s["sets"]) == (2, 2, 1)
    assert s["hit_rate"] == 0.5
    assert s["count"] == 1 and s["size"] > 0 and s["backend"] == "sqlite"
    assert s["store"]["hits"] >= 2


def test_clear_and_invalidate_library(cache):
    for name in ("Movies", "Movies 4K", "Movies:4K"):
        cache.set_library_items(name, library(2))
        cache.set_search_results(name, "x", library(1))
    assert cache.invalidate_library("Movies") == 2
    assert cache.get_library_items("Movies") is None
    assert cache.get_search_results("Movies", "x") is None
    assert cache.get_library_items("Movies 4K") is not None
    assert cache.get_library_items("Movies:4K") is not None
    assert cache.clear() == 4
    assert cache.get_stats()["count"] == 0


def test_find_by_path_and_rating_key(cache):
    items = library(100, paths=2)
    cache.set_library_items("Movies", items)
    assert cache.find_by_path("Movies", items[42]["file_paths"][1]) == items[42]
    assert cache.find_by_path("Movies", "/nope.mkv") is None
    assert cache.find_by_path("Films", "/nope.mkv") is None
    assert cache.find_by_rating_key("Movies", "1042") == items[42]
    assert cache.find_by_rating_key("Movies", 1042) == items[42]
    import pathlib
    assert cache.find_by_path("Movies", pathlib.PurePosixPath(items[3]["file_paths"][0])) == items[3]
    assert cache.find_by_path("Movies", items[3]["file_paths"][0].encode()) == items[3]


def test_library_view_is_a_lazy_sequence(cache):
    items = library(30, paths=2)
    cache.set_library_items("Movies", items)
    view = cache.library("Movies")
    assert isinstance(view, plexcache.LibraryView)
    assert len(view) == 30 and bool(view)
    assert view[0] == items[0] and view[-1] == items[-1]
    assert view[2:8:3] == items[2:8:3]
    assert list(view) == items
    assert view.to_list() == items
    assert view.item(1, full=True)["kind"] == ""
    with pytest.raises(IndexError):
        view[30]
    with pytest.raises(IndexError):
        view[-31]
    assert view.find_by_path(items[7]["file_paths"][1]) == items[7]
    assert view.find_by_rating_key(1007) == items[7]
    assert view.find_by_path("/nope") is None
    # A view keeps the listing it was opened on.
    cache.set_library_items("Movies", library(2, tag=" new"))
    assert len(view) == 30 and view[0] == items[0]
    assert len(cache.library("Movies")) == 2
    assert cache.library("Films") is None
    # Items are fresh dicts: changing one changes nothing stored.
    d = view[0]
    d["title"] = "changed"
    assert view[0]["title"] == items[0]["title"]


def test_shared_gets_reuse_the_list_until_the_store_changes(cache_dir):
    with PlexCache(cache_dir) as a, PlexCache(cache_dir) as b:
        a.set_library_items("Movies", library(10))
        first = a.get_library_items("Movies", shared=True)
        assert a.get_library_items("Movies", shared=True) is first
        assert a.get_library_items("Movies") is not first
        b.set_library_items("Movies", library(3, tag=" new"))  # another connection writes
        second = a.get_library_items("Movies", shared=True)
        assert second is not first and second == library(3, tag=" new")
        b.invalidate_library("Movies")
        assert a.get_library_items("Movies", shared=True) is None


@pytest.mark.parametrize("item, message", [
    ({"title": "x"}, "missing 'key'"),
    ({"key": "/k"}, "missing 'title'"),
    ({"key": "/k", "title": "x", "ratingKey": "1"}, "unknown key .ratingKey."),
    ({"key": 1, "title": "x"}, "'key' must be a str, not int"),
    ({"key": "/k", "title": None}, "'title' must be a str, not NoneType"),
    ({"key": "/k", "title": "x", "file_paths": "/a.mkv"}, "'file_paths' must be a list of str"),
    ({"key": "/k", "title": "x", "file_paths": ["/a", 3]}, "file_paths\\[1\\]' must be a str"),
    ({"key": "/k", "title": "x", "year": "2001"}, "'year' must be an int"),
    ({"key": "/k", "title": "x", "year": 2 ** 40}, "'year' is out of range"),
    ({"key": "/k", "title": "x", "file_paths": ["/caf\udce9.mkv"]}, "not valid UTF-8"),
    ({1: "x"}, "dict keys must be str"),
    (42, "items\\[1\\]"),
])
def test_bad_items_raise_and_store_nothing(cache, item, message):
    cache.set_library_items("Movies", library(2))
    with pytest.raises(plexcache.InvalidItemError, match=message) as info:
        cache.set_library_items("Movies", [movie(9), item])
    assert "items[1]" in str(info.value)
    assert isinstance(info.value, ValueError)
    with pytest.raises(plexcache.InvalidItemError):
        cache.set_search_results("Movies", "t", [item])
    assert cache.get_library_items("Movies") == library(2)


def test_bad_arguments(cache):
    with pytest.raises(TypeError, match="library name must be a str"):
        cache.get_library_items(b"Movies")
    with pytest.raises(TypeError, match="items must be a list"):
        cache.set_library_items("Movies", "not a list")
    with pytest.raises(TypeError, match="items must be a list"):
        cache.set_library_items("Movies", 5)
    with pytest.raises(plexcache.InvalidArgumentError, match="surrogate"):
        cache.get_library_items("caf\udce9")
    cache.set_library_items("Movies", library(1))
    with pytest.raises(plexcache.InvalidArgumentError, match="surrogate"):
        cache.find_by_path("Movies", "/media/caf\udce9.mkv")
    with pytest.raises(plexcache.InvalidArgumentError, match="not valid UTF-8"):
        cache.find_by_path("Movies", b"/media/caf\xe9.mkv")
    with pytest.raises(TypeError, match="path must be"):
        cache.find_by_path("Movies", 3.5)
    # Generators and tuples of items are accepted.
    cache.set_library_items("Gen", (movie(i) for i in range(3)))
    assert len(cache.get_library_items("Gen")) == 3


def test_closed_cache_raises(cache_dir):
    c = PlexCache(cache_dir)
    c.set_library_items("Movies", library(1))
    c.close()
    c.close()
    assert c.closed
    with pytest.raises(plexcache.CacheClosedError, match="closed"):
        c.get_library_items("Movies")
    with PlexCache(cache_dir) as again:
        assert again.get_library_items("Movies") == library(1)
    assert again.closed


def test_corrupt_or_foreign_files_raise_cache_file_error(tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir(mode=0o700)
    (bad / "plexcache.db").write_bytes(b"this is not a database" * 300)
    with pytest.raises(plexcache.CacheFileError, match="plexcache.db"):
        PlexCache(bad)
    foreign = tmp_path / "foreign.db"
    import sqlite3
    con = sqlite3.connect(foreign)
    con.execute("CREATE TABLE entries (x)")
    con.execute("CREATE TABLE notes (a, b)")
    con.commit()
    con.close()
    with pytest.raises(plexcache.PlexCacheError):
        PlexCache(foreign)


def test_a_diskcache_directory_is_refused(tmp_path):
    diskcache = pytest.importorskip("diskcache")
    d = tmp_path / "old-cache"
    old = diskcache.Cache(str(d))
    old.set("library:Movies:all", [movie(1)])
    old.close()
    with pytest.raises(plexcache.CacheFileError, match="diskcache"):
        PlexCache(d)
    with pytest.raises(plexcache.CacheFileError):
        PlexCache(d / "cache.db")


def test_a_full_disk_raises_and_keeps_what_was_stored(cache_dir):
    with PlexCache(cache_dir, max_file_bytes=256 * 1024) as c:
        c.set_library_items("Small", library(5))
        with pytest.raises(plexcache.CacheFullError, match="full"):
            c.set_library_items("Big", library(4000, paths=3))
        assert c.get_library_items("Small") == library(5)
        assert c.get_library_items("Big") is None
        c.set_library_items("Small2", library(5))
        assert c.get_library_items("Small2") == library(5)
