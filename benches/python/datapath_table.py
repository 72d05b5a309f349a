#!/usr/bin/env python3
"""Prints the ratio table of a run_datapath.sh run (diskcache time / plexcache time)."""
import glob
import json
import statistics
import sys

out = sys.argv[1]


def load(side):
    rows = {}
    for path in sorted(glob.glob(f"{out}/{side}-*.jsonl")):
        for line in open(path):
            line = line.strip()
            if line.startswith("{"):
                r = json.loads(line)
                rows.setdefault(r["row"], []).append(r)
    return rows


rust, py = load("rust"), load("python")


def med(rows, name, field="median_us"):
    vals = [r[field] for r in rows.get(name, []) if field in r]
    return statistics.median(vals) if vals else None


# (label, plexcache row, diskcache row, field)
pairs = []
for n in (1000, 10000, 50000):
    pairs += [
        (f"library list get {n}: view (open + touch all)", f"list_get_view_{n}", f"list_get_{n}", "median_us"),
        (f"library list get {n}: owned Vec<PlexItem>", f"list_get_owned_{n}", f"list_get_{n}", "median_us"),
        (f"library list get {n}: view, memory backend", f"memory_list_get_view_{n}", f"list_get_{n}", "median_us"),
        (f"library list get {n}: through the tier, other process writing", f"tier_list_get_view_{n}", f"list_get_{n}", "median_us"),
        (f"library list set {n}", f"list_set_{n}", f"list_set_{n}", "median_us"),
    ]
pairs += [
    ("small set", "small_set", "small_set", "median_us"),
    ("small get hit", "small_get_hit", "small_get_hit", "median_us"),
    ("small get miss", "small_get_miss", "small_get_miss", "median_us"),
    ("mix 90/10 Zipf, all ops", "mix_90_10", "mix_90_10", "median_us"),
    ("mix 90/10 Zipf, all ops, p99", "mix_90_10", "mix_90_10", "p99_us"),
    ("set while culling at 5 MiB, median", "cull_set_5mib", "cull_set_5mib", "median_us"),
    ("set while culling at 5 MiB, p99", "cull_set_5mib", "cull_set_5mib", "p99_us"),
]
pairs += [
    ("exclusive mode: small set", "exclusive_small_set", "small_set", "median_us"),
    ("exclusive mode: small get hit", "exclusive_small_get_hit", "small_get_hit", "median_us"),
    ("exclusive mode: mix 90/10 Zipf, all ops", "exclusive_mix_90_10", "mix_90_10", "median_us"),
]
for n in (1000, 10000):
    pairs += [
        (f"exclusive mode: library list set {n}", f"exclusive_list_set_{n}", f"list_set_{n}", "median_us"),
        (f"exclusive mode: library list get {n}, view", f"exclusive_list_get_view_{n}", f"list_get_{n}", "median_us"),
    ]
print("| workload | diskcache (us) | plexcache (us) | ratio |")
print("|---|---:|---:|---:|")
for label, r, p, field in pairs:
    a, b = med(py, p, field), med(rust, r, field)
    if a is None or b is None:
        continue
    print(f"| {label} | {a:,.1f} | {b:,.1f} | **{a / b:.1f}x** |")

print()
print("Floor rows (raw rusqlite, same pragmas, bare key/value table) and plexcache / floor:")
print()
print("| operation | raw rusqlite (us) | plexcache (us) | plexcache / floor |")
print("|---|---:|---:|---:|")
floors = [
    ("small set (INSERT OR REPLACE, one transaction)", "raw_set", "small_set"),
    ("small get hit (SELECT by key)", "raw_get_hit", "small_get_hit"),
    ("small get miss", "raw_get_miss", "small_get_miss"),
    ("mix: gets", "raw_mix_gets", "mix_90_10_gets"),
    ("mix: sets", "raw_mix_sets", "mix_90_10_sets"),
    ("cull: sets (floor: a plain set)", "raw_set", "cull_set_5mib"),
    ("cull: sets (bare table: insert, delete oldest until under 5 MiB)", "raw_cull_set", "cull_set_5mib"),
]
for n in (1000, 10000, 50000):
    floors += [
        (f"list get {n} (floor: SELECT of the blob)", f"raw_list_select_{n}", f"list_get_view_{n}"),
        (f"list get {n} (floor: blob I/O read)", f"raw_list_blob_{n}", f"list_get_view_{n}"),
        (f"list set {n} (floor: INSERT OR REPLACE of the blob)", f"raw_list_set_{n}", f"list_set_{n}"),
    ]
for label, f, r in floors:
    a, b = med(rust, f), med(rust, r)
    if a is None or b is None:
        continue
    print(f"| {label} | {a:,.1f} | {b:,.1f} | {b / a:.2f}x |")

print()
for side, rows in (("plexcache", rust), ("diskcache", py)):
    for name, rs in sorted(rows.items()):
        if name.startswith("rss_") or name.startswith("import_"):
            for r in rs:
                print(f"{side} {name}: " + ", ".join(f"{k}={v}" for k, v in r.items() if k != "row"))
