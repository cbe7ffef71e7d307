//! Request and response heads (`src/http/head.rs`), differential against `httparse`'s own verdict plus
//! our stricter rules, written out again here: at most two empty lines before a request-line and
//! none before a status-line, CRLF and nothing else as line ending, no line starting with
//! whitespace, origin-form (or `*` for OPTIONS) request-targets of RFC 3986 path and query
//! characters with complete percent-escapes and no fragment, status codes 100-599 followed by SP,
//! and the three size limits. A head is accepted by `parse_request_head` / `parse_response_head`
//! exactly when this reference accepts it, with the same fields.
//!
//! Beyond the differential: an accepted head does not depend on the bytes after it and none of its
//! prefixes is accepted or refused (the connection loop re-parses after every read); the framing
//! gate never panics on what the parser accepts. The first three input bytes pick the limits (small,
//! so the limit paths are reached); the rest is the stream.

use relayapi::http::framing::{request_framing, response_framing};
use relayapi::http::head::{
    parse_request_head, parse_request_head_into, parse_response_head, parse_response_head_into,
    HeadLimits, RequestHead, ResponseHead, Version,
};

pub fn check(data: &[u8]) {
    let [a, b, c, rest @ ..] = data else {
        return;
    };
    let limits = HeadLimits {
        max_head_bytes: 16 + usize::from(*a) * 8,
        max_headers: 1 + usize::from(*b % 32),
        max_uri_bytes: 1 + usize::from(*c),
    };
    check_request(rest, &limits, usize::from(*c));
    check_response(rest, &limits);
}

fn check_request(buf: &[u8], limits: &HeadLimits, probe: usize) {
    let ours = parse_request_head(buf, limits);
    let accepted = ours.clone().ok().flatten();
    assert_eq!(
        accepted,
        reference_request(buf, limits),
        "request vs httparse"
    );
    match ours {
        Ok(Some(head)) => {
            // Nothing after the head changes it.
            let again = parse_request_head(&buf[..head.head_len], limits);
            assert_eq!(again, Ok(Some(head.clone())));
            // A head value refilled (as the connection refills its own) holds nothing of the head
            // it held before.
            let mut reused = RequestHead::from_parts(
                "GET",
                "/previous?x",
                Version::Http10,
                [("a", &b"1"[..]), ("connection", b"keep-alive")],
                99,
            );
            assert_eq!(parse_request_head_into(buf, limits, &mut reused), Ok(true));
            assert_eq!(reused, head);
            // A prefix of an accepted head is neither accepted nor refused (two probes: every
            // prefix would make each run quadratic).
            for cut in [probe % head.head_len, head.head_len - 1] {
                assert_eq!(
                    parse_request_head(&buf[..cut], limits),
                    Ok(None),
                    "prefix {cut}"
                );
            }
            let _ = request_framing(&head);
        }
        Ok(None) => assert!(buf.len() < limits.max_head_bytes),
        Err(_) => {}
    }
}

fn check_response(buf: &[u8], limits: &HeadLimits) {
    let ours = parse_response_head(buf, limits);
    let accepted = ours.clone().ok().flatten();
    assert_eq!(
        accepted,
        reference_response(buf, limits),
        "response vs httparse"
    );
    match ours {
        Ok(Some(head)) => {
            let again = parse_response_head(&buf[..head.head_len], limits);
            assert_eq!(again, Ok(Some(head.clone())));
            let mut reused = ResponseHead::from_parts(
                Version::Http10,
                500,
                "Previous",
                [("content-length", &b"2"[..])],
                99,
            );
            assert_eq!(parse_response_head_into(buf, limits, &mut reused), Ok(true));
            assert_eq!(reused, head);
            assert_eq!(
                parse_response_head(&buf[..head.head_len - 1], limits),
                Ok(None)
            );
            let _ = response_framing(&head, "GET");
            let _ = response_framing(&head, "HEAD");
        }
        Ok(None) => assert!(buf.len() < limits.max_head_bytes),
        Err(_) => {}
    }
}

