//! A reservation run on the caller's own thread when the store is quiet, instead of waking the store
//! thread and being woken by it.
//!
//! Why: a call handed to the store thread costs two thread switches: the store thread wakes for the
//! job, and the caller's runtime worker wakes for the answer. Under load that is shared by a whole
//! batch; when calls come one at a time it is paid by each. At 1,000 requests per second
//! (`bench/threads.py`, one runtime worker, the default configuration) the store thread used 31–35 µs
//! of CPU per request and the runtime worker, with 2.7 voluntary switches per request against the
//! memory store's 1.75, about 19 µs more than with the memory store. Run on the lane, four runs
//! against the store thread interleaved, the relay's CPU per request went from 126–158 to 109–139 µs
//! (about 10 % less; nginx 91–102) and its p50 from 242–287 to 202–250 µs: the switches are saved,
//! the transaction itself (about 15,000 instructions on a cold core, two `pwrite`s) is not.
//!
//! How: a second writing connection, the lane, kept behind the gate: a mutex that the store thread
//! holds for each batch and the checkpointer (`checkpoint.rs`) for the step that takes SQLite's write
//! lock. A caller runs its reservation on the lane, as a batch of one through the same
//! [`Db::run_batch`] the store thread uses, when all of these hold:
//! - the pace is quiet ([`Pace`]): no reservation started in the last [`QUIET`], so no other call
//!   could have shared a batch with it;
//! - the gate is free at once (`try_lock`): a runtime thread never waits for it, and never for
//!   SQLite's busy handler, which sleeps in whole milliseconds;
//! - no sweep of forgotten records is due (an unbounded `DELETE`, left to the store thread).
//!
//! Otherwise, or if the lane's transaction fails (nothing of it is kept), the call goes to the store
//! thread as before. Under load calls start microseconds apart and every one takes the queue, so
//! batching is unchanged; a lone call costs one transaction on the caller's thread.
//!
//! What it costs: the transaction's system calls (a `write(2)` of one WAL frame; reads of pages the
//! lane's cache lacks) run on a runtime worker. They hit the OS page cache; a page that is not there
//! (a large database not read lately) is read from disk on that worker. The WAL restart's `fsync`,
//! the one a writer pays after a complete checkpoint, is never among them: the checkpointer makes
//! the first write after its checkpoint itself, under the gate (`checkpoint.rs`).
//!
//! Exactness: every write to the file's rows happens under the gate, one transaction at a time, as
//! before. The lane writes only token records, through [`Db::reserve`]; what the store thread keeps
//! in memory about them (`counts.rs`) is a guess its statements check, so a lane's write only costs
//! a read. Tenant marks are written only by the store thread, which tells the lane after each batch.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rusqlite::Connection;
use tokio::sync::oneshot;

use crate::store::sqlite::checkpoint::Nudge;
use crate::store::sqlite::counts::Counts;
use crate::store::sqlite::gate::Gate;
use crate::store::sqlite::writer::{Behind, Db, Job, Pending};
use crate::store::StoreError;

/// A reservation that starts within this of the previous one goes to the store thread, where it may
/// share a batch. At 1,000 requests per second calls are about 1 ms apart; under the bench's closed
/// loop, 15–30 µs. Below about 5,000 evenly spaced calls per second every call is a batch of one
/// anyway, so the lane only saves; above, most calls take the queue and its batching.
pub(super) const QUIET: Duration = Duration::from_micros(200);

/// The store's gate (`gate.rs`), around its lane.
pub(super) type LaneGate = Gate<Lane>;

/// The lane's connection and what it knows of the store thread's state. Reached only through the
/// [`Gate`].
pub(super) struct Lane {
    conn: Connection,
    label: Arc<str>,
    unseen_revocation_secs: u64,
    /// The lane's own memory of counts (`counts.rs`), kept from call to call.
    counts: Counts,
    /// The store thread's `Db::tenant_marks` as of its last batch.
    tenant_marks: bool,
    /// The store thread's `Db::next_sweep` as of its last batch.
    next_sweep: u64,
    /// Asks for a checkpoint every so many transactions, the lane's and the store thread's.
    pub(super) nudge: Nudge,
    /// Reservations the lane has answered (tests read it).
    pub(super) runs: u64,
}

