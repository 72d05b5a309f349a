//! The synchronous operations: one function per backend operation, on a reader or on the
//! writer connection. Every write runs in one `BEGIN IMMEDIATE` transaction that also keeps
//! the cache-wide counters ([`Totals`]), retried as a whole on `SQLITE_BUSY`/`SQLITE_LOCKED`.
//!
//! The layout serves the small write: rowid order is store order ([`allocate_rowids`]), so
//! the least-recently-stored order needs no index, and the counters live in the newest row,
//! so a put writes them with its own row. A new key's commit touches the pages of its row and
//! of the key index, as a bare key/value table's would.

use std::time::Instant;

use std::collections::HashSet;

use plexcache_core::{
    Access, Batch, BatchOutcome, Bytes, Counters, Entry, EntryMeta, Error, EvictionPolicy, Millis,
    PutOutcome, Removed, Result, Revalidated, Usage, WriteLimit,
};
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OptionalExtension, params};

use crate::prefix::successor;
use crate::schema::wal_path;

pub(crate) use crate::ctx::{Ctx, NAME, classify, immediate, is_busy};

/// u64 -> INTEGER, saturating (times and counters never get near it).
pub(crate) fn to_sql(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// INTEGER -> u64 (negative values, which plexcache never writes, read as 0).
pub(crate) fn from_sql(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn meta_at(row: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<EntryMeta> {
    Ok(EntryMeta {
        stored_at: from_sql(row.get(i)?),
        expires_at: row.get::<_, Option<i64>>(i + 1)?.map(from_sql),
        accessed_at: from_sql(row.get(i + 2)?),
        access_count: from_sql(row.get(i + 3)?),
        size: from_sql(row.get(i + 4)?),
    })
}

const PREVIOUS_SQL: &str = "SELECT rowid, size FROM entries WHERE key = ?1";
const REMOVE_RANGE_SQL: &str = "DELETE FROM entries WHERE key >= ?1 AND key < ?2 RETURNING size";
const REMOVE_FROM_SQL: &str = "DELETE FROM entries WHERE key >= ?1 RETURNING size";
const ANY_EXPIRED_SQL: &str = "SELECT 1 FROM entries WHERE expires_at <= ?1 LIMIT 1";
const PURGE_SQL: &str =
    "SELECT rowid, size FROM entries WHERE expires_at <= ?1 ORDER BY expires_at, seq LIMIT ?2";
const EVICT_LRS_SQL: &str = "SELECT rowid, size, key FROM entries ORDER BY rowid LIMIT ?1";
const EVICT_LRU_SQL: &str =
    "SELECT rowid, size, key FROM entries ORDER BY accessed_at, seq LIMIT ?1";
const EVICT_LFU_SQL: &str =
    "SELECT rowid, size, key FROM entries ORDER BY access_count, accessed_at, seq LIMIT ?1";
const KEYS_RANGE_SQL: &str = "SELECT key FROM entries WHERE key >= ?1 AND key < ?2
                 AND (expires_at IS NULL OR expires_at > ?3) ORDER BY key LIMIT ?4";
/// `key < X''`: every text sorts before every blob, so a damaged row whose key is a blob (no
/// `get` can ask for it) is left out of the listing instead of failing it.
const KEYS_FROM_SQL: &str = "SELECT key FROM entries WHERE key >= ?1 AND key < X''
                 AND (expires_at IS NULL OR expires_at > ?2) ORDER BY key LIMIT ?3";
const ACCESS_SQL: &str = "UPDATE entries SET accessed_at = max(accessed_at, ?2),
             access_count = CASE WHEN access_count > 9223372036854775807 - ?3
                                 THEN 9223372036854775807 ELSE access_count + ?3 END
         WHERE key = ?1";

const META: &str = "stored_at, expires_at, accessed_at, access_count, size";

/// A point read.
pub(crate) enum Fetched {
    /// The entry, value included.
    Entry(Entry),
    /// The entry exists and is live, but its value is larger than the inline limit: read it
    /// again off the runtime.
    TooLargeForInline,
}

/// Values at most this long are read with the row; longer ones with blob I/O straight into
/// their buffer (one copy instead of two, and no allocation inside SQLite).
const BLOB_READ_MIN: u64 = 16 * 1024;

/// `get`: the live entry for `key`, with its value if it is at most `inline_limit` bytes.
pub(crate) fn get(
    conn: &Connection,
    key: &str,
    now: Millis,
    inline_limit: u64,
) -> rusqlite::Result<Option<Fetched>> {
    let small = inline_limit.min(BLOB_READ_MIN);
    match head_row(conn, key, now, small)? {
        None => Ok(None),
        Some(Head {
            meta,
            value: Some(value),
            ..
        }) => Ok(Some(Fetched::Entry(Entry { value, meta }))),
        Some(head) if head.meta.size > inline_limit => Ok(Some(Fetched::TooLargeForInline)),
        Some(_) => {
            // Row and blob in one read transaction, so both see the same version of the row.
            let tx = if conn.is_autocommit() {
                Some(conn.unchecked_transaction()?)
            } else {
                None
            };
            let out = match head_row(conn, key, now, small)? {
                None => None,
                Some(Head {
                    meta,
                    value: Some(value),
                    ..
                }) => Some(Fetched::Entry(Entry { value, meta })),
                Some(head) => {
                    let value = read_blob(conn, &head)?;
                    Some(Fetched::Entry(Entry {
                        value,
                        meta: head.meta,
                    }))
                }
            };
            if let Some(tx) = tx {
                tx.commit()?;
            }
            Ok(out)
        }
    }
}

/// The whole value of an entry, read with blob I/O into a buffer of its exact length.
fn read_blob(conn: &Connection, head: &Head) -> rusqlite::Result<Bytes> {
    let blob = open_value(conn, head)?;
    let mut buf = vec![0u8; blob.len()];
    blob.read_at_exact(&mut buf, 0)?;
    Ok(Bytes::from(buf))
}

/// Values at least this long are stored out of line, in `blobs`, the entry's `blob` column
/// naming their row (see `schema::CREATE_ENTRIES`): the entry's row stays small, so updating
/// its metadata, its rowid or the counters it may carry never copies the value, and the value
/// is written with blob I/O (no copy of it inside SQLite) and, when it replaces one of the
/// same length, only where its bytes differ.
pub(crate) const OUT_OF_LINE_MIN: usize = 16 * 1024;

/// The value column to store for `value`: the bytes, or NULL when they go out of line.
fn inline_part(value: &[u8]) -> Option<&[u8]> {
    (value.len() < OUT_OF_LINE_MIN).then_some(value)
}

/// Opens the value of an entry for reading with blob I/O, where it is stored. An entry whose
/// out-of-line value is missing is reported as a damaged database.
fn open_value<'c>(conn: &'c Connection, head: &Head) -> rusqlite::Result<rusqlite::blob::Blob<'c>> {
    let Some(blob) = head.blob else {
        return conn.blob_open(rusqlite::MAIN_DB, "entries", "value", head.rowid, true);
    };
    match conn.blob_open(rusqlite::MAIN_DB, "blobs", "value", blob, true) {
        Ok(b) => Ok(b),
        Err(e) => {
            // Only on failure: is the row there at all?
            let present: bool = conn
                .prepare_cached("SELECT EXISTS (SELECT 1 FROM blobs WHERE id = ?1)")?
                .query_row([blob], |r| r.get(0))?;
            if present {
                return Err(e);
            }
            Err(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CORRUPT),
                Some(format!("the value of entry {} is missing", head.rowid)),
            ))
        }
    }
}

