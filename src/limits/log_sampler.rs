//! How many access-log lines the relay writes under a flood. Every line that is not a counted call
//! (404s, `/health`, preflights, refusals of every kind, framing errors, redirects) passes a sampler
//! keyed by the client's limiter key (IPv4 address or IPv6 /64) and the line's class (its refusal
//! reason, or its status class): each key may write `PER_KEY_LINES_PER_SEC` lines per wall-clock
//! second, and all keys together `GLOBAL_LINES_PER_SEC`. What is held back is counted, and the relay
//! reports the count (with the heaviest keys) as one operational line every `REPORT_INTERVAL_SECS`, so
//! nothing disappears silently. Calls the store counted are always logged by the caller: they are
//! already bounded by the rate limits and the token's own limits, and they are the lines billing and
//! abuse reports are built from.
//!
//! Pure state over an injected `now` (Unix seconds); the caller reads the clock and writes the lines.
//! Memory is bounded: a key enters the per-second table only when one of its lines is written, so the
//! table never holds more than `GLOBAL_LINES_PER_SEC` keys, and the suppressed tally names at most
//! `MAX_REPORTED_KEYS` keys (the total stays exact beyond that).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

use crate::limits::limiter::client_key;

/// Lines per second one client key may write per class: enough to see what a client is doing, far
/// too few for one address to fill a disk (issue 9, finding 5: 250,000 lines in 5 s).
pub const PER_KEY_LINES_PER_SEC: u32 = 5;

/// Sampled lines per second for all clients together: bounds the log volume of a flood from many
/// addresses (about 200 bytes a line, so at most ~100 KB/s).
pub const GLOBAL_LINES_PER_SEC: u32 = 500;

/// Keys named in the suppressed tally between two reports; beyond, only the total is counted.
pub const MAX_REPORTED_KEYS: usize = 256;

/// Seconds between two "access log lines suppressed" reports (only sent when something was held back).
pub const REPORT_INTERVAL_SECS: u64 = 5;

/// Heaviest keys named in one report.
const REPORT_TOP: usize = 5;

type Key = (IpAddr, &'static str);

/// The class of a line without a refusal reason: its status class.
pub fn status_class(status: u16) -> &'static str {
    match status / 100 {
        1 => "1xx",
        2 => "2xx",
        3 => "3xx",
        4 => "4xx",
        _ => "5xx",
    }
}

/// What was held back since the last report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub suppressed: u64,
    /// The heaviest (key address, class, lines held back), heaviest first.
    pub top: Vec<(IpAddr, &'static str, u64)>,
}

#[derive(Debug, Default)]
struct State {
    second: u64,
    global: u32,
    per_key: HashMap<Key, u32>,
    suppressed: u64,
    by_key: HashMap<Key, u64>,
}

#[derive(Debug, Default)]
pub struct LogSampler {
    state: Mutex<State>,
}

impl LogSampler {
    pub fn new() -> LogSampler {
        LogSampler::default()
    }

    /// Whether a line of `class` about client `ip` may be written at `now` (Unix seconds). A refused
    /// line is counted for the next report.
    pub fn admit(&self, ip: IpAddr, class: &'static str, now: u64) -> bool {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if now != st.second {
            st.second = now;
            st.global = 0;
            st.per_key.clear();
        }
        let key = (client_key(ip), class);
        let seen = st.per_key.get(&key).copied().unwrap_or(0);
        if seen < PER_KEY_LINES_PER_SEC && st.global < GLOBAL_LINES_PER_SEC {
            st.per_key.insert(key, seen + 1);
            st.global += 1;
            return true;
        }
        st.suppressed += 1;
        if st.by_key.contains_key(&key) || st.by_key.len() < MAX_REPORTED_KEYS {
            *st.by_key.entry(key).or_insert(0) += 1;
        }
        false
    }

    /// What was held back since the last call, or `None` when nothing was; starts a new tally.
    pub fn take_report(&self) -> Option<Report> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if st.suppressed == 0 {
            return None;
        }
        let mut top: Vec<(IpAddr, &'static str, u64)> =
            st.by_key.drain().map(|((ip, c), n)| (ip, c, n)).collect();
        top.sort_by(|a, b| b.2.cmp(&a.2).then(a.0.cmp(&b.0)).then(a.1.cmp(b.1)));
        top.truncate(REPORT_TOP);
        let suppressed = std::mem::take(&mut st.suppressed);
        Some(Report { suppressed, top })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn ip(d: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, d))
    }

    #[test]
    fn each_key_gets_its_lines_per_second() {
        let s = LogSampler::new();
        let admitted = (0..1000)
            .filter(|_| s.admit(ip(1), "not_found", 100))
            .count();
        assert_eq!(admitted, PER_KEY_LINES_PER_SEC as usize);
        // Another class of the same client, and another client, have their own allowance.
        assert!(s.admit(ip(1), "rate_limited_ip", 100));
        assert!(s.admit(ip(2), "not_found", 100));
        // A new second starts over.
        assert!(s.admit(ip(1), "not_found", 101));
        let r = s.take_report().unwrap();
        assert_eq!(r.suppressed, 1000 - PER_KEY_LINES_PER_SEC as u64);
        assert_eq!(r.top, vec![(ip(1), "not_found", r.suppressed)]);
        assert_eq!(s.take_report(), None, "a report starts a new tally");
    }

    #[test]
    fn ipv6_clients_share_their_64() {
        let s = LogSampler::new();
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2::ffff".parse().unwrap();
        let n = (0..10)
            .filter(|i| s.admit(if i % 2 == 0 { a } else { b }, "4xx", 7))
            .count();
        assert_eq!(n, PER_KEY_LINES_PER_SEC as usize);
    }

    #[test]
    fn the_global_ceiling_holds_for_any_number_of_clients() {
        let s = LogSampler::new();
        let mut admitted = 0;
        for i in 0..100_000u32 {
            let ip = IpAddr::V4(Ipv4Addr::from(i));
            admitted += usize::from(s.admit(ip, "invalid_token", 5));
        }
        assert_eq!(admitted, GLOBAL_LINES_PER_SEC as usize);
        let st = s.state.lock().unwrap();
        assert!(st.per_key.len() <= GLOBAL_LINES_PER_SEC as usize);
        assert!(st.by_key.len() <= MAX_REPORTED_KEYS + 1);
        assert_eq!(st.suppressed, 100_000 - GLOBAL_LINES_PER_SEC as u64);
    }

    #[test]
    fn reports_name_the_heaviest_keys_first() {
        let s = LogSampler::new();
        for _ in 0..(PER_KEY_LINES_PER_SEC + 3) {
            s.admit(ip(1), "not_found", 1);
        }
        for _ in 0..(PER_KEY_LINES_PER_SEC + 9) {
            s.admit(ip(2), "4xx", 1);
        }
        let r = s.take_report().unwrap();
        assert_eq!(r.suppressed, 12);
        assert_eq!(r.top, vec![(ip(2), "4xx", 9), (ip(1), "not_found", 3)]);
    }

    #[test]
    fn status_classes() {
        assert_eq!(status_class(204), "2xx");
        assert_eq!(status_class(404), "4xx");
        assert_eq!(status_class(503), "5xx");
        assert_eq!(status_class(101), "1xx");
        assert_eq!(status_class(308), "3xx");
    }
}
