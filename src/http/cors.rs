//! CORS decisions (Fetch standard, "CORS protocol"): whether a browser origin may call the relay, and
//! the exact headers to answer a preflight or to add to an actual response.
//!
//! Pure functions over the request's header bytes, the `cors` section of `config.json` and the token's
//! `origins` claim. This file does not read sockets, decide status codes or strip headers: the connection
//! loop answers an allowed preflight with 204 and these headers, a denied one with 403 and none of them,
//! and must drop any `Access-Control-*` headers an upstream sends (a second `Access-Control-Allow-Origin`
//! makes browsers fail the request) and merge `Vary` with the upstream's.
//!
//! Credentials (cookies, HTTP auth) are never allowed: the relay authenticates with the token in the URL,
//! so `Access-Control-Allow-Credentials` is never sent, and the allowed origin is always echoed rather
//! than `*` so that one code path serves every configuration.

use crate::config::CorsConfig;
use std::fmt;

/// Longest `Origin` accepted: a 253-byte host plus scheme and port fits with room to spare; anything
/// longer is not an origin a browser sends.
const MAX_ORIGIN_LEN: usize = 512;

/// Most header names accepted in `Access-Control-Request-Headers`. The OpenAI and Anthropic SDKs send
/// about 15 (`authorization`, `content-type`, a dozen `x-stainless-*`, `anthropic-*` / `openai-*`).
const MAX_REQUEST_HEADERS: usize = 64;

/// Longest `Access-Control-Request-Headers` value accepted, in bytes; it is echoed back, so it is bounded.
const MAX_REQUEST_HEADERS_LEN: usize = 4096;

/// `Access-Control-Allow-Methods` for every allowed preflight: exactly the methods the relay forwards
/// (`request/methods.rs`). A preflight asking for another is denied. Compared byte for byte: browsers
/// upper-case only the methods the Fetch standard normalises, so a page sending `patch` would fail the
/// browser's own check anyway.
pub const ALLOW_METHODS: &str = crate::request::methods::ALLOW_FORWARDED;

/// `Vary` for preflight answers: the answer depends on all three request headers, so a cache must not
/// serve one origin's (or one header list's) answer to another.
pub const VARY_PREFLIGHT: &str =
    "Origin, Access-Control-Request-Method, Access-Control-Request-Headers";

/// `Access-Control-Expose-Headers` for actual responses: the response headers provider SDKs read (request
/// ids for error reports, retry hints, rate-limit state). `*` exposes every header in browsers that
/// support the wildcard (allowed because credentials are never allowed); the explicit names keep the
/// ones that matter readable in browsers that treat `*` as a literal name.
pub const EXPOSE_HEADERS: &str = concat!(
    "*, x-request-id, request-id, retry-after, retry-after-ms, x-should-retry, ",
    "x-ratelimit-limit-requests, x-ratelimit-limit-tokens, x-ratelimit-remaining-requests, ",
    "x-ratelimit-remaining-tokens, x-ratelimit-reset-requests, x-ratelimit-reset-tokens, ",
    "openai-organization, openai-processing-ms, openai-project, openai-version, ",
    "anthropic-organization-id, anthropic-ratelimit-requests-limit, ",
    "anthropic-ratelimit-requests-remaining, anthropic-ratelimit-requests-reset, ",
    "anthropic-ratelimit-tokens-limit, anthropic-ratelimit-tokens-remaining, ",
    "anthropic-ratelimit-tokens-reset, anthropic-ratelimit-input-tokens-limit, ",
    "anthropic-ratelimit-input-tokens-remaining, anthropic-ratelimit-input-tokens-reset, ",
    "anthropic-ratelimit-output-tokens-limit, anthropic-ratelimit-output-tokens-remaining, ",
    "anthropic-ratelimit-output-tokens-reset"
);

/// A response header: lower-case name and value. Values are built only from validated bytes (visible
/// ASCII), so they can be written to the wire as they are.
pub type Header = (String, String);

