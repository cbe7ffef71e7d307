//! One request, top to bottom: frame it, charge its address, route it, check its method, prove its
//! token, refuse a token remembered dead, apply the token's limits, charge the relay-wide limit, reserve
//! a call, read the body, then forward it to the provider with the real key and stream the answer back.
//! The admission rules (what is charged where, and when) are `request/admission.rs`. Everything that can fail before the response head is sent becomes an error response
//! (via `http/respond.rs`); a failure mid-stream aborts the connection, since appending an error to a
//! half-sent answer would corrupt it.

use std::io::Write as _;
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

use crate::app::App;
use crate::error::{Error, LimitScope, Side};
use crate::http::chunked::{ChunkError, ChunkedDecoder, ChunkedLimits};
use crate::http::cors;
use crate::http::framing::{
    request_framing, response_framing, BodyFraming, RequestFraming, ResponseBody,
};
use crate::http::head::{
    parse_response_head, trim_ows, HeadLimits, RequestHead, ResponseHead, Version,
};
use crate::http::respond::{reason, Response, SAFETY_HEADERS};
use crate::limits::body_budget::BodyShare;
use crate::limits::log_sampler::status_class;
use crate::log::{redact_target, AccessLine};
use crate::request::admission;
use crate::request::conn::{
    Client, Next, MAX_CHUNK_EXT_BYTES, MAX_DISCARD_BYTES, MAX_TRAILER_BYTES,
};
use crate::request::endpoints;
use crate::request::policy;
use crate::server::shutdown::ShutdownWatch;
use crate::store::{Reservation, TokenRef};
use crate::token::cache::Verdict;
use crate::token::format::{self, Claims, TimeError};
use crate::token::secret::SecretString;
use crate::upstream::client::Conn;
use crate::upstream::forward_path;
use crate::upstream::key_scrub::{KeyFragments, MAX_ERROR_BODY_BYTES};
use crate::upstream::provider::{ApiFamily, Provider};

/// Read size for the upstream socket; SSE events are forwarded as soon as each read returns.
const UPSTREAM_READ: usize = 8 * 1024;
/// Cap on a provider's response head (status line and headers).
const MAX_RESPONSE_HEAD: usize = 64 * 1024;
/// How much pipelined input we accept from the client while its previous request is in flight.
const MAX_PIPELINED: usize = 64 * 1024;

/// Response headers never passed back: hop-by-hop, framing (we set our own), anything credential-like,
/// cookies for the provider's domain, and CORS/HSTS/alt-svc policy that belongs to the relay's operator.
const DROP_RESPONSE_HEADERS: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
    "transfer-encoding",
    "content-length",
    "set-cookie",
    "set-cookie2",
    "authorization",
    "proxy-authorization",
    "proxy-authenticate",
    "www-authenticate",
    "x-api-key",
    "x-goog-api-key",
    "api-key",
    "alt-svc",
    "strict-transport-security",
    "access-control-allow-origin",
    "access-control-allow-credentials",
    "access-control-allow-headers",
    "access-control-allow-methods",
    "access-control-expose-headers",
    "access-control-max-age",
    "referrer-policy",
];

/// Anthropic rejects requests without a version header; official SDKs send it, raw `fetch` often not.
const ANTHROPIC_DEFAULT_VERSION: &str = "2023-06-01";

/// Per-request facts gathered for the access log.
pub(crate) struct Ctx {
    pub(crate) rid: String,
    pub(crate) started: Instant,
    pub(crate) ip: IpAddr,
    pub(crate) method: String,
    pub(crate) origin: Option<String>,
    /// An `Origin` header was sent but is not a well-formed origin: refused like a disallowed one.
    pub(crate) bad_origin: bool,
    pub(crate) tenant: Option<String>,
    pub(crate) jti: Option<String>,
    pub(crate) provider: Option<String>,
    pub(crate) uid: Option<String>,
    pub(crate) ttfb: Option<Duration>,
    /// Set once the token is proven authentic: only then is `provider` a bounded metrics label.
    pub(crate) authenticated: bool,
    /// Set once the store counted the call: such requests are always logged (see `limits/log_sampler.rs`).
    pub(crate) reserved: bool,
}

/// How a request ended, for the log and the connection loop.
pub(crate) struct Done {
    pub(crate) status: u16,
    pub(crate) bytes: u64,
    pub(crate) next: Next,
    pub(crate) reason: Option<&'static str>,
}

pub async fn handle<S: AsyncRead + AsyncWrite + Unpin>(
    app: &App,
    client: &mut Client<S>,
    head: RequestHead,
    shutdown: &ShutdownWatch,
) -> Next {
    app.stats.requests.fetch_add(1, Ordering::Relaxed);
    client.consume(head.head_len);
    let origin = head.header("origin");
    let mut ctx = Ctx {
        rid: app.next_request_id(),
        started: Instant::now(),
        ip: client_ip(app, client.peer.ip(), &head),
        method: head.method.clone(),
        origin: origin
            .and_then(|o| std::str::from_utf8(o).ok())
            .map(str::to_string),
        bad_origin: origin.is_some_and(|o| !cors::is_origin(o)),
        tenant: None,
        jti: None,
        provider: None,
        uid: None,
        ttfb: None,
        authenticated: false,
        reserved: false,
    };
    let done = match request_framing(&head) {
        Err(e) => reply_error(app, client, &ctx, None, Error::from(e), None).await,
        Ok(framing) => route(app, client, &head, &framing, &mut ctx, shutdown).await,
    };
    app.stats.count_status(done.status);
    app.metrics.request(
        done.status,
        ctx.provider.as_deref().filter(|_| ctx.authenticated),
    );
    app.metrics.latency.observe(ctx.started.elapsed());
    if let Some(t) = ctx.ttfb {
        app.metrics.ttfb.observe(t);
    }
    if let Some(reason) = done.reason {
        if reason.starts_with("upstream_") {
            app.metrics.upstream_error(reason);
        }
    }
    log_access(app, &ctx, &done, &head.target);
    done.next
}

