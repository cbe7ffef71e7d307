//! The client side of one connection: the socket, the bytes read but not yet consumed, and the
//! deadlines every read and write obeys. It reads request heads (idle, header and slowloris deadlines),
//! reads, discards or streams request bodies at their required pace, and watches for pipelined input
//! while a request is in flight. It knows nothing about what a request means: the connection loop is
//! `request/conn.rs`, the pipeline steps are `request/route.rs` and below. Request bodies (read whole,
//! dropped, or streamed to the provider) are `body.rs`, beside this file.

mod body;
mod closing;
mod input;

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

use crate::error::Error;
use crate::http::head::{parse_request_head_into, HeadLimits, RequestHead};
pub use closing::Closing;
use input::Input;

/// Read size for a request body from the client socket; one buffer per connection, grown only up to
/// the head/body limits.
pub(crate) const READ_CHUNK: usize = 8 * 1024;
/// Room for each read of a request head. The connection's buffer starts with this much (a head with a
/// relay token and a small JSON body fit, as in nginx's 1 KiB `client_header_buffer_size`) and doubles
/// whenever a read fills it, up to the head limit: an open stream holds 1 KiB for its client, not
/// 8 KiB, while a client with larger heads pays a few more reads on its connection's first request.
const HEAD_READ: usize = 1024;
/// The one buffer a streamed request body passes through on its way to the provider.
pub const STREAM_CHUNK: usize = 16 * 1024;
/// How much pipelined input is read ahead from the client while its previous request is in flight.
const MAX_PIPELINED: usize = 64 * 1024;
/// Limits for chunked bodies besides the configured body size (RFC 9112 §7.1.1 extensions, §7.1.2
/// trailers): enough for any real client, small enough that a hostile one cannot make us buffer.
pub const MAX_CHUNK_EXT_BYTES: usize = 4096;
/// Largest body read (and dropped) from a request the relay refuses or answers itself, so the
/// connection can carry on. Anything larger closes the connection instead: an unauthenticated client
/// must never make the relay buffer up to `max_body_bytes`.
pub const MAX_DISCARD_BYTES: u64 = 64 * 1024;
pub const MAX_TRAILER_BYTES: usize = 8192;

/// The deadlines and pace a client connection obeys (from `server` config).
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    /// Per read; also the time a started head has to complete.
    pub read_timeout: Duration,
    /// Per write (never a total deadline: streams may be long).
    pub write_timeout: Duration,
    /// Bytes per second a request body must average once `read_timeout` has passed.
    pub min_body_rate: u64,
}

/// The client side of a connection: the socket plus bytes read but not yet consumed.
pub struct Client<S> {
    io: S,
    /// Unconsumed input; may hold the start of the next pipelined request.
    buf: Input,
    peer: SocketAddr,
    pace: Pace,
    /// Set once the client half-closed or vanished.
    eof: bool,
}

impl<S> Client<S> {
    /// A connection from `peer` with nothing read yet.
    pub fn new(io: S, peer: SocketAddr, pace: Pace) -> Client<S> {
        Client {
            io,
            buf: Input::with_capacity(HEAD_READ),
            peer,
            pace,
            eof: false,
        }
    }