/// The answer to a CORS preflight (`OPTIONS` with `Origin` and `Access-Control-Request-Method`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PreflightDecision {
    /// Send these headers (with a 2xx status).
    Allowed(Vec<Header>),
    /// Send no CORS headers; the browser will block the actual request. `check_preflight` says why.
    Denied,
}

/// Why a preflight was denied, for the access log; never sent to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PreflightDenial {
    /// No `Origin`: not a CORS request.
    NoOrigin,
    /// `Origin` is not a well-formed origin, or config or the token does not allow it.
    OriginNotAllowed,
    /// No `Access-Control-Request-Method`: an `OPTIONS` request, not a preflight.
    NoRequestMethod,
    /// The requested method is not one the relay forwards.
    MethodNotAllowed,
    /// `Access-Control-Request-Headers` is not a comma-separated list of header names.
    BadRequestHeaders,
    /// More than `MAX_REQUEST_HEADERS` names or `MAX_REQUEST_HEADERS_LEN` bytes.
    TooManyRequestHeaders,
}

impl fmt::Display for PreflightDenial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PreflightDenial::NoOrigin => "preflight without an Origin header",
            PreflightDenial::OriginNotAllowed => "origin not allowed by config or token",
            PreflightDenial::NoRequestMethod => "OPTIONS without Access-Control-Request-Method",
            PreflightDenial::MethodNotAllowed => "requested method not allowed",
            PreflightDenial::BadRequestHeaders => {
                "Access-Control-Request-Headers is not a list of header names"
            }
            PreflightDenial::TooManyRequestHeaders => {
                "Access-Control-Request-Headers lists too many headers"
            }
        })
    }
}

/// The `Origin` value as text if it is a serialized origin as browsers send it: `scheme://host[:port]`
/// (no path, userinfo, query or trailing slash) or `null`. Only such values are ever echoed, so a
/// header value with CR, LF or other bytes can never be reflected into a response.
fn parse_origin(origin: &[u8]) -> Option<&str> {
    if origin.len() > MAX_ORIGIN_LEN {
        return None;
    }
    let text = std::str::from_utf8(origin).ok()?;
    if text == "null" {
        return Some(text);
    }
    let (scheme, rest) = text.split_once("://")?;
    // RFC 3986 section 3.1: ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ).
    let mut sb = scheme.bytes();
    if !sb.next().is_some_and(|b| b.is_ascii_alphabetic())
        || !sb.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
    {
        return None;
    }
    let (host_ok, port) = if let Some(bracketed) = rest.strip_prefix('[') {
        // An IPv6 literal, serialized in brackets.
        let (addr, after) = bracketed.split_once(']')?;
        let addr_ok = !addr.is_empty()
            && addr
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || matches!(b, b':' | b'.'));
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p),
            None if after.is_empty() => None,
            None => return None,
        };
        (addr_ok, port)
    } else {
        let (host, port) = match rest.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (rest, None),
        };
        // Browsers serialize hosts as ASCII (IDNA); `_` occurs in real host names.
        let host_ok = !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
        (host_ok, port)
    };
    let port_ok = port.is_none_or(|p| {
        (1..=5).contains(&p.len())
            && p.bytes().all(|b| b.is_ascii_digit())
            && p.parse::<u32>().is_ok_and(|n| n <= 65535)
    });
    (host_ok && port_ok).then_some(text)
}

/// Whether an `Origin` value is a well-formed serialized origin (or `null`). A value that is not (not
/// UTF-8, a path, a stray byte) must be refused like a disallowed origin, never treated as absent:
/// otherwise it would skip the allow-lists (issue 9, finding 12).
pub fn is_origin(origin: &[u8]) -> bool {
    parse_origin(origin).is_some()
}

/// Whether `list` (config `allowed_origins` or a token's `origins`) allows `origin`. `"*"` allows any;
/// other entries match ASCII case-insensitively (scheme and host are case-insensitive), with no other
/// normalisation: an entry must be written as browsers send it (no default port, no trailing slash).
fn list_allows(list: &[String], origin: &str) -> bool {
    list.iter()
        .any(|o| o == "*" || o.eq_ignore_ascii_case(origin))
}

