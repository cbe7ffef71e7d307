//! Prometheus metrics: counters and histograms the request path updates, rendered as text for
//! `GET /metrics`. Every label set is bounded (status codes, provider names from the registry, fixed
//! reason codes): never token ids, tenants' end users or client addresses. Also the request counters
//! `/health` reports (`Stats`), and the gauges of what is open right now, which only a guard can raise.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;

/// Upper bounds (seconds) of the latency buckets: from sub-millisecond relay answers to long streams.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 300.0,
];
/// Store operations are local or one Redis round trip.
const STORE_BUCKETS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 1.0,
];
/// Distinct provider label values kept; anything beyond folds into "other" so labels stay bounded even
/// with many operator-defined providers.
const MAX_PROVIDER_LABELS: usize = 64;

/// Request counters for `/health` (Prometheus metrics build on the same numbers).
#[derive(Debug, Default)]
pub struct Stats {
    pub requests: AtomicU64,
    pub proxied: AtomicU64,
    pub status_2xx: AtomicU64,
    pub status_4xx: AtomicU64,
    pub status_5xx: AtomicU64,
    pub rejected_token: AtomicU64,
    pub rate_limited: AtomicU64,
    pub upstream_errors: AtomicU64,
    /// Open client connections.
    pub active_connections: Gauge,
    /// Responses being relayed right now.
    pub active_streams: Gauge,
}

impl Stats {
    pub fn count_status(&self, status: u16) {
        let c = match status {
            200..=299 => &self.status_2xx,
            400..=499 => &self.status_4xx,
            500..=599 => &self.status_5xx,
            _ => return,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> serde_json::Value {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        json!({
            "total": g(&self.requests),
            "proxied": g(&self.proxied),
            "status_2xx": g(&self.status_2xx),
            "status_4xx": g(&self.status_4xx),
            "status_5xx": g(&self.status_5xx),
            "rejected_token": g(&self.rejected_token),
            "rate_limited": g(&self.rate_limited),
            "upstream_errors": g(&self.upstream_errors),
            "active_connections": self.active_connections.get(),
            "active_streams": self.active_streams.get(),
        })
    }
}

/// Request ids: a random per-process prefix, so ids from several instances do not collide, and a
/// counter.
#[derive(Debug)]
pub struct RequestIds {
    instance: String,
    seq: AtomicU64,
}

/// Longest instance prefix kept in an id: the relay's own is 8 hex digits.
const MAX_INSTANCE_BYTES: usize = 16;

/// Bytes of the longest id: the prefix, `-`, and 16 hex digits of the counter.
const MAX_ID_BYTES: usize = MAX_INSTANCE_BYTES + 1 + 16;

impl RequestIds {
    /// Ids under `instance` (a short random hex string, from the caller's RNG; only its first 16
    /// bytes are used).
    pub fn new(mut instance: String) -> RequestIds {
        let mut keep = instance.len().min(MAX_INSTANCE_BYTES);
        while !instance.is_char_boundary(keep) {
            keep -= 1;
        }
        instance.truncate(keep);
        RequestIds {
            instance,
            seq: AtomicU64::new(0),
        }
    }

    /// The next id, `{instance}-{n:x}`, built without an allocation (every request takes one).
    pub fn next(&self) -> RequestId {
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        let mut id = RequestId {
            bytes: [0; MAX_ID_BYTES],
            len: 0,
        };
        let prefix = self.instance.as_bytes();
        id.bytes[..prefix.len()].copy_from_slice(prefix);
        id.bytes[prefix.len()] = b'-';
        let digits = (16 - n.leading_zeros() as usize / 4).max(1);
        let start = prefix.len() + 1;
        for i in 0..digits {
            let nibble = (n >> (4 * (digits - 1 - i))) & 0xF;
            id.bytes[start + i] = b"0123456789abcdef"[nibble as usize];
        }
        id.len = (start + digits) as u8;
        id
    }
}

/// One request id, held inline: the `x-request-id` of an answer and the `rid` of its log lines.
#[derive(Clone, Copy)]
pub struct RequestId {
    bytes: [u8; MAX_ID_BYTES],
    len: u8,
}

impl RequestId {
    pub fn as_str(&self) -> &str {
        // Built from a UTF-8 prefix cut at a character boundary, '-' and hex digits.
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or_default()
    }
}

impl std::ops::Deref for RequestId {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Debug for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str(), f)
    }
}

impl serde::Serialize for RequestId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// A count of things open right now (connections, streams). It is raised only by [`Gauge::enter`],
/// whose guard lowers it again when dropped: an early return, a cancelled task or a caught panic cannot
/// leave it inflated.
#[derive(Debug, Default)]
pub struct Gauge(AtomicU64);

impl Gauge {
    /// Count one more until the returned guard is dropped.
    pub fn enter(&self) -> GaugeGuard<'_> {
        self.0.fetch_add(1, Ordering::Relaxed);
        GaugeGuard(&self.0)
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// One unit of a [`Gauge`], given back on drop.
#[must_use = "the gauge falls back as soon as the guard is dropped"]
#[derive(Debug)]
pub struct GaugeGuard<'a>(&'a AtomicU64);

