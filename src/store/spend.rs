//! Spend counters (`docs/budgets.md` §4): what calls used in calls, tokens and money, per line (a token's
//! `t/<jti>`, an end user's `u/<uid>/d/<day>`, `u/<uid>/m/<month>`, `u/<uid>/a`). The relay reserves a
//! call's worst case on every line that limits it in one all-or-nothing step, then settles the
//! reservation to the reported usage. This file holds the vocabulary and the in-memory backend; SQLite
//! and Redis implement the same operations atomically, and all three pass `tests/store_conformance.rs`.

use std::collections::HashMap;
use std::sync::Mutex;

/// Amounts on one line: calls and tokens counted, money in micro-units. Reservations in flight are
/// included until they are settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Spend {
    pub calls: u64,
    pub input: u64,
    pub output: u64,
    pub cached_input: u64,
    pub cost: u64,
}

impl Spend {
    /// Input plus output: what a `tok` limit bounds.
    pub fn tokens(&self) -> u64 {
        self.input.saturating_add(self.output)
    }

    /// Every member of `self` plus `plus` minus `minus`, each floored at zero and capped at
    /// [`crate::store::MAX_TIME`] (2^53 - 1, what every backend holds exactly). Computed without
    /// intermediate overflow, so the result is the exact clamped difference for any inputs.
    pub fn adjusted(&self, plus: &Spend, minus: &Spend) -> Spend {
        let f = |a: u64, p: u64, m: u64| {
            let exact = i128::from(a) + i128::from(p) - i128::from(m);
            // The clamp keeps the value in 0..=2^53-1, so the conversion cannot fail.
            u64::try_from(exact.clamp(0, i128::from(crate::store::MAX_TIME))).unwrap_or(0)
        };
        Spend {
            calls: f(self.calls, plus.calls, minus.calls),
            input: f(self.input, plus.input, minus.input),
            output: f(self.output, plus.output, minus.output),
            cached_input: f(self.cached_input, plus.cached_input, minus.cached_input),
            cost: f(self.cost, plus.cost, minus.cost),
        }
    }
}

/// The limits of one line; `None` is unlimited in that unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SpendLimit {
    pub calls: Option<u64>,
    pub tokens: Option<u64>,
    pub cost: Option<u64>,
}

impl SpendLimit {
    /// Whether `used + amount` stays within every limit, compared exactly (no sum saturates).
    pub fn fits(&self, used: &Spend, amount: &Spend) -> bool {
        let within = |limit: Option<u64>, used: u128, add: u128| {
            limit.is_none_or(|l| used + add <= u128::from(l))
        };
        let tokens = |s: &Spend| u128::from(s.input) + u128::from(s.output);
        within(self.calls, used.calls.into(), amount.calls.into())
            && within(self.tokens, tokens(used), tokens(amount))
            && within(self.cost, used.cost.into(), amount.cost.into())
    }
}

impl SpendLimit {
    /// Whether `used` is still below every token and money limit (a session or a call can still
    /// spend something); calls are not looked at.
    pub fn spendable(&self, used: &Spend) -> bool {
        self.tokens.is_none_or(|t| used.tokens() < t) && self.cost.is_none_or(|c| used.cost < c)
    }
}

/// One line a reservation touches: its key, its limits, and until when (Unix seconds) the store must
/// keep it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpendLine {
    pub key: String,
    pub limit: SpendLimit,
    pub keep_until: u64,
}

/// The answer to a reservation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpendReservation {
    /// Every line had room: `amount` was added to all of them.
    Granted,
    /// At least one line had no room: nothing was added. Holds what each line (in the order given)
    /// had used, so the caller can size a smaller reservation.
    NoRoom(Vec<Spend>),
}

/// The in-memory backend.
#[derive(Default)]
pub struct MemorySpend {
    lines: Mutex<HashMap<(String, String), (Spend, u64)>>,
}

