//! A relayed WebSocket session (OpenAI Realtime, Azure OpenAI realtime, Gemini Live), once the request
//! is admitted: its token proven and within its limits, the session counted as one call. The client's
//! upgrade is checked (`ws/handshake.rs`), the token's model limits applied to the model in the query
//! and to the models the client's events name (`ws/model_guard.rs`), the provider's handshake made
//! with the real key (and the token's subprotocol entry left out), its 101 proven before the client
//! gets one, then frames are spliced both ways (`ws/session.rs`) while the provider's usage events are
//! charged as they come: a budgeted session is closed with 1008 after the response that used its
//! budget up, and any session with 1008 when the token's `ssec` seconds have passed.

use serde_json::json;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::time::Instant;

use crate::budget::charge;
use crate::budget::lines::lines_for;
use crate::error::Error;
use crate::http::framing::BodyFraming;
use crate::http::head::{parse_response_head, HeadLimits};
use crate::meter::usage::UsageFamily;
use crate::request::admit::{self, Admitted};
use crate::request::context::Request;
use crate::request::forward;
use crate::request::outcome::{Cut, Outcome};
use crate::request::query_model;
use crate::server::shutdown::ShutdownWatch;
use crate::store::{Spend, SpendLine, SpendReservation};
use crate::token::format::Claims;
use crate::upstream::provider::ApiFamily;
use crate::ws::handshake::{self, Upgrade};
use crate::ws::model_guard::{AllowedModels, ModelGuard};
use crate::ws::session::{End, Limits, Session, Step};

/// Largest frame payload accepted from either side: realtime audio comes in chunks far below this.
const MAX_FRAME: u64 = 16 * 1024 * 1024;
/// Cap on the provider's handshake answer head.
const MAX_RESPONSE_HEAD: usize = 64 * 1024;

/// Run a WebSocket session for an admitted request. Failures before the client's 101 are returned as
/// the relay's error answer (the call given back when nothing reached the provider).
pub async fn session<S: AsyncRead + AsyncWrite + Unpin>(
    req: &mut Request<'_, S>,
    admitted: &mut Admitted,
    shutdown: &ShutdownWatch,
) -> Result<Outcome, Error> {
    let app = req.app;
    let claims = std::sync::Arc::clone(&admitted.claims);
    let claims = &*claims;
    let upgrade = match prepare(req, admitted).await {
        Ok(u) => u,
        Err(e) => {
            admit::give_back(app, claims).await;
            return Err(e);
        }
    };
    let budget_lines = if charge::budgeted(claims) {
        match open_budget(app, claims).await {
            Ok(lines) => Some(lines),
            Err(e) => {
                admit::give_back(app, claims).await;
                return Err(e);
            }
        }
    } else {
        None
    };
    match handshake_and_run(req, admitted, upgrade, budget_lines.as_deref(), shutdown).await {
        Ok(outcome) => Ok(outcome),
        Err((e, reached)) => {
            // Nothing was relayed: the session's call is given back when the provider never saw it.
            if !reached {
                admit::give_back(app, claims).await;
                if let Some(lines) = &budget_lines {
                    let one = Spend {
                        calls: 1,
                        ..Spend::default()
                    };
                    let _ = app
                        .store
                        .spend_settle(&claims.tid, lines, &one, &Spend::default())
                        .await;
                }
            }
            Err(e)
        }
    }
}

