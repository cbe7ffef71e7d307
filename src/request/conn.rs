//! One client connection: reads request heads under the idle and header deadlines, hands each request to
//! `request/relay.rs`, and loops for keep-alive and pipelined requests. Every request, including the second one in
//! a pipelined burst, starts again from `parse_request_head`: bytes after a request's body are never
//! forwarded on the strength of an earlier request's checks.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

use crate::app::App;
use crate::error::Error;
use crate::http::chunked::{ChunkedDecoder, ChunkedLimits};
use crate::http::framing::BodyFraming;
use crate::http::head::{parse_request_head, HeadLimits, RequestHead};
use crate::http::respond;
use crate::limits::body_budget::BodyShare;
use crate::limits::body_pace::BodyPace;
use crate::limits::conns::{Reclaim, RECLAIM_AFTER_IDLE};
use crate::request::relay;
use crate::server::shutdown::ShutdownWatch;

/// Read size for the client socket; one buffer per connection, grown only up to the head/body limits.
const READ_CHUNK: usize = 8 * 1024;
/// The one buffer a streamed request body passes through on its way to the provider.
pub const STREAM_CHUNK: usize = 16 * 1024;
/// Limits for chunked bodies besides the configured body size (RFC 9112 §7.1.1 extensions, §7.1.2
/// trailers): enough for any real client, small enough that a hostile one cannot make us buffer.
pub const MAX_CHUNK_EXT_BYTES: usize = 4096;
/// Largest body read (and dropped) from a request the relay refuses or answers itself, so the
/// connection can carry on. Anything larger closes the connection instead: an unauthenticated client
/// must never make the relay buffer up to `max_body_bytes`.
pub const MAX_DISCARD_BYTES: u64 = 64 * 1024;
pub const MAX_TRAILER_BYTES: usize = 8192;

