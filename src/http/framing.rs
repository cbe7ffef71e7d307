//! The framing gate: run once on every parsed head, before a single body byte is read. It decides
//! where the body ends (nothing, Content-Length, chunked, or the close of the connection for
//! responses), whether the connection may carry another message, whether the client waits for
//! `100 Continue`, and whether the request's Host is valid. Every header that decides framing is checked
//! here and nowhere else, so the relay and any proxy in front of it cannot read one message as two
//! (request smuggling). Syntax of the head itself belongs to `http/head.rs`; decoding chunked bodies
//! belongs to `http/chunked.rs`.
//!
//! We are stricter than RFC 9112 requires wherever the RFC lets a server choose: a message whose
//! framing could be read two ways is refused, never guessed at.

use crate::http::fields::Fields;
use crate::http::head::{
    is_tchar, is_unreserved_or_sub_delim, trim_ows, RequestHead, ResponseHead, Version,
};
use crate::text::grammar::check_percent_encoded;

/// Highest port a Host may name: RFC 3986 §3.2.3 allows any digits, TCP has 16 bits.
const MAX_PORT: u32 = 65_535;

/// How a request body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    /// No body: neither Content-Length nor Transfer-Encoding (RFC 9112 §6.3 rule 7).
    None,
    /// Exactly this many bytes follow the head (`Length(0)` when the client sent `Content-Length: 0`).
    Length(u64),
    /// A chunked body follows; decode it with `chunked::ChunkedDecoder`.
    Chunked,
}

/// What the framing gate decided about a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestFraming {
    pub body: BodyFraming,
    /// Whether the connection may carry another request after this one.
    pub keep_alive: bool,
    /// The client sent `Expect: 100-continue` on HTTP/1.1 and has a body to send: answer
    /// `100 Continue` (or a final status) before reading it.
    pub expect_continue: bool,
}

/// Why the framing gate refused a message. The comment on each variant is the status the relay
/// answers with; for a response, every variant means a 502 from the relay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FramingError {
    /// 400, then close the connection: the framing is invalid or ambiguous.
    Bad(&'static str),
    /// 417: an expectation other than `100-continue` (RFC 9110 §10.1.1).
    UnsupportedExpect,
    /// 501: a transfer coding we do not implement (RFC 9112 §6.1).
    NotImplemented(&'static str),
}

/// How an upstream response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseBody {
    /// No body: HEAD request, 1xx, 204 or 304 (RFC 9112 §6.3 rules 1-2).
    None,
    Length(u64),
    Chunked,
    /// Neither Content-Length nor Transfer-Encoding: the body ends when the provider closes the
    /// connection (RFC 9112 §6.3 rule 8).
    UntilClose,
}

/// Decides the framing of a request head.
///
/// Errors: `Bad` for any ambiguous or invalid Content-Length / Transfer-Encoding / Host / Connection
/// (the connection must then close), `NotImplemented` for a transfer coding other than `chunked`
/// that is followed by `chunked`, `UnsupportedExpect` for an Expect other than `100-continue`.
pub fn request_framing(head: &RequestHead) -> Result<RequestFraming, FramingError> {
    check_host(head)?;
    let content_length = content_length(head.fields())?;
    let chunked = transfer_encoding(head.fields())?;

    let body = match (chunked, content_length) {
        // RFC 9112 §6.1: a server MAY reject a request with both; RFC 9112 §6.3 rule 3 calls it a
        // likely smuggling attempt. We reject rather than let Transfer-Encoding win.
        (true, Some(_)) => {
            return Err(FramingError::Bad(
                "both Content-Length and Transfer-Encoding",
            ))
        }
        // RFC 9112 §6.1: Transfer-Encoding in an HTTP/1.0 message means faulty framing.
        (true, None) if head.version == Version::Http10 => {
            return Err(FramingError::Bad(
                "Transfer-Encoding in an HTTP/1.0 request",
            ))
        }
        (true, None) => BodyFraming::Chunked,
        (false, Some(n)) => BodyFraming::Length(n),
        // RFC 9112 §6.3 rule 7: a request with neither has no body, whatever its method.
        (false, None) => BodyFraming::None,
    };

    let keep_alive = keep_alive(head.version, head.fields())?;
    let wants_continue = expects_continue(head.fields())?;
    // RFC 9110 §10.1.1: a server MUST ignore a 100-continue expectation in an HTTP/1.0 request.
    // Without a body there is nothing for the client to wait before sending.
    let has_body =
        matches!(body, BodyFraming::Chunked) || matches!(body, BodyFraming::Length(n) if n > 0);
    let expect_continue = wants_continue && head.version == Version::Http11 && has_body;

    Ok(RequestFraming {
        body,
        keep_alive,
        expect_continue,
    })
}

