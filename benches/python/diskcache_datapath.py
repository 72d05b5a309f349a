#!/usr/bin/env python3
"""The diskcache side of the data-path comparison (benches/benches/datapath.rs).

Runs the same operations on the same data (a JSON dataset written by
`cargo bench -p plexcache-benches --bench datapath -- dataset PATH`) through diskcache 5.6.3,
storing each value as the Python PlexCache did: a pickled list of dicts with the item fields.
Each operation is timed on its own; prints one JSON line per row (median and p99 in us).

    python3 benches/python/diskcache_datapath.py DATASET [quick] [GROUP]
"""

import json
import os
import sys
import tempfile
import time

import diskcache

QUICK = "quick" in sys.argv[2:]
ONLY = next((a for a in sys.argv[2:] if a != "quick"), None)
CULL_LIMIT = 5 * 1024 * 1024


def want(group):
    return ONLY is None or ONLY == group


def row(name, samples):
    samples = sorted(samples)
    n = len(samples)

    def at(q):
        return samples[min(n - 1, round((n - 1) * q))] * 1e6

    print(json.dumps({"row": name, "median_us": round(at(0.5), 3),
                      "p99_us": round(at(0.99), 3), "ops": n}), flush=True)


def rounds(n):
    r = 200 if n <= 1000 else 40 if n <= 10000 else 10
    return r // 2 if QUICK else r


def touch(items):
    n = 0
    for it in items:
        n += len(it["key"]) + len(it["title"])
        for p in it["file_paths"]:
            n += len(p)
    return n


def open_cache(root, **kw):
    # The Python PlexCache: a diskcache.Cache in a cache/ folder, 100 MB limit.
    return diskcache.Cache(tempfile.mkdtemp(dir=root), size_limit=kw.get("size_limit", 100 * 1024 * 1024))


def main():
    data = json.load(open(sys.argv[1]))
    sizes = [s for s in data["sizes"] if not QUICK or s <= 10000]
    perf = time.perf_counter
    root = tempfile.mkdtemp()
    if want("library"):
        cache = open_cache(root, size_limit=1 << 30)
        for n in sizes:
            items = data["library"][:n]
            key = "library:Movies:all"
            r = rounds(n)
            s = []
            for _ in range(r):
                t = perf(); cache.set(key, items, expire=3600); s.append(perf() - t)
            row(f"list_set_{n}", s)
            s = []
            for _ in range(r):
                t = perf(); v = cache.get(key); s.append(perf() - t)
                assert len(v) == n
            row(f"list_get_{n}", s)
            s = []
            for _ in range(r):
                t = perf(); v = cache.get(key); touch(v); s.append(perf() - t)
            row(f"list_get_touch_{n}", s)
            s = []
            path = items[n // 2]["file_paths"][0]
            for _ in range(r):
                t = perf()
                v = cache.get(key)
                found = next((it for it in v if path in it["file_paths"]), None)
                s.append(perf() - t)
                assert found is not None
            row(f"list_find_path_{n}", s)
        cache.close()
    if want("small"):
        cache = open_cache(root)
        keys, values = data["small_keys"], data["small_values"]
        s = []
        for k, v in zip(keys, values):
            t = perf(); cache.set(k, v, expire=3600); s.append(perf() - t)
        row("small_set", s)
        s = []
        for i in data["get_order"]:
            t = perf(); v = cache.get(keys[i]); s.append(perf() - t)
            assert v is not None
        row("small_get_hit", s)
        s = []
        for k in data["absent_keys"]:
            t = perf(); v = cache.get(k); s.append(perf() - t)
            assert v is None
        row("small_get_miss", s)
        alls, gets, sets = [], [], []
        for is_set, i in data["mix"]:
            t = perf()
            if is_set:
                cache.set(keys[i], values[i], expire=3600)
            else:
                cache.get(keys[i])
            d = perf() - t
            alls.append(d)
            (sets if is_set else gets).append(d)
        row("mix_90_10", alls)
        row("mix_90_10_gets", gets)
        row("mix_90_10_sets", sets)
        cache.close()
    if want("cull"):
        cache = open_cache(root, size_limit=CULL_LIMIT)
        keys, values = data["small_keys"], data["small_values"]
        total = 4 * len(keys)
        s = []
        for i in range(total):
            k = f"{keys[i % len(keys)]}#{i}"
            t = perf(); cache.set(k, values[i % len(keys)], expire=3600); d = perf() - t
            if i >= total // 2:
                s.append(d)
        row("cull_set_5mib", s)
        cache.close()
    if want("rss"):
        # A fresh process per read (see rss_child), like the Rust side.
        import subprocess
        d = tempfile.mkdtemp(dir=root)
        n = 10000
        c = diskcache.Cache(d, size_limit=1 << 30)
        c.set("library:Movies:all", data["library"][:n])
        c.close()
        for _ in range(2):
            out = subprocess.run([sys.executable, __file__, "--rss-child", d, str(n)],
                                 capture_output=True, text=True).stdout
            print(out, end="", flush=True)


def status_kib(field):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1])
    return 0


def rss_child(d, n):
    cache = diskcache.Cache(d)
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass
    before = status_kib("VmRSS")
    v = cache.get("library:Movies:all")
    touch(v)
    peak = status_kib("VmHWM")
    raw = cache._sql("SELECT size FROM Cache WHERE key = ?", ("library:Movies:all",)).fetchone()
    print(json.dumps({"row": f"rss_get_{n}", "growth_kib": peak - before,
                      "stored_kib": (raw[0] if raw else 0) // 1024}))


if __name__ == "__main__":
    if sys.argv[1] == "--rss-child":
        rss_child(sys.argv[2], int(sys.argv[3]))
    else:
        main()