/// The client side of a connection: the socket plus bytes read but not yet consumed.
pub struct Client<S> {
    pub io: S,
    /// Unconsumed input; may hold the start of the next pipelined request.
    pub buf: Vec<u8>,
    pub peer: SocketAddr,
    pub read_timeout: Duration,
    pub write_timeout: Duration,
    /// Bytes per second a request body must average once `read_timeout` has passed.
    pub min_body_rate: u64,
    /// Set once the client half-closed or vanished.
    pub eof: bool,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Client<S> {
    /// Read more bytes into `buf`, waiting at most until `deadline`. `Ok(0)` is EOF.
    pub async fn read_more(&mut self, deadline: Instant) -> Result<usize, Error> {
        self.buf.reserve(READ_CHUNK);
        let n = match tokio::time::timeout_at(deadline, self.io.read_buf(&mut self.buf)).await {
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

    /// Read a whole request body as framed (bounded by `max`), consuming it from the input, at the
    /// pace `min_body_rate` demands (408 when it falls behind). Chunked bodies are decoded here; what
    /// is forwarded is always re-framed with a Content-Length.
    pub async fn read_body(&mut self, framing: BodyFraming, max: u64) -> Result<Vec<u8>, Error> {
        self.read_body_within(framing, max, None).await
    }

    /// [`Client::read_body`], with the bytes taken from the buffered-body budget before they are
    /// buffered: a Content-Length body all at once, a chunked one as its bytes arrive.
    pub async fn read_body_within(
        &mut self,
        framing: BodyFraming,
        max: u64,
        mut share: Option<&mut BodyShare<'_>>,
    ) -> Result<Vec<u8>, Error> {
        let mut pace = BodyPace::new(self.read_timeout, self.min_body_rate);
        match framing {
            BodyFraming::None => Ok(Vec::new()),
            BodyFraming::Length(n) => {
                if n > max {
                    return Err(Error::BodyTooLarge);
                }
                if let Some(share) = share.as_deref_mut() {
                    share.grow_to(n)?;
                }
                // Read straight into a body of the announced size, so the connection's input buffer
                // never grows to the size of a body.
                let n = n as usize;
                let mut body = Vec::with_capacity(n);
                let buffered = n.min(self.buf.len());
                body.extend_from_slice(&self.buf[..buffered]);
                self.consume(buffered);
                while body.len() < n {
                    let left = n - body.len();
                    if self.read_paced(&mut pace, &mut body, left).await? == 0 {
                        return Err(Error::BadRequest(
                            "connection closed inside the request body",
                        ));
                    }
                }
                Ok(body)
            }
            BodyFraming::Chunked => {
                let mut dec = ChunkedDecoder::new(ChunkedLimits {
                    max_chunk_ext_bytes: MAX_CHUNK_EXT_BYTES,
                    max_trailer_bytes: MAX_TRAILER_BYTES,
                    max_body_bytes: max,
                });
                let mut body = Vec::new();
                loop {
                    if let Some(share) = share.as_deref_mut() {
                        // Decoding never yields more payload than the bytes it is fed.
                        share.grow_to((body.len() + self.buf.len()) as u64)?;
                    }
                    let used = dec.decode(&self.buf, Some(&mut body))?;
                    self.consume(used);
                    if dec.is_done() {
                        return Ok(body);
                    }
                    let mut input = std::mem::take(&mut self.buf);
                    let got = self.read_paced(&mut pace, &mut input, READ_CHUNK).await;
                    self.buf = input;
                    if got? == 0 {
                        return Err(Error::BadRequest(
                            "connection closed inside the request body",
                        ));
                    }
                }
            }
        }
    }

    /// Read and drop a body of at most `max` bytes (a refused or self-answered request's), so the
    /// connection can carry on; nothing is kept but one read's worth of bytes. Same pace and errors as
    /// [`Client::read_body`].
    pub async fn discard_body(&mut self, framing: BodyFraming, max: u64) -> Result<(), Error> {
        let mut pace = BodyPace::new(self.read_timeout, self.min_body_rate);
        let mut dec = match framing {
            BodyFraming::None => return Ok(()),
            BodyFraming::Length(n) if n > max => return Err(Error::BodyTooLarge),
            BodyFraming::Length(_) => None,
            BodyFraming::Chunked => Some(ChunkedDecoder::new(ChunkedLimits {
                max_chunk_ext_bytes: MAX_CHUNK_EXT_BYTES,
                max_trailer_bytes: MAX_TRAILER_BYTES,
                max_body_bytes: max,
            })),
        };
        let mut left = match framing {
            BodyFraming::Length(n) => n,
            _ => 0,
        };
        loop {
            match &mut dec {
                Some(d) => {
                    let used = d.decode(&self.buf, None)?;
                    self.consume(used);
                    if d.is_done() {
                        return Ok(());
                    }
                }
                None => {
                    let here = left.min(self.buf.len() as u64);
                    self.consume(here as usize);
                    left -= here;
                    if left == 0 {
                        return Ok(());
                    }
                }
            }
            // Only the body's own bytes are read for a Content-Length body, so the next request
            // stays in the buffer; a chunked body's end is only known once decoded.
            let want = match dec {
                Some(_) => READ_CHUNK,
                None => left.min(READ_CHUNK as u64) as usize,
            };
            let mut input = std::mem::take(&mut self.buf);
            let got = self.read_paced(&mut pace, &mut input, want).await;
            self.buf = input;
            if got? == 0 {
                return Err(Error::BadRequest(
                    "connection closed inside the request body",
                ));
            }
        }
    }

    /// Copy a Content-Length body of `n` bytes from the client to `up` as it arrives, through one
    /// fixed buffer of [`STREAM_CHUNK`] bytes, at the body's pace (408 when it falls behind). Each
    /// write to `up` may take `up_timeout`. On error the upstream request is incomplete: the caller
    /// must close that connection, never reuse it.
    pub async fn stream_body<W: AsyncWrite + Unpin>(
        &mut self,
        n: u64,
        up: &mut W,
        up_timeout: Duration,
    ) -> Result<(), Error> {
        let mut pace = BodyPace::new(self.read_timeout, self.min_body_rate);
        let buffered = n.min(self.buf.len() as u64) as usize;
        write_upstream(up, &self.buf[..buffered], up_timeout).await?;
        self.consume(buffered);
        let mut left = n - buffered as u64;
        let mut chunk = Vec::with_capacity(STREAM_CHUNK);
        while left > 0 {
            chunk.clear();
            let want = left.min(STREAM_CHUNK as u64) as usize;
            let got = self.read_paced(&mut pace, &mut chunk, want).await?;
            if got == 0 {
                return Err(Error::BadRequest(
                    "connection closed inside the request body",
                ));
            }
            write_upstream(up, &chunk, up_timeout).await?;
            left -= got as u64;
        }
        Ok(())
    }

    /// Read at most `limit` body bytes from the socket into `dst`, waiting no longer than the per-read
    /// `read_timeout` and what the body's pace still allows. `Ok(0)` is EOF.
    async fn read_paced(
        &mut self,
        pace: &mut BodyPace,
        dst: &mut Vec<u8>,
        limit: usize,
    ) -> Result<usize, Error> {
        let allowance = pace.allowance();
        if allowance.is_zero() {
            return Err(Error::RequestTimeout);
        }
        dst.reserve(limit.min(READ_CHUNK));
        let started = Instant::now();
        let mut limited = (&mut self.io).take(limit as u64);
        let n = match tokio::time::timeout(allowance.min(self.read_timeout), limited.read_buf(dst))
            .await
        {
            Ok(Ok(n)) => n,
            // A reset or a TLS error ends the body just like EOF does.
            Ok(Err(_)) => 0,
            Err(_) => return Err(Error::RequestTimeout),
        };
        pace.record(started.elapsed(), n as u64);
        if n == 0 {
            self.eof = true;
        }
        Ok(n)
    }

    /// Wait for a complete request head. `Ok(None)`: the client closed (or, when a shutdown watch is
    /// given, the relay is shutting down) between requests, which is a normal end of the connection.
    /// Before the first byte `idle` applies; once a head has started it must complete within
    /// `read_timeout` in total, so a client dribbling bytes cannot hold the connection (slowloris).
    /// While nothing is buffered, a `reclaim` signal (connection slots running short) also ends the
    /// connection, once it has waited [`RECLAIM_AFTER_IDLE`].
    pub async fn read_head(
        &mut self,
        limits: &HeadLimits,
        idle: Duration,
        mut shutdown: Option<&mut ShutdownWatch>,
        reclaim: &mut Reclaim,
    ) -> Result<Option<RequestHead>, Error> {
        let idle_since = Instant::now();
        let idle_deadline = idle_since + idle;
        let mut head_deadline = if self.buf.is_empty() {
            None
        } else {
            Some(Instant::now() + self.read_timeout)
        };
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
            if !self.buf.is_empty() && ready {
                if let Some(head) = parse_request_head(&self.buf, limits)? {
                    return Ok(Some(head));
                }
            }
            if self.eof {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(Error::BadRequest("incomplete request head"))
                };
            }
            let deadline = head_deadline.unwrap_or(idle_deadline);
            let n = if self.buf.is_empty() {
                let shutting_down = async {
                    match shutdown.as_deref_mut() {
                        Some(sd) => sd.wait().await,
                        None => std::future::pending().await,
                    }
                };
                let reclaimed = async {
                    reclaim.wanted().await;
                    tokio::time::sleep_until(idle_since + RECLAIM_AFTER_IDLE).await;
                };
                tokio::select! {
                    r = self.read_more(deadline) => r,
                    _ = shutting_down => return Ok(None),
                    _ = reclaimed => return Ok(None),
                }
            } else {
                self.read_more(deadline).await
            };
            match n {
                Ok(0) => {}
                Ok(_) => {
                    head_deadline.get_or_insert_with(|| Instant::now() + self.read_timeout);
                }
                Err(_) if self.buf.is_empty() => return Ok(None),
                Err(e) => return Err(e),
            }
        }
    }

    /// Drop the first `n` bytes of input (a request head or body that has been handled).
    pub fn consume(&mut self, n: usize) {
        self.buf.drain(..n);
    }

    /// Write all of `bytes` with the per-write deadline (never a total deadline: streams may be long).
    pub async fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match tokio::time::timeout(self.write_timeout, self.io.write_all(bytes)).await {
            Ok(r) => r,
            Err(_) => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "client write timed out",
            )),
        }
    }
}

