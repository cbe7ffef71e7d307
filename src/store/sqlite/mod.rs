//! The persistent default usage store: one SQLite file, owned by one relay and written by one
//! dedicated thread.
//!
//! Durability: the database runs in WAL mode with `synchronous = NORMAL`. A transaction is committed
//! once its frames are appended to the `-wal` file with `write(2)`; SQLite does not `fsync` on every
//! commit. The written frames sit in the OS page cache, which belongs to the kernel, not the process,
//! so a crash or `kill -9` of the relay loses no committed reservation (`tests/store_crash.rs` kills
//! the relay mid-load to prove it). Only a power loss or kernel crash can drop the last commits before
//! the next checkpoint syncs them (every few hundred transactions, `checkpoint.rs`); for counters that trade is worth an order of magnitude in
//! throughput. Operators who need more can put the file on a battery-backed or synchronous volume.
//!
//! rusqlite is blocking, so no tokio worker ever touches the connection: every operation is sent as a
//! job over a bounded channel to the store's own thread and answered on a oneshot channel. The bounded
//! queue gives back-pressure instead of a backlog that grows with load. Of a batch's answers the
//! store thread sends one; that caller sends the others from its runtime thread (`outbox.rs`), so a
//! batch costs the runtime one wake-up instead of one per job.
//!
//! Group commit: the thread takes every job already waiting (up to `MAX_BATCH`) and runs them in
//! one `BEGIN IMMEDIATE` transaction, so one WAL append carries the whole batch. Jobs run in arrival
//! order on one connection, so each reservation sees the calls counted before it in the same batch,
//! and a limit of N still lets exactly N through. No job is answered before `COMMIT` returns: a
//! granted reservation is always in the WAL. If the transaction fails, every job in it is answered
//! with the error (the relay then refuses the call with 503, never forwards it). A job that fails on
//! its own while the transaction stays usable (a value out of range, a constraint) is undone alone,
//! inside its savepoint, and the others commit. A reservation opens its savepoint only when it needs
//! more than one statement that writes: the common grant is one `UPDATE` (after a read of the count
//! only when the thread does not remember it), which SQLite undoes alone if it fails.
//! Within a batch, a token's first grant is that `UPDATE`; its later calls in the same batch are
//! counted in memory against what the `UPDATE` proved and written with one more `UPDATE` before any
//! other kind of job and before `COMMIT` (`deferred.rs`), so a batch of many calls of one token
//! costs two statements, not one per call.
//!
//! One relay owns the file: opening the store takes an advisory lock (`flock`) on `<store.path>.lock`
//! and holds it until the store is closed (`lock.rs`), and SQLite's `unix-excl` VFS holds an exclusive
//! lock on the database itself for as long as the relay has it open (`schema.rs`). A second relay,
//! any other process, or a second store in the same process that opens the same `store.path` fails
//! at start with an error saying the file is in use. Relays that share usage use the Redis store.
//! Inside the relay the file has two connections, in SQLite's normal locking mode: the store
//! thread's, the only one that writes rows, and the checkpointer's (`checkpoint.rs`), which copies
//! the WAL back into the database on its own thread so that the `fsync`s of a checkpoint never hold
//! the reservations queued behind a commit. They coordinate in this process's memory, without a
//! system call per transaction and without a `-shm` file.
//!
//! Files: this one holds the handle the relay calls; `writer.rs` the thread, its batches and their
//! transactions; `deferred.rs` the calls a batch counts in memory; `outbox.rs` how their answers
//! reach the callers; `checkpoint.rs` the checkpointer; `lock.rs` the one-relay-per-file lock;
//! `schema.rs` the tables and connection settings; `statements.rs` the statements of
//! the common path, kept prepared, and `counts.rs` the counts a grant tries first; `ops.rs` the SQL
//! of the token operations and `spend.rs` that of the spend lines (`docs/budgets.md` §4).

mod checkpoint;
mod counts;
mod deferred;
mod lock;
mod ops;
mod outbox;
mod schema;
mod spend;
mod statements;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;

use tokio::sync::oneshot;

use crate::store::sqlite::checkpoint::Checkpointer;
use crate::store::sqlite::lock::Owner;
use crate::store::sqlite::outbox::{Carrier, Outbox};
use crate::store::sqlite::writer::{Db, Job, Jobs, Pending};
use crate::store::{Reservation, Spend, SpendLine, SpendReservation, StoreError, TokenRef, Usage};

/// Handle to the store thread. Dropping it lets the thread finish the queued jobs, close the
/// database and release the file, and waits for that.
pub struct SqliteStore {
    /// `None` only while dropping: closing the channel is what stops the thread.
    jobs: Option<Jobs>,
    thread: Option<JoinHandle<()>>,
    /// Answers the store thread left for its callers to send (`outbox.rs`).
    outbox: Arc<Outbox<dyn Job>>,
    path: PathBuf,
    /// This relay's claim on the file, let go after the thread has closed it (fields drop after
    /// [`Drop::drop`]).
    _owner: Owner,
}

impl SqliteStore {
    /// Takes the file for this process, opens (or creates) the database, checks it can be written
    /// in WAL mode, and starts the thread and its checkpointer.
    pub(crate) fn open(path: &Path, max_token_life: u64) -> Result<SqliteStore, StoreError> {
        let owner = lock::take(path)?;
        let conn = writer::connect(path)?;
        let checkpointer = Checkpointer::start(path)?;
        let outbox = Arc::new(Outbox::default());
        let (jobs, thread) =
            writer::start(conn, checkpointer, outbox.clone(), path, max_token_life)?;
        Ok(SqliteStore {
            jobs: Some(jobs),
            thread: Some(thread),
            outbox,
            path: path.to_path_buf(),
            _owner: owner,
        })
    }

