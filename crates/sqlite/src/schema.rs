//! Opening a database: header checks, connection settings, schema creation and validation,
//! and moving a damaged file aside.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use plexcache_core::{Error, Result};
use rusqlite::{Connection, OpenFlags, TransactionBehavior};

use crate::builder::SqliteBuilder;
use crate::ctx::{Ctx, classify};

/// The schema version this build writes and reads (`PRAGMA user_version`). A database with a
/// higher version gives [`Error::IncompatibleVersion`]. Version 3 keeps store order in the
/// rowid and the cache-wide counters in the newest row (see `store::Totals`), so that a small
/// write touches the pages of its own row and of the key index only. Version 4 stores values
/// of `store::OUT_OF_LINE_MIN` bytes or more in a table of their own, so that an entry's row
/// stays small. Databases of versions 1 and 2 are migrated when opened: their entries are
/// dropped (they would read as misses: the value envelope's checksum binds the key since
/// version 2, and the layout changed in 3); the persistent statistics stay. Version 3 is
/// migrated with its entries: its values stay in their rows, where version 4 reads them too.
pub const SCHEMA_VERSION: u64 = 4;

/// `PRAGMA application_id` of a plexcache database ("plxc").
pub(crate) const APPLICATION_ID: i64 = 0x706c_7863;

/// Column order matters: the metadata columns come before `value`, so reading metadata never
/// walks a large value's overflow pages.
pub(crate) const ENTRY_COLUMNS: [&str; 12] = [
    "key",
    "stored_at",
    "expires_at",
    "accessed_at",
    "access_count",
    "size",
    "seq",
    "total_entries",
    "total_bytes",
    "total_seq",
    "blob",
    "value",
];

const CREATE_ENTRIES: &str = "
CREATE TABLE entries (
    key           TEXT NOT NULL UNIQUE,
    stored_at     INTEGER NOT NULL,
    expires_at    INTEGER,
    accessed_at   INTEGER NOT NULL,
    access_count  INTEGER NOT NULL,
    size          INTEGER NOT NULL,
    seq           INTEGER NOT NULL,
    total_entries INTEGER NOT NULL,
    total_bytes   INTEGER NOT NULL,
    total_seq     INTEGER NOT NULL,
    blob          INTEGER,
    value         BLOB
);
CREATE INDEX entries_expiry ON entries (expires_at, seq) WHERE expires_at IS NOT NULL;
";

/// Values stored out of line: an entry holds its value in `value`, or, from
/// `store::OUT_OF_LINE_MIN` bytes, in the row of `blobs` its `blob` column names (and `value`
/// is NULL). The triggers delete a value with its entry, or when the entry's `blob` changes.
const CREATE_BLOBS: &str = "
CREATE TABLE blobs (
    id    INTEGER PRIMARY KEY,
    value BLOB NOT NULL
);
CREATE TRIGGER entries_blob_deleted AFTER DELETE ON entries WHEN old.blob IS NOT NULL
BEGIN DELETE FROM blobs WHERE id = old.blob; END;
CREATE TRIGGER entries_blob_replaced AFTER UPDATE OF blob ON entries
    WHEN old.blob IS NOT NULL AND old.blob IS NOT new.blob
BEGIN DELETE FROM blobs WHERE id = old.blob; END;
";

/// The persistent hit/miss statistics, kept across schema versions.
const CREATE_STATS: &str = "
CREATE TABLE stats (
    name  TEXT PRIMARY KEY NOT NULL,
    value INTEGER NOT NULL
) WITHOUT ROWID;
";

/// The indexes of the least-recently-used and least-frequently-used orders. Not part of
/// [`CREATE_ENTRIES`]: they are built by the first recorded read or LRU/LFU eviction
/// (`store::ensure_access_indexes`), so that a cache with the default policy (least recently
/// stored) does not maintain two b-trees it never reads on every write. Databases created
/// before this change have them from the start, which is also correct.
pub(crate) const ACCESS_INDEXES: &str = "
CREATE INDEX IF NOT EXISTS entries_lru ON entries (accessed_at, seq);
CREATE INDEX IF NOT EXISTS entries_lfu ON entries (access_count, accessed_at, seq);
";

