//! The store thread's memory of the count it left on each token it granted lately, so the next grant
//! can be written on the condition that the count is still that one, without reading it first.
//!
//! The memory is only ever a guess: the grant's `UPDATE` checks it against the stored count, and a
//! wrong guess (a refund, a rolled-back batch, a deleted record) changes nothing and falls back to
//! reading the count. So nothing here has to follow rollbacks, and counts stay exact whatever it holds.
//! The checkpointer's connection (`checkpoint.rs`) shares the file but only moves pages from the WAL
//! into the database, never a row, so it cannot make a guess wrong either.

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};

/// Tokens remembered at most. Past it the memory starts over: a token not remembered costs one read
/// of its count (about 3,000 instructions), so this only needs to cover the tokens in active use.
const REMEMBERED: usize = 4_096;

/// Where a token's count is remembered: the hash of its tenant and id.
#[derive(Clone, Copy)]
pub(super) struct Slot(u64);

struct Entry {
    tenant: Box<str>,
    jti: Box<str>,
    used: i64,
}

/// Hashes a [`Slot`] (or `proved.rs`'s key) as itself: it already is a keyed hash, hashing it again
/// would only cost time.
#[derive(Default)]
pub(super) struct SlotHasher(u64);

impl Hasher for SlotHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `u64` keys are hashed here; fold anything else in rather than lose it.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

#[derive(Default)]
pub(super) struct Counts {
    /// Keyed by [`Slot`]; two tokens with the same hash share the entry, the last one written wins.
    entries: HashMap<u64, Entry, BuildHasherDefault<SlotHasher>>,
    /// Keyed per process, so which tokens share a slot cannot be chosen from outside.
    hasher: RandomState,
}

impl Counts {
    pub(super) fn slot(&self, tenant: &str, jti: &str) -> Slot {
        Slot(self.hasher.hash_one((tenant, jti)))
    }

    /// The count last left on the token, if remembered.
    pub(super) fn get(&self, slot: Slot, tenant: &str, jti: &str) -> Option<i64> {
        self.entries
            .get(&slot.0)
            .filter(|e| &*e.tenant == tenant && &*e.jti == jti)
            .map(|e| e.used)
    }

    /// Remembers `used` as the token's count.
    pub(super) fn set(&mut self, slot: Slot, tenant: &str, jti: &str, used: i64) {
        if let Some(e) = self.entries.get_mut(&slot.0) {
            if &*e.tenant == tenant && &*e.jti == jti {
                e.used = used;
                return;
            }
        } else if self.entries.len() >= REMEMBERED {
            self.entries.clear();
        }
        self.entries.insert(
            slot.0,
            Entry {
                tenant: tenant.into(),
                jti: jti.into(),
                used,
            },
        );
    }

    /// Forgets the token's count (it changed other than by a grant).
    pub(super) fn forget(&mut self, tenant: &str, jti: &str) {
        let slot = self.slot(tenant, jti);
        if self.get(slot, tenant, jti).is_some() {
            self.entries.remove(&slot.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_per_token_and_stays_bounded() {
        let mut c = Counts::default();
        let a = c.slot("acme", "a");
        assert_eq!(c.get(a, "acme", "a"), None);
        c.set(a, "acme", "a", 3);
        assert_eq!(c.get(a, "acme", "a"), Some(3));
        // Another token under the same slot is not taken for this one.
        assert_eq!(c.get(a, "acme", "b"), None);
        assert_eq!(c.get(a, "globex", "a"), None);
        c.set(a, "acme", "a", 4);
        assert_eq!(c.get(a, "acme", "a"), Some(4));
        c.forget("acme", "a");
        assert_eq!(c.get(a, "acme", "a"), None);

        for i in 0..REMEMBERED * 2 {
            let jti = i.to_string();
            let s = c.slot("acme", &jti);
            c.set(s, "acme", &jti, 1);
            assert!(c.entries.len() <= REMEMBERED);
        }
        let last = (REMEMBERED * 2 - 1).to_string();
        let s = c.slot("acme", &last);
        assert_eq!(c.get(s, "acme", &last), Some(1));
    }
}
