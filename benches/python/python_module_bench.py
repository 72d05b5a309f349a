#!/usr/bin/env python3
"""The plexcache Python module against the old PlexCache's approach, side by side in one run.

The old class stored a library in diskcache 5.6.3 as a pickled list of dicts with the fields
key, rating_key, title and file_paths; plexcache stores the same items with
``set_library_items``. Both caches live in fresh directories on the same disk; each figure is
the median over every sample of every round. Within a row the sides take turns in blocks of
calls, so bursts of background load hit both alike; each block starts with an untimed call.
Prints a Markdown table.

    pip install diskcache==5.6.3 ./crates/python      # or maturin develop --release
    python3 benches/python/python_module_bench.py [--quick] [--rounds N]

Rows (each get reads the store unless the row says otherwise):
- set: one library, 1k/10k/50k items.
- get: the whole library as list[dict]; the floor row is marshal.loads of the same dicts
  from bytes in memory (no storage at all).
- find: diskcache get + a linear search for one path, against plexcache's view opened and
  find_by_path (a view's first lookup scans it), with the in-process tier off
  (memory_tier=False: the listing is read and checked every time) and on (the default).
- shared get: get_library_items(shared=True), the list kept in-process while the store's
  listing is unchanged (checked on every call).
- small: a search result of 0-3 items, set and get (hit), 2,000 keys; the floor is the
  stdlib sqlite3 module (WAL, synchronous=NORMAL) storing marshal bytes in a two-column
  table: a prepared INSERT OR REPLACE and commit, or SELECT and marshal.loads.
- rss: a fresh process's peak RSS growth over its RSS just before one get of the 50k-item
  library (diskcache get vs plexcache library() + find_by_path).
"""

import argparse
import gc
import json
import marshal
import os
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time

import diskcache

import plexcache

LIB_KEY = "library:Movies:all"
NAME = "Movies"


def make_items(n, seed=7):
    rng = random.Random(seed)
    words = ["Alien", "Amélie", "Blade", "Runner", "Heat", "Night", "Day", "Star", "Wars:",
             "Return", "of", "the", "King", "Léon", "Ōkami", "Crouching", "Tiger", "2049"]
    items = []
    for i in range(n):
        title = " ".join(rng.choice(words) for _ in range(rng.randint(1, 4)))
        year = rng.randint(1950, 2025)
        rk = str(10000 + i)
        parts = 1 if rng.random() < 0.85 else rng.randint(2, 3)
        folder = f"/data/media/movies/{title} ({year})"
        paths = [f"{folder}/{title} ({year}) - part{p + 1} - 1080p.mkv" for p in range(parts)]
        items.append({"key": f"/library/metadata/{rk}", "rating_key": rk, "title": title,
                      "file_paths": paths})
    return items


def fmt(seconds):
    us = seconds * 1e6
    if us >= 1000:
        return f"{us / 1000:,.2f} ms"
    return f"{us:,.2f} µs"


