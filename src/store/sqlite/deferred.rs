//! Calls granted in the running batch on a token that an earlier grant of the same batch has already
//! checked and written: counted here and written with one `UPDATE` per token before the batch commits.
//!
//! Why: a grant's `UPDATE` is most of the store thread's work per call (about 6,000 instructions,
//! `bench/instructions.sh`), and under load one batch often carries many calls of the same token (a
//! token handed to every visitor of a page, a busy session). The first grant of a token in a batch
//! runs as before: its `UPDATE` checks the row (known, not revoked, unchanged facts, the count
//! expected) and counts the call. Every later call of that token in the batch with the same claims
//! is checked against what that grant proved plus the calls counted here since, and costs no
//! statement; [`Deferred::take`] hands the totals to the flush that writes them.
//!
//! What keeps this exact: the store thread's connection is the only one that writes rows
//! (`writer.rs`), and the batch runs its jobs one after another. Whatever else could change the row
//! (a refund, a revocation, a tenant's mark, a read of the usage, any job other than a reservation)
//! runs only after the deferred calls are written (`Db::flush_deferred`, called before such a job and
//! before its savepoint, so a failing job cannot undo them), and that flush forgets every entry. A
//! reservation that fails after counting here takes its count back ([`Deferred::undo_job`]). The
//! flush runs inside the transaction before `COMMIT`, and no answer goes out before `COMMIT`, so a
//! call answered as granted is in the WAL exactly as before; if the flush fails, the whole batch is
//! answered with the error.

use crate::store::sqlite::counts::Slot;

/// The claims a grant wrote on the row; a later call with other claims takes the full path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Facts {
    pub(super) max_calls: Option<i64>,
    pub(super) exp_at: i64,
    pub(super) iat: i64,
    pub(super) forget_at: i64,
}

/// One token's calls counted in memory during the running batch.
struct Entry {
    tenant: Box<str>,
    jti: Box<str>,
    slot: Slot,
    facts: Facts,
    /// The count the row holds: written by this batch's grant of the token.
    stored: i64,
    /// Calls counted here since.
    pending: i64,
    /// When the last of them was made (`last_used_at`).
    last_at: i64,
}

/// What the running job changed here, so a failing job can take it back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    Counted(usize),
    Recorded,
}

/// The running batch's deferred calls.
#[derive(Default)]
pub(super) struct Deferred {
    /// A handful at most: one per token granted in the batch (a batch holds at most 256 jobs).
    entries: Vec<Entry>,
    /// The running job's change, if any.
    change: Option<Change>,
}

/// One token's deferred calls, as the flush writes them.
pub(super) struct Written {
    pub(super) tenant: Box<str>,
    pub(super) jti: Box<str>,
    pub(super) slot: Slot,
    /// Calls to add to the row's count.
    pub(super) calls: i64,
    /// The count the row holds afterwards.
    pub(super) used: i64,
    pub(super) last_at: i64,
}

impl Deferred {
    /// Counts one more call of the token if a grant of this batch wrote it with the same `facts`
    /// and it has a call left; returns the call's number (the count after it).
    pub(super) fn grant(&mut self, tenant: &str, jti: &str, facts: &Facts, at: i64) -> Option<i64> {
        let i = self.position(tenant, jti)?;
        let e = &mut self.entries[i];
        let used = e.stored + e.pending;
        if e.facts != *facts || facts.max_calls.is_some_and(|m| used >= m) {
            return None;
        }
        e.pending += 1;
        e.last_at = e.last_at.max(at);
        self.change = Some(Change::Counted(i));
        Some(used + 1)
    }

    /// Remembers that the running job's grant wrote the token's row with `facts` and count `stored`.
    pub(super) fn record(
        &mut self,
        tenant: &str,
        jti: &str,
        slot: Slot,
        facts: Facts,
        stored: i64,
    ) {
        // A token already here was flushed and forgotten before a full-path grant could run.
        debug_assert!(!self.holds(tenant, jti));
        self.entries.push(Entry {
            tenant: tenant.into(),
            jti: jti.into(),
            slot,
            facts,
            stored,
            pending: 0,
            last_at: 0,
        });
        self.change = Some(Change::Recorded);
    }

    /// A job starts: nothing it does is known yet.
    pub(super) fn job_started(&mut self) {
        self.change = None;
    }

