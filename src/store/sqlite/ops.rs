//! The SQL of the token operations (call reservation, refund, usage, revocation, clean-up), run by the
//! store thread inside a batch's transaction.

use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{params, OptionalExtension};

use crate::store::sqlite::counts::Slot;
use crate::store::sqlite::deferred::Facts;
use crate::store::sqlite::writer::Db;
use crate::store::{keep_token_for, Reservation, Usage};

/// Seconds between deletions of forgotten records (tokens expired more than a day ago, spend lines
/// past their `keep_until`).
const SWEEP_INTERVAL: u64 = 3_600;

impl Facts {
    /// A reservation's facts as the row holds them, with the call's time; converted before anything
    /// is read or written, so a value SQLite cannot hold fails the job without side effects.
    pub(super) fn of(
        iat: u64,
        exp: u64,
        max: Option<u64>,
        now: u64,
    ) -> rusqlite::Result<(Facts, i64)> {
        let facts = Facts {
            max_calls: max.map(int).transpose()?,
            exp_at: int(exp)?,
            iat: int(iat)?,
            forget_at: int(now.saturating_add(keep_token_for(exp, now)))?,
        };
        Ok((facts, int(now)?))
    }
}

impl Db<'_> {
    /// Checks and counts one call. Reads first and writes only what changed: an exhausted or
    /// revoked token usually writes nothing, and the `forget_at` index is touched only when the
    /// token's retention changes, so a batch of grants dirties a single page.
    pub(super) fn reserve(
        &mut self,
        tenant: &str,
        jti: &str,
        iat: u64,
        exp: u64,
        max: Option<u64>,
        now: u64,
    ) -> rusqlite::Result<Reservation> {
        let (facts, at) = Facts::of(iat, exp, max, now)?;
        let Facts {
            max_calls,
            exp_at,
            iat,
            forget_at,
        } = facts;
        // The common case: a known token, not revoked (by id or by its tenant's mark), with a call
        // left and an unchanged retention, gets its call counted and its facts refreshed exactly as
        // the full path below would, by one `UPDATE` made on the condition that the count is still
        // the one this thread last left on the token (`counts.rs`), else the one read first. So the
        // write is the job's last statement (SQLite undoes it alone if it fails) and the answer needs
        // no `RETURNING`, which made SQLite build and drop a temporary table on every call (about
        // 13,000 instructions, `bench/instructions.sh`); and a token granted before skips the read.
        // Both statements are kept prepared (`statements.rs`).
        // A token a grant of this batch has already written: counted in memory (`deferred.rs`).
        if let Some(used) = self.deferred.grant(tenant, jti, &facts, at) {
            return Ok(Reservation::Granted { used: uint(used)? });
        }
        if self.deferred.holds(tenant, jti) {
            // Other claims, or no call left: the statements below must see every call counted.
            self.flush_deferred()?;
        }
        let grant = Grant {
            tenant,
            jti,
            facts,
            at,
        };
        let slot = self.counts.slot(tenant, jti);
        let remembered = self.counts.get(slot, tenant, jti);
        if let Some(used) = remembered {
            if let Some(granted) = self.grant_counted(&grant, slot, used)? {
                return Ok(granted);
            }
        }
        let known: Option<i64> = self
            .prepared
            .count
            .query_row(params![tenant, jti], |r| r.get(0))
            .optional()?;
        // `calls_used >= 0` always holds; saying it keeps the conversion to the answer from failing
        // after the write. A remembered count already tried is not tried again.
        if let Some(used) = known.filter(|&u| u >= 0 && Some(u) != remembered) {
            if let Some(granted) = self.grant_counted(&grant, slot, used)? {
                return Ok(granted);
            }
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
        let Some(TokenRow {
            used,
            revoked,
            max_calls: old_max,
            exp_at: old_exp,
            iat: old_iat,
            forget_at: old_forget_at,
            ..
        }) = self.token_row(tenant, jti)?
        else {
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
            if grant {
                self.granted(tenant, jti, slot, facts, 1);
            }
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
        if grant {
            let used = int(used + 1)?;
            self.granted(tenant, jti, slot, facts, used);
        }
        Ok(if revoked {
            Reservation::Revoked
        } else if grant {
            Reservation::Granted { used: used + 1 }
        } else {
            Reservation::Exhausted
        })
    }

    /// Runs the common grant (`statements.rs`) on the condition that the token's count is `used`:
    /// `None` when it did not apply (another count, or the full path is needed), else the answer.
    fn grant_counted(
        &mut self,
        g: &Grant<'_>,
        slot: Slot,
        used: i64,
    ) -> rusqlite::Result<Option<Reservation>> {
        let grant = if self.tenant_marks {
            &mut self.prepared.grant
        } else {
            &mut self.prepared.grant_unmarked
        };
        let counted = grant.execute(params![
            g.tenant,
            g.jti,
            g.facts.max_calls,
            g.facts.exp_at,
            g.facts.iat,
            g.at,
            g.facts.forget_at,
            used
        ])?;
        if counted != 1 {
            return Ok(None);
        }
        let granted = Reservation::Granted {
            used: uint(used)? + 1,
        };
        self.granted(g.tenant, g.jti, slot, g.facts, used + 1);
        Ok(Some(granted))
    }

    /// After a grant wrote the token's row with `facts` and count `used`: remembers the count for the
    /// next batch (`counts.rs`), when jobs of this batch follow, what later calls of the token in
    /// it are counted against (`deferred.rs`), and that the token may be held once the batch commits
    /// (`proved.rs`). A batch of one job (every batch at low load) has no later call, so it copies
    /// nothing to `deferred.rs`.
    fn granted(&mut self, tenant: &str, jti: &str, slot: Slot, facts: Facts, used: i64) {
        self.counts.set(slot, tenant, jti, used);
        if self.isolating {
            self.deferred.record(tenant, jti, slot, facts, used);
        }
        self.candidate(tenant, jti, facts);
    }

    /// Writes the calls counted in memory during the batch (`deferred.rs`) and forgets them. Runs
    /// before any job that may read or change token records, and before `COMMIT`. A record that is
    /// gone (which nothing in a batch can cause) fails the statement, and with it the batch.
    pub(super) fn flush_deferred(&mut self) -> rusqlite::Result<()> {
        if self.deferred.is_empty() {
            return Ok(());
        }
        let Db {
            deferred,
            prepared,
            counts,
            ..
        } = self;
        for w in deferred.take() {
            let changed = prepared
                .add_calls
                .execute(params![&*w.tenant, &*w.jti, w.calls, w.last_at])?;
            if changed != 1 {
                return Err(rusqlite::Error::StatementChangedRows(changed));
            }
            counts.set(w.slot, &w.tenant, &w.jti, w.used);
        }
        Ok(())
    }

    /// The token's row, if it has one.
    pub(super) fn token_row(&self, tenant: &str, jti: &str) -> rusqlite::Result<Option<TokenRow>> {
        self.conn
            .prepare_cached(
                "SELECT calls_used, revoked, max_calls, expires_at, issued_at, forget_at,
                        last_used_at
                 FROM token_usage WHERE tenant = ?1 AND jti = ?2",
            )?
            .query_row(params![tenant, jti], |r| {
                Ok(TokenRow {
                    used: r.get(0)?,
                    revoked: r.get(1)?,
                    max_calls: r.get(2)?,
                    exp_at: r.get(3)?,
                    iat: r.get(4)?,
                    forget_at: r.get(5)?,
                    last_at: r.get(6)?,
                })
            })
            .optional()
    }

    pub(super) fn refund(&mut self, tenant: &str, jti: &str) -> rusqlite::Result<()> {
        // Not needed for exactness (a wrong remembered count only costs a read), but saves it.
        self.counts.forget(tenant, jti);
        self.conn
            .prepare_cached(
                "UPDATE token_usage SET calls_used = calls_used - 1
                 WHERE tenant = ?1 AND jti = ?2 AND calls_used > 0",
            )?
            .execute(params![tenant, jti])
            .map(drop)
    }

    pub(super) fn usage(&mut self, tenant: &str, jti: &str) -> rusqlite::Result<Option<Usage>> {
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

    pub(super) fn revoke(&mut self, tenant: &str, jti: &str) -> rusqlite::Result<Usage> {
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

    pub(super) fn revoke_before(&mut self, tenant: &str, ts: u64) -> rusqlite::Result<u64> {
        // Before the write: from here on grants look the tenant's mark up.
        self.tenant_marks = true;
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

    /// Deletes records of tokens that can no longer be accepted and spend lines past their
    /// `keep_until`, at most once per [`SWEEP_INTERVAL`]. A failed sweep only delays clean-up: each
    /// `DELETE` is undone alone and the reservation it follows stands. The error is returned only
    /// when it cost the whole transaction.
    pub(super) fn sweep(&mut self, now: u64) -> rusqlite::Result<()> {
        if now < self.next_sweep {
            return Ok(());
        }
        self.next_sweep = now.saturating_add(SWEEP_INTERVAL);
        let Ok(now) = int(now) else {
            return Ok(());
        };
        for sql in [
            "DELETE FROM token_usage WHERE forget_at < ?1",
            "DELETE FROM spend_line WHERE keep_until < ?1",
        ] {
            let deleted = self
                .conn
                .prepare_cached(sql)
                .and_then(|mut s| s.execute(params![now]));
            match deleted {
                Err(e) if self.conn.is_autocommit() => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }
}

/// What a token's row holds, as the full path of a grant and the holding of a proved token read it.
pub(super) struct TokenRow {
    pub(super) used: i64,
    pub(super) revoked: bool,
    pub(super) max_calls: Option<i64>,
    pub(super) exp_at: Option<i64>,
    pub(super) iat: Option<i64>,
    pub(super) forget_at: i64,
    pub(super) last_at: Option<i64>,
}

/// A reservation's values as the grant statement takes them.
struct Grant<'a> {
    tenant: &'a str,
    jti: &'a str,
    facts: Facts,
    at: i64,
}

/// SQLite integers are signed 64-bit; the store only ever holds values below 2^53.
pub(super) fn int(v: u64) -> rusqlite::Result<i64> {
    i64::try_from(v).map_err(|_| rusqlite::Error::IntegralValueOutOfRange(0, i64::MAX))
}

pub(super) fn uint(v: i64) -> rusqlite::Result<u64> {
    u64::try_from(v).map_err(|_| rusqlite::Error::IntegralValueOutOfRange(0, v))
}

pub(super) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
