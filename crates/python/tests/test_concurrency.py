"""Threads, two processes on one cache, and os.fork()."""

import os
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import plexcache
from plexcache import PlexCache
from conftest import library

HERE = os.path.dirname(os.path.abspath(__file__))


def test_one_object_from_many_threads(cache):
    errors = []
    libs = {f"lib{t}": library(200, tag=f" t{t}") for t in range(4)}

    def work(t):
        try:
            name = f"lib{t}"
            for i in range(30):
                cache.set_library_items(name, libs[name])
                got = cache.get_library_items(name)
                assert got == libs[name]
                view = cache.library(f"lib{(t + 1) % 4}")
                if view is not None:
                    assert len(view) == 200
                    assert view.find_by_rating_key("1007")["rating_key"] == "1007"
                cache.set_search_results(name, str(i), libs[name][:3])
                assert cache.get_search_results(name, str(i)) == libs[name][:3]
                cache.get_stats()
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=120)
    assert not any(th.is_alive() for th in threads)
    assert errors == []


def test_threads_run_while_one_waits_in_the_store(cache):
    # The GIL is released during store calls: a pure-Python thread keeps running.
    big = library(20000)
    ticks = []
    stop = threading.Event()

    def ticker():
        while not stop.is_set():
            ticks.append(time.perf_counter())
            time.sleep(0.0005)

    th = threading.Thread(target=ticker)
    th.start()
    try:
        for _ in range(5):
            cache.set_library_items("Big", big)
            cache.library("Big").find_by_path("/nope")
    finally:
        stop.set()
        th.join()
    assert len(ticks) > 5


WRITER = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {here!r})
    import plexcache
    from conftest import library
    old, new = library(3000, " old"), library(2000, " new")
    with plexcache.PlexCache({d!r}) as c:
        print("ready", flush=True)
        end = time.monotonic() + float(sys.argv[1])
        n = 0
        while time.monotonic() < end:
            c.set_library_items("Movies", new if n % 2 else old)
            n += 1
        print(n, flush=True)
""")


def test_two_processes_see_the_old_or_the_new_library_never_a_mix(cache_dir):
    old, new = library(3000, " old"), library(2000, " new")
    with PlexCache(cache_dir) as c:
        c.set_library_items("Movies", old)
        script = WRITER.format(here=HERE, d=os.fspath(cache_dir))
        writer = subprocess.Popen([sys.executable, "-c", script, "3"], stdout=subprocess.PIPE,
                                  text=True)
        assert writer.stdout.readline().strip() == "ready"
        seen = {"old": 0, "new": 0}
        deadline = time.monotonic() + 2.5
        while time.monotonic() < deadline:
            for shared in (False, True):
                got = c.get_library_items("Movies", shared=shared)
                assert got is not None
                if got == old:
                    seen["old"] += 1
                elif got == new:
                    seen["new"] += 1
                else:
                    pytest.fail("a read returned neither the old nor the new library")
            view = c.library("Movies")
            assert len(view) in (3000, 2000)
            assert view[-1]["title"].endswith(" old" if len(view) == 3000 else " new")
        writes = int(writer.stdout.readline())
        assert writer.wait(timeout=60) == 0
    assert writes > 2
    assert seen["old"] > 0 and seen["new"] > 0


def _wait(pid, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.02)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    pytest.fail("the forked child hung")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_the_child_of_a_fork_reopens_the_cache(cache):
    cache.set_library_items("Movies", library(100))
    view = cache.library("Movies")
    busy = threading.Thread(target=lambda: [cache.get_library_items("Movies") for _ in range(50)])
    busy.start()
    pid = os.fork()
    if pid == 0:  # the child: must work, or fail clearly; never hang or crash
        code = 1
        try:
            assert len(view) == 100  # a view opened before the fork is plain memory
            assert cache.get_library_items("Movies") == library(100)
            cache.set_library_items("Child", library(5, " child"))
            assert cache.library("Child")[4]["title"] == "Movie 4 child"
            cache.close()
            code = 0
        finally:
            os._exit(code)
    busy.join()
    assert _wait(pid, 60) == 0
    # The parent's cache is untouched by the child and sees its write.
    assert cache.get_library_items("Child") == library(5, " child")
    assert cache.get_library_items("Movies") == library(100)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_cache_inherited_but_unused_by_the_child_is_left_alone(cache_dir):
    c = PlexCache(cache_dir)
    c.set_library_items("Movies", library(10))
    pid = os.fork()
    if pid == 0:
        del c  # drop without closing in the child: must not touch the parent's store
        os._exit(0)
    assert _wait(pid, 60) == 0
    assert c.get_library_items("Movies") == library(10)
    c.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forks_while_other_threads_read_and_write(cache):
    # os.fork() waits (register_at_fork) until no thread is inside the store, so a child
    # never inherits a lock held by a thread that does not exist in it.
    cache.set_library_items("Movies", library(500))
    stop = threading.Event()
    errors = []

    def busy(t):
        try:
            i = 0
            while not stop.is_set():
                cache.set_search_results("Movies", f"t{t}-{i % 50}", library(2))
                assert len(cache.get_library_items("Movies")) == 500
                i += 1
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=busy, args=(t,)) for t in range(3)]
    for th in threads:
        th.start()
    try:
        for n in range(8):
            pid = os.fork()
            if pid == 0:
                code = 1
                try:
                    cache.set_library_items(f"Child{n}", library(3))
                    assert len(cache.get_library_items("Movies")) == 500
                    code = 0
                finally:
                    os._exit(code)
            assert _wait(pid, 60) == 0
    finally:
        stop.set()
        for th in threads:
            th.join()
    assert errors == []
    assert [cache.get_library_items(f"Child{n}") for n in range(8)] == [library(3)] * 8
