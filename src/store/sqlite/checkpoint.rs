//! The checkpointer: a second connection on its own thread that copies the WAL back into the
//! database file, so a checkpoint's `fsync`s never hold the store thread and the reservations behind it.
//!
//! The store's writing connections (the store thread's and the lane's, `inline.rs`) run with
//! `wal_autocheckpoint = 0`; every [`COMMITS_PER_CHECKPOINT`] of their transactions, the [`Nudge`]
//! kept behind the gate tells this thread that it is time. A checkpoint here is two steps:
//!
//! 1. `PASSIVE`: copies every frame in the WAL into the database without taking the write lock, so
//!    the store thread keeps committing meanwhile. This is where the expensive `fsync`s happen: the
//!    WAL's (every frame appended since the last checkpoint, ~5 ms here for 1,000 frames) and the
//!    database file's.
//! 2. Holding the gate (`inline.rs`), so neither the store thread nor a caller's lane writes
//!    meanwhile: `FULL` copies the few frames committed during step 1, then syncs again, now with
//!    almost nothing to write (~0.2 ms per `fdatasync` here). Afterwards the whole WAL is in the
//!    database, so the next write transaction starts the WAL over from its first frame; this thread
//!    makes that write itself (it sets `user_version` to the value it has), still holding the gate. A
//!    `PASSIVE` checkpoint alone never gets there under steady load: something is always committed
//!    while it syncs, and SQLite restarts the WAL only once every frame is copied. Without the restart
//!    the WAL file would grow without bound, and so would the WAL index's hash chains that every
//!    commit walks (`schema.rs`).
//!
//! Why this thread makes the restart: when a writer starts the WAL over, SQLite syncs the new WAL
//! header before the first frame lands behind it (its guard against out-of-order writes after a
//! restart). Made by the store thread, that `fsync` held the reservations queued behind it (`strace
//! -f -T` at 1,000 requests per second: median 0.33 ms, up to 5.9 ms, once per 250 commits); made by
//! a caller's lane it would stall a runtime worker. Here it costs neither.
//!
//! Nothing here changes a row, only where the pages live (and the header's `user_version`, to the
//! value it already has), so what the store thread remembers (`counts.rs`, its "no tenant mark" flag
//! in `writer.rs`) stays as exact as before.

use std::path::Path;
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use crate::store::sqlite::gate::{lock, Gate};
use crate::store::sqlite::schema::{SCHEMA_VERSION, VFS};
use crate::store::StoreError;

/// Transactions of the store thread between two checkpoints. Each commit appends at least one frame
/// (one for a grant on a known token), so this sets the WAL's length between restarts: the walk in
/// the WAL index's hash chain per commit grows with it (`schema.rs`), and each checkpoint holds the
/// write lock once for its short second step. Measured with `bench/instructions.sh` at one
/// connection (a transaction per request), log off: 78,034 instructions per request at 100, 78,521
/// at 250, 79,385 at 500, 82,159 at 1,000. At 1,000 requests per second this value checkpoints four
/// times a second; the write lock is held for well under 1 % of the time, so p99 does not see it.
pub(super) const COMMITS_PER_CHECKPOINT: u32 = 250;

/// How long the second step waits for the store thread's transaction in progress to end (a batch
/// takes microseconds to a few milliseconds); past it, the next checkpoint tries again.
const WAIT_FOR_WRITER: Duration = Duration::from_secs(1);

/// What the checkpointer thread is asked.
enum Ask {
    Checkpoint,
    Stop,
}

/// The store's handle to the checkpointer thread. Dropping it stops the thread, after the
/// checkpoint it was asked for, if any, and closes its connection; it must not be dropped while
/// holding the gate, which that checkpoint takes.
pub(super) struct Checkpointer {
    stop: SyncSender<Ask>,
    thread: Option<JoinHandle<()>>,
}

