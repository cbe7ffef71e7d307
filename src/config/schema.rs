//! What `config.json` looks like: every section and member with its default, as serde reads them. The
//! values are still text and plain numbers here; `config/validate.rs` checks them and turns them into the
//! types of `config/types.rs` that the relay uses. Sections that need no parsing (`rate_limit`, `token`,
//! `api_keys`, `cors`, `log`) are used as they are.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use crate::text::strict_json::{object, object_or_null, unique_names};

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    #[serde(deserialize_with = "object")]
    pub server: ServerConfig,
    #[serde(deserialize_with = "object")]
    pub rate_limit: RateLimitConfig,
    #[serde(deserialize_with = "object")]
    pub token: TokenConfig,
    /// Overrides of built-in providers and operator-defined providers, by name.
    #[serde(deserialize_with = "unique_names")]
    pub providers: BTreeMap<String, ProviderOverride>,
    /// Server-side API keys that tokens may name (`kref` claim) instead of carrying a key.
    #[serde(deserialize_with = "unique_names")]
    pub api_keys: BTreeMap<String, ApiKeySource>,
    #[serde(deserialize_with = "object")]
    pub upstream: UpstreamConfig,
    /// Peers whose `X-Forwarded-For` is believed (CIDR or plain addresses).
    pub trusted_proxies: Vec<String>,
    #[serde(deserialize_with = "object")]
    pub cors: CorsConfig,
    #[serde(deserialize_with = "object")]
    pub store: StoreConfig,
    #[serde(deserialize_with = "object")]
    pub log: LogConfig,
    #[serde(deserialize_with = "object")]
    pub metrics: MetricsConfig,
    /// HTTPS served by the relay itself; absent (or null) means plain HTTP.
    #[serde(deserialize_with = "object_or_null")]
    pub tls: Option<TlsConfig>,
    /// Spend limits: the price table and how a call's worst case is sized (`docs/budgets.md`).
    #[serde(deserialize_with = "object")]
    pub budgets: crate::config::budgets::BudgetsConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    pub host: String,
    pub port: u16,
    /// Seconds allowed for a request head, and for each read of a request body.
    pub read_timeout: u64,
    /// Seconds allowed for each write to the client (per write, never a total: streams may run long).
    pub write_timeout: u64,
    /// Seconds a keep-alive connection may sit idle between requests.
    pub idle_timeout: u64,
    pub max_header_bytes: usize,
    pub max_headers: usize,
    pub max_uri_bytes: usize,
    pub max_body_bytes: u64,
    /// Bytes all request bodies held whole at once (a token policy reads them) may take together; a
    /// request that would pass it is refused with 503 at once. Bodies no policy reads are streamed and
    /// take nothing from it.
    pub max_buffered_body_bytes: u64,
    /// The part of `max_buffered_body_bytes` one client address (IPv6: one /64) may hold.
    pub max_buffered_body_bytes_per_ip: u64,
    /// Bytes per second a request body must average once `read_timeout` has passed (only time spent
    /// waiting for the client counts); slower bodies get 408.
    pub min_body_rate: u64,
    pub max_connections: usize,
    /// Connections one client address (IPv6: one /64) may hold open at once; peers in
    /// `trusted_proxies` are exempt. Enough for an office behind one NAT address, where every browser
    /// opens up to 6 connections per host.
    pub max_connections_per_ip: usize,
    /// Seconds in-flight requests get to finish after SIGTERM/SIGINT.
    pub shutdown_grace: u64,
    /// The path prefix of relay URLs (must match the `.rai` files' `server.base_path`).
    pub base_path: String,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            host: "127.0.0.1".into(),
            port: 8080,
            read_timeout: 30,
            write_timeout: 30,
            idle_timeout: 60,
            max_header_bytes: 16 * 1024,
            max_headers: 100,
            max_uri_bytes: 8 * 1024,
            max_body_bytes: 32 * 1024 * 1024,
            max_buffered_body_bytes: 256 * 1024 * 1024,
            max_buffered_body_bytes_per_ip: 64 * 1024 * 1024,
            min_body_rate: 1024,
            max_connections: 4096,
            max_connections_per_ip: 128,
            shutdown_grace: 30,
            base_path: "/relayapi/".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    /// Relay-wide requests per second; 0 disables the global bucket.
    pub requests_per_second: u64,
    pub burst: u64,
    #[serde(deserialize_with = "object")]
    pub ip_limit: IpLimitConfig,
    /// Keep the global and per-IP buckets in the Redis store, so every instance shares them.
    pub shared: bool,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            requests_per_second: 10,
            burst: 20,
            ip_limit: IpLimitConfig::default(),
            shared: false,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IpLimitConfig {
    /// Requests per second per client IP (IPv6: per /64); 0 disables per-IP limiting.
    pub requests_per_second: u64,
    pub burst: u64,
    /// Upper bound on the per-IP table, so a spray of source addresses cannot grow memory.
    pub max_tracked_ips: usize,
}

