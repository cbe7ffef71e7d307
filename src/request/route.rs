//! Which answer a request gets. `handle` frames the request, builds its [`Request`], charges the
//! sender's own allowance, and sends it to one of the relay's own answers (`request/endpoints.rs`:
//! preflight, `/health`, `/metrics`, admin) or to the relay proper (`request/relay.rs`), then records
//! the outcome. The pure parts are [`route`] (path to answer) and [`locate`] (where the token is and
//! what is forwarded), unit-tested here and fuzzed (`fuzz/props/locate.rs`).

use std::net::IpAddr;
use std::sync::atomic::Ordering;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;

use crate::app::{App, Nets};
use crate::error::Error;
use crate::http::cors;
use crate::http::framing::{request_framing, BodyFraming, RequestFraming};
use crate::http::head::{RequestHead, ResponseHead};
use crate::request::client::Client;
use crate::request::context::{Request, Who};
use crate::request::outcome::{Next, Outcome};
use crate::request::reply::{self, Body};
use crate::request::{access_log, admit, endpoints, relay};
use crate::server::shutdown::ShutdownWatch;
use crate::token::secret::SecretString;
use crate::ws::handshake::token_in_protocols;

/// The answer a request is routed to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route<'a> {
    /// A CORS preflight: answered from config, before any token work.
    Preflight,
    Health,
    Metrics,
    /// The admin API; the path, whole.
    Admin(&'a str),
    /// The relay: the path after the base path, and the query without its `?`.
    Relay {
        after_base: &'a str,
        query: Option<&'a str>,
    },
    NotFound,
}

/// Route a request by method, path and whether it asks for a preflight (`Access-Control-Request-Method`
/// present). `base` is `server.base_path` (ending in `/`).
pub fn route<'a>(method: &str, target: &'a str, preflight: bool, base: &str) -> Route<'a> {
    let (path, query) = match split_once_byte(target, b'?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    if method == "OPTIONS" && preflight {
        return Route::Preflight;
    }
    match path {
        "/health" => return Route::Health,
        "/metrics" => return Route::Metrics,
        _ if path.starts_with("/admin/v1/") => return Route::Admin(path),
        _ => {}
    }
    let after_base = if path == base.trim_end_matches('/') {
        Some("")
    } else {
        path.strip_prefix(base)
    };
    match after_base {
        Some(after_base) => Route::Relay { after_base, query },
        None => Route::NotFound,
    }
}

/// Take one request through the pipeline and say how the connection continues. `answer` is the
/// connection's response head, refilled by the exchange with the provider.
pub async fn handle<S: AsyncRead + AsyncWrite + Unpin>(
    app: &App,
    client: &mut Client<S>,
    head: &RequestHead,
    answer: &mut ResponseHead,
    shutdown: &ShutdownWatch,
) -> Next {
    app.obs.stats.requests.fetch_add(1, Ordering::Relaxed);
    client.consume(head.head_len);
    // A request the framing gate refuses is answered as one that closes the connection.
    let (framing, refused) = match request_framing(head) {
        Ok(f) => (f, None),
        Err(e) => {
            let closing = RequestFraming {
                body: BodyFraming::None,
                keep_alive: false,
                expect_continue: false,
            };
            (closing, Some(Error::from(e)))
        }
    };
    let origin = head.header("origin");
    let mut req = Request {
        app,
        ip: client_ip(&app.nets, client.peer().ip(), head),
        client,
        head,
        answer,
        framing,
        rid: app.obs.ids.next(),
        started: Instant::now(),
        origin,
        bad_origin: origin.is_some_and(|o| !cors::is_origin(o)),
        who: Who::Nobody,
        ttfb: None,
        reserved: false,
        metered: None,
        charged: None,
    };
    let outcome = match refused {
        Some(e) => reply::refuse(&mut req, e, Body::Cut).await,
        None => dispatch(&mut req, shutdown).await,
    };
    access_log::record(&req, &outcome);
    outcome.next()
}

