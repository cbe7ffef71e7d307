//! Where the token is found (`route::locate`: path, then query, then headers) and the safety
//! check of the provider-relative path that is forwarded (`forward_path::check`).
//!
//! The path and query rules are written out again as a reference: a first path segment starting
//! with `rt1.` is the token and the rest is forwarded; every `token=` pair is removed from the
//! forwarded query (the first one is the token when the path had none) and the other pairs keep their
//! order; only then do `Authorization: Bearer`, `x-api-key` and `x-goog-api-key` count, and a token
//! found there is one of those values. For the path check, a reference decodes every segment once and
//! asserts that what `forward_path::check` lets through names the same segments to any server: no
//! empty, `.` or `..` segment after decoding, no `/`, `\`, `;`, `?`, `#`, `%`, space, control or
//! non-ASCII byte hidden behind an escape, and nothing left for a second round of decoding.
//!
//! Input: a flag byte (which headers are present, whether there is a query), then NUL-separated
//! fields: the path after the base, the query, and the three header values.

use relayapi::http::head::{RequestHead, Version};
use relayapi::request::route::locate as locate_token;
use relayapi::upstream::forward_path;

use super::fields;

pub fn check(data: &[u8]) {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let f = fields(rest, 5);
    let (Ok(after_base), Ok(query)) = (std::str::from_utf8(f[0]), std::str::from_utf8(f[1])) else {
        return;
    };
    let query = (flags & 1 != 0).then_some(query);
    let mut headers = Vec::new();
    for (bit, name, value) in [
        (2, "authorization", f[2]),
        (4, "x-api-key", f[3]),
        (8, "x-goog-api-key", f[4]),
    ] {
        if flags & bit != 0 {
            headers.push((name, value));
        }
    }
    let head = RequestHead::from_parts("POST", "/", Version::Http11, headers, 0);

    let located = locate_token(&head, after_base, query);
    let token = located.token.as_ref().map(|t| t.expose().to_owned());

    // The path form.
    let (path_token, rest) = match after_base.split_once('/') {
        Some((first, rest)) if first.starts_with("rt1.") => (Some(first), format!("/{rest}")),
        None if after_base.starts_with("rt1.") => (Some(after_base), String::new()),
        _ if after_base.is_empty() => (None, String::new()),
        _ => (None, format!("/{after_base}")),
    };
    assert_eq!(located.rest, rest, "forwarded path");

    // The query form: every `token=` pair goes, the others stay in order.
    let pairs: Vec<&str> = query
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .collect();
    let is_token_pair = |p: &&str| p.split_once('=').is_some_and(|(name, _)| name == "token");
    let kept: Vec<&str> = pairs
        .iter()
        .copied()
        .filter(|p| !is_token_pair(p))
        .collect();
    let expected_query = if kept.is_empty() {
        String::new()
    } else {
        format!("?{}", kept.join("&"))
    };
    assert_eq!(located.query, expected_query, "forwarded query");
    let query_token = pairs
        .iter()
        .find(|p| is_token_pair(p))
        .map(|p| p.split_once('=').expect("a pair").1);

    match path_token.or(query_token) {
        Some(expected) => assert_eq!(token.as_deref(), Some(expected), "path, then query"),
        None => {
            if let Some(t) = &token {
                assert!(t.starts_with("rt1."));
                let in_headers = head
                    .headers()
                    .any(|(_, v)| String::from_utf8_lossy(v).contains(t.as_str()));
                assert!(in_headers, "a header token comes from a header");
            }
        }
    }

    check_path(&located.rest);
    check_path(after_base);
    check_path(&format!("/{after_base}"));
}

/// `forward_path::check` against the decode-once reference.
fn check_path(rest: &str) {
    if forward_path::check(rest).is_err() || rest.is_empty() {
        return;
    }
    let segments = rest
        .strip_prefix('/')
        .expect("a checked path starts with /");
    let count = segments.split('/').count();
    for (i, seg) in segments.split('/').enumerate() {
        let decoded = decode_once(seg).unwrap_or_else(|| panic!("bad escape passed: {rest:?}"));
        if decoded.is_empty() {
            assert_eq!(i, count - 1, "empty inner segment passed: {rest:?}");
            continue;
        }
        assert!(
            !decoded.iter().all(|&b| b == b'.'),
            "dot segment passed: {rest:?}"
        );
        for &b in &decoded {
            let plain = b.is_ascii_graphic() && !b"/\\;?#%".contains(&b);
            assert!(plain, "{:?} passed in {rest:?}", char::from(b));
        }
    }
}

/// One round of percent-decoding; `None` for an incomplete escape.
fn decode_once(seg: &str) -> Option<Vec<u8>> {
    let b = seg.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b.get(i + 1..i + 3)?;
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
            out.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Some(out)
}
