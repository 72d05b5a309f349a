#!/usr/bin/env python3
"""Counts the WAL frames (pages) one committed small write adds, for a bare key/value table
and for plexcache's SQLite schema (crates/sqlite/src/schema.rs) with the statements a put
runs: the structural cost of a small write that docs/benchmarks.md refers to.

    python3 benches/python/wal_frames.py
"""
import os
import random
import sqlite3
import tempfile

PLEXCACHE_SCHEMA = """
CREATE TABLE entries (key TEXT NOT NULL UNIQUE, stored_at INTEGER NOT NULL,
    expires_at INTEGER, accessed_at INTEGER NOT NULL, access_count INTEGER NOT NULL,
    size INTEGER NOT NULL, seq INTEGER NOT NULL, total_entries INTEGER NOT NULL,
    total_bytes INTEGER NOT NULL, total_seq INTEGER NOT NULL, value BLOB NOT NULL);
CREATE INDEX entries_expiry ON entries (expires_at, seq) WHERE expires_at IS NOT NULL;
"""
BARE_SCHEMA = "CREATE TABLE t (key TEXT PRIMARY KEY, value BLOB NOT NULL);"
# Schema version 2, for comparison: a counters row and a store-order index.
V2_SCHEMA = """
CREATE TABLE entries (key TEXT PRIMARY KEY NOT NULL, stored_at INTEGER NOT NULL,
    expires_at INTEGER, accessed_at INTEGER NOT NULL, access_count INTEGER NOT NULL,
    size INTEGER NOT NULL, seq INTEGER NOT NULL, value BLOB NOT NULL);
CREATE INDEX entries_expiry ON entries (expires_at, seq) WHERE expires_at IS NOT NULL;
CREATE INDEX entries_lrs ON entries (stored_at, seq);
CREATE TABLE counters (id INTEGER PRIMARY KEY CHECK (id = 1), entries INTEGER NOT NULL,
    bytes INTEGER NOT NULL, seq INTEGER NOT NULL);
INSERT INTO counters VALUES (1, 0, 0, 0);
"""
SLOT_BITS = 20


def put_plexcache(c, key, value, now):
    """A put as crates/sqlite/src/store.rs runs it (no expiry, no limit): one read statement,
    the replaced row's delete, the insert with the counters, in one transaction."""
    c.execute("BEGIN IMMEDIATE")
    old_id, old_size, newest, entries, size, seq, _ = c.execute(
        "SELECT (SELECT rowid FROM entries WHERE key = ?1),"
        " (SELECT size FROM entries WHERE key = ?1),"
        " n.rowid, n.total_entries, n.total_bytes, n.total_seq,"
        " EXISTS (SELECT 1 FROM entries WHERE expires_at <= ?2)"
        " FROM (SELECT max(rowid) AS id FROM entries) m LEFT JOIN entries n ON n.rowid = m.id",
        (key, now),
    ).fetchone()
    entries, size, seq = entries or 0, size or 0, seq or 0
    if old_id is not None:
        c.execute("DELETE FROM entries WHERE rowid = ?", (old_id,))
        size -= old_size
    else:
        entries += 1
    n = len(key) + len(value)
    start = now << SLOT_BITS
    rowid = newest + 1 if newest is not None and newest >= start else start
    c.execute(
        "INSERT INTO entries (rowid, key, stored_at, expires_at, accessed_at, access_count,"
        " size, seq, total_entries, total_bytes, total_seq, value)"
        " VALUES (?1, ?2, ?3, NULL, ?3, 0, ?4, ?5, ?6, ?7, ?5, ?8)",
        (rowid, key, now, n, seq + 1, entries, size + n, value),
    )
    c.execute("COMMIT")


def put_v2(c, key, value, now):
    """A put of schema version 2: reads, the counters row update, the upsert."""
    c.execute("BEGIN IMMEDIATE")
    old, entries, size, seq, _ = c.execute(
        "SELECT (SELECT size FROM entries WHERE key = ?1), entries, bytes, seq,"
        " EXISTS (SELECT 1 FROM entries WHERE expires_at <= ?2) FROM counters WHERE id = 1",
        (key, now),
    ).fetchone()
    n = len(key) + len(value)
    c.execute(
        "UPDATE counters SET entries = ?1, bytes = ?2, seq = ?3 WHERE id = 1",
        (entries + (old is None), size - (old or 0) + n, seq + 1),
    )
    c.execute(
        "INSERT INTO entries (key, stored_at, expires_at, accessed_at, access_count, size, seq,"
        " value) VALUES (?1, ?2, NULL, ?2, 0, ?3, ?4, ?5) ON CONFLICT (key) DO UPDATE SET"
        " stored_at = excluded.stored_at, accessed_at = excluded.accessed_at, access_count = 0,"
        " size = excluded.size, seq = excluded.seq, value = excluded.value",
        (key, now, n, seq + 1, value),
    )
    c.execute("COMMIT")


def put_bare(c, key, value, now):
    c.execute("INSERT OR REPLACE INTO t (key, value) VALUES (?, ?)", (key, value))


def frames(schema, put, rewrite, n=3000, m=2000):
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "x.db")
        c = sqlite3.connect(path, isolation_level=None)
        c.execute("PRAGMA journal_mode = WAL")
        c.execute("PRAGMA synchronous = NORMAL")
        c.execute("PRAGMA wal_autocheckpoint = 0")
        c.executescript(schema)
        value = os.urandom(300)
        rng = random.Random(7)
        for i in range(n):
            put(c, f"search:Movies:title {i}", value, i)
        c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        for j in range(m):
            i = rng.randrange(n) if rewrite else n + j
            put(c, f"search:Movies:title {i}", value, n + j)
        page = c.execute("PRAGMA page_size").fetchone()[0]
        return os.path.getsize(path + "-wal") / (page + 24) / m


for rewrite in (False, True):
    what = "rewrite of an existing key" if rewrite else "new key"
    bare = frames(BARE_SCHEMA, put_bare, rewrite)
    ours = frames(PLEXCACHE_SCHEMA, put_plexcache, rewrite)
    v2 = frames(V2_SCHEMA, put_v2, rewrite)
    print(
        f"{what}: bare table {bare:.1f} frames per commit, plexcache schema {ours:.1f}"
        f" (schema version 2: {v2:.1f})"
    )
