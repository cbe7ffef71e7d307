//! The store thread: one connection, fed jobs over a bounded channel, running each batch of waiting
//! jobs in one transaction with a savepoint per job, and answering nobody before `COMMIT` returns
//! (the answers go out through `outbox.rs`).

use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;

use rusqlite::{Connection, OpenFlags};
use tokio::sync::{mpsc, oneshot};

use crate::store::keep_unseen_revocation_for;
use crate::store::sqlite::checkpoint::Checkpointer;
use crate::store::sqlite::counts::Counts;
use crate::store::sqlite::deferred::{Deferred, Facts};
use crate::store::sqlite::fold;
use crate::store::sqlite::outbox::{Outbox, Settled};
use crate::store::sqlite::proved::{Capture, Freeze, Proved};
use crate::store::sqlite::schema::{configure, VFS};
use crate::store::sqlite::statements::Prepared;
use crate::store::StoreError;

/// Jobs waiting for the store thread; callers beyond this wait for room (back-pressure).
const QUEUE_DEPTH: usize = 1024;

/// Most jobs one transaction carries. Bounds how long the first job of a batch waits for the last
/// one (a reservation takes a few microseconds) and the memory a batch holds.
const MAX_BATCH: usize = 256;

/// One operation waiting for the store thread.
pub(super) trait Job: Settled {
    /// Runs the operation inside the batch's transaction and keeps its result for [`Job::answer`].
    /// Returns the operation's own error, if any.
    fn run(&mut self, db: &mut Db) -> Result<(), StoreError>;

    /// Fixes the answer once the batch has ended: the kept result, or `failed` (the batch's
    /// transaction did not commit) instead.
    fn settle(&mut self, failed: Option<&StoreError>);

    /// True when the job opens its own savepoint ([`Db::isolate`]) before a second statement that
    /// writes, so the batch need not open one around it: a job that fails before that has either
    /// written nothing or had its one statement undone by SQLite.
    fn isolates_itself(&self) -> bool;

    /// True when the job touches token records only through [`Db::reserve`], so the batch's
    /// deferred calls (`deferred.rs`) need not be written before it runs.
    fn defers(&self) -> bool;

    /// The token rows the job reads or changes, so the calls granted from the proved counts
    /// (`proved.rs`) are written into them first.
    fn rows(&self) -> &Rows;
}

/// What a job does with token rows, as far as the proved counts (`proved.rs`) are concerned.
#[derive(Debug, Default)]
pub(super) enum Rows {
    /// Nothing (a check, spend lines).
    #[default]
    Untouched,
    /// Reads them (the usage of a token): every call granted from the proved counts is written
    /// first.
    Read,
    /// Reserves a call of this token on the store thread's path, or changes its row (a refund, a
    /// revocation): if the token is held, its count is written and it is frozen first.
    Token(Box<str>, Box<str>),
    /// Changes what every token's grant depends on (a tenant's mark): every count is written and
    /// every token frozen first.
    All,
}

/// A job made of a closure and the channel its caller waits on.
pub(super) struct Pending<T, F> {
    work: Option<F>,
    outcome: Option<Result<T, StoreError>>,
    reply: oneshot::Sender<Result<T, StoreError>>,
    /// See [`Job::isolates_itself`].
    pub(super) isolates_itself: bool,
    /// See [`Job::defers`].
    pub(super) defers: bool,
    /// See [`Job::rows`].
    pub(super) rows: Rows,
}

