//! The framing gate (`src/http/framing.rs`) on heads the parser accepted, against a reference of RFC 9112
//! §6.3 with our documented strictness, written out again here: at most one Content-Length, digits
//! only; Transfer-Encoding, over all its lines, exactly the one coding `chunked` and only in
//! HTTP/1.1; never both. For requests, the reference decides the body and the gate must agree; the
//! other decisions (Host, Connection, Expect) are taken from the same head with the two body fields
//! removed, so every difference is the body's; an accepted request has exactly one Host (at most one
//! in HTTP/1.0), all ASCII. `expect_continue` only when there is a body to wait
//! for; responses to HEAD and with 1xx/204/304 never have a body, and a body that runs to the close
//! never lets the connection be reused.
//!
//! The first byte picks HEAD or GET for the response check; the rest is a head (request or response,
//! whichever parses).

use relayapi::http::framing::{request_framing, response_framing, BodyFraming, ResponseBody};
use relayapi::http::head::{
    parse_request_head, parse_response_head, HeadLimits, RequestHead, ResponseHead, Version,
};

const LIMITS: HeadLimits = HeadLimits {
    max_head_bytes: 8192,
    max_headers: 64,
    max_uri_bytes: 1024,
};

pub fn check(data: &[u8]) {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    if let Ok(Some(head)) = parse_request_head(rest, &LIMITS) {
        let reference = reference_body(head.headers(), head.version);
        let ours = request_framing(&head);
        let stripped = RequestHead::from_parts(
            head.method(),
            head.target(),
            head.version,
            head.headers().filter(|&(name, _)| !is_body_field(name)),
            head.head_len,
        );
        let others = request_framing(&stripped);
        match (reference, &ours) {
            (None, ours) => assert!(ours.is_err(), "invalid body framing accepted: {ours:?}"),
            (Some(body), Ok(f)) => {
                let others = others.expect("only the body fields differ");
                assert_eq!(f.body, body);
                assert_eq!(f.keep_alive, others.keep_alive);
                // Accepted means the Host rules held: exactly one Host in HTTP/1.1, at most one
                // in HTTP/1.0, and its value ASCII (the gate admits uri-host [":" port] only).
                let hosts: Vec<&[u8]> = head.headers_named("host").collect();
                match head.version {
                    Version::Http11 => assert_eq!(hosts.len(), 1, "Host count"),
                    Version::Http10 => assert!(hosts.len() <= 1, "Host count"),
                }
                assert!(
                    hosts.iter().all(|h| h.is_ascii()),
                    "non-ASCII Host accepted"
                );
                let has_body = matches!(body, BodyFraming::Chunked | BodyFraming::Length(1..));
                let wants = head.headers().any(|(name, _)| name == "expect");
                let http11 = head.version == Version::Http11;
                assert_eq!(f.expect_continue, wants && http11 && has_body);
            }
            (Some(_), Err(e)) => assert_eq!(others.as_ref().err(), Some(e)),
        }
    }
    if let Ok(Some(resp)) = parse_response_head(rest, &LIMITS) {
        let method = if flags % 2 == 0 { "GET" } else { "HEAD" };
        let ours = response_framing(&resp, method);
        let reference = reference_body(resp.headers(), resp.version);
        let stripped = ResponseHead::from_parts(
            resp.version,
            resp.status,
            resp.reason(),
            resp.headers().filter(|&(name, _)| !is_body_field(name)),
            resp.head_len,
        );
        match (reference, ours) {
            (_, ours) if resp.status == 101 => assert!(ours.is_err()),
            (None, ours) => assert!(ours.is_err(), "invalid body framing accepted: {ours:?}"),
            // Refused for something other than the body fields (Connection).
            (Some(_), Err(e)) => assert_eq!(response_framing(&stripped, method).err(), Some(e)),
            (Some(body), Ok((framed, reuse))) => {
                let bodiless = method == "HEAD"
                    || (100..200).contains(&resp.status)
                    || matches!(resp.status, 204 | 304);
                let expected = match body {
                    _ if bodiless => ResponseBody::None,
                    BodyFraming::None => ResponseBody::UntilClose,
                    BodyFraming::Length(n) => ResponseBody::Length(n),
                    BodyFraming::Chunked => ResponseBody::Chunked,
                };
                assert_eq!(framed, expected);
                if framed == ResponseBody::UntilClose
                    || resp
                        .headers()
                        .any(|(n, v)| n == "connection" && v.eq_ignore_ascii_case(b"close"))
                {
                    assert!(!reuse, "connection reused after {framed:?}");
                }
            }
        }
    }
}

fn is_body_field(name: &str) -> bool {
    name == "content-length" || name == "transfer-encoding"
}

/// How the body is delimited, or `None` when the framing is invalid or ambiguous.
fn reference_body<'a>(
    headers: impl Iterator<Item = (&'a str, &'a [u8])> + Clone,
    version: Version,
) -> Option<BodyFraming> {
    let lengths: Vec<&[u8]> = headers
        .clone()
        .filter(|&(name, _)| name == "content-length")
        .map(|(_, value)| value)
        .collect();
    let codings: Vec<&[u8]> = headers
        .filter(|&(name, _)| name == "transfer-encoding")
        .flat_map(|(_, value)| value.split(|&b| b == b','))
        .map(|c| {
            let start = c
                .iter()
                .position(|b| !b" \t".contains(b))
                .unwrap_or(c.len());
            let end = c
                .iter()
                .rposition(|b| !b" \t".contains(b))
                .map_or(start, |i| i + 1);
            &c[start..end]
        })
        .collect();
    let length = match lengths.as_slice() {
        [] => None,
        [v] if !v.is_empty() && v.iter().all(u8::is_ascii_digit) => {
            Some(std::str::from_utf8(v).ok()?.parse::<u64>().ok()?)
        }
        _ => return None,
    };
    match (codings.as_slice(), length) {
        ([], None) => Some(BodyFraming::None),
        ([], Some(n)) => Some(BodyFraming::Length(n)),
        ([c], None) if c.eq_ignore_ascii_case(b"chunked") && version == Version::Http11 => {
            Some(BodyFraming::Chunked)
        }
        _ => None,
    }
}