async fn route<S: AsyncRead + AsyncWrite + Unpin>(
    app: &App,
    client: &mut Client<S>,
    head: &RequestHead,
    framing: &RequestFraming,
    ctx: &mut Ctx,
    shutdown: &ShutdownWatch,
) -> Done {
    let (path, query) = match head.target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (head.target.as_str(), None),
    };
    // Every routed request spends its sender's allowance first (junk, 404s and preflights included),
    // and nothing else's: the relay-wide limit is charged only once a token is proven.
    if admission::charges_ip(app, ctx.ip, path) {
        if let Err(e) = admission::charge_ip(app, ctx.ip).await {
            app.stats.rate_limited.fetch_add(1, Ordering::Relaxed);
            return reply_error(app, client, ctx, Some(framing), e, None).await;
        }
    }
    // A CORS preflight carries no credentials by design: answer it before any token work, and never
    // count it as a call.
    if head.method == "OPTIONS" && head.header("access-control-request-method").is_some() {
        return endpoints::preflight(app, client, head, framing, ctx).await;
    }
    if path == "/health" {
        return endpoints::health(app, client, head, framing, ctx).await;
    }
    if path == "/metrics" {
        return endpoints::metrics(app, client, head, framing, ctx).await;
    }
    if path.starts_with("/admin/v1/") {
        return endpoints::admin(app, client, head, framing, ctx, path).await;
    }
    let base = app.cfg.server.base_path.as_str();
    let after_base = if path == base.trim_end_matches('/') {
        Some("")
    } else {
        path.strip_prefix(base)
    };
    match after_base {
        Some(rest) => match proxy(app, client, head, framing, ctx, rest, query, shutdown).await {
            Ok(done) => done,
            Err(f) => {
                // Part of a streamed body may have gone: the rest must never be read as a request.
                let closing = RequestFraming {
                    keep_alive: false,
                    ..framing.clone()
                };
                let framing = if f.close { &closing } else { framing };
                reply_error(app, client, ctx, Some(framing), f.error, Some(f.body_read)).await
            }
        },
        None => reply_error(app, client, ctx, Some(framing), Error::NotFound, None).await,
    }
}

/// A failure before the response head, with whether the request body has already been read (if not,
/// it must be discarded or the connection closed before another request can be parsed).
struct Failure {
    error: Error,
    body_read: bool,
    /// The connection must close after the answer (a streamed body was cut short).
    close: bool,
}