impl<T, F> Pending<T, F> {
    pub(super) fn new(work: F, reply: oneshot::Sender<Result<T, StoreError>>) -> Pending<T, F> {
        Pending {
            work: Some(work),
            outcome: None,
            reply,
            isolates_itself: false,
            defers: false,
            rows: Rows::Untouched,
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

    fn settle(&mut self, failed: Option<&StoreError>) {
        if let Some(e) = failed {
            self.outcome = Some(Err(e.clone()));
        }
    }

    fn isolates_itself(&self) -> bool {
        self.isolates_itself
    }

    fn defers(&self) -> bool {
        self.defers
    }

    fn rows(&self) -> &Rows {
        &self.rows
    }
}

impl<T, F> Settled for Pending<T, F>
where
    T: Send,
    F: Send,
{
    fn waiting(&self) -> bool {
        !self.reply.is_closed()
    }

    fn answer(self: Box<Self>) -> bool {
        // A committed batch ran every job; this only guards against a future change breaking that.
        let answer = self
            .outcome
            .unwrap_or_else(|| Err(StoreError("the operation was never run".into())));
        // The caller may have gone (client disconnected); the work is done either way.
        self.reply.send(answer).is_ok()
    }
}

/// Where callers send jobs for the store thread.
pub(super) type Jobs = mpsc::Sender<Box<dyn Job>>;

/// Starts the store thread on `conn` (opened by [`connect`]): it prepares the common statements,
/// then waits for a job, takes whatever else is already queued (up to [`MAX_BATCH`]), runs them as one
/// batch, hands the answers to `outbox`, holds the tokens the batch proved (`proved.rs`), tells
/// `checkpointer` of the transaction, and stops once every sender is gone and the queue is empty: it
/// writes the proved counts, stops the checkpointer, then closes its connection, the last one on the
/// file, which checkpoints what is left of the WAL and removes it.
pub(super) fn start(
    conn: Connection,
    mut checkpointer: Checkpointer,
    outbox: Arc<Outbox<dyn Job>>,
    proved: Arc<Proved>,
    path: &Path,
    max_token_life: u64,
) -> Result<(Jobs, JoinHandle<()>), StoreError> {
    let (jobs, mut queue) = mpsc::channel::<Box<dyn Job>>(QUEUE_DEPTH);
    // The statements borrow the connection, so both live on the thread; whether they could be
    // prepared comes back here, to fail the start instead of every job.
    let (ready, started) = std::sync::mpsc::sync_channel(1);
    let label = path.display().to_string();
    let thread = std::thread::Builder::new()
        .name("relayapi-sqlite".into())
        .spawn(move || {
            let mut db = match Db::new(&conn, label, max_token_life, proved) {
                Ok(db) => {
                    let _ = ready.send(Ok(()));
                    db
                }
                Err(e) => {
                    let _ = ready.send(Err(e));
                    return;
                }
            };
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
                outbox.deliver(&mut batch);
                // After the answers: holding a token proved by this batch can wait for them.
                db.hold_proved();
                checkpointer.committed();
            }
            db.close();
            drop(db);
            drop(checkpointer);
            drop(conn);
        })
        .map_err(|e| {
            StoreError(format!(
                "{}: cannot start the store thread: {e}",
                path.display()
            ))
        })?;
    match started.recv() {
        Ok(Ok(())) => Ok((jobs, thread)),
        Ok(Err(e)) => {
            let _ = thread.join();
            Err(e)
        }
        Err(_) => {
            let _ = thread.join();
            Err(StoreError(format!(
                "{}: the store thread stopped while starting",
                path.display()
            )))
        }
    }
}

/// Opens (or creates) the database file and sets it up for the store (`schema.rs`); errors are for
/// the person starting the relay.
pub(super) fn connect(path: &Path) -> Result<Connection, StoreError> {
    let fail = |what: &str, e: &dyn std::fmt::Display| {
        StoreError(format!("{}: {what}: {e}", path.display()))
    };
    let conn = Connection::open_with_flags_and_vfs(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        VFS,
    )
    .map_err(|e| fail("cannot open the database", &e))?;
    configure(&conn).map_err(|e| fail("cannot prepare the database", &e))?;
    Ok(conn)
}

/// The connection, its prepared statements and the store thread's own bookkeeping.
pub(super) struct Db<'c> {
    pub(super) conn: &'c Connection,
    pub(super) prepared: Prepared<'c>,
    /// The count last left on each token granted lately (a guess the grant checks).
    pub(super) counts: Counts,
    /// Calls of the running batch counted in memory, written before it commits (`deferred.rs`).
    pub(super) deferred: Deferred,
    /// A tenant may have a revocation mark: false only while `tenant_revocation` is known to be
    /// empty. Set before a mark is written and never cleared (marks are never deleted; a mark in a
    /// batch that rolled back only costs the look-up), so a grant that skips the look-up is exact.
    /// This holds because this connection is the only one that writes rows: the checkpointer's
    /// (`checkpoint.rs`) copies pages, and `lock.rs` keeps other relays off the file.
    pub(super) tenant_marks: bool,
    /// The file's path as shown in errors.
    pub(super) label: String,
    pub(super) unseen_revocation_secs: u64,
    /// UTC seconds of the next sweep of forgotten records (0: at the first reservation).
    pub(super) next_sweep: u64,
    /// The tokens whose calls runtime threads grant, and the grant journal (`proved.rs`).
    pub(super) proved: Arc<Proved>,
    /// Folds of the running transaction: told to `proved` when it ends.
    captures: Vec<Capture>,
    /// Tokens a grant of the running batch proved, held once it commits if their rows still agree.
    candidates: Vec<(Box<str>, Box<str>, Facts)>,
    /// Jobs of the running batch need savepoints (it has more than one job).
    pub(super) isolating: bool,
    /// The running job's savepoint is open.
    pub(super) in_savepoint: bool,
}

