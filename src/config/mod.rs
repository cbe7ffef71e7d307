//! Server settings from `config.json`: the schema, its defaults, and validation with errors that name the
//! file, the field and what a valid value looks like. Loading the `.rai` key files is `token/rai.rs`'s job;
//! the provider table these settings override lives in `upstream/provider.rs`.

pub mod words;

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

use crate::token::format::IpNet;

/// A configuration problem, written for the operator who has to fix the file.
#[derive(Debug)]
pub struct ConfigError {
    pub file: PathBuf,
    pub field: String,
    pub problem: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}: {}", self.file.display(), self.problem)
        } else {
            write!(
                f,
                "{}: field `{}`: {}",
                self.file.display(),
                self.field,
                self.problem
            )
        }
    }
}

impl std::error::Error for ConfigError {}

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
}

impl Default for TokenConfig {
    fn default() -> Self {
        TokenConfig {
            clock_skew: 60,
            max_lifetime: 30 * 24 * 3600,
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
    /// redis: prepended to every key, so several relays (or other applications) can share a server.
    pub key_prefix: Option<String>,
    /// redis: seconds allowed to open a connection.
    pub connect_timeout: Option<u64>,
    /// redis: seconds allowed for each command; a hung server answers `store_unavailable`, never hangs.
    pub command_timeout: Option<u64>,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            kind: "sqlite".into(),
            path: None,
            url: None,
            key_prefix: None,
            connect_timeout: None,
            command_timeout: None,
        }
    }
}

impl StoreConfig {
    pub const DEFAULT_SQLITE_PATH: &'static str = "relayapi-usage.db";
    pub const DEFAULT_KEY_PREFIX: &'static str = "relayapi:";
    pub const DEFAULT_REDIS_TIMEOUT: u64 = 2;

    /// The sqlite file, with a relative path resolved against the directory of `config_file` so the
    /// relay finds the same counters whatever directory it is started from.
    pub fn sqlite_path(&self, config_file: &Path) -> PathBuf {
        let p = self
            .path
            .clone()
            .unwrap_or_else(|| PathBuf::from(Self::DEFAULT_SQLITE_PATH));
        if p.is_absolute() {
            return p;
        }
        match config_file.parent() {
            Some(dir) => dir.join(p),
            None => p,
        }
    }

    pub fn key_prefix(&self) -> &str {
        self.key_prefix
            .as_deref()
            .unwrap_or(Self::DEFAULT_KEY_PREFIX)
    }

    pub fn connect_timeout(&self) -> Duration {
        Duration::from_secs(self.connect_timeout.unwrap_or(Self::DEFAULT_REDIS_TIMEOUT))
    }

    pub fn command_timeout(&self) -> Duration {
        Duration::from_secs(self.command_timeout.unwrap_or(Self::DEFAULT_REDIS_TIMEOUT))
    }

