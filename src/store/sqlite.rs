//! The persistent default usage store: one SQLite file, owned by one relay and written by one
//! dedicated thread.
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
//! queue gives back-pressure instead of a backlog that grows with load.
//!
//! Group commit: the thread takes every job already waiting (up to [`MAX_BATCH`]) and runs them in
//! one `BEGIN IMMEDIATE` transaction, so one WAL append carries the whole batch. Jobs run in arrival
//! order on one connection, so each reservation sees the calls counted before it in the same batch,
//! and a limit of N still lets exactly N through. No job is answered before `COMMIT` returns: a
//! granted reservation is always in the WAL. If the transaction fails, every job in it is answered
//! with the error (the relay then refuses the call with 503, never forwards it). A job that fails on
//! its own while the transaction stays usable (a value out of range, a constraint) is undone alone,
//! inside its savepoint, and the others commit. A reservation opens its savepoint only when it needs
//! more than one statement: the common grant is one `UPDATE`, which SQLite undoes alone if it fails.
//!
//! One relay owns the file: the connection runs in `locking_mode = EXCLUSIVE`, takes the file lock
//! when it opens and keeps it until it closes. That saves the lock and unlock system calls of every
//! transaction and keeps the WAL index in the process's memory (no `-shm` file). A second relay, or
//! any other process, that opens the same `store.path` fails at start with an error saying the file
//! is in use. Relays that share usage use the Redis store.

use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, ErrorCode, OpenFlags, OptionalExtension};
use tokio::sync::{mpsc, oneshot};

use crate::store::{
    keep_token_for, keep_unseen_revocation_for, Reservation, StoreError, TokenRef, Usage,
};

/// Jobs waiting for the store thread; callers beyond this wait for room (back-pressure).
const QUEUE_DEPTH: usize = 1024;

/// Most jobs one transaction carries. Bounds how long the first job of a batch waits for the last
/// one (a reservation takes a few microseconds) and the memory a batch holds.
const MAX_BATCH: usize = 256;

/// How long opening waits for another process to let go of the file, in milliseconds: long enough
/// for a relay that is still exiting, short enough that a second relay on the same file fails fast.
const OPEN_WAIT_MS: u64 = 2_000;

/// Seconds between deletions of records whose token expired more than a day ago.
const SWEEP_INTERVAL: u64 = 3_600;

/// WAL size, in 4 KiB pages, that triggers a checkpoint (SQLite's own default). The checkpoint is
/// the only time the store calls `fsync`, so this sets how often that happens; the WAL is replayed
/// at start after a crash, so it also bounds that work (about 4 MiB).
const WAL_AUTOCHECKPOINT_PAGES: i64 = 1_000;

/// Prepared statements kept by the connection: every statement in this file, with room to spare, so
/// none is ever parsed twice.
const STATEMENT_CACHE: usize = 32;

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

/// One operation waiting for the store thread.
trait Job: Send {
    /// Runs the operation inside the batch's transaction and keeps its result for [`Job::answer`].
    /// Returns the operation's own error, if any.
    fn run(&mut self, db: &mut Db) -> Result<(), StoreError>;

    /// Sends the kept result, or `failed` (the batch's transaction did not commit) instead.
    fn answer(self: Box<Self>, failed: Option<&StoreError>);

    /// True when the job opens its own savepoint ([`Db::isolate`]) before a second statement that
    /// writes, so the batch need not open one around it: a job that fails before that has either
    /// written nothing or had its one statement undone by SQLite.
    fn isolates_itself(&self) -> bool;
}

/// A job made of a closure and the channel its caller waits on.
struct Pending<T, F> {
    work: Option<F>,
    outcome: Option<Result<T, StoreError>>,
    reply: oneshot::Sender<Result<T, StoreError>>,
    /// See [`Job::isolates_itself`].
    isolates_itself: bool,
}

impl<T, F> Pending<T, F> {
    fn new(work: F, reply: oneshot::Sender<Result<T, StoreError>>) -> Pending<T, F> {
        Pending {
            work: Some(work),
            outcome: None,
            reply,
            isolates_itself: false,
        }
    }
}

