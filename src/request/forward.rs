//! The two heads the relay writes on a client's behalf, as pure functions over bytes: the request head
//! for the provider (the client's head filtered by the provider's allow-list, the token's path and
//! query, the provider's credential last) and the response head for the client (the provider's head
//! stripped of hop-by-hop, framing, credential and operator-policy fields, and of anything that echoes
//! the key, plus the relay's own framing, CORS and safety fields). No sockets, no `App`: tested below.

use crate::http::cors;
use crate::http::framing::{BodyFraming, ResponseBody};
use crate::http::head::{trim_ows, RequestHead, ResponseHead};
use crate::http::respond::{reason, SAFETY_HEADERS};
use crate::json::write::push_u64;
use crate::request::route::Located;
use crate::token::secret::SecretString;
use crate::upstream::key_scrub::KeyFragments;
use crate::upstream::provider::{ApiFamily, Provider};

/// Response headers never passed back: hop-by-hop, framing (we set our own), anything credential-like,
/// cookies for the provider's domain, and CORS/HSTS/alt-svc policy that belongs to the relay's operator.
/// `name` is lower-case, as the head parser stores names.
fn dropped_from_response(name: &str) -> bool {
    matches!(
        name,
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "te"
            | "trailer"
            | "upgrade"
            | "transfer-encoding"
            | "content-length"
            | "set-cookie"
            | "set-cookie2"
            | "authorization"
            | "proxy-authorization"
            | "proxy-authenticate"
            | "www-authenticate"
            | "x-api-key"
            | "x-goog-api-key"
            | "api-key"
            | "alt-svc"
            | "strict-transport-security"
            | "access-control-allow-origin"
            | "access-control-allow-credentials"
            | "access-control-allow-headers"
            | "access-control-allow-methods"
            | "access-control-expose-headers"
            | "access-control-max-age"
            | "referrer-policy"
    )
}

/// Anthropic rejects requests without a version header; official SDKs send it, raw `fetch` often not.
const ANTHROPIC_DEFAULT_VERSION: &str = "2023-06-01";

/// The request for the provider: head, then `body` when it is buffered. `streamed` is the framing of
/// a body still to come from the client (then `body` is empty): a Content-Length is announced as
/// such, a chunked body as re-encoded chunks (`transfer-encoding: chunked`).
pub fn request(
    head: &RequestHead,
    provider: &Provider,
    api_key: &SecretString,
    loc: &Located,
    body: &[u8],
    streamed: Option<BodyFraming>,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(512 + body.len());
    let path = if loc.rest.is_empty() && provider.base.prefix.is_empty() {
        "/"
    } else {
        &loc.rest
    };
    // Written piece by piece rather than through `write!`: this runs for every request.
    for part in [head.method(), " ", &provider.base.prefix, path, &loc.query] {
        out.extend_from_slice(part.as_bytes());
    }
    out.extend_from_slice(b" HTTP/1.1\r\n");
    field(&mut out, "host", provider.base.authority().as_bytes());
    // Client fields pass by the provider's allow-list (`upstream/forward_headers.rs`). Fields the client
    // listed in `Connection` are hop-by-hop too (RFC 9110 §7.6.1), even when allowed; `close` and
    // `keep-alive` name no field, so the usual request skips that scan.
    let lists_fields = head
        .headers_named("connection")
        .flat_map(|v| v.split(|&b| b == b','))
        .map(trim_ows)
        .any(|t| !t.eq_ignore_ascii_case(b"close") && !t.eq_ignore_ascii_case(b"keep-alive"));
    let mut has_anthropic_version = false;
    for (name, value) in head.headers() {
        if !provider.headers.allows(name) || (lists_fields && listed_in_connection(head, name)) {
            continue;
        }
        has_anthropic_version |= name == "anthropic-version";
        field(&mut out, name, value);
    }
    // Answers come uncompressed: an error answer must be readable to be checked for the key, and the
    // client's codings cannot be trusted to be ones the relay can read.
    out.extend_from_slice(b"accept-encoding: identity\r\n");
    match streamed {
        Some(BodyFraming::Chunked) => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        Some(BodyFraming::Length(n)) => content_length(&mut out, n),
        _ if !body.is_empty() || matches!(head.method(), "POST" | "PUT" | "PATCH") => {
            content_length(&mut out, body.len() as u64);
        }
        _ => {}
    }
    if provider.family == ApiFamily::Anthropic && !has_anthropic_version {
        field(
            &mut out,
            "anthropic-version",
            ANTHROPIC_DEFAULT_VERSION.as_bytes(),
        );
    }
    // The provider's credential goes in last, after every client header has been filtered out. The
    // key is written straight into the request: no other copy of it is made.
    let (name, prefix) = provider.auth.header();
    for part in [name, ": ", prefix, api_key.expose(), "\r\n\r\n"] {
        out.extend_from_slice(part.as_bytes());
    }
    out.extend_from_slice(body);
    out
}