/// Stores `value` out of line and returns its row in `blobs`. `old` is the blob it replaces,
/// if any: one of the same length is compared in chunks and only the chunks that differ are
/// written (rewriting an unchanged value dirties no page), and it keeps its row; otherwise a
/// zero blob of the right length is stored and filled.
fn write_blob(tx: &Connection, value: &[u8], old: Option<i64>) -> rusqlite::Result<i64> {
    const CHUNK: usize = 4096;
    if let Some(old) = old {
        let len: Option<i64> = tx
            .prepare_cached("SELECT length(value) FROM blobs WHERE id = ?1")?
            .query_row([old], |r| r.get(0))
            .optional()?;
        if len.is_some_and(|n| usize::try_from(n).ok() == Some(value.len())) {
            let mut blob = tx.blob_open(rusqlite::MAIN_DB, "blobs", "value", old, false)?;
            let mut was = [0u8; CHUNK];
            for (i, new) in value.chunks(CHUNK).enumerate() {
                let at = i * CHUNK;
                let was = &mut was[..new.len()];
                blob.read_at_exact(was, at)?;
                if was != new {
                    blob.write_at(new, at)?;
                }
            }
            return Ok(old);
        }
    }
    tx.prepare_cached("INSERT INTO blobs (value) VALUES (zeroblob(?1))")?
        .execute([to_sql(value.len() as u64)])?;
    let id = tx.last_insert_rowid();
    tx.blob_open(rusqlite::MAIN_DB, "blobs", "value", id, false)?
        .write_at(value, 0)?;
    Ok(id)
}

/// What [`get_if_changed`] found without leaving the calling thread.
pub(crate) enum Checked {
    /// No live entry.
    Gone,
    /// The value has the caller's length and head.
    Same(EntryMeta),
    /// A value small enough to read inline, and different.
    Changed(Entry),
    /// A large value that differs: read it with `get` (which may leave the runtime).
    ChangedLarge,
}

const HEAD_SQL: &str = "SELECT rowid, stored_at, expires_at, accessed_at, access_count, size,
                CASE WHEN size <= ?3 THEN value END, blob
         FROM entries WHERE key = ?1 AND (expires_at IS NULL OR expires_at > ?2)";

/// An entry's row without its value, or with it when it is stored inline and short enough.
struct Head {
    rowid: i64,
    meta: EntryMeta,
    value: Option<Bytes>,
    /// The row of `blobs` holding the value, when it is stored out of line.
    blob: Option<i64>,
}

fn head_row(
    conn: &Connection,
    key: &str,
    now: Millis,
    inline_limit: u64,
) -> rusqlite::Result<Option<Head>> {
    let mut stmt = conn.prepare_cached(HEAD_SQL)?;
    stmt.query_row(params![key, to_sql(now), to_sql(inline_limit)], |row| {
        let value = match row.get_ref(6)? {
            ValueRef::Blob(b) | ValueRef::Text(b) => Some(Bytes::copy_from_slice(b)),
            _ => None,
        };
        Ok(Head {
            rowid: row.get(0)?,
            meta: meta_at(row, 1)?,
            value,
            blob: row.get(7)?,
        })
    })
    .optional()
}

/// `get_if_changed`: a value up to `inline_limit` bytes is read and compared in one statement;
/// a larger one is compared by its length (from `size`) and by its first `head.len()` bytes,
/// read with blob I/O without touching the rest of its overflow pages, both in one read
/// transaction so that they see the same row.
pub(crate) fn get_if_changed(
    conn: &Connection,
    key: &str,
    now: Millis,
    head: &[u8],
    len: u64,
    inline_limit: u64,
) -> rusqlite::Result<Checked> {
    let small = |value: Bytes, meta: EntryMeta| match Revalidated::compare(
        Entry { value, meta },
        head,
        len,
    ) {
        Revalidated::Same(meta) => Checked::Same(meta),
        Revalidated::Changed(entry) => Checked::Changed(entry),
    };
    match head_row(conn, key, now, inline_limit)? {
        None => return Ok(Checked::Gone),
        Some(Head {
            meta,
            value: Some(value),
            ..
        }) => return Ok(small(value, meta)),
        Some(head) if head.meta.size.saturating_sub(key.len() as u64) != len => {
            return Ok(Checked::ChangedLarge);
        }
        Some(_) => {}
    }
    // One read transaction for both reads, unless one is open already (the exclusive mode's
    // batch), which gives the same guarantee.
    let tx = if conn.is_autocommit() {
        Some(conn.unchecked_transaction()?)
    } else {
        None
    };
    let checked = match head_row(conn, key, now, inline_limit)? {
        None => Checked::Gone,
        Some(Head {
            meta,
            value: Some(value),
            ..
        }) => small(value, meta),
        Some(row) => {
            let stored_len = row.meta.size.saturating_sub(key.len() as u64);
            let mut buf = vec![0u8; head.len()];
            if stored_len == len && buf.len() as u64 <= len {
                open_value(conn, &row)?.read_at_exact(&mut buf, 0)?;
            }
            if stored_len == len && buf == head {
                Checked::Same(row.meta)
            } else {
                Checked::ChangedLarge
            }
        }
    };
    if let Some(tx) = tx {
        tx.commit()?;
    }
    Ok(checked)
}

/// Entry count and bytes (see [`Totals`]).
pub(crate) fn usage(conn: &Connection) -> rusqlite::Result<Usage> {
    Ok(totals(conn)?.usage())
}

/// The cache-wide counters: entries, bytes and the write sequence. They are stored in the row
/// with the largest rowid (the newest in store order), whose `total_*` columns are the only
/// ones read; a put writes them with its own row, other writes update that row. An empty
/// table counts zero.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Totals {
    pub(crate) entries: i64,
    pub(crate) bytes: i64,
    pub(crate) seq: i64,
}

impl Totals {
    fn usage(&self) -> Usage {
        Usage {
            entries: from_sql(self.entries),
            bytes: from_sql(self.bytes),
        }
    }

    fn sub(&mut self, removed: &Removed) {
        self.entries = self.entries.saturating_sub(to_sql(removed.entries)).max(0);
        self.bytes = self.bytes.saturating_sub(to_sql(removed.bytes)).max(0);
    }
}

const NEWEST_SQL: &str = "SELECT rowid, total_entries, total_bytes, total_seq, stored_at
     FROM entries ORDER BY rowid DESC LIMIT 1";

/// The newest row: its rowid and `stored_at`, and the counters it holds.
fn newest(conn: &Connection) -> rusqlite::Result<Option<(Newest, Totals)>> {
    conn.prepare_cached(NEWEST_SQL)?
        .query_row([], |r| {
            Ok((
                Newest {
                    rowid: r.get(0)?,
                    stored_at: from_sql(r.get(4)?),
                },
                Totals {
                    entries: r.get(1)?,
                    bytes: r.get(2)?,
                    seq: r.get(3)?,
                },
            ))
        })
        .optional()
}

/// The counters (zero for an empty table).
pub(crate) fn totals(conn: &Connection) -> rusqlite::Result<Totals> {
    Ok(newest(conn)?.map(|(_, t)| t).unwrap_or_default())
}

