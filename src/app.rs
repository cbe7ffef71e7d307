//! The relay's shared state, built once at start-up from the validated config and key files and handed
//! to every connection task by `Arc`. State only, grouped by what it serves, so a step takes the group
//! it needs: the keys that prove requests, the limits that bound them, the providers they go to, and
//! what the relay reports. Nothing in here is global; tests build their own.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use crate::clock::Clock;
use crate::config::Config;
use crate::limits::body_budget::BodyBudget;
use crate::limits::limiter::{RateLimiter, TokenLimits};
use crate::limits::log_sampler::LogSampler;
use crate::log::Logger;
use crate::metrics::{Metrics, RequestIds, Stats};
use crate::store::Store;
use crate::token::cache::TokenCache;
use crate::token::format::IpNet;
use crate::token::live_keyring::LiveKeyring;
use crate::token::secret::SecretString;
use crate::upstream::client::Upstream;
use crate::upstream::key_scrub::FragmentCache;
use crate::upstream::provider::Registry;

pub struct App {
    pub cfg: Config,
    pub clock: Arc<dyn Clock>,
    pub keys: Keys,
    pub limits: Limits,
    /// Per-token call counts and revocations (`store/`).
    pub store: Store,
    /// Usage of tokens without a spend limit, on its way to the store in batches
    /// (`budget/recorder.rs`).
    pub usage: crate::budget::recorder::UsageRecorder,
    pub upstream: Upstreams,
    pub nets: Nets,
    pub obs: Observability,
}

/// What proves a request, and the provider keys a proven one is sent with.
pub struct Keys {
    /// The tenant keys in force; a reload swaps them (read once per request).
    pub keyring: LiveKeyring,
    /// Tokens already proven authentic, and remembered verdicts (bounded).
    pub tokens: TokenCache,
    /// Server-side API keys (`kref` claim), read from the environment at start-up.
    pub api_keys: HashMap<String, SecretString>,
    /// Each API key's fragments, to keep the key out of response headers and error bodies (bounded).
    pub fragments: FragmentCache,
    /// Tenants opted in to `relayapi-sdk` 1.0.0 tokens (`token/compat_v0/`); none by default.
    pub compat: crate::token::compat_v0::CompatTenants,
}

/// What bounds what a client may spend.
pub struct Limits {
    /// The per-address and relay-wide buckets (in-process).
    pub rate: RateLimiter,
    /// Each token's own rate and concurrency.
    pub tokens: TokenLimits,
    /// Memory for request bodies a policy must read whole.
    pub bodies: BodyBudget,
}

/// Where calls go.
pub struct Upstreams {
    pub registry: Registry,
    /// Connections to providers (pooled).
    pub pool: Upstream,
}

/// Address ranges with a role.
pub struct Nets {
    /// Proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<IpNet>,
    /// Client ranges allowed to read `/metrics` and `/health` details.
    pub monitoring: Vec<IpNet>,
}

/// What the relay reports about itself.
pub struct Observability {
    pub stats: Stats,
    pub metrics: Metrics,
    pub log: Logger,
    /// Bounds access-log lines per client and reason (`limits/log_sampler.rs`).
    pub log_sampler: LogSampler,
    pub started: Instant,
    pub ids: RequestIds,
}
