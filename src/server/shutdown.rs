//! Graceful shutdown: one signal that every connection task watches, and a drain that waits until each
//! task has finished (or a deadline passes). Taken from mini-redis: a task holds a clone of an mpsc
//! sender; when every clone is dropped, the receiver wakes, so no list of tasks is ever kept.

use std::time::Duration;

use tokio::sync::{mpsc, watch};

/// Held by each connection task: tells it when to stop and, by being dropped, that it has finished.
#[derive(Clone)]
pub struct ShutdownWatch {
    signal: watch::Receiver<bool>,
    _alive: mpsc::Sender<()>,
}

impl ShutdownWatch {
    pub fn is_shutting_down(&self) -> bool {
        *self.signal.borrow()
    }

    /// Resolves once shutdown has begun (immediately if it already has).
    pub async fn wait(&mut self) {
        let _ = self.signal.wait_for(|s| *s).await;
    }

    /// True when the signal was sent (or its sender dropped) since this was last called, without
    /// taking its lock; marks it seen.
    pub fn seen_change(&mut self) -> bool {
        let moved = self.signal.has_changed().unwrap_or(true);
        if moved {
            self.signal.mark_unchanged();
        }
        moved
    }
}

/// Owned by the server: starts the shutdown and waits for the tasks.
pub struct Shutdown {
    signal: watch::Sender<bool>,
    alive_tx: Option<mpsc::Sender<()>>,
    alive_rx: mpsc::Receiver<()>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}

impl Shutdown {
    pub fn new() -> Shutdown {
        let (signal, _) = watch::channel(false);
        let (alive_tx, alive_rx) = mpsc::channel(1);
        Shutdown {
            signal,
            alive_tx: Some(alive_tx),
            alive_rx,
        }
    }

    pub fn watcher(&self) -> ShutdownWatch {
        ShutdownWatch {
            signal: self.signal.subscribe(),
            _alive: self
                .alive_tx
                .clone()
                .expect("watchers are only made before draining"),
        }
    }

    pub fn trigger(&self) {
        let _ = self.signal.send(true);
    }

    /// Signal shutdown, then wait until every watcher is gone or `grace` has passed.
    /// Returns true when all tasks finished in time.
    pub async fn drain(mut self, grace: Duration) -> bool {
        self.trigger();
        self.alive_tx = None;
        tokio::time::timeout(grace, self.alive_rx.recv())
            .await
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn drain_waits_for_tasks() {
        let s = Shutdown::new();
        let mut w = s.watcher();
        let task = tokio::spawn(async move {
            w.wait().await;
            tokio::time::sleep(Duration::from_secs(5)).await;
            drop(w);
        });
        assert!(s.drain(Duration::from_secs(10)).await);
        task.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn drain_gives_up_after_grace() {
        let s = Shutdown::new();
        let w = s.watcher();
        assert!(!s.drain(Duration::from_secs(3)).await);
        drop(w);
    }
}
