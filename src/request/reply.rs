//! Writing the answers the relay authors itself: an endpoint's response ([`answer`]), an error in place
//! of any other answer ([`refuse`], which first drops the request's unread body when it can so the
//! connection survives), and the one answer to a head that could not be parsed or framed
//! ([`unframed`], which also logs it: such a request never reaches the pipeline). Each turns into an
//! [`Outcome`]; the encoding is `http/respond.rs`.

use serde_json::{json, Map};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::app::App;
use crate::error::Error;
use crate::http::cors;
use crate::http::framing::BodyFraming;
use crate::http::head::RequestHead;
use crate::http::respond::Response;
use crate::log::redact_target;
use crate::request::client::{Client, MAX_DISCARD_BYTES};
use crate::request::context::Request;
use crate::request::outcome::{closes, Outcome};

/// Whether the request's body is still unread in the connection when the answer is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    /// Not read yet: drop it (bounded) before answering, or close.
    Unread,
    /// Read whole, or dropped: the next byte is the next request.
    Done,
    /// Partly forwarded to the provider: the rest cannot be told from a next request.
    Cut,
}

/// Write a response the relay authored for a request whose body has been dealt with.
pub async fn answer<S: AsyncRead + AsyncWrite + Unpin>(
    req: &mut Request<'_, S>,
    mut r: Response,
    head_only: bool,
) -> Outcome {
    r.headers.push(("x-request-id".into(), req.rid.to_string()));
    r.close = closes(&req.framing, true, true);
    let ok = req.client.write_all(&r.encode(head_only)).await.is_ok();
    Outcome::Answered {
        status: r.status,
        bytes: r.body.len() as u64,
        close: r.close || !ok,
    }
}

/// Answer with an error. When the request's body has not been read yet, read and drop it (bounded)
/// so the connection can serve the next request; if that is not possible, close after answering.
pub async fn refuse<S: AsyncRead + AsyncWrite + Unpin>(
    req: &mut Request<'_, S>,
    error: Error,
    body: Body,
) -> Outcome {
    let f = &req.framing;
    let mut in_sync = !error.must_close() && body != Body::Cut;
    if in_sync && body == Body::Unread && f.body != BodyFraming::None && f.keep_alive {
        // A client waiting for 100-continue will not send the body: the exchange ends here.
        in_sync = !f.expect_continue
            && req
                .client
                .discard_body(f.body, MAX_DISCARD_BYTES)
                .await
                .is_ok();
    }
    let mut r = Response::error(&error).header("x-request-id", req.rid.to_string());
    r.headers
        .extend(cors::response_headers(req.origin, &req.app.cfg.cors, None));
    r.close = closes(&req.framing, in_sync, true);
    let ok = req
        .client
        .write_all(&r.encode(req.head.method() == "HEAD"))
        .await
        .is_ok();
    Outcome::Refused {
        error,
        bytes: r.body.len() as u64,
        close: r.close || !ok,
    }
}

/// Answer a request that failed before it could enter the pipeline (a head that cannot be parsed or
/// framed), close-delimited, and log it.
pub async fn unframed<S: AsyncRead + AsyncWrite + Unpin>(
    app: &App,
    client: &mut Client<S>,
    head: Option<&RequestHead>,
    e: &Error,
) {
    let rid = app.obs.ids.next();
    let mut r = Response::error(e).header("x-request-id", rid.to_string());
    r.close = true;
    let _ = client.write_all(&r.encode(false)).await;
    app.obs.stats.count_status(r.status);
    let ip = client.peer().ip();
    if !app.obs.log.access
        || !app
            .obs
            .log_sampler
            .admit(ip, e.code(), app.clock.unix_now())
    {
        return;
    }
    let mut f = Map::new();
    f.insert("rid".into(), json!(rid));
    f.insert("ip".into(), json!(ip.to_string()));
    if let Some(h) = head {
        f.insert("method".into(), json!(h.method()));
        f.insert("path".into(), json!(redact_target(h.target().as_bytes())));
    }
    f.insert("status".into(), json!(r.status));
    f.insert("reason".into(), json!(e.code()));
    app.obs.log.access(f);
}
