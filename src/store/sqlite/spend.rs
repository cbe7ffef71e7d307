//! The SQL of the spend lines (`docs/budgets.md` §4): reservation, settlement and reading, run by the
//! store thread inside a batch's transaction.
//!
//! A reservation reads every line, decides with [`SpendLimit::fits`](crate::store::SpendLimit::fits)
//! (the same code as the in-memory backend), and writes only when every line has room. The store
//! thread is the only writer and runs one job at a time, so nothing can change a line between the
//! read and the write; the job is answered only after its batch commits, so a granted reservation is
//! in the WAL before the relay forwards the call, and a `kill -9` right after keeps it.

use rusqlite::{params, OptionalExtension};

use crate::store::sqlite::ops::{int, uint};
use crate::store::sqlite::writer::Db;
use crate::store::{Spend, SpendLine, SpendReservation, MAX_TIME};

/// Adds a signed amount to every member of a line, creating it if missing: each member becomes
/// `max(0, min(2^53 - 1, used + delta))`, and `keep_until` the larger of the two. ?3..?7 are the
/// members of a new line, ?8 its `keep_until`, ?9..?13 the deltas, ?14 the cap.
const ADD: &str = "
INSERT INTO spend_line (tenant, key, calls, input, output, cached_input, cost, keep_until)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
ON CONFLICT (tenant, key) DO UPDATE SET
    calls        = max(0, min(?14, calls + ?9)),
    input        = max(0, min(?14, input + ?10)),
    output       = max(0, min(?14, output + ?11)),
    cached_input = max(0, min(?14, cached_input + ?12)),
    cost         = max(0, min(?14, cost + ?13)),
    keep_until   = max(keep_until, excluded.keep_until)";

/// A per-member change, as the SQL takes it: each delta clamped to ±(2^53 - 1). Stored members are
/// within 0..=2^53-1, so the clamp changes no result and `used + delta` never overflows SQLite's
/// 64-bit integers (an overflow would silently turn into a floating-point value).
struct Delta([i64; 5]);

impl Delta {
    fn between(plus: &Spend, minus: &Spend) -> Delta {
        let m = i128::from(MAX_TIME);
        let d = |p: u64, n: u64| {
            let exact = (i128::from(p) - i128::from(n)).clamp(-m, m);
            // Within ±(2^53 - 1): the conversion cannot fail.
            i64::try_from(exact).unwrap_or(0)
        };
        Delta([
            d(plus.calls, minus.calls),
            d(plus.input, minus.input),
            d(plus.output, minus.output),
            d(plus.cached_input, minus.cached_input),
            d(plus.cost, minus.cost),
        ])
    }

    /// The members of a line created by this change.
    fn fresh(&self) -> [i64; 5] {
        self.0.map(|d| d.max(0))
    }
}

impl Db<'_> {
    /// What line `key` of `tenant` has used; zero when the store does not hold it.
    fn spend_line(&self, tenant: &str, key: &str) -> rusqlite::Result<Spend> {
        self.conn
            .prepare_cached(
                "SELECT calls, input, output, cached_input, cost FROM spend_line
                 WHERE tenant = ?1 AND key = ?2",
            )?
            .query_row(params![tenant, key], |r| {
                Ok(Spend {
                    calls: uint(r.get(0)?)?,
                    input: uint(r.get(1)?)?,
                    output: uint(r.get(2)?)?,
                    cached_input: uint(r.get(3)?)?,
                    cost: uint(r.get(4)?)?,
                })
            })
            .optional()
            .map(Option::unwrap_or_default)
    }

    /// Applies `delta` to every line. With more than one line the job's savepoint opens before the
    /// first write, so a failure part-way leaves no line changed (the job isolates itself); one line
    /// is one statement, which SQLite undoes alone if it fails.
    fn spend_add(
        &mut self,
        tenant: &str,
        lines: &[SpendLine],
        delta: &Delta,
    ) -> rusqlite::Result<()> {
        // Converted before anything is written: a value SQLite cannot hold fails the job cleanly.
        let keeps = lines
            .iter()
            .map(|l| int(l.keep_until.min(MAX_TIME)))
            .collect::<rusqlite::Result<Vec<i64>>>()?;
        let (f, d, cap) = (delta.fresh(), &delta.0, int(MAX_TIME)?);
        if lines.len() > 1 {
            self.isolate()?;
        }
        for (l, keep) in lines.iter().zip(keeps) {
            self.conn.prepare_cached(ADD)?.execute(params![
                tenant, l.key, f[0], f[1], f[2], f[3], f[4], keep, d[0], d[1], d[2], d[3], d[4],
                cap
            ])?;
        }
        Ok(())
    }

    /// All or nothing: adds `amount` to every line only if each has room for it in every limited
    /// unit; otherwise writes nothing and answers what each line had used, in the order given.
    pub(super) fn spend_reserve(
        &mut self,
        tenant: &str,
        lines: &[SpendLine],
        amount: &Spend,
    ) -> rusqlite::Result<SpendReservation> {
        let used = lines
            .iter()
            .map(|l| self.spend_line(tenant, &l.key))
            .collect::<rusqlite::Result<Vec<Spend>>>()?;
        if !lines
            .iter()
            .zip(&used)
            .all(|(l, u)| l.limit.fits(u, amount))
        {
            return Ok(SpendReservation::NoRoom(used));
        }
        self.spend_add(tenant, lines, &Delta::between(amount, &Spend::default()))?;
        Ok(SpendReservation::Granted)
    }

    /// Replaces `reserved` by `actual` on every line (each member floored at zero, capped at
    /// 2^53 - 1), creating missing lines.
    pub(super) fn spend_settle(
        &mut self,
        tenant: &str,
        lines: &[SpendLine],
        reserved: &Spend,
        actual: &Spend,
    ) -> rusqlite::Result<()> {
        self.spend_add(tenant, lines, &Delta::between(actual, reserved))
    }

    pub(super) fn spend_get(
        &mut self,
        tenant: &str,
        keys: &[String],
    ) -> rusqlite::Result<Vec<Spend>> {
        keys.iter().map(|k| self.spend_line(tenant, k)).collect()
    }
}