    /// The socket address of the peer (a proxy's, when one is in front).
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// Bytes read but not consumed yet (the start of a body, or of the next request).
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Whether the client half-closed or vanished.
    pub fn is_eof(&self) -> bool {
        self.eof
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Client<S> {
    /// Read more bytes of a head into `buf`, waiting at most until `deadline`. `Ok(0)` is EOF.
    pub async fn read_more(&mut self, deadline: Instant) -> Result<usize, Error> {
        let buf = self.buf.spare(HEAD_READ);
        let n = match tokio::time::timeout_at(deadline, self.io.read_buf(buf)).await {
            Ok(Ok(n)) => n,
            // A reset or a TLS error ends the connection just like EOF does.
            Ok(Err(_)) => 0,
            Err(_) => return Err(Error::RequestTimeout),
        };
        if n == 0 {
            self.eof = true;
        }
        Ok(n)
    }

    /// Wait for a complete request head and parse it into `head` (the connection's own, refilled for
    /// every request so that its buffers are reused). `Ok(false)`: the client closed, or `closing`
    /// fired (the relay is shutting down, or slots ran short while nothing was buffered), between
    /// requests, which is a normal end of the connection.
    /// Before the first byte `idle` applies; once a head has started it must complete within
    /// `read_timeout` in total, so a client dribbling bytes cannot hold the connection (slowloris).
    pub async fn read_head(
        &mut self,
        head: &mut RequestHead,
        limits: &HeadLimits,
        idle: Duration,
        closing: &mut Closing,
    ) -> Result<bool, Error> {
        let idle_since = Instant::now();
        let idle_deadline = idle_since + idle;
        // The head's own deadline is set when its first bytes are in and it must be waited for: read
        // from the clock only then, since most heads arrive whole in their first read (a clock read
        // per request saved; the deadline starts at most one parse later than the bytes came).
        let mut head_started = !self.buf.is_empty();
        let mut head_deadline = None;
        // Bytes already searched for the end of the head. The parser is only run once a blank line may
        // have arrived (or the size limit is reached, or the client is gone), so a client dripping a head
        // byte by byte costs one pass over its bytes, not one parse per byte.
        let mut scanned = 0;
        loop {
            let ready = self.buf.len() > limits.max_head_bytes
                || self.eof
                || may_end_head(&self.buf, scanned)
                || open_target_too_long(&self.buf, limits.max_uri_bytes);
            scanned = self.buf.len();
            if !self.buf.is_empty() && ready && parse_request_head_into(&self.buf, limits, head)? {
                return Ok(true);
            }
            if self.eof {
                return if self.buf.is_empty() {
                    Ok(false)
                } else {
                    Err(Error::BadRequest("incomplete request head"))
                };
            }
            let deadline = match head_deadline {
                Some(d) => d,
                None if head_started => {
                    *head_deadline.insert(Instant::now() + self.pace.read_timeout)
                }
                None => idle_deadline,
            };
            let n = if self.buf.is_empty() {
                // The read first: woken by it, the wait returns without looking at the signals.
                tokio::select! {
                    biased;
                    r = self.read_more(deadline) => r,
                    () = closing.wanted(idle_since) => return Ok(false),
                }
            } else {
                self.read_more(deadline).await
            };
            match n {
                Ok(0) => {}
                Ok(_) => head_started = true,
                Err(_) if self.buf.is_empty() => return Ok(false),
                Err(e) => return Err(e),
            }
        }
    }

    /// Drop the first `n` bytes of input (a request head or body that has been handled).
    pub fn consume(&mut self, n: usize) {
        self.buf.consume(n);
    }

    /// Hand the connection over to another protocol after an upgrade (`request/realtime.rs`): the
    /// socket, and the bytes already read past the request head.
    pub fn take_over(&mut self) -> (&mut S, Vec<u8>) {
        let early = self.buf.to_vec();
        self.buf.consume(early.len());
        (&mut self.io, early)
    }

    /// Write all of `bytes` with the per-write deadline (never a total deadline: streams may be long).
    pub async fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match tokio::time::timeout(self.pace.write_timeout, self.io.write_all(bytes)).await {
            Ok(r) => r,
            Err(_) => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "client write timed out",
            )),
        }
    }

    /// Whether [`Client::read_ahead`] may be polled: the client is still there and its pipelined
    /// input is within [`MAX_PIPELINED`].
    pub fn may_read_ahead(&self) -> bool {
        !self.eof && self.buf.len() < MAX_PIPELINED
    }

    /// While a request is in flight: read whatever the client sends next (kept for the next request).
    /// `false` once the client has gone (EOF or error), which cancels the request. Cancel-safe, for use
    /// in `select!` beside the provider's read.
    pub async fn read_ahead(&mut self) -> bool {
        match self.io.read_buf(self.buf.spare(1024)).await {
            Ok(0) | Err(_) => {
                self.eof = true;
                false
            }
            Ok(_) => true,
        }
    }

    /// Shut the write side down (TLS close_notify, then FIN), waiting at most a second.
    pub async fn shutdown(&mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(1), self.io.shutdown()).await;
    }

    /// After [`Client::shutdown`]: read and drop what the client still sends, until `deadline` or
    /// `max` bytes, so the answer is not lost to a reset.
    pub async fn linger(&mut self, deadline: Instant, max: usize) {
        let mut drained = 0;
        let mut sink = [0u8; 8192];
        while drained < max {
            match tokio::time::timeout_at(deadline, self.io.read(&mut sink)).await {
                Ok(Ok(n)) if n > 0 => drained += n,
                _ => break,
            }
        }
    }
}

