//! Tokens whose row the store thread has proved (known, not revoked, these claims, this count): their
//! calls are granted by the runtime thread that asks, counted here and recorded in the grant journal
//! (`journal.rs`), with no round trip to the store thread and no transaction.
//!
//! Why: at a low rate every call was a batch of one, and its transaction (about 15,000 instructions
//! and two `pwrite`s on a cold core) plus the hand-off to the store thread and back made the
//! default store cost 1.5× nginx's CPU per request at 1,000 requests per second (`bench/threads.py`).
//! A call of a proved token now costs a lock, a look-up and a record of about 72 bytes copied into
//! the mapped journal.
//!
//! What keeps this exact: while a token is here, its count here is the count. Every grant of it takes
//! this lock, so two calls never get the same number and a limit of N grants N. The store thread's
//! path never grants a token that is here: a call that cannot be granted here (other claims, no room
//! in the journal) makes the store thread write every count (`fold.rs`), freeze every entry and drop
//! them once that commits; the call then takes the full path on an exact row. So does every job that
//! reads or changes token rows other than by reserving (a refund, a revocation, a tenant's mark, a
//! read of the usage): what it sees or changes is the whole truth, and afterwards a token is only
//! granted here again once a grant on the store thread has proved its row anew and committed. A
//! grant here is answered once its record is in the journal, which a `kill -9` does not undo; the
//! journal is replayed into the rows at the next start (`fold.rs`).

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault};
use std::sync::{Mutex, MutexGuard};

use crate::store::sqlite::counts::SlotHasher;
use crate::store::sqlite::deferred::Facts;
use crate::store::sqlite::journal::{Journal, Position, HALF};
use crate::store::Reservation;

/// Tokens held at most: past it, a token proved anew takes the place of those with nothing to write.
const HELD: usize = 4_096;

/// How full the running half of the journal is when the calls are written into the rows (a fold):
/// the other half must be free by the time this one fills.
const FOLD_AT: usize = HALF / 2;

struct Entry {
    tenant: Box<str>,
    jti: Box<str>,
    facts: Facts,
    /// The token's count: every call granted so far.
    used: i64,
    /// When the last call was granted (`last_used_at`).
    last_at: i64,
    /// Calls were granted since the last fold captured the count.
    dirty: bool,
    /// A fold of the running transaction has written the count and the entry goes once it commits:
    /// no call is granted here meanwhile.
    frozen: bool,
}

struct Inner {
    /// Keyed by the hash of tenant and token id; a token whose slot another holds is not held.
    entries: HashMap<u64, Entry, BuildHasherDefault<SlotHasher>>,
    journal: Journal,
    /// A fold started a new epoch and none has committed since: the other half still holds calls
    /// the rows may lack, so no fold may start another epoch yet.
    sealed: bool,
    /// The store thread was asked for a fold and has not captured one since.
    fold_asked: bool,
}

/// The proved tokens and the journal, shared by the runtime threads and the store thread.
pub(super) struct Proved {
    inner: Mutex<Inner>,
    /// Keyed per process, so which tokens share a slot cannot be chosen from outside.
    hasher: foldhash::fast::RandomState,
}

/// What asking to grant a call here gave.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Asked {
    /// Answered here: granted (recorded in the journal) or exhausted.
    Answered(Reservation),
    /// Answered, and the journal's half is filling: send the store thread a job so it folds.
    AnsweredFoldDue(Reservation),
    /// Not held, or frozen: the store thread's path is exact.
    NotHeld,
    /// Held, but not grantable here (other claims, no room in the journal): the store thread must
    /// fold and freeze before its path is exact.
    Held,
}

/// A token's count as a fold writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Row {
    pub(super) tenant: Box<str>,
    pub(super) jti: Box<str>,
    pub(super) used: i64,
    pub(super) last_at: i64,
}