impl From<Error> for Failure {
    fn from(error: Error) -> Self {
        Failure {
            error,
            body_read: false,
            close: false,
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn proxy<S: AsyncRead + AsyncWrite + Unpin>(
    app: &App,
    client: &mut Client<S>,
    head: &RequestHead,
    framing: &RequestFraming,
    ctx: &mut Ctx,
    after_base: &str,
    query: Option<&str>,
    shutdown: &ShutdownWatch,
) -> Result<Done, Failure> {
    if shutdown.is_shutting_down() {
        return Err(Error::ShuttingDown.into());
    }
    // 1. Requests no provider API needs are refused before any token work (the per-address bucket was
    // charged in `route`).
    if !admission::method_forwarded(&head.method) {
        return Err(Error::MethodNotAllowed(admission::ALLOW_FORWARDED).into());
    }
    if ctx.bad_origin {
        return Err(Error::OriginNotAllowed.into());
    }

    // 2. Find the token and the provider-relative path.
    let mut loc = locate_token(head, after_base, query);
    let Some(token_text) = loc.token.take() else {
        app.stats.rejected_token.fetch_add(1, Ordering::Relaxed);
        return Err(Error::InvalidToken.into());
    };
    forward_path::check(&loc.rest).map_err(Error::BadRequest)?;

    // 3. Prove the token. Every failure up to here is the same 401.
    let claims = app
        .tokens
        .verify(token_text.expose(), &app.keyring)
        .map_err(|_| {
            app.stats.rejected_token.fetch_add(1, Ordering::Relaxed);
            Error::InvalidToken
        })?;
    drop(token_text);
    ctx.authenticated = true;
    ctx.tenant = Some(claims.tid.clone());
    ctx.jti = Some(claims.jti.clone());
    ctx.provider = Some(claims.prv.clone());
    ctx.uid = claims.uid.clone();
    let now = app.clock.unix_now();
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
    match app.tokens.verdict(&claims.tid, &claims.jti, now) {
        Some(Verdict::Exhausted) => return Err(Error::TokenExhausted.into()),
        Some(Verdict::Revoked) => return Err(Error::TokenRevoked.into()),
        None => {}
    }

    // 4. Limits the token carries that need no body.
    let provider = app
        .registry
        .resolve(&claims.prv, claims.url.as_deref())
        .ok_or(Error::ProviderUnavailable)?;
    let api_key = api_key_for(app, &claims)?;
    if let Some(nets) = &claims.ips {
        if !nets.iter().any(|n| n.contains(ctx.ip)) {
            return Err(Error::IpNotAllowed.into());
        }
    }
    // A browser request from an origin that neither config nor the token allows would be blocked from
    // reading the answer, but a simple request would still spend a call: refuse it before that.
    if let Some(origin) = &ctx.origin {
        if !cors::origin_allowed(origin.as_bytes(), &app.cfg.cors, claims.origins.as_deref()) {
            return Err(Error::OriginNotAllowed.into());
        }
    }
    policy::check_endpoint(&claims, provider.family, &loc.rest)?;
    // The token's own rate and concurrency come before the relay-wide limit: a public token shared by
    // many addresses spends its own allowance, never the budget of every other caller.
    let _in_flight = app
        .token_limits
        .try_acquire(
            &format!("{}/{}", claims.tid, claims.jti),
            claims.rate.as_ref().map(|r| (r.n, r.s)),
            claims.conc,
            app.clock.mono_now(),
        )
        .map_err(|r| match r {
            crate::limits::limiter::TokenRejection::RateLimited(d) => {
                Error::RateLimited(LimitScope::Token, d)
            }
            crate::limits::limiter::TokenRejection::TooManyConcurrent => Error::TooManyConcurrent,
        })?;
    // 5. The relay-wide limit: spent by authenticated calls within their token's limits only, before
    // any store work.
    if let Err(e) = admission::charge_global(app).await {
        app.stats.rate_limited.fetch_add(1, Ordering::Relaxed);
        return Err(e.into());
    }

    // 6. Reserve the call before a body byte is read: a used-up or revoked token is refused without
    // reading its body. From here on the call counts, unless it provably never leaves the relay (body
    // or policy failure, provider unreachable), in which case it is given back.
    let tref = TokenRef {
        jti: &claims.jti,
        tenant: &claims.tid,
        iat: claims.iat,
        exp: claims.exp,
        max: claims.max,
    };
    let epoch = app.tokens.epoch();
    let store_started = Instant::now();
    let reserved = app.store.reserve(tref, now).await;
    app.metrics.store_latency.observe(store_started.elapsed());
    match reserved {
        Ok(Reservation::Granted { .. }) => ctx.reserved = true,
        Ok(Reservation::Exhausted) => {
            app.tokens
                .remember(&claims.tid, &claims.jti, Verdict::Exhausted, now, epoch);
            return Err(Error::TokenExhausted.into());
        }
        Ok(Reservation::Revoked) => {
            app.tokens
                .remember(&claims.tid, &claims.jti, Verdict::Revoked, now, epoch);
            return Err(Error::TokenRevoked.into());
        }
        Err(e) => {
            app.log
                .warn("store unavailable", json!({"error": e.to_string()}));
            return Err(Error::StoreUnavailable.into());
        }
    }

    // 7. Only an authenticated, permitted, counted request may make the client send its body. A body
    // no policy reads is streamed to the provider as it arrives (unless it is already here whole); one
    // a policy reads is held whole, within the buffered-body budget taken before it is read.
    let max_body = app.cfg.server.max_body_bytes;
    if matches!(framing.body, BodyFraming::Length(n) if n > max_body) {
        give_back(app, &claims).await;
        return Err(Error::BodyTooLarge.into());
    }
    let streamed = match framing.body {
        BodyFraming::Length(n)
            if !policy::inspects_body(&claims) && client.buf.len() < n as usize =>
        {
            Some(n)
        }
        _ => None,
    };
    let mut share = app.body_budget.share(ctx.ip);
    let mut body = Vec::new();
    if streamed.is_none() {
        let whole_here =
            matches!(framing.body, BodyFraming::Length(n) if client.buf.len() >= n as usize);
        if let (BodyFraming::Length(n), false) = (framing.body, whole_here) {
            if let Err(e) = share.grow_to(n) {
                give_back(app, &claims).await;
                return Err(e.into());
            }
        }
        if framing.expect_continue
            && framing.body != BodyFraming::None
            && client
                .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                .await
                .is_err()
        {
            give_back(app, &claims).await;
            return Err(Error::BadRequest("client gone").into());
        }
        let raw = match client
            .read_body_within(framing.body, max_body, (!whole_here).then_some(&mut share))
            .await
        {
            Ok(raw) => raw,
            Err(e) => {
                give_back(app, &claims).await;
                return Err(e.into());
            }
        };
        let applied = match policy::apply(&claims, provider.family, &loc.rest, raw) {
            Ok(applied) => applied,
            Err(error) => {
                give_back(app, &claims).await;
                return Err(Failure {
                    error,
                    body_read: true,
                    close: false,
                });
            }
        };
        body = applied.body;
        if let Some(path) = applied.path {
            loc.rest = path;
        }
    }
    let fail = |error| Failure {
        error,
        body_read: streamed.is_none(),
        close: false,
    };
    let conn = match app.upstream.checkout(&provider.base).await {
        Ok(c) => c,
        Err(unreachable) => {
            // Connect and TLS failures happen before a byte of the request left: give the call back.
            give_back(app, &claims).await;
            app.stats.upstream_errors.fetch_add(1, Ordering::Relaxed);
            app.metrics.upstream_unreachable(unreachable.cause.label());
            app.log.warn(
                "provider unreachable",
                json!({"provider": provider.name, "host": provider.base.authority(),
                       "cause": unreachable.cause.label(), "error": unreachable.detail, "rid": ctx.rid}),
            );
            return Err(fail(unreachable.error()));
        }
    };

    // 8. Forward, then stream the answer.
    app.stats.proxied.fetch_add(1, Ordering::Relaxed);
    let outgoing = Outgoing {
        bytes: build_upstream_request(head, &provider, &api_key, &loc, &body, streamed),
        streamed,
        share,
    };
    drop(body);
    let done = exchange(
        app, client, head, framing, ctx, conn, outgoing, &api_key, &claims,
    )
    .await
    .map_err(|error| {
        if error.side() == Side::Upstream {
            app.stats.upstream_errors.fetch_add(1, Ordering::Relaxed);
        }
        Failure {
            error,
            body_read: true,
            close: streamed.is_some(),
        }
    });
    done
}

/// Give back a reserved call that provably never left the relay, and drop a "used up" verdict this
/// relay may have remembered meanwhile (the call is available again).
async fn give_back(app: &App, claims: &Claims) {
    if app.store.refund(&claims.tid, &claims.jti).await.is_err() {
        app.log.warn("refund failed", json!({"jti": claims.jti}));
    }
    app.tokens.forget_exhausted(&claims.tid, &claims.jti);
}

/// Where the token came from and what to forward.
pub struct Located {
    pub token: Option<SecretString>,
    /// Provider-relative path, starting with '/' (or empty).
    pub rest: String,
    /// The query to forward, without any `token` parameter, including the leading '?' when non-empty.
    pub query: String,
}

/// Path form `{base}{token}/rest`, query form `{base}rest?token=...`, or a header carrying the token
/// (`Authorization: Bearer`, `x-api-key`, `x-goog-api-key`), in that order of precedence. `after_base`
/// is the request path after the base path, `query` the request's query without its `?`. Pure; public
/// for the `locate` fuzz target.
pub fn locate_token(head: &RequestHead, after_base: &str, query: Option<&str>) -> Located {
    let mut token = None;
    let rest = match after_base.split_once('/') {
        Some((first, rest)) if is_token_like(first) => {
            token = Some(first.to_string());
            format!("/{rest}")
        }
        None if is_token_like(after_base) => {
            token = Some(after_base.to_string());
            String::new()
        }
        _ if after_base.is_empty() => String::new(),
        _ => format!("/{after_base}"),
    };
    let mut kept = Vec::new();
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("token", v)) => {
                if token.is_none() {
                    token = Some(v.to_string());
                }
            }
            _ => kept.push(pair),
        }
    }
    if token.is_none() {
        token = header_token(head);
    }
    let query = if kept.is_empty() {
        String::new()
    } else {
        format!("?{}", kept.join("&"))
    };
    Located {
        token: token.map(SecretString::new),
        rest,
        query,
    }
}

