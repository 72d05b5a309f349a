import os
import pathlib

import pytest

import plexcache

REPO = pathlib.Path(__file__).resolve().parents[3]
FIXTURES = REPO / "crates" / "plex" / "tests" / "fixtures"


@pytest.fixture
def cache_dir(tmp_path):
    return tmp_path / "tool-data" / "cache"


@pytest.fixture
def cache(cache_dir):
    with plexcache.PlexCache(cache_dir) as c:
        yield c


def movie(i, paths=1, title=None):
    rk = str(1000 + i)
    return {
        "key": f"/library/metadata/{rk}",
        "rating_key": rk,
        "title": title if title is not None else f"Movie {i}",
        "file_paths": [f"/media/movies/Movie {i}/part{p}.mkv" for p in range(paths)],
    }


def library(n, tag="", paths=1):
    return [movie(i, paths, title=f"Movie {i}{tag}") for i in range(n)]