impl<T, F> Job for Pending<T, F>
where
    T: Send,
    F: FnOnce(&mut Db) -> rusqlite::Result<T> + Send,
{
    fn run(&mut self, db: &mut Db) -> Result<(), StoreError> {
        let Some(work) = self.work.take() else {
            return Ok(());
        };
        let outcome = work(db).map_err(|e| db.fail(e));
        let seen = outcome.as_ref().map(drop).map_err(Clone::clone);
        self.outcome = Some(outcome);
        seen
    }

    fn answer(self: Box<Self>, failed: Option<&StoreError>) {
        let answer = match (failed, self.outcome) {
            (Some(e), _) => Err(e.clone()),
            (None, Some(outcome)) => outcome,
            // A committed batch ran every job; this only guards against a future change breaking that.
            (None, None) => Err(StoreError("the operation was never run".into())),
        };
        // The caller may have gone (client disconnected); the work is done either way.
        let _ = self.reply.send(answer);
    }

    fn isolates_itself(&self) -> bool {
        self.isolates_itself
    }
}

/// Handle to the store thread. Dropping it lets the thread finish the queued jobs, close the
/// database and release the file, and waits for that.
pub struct SqliteStore {
    /// `None` only while dropping: closing the channel is what stops the thread.
    jobs: Option<mpsc::Sender<Box<dyn Job>>>,
    thread: Option<JoinHandle<()>>,
    path: PathBuf,
}

impl SqliteStore {
    /// Opens (or creates) the database, takes the file for this process, checks it can be written
    /// in WAL mode, and starts the thread.
    pub(crate) fn open(path: &Path, max_token_life: u64) -> Result<SqliteStore, StoreError> {
        let mut db = Db::open(path, max_token_life)?;
        let (jobs, mut queue) = mpsc::channel::<Box<dyn Job>>(QUEUE_DEPTH);
        let thread = std::thread::Builder::new()
            .name("relayapi-sqlite".into())
            .spawn(move || {
                let mut batch = Vec::with_capacity(MAX_BATCH);
                // Waits for one job, then takes whatever else is already queued.
                while queue.blocking_recv_many(&mut batch, MAX_BATCH) > 0 {
                    // The first job's wake-up tends to run this thread at once, before the
                    // runtime has queued the other requests it is parsing, which left batches of
                    // 1.7 jobs on average under load. Yielding once lets a runtime thread on the
                    // same core go on until it waits or its time slice ends (batches of about 60
                    // in the bench); on an idle or separate core it returns at once.
                    if batch.len() < MAX_BATCH {
                        std::thread::yield_now();
                        while batch.len() < MAX_BATCH {
                            match queue.try_recv() {
                                Ok(job) => batch.push(job),
                                Err(_) => break,
                            }
                        }
                    }
                    db.run_batch(&mut batch);
                }
            })
            .map_err(|e| {
                StoreError(format!(
                    "{}: cannot start the store thread: {e}",
                    path.display()
                ))
            })?;
        Ok(SqliteStore {
            jobs: Some(jobs),
            thread: Some(thread),
            path: path.to_path_buf(),
        })
    }

