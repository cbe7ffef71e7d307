//! The persistent default usage store: one SQLite file, written by one dedicated thread.
//!
//! Durability: the database runs in WAL mode with `synchronous = NORMAL`. A transaction is committed
//! once its frames are appended to the `-wal` file with `write(2)`; SQLite does not `fsync` on every
//! commit. The written frames sit in the OS page cache, which belongs to the kernel, not the process,
//! so a crash or `kill -9` of the relay loses no committed reservation (`tests/store_crash.rs` kills
//! the relay mid-load to prove it). Only a power loss or kernel crash can drop the last commits before
//! the next checkpoint syncs them; for counters that trade is worth an order of magnitude in
//! throughput. Operators who need more can put the file on a battery-backed or synchronous volume.
//!
//! rusqlite is blocking, so no tokio worker ever touches the connection: every operation is sent as a
//! job over a bounded channel to the store's own thread and answered on a oneshot channel. The bounded
//! queue gives back-pressure instead of a backlog that grows with load. Each reservation is one
//! `BEGIN IMMEDIATE` transaction (check the tenant mark, the token's own mark and the limit, then
//! count), so it is atomic even if a second process opens the same file; the store is still meant for
//! one relay host: several hosts share usage through Redis.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, OpenFlags, OptionalExtension, TransactionBehavior};
use tokio::sync::{mpsc, oneshot};

use crate::store::{
    keep_token_for, keep_unseen_revocation_for, Reservation, StoreError, TokenRef, Usage,
};

/// Jobs waiting for the store thread; callers beyond this wait for room (back-pressure).
const QUEUE_DEPTH: usize = 1024;

/// How long a write waits for another process holding the database lock, in milliseconds, before
/// the operation fails with `store_unavailable`.
const BUSY_TIMEOUT_MS: u64 = 5_000;

/// Seconds between deletions of records whose token expired more than a day ago.
const SWEEP_INTERVAL: u64 = 3_600;

/// The schema this code writes (`PRAGMA user_version`). A file from a newer relay is refused rather
/// than misread.
const SCHEMA_VERSION: i64 = 1;

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
";

type Job = Box<dyn FnOnce(&mut Db) + Send>;

/// Handle to the store thread. Dropping the last handle ends the thread and closes the database.
pub struct SqliteStore {
    jobs: mpsc::Sender<Job>,
    path: PathBuf,
}

