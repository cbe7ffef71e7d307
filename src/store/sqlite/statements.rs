//! The statements of the common path (a batch's `BEGIN` and `COMMIT`, a grant's read and write),
//! prepared once when the store thread starts and kept for the connection's life.
//!
//! Every other statement goes through rusqlite's `prepare_cached`, which is fine for the rare ones
//! but not for these: the cache finds a statement by its text, so each use trims the text,
//! hashes it, copies it into a new key, and hashes it again to put the statement back. That was
//! about 3,600 instructions per proxied request (`bench/instructions.sh`), as much as the grant's
//! `UPDATE` itself. Held here, a use is a bind and a step.

use rusqlite::{Connection, PrepFlags, Statement};

/// A token's count, read before the grant when the store thread does not remember it (`counts.rs`),
/// so the answer needs no `RETURNING` (see `Db::reserve`). Parameters: tenant, jti.
const COUNT: &str = "SELECT calls_used FROM token_usage WHERE tenant = ?1 AND jti = ?2";

/// The common grant: counts one call on a known token that is not revoked (by id or by its tenant's
/// mark), has a call left, keeps its retention and still has the count given (remembered or read by
/// [`COUNT`]), and refreshes its facts from the claims as the full path would. Parameters: tenant,
/// jti, max_calls, expires_at, issued_at, now, forget_at, the count. `$marks` is the condition on the
/// tenant's mark: [`GRANT`] has it, [`GRANT_UNMARKED`] runs while no tenant has one.
macro_rules! grant {
    ($marks:literal) => {
        concat!(
            "UPDATE token_usage SET max_calls = ?3, expires_at = ?4, issued_at = ?5,
                 calls_used = calls_used + 1,
                 first_used_at = coalesce(first_used_at, ?6), last_used_at = ?6
             WHERE tenant = ?1 AND jti = ?2 AND revoked = 0 AND forget_at = ?7
                 AND calls_used = ?8 AND (?3 IS NULL OR calls_used < ?3)",
            $marks
        )
    };
}

/// See [`grant!`].
const GRANT: &str = grant!(
    " AND NOT EXISTS (SELECT 1 FROM tenant_revocation t
                      WHERE t.tenant = ?1 AND ?5 < t.revoked_before)"
);

/// [`GRANT`] without the look-up of the tenant's mark (an index search and a cursor opened and
/// closed on every call, `bench/instructions.sh`), for while `tenant_revocation` is empty.
const GRANT_UNMARKED: &str = grant!("");

/// Writes a token's calls deferred in the running batch (`deferred.rs`): the grant that proved the
/// row wrote its facts and `first_used_at`, so only the count and the time of the last call change.
/// Parameters: tenant, jti, calls, last_used_at.
const ADD_CALLS: &str = "UPDATE token_usage SET calls_used = calls_used + ?3, last_used_at = ?4
                         WHERE tenant = ?1 AND jti = ?2";

/// The prepared statements, borrowing the connection they run on.
pub(super) struct Prepared<'c> {
    /// `BEGIN IMMEDIATE`: a batch's transaction, taking the write lock at once.
    pub(super) begin: Statement<'c>,
    pub(super) commit: Statement<'c>,
    /// See [`COUNT`].
    pub(super) count: Statement<'c>,
    /// See [`GRANT`].
    pub(super) grant: Statement<'c>,
    /// See [`GRANT_UNMARKED`].
    pub(super) grant_unmarked: Statement<'c>,
    /// See [`ADD_CALLS`].
    pub(super) add_calls: Statement<'c>,
}

impl<'c> Prepared<'c> {
    /// Prepares every statement; fails only if the schema lacks what they name.
    pub(super) fn new(conn: &'c Connection) -> rusqlite::Result<Prepared<'c>> {
        // Persistent: SQLite keeps them out of its small lookaside buffers, as it does for the cache.
        let prepare = |sql| conn.prepare_with_flags(sql, PrepFlags::SQLITE_PREPARE_PERSISTENT);
        Ok(Prepared {
            begin: prepare("BEGIN IMMEDIATE")?,
            commit: prepare("COMMIT")?,
            count: prepare(COUNT)?,
            grant: prepare(GRANT)?,
            grant_unmarked: prepare(GRANT_UNMARKED)?,
            add_calls: prepare(ADD_CALLS)?,
        })
    }
}