/// Counts the store's transactions (the store thread's and the lane's, `inline.rs`) and asks for a
/// checkpoint every [`COMMITS_PER_CHECKPOINT`]. Kept behind the gate, with the lane.
pub(super) struct Nudge {
    /// Holds at most one request: a request while one is waiting changes nothing.
    wake: SyncSender<Ask>,
    /// Transactions since the last request.
    commits: u32,
}

impl Checkpointer {
    /// Opens the checkpointer's connection (after [`super::writer::connect`] set the file up) and
    /// starts the thread, whose second step holds `gate`.
    pub(super) fn start<L: Send + 'static>(
        path: &Path,
        gate: Arc<Gate<L>>,
    ) -> Result<(Checkpointer, Nudge), StoreError> {
        let fail = |what: &str, e: &dyn std::fmt::Display| {
            StoreError(format!("{}: {what}: {e}", path.display()))
        };
        let conn = Connection::open_with_flags_and_vfs(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            VFS,
        )
        .map_err(|e| fail("cannot open the checkpointer's connection", &e))?;
        conn.busy_timeout(WAIT_FOR_WRITER)
            .and_then(|()| conn.pragma_update(None, "synchronous", "NORMAL"))
            .map_err(|e| fail("cannot set the checkpointer's connection up", &e))?;
        let (wake, asked) = sync_channel::<Ask>(1);
        let thread = std::thread::Builder::new()
            // Thread names are cut at 15 bytes: `relayapi-sqlite` is the store thread.
            .name("relayapi-ckpt".into())
            .spawn(move || {
                // Ends when told to, or once every sender is gone; a request made before that is
                // still served. A failed checkpoint (an I/O error, the lock not had in time) leaves
                // the WAL as it is, and the next request tries again.
                while let Ok(Ask::Checkpoint) = asked.recv() {
                    let _ = checkpoint(&conn, &gate);
                }
            })
            .map_err(|e| fail("cannot start the checkpointer", &e))?;
        let checkpointer = Checkpointer {
            stop: wake.clone(),
            thread: Some(thread),
        };
        Ok((checkpointer, Nudge { wake, commits: 0 }))
    }
}

impl Nudge {
    /// Counts one transaction, and asks for a checkpoint every [`COMMITS_PER_CHECKPOINT`]. Never
    /// blocks: with a request already waiting it does nothing.
    pub(super) fn committed(&mut self) {
        self.commits += 1;
        if self.commits >= COMMITS_PER_CHECKPOINT {
            self.commits = 0;
            let _ = self.wake.try_send(Ask::Checkpoint);
        }
    }
}