/// The provider's handshake, the client's 101 and the session. Errors say whether the provider may
/// have seen the request.
async fn handshake_and_run<S: AsyncRead + AsyncWrite + Unpin>(
    req: &mut Request<'_, S>,
    admitted: &Admitted,
    upgrade: Upgrade,
    budget_lines: Option<&[SpendLine]>,
    shutdown: &ShutdownWatch,
) -> Result<Outcome, (Error, bool)> {
    let app = req.app;
    let claims = &*admitted.claims;
    let provider = &admitted.provider;
    let mut conn = match app.upstream.pool.checkout(&provider.base).await {
        Ok(c) => c,
        Err(unreachable) => {
            app.obs
                .metrics
                .upstream_unreachable(unreachable.cause.label());
            return Err((unreachable.error(), false));
        }
    };
    let mut rng = crate::token::format::os_rng();
    let mut random = [0u8; 20];
    rng(&mut random);
    let key = handshake::new_key(random[..16].try_into().expect("16 bytes"));
    let mut head = forward::request(
        req.head,
        provider,
        &admitted.api_key,
        &admitted.loc,
        b"",
        None,
    );
    // The forwarded head ends with its blank line: the upgrade fields go before it.
    head.truncate(head.len() - 2);
    head.extend_from_slice(handshake::upstream_fields(&key, &upgrade.protocols).as_bytes());
    head.extend_from_slice(b"\r\n");
    let up = &app.cfg.upstream;
    if !crate::ws::session::send(&mut conn.stream, &head, up.read_idle_timeout).await {
        return Err((Error::UpstreamProtocol, false));
    }
    // The provider's answer to the upgrade: a 101 proven against our key, else its refusal.
    let mut rbuf = Vec::with_capacity(4096);
    let deadline = Instant::now() + up.response_header_timeout;
    let limits = HeadLimits {
        max_head_bytes: MAX_RESPONSE_HEAD,
        max_headers: 256,
        max_uri_bytes: MAX_RESPONSE_HEAD,
    };
    let resp = loop {
        if let Some(r) =
            parse_response_head(&rbuf, &limits).map_err(|_| (Error::UpstreamProtocol, true))?
        {
            break r;
        }
        match tokio::time::timeout_at(deadline, conn.stream.read_buf(&mut rbuf)).await {
            Ok(Ok(n)) if n > 0 => {}
            Ok(_) => return Err((Error::UpstreamProtocol, true)),
            Err(_) => return Err((Error::UpstreamTimeout, true)),
        }
    };
    let chosen = match handshake::check_response(&resp, &key, &upgrade.protocols) {
        Ok(chosen) => chosen,
        Err(why) => {
            app.obs.log.warn(
                "provider refused the websocket upgrade",
                json!({"provider": provider.name, "status": resp.status,
                       "why": format!("{why:?}"), "rid": req.rid}),
            );
            // A provider that refused the session billed nothing: the call is given back.
            return Err(if resp.status == 101 {
                (Error::UpstreamProtocol, true)
            } else {
                (Error::UpstreamRefusedUpgrade(resp.status), false)
            });
        }
    };
    rbuf.drain(..resp.head_len);
    let hello = handshake::client_switching(&upgrade.key, chosen.as_deref(), &req.rid);
    if req.client.write_all(&hello).await.is_err() {
        return Ok(Outcome::client_gone());
    }
    req.ttfb = Some(req.started.elapsed());
    let _streaming = app.obs.stats.active_streams.enter();
    let (client, early) = req.client.take_over();
    // The 101 must not wait in a TLS buffer for the session's first frame (Gemini Live sends none
    // before the client's `setup`).
    if !crate::ws::session::send(client, b"", app.cfg.server.write_timeout()).await {
        return Ok(Outcome::client_gone());
    }
    let session_limits = Limits {
        max_frame: MAX_FRAME,
        idle: up.read_idle_timeout,
        write_timeout: app.cfg.server.write_timeout(),
        lifetime: Some(session_lifetime(
            claims,
            app.clock.unix_now(),
            app.cfg.token.clock_skew,
        )),
    };
    let family = realtime_family(provider.family);
    let mask = random[16..].try_into().expect("4 bytes");
    let mut upstream = conn.stream;
    let mut s = Session::new(
        client,
        &mut upstream,
        session_limits,
        family,
        mask,
        early,
        shutdown.clone(),
    );
    // The model limits hold for the models the client's events name, as for the one in the URL.
    let forced = claims.ext.as_ref().and_then(|e| e.rep_m.as_deref());
    let gemini = provider.family == ApiFamily::Gemini;
    if let Some(allowed) = AllowedModels::of(claims.models.as_deref(), forced, gemini) {
        s.guard_models(ModelGuard::new(allowed));
    }
    // Bytes the provider sent right after its 101 belong to the session.
    let mut total = Spend {
        calls: 1,
        ..Spend::default()
    };
    if !rbuf.is_empty() {
        // Passed through the session's own checks by feeding them as the first upstream read.
        s.push_upstream(rbuf);
    }
    let end = loop {
        match s.next().await {
            Step::Usage(u) => {
                let used = Spend {
                    calls: 0,
                    input: u.input,
                    output: u.output,
                    cached_input: u.cached_input,
                    cost: 0,
                };
                total = total.adjusted(&used, &Spend::default());
                if budget_lines.is_some() && !charge_response(app, claims, &used).await {
                    s.close(1008, "spend budget exhausted").await;
                }
            }
            Step::End(end) => break end,
        }
    };
    let sent = s.sent;
    drop(s);
    // An unbudgeted session records its usage once, at its end.
    if budget_lines.is_none() && total.tokens() > 0 {
        let now = app.clock.unix_now();
        let lines = lines_for(claims, now);
        if app.usage.add(&claims.tid, &lines[0], &total) {
            app.usage.flush(&app.store, &app.obs.log).await;
        }
    }
    req.charged = Some(total);
    app.obs.log.info(
        "websocket session ended",
        json!({"rid": req.rid, "end": format!("{end:?}"), "in_tok": total.input, "out_tok": total.output}),
    );
    Ok(match end {
        End::Closed
        | End::ClosedByRelay
        | End::TimeLimit
        | End::Refused(_)
        | End::Idle
        | End::ShuttingDown => Outcome::Answered {
            status: 101,
            bytes: sent,
            close: true,
        },
        End::ClientGone | End::ClientProtocol(_) => Outcome::Cut {
            status: 101,
            bytes: sent,
            cut: Cut::ClientClosed,
        },
        End::UpstreamGone | End::UpstreamProtocol(_) => Outcome::Cut {
            status: 101,
            bytes: sent,
            cut: Cut::UpstreamEof,
        },
    })
}

