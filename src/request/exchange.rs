//! One exchange with the provider, once the request is admitted and its head built: write the request
//! (and stream the client's body after it when it was not buffered), wait for the response head while
//! watching for the client leaving (a pooled connection found stale meanwhile earns one retry on a
//! fresh one, `upstream/retry.rs`), then either relay the answer as it arrives (`request/pump.rs`) or,
//! for an error answer, read it whole, scrub the key out of it and send it with its new length. The
//! provider connection goes back to the pool only when the exchange ended exactly as framed. Errors are
//! only returned while nothing has been sent to the client yet; later failures are [`Outcome::Cut`].

use serde_json::json;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;

use crate::budget::charge::Charge;
use crate::budget::settle::Ending;
use crate::budget::tap::{Metering, Tap};
use crate::error::Error;
use crate::http::cors;
use crate::http::framing::{response_framing, BodyFraming, ResponseBody};
use crate::http::head::{parse_response_head_into, trim_ows, HeadLimits, ResponseHead, Version};
use crate::limits::body_budget::BodyShare;
use crate::request::admit::{self, Admitted};
use crate::request::context::Request;
use crate::request::forward::{self, Relayed};
use crate::request::outcome::{closes, Cut, Outcome};
use crate::request::pump::{self, BodyPlan, Emit, ErrorBody, Read, FIRST_UPSTREAM_READ};
use crate::upstream::client::Conn;
use crate::upstream::key_scrub::KeyFragments;
use crate::upstream::retry::{self, Heard, SendError};

/// Cap on a provider's response head (status line and headers).
const MAX_RESPONSE_HEAD: usize = 64 * 1024;
/// Cap on the fields of a provider's response head.
const MAX_RESPONSE_HEADERS: usize = 256;

/// The request for the provider: its head with any buffered body, the framing of a body still to be
/// streamed from the client, and the buffered-body budget the request holds. The buffer and the budget
/// are given back as soon as no retry can need them (`upstream/retry.rs`), not when a long answer ends.
pub struct Outgoing<'a> {
    pub bytes: Vec<u8>,
    pub streamed: Option<BodyFraming>,
    pub share: BodyShare<'a>,
    /// How the answer's usage is read (`budget/tap.rs`); what it reported lands in `req.metered`.
    pub metering: Option<Metering>,
}