impl Default for IpLimitConfig {
    fn default() -> Self {
        IpLimitConfig {
            requests_per_second: 2,
            burst: 4,
            max_tracked_ips: 100_000,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TokenConfig {
    /// Seconds of clock difference tolerated between minting backends and the relay.
    pub clock_skew: u64,
    /// Longest token lifetime (`exp - iat`, seconds) the relay accepts, whatever the minter asked for.
    pub max_lifetime: u64,
    /// Tenants whose `relayapi-sdk` 1.0.0 tokens are accepted (`config/compat.rs`); none by default.
    pub compat_v0: Vec<crate::config::compat::CompatV0Tenant>,
}

impl Default for TokenConfig {
    fn default() -> Self {
        TokenConfig {
            clock_skew: 60,
            max_lifetime: 30 * 24 * 3600,
            compat_v0: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderOverride {
    /// Required for new providers and `azure`; a built-in keeps its own base URL when absent.
    pub base_url: Option<String>,
    /// Required for new providers; for built-in ones the built-in auth style is kept when absent.
    pub auth: Option<String>,
    /// Request headers forwarded to this provider besides its family's allow-list
    /// (`upstream/forward_headers.rs`) and `upstream.forward_headers`.
    #[serde(default)]
    pub forward_headers: Vec<String>,
    /// The API the provider speaks (`provider::ApiFamily`), which decides how token limits on models
    /// and output are enforced. Built-ins keep their own; new providers default to the auth style's API.
    pub family: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeySource {
    /// Name of the environment variable holding the key (keys never live in config.json itself).
    pub env: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamConfig {
    pub connect_timeout: u64,
    pub handshake_timeout: u64,
    /// Seconds to wait for the provider's response head (models can think for a while).
    pub response_header_timeout: u64,
    /// Seconds a stream may stay silent between two reads; there is no total deadline.
    pub read_idle_timeout: u64,
    pub pool_idle_timeout: u64,
    pub pool_max_idle_per_host: usize,
    /// Extra PEM CA bundle trusted besides the webpki roots (private upstreams, tests).
    pub extra_ca_file: Option<PathBuf>,
    /// Base URLs a token's `url` claim may name.
    pub allowed_base_urls: Vec<String>,
    /// Request headers forwarded to every provider besides the families' allow-lists
    /// (`upstream/forward_headers.rs`); lower-case names.
    pub forward_headers: Vec<String>,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        UpstreamConfig {
            connect_timeout: 10,
            handshake_timeout: 10,
            response_header_timeout: 300,
            read_idle_timeout: 300,
            pool_idle_timeout: 90,
            pool_max_idle_per_host: 64,
            extra_ca_file: None,
            allowed_base_urls: Vec::new(),
            forward_headers: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CorsConfig {
    /// Origins allowed to call the relay from a browser; `"*"` allows any.
    pub allowed_origins: Vec<String>,
    /// Seconds a browser may cache a preflight answer.
    pub max_age: u64,
}

impl Default for CorsConfig {
    fn default() -> Self {
        CorsConfig {
            allowed_origins: vec!["*".into()],
            max_age: 600,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// `sqlite` (persistent, one host; the default), `redis` (shared by several relays) or `memory`
    /// (lost on restart; tests and development).
    #[serde(rename = "type")]
    pub kind: String,
    /// sqlite: the database file; a relative path is taken from the directory of `config.json`.
    pub path: Option<PathBuf>,
    /// redis: `redis://[user:password@]host[:port][/db]`.
    pub url: Option<String>,
    /// redis: a Redis Cluster, by some of its nodes (`redis://host:port`), instead of `url`.
    pub cluster: Option<Vec<String>>,
    /// redis: a Sentinel set and the name of the master it watches, instead of `url`.
    pub sentinel: Option<SentinelConfig>,
    /// redis: prepended to every key, so several relays (or other applications) can share a server.
    pub key_prefix: Option<String>,
    /// redis: seconds allowed to open a connection.
    pub connect_timeout: Option<u64>,
    /// redis: seconds allowed for each command; a hung server answers `store_unavailable`, never hangs.
    pub command_timeout: Option<u64>,
    /// redis (`url` or `sentinel`): replicas that must acknowledge each write (`WAIT`) before the relay
    /// acts on it, so a failover cannot lose it; 0 (the default) does not wait.
    pub replica_acks: Option<u32>,
}

/// `store.sentinel`: the Sentinels (`redis://host:26379`) and the master name they watch.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SentinelConfig {
    pub nodes: Vec<String>,
    pub master: String,
    /// The master's ACL user and password (the Sentinels' own go in their node URLs).
    pub username: Option<String>,
    pub password: Option<String>,
    /// The master's database number.
    pub db: Option<i64>,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            kind: "sqlite".into(),
            path: None,
            url: None,
            cluster: None,
            sentinel: None,
            key_prefix: None,
            connect_timeout: None,
            command_timeout: None,
            replica_acks: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// One JSON access-log line per request on stdout.
    pub access: bool,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig { access: true }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Client addresses or CIDR ranges that may read `GET /metrics` (others get 404).
    pub allowed_ips: Vec<String>,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            allowed_ips: vec!["127.0.0.1".into(), "::1".into()],
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain, leaf first (e.g. certbot's `fullchain.pem`). Relative paths are taken
    /// from the directory holding config.json.
    pub cert_file: PathBuf,
    /// PEM private key of the leaf: PKCS#8, SEC1 (EC) or PKCS#1 (RSA), unencrypted.
    pub key_file: PathBuf,
    /// Oldest TLS version offered: "1.2" (default) or "1.3".
    #[serde(default = "TlsConfig::default_min_version")]
    pub min_version: String,
    /// Seconds a client gets to finish the TLS handshake.
    #[serde(default = "TlsConfig::default_handshake_timeout")]
    pub handshake_timeout: u64,
    /// A plain-HTTP port that answers every request with a 308 to the HTTPS URL; null (default) for none.
    #[serde(default)]
    pub redirect_http_port: Option<u16>,
    /// The name clients reach the relay by over HTTPS (a DNS name or IP address), put in the redirect's
    /// `Location`; the client's `Host` is never used. Null (default): `server.host`, which must then be
    /// a specific address rather than 0.0.0.0 or ::.
    #[serde(default)]
    pub redirect_host: Option<String>,
    /// Seconds between checks of the certificate files for changes; 0 turns the check off (SIGHUP
    /// still reloads).
    #[serde(default = "TlsConfig::default_reload_interval")]
    pub reload_interval: u64,
}

impl TlsConfig {
    fn default_min_version() -> String {
        "1.2".into()
    }
    fn default_handshake_timeout() -> u64 {
        10
    }
    fn default_reload_interval() -> u64 {
        5
    }
}