/// The row with the largest rowid.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Newest {
    rowid: i64,
    stored_at: Millis,
}

/// Stores `t` in the newest row (nothing to store in an empty table: it counts zero).
fn set_totals(tx: &Connection, t: &Totals) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "UPDATE entries SET total_entries = ?1, total_bytes = ?2, total_seq = ?3
         WHERE rowid = (SELECT max(rowid) FROM entries)",
    )?
    .execute(params![t.entries, t.bytes, t.seq])?;
    Ok(())
}

/// Rowids encode store order: the high bits are `stored_at` (milliseconds, clamped to
/// `MAX_SLOT_TIME`), the low `SLOT_BITS` the write order among rows stored in the same
/// millisecond. So `ORDER BY rowid` is `ORDER BY stored_at, seq` (the least-recently-stored
/// order of `plexcache_core::backend::eviction_rank`) without an index, and a write at the
/// current time appends at the end of the table.
///
/// One exception, for speed: a rewrite of the newest row keeps its rowid (an update in
/// place, where SQLite skips the pages whose bytes did not change), so the newest row's
/// rowid may lie in an older millisecond's slot than its `stored_at`. It is still the last in
/// store order; [`allocate_rowids`] moves it to its own slot before any other row is placed,
/// so every other row is always in its slot.
const SLOT_BITS: u32 = 20;
/// The largest `stored_at` with a slot of its own (about the year 2248).
const MAX_SLOT_TIME: u64 = (1 << (63 - SLOT_BITS)) - 1;

/// The first of `n` consecutive free rowids for rows stored at `stored_at`, after every row
/// stored in the same millisecond. `newest` is the newest row as read in this transaction
/// (it may have been deleted since: its rowid is still a safe bound). A newest row kept in
/// place by a rewrite is first moved to its own slot. When the millisecond's slot cannot
/// take `n` more (more than a million rows stored in one millisecond, which only a frozen
/// test clock or a huge batch produces), the rows go after all others: still unique, ordered
/// as if stored last. Returns the first rowid and the newest row's rowid after the move.
pub(crate) fn allocate_rowids(
    tx: &Connection,
    stored_at: Millis,
    n: u64,
    newest: Option<Newest>,
) -> rusqlite::Result<(i64, Option<i64>)> {
    let newest = match newest {
        Some(nw) => {
            let own = slot_start(nw.stored_at);
            if own > nw.rowid {
                // Free: larger than every rowid in the table.
                tx.prepare_cached("UPDATE entries SET rowid = ?1 WHERE rowid = ?2")?
                    .execute([own, nw.rowid])?;
                Some(own)
            } else {
                Some(nw.rowid)
            }
        }
        None => None,
    };
    let start = slot_start(stored_at);
    let end = start.saturating_add(1 << SLOT_BITS);
    let last_in_slot = match newest {
        // The common case: nothing stored later than this millisecond.
        Some(id) if id < end => Some(id),
        None => None,
        Some(_) => tx
            .prepare_cached("SELECT max(rowid) FROM entries WHERE rowid < ?1")?
            .query_row([end], |r| r.get::<_, Option<i64>>(0))?,
    };
    let base = match last_in_slot {
        Some(id) if id >= start => id.saturating_add(1),
        _ => start,
    };
    if base.saturating_add(to_sql(n)) <= end {
        return Ok((base, newest));
    }
    Ok((
        newest.map_or(base, |id| id.saturating_add(1)).max(base),
        newest,
    ))
}

/// The first rowid of the millisecond `stored_at`.
fn slot_start(stored_at: Millis) -> i64 {
    to_sql(stored_at.min(MAX_SLOT_TIME) << SLOT_BITS)
}

/// What a put reads before it writes: the row it replaces (rowid and size, expired or not),
/// the newest row and the counters, and whether any entry is expired at `now`.
struct PutReads {
    old: Option<(i64, i64)>,
    newest: Option<Newest>,
    totals: Totals,
    any_expired: bool,
}

/// The key's row is looked up by scalar subqueries: written as a `LEFT JOIN` on the key,
/// SQLite compiled the statement again on every call.
const PUT_READS_SQL: &str =
    "SELECT (SELECT rowid FROM entries WHERE key = ?1), (SELECT size FROM entries WHERE key = ?1),
            n.rowid, n.total_entries, n.total_bytes, n.total_seq,
            EXISTS (SELECT 1 FROM entries WHERE expires_at <= ?2), n.stored_at
     FROM (SELECT max(rowid) AS id FROM entries) m
     LEFT JOIN entries n ON n.rowid = m.id";

fn put_reads(tx: &Connection, key: &str, now: Millis) -> rusqlite::Result<PutReads> {
    let mut stmt = tx.prepare_cached(PUT_READS_SQL)?;
    stmt.query_row(params![key, to_sql(now)], |r| {
        let old = match (r.get::<_, Option<i64>>(0)?, r.get::<_, Option<i64>>(1)?) {
            (Some(id), size) => Some((id, size.unwrap_or(0))),
            _ => None,
        };
        let newest = match r.get::<_, Option<i64>>(2)? {
            Some(rowid) => Some(Newest {
                rowid,
                stored_at: from_sql(r.get(7)?),
            }),
            None => None,
        };
        let totals = match newest {
            Some(_) => Totals {
                entries: r.get(3)?,
                bytes: r.get(4)?,
                seq: r.get(5)?,
            },
            None => Totals::default(),
        };
        Ok(PutReads {
            old,
            newest,
            totals,
            any_expired: r.get(6)?,
        })
    })
}

fn delete_row(tx: &Connection, rowid: i64) -> rusqlite::Result<bool> {
    Ok(tx
        .prepare_cached("DELETE FROM entries WHERE rowid = ?1")?
        .execute([rowid])?
        > 0)
}

/// `put` inside a write transaction: the bounded purge, the write and the eviction down to
/// the limit (see [`WriteLimit`]). `build_indexes`: the LRU/LFU indexes may be missing; they
/// are built before an eviction in those orders (the first one scans the table).
pub(crate) fn put(
    tx: &Connection,
    key: &str,
    value: &[u8],
    stored_at: Millis,
    expires_at: Option<Millis>,
    limit: WriteLimit,
    build_indexes: bool,
) -> rusqlite::Result<PutOutcome> {
    let (outcome, row) = put_counted(
        tx,
        key,
        value.len(),
        stored_at,
        expires_at,
        limit,
        build_indexes,
    )?;
    if let Some(row) = row {
        row.write(tx, key, value)?;
    }
    Ok(outcome)
}

/// Deletes up to `limit.purge` entries expired at `limit.now`, skipping the statement when
/// none is. The counters are the caller's to update.
fn delete_expired_for(tx: &Connection, limit: &WriteLimit) -> rusqlite::Result<Removed> {
    if limit.purge == 0 || !any_expired(tx, limit.now)? {
        return Ok(Removed::default());
    }
    delete_expired(tx, limit.now, limit.purge)
}

/// A page cache large enough for a batch's transaction, for as long as it is alive: a
/// transaction whose dirty pages outgrow the cache spills them to the WAL and reads them back,
/// which costs a large batch more than writing it. The cache grows only as pages are used, and
/// the connection's own size comes back on drop (SQLite then frees the pages above it).
struct BatchCache<'c> {
    conn: &'c Connection,
    /// `PRAGMA cache_size` before (negative: KiB; positive: pages).
    before: i64,
}

