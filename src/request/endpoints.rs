//! The answers the relay gives itself instead of forwarding: CORS preflights, `/health`, `/metrics` and
//! the admin API. None of them needs a token or counts as a call. `/health` answers `{"status":"ok"}`
//! to everyone and its details (version, uptime, counters) only to the `/metrics` ranges.
//! `request/route.rs` routes here; admin signatures are `admin/signing.rs`, admin semantics
//! `admin/handlers.rs`.

use std::net::IpAddr;
use std::sync::atomic::Ordering;

use serde_json::json;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::admin::handlers;
use crate::admin::signing;
use crate::app::App;
use crate::error::Error;
use crate::http::cors;
use crate::http::framing::BodyFraming;
use crate::http::respond::Response;
use crate::request::admit;
use crate::request::client::MAX_DISCARD_BYTES;
use crate::request::context::{Request, Who};
use crate::request::outcome::Outcome;
use crate::request::reply::{answer, refuse, Body};

/// Read and drop the body of a request the relay answers itself; `Err` is the answer to give instead
/// (the body could not be dropped, so the connection closes after it).
async fn drop_body<S: AsyncRead + AsyncWrite + Unpin>(
    req: &mut Request<'_, S>,
) -> Result<(), Outcome> {
    if req.framing.body == BodyFraming::None {
        return Ok(());
    }
    match req
        .client
        .discard_body(req.framing.body, MAX_DISCARD_BYTES)
        .await
    {
        Ok(()) => Ok(()),
        Err(e) => Err(refuse(req, e, Body::Cut).await),
    }
}

/// Answer a CORS preflight from config alone: preflights carry no credentials by design.
pub async fn preflight<S: AsyncRead + AsyncWrite + Unpin>(req: &mut Request<'_, S>) -> Outcome {
    if let Err(refused) = drop_body(req).await {
        return refused;
    }
    let head = req.head;
    let decision = cors::preflight(
        head.header("origin"),
        head.header("access-control-request-method"),
        head.header("access-control-request-headers"),
        &req.app.cfg.cors,
        None,
    );
    let r = match decision {
        cors::PreflightDecision::Allowed(headers) => {
            let mut r = Response::json(204, String::new());
            r.headers = headers;
            r
        }
        cors::PreflightDecision::Denied => Response::error(&Error::OriginNotAllowed),
    };
    answer(req, r, false).await
}

pub async fn health<S: AsyncRead + AsyncWrite + Unpin>(req: &mut Request<'_, S>) -> Outcome {
    let app = req.app;
    let head = req.head;
    if head.method() != "GET" && head.method() != "HEAD" {
        return refuse(req, Error::MethodNotAllowed("GET, HEAD"), Body::Unread).await;
    }
    if let Err(refused) = drop_body(req).await {
        return refused;
    }
    // Anyone may learn that the relay is up; version, uptime, store and traffic counters only the
    // monitoring ranges that may read `/metrics` (issue 9, finding 13).
    let body = if monitoring(app, req) {
        json!({
            "status": "ok",
            "version": env!("CARGO_PKG_VERSION"),
            "uptime_secs": app.obs.started.elapsed().as_secs(),
            "store": app.store.kind(),
            "requests": app.obs.stats.snapshot(),
        })
    } else {
        json!({"status": "ok"})
    }
    .to_string();
    let mut r = Response::json(200, body).header("cache-control", "no-store");
    r.headers
        .extend(cors::response_headers(req.origin, &app.cfg.cors, None));
    answer(req, r, head.method() == "HEAD").await
}

/// Whether the request comes from the ranges that may read `/metrics` (`metrics.allowed_ips`).
fn monitoring<S>(app: &App, req: &Request<'_, S>) -> bool {
    app.nets.monitoring.iter().any(|n| n.contains(req.ip))
}