impl Lane {
    /// `conn` comes from [`super::writer::connect`]; its busy handler is turned off here, so a lock
    /// held outside the gate fails the lane's transaction at once instead of sleeping.
    pub(super) fn new(
        conn: Connection,
        label: Arc<str>,
        unseen_revocation_secs: u64,
        nudge: Nudge,
    ) -> Result<Lane, StoreError> {
        conn.busy_timeout(Duration::ZERO).map_err(|e| {
            StoreError(format!("{label}: cannot set the lane's connection up: {e}"))
        })?;
        Ok(Lane {
            conn,
            label,
            unseen_revocation_secs,
            counts: Counts::default(),
            // Until the store thread says otherwise: the grant that checks the marks is always exact.
            tenant_marks: true,
            next_sweep: 0,
            nudge,
            runs: 0,
        })
    }

    /// Runs `work` as a batch of one on the lane, if the gate is free and no sweep is due at `now`
    /// (UTC seconds). `None`: not run, or its transaction failed and kept nothing; the caller then
    /// hands the call to the store thread.
    pub(super) fn try_run<T, F>(gate: &LaneGate, work: F, now: u64) -> Option<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Db) -> rusqlite::Result<T> + Send + 'static,
    {
        let mut held = gate.try_lock().ok()?;
        let lane = held.as_mut()?;
        if now >= lane.next_sweep {
            return None;
        }
        let (reply, mut answer) = oneshot::channel();
        let mut job: Box<dyn Job> = Box::new(Pending::new(work, reply));
        let mut db = Db::lane(
            &lane.conn,
            lane.label.clone(),
            lane.unseen_revocation_secs,
            std::mem::take(&mut lane.counts),
            lane.tenant_marks,
            lane.next_sweep,
        );
        db.run_batch(std::slice::from_mut(&mut job));
        lane.counts = std::mem::take(&mut db.counts);
        drop(db);
        job.answer();
        let outcome = answer.try_recv().ok()?.ok()?;
        lane.runs += 1;
        lane.nudge.committed();
        Some(outcome)
    }
}

impl Behind for Lane {
    /// What the lane must know of the store thread's state; the batch's transaction counts towards
    /// the next checkpoint as the lane's do.
    fn after_batch(&mut self, db: &Db, transaction: bool) {
        self.tenant_marks = db.tenant_marks;
        self.next_sweep = db.next_sweep;
        if transaction {
            self.nudge.committed();
        }
    }
}

/// When reservations start, to tell a lone call from one that may share a batch.
pub(super) struct Pace {
    origin: Instant,
    /// Microseconds from `origin` to the last start, plus [`QUIET`] (so the first call is quiet).
    last: AtomicU64,
}

impl Pace {
    pub(super) fn new(origin: Instant) -> Pace {
        Pace {
            origin,
            last: AtomicU64::new(0),
        }
    }

    /// Notes a reservation starting at `at`: true when none started within [`QUIET`] before it.
    pub(super) fn quiet(&self, at: Instant) -> bool {
        let quiet = QUIET.as_micros() as u64;
        let since_origin = u64::try_from(at.saturating_duration_since(self.origin).as_micros())
            .unwrap_or(u64::MAX);
        let now = since_origin.saturating_add(quiet);
        // Relaxed: a stale value from a racing worker only sends one call down the other path.
        let before = self.last.swap(now, Ordering::Relaxed);
        now.saturating_sub(before) >= quiet
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_is_quiet_when_none_started_within_the_window_before_it() {
        let t0 = Instant::now();
        let pace = Pace::new(t0);
        let at = |us: u64| t0 + Duration::from_micros(us);
        assert!(pace.quiet(at(0)), "the first call");
        assert!(!pace.quiet(at(150)), "150 µs after the last");
        assert!(
            !pace.quiet(at(300)),
            "150 µs after the last, though 300 after the first"
        );
        assert!(pace.quiet(at(500)), "200 µs after the last");
        assert!(pace.quiet(at(1_500)), "1 ms after the last");
        assert!(!pace.quiet(at(1_500)), "at the same instant as the last");
    }
}