impl SqliteStore {
    /// Opens (or creates) the database, checks it can be written in WAL mode, and starts the thread.
    pub(crate) fn open(path: &Path, max_token_life: u64) -> Result<SqliteStore, StoreError> {
        let fail = |what: &str, e: &dyn std::fmt::Display| {
            StoreError(format!("{}: {what}: {e}", path.display()))
        };
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| fail("cannot open the database", &e))?;
        configure(&conn).map_err(|e| fail("cannot prepare the database", &e))?;
        let mut db = Db {
            conn,
            unseen_revocation_secs: keep_unseen_revocation_for(max_token_life),
            next_sweep: 0,
        };
        let (jobs, mut queue) = mpsc::channel::<Job>(QUEUE_DEPTH);
        std::thread::Builder::new()
            .name("relayapi-sqlite".into())
            .spawn(move || {
                while let Some(job) = queue.blocking_recv() {
                    job(&mut db);
                }
            })
            .map_err(|e| fail("cannot start the store thread", &e))?;
        Ok(SqliteStore {
            jobs,
            path: path.to_path_buf(),
        })
    }

    /// Runs `f` on the store thread and waits for its answer without blocking the async worker.
    async fn run<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Db) -> rusqlite::Result<T> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job: Job = Box::new(move |db| {
            // The caller may have gone (client disconnected); the work is done either way.
            let _ = reply.send(f(db));
        });
        let gone = || StoreError(format!("{}: the store thread stopped", self.path.display()));
        self.jobs.send(job).await.map_err(|_| gone())?;
        answer
            .await
            .map_err(|_| gone())?
            .map_err(|e| StoreError(format!("{}: {e}", self.path.display())))
    }

    pub(crate) async fn check(&self) -> Result<(), StoreError> {
        self.run(|db| db.conn.query_row("SELECT 1", [], |_| Ok(())))
            .await
    }

    pub(crate) async fn reserve(
        &self,
        t: TokenRef<'_>,
        now: u64,
    ) -> Result<Reservation, StoreError> {
        let (tenant, jti) = (t.tenant.to_string(), t.jti.to_string());
        let (iat, exp, max) = (t.iat, t.exp, t.max);
        self.run(move |db| {
            let r = db.reserve(&tenant, &jti, iat, exp, max, now)?;
            db.sweep(now);
            Ok(r)
        })
        .await
    }

    pub(crate) async fn refund(&self, tenant: &str, jti: &str) -> Result<(), StoreError> {
        let (tenant, jti) = (tenant.to_string(), jti.to_string());
        self.run(move |db| {
            db.conn
                .prepare_cached(
                    "UPDATE token_usage SET calls_used = calls_used - 1
                     WHERE tenant = ?1 AND jti = ?2 AND calls_used > 0",
                )?
                .execute(params![tenant, jti])
                .map(drop)
        })
        .await
    }

    pub(crate) async fn usage(&self, tenant: &str, jti: &str) -> Result<Option<Usage>, StoreError> {
        let (tenant, jti) = (tenant.to_string(), jti.to_string());
        self.run(move |db| db.usage(&tenant, &jti)).await
    }

    pub(crate) async fn revoke(&self, tenant: &str, jti: &str) -> Result<Usage, StoreError> {
        let (tenant, jti) = (tenant.to_string(), jti.to_string());
        self.run(move |db| db.revoke(&tenant, &jti)).await
    }

    pub(crate) async fn revoke_before(&self, tenant: &str, ts: u64) -> Result<u64, StoreError> {
        let tenant = tenant.to_string();
        self.run(move |db| {
            let mark: i64 = db
                .conn
                .prepare_cached(
                    "INSERT INTO tenant_revocation (tenant, revoked_before) VALUES (?1, ?2)
                     ON CONFLICT (tenant) DO UPDATE
                         SET revoked_before = max(revoked_before, excluded.revoked_before)
                     RETURNING revoked_before",
                )?
                .query_row(params![tenant, int(ts)?], |r| r.get(0))?;
            uint(mark)
        })
        .await
    }
}

fn configure(conn: &Connection) -> Result<(), String> {
    let sql = |e: rusqlite::Error| e.to_string();
    conn.busy_timeout(std::time::Duration::from_millis(BUSY_TIMEOUT_MS))
        .map_err(sql)?;
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
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(sql)?;
    if version > SCHEMA_VERSION {
        return Err(format!(
            "written by a newer relay (schema {version}; this relay knows {SCHEMA_VERSION})"
        ));
    }
    conn.execute_batch(&format!(
        "BEGIN IMMEDIATE; {SCHEMA} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
    ))
    .map_err(sql)
}

/// The connection and the store thread's own bookkeeping.
struct Db {
    conn: Connection,
    unseen_revocation_secs: u64,
    /// UTC seconds of the next sweep of forgotten records (0: at the first reservation).
    next_sweep: u64,
}