/// Decides the framing of an upstream response to a request we sent with `request_method`, and
/// whether the upstream connection may be reused afterwards.
///
/// The same Content-Length / Transfer-Encoding strictness as for requests applies; any error means
/// the provider's answer cannot be framed and the relay answers 502.
pub fn response_framing(
    resp: &ResponseHead,
    request_method: &str,
) -> Result<(ResponseBody, bool), FramingError> {
    // RFC 9110 §15.2.2: 101 only answers a request that asked to upgrade, and we never do.
    if resp.status == 101 {
        return Err(FramingError::Bad(
            "101 Switching Protocols without an Upgrade request",
        ));
    }
    let content_length = content_length(resp.fields())?;
    let chunked = transfer_encoding(resp.fields())?;
    if chunked && content_length.is_some() {
        // RFC 9112 §6.3 rule 3: "ought to be handled as an error".
        return Err(FramingError::Bad(
            "both Content-Length and Transfer-Encoding",
        ));
    }
    if chunked && resp.version == Version::Http10 {
        // RFC 9112 §6.1: Transfer-Encoding in an HTTP/1.0 message means faulty framing.
        return Err(FramingError::Bad(
            "Transfer-Encoding in an HTTP/1.0 response",
        ));
    }
    let mut keep_alive = keep_alive(resp.version, resp.fields())?;

    // RFC 9112 §6.3 rules 1-2: these never have a body, whatever the headers say.
    let informational = (100..200).contains(&resp.status);
    if request_method == "HEAD" || informational || resp.status == 204 || resp.status == 304 {
        // RFC 9112 §6.1 and RFC 9110 §8.6: 1xx and 204 must not carry Transfer-Encoding or
        // Content-Length. A provider that sends them may also send a body we would then read as the
        // next response, so its connection is not reused.
        if (informational || resp.status == 204) && (chunked || content_length.is_some()) {
            keep_alive = false;
        }
        return Ok((ResponseBody::None, keep_alive));
    }
    Ok(match (chunked, content_length) {
        (true, _) => (ResponseBody::Chunked, keep_alive),
        (false, Some(n)) => (ResponseBody::Length(n), keep_alive),
        // RFC 9112 §6.3 rule 8: the body runs to the close, so the connection cannot be reused.
        (false, None) => (ResponseBody::UntilClose, false),
    })
}

/// Parses a Content-Length value: one or more ASCII digits and nothing else (RFC 9110 §8.6), without
/// overflowing a u64. Unlike `u64::from_str` it refuses a leading `+`; it also refuses spaces, signs,
/// commas and the empty string. `None` means invalid.
pub fn parse_content_length(v: &[u8]) -> Option<u64> {
    if v.is_empty() {
        return None;
    }
    v.iter().try_fold(0u64, |n, &b| {
        if !b.is_ascii_digit() {
            return None;
        }
        n.checked_mul(10)?.checked_add(u64::from(b - b'0'))
    })
}

/// The single valid Content-Length, if any.
fn content_length(fields: &Fields) -> Result<Option<u64>, FramingError> {
    let mut values = fields.named("content-length");
    let Some(first) = values.next() else {
        return Ok(None);
    };
    // RFC 9110 §8.6 lets a recipient accept repeated identical values ("5, 5" or two lines of 5);
    // we refuse them, because a proxy in front of us may have chosen differently.
    if values.next().is_some() {
        return Err(FramingError::Bad("more than one Content-Length"));
    }
    match parse_content_length(first) {
        Some(n) => Ok(Some(n)),
        None => Err(FramingError::Bad("invalid Content-Length")),
    }
}