fn is_token_like(s: &str) -> bool {
    s.starts_with("rt1.")
}

fn header_token(head: &RequestHead) -> Option<String> {
    // The scheme is case-insensitive (RFC 9110 §11.1): `BEARER` is as good as `Bearer`.
    if let Some(t) = head
        .header("authorization")
        .and_then(admission::bearer_token)
    {
        if is_token_like(t) {
            return Some(t.to_string());
        }
    }
    for name in ["x-api-key", "x-goog-api-key"] {
        if let Some(v) = head.header(name).and_then(|v| std::str::from_utf8(v).ok()) {
            if is_token_like(v) {
                return Some(v.to_string());
            }
        }
    }
    None
}

fn api_key_for(app: &App, claims: &Claims) -> Result<SecretString, Error> {
    if let Some(k) = &claims.key {
        return Ok(k.clone());
    }
    let name = claims.kref.as_deref().unwrap_or_default();
    app.api_keys
        .get(name)
        .cloned()
        .ok_or(Error::ApiKeyUnavailable)
}

/// The client address: the peer, or the right-most untrusted address of `X-Forwarded-For` when the peer
/// is a trusted proxy (left-most entries are client-controlled and never believed alone).
fn client_ip(app: &App, peer: IpAddr, head: &RequestHead) -> IpAddr {
    let trusted = |ip: IpAddr| app.trusted_proxies.iter().any(|n| n.contains(ip));
    if !trusted(peer) {
        return peer;
    }
    let mut ip = peer;
    let all: Vec<IpAddr> = head
        .headers_named("x-forwarded-for")
        .filter_map(|v| std::str::from_utf8(v).ok())
        .flat_map(|v| v.split(','))
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    for hop in all.iter().rev() {
        ip = *hop;
        if !trusted(*hop) {
            break;
        }
    }
    ip
}