def rss_child(kind, cache_dir, n):
    """One get of the n-item library in this fresh process; prints the peak RSS growth."""
    import diskcache  # noqa: F401  (imported before measuring, like plexcache)

    def status(field):
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        return 0

    if kind == "diskcache":
        cache = diskcache.Cache(cache_dir)
    else:
        cache = plexcache.PlexCache(cache_dir)
    gc.collect()
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets the peak (VmHWM) to the current RSS
    except OSError:
        pass
    before = status("VmRSS")
    if kind == "diskcache":
        items = cache.get(LIB_KEY)
        found = next((it for it in items if "/nonexistent" in it["file_paths"]), None)
    else:
        view = cache.library(NAME)
        found = view.find_by_path("/nonexistent")
    peak = status("VmHWM")
    print(json.dumps({"kind": kind, "before_kib": before, "peak_kib": peak,
                      "growth_kib": peak - before, "found": found is not None}))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--rss-child", nargs=3, metavar=("KIND", "DIR", "N"))
    args = ap.parse_args()
    if args.rss_child:
        kind, d, n = args.rss_child
        rss_child(kind, d, int(n))
        return

    sizes = [1000, 10000] if args.quick else [1000, 10000, 50000]
    root = tempfile.mkdtemp(prefix="plexcache-pybench-")
    dc = diskcache.Cache(os.path.join(root, "dc"), size_limit=1 << 30)
    pc = plexcache.PlexCache(os.path.join(root, "pc"), size_limit=1 << 30)
    pc_cold = plexcache.PlexCache(os.path.join(root, "pc"), size_limit=1 << 30,
                                  memory_tier=False)
    # The raw floor of small entries: the stdlib sqlite3 module (WAL, synchronous=NORMAL, a
    # cached prepared statement) storing marshal bytes in a two-column table.
    raw = sqlite3.connect(os.path.join(root, "raw.db"))
    raw.execute("PRAGMA journal_mode = WAL")
    raw.execute("PRAGMA synchronous = NORMAL")
    raw.execute("CREATE TABLE t (k TEXT PRIMARY KEY, v BLOB) WITHOUT ROWID")
    raw.commit()
    samples = {}

    def add(row, who, values):
        samples.setdefault((row, who), []).extend(values)

    def interleaved(row, fns, reps, blocks=5):
        """The sides take turns in blocks of reps // blocks calls, so bursts of background
        load hit all sides alike. Each block starts with one untimed call, so that no timed
        call pays for the memory another side just freed (tens of MB of dicts at 50k)."""
        per = max(1, reps // blocks)
        done = 0
        while done < reps:
            for who, fn in fns.items():
                fn()
                for _ in range(per):
                    t = time.perf_counter()
                    fn()
                    add(row, who, [time.perf_counter() - t])
            done += per

    for rnd in range(args.rounds):
        for n in sizes:
            items = make_items(n)
            reps = max(3, (200 if n <= 1000 else 30 if n <= 10000 else 8) // (2 if args.quick else 1))
            path = items[n // 2]["file_paths"][0]
            blob = marshal.dumps(items)

            def dc_find():
                v = dc.get(LIB_KEY)
                return next((it for it in v if path in it["file_paths"]), None)

            interleaved(f"set, {n:,} items", {
                "diskcache": lambda: dc.set(LIB_KEY, items, expire=3600),
                "plexcache": lambda: pc.set_library_items(NAME, items)}, reps)
            interleaved(f"get as list[dict], {n:,} items", {
                "diskcache": lambda: dc.get(LIB_KEY),
                "plexcache": lambda: pc_cold.get_library_items(NAME),
                "floor": lambda: marshal.loads(blob)}, reps)
            interleaved(f"find_by_path, {n:,} items", {
                "diskcache": dc_find,
                "plexcache": lambda: pc_cold.library(NAME).find_by_path(path)}, reps)
            interleaved(f"find_by_path, {n:,} items, in-process tier", {
                "diskcache": dc_find,
                "plexcache": lambda: pc.library(NAME).find_by_path(path)}, reps)
            interleaved(f"get, shared=True, {n:,} items", {
                "diskcache": lambda: dc.get(LIB_KEY),
                "plexcache": lambda: pc.get_library_items(NAME, shared=True)}, reps)
            assert pc_cold.library(NAME).find_by_path(path)["file_paths"][0] == path
            assert pc.get_library_items(NAME) == items
            assert dc_find() is not None
        # Small entries: search results of 0-3 items, 2,000 keys, in turn.
        small = make_items(3000, seed=11)
        keys = [f"Title {i} ü:{i % 7}" for i in range(2000)]
        vals = [small[i:i + (i % 4)] for i in range(2000)]
        order = list(range(2000))
        random.Random(rnd).shuffle(order)

        def raw_set(i):
            raw.execute("INSERT OR REPLACE INTO t VALUES (?, ?)",
                        (f"search:{NAME}:{keys[i]}", marshal.dumps(vals[i])))
            raw.commit()

        def raw_get(i):
            row = raw.execute("SELECT v FROM t WHERE k = ?", (f"search:{NAME}:{keys[i]}",)).fetchone()
            return marshal.loads(row[0])

        ops = {
            "small set (search result, 0-3 items)": {
                "diskcache": lambda i: dc.set(f"search:{NAME}:{keys[i]}", vals[i], expire=3600),
                "plexcache": lambda i: pc.set_search_results(NAME, keys[i], vals[i]),
                "floor": raw_set},
            "small get, hit": {
                "diskcache": lambda i: dc.get(f"search:{NAME}:{keys[i]}"),
                "plexcache": lambda i: pc.get_search_results(NAME, keys[i]),
                "floor": raw_get},
        }
        for row, sides in ops.items():
            # Blocks of 200 keys, each side in turn.
            for b in range(0, len(order), 200):
                for who, op in sides.items():
                    taken = []
                    for i in order[b:b + 200]:
                        t = time.perf_counter()
                        op(i)
                        taken.append(time.perf_counter() - t)
                    add(row, who, taken)
        assert pc.get_search_results(NAME, keys[5]) == vals[5]

    rows = []
    seen = []
    for (row, _who) in samples:
        if row not in seen:
            seen.append(row)
    print(f"plexcache {plexcache.__file__}; diskcache {diskcache.__version__}; "
          f"Python {sys.version.split()[0]}; {args.rounds} rounds; "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print()
    print("| row | diskcache 5.6.3 | plexcache | diskcache / plexcache | floor | plexcache / floor |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for row in seen:
        d = statistics.median(samples[(row, "diskcache")])
        p = statistics.median(samples[(row, "plexcache")])
        f = samples.get((row, "floor"))
        fl = statistics.median(f) if f else None
        print(f"| {row} | {fmt(d)} | {fmt(p)} | {d / p:.1f}x | "
              f"{fmt(fl) if fl else ''} | {f'{p / fl:.2f}x' if fl else ''} |")

    # Peak memory of one get of the largest library, in fresh processes.
    n = sizes[-1]
    items = make_items(n)
    dd = os.path.join(root, "rss-dc"); pd = os.path.join(root, "rss-pc")
    c = diskcache.Cache(dd, size_limit=1 << 30); c.set(LIB_KEY, items); c.close()
    with plexcache.PlexCache(pd, size_limit=1 << 30) as c:
        c.set_library_items(NAME, items)
    growth = {}
    for kind, d in (("diskcache", dd), ("plexcache", pd)):
        vals = []
        for _ in range(3):
            out = subprocess.run([sys.executable, __file__, "--rss-child", kind, d, str(n)],
                                 capture_output=True, text=True, check=True).stdout
            vals.append(json.loads(out)["growth_kib"])
        growth[kind] = statistics.median(vals)
    print()
    print(f"peak RSS growth over RSS before one get of {n:,} items (fresh process, median of 3): "
          f"diskcache get {growth['diskcache'] / 1024:.1f} MiB, plexcache library() + find_by_path "
          f"{growth['plexcache'] / 1024:.1f} MiB, ratio {growth['plexcache'] / max(growth['diskcache'], 1):.3f}")
    dc.close(); pc.close(); pc_cold.close()


if __name__ == "__main__":
    main()