/// Reads every Transfer-Encoding line as one list (RFC 9110 §5.3) and returns whether there is one.
/// The only accepted list is exactly `chunked` (case-insensitive, RFC 9112 §7).
fn transfer_encoding(fields: &Fields) -> Result<bool, FramingError> {
    let mut codings: Vec<&[u8]> = Vec::new();
    for value in fields.named("transfer-encoding") {
        for element in split_list(value) {
            // RFC 9110 §5.6.1 asks recipients to skip empty list elements; in this header they are
            // a known smuggling probe and no real client sends them, so we refuse.
            if element.is_empty() {
                return Err(FramingError::Bad("empty element in Transfer-Encoding"));
            }
            codings.push(element);
        }
    }
    // An empty field value splits into one empty element, so no codings means no such field.
    let Some(last) = codings.last() else {
        return Ok(false);
    };
    // RFC 9112 §6.3 rule 4: when chunked is not the final coding of a request the length cannot be
    // determined: 400 and close. Covers "identity", "gzip", "chunked, identity" and "xchunked".
    if !last.eq_ignore_ascii_case(b"chunked") {
        return Err(FramingError::Bad(
            "chunked is not the final transfer coding",
        ));
    }
    if codings.len() > 1 {
        // RFC 9112 §7: a sender MUST NOT apply chunked more than once.
        if codings[..codings.len() - 1]
            .iter()
            .any(|c| c.eq_ignore_ascii_case(b"chunked"))
        {
            return Err(FramingError::Bad("chunked applied more than once"));
        }
        // RFC 9112 §6.1: a transfer coding we do not understand is a 501. We decode only chunked.
        return Err(FramingError::NotImplemented(
            "transfer codings other than chunked",
        ));
    }
    Ok(true)
}

/// RFC 9112 §9.3: HTTP/1.1 persists unless `close` is listed; HTTP/1.0 persists only when
/// `keep-alive` is listed and `close` is not. Connection is a list of tokens (RFC 9110 §7.6.1).
fn keep_alive(version: Version, fields: &Fields) -> Result<bool, FramingError> {
    let mut close = false;
    let mut keep = false;
    for value in fields.named("connection") {
        // The usual value is one of the two options alone (values are stored without OWS): decided
        // without splitting it into a list, as the list walk below would decide it.
        if value.eq_ignore_ascii_case(b"keep-alive") {
            keep = true;
            continue;
        }
        if value.eq_ignore_ascii_case(b"close") {
            close = true;
            continue;
        }
        // Empty elements are skipped as RFC 9110 §5.6.1 asks: they cannot change framing here.
        for option in split_list(value).filter(|o| !o.is_empty()) {
            if !option.iter().all(|&b| is_tchar(b)) {
                return Err(FramingError::Bad("invalid Connection option"));
            }
            close |= option.eq_ignore_ascii_case(b"close");
            keep |= option.eq_ignore_ascii_case(b"keep-alive");
        }
    }
    Ok(match version {
        Version::Http11 => !close,
        Version::Http10 => keep && !close,
    })
}

/// True when the request carries `Expect: 100-continue`. RFC 9110 §10.1.1 defines no other
/// expectation; a server MAY answer anything else with 417, and we do, including an empty Expect.
fn expects_continue(fields: &Fields) -> Result<bool, FramingError> {
    let mut found = false;
    for value in fields.named("expect") {
        let mut any = false;
        for element in split_list(value).filter(|e| !e.is_empty()) {
            if !element.eq_ignore_ascii_case(b"100-continue") {
                return Err(FramingError::UnsupportedExpect);
            }
            any = true;
        }
        if !any {
            return Err(FramingError::UnsupportedExpect);
        }
        found = true;
    }
    Ok(found)
}

/// RFC 9112 §3.2: an HTTP/1.1 request has exactly one Host; any request with more than one, or with
/// an invalid value, is a 400. An HTTP/1.0 request may omit it. Nothing in the relay reads the value
/// (the upstream's authority comes from the configuration), so it is only checked, not copied.
fn check_host(head: &RequestHead) -> Result<(), FramingError> {
    let mut hosts = head.headers_named("host");
    let host = match (hosts.next(), hosts.next()) {
        (Some(_), Some(_)) => return Err(FramingError::Bad("more than one Host")),
        (Some(v), None) => v,
        (None, _) if head.version == Version::Http11 => {
            return Err(FramingError::Bad("missing Host"))
        }
        (None, _) => return Ok(()),
    };
    if !is_valid_host(host) {
        return Err(FramingError::Bad("invalid Host"));
    }
    Ok(())
}

