#!/usr/bin/env bash
# Extraction of synthetic /library/sections/1/all responses: plexcache-plex (Rust) against
# python-plexapi (plexapi_baseline.py: ElementTree parse + plexapi objects + key, title and
# locations, what the Python tool kept), on the same XML files, back to back in one run.
#
# usage: benches/python/run_extract_comparison.sh [ITEMS...]      (default: 10000)
#
#   For each ITEMS: write all_ITEMS.xml/.json (plexcache_plex::synthetic, seed 1) to a temp dir;
#   time the Rust extraction of the XML (best of RUST_REPEAT), run plexapi on it (best of
#   PY_REPEAT), time the Rust extraction again (so a load change during the long Python run
#   shows), time the Rust JSON extraction; measure the Rust max RSS (/usr/bin/time -v) of one
#   extraction per process, and its peak heap (counting allocator, examples/extract_peak.rs);
#   plexapi's max RSS is the process's ru_maxrss. A 1-item response gives each process's
#   fixed RSS (binary or interpreter + imports). Then prints a side-by-side table with ratios.
#
# env: RUST_REPEAT (default 20), PY_REPEAT (default 3; 1 for 50000 items and more),
#      PYTHON (default python3), CARGO_TARGET_DIR (honoured by cargo), KEEP=1 keeps the temp dir.
# plexapi runs at a few hundred to a couple of thousand items/s, so 10,000 items take
# 5-30 s per repeat and 50,000 items minutes.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
python=${PYTHON:-python3}
rust_repeat=${RUST_REPEAT:-20}
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(10000)

if ! "$python" -c 'import plexapi' 2>/dev/null; then
    echo "plexapi is not importable with $python: pip install plexapi==4.18.3" >&2
    exit 3
fi

