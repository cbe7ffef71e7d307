//! The configuration the relay runs with: `config.json` after `config/validate.rs` has checked it, with
//! every value in the type it is used as (socket address, IP ranges, base URLs, durations, the store
//! and its options, TLS paths resolved against the config file's directory). Nothing downstream parses
//! configuration text again. Sections that need no parsing are `config/schema.rs`'s types, re-exported.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::config::schema::{ApiKeySource, CorsConfig, LogConfig, RateLimitConfig, TokenConfig};
use crate::text::base_url::BaseUrl;
use crate::text::ipnet::IpNet;
use crate::upstream::builtins::{ApiFamily, AuthStyle};

/// The whole configuration; see `config/schema.rs` for what each member means in `config.json`.
#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    pub rate_limit: RateLimitConfig,
    pub token: TokenConfig,
    /// Overrides of built-in providers and operator-defined providers, by name.
    pub providers: BTreeMap<String, ProviderOverride>,
    /// Server-side API keys that tokens may name (`kref` claim), by name.
    pub api_keys: BTreeMap<String, ApiKeySource>,
    pub upstream: UpstreamConfig,
    /// Peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<IpNet>,
    pub cors: CorsConfig,
    pub store: StoreConfig,
    pub log: LogConfig,
    pub metrics: MetricsConfig,
    /// HTTPS served by the relay itself; `None` means plain HTTP.
    pub tls: Option<TlsConfig>,
    /// The price table and the bounds of a budgeted call's worst case.
    pub budgets: crate::config::budgets::Budgets,
}

/// The listener and the limits of each client connection (`server`).
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Where the relay listens (`server.host`, `server.port`; port 0 asks the OS for a free one).
    pub addr: SocketAddr,
    /// Allowed for a request head, and for each read of a request body.
    pub read_timeout: Duration,
    /// Allowed for each write to the client (never a total: streams may run long).
    pub write_timeout: Duration,
    /// How long a keep-alive connection may sit idle between requests.
    pub idle_timeout: Duration,
    pub max_header_bytes: usize,
    pub max_headers: usize,
    pub max_uri_bytes: usize,
    pub max_body_bytes: u64,
    pub max_buffered_body_bytes: u64,
    pub max_buffered_body_bytes_per_ip: u64,
    /// Bytes per second a request body must average once `read_timeout` has passed.
    pub min_body_rate: u64,
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    /// What in-flight requests get to finish after SIGTERM/SIGINT.
    pub shutdown_grace: Duration,
    /// The path prefix of relay URLs: `/` or `/segment/.../` (`text::grammar::is_base_path`).
    pub base_path: String,
}

impl ServerConfig {
    pub fn read_timeout(&self) -> Duration {
        self.read_timeout
    }
    pub fn write_timeout(&self) -> Duration {
        self.write_timeout
    }
    pub fn idle_timeout(&self) -> Duration {
        self.idle_timeout
    }
}

/// A built-in provider redirected, or a provider the operator adds (`providers.<name>`).
#[derive(Debug, Clone)]
pub struct ProviderOverride {
    /// `None`: a built-in keeps its own base URL.
    pub base_url: Option<BaseUrl>,
    /// `None`: a built-in (or Azure) keeps its own auth style.
    pub auth: Option<AuthStyle>,
    /// Request headers forwarded to this provider besides its family's allow-list and
    /// `upstream.forward_headers`; lower-case names.
    pub forward_headers: Vec<String>,
    /// `None`: a built-in keeps its own; a new provider takes its auth style's API.
    pub family: Option<ApiFamily>,
}

/// The provider side (`upstream`).
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    pub connect_timeout: Duration,
    pub handshake_timeout: Duration,
    /// How long to wait for the provider's response head (models can think for a while).
    pub response_header_timeout: Duration,
    /// How long a stream may stay silent between two reads; there is no total deadline.
    pub read_idle_timeout: Duration,
    pub pool_idle_timeout: Duration,
    pub pool_max_idle_per_host: usize,
    /// Extra PEM CA bundle trusted besides the webpki roots.
    pub extra_ca_file: Option<PathBuf>,
    /// Base URLs a token's `url` claim may name (all https).
    pub allowed_base_urls: Vec<BaseUrl>,
    /// Request headers forwarded to every provider besides the families' allow-lists; lower-case.
    pub forward_headers: Vec<String>,
}

/// Where usage counters, reservations and revocations live (`store`), with the options of that kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreConfig {
    /// Lost on restart; tests, development and `--dev`.
    Memory,
    /// One host, persistent. `path` is resolved against the directory of `config.json`.
    Sqlite { path: PathBuf },
    /// Shared by several relays.
    Redis(RedisStoreConfig),
}

impl StoreConfig {
    /// The `store.type` spelling.
    pub fn kind(&self) -> &'static str {
        match self {
            StoreConfig::Memory => "memory",
            StoreConfig::Sqlite { .. } => "sqlite",
            StoreConfig::Redis(_) => "redis",
        }
    }
}

/// The options of a Redis store.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisStoreConfig {
    /// One server, a Cluster or a Sentinel set; may carry passwords.
    pub target: crate::store::RedisTarget,
    /// Prepended to every key.
    pub key_prefix: String,
    pub connect_timeout: Duration,
    /// Allowed for each command; a hung server answers `store_unavailable`, never hangs.
    pub command_timeout: Duration,
    /// Replicas that acknowledge each write before it is acted on; 0 = no wait.
    pub replica_acks: u32,
}

/// Leaves the URL out: it may carry a password.
impl std::fmt::Debug for RedisStoreConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStoreConfig")
            .field("target", &self.target)
            .field("key_prefix", &self.key_prefix)
            .field("connect_timeout", &self.connect_timeout)
            .field("command_timeout", &self.command_timeout)
            .field("replica_acks", &self.replica_acks)
            .finish()
    }
}

/// Who may read `GET /metrics` (`metrics`).
#[derive(Debug, Clone)]
pub struct MetricsConfig {
    pub allowed_ips: Vec<IpNet>,
}

/// The oldest TLS version offered (`tls.min_version`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsVersion {
    Tls12,
    Tls13,
}

/// HTTPS served by the relay (`tls`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    /// PEM certificate chain, leaf first; resolved against the directory of `config.json`.
    pub cert_file: PathBuf,
    /// PEM private key of the leaf; resolved against the directory of `config.json`.
    pub key_file: PathBuf,
    pub min_version: TlsVersion,
    /// What a client gets to finish the TLS handshake.
    pub handshake_timeout: Duration,
    /// The plain-HTTP listener that redirects to HTTPS, if any.
    pub redirect: Option<HttpRedirect>,
    /// How often the certificate files are checked for changes; `None`: never (SIGHUP still reloads).
    pub reload_interval: Option<Duration>,
}

/// The plain-HTTP redirect listener (`tls.redirect_http_port`, `tls.redirect_host`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRedirect {
    /// Port 0 asks the OS for a free port (tests).
    pub port: u16,
    /// The name put in `Location` (`text::host::public_name`): IPv6 addresses in brackets.
    pub host: String,
}