async fn dispatch<S: AsyncRead + AsyncWrite + Unpin>(
    req: &mut Request<'_, S>,
    shutdown: &ShutdownWatch,
) -> Outcome {
    let app = req.app;
    let head = req.head;
    let to = route(
        head.method(),
        head.target(),
        head.header("access-control-request-method").is_some(),
        &app.cfg.server.base_path,
    );
    // Every routed request spends its sender's allowance first (junk, 404s and preflights included),
    // and nothing else's: the relay-wide limit is charged only once a token is proven.
    let path = split_once_byte(head.target(), b'?').map_or(head.target(), |(p, _)| p);
    if admit::charges_ip(app, req.ip, path) {
        if let Err(e) = admit::charge_ip(app, req.ip).await {
            app.obs.stats.rate_limited.fetch_add(1, Ordering::Relaxed);
            return reply::refuse(req, e, Body::Unread).await;
        }
    }
    match to {
        Route::Preflight => endpoints::preflight(req).await,
        Route::Health => endpoints::health(req).await,
        Route::Metrics => endpoints::metrics(req).await,
        Route::Admin(path) => endpoints::admin(req, path).await,
        Route::Relay { after_base, query } => relay::relay(req, after_base, query, shutdown).await,
        Route::NotFound => reply::refuse(req, Error::NotFound, Body::Unread).await,
    }
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
pub fn locate(head: &RequestHead, after_base: &str, query: Option<&str>) -> Located {
    let mut token = None;
    let rest = match split_once_byte(after_base, b'/') {
        Some((first, rest)) if is_token_like(first) => {
            token = Some(first);
            slash_then(rest)
        }
        None if is_token_like(after_base) => {
            token = Some(after_base);
            String::new()
        }
        _ if after_base.is_empty() => String::new(),
        _ => slash_then(after_base),
    };
    let mut kept = String::new();
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("token", v)) => {
                token = token.or(Some(v));
            }
            _ => {
                kept.push(if kept.is_empty() { '?' } else { '&' });
                kept.push_str(pair);
            }
        }
    }
    let token = token.or_else(|| header_token(head));
    Located {
        token: token.map(|t| SecretString::new(t.to_string())),
        rest,
        query: kept,
    }
}

/// `s.split_once(char::from(b))` for an ASCII `b`, found with `memchr`: a relay target carries a token
/// of a few hundred bytes, and the request path is searched for `?` and `/` on every request.
fn split_once_byte(s: &str, b: u8) -> Option<(&str, &str)> {
    debug_assert!(b.is_ascii());
    // An ASCII byte is never inside a multi-byte character, so both sides are whole characters.
    memchr::memchr(b, s.as_bytes()).map(|at| (&s[..at], &s[at + 1..]))
}

/// `/` then `rest`, in one allocation of the exact size (this runs for every relayed request).
fn slash_then(rest: &str) -> String {
    let mut s = String::with_capacity(1 + rest.len());
    s.push('/');
    s.push_str(rest);
    s
}

fn is_token_like(s: &str) -> bool {
    s.starts_with("rt1.")
}

