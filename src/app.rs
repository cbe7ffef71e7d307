//! The relay's shared state, built once at start-up from the validated config and key files and handed
//! to every connection task by `Arc`. Nothing in here is global; tests build their own.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crate::clock::Clock;
use crate::config::Config;
use crate::limits::body_budget::BodyBudget;
use crate::limits::limiter::{RateLimiter, TokenLimits};
use crate::limits::log_sampler::LogSampler;
use crate::log::Logger;
use crate::metrics::{Metrics, Stats};
use crate::store::Store;
use crate::token::cache::TokenCache;
use crate::token::format::IpNet;
use crate::token::rai::Keyring;
use crate::token::secret::SecretString;
use crate::upstream::client::Upstream;
use crate::upstream::key_scrub::FragmentCache;
use crate::upstream::provider::Registry;

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