fn build_upstream_request(
    head: &RequestHead,
    provider: &Provider,
    api_key: &SecretString,
    loc: &Located,
    body: &[u8],
    streamed: Option<u64>,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(512 + body.len());
    let path = if loc.rest.is_empty() && provider.base.prefix.is_empty() {
        "/"
    } else {
        &loc.rest
    };
    let _ = write!(
        out,
        "{} {}{}{} HTTP/1.1\r\nhost: {}\r\n",
        head.method,
        provider.base.prefix,
        path,
        loc.query,
        provider.base.authority()
    );
    // Client fields pass by the provider's allow-list (`upstream/forward_headers.rs`). Fields the client listed
    // in `Connection` are hop-by-hop too (RFC 9110 §7.6.1), even when allowed; `close` and
    // `keep-alive` name no field, so the usual request skips that scan.
    let lists_fields = head
        .headers_named("connection")
        .flat_map(|v| v.split(|&b| b == b','))
        .map(trim_ows)
        .any(|t| !t.eq_ignore_ascii_case(b"close") && !t.eq_ignore_ascii_case(b"keep-alive"));
    let mut has_anthropic_version = false;
    for h in &head.headers {
        if !provider.headers.allows(&h.name)
            || (lists_fields && listed_in_connection(head, &h.name))
        {
            continue;
        }
        has_anthropic_version |= h.name == "anthropic-version";
        out.extend_from_slice(h.name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(&h.value);
        out.extend_from_slice(b"\r\n");
    }
    // Answers come uncompressed: an error answer must be readable to be checked for the key, and the
    // client's codings cannot be trusted to be ones the relay can read.
    out.extend_from_slice(b"accept-encoding: identity\r\n");
    let body_len = streamed.unwrap_or(body.len() as u64);
    if body_len > 0 || matches!(head.method.as_str(), "POST" | "PUT" | "PATCH") {
        let _ = write!(out, "content-length: {body_len}\r\n");
    }
    if provider.family == ApiFamily::Anthropic && !has_anthropic_version {
        let _ = write!(out, "anthropic-version: {ANTHROPIC_DEFAULT_VERSION}\r\n");
    }
    // The provider's credential goes in last, after every client header has been filtered out.
    let (name, value) = provider.auth.header(api_key.expose());
    let _ = write!(out, "{name}: {value}\r\n\r\n");
    out.extend_from_slice(body);
    out
}

/// Whether the client's `Connection` fields name `name` (RFC 9110 §7.6.1).
fn listed_in_connection(head: &RequestHead, name: &str) -> bool {
    head.headers_named("connection")
        .flat_map(|v| v.split(|&b| b == b','))
        .any(|t| trim_ows(t).eq_ignore_ascii_case(name.as_bytes()))
}

/// The request for the provider: its head with any buffered body, the length of a body still to be
/// streamed from the client, and the buffered-body budget the request holds. The buffer and the budget
/// are given back as soon as the request is written, not when a long answer ends.
struct Outgoing<'a> {
    bytes: Vec<u8>,
    streamed: Option<u64>,
    share: BodyShare<'a>,
}

/// Send the request on `conn` and stream the answer to the client; the connection goes back to the pool
/// only if the exchange ended exactly as framed. Errors are only returned while nothing has been sent to
/// the client yet.
#[allow(clippy::too_many_arguments)]
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    app: &App,
    client: &mut Client<S>,
    head: &RequestHead,
    framing: &RequestFraming,
    ctx: &mut Ctx,
    mut conn: Conn,
    request: Outgoing<'_>,
    api_key: &SecretString,
    claims: &Claims,
) -> Result<Done, Error> {
    let up = &app.cfg.upstream;
    let up_write = Duration::from_secs(up.read_idle_timeout);
    // One write for head and a buffered body: one syscall and, usually, one packet.
    let Outgoing {
        bytes,
        streamed,
        share,
    } = request;
    tokio::time::timeout(up_write, conn.stream.write_all(&bytes))
        .await
        .map_err(|_| Error::UpstreamTimeout)?
        .map_err(|_| Error::UpstreamConnect)?;
    drop((bytes, share));
    if let Some(n) = streamed {
        // The call is reserved and the provider is listening: now the client may send its body.
        if framing.expect_continue {
            client
                .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                .await
                .map_err(|_| Error::BadRequest("client gone"))?;
        }
        // On error `conn` is dropped here, closing the provider's half-sent request.
        client.stream_body(n, &mut conn.stream, up_write).await?;
    }

    // Wait for the response head, skipping interim 1xx answers, while watching for the client leaving.
    let limits = HeadLimits {
        max_head_bytes: MAX_RESPONSE_HEAD,
        max_headers: 256,
        max_uri_bytes: MAX_RESPONSE_HEAD,
    };
    let deadline = Instant::now() + Duration::from_secs(up.response_header_timeout);
    let mut rbuf: Vec<u8> = Vec::with_capacity(UPSTREAM_READ);
    let resp: ResponseHead = loop {
        if let Some(r) = parse_response_head(&rbuf, &limits).map_err(|_| Error::UpstreamProtocol)? {
            if (100..200).contains(&r.status) {
                if r.status == 101 {
                    return Err(Error::UpstreamProtocol);
                }
                rbuf.drain(..r.head_len);
                continue;
            }
            break r;
        }
        match read_upstream_or_client(client, &mut conn, &mut rbuf, deadline).await? {
            Read::Upstream(0) => return Err(Error::UpstreamProtocol),
            Read::Upstream(_) => {}
            Read::ClientGone => {
                return Ok(Done {
                    status: 499,
                    bytes: 0,
                    next: Next::Close,
                    reason: Some("client_closed"),
                });
            }
        }
    };
    rbuf.drain(..resp.head_len);
    ctx.ttfb = Some(ctx.started.elapsed());
    let (body_kind, upstream_keep_alive) =
        response_framing(&resp, &head.method).map_err(|_| Error::UpstreamProtocol)?;
    let key = app.key_fragments.get(api_key);
    // Error answers are small: read whole and scrubbed of the key before anything is sent.
    if resp.status >= 400 && body_kind != ResponseBody::None {
        let plan = BodyPlan {
            kind: body_kind,
            dechunk: false,
            upstream_keep_alive,
        };
        return error_answer(
            app, client, framing, ctx, conn, rbuf, &resp, plan, &key, claims,
        )
        .await;
    }

    // HTTP/1.0 clients cannot read chunked framing: de-chunk for them and end by closing.
    let dechunk = head.version == Version::Http10 && body_kind == ResponseBody::Chunked;
    let close_client = !framing.keep_alive || body_kind == ResponseBody::UntilClose || dechunk;
    let out_head = client_response_head(
        app,
        &resp,
        body_kind,
        dechunk,
        close_client,
        ctx,
        &key,
        claims,
    );
    // When body bytes came with the head (the usual case for JSON answers), head and body leave in one
    // write. Otherwise (a stream whose first event is still being generated) the head goes now, so the
    // client sees the status at once.
    let mut head_out = Some(out_head);
    if rbuf.is_empty() || body_kind == ResponseBody::None {
        let h = head_out.take().unwrap_or_default();
        if client.write_all(&h).await.is_err() {
            return Ok(Done {
                status: resp.status,
                bytes: 0,
                next: Next::Close,
                reason: Some("client_closed"),
            });
        }
    }

    app.stats.active_streams.fetch_add(1, Ordering::Relaxed);
    let plan = BodyPlan {
        kind: body_kind,
        dechunk,
        upstream_keep_alive,
    };
    let pumped = pump_body(app, client, conn, head_out, rbuf, plan).await;
    app.stats.active_streams.fetch_sub(1, Ordering::Relaxed);
    let next = if close_client {
        Next::Close
    } else {
        Next::KeepAlive
    };
    Ok(match pumped {
        Ok(bytes) => Done {
            status: resp.status,
            bytes,
            next,
            reason: None,
        },
        Err((bytes, why)) => Done {
            status: resp.status,
            bytes,
            next: Next::Close,
            reason: Some(why),
        },
    })
}

