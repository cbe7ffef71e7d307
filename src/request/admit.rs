//! What a request must pass before the relay spends anything on it, in the order that keeps junk cheap:
//! the per-address bucket for every routed request (junk, 404s and preflights included), the method
//! and `Origin` syntax before any token work, then the token proven, its time window and remembered
//! verdicts, its own limits (addresses, origins, endpoints, rate, concurrency), then, only for a token
//! proven authentic, the relay-wide bucket, and last the reservation of the call in the store. The
//! buckets are the in-process limiter (`limits/limiter.rs`) or, with `rate_limit.shared`, the store's
//! shared limit; which of them applies is decided here and nowhere else.
//!
//! Why this order: an unauthenticated request can be sent by anyone, so it may only spend its sender's
//! own allowance. Charging the relay-wide bucket before the token is proven let ten addresses sending
//! garbage tokens starve every valid client (issue 9, finding 4). The call is reserved before a body
//! byte is read, so a used-up or revoked token is refused without reading its body.

use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use serde_json::json;
use tokio::time::Instant;

use crate::app::{App, Keys};
use crate::error::{Error, LimitScope};
use crate::http::cors;
use crate::http::head::RequestHead;
use crate::limits::limiter::{client_key, ConcurrencyGuard, TokenRejection};
use crate::request::compat_v0;
use crate::request::context::{Request, Who};
use crate::request::methods::{method_forwarded, ALLOW_FORWARDED};
use crate::request::policy;
use crate::request::route::{locate, Located};
use crate::request::secrets;
use crate::request::webrtc;
use crate::store::{Reservation, SharedRejection, SharedScope, TokenRef};
use crate::token::cache::Verdict;
use crate::token::format::{self, Claims, TimeError};
use crate::token::secret::SecretString;
use crate::upstream::forward_path;
use crate::upstream::provider::Provider;

/// A request the relay has admitted: its token proven and within every limit, its call counted.
pub struct Admitted {
    pub claims: Arc<Claims>,
    pub provider: Arc<Provider>,
    pub api_key: SecretString,
    /// Where the token was found, and the provider-relative path and query to forward.
    pub loc: Located,
    /// The token's concurrency slot, held until the answer ends.
    pub _slot: ConcurrencyGuard,
    /// The Unix second the token was checked at, for what else the call needs of the wall clock.
    pub at: u64,
}

/// Admit a relayed request (`after_base`: its path after the base path; `query` without its `?`).
/// Every failure before the reservation costs the caller nothing; after it, the call counts unless it
/// is given back ([`give_back`]).
pub async fn admit<S>(
    req: &mut Request<'_, S>,
    after_base: &str,
    query: Option<&str>,
) -> Result<Admitted, Error> {
    let app = req.app;
    // 1. Requests no provider API needs are refused before any token work (the per-address bucket was
    // charged when the request was routed).
    if !method_forwarded(req.head.method()) {
        return Err(Error::MethodNotAllowed(ALLOW_FORWARDED));
    }
    if req.bad_origin {
        return Err(Error::OriginNotAllowed);
    }

    // 2-3. Find the token and the provider-relative path, and prove the token: a `relayapi-sdk` 1.0.0
    // token for a tenant that opted in (`request/compat_v0.rs`), else a v1 token.
    let now = app.clock.unix_now();
    let (loc, claims) = match compat_v0::prove(app, after_base, query, now) {
        Some(proved) => proved?,
        None => prove_v1(app, req.head, after_base, query, now)?,
    };
    req.who = Who::Token(Arc::clone(&claims));
    format::check_time(
        &claims,
        now,
        app.cfg.token.clock_skew,
        app.cfg.token.max_lifetime,
    )
    .map_err(|e| match e {
        TimeError::Expired => Error::TokenExpired,
        TimeError::NotYetValid => Error::TokenNotYetValid,
        TimeError::LifetimeTooLong => Error::TokenLifetimeTooLong,
    })?;
    // A token this relay already found revoked or used up costs nothing more: no store operation, no
    // body byte read.
    match app.keys.tokens.verdict(&claims.tid, &claims.jti, now) {
        Some(Verdict::Exhausted) => return Err(Error::TokenExhausted),
        Some(Verdict::Revoked) => return Err(Error::TokenRevoked),
        None => {}
    }

    // 4. Limits the token carries that need no body.
    let provider = app
        .upstream
        .registry
        .resolve(&claims.prv, claims.url.as_deref())
        .ok_or(Error::ProviderUnavailable)?;
    let api_key = api_key_for(&app.keys, &claims)?;
    if let Some(nets) = &claims.ips {
        if !nets.iter().any(|n| n.contains(req.ip)) {
            return Err(Error::IpNotAllowed);
        }
    }
    // A browser request from an origin that neither config nor the token allows would be blocked from
    // reading the answer, but a simple request would still spend a call: refuse it before that.
    if let Some(origin) = req.origin {
        if !cors::origin_allowed(origin, &app.cfg.cors, claims.origins.as_deref()) {
            return Err(Error::OriginNotAllowed);
        }
    }
    policy::check_endpoint(&claims, provider.family, &loc.rest)?;
    secrets::check(&claims, provider.family, &loc.rest)?;
    webrtc::check(&claims, provider.family, &loc.rest)?;
    // The token's own rate and concurrency come before the relay-wide limit: a public token shared by
    // many addresses spends its own allowance, never the budget of every other caller.
    // The key is only read when the token carries a limit: most calls build none.
    let limited = claims.rate.is_some() || claims.conc.is_some();
    let key = if limited {
        format!("{}/{}", claims.tid, claims.jti)
    } else {
        String::new()
    };
    // One reading of the monotonic clock for both limits (a clock read is ~25 ns, and a proxied
    // request made 17 of them).
    let mono = app.clock.mono_now();
    let slot = app
        .limits
        .tokens
        .try_acquire(
            &key,
            claims.rate.as_ref().map(|r| (r.n, r.s)),
            claims.conc,
            mono,
        )
        .map_err(|r| match r {
            TokenRejection::RateLimited(d) => Error::RateLimited(LimitScope::Token, d),
            TokenRejection::TooManyConcurrent => Error::TooManyConcurrent,
        })?;
    // 5. The relay-wide limit: spent by authenticated calls within their token's limits only, before
    // any store work.
    if let Err(e) = charge_global(app, mono).await {
        app.obs.stats.rate_limited.fetch_add(1, Ordering::Relaxed);
        return Err(e);
    }

    // 6. Reserve the call before a body byte is read. From here on the call counts, unless it provably
    // never leaves the relay (body or policy failure, provider unreachable), in which case it is given
    // back.
    reserve(app, &claims, now).await?;
    req.reserved = true;
    Ok(Admitted {
        claims,
        provider,
        api_key,
        loc,
        _slot: slot,
        at: now,
    })
}

