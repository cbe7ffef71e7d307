//! The answers the relay gives itself instead of forwarding: CORS preflights, `/health`, `/metrics` and
//! the admin API. None of them needs a token or counts as a call. `/health` answers `{"status":"ok"}`
//! to everyone and its details (version, uptime, counters) only to the `/metrics` ranges. `request/relay.rs` routes here; admin
//! signatures are `admin/signing.rs`, admin semantics `admin/handlers.rs`.

use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::json;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::admin::handlers;
use crate::admin::signing;
use crate::app::App;
use crate::error::Error;
use crate::http::cors;
use crate::http::framing::{BodyFraming, RequestFraming};
use crate::http::head::RequestHead;
use crate::http::respond::Response;
use crate::request::admission;
use crate::request::conn::{Client, Next, MAX_DISCARD_BYTES};
use crate::request::relay::{reply_error, Ctx, Done};

/// Write a response the relay authored and say how the connection continues.
async fn send<S: AsyncRead + AsyncWrite + Unpin>(
    client: &mut Client<S>,
    framing: &RequestFraming,
    ctx: &Ctx,
    mut r: Response,
    head_only: bool,
) -> Done {
    r.headers.push(("x-request-id".into(), ctx.rid.clone()));
    r.close = !framing.keep_alive;
    let ok = client.write_all(&r.encode(head_only)).await.is_ok();
    Done {
        status: r.status,
        bytes: r.body.len() as u64,
        next: if ok && framing.keep_alive {
            Next::KeepAlive
        } else {
            Next::Close
        },
        reason: None,
    }
}