/// An error answer's body, read whole.
enum ErrorBody {
    /// The payload, and whether the provider's bytes ended exactly where it did (the connection may
    /// then be reused).
    Read(Vec<u8>, bool),
    ClientGone,
}

/// Answer the client with the provider's error (status >= 400): read its body whole (at most
/// `MAX_ERROR_BODY_BYTES`), replace every run of the key with `[redacted]` (`upstream/key_scrub.rs`) and send
/// it with its new Content-Length. A body that cannot be checked (compressed, or too large) is
/// withheld: nothing has been sent yet, so the relay answers `upstream_error_unchecked` instead.
#[allow(clippy::too_many_arguments)]
async fn error_answer<S: AsyncRead + AsyncWrite + Unpin>(
    app: &App,
    client: &mut Client<S>,
    framing: &RequestFraming,
    ctx: &Ctx,
    mut conn: Conn,
    pending: Vec<u8>,
    resp: &ResponseHead,
    plan: BodyPlan,
    key: &KeyFragments,
    claims: &Claims,
) -> Result<Done, Error> {
    // The relay asked for `identity`; a coded body would hide the key from the scrub.
    if resp
        .headers_named("content-encoding")
        .any(|v| !trim_ows(v).eq_ignore_ascii_case(b"identity"))
    {
        return Err(Error::UpstreamErrorUnchecked);
    }
    let gone = |status| Done {
        status,
        bytes: 0,
        next: Next::Close,
        reason: Some("client_closed"),
    };
    let (body, clean) = match read_error_body(app, client, &mut conn, pending, plan.kind).await? {
        ErrorBody::Read(body, clean) => (body, clean),
        ErrorBody::ClientGone => return Ok(gone(499)),
    };
    if clean && plan.upstream_keep_alive {
        app.upstream.release(conn);
    }
    let body = key.scrub(&body).unwrap_or(body);
    let close = !framing.keep_alive;
    let len = ResponseBody::Length(body.len() as u64);
    let mut out = client_response_head(app, resp, len, false, close, ctx, key, claims);
    out.extend_from_slice(&body);
    if client.write_all(&out).await.is_err() {
        return Ok(gone(resp.status));
    }
    Ok(Done {
        status: resp.status,
        bytes: body.len() as u64,
        next: if close { Next::Close } else { Next::KeepAlive },
        reason: None,
    })
}

/// Read a whole response body of framing `kind` (never `None`), starting with the bytes already
/// read, up to `MAX_ERROR_BODY_BYTES`; each read waits at most `upstream.read_idle_timeout`.
async fn read_error_body<S: AsyncRead + AsyncWrite + Unpin>(
    app: &App,
    client: &mut Client<S>,
    conn: &mut Conn,
    mut pending: Vec<u8>,
    kind: ResponseBody,
) -> Result<ErrorBody, Error> {
    let cap = MAX_ERROR_BODY_BYTES as u64;
    if matches!(kind, ResponseBody::Length(n) if n > cap) {
        return Err(Error::UpstreamErrorUnchecked);
    }
    let mut dec = (kind == ResponseBody::Chunked).then(|| {
        ChunkedDecoder::new(ChunkedLimits {
            max_chunk_ext_bytes: MAX_CHUNK_EXT_BYTES,
            max_trailer_bytes: MAX_TRAILER_BYTES,
            max_body_bytes: cap,
        })
    });
    let mut body = Vec::new();
    let idle = Duration::from_secs(app.cfg.upstream.read_idle_timeout);
    loop {
        match (&mut dec, kind) {
            (Some(d), _) => {
                let used = d.decode(&pending, Some(&mut body)).map_err(|e| match e {
                    ChunkError::TooLarge => Error::UpstreamErrorUnchecked,
                    ChunkError::Malformed(_) => Error::UpstreamProtocol,
                })?;
                pending.drain(..used);
                if d.is_done() {
                    return Ok(ErrorBody::Read(body, pending.is_empty()));
                }
            }
            (None, ResponseBody::Length(n)) => {
                if pending.len() as u64 >= n {
                    let clean = pending.len() as u64 == n;
                    pending.truncate(n as usize);
                    return Ok(ErrorBody::Read(pending, clean));
                }
            }
            (None, _) => {
                if pending.len() as u64 > cap {
                    return Err(Error::UpstreamErrorUnchecked);
                }
            }
        }
        match read_upstream_or_client(client, conn, &mut pending, Instant::now() + idle).await? {
            Read::Upstream(0) if kind == ResponseBody::UntilClose => {
                if pending.len() as u64 > cap {
                    return Err(Error::UpstreamErrorUnchecked);
                }
                return Ok(ErrorBody::Read(pending, false));
            }
            Read::Upstream(0) => return Err(Error::UpstreamProtocol),
            Read::Upstream(_) => {}
            Read::ClientGone => return Ok(ErrorBody::ClientGone),
        }
    }
}