/// RFC 9110 §7.2: Host = uri-host [ ":" port ], uri-host per RFC 3986 §3.2.2 (IP-literal, IPv4 or
/// reg-name). IPvFuture literals are refused (no client sends them), and a port must be 1 to 5
/// digits within 0-65535 (RFC 3986 allows an empty port; we do not).
fn is_valid_host(v: &[u8]) -> bool {
    let (host, port) = if v.first() == Some(&b'[') {
        let Some(close) = v.iter().position(|&b| b == b']') else {
            return false;
        };
        let literal = &v[1..close];
        let is_ipv6 =
            std::str::from_utf8(literal).is_ok_and(|s| s.parse::<std::net::Ipv6Addr>().is_ok());
        if !is_ipv6 {
            return false;
        }
        match &v[close + 1..] {
            [] => (&v[..0], None),
            [b':', port @ ..] => (&v[..0], Some(port)),
            _ => return false,
        }
    } else {
        match v.iter().position(|&b| b == b':') {
            Some(i) => (&v[..i], Some(&v[i + 1..])),
            None => (v, None),
        }
    };
    if let Some(port) = port {
        let valid_port = !port.is_empty()
            && port.len() <= 5
            && port.iter().all(u8::is_ascii_digit)
            && port.iter().fold(0u32, |n, &b| n * 10 + u32::from(b - b'0')) <= MAX_PORT;
        if !valid_port {
            return false;
        }
    }
    // reg-name = *( unreserved / pct-encoded / sub-delims ); an IPv4 address is a reg-name
    // syntactically, and so is the empty host. The comma is a sub-delim, but "a,b" is what two Host
    // lines look like after a proxy joined them (RFC 9110 §5.3), so we refuse it.
    check_percent_encoded(host, |b| b != b',' && is_unreserved_or_sub_delim(b)).is_ok()
}