/// How long one SQLite call waits in its busy handler; the retry loop around it waits up to
/// the builder's total.
pub(crate) fn busy_handler_timeout(cfg: &SqliteBuilder) -> Duration {
    cfg.busy_timeout.min(Duration::from_millis(250))
}

/// Opens one connection with the per-connection settings. Readers are `query_only`.
pub(crate) fn connect(
    cfg: &SqliteBuilder,
    path: &Path,
    reader: bool,
) -> rusqlite::Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(busy_handler_timeout(cfg))?;
    conn.set_prepared_statement_cache_capacity(32);
    if cfg.exclusive && !reader {
        // Before the first access, so that the WAL index lives in this connection's memory
        // (no shared-memory file and no file locks per transaction).
        conn.execute_batch("PRAGMA locking_mode = EXCLUSIVE;")?;
    }
    let cache_kib = (cfg.page_cache_bytes / 1024).max(64);
    conn.execute_batch(&format!(
        "PRAGMA cache_size = -{cache_kib};
         PRAGMA synchronous = {};
         PRAGMA temp_store = MEMORY;
         PRAGMA journal_size_limit = {};
         PRAGMA mmap_size = {};
         PRAGMA wal_autocheckpoint = {};",
        // On a network file system: every commit synced, nothing memory-mapped (an I/O
        // error on a mapped page is a signal, not an error).
        if cfg.on_share { "FULL" } else { "NORMAL" },
        cfg.wal_size_limit,
        if cfg.on_share { 0 } else { cfg.mmap_size },
        cfg.checkpoint_pages
    ))?;
    if reader {
        conn.execute_batch("PRAGMA query_only = 1;")?;
    } else if let Some(bytes) = cfg.max_file_bytes {
        let page_size: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
        let pages = bytes / u64::try_from(page_size.max(512)).unwrap_or(4096);
        let pages = pages.clamp(1, u64::from(u32::MAX));
        conn.execute_batch(&format!("PRAGMA max_page_count = {pages};"))?;
    }
    Ok(conn)
}

/// Whose a rejected file is, as far as opening could tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Owner {
    /// plexcache's: it carries plexcache's application id.
    Ours,
    /// Not a SQLite database at all, or shorter than SQLite's header: nobody's usable file.
    NotSqlite,
    /// A SQLite database of another application (another application id, or tables without
    /// plexcache's): never changed, never moved.
    Foreign,
    /// A SQLite database that could not be identified (damaged before its application id
    /// could be read, or not a regular file): never moved.
    Unknown,
}

/// Why the writer connection was not opened, and whose the file is.
#[derive(Debug)]
pub(crate) struct Rejected {
    pub(crate) error: Error,
    pub(crate) owner: Owner,
}

impl Rejected {
    fn new(error: Error, owner: Owner) -> Self {
        Self { error, owner }
    }

    /// The file looks damaged (not foreign): worth a second look.
    pub(crate) fn damaged(&self) -> bool {
        matches!(self.error, Error::Corrupt { .. }) && self.owner != Owner::Foreign
    }

    /// `recover_corrupt` may move the file aside: damaged, and ours or nobody's.
    pub(crate) fn movable(&self) -> bool {
        self.damaged() && matches!(self.owner, Owner::Ours | Owner::NotSqlite)
    }
}

/// Whose a file is from its raw application id (header bytes 68-71).
fn owner_of(application_id: i64) -> Owner {
    match application_id {
        APPLICATION_ID => Owner::Ours,
        0 => Owner::Unknown,
        _ => Owner::Foreign,
    }
}