/// How a response body is framed and passed on.
struct BodyPlan {
    kind: ResponseBody,
    /// Decode chunked framing for an HTTP/1.0 client (which then gets a close-delimited body).
    dechunk: bool,
    /// The provider allows reusing the connection once this body has been read exactly.
    upstream_keep_alive: bool,
}

enum Read {
    Upstream(usize),
    ClientGone,
}

/// Read from the provider; meanwhile, notice a client that disconnects (and cancel at once) and keep
/// any pipelined bytes it sends for the next request.
async fn read_upstream_or_client<S: AsyncRead + AsyncWrite + Unpin>(
    client: &mut Client<S>,
    conn: &mut Conn,
    rbuf: &mut Vec<u8>,
    deadline: Instant,
) -> Result<Read, Error> {
    rbuf.reserve(UPSTREAM_READ);
    loop {
        let watch_client = !client.eof && client.buf.len() < MAX_PIPELINED;
        if watch_client {
            client.buf.reserve(1024);
        }
        tokio::select! {
            biased;
            r = tokio::time::timeout_at(deadline, conn.stream.read_buf(rbuf)) => {
                return match r {
                    Ok(Ok(n)) => Ok(Read::Upstream(n)),
                    Ok(Err(_)) => Err(Error::UpstreamProtocol),
                    Err(_) => Err(Error::UpstreamTimeout),
                };
            }
            r = client.io.read_buf(&mut client.buf), if watch_client => {
                match r {
                    Ok(0) | Err(_) => {
                        client.eof = true;
                        return Ok(Read::ClientGone);
                    }
                    Ok(_) => continue,
                }
            }
        }
    }
}