    /// Runs `f` on the store thread and waits for its answer, which comes once the transaction
    /// carrying it has committed, without blocking the async worker.
    async fn run<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Db) -> rusqlite::Result<T> + Send + 'static,
    {
        self.submit(f, false).await
    }

    /// [`SqliteStore::run`] for a job that calls [`Db::isolate`] before its second write.
    async fn submit<T, F>(&self, f: F, isolates_itself: bool) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Db) -> rusqlite::Result<T> + Send + 'static,
    {
        let gone = || StoreError(format!("{}: the store thread stopped", self.path.display()));
        let jobs = self.jobs.as_ref().ok_or_else(gone)?;
        let (reply, answer) = oneshot::channel();
        let mut job = Pending::new(f, reply);
        job.isolates_itself = isolates_itself;
        jobs.send(Box::new(job)).await.map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
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
        // `Db::reserve` isolates itself; the sweep is one statement whose failure is ignored.
        self.submit(
            move |db| {
                let r = db.reserve(&tenant, &jti, iat, exp, max, now)?;
                db.sweep(now)?;
                Ok(r)
            },
            true,
        )
        .await
    }

    pub(crate) async fn refund(&self, tenant: &str, jti: &str) -> Result<(), StoreError> {
        let (tenant, jti) = (tenant.to_string(), jti.to_string());
        self.run(move |db| db.refund(&tenant, &jti)).await
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
        self.run(move |db| db.revoke_before(&tenant, ts)).await
    }
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        // Closing the channel ends the thread's loop once the queue is empty; waiting for it means
        // the file is closed and unlocked when the drop returns, so it can be opened again at once.
        drop(self.jobs.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Sets the connection up for this store; errors are for the person starting the relay.
fn configure(conn: &Connection) -> Result<(), String> {
    let sql = |e: rusqlite::Error| {
        if e.sqlite_error_code() == Some(ErrorCode::DatabaseBusy) {
            "the file is in use by another process (is another relay running with this store.path?); \
             a SQLite store belongs to one relay, relays that share usage need the redis store"
                .to_string()
        } else {
            e.to_string()
        }
    };
    conn.busy_timeout(Duration::from_millis(OPEN_WAIT_MS))
        .map_err(sql)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    // Set before anything reads the file: a WAL database first opened in exclusive mode keeps its
    // index in heap memory instead of the shared `-shm` mapping, and the lock taken by the first
    // read and write below is held until the connection closes.
    let locking: String = conn
        .query_row("PRAGMA locking_mode = EXCLUSIVE", [], |r| r.get(0))
        .map_err(sql)?;
    if !locking.eq_ignore_ascii_case("exclusive") {
        return Err(format!(
            "cannot take the file for this relay (locking_mode is {locking})"
        ));
    }
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
    // The first write: from here on the file is locked for this connection.
    conn.execute_batch(&format!(
        "BEGIN IMMEDIATE; {SCHEMA} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
    ))
    .map_err(sql)
}

/// The connection and the store thread's own bookkeeping.
struct Db {
    conn: Connection,
    /// The file's path as shown in errors.
    label: String,
    unseen_revocation_secs: u64,
    /// UTC seconds of the next sweep of forgotten records (0: at the first reservation).
    next_sweep: u64,
    /// Jobs of the running batch need savepoints (it has more than one job).
    isolating: bool,
    /// The running job's savepoint is open.
    in_savepoint: bool,
}

impl Db {
    fn open(path: &Path, max_token_life: u64) -> Result<Db, StoreError> {
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
        Ok(Db {
            conn,
            label: path.display().to_string(),
            unseen_revocation_secs: keep_unseen_revocation_for(max_token_life),
            next_sweep: 0,
            isolating: false,
            in_savepoint: false,
        })
    }

    fn fail(&self, e: impl std::fmt::Display) -> StoreError {
        StoreError(format!("{}: {e}", self.label))
    }

    /// Runs a statement without parameters or rows, parsed once per connection.
    fn exec(&self, sql: &str) -> rusqlite::Result<()> {
        self.conn.prepare_cached(sql)?.execute([]).map(drop)
    }

    /// Opens the running job's savepoint, if its batch needs one and it is not open yet. A job that
    /// [isolates itself](Job::isolates_itself) calls this before a second statement that writes.
    fn isolate(&mut self) -> rusqlite::Result<()> {
        if self.isolating && !self.in_savepoint {
            self.exec("SAVEPOINT job")?;
            self.in_savepoint = true;
        }
        Ok(())
    }

    /// Runs `jobs` in one transaction, then answers every one of them and empties the list.
    fn run_batch(&mut self, jobs: &mut Vec<Box<dyn Job>>) {
        let outcome = self.transact(jobs);
        if outcome.is_err() && !self.conn.is_autocommit() {
            // Leave nothing half done for the next batch. Should this fail too, that batch's BEGIN
            // fails and reports the state of the file to its callers.
            let _ = self.exec("ROLLBACK");
        }
        let failed = outcome.err();
        for job in jobs.drain(..) {
            job.answer(failed.as_ref());
        }
    }

    /// Runs every job and commits. `Err` means nothing of the batch was kept.
    fn transact(&mut self, jobs: &mut [Box<dyn Job>]) -> Result<(), StoreError> {
        // A leftover transaction (a ROLLBACK that failed last time) would turn BEGIN into an error
        // for every batch to come; try to end it first.
        if !self.conn.is_autocommit() {
            let _ = self.exec("ROLLBACK");
        }
        self.exec("BEGIN IMMEDIATE").map_err(|e| self.fail(e))?;
        // A savepoint per job lets one job fail alone. A batch of one (every batch when the relay
        // is not busy) does without: its failure is the transaction's. A job that isolates itself
        // opens its savepoint only if it needs one (see `Job::isolates_itself`).
        self.isolating = jobs.len() > 1;
        for job in jobs.iter_mut() {
            self.in_savepoint = false;
            if self.isolating && !job.isolates_itself() {
                self.isolate().map_err(|e| self.fail(e))?;
            }
            let done = job.run(self);
            if self.conn.is_autocommit() {
                // SQLite rolled the whole transaction back (an I/O error, a full disk, no memory):
                // the jobs before this one lost their work too.
                return Err(done
                    .err()
                    .unwrap_or_else(|| self.fail("the transaction was rolled back")));
            }
            match (done, self.in_savepoint) {
                (Ok(()), false) => Ok(()),
                (Ok(()), true) => self.exec("RELEASE job"),
                // Alone in its batch: its failure is the transaction's.
                (Err(e), false) if !self.isolating => return Err(e),
                // A job that isolates itself failed before its second write: SQLite has undone
                // its one statement, if any, and the others stand.
                (Err(_), false) => Ok(()),
                (Err(_), true) => self
                    .exec("ROLLBACK TO job")
                    .and_then(|()| self.exec("RELEASE job")),
            }
            .map_err(|e| self.fail(e))?;
        }
        self.in_savepoint = false;
        // Answers go out only after this: a granted call is in the WAL before the relay forwards it.
        self.exec("COMMIT").map_err(|e| self.fail(e))
    }

    /// Checks and counts one call. Reads first and writes only what changed: an exhausted or
    /// revoked token usually writes nothing, and the `forget_at` index is touched only when the
    /// token's retention changes, so a batch of grants dirties a single page.
    fn reserve(
        &mut self,
        tenant: &str,
        jti: &str,
        iat: u64,
        exp: u64,
        max: Option<u64>,
        now: u64,
    ) -> rusqlite::Result<Reservation> {
        // Converted before anything is read or written: a value SQLite cannot hold fails the job
        // without side effects.
        let (iat, exp_at, at) = (int(iat)?, int(exp)?, int(now)?);
        let max_calls = max.map(int).transpose()?;
        let forget_at = int(now.saturating_add(keep_token_for(exp, now)))?;
        // The common case in one statement: a known token, not revoked (by id or by its tenant's
        // mark), with a call left and an unchanged retention, gets its call counted and its facts
        // refreshed exactly as the full path below would. `calls_used >= 0` always holds; saying it
        // keeps the conversion below from failing after the write.
        let granted: Option<i64> = self
            .conn
            .prepare_cached(
                "UPDATE token_usage SET max_calls = ?3, expires_at = ?4, issued_at = ?5,
                     calls_used = calls_used + 1,
                     first_used_at = coalesce(first_used_at, ?6), last_used_at = ?6
                 WHERE tenant = ?1 AND jti = ?2 AND revoked = 0 AND forget_at = ?7
                     AND calls_used >= 0 AND (?3 IS NULL OR calls_used < ?3)
                     AND NOT EXISTS (SELECT 1 FROM tenant_revocation t
                                     WHERE t.tenant = ?1 AND ?5 < t.revoked_before)
                 RETURNING calls_used",
            )?
            .query_row(
                params![tenant, jti, max_calls, exp_at, iat, at, forget_at],
                |r| r.get(0),
            )
            .optional()?;
        if let Some(used) = granted {
            return Ok(Reservation::Granted { used: uint(used)? });
        }
        // Anything else may write twice (retention, then facts): inside the job's own savepoint.
        self.isolate()?;
        let mark: Option<i64> = self
            .conn
            .prepare_cached("SELECT revoked_before FROM tenant_revocation WHERE tenant = ?1")?
            .query_row(params![tenant], |r| r.get(0))
            .optional()?;
        if mark.is_some_and(|m| iat < m) {
            // Refused without a record, as every backend does.
            return Ok(Reservation::Revoked);
        }
        type Row = (i64, bool, Option<i64>, Option<i64>, Option<i64>, i64);
        let row: Option<Row> = self
            .conn
            .prepare_cached(
                "SELECT calls_used, revoked, max_calls, expires_at, issued_at, forget_at
                 FROM token_usage WHERE tenant = ?1 AND jti = ?2",
            )?
            .query_row(params![tenant, jti], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                ))
            })
            .optional()?;
        let Some((used, revoked, old_max, old_exp, old_iat, old_forget_at)) = row else {
            // First call of this token: the record is kept even when a limit of 0 refuses it.
            let grant = max != Some(0);
            let first = grant.then_some(at);
            self.conn
                .prepare_cached(
                    "INSERT INTO token_usage (tenant, jti, calls_used, max_calls, expires_at,
                         issued_at, first_used_at, last_used_at, forget_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7, ?8)",
                )?
                .execute(params![
                    tenant,
                    jti,
                    i64::from(grant),
                    max_calls,
                    exp_at,
                    iat,
                    first,
                    forget_at
                ])?;
            return Ok(if grant {
                Reservation::Granted { used: 1 }
            } else {
                Reservation::Exhausted
            });
        };
        if old_forget_at != forget_at {
            // A revocation recorded before the token was seen, or a changed expiry.
            self.conn
                .prepare_cached(
                    "UPDATE token_usage SET forget_at = ?3 WHERE tenant = ?1 AND jti = ?2",
                )?
                .execute(params![tenant, jti, forget_at])?;
        }
        let used = uint(used)?;
        let grant = !revoked && max.is_none_or(|m| used < m);
        // The token's facts are refreshed from its claims on every call, as every backend does.
        if grant || (old_max, old_exp, old_iat) != (max_calls, Some(exp_at), Some(iat)) {
            self.conn
                .prepare_cached(
                    "UPDATE token_usage SET max_calls = ?3, expires_at = ?4, issued_at = ?5,
                         calls_used = calls_used + ?6,
                         first_used_at = CASE WHEN ?6 THEN coalesce(first_used_at, ?7)
                                         ELSE first_used_at END,
                         last_used_at = CASE WHEN ?6 THEN ?7 ELSE last_used_at END
                     WHERE tenant = ?1 AND jti = ?2",
                )?
                .execute(params![
                    tenant,
                    jti,
                    max_calls,
                    exp_at,
                    iat,
                    i64::from(grant),
                    at
                ])?;
        }
        Ok(if revoked {
            Reservation::Revoked
        } else if grant {
            Reservation::Granted { used: used + 1 }
        } else {
            Reservation::Exhausted
        })
    }

    fn refund(&mut self, tenant: &str, jti: &str) -> rusqlite::Result<()> {
        self.conn
            .prepare_cached(
                "UPDATE token_usage SET calls_used = calls_used - 1
                 WHERE tenant = ?1 AND jti = ?2 AND calls_used > 0",
            )?
            .execute(params![tenant, jti])
            .map(drop)
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

    fn revoke_before(&mut self, tenant: &str, ts: u64) -> rusqlite::Result<u64> {
        let mark: i64 = self
            .conn
            .prepare_cached(
                "INSERT INTO tenant_revocation (tenant, revoked_before) VALUES (?1, ?2)
                 ON CONFLICT (tenant) DO UPDATE
                     SET revoked_before = max(revoked_before, excluded.revoked_before)
                 RETURNING revoked_before",
            )?
            .query_row(params![tenant, int(ts)?], |r| r.get(0))?;
        uint(mark)
    }

    /// Deletes records of tokens that can no longer be accepted, at most once per [`SWEEP_INTERVAL`].
    /// A failed sweep only delays clean-up: the one `DELETE` is undone alone and the reservation it
    /// follows stands. The error is returned only when it cost the whole transaction.
    fn sweep(&mut self, now: u64) -> rusqlite::Result<()> {
        if now < self.next_sweep {
            return Ok(());
        }
        self.next_sweep = now.saturating_add(SWEEP_INTERVAL);
        let Ok(now) = int(now) else {
            return Ok(());
        };
        match self
            .conn
            .prepare_cached("DELETE FROM token_usage WHERE forget_at < ?1")
            .and_then(|mut s| s.execute(params![now]))
        {
            Err(e) if self.conn.is_autocommit() => Err(e),
            _ => Ok(()),
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

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::oneshot::error::TryRecvError;

    const TOKEN_LIFE: u64 = 7 * 24 * 3600;

    type Answer<T> = oneshot::Receiver<Result<T, StoreError>>;

    fn open() -> (tempfile::TempDir, Db) {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("usage.db"), TOKEN_LIFE).unwrap();
        (dir, db)
    }

    fn job<T, F>(f: F) -> (Box<dyn Job>, Answer<T>)
    where
        T: Send + 'static,
        F: FnOnce(&mut Db) -> rusqlite::Result<T> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        (Box::new(Pending::new(f, reply)), answer)
    }

    /// A reservation on token `jti` of tenant acme, limited to `max` calls.
    fn reserve(jti: &'static str, max: Option<u64>) -> (Box<dyn Job>, Answer<Reservation>) {
        job(move |db| db.reserve("acme", jti, 1_000, 10_000, max, 1_100))
    }

    fn usage(jti: &'static str) -> (Box<dyn Job>, Answer<Option<Usage>>) {
        job(move |db| db.usage("acme", jti))
    }

    fn answered<T>(mut a: Answer<T>) -> Result<T, StoreError> {
        a.try_recv().expect("every job of a batch is answered")
    }

    fn calls_used(db: &mut Db, jti: &'static str) -> Option<u64> {
        let (j, a) = usage(jti);
        db.run_batch(&mut vec![j]);
        answered(a).unwrap().map(|u| u.calls_used)
    }

    fn wal_len(dir: &tempfile::TempDir) -> u64 {
        std::fs::metadata(dir.path().join("usage.db-wal"))
            .unwrap()
            .len()
    }

    #[test]
    fn a_batch_is_one_transaction_in_arrival_order_answered_after_commit() {
        let (dir, mut db) = open();
        let mut jobs = Vec::new();
        let mut answers = Vec::new();
        for _ in 0..5 {
            let (j, a) = reserve("a", Some(3));
            jobs.push(j);
            answers.push(a);
        }
        // Runs after the first reservation: it must not have been answered yet, and must see the
        // same open transaction.
        let first = answers.remove(0);
        let (probe, probed) = job(move |db| {
            let mut first = first;
            let unanswered = matches!(first.try_recv(), Err(TryRecvError::Empty));
            Ok((unanswered, !db.conn.is_autocommit(), first))
        });
        jobs.insert(1, probe);
        let before = wal_len(&dir);
        db.run_batch(&mut jobs);
        assert!(jobs.is_empty());
        let one_batch = wal_len(&dir) - before;

        let (unanswered, in_transaction, first) = answered(probed).unwrap();
        assert!(unanswered, "a job is answered only after COMMIT");
        assert!(
            in_transaction,
            "every job runs inside the batch's transaction"
        );
        let mut got = vec![answered(first).unwrap()];
        got.extend(answers.into_iter().map(|a| answered(a).unwrap()));
        assert_eq!(
            got,
            [
                Reservation::Granted { used: 1 },
                Reservation::Granted { used: 2 },
                Reservation::Granted { used: 3 },
                Reservation::Exhausted,
                Reservation::Exhausted,
            ],
            "each reservation sees the ones before it in the batch"
        );
        assert!(db.conn.is_autocommit(), "committed");

        // The same reservations one transaction each: the first alone (a new record and its index
        // entry) appends as much to the WAL as the whole batch did.
        let mut appended = Vec::new();
        for _ in 0..5 {
            let before = wal_len(&dir);
            let (j, a) = reserve("b", Some(3));
            db.run_batch(&mut vec![j]);
            answered(a).unwrap();
            appended.push(wal_len(&dir) - before);
        }
        assert!(one_batch > 0);
        assert_eq!(appended[0], one_batch, "one WAL append per batch");
        // Each WAL frame is a 24-byte header and a 4 KiB page.
        assert_eq!(
            appended[1..],
            [4_120, 4_120, 0, 0],
            "a grant on a known token writes one page, a refusal with unchanged facts none"
        );
        assert_eq!(calls_used(&mut db, "a"), Some(3));
    }

    /// How the relay submits reservations: the job opens a savepoint only off the one-statement path.
    fn reserve_isolating(
        jti: &'static str,
        exp: u64,
        max: Option<u64>,
    ) -> (Box<dyn Job>, Answer<Reservation>) {
        let (reply, answer) = oneshot::channel();
        let mut p = Pending::new(
            move |db: &mut Db| db.reserve("acme", jti, 1_000, exp, max, 1_100),
            reply,
        );
        p.isolates_itself = true;
        (Box::new(p), answer)
    }

    #[test]
    fn reservations_that_isolate_themselves_count_exactly_and_fail_alone() {
        let (_dir, mut db) = open();
        let mut jobs = Vec::new();
        let mut answers = Vec::new();
        // New record (full path), two one-statement grants, a failure before any write, a refusal
        // (full path, inside its own savepoint), all in one batch.
        for (exp, max) in [
            (10_000, Some(3)),
            (10_000, Some(3)),
            (10_000, Some(3)),
            (u64::MAX, Some(3)),
            (10_000, Some(3)),
        ] {
            let (j, a) = reserve_isolating("a", exp, max);
            jobs.push(j);
            answers.push(a);
        }
        let (u, seen) = usage("a");
        jobs.push(u);
        db.run_batch(&mut jobs);
        let got: Vec<_> = answers.into_iter().map(answered).collect();
        assert_eq!(
            got[..3],
            [1, 2, 3].map(|used| Ok(Reservation::Granted { used }))
        );
        assert!(got[3].is_err());
        assert_eq!(got[4], Ok(Reservation::Exhausted));
        let u = answered(seen).unwrap().unwrap();
        assert_eq!(
            (u.calls_used, u.first_used_at, u.last_used_at),
            (3, Some(1_100), Some(1_100))
        );

        // A raised limit, a changed expiry (new retention: full path) and a tenant-wide revocation
        // are each seen, batched or alone.
        for batched in [true, false] {
            let (j1, a1) = reserve_isolating("b", 10_000, None);
            let (j2, a2) = reserve_isolating("b", 20_000, None);
            let (j3, a3) = reserve_isolating("b", 20_000, None);
            if batched {
                db.run_batch(&mut vec![j1, j2, j3]);
            } else {
                for j in [j1, j2, j3] {
                    db.run_batch(&mut vec![j]);
                }
            }
            let base = if batched { 0 } else { 3 };
            for (i, a) in [a1, a2, a3].into_iter().enumerate() {
                assert_eq!(
                    answered(a),
                    Ok(Reservation::Granted {
                        used: base + i as u64 + 1
                    })
                );
            }
        }
        let (j, a) = reserve_isolating("a", 10_000, Some(4));
        db.run_batch(&mut vec![j]);
        assert_eq!(answered(a), Ok(Reservation::Granted { used: 4 }));
        let (mark, _) = job(|db| db.revoke_before("acme", 2_000));
        let (j, a) = reserve_isolating("a", 10_000, None);
        db.run_batch(&mut vec![mark, j]);
        assert_eq!(answered(a), Ok(Reservation::Revoked));
        assert_eq!(calls_used(&mut db, "a"), Some(4));
        assert!(db.conn.is_autocommit());
    }

    #[test]
    fn the_first_call_of_a_token_revoked_unseen_sets_its_retention() {
        let (_dir, mut db) = open();
        let forget_at = |db: &Db| -> i64 {
            db.conn
                .query_row(
                    "SELECT forget_at FROM token_usage WHERE tenant = 'acme' AND jti = 'a'",
                    [],
                    |r| r.get(0),
                )
                .unwrap()
        };
        let (j, a) = job(|db| db.revoke("acme", "a"));
        db.run_batch(&mut vec![j]);
        answered(a).unwrap();
        let unseen = forget_at(&db);
        let (j, a) = reserve("a", Some(3));
        db.run_batch(&mut vec![j]);
        assert_eq!(answered(a), Ok(Reservation::Revoked));
        let seen = 10_000 + crate::store::RETAIN_AFTER_EXPIRY;
        assert!(
            unseen > int(seen).unwrap(),
            "kept as long as any token may live"
        );
        assert_eq!(
            forget_at(&db),
            int(seen).unwrap(),
            "then a day after its expiry"
        );
    }

    #[test]
    fn a_job_that_fails_alone_is_undone_alone() {
        let (_dir, mut db) = open();
        let (r1, a1) = reserve("a", Some(3));
        // Writes, then fails with a logic error: its write must go, the others' must stay.
        let (bad, failed) = job(|db| {
            db.reserve("acme", "x", 1_000, 10_000, None, 1_100)?;
            Err::<(), _>(rusqlite::Error::IntegralValueOutOfRange(0, -1))
        });
        // A real per-job error through the store's own code: an expiry SQLite cannot hold.
        let (too_big, refused) = job(|db| db.reserve("acme", "y", 1_000, u64::MAX, None, 1_100));
        let (r2, a2) = reserve("a", Some(3));
        let (u, seen) = usage("x");
        db.run_batch(&mut vec![r1, bad, too_big, r2, u]);
        assert_eq!(answered(a1), Ok(Reservation::Granted { used: 1 }));
        let e = answered(failed).unwrap_err();
        assert!(
            e.0.contains("usage.db") && e.0.contains("out of range"),
            "{e}"
        );
        assert!(answered(refused).is_err());
        assert_eq!(answered(a2), Ok(Reservation::Granted { used: 2 }));
        assert_eq!(answered(seen), Ok(None), "the failed job's write is undone");
        assert_eq!(calls_used(&mut db, "a"), Some(2), "the others committed");
        assert_eq!(calls_used(&mut db, "x"), None);
        assert_eq!(calls_used(&mut db, "y"), None);

        // Alone in its batch, a failing job takes its transaction with it.
        let (bad, failed) = job(|db| {
            db.reserve("acme", "x", 1_000, 10_000, None, 1_100)?;
            Err::<(), _>(rusqlite::Error::IntegralValueOutOfRange(0, -1))
        });
        db.run_batch(&mut vec![bad]);
        assert!(answered(failed).is_err());
        assert!(db.conn.is_autocommit());
        assert_eq!(calls_used(&mut db, "x"), None);
    }

    #[test]
    fn a_failed_commit_answers_every_job_with_the_error_and_keeps_nothing() {
        let (_dir, mut db) = open();
        // A deferred foreign key is checked at COMMIT: a real COMMIT failure, with the transaction
        // still open afterwards.
        db.conn
            .execute_batch(
                "PRAGMA foreign_keys = ON;
                 CREATE TEMP TABLE parent (id INTEGER PRIMARY KEY);
                 CREATE TEMP TABLE child (
                     p INTEGER REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED);",
            )
            .unwrap();
        let (r1, a1) = reserve("a", Some(3));
        let (orphan, o) = job(|db| db.exec("INSERT INTO child VALUES (1)"));
        let (r2, a2) = reserve("a", Some(3));
        db.run_batch(&mut vec![r1, orphan, r2]);
        for e in [
            answered(a1).unwrap_err(),
            answered(o).unwrap_err(),
            answered(a2).unwrap_err(),
        ] {
            assert!(e.0.contains("FOREIGN KEY"), "{e}");
        }
        assert!(db.conn.is_autocommit(), "rolled back");
        assert_eq!(calls_used(&mut db, "a"), None, "nothing of the batch kept");

        // The connection is usable again for the next batch.
        let (r, a) = reserve("a", Some(3));
        db.run_batch(&mut vec![r]);
        assert_eq!(answered(a), Ok(Reservation::Granted { used: 1 }));
    }

    #[test]
    fn a_transaction_lost_mid_batch_fails_every_job() {
        let (_dir, mut db) = open();
        let (r1, a1) = reserve("a", None);
        // What SQLite does on an I/O error or a full disk: roll back the whole transaction.
        let (io, i) = job(|db| {
            db.exec("ROLLBACK")?;
            Err::<(), _>(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_IOERR),
                None,
            ))
        });
        let (r2, a2) = reserve("a", None);
        db.run_batch(&mut vec![r1, io, r2]);
        for e in [
            answered(a1).unwrap_err(),
            answered(i).unwrap_err(),
            answered(a2).unwrap_err(),
        ] {
            assert!(e.0.contains("usage.db") && e.0.contains("I/O"), "{e}");
        }
        assert_eq!(calls_used(&mut db, "a"), None);

        // Lost without an error of its own: still never an answer of success.
        let (r1, a1) = reserve("a", None);
        let (quiet, q) = job(|db| db.exec("ROLLBACK"));
        db.run_batch(&mut vec![r1, quiet]);
        assert!(answered(a1).unwrap_err().0.contains("rolled back"));
        assert!(answered(q).is_err());
        assert_eq!(calls_used(&mut db, "a"), None);
    }

    #[test]
    fn the_connection_owns_the_file_with_cheap_durable_settings() {
        let (dir, db) = open();
        let pragma = |name: &str| -> String {
            db.conn
                .query_row(&format!("PRAGMA {name}"), [], |r| {
                    r.get::<_, rusqlite::types::Value>(0)
                })
                .map(|v| match v {
                    rusqlite::types::Value::Integer(i) => i.to_string(),
                    rusqlite::types::Value::Text(t) => t,
                    other => format!("{other:?}"),
                })
                .unwrap()
        };
        assert_eq!(pragma("locking_mode"), "exclusive");
        assert_eq!(pragma("journal_mode"), "wal");
        assert_eq!(pragma("synchronous"), "1", "NORMAL");
        assert_eq!(pragma("temp_store"), "2", "MEMORY");
        assert_eq!(pragma("wal_autocheckpoint"), "1000");
        assert!(
            !dir.path().join("usage.db-shm").exists(),
            "the WAL index lives in this process's memory"
        );
        let e = Db::open(&dir.path().join("usage.db"), TOKEN_LIFE)
            .err()
            .unwrap();
        assert!(
            e.0.contains("usage.db") && e.0.contains("in use by another process"),
            "{e}"
        );
    }
}
