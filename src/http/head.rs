//! HTTP/1.x message heads as bytes: the request head a client sends us and the response head the
//! provider sends back. This module owns line discipline (CRLF only), the request-line and
//! status-line, field-line syntax and the size limits of a head; it turns a buffer into a typed head
//! or says "need more bytes" or why the bytes are invalid. It does no I/O and decides nothing about
//! bodies: `http/framing.rs` reads Content-Length, Transfer-Encoding, Connection, Expect and Host from the
//! parsed head, and `http/chunked.rs` decodes chunked bodies.
//!
//! `httparse` tokenises the head. It is stricter than most parsers by default (no obs-fold, no space
//! before the colon, single spaces in the request-line for requests) but tolerates a few things we do
//! not: bare LF line endings, any number of empty lines before the start-line, a missing SP after the
//! status code, non-ASCII bytes and RFC 3986 delimiters in the request-target, and any three-digit
//! status code. Those are checked here, before or after `httparse` runs. Every rule rejects; nothing
//! is repaired.

use std::mem::MaybeUninit;

use crate::http::fields::{self, Fields};
use crate::http::target::{check_target, TargetError};

/// How many empty lines (CRLF) may precede a request-line. RFC 9112 §2.2 asks servers to ignore "at
/// least one" so that a client which sends an extra CRLF after a POST body is not refused; two covers
/// that case, and anything beyond it is a client feeding us empty lines, which we reject.
pub const MAX_LEADING_EMPTY_LINES: usize = 2;

/// Header slots kept on the stack for one request head, so that parsing allocates none: the most
/// `server.max_headers` may be set to (the configuration refuses more). `HeadLimits::max_headers`
/// counts up to this many.
pub const HEADER_SLOTS: usize = 1000;

/// Header slots kept on the stack for one response head: the relay reads provider heads with a
/// limit of 256 fields. `HeadLimits::max_headers` counts up to this many for a response.
pub const HEADER_SLOTS_RESPONSE: usize = 256;

/// Bytes of an HTTP-version token (`HTTP/` DIGIT `.` DIGIT, RFC 9112 §2.3); a longer token is not a
/// version at all and gets a 400 rather than a 505.
const VERSION_TOKEN_BYTES: usize = 8;

/// Limits for one head. They come from the server configuration (`server.max_header_bytes`,
/// `server.max_headers`, `server.max_uri_bytes`); there are no defaults here on purpose, so that the
/// configuration is the one place that states them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeadLimits {
    /// Bytes of the whole head, from the first byte of the buffer (leading empty lines included) to
    /// the final CRLFCRLF inclusive. Exceeding it is a 431, even while the head is incomplete.
    pub max_head_bytes: usize,
    /// Field lines in the head. Exceeding it is a 431.
    pub max_headers: usize,
    /// Bytes of the request-target. Exceeding it is a 414.
    pub max_uri_bytes: usize,
}

/// The HTTP versions we speak. Anything else is refused with 505 (RFC 9110 §15.6.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
}

/// A complete, syntactically valid request head. Parse into one with [`parse_request_head_into`]
/// (the connection keeps one per connection and refills it, so a steady stream of requests
/// allocates nothing here) or [`parse_request_head`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    pub version: Version,
    /// Bytes of the head in the buffer, leading empty lines and the final CRLFCRLF included: the body
    /// (or the next request) starts at `buf[head_len..]`.
    pub head_len: usize,
    /// Bytes of the method at the front of the fields' lead text; the target follows it.
    method_len: usize,
    fields: Fields,
}

impl RequestHead {
    /// A head from parts already known to be valid, laid out as the parser lays it out: for tests
    /// and the fuzz reference. Names are lower-cased here; values are kept as given.
    pub fn from_parts<'a>(
        method: &str,
        target: &str,
        version: Version,
        headers: impl IntoIterator<Item = (&'a str, &'a [u8])>,
        head_len: usize,
    ) -> RequestHead {
        let mut head = RequestHead {
            version,
            head_len,
            method_len: method.len(),
            fields: Fields::default(),
        };
        head.fields.reset(&[method, target], 0, 0, 0);
        for (name, value) in headers {
            head.fields.push(name, value);
        }
        head
    }

    /// A token (RFC 9110 §9.1), case-sensitive: `get` is not `GET`.
    pub fn method(&self) -> &str {
        &self.fields.lead()[..self.method_len]
    }

    /// Origin-form (`/path?query`) or, for OPTIONS only, `*`.
    pub fn target(&self) -> &str {
        &self.fields.lead()[self.method_len..]
    }

    /// Every field line as (lower-case name, value), in message order.
    pub fn headers(&self) -> fields::Iter<'_> {
        self.fields.iter()
    }

    /// The field lines, for code that reads several of them (`http/framing.rs`).
    pub fn fields(&self) -> &Fields {
        &self.fields
    }

    /// The value of the first field named `name` (compared case-insensitively).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.fields.get(name)
    }

    /// Every value of the fields named `name` (compared case-insensitively), in message order.
    pub fn headers_named<'a, 'n>(&'a self, name: &'n str) -> fields::Named<'a, 'n> {
        self.fields.named(name)
    }
}

impl Default for RequestHead {
    /// An empty head (no method, no target, no fields) to parse into.
    fn default() -> RequestHead {
        RequestHead::from_parts("", "", Version::Http11, [], 0)
    }
}

/// A complete, syntactically valid response head from the upstream provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    pub version: Version,
    /// 100 to 599 (RFC 9110 §15).
    pub status: u16,
    /// Bytes of the head in the buffer, final CRLFCRLF included.
    pub head_len: usize,
    /// The reason-phrase is the fields' lead text.
    fields: Fields,
}