#[cfg(test)]
impl Nudge {
    /// A nudge whose requests go nowhere, for a lane built without a checkpointer.
    pub(super) fn unconnected() -> Nudge {
        let (wake, _) = sync_channel(1);
        Nudge { wake, commits: 0 }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        // Waits for room behind a request already made (served first), unless the thread is gone.
        let _ = self.stop.send(Ask::Stop);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Copies the whole WAL into the database, the long part without the write lock (module doc).
/// Returns the WAL's frames and how many of them are now in the database, as of the second step
/// (`None`: the store is closing, and its last connection checkpoints as it closes).
pub(super) fn checkpoint<L>(
    conn: &Connection,
    gate: &Gate<L>,
) -> rusqlite::Result<Option<(i64, i64)>> {
    let run = |mode: &str| {
        conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |r| {
            Ok((r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
        })
    };
    run("PASSIVE")?;
    // The second step and the WAL's restart hold the gate: no writer of the store runs meanwhile.
    let held = lock(gate);
    if held.is_none() {
        return Ok(None);
    }
    let (log, done) = run("FULL")?;
    if log > 0 && log == done {
        // The first write after a complete checkpoint starts the WAL over and syncs its new header
        // (module header): made here, it is this thread's `fsync`, not a reservation's.
        conn.execute_batch(&format!(
            "BEGIN IMMEDIATE; PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
        ))?;
    }
    drop(held);
    Ok(Some((log, done)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::inline::Lane;
    use crate::store::sqlite::writer::connect;
    use std::sync::Mutex;

    /// A WAL frame: a 24-byte header and a 4 KiB page.
    const FRAME: u64 = 4_120;

    fn wal_len(path: &Path) -> u64 {
        let mut wal = path.as_os_str().to_owned();
        wal.push("-wal");
        std::fs::metadata(wal).unwrap().len()
    }

    /// A transaction that appends one frame, as a grant on a known token does.
    fn commit(conn: &Connection, i: u32) {
        conn.execute_batch(&format!(
            "BEGIN IMMEDIATE; INSERT OR REPLACE INTO tenant_revocation VALUES ('t', {i}); COMMIT;"
        ))
        .unwrap();
    }

    /// The WAL header's checkpoint sequence number and salts: they change when the WAL starts over.
    fn wal_generation(path: &Path) -> [u8; 12] {
        let mut wal = path.as_os_str().to_owned();
        wal.push("-wal");
        std::fs::read(wal).unwrap()[12..24].try_into().unwrap()
    }

    /// A gate holding a lane, as an open store's does (the lane's own requests go nowhere).
    fn gate(path: &Path) -> Arc<Gate<Lane>> {
        let lane = Lane::new(
            connect(path).unwrap(),
            "usage.db".into(),
            0,
            Nudge::unconnected(),
        );
        Arc::new(Mutex::new(Some(lane.unwrap())))
    }

    #[test]
    fn a_checkpoint_on_another_connection_starts_the_wal_over_itself() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("usage.db");
        let writer = connect(&path).unwrap();
        let other = Connection::open_with_flags_and_vfs(&path, OpenFlags::default(), VFS).unwrap();
        let gate = gate(&path);
        for i in 0..50 {
            commit(&writer, i);
        }
        let grown = wal_len(&path);
        assert!(grown >= 50 * FRAME, "no checkpoint on the writer's own");
        let before = wal_generation(&path);
        let (log, done) = checkpoint(&other, &gate).unwrap().unwrap();
        assert!(log >= 50 && log == done, "every frame copied: {log} {done}");
        // The restart, and the sync of the new header, happened on the checkpointer's connection,
        // before the writer wrote again.
        assert_ne!(wal_generation(&path), before, "the WAL was started over");
        let restarted = wal_generation(&path);
        for i in 0..50 {
            commit(&writer, i);
        }
        assert_eq!(
            wal_generation(&path),
            restarted,
            "the writer did not restart it again"
        );
        assert_eq!(wal_len(&path), grown, "written over from the start");
        assert_eq!(
            other
                .query_row("SELECT revoked_before FROM tenant_revocation", [], |r| {
                    r.get::<_, i64>(0)
                })
                .unwrap(),
            49
        );
    }

    #[test]
    fn a_closing_store_gets_no_second_step() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("usage.db");
        let writer = connect(&path).unwrap();
        let other = Connection::open_with_flags_and_vfs(&path, OpenFlags::default(), VFS).unwrap();
        for i in 0..10 {
            commit(&writer, i);
        }
        let before = wal_generation(&path);
        let closing: Gate<Lane> = Mutex::new(None);
        assert_eq!(checkpoint(&other, &closing).unwrap(), None);
        assert_eq!(wal_generation(&path), before);
    }

    #[test]
    fn the_thread_checkpoints_every_so_many_commits_and_stops_with_its_handle() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("usage.db");
        let writer = connect(&path).unwrap();
        let (ckpt, mut nudge) = Checkpointer::start(&path, gate(&path)).unwrap();
        for i in 0..COMMITS_PER_CHECKPOINT {
            commit(&writer, i);
            nudge.committed();
        }
        // The request made by the last commit is served before the thread stops.
        drop(ckpt);
        let grown = wal_len(&path);
        assert!(grown >= u64::from(COMMITS_PER_CHECKPOINT) * FRAME);
        for i in 0..COMMITS_PER_CHECKPOINT / 2 {
            commit(&writer, i);
        }
        assert_eq!(wal_len(&path), grown, "the WAL started over");
    }
}