/// Checks the file header without SQLite: magic, and (when no WAL holds newer pages) that the
/// file is as long as its header says. O(1). Returns the application id written in the header
/// (`None` for a missing or empty file); the header of a database in WAL mode may be older
/// than its WAL, so SQLite has the last word on whose it is (see [`identify`]).
fn check_header(path: &Path) -> Result<Option<i64>, Rejected> {
    let corrupt = |detail: String, owner: Owner| {
        Rejected::new(
            Error::Corrupt {
                path: path.to_path_buf(),
                detail,
                source: None,
            },
            owner,
        )
    };
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(Rejected::new(
                Error::io(path, "reading the cache database's metadata", e),
                Owner::Unknown,
            ));
        }
    };
    if !meta.is_file() {
        return Err(corrupt(
            "the cache database path is not a regular file".into(),
            Owner::Unknown,
        ));
    }
    let len = meta.len();
    if len == 0 {
        return Ok(None); // a new, empty database
    }
    let mut header = [0u8; 100];
    let read = std::fs::File::open(path)
        .and_then(|mut f| {
            let mut n = 0;
            while n < header.len() {
                let r = f.read(&mut header[n..])?;
                if r == 0 {
                    break;
                }
                n += r;
            }
            Ok(n)
        })
        .map_err(|e| {
            Rejected::new(
                Error::io(path, "reading the cache database's header", e),
                Owner::Unknown,
            )
        })?;
    if read < 16 || &header[..16] != b"SQLite format 3\0" {
        return Err(corrupt(
            "not a SQLite database (bad header); not a plexcache store".into(),
            Owner::NotSqlite,
        ));
    }
    if read < 100 {
        return Err(corrupt(
            format!("truncated SQLite database: {len} bytes, shorter than its header"),
            Owner::NotSqlite,
        ));
    }
    let application_id = i64::from(i32::from_be_bytes([
        header[68], header[69], header[70], header[71],
    ]));
    let owner = owner_of(application_id);
    let wal = wal_path(path);
    let wal_has_frames = std::fs::metadata(&wal).is_ok_and(|m| m.len() > 32);
    if wal_has_frames {
        // Pages may legitimately live only in the WAL until a checkpoint.
        return Ok(Some(application_id));
    }
    let page_size = match u16::from_be_bytes([header[16], header[17]]) {
        1 => 65_536u64,
        n => u64::from(n),
    };
    let valid_for = header[92..96] == header[24..28];
    let pages = u64::from(u32::from_be_bytes([
        header[28], header[29], header[30], header[31],
    ]));
    if valid_for && pages > 0 && pages.saturating_mul(page_size) > len {
        return Err(corrupt(
            format!(
                "truncated SQLite database: its header says {} bytes ({pages} pages of {page_size}), the file has {len}",
                pages.saturating_mul(page_size)
            ),
            owner,
        ));
    }
    if page_size >= 512 && len % page_size != 0 {
        return Err(corrupt(
            format!(
                "truncated SQLite database: {len} bytes is not a whole number of {page_size}-byte pages"
            ),
            owner,
        ));
    }
    Ok(Some(application_id))
}

pub(crate) fn wal_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push("-wal");
    PathBuf::from(s)
}

pub(crate) fn shm_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push("-shm");
    PathBuf::from(s)
}

fn foreign(path: &Path, detail: impl Into<String>) -> Error {
    Error::Corrupt {
        path: path.to_path_buf(),
        detail: format!("not a plexcache cache database: {}", detail.into()),
        source: None,
    }
}

fn pragma_i64(conn: &Connection, name: &str) -> rusqlite::Result<i64> {
    conn.query_row(&format!("PRAGMA {name}"), [], |r| r.get(0))
}