    /// Runs `f` on the store thread and waits for its answer, which comes once the transaction
    /// carrying it has committed, without blocking the async worker.
    async fn run<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Db) -> rusqlite::Result<T> + Send + 'static,
    {
        self.submit(f, JobKind::Plain).await
    }

    /// [`SqliteStore::run`] for a job that calls [`Db::isolate`] before its second write.
    async fn submit<T, F>(&self, f: F, kind: JobKind) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Db) -> rusqlite::Result<T> + Send + 'static,
    {
        let gone = || StoreError(format!("{}: the store thread stopped", self.path.display()));
        let jobs = self.jobs.as_ref().ok_or_else(gone)?;
        let (reply, answer) = oneshot::channel();
        let mut job = Pending::new(f, reply);
        job.isolates_itself = kind != JobKind::Plain;
        job.defers = kind == JobKind::Reservation;
        // Sends what the store thread left in the outbox once this call ends, however it ends.
        let _carrier = Carrier(&self.outbox);
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
            JobKind::Reservation,
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

    /// All-or-nothing reservation on spend lines (see `Store::spend_reserve`), answered only once
    /// committed. `now` drives the clean-up of forgotten records, as for call reservations.
    pub(crate) async fn spend_reserve(
        &self,
        tenant: &str,
        lines: &[SpendLine],
        amount: &Spend,
        now: u64,
    ) -> Result<SpendReservation, StoreError> {
        let (tenant, lines, amount) = (tenant.to_string(), lines.to_vec(), *amount);
        // `Db::spend_reserve` isolates itself; the sweep is one statement whose failure is ignored.
        self.submit(
            move |db| {
                let r = db.spend_reserve(&tenant, &lines, &amount)?;
                db.sweep(now)?;
                Ok(r)
            },
            JobKind::IsolatesItself,
        )
        .await
    }

    pub(crate) async fn spend_settle(
        &self,
        tenant: &str,
        lines: &[SpendLine],
        reserved: &Spend,
        actual: &Spend,
    ) -> Result<(), StoreError> {
        let (tenant, lines) = (tenant.to_string(), lines.to_vec());
        let (reserved, actual) = (*reserved, *actual);
        self.submit(
            move |db| db.spend_settle(&tenant, &lines, &reserved, &actual),
            JobKind::IsolatesItself,
        )
        .await
    }

    pub(crate) async fn spend_get(
        &self,
        tenant: &str,
        keys: &[&str],
    ) -> Result<Vec<Spend>, StoreError> {
        let tenant = tenant.to_string();
        let keys: Vec<String> = keys.iter().map(|k| (*k).to_string()).collect();
        self.run(move |db| db.spend_get(&tenant, &keys)).await
    }
}

/// How the store thread treats a job (see `Job::isolates_itself` and `Job::defers`).
#[derive(Clone, Copy, PartialEq, Eq)]
enum JobKind {
    /// Runs in the savepoint the batch opens for it.
    Plain,
    /// Opens its own savepoint when it needs one.
    IsolatesItself,
    /// A call reservation: isolates itself, and may count a call in memory (`deferred.rs`).
    Reservation,
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Many callers at once on a multi-threaded runtime, a third of them dropped part-way (before
    /// sending, while queued, or after their batch committed): every caller that stays is answered,
    /// a limit of N grants exactly N, and the answers carried for callers that left are not lost.
    #[test]
    fn callers_that_leave_never_strand_the_answers_of_the_others() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::open(&dir.path().join("usage.db"), 3600).unwrap());
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        const CALLERS: u64 = 600;
        const LIMIT: u64 = 300;
        let (granted, exhausted) = runtime.block_on(async {
            let mut stay = Vec::new();
            let mut leave = Vec::new();
            for i in 0..CALLERS {
                let store = store.clone();
                let call = tokio::spawn(async move {
                    let t = TokenRef {
                        jti: "j",
                        tenant: "acme",
                        iat: 1_000,
                        exp: 1_000_000,
                        max: Some(LIMIT),
                    };
                    store.reserve(t, 2_000).await
                });
                if i % 3 == 0 {
                    leave.push(call);
                } else {
                    stay.push(call);
                }
            }
            // Drop the leavers at varied points of their call.
            for (i, call) in leave.into_iter().enumerate() {
                for _ in 0..i % 4 {
                    tokio::task::yield_now().await;
                }
                call.abort();
            }
            let (mut granted, mut exhausted) = (Vec::new(), 0);
            for call in stay {
                let answer = tokio::time::timeout(Duration::from_secs(20), call)
                    .await
                    .expect("a caller that stays is answered")
                    .unwrap()
                    .unwrap();
                match answer {
                    Reservation::Granted { used } => granted.push(used),
                    Reservation::Exhausted => exhausted += 1,
                    Reservation::Revoked => panic!("nothing was revoked"),
                }
            }
            (granted, exhausted)
        });
        let used = runtime
            .block_on(store.usage("acme", "j"))
            .unwrap()
            .unwrap()
            .calls_used;
        assert_eq!(
            used, LIMIT,
            "600 callers for 300 calls: exactly 300 granted"
        );
        let mut sorted = granted.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), granted.len(), "each grant has its own number");
        assert!(granted.iter().all(|&n| (1..=LIMIT).contains(&n)));
        assert_eq!(granted.len() as u64 + exhausted, CALLERS - CALLERS / 3);
    }
}