/// Send the request on `conn` and relay the answer to the client.
pub async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    req: &mut Request<'_, S>,
    conn: Conn,
    request: Outgoing<'_>,
    admitted: &Admitted,
    charge: &mut Charge,
) -> Result<Outcome, Error> {
    let up = &req.app.cfg.upstream;
    let up_write = up.read_idle_timeout;
    let Outgoing {
        bytes,
        streamed,
        share,
        metering,
    } = request;
    // Written, then the answer awaited; a pooled connection that went stale is retried once
    // (`upstream/retry.rs`), and the call given back when the request provably never got there.
    let mut rbuf: Vec<u8> = Vec::with_capacity(FIRST_UPSTREAM_READ);
    let outgoing = retry::Outgoing {
        bytes,
        whole: streamed.is_none(),
        write_timeout: up_write,
        held: share,
    };
    let app = req.app;
    let (pool, metrics) = (&app.upstream.pool, &app.obs.metrics);
    let mut sending = retry::Sending::new(conn, outgoing);
    // The connection's response head, refilled: its buffers go back to `req.answer` when the answer
    // has been relayed, for the connection's next request.
    let mut resp = std::mem::take(req.answer);
    loop {
        let conn = match sending.write(pool, metrics).await {
            Ok(conn) => conn,
            Err(e) => return Err(unanswered(req, admitted, e).await),
        };
        if let Some(framing) = streamed {
            // The call is reserved and the provider is listening: now the client may send its body.
            if req.framing.expect_continue {
                req.client
                    .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                    .await
                    .map_err(|_| Error::BadRequest("client gone"))?;
            }
            // On error `conn` is dropped, closing the provider's half-sent request.
            req.client
                .stream_body(
                    framing,
                    req.app.cfg.server.max_body_bytes,
                    &mut conn.stream,
                    up_write,
                )
                .await?;
        }
        let deadline = Instant::now() + up.response_header_timeout;
        match read_response_head(req, conn, &mut rbuf, &mut resp, deadline).await? {
            Heard::Answer(true) => break,
            Heard::Answer(false) => return Ok(Outcome::client_gone()),
            Heard::Silent => {
                if let Err(e) = sending.silent(pool, metrics).await {
                    return Err(unanswered(req, admitted, e).await);
                }
            }
        }
    }
    let conn = sending.into_conn();
    rbuf.drain(..resp.head_len);
    req.ttfb = Some(req.started.elapsed());
    let (kind, upstream_keep_alive) =
        response_framing(&resp, req.head.method()).map_err(|_| Error::UpstreamProtocol)?;
    let key = req.app.keys.fragments.get(&admitted.api_key);
    let content_type = resp.headers_named("content-type").next().unwrap_or(b"");
    // Boxed: the meter's state would otherwise sit in every connection's future for as long as the
    // connection lives (measured: +4 KiB per open stream).
    let mut tap = metering.map(|m| Box::new(Tap::new(m, content_type)));
    let answer = Answer {
        resp: &resp,
        key: &key,
        admitted,
    };
    // Error answers are small: read whole and scrubbed of the key before anything is sent.
    if resp.status >= 400 && kind != ResponseBody::None {
        let plan = BodyPlan {
            kind,
            emit: Emit::Raw,
            upstream_keep_alive,
        };
        return error_answer(req, conn, rbuf, plan, answer, tap, charge).await;
    }

    // HTTP/1.0 clients cannot read chunked framing: de-chunk for them and end by closing. A body the
    // meter filters no longer matches the provider's framing: re-chunked (or, for HTTP/1.0, ended by
    // closing).
    let filtered = tap.as_ref().is_some_and(|t| t.filters());
    let http10 = req.head.version == Version::Http10;
    let emit = match (http10, filtered) {
        (true, true) => Emit::Payload,
        (true, false) if kind == ResponseBody::Chunked => Emit::Payload,
        (false, true) if kind != ResponseBody::None => Emit::Chunks,
        _ => Emit::Raw,
    };
    let relayed = Relayed {
        kind: match emit {
            Emit::Raw => kind,
            Emit::Payload => ResponseBody::UntilClose,
            Emit::Chunks => ResponseBody::Chunked,
        },
        dechunk: emit == Emit::Payload,
        close: closes(
            &req.framing,
            true,
            kind != ResponseBody::UntilClose && emit != Emit::Payload || emit == Emit::Chunks,
        ),
    };
    let out_head = answer.head(req, relayed);
    // When body bytes came with the head (the usual case for JSON answers), head and body leave in one
    // write. Otherwise (a stream whose first event is still being generated) the head goes now, so the
    // client sees the status at once.
    let mut head_out = Some(out_head);
    if rbuf.is_empty() || kind == ResponseBody::None {
        let h = head_out.take().unwrap_or_default();
        if req.client.write_all(&h).await.is_err() {
            return Ok(Outcome::Cut {
                status: resp.status,
                bytes: 0,
                cut: Cut::ClientClosed,
            });
        }
    }

    let _streaming = req.app.obs.stats.active_streams.enter();
    let plan = BodyPlan {
        kind,
        emit,
        upstream_keep_alive,
    };
    let pumped = pump::pump_body(req, conn, head_out, rbuf, plan, tap.as_deref_mut()).await;
    req.metered = tap.map(|t| t.finish());
    let status = resp.status;
    *req.answer = resp;
    Ok(match pumped {
        Ok((bytes, last)) => {
            // The provider's answer is complete: its spend is settled before the client has all of
            // it, so a next call the client sends at once finds the budget already settled.
            settle(req, admitted, charge, Ending::Answered(status)).await;
            if !last.is_empty() && req.client.write_all(&last).await.is_err() {
                return Ok(Outcome::Cut {
                    status,
                    bytes,
                    cut: Cut::ClientClosed,
                });
            }
            Outcome::Answered {
                status,
                bytes,
                close: relayed.close,
            }
        }
        Err((bytes, cut)) => Outcome::Cut { status, bytes, cut },
    })
}

/// Settle a budgeted call's spend now that its answer is known (`budget/charge.rs`). A call without a
/// reservation records its usage after the answer is out (`request/relay.rs`): nothing waits on it.
async fn settle<S>(
    req: &mut Request<'_, S>,
    admitted: &Admitted,
    charge: &mut Charge,
    ending: Ending,
) {
    if !charge.holds_reservation() {
        return;
    }
    let app = req.app;
    if let Some(charged) = charge
        .settle(
            app,
            &admitted.claims,
            &admitted.provider.name,
            req.metered.as_ref(),
            ending,
        )
        .await
    {
        req.charged = Some(charged);
    }
}