/// Creates a missing database file empty with mode 0600 (on unix), before SQLite opens it:
/// SQLite would create it 0644 less the umask, and it gives the `-wal`, `-shm` and `-journal`
/// files it creates the database file's mode, so they are 0600 too. The mode is set after
/// creating, so the umask does not matter. An existing file is left alone here; a failure is
/// left for SQLite's open to report.
fn create_private_database(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        let created = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path);
        if let Ok(file) = created
            && let Err(e) = file.set_permissions(std::fs::Permissions::from_mode(0o600))
        {
            tracing::debug!(path = %path.display(), error = %e, "cannot set the new database's mode");
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

/// Removes group and other permissions from the database and its `-wal` and `-shm` files, for
/// files made before the database was created private (0644, and so their `-wal` and `-shm`).
/// Files of another owner are left as they are.
fn restrict_permissions(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for file in [path.to_path_buf(), wal_path(path), shm_path(path)] {
            let Ok(meta) = std::fs::symlink_metadata(&file) else {
                continue;
            };
            let mode = meta.permissions().mode();
            if !meta.is_file() || mode & 0o077 == 0 {
                continue;
            }
            match std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode & 0o700)) {
                Ok(()) => tracing::debug!(
                    path = %file.display(),
                    from = format_args!("{:o}", mode & 0o777),
                    "made a cache file private to its owner"
                ),
                Err(e) => tracing::debug!(
                    path = %file.display(),
                    error = %e,
                    "cannot make a cache file private to its owner"
                ),
            }
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

/// What the file is, read before anything is written to it.
#[derive(Clone, Copy)]
enum Identity {
    /// No tables, no application id, no schema version: a new database, ours to create.
    Empty,
    /// plexcache's, at this schema version.
    Ours(u64),
}

/// Identifies the database on `conn` without changing it (reads only: application id,
/// schema version, table names). Another application's database is rejected here, before any
/// setting is changed.
fn identify(conn: &Connection, ctx: &Ctx, raw: Option<i64>) -> Result<Identity, Rejected> {
    let path = ctx.path.as_path();
    let unknown = |e: Error| Rejected::new(e, raw.map_or(Owner::Unknown, owner_of));
    // One read transaction: another process creating the schema commits its tables and its
    // application id together, and the three reads must see both or neither.
    let (app_id, version, tables) = ctx
        .retry("identify the database", || {
            conn.execute_batch("BEGIN")?;
            let read = (|| {
                let app_id = pragma_i64(conn, "application_id")?;
                let version = pragma_i64(conn, "user_version")?;
                let mut stmt =
                    conn.prepare("SELECT name FROM sqlite_master WHERE type = 'table' LIMIT 10")?;
                let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
                let tables: Vec<String> = rows.collect::<rusqlite::Result<_>>()?;
                Ok((app_id, version, tables))
            })();
            if !conn.is_autocommit() {
                // A read transaction: ending it cannot lose anything.
                let _ = conn.execute_batch("COMMIT");
            }
            read
        })
        .map_err(unknown)?;
    if app_id == APPLICATION_ID {
        return Ok(Identity::Ours(u64::try_from(version).unwrap_or(u64::MAX)));
    }
    let is_foreign = |detail: String| Rejected::new(foreign(path, detail), Owner::Foreign);
    if app_id != 0 {
        return Err(is_foreign(format!(
            "application id {app_id:#x}, expected {APPLICATION_ID:#x}"
        )));
    }
    if !tables.is_empty() {
        return Err(is_foreign(format!(
            "it holds tables {} and no plexcache application id",
            tables.join(", ")
        )));
    }
    if version != 0 {
        return Err(is_foreign(format!(
            "schema version {version} and no plexcache application id"
        )));
    }
    Ok(Identity::Empty)
}

/// Opens the writer connection: header check, identification, settings, schema creation or
/// validation.
///
/// Nothing is written to a file before it is identified as plexcache's or as a new, empty
/// database: another application's database is rejected as it was found.
///
/// The database, `-wal` and `-shm` files are private to their owner (mode 0600 on unix), like
/// the directory: see [`create_private_database`] and [`restrict_permissions`].
pub(crate) fn open_writer(cfg: &SqliteBuilder, ctx: &Ctx) -> Result<Connection, Rejected> {
    let path = ctx.path.as_path();
    let raw = check_header(path)?;
    create_private_database(path);
    let conn = ctx
        .retry("open", || connect(cfg, path, false))
        .map_err(|e| Rejected::new(e, raw.map_or(Owner::Unknown, owner_of)))?;
    let identity = identify(&conn, ctx, raw)?;
    // From here on the file is ours (or new): errors are about our own database.
    let ours = |e: Error| Rejected::new(e, Owner::Ours);
    let version = match identity {
        Identity::Empty => 0,
        Identity::Ours(v) => v,
    };
    if version > SCHEMA_VERSION {
        return Err(ours(Error::IncompatibleVersion {
            path: path.to_path_buf(),
            found: version,
            supported: SCHEMA_VERSION,
        }));
    }
    if version == 0 {
        // auto_vacuum only takes effect before the first table is created.
        ctx.retry("set auto_vacuum", || {
            conn.execute_batch("PRAGMA auto_vacuum = INCREMENTAL;")
        })
        .map_err(ours)?;
    }
    // A network file system cannot share WAL's shared memory between machines: rollback
    // journal there (see `share`).
    let (wanted, pragma) = if cfg.on_share {
        ("delete", "PRAGMA journal_mode = DELETE")
    } else {
        ("wal", "PRAGMA journal_mode = WAL")
    };
    let mode: String = ctx
        .retry("set the journal mode", || {
            conn.query_row(pragma, [], |r| r.get(0))
        })
        .map_err(ours)?;
    if !mode.eq_ignore_ascii_case(wanted) {
        return Err(ours(Error::backend(
            "sqlite",
            format!(
                "{}: cannot switch to journal mode {wanted} (it is {mode})",
                path.display()
            ),
            std::io::Error::other("WAL unavailable"),
        )));
    }
    // The WAL files exist now (`-shm` only in the shared mode).
    restrict_permissions(path);
    let mut conn = conn;
    if version == 0 {
        create_schema(&mut conn, ctx).map_err(|e| {
            // Tables another process created meanwhile in a new file, without our id.
            let owner = if matches!(identity, Identity::Empty) && matches!(e, Error::Corrupt { .. })
            {
                Owner::Foreign
            } else {
                Owner::Ours
            };
            Rejected::new(e, owner)
        })?;
    }
    if (1..SCHEMA_VERSION).contains(&version) {
        migrate(&mut conn, ctx).map_err(ours)?;
    }
    validate(&conn, ctx).map_err(ours)?;
    Ok(conn)
}

/// Older versions to [`SCHEMA_VERSION`]: from 1 and 2 the entries table is replaced (its
/// rows go); from 3 it is rebuilt with its rows (values stay inline, which is still read) and
/// gets the out-of-line values table. The persistent statistics stay.
fn migrate(conn: &mut Connection, ctx: &Ctx) -> Result<()> {
    let from = ctx.write(conn, "migrate the schema", |tx| {
        let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if !(1..to_sql_version(SCHEMA_VERSION)).contains(&version) {
            return Ok(None); // another process migrated it meanwhile
        }
        if version == 3 {
            tx.execute_batch(
                "DROP INDEX IF EXISTS entries_expiry;
                 DROP INDEX IF EXISTS entries_lru;
                 DROP INDEX IF EXISTS entries_lfu;
                 ALTER TABLE entries RENAME TO entries_v3;",
            )?;
            tx.execute_batch(CREATE_ENTRIES)?;
            tx.execute_batch(
                "INSERT INTO entries (rowid, key, stored_at, expires_at, accessed_at,
                     access_count, size, seq, total_entries, total_bytes, total_seq, value)
                 SELECT rowid, key, stored_at, expires_at, accessed_at, access_count, size,
                     seq, total_entries, total_bytes, total_seq, value
                 FROM entries_v3;
                 DROP TABLE entries_v3;",
            )?;
        } else {
            tx.execute_batch("DROP TABLE IF EXISTS counters; DROP TABLE IF EXISTS entries;")?;
            tx.execute_batch(CREATE_ENTRIES)?;
        }
        tx.execute_batch(CREATE_BLOBS)?;
        tx.execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION};"))?;
        Ok(Some(version))
    })?;
    match from {
        Some(3) => tracing::info!(
            path = %ctx.path.display(),
            "migrated the cache database from schema version 3 to {SCHEMA_VERSION}"
        ),
        Some(v) => tracing::info!(
            path = %ctx.path.display(),
            "migrated the cache database from schema version {v} to {SCHEMA_VERSION}; entries of older releases were dropped"
        ),
        None => {}
    }
    Ok(())
}