/// Answer a CORS preflight from config alone: preflights carry no credentials by design.
pub(crate) async fn preflight<S: AsyncRead + AsyncWrite + Unpin>(
    app: &App,
    client: &mut Client<S>,
    head: &RequestHead,
    framing: &RequestFraming,
    ctx: &Ctx,
) -> Done {
    if let Err(e) = client.discard_body(framing.body, MAX_DISCARD_BYTES).await {
        return reply_error(app, client, ctx, None, e, Some(true)).await;
    }
    let decision = cors::preflight(
        head.header("origin"),
        head.header("access-control-request-method"),
        head.header("access-control-request-headers"),
        &app.cfg.cors,
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
    send(client, framing, ctx, r, false).await
}

pub(crate) async fn health<S: AsyncRead + AsyncWrite + Unpin>(
    app: &App,
    client: &mut Client<S>,
    head: &RequestHead,
    framing: &RequestFraming,
    ctx: &Ctx,
) -> Done {
    if head.method != "GET" && head.method != "HEAD" {
        return reply_error(
            app,
            client,
            ctx,
            Some(framing),
            Error::MethodNotAllowed("GET, HEAD"),
            None,
        )
        .await;
    }
    if framing.body != BodyFraming::None {
        if let Err(e) = client.discard_body(framing.body, MAX_DISCARD_BYTES).await {
            return reply_error(app, client, ctx, None, e, Some(true)).await;
        }
    }
    // Anyone may learn that the relay is up; version, uptime, store and traffic counters only the
    // monitoring ranges that may read `/metrics` (issue 9, finding 13).
    let body = if app.metrics_allowed.iter().any(|n| n.contains(ctx.ip)) {
        json!({
            "status": "ok",
            "version": env!("CARGO_PKG_VERSION"),
            "uptime_secs": app.started.elapsed().as_secs(),
            "store": app.store.kind(),
            "requests": app.stats.snapshot(),
        })
    } else {
        json!({"status": "ok"})
    }
    .to_string();
    let mut r = Response::json(200, body).header("cache-control", "no-store");
    r.headers.extend(cors::response_headers(
        ctx.origin.as_deref().map(str::as_bytes),
        &app.cfg.cors,
        None,
    ));
    send(client, framing, ctx, r, head.method == "HEAD").await
}

pub(crate) async fn metrics<S: AsyncRead + AsyncWrite + Unpin>(
    app: &App,
    client: &mut Client<S>,
    head: &RequestHead,
    framing: &RequestFraming,
    ctx: &Ctx,
) -> Done {
    // Metrics carry no secrets, but traffic shapes are nobody else's business: loopback (or the
    // configured ranges) only, and a plain 404 for everyone else so the endpoint is not advertised.
    if !app.metrics_allowed.iter().any(|n| n.contains(ctx.ip)) {
        return reply_error(app, client, ctx, Some(framing), Error::NotFound, None).await;
    }
    if head.method != "GET" {
        return reply_error(
            app,
            client,
            ctx,
            Some(framing),
            Error::MethodNotAllowed("GET"),
            None,
        )
        .await;
    }
    let st = &app.stats;
    let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
    let body = app.metrics.render(&[
        (
            "relayapi_active_connections",
            "Open client connections.",
            g(&st.active_connections),
        ),
        (
            "relayapi_active_streams",
            "Responses being relayed right now.",
            g(&st.active_streams),
        ),
        (
            "relayapi_upstream_idle_connections",
            "Pooled idle provider connections.",
            app.upstream.idle_count() as u64,
        ),
        (
            "relayapi_tracked_ips",
            "Entries in the per-IP rate-limit table.",
            app.limiter.tracked_ips() as u64,
        ),
        (
            "relayapi_uptime_seconds",
            "Seconds since start.",
            app.started.elapsed().as_secs(),
        ),
    ]);
    let mut r = Response::json(200, body);
    r.headers = vec![(
        "content-type".into(),
        "text/plain; version=0.0.4; charset=utf-8".into(),
    )];
    send(client, framing, ctx, r, false).await
}

/// An admin request refused before its signature was proven is junk from its address: charge it to the
/// address's bucket (signed requests are not charged, see `admission::charges_ip`). Once the address's
/// allowance is gone, the answer is the rate-limit refusal instead of `e`.
async fn unproven_admin(app: &App, ctx: &Ctx, e: Error) -> Error {
    match admission::charge_ip(app, ctx.ip).await {
        Ok(()) => e,
        Err(limited) => {
            app.stats.rate_limited.fetch_add(1, Ordering::Relaxed);
            limited
        }
    }
}

/// The admin API: read the small body, prove the signature, then act for the proven tenant only.
pub(crate) async fn admin<S: AsyncRead + AsyncWrite + Unpin>(
    app: &App,
    client: &mut Client<S>,
    head: &RequestHead,
    framing: &RequestFraming,
    ctx: &mut Ctx,
    path: &str,
) -> Done {
    if matches!(framing.body, BodyFraming::Length(n) if n > handlers::MAX_ADMIN_BODY) {
        let e = unproven_admin(app, ctx, Error::BodyTooLarge).await;
        return reply_error(app, client, ctx, Some(framing), e, None).await;
    }
    let body = match client
        .read_body(framing.body, handlers::MAX_ADMIN_BODY)
        .await
    {
        Ok(b) => b,
        Err(e) => {
            let e = unproven_admin(app, ctx, e).await;
            return reply_error(app, client, ctx, Some(framing), e, Some(true)).await;
        }
    };
    let auth = head.header("authorization").unwrap_or_default();
    let now = app.clock.unix_now();
    let Ok(tenant) =
        signing::verify_request(&app.keyring, auth, &head.method, &head.target, &body, now)
    else {
        let e = unproven_admin(app, ctx, Error::InvalidAdminSignature).await;
        return reply_error(app, client, ctx, Some(framing), e, Some(true)).await;
    };
    ctx.tenant = Some(tenant.clone());
    match handlers::dispatch(app, &tenant, &head.method, path, &body).await {
        Ok((status, doc)) => {
            let r = Response::json(status, doc).header("cache-control", "no-store");
            send(client, framing, ctx, r, false).await
        }
        Err(e) => reply_error(app, client, ctx, Some(framing), e, Some(true)).await,
    }
}
