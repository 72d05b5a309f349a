#!/usr/bin/env bash
# The data-path comparison: plexcache (default SQLite backend, shared mode) against diskcache
# 5.6.3 on the same operations and data, in alternating rounds, then a table of ratios
# (diskcache time / plexcache time; medians of the rounds' medians).
#
#   pip install diskcache==5.6.3
#   benches/python/run_datapath.sh [quick] [ROUNDS]      # output in target/datapath/
set -euo pipefail
cd "$(dirname "$0")/../.."
QUICK="${1:-}"; [ "$QUICK" = "quick" ] || QUICK=""
ROUNDS="${2:-2}"
OUT="$PWD/target/datapath"
mkdir -p "$OUT"
cargo bench -p plexcache-benches --bench datapath --no-run >/dev/null 2>&1
BENCH=(cargo bench -q -p plexcache-benches --bench datapath --)
"${BENCH[@]}" dataset "$OUT/dataset.json"
rm -f "$OUT"/rust-*.jsonl "$OUT"/python-*.jsonl
for r in $(seq 1 "$ROUNDS"); do
    "${BENCH[@]}" $QUICK > "$OUT/rust-$r.jsonl"
    python3 benches/python/diskcache_datapath.py "$OUT/dataset.json" $QUICK > "$OUT/python-$r.jsonl"
done
python3 benches/python/datapath_table.py "$OUT"