/// Wait for the final response head, skipping interim 1xx answers, and parse it into `head`.
/// `Answer(false)`: the client left first. `Silent`: the provider closed or reset the connection
/// before a single byte of an answer.
async fn read_response_head<S: AsyncRead + AsyncWrite + Unpin>(
    req: &mut Request<'_, S>,
    conn: &mut Conn,
    rbuf: &mut Vec<u8>,
    head: &mut ResponseHead,
    deadline: Instant,
) -> Result<Heard<bool>, Error> {
    let limits = HeadLimits {
        max_head_bytes: MAX_RESPONSE_HEAD,
        max_headers: MAX_RESPONSE_HEADERS,
        max_uri_bytes: MAX_RESPONSE_HEAD,
    };
    let mut heard = false;
    loop {
        if parse_response_head_into(rbuf, &limits, head).map_err(|_| Error::UpstreamProtocol)? {
            if (100..200).contains(&head.status) {
                if head.status == 101 {
                    return Err(Error::UpstreamProtocol);
                }
                rbuf.drain(..head.head_len);
                continue;
            }
            return Ok(Heard::Answer(true));
        }
        match pump::read_upstream_or_client(req.client, conn, rbuf, FIRST_UPSTREAM_READ, deadline)
            .await
        {
            // EOF, or a read error (a reset: `read_upstream_or_client`'s only `UpstreamProtocol`),
            // before any byte of an answer.
            Ok(Read::Upstream(0)) | Err(Error::UpstreamProtocol) if !heard => {
                return Ok(Heard::Silent)
            }
            Ok(Read::Upstream(0)) => return Err(Error::UpstreamProtocol),
            Ok(Read::Upstream(_)) => heard = true,
            Ok(Read::ClientGone) => return Ok(Heard::Answer(false)),
            Err(e) => return Err(e),
        }
    }
}

/// A request the provider never answered: the call is given back when the request provably never
/// reached it (and `req.reserved` cleared, so its spend is released too), and a provider that could
/// not be reached is logged and counted as at connect time.
async fn unanswered<S>(req: &mut Request<'_, S>, admitted: &Admitted, e: SendError) -> Error {
    let app = req.app;
    if let SendError::Unreachable(unreachable) = &e {
        let provider = &admitted.provider;
        app.obs
            .metrics
            .upstream_unreachable(unreachable.cause.label());
        app.obs.log.warn(
            "provider unreachable",
            json!({"provider": provider.name, "host": provider.base.authority(),
                   "cause": unreachable.cause.label(), "error": unreachable.detail, "rid": req.rid}),
        );
    }
    if e.never_reached() {
        admit::give_back(app, &admitted.claims).await;
        req.reserved = false;
    }
    e.error()
}

/// The provider's answer head and what the client's version of it depends on.
#[derive(Clone, Copy)]
struct Answer<'a> {
    resp: &'a ResponseHead,
    key: &'a KeyFragments,
    admitted: &'a Admitted,
}

impl Answer<'_> {
    /// The client's response head (`request/forward.rs`), with this request's CORS fields and id.
    fn head<S>(&self, req: &Request<'_, S>, relayed: Relayed) -> Vec<u8> {
        let cors = cors::response_fields(
            req.origin,
            &req.app.cfg.cors,
            self.admitted.claims.origins.as_deref(),
        );
        forward::response_head(self.resp, relayed, self.key, &cors, &req.rid)
    }
}

/// Answer the client with the provider's error (status >= 400): read its body whole (at most
/// `MAX_ERROR_BODY_BYTES`), replace every run of the key with `[redacted]` (`upstream/key_scrub.rs`) and
/// send it with its new Content-Length. A body that cannot be checked (compressed, or too large) is
/// withheld: nothing has been sent yet, so the relay answers `upstream_error_unchecked` instead.
async fn error_answer<S: AsyncRead + AsyncWrite + Unpin>(
    req: &mut Request<'_, S>,
    mut conn: Conn,
    pending: Vec<u8>,
    plan: BodyPlan,
    answer: Answer<'_>,
    tap: Option<Box<Tap>>,
    charge: &mut Charge,
) -> Result<Outcome, Error> {
    let status = answer.resp.status;
    // The relay asked for `identity`; a coded body would hide the key from the scrub.
    if answer
        .resp
        .headers_named("content-encoding")
        .any(|v| !trim_ows(v).eq_ignore_ascii_case(b"identity"))
    {
        return Err(Error::UpstreamErrorUnchecked);
    }
    let (body, clean) = match pump::read_error_body(req, &mut conn, pending, plan.kind).await? {
        ErrorBody::Read(body, clean) => (body, clean),
        ErrorBody::ClientGone => return Ok(Outcome::client_gone()),
    };
    if clean && plan.upstream_keep_alive {
        req.app.upstream.pool.release(conn);
    }
    if let Some(mut tap) = tap {
        let mut unused = Vec::new();
        tap.pass(&body, &mut unused);
        req.metered = Some(tap.finish());
    }
    settle(req, answer.admitted, charge, Ending::Answered(status)).await;
    let body = answer.key.scrub(&body).unwrap_or(body);
    let relayed = Relayed {
        kind: ResponseBody::Length(body.len() as u64),
        dechunk: false,
        close: closes(&req.framing, true, true),
    };
    let mut out = answer.head(req, relayed);
    out.extend_from_slice(&body);
    if req.client.write_all(&out).await.is_err() {
        return Ok(Outcome::Cut {
            status,
            bytes: 0,
            cut: Cut::ClientClosed,
        });
    }
    Ok(Outcome::Answered {
        status,
        bytes: body.len() as u64,
        close: relayed.close,
    })
}
