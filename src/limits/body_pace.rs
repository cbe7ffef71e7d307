//! The pace a request body must keep (mod_reqtimeout's `MinRate`): after a grace period of
//! `server.read_timeout`, the client must have sent on average at least `server.min_body_rate` bytes
//! for every second the relay waited on it. A per-read timeout alone lets a client send one byte just
//! before each timeout and hold a connection (and, for buffered bodies, memory) for days; a total
//! deadline would cut slow but honest uploads of large files. Only time spent waiting for the client
//! counts, so a slow provider on a streamed body never makes the client look slow.
//!
//! Plain arithmetic over durations and byte counts; `request/client/body.rs` measures the waits and asks
//! [`BodyPace::allowance`] how long the next read may take.

use std::time::Duration;

/// The pace of one request body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyPace {
    grace: Duration,
    min_rate: u64,
    waited: Duration,
    received: u64,
}

impl BodyPace {
    /// A body that may take `grace` before any byte, and must then average `min_rate` bytes per second
    /// (at least 1).
    pub fn new(grace: Duration, min_rate: u64) -> BodyPace {
        BodyPace {
            grace,
            min_rate: min_rate.max(1),
            waited: Duration::ZERO,
            received: 0,
        }
    }

    /// How much longer the relay may wait for the client's next bytes: the grace plus one second per
    /// `min_rate` bytes received, minus the time already waited. Zero means the body is behind its pace
    /// (answer 408).
    pub fn allowance(&self) -> Duration {
        let earned = Duration::from_secs_f64(self.received as f64 / self.min_rate as f64);
        (self.grace + earned).saturating_sub(self.waited)
    }

    /// Record a wait on the client of `waited` that brought `bytes` bytes.
    pub fn record(&mut self, waited: Duration, bytes: u64) {
        self.waited += waited;
        self.received += bytes;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn grace_first_then_the_minimum_rate() {
        let mut p = BodyPace::new(30 * S, 1000);
        assert_eq!(p.allowance(), 30 * S);
        // A drip of 1 byte per 20 s: the first fits the grace, the second is late.
        p.record(20 * S, 1);
        assert!(p.allowance() > 10 * S && p.allowance() < 11 * S);
        p.record(10 * S, 0);
        assert!(p.allowance() < S / 100);
        p.record(p.allowance(), 0);
        assert_eq!(p.allowance(), Duration::ZERO);
    }

    #[test]
    fn an_upload_at_the_minimum_rate_never_runs_out() {
        // 10 MiB at exactly 1,000 B/s after a slow start: every second brings the next second.
        let mut p = BodyPace::new(30 * S, 1000);
        p.record(29 * S, 0);
        for _ in 0..10_000 {
            p.record(S, 1000);
            assert!(p.allowance() >= S, "{:?}", p.allowance());
        }
    }

    #[test]
    fn a_fast_start_earns_time_for_a_pause() {
        let mut p = BodyPace::new(S, 1000);
        p.record(Duration::ZERO, 60_000);
        assert_eq!(p.allowance(), 61 * S);
        assert_eq!(BodyPace::new(S, 0).min_rate, 1, "a zero rate cannot divide");
    }
}