    /// Checks the fields of the chosen type and refuses the fields of the others, so a typo such as
    /// `"url"` on a sqlite store does not pass silently. Errors are `(field, problem)`.
    fn check(&self) -> Result<(), (&'static str, String)> {
        let redis_only = [
            ("store.url", self.url.is_some()),
            ("store.key_prefix", self.key_prefix.is_some()),
            ("store.connect_timeout", self.connect_timeout.is_some()),
            ("store.command_timeout", self.command_timeout.is_some()),
        ];
        let not_for = |kind: &str, fields: &[(&'static str, bool)]| match fields
            .iter()
            .find(|(_, given)| *given)
        {
            Some((field, _)) => Err((*field, format!("is not used by a {kind} store"))),
            None => Ok(()),
        };
        match self.kind.as_str() {
            "memory" => not_for(
                "memory",
                &[&[("store.path", self.path.is_some())][..], &redis_only[..]].concat(),
            ),
            "sqlite" => {
                not_for("sqlite", &redis_only)?;
                match &self.path {
                    Some(p) if p.as_os_str().is_empty() => Err((
                        "store.path",
                        "expected a file name such as \"relayapi-usage.db\"".into(),
                    )),
                    _ => Ok(()),
                }
            }
            "redis" => {
                not_for("redis", &[("store.path", self.path.is_some())])?;
                let Some(url) = &self.url else {
                    return Err((
                        "store.url",
                        "is required for a redis store, e.g. \"redis://127.0.0.1:6379/0\"".into(),
                    ));
                };
                // The message never repeats the URL: it may carry a password.
                if !(url.starts_with("redis://") || url.starts_with("unix://")) {
                    return Err((
                        "store.url",
                        "expected redis://[user:password@]host[:port][/db] or unix:///path/to/redis.sock \
                         (TLS rediss:// is not built in)"
                            .into(),
                    ));
                }
                if redis::Client::open(url.as_str()).is_err() {
                    return Err((
                        "store.url",
                        "is not a valid Redis URL; expected redis://[user:password@]host[:port][/db]".into(),
                    ));
                }
                let prefix = self.key_prefix();
                if prefix.len() > 64 || !prefix.bytes().all(|b| b.is_ascii_graphic()) {
                    return Err((
                        "store.key_prefix",
                        "expected up to 64 printable ASCII characters without spaces, e.g. \"relayapi:\"".into(),
                    ));
                }
                for (field, v) in [
                    ("store.connect_timeout", self.connect_timeout),
                    ("store.command_timeout", self.command_timeout),
                ] {
                    if v.is_some_and(|s| !(1..=60).contains(&s)) {
                        return Err((field, "expected seconds from 1 to 60".into()));
                    }
                }
                Ok(())
            }
            other => Err((
                "store.type",
                format!(
                    "\"{other}\" is not a store this relay knows; expected \"sqlite\", \"redis\" or \"memory\""
                ),
            )),
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

    pub fn handshake_timeout(&self) -> Duration {
        Duration::from_secs(self.handshake_timeout)
    }

    /// `None` when file polling is off.
    pub fn reload_interval(&self) -> Option<Duration> {
        (self.reload_interval > 0).then(|| Duration::from_secs(self.reload_interval))
    }
}

impl ServerConfig {
    pub fn read_timeout(&self) -> Duration {
        Duration::from_secs(self.read_timeout)
    }
    pub fn write_timeout(&self) -> Duration {
        Duration::from_secs(self.write_timeout)
    }
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout)
    }
}

/// A section read only from a JSON object. serde's derive also takes an array and reads it by position
/// (`"server": ["0.0.0.0", 80]` as host and port), which is never what an operator meant. Found by the
/// `config` fuzz target.
struct ObjectOnly<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for ObjectOnly<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct OnlyMaps<T>(std::marker::PhantomData<T>);

        impl<'de, T: Deserialize<'de>> Visitor<'de> for OnlyMaps<T> {
            type Value = T;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                // config_words.rs turns this into the operator's words, as for serde's own maps.
                f.write_str("a map")
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                // The same map access, so field paths in later errors stay exact.
                T::deserialize(de::value::MapAccessDeserializer::new(map))
            }
        }

        d.deserialize_map(OnlyMaps(std::marker::PhantomData))
            .map(ObjectOnly)
    }
}

fn object<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<T, D::Error> {
    ObjectOnly::deserialize(d).map(|ObjectOnly(t)| t)
}

fn object_or_null<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<T>, D::Error> {
    Option::<ObjectOnly<T>>::deserialize(d).map(|o| o.map(|ObjectOnly(t)| t))
}

/// A JSON object read as a map whose names must differ: serde's own maps keep the last of two equal
/// names, so a provider or key listed twice would silently mean whichever line comes last. (Struct
/// fields need no help: the derive already refuses a repeated field.) Found by the `config` fuzz target.
fn unique_names<'de, D, V>(d: D) -> Result<BTreeMap<String, V>, D::Error>
where
    D: Deserializer<'de>,
    V: Deserialize<'de>,
{
    struct Unique<V>(std::marker::PhantomData<V>);

    impl<'de, V: Deserialize<'de>> Visitor<'de> for Unique<V> {
        type Value = BTreeMap<String, V>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an object whose names appear once each")
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out = BTreeMap::new();
            while let Some(name) = map.next_key::<String>()? {
                if out.contains_key(&name) {
                    return Err(de::Error::custom(format!(
                        "`{name}` appears twice; list each name once"
                    )));
                }
                let ObjectOnly(value) = map.next_value()?;
                out.insert(name, value);
            }
            Ok(out)
        }
    }

    d.deserialize_map(Unique(std::marker::PhantomData))
}

/// Parse and validate `config.json` text. `file` is only used in error messages.
pub fn parse_config(text: &str, file: &Path) -> Result<Config, ConfigError> {
    // The derive would also take an array, reading it as the sections in declaration order (`[]` is
    // every default). Found by the `config` fuzz target.
    if !text.trim_start().starts_with('{') {
        return Err(ConfigError {
            file: file.to_path_buf(),
            field: String::new(),
            problem: "expected a JSON object: {\"server\": {...}, ...}".into(),
        });
    }
    let de = &mut serde_json::Deserializer::from_str(text);
    let mut cfg: Config = serde_path_to_error::deserialize(&mut *de).map_err(|e| {
        let path = e.path().to_string();
        let (field, problem) =
            crate::config::words::describe(if path == "." { "" } else { &path }, e.inner());
        ConfigError {
            file: file.to_path_buf(),
            field,
            problem,
        }
    })?;
    // serde_json stops after the first value; text after it (two configs pasted together, a stray
    // brace) is a broken file, not something to ignore. Found by the `config` fuzz target.
    de.end().map_err(|e| ConfigError {
        file: file.to_path_buf(),
        field: String::new(),
        problem: crate::config::words::describe("", &e).1,
    })?;
    if let Some(tls) = &mut cfg.tls {
        // Operators keep certificates beside config.json; the relay's working directory is whatever
        // the service manager chose, so relative paths must not depend on it.
        let dir = file.parent().unwrap_or(Path::new(""));
        tls.cert_file = dir.join(&tls.cert_file);
        tls.key_file = dir.join(&tls.key_file);
    }
    cfg.validate(file)?;
    Ok(cfg)
}

