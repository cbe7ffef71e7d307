//! `config.json` checked and turned into the types the relay runs with (`config/types.rs`), section by
//! section in a fixed order so the first problem is always the one reported. Each error names the field
//! and says what a valid value looks like; the stores' and TLS's own rules are `config/store.rs` and
//! `config/tls.rs`, the shared grammar (names, base paths, IP ranges, URLs) is `text/`'s.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use crate::config::schema;
use crate::config::types::{Config, MetricsConfig, ProviderOverride, ServerConfig, UpstreamConfig};
use crate::text::base_url::{parse_base_url, BaseUrl};
use crate::text::file_error::FileError;
use crate::text::grammar::{is_base_path, is_key_name, MAX_KEY_NAME_LEN};
use crate::text::host::{is_reg_name, parse_port, split_authority};
use crate::text::ipnet::{parse_net, IpNet};
use crate::upstream::builtins::{builtin, valid_name, ApiFamily, AuthStyle, AZURE};
use crate::upstream::forward_headers::check_name;

/// Longest timeout of the server and upstream legs: one day. Longer is a typo, not a deployment.
const MAX_TIMEOUT_SECS: u64 = 86_400;
/// Head size bounds: below 1 KiB real clients' heads do not fit; above 1 MiB a head is an attack.
const HEAD_BYTES: std::ops::RangeInclusive<usize> = 1024..=1024 * 1024;
/// Header count bounds.
const HEADER_COUNT: std::ops::RangeInclusive<usize> = 8..=1000;
/// Shortest URI limit: relay URLs carry a token of up to 4 KiB, but the check must stay usable.
const MIN_URI_BYTES: usize = 256;
/// Largest request body: 1 GiB.
const MAX_BODY_BYTES: u64 = 1 << 30;
/// Largest total of buffered bodies: 1 TiB, a bound on typos rather than on machines.
const MAX_BUFFERED_BYTES: u64 = 1 << 40;
/// Largest minimum body rate: 1 GiB/s.
const MAX_MIN_BODY_RATE: u64 = 1 << 30;
/// Most connections, in all or per address.
const MAX_CONNECTIONS: usize = 1_000_000;
/// Largest clock skew tolerated: one hour.
const MAX_CLOCK_SKEW_SECS: u64 = 3600;
/// Most idle pooled connections per upstream host.
const MAX_POOL_IDLE_PER_HOST: usize = 10_000;