/// The schema version as SQLite stores it.
fn to_sql_version(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn create_schema(conn: &mut Connection, ctx: &Ctx) -> Result<()> {
    let path = ctx.path.clone();
    let outcome = ctx.retry("create the schema", || {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if version != 0 {
            return Ok(Ok(())); // another process created it meanwhile
        }
        let tables: Vec<String> = {
            let mut stmt = tx.prepare("SELECT name FROM sqlite_master WHERE type = 'table'")?;
            let rows = stmt.query_map([], |r| r.get(0))?;
            rows.collect::<rusqlite::Result<_>>()?
        };
        if !tables.is_empty() {
            return Ok(Err(tables));
        }
        tx.execute_batch(CREATE_ENTRIES)?;
        tx.execute_batch(CREATE_BLOBS)?;
        tx.execute_batch(CREATE_STATS)?;
        tx.execute_batch(&format!(
            "PRAGMA application_id = {APPLICATION_ID}; PRAGMA user_version = {SCHEMA_VERSION};"
        ))?;
        tx.commit()?;
        Ok(Ok(()))
    })?;
    outcome.map_err(|tables| {
        foreign(
            &path,
            format!(
                "it holds tables {} and no plexcache schema version",
                tables.join(", ")
            ),
        )
    })
}

fn validate(conn: &Connection, ctx: &Ctx) -> Result<()> {
    let path = ctx.path.as_path();
    let app_id = ctx.retry("read the application id", || {
        pragma_i64(conn, "application_id")
    })?;
    if app_id != APPLICATION_ID {
        return Err(foreign(
            path,
            format!("application id {app_id:#x}, expected {APPLICATION_ID:#x}"),
        ));
    }
    let columns: Vec<String> = ctx
        .retry_raw(|| {
            let mut stmt = conn.prepare("SELECT name FROM pragma_table_info('entries')")?;
            let rows = stmt.query_map([], |r| r.get(0))?;
            rows.collect()
        })
        .map_err(|e| schema_error(path, e))?;
    if columns != ENTRY_COLUMNS {
        return Err(foreign(
            path,
            format!(
                "table entries has columns [{}], expected [{}]",
                columns.join(", "),
                ENTRY_COLUMNS.join(", ")
            ),
        ));
    }
    ctx.retry_raw(|| {
        conn.prepare("SELECT name, value FROM stats LIMIT 0")?;
        conn.prepare("SELECT id, value FROM blobs LIMIT 0")
            .map(|_| ())
    })
    .map_err(|e| schema_error(path, e))?;
    Ok(())
}

/// A query against the expected schema failed: a plain SQL error (no such table or column)
/// means a foreign schema; anything else keeps its classification.
fn schema_error(path: &Path, e: rusqlite::Error) -> Error {
    // A failed prepare comes as `SqlInputError` (with the offset of the bad token); a name in
    // the schema that is no UTF-8 fails the conversion to `String`.
    let plain_sql_error = matches!(
        &e,
        rusqlite::Error::SqliteFailure(f, _) | rusqlite::Error::SqlInputError { error: f, .. }
            if f.code == rusqlite::ErrorCode::Unknown
    ) || matches!(
        &e,
        rusqlite::Error::Utf8Error(..)
            | rusqlite::Error::FromSqlConversionFailure(..)
            | rusqlite::Error::InvalidColumnType(..)
    );
    if plain_sql_error {
        foreign(path, e.to_string())
    } else {
        classify(path, "check the schema", e)
    }
}

/// Opens the writer connection (see [`open_writer`]) and decides what to do with a file that
/// looks damaged.
///
/// The header check reads the file's length, its header and the WAL's length one after the
/// other, so another process's checkpoint in between can make a healthy file look truncated.
/// The verdict is therefore made alone: the exclusive mode already holds the lock file alone;
/// the shared mode takes it exclusively for a moment and checks again. If another process
/// holds it, the file is in use (and maybe being checkpointed): it is checked again for a
/// while, and never moved aside. Only a file that is plexcache's or no SQLite database at all
/// is moved aside, and only with `recover_corrupt`.
pub(crate) fn open_or_recover(
    cfg: &SqliteBuilder,
    ctx: &Ctx,
    lock: Option<&std::fs::File>,
) -> Result<Connection> {
    let rejected = match open_writer(cfg, ctx) {
        Ok(conn) => return Ok(conn),
        Err(r) => r,
    };
    if !rejected.damaged() {
        return Err(rejected.error);
    }
    if cfg.exclusive {
        // This backend holds the lock file alone: what the check saw is what is there.
        return recover(cfg, ctx, rejected);
    }
    // Without a lock file (a read-only directory, a file system without locks) other
    // processes may have the file open: it is only checked again.
    recheck_in_use(cfg, ctx, rejected, lock)
}

/// The file is damaged and nobody else has it open: with `recover_corrupt`, moves it aside if
/// it is ours (or no SQLite database at all) and opens a new one.
fn recover(cfg: &SqliteBuilder, ctx: &Ctx, rejected: Rejected) -> Result<Connection> {
    if !cfg.recover_corrupt {
        return Err(rejected.error);
    }
    if !rejected.movable() {
        return Err(annotate(
            rejected.error,
            "it does not carry plexcache's application id, so recover_corrupt left it in place",
        ));
    }
    let path = ctx.path.as_path();
    let moved = move_aside(path)?;
    tracing::warn!(
        path = %path.display(),
        moved_to = %moved.display(),
        error = %rejected.error,
        "the cache database is damaged; moved it aside and starting empty"
    );
    open_writer(cfg, ctx).map_err(|r| r.error)
}

/// The file looks damaged: judged alone when the lock file can be taken exclusively (then
/// recovered if configured); while another process holds it (maybe checkpointing), checked
/// again for a while, and never moved aside. The exclusive lock is tried in every round: a
/// holder may be gone by then (a process closing, or a child process that inherited the
/// lock file between its fork and its exec).
fn recheck_in_use(
    cfg: &SqliteBuilder,
    ctx: &Ctx,
    mut rejected: Rejected,
    lock: Option<&std::fs::File>,
) -> Result<Connection> {
    let mut pause = Duration::from_millis(10);
    for round in 0..8 {
        if let Some(lock) = lock {
            if crate::lock::try_exclusive(lock) {
                let out = match open_writer(cfg, ctx) {
                    Ok(conn) => Ok(conn),
                    Err(r) if r.damaged() => recover(cfg, ctx, r),
                    Err(r) => Err(r.error),
                };
                crate::lock::relock(&ctx.path, lock, false, cfg.lock_wait)?;
                return out;
            }
            // A failed upgrade may have released the shared lock (flock converts by
            // unlocking first).
            crate::lock::relock(&ctx.path, lock, false, cfg.lock_wait)?;
        }
        if round == 7 {
            break;
        }
        std::thread::sleep(pause);
        pause = pause.saturating_mul(2);
        match open_writer(cfg, ctx) {
            Ok(conn) => return Ok(conn),
            Err(r) if r.damaged() => rejected = r,
            Err(r) => return Err(r.error),
        }
    }
    if cfg.recover_corrupt {
        Err(annotate(
            rejected.error,
            "it is open elsewhere (another process or backend), or no lock file can tell, so recover_corrupt left it in place",
        ))
    } else {
        Err(rejected.error)
    }
}

/// Adds a sentence to a `Corrupt` error's detail.
fn annotate(e: Error, note: &str) -> Error {
    match e {
        Error::Corrupt {
            path,
            detail,
            source,
        } => Error::Corrupt {
            path,
            detail: format!("{detail}; {note}"),
            source,
        },
        other => other,
    }
}

/// Moves a damaged database (and its WAL) aside as `<name>.corrupt-<unix-millis>` and removes
/// its shared-memory file. Returns the new name.
pub(crate) fn move_aside(path: &Path) -> Result<PathBuf> {
    let target = plexcache_core::fs::move_aside(path, "database")?;
    let wal = wal_path(path);
    if wal.exists() {
        let wal_target = wal_path(&target);
        std::fs::rename(&wal, &wal_target)
            .map_err(|e| Error::io(&wal, "moving the damaged database's WAL aside", e))?;
    }
    let shm = shm_path(path);
    match std::fs::remove_file(&shm) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(Error::io(
                &shm,
                "removing the damaged database's shared memory",
                e,
            ));
        }
    }
    Ok(target)
}
