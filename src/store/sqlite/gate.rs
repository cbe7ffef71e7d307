//! The gate: the mutex around the store's writers of rows and the checkpoint's locked step, holding
//! what the caller's lane needs (`inline.rs`), or `None` once the store is closing.
//!
//! The store thread holds it for each batch, a caller for its lane's transaction (only if it is free
//! at once), the checkpointer for its `FULL` step and the WAL's restart (`checkpoint.rs`). So SQLite's
//! write lock is never contended between them: nobody waits in SQLite's busy handler, which sleeps in
//! whole milliseconds, and a runtime worker never waits at all.

use std::sync::{Mutex, MutexGuard};

/// The gate around `L`, the lane.
pub(super) type Gate<L> = Mutex<Option<L>>;

/// Takes the gate, whatever a panic left: nothing panics while it is held but SQLite's own calls,
/// after which the lane is still a connection and guesses.
pub(super) fn lock<L>(gate: &Gate<L>) -> MutexGuard<'_, Option<L>> {
    gate.lock().unwrap_or_else(|e| e.into_inner())
}