/// Which held tokens a fold stops granting here until its transaction ends.
#[derive(Debug, Clone, Copy)]
pub(super) enum Freeze<'a> {
    /// None: the rows are read, not changed (a read of the usage, a fold to free the journal).
    Nothing,
    /// One token, whose row the job changes (a refund, a revocation) or whose call the store
    /// thread's path grants.
    Token(&'a str, &'a str),
    /// Every token (a tenant's mark).
    All,
}

/// What a fold took: the counts to write, and from where the journal holds calls they lack.
#[derive(Debug)]
pub(super) struct Capture {
    pub(super) rows: Vec<Row>,
    pub(super) through: Position,
}

impl Proved {
    /// Starts with no token held, writing `journal` from `epoch`.
    pub(super) fn new(mut journal: Journal, epoch: u64) -> Proved {
        journal.start(epoch);
        Proved {
            inner: Mutex::new(Inner {
                entries: HashMap::default(),
                journal,
                sealed: false,
                fold_asked: false,
            }),
            hasher: foldhash::fast::RandomState::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Nothing here panics while holding the lock with the state half changed; a poisoned lock
        // only means a panic elsewhere on that thread.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn slot(&self, tenant: &str, jti: &str) -> u64 {
        self.hasher.hash_one((tenant, jti))
    }

    /// A runtime thread's call: grants it here if the token is held with these `facts`.
    pub(super) fn grant(&self, tenant: &str, jti: &str, facts: &Facts, at: i64) -> Asked {
        let slot = self.slot(tenant, jti);
        let mut guard = self.lock();
        let inner = &mut *guard;
        let Some(e) = inner
            .entries
            .get_mut(&slot)
            .filter(|e| &*e.tenant == tenant && &*e.jti == jti)
        else {
            return Asked::NotHeld;
        };
        if e.frozen {
            return Asked::NotHeld;
        }
        // A call past the record's retention is for the store thread to judge (the validator
        // refuses such tokens long before).
        if e.facts != *facts || at >= facts.forget_at {
            return Asked::Held;
        }
        if facts.max_calls.is_some_and(|m| e.used >= m) {
            return Asked::Answered(Reservation::Exhausted);
        }
        let used = e.used + 1;
        if !inner.journal.append(tenant, jti, used, at) {
            return Asked::Held;
        }
        e.used = used;
        e.last_at = e.last_at.max(at);
        e.dirty = true;
        // Counts stay below 2^53, so the conversion cannot fail.
        let answer = Reservation::Granted {
            used: u64::try_from(used).unwrap_or(0),
        };
        if inner.journal.used() >= FOLD_AT && !inner.fold_asked {
            inner.fold_asked = true;
            return Asked::AnsweredFoldDue(answer);
        }
        Asked::Answered(answer)
    }

    /// The running half is full enough that a fold should start the next epoch.
    pub(super) fn fold_due(&self) -> bool {
        self.lock().journal.used() >= FOLD_AT
    }

    /// True when the token is held and not frozen: a job about to read or change its row (or to
    /// reserve on the store thread's path) must fold and freeze it first.
    pub(super) fn holds(&self, tenant: &str, jti: &str) -> bool {
        let slot = self.slot(tenant, jti);
        self.lock()
            .entries
            .get(&slot)
            .is_some_and(|e| &*e.tenant == tenant && &*e.jti == jti && !e.frozen)
    }

    /// Store thread, inside a transaction: takes every count granted since the last capture and the
    /// journal position they cover (starting the next epoch when this one's half is filling and the
    /// other is free), and stops grants of the `freeze` tokens here until [`Proved::committed`]
    /// drops them. `None` when there is nothing to write.
    pub(super) fn capture(&self, freeze: Freeze<'_>) -> Option<Capture> {
        let mut guard = self.lock();
        let inner = &mut *guard;
        inner.fold_asked = false;
        let mut rows = Vec::new();
        for e in inner.entries.values_mut() {
            if e.dirty {
                e.dirty = false;
                rows.push(Row {
                    tenant: e.tenant.clone(),
                    jti: e.jti.clone(),
                    used: e.used,
                    last_at: e.last_at,
                });
            }
            e.frozen |= match freeze {
                Freeze::Nothing => false,
                Freeze::Token(tenant, jti) => &*e.tenant == tenant && &*e.jti == jti,
                Freeze::All => true,
            };
        }
        let due = inner.journal.used() >= FOLD_AT;
        if rows.is_empty() && !due {
            return None;
        }
        if due && !inner.sealed {
            let next = inner.journal.position().epoch.wrapping_add(1);
            inner.journal.start(next);
            inner.sealed = true;
        }
        Some(Capture {
            rows,
            through: inner.journal.position(),
        })
    }

    /// The transaction holding these captures committed: the rows hold their counts, the journal's
    /// other half is free again, frozen entries go.
    pub(super) fn committed(&self, captures: &[Capture]) {
        let mut inner = self.lock();
        if !captures.is_empty() {
            inner.sealed = false;
        }
        inner.entries.retain(|_, e| !e.frozen);
    }

    /// The transaction holding these captures did not commit: their counts are still to be written
    /// (the journal keeps their calls, and the position it was read from stands), and the entries
    /// are grantable again, their counts still exact.
    pub(super) fn failed(&self, captures: Vec<Capture>) {
        let mut guard = self.lock();
        let inner = &mut *guard;
        for row in captures.into_iter().flat_map(|c| c.rows) {
            let slot = self.slot(&row.tenant, &row.jti);
            if let Some(e) = inner.entries.get_mut(&slot) {
                e.dirty |= e.tenant == row.tenant && e.jti == row.jti;
            }
        }
        for e in inner.entries.values_mut() {
            e.frozen = false;
        }
    }

    /// Store thread, after a commit: holds a token whose committed row a grant just proved, with
    /// its count and time of last call as read from the row. Past [`HELD`] tokens, those with
    /// nothing to write make room; a token whose slot another holds is not held.
    pub(super) fn hold(&self, tenant: &str, jti: &str, facts: Facts, used: i64, last_at: i64) {
        let slot = self.slot(tenant, jti);
        let mut inner = self.lock();
        if inner.entries.contains_key(&slot) {
            return;
        }
        if inner.entries.len() >= HELD {
            inner.entries.retain(|_, e| e.dirty || e.frozen);
            if inner.entries.len() >= HELD {
                return;
            }
        }
        inner.entries.insert(
            slot,
            Entry {
                tenant: tenant.into(),
                jti: jti.into(),
                facts,
                used,
                last_at,
                dirty: false,
                frozen: false,
            },
        );
    }

    /// Store thread, when the store closes: writes the journal's pages out.
    pub(super) fn flush(&self) -> std::io::Result<()> {
        self.lock().journal.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::journal::Journal;

    const FACTS: Facts = Facts {
        max_calls: Some(3),
        exp_at: 2_000,
        iat: 1_000,
        forget_at: 90_000,
    };

    fn proved() -> (tempfile::TempDir, Proved) {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(&dir.path().join("usage.db"), false).unwrap();
        (dir, Proved::new(j, 2))
    }

    fn granted(used: u64) -> Asked {
        Asked::Answered(Reservation::Granted { used })
    }

    #[test]
    fn a_held_token_is_granted_to_its_limit_with_these_claims_only() {
        let (_dir, p) = proved();
        assert_eq!(p.grant("acme", "a", &FACTS, 1_500), Asked::NotHeld);
        p.hold("acme", "a", FACTS, 1, 1_400);
        assert!(p.holds("acme", "a"));
        assert!(!p.holds("acme", "b") && !p.holds("globex", "a"));
        assert_eq!(p.grant("acme", "a", &FACTS, 1_500), granted(2));
        let other = Facts {
            max_calls: Some(9),
            ..FACTS
        };
        assert_eq!(p.grant("acme", "a", &other, 1_500), Asked::Held);
        assert_eq!(p.grant("acme", "a", &FACTS, 1_501), granted(3));
        assert_eq!(
            p.grant("acme", "a", &FACTS, 1_502),
            Asked::Answered(Reservation::Exhausted)
        );
        // Past its retention, the store thread judges.
        assert_eq!(p.grant("acme", "a", &FACTS, 90_000), Asked::Held);
        let c = p.capture(Freeze::Nothing).unwrap();
        assert_eq!(
            c.rows,
            vec![Row {
                tenant: "acme".into(),
                jti: "a".into(),
                used: 3,
                last_at: 1_501
            }]
        );
        assert_eq!(c.through.epoch, 2);
        // Nothing new since: nothing to write.
        assert!(p.capture(Freeze::Nothing).is_none());
    }

    #[test]
    fn a_frozen_token_is_left_to_the_store_thread_and_goes_on_commit() {
        let (_dir, p) = proved();
        let unlimited = Facts {
            max_calls: None,
            ..FACTS
        };
        p.hold("acme", "a", unlimited, 5, 1_400);
        p.hold("acme", "b", unlimited, 1, 1_400);
        assert_eq!(p.grant("acme", "a", &unlimited, 1_500), granted(6));
        let c = p.capture(Freeze::All).unwrap();
        assert_eq!(c.rows.len(), 1);
        assert_eq!(p.grant("acme", "a", &unlimited, 1_500), Asked::NotHeld);
        assert_eq!(p.grant("acme", "b", &unlimited, 1_500), Asked::NotHeld);
        // A failed transaction: grantable again, and the count is captured again.
        p.failed(vec![c]);
        assert_eq!(p.grant("acme", "b", &unlimited, 1_500), granted(2));
        let c = p.capture(Freeze::All).unwrap();
        let mut written: Vec<_> = c.rows.iter().map(|r| (&*r.jti, r.used)).collect();
        written.sort_unstable();
        assert_eq!(written, vec![("a", 6), ("b", 2)]);
        p.committed(&[c]);
        assert!(!p.holds("acme", "a") && !p.holds("acme", "b"));
    }

    #[test]
    fn a_filling_half_asks_once_and_the_next_epoch_waits_for_a_commit() {
        let (_dir, p) = proved();
        let unlimited = Facts {
            max_calls: None,
            ..FACTS
        };
        p.hold("acme", "a", unlimited, 0, 0);
        let mut asked = 0;
        let mut used = 0;
        while !p.fold_due() {
            match p.grant("acme", "a", &unlimited, 1_500) {
                Asked::Answered(Reservation::Granted { used: n }) => used = n,
                Asked::AnsweredFoldDue(Reservation::Granted { used: n }) => {
                    used = n;
                    asked += 1;
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(asked, 1, "the fold is asked for once");
        let c = p.capture(Freeze::Nothing).unwrap();
        assert_eq!(
            c.through,
            Position {
                epoch: 3,
                offset: 0
            },
            "the next epoch started"
        );
        assert_eq!(c.rows[0].used, used as i64);
        // Fill the new half too before the first fold commits: it cannot start another epoch.
        while !p.fold_due() {
            assert!(matches!(
                p.grant("acme", "a", &unlimited, 1_500),
                Asked::Answered(_) | Asked::AnsweredFoldDue(_)
            ));
        }
        let sealed = p.capture(Freeze::Nothing).unwrap();
        assert_eq!(sealed.through.epoch, 3, "sealed: no new epoch");
        p.committed(&[c, sealed]);
        assert_eq!(p.capture(Freeze::Nothing).unwrap().through.epoch, 4);
        // Held tokens stay held across plain folds.
        assert!(p.holds("acme", "a"));
    }

    #[test]
    fn holding_is_bounded_and_makes_room_only_from_tokens_with_nothing_to_write() {
        let (_dir, p) = proved();
        let unlimited = Facts {
            max_calls: None,
            ..FACTS
        };
        for i in 0..HELD {
            p.hold("acme", &i.to_string(), unlimited, 1, 0);
        }
        assert!(matches!(
            p.grant("acme", "0", &unlimited, 1),
            Asked::Answered(_)
        ));
        p.hold("acme", "new", unlimited, 1, 0);
        assert!(p.holds("acme", "new"));
        assert!(p.holds("acme", "0"), "a token with a count to write stays");
        assert_eq!(p.lock().entries.len(), 2);
    }
}
