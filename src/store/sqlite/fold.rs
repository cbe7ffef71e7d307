//! Writing the calls granted from the proved counts (`proved.rs`) into the token rows: a fold inside
//! a batch's transaction, and the replay of the grant journal (`journal.rs`) when the store opens.
//!
//! The table `grant_journal` holds one row: the journal position from which the journal may hold
//! calls the rows lack. A fold writes each captured count (absolute, as granted) and that position in
//! the same transaction, so after a crash the rows and the position agree: either the fold committed
//! and the calls before the position are in the rows, or it did not and the position is the older
//! one. Replay sets each token's count to the larger of the row's and the record's, which makes
//! replaying a record twice, or one the rows already hold, change nothing. Only calls recorded after
//! the position are replayed, and no refund or revocation can have changed a row after them: every
//! such job folds first, which moves the position past them, in its own transaction.

use rusqlite::{params, Connection, OptionalExtension};

use crate::store::sqlite::journal::{Journal, Position};
use crate::store::sqlite::proved::Capture;

/// Writes a captured count: the row's count becomes the granted count; `first_used_at` is kept (a
/// proved row has one) and `last_used_at` moves forward only.
const WRITE: &str = "UPDATE token_usage SET calls_used = ?3,
                         first_used_at = coalesce(first_used_at, ?4),
                         last_used_at = max(coalesce(last_used_at, ?4), ?4)
                     WHERE tenant = ?1 AND jti = ?2";

/// Replays a recorded call: as [`WRITE`], but never lowers the count.
const REPLAY: &str = "UPDATE token_usage SET calls_used = max(calls_used, ?3),
                          first_used_at = coalesce(first_used_at, ?4),
                          last_used_at = max(coalesce(last_used_at, ?4), ?4)
                      WHERE tenant = ?1 AND jti = ?2";

const SET_POSITION: &str = "INSERT INTO grant_journal (id, epoch, offset_bytes) VALUES (0, ?1, ?2)
                            ON CONFLICT (id) DO UPDATE SET epoch = ?1, offset_bytes = ?2";

/// Inside the running transaction: writes a capture's counts and position. A row that is gone was
/// forgotten (its token can no longer be accepted): nothing to write.
pub(super) fn write(conn: &Connection, capture: &Capture) -> rusqlite::Result<()> {
    let mut write = conn.prepare_cached(WRITE)?;
    for row in &capture.rows {
        write.execute(params![&*row.tenant, &*row.jti, row.used, row.last_at])?;
    }
    set_position(conn, capture.through)
}

fn set_position(conn: &Connection, p: Position) -> rusqlite::Result<()> {
    // Epochs and offsets stay far below 2^63.
    conn.prepare_cached(SET_POSITION)?
        .execute(params![p.epoch as i64, p.offset as i64])
        .map(drop)
}

/// When the store opens, before any job: opens the journal, writes the calls it holds past the
/// stored position into the rows, clears it (`Journal::clear`) and returns it with the epoch to write
/// next (two past the one read, so even a leftover record would never be read as current). A database that
/// has no position yet (new, or from before the journal) starts a fresh journal.
pub(super) fn recover(conn: &Connection, db: &std::path::Path) -> Result<(Journal, u64), String> {
    let label = db.display();
    let sql = |e: rusqlite::Error| format!("{label}: cannot replay the grant journal: {e}");
    let stored: Option<(i64, i64)> = conn
        .query_row(
            "SELECT epoch, offset_bytes FROM grant_journal WHERE id = 0",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .map_err(sql)?;
    let from = stored.map(|(epoch, offset)| Position {
        epoch: u64::try_from(epoch).unwrap_or(0),
        offset: usize::try_from(offset).unwrap_or(0),
    });
    let journal = Journal::open(db, from.is_none())?;
    let (records, next) = match from {
        Some(p) => (journal.read_from(p), p.epoch.wrapping_add(2)),
        None => (Vec::new(), 2),
    };
    let tx = conn.unchecked_transaction().map_err(sql)?;
    {
        let mut replay = tx.prepare_cached(REPLAY).map_err(sql)?;
        for r in &records {
            replay
                .execute(params![r.tenant, r.jti, r.used, r.at])
                .map_err(sql)?;
        }
    }
    set_position(
        &tx,
        Position {
            epoch: next,
            offset: 0,
        },
    )
    .map_err(sql)?;
    tx.commit().map_err(sql)?;
    let mut journal = journal;
    journal.clear();
    Ok((journal, next))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::proved::Row;
    use crate::store::sqlite::schema::configure;

    fn open(dir: &tempfile::TempDir) -> Connection {
        let conn = Connection::open(dir.path().join("usage.db")).unwrap();
        configure(&conn).unwrap();
        conn.execute(
            "INSERT INTO token_usage (tenant, jti, calls_used, first_used_at, last_used_at,
                 forget_at) VALUES ('acme', 'a', 4, 10, 20, 999999)",
            [],
        )
        .unwrap();
        conn
    }

    fn count(conn: &Connection) -> (i64, i64) {
        conn.query_row(
            "SELECT calls_used, last_used_at FROM token_usage WHERE jti = 'a'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap()
    }

    #[test]
    fn calls_past_the_stored_position_are_replayed_once_and_never_lower_a_count() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("usage.db");
        let conn = open(&dir);
        let (mut journal, epoch) = recover(&conn, &db).unwrap();
        assert_eq!(epoch, 2);
        journal.start(epoch);
        assert!(journal.append("acme", "a", 5, 30));
        // A fold of the count 5 commits, with the position after it.
        let capture = Capture {
            rows: vec![Row {
                tenant: "acme".into(),
                jti: "a".into(),
                used: 5,
                last_at: 30,
            }],
            through: journal.position(),
        };
        write(&conn, &capture).unwrap();
        // Then a refund (the count goes to 4) and two more calls granted from 4 (5 and 6), which
        // only the journal holds when the relay dies.
        conn.execute("UPDATE token_usage SET calls_used = 4", [])
            .unwrap();
        assert!(journal.append("acme", "a", 5, 40));
        assert!(journal.append("acme", "a", 6, 41));
        assert!(journal.append("acme", "gone", 3, 41), "a forgotten row");
        drop(journal);

        let (journal, epoch) = recover(&conn, &db).unwrap();
        assert_eq!(epoch, 4);
        assert!(
            journal
                .read_from(Position {
                    epoch: 2,
                    offset: 0
                })
                .is_empty(),
            "replayed, then cleared"
        );
        assert_eq!(
            count(&conn),
            (6, 41),
            "the refund stands, the calls after it count"
        );
        // A second start replays nothing more (the position moved to a new epoch).
        conn.execute("UPDATE token_usage SET calls_used = 2", [])
            .unwrap();
        let (_journal, epoch) = recover(&conn, &db).unwrap();
        assert_eq!(epoch, 6);
        assert_eq!(count(&conn).0, 2);
    }

    #[test]
    fn a_fold_that_started_an_epoch_and_never_committed_loses_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("usage.db");
        let conn = open(&dir);
        let (mut journal, epoch) = recover(&conn, &db).unwrap();
        journal.start(epoch);
        assert!(journal.append("acme", "a", 5, 30));
        // The fold captured and moved to the next epoch, but died before its commit.
        journal.start(epoch + 1);
        assert!(journal.append("acme", "a", 6, 31));
        drop(journal);
        recover(&conn, &db).unwrap();
        assert_eq!(count(&conn), (6, 31));
    }
}