/// Steps 2 and 3 for a v1 token: where it is (`request/route.rs`) and its claims, proven with the keys
/// in force at `now`.
fn prove_v1(
    app: &App,
    head: &RequestHead,
    after_base: &str,
    query: Option<&str>,
    now: u64,
) -> Result<(Located, Arc<Claims>), Error> {
    // Find the token and the provider-relative path.
    let mut loc = locate(head, after_base, query);
    let Some(token_text) = loc.token.take() else {
        app.obs.stats.rejected_token.fetch_add(1, Ordering::Relaxed);
        return Err(Error::InvalidToken);
    };
    forward_path::check(&loc.rest).map_err(Error::BadRequest)?;

    // Prove the token with the keys in force now (one read of the ring; a reload after it does not
    // change this request). Every failure up to here is the same 401.
    let claims = app
        .keys
        .tokens
        .verify(token_text.expose(), &app.keys.keyring.current(), now)
        .map_err(|_| {
            app.obs.stats.rejected_token.fetch_add(1, Ordering::Relaxed);
            Error::InvalidToken
        })?;
    drop(token_text);
    Ok((loc, claims))
}

/// Count the call in the store; remember a token found used up or revoked, so its next request costs
/// no store operation.
async fn reserve(app: &App, claims: &Claims, now: u64) -> Result<(), Error> {
    let tref = TokenRef {
        jti: &claims.jti,
        tenant: &claims.tid,
        iat: claims.iat,
        exp: claims.exp,
        max: claims.max,
    };
    let epoch = app.keys.tokens.epoch();
    let store_started = Instant::now();
    let reserved = app.store.reserve(tref, now).await;
    app.obs
        .metrics
        .store_latency
        .observe(store_started.elapsed());
    let verdict = match reserved {
        Ok(Reservation::Granted { .. }) => return Ok(()),
        Ok(Reservation::Exhausted) => Verdict::Exhausted,
        Ok(Reservation::Revoked) => Verdict::Revoked,
        Err(e) => {
            app.obs
                .log
                .warn("store unavailable", json!({"error": e.to_string()}));
            return Err(Error::StoreUnavailable);
        }
    };
    app.keys
        .tokens
        .remember(&claims.tid, &claims.jti, verdict, now, epoch);
    Err(match verdict {
        Verdict::Exhausted => Error::TokenExhausted,
        Verdict::Revoked => Error::TokenRevoked,
    })
}

/// Give back a reserved call that provably never left the relay, and drop a "used up" verdict this
/// relay may have remembered meanwhile (the call is available again).
pub async fn give_back(app: &App, claims: &Claims) {
    if app.store.refund(&claims.tid, &claims.jti).await.is_err() {
        app.obs
            .log
            .warn("refund failed", json!({"jti": claims.jti}));
    }
    app.keys.tokens.forget_exhausted(&claims.tid, &claims.jti);
}

fn api_key_for(keys: &Keys, claims: &Claims) -> Result<SecretString, Error> {
    if let Some(k) = &claims.key {
        return Ok(k.clone());
    }
    let name = claims.kref.as_deref().unwrap_or_default();
    keys.api_keys
        .get(name)
        .cloned()
        .ok_or(Error::ApiKeyUnavailable)
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
    !(monitoring && app.nets.monitoring.iter().any(|n| n.contains(ip)))
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
    app.limits
        .rate
        .check_ip(ip, app.clock.mono_now())
        .map_err(|d| Error::RateLimited(LimitScope::Ip, d))
}

/// Charge one authenticated call, at `now` (the monotonic clock), to the relay-wide bucket: only
/// requests whose token is proven authentic get here, before any store work.
pub async fn charge_global(app: &App, now: std::time::Instant) -> Result<(), Error> {
    let rl = &app.cfg.rate_limit;
    if rl.shared {
        let limit = SharedScope {
            per_second: rl.requests_per_second,
            burst: rl.burst,
        };
        return shared(app, None, limit).await;
    }
    app.limits
        .rate
        .check_global(now)
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