impl Drop for GaugeGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

pub struct Histogram {
    bounds: &'static [f64],
    counts: Vec<AtomicU64>,
    sum_micros: AtomicU64,
    total: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            counts: (0..bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_micros: AtomicU64::new(0),
            total: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = self.bounds.iter().position(|b| secs <= *b) {
            self.counts[i].fetch_add(1, Ordering::Relaxed);
        }
        self.sum_micros
            .fetch_add(d.as_micros() as u64, Ordering::Relaxed);
        self.total.fetch_add(1, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            cumulative += c.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {cumulative}");
        }
        let total = self.total.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {total}");
        let _ = writeln!(
            out,
            "{name}_sum {}",
            self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "{name}_count {total}");
    }
}

pub struct Metrics {
    /// (status, provider label, count): a short list scanned in place, so counting a request that hits
    /// an existing series allocates nothing.
    requests: Mutex<Vec<(u16, String, u64)>>,
    /// Rejection reason code → count.
    rejections: Mutex<BTreeMap<&'static str, u64>>,
    /// Upstream error kind → count.
    upstream_errors: Mutex<BTreeMap<&'static str, u64>>,
    /// Provider connections that failed, by `upstream::Cause` label (four values).
    upstream_unreachable: Mutex<BTreeMap<&'static str, u64>>,
    pub latency: Histogram,
    pub ttfb: Histogram,
    pub store_latency: Histogram,
    /// Log lines dropped because the log's queue was full (`log_writer.rs`); shared with the writers.
    pub log_lines_dropped: Arc<AtomicU64>,
    /// Tokens and cost by provider and model, budget refusals and overshoots (`budget/metrics.rs`).
    pub spend: crate::budget::metrics::SpendMetrics,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            requests: Mutex::default(),
            rejections: Mutex::default(),
            upstream_errors: Mutex::default(),
            upstream_unreachable: Mutex::default(),
            latency: Histogram::new(LATENCY_BUCKETS),
            ttfb: Histogram::new(LATENCY_BUCKETS),
            store_latency: Histogram::new(STORE_BUCKETS),
            log_lines_dropped: Arc::default(),
            spend: Default::default(),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Metrics {
    /// Count a finished request. `provider` must come from an authenticated token or the registry.
    pub fn request(&self, status: u16, provider: Option<&str>) {
        let mut m = lock(&self.requests);
        let wanted = provider.unwrap_or("none");
        // The common case, an existing series, allocates nothing.
        if let Some(e) = m.iter_mut().find(|(s, p, _)| *s == status && p == wanted) {
            e.2 += 1;
            return;
        }
        let seen = m.iter().any(|(_, p, _)| p == wanted);
        let mut labels: Vec<&str> = m
            .iter()
            .map(|(_, p, _)| p.as_str())
            .filter(|p| *p != "none" && *p != "other")
            .collect();
        labels.sort_unstable();
        labels.dedup();
        let label = if provider.is_none() || seen || labels.len() < MAX_PROVIDER_LABELS {
            wanted
        } else {
            "other"
        };
        match m.iter_mut().find(|(s, p, _)| *s == status && p == label) {
            Some(e) => e.2 += 1,
            None => {
                m.push((status, label.to_string(), 1));
                m.sort();
            }
        }
    }

    pub fn rejection(&self, reason: &'static str) {
        *lock(&self.rejections).entry(reason).or_insert(0) += 1;
    }

    pub fn upstream_error(&self, kind: &'static str) {
        *lock(&self.upstream_errors).entry(kind).or_insert(0) += 1;
    }

    /// A provider that could not be reached; `cause` is an `upstream::Cause` label.
    pub fn upstream_unreachable(&self, cause: &'static str) {
        *lock(&self.upstream_unreachable).entry(cause).or_insert(0) += 1;
    }

    /// The Prometheus text exposition (format 0.0.4). Gauges come from the caller.
    pub fn render(&self, gauges: &[(&str, &str, u64)]) -> String {
        let mut out = String::with_capacity(4096);
        out.push_str(
            "# HELP relayapi_requests_total Requests answered, by HTTP status and provider.\n",
        );
        out.push_str("# TYPE relayapi_requests_total counter\n");
        for (status, provider, n) in lock(&self.requests).iter() {
            let _ = writeln!(
                out,
                "relayapi_requests_total{{status=\"{status}\",provider=\"{provider}\"}} {n}"
            );
        }
        out.push_str(
            "# HELP relayapi_rejections_total Requests refused by the relay, by reason.\n",
        );
        out.push_str("# TYPE relayapi_rejections_total counter\n");
        for (reason, n) in lock(&self.rejections).iter() {
            let _ = writeln!(out, "relayapi_rejections_total{{reason=\"{reason}\"}} {n}");
        }
        out.push_str(
            "# HELP relayapi_upstream_errors_total Failures talking to providers, by kind.\n",
        );
        out.push_str("# TYPE relayapi_upstream_errors_total counter\n");
        for (kind, n) in lock(&self.upstream_errors).iter() {
            let _ = writeln!(out, "relayapi_upstream_errors_total{{kind=\"{kind}\"}} {n}");
        }
        out.push_str(
            "# HELP relayapi_upstream_unreachable_total Provider connections that failed, by cause \
             (dns, refused, tls, timeout).\n",
        );
        out.push_str("# TYPE relayapi_upstream_unreachable_total counter\n");
        for (cause, n) in lock(&self.upstream_unreachable).iter() {
            let _ = writeln!(
                out,
                "relayapi_upstream_unreachable_total{{cause=\"{cause}\"}} {n}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP relayapi_log_lines_dropped_total Log lines dropped because stdout or stderr did not \
             keep up.\n# TYPE relayapi_log_lines_dropped_total counter\nrelayapi_log_lines_dropped_total {}",
            self.log_lines_dropped.load(Ordering::Relaxed)
        );
        self.spend.render(&mut out);
        self.latency.render(
            &mut out,
            "relayapi_request_duration_seconds",
            "Time from request head to the end of the answer.",
        );
        self.ttfb.render(
            &mut out,
            "relayapi_time_to_first_byte_seconds",
            "Time from request head to the provider's response head.",
        );
        self.store_latency.render(
            &mut out,
            "relayapi_store_duration_seconds",
            "Time of one usage-store reservation.",
        );
        for (name, help, value) in gauges {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_histograms_and_gauges() {
        let m = Metrics::default();
        m.request(200, Some("openai"));
        m.request(200, Some("openai"));
        m.request(401, None);
        m.rejection("invalid_token");
        m.upstream_error("connect");
        m.latency.observe(Duration::from_millis(3));
        let text = m.render(&[("relayapi_active_connections", "Open client connections.", 7)]);
        assert!(
            text.contains("relayapi_requests_total{status=\"200\",provider=\"openai\"} 2"),
            "{text}"
        );
        assert!(text.contains("relayapi_requests_total{status=\"401\",provider=\"none\"} 1"));
        assert!(text.contains("relayapi_rejections_total{reason=\"invalid_token\"} 1"));
        assert!(text.contains("relayapi_upstream_errors_total{kind=\"connect\"} 1"));
        assert!(text.contains("relayapi_request_duration_seconds_bucket{le=\"0.005\"} 1"));
        assert!(text.contains("relayapi_request_duration_seconds_bucket{le=\"0.0025\"} 0"));
        assert!(text.contains("relayapi_request_duration_seconds_count 1"));
        assert!(text.contains("relayapi_active_connections 7"));
        assert!(text.contains("relayapi_log_lines_dropped_total 0"));
    }

    /// A panic caught while a guard is held (tokio catches a connection task's panic the same way)
    /// leaves the gauge where it was before.
    #[test]
    fn a_gauge_falls_back_when_its_holder_panics() {
        let stats = Stats::default();
        let held = stats.active_streams.enter();
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _open = stats.active_connections.enter();
            let _stream = stats.active_streams.enter();
            assert_eq!(stats.active_connections.get(), 1);
            assert_eq!(stats.active_streams.get(), 2);
            panic!("request task failed");
        }));
        assert!(caught.is_err());
        assert_eq!(stats.active_connections.get(), 0);
        assert_eq!(stats.active_streams.get(), 1);
        drop(held);
        assert_eq!(stats.active_streams.get(), 0);
        assert_eq!(stats.snapshot()["active_connections"], 0);
    }

    #[test]
    fn request_ids_are_prefixed_and_distinct() {
        let ids = RequestIds::new("ab12".into());
        assert_eq!(ids.next().as_str(), "ab12-0");
        assert_eq!(ids.next().as_str(), "ab12-1");
        for _ in 2..0x1f {
            ids.next();
        }
        assert_eq!(ids.next().as_str(), "ab12-1f");
        ids.seq.store(0xabc_def0, Ordering::Relaxed);
        assert_eq!(ids.next().as_str(), "ab12-abcdef0");
        let ids = RequestIds {
            instance: "0123456789abcdef".into(),
            seq: AtomicU64::new(u64::MAX),
        };
        assert_eq!(ids.next().as_str(), "0123456789abcdef-ffffffffffffffff");
        assert_eq!(ids.next().as_str(), "0123456789abcdef-0");
        // A longer prefix is cut to 16 bytes, at a character boundary.
        let ids = RequestIds::new("0123456789abcde\u{e9}xyz".into());
        assert_eq!(ids.next().as_str(), "0123456789abcde-0");
    }

    #[test]
    fn provider_labels_are_bounded() {
        let m = Metrics::default();
        for i in 0..200 {
            m.request(200, Some(&format!("p{i}")));
        }
        let text = m.render(&[]);
        let series = text
            .lines()
            .filter(|l| l.starts_with("relayapi_requests_total{"))
            .count();
        assert!(series <= MAX_PROVIDER_LABELS + 1, "{series}");
        assert!(text.contains("provider=\"other\""));
    }
}