    /// The running job failed: its count is taken back (its savepoint, if any, undid its writes;
    /// a grant recorded by it is forgotten, since its `UPDATE` was undone with them).
    pub(super) fn undo_job(&mut self) {
        match self.change.take() {
            Some(Change::Counted(i)) => self.entries[i].pending -= 1,
            Some(Change::Recorded) => {
                self.entries.pop();
            }
            None => {}
        }
    }

    /// True when a grant of this batch wrote the token (whether or not a call can be counted here).
    pub(super) fn holds(&self, tenant: &str, jti: &str) -> bool {
        self.position(tenant, jti).is_some()
    }

    /// The token's entry, if a grant of this batch wrote it.
    fn position(&self, tenant: &str, jti: &str) -> Option<usize> {
        self.entries
            .iter()
            .position(|e| &*e.jti == jti && &*e.tenant == tenant)
    }

    /// Forgets everything: the batch ended without committing.
    pub(super) fn clear(&mut self) {
        self.entries.clear();
        self.change = None;
    }

    /// Nothing deferred: the flush has nothing to do.
    pub(super) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Forgets every entry and returns those with calls to write.
    pub(super) fn take(&mut self) -> impl Iterator<Item = Written> + '_ {
        self.change = None;
        self.entries
            .drain(..)
            .filter(|e| e.pending > 0)
            .map(|e| Written {
                calls: e.pending,
                used: e.stored + e.pending,
                last_at: e.last_at,
                tenant: e.tenant,
                jti: e.jti,
                slot: e.slot,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::counts::Counts;

    const FACTS: Facts = Facts {
        max_calls: Some(3),
        exp_at: 10_000,
        iat: 1_000,
        forget_at: 96_400,
    };

    fn slot(tenant: &str, jti: &str) -> Slot {
        Counts::default().slot(tenant, jti)
    }

    #[test]
    fn counts_only_tokens_written_in_the_batch_with_the_same_claims_up_to_their_limit() {
        let mut d = Deferred::default();
        assert_eq!(d.grant("acme", "a", &FACTS, 5), None, "not written yet");
        d.record("acme", "a", slot("acme", "a"), FACTS, 1);
        assert_eq!(d.grant("acme", "b", &FACTS, 5), None, "another token");
        assert_eq!(d.grant("globex", "a", &FACTS, 5), None, "another tenant");
        let other = Facts { iat: 999, ..FACTS };
        assert_eq!(d.grant("acme", "a", &other, 5), None, "other claims");
        assert_eq!(d.grant("acme", "a", &FACTS, 6), Some(2));
        assert_eq!(d.grant("acme", "a", &FACTS, 7), Some(3));
        assert_eq!(d.grant("acme", "a", &FACTS, 8), None, "a limit of 3");
        let written: Vec<_> = d.take().collect();
        assert_eq!(written.len(), 1);
        let w = &written[0];
        assert_eq!((&*w.tenant, &*w.jti), ("acme", "a"));
        assert_eq!((w.calls, w.used, w.last_at), (2, 3, 7));
        assert!(d.is_empty(), "the flush forgets every entry");
        assert_eq!(d.grant("acme", "a", &FACTS, 9), None);
    }

    #[test]
    fn unlimited_tokens_count_on_and_unchanged_ones_are_not_written() {
        let mut d = Deferred::default();
        let unlimited = Facts {
            max_calls: None,
            ..FACTS
        };
        d.record("acme", "a", slot("acme", "a"), unlimited, 7);
        d.record("acme", "b", slot("acme", "b"), unlimited, 1);
        for n in 8..108 {
            assert_eq!(d.grant("acme", "a", &unlimited, 5), Some(n));
        }
        let written: Vec<_> = d.take().collect();
        assert_eq!(written.len(), 1, "b had no call after its own grant");
        assert_eq!((written[0].calls, written[0].used), (100, 107));
    }

    #[test]
    fn a_failing_job_takes_its_change_back() {
        let mut d = Deferred::default();
        d.job_started();
        d.record("acme", "a", slot("acme", "a"), FACTS, 1);
        d.job_started();
        assert_eq!(d.grant("acme", "a", &FACTS, 5), Some(2));
        d.undo_job();
        d.job_started();
        assert_eq!(
            d.grant("acme", "a", &FACTS, 5),
            Some(2),
            "the call came back"
        );
        d.job_started();
        d.undo_job();
        assert_eq!(d.take().map(|w| w.calls).collect::<Vec<_>>(), [1]);

        d.job_started();
        d.record("acme", "a", slot("acme", "a"), FACTS, 1);
        d.undo_job();
        assert!(d.is_empty(), "a grant undone by its savepoint is forgotten");
    }
}