impl<'c> Db<'c> {
    /// The store's state on a connection from [`connect`]; `label` names the file in errors.
    pub(super) fn new(
        conn: &'c Connection,
        label: String,
        max_token_life: u64,
        proved: Arc<Proved>,
    ) -> Result<Db<'c>, StoreError> {
        let fail =
            |e: rusqlite::Error| StoreError(format!("{label}: cannot prepare the statements: {e}"));
        let prepared = Prepared::new(conn).map_err(fail)?;
        let tenant_marks = conn
            .query_row("SELECT EXISTS (SELECT 1 FROM tenant_revocation)", [], |r| {
                r.get(0)
            })
            .map_err(fail)?;
        Ok(Db {
            conn,
            prepared,
            counts: Counts::default(),
            deferred: Deferred::default(),
            tenant_marks,
            label,
            unseen_revocation_secs: keep_unseen_revocation_for(max_token_life),
            next_sweep: 0,
            proved,
            captures: Vec::new(),
            candidates: Vec::new(),
            isolating: false,
            in_savepoint: false,
        })
    }

    pub(super) fn fail(&self, e: impl std::fmt::Display) -> StoreError {
        StoreError(format!("{}: {e}", self.label))
    }

    /// Runs a statement without parameters or rows, parsed once per connection.
    pub(super) fn exec(&self, sql: &str) -> rusqlite::Result<()> {
        self.conn.prepare_cached(sql)?.execute([]).map(drop)
    }

    /// Opens the running job's savepoint, if its batch needs one and it is not open yet. A job that
    /// [isolates itself](Job::isolates_itself) calls this before a second statement that writes.
    pub(super) fn isolate(&mut self) -> rusqlite::Result<()> {
        if self.isolating && !self.in_savepoint {
            self.exec("SAVEPOINT job")?;
            self.in_savepoint = true;
        }
        Ok(())
    }

    /// Runs `jobs` in one transaction and settles every one's answer, to be sent by the caller.
    pub(super) fn run_batch(&mut self, jobs: &mut [Box<dyn Job>]) {
        let outcome = self.transact(jobs);
        if outcome.is_err() && !self.conn.is_autocommit() {
            // Leave nothing half done for the next batch. Should this fail too, that batch's BEGIN
            // fails and reports the state of the file to its callers.
            let _ = self.exec("ROLLBACK");
        }
        // Whatever was deferred is in the committed transaction, or nowhere.
        self.deferred.clear();
        let captures = std::mem::take(&mut self.captures);
        if outcome.is_ok() {
            self.proved.committed(&captures);
        } else {
            self.proved.failed(captures);
            self.candidates.clear();
        }
        let failed = outcome.err();
        for job in jobs.iter_mut() {
            job.settle(failed.as_ref());
        }
    }

    /// Runs every job and commits. `Err` means nothing of the batch was kept.
    fn transact(&mut self, jobs: &mut [Box<dyn Job>]) -> Result<(), StoreError> {
        // A leftover transaction (a ROLLBACK that failed last time) would turn BEGIN into an error
        // for every batch to come; try to end it first.
        if !self.conn.is_autocommit() {
            let _ = self.exec("ROLLBACK");
        }
        self.prepared.begin.execute([]).map_err(|e| self.fail(e))?;
        // A savepoint per job lets one job fail alone. A batch of one (every batch when the relay
        // is not busy) does without: its failure is the transaction's. A job that isolates itself
        // opens its savepoint only if it needs one (see `Job::isolates_itself`).
        self.isolating = jobs.len() > 1;
        for job in jobs.iter_mut() {
            self.in_savepoint = false;
            if !job.defers() {
                // Before the job's savepoint: if the job fails, its rollback must not undo them.
                self.flush_deferred().map_err(|e| self.fail(e))?;
            }
            // The same for the proved counts the job's rows need.
            self.fold_for(job.rows())?;
            if self.isolating && !job.isolates_itself() {
                self.isolate().map_err(|e| self.fail(e))?;
            }
            self.deferred.job_started();
            let done = job.run(self);
            if done.is_err() {
                self.deferred.undo_job();
            }
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
        self.flush_deferred().map_err(|e| self.fail(e))?;
        if self.proved.fold_due() {
            // The journal's half is filling: its calls go into the rows so the other half is free.
            self.fold(Freeze::Nothing)?;
        }
        // Answers go out only after this: a granted call is in the WAL before the relay forwards it.
        self.prepared
            .commit
            .execute([])
            .map(drop)
            .map_err(|e| self.fail(e))
    }

    /// Before a job: writes the proved counts its rows need and freezes what it changes (see
    /// [`Rows`]), in the transaction and outside the job's savepoint.
    fn fold_for(&mut self, rows: &Rows) -> Result<(), StoreError> {
        let freeze = match rows {
            Rows::Untouched => return Ok(()),
            Rows::Read => Freeze::Nothing,
            Rows::Token(tenant, jti) if self.proved.holds(tenant, jti) => {
                Freeze::Token(tenant, jti)
            }
            Rows::Token(..) => return Ok(()),
            Rows::All => {
                // A grant earlier in the batch proved a row the mark may now refuse.
                self.candidates.clear();
                Freeze::All
            }
        };
        self.fold(freeze)
    }

    /// Writes the counts granted from the proved counts since the last fold, and the journal
    /// position they cover (`fold.rs`), inside the running transaction. A failure fails the batch.
    fn fold(&mut self, freeze: Freeze<'_>) -> Result<(), StoreError> {
        let Some(capture) = self.proved.capture(freeze) else {
            return Ok(());
        };
        let written = fold::write(self.conn, &capture);
        // Kept even if the write failed: the batch fails, and `Proved::failed` takes it back.
        self.captures.push(capture);
        written.map_err(|e| self.fail(e))
    }

    /// Remembers that a grant of the running batch proved the token's row with `facts`.
    pub(super) fn candidate(&mut self, tenant: &str, jti: &str, facts: Facts) {
        if !self
            .candidates
            .iter()
            .any(|(t, j, _)| &**t == tenant && &**j == jti)
        {
            self.candidates.push((tenant.into(), jti.into(), facts));
        }
    }

    /// After a committed batch: holds each token a grant of it proved (`proved.rs`), with the count
    /// and time its committed row holds, unless that row no longer shows those facts unrevoked (a
    /// later job of the batch changed it). A row that cannot be read is simply not held.
    pub(super) fn hold_proved(&mut self) {
        for (tenant, jti, facts) in std::mem::take(&mut self.candidates) {
            let Ok(Some(row)) = self.token_row(&tenant, &jti) else {
                continue;
            };
            let proves = !row.revoked
                && row.max_calls == facts.max_calls
                && row.exp_at == Some(facts.exp_at)
                && row.iat == Some(facts.iat)
                && row.forget_at == facts.forget_at;
            if proves {
                self.proved
                    .hold(&tenant, &jti, facts, row.used, row.last_at.unwrap_or(0));
            }
        }
    }

    /// When the store closes: writes every count granted from the proved counts, so a clean stop
    /// leaves nothing to replay, and the journal's pages out. Should it fail, the next start
    /// replays the journal instead.
    fn close(&mut self) {
        let outcome = (|| {
            self.prepared.begin.execute([]).map_err(|e| self.fail(e))?;
            self.fold(Freeze::Nothing)?;
            self.prepared
                .commit
                .execute([])
                .map(drop)
                .map_err(|e| self.fail(e))
        })();
        if outcome.is_err() && !self.conn.is_autocommit() {
            let _ = self.exec("ROLLBACK");
        }
        let captures = std::mem::take(&mut self.captures);
        if outcome.is_ok() {
            self.proved.committed(&captures);
        } else {
            self.proved.failed(captures);
        }
        let _ = self.proved.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::ops::int;
    use crate::store::Usage;
    use crate::store::{Reservation, Spend, SpendLimit, SpendLine, SpendReservation};
    use tokio::sync::oneshot::error::TryRecvError;

    const TOKEN_LIFE: u64 = 7 * 24 * 3600;

    type Answer<T> = oneshot::Receiver<Result<T, StoreError>>;

    fn open() -> (tempfile::TempDir, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let conn = connect(&dir.path().join("usage.db")).unwrap();
        (dir, conn)
    }

    fn db(conn: &Connection) -> Db<'_> {
        let path = std::path::PathBuf::from(conn.path().unwrap());
        let (journal, epoch) = fold::recover(conn, &path).unwrap();
        let proved = Arc::new(Proved::new(journal, epoch));
        Db::new(conn, "usage.db".into(), TOKEN_LIFE, proved).unwrap()
    }

    impl Db<'_> {
        /// Runs a batch and answers every job at once, as the outbox does once its carrier is done.
        fn run_batch_answered(&mut self, jobs: &mut Vec<Box<dyn Job>>) {
            self.run_batch(jobs);
            for job in jobs.drain(..) {
                job.answer();
            }
        }
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
        db.run_batch_answered(&mut vec![j]);
        answered(a).unwrap().map(|u| u.calls_used)
    }

    fn wal_len(dir: &tempfile::TempDir) -> u64 {
        std::fs::metadata(dir.path().join("usage.db-wal"))
            .unwrap()
            .len()
    }

    #[test]
    fn a_batch_is_one_transaction_in_arrival_order_answered_after_commit() {
        let (dir, conn) = open();
        let mut db = db(&conn);
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
        db.run_batch_answered(&mut jobs);
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
            db.run_batch_answered(&mut vec![j]);
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

    #[test]
    fn a_remembered_count_is_only_tried_never_trusted() {
        let (_dir, conn) = open();
        let mut db = db(&conn);
        let reserve_alone = |db: &mut Db| {
            let (j, a) = reserve("a", Some(5));
            db.run_batch_answered(&mut vec![j]);
            answered(a).unwrap()
        };
        for used in 1..=2 {
            assert_eq!(reserve_alone(&mut db), Reservation::Granted { used });
        }
        // Counts changed behind the store thread's memory, up and down: each grant counts from the
        // stored value, and the limit holds.
        db.exec("UPDATE token_usage SET calls_used = 4").unwrap();
        assert_eq!(reserve_alone(&mut db), Reservation::Granted { used: 5 });
        assert_eq!(reserve_alone(&mut db), Reservation::Exhausted);
        db.exec("UPDATE token_usage SET calls_used = 0").unwrap();
        assert_eq!(reserve_alone(&mut db), Reservation::Granted { used: 1 });
        db.exec("DELETE FROM token_usage").unwrap();
        assert_eq!(reserve_alone(&mut db), Reservation::Granted { used: 1 });
        assert_eq!(calls_used(&mut db, "a"), Some(1));
    }

    #[test]
    fn a_tenant_mark_is_looked_up_once_one_exists_even_after_reopening() {
        let (_dir, conn) = open();
        {
            let mut db = db(&conn);
            assert!(!db.tenant_marks, "an empty table: grants skip the look-up");
            let (j, a) = reserve("a", None);
            db.run_batch_answered(&mut vec![j]);
            assert_eq!(answered(a), Ok(Reservation::Granted { used: 1 }));
            let (mark, _) = job(|db| db.revoke_before("acme", 2_000));
            db.run_batch_answered(&mut vec![mark]);
            assert!(db.tenant_marks);
        }
        let mut db = db(&conn);
        assert!(db.tenant_marks, "read from the file at start");
        let (j, a) = reserve("a", None);
        db.run_batch_answered(&mut vec![j]);
        assert_eq!(answered(a), Ok(Reservation::Revoked));
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
        p.defers = true;
        (Box::new(p), answer)
    }

    /// Runs `jobs` as one batch and returns their answers in order.
    fn answers_of<T>(
        db: &mut Db,
        jobs: Vec<(Box<dyn Job>, Answer<T>)>,
    ) -> Vec<Result<T, StoreError>> {
        let (mut jobs, answers): (Vec<_>, Vec<_>) = jobs.into_iter().unzip();
        db.run_batch_answered(&mut jobs);
        answers.into_iter().map(answered).collect()
    }

    /// Reservations of one token in one batch, with other kinds of job between them: each sees
    /// exactly the calls before it, whether those were written or counted in memory (`deferred.rs`).
    #[test]
    fn calls_counted_in_memory_are_seen_by_every_later_job_of_the_batch() {
        use Reservation::{Exhausted, Granted, Revoked};
        let (_dir, conn) = open();
        let mut db = db(&conn);
        let r = |max| reserve_isolating("a", 10_000, max);

        // Reservations only: one written grant, the rest counted in memory, the limit exact.
        let got = answers_of(&mut db, (0..6).map(|_| r(Some(4))).collect());
        assert_eq!(
            got,
            [
                Ok(Granted { used: 1 }),
                Ok(Granted { used: 2 }),
                Ok(Granted { used: 3 }),
                Ok(Granted { used: 4 }),
                Ok(Exhausted),
                Ok(Exhausted)
            ]
        );
        assert_eq!(calls_used(&mut db, "a"), Some(4));

        // A read of the usage in the middle sees the calls before it.
        let read = job(|db| {
            db.usage("acme", "a").map(|u| Granted {
                used: u.map_or(0, |u| u.calls_used),
            })
        });
        let got = answers_of(&mut db, vec![r(Some(9)), r(Some(9)), read, r(Some(9))]);
        assert_eq!(
            got,
            [
                Ok(Granted { used: 5 }),
                Ok(Granted { used: 6 }),
                Ok(Granted { used: 6 }),
                Ok(Granted { used: 7 })
            ]
        );
        assert_eq!(calls_used(&mut db, "a"), Some(7));

        // A refund, then a revocation, in the middle.
        let refund = job(|db| db.refund("acme", "a").map(|()| Granted { used: 0 }));
        let revoke = job(|db| {
            db.revoke("acme", "a")
                .map(|u| Granted { used: u.calls_used })
        });
        let got = answers_of(
            &mut db,
            vec![r(None), r(None), refund, r(None), revoke, r(None)],
        );
        assert_eq!(
            got,
            [
                Ok(Granted { used: 8 }),
                Ok(Granted { used: 9 }),
                Ok(Granted { used: 0 }),
                Ok(Granted { used: 9 }),
                Ok(Granted { used: 9 }),
                Ok(Revoked)
            ]
        );
        assert_eq!(calls_used(&mut db, "a"), Some(9));
    }

    #[test]
    fn a_tenant_mark_or_other_claims_in_the_middle_of_a_batch_take_effect_at_once() {
        use Reservation::{Granted, Revoked};
        let (_dir, conn) = open();
        let mut db = db(&conn);
        // Other claims for the same token (a larger limit, then a later expiry): the full path,
        // after the calls counted before them.
        let got = answers_of(
            &mut db,
            vec![
                reserve_isolating("a", 10_000, Some(2)),
                reserve_isolating("a", 10_000, Some(2)),
                reserve_isolating("a", 10_000, Some(5)),
                reserve_isolating("a", 10_000, Some(5)),
                reserve_isolating("a", 20_000, Some(5)),
            ],
        );
        assert_eq!(
            got,
            [
                Ok(Granted { used: 1 }),
                Ok(Granted { used: 2 }),
                Ok(Granted { used: 3 }),
                Ok(Granted { used: 4 }),
                Ok(Granted { used: 5 })
            ]
        );
        let (u, used) = usage("a");
        db.run_batch_answered(&mut vec![u]);
        let u = answered(used).unwrap().unwrap();
        assert_eq!(
            (u.calls_used, u.max_calls, u.expires_at),
            (5, Some(5), Some(20_000))
        );

        // A mark on the tenant (tokens issued before 2,000; these were issued at 1,000).
        let mark = job(|db| db.revoke_before("acme", 2_000).map(|_| Granted { used: 0 }));
        let got = answers_of(
            &mut db,
            vec![
                reserve_isolating("b", 10_000, None),
                reserve_isolating("b", 10_000, None),
                mark,
                reserve_isolating("b", 10_000, None),
            ],
        );
        assert_eq!(
            got,
            [
                Ok(Granted { used: 1 }),
                Ok(Granted { used: 2 }),
                Ok(Granted { used: 0 }),
                Ok(Revoked)
            ]
        );
        assert_eq!(calls_used(&mut db, "b"), Some(2));
    }

    #[test]
    fn a_job_failing_after_a_call_counted_in_memory_takes_the_call_back() {
        use Reservation::Granted;
        let (_dir, conn) = open();
        let mut db = db(&conn);
        let (reply, failed) = oneshot::channel();
        let mut bad = Pending::new(
            |db: &mut Db| {
                db.reserve("acme", "a", 1_000, 10_000, None, 1_100)?;
                Err::<Reservation, _>(rusqlite::Error::IntegralValueOutOfRange(0, -1))
            },
            reply,
        );
        (bad.isolates_itself, bad.defers) = (true, true);
        let bad: Box<dyn Job> = Box::new(bad);
        let got = answers_of(
            &mut db,
            vec![
                reserve_isolating("a", 10_000, None),
                reserve_isolating("a", 10_000, None),
                (bad, failed),
                reserve_isolating("a", 10_000, None),
            ],
        );
        assert_eq!(got[..2], [Ok(Granted { used: 1 }), Ok(Granted { used: 2 })]);
        assert!(got[2].is_err());
        assert_eq!(
            got[3],
            Ok(Granted { used: 3 }),
            "the failed job's call was taken back"
        );
        assert_eq!(calls_used(&mut db, "a"), Some(3));

        // A batch that does not commit keeps none of its calls, counted in memory or not.
        let (io, i) = job(|db| {
            db.exec("ROLLBACK")?;
            Err::<Reservation, _>(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_IOERR),
                None,
            ))
        });
        let got = answers_of(
            &mut db,
            vec![
                reserve_isolating("a", 10_000, None),
                reserve_isolating("a", 10_000, None),
                (io, i),
            ],
        );
        assert!(got.iter().all(Result::is_err));
        let got = answers_of(&mut db, vec![reserve_isolating("a", 10_000, None)]);
        assert_eq!(
            got,
            [Ok(Granted { used: 4 })],
            "nothing of the lost batch, nothing left over"
        );
    }

    #[test]
    fn reservations_that_isolate_themselves_count_exactly_and_fail_alone() {
        let (_dir, conn) = open();
        let mut db = db(&conn);
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
        db.run_batch_answered(&mut jobs);
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
                db.run_batch_answered(&mut vec![j1, j2, j3]);
            } else {
                for j in [j1, j2, j3] {
                    db.run_batch_answered(&mut vec![j]);
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
        db.run_batch_answered(&mut vec![j]);
        assert_eq!(answered(a), Ok(Reservation::Granted { used: 4 }));
        let (mark, _) = job(|db| db.revoke_before("acme", 2_000));
        let (j, a) = reserve_isolating("a", 10_000, None);
        db.run_batch_answered(&mut vec![mark, j]);
        assert_eq!(answered(a), Ok(Reservation::Revoked));
        assert_eq!(calls_used(&mut db, "a"), Some(4));
        assert!(db.conn.is_autocommit());
    }

    /// How the relay submits spend reservations: isolating themselves.
    fn spend_reserving(keys: &'static [&'static str]) -> (Box<dyn Job>, Answer<SpendReservation>) {
        let (reply, answer) = oneshot::channel();
        let lines: Vec<SpendLine> = keys
            .iter()
            .map(|k| SpendLine {
                key: (*k).to_string(),
                limit: SpendLimit::default(),
                keep_until: 50_000,
            })
            .collect();
        let amount = Spend {
            calls: 1,
            input: 10,
            ..Spend::default()
        };
        let mut p = Pending::new(
            move |db: &mut Db| db.spend_reserve("acme", &lines, &amount),
            reply,
        );
        p.isolates_itself = true;
        (Box::new(p), answer)
    }

    fn spend_calls(db: &mut Db, key: &'static str) -> u64 {
        let (j, a) = job(move |db| db.spend_get("acme", &[key.to_string()]));
        db.run_batch_answered(&mut vec![j]);
        answered(a).unwrap()[0].calls
    }

    #[test]
    fn a_spend_reservation_failing_part_way_changes_no_line() {
        let (_dir, conn) = open();
        let mut db = db(&conn);
        // A write SQLite refuses on one line only: the second line of a reservation.
        db.conn
            .execute_batch(
                "CREATE TEMP TRIGGER refuse BEFORE INSERT ON spend_line WHEN NEW.key = 'bad'
                 BEGIN SELECT RAISE(ABORT, 'refused'); END;",
            )
            .unwrap();
        for batched in [true, false] {
            let (broken, failed) = spend_reserving(&["good", "bad"]);
            let (fine, granted) = spend_reserving(&["good"]);
            if batched {
                db.run_batch_answered(&mut vec![broken, fine]);
            } else {
                db.run_batch_answered(&mut vec![broken]);
                db.run_batch_answered(&mut vec![fine]);
            }
            assert!(answered(failed).unwrap_err().0.contains("refused"));
            assert_eq!(answered(granted), Ok(SpendReservation::Granted));
        }
        assert_eq!(
            spend_calls(&mut db, "good"),
            2,
            "only the reservations that succeeded, whole"
        );
        assert_eq!(spend_calls(&mut db, "bad"), 0);
        assert!(db.conn.is_autocommit());
    }

    #[test]
    fn the_first_call_of_a_token_revoked_unseen_sets_its_retention() {
        let (_dir, conn) = open();
        let mut db = db(&conn);
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
        db.run_batch_answered(&mut vec![j]);
        answered(a).unwrap();
        let unseen = forget_at(&db);
        let (j, a) = reserve("a", Some(3));
        db.run_batch_answered(&mut vec![j]);
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
        let (_dir, conn) = open();
        let mut db = db(&conn);
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
        db.run_batch_answered(&mut vec![r1, bad, too_big, r2, u]);
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
        db.run_batch_answered(&mut vec![bad]);
        assert!(answered(failed).is_err());
        assert!(db.conn.is_autocommit());
        assert_eq!(calls_used(&mut db, "x"), None);
    }

    #[test]
    fn a_failed_commit_answers_every_job_with_the_error_and_keeps_nothing() {
        let (_dir, conn) = open();
        let mut db = db(&conn);
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
        db.run_batch_answered(&mut vec![r1, orphan, r2]);
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
        db.run_batch_answered(&mut vec![r]);
        assert_eq!(answered(a), Ok(Reservation::Granted { used: 1 }));
    }

    #[test]
    fn a_transaction_lost_mid_batch_fails_every_job() {
        let (_dir, conn) = open();
        let mut db = db(&conn);
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
        db.run_batch_answered(&mut vec![r1, io, r2]);
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
        db.run_batch_answered(&mut vec![r1, quiet]);
        assert!(answered(a1).unwrap_err().0.contains("rolled back"));
        assert!(answered(q).is_err());
        assert_eq!(calls_used(&mut db, "a"), None);
    }

    #[test]
    fn the_connection_has_cheap_durable_settings_and_leaves_checkpoints_to_its_checkpointer() {
        let (dir, conn) = open();
        let db = db(&conn);
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
        assert_eq!(
            pragma("locking_mode"),
            "normal",
            "the checkpointer shares the file"
        );
        assert_eq!(pragma("journal_mode"), "wal");
        assert_eq!(pragma("synchronous"), "1", "NORMAL");
        assert_eq!(pragma("temp_store"), "2", "MEMORY");
        assert_eq!(
            pragma("wal_autocheckpoint"),
            "0",
            "no checkpoint inside a commit"
        );
        assert!(
            !dir.path().join("usage.db-shm").exists(),
            "the WAL index lives in this process's memory"
        );
    }

    #[test]
    fn the_store_holds_the_file_with_its_checkpointer_running() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("usage.db");
        let store = crate::store::sqlite::SqliteStore::open(&path, TOKEN_LIFE).unwrap();
        let e = crate::store::sqlite::SqliteStore::open(&path, TOKEN_LIFE)
            .err()
            .unwrap();
        assert!(
            e.0.contains("usage.db") && e.0.contains("in use by another process"),
            "{e}"
        );
        let threads: Vec<String> = std::fs::read_dir("/proc/self/task")
            .unwrap()
            .filter_map(|t| std::fs::read_to_string(t.unwrap().path().join("comm")).ok())
            .collect();
        for name in ["relayapi-sqlite", "relayapi-ckpt"] {
            assert!(
                threads.iter().any(|t| t.trim() == name),
                "{name} runs: {threads:?}"
            );
        }
        drop(store);
        assert!(
            !dir.path().join("usage.db-wal").exists(),
            "closed: the last connection checkpointed the WAL and removed it"
        );
        drop(crate::store::sqlite::SqliteStore::open(&path, TOKEN_LIFE).unwrap());
    }
}