pub fn load_config(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: path.to_path_buf(),
        field: String::new(),
        problem: format!("cannot read the file: {e}"),
    })?;
    parse_config(&text, path)
}

impl Config {
    fn validate(&self, file: &Path) -> Result<(), ConfigError> {
        let err = |field: &str, problem: &str| ConfigError {
            file: file.to_path_buf(),
            field: field.to_string(),
            problem: problem.to_string(),
        };
        let s = &self.server;
        if s.host.parse::<IpAddr>().is_err() {
            return Err(err(
                "server.host",
                "expected an IP address to listen on, e.g. \"127.0.0.1\" or \"0.0.0.0\"",
            ));
        }
        for (name, v) in [
            ("server.read_timeout", s.read_timeout),
            ("server.write_timeout", s.write_timeout),
            ("server.idle_timeout", s.idle_timeout),
            ("upstream.connect_timeout", self.upstream.connect_timeout),
            (
                "upstream.handshake_timeout",
                self.upstream.handshake_timeout,
            ),
            (
                "upstream.response_header_timeout",
                self.upstream.response_header_timeout,
            ),
            (
                "upstream.read_idle_timeout",
                self.upstream.read_idle_timeout,
            ),
        ] {
            if v == 0 || v > 86_400 {
                return Err(err(name, "expected a number of seconds from 1 to 86400"));
            }
        }
        if !(1024..=1024 * 1024).contains(&s.max_header_bytes) {
            return Err(err(
                "server.max_header_bytes",
                "expected bytes from 1024 to 1048576",
            ));
        }
        if !(8..=1000).contains(&s.max_headers) {
            return Err(err("server.max_headers", "expected a count from 8 to 1000"));
        }
        if !(256..=s.max_header_bytes).contains(&s.max_uri_bytes) {
            return Err(err(
                "server.max_uri_bytes",
                "expected bytes from 256 to server.max_header_bytes",
            ));
        }
        if s.max_body_bytes == 0 || s.max_body_bytes > 1 << 30 {
            return Err(err(
                "server.max_body_bytes",
                "expected bytes from 1 to 1073741824",
            ));
        }
        if s.max_buffered_body_bytes_per_ip < s.max_body_bytes {
            return Err(err(
                "server.max_buffered_body_bytes_per_ip",
                "expected at least server.max_body_bytes, so one body of the largest allowed size can be held (default 67108864, 64 MiB)",
            ));
        }
        if s.max_buffered_body_bytes < s.max_buffered_body_bytes_per_ip
            || s.max_buffered_body_bytes > 1 << 40
        {
            return Err(err(
                "server.max_buffered_body_bytes",
                "expected bytes from server.max_buffered_body_bytes_per_ip to 1099511627776, well below the machine's memory (default 268435456, 256 MiB)",
            ));
        }
        if s.min_body_rate == 0 || s.min_body_rate > 1 << 30 {
            return Err(err(
                "server.min_body_rate",
                "expected bytes per second from 1 to 1073741824 (default 1024: slow mobile uploads still pass)",
            ));
        }
        if s.max_connections == 0 || s.max_connections > 1_000_000 {
            return Err(err(
                "server.max_connections",
                "expected a count from 1 to 1000000",
            ));
        }
        // Above max_connections it simply never applies; that is allowed, so a small max_connections
        // needs no second edit.
        if s.max_connections_per_ip == 0 || s.max_connections_per_ip > 1_000_000 {
            return Err(err(
                "server.max_connections_per_ip",
                "expected a count from 1 to 1000000 (e.g. 128: an office behind one NAT address, 6 connections per browser)",
            ));
        }
        if !valid_base_path(&s.base_path) {
            return Err(err(
                "server.base_path",
                "expected a path that starts and ends with '/' made of letters, digits, '-', '_', '.' and '/', e.g. \"/relayapi/\"",
            ));
        }
        let rl = &self.rate_limit;
        if rl.requests_per_second > 0 && rl.burst == 0 {
            return Err(err(
                "rate_limit.burst",
                "expected at least 1 when requests_per_second is set",
            ));
        }
        if rl.ip_limit.requests_per_second > 0 && rl.ip_limit.burst == 0 {
            return Err(err(
                "rate_limit.ip_limit.burst",
                "expected at least 1 when requests_per_second is set",
            ));
        }
        if rl.shared && self.store.kind != "redis" {
            return Err(err(
                "rate_limit.shared",
                "needs \"store\": {\"type\": \"redis\", ...}: only a shared store can share limits",
            ));
        }
        if rl.ip_limit.max_tracked_ips == 0 {
            return Err(err(
                "rate_limit.ip_limit.max_tracked_ips",
                "expected at least 1",
            ));
        }
        if self.token.max_lifetime == 0 {
            return Err(err("token.max_lifetime", "expected seconds, at least 1"));
        }
        if self.token.clock_skew > 3600 {
            return Err(err("token.clock_skew", "expected seconds from 0 to 3600"));
        }
        for (name, p) in &self.providers {
            if !crate::upstream::provider::valid_name(name) {
                return Err(err(
                    &format!("providers.{name}"),
                    "expected a provider name of 1 to 32 characters from a-z, 0-9, '_' and '-'",
                ));
            }
            match &p.base_url {
                Some(u) => {
                    if let Err(problem) = crate::upstream::provider::parse_base_url(u) {
                        return Err(err(&format!("providers.{name}.base_url"), &problem));
                    }
                }
                None if crate::upstream::provider::builtin(name).is_none() => {
                    return Err(err(
                        &format!("providers.{name}.base_url"),
                        "is required for a provider that is not built in (and for azure), e.g. \"https://api.example.com/v1\"",
                    ));
                }
                None => {}
            }
            for (i, h) in p.forward_headers.iter().enumerate() {
                if let Err(problem) = crate::upstream::forward_headers::check_name(h) {
                    return Err(err(
                        &format!("providers.{name}.forward_headers[{i}]"),
                        problem,
                    ));
                }
            }
            match &p.auth {
                Some(a) if crate::upstream::provider::AuthStyle::parse(a).is_none() => {
                    return Err(err(
                        &format!("providers.{name}.auth"),
                        "expected one of \"bearer\", \"x-api-key\", \"x-goog-api-key\", \"api-key\"",
                    ));
                }
                None if crate::upstream::provider::builtin(name).is_none()
                    && name != crate::upstream::provider::AZURE =>
                {
                    return Err(err(
                        &format!("providers.{name}.auth"),
                        "a provider that is not built in needs an auth style: \"bearer\", \"x-api-key\", \"x-goog-api-key\" or \"api-key\"",
                    ));
                }
                _ => {}
            }
            if let Some(f) = &p.family {
                if crate::upstream::provider::ApiFamily::parse(f).is_none() {
                    return Err(err(
                        &format!("providers.{name}.family"),
                        &format!(
                            "expected {} (the API the provider speaks; it decides how token limits on models and max tokens are enforced)",
                            crate::upstream::provider::ApiFamily::NAMES
                        ),
                    ));
                }
            }
        }
        for (name, src) in &self.api_keys {
            if name.is_empty() || name.len() > 64 {
                return Err(err(
                    &format!("api_keys.{name}"),
                    "expected a name of 1 to 64 characters",
                ));
            }
            if src.env.is_empty() {
                return Err(err(
                    &format!("api_keys.{name}.env"),
                    "expected the name of an environment variable",
                ));
            }
        }
        for (i, u) in self.upstream.allowed_base_urls.iter().enumerate() {
            match crate::upstream::provider::parse_base_url(u) {
                Ok(b) if b.tls => {}
                Ok(_) => {
                    return Err(err(
                        &format!("upstream.allowed_base_urls[{i}]"),
                        "expected an https:// URL",
                    ))
                }
                Err(problem) => {
                    return Err(err(&format!("upstream.allowed_base_urls[{i}]"), &problem))
                }
            }
        }
        for (i, h) in self.upstream.forward_headers.iter().enumerate() {
            if let Err(problem) = crate::upstream::forward_headers::check_name(h) {
                return Err(err(&format!("upstream.forward_headers[{i}]"), problem));
            }
        }
        if self.upstream.pool_max_idle_per_host > 10_000 {
            return Err(err(
                "upstream.pool_max_idle_per_host",
                "expected a count from 0 to 10000",
            ));
        }
        for (i, p) in self.trusted_proxies.iter().enumerate() {
            if parse_net(p).is_none() {
                return Err(err(
                    &format!("trusted_proxies[{i}]"),
                    "expected an IP address or CIDR range, e.g. \"10.0.0.0/8\"",
                ));
            }
        }
        for (i, p) in self.metrics.allowed_ips.iter().enumerate() {
            if parse_net(p).is_none() {
                return Err(err(
                    &format!("metrics.allowed_ips[{i}]"),
                    "expected an IP address or CIDR range, e.g. \"10.0.0.0/8\"",
                ));
            }
        }
        for (i, o) in self.cors.allowed_origins.iter().enumerate() {
            if o != "*" && !valid_origin(o) {
                return Err(err(
                    &format!("cors.allowed_origins[{i}]"),
                    "expected \"*\" or an origin like \"https://app.example.com\" (scheme://host[:port], no path)",
                ));
            }
        }
        if let Some(tls) = &self.tls {
            if tls.cert_file.as_os_str().is_empty() {
                return Err(err(
                    "tls.cert_file",
                    "expected the path of a PEM certificate chain",
                ));
            }
            if tls.key_file.as_os_str().is_empty() {
                return Err(err(
                    "tls.key_file",
                    "expected the path of a PEM private key",
                ));
            }
            if !matches!(tls.min_version.as_str(), "1.2" | "1.3") {
                return Err(err("tls.min_version", "expected \"1.2\" or \"1.3\""));
            }
            if tls.handshake_timeout == 0 || tls.handshake_timeout > 300 {
                return Err(err(
                    "tls.handshake_timeout",
                    "expected a number of seconds from 1 to 300",
                ));
            }
            if tls.reload_interval > 86_400 {
                return Err(err(
                    "tls.reload_interval",
                    "expected a number of seconds from 0 (off) to 86400",
                ));
            }
            if tls.redirect_http_port.is_some() {
                crate::server::redirect::public_name(tls.redirect_host.as_deref(), &s.host)
                    .map_err(|problem| {
                        let field = if tls.redirect_host.is_some() {
                            "tls.redirect_host"
                        } else {
                            "tls.redirect_host (needed because server.host is a wildcard)"
                        };
                        err(field, problem)
                    })?;
            }
            // Port 0 asks the OS for a free port (tests), so two zeros do not clash.
            if tls
                .redirect_http_port
                .is_some_and(|p| p != 0 && p == s.port)
            {
                return Err(err(
                    "tls.redirect_http_port",
                    "must differ from server.port, which serves HTTPS; e.g. 80 with server.port 443",
                ));
            }
        }
        self.store
            .check()
            .map_err(|(field, problem)| err(field, &problem))?;
        Ok(())
    }