impl MemorySpend {
    pub fn reserve(
        &self,
        tenant: &str,
        lines: &[SpendLine],
        amount: &Spend,
        now: u64,
    ) -> SpendReservation {
        let mut g = self.lines.lock().unwrap_or_else(|p| p.into_inner());
        if g.len() > 10_000 {
            g.retain(|_, (_, keep)| *keep >= now);
        }
        let used: Vec<Spend> = lines
            .iter()
            .map(|l| {
                g.get(&(tenant.to_string(), l.key.clone()))
                    .map(|(s, _)| *s)
                    .unwrap_or_default()
            })
            .collect();
        if !lines
            .iter()
            .zip(&used)
            .all(|(l, u)| l.limit.fits(u, amount))
        {
            return SpendReservation::NoRoom(used);
        }
        for l in lines {
            let e = g
                .entry((tenant.to_string(), l.key.clone()))
                .or_insert((Spend::default(), 0));
            e.0 = e.0.adjusted(amount, &Spend::default());
            e.1 = e.1.max(l.keep_until);
        }
        SpendReservation::Granted
    }

    pub fn settle(&self, tenant: &str, keys: &[SpendLine], reserved: &Spend, actual: &Spend) {
        let mut g = self.lines.lock().unwrap_or_else(|p| p.into_inner());
        for l in keys {
            let e = g
                .entry((tenant.to_string(), l.key.clone()))
                .or_insert((Spend::default(), 0));
            e.0 = e.0.adjusted(actual, reserved);
            e.1 = e.1.max(l.keep_until);
        }
    }

    pub fn get(&self, tenant: &str, keys: &[&str]) -> Vec<Spend> {
        let g = self.lines.lock().unwrap_or_else(|p| p.into_inner());
        keys.iter()
            .map(|k| {
                g.get(&(tenant.to_string(), (*k).to_string()))
                    .map(|(s, _)| *s)
                    .unwrap_or_default()
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MAX_TIME;

    fn each(v: u64) -> Spend {
        Spend {
            calls: v,
            input: v,
            output: v,
            cached_input: v,
            cost: v,
        }
    }

    #[test]
    fn adjusted_is_the_exact_clamped_difference() {
        assert_eq!(each(5).adjusted(&each(3), &each(6)), each(2));
        assert_eq!(each(5).adjusted(&each(0), &each(6)), each(0), "floored");
        assert_eq!(each(5).adjusted(&each(u64::MAX), &each(0)), each(MAX_TIME));
        // Without intermediate saturation: 5 + MAX - MAX is 5, not 0.
        assert_eq!(each(5).adjusted(&each(u64::MAX), &each(u64::MAX)), each(5));
    }

    #[test]
    fn fits_compares_exactly() {
        let l = SpendLimit {
            calls: None,
            tokens: Some(u64::MAX),
            cost: None,
        };
        let half = Spend {
            input: u64::MAX,
            output: 1,
            ..Spend::default()
        };
        assert!(!l.fits(&Spend::default(), &half), "the sum exceeds u64");
        let max = Spend { output: 0, ..half };
        assert!(l.fits(&Spend::default(), &max), "exactly at the limit");
    }

    #[test]
    fn memory_lines_are_forgotten_after_keep_until_once_many() {
        let m = MemorySpend::default();
        let line = |key: String, keep_until: u64| SpendLine {
            key,
            limit: SpendLimit::default(),
            keep_until,
        };
        for i in 0..10_001 {
            m.settle(
                "acme",
                &[line(format!("k{i}"), 100)],
                &Spend::default(),
                &each(1),
            );
        }
        m.settle(
            "acme",
            &[line("long".into(), 200)],
            &Spend::default(),
            &each(1),
        );
        // On its keep_until a line is still kept; the sweep runs at this size only.
        m.reserve("acme", &[line("x".into(), 300)], &each(1), 100);
        assert_eq!(m.get("acme", &["k0", "long"]), [each(1), each(1)]);
        m.reserve("acme", &[line("x".into(), 300)], &each(1), 101);
        assert_eq!(
            m.get("acme", &["k0", "long", "x"]),
            [each(0), each(1), each(2)]
        );
    }
}