impl<'c> BatchCache<'c> {
    /// The most a batch's cache grows to.
    const MAX_KIB: i64 = 256 * 1024;

    fn fit(
        conn: &'c Connection,
        puts: &[&plexcache_core::BatchPut],
    ) -> rusqlite::Result<Option<Self>> {
        // Each entry's row and key index entry, with room for half-full pages.
        let bytes = puts.iter().fold(0u64, |n, p| {
            n.saturating_add(2 * p.key.len() as u64 + p.value.len() as u64 + 64)
        });
        let want = i64::try_from(bytes.saturating_mul(3) / 2 / 1024)
            .unwrap_or(i64::MAX)
            .min(Self::MAX_KIB);
        let before: i64 = conn.query_row("PRAGMA cache_size", [], |r| r.get(0))?;
        let page_kib: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get::<_, i64>(0))? / 1024;
        let now_kib = if before < 0 {
            before.saturating_neg()
        } else {
            before.saturating_mul(page_kib.max(1))
        };
        if want <= now_kib {
            return Ok(None);
        }
        conn.execute_batch(&format!("PRAGMA cache_size = -{want}"))?;
        Ok(Some(Self { conn, before }))
    }
}

impl Drop for BatchCache<'_> {
    fn drop(&mut self) {
        // A pragma that only sets a number; if it failed, the larger cache stays, which is
        // harmless.
        let _ = self
            .conn
            .execute_batch(&format!("PRAGMA cache_size = {}", self.before));
    }
}

/// `write_batch` inside a write transaction. Returns the outcome and whether to commit: a
/// refused batch is rolled back by the caller.
pub(crate) fn write_batch(
    tx: &Connection,
    batch: &Batch,
    limit: WriteLimit,
) -> rusqlite::Result<(BatchOutcome, bool)> {
    let (newest_row, mut t) = match newest(tx)? {
        Some((nw, t)) => (Some(nw), t),
        None => (None, Totals::default()),
    };
    let before = t.usage();
    let puts = batch.effective_puts();
    let own_keys: HashSet<&str> = puts.iter().map(|p| p.key.as_str()).collect();
    let own: u64 = puts
        .iter()
        .map(|p| plexcache_core::backend::entry_size(&p.key, p.value.len()))
        .fold(0u64, u64::saturating_add);
    if limit.policy != EvictionPolicy::None && own > limit.max_bytes {
        return Ok((BatchOutcome::Refused { usage: before }, false));
    }
    let expired = delete_expired_for(tx, &limit)?;
    t.sub(&expired);
    let mut removed = Removed::default();
    for prefix in &batch.remove_prefixes {
        removed.add(delete_prefix(tx, prefix)?);
    }
    t.sub(&removed);
    let _cache = BatchCache::fit(tx, &puts)?;
    let (base_id, _) = allocate_rowids(tx, batch.stored_at, puts.len() as u64, newest_row)?;
    let base_seq = t.seq;
    {
        let mut previous = tx.prepare_cached(PREVIOUS_SQL)?;
        let mut insert = tx.prepare_cached(INSERT_SQL)?;
        // Written in store order (each entry's rowid and `seq` are its position in the
        // batch), so the rows are appended to the table; the key index takes them in any
        // order, which costs less than filling the larger table out of order.
        for (i, put) in puts.iter().enumerate() {
            let key = put.key.as_str();
            let size = plexcache_core::backend::entry_size(key, put.value.len());
            // A key under a prefix this batch removed is gone: no need to look.
            let old: Option<(i64, i64)> = if batch
                .remove_prefixes
                .iter()
                .any(|p| key.starts_with(p.as_str()))
            {
                None
            } else {
                previous
                    .query_row([key], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()?
            };
            if let Some((old_id, old_size)) = old {
                delete_row(tx, old_id)?;
                t.bytes = t.bytes.saturating_sub(old_size);
            } else {
                t.entries = t.entries.saturating_add(1);
            }
            t.bytes = t.bytes.saturating_add(to_sql(size));
            let pos = i64::try_from(i).unwrap_or(i64::MAX);
            let row = PendingRow {
                rowid: base_id.saturating_add(pos),
                stored_at: batch.stored_at,
                expires_at: put.expires_at,
                size,
                seq: base_seq.saturating_add(pos).saturating_add(1),
                // The counters are stored once the batch is written.
                totals: Totals::default(),
                newest: true,
                in_place: false,
            };
            row.insert_with(tx, &mut insert, key, &put.value)?;
        }
    }
    t.seq = base_seq.saturating_add(to_sql(puts.len() as u64));
    if limit.policy == EvictionPolicy::None && from_sql(t.bytes) > limit.max_bytes {
        return Ok((BatchOutcome::Refused { usage: before }, false));
    }
    let mut evicted = Removed::default();
    if from_sql(t.bytes) > limit.max_bytes {
        if limit.policy.tracks_access() {
            ensure_access_indexes(tx)?;
        }
        evicted = delete_for_space(tx, limit.policy, from_sql(t.bytes), limit.max_bytes, &|k| {
            own_keys.contains(k)
        })?
        .0;
        t.sub(&evicted);
    }
    if from_sql(t.bytes) > limit.max_bytes {
        // Only the batch's own entries are left and they do not fit.
        return Ok((BatchOutcome::Refused { usage: before }, false));
    }
    set_totals(tx, &t)?;
    let outcome = BatchOutcome::Applied {
        removed,
        written: puts.len() as u64,
        expired,
        evicted,
        usage: t.usage(),
    };
    Ok((outcome, true))
}

/// The row a counted `put` still has to write (see [`put_counted`]).
#[derive(Debug, Clone)]
pub(crate) struct PendingRow {
    rowid: i64,
    stored_at: Millis,
    expires_at: Option<Millis>,
    size: u64,
    seq: i64,
    /// The counters after this put, stored in the row.
    totals: Totals,
    /// Whether the row is the newest (largest rowid) when written; if not, the counters are
    /// also stored in the newest row.
    newest: bool,
    /// The replaced row is the newest and is updated in place (same rowid).
    in_place: bool,
}

impl PendingRow {
    /// Writes the entry row of `key` with `value` (the key and bytes that were counted).
    pub(crate) fn write(&self, tx: &Connection, key: &str, value: &[u8]) -> rusqlite::Result<()> {
        if self.in_place {
            return self.update(tx, value);
        }
        self.insert(tx, key, value)?;
        if !self.newest {
            set_totals(tx, &self.totals)?;
        }
        Ok(())
    }

    /// Rewrites the row `rowid` (the same key) in place.
    fn update(&self, tx: &Connection, value: &[u8]) -> rusqlite::Result<()> {
        // A replaced out-of-line value that is not reused goes with the `blob` column's
        // update (trigger `entries_blob_replaced`).
        let blob = if value.len() >= OUT_OF_LINE_MIN {
            let old: Option<i64> = tx
                .prepare_cached("SELECT blob FROM entries WHERE rowid = ?1")?
                .query_row([self.rowid], |r| r.get(0))
                .optional()?
                .flatten();
            Some(write_blob(tx, value, old)?)
        } else {
            None
        };
        let mut update = tx.prepare_cached(UPDATE_SQL)?;
        self.execute(&mut update, blob, value, None)
    }

    fn insert(&self, tx: &Connection, key: &str, value: &[u8]) -> rusqlite::Result<()> {
        let mut insert = tx.prepare_cached(INSERT_SQL)?;
        self.insert_with(tx, &mut insert, key, value)
    }

    /// [`PendingRow::insert`] with the statement prepared (from [`INSERT_SQL`]) by the caller,
    /// for a batch's many rows.
    fn insert_with(
        &self,
        tx: &Connection,
        insert: &mut rusqlite::Statement<'_>,
        key: &str,
        value: &[u8],
    ) -> rusqlite::Result<()> {
        let blob = if value.len() >= OUT_OF_LINE_MIN {
            Some(write_blob(tx, value, None)?)
        } else {
            None
        };
        self.execute(insert, blob, value, Some(key))
    }

    /// Runs [`UPDATE_SQL`] (`key: None`) or [`INSERT_SQL`] for this row: both number its
    /// columns alike, and an insert binds the key as `?11`.
    fn execute(
        &self,
        stmt: &mut rusqlite::Statement<'_>,
        blob: Option<i64>,
        value: &[u8],
        key: Option<&str>,
    ) -> rusqlite::Result<()> {
        let (stored_at, size) = (to_sql(self.stored_at), to_sql(self.size));
        let (expires_at, inline) = (self.expires_at.map(to_sql), inline_part(value));
        let key_text = key.unwrap_or_default();
        let columns: [&dyn rusqlite::ToSql; 11] = [
            &self.rowid,
            &stored_at,
            &expires_at,
            &size,
            &self.seq,
            &self.totals.entries,
            &self.totals.bytes,
            &self.totals.seq,
            &blob,
            &inline,
            &key_text,
        ];
        let bound = if key.is_some() { 11 } else { 10 };
        stmt.execute(&columns[..bound])?;
        Ok(())
    }
}

const UPDATE_SQL: &str = "UPDATE entries SET stored_at = ?2, expires_at = ?3, accessed_at = ?2,
             access_count = 0, size = ?4, seq = ?5, total_entries = ?6, total_bytes = ?7,
             total_seq = ?8, blob = ?9, value = ?10
         WHERE rowid = ?1";

const INSERT_SQL: &str = "INSERT INTO entries (rowid, stored_at, expires_at, accessed_at,
             access_count, size, seq, total_entries, total_bytes, total_seq, blob, value, key)
         VALUES (?1, ?2, ?3, ?2, 0, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)";