/// Could `buf` hold a complete head? True when the bytes from `from` on (with two bytes of overlap)
/// contain a line break followed by an empty line (`\n\r\n`, or `\n\n`, which the parser then refuses).
/// Jumps from LF to LF rather than comparing windows at every byte: it runs over every head, whose
/// target carries a token of hundreds of bytes.
fn may_end_head(buf: &[u8], from: usize) -> bool {
    let mut rest = &buf[from.saturating_sub(2).min(buf.len())..];
    while let Some(lf) = memchr::memchr(b'\n', rest) {
        rest = &rest[lf + 1..];
        if matches!(rest, [b'\n', ..] | [b'\r', b'\n', ..]) {
            return true;
        }
    }
    false
}

/// Is the request-line still open (no line end yet) with more bytes after its first SP than a
/// request-target may have? Then the parser can answer 414 at once instead of waiting for a blank
/// line or `max_header_bytes`. Leading empty lines (RFC 9112 §2.2) are skipped; the method before the
/// first SP does not count.
fn open_target_too_long(buf: &[u8], max_uri_bytes: usize) -> bool {
    let mut line = buf;
    while let Some(rest) = line.strip_prefix(b"\r\n") {
        line = rest;
    }
    if line.len() <= max_uri_bytes || line.contains(&b'\n') {
        return false;
    }
    match line.iter().position(|&b| b == b' ') {
        Some(sp) => {
            let target = &line[sp + 1..];
            let end = target
                .iter()
                .position(|&b| b == b' ')
                .unwrap_or(target.len());
            end > max_uri_bytes
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::head::{parse_request_head, HeadError};

    #[test]
    fn head_end_detection_scans_only_new_bytes_with_overlap() {
        let full = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        // Fed one byte at a time, the end is seen exactly when the last byte arrives.
        let mut seen_at = None;
        let mut scanned = 0;
        for n in 1..=full.len() {
            if may_end_head(&full[..n], scanned) {
                seen_at.get_or_insert(n);
            }
            scanned = n;
        }
        assert_eq!(seen_at, Some(full.len()));
        assert!(!may_end_head(b"GET / HTTP/1.1\r\nHost: x\r\n", 0));
        assert!(
            may_end_head(b"GET / HTTP/1.1\nHost: x\n\n", 0),
            "bare LF heads reach the parser, which refuses them"
        );
        assert!(!may_end_head(b"", 0));
    }

    /// Issue 9, finding 13: a 9,000-byte target without a line end used to wait for `read_timeout`.
    #[test]
    fn an_open_target_over_the_limit_is_seen_at_the_first_byte_past_it() {
        let limits = HeadLimits {
            max_head_bytes: 16 * 1024,
            max_headers: 100,
            max_uri_bytes: 64,
        };
        let target = format!("/{}", "a".repeat(200));
        for lead in ["", "\r\n", "\r\n\r\n"] {
            let raw = format!("{lead}POST {target} HTTP/1.1\r\nHost: h\r\n\r\n");
            let target_start = lead.len() + "POST ".len();
            // Fed one byte at a time, the check fires exactly when the 65th target byte arrives, and
            // the parser then answers 414 for that same prefix.
            let fired_at = (1..=raw.len())
                .find(|&n| open_target_too_long(&raw.as_bytes()[..n], 64))
                .expect("fires");
            assert_eq!(fired_at, target_start + 65, "{lead:?}");
            assert_eq!(
                parse_request_head(&raw.as_bytes()[..fired_at], &limits),
                Err(HeadError::UriTooLong)
            );
        }
        // A target within the limit, however long the rest of the line, never fires the check: the
        // blank line or max_header_bytes decides those as before.
        let ok = format!("GET /{} HTTP/1.1{}", "a".repeat(63), "x".repeat(300));
        assert!((1..=ok.len()).all(|n| !open_target_too_long(&ok.as_bytes()[..n], 64)));
        let long_method = format!("{} /a", "M".repeat(300));
        assert!(!open_target_too_long(long_method.as_bytes(), 64));
        // Once the request-line has ended, the head parser's own limits apply.
        let ended = format!("GET /a HTTP/1.1\r\nX: {}", "b".repeat(300));
        assert!(!open_target_too_long(ended.as_bytes(), 64));
    }
}