/// Could `buf` hold a complete head? True when the bytes from `from` on (with two bytes of overlap)
/// contain a line break followed by an empty line (`\n\r\n`, or `\n\n`, which the parser then refuses).
fn may_end_head(buf: &[u8], from: usize) -> bool {
    let tail = &buf[from.saturating_sub(2).min(buf.len())..];
    tail.windows(2).any(|w| w == b"\n\n") || tail.windows(3).any(|w| w == b"\n\r\n")
}

/// Write part of a streamed request body to the provider.
async fn write_upstream<W: AsyncWrite + Unpin>(
    up: &mut W,
    bytes: &[u8],
    timeout: Duration,
) -> Result<(), Error> {
    match tokio::time::timeout(timeout, up.write_all(bytes)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(Error::UpstreamConnect),
        Err(_) => Err(Error::UpstreamTimeout),
    }
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

/// What the connection does after a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    KeepAlive,
    Close,
}

/// Serve one connection until it closes, the relay shuts down, or `reclaim` takes it back while idle.
pub async fn serve<S>(
    app: Arc<App>,
    io: S,
    peer: SocketAddr,
    mut shutdown: ShutdownWatch,
    mut reclaim: Reclaim,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    app.stats.active_connections.fetch_add(1, Ordering::Relaxed);
    let server = &app.cfg.server;
    let mut client = Client {
        io,
        buf: Vec::with_capacity(READ_CHUNK),
        peer,
        read_timeout: server.read_timeout(),
        write_timeout: server.write_timeout(),
        min_body_rate: server.min_body_rate,
        eof: false,
    };
    let limits = HeadLimits {
        max_head_bytes: server.max_header_bytes,
        max_headers: server.max_headers,
        max_uri_bytes: server.max_uri_bytes,
    };
    loop {
        let head = match client
            .read_head(
                &limits,
                server.idle_timeout(),
                Some(&mut shutdown),
                &mut reclaim,
            )
            .await
        {
            Ok(Some(h)) => h,
            Ok(None) => break,
            Err(e) => {
                // The head could not be framed: answer once and close, the stream is out of sync.
                respond::error_and_log(&app, &mut client, None, &e, None).await;
                break;
            }
        };
        let next = relay::handle(&app, &mut client, head, &shutdown).await;
        if next == Next::Close || shutdown.is_shutting_down() || client.eof {
            break;
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), client.io.shutdown()).await;
    app.stats.active_connections.fetch_sub(1, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::head::HeadError;

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

    fn client_over(
        io: tokio::io::DuplexStream,
        buffered: &[u8],
    ) -> Client<tokio::io::DuplexStream> {
        Client {
            io,
            buf: buffered.to_vec(),
            peer: "127.0.0.1:1".parse().unwrap(),
            read_timeout: Duration::from_secs(5),
            write_timeout: Duration::from_secs(5),
            min_body_rate: 1,
            eof: false,
        }
    }

    /// A streamed body reaches the sink byte for byte and not one byte further, whatever part of it
    /// was already buffered with the head and however the rest is split across reads.
    #[tokio::test]
    async fn streamed_bodies_stop_exactly_at_their_length_at_every_split() {
        let body: Vec<u8> = (0..100u8).collect();
        let next = b"GET /next HTTP/1.1\r\n\r\n";
        let wire = [&body[..], next].concat();
        for split in 0..=wire.len() {
            let (mut peer, io) = tokio::io::duplex(64 * 1024);
            let mut client = client_over(io, &wire[..split]);
            let rest = wire[split..].to_vec();
            let writer = tokio::spawn(async move {
                // One byte per write for the body's tail, then the rest at once.
                for b in rest {
                    peer.write_all(&[b]).await.unwrap();
                }
                peer
            });
            let mut sink = Vec::new();
            client
                .stream_body(body.len() as u64, &mut sink, Duration::from_secs(5))
                .await
                .unwrap();
            assert_eq!(sink, body, "split at {split}");
            let _peer = writer.await.unwrap();
            // Whatever of the next request has been read stays for the head parser.
            assert!(next.starts_with(&client.buf), "split at {split}");
        }
    }

    /// A dropped body leaves exactly the next request in the buffer, at every split.
    #[tokio::test]
    async fn discarded_bodies_leave_the_next_request_at_every_split() {
        let next = b"GET /next HTTP/1.1\r\n\r\n";
        let chunked = b"3;x=y\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\nT: v\r\n\r\n";
        let cases: [(BodyFraming, &[u8]); 2] = [
            (BodyFraming::Length(20), b"01234567890123456789"),
            (BodyFraming::Chunked, chunked),
        ];
        for (framing, body) in cases {
            let wire = [body, next].concat();
            for split in 0..=wire.len() {
                let (mut peer, io) = tokio::io::duplex(64 * 1024);
                let mut client = client_over(io, &wire[..split]);
                peer.write_all(&wire[split..]).await.unwrap();
                client.discard_body(framing, 1024).await.unwrap();
                // Whatever was read past the body is the start of the next request, nothing else.
                let mut rest = client.buf.clone();
                let mut tail = vec![0u8; next.len() - rest.len().min(next.len())];
                if !tail.is_empty() {
                    peer.shutdown().await.unwrap();
                    client.io.read_exact(&mut tail).await.unwrap();
                }
                rest.extend_from_slice(&tail);
                assert_eq!(rest, next, "{framing:?} split at {split}");
            }
        }
        let (_peer, io) = tokio::io::duplex(1024);
        let mut client = client_over(io, b"");
        assert_eq!(
            client.discard_body(BodyFraming::Length(2048), 1024).await,
            Err(Error::BodyTooLarge)
        );
    }

    /// A client that stops mid-body ends the stream with an error, never a short success.
    #[tokio::test]
    async fn a_streamed_body_cut_short_is_an_error() {
        let (mut peer, io) = tokio::io::duplex(1024);
        let mut client = client_over(io, b"abc");
        peer.write_all(b"def").await.unwrap();
        drop(peer);
        let mut sink = Vec::new();
        let r = client
            .stream_body(10, &mut sink, Duration::from_secs(5))
            .await;
        assert!(matches!(r, Err(Error::BadRequest(_))), "{r:?}");
        assert_eq!(sink, b"abcdef");
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
