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
//! The calls of a token whose first call has committed skip all of this: the store thread holds the
//! token, and the runtime thread that asks grants the call under one lock and records it in the
//! grant journal, a file mapped into memory (`proved.rs`, `journal.rs`); the held counts are
//! written into the rows in batches and the journal replayed at start (`fold.rs`). A record there
//! survives `kill -9` as a commit with `synchronous = NORMAL` does.
//!
//! Files: this one holds the handle the relay calls; `writer.rs` the thread, its batches and their
//! transactions; `deferred.rs` the calls a batch counts in memory; `proved.rs`, `journal.rs` and
//! `fold.rs` the calls granted without the store thread, their record, and how they reach the rows;
//! `outbox.rs` how answers reach the callers; `checkpoint.rs` the checkpointer; `lock.rs` the
//! one-relay-per-file lock; `schema.rs` the tables and connection settings; `statements.rs` the
//! statements of the common path, kept prepared, and `counts.rs` the counts a grant tries first;
//! `ops.rs` the SQL of the token operations and `spend.rs` that of the spend lines
//! (`docs/budgets.md` §4).

mod checkpoint;
mod counts;
mod deferred;
mod fold;
mod journal;
mod lock;
mod ops;
mod outbox;
mod proved;
mod schema;
mod spend;
mod statements;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use tokio::sync::oneshot;

use crate::store::sqlite::checkpoint::Checkpointer;
use crate::store::sqlite::deferred::Facts;
use crate::store::sqlite::lock::Owner;
use crate::store::sqlite::outbox::{Carrier, Outbox};
use crate::store::sqlite::proved::{Asked, Proved};
use crate::store::sqlite::writer::{Db, Job, Jobs, Pending, Rows};
use crate::store::{Reservation, Spend, SpendLine, SpendReservation, StoreError, TokenRef, Usage};

/// Seconds between sweeps asked for by calls granted without the store thread. The sweep itself
/// runs at most hourly (`ops.rs`); this only bounds the jobs sent to ask for it.
const SWEEP_ASK_EVERY: u64 = 60;

/// Handle to the store thread. Dropping it lets the thread finish the queued jobs, close the
/// database and release the file, and waits for that.
pub struct SqliteStore {
    /// `None` only while dropping: closing the channel is what stops the thread.
    jobs: Option<Jobs>,
    thread: Option<JoinHandle<()>>,
    /// Answers the store thread left for its callers to send (`outbox.rs`).
    outbox: Arc<Outbox<dyn Job>>,
    /// Tokens whose calls are granted here, without the store thread (`proved.rs`).
    proved: Arc<Proved>,
    /// UTC seconds from which a call granted here asks the store thread for a sweep of forgotten
    /// records, which otherwise only runs with the store thread's reservations.
    sweep_from: AtomicU64,
    path: PathBuf,
    /// This relay's claim on the file, let go after the thread has closed it (fields drop after
    /// [`Drop::drop`]).
    _owner: Owner,
}

impl SqliteStore {
    /// Takes the file for this process, opens (or creates) the database, checks it can be written
    /// in WAL mode, replays the grant journal into it (`fold.rs`), and starts the thread and its
    /// checkpointer.
    pub(crate) fn open(path: &Path, max_token_life: u64) -> Result<SqliteStore, StoreError> {
        let owner = lock::take(path)?;
        let conn = writer::connect(path)?;
        let (journal, epoch) = fold::recover(&conn, path).map_err(StoreError)?;
        let proved = Arc::new(Proved::new(journal, epoch));
        let checkpointer = Checkpointer::start(path)?;
        let outbox = Arc::new(Outbox::default());
        let (jobs, thread) = writer::start(
            conn,
            checkpointer,
            outbox.clone(),
            proved.clone(),
            path,
            max_token_life,
        )?;
        Ok(SqliteStore {
            jobs: Some(jobs),
            thread: Some(thread),
            outbox,
            proved,
            sweep_from: AtomicU64::new(0),
            path: path.to_path_buf(),
            _owner: owner,
        })
    }