/// Where the head that starts at `start` ends (just past CRLFCRLF), if the line discipline holds:
/// every CR is followed by LF, every LF preceded by CR, and no line after the first starts with SP
/// or HTAB (obs-fold, or whitespace before the first field line).
fn head_end(buf: &[u8], start: usize) -> Option<usize> {
    let end = start + buf[start..].windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = &buf[start..end];
    for (i, &b) in head.iter().enumerate() {
        let lf_next = head.get(i + 1) == Some(&b'\n');
        let cr_before = i > 0 && head[i - 1] == b'\r';
        if (b == b'\r' && !lf_next) || (b == b'\n' && !cr_before) {
            return None;
        }
        if b == b'\n' && matches!(head.get(i + 1), Some(b' ' | b'\t')) {
            return None;
        }
    }
    Some(end)
}

fn reference_request(buf: &[u8], limits: &HeadLimits) -> Option<RequestHead> {
    let mut start = 0;
    while buf[start..].starts_with(b"\r\n") {
        start += 2;
    }
    if start > 4 {
        return None;
    }
    let end = head_end(buf, start)?;
    if end > limits.max_head_bytes {
        return None;
    }
    let mut slots = vec![httparse::EMPTY_HEADER; limits.max_headers];
    let mut req = httparse::Request::new(&mut slots);
    if req.parse(&buf[start..end]).ok()? != httparse::Status::Complete(end - start) {
        return None;
    }
    let (method, target) = (req.method?, req.path?);
    let target_ok = if target == "*" {
        method == "OPTIONS"
    } else {
        is_origin_form(target)
    };
    if !target_ok || target.len() > limits.max_uri_bytes {
        return None;
    }
    Some(RequestHead::from_parts(
        method,
        target,
        version(req.version?)?,
        borrowed(&own(req.headers)),
        end,
    ))
}

fn reference_response(buf: &[u8], limits: &HeadLimits) -> Option<ResponseHead> {
    let end = head_end(buf, 0)?;
    if end > limits.max_head_bytes || matches!(buf.first(), Some(b'\r' | b'\n')) {
        return None;
    }
    let mut slots = vec![httparse::EMPTY_HEADER; limits.max_headers];
    let mut resp = httparse::Response::new(&mut slots);
    if resp.parse(&buf[..end]).ok()? != httparse::Status::Complete(end) {
        return None;
    }
    let status = resp.code?;
    // "HTTP/1.x" SP 3DIGIT SP: the SP after the code is required even with an empty reason.
    if !(100..=599).contains(&status) || buf.get(12) != Some(&b' ') {
        return None;
    }
    Some(ResponseHead::from_parts(
        version(resp.version?)?,
        status,
        resp.reason.unwrap_or_default(),
        borrowed(&own(resp.headers)),
        end,
    ))
}

fn version(minor: u8) -> Option<Version> {
    match minor {
        0 => Some(Version::Http10),
        1 => Some(Version::Http11),
        _ => None,
    }
}

fn own(headers: &[httparse::Header<'_>]) -> Vec<(String, Vec<u8>)> {
    headers
        .iter()
        .map(|h| {
            let v = h.value;
            let start = v
                .iter()
                .position(|b| !b" \t".contains(b))
                .unwrap_or(v.len());
            let end = v
                .iter()
                .rposition(|b| !b" \t".contains(b))
                .map_or(start, |i| i + 1);
            (h.name.to_ascii_lowercase(), v[start..end].to_vec())
        })
        .collect()
}

fn borrowed(fields: &[(String, Vec<u8>)]) -> impl Iterator<Item = (&str, &[u8])> {
    fields.iter().map(|(n, v)| (n.as_str(), v.as_slice()))
}

/// RFC 9112 §3.2.1 origin-form: "/" then RFC 3986 path and query characters (pchar, "/", "?"), a
/// "%" only as the start of two hex digits.
fn is_origin_form(target: &str) -> bool {
    const OTHER: &[u8] = b"-._~!$&'()*+,;=:@/?";
    let b = target.as_bytes();
    if b.first() != Some(&b'/') {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            if !(i + 2 < b.len() && b[i + 1].is_ascii_hexdigit() && b[i + 2].is_ascii_hexdigit()) {
                return false;
            }
            i += 3;
        } else if b[i].is_ascii_alphanumeric() || OTHER.contains(&b[i]) {
            i += 1;
        } else {
            return false;
        }
    }
    true
}