/// The origin as text if it is well-formed and allowed by both config and, if present, the token.
fn allowed_origin<'a>(
    origin: &'a [u8],
    cfg: &CorsConfig,
    token_origins: Option<&[String]>,
) -> Option<&'a str> {
    let origin = parse_origin(origin)?;
    let by_token = token_origins.is_none_or(|list| list_allows(list, origin));
    (by_token && list_allows(&cfg.allowed_origins, origin)).then_some(origin)
}

/// Whether a request with this `Origin` may be served: the origin is well-formed, config allows it and,
/// when the token carries `origins`, so does the token. The connection loop should refuse an actual
/// request from a disallowed origin outright rather than only withholding CORS headers, because a
/// browser sends some cross-origin requests (simple `POST`s) without a preflight and only hides the
/// response, which would still spend the token's calls.
pub fn origin_allowed(origin: &[u8], cfg: &CorsConfig, token_origins: Option<&[String]>) -> bool {
    allowed_origin(origin, cfg, token_origins).is_some()
}

/// Strips optional whitespace (RFC 9110 section 5.6.3: SP and HTAB only; CR or LF stay and fail the
/// token check).
fn trim_ows(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}

/// `Access-Control-Request-Headers` as the lower-cased names joined by `", "`, or `None` if it lists
/// none. RFC 9110 section 5.6.1: a list may contain empty elements and optional whitespace around
/// commas, which are skipped; every other element must be a header name (a token).
fn parse_request_headers(value: &[u8]) -> Result<Option<String>, PreflightDenial> {
    if value.len() > MAX_REQUEST_HEADERS_LEN {
        return Err(PreflightDenial::TooManyRequestHeaders);
    }
    let mut names: Vec<&[u8]> = Vec::new();
    for element in value.split(|&b| b == b',') {
        let name = trim_ows(element);
        if name.is_empty() {
            continue;
        }
        if !name.iter().all(|&b| crate::http::head::is_tchar(b)) {
            return Err(PreflightDenial::BadRequestHeaders);
        }
        names.push(name);
        if names.len() > MAX_REQUEST_HEADERS {
            return Err(PreflightDenial::TooManyRequestHeaders);
        }
    }
    if names.is_empty() {
        return Ok(None);
    }
    let mut out = String::with_capacity(value.len() + names.len());
    for (i, name) in names.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        // Tokens are ASCII, so each byte is one char.
        out.extend(name.iter().map(|b| char::from(b.to_ascii_lowercase())));
    }
    Ok(Some(out))
}

/// Decides a preflight request from its `Origin`, `Access-Control-Request-Method` and
/// `Access-Control-Request-Headers` values (raw bytes, `None` when absent), the `cors` config and the
/// token's `origins` claim (`None` when the token has none or the URL carries no valid token).
///
/// Allowed: the origin is well-formed and allowed by config and token, the method is one of
/// `ALLOW_METHODS`, and the requested headers are a list of at most `MAX_REQUEST_HEADERS` header names,
/// all of which are allowed (echoed back): the relay forwards any header, and the provider SDKs add new
/// `x-stainless-*`, `anthropic-*` and `openai-*` headers over time.
pub fn preflight(
    origin: Option<&[u8]>,
    req_method: Option<&[u8]>,
    req_headers: Option<&[u8]>,
    cfg: &CorsConfig,
    token_origins: Option<&[String]>,
) -> PreflightDecision {
    match check_preflight(origin, req_method, req_headers, cfg, token_origins) {
        Ok(headers) => PreflightDecision::Allowed(headers),
        Err(_) => PreflightDecision::Denied,
    }
}