/// The accounting half of `put`: reads the replaced entry, refuses when `max_bytes` would be
/// exceeded, and otherwise deletes the replaced row, purges and evicts down to the limit
/// (before the new row exists, so it cannot be a victim), and returns the outcome and the row
/// still to write, with the counters after the put. The row must be written in the same
/// transaction before any other statement reads or changes the entries (the exclusive mode
/// defers it; see `backend::Inner::drain`).
pub(crate) fn put_counted(
    tx: &Connection,
    key: &str,
    value_len: usize,
    stored_at: Millis,
    expires_at: Option<Millis>,
    limit: WriteLimit,
    build_indexes: bool,
) -> rusqlite::Result<(PutOutcome, Option<PendingRow>)> {
    let max_bytes = (limit.policy == EvictionPolicy::None).then_some(limit.max_bytes);
    let size = plexcache_core::backend::entry_size(key, value_len);
    // The replaced row, the newest row with the counters and whether anything expired, in
    // one statement: a small put is a handful of statements and each one counts.
    let mut reads = put_reads(tx, key, limit.now)?;
    let mut t = reads.totals;
    let mut expired = Removed::default();
    if reads.any_expired && limit.purge > 0 {
        expired = delete_expired(tx, limit.now, limit.purge)?;
        if expired.entries > 0 {
            t.sub(&expired);
            // The purge may have removed `key` itself or the newest row.
            reads = put_reads(tx, key, limit.now)?;
        }
    }
    let previous = reads.old.map(|(_, size)| size);
    let after = t
        .bytes
        .saturating_sub(previous.unwrap_or(0))
        .saturating_add(to_sql(size));
    if max_bytes.is_some_and(|max| from_sql(after) > max) {
        if expired.entries > 0 {
            set_totals(tx, &t)?;
        }
        return Ok((PutOutcome::Refused { usage: t.usage() }, None));
    }
    // A rewrite of the newest row at a time not before it stays the last in store order
    // where it is: updated in place, so SQLite writes only the pages whose bytes changed.
    let in_place = match (reads.old, reads.newest) {
        (Some((old_id, _)), Some(nw)) => old_id == nw.rowid && stored_at >= nw.stored_at,
        _ => false,
    };
    if let Some((old_id, _)) = reads.old
        && !in_place
    {
        delete_row(tx, old_id)?;
    }
    t.seq = t.seq.saturating_add(1);
    t.bytes = after;
    if previous.is_none() {
        t.entries = t.entries.saturating_add(1);
    }
    let mut evicted = Removed::default();
    if from_sql(after) > limit.max_bytes && limit.policy != EvictionPolicy::None {
        if build_indexes && limit.policy.tracks_access() {
            ensure_access_indexes(tx)?;
        }
        // Before the new row exists; a row kept for an update in place is its key's.
        evicted = delete_for_space(tx, limit.policy, from_sql(after), limit.max_bytes, &|k| {
            in_place && k == key
        })?
        .0;
        t.sub(&evicted);
    }
    let (rowid, newest) = match (in_place, reads.newest) {
        (true, Some(nw)) => (nw.rowid, true),
        _ => {
            let (rowid, newest) = allocate_rowids(tx, stored_at, 1, reads.newest)?;
            (rowid, newest.is_none_or(|id| rowid > id))
        }
    };
    let row = PendingRow {
        rowid,
        stored_at,
        expires_at,
        size,
        seq: t.seq,
        totals: t,
        newest,
        in_place,
    };
    let outcome = PutOutcome::Stored {
        previous_size: previous.map(from_sql),
        usage: t.usage(),
        expired,
        evicted,
    };
    Ok((outcome, Some(row)))
}

/// `remove` inside a write transaction.
pub(crate) fn remove(tx: &Connection, key: &str) -> rusqlite::Result<Option<EntryMeta>> {
    let mut t = totals(tx)?;
    let meta = tx
        .prepare_cached(&format!(
            "DELETE FROM entries WHERE key = ?1 RETURNING {META}"
        ))?
        .query_row([key], |r| meta_at(r, 0))
        .optional()?;
    if let Some(m) = &meta {
        t.sub(&Removed {
            entries: 1,
            bytes: m.size,
        });
        set_totals(tx, &t)?;
    }
    Ok(meta)
}

/// `remove_prefix` inside a write transaction: a range scan on the key index.
pub(crate) fn remove_prefix(tx: &Connection, prefix: &str) -> rusqlite::Result<Removed> {
    let mut t = totals(tx)?;
    let removed = delete_prefix(tx, prefix)?;
    if removed.entries > 0 {
        t.sub(&removed);
        set_totals(tx, &t)?;
    }
    Ok(removed)
}