/// Copy the response body to the client as it arrives. Returns bytes sent and whether the body ended
/// exactly where its framing said (the precondition for reusing the upstream connection), or the bytes
/// sent and a reason when the stream was cut.
async fn pump_body<S: AsyncRead + AsyncWrite + Unpin>(
    app: &App,
    client: &mut Client<S>,
    conn: Conn,
    mut head: Option<Vec<u8>>,
    mut pending: Vec<u8>,
    plan: BodyPlan,
) -> Result<u64, (u64, &'static str)> {
    let BodyPlan {
        kind,
        dechunk,
        upstream_keep_alive,
    } = plan;
    // Returned to the pool the moment its response is fully read, before the last bytes go to the
    // client, so a client's next request can already reuse it.
    let mut conn = Some(conn);
    let release = |conn: &mut Option<Conn>, clean: bool| {
        if let Some(c) = conn.take() {
            if clean && upstream_keep_alive {
                app.upstream.release(c);
            }
        }
    };
    let idle = Duration::from_secs(app.cfg.upstream.read_idle_timeout);
    let mut sent: u64 = 0;
    let mut remaining = match kind {
        ResponseBody::None => {
            release(&mut conn, pending.is_empty());
            return Ok(0);
        }
        ResponseBody::Length(n) => Some(n),
        _ => None,
    };
    let mut dec = (kind == ResponseBody::Chunked).then(|| {
        ChunkedDecoder::new(ChunkedLimits {
            max_chunk_ext_bytes: MAX_CHUNK_EXT_BYTES,
            max_trailer_bytes: MAX_TRAILER_BYTES,
            max_body_bytes: u64::MAX,
        })
    });
    let mut decoded = Vec::new();
    loop {
        if !pending.is_empty() {
            // Forward exactly the bytes that belong to this body; anything after it means the provider
            // is out of sync, and the connection is not reused.
            let (take, finished) = match (&mut dec, remaining) {
                (Some(d), _) => {
                    let used = d
                        .decode(&pending, if dechunk { Some(&mut decoded) } else { None })
                        .map_err(|_| (sent, "upstream_bad_chunked"))?;
                    (used, d.is_done())
                }
                (None, Some(n)) => {
                    let take = (pending.len() as u64).min(n) as usize;
                    remaining = Some(n - take as u64);
                    (take, n == take as u64)
                }
                (None, None) => (pending.len(), false),
            };
            let leftover = pending.len() > take;
            if finished {
                release(&mut conn, !leftover);
            }
            let out: &[u8] = if dechunk { &decoded } else { &pending[..take] };
            if let Some(mut h) = head.take() {
                h.extend_from_slice(out);
                client
                    .write_all(&h)
                    .await
                    .map_err(|_| (sent, "client_closed"))?;
                sent += out.len() as u64;
            } else if !out.is_empty() {
                client
                    .write_all(out)
                    .await
                    .map_err(|_| (sent, "client_closed"))?;
                sent += out.len() as u64;
            }
            decoded.clear();
            pending.drain(..take);
            if finished {
                return Ok(sent);
            }
        }
        let deadline = Instant::now() + idle;
        let up = conn.as_mut().expect("held until the body is complete");
        match read_upstream_or_client(client, up, &mut pending, deadline).await {
            Ok(Read::Upstream(0)) => {
                return if kind == ResponseBody::UntilClose {
                    Ok(sent)
                } else {
                    Err((sent, "upstream_eof"))
                };
            }
            Ok(Read::Upstream(_)) => {}
            Ok(Read::ClientGone) => return Err((sent, "client_closed")),
            Err(Error::UpstreamTimeout) => return Err((sent, "upstream_idle_timeout")),
            Err(_) => return Err((sent, "upstream_read_error")),
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn client_response_head(
    app: &App,
    resp: &ResponseHead,
    kind: ResponseBody,
    dechunk: bool,
    close: bool,
    ctx: &Ctx,
    key: &KeyFragments,
    claims: &Claims,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(1024);
    // A provider echoing the key, whole or in part (debug headers, misconfigured gateways), must not
    // hand it to the page: such a reason phrase is replaced and such a header dropped.
    let phrase = if key.found_in(resp.reason.as_bytes()) {
        reason(resp.status)
    } else {
        reason_or(resp)
    };
    let _ = write!(out, "HTTP/1.1 {} {phrase}\r\n", resp.status);
    for h in &resp.headers {
        if DROP_RESPONSE_HEADERS.contains(&h.name.as_str()) || key.found_in(&h.value) {
            continue;
        }
        out.extend_from_slice(h.name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(&h.value);
        out.extend_from_slice(b"\r\n");
    }
    match kind {
        ResponseBody::Length(n) => {
            let _ = write!(out, "content-length: {n}\r\n");
        }
        ResponseBody::Chunked if !dechunk => {
            out.extend_from_slice(b"transfer-encoding: chunked\r\n")
        }
        _ => {}
    }
    for (n, v) in cors::response_headers(
        ctx.origin.as_deref().map(str::as_bytes),
        &app.cfg.cors,
        claims.origins.as_deref(),
    ) {
        let _ = write!(out, "{n}: {v}\r\n");
    }
    let _ = write!(out, "x-request-id: {}\r\n", ctx.rid);
    out.extend_from_slice(SAFETY_HEADERS.as_bytes());
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

fn reason_or(resp: &ResponseHead) -> &str {
    if resp.reason.is_empty()
        || !resp
            .reason
            .bytes()
            .all(|b| b == b' ' || b == b'\t' || b.is_ascii_graphic())
    {
        reason(resp.status)
    } else {
        &resp.reason
    }
}

/// Answer with an error. When the request's body has not been read yet, read and discard it (bounded)
/// so the connection can serve the next request; if that is not possible, close after answering.
pub(crate) async fn reply_error<S: AsyncRead + AsyncWrite + Unpin>(
    app: &App,
    client: &mut Client<S>,
    ctx: &Ctx,
    framing: Option<&RequestFraming>,
    e: Error,
    body_read: Option<bool>,
) -> Done {
    let mut close = e.must_close() || framing.is_none_or(|f| !f.keep_alive);
    if let Some(f) = framing {
        if !close && body_read != Some(true) && f.body != BodyFraming::None {
            // A client waiting for 100-continue will not send the body: the exchange ends here.
            close = f.expect_continue
                || client
                    .discard_body(f.body, MAX_DISCARD_BYTES)
                    .await
                    .is_err();
        }
    }
    app.metrics.rejection(e.reason());
    let mut r = Response::error(&e).header("x-request-id", ctx.rid.clone());
    for (n, v) in cors::response_headers(
        ctx.origin.as_deref().map(str::as_bytes),
        &app.cfg.cors,
        None,
    ) {
        r.headers.push((n, v));
    }
    r.close = close;
    let ok = client
        .write_all(&r.encode(ctx.method == "HEAD"))
        .await
        .is_ok();
    Done {
        status: r.status,
        bytes: r.body.len() as u64,
        next: if close || !ok {
            Next::Close
        } else {
            Next::KeepAlive
        },
        reason: Some(e.reason()),
    }
}

fn log_access(app: &App, ctx: &Ctx, done: &Done, target: &str) {
    if !app.log.access {
        return;
    }
    // Counted calls are always logged; everything else (404s, health checks, preflights, refusals) is
    // sampled per client and reason, so a flood cannot grow the log without bound (the metrics still
    // count every request, and held-back lines are reported by count).
    let class = done.reason.unwrap_or(status_class(done.status));
    if !ctx.reserved && !app.log_sampler.admit(ctx.ip, class, app.clock.unix_now()) {
        return;
    }
    let path = redact_target(target.as_bytes());
    app.log.access_line(&AccessLine {
        rid: &ctx.rid,
        ip: ctx.ip,
        method: &ctx.method,
        path: &path,
        status: done.status,
        bytes: done.bytes,
        dur_ms: ms(ctx.started.elapsed()),
        ttfb_ms: ctx.ttfb.map(ms),
        tenant: ctx.tenant.as_deref(),
        jti: ctx.jti.as_deref(),
        provider: ctx.provider.as_deref(),
        uid: ctx.uid.as_deref(),
        reason: done.reason,
    });
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}