/// Everything checked before the provider is contacted: the upgrade itself, the provider's support
/// for sessions, the token's limits that apply to one, and room in its budget.
async fn prepare<S>(req: &mut Request<'_, S>, admitted: &mut Admitted) -> Result<Upgrade, Error> {
    let claims = &*admitted.claims;
    let upgrade = handshake::check_request(req.head, req.framing.body != BodyFraming::None)
        .map_err(|e| Error::BadRequest(e.why()))?;
    if realtime_family(admitted.provider.family).is_none() {
        return Err(Error::NotImplemented(
            "WebSocket sessions for this provider's API family",
        ));
    }
    if claims.mtok.is_some() {
        return Err(Error::LimitNotEnforceable("output ceiling (`mtok`)"));
    }
    // OpenAI and Azure name the model in the URL; Gemini Live only in its `setup` message, which the
    // session's model guard reads.
    if admitted.provider.family != ApiFamily::Gemini {
        query_model::apply(claims, &mut admitted.loc)?;
    }
    Ok(upgrade)
}

/// A budgeted session's start: it needs room on every line it is charged to, and counts as one call
/// on each of them at once (atomically, as any call). Its tokens are charged response by response.
async fn open_budget(app: &crate::app::App, claims: &Claims) -> Result<Vec<SpendLine>, Error> {
    let now = app.clock.unix_now();
    let lines = lines_for(claims, now);
    let keys: Vec<&str> = lines.iter().map(|l| l.key.as_str()).collect();
    let used = app
        .store
        .spend_get(&claims.tid, &keys)
        .await
        .map_err(|_| Error::StoreUnavailable)?;
    if !has_room(&lines, &used) {
        return Err(Error::BudgetExhausted(None));
    }
    let one = Spend {
        calls: 1,
        ..Spend::default()
    };
    match app
        .store
        .spend_reserve(&claims.tid, &lines, &one, now)
        .await
    {
        Ok(SpendReservation::Granted) => Ok(lines),
        Ok(SpendReservation::NoRoom(_)) => Err(Error::BudgetExhausted(None)),
        Err(_) => Err(Error::StoreUnavailable),
    }
}

