#!/bin/sh
# Writes the seed corpus of the `sqlite_open` fuzz target: small real plexcache databases
# (empty, a few entries with and without TTLs, the exclusive mode, a library's keys) into
# fuzz/seeds/sqlite_open. Then, in fuzz/:
#   mkdir -p corpus/sqlite_open
#   cargo +nightly fuzz run -O sqlite_open corpus/sqlite_open seeds/sqlite_open -- -max_total_time=600
set -eu
cd "$(dirname "$0")/.."
PLEXCACHE_SEED_DIR="$PWD/fuzz/seeds/sqlite_open" \
    cargo test -p plexcache-tests --test corruption -- --ignored --exact write_sqlite_open_fuzz_seeds --nocapture
