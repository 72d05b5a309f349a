#!/usr/bin/env python3
"""The plexcache SQLite benchmark workloads, run with the Python `diskcache` package (5.6.3),
the library plexcache replaces. Items have the same shape as
`plexcache_benches::workload::item` (rating key, key, title, 1-2 file paths, year) and are
stored as Python dicts, pickled by diskcache as it does for any object.

    pip install diskcache==5.6.3
    python3 benches/python/diskcache_bench.py [--quick] > diskcache.json

Prints one JSON object: workload name -> {"mean_us": ..., "ops_per_s": ..., "iters": ...}.
`--quick` skips the 1,000,000-entry fixture.
"""

import bisect
import json
import os
import random
import sys
import tempfile
import time

import diskcache

LIBRARY_KEY = "library:Movies:all"


def item(i):
    """Same fields and values as workload::item in benches/src/workload.rs."""
    m = i % 5
    if m == 0:
        title = f"The Movie Number {i}"
    elif m == 1:
        title = f"Amélie {i}: Le Fabuleux Destin"
    elif m == 2:
        title = f"Crouching Tiger {i} 卧虎藏龙"
    elif m == 3:
        title = f"Movie {i} (Director's Cut)"
    else:
        title = f"Star Voyage {i}: Part II"
    year = 1950 + i % 75
    paths = [f"/data/media/movies/{title} ({year})/{title}.mkv"]
    if i % 7 == 0:
        paths.append(f"/data/media/movies/{title} ({year})/{title} - 4K.mkv")
    return {
        "rating_key": str(10_000 + i),
        "key": f"/library/metadata/{10_000 + i}",
        "title": title,
        "file_paths": paths,
        "year": year,
    }


def library(n):
    return [item(i) for i in range(n)]


def search_result(i):
    return [item(i * 4 + j) for j in range(i % 4)]


def search_key(i):
    return f"search:Movies:title {i}"


class Zipf:
    """Keys 0..n-1 with P(k) proportional to (k+1)^-s, like rand_distr::Zipf(n, s) - 1."""

    def __init__(self, n, s, seed):
        self.rng = random.Random(seed)
        weights = [(k + 1) ** -s for k in range(n)]
        total = sum(weights)
        acc = 0.0
        self.cdf = []
        for w in weights:
            acc += w / total
            self.cdf.append(acc)

    def next_index(self):
        return min(bisect.bisect_left(self.cdf, self.rng.random()), len(self.cdf) - 1)

    def percent(self):
        return self.rng.randrange(100)


def measure(fn, min_time=2.0, min_iters=5):
    """Runs fn() repeatedly for at least min_time seconds; returns mean seconds per call."""
    fn()  # warm up
    iters = 0
    start = time.perf_counter()
    while True:
        fn()
        iters += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_time and iters >= min_iters:
            return elapsed / iters, iters


def record(results, name, mean, iters):
    results[name] = {"mean_us": mean * 1e6, "ops_per_s": 1.0 / mean, "iters": iters}
    print(f"{name}: {mean * 1e6:.1f} us", file=sys.stderr)


def bench_library(results, root):
    cache = diskcache.Cache(os.path.join(root, "library"), size_limit=2**40)
    for n in (1_000, 10_000):
        lib = library(n)
        mean, it = measure(lambda: cache.set(LIBRARY_KEY, lib))
        record(results, f"library/set_{n}", mean, it)
        mean, it = measure(lambda: cache.get(LIBRARY_KEY))
        record(results, f"library/get_{n}", mean, it)
    cache.close()


def bench_small(results, root):
    n = 10_000
    cache = diskcache.Cache(os.path.join(root, "small"), size_limit=2**40)
    values = [search_result(i) for i in range(n)]
    for i in range(n):
        cache.set(search_key(i), values[i])
    state = {"i": 0}

    def step():
        state["i"] = (state["i"] + 7919) % n
        return state["i"]

    def do_set():
        i = step()
        cache.set(search_key(i), values[i])

    def do_get_hit():
        i = step()
        assert cache.get(search_key(i)) is not None

    def do_get_miss():
        i = step()
        assert cache.get(f"search:Movies:absent {i}") is None

    for name, fn in (("set", do_set), ("get_hit", do_get_hit), ("get_miss", do_get_miss)):
        mean, it = measure(fn)
        record(results, f"small/{name}", mean, it)
    cache.close()


def bench_mixed(results, root):
    n = 10_000
    cache = diskcache.Cache(os.path.join(root, "mixed"), size_limit=2**40)
    values = [search_result(i) for i in range(n)]
    for i in range(n):
        cache.set(search_key(i), values[i])
    keys = Zipf(n, 0.99, 42)

    def op():
        i = keys.next_index()
        if keys.percent() < 10:
            cache.set(search_key(i), values[i])
        else:
            cache.get(search_key(i))

    mean, it = measure(op)
    record(results, "mixed/zipf_90get_10set", mean, it)
    cache.close()


def bench_expire(results, root):
    # cull_limit=0: otherwise each set already purges up to 10 expired items, as the Rust
    # bench's bulk load does not.
    cache = diskcache.Cache(os.path.join(root, "expire"), size_limit=2**40, cull_limit=0)
    values = [search_result(i) for i in range(10_000)]
    total = 0.0
    rounds = 5
    for _ in range(rounds):
        with cache.transact():
            for i in range(10_000):
                cache.set(search_key(i), values[i], expire=0.2)
        time.sleep(0.25)
        start = time.perf_counter()
        removed = cache.expire()
        total += time.perf_counter() - start
        assert removed == 10_000, removed
    record(results, "expire/expire_10000_expired", total / rounds, rounds)
    cache.close()


def populate(path, n):
    cache = diskcache.Cache(path, size_limit=2**40)
    start = time.perf_counter()
    i = 0
    while i < n:
        end = min(i + 50_000, n)
        with cache.transact():
            for j in range(i, end):
                cache.set(search_key(j), search_result(j))
        i = end
    print(f"fixture: {n} entries in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    cache.close()


def bench_big(results, root, sizes):
    fixtures = []
    for n in sizes:
        path = os.path.join(root, f"n{n}")
        populate(path, n)
        fixtures.append((n, path))
    for n, path in fixtures:
        state = {"k": 0}

        def open_get():
            state["k"] += 1
            c = diskcache.Cache(path)
            assert c.get(search_key((state["k"] * 7919) % n)) is not None
            c.close()

        mean, it = measure(open_get, min_time=1.0)
        record(results, f"open/open_and_get_{n}", mean, it)
    for n, path in fixtures:
        if n == 100_000:
            continue
        c = diskcache.Cache(path)
        # Full at its current volume: every set culls (diskcache's soft limit, cull_limit 10).
        c.reset("size_limit", c.volume())
        state = {"i": n}

        def set_under_pressure():
            state["i"] += 1
            i = state["i"]
            c.set(search_key(i), search_result(i % 10_000))

        mean, it = measure(set_under_pressure)
        record(results, f"evict/set_under_pressure_{n}", mean, it)
        c.close()


def main():
    quick = "--quick" in sys.argv
    results = {"diskcache_version": diskcache.__version__}
    with tempfile.TemporaryDirectory() as root:
        bench_library(results, root)
        bench_small(results, root)
        bench_mixed(results, root)
        bench_expire(results, root)
        bench_big(results, root, (10_000, 100_000) if quick else (10_000, 100_000, 1_000_000))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
