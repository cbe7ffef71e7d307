//! Where time comes from. The relay needs two clocks: UTC wall-clock seconds for token `iat`/`exp` and
//! admin signatures, and a monotonic `Instant` for rate limits and timeouts, which must not jump when
//! the wall clock is corrected. Pure code (the limiter, token checks) takes the time as an argument;
//! only the I/O shell asks a `Clock`, so tests can swap in `ManualClock` and step time exactly.

use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A source of the current time.
pub trait Clock: Send + Sync {
    /// Seconds since the Unix epoch, UTC.
    fn unix_now(&self) -> u64;
    /// A monotonic instant, for measuring intervals.
    fn mono_now(&self) -> Instant;
}

/// The operating system's clocks.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    /// A wall clock set before 1970 reads as 0, which makes every token look expired instead of
    /// panicking the relay.
    fn unix_now(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }

    fn mono_now(&self) -> Instant {
        Instant::now()
    }
}

/// A clock that moves only when told to, for tests.
///
/// `advance` moves both clocks together, as real time does; `set_unix` moves only the wall clock, as an
/// NTP correction does, so tests can check that limits (monotonic) ignore wall-clock jumps.
#[derive(Debug)]
pub struct ManualClock {
    state: Mutex<ManualState>,
}

#[derive(Debug, Clone, Copy)]
struct ManualState {
    mono: Instant,
    /// Wall-clock time in nanoseconds since the epoch, so that sub-second advances add up.
    unix_nanos: u128,
}

impl ManualClock {
    /// A clock reading `unix_secs` on the wall clock and an arbitrary fixed monotonic instant.
    pub fn new(unix_secs: u64) -> Self {
        ManualClock {
            state: Mutex::new(ManualState {
                mono: Instant::now(),
                unix_nanos: u128::from(unix_secs) * 1_000_000_000,
            }),
        }
    }

    /// Moves both clocks forward by `d`.
    ///
    /// # Panics
    /// If the monotonic instant would overflow the platform's `Instant` (centuries ahead).
    pub fn advance(&self, d: Duration) {
        let mut s = self.lock();
        s.mono += d;
        s.unix_nanos += d.as_nanos();
    }

    /// Sets the wall clock to `unix_secs` without touching the monotonic clock.
    pub fn set_unix(&self, unix_secs: u64) {
        self.lock().unix_nanos = u128::from(unix_secs) * 1_000_000_000;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ManualState> {
        // The state is two plain values written in one statement each; a panic elsewhere while the
        // lock was held cannot leave it half-updated, so a poisoned lock is still safe to use.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Clock for ManualClock {
    fn unix_now(&self) -> u64 {
        // Saturates instead of wrapping in the (test-only) case of a clock advanced past u64 seconds.
        u64::try_from(self.lock().unix_nanos / 1_000_000_000).unwrap_or(u64::MAX)
    }

    fn mono_now(&self) -> Instant {
        self.lock().mono
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn system_clock_is_after_2024_and_monotonic() {
        let c = SystemClock;
        // 2024-01-01T00:00:00Z: a clock reading earlier than this is broken or the conversion is wrong.
        assert!(c.unix_now() >= 1_704_067_200);
        let a = c.mono_now();
        let b = c.mono_now();
        assert!(b >= a);
    }

    #[test]
    fn manual_clock_starts_where_told_and_stands_still() {
        let c = ManualClock::new(1_790_000_000);
        let m = c.mono_now();
        assert_eq!(c.unix_now(), 1_790_000_000);
        assert_eq!(c.mono_now(), m);
        assert_eq!(c.unix_now(), 1_790_000_000);
    }

    #[test]
    fn advance_moves_both_clocks_and_sub_seconds_accumulate() {
        let c = ManualClock::new(100);
        let m0 = c.mono_now();
        c.advance(Duration::from_millis(600));
        assert_eq!(c.unix_now(), 100, "0.6 s must not round up to a new second");
        assert_eq!(c.mono_now() - m0, Duration::from_millis(600));
        c.advance(Duration::from_millis(600));
        assert_eq!(c.unix_now(), 101, "two 0.6 s steps make 1.2 s");
        assert_eq!(c.mono_now() - m0, Duration::from_millis(1200));
        c.advance(Duration::from_secs(3600));
        assert_eq!(c.unix_now(), 3701);
    }

    #[test]
    fn set_unix_leaves_the_monotonic_clock_alone() {
        let c = ManualClock::new(1_000);
        c.advance(Duration::from_millis(500));
        let m = c.mono_now();
        c.set_unix(10);
        assert_eq!(c.unix_now(), 10);
        assert_eq!(c.mono_now(), m);
        // The sub-second part is reset with the wall clock: 10.0 + 0.7 is still second 10.
        c.advance(Duration::from_millis(700));
        assert_eq!(c.unix_now(), 10);
    }

    #[test]
    fn usable_as_a_shared_trait_object() {
        let manual = Arc::new(ManualClock::new(5));
        let shared: Arc<dyn Clock> = manual.clone();
        manual.advance(Duration::from_secs(2));
        assert_eq!(shared.unix_now(), 7);
    }
}