impl ResponseHead {
    /// A head from parts already known to be valid, laid out as the parser lays it out: for tests
    /// and the fuzz reference. Names are lower-cased here; values are kept as given.
    pub fn from_parts<'a>(
        version: Version,
        status: u16,
        reason: &str,
        headers: impl IntoIterator<Item = (&'a str, &'a [u8])>,
        head_len: usize,
    ) -> ResponseHead {
        let mut head = ResponseHead {
            version,
            status,
            head_len,
            fields: Fields::default(),
        };
        head.fields.reset(&[reason], 0, 0, 0);
        for (name, value) in headers {
            head.fields.push(name, value);
        }
        head
    }

    /// The reason-phrase; empty when absent or when it held obs-text (it carries no meaning).
    pub fn reason(&self) -> &str {
        self.fields.lead()
    }

    /// Every field line as (lower-case name, value), in message order.
    pub fn headers(&self) -> fields::Iter<'_> {
        self.fields.iter()
    }

    /// The field lines, for code that reads several of them (`http/framing.rs`).
    pub fn fields(&self) -> &Fields {
        &self.fields
    }

    /// The value of the first field named `name` (compared case-insensitively).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.fields.get(name)
    }

    /// Every value of the fields named `name` (compared case-insensitively), in message order.
    pub fn headers_named<'a, 'n>(&'a self, name: &'n str) -> fields::Named<'a, 'n> {
        self.fields.named(name)
    }
}

impl Default for ResponseHead {
    /// An empty head (no fields) to parse into.
    fn default() -> ResponseHead {
        ResponseHead::from_parts(Version::Http11, 0, "", [], 0)
    }
}

/// Why a head was refused. The comment on each variant is the status the relay answers with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeadError {
    /// 431: the head is longer than `max_head_bytes`.
    TooLarge,
    /// 431: more than `max_headers` field lines.
    TooManyHeaders,
    /// 414: the request-target is longer than `max_uri_bytes`.
    UriTooLong,
    /// 505: a well-formed HTTP version other than 1.0 and 1.1.
    BadVersion,
    /// 400: anything else; the text says what, for the error message ("bare LF line ending").
    Malformed(&'static str),
}

/// Parses a request head from the start of `buf` into `head`, reusing its buffers.
///
/// Returns `Ok(true)` when a complete, valid head is at the start of `buf` (bytes after
/// `head.head_len` are not looked at) and is now in `head`, `Ok(false)` when the bytes so far are a
/// valid prefix and `buf.len()` is still under `max_head_bytes`, and an error as soon as the bytes so
/// far can no longer become a valid head. A prefix of a valid head always gives `Ok(false)`, so a
/// caller can re-run this after every read. `head` is only written when the answer is `Ok(true)`.
pub fn parse_request_head_into(
    buf: &[u8],
    limits: &HeadLimits,
    head: &mut RequestHead,
) -> Result<bool, HeadError> {
    let start = match skip_leading_empty_lines(buf)? {
        Some(start) => start,
        None => return need_more(buf, limits),
    };
    let scan = scan_lines(buf, start, limits.max_head_bytes)?;

    // Header slots on the stack, left uninitialised: no allocation and no clearing per request.
    let mut slots = [const { MaybeUninit::uninit() }; HEADER_SLOTS];
    let mut req = httparse::Request::new(&mut []);
    let parsed_to = parse_window(buf, scan, limits);
    let status = req
        .parse_with_uninit_headers(
            parsed_to,
            &mut slots[..limits.max_headers.min(HEADER_SLOTS)],
        )
        .map_err(|e| map_httparse_error(e, version_token(buf, start, 2)))?;

    // The request-line is complete once httparse has filled `path`, even if the fields are not.
    if let (Some(method), Some(target)) = (req.method, req.path) {
        check_target(method, target, limits.max_uri_bytes).map_err(|e| match e {
            TargetError::TooLong => HeadError::UriTooLong,
            TargetError::Malformed(why) => HeadError::Malformed(why),
        })?;
    } else if let Some(method) = req.method {
        // The target is still arriving: refuse it as soon as it is too long rather than buffering it
        // up to max_head_bytes. httparse stops at the first byte that cannot be in a target, so every
        // byte it saw after "METHOD SP" is target.
        let target_start = start + method.len() + 1;
        if parsed_to.len().saturating_sub(target_start) > limits.max_uri_bytes {
            return Err(HeadError::UriTooLong);
        }
    }

    let end = match (scan, status) {
        (Some(end), httparse::Status::Complete(n)) if n == end => end,
        // Our scan found the empty line that ends the head, so httparse must have ended there too.
        (Some(_), _) => return Err(HeadError::Malformed("unparsable request head")),
        (None, _) => return need_more(buf, limits),
    };
    let version = match req.version {
        Some(0) => Version::Http10,
        Some(1) => Version::Http11,
        _ => return Err(HeadError::BadVersion),
    };
    let (method, target) = (req.method.unwrap_or_default(), req.path.unwrap_or_default());
    head.version = version;
    head.head_len = end;
    head.method_len = method.len();
    fill(&mut head.fields, &[method, target], req.headers);
    Ok(true)
}

/// Parses a request head from the start of `buf` into a new value: [`parse_request_head_into`]
/// with `Ok(Some(head))` for `Ok(true)` and `Ok(None)` for `Ok(false)`.
pub fn parse_request_head(
    buf: &[u8],
    limits: &HeadLimits,
) -> Result<Option<RequestHead>, HeadError> {
    let mut head = RequestHead::default();
    Ok(parse_request_head_into(buf, limits, &mut head)?.then_some(head))
}