    /// Runs `f` on the store thread and waits for its answer, which comes once the transaction
    /// carrying it has committed, without blocking the async worker.
    /// `rows` says which token rows it reads or changes (see [`Rows`]).
    async fn run<T, F>(&self, f: F, rows: Rows) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Db) -> rusqlite::Result<T> + Send + 'static,
    {
        self.submit(f, JobKind::Plain, rows).await
    }

    /// [`SqliteStore::run`] for a job that calls [`Db::isolate`] before its second write.
    async fn submit<T, F>(&self, f: F, kind: JobKind, rows: Rows) -> Result<T, StoreError>
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
        job.rows = rows;
        // Sends what the store thread left in the outbox once this call ends, however it ends.
        let _carrier = Carrier(&self.outbox);
        jobs.send(Box::new(job)).await.map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }

    pub(crate) async fn check(&self) -> Result<(), StoreError> {
        self.run(
            |db| db.conn.query_row("SELECT 1", [], |_| Ok(())),
            Rows::Untouched,
        )
        .await
    }

    /// A token the store thread has proved is granted here, on the caller's thread (`proved.rs`);
    /// any other call takes the store thread's path.
    pub(crate) async fn reserve(
        &self,
        t: TokenRef<'_>,
        now: u64,
    ) -> Result<Reservation, StoreError> {
        // A value SQLite cannot hold fails on the store thread's path, as before.
        if let Ok((facts, at)) = Facts::of(t.iat, t.exp, t.max, now) {
            let answered = match self.proved.grant(t.tenant, t.jti, &facts, at) {
                Asked::Answered(r) => Some((r, false)),
                Asked::AnsweredFoldDue(r) => Some((r, true)),
                Asked::NotHeld | Asked::Held => None,
            };
            if let Some((r, fold_due)) = answered {
                let sweep_due = now >= self.sweep_from.load(Ordering::Relaxed)
                    && self
                        .sweep_from
                        .fetch_max(now + SWEEP_ASK_EVERY, Ordering::Relaxed)
                        <= now;
                if fold_due || sweep_due {
                    self.nudge(now);
                }
                return Ok(r);
            }
        }
        let rows = Rows::Token(t.tenant.into(), t.jti.into());
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
            rows,
        )
        .await
    }

    /// Sends the store thread a job that waits for nobody: it sweeps forgotten records if an hour
    /// has passed (`Db::sweep`), and the batch it starts folds the journal's filling half into the
    /// rows if it is due (`Db::transact`). A full queue needs none: its batches fold, and its
    /// reservations sweep.
    fn nudge(&self, now: u64) {
        if let Some(jobs) = &self.jobs {
            let (reply, _) = oneshot::channel::<Result<(), StoreError>>();
            let _ = jobs.try_send(Box::new(Pending::new(
                move |db: &mut Db| db.sweep(now),
                reply,
            )));
        }
    }

    pub(crate) async fn refund(&self, tenant: &str, jti: &str) -> Result<(), StoreError> {
        let rows = Rows::Token(tenant.into(), jti.into());
        let (tenant, jti) = (tenant.to_string(), jti.to_string());
        self.run(move |db| db.refund(&tenant, &jti), rows).await
    }

    pub(crate) async fn usage(&self, tenant: &str, jti: &str) -> Result<Option<Usage>, StoreError> {
        let (tenant, jti) = (tenant.to_string(), jti.to_string());
        self.run(move |db| db.usage(&tenant, &jti), Rows::Read)
            .await
    }

    pub(crate) async fn revoke(&self, tenant: &str, jti: &str) -> Result<Usage, StoreError> {
        let rows = Rows::Token(tenant.into(), jti.into());
        let (tenant, jti) = (tenant.to_string(), jti.to_string());
        self.run(move |db| db.revoke(&tenant, &jti), rows).await
    }

    pub(crate) async fn revoke_before(&self, tenant: &str, ts: u64) -> Result<u64, StoreError> {
        let tenant = tenant.to_string();
        self.run(move |db| db.revoke_before(&tenant, ts), Rows::All)
            .await
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
            Rows::Untouched,
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
            Rows::Untouched,
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
        self.run(move |db| db.spend_get(&tenant, &keys), Rows::Untouched)
            .await
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

    /// A store on a new file, shared by the tasks of a two-worker runtime.
    fn shared_store() -> (tempfile::TempDir, Arc<SqliteStore>, tokio::runtime::Runtime) {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::open(&dir.path().join("usage.db"), 3600).unwrap());
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        (dir, store, runtime)
    }

    fn token(jti: &str, max: Option<u64>) -> TokenRef<'_> {
        TokenRef {
            jti,
            tenant: "acme",
            iat: 1_000,
            exp: 1_000_000,
            max,
        }
    }

    async fn used(store: &SqliteStore, jti: &str) -> u64 {
        store.usage("acme", jti).await.unwrap().unwrap().calls_used
    }

    /// Waits until the store thread has held what its last batch proved: a job queued behind that
    /// batch is answered after it.
    async fn settled(store: &SqliteStore) {
        store.check().await.unwrap();
    }

    fn granted(n: u64) -> Reservation {
        Reservation::Granted { used: n }
    }

    /// A token's first call proves its row on the store thread; later calls are granted on the
    /// caller's thread, and every job that reads or changes the row sees or replaces them exactly.
    #[tokio::test]
    async fn a_proved_token_is_granted_here_and_every_job_sees_its_calls() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("usage.db"), 3600).unwrap();
        let t = token("a", None);
        assert_eq!(store.reserve(t, 2_000).await.unwrap(), granted(1));
        settled(&store).await;
        assert!(store.proved.holds("acme", "a"), "held once proved");
        for n in 2..=11 {
            assert_eq!(store.reserve(t, 2_000 + n).await.unwrap(), granted(n));
        }
        // A read writes the calls first; the token stays held.
        let u = store.usage("acme", "a").await.unwrap().unwrap();
        assert_eq!((u.calls_used, u.last_used_at), (11, Some(2_011)));
        assert!(store.proved.holds("acme", "a"));
        // A refund changes the row: the token is let go, and proved again by its next call.
        store.refund("acme", "a").await.unwrap();
        assert!(!store.proved.holds("acme", "a"));
        assert_eq!(used(&store, "a").await, 10);
        assert_eq!(store.reserve(t, 2_100).await.unwrap(), granted(11));
        settled(&store).await;
        assert!(store.proved.holds("acme", "a"));
        assert_eq!(store.reserve(t, 2_101).await.unwrap(), granted(12));
        // Revoked: let go, and refused from then on.
        let u = store.revoke("acme", "a").await.unwrap();
        assert_eq!((u.calls_used, u.revoked), (12, true));
        assert!(!store.proved.holds("acme", "a"));
        assert_eq!(store.reserve(t, 2_102).await.unwrap(), Reservation::Revoked);
        settled(&store).await;
        assert!(
            !store.proved.holds("acme", "a"),
            "a refused call proves nothing"
        );

        // A limit is kept here too, and other claims take the store thread's path exactly.
        let l = token("l", Some(3));
        for n in 1..=3 {
            assert_eq!(store.reserve(l, 2_000).await.unwrap(), granted(n));
            settled(&store).await;
        }
        assert!(store.proved.holds("acme", "l"));
        assert_eq!(
            store.reserve(l, 2_000).await.unwrap(),
            Reservation::Exhausted
        );
        let raised = token("l", Some(5));
        assert_eq!(store.reserve(raised, 2_000).await.unwrap(), granted(4));
        settled(&store).await;
        assert_eq!(store.reserve(raised, 2_000).await.unwrap(), granted(5));
        assert_eq!(
            store.reserve(raised, 2_000).await.unwrap(),
            Reservation::Exhausted
        );
        assert_eq!(
            store.usage("acme", "l").await.unwrap().unwrap().max_calls,
            Some(5)
        );

        // A tenant's mark lets every token of the tenant go.
        let b = token("b", None);
        store.reserve(b, 2_000).await.unwrap();
        settled(&store).await;
        assert!(store.proved.holds("acme", "b"));
        store.revoke_before("acme", 1_001).await.unwrap();
        assert!(!store.proved.holds("acme", "b"));
        assert_eq!(store.reserve(b, 2_000).await.unwrap(), Reservation::Revoked);
    }

    /// Calls granted here survive closing and reopening: a clean stop writes them into the rows.
    #[tokio::test]
    async fn calls_granted_here_are_in_the_rows_after_a_clean_stop() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("usage.db");
        {
            let store = SqliteStore::open(&path, 3600).unwrap();
            store.reserve(token("a", None), 2_000).await.unwrap();
            settled(&store).await;
            for _ in 0..99 {
                store.reserve(token("a", None), 2_000).await.unwrap();
            }
        }
        let c = rusqlite::Connection::open(&path).unwrap();
        let n: i64 = c
            .query_row("SELECT calls_used FROM token_usage", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 100);
    }

    /// Grants here racing with refunds and reads on the store thread, across the journal's folds
    /// (far more calls than half a journal holds): every refund and every grant counted once.
    #[test]
    fn grants_here_race_refunds_and_reads_exactly() {
        let (_dir, store, runtime) = shared_store();
        const CALLERS: u64 = 40;
        const CALLS: u64 = 500;
        const LIMIT: u64 = 100_000;
        let (grants, refunds) = runtime.block_on(async {
            let mut tasks = Vec::new();
            for i in 0..CALLERS {
                let store = store.clone();
                tasks.push(tokio::spawn(async move {
                    let (mut grants, mut refunds) = (Vec::new(), 0u64);
                    for k in 0..CALLS {
                        let r = store
                            .reserve(token("hot", Some(LIMIT)), 2_000)
                            .await
                            .unwrap();
                        let Reservation::Granted { used } = r else {
                            panic!("{r:?}")
                        };
                        grants.push(used);
                        // Some callers give their call back, some read: both go through the
                        // store thread while the others are granted here.
                        if i % 4 == 0 && k % 50 == 0 {
                            store.refund("acme", "hot").await.unwrap();
                            refunds += 1;
                        } else if i % 4 == 1 && k % 100 == 0 {
                            let u = store.usage("acme", "hot").await.unwrap().unwrap();
                            assert!(u.calls_used <= LIMIT);
                        }
                    }
                    (grants, refunds)
                }));
            }
            let (mut grants, mut refunds) = (Vec::new(), 0);
            for t in tasks {
                let (g, r) = t.await.unwrap();
                grants.extend(g);
                refunds += r;
            }
            (grants, refunds)
        });
        let total = CALLERS * CALLS;
        assert_eq!(grants.len() as u64, total);
        let used = runtime.block_on(used(&store, "hot"));
        assert_eq!(
            used,
            total - refunds,
            "every grant and every refund counted once"
        );
        // Without refunds every number would be handed out once; with them a number comes back at
        // most once per refund.
        let mut sorted = grants.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert!(sorted.len() as u64 >= total - refunds);
        assert!(grants.iter().all(|&n| (1..=LIMIT).contains(&n)));
    }

    /// Many callers at once on a multi-threaded runtime, a third of them dropped part-way (before
    /// sending, while queued, or after their batch committed): every caller that stays is answered,
    /// a limit of N grants exactly N, and the answers carried for callers that left are not lost.
    #[test]
    fn callers_that_leave_never_strand_the_answers_of_the_others() {
        let (_dir, store, runtime) = shared_store();
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
