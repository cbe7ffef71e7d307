//! What a request must pass before the relay spends anything on it, in the order that keeps junk cheap:
//! the per-address bucket for every routed request (junk, 404s and preflights included), the method
//! and `Origin` syntax before any token work, then, only for a token proven authentic, the relay-wide
//! bucket. The pure rules (`method_forwarded`, `bearer_token`, `charges_ip`) are plain functions; the two
//! bucket checks are the thin shell over the in-process limiter (`limits/limiter.rs`) or, with
//! `rate_limit.shared`, the Redis one (`store/redis.rs`).
//!
//! Why this order: an unauthenticated request can be sent by anyone, so it may only spend its sender's
//! own allowance. Charging the relay-wide bucket before the token is proven let ten addresses sending
//! garbage tokens starve every valid client (issue 9, finding 4).

use std::net::IpAddr;

use crate::app::App;
use crate::error::{Error, LimitScope};
use crate::limits::limiter::client_key;
use crate::store::redis::{SharedRejection, SharedScope};

/// The methods forwarded to providers: every call in the OpenAI, Anthropic, Gemini and Azure OpenAI
/// data-plane APIs is one of these (docs/providers.md). `HEAD` (no provider documents it, and it would
/// spend a call for an empty answer), `PUT` (none of the providers' data-plane APIs use it), `OPTIONS`
/// other than a CORS preflight, `TRACE`, `CONNECT` and any other token, including lower-case spellings
/// (methods are case-sensitive, RFC 9110 §9.1), are refused with 405 before any token work.
pub const FORWARDED_METHODS: [&str; 4] = ["GET", "POST", "PATCH", "DELETE"];

/// The `Allow` header of a 405 on a relay URL (RFC 9110 §15.5.6).
pub const ALLOW_FORWARDED: &str = "GET, POST, PATCH, DELETE";

/// Whether `method` is forwarded (exact, case-sensitive match).
pub fn method_forwarded(method: &str) -> bool {
    FORWARDED_METHODS.contains(&method)
}

/// The credentials of an `Authorization: Bearer` value. The scheme is matched case-insensitively and
/// may be followed by one or more spaces (RFC 9110 §11.1, §11.4); anything that is not UTF-8 or names
/// another scheme carries no bearer credential.
pub fn bearer_token(value: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(value).ok()?;
    let (scheme, rest) = text.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let t = rest.trim_matches(|c| c == ' ' || c == '\t');
    (!t.is_empty()).then_some(t)
}

/// Whether a request to `path` from `ip` is charged to the per-address bucket when it is routed.
/// Everything is, except:
/// - `/health` and `/metrics` from the monitoring ranges (`metrics.allowed_ips`, loopback by default):
///   a load balancer's or Prometheus' probe must never be refused because the limit is tight, and those
///   addresses belong to the operator. Anyone else's `/health` is charged like any request.
/// - the admin API (`/admin/v1/`), which is charged only when its signature fails (`request/endpoints.rs`): a
///   tenant's backend revoking a thousand tokens after an incident must not be throttled to the
///   per-address rate meant for browsers, while junk admin requests still spend their sender's
///   allowance (and are refused once it is gone). Their cost before that is bounded: a body of at most
///   16 KiB and one HMAC.
pub fn charges_ip(app: &App, ip: IpAddr, path: &str) -> bool {
    if path.starts_with("/admin/v1/") {
        return false;
    }
    let monitoring = matches!(path, "/health" | "/metrics");
    !(monitoring && app.metrics_allowed.iter().any(|n| n.contains(ip)))
}

/// Charge one request to the client's own bucket. Refusals cost nothing further; limits never fail
/// open (a shared store that cannot answer refuses the request).
pub async fn charge_ip(app: &App, ip: IpAddr) -> Result<(), Error> {
    let rl = &app.cfg.rate_limit;
    if rl.shared {
        let limit = SharedScope {
            per_second: rl.ip_limit.requests_per_second,
            burst: rl.ip_limit.burst,
        };
        return shared(app, Some(client_key(ip)), limit).await;
    }
    app.limiter
        .check_ip(ip, app.clock.mono_now())
        .map_err(|d| Error::RateLimited(LimitScope::Ip, d))
}

/// Charge one authenticated call to the relay-wide bucket: only requests whose token is proven
/// authentic get here, before any store work.
pub async fn charge_global(app: &App) -> Result<(), Error> {
    let rl = &app.cfg.rate_limit;
    if rl.shared {
        let limit = SharedScope {
            per_second: rl.requests_per_second,
            burst: rl.burst,
        };
        return shared(app, None, limit).await;
    }
    app.limiter
        .check_global(app.clock.mono_now())
        .map_err(|d| Error::RateLimited(LimitScope::Global, d))
}

async fn shared(app: &App, client: Option<IpAddr>, limit: SharedScope) -> Result<(), Error> {
    if limit.per_second == 0 {
        return Ok(());
    }
    let checked = app
        .store
        .shared_rate_take(client, limit)
        .await
        .map_err(|_| Error::StoreUnavailable)?;
    checked.map_err(|r| match r {
        SharedRejection::Ip(d) => Error::RateLimited(LimitScope::Ip, d),
        SharedRejection::Global(d) => Error::RateLimited(LimitScope::Global, d),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_provider_methods_are_forwarded() {
        for m in ["GET", "POST", "PATCH", "DELETE"] {
            assert!(method_forwarded(m), "{m}");
            assert!(ALLOW_FORWARDED.split(", ").any(|a| a == m), "{m}");
        }
        for m in [
            "HEAD", "PUT", "OPTIONS", "TRACE", "CONNECT", "FOO", "get", "Post", "",
        ] {
            assert!(!method_forwarded(m), "{m}");
        }
    }

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        for v in [
            "Bearer rt1.x",
            "bearer rt1.x",
            "BEARER rt1.x",
            "bEaReR   rt1.x",
        ] {
            assert_eq!(bearer_token(v.as_bytes()), Some("rt1.x"), "{v}");
        }
        for v in [
            &b"Basic rt1.x"[..],
            b"Bearerrt1.x",
            b"Bearer ",
            b"Bearer",
            b"Bearer \xffrt1",
            b"Bear rt1.x",
        ] {
            assert_eq!(bearer_token(v), None, "{v:?}");
        }
    }
}