pub async fn metrics<S: AsyncRead + AsyncWrite + Unpin>(req: &mut Request<'_, S>) -> Outcome {
    let app = req.app;
    // Metrics carry no secrets, but traffic shapes are nobody else's business: loopback (or the
    // configured ranges) only, and a plain 404 for everyone else so the endpoint is not advertised.
    if !monitoring(app, req) {
        return refuse(req, Error::NotFound, Body::Unread).await;
    }
    if req.head.method() != "GET" {
        return refuse(req, Error::MethodNotAllowed("GET"), Body::Unread).await;
    }
    let st = &app.obs.stats;
    let body = app.obs.metrics.render(&[
        (
            "relayapi_active_connections",
            "Open client connections.",
            st.active_connections.get(),
        ),
        (
            "relayapi_active_streams",
            "Responses being relayed right now.",
            st.active_streams.get(),
        ),
        (
            "relayapi_upstream_idle_connections",
            "Pooled idle provider connections.",
            app.upstream.pool.idle_count() as u64,
        ),
        (
            "relayapi_tracked_ips",
            "Entries in the per-IP rate-limit table.",
            app.limits.rate.tracked_ips() as u64,
        ),
        (
            "relayapi_uptime_seconds",
            "Seconds since start.",
            app.obs.started.elapsed().as_secs(),
        ),
    ]);
    let mut r = Response::json(200, body);
    r.headers = vec![(
        "content-type".into(),
        "text/plain; version=0.0.4; charset=utf-8".into(),
    )];
    answer(req, r, false).await
}

/// An admin request refused before its signature was proven is junk from its address: charge it to the
/// address's bucket (signed requests are not charged, see `admit::charges_ip`). Once the address's
/// allowance is gone, the answer is the rate-limit refusal instead of `e`.
async fn unproven_admin(app: &App, ip: IpAddr, e: Error) -> Error {
    match admit::charge_ip(app, ip).await {
        Ok(()) => e,
        Err(limited) => {
            app.obs.stats.rate_limited.fetch_add(1, Ordering::Relaxed);
            limited
        }
    }
}

/// The admin API: read the small body, prove the signature, then act for the proven tenant only.
pub async fn admin<S: AsyncRead + AsyncWrite + Unpin>(
    req: &mut Request<'_, S>,
    path: &str,
) -> Outcome {
    let (app, head, ip) = (req.app, req.head, req.ip);
    let framing = req.framing.body;
    if matches!(framing, BodyFraming::Length(n) if n > handlers::MAX_ADMIN_BODY) {
        let e = unproven_admin(app, ip, Error::BodyTooLarge).await;
        return refuse(req, e, Body::Unread).await;
    }
    let body = match req
        .client
        .read_body(framing, handlers::MAX_ADMIN_BODY)
        .await
    {
        Ok(b) => b,
        Err(e) => {
            let e = unproven_admin(app, ip, e).await;
            return refuse(req, e, Body::Done).await;
        }
    };
    let auth = head.header("authorization").unwrap_or_default();
    let now = app.clock.unix_now();
    // A tenant opted in to relayapi-sdk 1.0.0 tokens signs with the admin key derived from its
    // original .rai (`token/compat_v0/tenants.rs`), under the key id its config entry names.
    let verify =
        |ring: &_| signing::verify_request(ring, auth, head.method(), head.target(), &body, now);
    let Ok(tenant) =
        verify(&app.keys.keyring.current()).or_else(|_| verify(app.keys.compat.admin_keyring()))
    else {
        let e = unproven_admin(app, ip, Error::InvalidAdminSignature).await;
        return refuse(req, e, Body::Done).await;
    };
    let done = handlers::dispatch(app, &tenant, head.method(), path, &body).await;
    req.who = Who::Admin(tenant);
    match done {
        Ok((status, doc)) => {
            let r = Response::json(status, doc).header("cache-control", "no-store");
            answer(req, r, false).await
        }
        Err(e) => refuse(req, e, Body::Done).await,
    }
}