cd "$root"
echo "== building the Rust examples (release)" >&2
cargo build --release -q -p plexcache-benches --example extract_file --example extract_peak
target=$(cargo metadata --format-version 1 --no-deps |
    "$python" -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
bin="$target/release/examples"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/plexcache-extract.XXXXXX")
if [ "${KEEP:-0}" = 1 ]; then
    echo "== keeping $tmp" >&2
else
    trap 'rm -rf "$tmp"' EXIT
fi

timev=""
if [ -x /usr/bin/time ] && /usr/bin/time -v true 2>/dev/null; then
    timev=/usr/bin/time
fi
# max_rss_kb CMD...: runs CMD with its stdout to "$out", prints its max RSS in KiB (or -1).
max_rss_kb() {
    if [ -n "$timev" ]; then
        "$timev" -v -o "$tmp/time.txt" "$@" >"$out"
        awk -F': ' '/Maximum resident set size/ {print $2}' "$tmp/time.txt"
    else
        "$@" >"$out"
        echo -1
    fi
}

{
    echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    echo "nproc: $(nproc)"
    echo "cpu: $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo 2>/dev/null || true)"
    echo "memory (free -g):"
    free -g
    echo "rustc: $(rustc --version)"
    echo "python: $("$python" --version 2>&1), plexapi $("$python" -c 'import plexapi; print(plexapi.VERSION)')"
    echo "load at start: $(uptime)"
} >"$tmp/machine.txt"
cat "$tmp/machine.txt"

"$bin/extract_file" write "$tmp" 1 "${sizes[@]}" >&2

# The fixed cost of each process: a 1-item response.
out="$tmp/rust_rss_1.json"
echo "$(max_rss_kb "$bin/extract_file" time --repeat 1 "$tmp/all_1.xml")" >"$tmp/rust_rss_1.kb"
out="$tmp/py_1.json"
max_rss_kb "$python" "$here/plexapi_baseline.py" --repeat 1 "$tmp/all_1.xml" >/dev/null

for n in "${sizes[@]}"; do
    xml="$tmp/all_$n.xml"
    json="$tmp/all_$n.json"
    py_repeat=${PY_REPEAT:-$([ "$n" -ge 50000 ] && echo 1 || echo 3)}
    echo "== $n items: Rust XML" >&2
    "$bin/extract_file" time --repeat "$rust_repeat" "$xml" >"$tmp/rust_xml_a_$n.json"
    echo "== $n items: plexapi XML (best of $py_repeat; load before: $(cut -d' ' -f1-3 /proc/loadavg))" >&2
    out="$tmp/py_$n.json"
    echo "$(max_rss_kb "$python" "$here/plexapi_baseline.py" --repeat "$py_repeat" "$xml")" >"$tmp/py_rss_$n.kb"
    echo "== $n items: Rust XML again, Rust JSON (load: $(cut -d' ' -f1-3 /proc/loadavg))" >&2
    "$bin/extract_file" time --repeat "$rust_repeat" "$xml" >"$tmp/rust_xml_b_$n.json"
    "$bin/extract_file" time --repeat "$rust_repeat" "$json" >"$tmp/rust_json_$n.json"
    echo "== $n items: Rust peak memory" >&2
    for f in xml json; do
        # Max RSS of one extraction with the system allocator, then the counted peak heap.
        out="$tmp/rust_rss_run_${f}_$n.json"
        echo "$(max_rss_kb "$bin/extract_file" time --repeat 1 "$tmp/all_$n.$f")" >"$tmp/rust_rss_${f}_$n.kb"
        "$bin/extract_peak" --json --file "$tmp/all_$n.$f" >"$tmp/rust_peak_${f}_$n.json"
    done
done
echo "load at end: $(uptime)" | tee -a "$tmp/machine.txt"
echo

"$python" - "$tmp" "${sizes[@]}" <<'EOF'
import json, sys

tmp, sizes = sys.argv[1], sys.argv[2:]


def load(name):
    with open(f"{tmp}/{name}") as f:
        return json.loads(f.read().strip().splitlines()[-1])


def kb(name):
    with open(f"{tmp}/{name}") as f:
        v = int(f.read().strip() or -1)
    return v * 1024 if v >= 0 else None


def mb(b):
    return "n/a" if b is None else f"{b / 1e6:.1f}"


rust_fixed = kb("rust_rss_1.kb")
py_fixed = load("py_1.json")["peak_rss_bytes"]
print(f"fixed max RSS of a 1-item run: Rust {mb(rust_fixed)} MB, Python+plexapi {mb(py_fixed)} MB\n")

head = (f"{'items':>6} {'format':<6} {'implementation':<36} {'MB':>6} {'best s':>8} {'MB/s':>7} "
        f"{'items/s':>8} {'CPU s/run':>9} {'max RSS MB':>10}")
print(head)
print("-" * len(head))
for n in sizes:
    a, b = load(f"rust_xml_a_{n}.json"), load(f"rust_xml_b_{n}.json")
    rj = load(f"rust_json_{n}.json")
    py = load(f"py_{n}.json")
    rust = a if a["best_seconds"] <= b["best_seconds"] else b
    peak = {f: load(f"rust_peak_{f}_{n}.json") for f in ("xml", "json")}
    rss = {f: kb(f"rust_rss_{f}_{n}.kb") for f in ("xml", "json")}
    py_rss = py["peak_rss_bytes"]
    if py["items"] != rust["items"]:
        print(f"WARNING: plexapi found {py['items']} items, Rust {rust['items']}")
    rows = [
        ("XML", "plexcache-plex extract_items", rust, rss["xml"]),
        ("XML", "python-plexapi 4.18 + key/title/locs", py, py_rss),
        ("JSON", "plexcache-plex extract_items", rj, rss["json"]),
    ]
    for fmt, name, r, m in rows:
        cpu = r.get("mean_cpu_seconds")
        cpu = "n/a" if cpu is None else f"{cpu:.4f}"
        print(f"{n:>6} {fmt:<6} {name:<36} {r['bytes'] / 1e6:>6.1f} {r['best_seconds']:>8.4f} "
              f"{r['mb_per_s']:>7.1f} {r['items_per_s']:>8.0f} {cpu:>9} {mb(m):>10}")
    speed = py["best_seconds"] / rust["best_seconds"]
    print(f"{'':>6} XML speed-up plexapi/Rust: {speed:.0f}x (target >= 10x: "
          f"{'met' if speed >= 10 else 'NOT met'}); Rust XML runs before/after plexapi: "
          f"{a['best_seconds']:.4f} s / {b['best_seconds']:.4f} s")
    if rust.get("mean_cpu_seconds") and py.get("mean_cpu_seconds"):
        rust_cpu = min(x["mean_cpu_seconds"] for x in (a, b) if x.get("mean_cpu_seconds"))
        print(f"{'':>6} XML CPU time per run plexapi/Rust: {py['mean_cpu_seconds'] / rust_cpu:.0f}x")
    if rss["xml"] is not None:
        print(f"{'':>6} XML max RSS plexapi/Rust: {py_rss / rss['xml']:.1f}x; above the 1-item run: "
              f"{(py_rss - py_fixed) / max(rss['xml'] - (rust_fixed or 0), 1):.1f}x")
    for f in ("xml", "json"):
        p = peak[f]
        print(f"{'':>6} {f.upper():<4} memory (counting allocator): response {mb(p['response_bytes'])} MB + "
              f"peak heap above it {mb(p['peak_above_baseline_bytes'])} MB = {mb(p['total_peak_bytes'])} MB; "
              f"extracted {mb(p['extracted_heap_bytes'])} MB heap ({mb(p['postcard_bytes'])} MB postcard); "
              f"target <= response + 2 x extracted = {mb(p['budget_bytes'])} MB (heap sizes): "
              f"{'met' if p['within_budget'] else 'NOT met'}; {mb(p['budget_postcard_bytes'])} MB "
              f"(postcard sizes): {'met' if p['within_budget_postcard'] else 'NOT met'}")
    print()
EOF
