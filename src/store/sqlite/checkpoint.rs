//! The checkpointer: a second connection on its own thread that copies the WAL back into the
//! database file, so a checkpoint's `fsync`s never hold the store thread and the reservations behind it.
//!
//! The store thread's connection runs with `wal_autocheckpoint = 0` and tells this thread, every
//! [`COMMITS_PER_CHECKPOINT`] transactions, that it is time. A checkpoint here is two steps:
//!
//! 1. `PASSIVE`: copies every frame in the WAL into the database without taking the write lock, so
//!    the store thread keeps committing meanwhile. This is where the expensive `fsync`s happen: the
//!    WAL's (every frame appended since the last checkpoint, ~5 ms here for 1,000 frames) and the
//!    database file's.
//! 2. `FULL`: takes the write lock and copies the few frames committed during step 1, then syncs
//!    again, now with almost nothing to write (~0.2 ms per `fdatasync` here). Afterwards the whole WAL
//!    is in the database, so the store thread's next transaction starts the WAL over from its first
//!    frame. A `PASSIVE` checkpoint alone never gets there under steady load: something is always
//!    committed while it syncs, and SQLite restarts the WAL only once every frame is copied. Without
//!    the restart the WAL file would grow without bound, and so would the WAL index's hash chains
//!    that every commit walks (`schema.rs`).
//!
//! The store thread keeps one `fsync`, of almost nothing: when it starts the WAL over, SQLite syncs
//! the new WAL header before the first frame lands behind it (its guard against out-of-order writes
//! after a restart), once per checkpoint; right after the checkpointer's syncs it has little to
//! write (`strace -f -T` at 1,000 requests per second: median 0.33 ms, once per 250 commits).
//!
//! Neither step changes what the database holds, only where the pages live, so the store thread's
//! remembered counts and its "no tenant mark" flag (`writer.rs`) stay exact: it is still the only
//! connection that writes rows.

use std::path::Path;
use std::sync::mpsc::{sync_channel, SyncSender};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use crate::store::sqlite::schema::VFS;
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

/// The store thread's handle to the checkpointer. Dropping it stops the thread, after the
/// checkpoint it was asked for, if any, and closes its connection.
pub(super) struct Checkpointer {
    /// Holds at most one request: a request while one is waiting changes nothing.
    wake: Option<SyncSender<()>>,
    thread: Option<JoinHandle<()>>,
    /// Transactions since the last request.
    commits: u32,
}

impl Checkpointer {
    /// Opens the second connection (after [`super::writer::connect`] set the file up) and starts
    /// the thread.
    pub(super) fn start(path: &Path) -> Result<Checkpointer, StoreError> {
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
        let (wake, asked) = sync_channel::<()>(1);
        let thread = std::thread::Builder::new()
            // Thread names are cut at 15 bytes: `relayapi-sqlite` is the store thread.
            .name("relayapi-ckpt".into())
            .spawn(move || {
                // Ends once the store thread has dropped its handle; a request made before that is
                // still served. A failed checkpoint (an I/O error, the lock not had in time) leaves
                // the WAL as it is, and the next request tries again.
                while asked.recv().is_ok() {
                    let _ = checkpoint(&conn);
                }
            })
            .map_err(|e| fail("cannot start the checkpointer", &e))?;
        Ok(Checkpointer {
            wake: Some(wake),
            thread: Some(thread),
            commits: 0,
        })
    }

    /// Counts one transaction of the store thread, and asks for a checkpoint every
    /// [`COMMITS_PER_CHECKPOINT`]. Never blocks: with a request already waiting it does nothing.
    pub(super) fn committed(&mut self) {
        self.commits += 1;
        if self.commits >= COMMITS_PER_CHECKPOINT {
            self.commits = 0;
            if let Some(wake) = &self.wake {
                let _ = wake.try_send(());
            }
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        drop(self.wake.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Copies the whole WAL into the database, the long part without the write lock (module doc).
/// Returns the WAL's frames and how many of them are now in the database, as of the second step.
pub(super) fn checkpoint(conn: &Connection) -> rusqlite::Result<(i64, i64)> {
    let run = |mode: &str| {
        conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |r| {
            Ok((r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
        })
    };
    run("PASSIVE")?;
    run("FULL")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::writer::connect;

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

    #[test]
    fn a_checkpoint_on_the_second_connection_lets_the_wal_start_over() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("usage.db");
        let writer = connect(&path).unwrap();
        let other = Connection::open_with_flags_and_vfs(&path, OpenFlags::default(), VFS).unwrap();
        for i in 0..50 {
            commit(&writer, i);
        }
        let grown = wal_len(&path);
        assert!(grown >= 50 * FRAME, "no checkpoint on the writer's own");
        let (log, done) = checkpoint(&other).unwrap();
        assert!(log >= 50 && log == done, "every frame copied: {log} {done}");
        for i in 0..50 {
            commit(&writer, i);
        }
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
    fn the_thread_checkpoints_every_so_many_commits_and_stops_with_its_handle() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("usage.db");
        let writer = connect(&path).unwrap();
        let mut ckpt = Checkpointer::start(&path).unwrap();
        for i in 0..COMMITS_PER_CHECKPOINT {
            commit(&writer, i);
            ckpt.committed();
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