/// `preflight` with the reason for a denial, for callers that log it.
///
/// # Errors
/// The first rule the preflight breaks, in the order origin, method, headers.
pub fn check_preflight(
    origin: Option<&[u8]>,
    req_method: Option<&[u8]>,
    req_headers: Option<&[u8]>,
    cfg: &CorsConfig,
    token_origins: Option<&[String]>,
) -> Result<Vec<Header>, PreflightDenial> {
    let origin = origin.ok_or(PreflightDenial::NoOrigin)?;
    let origin =
        allowed_origin(origin, cfg, token_origins).ok_or(PreflightDenial::OriginNotAllowed)?;
    let method = req_method.ok_or(PreflightDenial::NoRequestMethod)?;
    let forwarded =
        std::str::from_utf8(method).is_ok_and(crate::request::methods::method_forwarded);
    if !forwarded {
        return Err(PreflightDenial::MethodNotAllowed);
    }
    let allow_headers = req_headers
        .map(parse_request_headers)
        .transpose()?
        .flatten();
    let mut headers = vec![
        header("access-control-allow-origin", origin),
        header("access-control-allow-methods", ALLOW_METHODS),
    ];
    if let Some(list) = allow_headers {
        headers.push(("access-control-allow-headers".to_owned(), list));
    }
    headers.push(("access-control-max-age".to_owned(), cfg.max_age.to_string()));
    headers.push(header("vary", VARY_PREFLIGHT));
    Ok(headers)
}

fn header(name: &str, value: &str) -> Header {
    (name.to_owned(), value.to_owned())
}

/// The CORS headers for an actual (non-preflight) response. `Vary: Origin` is always present, because
/// whether `Access-Control-Allow-Origin` is sent depends on the request's origin; the other two only
/// when the origin is allowed (see `origin_allowed`).
pub fn response_headers(
    origin: Option<&[u8]>,
    cfg: &CorsConfig,
    token_origins: Option<&[String]>,
) -> Vec<Header> {
    response_fields(origin, cfg, token_origins)
        .iter()
        .map(|&(name, value)| header(name, value))
        .collect()
}

/// A response field borrowed rather than owned: lower-case name and value.
pub type Field<'a> = (&'static str, &'a str);

/// [`response_headers`] without building them, for the relayed answer's head, which is written for
/// every request (`request/forward.rs`): the fields in a stack array, the allowed origin borrowed from
/// the request.
pub fn response_fields<'a>(
    origin: Option<&'a [u8]>,
    cfg: &CorsConfig,
    token_origins: Option<&[String]>,
) -> ResponseFields<'a> {
    let vary = ("vary", "Origin");
    match origin.and_then(|o| allowed_origin(o, cfg, token_origins)) {
        Some(origin) => ResponseFields {
            fields: [
                vary,
                ("access-control-allow-origin", origin),
                ("access-control-expose-headers", EXPOSE_HEADERS),
            ],
            len: 3,
        },
        None => ResponseFields {
            fields: [vary; 3],
            len: 1,
        },
    }
}

/// The CORS fields of an actual response ([`response_fields`]); dereferences to a slice of them.
#[derive(Debug, Clone, Copy)]
pub struct ResponseFields<'a> {
    fields: [Field<'a>; 3],
    len: usize,
}

