#!/usr/bin/env python3
"""Baseline for the extraction benchmarks: python-plexapi on the same XML responses.

For each XML file (e.g. a synthetic /all response written by the Rust bench), time what the
Python tool did: parse the response (xml.etree.ElementTree, as plexapi does), build plexapi
objects (PlexObject.findItems/_buildItem, with the offline server of
tests/python/plexapi_extract.py) and keep each item's key, title and locations, the Python
tool's essential fields. Report the best of --repeat runs and the process's peak RSS.

Usage: plexapi_baseline.py [--repeat N] FILE.xml...
Prints one JSON object per file:
  {"file", "bytes", "items", "best_seconds", "mb_per_s", "items_per_s", "mean_cpu_seconds",
   "peak_rss_bytes"}
mean_cpu_seconds is the process's CPU time (time.process_time) per run, which a loaded machine
inflates less than wall time.
peak_rss_bytes is the peak of the whole process so far (run one file per process to attribute
it to one response). Exit status 3 when plexapi cannot be imported.
"""

import json
import os
import resource
import sys
import time
import xml.etree.ElementTree as ET

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tests", "python"))

import plexapi_extract  # noqa: E402  (exits with 3 when plexapi is missing)


def extract(data, server):
    root = ET.fromstring(data)
    items = plexapi_extract.build_items(server, root, "/library/sections/1/all")
    # The Python tool's extraction: only key, title and file locations.
    return [
        {"key": item.key, "title": item.title, "locations": plexapi_extract.locations_of(item)}
        for item in items
        if getattr(item, "ratingKey", None) is not None
    ]


def peak_rss_bytes():
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss if sys.platform == "darwin" else rss * 1024


def main(argv):
    repeat = 3
    files = []
    it = iter(argv)
    for arg in it:
        if arg == "--repeat":
            repeat = int(next(it))
        else:
            files.append(arg)
    if not files:
        print(__doc__, file=sys.stderr)
        return 2
    server = plexapi_extract.OfflineServer()
    for path in files:
        with open(path, "rb") as f:
            data = f.read()
        best = float("inf")
        count = 0
        cpu_started = time.process_time()
        for _ in range(max(repeat, 1)):
            started = time.perf_counter()
            extracted = extract(data, server)
            best = min(best, time.perf_counter() - started)
            count = len(extracted)
            del extracted
        cpu = (time.process_time() - cpu_started) / max(repeat, 1)
        print(
            json.dumps(
                {
                    "file": path,
                    "bytes": len(data),
                    "items": count,
                    "best_seconds": best,
                    "mb_per_s": len(data) / 1e6 / best,
                    "items_per_s": count / best,
                    "mean_cpu_seconds": cpu,
                    "peak_rss_bytes": peak_rss_bytes(),
                }
            ),
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