impl Db {
    fn reserve(
        &mut self,
        tenant: &str,
        jti: &str,
        iat: u64,
        exp: u64,
        max: Option<u64>,
        now: u64,
    ) -> rusqlite::Result<Reservation> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mark: Option<i64> = tx
            .prepare_cached("SELECT revoked_before FROM tenant_revocation WHERE tenant = ?1")?
            .query_row(params![tenant], |r| r.get(0))
            .optional()?;
        if mark.is_some_and(|m| int(iat).is_ok_and(|iat| iat < m)) {
            // Refused without a record, as every backend does.
            return Ok(Reservation::Revoked);
        }
        let forget_at = now.saturating_add(keep_token_for(exp, now));
        let (used, revoked): (i64, bool) = tx
            .prepare_cached(
                "INSERT INTO token_usage (tenant, jti, max_calls, expires_at, issued_at, forget_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (tenant, jti) DO UPDATE SET
                     max_calls = excluded.max_calls, expires_at = excluded.expires_at,
                     issued_at = excluded.issued_at, forget_at = excluded.forget_at
                 RETURNING calls_used, revoked",
            )?
            .query_row(
                params![
                    tenant,
                    jti,
                    max.map(int).transpose()?,
                    int(exp)?,
                    int(iat)?,
                    int(forget_at)?
                ],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
        let result = if revoked {
            Reservation::Revoked
        } else if max.is_some_and(|m| uint(used).is_ok_and(|u| u >= m)) {
            Reservation::Exhausted
        } else {
            let used: i64 = tx
                .prepare_cached(
                    "UPDATE token_usage SET calls_used = calls_used + 1,
                         first_used_at = coalesce(first_used_at, ?3), last_used_at = ?3
                     WHERE tenant = ?1 AND jti = ?2
                     RETURNING calls_used",
                )?
                .query_row(params![tenant, jti, int(now)?], |r| r.get(0))?;
            Reservation::Granted { used: uint(used)? }
        };
        tx.commit()?;
        Ok(result)
    }

    fn usage(&mut self, tenant: &str, jti: &str) -> rusqlite::Result<Option<Usage>> {
        self.conn
            .prepare_cached(
                "SELECT u.calls_used, u.max_calls, u.first_used_at, u.last_used_at, u.expires_at,
                        u.issued_at,
                        u.revoked OR coalesce(u.issued_at < t.revoked_before, 0)
                 FROM token_usage u
                 LEFT JOIN tenant_revocation t ON t.tenant = u.tenant
                 WHERE u.tenant = ?1 AND u.jti = ?2",
            )?
            .query_row(params![tenant, jti], |r| {
                let opt = |i: usize| -> rusqlite::Result<Option<u64>> {
                    r.get::<_, Option<i64>>(i)?.map(uint).transpose()
                };
                Ok(Usage {
                    tenant: tenant.to_string(),
                    calls_used: uint(r.get(0)?)?,
                    max_calls: opt(1)?,
                    first_used_at: opt(2)?,
                    last_used_at: opt(3)?,
                    expires_at: opt(4)?,
                    issued_at: opt(5)?,
                    revoked: r.get(6)?,
                })
            })
            .optional()
    }

    fn revoke(&mut self, tenant: &str, jti: &str) -> rusqlite::Result<Usage> {
        // A never-seen token's expiry is unknown: keep its revocation as long as any token could still
        // be accepted. Only the clean-up time depends on the wall clock, and only to keep longer.
        let forget_at = unix_now().saturating_add(self.unseen_revocation_secs);
        self.conn
            .prepare_cached(
                "INSERT INTO token_usage (tenant, jti, revoked, forget_at) VALUES (?1, ?2, 1, ?3)
                 ON CONFLICT (tenant, jti) DO UPDATE SET revoked = 1",
            )?
            .execute(params![tenant, jti, int(forget_at)?])?;
        self.usage(tenant, jti)?
            .ok_or(rusqlite::Error::QueryReturnedNoRows)
    }

    /// Deletes records of tokens that can no longer be accepted, at most once per [`SWEEP_INTERVAL`].
    fn sweep(&mut self, now: u64) {
        if now < self.next_sweep {
            return;
        }
        self.next_sweep = now.saturating_add(SWEEP_INTERVAL);
        // A failed sweep only delays clean-up; the reservation it follows is already committed.
        if let Ok(now) = int(now) {
            let _ = self
                .conn
                .prepare_cached("DELETE FROM token_usage WHERE forget_at < ?1")
                .and_then(|mut s| s.execute(params![now]));
        }
    }
}

/// SQLite integers are signed 64-bit; the store only ever holds values below 2^53.
fn int(v: u64) -> rusqlite::Result<i64> {
    i64::try_from(v).map_err(|_| rusqlite::Error::IntegralValueOutOfRange(0, i64::MAX))
}

fn uint(v: i64) -> rusqlite::Result<u64> {
    u64::try_from(v).map_err(|_| rusqlite::Error::IntegralValueOutOfRange(0, v))
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