/// Deletes the entries under `prefix`; the counters are the caller's to update.
fn delete_prefix(tx: &Connection, prefix: &str) -> rusqlite::Result<Removed> {
    let mut removed = Removed::default();
    let (mut stmt, upper);
    let mut rows = match successor(prefix) {
        Some(s) => {
            upper = s;
            stmt = tx.prepare_cached(REMOVE_RANGE_SQL)?;
            stmt.query(params![prefix, upper])?
        }
        None => {
            stmt = tx.prepare_cached(REMOVE_FROM_SQL)?;
            stmt.query(params![prefix])?
        }
    };
    while let Some(row) = rows.next()? {
        removed.add_one(from_sql(row.get(0)?));
    }
    Ok(removed)
}

/// `clear` inside a write transaction (stats are kept; an empty table counts zero).
pub(crate) fn clear(tx: &Connection) -> rusqlite::Result<Removed> {
    let removed = {
        let u = usage(tx)?;
        Removed {
            entries: u.entries,
            bytes: u.bytes,
        }
    };
    tx.execute("DELETE FROM entries", [])?;
    Ok(removed)
}

/// Whether any entry is expired at `now` (an index probe, for the no-op fast path).
pub(crate) fn any_expired(conn: &Connection, now: Millis) -> rusqlite::Result<bool> {
    conn.prepare_cached(ANY_EXPIRED_SQL)?
        .query_row([to_sql(now)], |_| Ok(()))
        .optional()
        .map(|r| r.is_some())
}

/// `purge_expired` inside a write transaction: soonest expiry first, by the expiry index.
pub(crate) fn purge_expired(
    tx: &Connection,
    now: Millis,
    limit: usize,
) -> rusqlite::Result<Removed> {
    let mut t = totals(tx)?;
    let removed = delete_expired(tx, now, limit)?;
    if removed.entries > 0 {
        t.sub(&removed);
        set_totals(tx, &t)?;
    }
    Ok(removed)
}

/// Deletes up to `limit` entries expired at `now`; the counters are the caller's to update.
fn delete_expired(tx: &Connection, now: Millis, limit: usize) -> rusqlite::Result<Removed> {
    let victims: Vec<(i64, i64)> = {
        let mut stmt = tx.prepare_cached(PURGE_SQL)?;
        let rows = stmt.query_map(params![to_sql(now), to_sql(limit as u64)], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    let mut removed = Removed::default();
    for (rowid, size) in victims {
        if delete_row(tx, rowid)? {
            removed.add_one(from_sql(size));
        }
    }
    Ok(removed)
}

/// `evict` inside a write transaction: walks the policy's order from its start. Returns what
/// was removed and the evicted keys.
pub(crate) fn evict(
    tx: &Connection,
    policy: EvictionPolicy,
    target_bytes: u64,
    protect: &dyn Fn(&str) -> bool,
) -> rusqlite::Result<(Removed, Vec<String>)> {
    let mut t = totals(tx)?;
    let out = delete_for_space(tx, policy, from_sql(t.bytes), target_bytes, protect)?;
    if out.0.entries > 0 {
        t.sub(&out.0);
        set_totals(tx, &t)?;
    }
    Ok(out)
}

/// Deletes entries in the policy's order, skipping protected keys, until `bytes` (the
/// current total) is at most `target_bytes` or nothing else is left. The counters are the
/// caller's to update.
fn delete_for_space(
    tx: &Connection,
    policy: EvictionPolicy,
    mut bytes: u64,
    target_bytes: u64,
    protect: &dyn Fn(&str) -> bool,
) -> rusqlite::Result<(Removed, Vec<String>)> {
    let mut removed = Removed::default();
    let mut evicted = Vec::new();
    let sql = match policy {
        EvictionPolicy::None => return Ok((removed, evicted)),
        EvictionPolicy::LeastRecentlyStored => EVICT_LRS_SQL,
        EvictionPolicy::LeastRecentlyUsed => EVICT_LRU_SQL,
        EvictionPolicy::LeastFrequentlyUsed => EVICT_LFU_SQL,
    };
    let mut batch: i64 = 4;
    while bytes > target_bytes {
        // A key that is not text (a damaged row) is still a candidate: it is removed like
        // any other instead of failing every eviction from then on.
        let candidates: Vec<(i64, i64, String)> = {
            let mut stmt = tx.prepare_cached(sql)?;
            let rows = stmt.query_map([batch], |r| {
                let key = match r.get_ref(2)? {
                    ValueRef::Text(t) | ValueRef::Blob(t) => {
                        String::from_utf8_lossy(t).into_owned()
                    }
                    _ => String::new(),
                };
                Ok((r.get(0)?, r.get::<_, Option<i64>>(1)?.unwrap_or(0), key))
            })?;
            rows.collect::<rusqlite::Result<_>>()?
        };
        let mut progressed = false;
        for (rowid, size, key) in candidates {
            if bytes <= target_bytes {
                break;
            }
            if protect(&key) {
                continue;
            }
            if delete_row(tx, rowid)? {
                let size = from_sql(size);
                removed.add_one(size);
                bytes = bytes.saturating_sub(size);
                progressed = true;
                evicted.push(key);
            }
        }
        if !progressed {
            break; // only protected keys (or nothing) are left
        }
        batch = (batch * 4).min(256);
    }
    Ok((removed, evicted))
}

/// Up to `limit` live keys with `prefix`, in byte order: a range scan on the primary key.
pub(crate) fn keys(
    conn: &Connection,
    prefix: &str,
    now: Millis,
    limit: usize,
) -> rusqlite::Result<Vec<String>> {
    let limit = to_sql(limit as u64);
    let now = to_sql(now);
    let (mut stmt, upper);
    let rows = match successor(prefix) {
        Some(s) => {
            upper = s;
            stmt = conn.prepare_cached(KEYS_RANGE_SQL)?;
            stmt.query(params![prefix, upper, now, limit])?
        }
        None => {
            stmt = conn.prepare_cached(KEYS_FROM_SQL)?;
            stmt.query(params![prefix, now, limit])?
        }
    };
    rows.mapped(|r| r.get(0)).collect()
}

/// `record_accesses` inside a write transaction.
/// Builds the LRU/LFU indexes unless they exist (see [`crate::schema::ACCESS_INDEXES`]).
/// One scan of the table the first time; a lookup in the schema afterwards.
pub(crate) fn ensure_access_indexes(tx: &Connection) -> rusqlite::Result<()> {
    let existing: i64 = tx.query_row(
        "SELECT count(*) FROM sqlite_master
         WHERE type = 'index' AND name IN ('entries_lru', 'entries_lfu')",
        [],
        |r| r.get(0),
    )?;
    if existing == 2 {
        return Ok(());
    }
    let started = Instant::now();
    tx.execute_batch(crate::schema::ACCESS_INDEXES)?;
    tracing::info!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        "built the least-recently/frequently-used eviction indexes (first recorded read or LRU/LFU eviction)"
    );
    Ok(())
}

pub(crate) fn record_accesses(tx: &Connection, accesses: &[Access]) -> rusqlite::Result<()> {
    let mut stmt = tx.prepare_cached(ACCESS_SQL)?;
    for a in accesses {
        stmt.execute(params![a.key, to_sql(a.at), to_sql(a.count)])?;
    }
    Ok(())
}

/// The engine check of `Cache::check`: SQLite's own check of the file (`PRAGMA quick_check`),
/// then what the schema promises about the rows: text keys, each row's size is its key plus
/// its value, and the counters row equals a direct count. Scans the table. One line per
/// problem; empty when none.
pub(crate) fn integrity_check(conn: &Connection) -> rusqlite::Result<Vec<String>> {
    let mut problems = Vec::new();
    {
        let mut stmt = conn.prepare("PRAGMA quick_check(100)")?;
        let lines = stmt.query_map([], |r| r.get::<_, String>(0))?;
        for line in lines {
            let line = line?;
            if line != "ok" {
                problems.push(format!("SQLite quick_check: {line}"));
            }
        }
    }
    // TOTAL is a float and never overflows on damaged sizes; exact below 2^53 bytes.
    let (rows, total, not_text, bad_size): (i64, f64, i64, i64) = conn.query_row(
        "SELECT COUNT(*), TOTAL(size),
                COUNT(*) FILTER (WHERE typeof(key) != 'text'),
                COUNT(*) FILTER (WHERE size IS NOT length(CAST(key AS BLOB)) + CASE
                    WHEN blob IS NULL THEN length(value)
                    WHEN value IS NULL THEN (SELECT length(value) FROM blobs WHERE id = blob)
                END)
         FROM entries",
        [],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
    )?;
    if not_text > 0 {
        problems.push(format!("{not_text} rows have a key that is not text"));
    }
    if bad_size > 0 {
        problems.push(format!(
            "{bad_size} rows have a size that is not their key plus their value"
        ));
    }
    let orphans: i64 = conn.query_row(
        "SELECT COUNT(*) FROM blobs WHERE id NOT IN (SELECT blob FROM entries WHERE blob IS NOT NULL)",
        [],
        |r| r.get(0),
    )?;
    if orphans > 0 {
        problems.push(format!("{orphans} stored values belong to no entry"));
    }
    let counted = usage(conn)?;
    let rows = u64::try_from(rows).unwrap_or(0);
    if counted.entries != rows || counted.bytes as f64 != total {
        problems.push(format!(
            "the counters say {} entries of {} bytes, the rows are {rows} entries of {total} bytes",
            counted.entries, counted.bytes
        ));
    }
    Ok(problems)
}

/// The persistent counters.
pub(crate) fn load_stats(conn: &Connection) -> rusqlite::Result<Counters> {
    let mut stmt = conn.prepare_cached("SELECT name, value FROM stats")?;
    let mut rows = stmt.query([])?;
    let mut out = Counters::default();
    while let Some(row) = rows.next()? {
        let name: String = row.get(0)?;
        out.set_field(&name, from_sql(row.get(1)?));
    }
    Ok(out)
}

/// `add_stats` inside a write transaction (saturating).
pub(crate) fn add_stats(tx: &Connection, delta: &Counters) -> rusqlite::Result<()> {
    let mut stmt = tx.prepare_cached(
        "INSERT INTO stats (name, value) VALUES (?1, ?2)
         ON CONFLICT (name) DO UPDATE SET value =
             CASE WHEN value > 9223372036854775807 - excluded.value
                  THEN 9223372036854775807 ELSE value + excluded.value END",
    )?;
    for (name, v) in delta.fields() {
        if v > 0 {
            stmt.execute(params![name, to_sql(v)])?;
        }
    }
    Ok(())
}

/// How many free pages to give back: when more than a quarter of the file is free (after large
/// removals), all but 1/16 of the file; under steady churn freed pages are simply reused.
pub(crate) fn vacuum_wanted(conn: &Connection) -> rusqlite::Result<Option<i64>> {
    let free: i64 = conn.query_row("PRAGMA freelist_count", [], |r| r.get(0))?;
    let total: i64 = conn.query_row("PRAGMA page_count", [], |r| r.get(0))?;
    Ok((free > 256 && free * 4 > total).then(|| free - total / 16))
}

/// Gives back free pages if [`vacuum_wanted`] says so.
pub(crate) fn maybe_vacuum(conn: &Connection, ctx: &Ctx) -> Result<()> {
    if let Some(n) = ctx.retry("read the free page count", || vacuum_wanted(conn))? {
        ctx.retry("incremental vacuum", || {
            conn.execute_batch(&format!("PRAGMA incremental_vacuum({n});"))
        })?;
    }
    Ok(())
}

/// A passive checkpoint (never waits for readers or writers). Returns (frames in the WAL,
/// frames checkpointed).
pub(crate) fn checkpoint(conn: &Connection, ctx: &Ctx) -> Result<(i64, i64)> {
    ctx.retry("checkpoint", || {
        conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
            Ok((r.get(1)?, r.get(2)?))
        })
    })
}

