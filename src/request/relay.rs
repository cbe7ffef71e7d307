//! The relay proper, for a request routed to the base path: admit it (`request/admit.rs`: token,
//! limits, reservation), take its body (streamed to the provider as it arrives when no policy reads it,
//! else read whole within the buffered-body budget and rewritten by the token's policy), connect to the
//! provider, build the request (`request/forward.rs`) and run the exchange (`request/exchange.rs`).
//! Everything that fails before the response head is sent becomes the relay's error answer, with the
//! reserved call given back when the request provably never left the relay; a failure mid-stream is an
//! [`Outcome::Cut`], since appending an error to a half-sent answer would corrupt it.

use std::sync::atomic::Ordering;

use serde_json::json;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::budget::charge;
use crate::budget::settle::Ending;
use crate::error::Error;
use crate::http::framing::BodyFraming;
use crate::request::admit::{self, Admitted};
use crate::request::context::Request;
use crate::request::exchange::{self, Outgoing};
use crate::request::forward;
use crate::request::outcome::Outcome;
use crate::request::policy;
use crate::request::realtime;
use crate::request::reply::{self, Body};
use crate::request::secrets;
use crate::request::webrtc;
use crate::server::shutdown::ShutdownWatch;
use crate::ws::handshake;

/// Relay one request: `after_base` is its path after the base path, `query` its query without `?`.
pub async fn relay<S: AsyncRead + AsyncWrite + Unpin>(
    req: &mut Request<'_, S>,
    after_base: &str,
    query: Option<&str>,
    shutdown: &ShutdownWatch,
) -> Outcome {
    if shutdown.is_shutting_down() {
        return reply::refuse(req, Error::ShuttingDown, Body::Unread).await;
    }
    let mut admitted = match admit::admit(req, after_base, query).await {
        Ok(a) => a,
        Err(e) => return reply::refuse(req, e, Body::Unread).await,
    };
    if handshake::wants_websocket(req.head) {
        // Boxed so a WebSocket session's state does not enlarge every connection's future.
        return match Box::pin(realtime::session(req, &mut admitted, shutdown)).await {
            Ok(outcome) => outcome,
            Err(error) => reply::refuse(req, error, Body::Unread).await,
        };
    }
    match forward_call(req, &mut admitted).await {
        Ok(outcome) => outcome,
        Err((error, body)) => reply::refuse(req, error, body).await,
    }
}