/// Checks `raw` (read from `file`) and returns the configuration in its types.
pub(super) fn config(raw: schema::Config, file: &Path) -> Result<Config, FileError> {
    let err = |field: &str, problem: &str| FileError::new(file, field, problem);
    let server = server(&raw.server, &raw.upstream).map_err(|(f, p)| err(f, p))?;
    let rl = &raw.rate_limit;
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
    if rl.shared && raw.store.kind != "redis" {
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
    if raw.token.max_lifetime == 0 {
        return Err(err("token.max_lifetime", "expected seconds, at least 1"));
    }
    if raw.token.clock_skew > MAX_CLOCK_SKEW_SECS {
        return Err(err("token.clock_skew", "expected seconds from 0 to 3600"));
    }
    let mut providers = std::collections::BTreeMap::new();
    for (name, p) in &raw.providers {
        let typed = provider(name, p).map_err(|(f, p)| err(&f, &p))?;
        providers.insert(name.clone(), typed);
    }
    for (name, src) in &raw.api_keys {
        if name.is_empty() || name.len() > MAX_KEY_NAME_LEN {
            return Err(err(
                &format!("api_keys.{name}"),
                "expected a name of 1 to 64 characters",
            ));
        }
        if !is_key_name(name) {
            return Err(err(
                &format!("api_keys.{name}"),
                "expected a name of 1 to 64 characters from A-Z a-z 0-9 . _ - (what a token's `kref` can name)",
            ));
        }
        if src.env.is_empty() {
            return Err(err(
                &format!("api_keys.{name}.env"),
                "expected the name of an environment variable",
            ));
        }
    }
    super::compat::check(
        &raw.token.compat_v0,
        |p| builtin(p).is_some() || raw.providers.contains_key(p),
        |k| raw.api_keys.contains_key(k),
    )
    .map_err(|(f, p)| err(&f, &p))?;
    let upstream = upstream(&raw.upstream).map_err(|(f, p)| err(&f, &p))?;
    let trusted_proxies =
        nets("trusted_proxies", &raw.trusted_proxies).map_err(|(f, p)| err(&f, p))?;
    let allowed_ips =
        nets("metrics.allowed_ips", &raw.metrics.allowed_ips).map_err(|(f, p)| err(&f, p))?;
    for (i, o) in raw.cors.allowed_origins.iter().enumerate() {
        if o != "*" && !valid_origin(o) {
            return Err(err(
                &format!("cors.allowed_origins[{i}]"),
                "expected \"*\" or an origin like \"https://app.example.com\" (scheme://host[:port], no path)",
            ));
        }
    }
    let tls = match &raw.tls {
        Some(t) => Some(super::tls::tls(t, server.addr, file).map_err(|(f, p)| err(f, p))?),
        None => None,
    };
    let store = super::store::store(&raw.store, file).map_err(|(f, p)| err(f, &p))?;
    let budgets = super::budgets::budgets(&raw.budgets).map_err(|(f, p)| err(&f, &p))?;
    Ok(Config {
        server,
        rate_limit: raw.rate_limit,
        token: raw.token,
        providers,
        api_keys: raw.api_keys,
        upstream,
        trusted_proxies,
        cors: raw.cors,
        store,
        log: raw.log,
        metrics: MetricsConfig { allowed_ips },
        tls,
        budgets,
    })
}

/// `server`, and the upstream timeouts that share its bounds. Errors are `(field, problem)`.
fn server(
    s: &schema::ServerConfig,
    up: &schema::UpstreamConfig,
) -> Result<ServerConfig, (&'static str, &'static str)> {
    let Ok(host) = s.host.parse::<IpAddr>() else {
        return Err((
            "server.host",
            "expected an IP address to listen on, e.g. \"127.0.0.1\" or \"0.0.0.0\"",
        ));
    };
    for (name, v) in [
        ("server.read_timeout", s.read_timeout),
        ("server.write_timeout", s.write_timeout),
        ("server.idle_timeout", s.idle_timeout),
        ("upstream.connect_timeout", up.connect_timeout),
        ("upstream.handshake_timeout", up.handshake_timeout),
        (
            "upstream.response_header_timeout",
            up.response_header_timeout,
        ),
        ("upstream.read_idle_timeout", up.read_idle_timeout),
    ] {
        if v == 0 || v > MAX_TIMEOUT_SECS {
            return Err((name, "expected a number of seconds from 1 to 86400"));
        }
    }
    if !HEAD_BYTES.contains(&s.max_header_bytes) {
        return Err((
            "server.max_header_bytes",
            "expected bytes from 1024 to 1048576",
        ));
    }
    if !HEADER_COUNT.contains(&s.max_headers) {
        return Err(("server.max_headers", "expected a count from 8 to 1000"));
    }
    if !(MIN_URI_BYTES..=s.max_header_bytes).contains(&s.max_uri_bytes) {
        return Err((
            "server.max_uri_bytes",
            "expected bytes from 256 to server.max_header_bytes",
        ));
    }
    if s.max_body_bytes == 0 || s.max_body_bytes > MAX_BODY_BYTES {
        return Err((
            "server.max_body_bytes",
            "expected bytes from 1 to 1073741824",
        ));
    }
    if s.max_buffered_body_bytes_per_ip < s.max_body_bytes {
        return Err((
            "server.max_buffered_body_bytes_per_ip",
            "expected at least server.max_body_bytes, so one body of the largest allowed size can be held (default 67108864, 64 MiB)",
        ));
    }
    if s.max_buffered_body_bytes < s.max_buffered_body_bytes_per_ip
        || s.max_buffered_body_bytes > MAX_BUFFERED_BYTES
    {
        return Err((
            "server.max_buffered_body_bytes",
            "expected bytes from server.max_buffered_body_bytes_per_ip to 1099511627776, well below the machine's memory (default 268435456, 256 MiB)",
        ));
    }
    if s.min_body_rate == 0 || s.min_body_rate > MAX_MIN_BODY_RATE {
        return Err((
            "server.min_body_rate",
            "expected bytes per second from 1 to 1073741824 (default 1024: slow mobile uploads still pass)",
        ));
    }
    if s.max_connections == 0 || s.max_connections > MAX_CONNECTIONS {
        return Err((
            "server.max_connections",
            "expected a count from 1 to 1000000",
        ));
    }
    // Above max_connections it simply never applies; that is allowed, so a small max_connections
    // needs no second edit.
    if s.max_connections_per_ip == 0 || s.max_connections_per_ip > MAX_CONNECTIONS {
        return Err((
            "server.max_connections_per_ip",
            "expected a count from 1 to 1000000 (e.g. 128: an office behind one NAT address, 6 connections per browser)",
        ));
    }
    if !is_base_path(&s.base_path) {
        return Err((
            "server.base_path",
            "expected a path that starts and ends with '/' made of letters, digits, '-', '_', '.' and '/', e.g. \"/relayapi/\"",
        ));
    }
    Ok(ServerConfig {
        addr: SocketAddr::new(host, s.port),
        read_timeout: Duration::from_secs(s.read_timeout),
        write_timeout: Duration::from_secs(s.write_timeout),
        idle_timeout: Duration::from_secs(s.idle_timeout),
        max_header_bytes: s.max_header_bytes,
        max_headers: s.max_headers,
        max_uri_bytes: s.max_uri_bytes,
        max_body_bytes: s.max_body_bytes,
        max_buffered_body_bytes: s.max_buffered_body_bytes,
        max_buffered_body_bytes_per_ip: s.max_buffered_body_bytes_per_ip,
        min_body_rate: s.min_body_rate,
        max_connections: s.max_connections,
        max_connections_per_ip: s.max_connections_per_ip,
        shutdown_grace: Duration::from_secs(s.shutdown_grace),
        base_path: s.base_path.clone(),
    })
}

/// `providers.<name>`. Errors are `(field, problem)`.
fn provider(
    name: &str,
    p: &schema::ProviderOverride,
) -> Result<ProviderOverride, (String, String)> {
    let field = |member: &str| format!("providers.{name}{member}");
    if !valid_name(name) {
        return Err((
            field(""),
            "expected a provider name of 1 to 32 characters from a-z, 0-9, '_' and '-'".into(),
        ));
    }
    let base_url = match &p.base_url {
        Some(u) => Some(parse_base_url(u).map_err(|problem| (field(".base_url"), problem))?),
        None if builtin(name).is_none() => {
            return Err((
                field(".base_url"),
                "is required for a provider that is not built in (and for azure), e.g. \"https://api.example.com/v1\"".into(),
            ));
        }
        None => None,
    };
    for (i, h) in p.forward_headers.iter().enumerate() {
        check_name(h)
            .map_err(|problem| (field(&format!(".forward_headers[{i}]")), problem.into()))?;
    }
    let auth = match &p.auth {
        Some(a) => Some(AuthStyle::parse(a).ok_or_else(|| {
            (
                field(".auth"),
                "expected one of \"bearer\", \"x-api-key\", \"x-goog-api-key\", \"api-key\""
                    .to_string(),
            )
        })?),
        None if builtin(name).is_none() && name != AZURE => {
            return Err((
                field(".auth"),
                "a provider that is not built in needs an auth style: \"bearer\", \"x-api-key\", \"x-goog-api-key\" or \"api-key\"".into(),
            ));
        }
        None => None,
    };
    let family = match &p.family {
        Some(f) => Some(ApiFamily::parse(f).ok_or_else(|| {
            (
                field(".family"),
                format!(
                    "expected {} (the API the provider speaks; it decides how token limits on models and max tokens are enforced)",
                    ApiFamily::NAMES
                ),
            )
        })?),
        None => None,
    };
    Ok(ProviderOverride {
        base_url,
        auth,
        forward_headers: p.forward_headers.clone(),
        family,
    })
}

/// `upstream`, after `server` has checked its timeouts. Errors are `(field, problem)`.
fn upstream(up: &schema::UpstreamConfig) -> Result<UpstreamConfig, (String, String)> {
    let mut allowed_base_urls: Vec<BaseUrl> = Vec::new();
    for (i, u) in up.allowed_base_urls.iter().enumerate() {
        let field = format!("upstream.allowed_base_urls[{i}]");
        match parse_base_url(u) {
            Ok(b) if b.tls => allowed_base_urls.push(b),
            Ok(_) => return Err((field, "expected an https:// URL".into())),
            Err(problem) => return Err((field, problem)),
        }
    }
    for (i, h) in up.forward_headers.iter().enumerate() {
        check_name(h)
            .map_err(|problem| (format!("upstream.forward_headers[{i}]"), problem.into()))?;
    }
    if up.pool_max_idle_per_host > MAX_POOL_IDLE_PER_HOST {
        return Err((
            "upstream.pool_max_idle_per_host".into(),
            "expected a count from 0 to 10000".into(),
        ));
    }
    Ok(UpstreamConfig {
        connect_timeout: Duration::from_secs(up.connect_timeout),
        handshake_timeout: Duration::from_secs(up.handshake_timeout),
        response_header_timeout: Duration::from_secs(up.response_header_timeout),
        read_idle_timeout: Duration::from_secs(up.read_idle_timeout),
        pool_idle_timeout: Duration::from_secs(up.pool_idle_timeout),
        pool_max_idle_per_host: up.pool_max_idle_per_host,
        extra_ca_file: up.extra_ca_file.clone(),
        allowed_base_urls,
        forward_headers: up.forward_headers.clone(),
    })
}

/// A list of IP addresses and CIDR ranges (`trusted_proxies`, `metrics.allowed_ips`).
fn nets(name: &str, list: &[String]) -> Result<Vec<IpNet>, (String, &'static str)> {
    list.iter()
        .enumerate()
        .map(|(i, p)| {
            parse_net(p).ok_or_else(|| {
                (
                    format!("{name}[{i}]"),
                    "expected an IP address or CIDR range, e.g. \"10.0.0.0/8\"",
                )
            })
        })
        .collect()
}

/// `scheme://host[:port]` as browsers send it in `Origin` (`cors.allowed_origins`): `http` or
/// `https`, a registered name (`text/host.rs`; any case, matching ignores it) or a bracketed IPv6
/// address, and an optional port; nothing after it.
pub fn valid_origin(o: &str) -> bool {
    let Some(rest) = o
        .strip_prefix("https://")
        .or_else(|| o.strip_prefix("http://"))
    else {
        return false;
    };
    let Some((host, port)) = split_authority(rest) else {
        return false;
    };
    let host_ok = if rest.starts_with('[') {
        host.parse::<Ipv6Addr>().is_ok()
    } else {
        is_reg_name(host)
    };
    host_ok && port.is_none_or(|p| parse_port(p).is_some())
}