/// Parses the provider's response head from the start of `buf` into `head`, reusing its buffers;
/// same contract as [`parse_request_head_into`] (`max_uri_bytes` is not used). Errors here are
/// upstream errors (502).
///
/// Stricter than RFC 9112 asks of a client in two places, both on purpose: no empty lines before the
/// status-line (RFC 9112 §2.2's allowance is for request-lines; on a reused upstream connection stray
/// CRLFs mean the previous response was framed wrongly), and the SP after the status code is
/// required even when the reason-phrase is empty (RFC 9112 §4 grammar).
pub fn parse_response_head_into(
    buf: &[u8],
    limits: &HeadLimits,
    head: &mut ResponseHead,
) -> Result<bool, HeadError> {
    match buf.first() {
        None => return need_more(buf, limits),
        Some(b'\r' | b'\n') => {
            return Err(HeadError::Malformed("empty line before the status-line"))
        }
        Some(_) => {}
    }
    let scan = scan_lines(buf, 0, limits.max_head_bytes)?;

    // Header slots on the stack, left uninitialised as for requests: clearing 256 slots cost more
    // than parsing a provider's usual head. The default configuration is what `Response::parse`
    // uses.
    let mut slots = [const { MaybeUninit::uninit() }; HEADER_SLOTS_RESPONSE];
    let mut resp = httparse::Response::new(&mut []);
    let parsed_to = parse_window(buf, scan, limits);
    let status = httparse::ParserConfig::default()
        .parse_response_with_uninit_headers(
            &mut resp,
            parsed_to,
            &mut slots[..limits.max_headers.min(HEADER_SLOTS_RESPONSE)],
        )
        .map_err(|e| map_httparse_error(e, version_token(buf, 0, 0)))?;
    if let Some(code) = resp.code {
        // RFC 9110 §15: status codes are 100 to 599; httparse takes any three digits.
        if !(100..=599).contains(&code) {
            return Err(HeadError::Malformed("status code outside 100-599"));
        }
        // RFC 9112 §4: status-line = HTTP-version SP status-code SP [ reason-phrase ]. httparse
        // accepts a line that ends right after the code; we want the SP. With the code parsed, the
        // version (8 bytes), SP and code fill buf[..12], so buf[12] is what follows the code.
        if buf.get(12).is_some_and(|&b| b != b' ') {
            return Err(HeadError::Malformed(
                "status-line lacks SP after the status code",
            ));
        }
    }

    let end = match (scan, status) {
        (Some(end), httparse::Status::Complete(n)) if n == end => end,
        (Some(_), _) => return Err(HeadError::Malformed("unparsable response head")),
        (None, _) => return need_more(buf, limits),
    };
    let version = match resp.version {
        Some(0) => Version::Http10,
        Some(1) => Version::Http11,
        _ => return Err(HeadError::BadVersion),
    };
    head.version = version;
    head.status = resp.code.unwrap_or_default();
    head.head_len = end;
    fill(
        &mut head.fields,
        &[resp.reason.unwrap_or_default()],
        resp.headers,
    );
    Ok(true)
}

/// Parses the provider's response head from the start of `buf` into a new value:
/// [`parse_response_head_into`] with `Ok(Some(head))` for `Ok(true)` and `Ok(None)` for `Ok(false)`.
pub fn parse_response_head(
    buf: &[u8],
    limits: &HeadLimits,
) -> Result<Option<ResponseHead>, HeadError> {
    let mut head = ResponseHead::default();
    Ok(parse_response_head_into(buf, limits, &mut head)?.then_some(head))
}

/// The head is incomplete: wait for more bytes unless the buffer already holds `max_head_bytes`, in
/// which case the head can only end past the limit.
fn need_more(buf: &[u8], limits: &HeadLimits) -> Result<bool, HeadError> {
    if buf.len() >= limits.max_head_bytes {
        Err(HeadError::TooLarge)
    } else {
        Ok(false)
    }
}

/// Skips the empty lines allowed before a request-line. `Ok(None)`: the buffer ends inside them.
fn skip_leading_empty_lines(buf: &[u8]) -> Result<Option<usize>, HeadError> {
    let mut pos = 0;
    let mut lines = 0;
    loop {
        match (buf.get(pos), buf.get(pos + 1)) {
            (None, _) | (Some(b'\r'), None) => return Ok(None),
            (Some(b'\r'), Some(b'\n')) => {
                lines += 1;
                // RFC 9112 §2.2: ignoring "at least one" empty line is robustness; a stream of them
                // is not a client we need to serve.
                if lines > MAX_LEADING_EMPTY_LINES {
                    return Err(HeadError::Malformed(
                        "too many empty lines before the request-line",
                    ));
                }
                pos += 2;
            }
            // RFC 9112 §2.2 lets a recipient accept a bare LF as a line terminator; we require CRLF
            // everywhere so that every hop agrees where lines end.
            (Some(b'\n'), _) => return Err(HeadError::Malformed("bare LF line ending")),
            (Some(b'\r'), Some(_)) => return Err(HeadError::Malformed("bare CR")),
            (Some(_), _) => return Ok(Some(pos)),
        }
    }
}