/// Everything after admission. On error, what became of the request's body.
async fn forward_call<S: AsyncRead + AsyncWrite + Unpin>(
    req: &mut Request<'_, S>,
    admitted: &mut Admitted,
) -> Result<Outcome, (Error, Body)> {
    let app = req.app;
    let claims = &*admitted.claims;
    // Only an authenticated, permitted, counted request may make the client send its body. A body no
    // policy reads is streamed to the provider as it arrives (unless it is already here whole); one a
    // policy reads is held whole, within the buffered-body budget taken before it is read.
    let framing = req.framing.body;
    let max_body = app.cfg.server.max_body_bytes;
    if matches!(framing, BodyFraming::Length(n) if n > max_body) {
        admit::give_back(app, claims).await;
        return Err((Error::BodyTooLarge, Body::Unread));
    }
    let buffered = req.client.buffered();
    // Only a body that is not already here whole is streamed, Content-Length or chunked alike; one
    // whose buffered start already breaks its framing is refused at once, before the provider is
    // contacted.
    let streamed = (framing != BodyFraming::None
        && !policy::inspects_body(claims)
        && !charge::budgeted(claims)
        && !secrets::is_secret_endpoint(admitted.provider.family, &admitted.loc.rest)
        && req.client.holds_whole_body(framing, max_body) == Ok(false))
    .then_some(framing);
    let mut share = app.limits.bodies.share(req.ip);
    let mut body = Vec::new();
    if streamed.is_none() {
        let whole_here = matches!(framing, BodyFraming::Length(n) if buffered >= n as usize);
        if let (BodyFraming::Length(n), false) = (framing, whole_here) {
            if let Err(e) = share.grow_to(n) {
                admit::give_back(app, claims).await;
                return Err((e, Body::Unread));
            }
        }
        if req.framing.expect_continue
            && framing != BodyFraming::None
            && req
                .client
                .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                .await
                .is_err()
        {
            admit::give_back(app, claims).await;
            return Err((Error::BadRequest("client gone"), Body::Unread));
        }
        let raw = match req
            .client
            .read_body_within(framing, max_body, (!whole_here).then_some(&mut share))
            .await
        {
            Ok(raw) => raw,
            Err(e) => {
                admit::give_back(app, claims).await;
                return Err((e, Body::Unread));
            }
        };
        let family = admitted.provider.family;
        // A WebRTC offer is not JSON: its model limits are read where the provider reads the model.
        let applied = if webrtc::is_call_setup(family, &admitted.loc.rest) {
            let ct = req.head.header("content-type");
            webrtc::apply(claims, ct, &mut admitted.loc, &raw).map(|()| policy::Applied {
                body: raw,
                path: None,
            })
        } else if secrets::is_secret_endpoint(family, &admitted.loc.rest)
            && secrets::names_session_model(&admitted.loc.rest)
        {
            // A provider secret's model is its session's (`session.model`), not a top-level one.
            secrets::apply_session_model(claims, raw)
                .map(|body| policy::Applied { body, path: None })
        } else {
            policy::apply(claims, family, &admitted.loc.rest, raw)
        };
        let applied = match applied {
            Ok(applied) => applied,
            Err(error) => {
                admit::give_back(app, claims).await;
                return Err((error, Body::Done));
            }
        };
        body = applied.body;
        if let Some(path) = applied.path {
            admitted.loc.rest = path;
        }
        // A provider secret never outlives the token that asked for it (`request/secrets.rs`).
        if secrets::is_secret_endpoint(family, &admitted.loc.rest) {
            let left = claims.exp.saturating_sub(app.clock.unix_now());
            body = match secrets::clamp_lifetime(&admitted.loc.rest, body, left) {
                Ok(b) => b,
                Err(error) => {
                    admit::give_back(app, claims).await;
                    return Err((error, Body::Done));
                }
            };
        }
    }
    // A budgeted call reserves its worst case now, with its output ceiling lowered to what the budget
    // can pay for; any other call records what its answer reports.
    let mut charge = if charge::budgeted(claims) {
        match Box::pin(charge::reserve(
            app,
            claims,
            &admitted.provider,
            &admitted.loc.rest,
            body,
        ))
        .await
        {
            Ok((prepared, charge)) => {
                body = prepared;
                charge
            }
            Err(error) => {
                admit::give_back(app, claims).await;
                return Err((error, Body::Done));
            }
        }
    } else {
        charge::unbudgeted(
            app,
            claims,
            &admitted.provider,
            &admitted.loc.rest,
            None,
            admitted.at,
        )
    };
    let body_state = if streamed.is_none() {
        Body::Done
    } else {
        Body::Unread
    };
    let provider = &admitted.provider;
    let conn = match app.upstream.pool.checkout(&provider.base).await {
        Ok(c) => c,
        Err(unreachable) => {
            // Connect and TLS failures happen before a byte of the request left: give the call back.
            admit::give_back(app, claims).await;
            charge.release(app, &claims.tid).await;
            app.obs
                .metrics
                .upstream_unreachable(unreachable.cause.label());
            app.obs.log.warn(
                "provider unreachable",
                json!({"provider": provider.name, "host": provider.base.authority(),
                       "cause": unreachable.cause.label(), "error": unreachable.detail, "rid": req.rid}),
            );
            return Err((unreachable.error(), body_state));
        }
    };

    // Forward, then relay the answer.
    app.obs.stats.proxied.fetch_add(1, Ordering::Relaxed);
    let outgoing = Outgoing {
        bytes: forward::request(
            req.head,
            provider,
            &admitted.api_key,
            &admitted.loc,
            &body,
            streamed,
        ),
        streamed,
        share,
        metering: charge.metering,
    };
    drop(body);
    let admitted = &*admitted;
    let exchanged = exchange::exchange(req, conn, outgoing, admitted, &mut charge).await;
    // Settle the call's spend if the exchange did not (an answer cut short, or none): by the rules
    // of `budget/settle.rs`.
    let ending = match &exchanged {
        Ok(Outcome::Answered { status, .. }) => Some(Ending::Answered(*status)),
        Ok(Outcome::Cut { status, .. }) => Some(Ending::Cut(Some(*status))),
        Ok(Outcome::Refused { .. }) => None,
        // The call was given back: the request provably never reached the provider.
        Err(_) if !req.reserved => None,
        Err(_) => Some(Ending::Unanswered),
    };
    match ending {
        Some(ending) => {
            if let Some(charged) = charge
                .settle(
                    app,
                    claims,
                    &admitted.provider.name,
                    req.metered.as_ref(),
                    ending,
                )
                .await
            {
                req.charged = Some(charged);
            }
        }
        None => charge.release(app, &claims.tid).await,
    }
    exchanged.map_err(|error| {
        // Part of a streamed body may have gone: the rest must never be read as a request.
        let body = if streamed.is_some() {
            Body::Cut
        } else {
            Body::Done
        };
        (error, body)
    })
}