/// Appends the field line `name: value` CRLF.
fn field(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Appends `content-length: n` CRLF.
fn content_length(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(b"content-length: ");
    push_u64(out, n);
    out.extend_from_slice(b"\r\n");
}

/// Whether the client's `Connection` fields name `name` (RFC 9110 §7.6.1).
fn listed_in_connection(head: &RequestHead, name: &str) -> bool {
    head.headers_named("connection")
        .flat_map(|v| v.split(|&b| b == b','))
        .any(|t| trim_ows(t).eq_ignore_ascii_case(name.as_bytes()))
}

/// How the relayed answer's body reaches the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Relayed {
    pub kind: ResponseBody,
    /// Chunked framing decoded for an HTTP/1.0 client (which then reads until close).
    pub dechunk: bool,
    /// The head announces `connection: close`.
    pub close: bool,
}

/// The response head for the client. `key` is the API key's fragments: a reason phrase or field that
/// echoes it is replaced or dropped. `cors` are the CORS fields for this request, `rid` its id.
pub fn response_head(
    resp: &ResponseHead,
    relayed: Relayed,
    key: &KeyFragments,
    cors: &[cors::Field<'_>],
    rid: &str,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(1024);
    // A provider echoing the key, whole or in part (debug headers, misconfigured gateways), must not
    // hand it to the page: such a reason phrase is replaced and such a header dropped.
    let phrase = if key.found_in(resp.reason().as_bytes()) {
        reason(resp.status)
    } else {
        reason_or(resp)
    };
    out.extend_from_slice(b"HTTP/1.1 ");
    push_u64(&mut out, u64::from(resp.status));
    out.push(b' ');
    out.extend_from_slice(phrase.as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in resp.headers() {
        if dropped_from_response(name) || key.found_in(value) {
            continue;
        }
        field(&mut out, name, value);
    }
    match relayed.kind {
        ResponseBody::Length(n) => content_length(&mut out, n),
        ResponseBody::Chunked if !relayed.dechunk => {
            out.extend_from_slice(b"transfer-encoding: chunked\r\n")
        }
        _ => {}
    }
    for &(name, value) in cors {
        field(&mut out, name, value.as_bytes());
    }
    field(&mut out, "x-request-id", rid.as_bytes());
    out.extend_from_slice(SAFETY_HEADERS.as_bytes());
    if relayed.close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// The provider's reason phrase when it is printable, else the standard one.
fn reason_or(resp: &ResponseHead) -> &str {
    let phrase = resp.reason();
    if phrase.is_empty()
        || !phrase
            .bytes()
            .all(|b| b == b' ' || b == b'\t' || b.is_ascii_graphic())
    {
        reason(resp.status)
    } else {
        phrase
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::head::Version;
    use crate::upstream::provider::Registry;
    use std::sync::Arc;

    fn provider(name: &str) -> Arc<Provider> {
        let cfg = crate::config::parse_config(
            r#"{"providers": {"openai": {"base_url": "http://127.0.0.1:9/v1"}}}"#,
            std::path::Path::new("config.json"),
        )
        .unwrap();
        Registry::from_config(&cfg).get(name).unwrap()
    }

    fn head(method: &str, headers: &[(&str, &str)]) -> RequestHead {
        RequestHead::from_parts(
            method,
            "/ignored",
            Version::Http11,
            headers.iter().map(|(n, v)| (*n, v.as_bytes())),
            0,
        )
    }

    fn loc(rest: &str, query: &str) -> Located {
        Located {
            token: None,
            rest: rest.into(),
            query: query.into(),
        }
    }

    fn text(bytes: &[u8]) -> String {
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[test]
    fn the_request_carries_allowed_fields_then_the_key_last() {
        let h = head(
            "POST",
            &[
                ("content-type", "application/json"),
                ("cookie", "session=1"),
                ("authorization", "Bearer rt1.token"),
                ("openai-beta", "assistants=v2"),
                ("connection", "openai-beta"),
            ],
        );
        let key = SecretString::new("fake-key-1".to_string());
        let out = text(&request(
            &h,
            &provider("openai"),
            &key,
            &loc("/chat/completions", "?a=1"),
            b"{}",
            None,
        ));
        let (head_text, body) = out.split_once("\r\n\r\n").unwrap();
        assert_eq!(body, "{}");
        let lines: Vec<&str> = head_text.split("\r\n").collect();
        assert_eq!(lines[0], "POST /v1/chat/completions?a=1 HTTP/1.1");
        assert_eq!(lines[1], "host: 127.0.0.1:9");
        assert!(lines.contains(&"content-type: application/json"), "{out}");
        assert!(lines.contains(&"accept-encoding: identity"), "{out}");
        assert!(lines.contains(&"content-length: 2"), "{out}");
        // Cookies, the relay token and fields named in `Connection` never reach the provider.
        assert!(!out.contains("cookie"), "{out}");
        assert!(!out.contains("rt1.token"), "{out}");
        assert!(!out.contains("openai-beta"), "{out}");
        assert_eq!(lines.last(), Some(&"authorization: Bearer fake-key-1"));
    }

    #[test]
    fn a_streamed_body_is_announced_and_anthropic_gets_a_version() {
        let h = head("POST", &[]);
        let key = SecretString::new("fake-key-2".to_string());
        let out = text(&request(
            &h,
            &provider("anthropic"),
            &key,
            &loc("/v1/messages", ""),
            b"",
            Some(BodyFraming::Length(70_000)),
        ));
        assert!(out.starts_with("POST /v1/messages HTTP/1.1\r\n"), "{out}");
        assert!(out.contains("\r\ncontent-length: 70000\r\n"), "{out}");
        assert!(
            out.contains("\r\nanthropic-version: 2023-06-01\r\n"),
            "{out}"
        );
        assert!(out.ends_with("x-api-key: fake-key-2\r\n\r\n"), "{out}");
        // A GET without a body announces none.
        let out = text(&request(
            &head("GET", &[]),
            &provider("openai"),
            &key,
            &loc("", ""),
            b"",
            None,
        ));
        assert!(out.starts_with("GET /v1 HTTP/1.1\r\n"), "{out}");
        assert!(!out.contains("content-length"), "{out}");
        // A streamed chunked body goes as re-encoded chunks, announced as such and nothing else.
        let out = text(&request(
            &h,
            &provider("openai"),
            &key,
            &loc("/chat/completions", ""),
            b"",
            Some(BodyFraming::Chunked),
        ));
        assert!(out.contains("\r\ntransfer-encoding: chunked\r\n"), "{out}");
        assert!(!out.contains("content-length"), "{out}");
    }

    #[test]
    fn the_response_head_drops_what_is_not_the_clients_and_anything_echoing_the_key() {
        let resp = ResponseHead::from_parts(
            Version::Http11,
            200,
            "OK fake-key-3",
            [
                ("content-type", "text/event-stream"),
                ("set-cookie", "a=b"),
                ("transfer-encoding", "chunked"),
                ("x-debug", "key=fake-key-3"),
                ("access-control-allow-origin", "*"),
            ]
            .iter()
            .map(|(n, v)| (*n, v.as_bytes())),
            0,
        );
        let key = KeyFragments::new(b"fake-key-3");
        let cors = [("vary", "Origin")];
        let relayed = Relayed {
            kind: ResponseBody::Chunked,
            dechunk: false,
            close: false,
        };
        let out = text(&response_head(&resp, relayed, &key, &cors, "r-1"));
        assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
        assert!(
            out.contains("\r\ncontent-type: text/event-stream\r\n"),
            "{out}"
        );
        assert!(out.contains("\r\ntransfer-encoding: chunked\r\n"), "{out}");
        assert!(
            out.contains("\r\nvary: Origin\r\nx-request-id: r-1\r\n"),
            "{out}"
        );
        assert!(out.contains("referrer-policy: no-referrer\r\n"), "{out}");
        for gone in [
            "fake-key",
            "set-cookie",
            "x-debug",
            "access-control",
            "connection:",
        ] {
            assert!(!out.contains(gone), "{gone}: {out}");
        }
        assert!(out.ends_with("\r\n\r\n"));
        // De-chunked for HTTP/1.0: no chunked framing, and the end is the close.
        let relayed = Relayed {
            kind: ResponseBody::Chunked,
            dechunk: true,
            close: true,
        };
        let out = text(&response_head(&resp, relayed, &key, &[], "r-2"));
        assert!(!out.contains("transfer-encoding"), "{out}");
        assert!(out.ends_with("connection: close\r\n\r\n"), "{out}");
        let relayed = Relayed {
            kind: ResponseBody::Length(5),
            dechunk: false,
            close: false,
        };
        let out = text(&response_head(&resp, relayed, &key, &[], "r-3"));
        assert!(out.contains("\r\ncontent-length: 5\r\n"), "{out}");
    }
}