impl<'a> std::ops::Deref for ResponseFields<'a> {
    type Target = [Field<'a>];

    fn deref(&self) -> &[Field<'a>] {
        &self.fields[..self.len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(origins: &[&str]) -> CorsConfig {
        CorsConfig {
            allowed_origins: origins.iter().map(|o| (*o).to_owned()).collect(),
            max_age: 600,
        }
    }

    fn list(origins: &[&str]) -> Vec<String> {
        origins.iter().map(|o| (*o).to_owned()).collect()
    }

    type Checked = Result<Vec<Header>, PreflightDenial>;

    fn allowed(d: Checked) -> Vec<Header> {
        d.unwrap_or_else(|why| panic!("denied: {why}"))
    }

    fn denied(d: Checked) -> PreflightDenial {
        d.expect_err("expected a denial")
    }

    fn hdr(name: &str, value: &str) -> Header {
        (name.to_owned(), value.to_owned())
    }

    fn get<'a>(headers: &'a [Header], name: &str) -> Option<&'a str> {
        let mut found = headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name));
        let first = found.next().map(|(_, v)| v.as_str());
        assert!(found.next().is_none(), "{name} sent twice");
        first
    }

    /// Preflight for POST with the given origin and headers, no token.
    fn pf(origin: &str, headers: Option<&str>, c: &CorsConfig) -> Checked {
        check_preflight(
            Some(origin.as_bytes()),
            Some(b"POST"),
            headers.map(str::as_bytes),
            c,
            None,
        )
    }

    const APP: &str = "https://app.example.com";

    #[test]
    fn allowed_preflight_sends_exactly_the_documented_headers() {
        let h = allowed(pf(APP, Some("authorization,content-type"), &cfg(&[APP])));
        assert_eq!(
            h,
            vec![
                hdr("access-control-allow-origin", APP),
                hdr("access-control-allow-methods", "GET, POST, PATCH, DELETE"),
                hdr(
                    "access-control-allow-headers",
                    "authorization, content-type"
                ),
                hdr("access-control-max-age", "600"),
                hdr(
                    "vary",
                    "Origin, Access-Control-Request-Method, Access-Control-Request-Headers"
                ),
            ]
        );
    }

    #[test]
    fn preflight_maps_the_check_to_a_decision() {
        let c = cfg(&[APP]);
        let d = preflight(Some(APP.as_bytes()), Some(b"GET"), None, &c, None);
        assert_eq!(
            d,
            PreflightDecision::Allowed(allowed(check_preflight(
                Some(APP.as_bytes()),
                Some(b"GET"),
                None,
                &c,
                None
            )))
        );
        let d = preflight(Some(b"https://other.example"), Some(b"GET"), None, &c, None);
        assert_eq!(d, PreflightDecision::Denied);
        assert_eq!(
            preflight(None, Some(b"GET"), None, &c, None),
            PreflightDecision::Denied
        );
    }

    #[test]
    fn max_age_comes_from_config() {
        let c = CorsConfig {
            allowed_origins: list(&["*"]),
            max_age: 7200,
        };
        assert_eq!(
            get(&allowed(pf(APP, None, &c)), "access-control-max-age"),
            Some("7200")
        );
        let c = CorsConfig {
            allowed_origins: list(&["*"]),
            max_age: 0,
        };
        assert_eq!(
            get(&allowed(pf(APP, None, &c)), "access-control-max-age"),
            Some("0")
        );
    }

    #[test]
    fn wildcard_config_echoes_the_origin_never_star_and_never_credentials() {
        let c = cfg(&["*"]);
        for origin in [
            APP,
            "http://localhost:5173",
            "https://[::1]:8443",
            "capacitor://localhost",
            "null",
        ] {
            let h = allowed(pf(origin, None, &c));
            assert_eq!(get(&h, "access-control-allow-origin"), Some(origin));
            assert_eq!(get(&h, "access-control-allow-credentials"), None);
            let r = response_headers(Some(origin.as_bytes()), &c, None);
            assert_eq!(get(&r, "access-control-allow-origin"), Some(origin));
            assert_eq!(get(&r, "access-control-allow-credentials"), None);
        }
    }

    #[test]
    fn origin_is_echoed_byte_for_byte() {
        // Browsers compare Allow-Origin with the origin they sent, byte for byte.
        let h = allowed(pf("HTTPS://App.Example.com", None, &cfg(&[APP])));
        assert_eq!(
            get(&h, "access-control-allow-origin"),
            Some("HTTPS://App.Example.com")
        );
    }

    #[test]
    fn config_list_matches_whole_origins_only() {
        let c = cfg(&[APP, "http://localhost:3000"]);
        assert!(origin_allowed(APP.as_bytes(), &c, None));
        assert!(origin_allowed(b"http://localhost:3000", &c, None));
        for other in [
            "http://app.example.com",            // other scheme
            "https://app.example.com:8443",      // other port
            "https://app.example.com.evil.test", // suffix added
            "https://evilapp.example.com",       // prefix added
            "https://example.com",               // parent domain
            "https://sub.app.example.com",       // subdomain
            "http://localhost:30000",
            "http://localhost",
            "null",
        ] {
            assert!(!origin_allowed(other.as_bytes(), &c, None), "{other}");
            assert_eq!(
                denied(pf(other, None, &c)),
                PreflightDenial::OriginNotAllowed,
                "{other}"
            );
        }
    }

    #[test]
    fn malformed_origins_are_never_echoed_even_with_wildcard() {
        let c = cfg(&["*"]);
        let long = format!("https://{}.example", "a".repeat(MAX_ORIGIN_LEN));
        for bad in [
            "https://app.example.com\r\nSet-Cookie: a=b",
            "https://app.example.com/",
            "https://app.example.com/path",
            "https://user@app.example.com",
            "https://app.example.com?x",
            "https://app example.com",
            "https://",
            "https://app.example.com:",
            "https://app.example.com:99999",
            "https://app.example.com:+443",
            "https://[::1",
            "https://[::1]x",
            "https://[zz::1]",
            "app.example.com",
            "://app.example.com",
            "1https://app.example.com",
            "*",
            "",
            " null",
            long.as_str(),
        ] {
            assert!(!origin_allowed(bad.as_bytes(), &c, None), "{bad:?}");
            assert_eq!(
                denied(pf(bad, None, &c)),
                PreflightDenial::OriginNotAllowed,
                "{bad:?}"
            );
            assert_eq!(
                response_headers(Some(bad.as_bytes()), &c, None),
                vec![hdr("vary", "Origin")]
            );
        }
        assert!(
            !origin_allowed(b"https://caf\xc3\xa9.example", &c, None),
            "non-ASCII host"
        );
        assert!(
            !origin_allowed(b"https://\xff.example", &c, None),
            "not UTF-8"
        );
    }

    #[test]
    fn token_origins_narrow_config() {
        let any = cfg(&["*"]);
        let only_app = list(&[APP]);
        assert!(origin_allowed(APP.as_bytes(), &any, Some(&only_app)));
        assert!(!origin_allowed(
            b"https://other.example",
            &any,
            Some(&only_app)
        ));
        // Both must allow: the token cannot widen config.
        let c = cfg(&["https://other.example"]);
        assert!(!origin_allowed(APP.as_bytes(), &c, Some(&only_app)));
        assert!(!origin_allowed(
            b"https://other.example",
            &c,
            Some(&only_app)
        ));
        // A token `*` leaves the decision to config.
        assert!(origin_allowed(
            b"https://other.example",
            &c,
            Some(&list(&["*"]))
        ));
        // An empty list (which the token format forbids anyway) allows nothing.
        assert!(!origin_allowed(APP.as_bytes(), &any, Some(&[])));
        // The same rule drives preflight and response headers.
        let d = check_preflight(
            Some(b"https://other.example"),
            Some(b"GET"),
            None,
            &any,
            Some(&only_app),
        );
        assert_eq!(denied(d), PreflightDenial::OriginNotAllowed);
        let r = response_headers(Some(b"https://other.example"), &any, Some(&only_app));
        assert_eq!(get(&r, "access-control-allow-origin"), None);
        let r = response_headers(Some(APP.as_bytes()), &any, Some(&only_app));
        assert_eq!(get(&r, "access-control-allow-origin"), Some(APP));
    }

    #[test]
    fn preflight_needs_an_origin_and_a_method() {
        let c = cfg(&["*"]);
        assert_eq!(
            denied(check_preflight(None, Some(b"POST"), None, &c, None)),
            PreflightDenial::NoOrigin
        );
        assert_eq!(
            denied(check_preflight(Some(APP.as_bytes()), None, None, &c, None)),
            PreflightDenial::NoRequestMethod
        );
    }

    #[test]
    fn only_the_relayed_methods_are_allowed() {
        let c = cfg(&["*"]);
        for m in ["GET", "POST", "PATCH", "DELETE"] {
            let h = allowed(check_preflight(
                Some(APP.as_bytes()),
                Some(m.as_bytes()),
                None,
                &c,
                None,
            ));
            assert_eq!(get(&h, "access-control-allow-methods"), Some(ALLOW_METHODS));
        }
        for m in [
            "CONNECT", "TRACE", "HEAD", "PUT", "OPTIONS", "patch", "post", "", "POST ", "GET,POST",
        ] {
            let d = check_preflight(Some(APP.as_bytes()), Some(m.as_bytes()), None, &c, None);
            assert_eq!(denied(d), PreflightDenial::MethodNotAllowed, "{m:?}");
        }
    }

    #[test]
    fn provider_sdk_headers_pass_and_are_echoed() {
        let c = cfg(&["*"]);
        // As Chromium sends them: lower-case, sorted, comma-separated without spaces.
        let openai = "authorization,content-type,openai-beta,openai-organization,openai-project,\
                      x-stainless-arch,x-stainless-async,x-stainless-lang,x-stainless-os,\
                      x-stainless-package-version,x-stainless-retry-count,x-stainless-runtime,\
                      x-stainless-runtime-version,x-stainless-timeout";
        let anthropic =
            "anthropic-beta,anthropic-dangerous-direct-browser-access,anthropic-version,\
                         content-type,x-api-key,x-stainless-arch,x-stainless-helper-method,\
                         x-stainless-lang,x-stainless-os,x-stainless-package-version,\
                         x-stainless-retry-count,x-stainless-runtime,x-stainless-runtime-version,\
                         x-stainless-timeout";
        let gemini = "content-type,x-goog-api-client,x-goog-api-key";
        for sent in [openai, anthropic, gemini] {
            let h = allowed(pf(APP, Some(sent), &c));
            assert_eq!(
                get(&h, "access-control-allow-headers"),
                Some(sent.replace(',', ", ").as_str())
            );
        }
    }

    #[test]
    fn request_headers_are_normalised_and_empty_elements_skipped() {
        let c = cfg(&["*"]);
        let h = allowed(pf(
            APP,
            Some(" Authorization ,\tContent-Type,,X-Api-Key, "),
            &c,
        ));
        assert_eq!(
            get(&h, "access-control-allow-headers"),
            Some("authorization, content-type, x-api-key")
        );
        // Present but listing nothing: no Allow-Headers at all.
        for empty in ["", " ", ",", " , ,"] {
            let h = allowed(pf(APP, Some(empty), &c));
            assert_eq!(get(&h, "access-control-allow-headers"), None, "{empty:?}");
        }
        let h = allowed(pf(APP, None, &c));
        assert_eq!(get(&h, "access-control-allow-headers"), None);
    }

    #[test]
    fn request_headers_must_be_header_names() {
        let c = cfg(&["*"]);
        for bad in [
            "x-a b",
            "x(a)",
            "x:a",
            "content-type\r\nset-cookie",
            "content-type\n",
            "x-\"quoted\"",
            "x-a;b",
            "x-a/b",
            "caf\u{e9}",
        ] {
            assert_eq!(
                denied(pf(APP, Some(bad), &c)),
                PreflightDenial::BadRequestHeaders,
                "{bad:?}"
            );
        }
        let d = check_preflight(
            Some(APP.as_bytes()),
            Some(b"POST"),
            Some(b"x-\xff"),
            &c,
            None,
        );
        assert_eq!(denied(d), PreflightDenial::BadRequestHeaders);
        // Every tchar is allowed.
        let h = allowed(pf(APP, Some("!#$%&'*+-.^_`|~09az"), &c));
        assert_eq!(
            get(&h, "access-control-allow-headers"),
            Some("!#$%&'*+-.^_`|~09az")
        );
    }

    #[test]
    fn request_header_list_is_capped() {
        let c = cfg(&["*"]);
        let names = |n: usize| {
            (0..n)
                .map(|i| format!("x-h{i}"))
                .collect::<Vec<_>>()
                .join(",")
        };
        let at_cap = names(MAX_REQUEST_HEADERS);
        let h = allowed(pf(APP, Some(&at_cap), &c));
        let echoed = get(&h, "access-control-allow-headers").unwrap();
        assert_eq!(echoed.split(", ").count(), MAX_REQUEST_HEADERS);
        assert_eq!(
            denied(pf(APP, Some(&names(MAX_REQUEST_HEADERS + 1)), &c)),
            PreflightDenial::TooManyRequestHeaders
        );
        let long = format!("x-{}", "a".repeat(MAX_REQUEST_HEADERS_LEN));
        assert_eq!(
            denied(pf(APP, Some(&long), &c)),
            PreflightDenial::TooManyRequestHeaders
        );
        // Empty elements do not count as names but do count as bytes.
        let commas = ",".repeat(MAX_REQUEST_HEADERS_LEN);
        assert!(pf(APP, Some(&commas), &c).is_ok());
        let commas = ",".repeat(MAX_REQUEST_HEADERS_LEN + 1);
        assert_eq!(
            denied(pf(APP, Some(&commas), &c)),
            PreflightDenial::TooManyRequestHeaders
        );
    }

    #[test]
    fn response_headers_for_an_allowed_origin() {
        let r = response_headers(Some(APP.as_bytes()), &cfg(&[APP]), None);
        assert_eq!(
            r,
            vec![
                hdr("vary", "Origin"),
                hdr("access-control-allow-origin", APP),
                hdr("access-control-expose-headers", EXPOSE_HEADERS),
            ]
        );
    }

    #[test]
    fn response_headers_always_vary_on_origin() {
        let c = cfg(&[APP]);
        let only_vary = vec![hdr("vary", "Origin")];
        assert_eq!(response_headers(None, &c, None), only_vary);
        assert_eq!(
            response_headers(Some(b"https://other.example"), &c, None),
            only_vary
        );
        assert_eq!(
            response_headers(Some(APP.as_bytes()), &cfg(&[]), None),
            only_vary
        );
    }

    #[test]
    fn exposed_headers_cover_what_the_sdks_read() {
        let exposed: Vec<&str> = EXPOSE_HEADERS.split(", ").collect();
        for name in [
            "*",
            "x-request-id",
            "request-id",
            "retry-after",
            "retry-after-ms",
            "x-should-retry",
            "x-ratelimit-limit-requests",
            "x-ratelimit-remaining-tokens",
            "x-ratelimit-reset-requests",
            "openai-processing-ms",
            "openai-organization",
            "anthropic-ratelimit-requests-remaining",
            "anthropic-ratelimit-tokens-reset",
        ] {
            assert!(exposed.contains(&name), "{name} not exposed");
        }
        // Each element is a header name, lower-case, listed once.
        for (i, name) in exposed.iter().enumerate() {
            assert!(
                *name == "*"
                    || name
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            );
            assert!(!exposed[i + 1..].contains(name), "{name} listed twice");
        }
    }

    #[test]
    fn every_header_value_is_visible_ascii() {
        // Whatever the input, what we emit can go on the wire without escaping.
        let c = cfg(&["*"]);
        let inputs: [&[u8]; 4] = [
            APP.as_bytes(),
            b"null",
            b"https://a.example\r\n",
            b"https://a.example\0",
        ];
        for origin in inputs {
            let mut all = response_headers(Some(origin), &c, None);
            if let Ok(h) = check_preflight(Some(origin), Some(b"GET"), Some(b"a, b"), &c, None) {
                all.extend(h);
            }
            for (name, value) in all {
                assert!(
                    name.bytes().all(|b| b.is_ascii_lowercase() || b == b'-'),
                    "{name}"
                );
                assert!(
                    value.bytes().all(|b| (0x20..0x7f).contains(&b)),
                    "{name}: {value:?}"
                );
            }
        }
    }
}
