//! CORS decisions (`src/http/cors.rs`) against a reference written here from the Fetch standard's
//! serialized origin (`scheme "://" host [ ":" port ]`, or `null`) and RFC 9110 list syntax: an
//! origin is allowed exactly when it is well-formed and both config and the token's `origins` (when
//! present) list it or `*`; the allowed origin is echoed byte for byte and nothing else ever is; a
//! preflight is allowed exactly when the origin is, the method is one of `ALLOW_METHODS` and
//! `Access-Control-Request-Headers` is a list of at most 64 header names in at most 4096 bytes, and
//! then the answer is exactly the documented header list. No header value the relay would send holds
//! a byte outside visible ASCII and SP, and credentials are never allowed.
//!
//! Input: a flag byte (which of the fields are present, which config), then NUL-separated fields:
//! Origin, Access-Control-Request-Method, Access-Control-Request-Headers, the token's origins
//! (LF-separated) and one config origin.

use relayapi::config::CorsConfig;
use relayapi::http::cors::{
    check_preflight, origin_allowed, preflight, response_headers, PreflightDecision, ALLOW_METHODS,
    EXPOSE_HEADERS, VARY_PREFLIGHT,
};

use super::fields;

pub fn check(data: &[u8]) {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let f = fields(rest, 5);
    let origin = (flags & 1 != 0).then_some(f[0]);
    let method = (flags & 2 != 0).then_some(f[1]);
    let req_headers = (flags & 4 != 0).then_some(f[2]);
    let token: Option<Vec<String>> = (flags & 8 != 0).then(|| {
        f[3].split(|&b| b == b'\n')
            .map(|o| String::from_utf8_lossy(o).into_owned())
            .collect()
    });
    let configured = String::from_utf8_lossy(f[4]).into_owned();
    let allowed_origins = match (flags >> 4) % 4 {
        0 => vec!["*".to_owned()],
        1 => vec![
            "https://app.example.com".to_owned(),
            "http://localhost:3000".to_owned(),
        ],
        2 => vec![configured],
        _ => vec![],
    };
    let cfg = CorsConfig {
        allowed_origins,
        max_age: u64::from(flags),
    };
    let token = token.as_deref();

    let echoed = origin.and_then(|o| reference_allowed(o, &cfg, token));
    if let Some(o) = origin {
        assert_eq!(
            origin_allowed(o, &cfg, token),
            echoed.is_some(),
            "origin_allowed"
        );
    }

    let mut expected = vec![h("vary", "Origin")];
    if let Some(o) = echoed {
        expected.push(h("access-control-allow-origin", o));
        expected.push(h("access-control-expose-headers", EXPOSE_HEADERS));
    }
    let actual = response_headers(origin, &cfg, token);
    assert_eq!(actual, expected, "response headers");
    check_header_bytes(&actual);

    let checked = check_preflight(origin, method, req_headers, &cfg, token);
    let expected = reference_preflight(echoed, method, req_headers, &cfg);
    assert_eq!(checked.as_ref().ok(), expected.as_ref(), "preflight");
    let decision = preflight(origin, method, req_headers, &cfg, token);
    match checked {
        Ok(headers) => {
            check_header_bytes(&headers);
            assert_eq!(decision, PreflightDecision::Allowed(headers));
        }
        Err(_) => assert_eq!(decision, PreflightDecision::Denied),
    }
}

fn h(name: &str, value: &str) -> (String, String) {
    (name.to_owned(), value.to_owned())
}

/// Header values go to the wire as they are: only visible ASCII and SP, never credentials.
fn check_header_bytes(headers: &[(String, String)]) {
    for (name, value) in headers {
        assert!(
            value.bytes().all(|b| (0x20..0x7f).contains(&b)),
            "{name}: {value:?}"
        );
        assert_ne!(name, "access-control-allow-credentials");
    }
}

/// The origin text when it is well-formed and allowed by config and token.
fn reference_allowed<'a>(
    origin: &'a [u8],
    cfg: &CorsConfig,
    token: Option<&[String]>,
) -> Option<&'a str> {
    let text = std::str::from_utf8(origin).ok()?;
    if text.len() > 512 || !(text == "null" || is_serialized_origin(text)) {
        return None;
    }
    let lists = |list: &[String]| {
        list.iter()
            .any(|o| o == "*" || o.eq_ignore_ascii_case(text))
    };
    (lists(&cfg.allowed_origins) && token.is_none_or(lists)).then_some(text)
}

/// `scheme "://" host [ ":" port ]`: scheme per RFC 3986 §3.1, host a name of letters, digits, `-`,
/// `.`, `_` or a bracketed IPv6 literal of hex digits, `:` and `.`, port 1 to 5 digits up to 65535.
fn is_serialized_origin(text: &str) -> bool {
    let Some(sep) = text.find("://") else {
        return false;
    };
    let (scheme, rest) = (&text[..sep], &text[sep + 3..]);
    let scheme_ok = scheme.bytes().enumerate().all(|(i, b)| {
        b.is_ascii_alphabetic() || (i > 0 && (b.is_ascii_digit() || b"+-.".contains(&b)))
    }) && !scheme.is_empty();
    let (host_ok, port) = match rest.strip_prefix('[') {
        Some(v6) => {
            let Some(close) = v6.find(']') else {
                return false;
            };
            let literal = &v6[..close];
            let after = &v6[close + 1..];
            let ok = !literal.is_empty()
                && literal
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.');
            match after.strip_prefix(':') {
                Some(port) => (ok, Some(port)),
                None => (ok && after.is_empty(), None),
            }
        }
        None => {
            let (host, port) = match rest.find(':') {
                Some(i) => (&rest[..i], Some(&rest[i + 1..])),
                None => (rest, None),
            };
            let ok = !host.is_empty()
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b));
            (ok, port)
        }
    };
    let port_ok = port.is_none_or(|p| {
        (1..=5).contains(&p.len())
            && p.bytes().all(|b| b.is_ascii_digit())
            && p.parse::<u32>().is_ok_and(|n| n <= 65535)
    });
    scheme_ok && host_ok && port_ok
}

fn reference_preflight(
    echoed: Option<&str>,
    method: Option<&[u8]>,
    req_headers: Option<&[u8]>,
    cfg: &CorsConfig,
) -> Option<Vec<(String, String)>> {
    let origin = echoed?;
    // The methods the relay forwards are the ones it announces, compared byte for byte.
    let method = method?;
    if !ALLOW_METHODS.split(", ").any(|m| m.as_bytes() == method) {
        return None;
    }
    let names = match req_headers {
        None => Vec::new(),
        Some(v) if v.len() > 4096 => return None,
        Some(v) => {
            let names: Vec<String> = v
                .split(|&b| b == b',')
                .map(|e| {
                    String::from_utf8_lossy(e)
                        .trim_matches([' ', '\t'])
                        .to_owned()
                })
                .filter(|e| !e.is_empty())
                .collect();
            let tchar = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
            if names.len() > 64 || !names.iter().all(|n| n.bytes().all(tchar)) {
                return None;
            }
            names
        }
    };
    let mut headers = vec![
        h("access-control-allow-origin", origin),
        h("access-control-allow-methods", ALLOW_METHODS),
    ];
    if !names.is_empty() {
        let lower: Vec<String> = names.iter().map(|n| n.to_ascii_lowercase()).collect();
        headers.push(h("access-control-allow-headers", &lower.join(", ")));
    }
    headers.push(h("access-control-max-age", &cfg.max_age.to_string()));
    headers.push(h("vary", VARY_PREFLIGHT));
    Some(headers)
}