fn header_token(head: &RequestHead) -> Option<&str> {
    // The scheme is case-insensitive (RFC 9110 §11.1): `BEARER` is as good as `Bearer`.
    if let Some(t) = head.header("authorization").and_then(bearer_token) {
        if is_token_like(t) {
            return Some(t);
        }
    }
    ["x-api-key", "x-goog-api-key"]
        .into_iter()
        .filter_map(|name| head.header(name).and_then(|v| std::str::from_utf8(v).ok()))
        .find(|v| is_token_like(v))
        // A browser cannot set headers on a WebSocket: the official clients carry the API key (here
        // the relay token) as a subprotocol entry.
        .or_else(|| token_in_protocols(head).filter(|t| is_token_like(t)))
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

/// The client address: the peer, or the right-most untrusted address of `X-Forwarded-For` when the peer
/// is a trusted proxy (left-most entries are client-controlled and never believed alone).
fn client_ip(nets: &Nets, peer: IpAddr, head: &RequestHead) -> IpAddr {
    let trusted = |ip: IpAddr| nets.trusted_proxies.iter().any(|n| n.contains(ip));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::head::Version;

    #[test]
    fn split_once_byte_is_split_once() {
        for s in [
            "",
            "?",
            "a?b",
            "/p?q?r",
            "é?ü",
            "no",
            "ab/",
            "/x/y",
            "rt1.é/ab",
        ] {
            for b in [b'?', b'/'] {
                assert_eq!(split_once_byte(s, b), s.split_once(char::from(b)), "{s:?}");
            }
        }
    }

    fn head(headers: &[(&str, &[u8])]) -> RequestHead {
        RequestHead::from_parts("POST", "/", Version::Http11, headers.iter().copied(), 0)
    }

    fn token(l: &Located) -> Option<&str> {
        l.token.as_ref().map(|t| t.expose())
    }

    #[test]
    fn routes_by_path_after_the_base() {
        let b = "/relayapi/";
        assert_eq!(route("GET", "/health", false, b), Route::Health);
        assert_eq!(route("GET", "/metrics?x", false, b), Route::Metrics);
        assert_eq!(
            route("POST", "/admin/v1/tokens/revoke", false, b),
            Route::Admin("/admin/v1/tokens/revoke")
        );
        assert_eq!(route("OPTIONS", "/relayapi/x", true, b), Route::Preflight);
        assert_eq!(
            route("OPTIONS", "/relayapi/x", false, b),
            Route::Relay {
                after_base: "x",
                query: None
            }
        );
        assert_eq!(
            route("POST", "/relayapi/rt1.a/v1/chat?token=z&a=b", false, b),
            Route::Relay {
                after_base: "rt1.a/v1/chat",
                query: Some("token=z&a=b")
            }
        );
        assert_eq!(
            route("GET", "/relayapi", false, b),
            Route::Relay {
                after_base: "",
                query: None
            }
        );
        assert_eq!(route("GET", "/relayapix", false, b), Route::NotFound);
        assert_eq!(route("GET", "/", false, b), Route::NotFound);
    }

    #[test]
    fn the_path_token_wins_then_the_query_then_headers() {
        let h = head(&[("authorization", b"Bearer rt1.header")]);
        let l = locate(&h, "rt1.path/v1/chat", Some("token=rt1.query&a=1"));
        assert_eq!(token(&l), Some("rt1.path"));
        assert_eq!((l.rest.as_str(), l.query.as_str()), ("/v1/chat", "?a=1"));
        let l = locate(&h, "v1/chat", Some("a=1&token=rt1.query&b=2&token=x"));
        assert_eq!(token(&l), Some("rt1.query"));
        assert_eq!(
            (l.rest.as_str(), l.query.as_str()),
            ("/v1/chat", "?a=1&b=2")
        );
        let l = locate(&h, "v1/chat", None);
        assert_eq!(token(&l), Some("rt1.header"));
        assert_eq!((l.rest.as_str(), l.query.as_str()), ("/v1/chat", ""));
        let l = locate(&head(&[]), "rt1.only", Some("&&"));
        assert_eq!(token(&l), Some("rt1.only"));
        assert_eq!((l.rest.as_str(), l.query.as_str()), ("", ""));
        assert_eq!(token(&locate(&head(&[]), "", None)), None);
    }

    #[test]
    fn header_tokens_must_look_like_tokens() {
        let l = locate(&head(&[("x-api-key", b"sk-real-key")]), "v1/x", None);
        assert_eq!(token(&l), None);
        let l = locate(
            &head(&[
                ("authorization", b"Basic rt1.x"),
                ("x-goog-api-key", b"rt1.goog"),
            ]),
            "v1/x",
            None,
        );
        assert_eq!(token(&l), Some("rt1.goog"));
    }

    /// `X-Forwarded-For` is believed only from a trusted proxy, and only up to the first hop that is
    /// not itself trusted: entries a client wrote further left are never taken.
    #[test]
    fn the_client_address_is_the_rightmost_untrusted_hop() {
        let nets = Nets {
            trusted_proxies: vec![crate::token::format::IpNet::parse("10.0.0.0/8").unwrap()],
            monitoring: vec![],
        };
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let xff = head(&[("x-forwarded-for", b"6.6.6.6, 1.2.3.4, 10.0.0.7")]);
        assert_eq!(client_ip(&nets, ip("10.0.0.1"), &xff), ip("1.2.3.4"));
        // From an untrusted peer the header means nothing.
        assert_eq!(client_ip(&nets, ip("5.5.5.5"), &xff), ip("5.5.5.5"));
        // Only trusted hops: the left-most of them.
        let inner = head(&[("x-forwarded-for", b"10.1.1.1,10.2.2.2")]);
        assert_eq!(client_ip(&nets, ip("10.0.0.1"), &inner), ip("10.1.1.1"));
        // Unparsable entries are skipped, and no header leaves the peer.
        let junk = head(&[("x-forwarded-for", b"1.2.3.4, junk")]);
        assert_eq!(client_ip(&nets, ip("10.0.0.1"), &junk), ip("1.2.3.4"));
        assert_eq!(client_ip(&nets, ip("10.0.0.1"), &head(&[])), ip("10.0.0.1"));
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