/// Splits a list-valued field (RFC 9110 §5.6.1) on commas and trims OWS around each element.
/// Empty elements are yielded so that each caller decides what they mean.
fn split_list(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value.split(|&b| b == b',').map(trim_ows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::head::{parse_request_head, parse_response_head, HeadLimits};

    const LIMITS: HeadLimits = HeadLimits {
        max_head_bytes: 4096,
        max_headers: 32,
        max_uri_bytes: 1024,
    };

    fn head(raw: &str) -> RequestHead {
        parse_request_head(raw.as_bytes(), &LIMITS)
            .unwrap()
            .unwrap()
    }

    /// Frames a request given as the request-line plus field lines (without the final CRLF).
    fn frame(lines: &str) -> Result<RequestFraming, FramingError> {
        request_framing(&head(&format!("{lines}\r\n\r\n")))
    }

    fn body(lines: &str) -> Result<BodyFraming, FramingError> {
        frame(lines).map(|f| f.body)
    }

    fn response(lines: &str, method: &str) -> Result<(ResponseBody, bool), FramingError> {
        let raw = format!("{lines}\r\n\r\n");
        response_framing(
            &parse_response_head(raw.as_bytes(), &LIMITS)
                .unwrap()
                .unwrap(),
            method,
        )
    }

    #[test]
    fn content_length_digits_only() {
        assert_eq!(parse_content_length(b"0"), Some(0));
        assert_eq!(parse_content_length(b"007"), Some(7));
        assert_eq!(
            parse_content_length(b"18446744073709551615"),
            Some(u64::MAX)
        );
        for bad in [
            &b""[..],
            b"+5",
            b"-5",
            b" 5",
            b"5 ",
            b"5 5",
            b"5,5",
            b"0x5",
            b"5a",
            b"18446744073709551616",
            b"99999999999999999999999",
        ] {
            assert_eq!(
                parse_content_length(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn body_framing_by_headers() {
        assert_eq!(body("GET / HTTP/1.1\r\nHost: h"), Ok(BodyFraming::None));
        assert_eq!(body("POST / HTTP/1.1\r\nHost: h"), Ok(BodyFraming::None));
        assert_eq!(
            body("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 12"),
            Ok(BodyFraming::Length(12))
        );
        assert_eq!(
            body("GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 0"),
            Ok(BodyFraming::Length(0))
        );
        assert_eq!(
            body("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked"),
            Ok(BodyFraming::Chunked)
        );
        assert_eq!(
            body("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: CHUNKED"),
            Ok(BodyFraming::Chunked)
        );
        assert_eq!(
            body("POST / HTTP/1.0\r\nContent-Length: 3"),
            Ok(BodyFraming::Length(3))
        );
    }

    #[test]
    fn ambiguous_content_length_is_rejected() {
        let many = Err(FramingError::Bad("more than one Content-Length"));
        let invalid = Err(FramingError::Bad("invalid Content-Length"));
        assert_eq!(
            body("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 5"),
            many
        );
        assert_eq!(
            body("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 6"),
            many
        );
        assert_eq!(
            body("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5, 5"),
            invalid
        );
        assert_eq!(
            body("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: +5"),
            invalid
        );
        assert_eq!(
            body("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1 0"),
            invalid
        );
        assert_eq!(
            body("POST / HTTP/1.1\r\nHost: h\r\nContent-Length:"),
            invalid
        );
        assert_eq!(
            body("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 99999999999999999999"),
            invalid
        );
    }

    #[test]
    fn transfer_encoding_is_exactly_chunked() {
        let both = Err(FramingError::Bad(
            "both Content-Length and Transfer-Encoding",
        ));
        let not_final = Err(FramingError::Bad(
            "chunked is not the final transfer coding",
        ));
        let twice = Err(FramingError::Bad("chunked applied more than once"));
        let other = Err(FramingError::NotImplemented(
            "transfer codings other than chunked",
        ));
        let empty = Err(FramingError::Bad("empty element in Transfer-Encoding"));
        let h = "POST / HTTP/1.1\r\nHost: h\r\n";
        assert_eq!(
            body(&format!(
                "{h}Content-Length: 5\r\nTransfer-Encoding: chunked"
            )),
            both
        );
        assert_eq!(
            body(&format!(
                "{h}Transfer-Encoding: chunked\r\nContent-Length: 5"
            )),
            both
        );
        assert_eq!(body(&format!("{h}Transfer-Encoding: identity")), not_final);
        assert_eq!(body(&format!("{h}Transfer-Encoding: gzip")), not_final);
        assert_eq!(body(&format!("{h}Transfer-Encoding: xchunked")), not_final);
        assert_eq!(
            body(&format!("{h}Transfer-Encoding: chunked;q=1")),
            not_final
        );
        assert_eq!(
            body(&format!("{h}Transfer-Encoding: chunked, identity")),
            not_final
        );
        assert_eq!(
            body(&format!(
                "{h}Transfer-Encoding: chunked\r\nTransfer-Encoding: identity"
            )),
            not_final
        );
        assert_eq!(
            body(&format!("{h}Transfer-Encoding: chunked, chunked")),
            twice
        );
        assert_eq!(
            body(&format!(
                "{h}Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked"
            )),
            twice
        );
        assert_eq!(body(&format!("{h}Transfer-Encoding: gzip, chunked")), other);
        assert_eq!(
            body(&format!("{h}Transfer-Encoding: identity, chunked")),
            other
        );
        assert_eq!(body(&format!("{h}Transfer-Encoding: ,chunked")), empty);
        assert_eq!(body(&format!("{h}Transfer-Encoding: chunked,")), empty);
        assert_eq!(body(&format!("{h}Transfer-Encoding:")), empty);
        assert_eq!(
            body("POST / HTTP/1.0\r\nTransfer-Encoding: chunked"),
            Err(FramingError::Bad(
                "Transfer-Encoding in an HTTP/1.0 request"
            ))
        );
    }

    #[test]
    fn host_rules() {
        assert_eq!(
            frame("GET / HTTP/1.1"),
            Err(FramingError::Bad("missing Host"))
        );
        assert_eq!(
            frame("GET / HTTP/1.1\r\nHost: a\r\nHost: a"),
            Err(FramingError::Bad("more than one Host"))
        );
        // HTTP/1.0 may omit Host.
        assert!(frame("GET / HTTP/1.0").is_ok());
        assert_eq!(
            frame("GET / HTTP/1.0\r\nHost: a\r\nHost: b"),
            Err(FramingError::Bad("more than one Host"))
        );
        for ok in [
            "relay.example",
            "relay.example:8443",
            "127.0.0.1:80",
            "[::1]",
            "[::1]:443",
            "",
            "a_b-c~d%41",
        ] {
            let lines = format!("GET / HTTP/1.1\r\nHost: {ok}");
            assert!(frame(&lines).is_ok(), "{ok}");
            // The value the relay sees is the head's own field, as the client sent it.
            let head = head(&format!("{lines}\r\n\r\n"));
            assert_eq!(head.header("host"), Some(ok.as_bytes()), "{ok}");
        }
        for bad in [
            "a b", "a,b", "a/b", "a@b", "a:", "a:x", "a:65536", "a:123456", "[::1", "[zz]",
            "[::1]x", "[::1]:", "a%4", "a:1:2",
        ] {
            assert_eq!(
                frame(&format!("GET / HTTP/1.1\r\nHost: {bad}")),
                Err(FramingError::Bad("invalid Host")),
                "{bad}"
            );
        }
    }

    #[test]
    fn keep_alive_rules() {
        let ka = |lines: &str| frame(lines).unwrap().keep_alive;
        assert!(ka("GET / HTTP/1.1\r\nHost: h"));
        assert!(!ka("GET / HTTP/1.1\r\nHost: h\r\nConnection: close"));
        assert!(!ka(
            "GET / HTTP/1.1\r\nHost: h\r\nConnection: Keep-Alive, CLOSE"
        ));
        assert!(!ka(
            "GET / HTTP/1.1\r\nHost: h\r\nConnection: x-foo\r\nConnection: close"
        ));
        assert!(ka(
            "GET / HTTP/1.1\r\nHost: h\r\nConnection: upgrade, , keep-alive"
        ));
        assert!(!ka("GET / HTTP/1.0"));
        assert!(ka("GET / HTTP/1.0\r\nConnection: keep-alive"));
        assert!(ka("GET / HTTP/1.0\r\nConnection: Keep-Alive"));
        assert!(!ka("GET / HTTP/1.0\r\nConnection: keep-alive, close"));
        // "closed" is a different token.
        assert!(ka("GET / HTTP/1.1\r\nHost: h\r\nConnection: closed"));
        assert_eq!(
            frame("GET / HTTP/1.1\r\nHost: h\r\nConnection: clo se"),
            Err(FramingError::Bad("invalid Connection option"))
        );
    }

    /// `keep_alive` without its fast path for single options: the list walk alone.
    fn keep_alive_by_list(version: Version, fields: &Fields) -> Result<bool, FramingError> {
        let (mut close, mut keep) = (false, false);
        for value in fields.named("connection") {
            for option in split_list(value).filter(|o| !o.is_empty()) {
                if !option.iter().all(|&b| is_tchar(b)) {
                    return Err(FramingError::Bad("invalid Connection option"));
                }
                close |= option.eq_ignore_ascii_case(b"close");
                keep |= option.eq_ignore_ascii_case(b"keep-alive");
            }
        }
        Ok(match version {
            Version::Http11 => !close,
            Version::Http10 => keep && !close,
        })
    }

    #[test]
    fn keep_alive_fast_path_decides_as_the_list_walk() {
        let values = [
            "",
            "keep-alive",
            "Keep-Alive",
            "KEEP-ALIVE",
            "close",
            "Close",
            "CLOSE",
            "closed",
            "keep-alive,",
            ",close",
            "keep-alive, close",
            "clo se",
            "keep alive",
            "upgrade",
            "keep-alivex",
            "xclose",
            "keep-alive\t",
            "close,,",
            "cl\u{e9}se",
        ];
        for version in [Version::Http10, Version::Http11] {
            for a in values {
                for b in [
                    None,
                    Some("keep-alive"),
                    Some("close"),
                    Some("x, y"),
                    Some("a b"),
                ] {
                    let mut f = Fields::default();
                    f.reset(&[], 0, 0, 0);
                    f.push("x-other", b"close");
                    f.push("connection", a.as_bytes());
                    if let Some(b) = b {
                        f.push("Connection", b.as_bytes());
                    }
                    assert_eq!(
                        keep_alive(version, &f),
                        keep_alive_by_list(version, &f),
                        "{version:?} {a:?} {b:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn expect_rules() {
        let h = "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n";
        assert!(
            frame(&format!("{h}Expect: 100-continue"))
                .unwrap()
                .expect_continue
        );
        assert!(
            frame(&format!("{h}Expect: 100-Continue"))
                .unwrap()
                .expect_continue
        );
        assert!(!frame(h.trim_end()).unwrap().expect_continue);
        assert_eq!(
            frame(&format!("{h}Expect: 200-ok")),
            Err(FramingError::UnsupportedExpect)
        );
        assert_eq!(
            frame(&format!("{h}Expect: 100-continue, foo")),
            Err(FramingError::UnsupportedExpect)
        );
        assert_eq!(
            frame(&format!("{h}Expect:")),
            Err(FramingError::UnsupportedExpect)
        );
        assert_eq!(
            frame(&format!("{h}Expect: 100-continue=1")),
            Err(FramingError::UnsupportedExpect)
        );
        // Nothing to wait for: no body, or HTTP/1.0 (RFC 9110 §10.1.1 says ignore it there).
        assert!(
            !frame("GET / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue")
                .unwrap()
                .expect_continue
        );
        assert!(
            !frame("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\nExpect: 100-continue")
                .unwrap()
                .expect_continue
        );
        assert!(
            !frame("POST / HTTP/1.0\r\nContent-Length: 5\r\nExpect: 100-continue")
                .unwrap()
                .expect_continue
        );
        assert!(
            frame(
                "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue"
            )
            .unwrap()
            .expect_continue
        );
        // An unsupported expectation is refused even where 100-continue would be ignored.
        assert_eq!(
            frame("GET / HTTP/1.0\r\nExpect: foo"),
            Err(FramingError::UnsupportedExpect)
        );
    }

    #[test]
    fn response_body_rules() {
        assert_eq!(
            response("HTTP/1.1 200 OK\r\nContent-Length: 10", "POST"),
            Ok((ResponseBody::Length(10), true))
        );
        assert_eq!(
            response("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked", "POST"),
            Ok((ResponseBody::Chunked, true))
        );
        assert_eq!(
            response("HTTP/1.1 200 OK", "POST"),
            Ok((ResponseBody::UntilClose, false))
        );
        assert_eq!(
            response(
                "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1",
                "GET"
            ),
            Ok((ResponseBody::Length(1), false))
        );
        assert_eq!(
            response("HTTP/1.0 200 OK\r\nContent-Length: 1", "GET"),
            Ok((ResponseBody::Length(1), false))
        );
        assert_eq!(
            response(
                "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1",
                "GET"
            ),
            Ok((ResponseBody::Length(1), true))
        );
        // No body whatever the headers say.
        assert_eq!(
            response("HTTP/1.1 200 OK\r\nContent-Length: 10", "HEAD"),
            Ok((ResponseBody::None, true))
        );
        assert_eq!(
            response("HTTP/1.1 304 Not Modified\r\nContent-Length: 10", "GET"),
            Ok((ResponseBody::None, true))
        );
        assert_eq!(
            response("HTTP/1.1 204 No Content", "POST"),
            Ok((ResponseBody::None, true))
        );
        assert_eq!(
            response("HTTP/1.1 100 Continue", "POST"),
            Ok((ResponseBody::None, true))
        );
        // ...but a 1xx/204 that carries framing headers is not trusted with the next response.
        assert_eq!(
            response("HTTP/1.1 204 No Content\r\nContent-Length: 0", "POST"),
            Ok((ResponseBody::None, false))
        );
        assert_eq!(
            response(
                "HTTP/1.1 204 No Content\r\nTransfer-Encoding: chunked",
                "POST"
            ),
            Ok((ResponseBody::None, false))
        );
        assert_eq!(
            response("HTTP/1.1 103 Early Hints\r\nContent-Length: 0", "POST"),
            Ok((ResponseBody::None, false))
        );
    }

    #[test]
    fn response_framing_is_as_strict_as_requests() {
        assert_eq!(
            response(
                "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked",
                "POST"
            ),
            Err(FramingError::Bad(
                "both Content-Length and Transfer-Encoding"
            ))
        );
        assert_eq!(
            response(
                "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1",
                "POST"
            ),
            Err(FramingError::Bad("more than one Content-Length"))
        );
        assert_eq!(
            response("HTTP/1.1 200 OK\r\nContent-Length: +1", "HEAD"),
            Err(FramingError::Bad("invalid Content-Length"))
        );
        assert_eq!(
            response("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip", "POST"),
            Err(FramingError::Bad(
                "chunked is not the final transfer coding"
            ))
        );
        assert_eq!(
            response("HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked", "POST"),
            Err(FramingError::Bad(
                "Transfer-Encoding in an HTTP/1.0 response"
            ))
        );
        assert_eq!(
            response(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket",
                "GET"
            ),
            Err(FramingError::Bad(
                "101 Switching Protocols without an Upgrade request"
            ))
        );
        assert_eq!(
            response(
                "HTTP/1.1 200 OK\r\nConnection: a b\r\nContent-Length: 1",
                "GET"
            ),
            Err(FramingError::Bad("invalid Connection option"))
        );
    }
}