    /// The parsed trusted proxy ranges (validated at load time).
    pub fn trusted_proxy_nets(&self) -> Vec<IpNet> {
        self.trusted_proxies
            .iter()
            .filter_map(|p| parse_net(p))
            .collect()
    }
}

/// A CIDR range or a single address (taken as a /32 or /128).
pub fn parse_net(s: &str) -> Option<IpNet> {
    if s.contains('/') {
        IpNet::parse(s)
    } else {
        let ip: IpAddr = s.parse().ok()?;
        let bits = if ip.is_ipv4() { 32 } else { 128 };
        IpNet::parse(&format!("{ip}/{bits}"))
    }
}

fn valid_base_path(p: &str) -> bool {
    p.len() <= 128
        && p.starts_with('/')
        && p.ends_with('/')
        && !p.contains("//")
        && !p.split('/').any(|seg| seg == "." || seg == "..")
        && p.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'-' | b'_' | b'.'))
}

/// `scheme://host[:port]` as browsers send it in `Origin`.
pub fn valid_origin(o: &str) -> bool {
    let rest = match o
        .strip_prefix("https://")
        .or_else(|| o.strip_prefix("http://"))
    {
        Some(r) => r,
        None => return false,
    };
    !rest.is_empty()
        && rest.len() <= 253 + 6
        && rest
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        parse_config(text, Path::new("config.json"))
    }

    #[test]
    fn text_after_the_object_is_refused() {
        // fuzz/regressions/config/trailing-characters
        assert!(parse("{}oooo").is_err());
        assert!(parse("{} {}").is_err());
        assert!(parse("{}\n\t ").is_ok());
    }

    #[test]
    fn only_an_object_is_a_config() {
        // fuzz/regressions/config/array
        assert!(parse("[\n   ]").is_err());
        assert!(parse("[{}]").is_err());
        assert!(parse(" \n{}").is_ok());
    }

    #[test]
    fn a_provider_or_key_named_twice_is_refused() {
        // fuzz/regressions/config/duplicate-provider
        let twice = r#"{"providers": {"openai": {"base_url": "https://a.example.com"},
                                      "openai": {"base_url": "https://b.example.com"}}}"#;
        let e = parse(twice).unwrap_err();
        assert_eq!(e.field, "providers");
        assert!(e.problem.contains("`openai` appears twice"), "{e}");
        let twice = r#"{"api_keys": {"main": {"env": "A"}, "main": {"env": "B"}}}"#;
        assert!(parse(twice).is_err());
    }

    #[test]
    fn a_section_given_as_an_array_is_refused() {
        // fuzz/regressions/config/section-as-array: the derive would read it by position.
        for (text, field) in [
            (r#"{"server": ["0.0.0.0", 80]}"#, "server"),
            (
                r#"{"rate_limit": {"ip_limit": [1, 2]}}"#,
                "rate_limit.ip_limit",
            ),
            (
                r#"{"providers": {"openai": ["https://a.example.com"]}}"#,
                "providers.openai",
            ),
            (r#"{"api_keys": {"main": ["A"]}}"#, "api_keys.main"),
            (r#"{"tls": ["cert.pem", "key.pem"]}"#, "tls"),
            (r#"{"store": []}"#, "store"),
        ] {
            let e = parse(text).unwrap_err();
            assert_eq!(e.field, field, "{text}: {e}");
        }
        // Objects and a null tls still load, with field paths inside sections intact.
        assert!(parse(r#"{"tls": null, "server": {"port": 9000}}"#).is_ok());
        let e = parse(r#"{"rate_limit": {"ip_limit": {"burst": "x"}}}"#).unwrap_err();
        assert_eq!(e.field, "rate_limit.ip_limit.burst", "{e}");
    }

    #[test]
    fn empty_object_gives_defaults() {
        let c = parse("{}").unwrap();
        assert_eq!(c.server.port, 8080);
        assert_eq!(c.rate_limit.requests_per_second, 10);
        assert_eq!(c.rate_limit.ip_limit.burst, 4);
        assert_eq!(c.server.base_path, "/relayapi/");
    }

    #[test]
    fn shipped_config_is_valid() {
        let text =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config.json")).unwrap();
        let c = parse(&text).unwrap();
        assert_eq!(
            (c.rate_limit.requests_per_second, c.rate_limit.burst),
            (10, 20)
        );
        assert_eq!(
            (
                c.rate_limit.ip_limit.requests_per_second,
                c.rate_limit.ip_limit.burst
            ),
            (2, 4)
        );
    }

    #[test]
    fn unknown_field_is_named() {
        let e = parse(r#"{"server": {"prot": 1}}"#).unwrap_err();
        assert_eq!(e.field, "server.prot");
        assert!(
            e.to_string().contains("config.json: field `server.prot`"),
            "{e}"
        );
    }

    #[test]
    fn wrong_type_is_named() {
        let e = parse(r#"{"server": {"port": "eighty"}}"#).unwrap_err();
        assert_eq!(e.field, "server.port");
    }

    #[test]
    fn connection_and_body_limits_are_validated() {
        let c = parse("{}").unwrap();
        assert_eq!(
            (
                c.server.max_connections_per_ip,
                c.server.max_buffered_body_bytes,
                c.server.max_buffered_body_bytes_per_ip,
                c.server.min_body_rate,
            ),
            (128, 256 << 20, 64 << 20, 1024)
        );
        // A per-address cap above max_connections simply never applies.
        assert!(
            parse(r#"{"server": {"max_connections": 8, "max_connections_per_ip": 128}}"#).is_ok()
        );
        for (text, field, says) in [
            (
                r#"{"server": {"max_connections_per_ip": 0}}"#,
                "server.max_connections_per_ip",
                "from 1",
            ),
            (
                r#"{"server": {"max_body_bytes": 100000000}}"#,
                "server.max_buffered_body_bytes_per_ip",
                "at least server.max_body_bytes",
            ),
            (
                r#"{"server": {"max_buffered_body_bytes": 1000}}"#,
                "server.max_buffered_body_bytes",
                "from server.max_buffered_body_bytes_per_ip",
            ),
            (
                r#"{"server": {"min_body_rate": 0}}"#,
                "server.min_body_rate",
                "bytes per second",
            ),
        ] {
            let e = parse(text).unwrap_err();
            assert_eq!(e.field, field, "{text}: {e}");
            assert!(e.problem.contains(says), "{text}: {e}");
        }
    }

    #[test]
    fn semantic_errors_name_the_field() {
        for (text, field) in [
            (r#"{"server": {"host": "localhost"}}"#, "server.host"),
            (r#"{"server": {"read_timeout": 0}}"#, "server.read_timeout"),
            (r#"{"server": {"base_path": "relay"}}"#, "server.base_path"),
            (
                r#"{"server": {"base_path": "/a/../b/"}}"#,
                "server.base_path",
            ),
            (
                r#"{"rate_limit": {"requests_per_second": 5, "burst": 0}}"#,
                "rate_limit.burst",
            ),
            (
                r#"{"providers": {"mine": {"base_url": "https://x.example"}}}"#,
                "providers.mine.auth",
            ),
            (
                r#"{"providers": {"openai": {"base_url": "ftp://x"}}}"#,
                "providers.openai.base_url",
            ),
            (
                r#"{"providers": {"openai": {"base_url": "https://x.example", "family": "OpenAI"}}}"#,
                "providers.openai.family",
            ),
            (
                r#"{"providers": {"Bad Name": {"base_url": "https://x.example", "auth": "bearer"}}}"#,
                "providers.Bad Name",
            ),
            (
                r#"{"trusted_proxies": ["10.0.0.0/33"]}"#,
                "trusted_proxies[0]",
            ),
            (
                r#"{"cors": {"allowed_origins": ["https://a.example/path"]}}"#,
                "cors.allowed_origins[0]",
            ),
            (
                r#"{"upstream": {"allowed_base_urls": ["http://plain.example"]}}"#,
                "upstream.allowed_base_urls[0]",
            ),
            (r#"{"store": {"type": "etcd"}}"#, "store.type"),
            (
                r#"{"upstream": {"forward_headers": ["x-title", "Transfer_Encoding"]}}"#,
                "upstream.forward_headers[1]",
            ),
            (
                r#"{"upstream": {"forward_headers": ["authorization"]}}"#,
                "upstream.forward_headers[0]",
            ),
            (
                r#"{"providers": {"openrouter": {"forward_headers": ["content-length"]}}}"#,
                "providers.openrouter.forward_headers[0]",
            ),
            (
                r#"{"providers": {"azure": {"forward_headers": ["x-title"]}}}"#,
                "providers.azure.base_url",
            ),
        ] {
            let e = parse(text).unwrap_err();
            assert_eq!(e.field, field, "{text}: {e}");
        }
    }

    #[test]
    fn store_defaults_to_a_sqlite_file_next_to_the_config() {
        let c = parse("{}").unwrap();
        assert_eq!(c.store.kind, "sqlite");
        let file = Path::new("/etc/relayapi/config.json");
        assert_eq!(
            c.store.sqlite_path(file),
            Path::new("/etc/relayapi/relayapi-usage.db")
        );
        let c = parse(r#"{"store": {"type": "sqlite", "path": "data/usage.db"}}"#).unwrap();
        assert_eq!(
            c.store.sqlite_path(file),
            Path::new("/etc/relayapi/data/usage.db")
        );
        assert_eq!(
            c.store.sqlite_path(Path::new("config.json")),
            Path::new("data/usage.db"),
            "a bare config file name means the current directory"
        );
        let c =
            parse(r#"{"store": {"type": "sqlite", "path": "/var/lib/relayapi/u.db"}}"#).unwrap();
        assert_eq!(
            c.store.sqlite_path(file),
            Path::new("/var/lib/relayapi/u.db")
        );
        let c =
            parse(r#"{"store": {"type": "redis", "url": "redis://127.0.0.1:6379/0"}}"#).unwrap();
        assert_eq!(c.store.key_prefix(), "relayapi:");
        assert_eq!(c.store.command_timeout(), Duration::from_secs(2));
        let c = parse(
            r#"{"store": {"type": "redis", "url": "redis://:pw@10.0.0.5:6380/2", "key_prefix": "r1:",
                          "connect_timeout": 5, "command_timeout": 1}}"#,
        )
        .unwrap();
        assert_eq!(
            (c.store.key_prefix(), c.store.connect_timeout()),
            ("r1:", Duration::from_secs(5))
        );
        assert!(parse(r#"{"store": {"type": "memory"}}"#).is_ok());
    }

    #[test]
    fn store_errors_name_the_field() {
        for (store, field) in [
            (r#"{"type": "etcd"}"#, "store.type"),
            (r#"{"type": "file"}"#, "store.type"),
            (r#"{"type": "redis"}"#, "store.url"),
            (
                r#"{"type": "redis", "url": "http://127.0.0.1"}"#,
                "store.url",
            ),
            (
                r#"{"type": "redis", "url": "rediss://127.0.0.1"}"#,
                "store.url",
            ),
            (
                r#"{"type": "redis", "url": "redis://x", "key_prefix": "a b"}"#,
                "store.key_prefix",
            ),
            (
                r#"{"type": "redis", "url": "redis://x", "command_timeout": 0}"#,
                "store.command_timeout",
            ),
            (
                r#"{"type": "redis", "url": "redis://x", "connect_timeout": 61}"#,
                "store.connect_timeout",
            ),
            (
                r#"{"type": "redis", "url": "redis://x", "path": "u.db"}"#,
                "store.path",
            ),
            (r#"{"type": "sqlite", "url": "redis://x"}"#, "store.url"),
            (
                r#"{"type": "sqlite", "command_timeout": 1}"#,
                "store.command_timeout",
            ),
            (r#"{"type": "sqlite", "path": ""}"#, "store.path"),
            (r#"{"type": "memory", "path": "u.db"}"#, "store.path"),
            (
                r#"{"type": "memory", "key_prefix": "r:"}"#,
                "store.key_prefix",
            ),
        ] {
            let text = format!(r#"{{"store": {store}}}"#);
            let e = parse(&text).unwrap_err();
            assert_eq!(e.field, field, "{text}: {e}");
        }
    }

    #[test]
    fn store_url_errors_do_not_repeat_the_password() {
        let e =
            parse(r#"{"store": {"type": "redis", "url": "redis://:hunter2@[::1"}}"#).unwrap_err();
        assert_eq!(e.field, "store.url");
        assert!(!e.to_string().contains("hunter2"), "{e}");
    }

    #[test]
    fn not_json_reports_the_file() {
        let e = parse("{").unwrap_err();
        assert!(e.to_string().starts_with("config.json"), "{e}");
    }

    #[test]
    fn tls_defaults_and_relative_paths() {
        let c = parse_config(
            r#"{"tls": {"cert_file": "certs/fullchain.pem", "key_file": "/abs/privkey.pem"}}"#,
            Path::new("/etc/relayapi/config.json"),
        )
        .unwrap();
        let t = c.tls.unwrap();
        assert_eq!(t.cert_file, Path::new("/etc/relayapi/certs/fullchain.pem"));
        assert_eq!(t.key_file, Path::new("/abs/privkey.pem"));
        assert_eq!(t.min_version, "1.2");
        assert_eq!(t.handshake_timeout(), Duration::from_secs(10));
        assert_eq!(t.reload_interval(), Some(Duration::from_secs(5)));
        assert_eq!(t.redirect_http_port, None);
        assert!(parse(r#"{"tls": null}"#).unwrap().tls.is_none());
        assert!(parse("{}").unwrap().tls.is_none());
        let off =
            parse(r#"{"tls": {"cert_file": "c", "key_file": "k", "reload_interval": 0}}"#).unwrap();
        assert_eq!(off.tls.unwrap().reload_interval(), None);
    }

    #[test]
    fn tls_errors_name_the_field() {
        for (tls, field) in [
            (r#"{"key_file": "k"}"#, "tls"),
            (r#"{"cert_file": "c"}"#, "tls"),
            (
                r#"{"cert_file": "c", "key_file": "k", "min_version": "1.1"}"#,
                "tls.min_version",
            ),
            (
                r#"{"cert_file": "c", "key_file": "k", "handshake_timeout": 0}"#,
                "tls.handshake_timeout",
            ),
            (
                r#"{"cert_file": "c", "key_file": "k", "reload_interval": 100000}"#,
                "tls.reload_interval",
            ),
            (
                r#"{"cert_file": "c", "key_file": "k", "redirect_http_port": 8080}"#,
                "tls.redirect_http_port",
            ),
            (
                r#"{"cert_file": "c", "key_file": "k", "redirect_http_port": 70000}"#,
                "tls.redirect_http_port",
            ),
            (
                r#"{"cert_file": "c", "key_file": "k", "alpn": ["h2"]}"#,
                "tls.alpn",
            ),
            (r#"{"cert_file": "", "key_file": "k"}"#, "tls.cert_file"),
            (
                r#"{"cert_file": "c", "key_file": "k", "redirect_http_port": 80, "redirect_host": "a..b"}"#,
                "tls.redirect_host",
            ),
            (
                r#"{"cert_file": "c", "key_file": "k", "redirect_http_port": 80, "redirect_host": "evil/x"}"#,
                "tls.redirect_host",
            ),
        ] {
            let text = format!(r#"{{"server": {{"port": 8080}}, "tls": {tls}}}"#);
            let e = parse(&text).unwrap_err();
            assert_eq!(e.field, field, "{text}: {e}");
        }
    }

    #[test]
    fn trusted_proxy_single_address() {
        let c = parse(r#"{"trusted_proxies": ["127.0.0.1", "10.0.0.0/8", "::1"]}"#).unwrap();
        let nets = c.trusted_proxy_nets();
        assert_eq!(nets.len(), 3);
        assert!(nets[0].contains("127.0.0.1".parse().unwrap()));
        assert!(!nets[0].contains("127.0.0.2".parse().unwrap()));
        assert!(nets[1].contains("10.9.8.7".parse().unwrap()));
    }
}
