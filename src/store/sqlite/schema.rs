//! The SQLite file's schema and connection settings: what `PRAGMA`s the store runs with, the tables
//! it keeps, and how a file written by an older relay is brought up to date.

use std::time::Duration;

use rusqlite::{Connection, ErrorCode};

/// How long opening waits for another process to let go of the file (the lock of `lock.rs`, then
/// SQLite's own), in milliseconds: long enough for a relay that is still exiting, short enough that a
/// second relay on the same file fails fast.
pub(super) const OPEN_WAIT_MS: u64 = 2_000;

/// What a relay started on a file another one holds is told (by `lock.rs`, or by SQLite when another
/// process holds its lock on the database, see [`VFS`]).
pub(super) const IN_USE: &str =
    "the file is in use by another process (is another relay running with this store.path?); \
     a SQLite store belongs to one relay, relays that share usage need the redis store";

/// The SQLite VFS both of the store's connections open the file with: `unix` except that the first
/// lock the process takes on the database is one exclusive `fcntl` lock, held until its last
/// connection closes. Other processes (a second relay, the `sqlite3` shell) are kept out as
/// `locking_mode = EXCLUSIVE` kept them out; connections of this process coordinate in memory, with
/// the WAL index on the heap instead of a `-shm` file. With plain `unix` and normal locking, each
/// transaction cost 6 `fcntl` calls on the `-shm` file and the database (`bench/instructions.sh`,
/// `INSTR_SYSCALLS=1`: 18.4 system calls per request against 13.1). It does not keep a second store
/// of the same process off the file: that is `lock.rs`'s lock.
pub(super) const VFS: &str = "unix-excl";

/// No automatic checkpoint on this connection: SQLite would run it inside the `COMMIT` that crosses
/// the threshold, on the store thread, and its two `fsync`s (several milliseconds here) would hold
/// every reservation queued behind it (it was the relay's p99 at 1,000 requests per second). The
/// checkpointer's own connection does it instead (`checkpoint.rs`).
///
/// How often it runs still matters to the commit: every commit appends a frame of the same hot page,
/// and SQLite's WAL index finds a free hash slot by walking past every earlier frame of that page
/// since the WAL last started over (after a complete checkpoint): about 5,000 instructions per commit
/// on average with a restart every 1,000 frames (`bench/instructions.sh`, one connection). See
/// `checkpoint::COMMITS_PER_CHECKPOINT`.
const WAL_AUTOCHECKPOINT_PAGES: i64 = 0;

/// Prepared statements kept by the connection: every statement of the store, with room to spare, so
/// none is ever parsed twice.
const STATEMENT_CACHE: usize = 32;

/// The schema this code writes (`PRAGMA user_version`). A file from a newer relay is refused rather
/// than misread. Version 2 added `spend_line`: an older relay would count calls on such a file but
/// never see its budgets, so it must refuse it instead. Version 3 added `grant_journal`: an older
/// relay would not replay the grant journal (`journal.rs`) and could count fewer calls than were made. Every table is created `IF NOT EXISTS`, which
/// is the whole migration from an older file: opening it adds what it lacks and keeps what it holds.
pub(super) const SCHEMA_VERSION: i64 = 3;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS token_usage (
    tenant        TEXT    NOT NULL,
    jti           TEXT    NOT NULL,
    calls_used    INTEGER NOT NULL DEFAULT 0,
    max_calls     INTEGER,
    first_used_at INTEGER,
    last_used_at  INTEGER,
    expires_at    INTEGER,
    issued_at     INTEGER,
    revoked       INTEGER NOT NULL DEFAULT 0,
    -- UTC seconds after which the record may be deleted: the token can no longer be accepted.
    forget_at     INTEGER NOT NULL,
    PRIMARY KEY (tenant, jti)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS token_usage_forget_at ON token_usage (forget_at);
CREATE TABLE IF NOT EXISTS tenant_revocation (
    tenant         TEXT    PRIMARY KEY,
    revoked_before INTEGER NOT NULL
) WITHOUT ROWID;
-- Spend counters (docs/budgets.md §4), keyed by tenant and line key (`t/<jti>`, `u/<uid>/d/<day>`, ...).
-- Every amount is 0..=2^53-1; reservations in flight are included.
CREATE TABLE IF NOT EXISTS spend_line (
    tenant       TEXT    NOT NULL,
    key          TEXT    NOT NULL,
    calls        INTEGER NOT NULL,
    input        INTEGER NOT NULL,
    output       INTEGER NOT NULL,
    cached_input INTEGER NOT NULL,
    cost         INTEGER NOT NULL,
    -- UTC seconds until which the line is kept (only ever raised); deleted once past.
    keep_until   INTEGER NOT NULL,
    PRIMARY KEY (tenant, key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS spend_line_keep_until ON spend_line (keep_until);
-- From where the grant journal (`<file>.grants`) may hold calls the rows lack (store/sqlite/fold.rs).
CREATE TABLE IF NOT EXISTS grant_journal (
    id           INTEGER PRIMARY KEY CHECK (id = 0),
    epoch        INTEGER NOT NULL,
    offset_bytes INTEGER NOT NULL
);
";

/// Sets the connection up for this store; errors are for the person starting the relay.
pub(super) fn configure(conn: &Connection) -> Result<(), String> {
    let sql = |e: rusqlite::Error| {
        if e.sqlite_error_code() == Some(ErrorCode::DatabaseBusy) {
            // Another process holds SQLite's lock on the file (`VFS`): an older relay, which had
            // no `lock.rs` lock, or any other program. A relay would have been stopped by `lock.rs`.
            IN_USE.to_string()
        } else {
            e.to_string()
        }
    };
    conn.busy_timeout(Duration::from_millis(OPEN_WAIT_MS))
        .map_err(sql)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    // Normal locking, not `locking_mode = EXCLUSIVE`: the checkpointer's connection must share the
    // file (`checkpoint.rs`). [`VFS`] keeps what exclusive mode gave: no lock calls per transaction,
    // the WAL index in this process's memory, other processes kept out.
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .map_err(sql)?;
    if !mode.eq_ignore_ascii_case("wal") {
        // Without WAL the durability argument in this file's header does not hold; say so at start.
        return Err(format!(
            "the file system does not support WAL mode (journal_mode is {mode}); \
             put the database on a local disk"
        ));
    }
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(sql)?;
    // Savepoint journals of multi-job batches stay in memory: they only ever hold a few pages.
    conn.pragma_update(None, "temp_store", "MEMORY")
        .map_err(sql)?;
    conn.pragma_update(None, "wal_autocheckpoint", WAL_AUTOCHECKPOINT_PAGES)
        .map_err(sql)?;
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(sql)?;
    if version > SCHEMA_VERSION {
        return Err(format!(
            "written by a newer relay (schema {version}; this relay knows {SCHEMA_VERSION})"
        ));
    }
    // The first write, which creates the tables of a new file.
    conn.execute_batch(&format!(
        "BEGIN IMMEDIATE; {SCHEMA} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
    ))
    .map_err(sql)
}
