//! What ends a connection waiting, idle, for its next request: the relay shutting down, or
//! connection slots running short (`limits/conns.rs`), watched by one registration per connection
//! instead of two new ones per request.
//!
//! Why: each idle wait used to build fresh `wait_for` futures on both watch channels. Polled, each
//! registers a waiter under the channel's lock; dropped when the read wins, each takes the lock again
//! to leave: about 1,100 instructions per keep-alive request (`bench/instructions.sh`). Here the
//! waiting future is built once, at the connection's first idle wait, and kept. A waiter that is
//! registered stays registered with the connection task's waker until a value is sent, so an idle
//! wait polls it again only when a channel's version moved since the last poll (an atomic load per
//! channel); otherwise nothing has happened that it has not already been told to wake the task for.
//! A signal sent while a request is in flight wakes the task once for nothing and is acted on at its
//! next idle wait, as before.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::time::Instant;

use crate::limits::conns::{Reclaim, RECLAIM_AFTER_IDLE};
use crate::server::shutdown::ShutdownWatch;

/// Which signal fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Signal {
    Shutdown,
    Reclaim,
}

/// The waiting future: resolves when either signal fires.
type Armed = Pin<Box<dyn Future<Output = Signal> + Send>>;

/// A connection's watch on the signals that close it while idle.
pub struct Closing {
    /// Copies of the receivers, to see whether a channel moved without polling [`Closing::armed`].
    shutdown: Option<ShutdownWatch>,
    reclaim: Reclaim,
    /// Built at the first idle wait (and again after slot pressure that fired has passed).
    armed: Option<Armed>,
    fired: Option<Signal>,
}

impl Closing {
    /// Watches `shutdown` (if any) and `reclaim`.
    pub fn new(shutdown: Option<ShutdownWatch>, reclaim: Reclaim) -> Closing {
        Closing {
            shutdown,
            reclaim,
            armed: None,
            fired: None,
        }
    }

    /// Never fires (a listener without shutdown or slot accounting).
    pub fn never() -> Closing {
        Closing::new(None, Reclaim::never())
    }

    /// Resolves when a connection idle since `idle_since` should close: at once when the relay is
    /// shutting down; under slot pressure, once it has been idle for [`RECLAIM_AFTER_IDLE`].
    pub async fn wanted(&mut self, idle_since: Instant) {
        let signal = std::future::poll_fn(|cx| self.poll_signal(cx)).await;
        if signal == Signal::Reclaim {
            tokio::time::sleep_until(idle_since + RECLAIM_AFTER_IDLE).await;
        }
    }

    fn poll_signal(&mut self, cx: &mut Context<'_>) -> Poll<Signal> {
        match self.fired {
            Some(Signal::Reclaim) if !self.reclaim.is_wanted() => {
                // The pressure has passed since: watch for the next.
                self.fired = None;
            }
            Some(signal) => return Poll::Ready(signal),
            None => {}
        }
        // Both looked at (`|`, not `||`): each is marked seen for the next wait.
        let moved = self
            .shutdown
            .as_mut()
            .is_some_and(ShutdownWatch::seen_change)
            | self.reclaim.seen_change();
        if self.armed.is_none() {
            self.armed = self.arm();
        } else if !moved {
            // Registered, with this task's waker, and told of nothing new since.
            return Poll::Pending;
        }
        let Some(armed) = self.armed.as_mut() else {
            return Poll::Pending;
        };
        let signal = std::task::ready!(armed.as_mut().poll(cx));
        self.armed = None;
        self.fired = Some(signal);
        Poll::Ready(signal)
    }

    /// The waiting future, on receivers of its own; `None` when there is nothing to watch.
    fn arm(&self) -> Option<Armed> {
        if self.shutdown.is_none() && self.reclaim.is_never() {
            return None;
        }
        let mut shutdown = self.shutdown.clone();
        let mut reclaim = self.reclaim.clone();
        Some(Box::pin(async move {
            let shutting_down = async {
                match shutdown.as_mut() {
                    Some(s) => s.wait().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                () = shutting_down => Signal::Shutdown,
                () = reclaim.wanted() => Signal::Reclaim,
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::shutdown::Shutdown;
    use std::time::Duration;
    use tokio::sync::watch;

    /// Polls `wanted` once, as an idle wait does before its read is ready.
    async fn fires_now(c: &mut Closing, idle_since: Instant) -> bool {
        let wanted = c.wanted(idle_since);
        tokio::pin!(wanted);
        std::future::poll_fn(|cx| Poll::Ready(wanted.as_mut().poll(cx).is_ready())).await
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_ends_every_idle_wait_after_it_even_one_registered_before() {
        let shutdown = Shutdown::new();
        let (_tx, rx) = watch::channel(false);
        let mut c = Closing::new(Some(shutdown.watcher()), Reclaim::from_receiver(rx));
        let now = Instant::now();
        assert!(!fires_now(&mut c, now).await);
        assert!(
            !fires_now(&mut c, now).await,
            "nothing moved: still waiting"
        );
        shutdown.trigger();
        assert!(fires_now(&mut c, now).await);
        assert!(fires_now(&mut c, now).await, "and every wait after it");
    }

    #[tokio::test(start_paused = true)]
    async fn the_idle_wait_is_woken_by_a_signal_sent_while_it_waits() {
        let (tx, rx) = watch::channel(false);
        let mut c = Closing::new(None, Reclaim::from_receiver(rx));
        let idle_since = Instant::now();
        let waited = tokio::spawn(async move {
            c.wanted(idle_since).await;
            Instant::now() - idle_since
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        tx.send_replace(true);
        let waited = tokio::time::timeout(Duration::from_secs(5), waited)
            .await
            .expect("woken by the signal")
            .unwrap();
        assert_eq!(
            waited, RECLAIM_AFTER_IDLE,
            "then idle for the reclaim delay"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn slot_pressure_that_passed_is_watched_for_again() {
        let (tx, rx) = watch::channel(false);
        let mut c = Closing::new(None, Reclaim::from_receiver(rx));
        let now = Instant::now();
        // Pressure during one idle wait, held long enough to fire.
        tx.send_replace(true);
        let first = tokio::time::timeout(Duration::from_secs(1), c.wanted(now)).await;
        assert!(first.is_ok());
        // Gone before the next idle wait: that wait is not ended by the old pressure.
        tx.send_replace(false);
        assert!(!fires_now(&mut c, Instant::now()).await);
        // Nor by a change that is not pressure, but by new pressure.
        tx.send_replace(false);
        assert!(!fires_now(&mut c, Instant::now()).await);
        tx.send_replace(true);
        let later = tokio::time::timeout(Duration::from_secs(1), c.wanted(Instant::now())).await;
        assert!(later.is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn a_signal_sent_between_idle_waits_is_seen_at_the_next() {
        let (tx, rx) = watch::channel(false);
        let mut c = Closing::new(None, Reclaim::from_receiver(rx));
        assert!(!fires_now(&mut c, Instant::now()).await, "registered");
        // A request is in flight: nobody polls the watch.
        tx.send_replace(true);
        let idle_since = Instant::now();
        let r = tokio::time::timeout(Duration::from_secs(1), c.wanted(idle_since)).await;
        assert!(r.is_ok(), "the next idle wait sees it");
    }

    #[tokio::test(start_paused = true)]
    async fn never_never_fires() {
        let mut c = Closing::never();
        assert!(!fires_now(&mut c, Instant::now()).await);
        let r = tokio::time::timeout(Duration::from_secs(3600), c.wanted(Instant::now())).await;
        assert!(r.is_err());
    }
}
