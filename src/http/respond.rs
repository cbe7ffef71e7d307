//! Responses the relay writes itself (errors, `/health`, preflights, admin answers): status line, a
//! fixed set of safety headers and a JSON body, encoded into one buffer for one write. Pure: who writes
//! it where is `request/reply.rs`. Proxied response heads are assembled in `request/forward.rs`; both
//! share `reason` and `SAFETY_HEADERS`.

use std::io::Write as _;

use crate::error::Error;

/// Sent on every response: relay URLs carry tokens, so a page must never leak them in `Referer`.
pub const SAFETY_HEADERS: &str =
    "referrer-policy: no-referrer\r\nx-content-type-options: nosniff\r\n";

pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        301 => "Moved Permanently",
        304 => "Not Modified",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        414 => "URI Too Long",
        417 => "Expectation Failed",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

/// A complete response the relay authored: head and body in one buffer, one write.
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub close: bool,
}

impl Response {
    pub fn json(status: u16, body: String) -> Response {
        Response {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.into_bytes(),
            close: false,
        }
    }

    pub fn error(e: &Error) -> Response {
        let mut r = Response::json(e.status(), e.body());
        if let Some(d) = e.retry_after() {
            r.headers.push((
                "retry-after".into(),
                crate::limits::limiter::retry_after_secs(d).to_string(),
            ));
        }
        if let Error::MethodNotAllowed(allow) = e {
            r.headers.push(("allow".into(), (*allow).into()));
        }
        if e.should_not_retry() {
            // Official OpenAI/Anthropic SDKs honour this and do not retry what cannot succeed.
            r.headers.push(("x-should-retry".into(), "false".into()));
        }
        r.close = e.must_close();
        r
    }

    pub fn header(mut self, name: &str, value: impl Into<String>) -> Response {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn encode(&self, head_only: bool) -> Vec<u8> {
        let mut out = Vec::with_capacity(256 + self.body.len());
        let _ = write!(out, "HTTP/1.1 {} {}\r\n", self.status, reason(self.status));
        for (n, v) in &self.headers {
            let _ = write!(out, "{n}: {v}\r\n");
        }
        let _ = write!(out, "content-length: {}\r\n", self.body.len());
        out.extend_from_slice(SAFETY_HEADERS.as_bytes());
        if self.close {
            out.extend_from_slice(b"connection: close\r\n");
        }
        out.extend_from_slice(b"\r\n");
        if !head_only {
            out.extend_from_slice(&self.body);
        }
        out
    }
}