/// Whether every line has room left in every unit it limits.
fn has_room(lines: &[SpendLine], used: &[Spend]) -> bool {
    lines
        .iter()
        .zip(used)
        .all(|(l, u)| l.limit.calls.is_none_or(|c| u.calls < c) && l.limit.spendable(u))
}

/// Charge one response's usage to a budgeted session's lines; `false` when a line is used up.
async fn charge_response(app: &crate::app::App, claims: &Claims, used: &Spend) -> bool {
    let now = app.clock.unix_now();
    let lines = lines_for(claims, now);
    if app
        .store
        .spend_settle(&claims.tid, &lines, &Spend::default(), used)
        .await
        .is_err()
    {
        return false;
    }
    let keys: Vec<&str> = lines.iter().map(|l| l.key.as_str()).collect();
    match app.store.spend_get(&claims.tid, &keys).await {
        // The session's own call is already counted: only tokens and money decide.
        Ok(now_used) => lines
            .iter()
            .zip(&now_used)
            .all(|(l, u)| l.limit.spendable(u)),
        Err(_) => false,
    }
}

/// Which usage events a family's realtime sessions send.
fn realtime_family(family: ApiFamily) -> Option<UsageFamily> {
    match family {
        // `response.done` carries `response.usage` with the Realtime API's member names.
        ApiFamily::OpenAi | ApiFamily::Azure => Some(UsageFamily::OpenAiRealtime),
        // Gemini Live's server messages carry `usageMetadata`, output in `responseTokenCount`.
        ApiFamily::Gemini => Some(UsageFamily::GeminiLive),
        _ => None,
    }
}

/// How long a session may stay open from now: the token's `ssec`, and never past the token's own end
/// (`exp` plus the clock skew every other check allows). Without this bound a session opened a moment
/// before `exp` would run for as long as the provider keeps it, long after the backend meant the
/// token to stop working.
fn session_lifetime(claims: &Claims, now: u64, clock_skew: u64) -> std::time::Duration {
    let token_left = claims.exp.saturating_add(clock_skew).saturating_sub(now);
    let secs = claims.ssec.map_or(token_left, |s| s.min(token_left));
    std::time::Duration::from_secs(secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp: u64, ssec: Option<u64>) -> Claims {
        Claims {
            ssec,
            ..Claims::new("0".repeat(32), "t".into(), 1_000, exp, "openai".into())
        }
    }

    #[test]
    fn a_session_ends_with_its_token_or_its_ssec_whichever_comes_first() {
        let secs = |c: &Claims, now| session_lifetime(c, now, 60).as_secs();
        // No ssec: the token's remaining life plus the skew.
        assert_eq!(secs(&claims(5_000, None), 4_000), 1_060);
        // ssec shorter than the token's remaining life: ssec.
        assert_eq!(secs(&claims(5_000, Some(300)), 4_000), 300);
        // ssec longer: the token's end wins.
        assert_eq!(secs(&claims(5_000, Some(3_600)), 4_900), 160);
        // Opened within the skew after exp (still admitted): only what is left of the skew.
        assert_eq!(secs(&claims(5_000, Some(3_600)), 5_030), 30);
        assert_eq!(secs(&claims(5_000, None), 6_000), 0);
    }
}