/// Enforces line discipline over `buf[start..]`, up to `max_head_bytes` from the start of `buf`,
/// and finds the end of the head. Returns the offset just past the CRLFCRLF, or `None` if it is not
/// within the window yet. Only CR and LF decide anything here, so the walk jumps from one to the next
/// with `memchr2` (the first of either, as a byte-by-byte walk would meet it) instead of testing
/// every byte of the request-target and the field values.
fn scan_lines(buf: &[u8], start: usize, max_head_bytes: usize) -> Result<Option<usize>, HeadError> {
    let window = &buf[..buf.len().min(max_head_bytes)];
    let mut pos = start;
    loop {
        let Some(found) = window
            .get(pos..)
            .and_then(|rest| memchr::memchr2(b'\r', b'\n', rest))
        else {
            return Ok(None);
        };
        pos += found;
        match window[pos] {
            b'\r' => match window.get(pos + 1) {
                None => return Ok(None),
                Some(b'\n') => {
                    pos += 2;
                    match window.get(pos) {
                        None => return Ok(None),
                        Some(b'\r') => match window.get(pos + 1) {
                            None => return Ok(None),
                            Some(b'\n') => return Ok(Some(pos + 2)),
                            Some(_) => return Err(HeadError::Malformed("bare CR")),
                        },
                        // RFC 9112 §5.2: obs-fold (a field line continued on a line starting with
                        // SP/HTAB) is rejected; RFC 9112 §2.2: so is whitespace between the
                        // start-line and the first field line. Both start a line with SP/HTAB.
                        Some(b' ' | b'\t') => {
                            return Err(HeadError::Malformed(
                                "line starts with whitespace (obs-fold)",
                            ))
                        }
                        Some(_) => {}
                    }
                }
                // RFC 9112 §2.2: a bare CR is not a line ending; we reject it rather than read it as
                // one or as data.
                Some(_) => return Err(HeadError::Malformed("bare CR")),
            },
            // memchr2 stops only at CR or LF.
            _ => return Err(HeadError::Malformed("bare LF line ending")),
        }
    }
}

/// What httparse gets to see: the complete head, or the part of an incomplete one inside the size
/// limit (bytes past it can only lead to `TooLarge`, and line discipline was checked only up to it).
fn parse_window<'b>(buf: &'b [u8], scan: Option<usize>, limits: &HeadLimits) -> &'b [u8] {
    match scan {
        Some(end) => &buf[..end],
        None => &buf[..buf.len().min(limits.max_head_bytes)],
    }
}

/// The bytes where the HTTP-version starts on the first line: after `spaces` SPs (2 for a
/// request-line, 0 for a status-line), up to CR or the end of the buffer.
fn version_token(buf: &[u8], start: usize, spaces: usize) -> &[u8] {
    let line = &buf[start..];
    let line = &line[..line.iter().position(|&b| b == b'\r').unwrap_or(line.len())];
    let mut rest = line;
    for _ in 0..spaces {
        match rest.iter().position(|&b| b == b' ') {
            Some(i) => rest = &rest[i + 1..],
            None => return &[],
        }
    }
    match rest.iter().position(|&b| b == b' ') {
        Some(i) => &rest[..i],
        None => rest,
    }
}

/// True when `token` is `HTTP/` DIGIT `.` DIGIT, or a prefix of that shape whose major digit is
/// already there (so a partial "HTTP/2" and a full "HTTP/2.0" are classified alike).
fn looks_like_http_version(token: &[u8]) -> bool {
    if token.len() < 6 || token.len() > VERSION_TOKEN_BYTES || !token.starts_with(b"HTTP/") {
        return false;
    }
    // `token` is 6 to 8 bytes: "HTTP/" then 1 to 3 of DIGIT "." DIGIT.
    match &token[5..] {
        [major] | [major, b'.'] => major.is_ascii_digit(),
        [major, b'.', minor] => major.is_ascii_digit() && minor.is_ascii_digit(),
        _ => false,
    }
}

fn map_httparse_error(e: httparse::Error, version: &[u8]) -> HeadError {
    match e {
        // RFC 9110 §15.6.6: 505 is for a version we do not support; a token that is not an
        // HTTP-version at all (RFC 9112 §2.3) is a plain syntax error.
        httparse::Error::Version if looks_like_http_version(version) => HeadError::BadVersion,
        httparse::Error::Version => HeadError::Malformed("invalid HTTP version"),
        httparse::Error::TooManyHeaders => HeadError::TooManyHeaders,
        // RFC 9112 §5.1: no whitespace between the field name and the colon; RFC 9110 §5.1: names
        // are tokens.
        httparse::Error::HeaderName => HeadError::Malformed("invalid field name"),
        // RFC 9110 §5.5: field values hold no CTLs other than HTAB (NUL, DEL, ... are refused).
        httparse::Error::HeaderValue => HeadError::Malformed("invalid field value"),
        httparse::Error::NewLine => HeadError::Malformed("invalid line ending"),
        httparse::Error::Status => HeadError::Malformed("invalid status-line"),
        // RFC 9112 §3: method SP request-target SP HTTP-version, single SPs, method a token.
        httparse::Error::Token => HeadError::Malformed("invalid request-line"),
    }
}

// The RFC 3986 and RFC 9110 character classes are the grammar module's; re-exported for the HTTP
// modules that already name them here.
pub(crate) use crate::text::grammar::{is_pchar, is_tchar, is_unreserved_or_sub_delim};

/// RFC 9110 §5.5: a byte that may appear in a field value: HTAB, SP, VCHAR or obs-text.
pub(crate) fn is_field_value_byte(b: u8) -> bool {
    b == b'\t' || b == b' ' || (0x21..=0x7e).contains(&b) || b >= 0x80
}