/// Checkpoints what it can without waiting and makes the WAL durable.
pub(crate) fn flush(conn: &Connection, ctx: &Ctx) -> Result<()> {
    ctx.retry("checkpoint", || {
        conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
    })?;
    for p in [wal_path(&ctx.path), ctx.path.clone()] {
        match std::fs::File::open(&p) {
            Ok(f) => f
                .sync_all()
                .map_err(|e| Error::io(&p, "syncing the cache database", e))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(&p, "opening the cache database to sync it", e)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    /// A rewrite of the newest row is an update in place; store order (rowid order) stays
    /// `(stored_at, write order)` through it and through later writes, in order or not, and
    /// the counters stay exact.
    #[test]
    fn a_rewrite_in_place_keeps_store_order_and_counters() {
        let dir = tempfile::tempdir().unwrap();
        let backend = crate::SqliteBackend::open(dir.path()).unwrap();
        let conn = Connection::open(backend.path()).unwrap();
        let put_at = |key: &str, at: Millis| {
            immediate(&conn, |tx| {
                put(tx, key, b"value", at, None, WriteLimit::UNBOUNDED, false).map(|o| (o, true))
            })
            .unwrap();
        };
        let order = || -> Vec<String> {
            let mut stmt = conn
                .prepare("SELECT key FROM entries ORDER BY rowid")
                .unwrap();
            stmt.query_map([], |r| r.get(0))
                .unwrap()
                .collect::<rusqlite::Result<_>>()
                .unwrap()
        };
        put_at("a", 100);
        put_at("b", 200);
        let b_rowid = |conn: &Connection| -> i64 {
            conn.query_row("SELECT rowid FROM entries WHERE key = 'b'", [], |r| {
                r.get(0)
            })
            .unwrap()
        };
        let before = b_rowid(&conn);
        put_at("b", 300); // the newest row, rewritten: in place
        assert_eq!(b_rowid(&conn), before, "updated in place");
        put_at("c", 250); // stored before b's rewrite: goes before it
        assert_eq!(order(), ["a", "c", "b"]);
        put_at("d", 400);
        assert_eq!(order(), ["a", "c", "b", "d"]);
        put_at("d", 400); // in place again, same millisecond
        put_at("e", 50);
        assert_eq!(order(), ["e", "a", "c", "b", "d"]);
        assert_eq!(integrity_check(&conn).unwrap(), Vec::<String>::new());
        assert_eq!(usage(&conn).unwrap().entries, 5);
    }

    /// Values from `OUT_OF_LINE_MIN` bytes live in `blobs`: written, read back, rewritten
    /// (same length: the same row, only changed bytes; another length or a small value: the
    /// old one goes), kept through a move of their entry's rowid, and deleted with the entry
    /// by every kind of removal. The integrity check stays clean and counts no orphan.
    #[test]
    fn large_values_live_out_of_line_and_go_with_their_entry() {
        let dir = tempfile::tempdir().unwrap();
        let backend = crate::SqliteBackend::open(dir.path()).unwrap();
        let conn = Connection::open(backend.path()).unwrap();
        let put_at = |key: &str, value: &[u8], at: Millis| {
            immediate(&conn, |tx| {
                put(tx, key, value, at, None, WriteLimit::UNBOUNDED, false).map(|o| (o, true))
            })
            .unwrap();
        };
        let read = |key: &str| -> Vec<u8> {
            match get(&conn, key, 10_000, u64::MAX).unwrap() {
                Some(Fetched::Entry(e)) => e.value.to_vec(),
                _ => panic!("{key} not found"),
            }
        };
        let blob_of = |key: &str| -> Option<i64> {
            conn.query_row("SELECT blob FROM entries WHERE key = ?1", [key], |r| {
                r.get(0)
            })
            .unwrap()
        };
        let blobs = || -> i64 {
            conn.query_row("SELECT COUNT(*) FROM blobs", [], |r| r.get(0))
                .unwrap()
        };
        let clean = || assert_eq!(integrity_check(&conn).unwrap(), Vec::<String>::new());
        let large: Vec<u8> = (0..OUT_OF_LINE_MIN * 3).map(|i| (i % 251) as u8).collect();
        let small = b"small".to_vec();

        put_at("big", &large, 100);
        let id = blob_of("big").expect("stored out of line");
        assert_eq!(read("big"), large);
        assert_eq!(blobs(), 1);
        // The same length, one byte changed: the same blob row, rewritten in place.
        let mut changed = large.clone();
        changed[OUT_OF_LINE_MIN + 7] ^= 0xff;
        put_at("big", &changed, 200);
        assert_eq!(blob_of("big"), Some(id));
        assert_eq!(read("big"), changed);
        // Another length: a new blob, the old one gone.
        let longer = [large.as_slice(), b"tail"].concat();
        put_at("big", &longer, 300);
        assert_eq!(read("big"), longer);
        assert_eq!(blobs(), 1);
        clean();
        // A small value in its place: stored inline, the blob gone.
        put_at("big", &small, 400);
        assert_eq!((blob_of("big"), blobs()), (None, 0));
        assert_eq!(read("big"), small);
        // And large again, then other writes that move its row (rehoming the newest row).
        put_at("big", &large, 500);
        put_at("later", &small, 400);
        put_at("later2", &small, 600);
        assert_eq!(read("big"), large);
        clean();
        // Removal by key, by prefix, by expiry, by eviction and by clear take the blob along.
        immediate(&conn, |tx| remove(tx, "big").map(|_| ((), true))).unwrap();
        assert_eq!(blobs(), 0);
        put_at("p:1", &large, 700);
        immediate(&conn, |tx| remove_prefix(tx, "p:").map(|_| ((), true))).unwrap();
        assert_eq!(blobs(), 0);
        immediate(&conn, |tx| {
            put(
                tx,
                "ttl",
                &large,
                800,
                Some(900),
                WriteLimit::UNBOUNDED,
                false,
            )
            .map(|o| (o, true))
        })
        .unwrap();
        let purged =
            immediate(&conn, |tx| delete_expired(tx, 1_000, 10).map(|r| (r, true))).unwrap();
        assert_eq!((purged.entries, blobs()), (1, 0));
        put_at("old", &large, 1_100);
        let limit = WriteLimit::evict_to(
            (OUT_OF_LINE_MIN * 3) as u64,
            EvictionPolicy::LeastRecentlyStored,
        );
        immediate(&conn, |tx| {
            put(tx, "new", &large, 1_200, None, limit, false).map(|o| (o, true))
        })
        .unwrap();
        assert_eq!(
            (blob_of("new").is_some(), blobs()),
            (true, 1),
            "old was evicted"
        );
        clean();
        immediate(&conn, |tx| clear(tx).map(|_| ((), true))).unwrap();
        assert_eq!(blobs(), 0);
        clean();
    }

    /// An entry whose out-of-line value is missing reads as a damaged database, not as a
    /// wrong value or a panic.
    #[test]
    fn a_missing_out_of_line_value_is_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let backend = crate::SqliteBackend::open(dir.path()).unwrap();
        let conn = Connection::open(backend.path()).unwrap();
        let large = vec![7u8; OUT_OF_LINE_MIN];
        immediate(&conn, |tx| {
            put(tx, "k", &large, 100, None, WriteLimit::UNBOUNDED, false).map(|o| (o, true))
        })
        .unwrap();
        conn.execute_batch("DROP TRIGGER entries_blob_deleted; DELETE FROM blobs;")
            .unwrap();
        let err = match get(&conn, "k", 200, u64::MAX) {
            Err(e) => e,
            Ok(_) => panic!("read a value that is not there"),
        };
        assert_eq!(
            err.sqlite_error_code(),
            Some(rusqlite::ErrorCode::DatabaseCorrupt),
            "{err}"
        );
        assert!(!integrity_check(&conn).unwrap().is_empty());
    }

    /// Every hot statement is answered from an index: no full scan, no sort.
    #[test]
    fn hot_statements_use_indexes() {
        let dir = tempfile::tempdir().unwrap();
        let backend = crate::SqliteBackend::open(dir.path()).unwrap();
        let conn = Connection::open(backend.path()).unwrap();
        // The LRU/LFU indexes exist once an access order is used (ensure_access_indexes).
        conn.execute_batch(crate::schema::ACCESS_INDEXES).unwrap();
        let delete_by_key = format!("DELETE FROM entries WHERE key = ?1 RETURNING {META}");
        let statements = [
            HEAD_SQL,
            PREVIOUS_SQL,
            REMOVE_RANGE_SQL,
            REMOVE_FROM_SQL,
            ANY_EXPIRED_SQL,
            PURGE_SQL,
            EVICT_LRU_SQL,
            EVICT_LFU_SQL,
            KEYS_RANGE_SQL,
            KEYS_FROM_SQL,
            ACCESS_SQL,
            &delete_by_key,
        ];
        for sql in statements {
            let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
            let n = stmt.parameter_count();
            let params: Vec<i64> = vec![1; n];
            let plan: Vec<String> = stmt
                .query_map(rusqlite::params_from_iter(params), |r| {
                    r.get::<_, String>(3)
                })
                .unwrap()
                .collect::<rusqlite::Result<_>>()
                .unwrap();
            let plan = plan.join("; ");
            assert!(plan.contains("USING"), "{sql}: {plan}");
            assert!(!plan.contains("TEMP B-TREE"), "{sql}: {plan}");
            let scans_without_index = plan
                .split("; ")
                .any(|p| p.starts_with("SCAN") && !p.contains("INDEX"));
            assert!(!scans_without_index, "{sql}: {plan}");
        }
        // Store order is rowid order: these walk the table from one end, without a sort.
        for sql in [EVICT_LRS_SQL, NEWEST_SQL, PUT_READS_SQL] {
            let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
            let params: Vec<i64> = vec![1; stmt.parameter_count()];
            let plan: Vec<String> = stmt
                .query_map(rusqlite::params_from_iter(params), |r| {
                    r.get::<_, String>(3)
                })
                .unwrap()
                .collect::<rusqlite::Result<_>>()
                .unwrap();
            let plan = plan.join("; ");
            assert!(!plan.contains("TEMP B-TREE"), "{sql}: {plan}");
        }
    }
}
