//! The relay's shared state, built once at start-up from the validated config and key files and handed
//! to every connection task by `Arc`. Nothing in here is global; tests build their own.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use serde_json::json;

use crate::clock::Clock;
use crate::config::Config;
use crate::limits::body_budget::BodyBudget;
use crate::limits::limiter::{RateLimiter, TokenLimits};
use crate::limits::log_sampler::LogSampler;
use crate::log::Logger;
use crate::metrics::Metrics;
use crate::store::Store;
use crate::token::cache::TokenCache;
use crate::token::format::IpNet;
use crate::token::rai::Keyring;
use crate::token::secret::SecretString;
use crate::upstream::client::Upstream;
use crate::upstream::key_scrub::FragmentCache;
use crate::upstream::provider::Registry;

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
    pub active_connections: AtomicU64,
    pub active_streams: AtomicU64,
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
            "active_connections": g(&self.active_connections),
            "active_streams": g(&self.active_streams),
        })
    }
}

/// Admits at most `per_second` events per wall-clock second (for sampling log lines under floods).
#[derive(Debug)]
pub struct Sampler {
    per_second: u64,
    /// Second in the high 32 bits, count in the low 32: one atomic word, no lock.
    state: AtomicU64,
}

impl Sampler {
    pub fn new(per_second: u64) -> Sampler {
        Sampler {
            per_second,
            state: AtomicU64::new(0),
        }
    }

    pub fn admit(&self, now: u64) -> bool {
        let sec = now & 0xffff_ffff;
        let mut cur = self.state.load(Ordering::Relaxed);
        loop {
            let (s, n) = (cur >> 32, cur & 0xffff_ffff);
            let next = if s == sec {
                (sec << 32) | (n + 1)
            } else {
                (sec << 32) | 1
            };
            if s == sec && n >= self.per_second {
                return false;
            }
            match self
                .state
                .compare_exchange_weak(cur, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return true,
                Err(actual) => cur = actual,
            }
        }
    }
}

pub struct App {
    pub cfg: Config,
    pub keyring: Keyring,
    /// Tokens already proven authentic (bounded).
    pub tokens: TokenCache,
    pub registry: Registry,
    pub limiter: RateLimiter,
    pub token_limits: TokenLimits,
    pub store: Store,
    pub upstream: Upstream,
    /// Memory for request bodies a policy must read whole.
    pub body_budget: BodyBudget,
    /// Server-side API keys (`kref` claim), read from the environment at start-up.
    pub api_keys: HashMap<String, SecretString>,
    /// Each API key's fragments, to keep the key out of response headers and error bodies (bounded).
    pub key_fragments: FragmentCache,
    pub trusted_proxies: Vec<IpNet>,
    pub clock: Arc<dyn Clock>,
    pub stats: Stats,
    pub metrics: Metrics,
    /// Client ranges allowed to read `/metrics`.
    pub metrics_allowed: Vec<IpNet>,
    /// Bounds access-log lines per client and reason (`limits/log_sampler.rs`).
    pub log_sampler: LogSampler,
    pub log: Logger,
    pub started: Instant,
    /// Random per-process prefix of request ids, so ids from several instances do not collide.
    pub instance_id: String,
    pub request_seq: AtomicU64,
}

impl App {
    pub fn next_request_id(&self) -> String {
        let n = self.request_seq.fetch_add(1, Ordering::Relaxed);
        format!("{}-{n:x}", self.instance_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampler_caps_each_second() {
        let s = Sampler::new(3);
        let admitted = (0..10).filter(|_| s.admit(100)).count();
        assert_eq!(admitted, 3);
        assert!(s.admit(101), "a new second starts a new allowance");
    }
}
