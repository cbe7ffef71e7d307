//! One relay per SQLite file: an advisory lock on `<file>.lock`, held for as long as the store is open.
//!
//! SQLite's `unix-excl` VFS (`schema.rs`) already keeps other processes off the database, but not a
//! second store of the same process (its connections would coordinate with ours in memory, as the
//! checkpointer's do), and `flock` locks conflict between open files, whatever the process.
//!
//! The lock is `flock(2)` on a file of its own, next to the database. SQLite locks the database file
//! with POSIX `fcntl` locks, which belong to the process and are all dropped when *any* descriptor of
//! that file in the process is closed; a second descriptor on the database file kept for our lock
//! would put SQLite's locks at the mercy of its closing. A separate file cannot interact with them.
//! `flock` is released by the kernel when the process dies (`kill -9` included), so a stale lock file
//! never blocks a restart; the file itself is left in place (deleting it would let a third process
//! lock a fresh file while a second still holds the old one).

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::fs::{flock, FlockOperation};
use rustix::io::Errno;

use crate::store::sqlite::schema::{IN_USE, OPEN_WAIT_MS};
use crate::store::StoreError;

/// How often a relay waiting for the file tries the lock again.
const RETRY_EVERY: Duration = Duration::from_millis(20);

/// The held lock; dropping it releases the file for the next relay.
#[derive(Debug)]
pub(super) struct Owner {
    _file: File,
}

/// The lock file's path: the database's name with `.lock` appended.
pub(super) fn lock_path(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

/// Takes the lock for `db`, trying again for up to [`OPEN_WAIT_MS`] (a relay still exiting) but
/// never queueing behind a relay that runs: a second relay must fail at start.
pub(super) fn take(db: &Path) -> Result<Owner, StoreError> {
    let path = lock_path(db);
    let fail = |e: &dyn std::fmt::Display| {
        StoreError(format!(
            "{}: cannot open the lock file {}: {e}",
            db.display(),
            path.display()
        ))
    };
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| fail(&e))?;
    let give_up = Instant::now() + Duration::from_millis(OPEN_WAIT_MS);
    loop {
        match flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => return Ok(Owner { _file: file }),
            Err(Errno::WOULDBLOCK) if Instant::now() < give_up => std::thread::sleep(RETRY_EVERY),
            Err(Errno::WOULDBLOCK) => {
                return Err(StoreError(format!(
                    "{}: cannot open the database: {IN_USE}",
                    db.display()
                )))
            }
            Err(Errno::INTR) => {}
            Err(e) => return Err(fail(&e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_owner_is_refused_until_the_first_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("usage.db");
        let first = take(&db).unwrap();
        let e = take(&db).unwrap_err();
        assert!(
            e.0.contains("usage.db") && e.0.contains("in use by another process"),
            "{e}"
        );
        // A relay that is still exiting is waited for.
        let exiting = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            drop(first);
        });
        let again = take(&db).unwrap();
        exiting.join().unwrap();
        assert!(lock_path(&db).exists());
        drop(again);
    }
}