/// Removes leading and trailing SP/HTAB (RFC 9110 §5.6.3 OWS).
pub(crate) fn trim_ows(v: &[u8]) -> &[u8] {
    let start = v
        .iter()
        .position(|&b| b != b' ' && b != b'\t')
        .unwrap_or(v.len());
    let end = v
        .iter()
        .rposition(|&b| b != b' ' && b != b'\t')
        .map_or(start, |i| i + 1);
    &v[start..end]
}

/// Copies the start-line's text and the parsed fields into `fields`, names lower-cased and values
/// trimmed of OWS, growing each of its buffers at most once.
fn fill(fields: &mut Fields, lead: &[&str], headers: &[httparse::Header<'_>]) {
    let (names, values) = headers
        .iter()
        .fold((0, 0), |(n, v), h| (n + h.name.len(), v + h.value.len()));
    fields.reset(lead, names, values, headers.len());
    fields.extend(headers.iter().map(|h| (h.name, trim_ows(h.value))));
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: HeadLimits = HeadLimits {
        max_head_bytes: 1024,
        max_headers: 8,
        max_uri_bytes: 64,
    };

    fn req(raw: &[u8]) -> Result<Option<RequestHead>, HeadError> {
        parse_request_head(raw, &LIMITS)
    }

    fn req_err(raw: &[u8]) -> HeadError {
        match req(raw) {
            Err(e) => e,
            Ok(other) => panic!(
                "expected an error for {:?}, got {other:?}",
                String::from_utf8_lossy(raw)
            ),
        }
    }

    fn resp(raw: &[u8]) -> Result<Option<ResponseHead>, HeadError> {
        parse_response_head(raw, &LIMITS)
    }

    #[test]
    fn parses_a_simple_request() {
        let raw =
            b"POST /v1/chat?x=1 HTTP/1.1\r\nHost: relay.example\r\nX-Thing:  a b \t\r\n\r\nBODY";
        let head = req(raw).unwrap().unwrap();
        assert_eq!(head.method(), "POST");
        assert_eq!(head.target(), "/v1/chat?x=1");
        assert_eq!(head.version, Version::Http11);
        assert_eq!(head.head_len, raw.len() - 4);
        assert_eq!(head.header("HOST"), Some(&b"relay.example"[..]));
        // OWS around the value is not part of it; inner whitespace is.
        assert_eq!(head.header("x-thing"), Some(&b"a b"[..]));
        assert_eq!(head.headers().nth(1).unwrap().0, "x-thing");
    }

    #[test]
    fn a_refilled_head_holds_only_the_new_one() {
        let mut head = RequestHead::default();
        let first = b"POST /long/target?q=1 HTTP/1.0\r\nHost: h\r\nA: 1\r\nB: 2\r\n\r\n";
        assert_eq!(parse_request_head_into(first, &LIMITS, &mut head), Ok(true));
        let second = b"GET / HTTP/1.1\r\nX: y\r\n\r\n";
        // An incomplete head leaves the value as it was.
        assert_eq!(
            parse_request_head_into(&second[..10], &LIMITS, &mut head),
            Ok(false)
        );
        assert_eq!(head.method(), "POST");
        assert_eq!(
            parse_request_head_into(second, &LIMITS, &mut head),
            Ok(true)
        );
        assert_eq!(Some(head), req(second).unwrap());
        let mut resp_head = resp(b"HTTP/1.1 404 Not Here\r\nA: 1\r\n\r\n")
            .unwrap()
            .unwrap();
        let next = b"HTTP/1.0 200 \r\n\r\n";
        assert_eq!(
            parse_response_head_into(next, &LIMITS, &mut resp_head),
            Ok(true)
        );
        assert_eq!(Some(resp_head), resp(next).unwrap());
    }

    #[test]
    fn headers_named_returns_all_in_order() {
        let head = req(b"GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\na: 3\r\n\r\n")
            .unwrap()
            .unwrap();
        let all: Vec<&[u8]> = head.headers_named("A").collect();
        assert_eq!(all, vec![&b"1"[..], &b"3"[..]]);
        assert_eq!(head.header("a"), Some(&b"1"[..]));
        assert_eq!(head.header("missing"), None);
    }

    #[test]
    fn every_prefix_of_a_valid_head_needs_more() {
        let raw = b"\r\nGET /a%20b HTTP/1.0\r\nHost: h\r\nEmpty:\r\n\r\n";
        let full = req(raw).unwrap().unwrap();
        assert_eq!(full.head_len, raw.len());
        assert_eq!(full.version, Version::Http10);
        assert_eq!(full.header("empty"), Some(&b""[..]));
        for end in 0..raw.len() {
            assert_eq!(
                req(&raw[..end]).unwrap().map(|h| h.head_len),
                None,
                "prefix of {end} bytes"
            );
        }
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n";
        assert_eq!(resp(raw).unwrap().unwrap().head_len, raw.len());
        for end in 0..raw.len() {
            assert!(
                resp(&raw[..end]).unwrap().is_none(),
                "prefix of {end} bytes"
            );
        }
    }

    #[test]
    fn leading_empty_lines_are_capped() {
        let two = req(b"\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(two.head_len, 4 + 16 + 9 + 2);
        assert_eq!(
            req_err(b"\r\n\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n"),
            HeadError::Malformed("too many empty lines before the request-line")
        );
        assert_eq!(
            req_err(b"\nGET / HTTP/1.1\r\n\r\n"),
            HeadError::Malformed("bare LF line ending")
        );
        assert_eq!(
            req_err(b"\rGET / HTTP/1.1\r\n\r\n"),
            HeadError::Malformed("bare CR")
        );
    }

    #[test]
    fn line_discipline_is_crlf_only() {
        assert_eq!(
            req_err(b"GET / HTTP/1.1\nHost: h\n\n"),
            HeadError::Malformed("bare LF line ending")
        );
        assert_eq!(
            req_err(b"GET / HTTP/1.1\r\nHost: h\n\r\n"),
            HeadError::Malformed("bare LF line ending")
        );
        assert_eq!(
            req_err(b"GET / HTTP/1.1\r\nHost: h\r\n\n"),
            HeadError::Malformed("bare LF line ending")
        );
        assert_eq!(
            req_err(b"GET / HTTP/1.1\r\nX: a\rb\r\n\r\n"),
            HeadError::Malformed("bare CR")
        );
        assert_eq!(
            req_err(b"GET / HTTP/1.1\r\nHost: h\r\n\rX"),
            HeadError::Malformed("bare CR")
        );
        // A bare LF is caught while the head is still incomplete.
        assert_eq!(
            req_err(b"GET / HTTP/1.1\r\nHost: h\n"),
            HeadError::Malformed("bare LF line ending")
        );
    }

    #[test]
    fn obs_fold_and_leading_whitespace_are_rejected() {
        let fold = HeadError::Malformed("line starts with whitespace (obs-fold)");
        assert_eq!(
            req_err(b"GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n b\r\n\r\n"),
            fold
        );
        assert_eq!(
            req_err(b"GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n\tb\r\n\r\n"),
            fold
        );
        assert_eq!(req_err(b"GET / HTTP/1.1\r\n Host: h\r\n\r\n"), fold);
        assert_eq!(
            resp(b"HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n").unwrap_err(),
            HeadError::Malformed("line starts with whitespace (obs-fold)")
        );
    }

    #[test]
    fn field_syntax_is_strict() {
        let name = HeadError::Malformed("invalid field name");
        let value = HeadError::Malformed("invalid field value");
        assert_eq!(req_err(b"GET / HTTP/1.1\r\nHost : h\r\n\r\n"), name);
        assert_eq!(req_err(b"GET / HTTP/1.1\r\nHost\t: h\r\n\r\n"), name);
        assert_eq!(req_err(b"GET / HTTP/1.1\r\nHo(st: h\r\n\r\n"), name);
        assert_eq!(req_err(b"GET / HTTP/1.1\r\n: h\r\n\r\n"), name);
        assert_eq!(req_err(b"GET / HTTP/1.1\r\nNoColon\r\n\r\n"), name);
        assert_eq!(req_err(b"GET / HTTP/1.1\r\nX: a\x00b\r\n\r\n"), value);
        assert_eq!(req_err(b"GET / HTTP/1.1\r\nX: a\x7fb\r\n\r\n"), value);
        assert_eq!(req_err(b"GET / HTTP/1.1\r\nX: a\x1bb\r\n\r\n"), value);
        // HTAB and obs-text are allowed in values.
        let head = req(b"GET / HTTP/1.1\r\nX: a\tb\xff\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(head.header("x"), Some(&b"a\tb\xff"[..]));
    }

    #[test]
    fn request_line_is_strict() {
        let line = HeadError::Malformed("invalid request-line");
        assert_eq!(req_err(b"GET  / HTTP/1.1\r\n\r\n"), line);
        assert_eq!(req_err(b"GET\t/ HTTP/1.1\r\n\r\n"), line);
        assert_eq!(req_err(b"G(T / HTTP/1.1\r\n\r\n"), line);
        assert_eq!(req_err(b" GET / HTTP/1.1\r\n\r\n"), line);
        assert_eq!(
            req_err(b"GET / HTTP/1.1 \r\n\r\n"),
            HeadError::Malformed("invalid line ending")
        );
        assert_eq!(
            req_err(b"GET /  HTTP/1.1\r\n\r\n"),
            HeadError::Malformed("invalid HTTP version")
        );
        assert_eq!(
            req_err(b"GET /a b HTTP/1.1\r\n\r\n"),
            HeadError::Malformed("invalid HTTP version")
        );
        assert_eq!(
            req_err(b"GET / http/1.1\r\n\r\n"),
            HeadError::Malformed("invalid HTTP version")
        );
        assert_eq!(
            req_err(b"GET / HTTP/11\r\n\r\n"),
            HeadError::Malformed("invalid HTTP version")
        );
        assert_eq!(
            req_err(b"GET / HTTP/1.1x\r\n\r\n"),
            HeadError::Malformed("invalid line ending")
        );
        // Lower-case methods are tokens too; they are simply not GET.
        assert_eq!(
            req(b"get / HTTP/1.1\r\n\r\n").unwrap().unwrap().method(),
            "get"
        );
    }

    #[test]
    fn unsupported_versions_are_505() {
        for v in ["HTTP/1.2", "HTTP/2.0", "HTTP/0.9", "HTTP/3.0"] {
            let raw = format!("GET / {v}\r\nHost: h\r\n\r\n");
            assert_eq!(req_err(raw.as_bytes()), HeadError::BadVersion, "{v}");
            // Classified the same while still arriving: once the token is complete, and for a
            // major version other than 1 as soon as its digit is there.
            assert_eq!(
                req_err(&raw.as_bytes()[..14]),
                HeadError::BadVersion,
                "{v} partial"
            );
            if !v.starts_with("HTTP/1") {
                assert_eq!(
                    req_err(&raw.as_bytes()[..12]),
                    HeadError::BadVersion,
                    "{v} major only"
                );
            }
        }
        assert_eq!(
            resp(b"HTTP/2.0 200 OK\r\n\r\n").unwrap_err(),
            HeadError::BadVersion
        );
        assert_eq!(
            resp(b"HTTX/1.1 200 OK\r\n\r\n").unwrap_err(),
            HeadError::Malformed("invalid HTTP version")
        );
    }

    #[test]
    fn version_token_shapes() {
        assert!(looks_like_http_version(b"HTTP/2"));
        assert!(looks_like_http_version(b"HTTP/2."));
        assert!(looks_like_http_version(b"HTTP/2.0"));
        assert!(!looks_like_http_version(b"HTTP/"));
        assert!(!looks_like_http_version(b"HTTP/2.0x"));
        assert!(!looks_like_http_version(b"HTTP/22"));
        assert!(!looks_like_http_version(b"HTTP/2.x"));
        assert_eq!(version_token(b"GET / HTTP/2.0\r\n", 0, 2), b"HTTP/2.0");
        assert_eq!(version_token(b"GET /", 0, 2), b"");
        assert_eq!(version_token(b"HTTP/2.0 200 OK", 0, 0), b"HTTP/2.0");
    }

    #[test]
    fn request_target_forms() {
        assert_eq!(
            req(b"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n")
                .unwrap()
                .unwrap()
                .target(),
            "*"
        );
        assert_eq!(
            req_err(b"GET * HTTP/1.1\r\n\r\n"),
            HeadError::Malformed("asterisk-form request-target is only valid for OPTIONS")
        );
        let origin = HeadError::Malformed("request-target must be origin-form (start with /)");
        assert_eq!(
            req_err(b"GET http://evil.example/ HTTP/1.1\r\n\r\n"),
            origin
        );
        assert_eq!(
            req_err(b"CONNECT evil.example:443 HTTP/1.1\r\n\r\n"),
            origin
        );
        assert_eq!(req_err(b"GET a/b HTTP/1.1\r\n\r\n"), origin);
        assert_eq!(
            req_err(b"GET /a#frag HTTP/1.1\r\n\r\n"),
            HeadError::Malformed("fragment in request-target")
        );
        let pct = HeadError::Malformed("invalid percent-encoding in request-target");
        assert_eq!(req_err(b"GET /a%2 HTTP/1.1\r\n\r\n"), pct);
        assert_eq!(req_err(b"GET /a%zz HTTP/1.1\r\n\r\n"), pct);
        let chr = HeadError::Malformed("invalid character in request-target");
        for bad in ["/a\"b", "/a<b", "/a\\b", "/a{b", "/a|b", "/a^b", "/a`b"] {
            assert_eq!(
                req_err(format!("GET {bad} HTTP/1.1\r\n\r\n").as_bytes()),
                chr,
                "{bad}"
            );
        }
        assert_eq!(req_err(b"GET /caf\xc3\xa9 HTTP/1.1\r\n\r\n"), chr);
        let ok = req(b"GET /p/a:b@c!$&'()*+,;=-._~?q=/?x%2F HTTP/1.1\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(ok.target(), "/p/a:b@c!$&'()*+,;=-._~?q=/?x%2F");
    }

    #[test]
    fn target_length_is_limited_even_while_incomplete() {
        let at_limit = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(63));
        assert!(req(at_limit.as_bytes()).unwrap().is_some());
        let over = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(64));
        assert_eq!(req_err(over.as_bytes()), HeadError::UriTooLong);
        // The target is still arriving and already too long: no need to wait for the rest.
        let partial = format!("GET /{}", "a".repeat(64));
        assert_eq!(req_err(partial.as_bytes()), HeadError::UriTooLong);
        let partial = format!("GET /{}", "a".repeat(63));
        assert_eq!(req(partial.as_bytes()), Ok(None));
    }

    #[test]
    fn head_size_is_limited_even_while_incomplete() {
        let filler = format!("GET / HTTP/1.1\r\nX: {}", "a".repeat(2000));
        assert_eq!(req_err(filler.as_bytes()), HeadError::TooLarge);
        // Exactly at the limit and complete is fine; one more byte of head is not.
        let base = "GET / HTTP/1.1\r\nX: \r\n\r\n".len();
        let exact = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(1024 - base));
        assert_eq!(req(exact.as_bytes()).unwrap().unwrap().head_len, 1024);
        let over = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(1025 - base));
        assert_eq!(req_err(over.as_bytes()), HeadError::TooLarge);
        // One byte short of the limit and incomplete: still waiting.
        assert_eq!(req(&exact.as_bytes()[..1023]), Ok(None));
        assert_eq!(req_err(&over.as_bytes()[..1024]), HeadError::TooLarge);
        // Body bytes after a complete head do not count.
        let mut with_body = b"GET / HTTP/1.1\r\n\r\n".to_vec();
        with_body.extend_from_slice(&[b'z'; 5000]);
        assert_eq!(req(&with_body).unwrap().unwrap().head_len, 18);
        assert_eq!(
            resp(
                filler
                    .replace("GET / HTTP/1.1", "HTTP/1.1 200 OK")
                    .as_bytes()
            )
            .unwrap_err(),
            HeadError::TooLarge
        );
    }

    #[test]
    fn header_count_is_limited() {
        let mut raw = String::from("GET / HTTP/1.1\r\n");
        for i in 0..8 {
            raw.push_str(&format!("X-{i}: v\r\n"));
        }
        let eight = format!("{raw}\r\n");
        assert_eq!(req(eight.as_bytes()).unwrap().unwrap().headers().len(), 8);
        raw.push_str("X-8: v\r\n");
        assert_eq!(req_err(raw.as_bytes()), HeadError::TooManyHeaders);
        assert_eq!(
            req_err(format!("{raw}\r\n").as_bytes()),
            HeadError::TooManyHeaders
        );
    }

    #[test]
    fn parses_responses() {
        let raw = b"HTTP/1.1 201 Created Now\r\nContent-Type: text/plain\r\n\r\n";
        let head = resp(raw).unwrap().unwrap();
        assert_eq!(
            (head.version, head.status, head.reason()),
            (Version::Http11, 201, "Created Now")
        );
        assert_eq!(head.header("content-type"), Some(&b"text/plain"[..]));
        assert_eq!(head.headers_named("Content-Type").count(), 1);
        let empty_reason = resp(b"HTTP/1.0 204 \r\n\r\n").unwrap().unwrap();
        assert_eq!(
            (empty_reason.version, empty_reason.reason()),
            (Version::Http10, "")
        );
    }

    #[test]
    fn response_heads_are_strict() {
        assert_eq!(
            resp(b"HTTP/1.1 200\r\n\r\n").unwrap_err(),
            HeadError::Malformed("status-line lacks SP after the status code")
        );
        assert_eq!(
            resp(b"\r\nHTTP/1.1 200 OK\r\n\r\n").unwrap_err(),
            HeadError::Malformed("empty line before the status-line")
        );
        assert_eq!(
            resp(b"HTTP/1.1 200 OK\nX: y\n\n").unwrap_err(),
            HeadError::Malformed("bare LF line ending")
        );
        for code in ["000", "099", "600", "999"] {
            let raw = format!("HTTP/1.1 {code} X\r\n\r\n");
            assert_eq!(
                resp(raw.as_bytes()).unwrap_err(),
                HeadError::Malformed("status code outside 100-599")
            );
        }
        assert_eq!(
            resp(b"HTTP/1.1 20x OK\r\n\r\n").unwrap_err(),
            HeadError::Malformed("invalid status-line")
        );
        assert_eq!(
            resp(b"HTTP/1.1  200 OK\r\n\r\n").unwrap_err(),
            HeadError::Malformed("invalid status-line")
        );
        assert_eq!(
            resp(b"HTTP/1.1 200 OK\r\nX : y\r\n\r\n").unwrap_err(),
            HeadError::Malformed("invalid field name")
        );
    }

    /// What httparse accepts on its own and we refuse. If an httparse upgrade changes any of these,
    /// the first assertion of the pair says so.
    #[test]
    fn httparse_tolerances_are_overridden() {
        let lenient_req = |raw: &[u8]| {
            let mut slots = [httparse::EMPTY_HEADER; 8];
            httparse::Request::new(&mut slots)
                .parse(raw)
                .map(|s| s.is_complete())
        };
        let lenient_resp = |raw: &[u8]| {
            let mut slots = [httparse::EMPTY_HEADER; 8];
            httparse::Response::new(&mut slots)
                .parse(raw)
                .map(|s| s.is_complete())
        };
        let cases: &[&[u8]] = &[
            b"GET / HTTP/1.1\nHost: h\n\n",
            b"\n\n\n\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n",
            b"GET http://a/ HTTP/1.1\r\nHost: h\r\n\r\n",
            b"GET /caf\xc3\xa9 HTTP/1.1\r\nHost: h\r\n\r\n",
            b"GET /a{b} HTTP/1.1\r\nHost: h\r\n\r\n",
            b"GET /a#b HTTP/1.1\r\nHost: h\r\n\r\n",
            b"GET * HTTP/1.1\r\nHost: h\r\n\r\n",
        ];
        for raw in cases {
            assert_eq!(
                lenient_req(raw),
                Ok(true),
                "httparse: {:?}",
                String::from_utf8_lossy(raw)
            );
            assert!(
                matches!(req(raw), Err(HeadError::Malformed(_))),
                "{:?}",
                String::from_utf8_lossy(raw)
            );
        }
        let cases: &[&[u8]] = &[
            b"HTTP/1.1 200\r\n\r\n",
            b"HTTP/1.1 999 X\r\n\r\n",
            b"\r\nHTTP/1.1 200 OK\r\n\r\n",
            b"HTTP/1.1 200 OK\nX: y\n\n",
        ];
        for raw in cases {
            assert_eq!(
                lenient_resp(raw),
                Ok(true),
                "httparse: {:?}",
                String::from_utf8_lossy(raw)
            );
            assert!(
                matches!(resp(raw), Err(HeadError::Malformed(_))),
                "{:?}",
                String::from_utf8_lossy(raw)
            );
        }
        // And what its default configuration already refuses, which we rely on rather than recheck.
        for raw in [
            &b"GET  / HTTP/1.1\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\nX : y\r\n\r\n",
            b"GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n",
            b"GET / HTTP/1.1\r\n X: a\r\n\r\n",
            b"GET / HTTP/1.1\r\nX: a\x00\r\n\r\n",
        ] {
            assert!(
                lenient_req(raw).is_err(),
                "{:?}",
                String::from_utf8_lossy(raw)
            );
        }
    }

    #[test]
    fn helpers() {
        assert_eq!(trim_ows(b" \t a b \t"), b"a b");
        assert_eq!(trim_ows(b" \t "), b"");
        assert_eq!(trim_ows(b""), b"");
        assert!(is_tchar(b'~') && !is_tchar(b'(') && !is_tchar(b' '));
        assert!(
            is_field_value_byte(b'\t') && is_field_value_byte(0x80) && !is_field_value_byte(0x7f)
        );
        assert!(!is_field_value_byte(0) && !is_field_value_byte(b'\r'));
    }
}
