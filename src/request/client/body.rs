//! Request bodies on the client connection: read one whole (within the buffered-body budget), read
//! and drop one the relay will not forward, or stream one to the provider through one fixed buffer.
//! Every read keeps the body's pace (`limits/body_pace.rs`) and stops exactly at the body's end, so
//! what follows stays in the connection's buffer for the next request's head.

use std::io::Write as _;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

use super::{Client, Input, MAX_CHUNK_EXT_BYTES, MAX_TRAILER_BYTES, READ_CHUNK, STREAM_CHUNK};
use crate::error::Error;
use crate::http::body::BodyDecoder;
use crate::http::chunked::ChunkedLimits;
use crate::http::framing::BodyFraming;
use crate::limits::body_budget::BodyShare;
use crate::limits::body_pace::BodyPace;

impl<S: AsyncRead + AsyncWrite + Unpin> Client<S> {
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
        let mut dec = BodyDecoder::new(framing.into(), body_limits(max));
        // A Content-Length over `max` is refused before anything is taken from the budget.
        dec.next(&[])?;
        let mut body = Vec::new();
        if let (Some(n), Some(share)) = (dec.bytes_left(), share.as_deref_mut()) {
            share.grow_to(n)?;
        }
        // Bounded by `max`, checked above.
        body.reserve_exact(dec.bytes_left().unwrap_or(0) as usize);
        let mut pace = BodyPace::new(self.pace.read_timeout, self.pace.min_body_rate);
        loop {
            if let (None, Some(share)) = (dec.bytes_left(), share.as_deref_mut()) {
                // Decoding never yields more payload than the bytes it is fed.
                share.grow_to((body.len() + self.buf.len()) as u64)?;
            }
            let used = dec.decode(&self.buf, Some(&mut body))?;
            self.consume(used);
            if dec.is_done() {
                return Ok(body);
            }
            self.read_body_bytes(&mut pace, &mut dec, READ_CHUNK)
                .await?;
        }
    }

    /// Whether the input already holds the whole body (`Ok(true)`: a small body that came with its
    /// head), only its start (`Ok(false)`), or bytes that break its framing or its cap. A body no
    /// policy reads is streamed only in the second case; the others are read (or refused) at once,
    /// before the provider is contacted.
    pub fn holds_whole_body(&self, framing: BodyFraming, max: u64) -> Result<bool, Error> {
        let mut dec = BodyDecoder::new(framing.into(), body_limits(max));
        dec.decode(&self.buf, None)?;
        Ok(dec.is_done())
    }

    /// Read and drop a body of at most `max` bytes (a refused or self-answered request's), so the
    /// connection can carry on; nothing is kept but one read's worth of bytes. Same pace and errors as
    /// [`Client::read_body`].
    pub async fn discard_body(&mut self, framing: BodyFraming, max: u64) -> Result<(), Error> {
        let mut dec = BodyDecoder::new(framing.into(), body_limits(max));
        let mut pace = BodyPace::new(self.pace.read_timeout, self.pace.min_body_rate);
        loop {
            let used = dec.decode(&self.buf, None)?;
            self.consume(used);
            if dec.is_done() {
                return Ok(());
            }
            self.read_body_bytes(&mut pace, &mut dec, READ_CHUNK)
                .await?;
        }
    }

    /// Copy a request body no policy reads from the client to `up` as it arrives, at the body's pace
    /// (408 when it falls behind), through the connection's input buffer, which never holds more than
    /// one read of [`STREAM_CHUNK`] bytes of it: a Content-Length body byte for byte, a chunked one
    /// decoded and re-encoded chunk by chunk (the client's extensions and trailers are checked and
    /// dropped, never passed on), ending with the last chunk. Each write to `up` may take
    /// `up_timeout`. On error the upstream request is incomplete: the caller must close that
    /// connection, never reuse it.
    pub async fn stream_body<W: AsyncWrite + Unpin>(
        &mut self,
        framing: BodyFraming,
        max: u64,
        up: &mut W,
        up_timeout: Duration,
    ) -> Result<(), Error> {
        let rechunk = framing == BodyFraming::Chunked;
        let mut dec = BodyDecoder::new(framing.into(), body_limits(max));
        let mut pace = BodyPace::new(self.pace.read_timeout, self.pace.min_body_rate);
        let mut out = Vec::new();
        loop {
            let mut pos = 0;
            while pos < self.buf.len() && !dec.is_done() {
                let step = dec.next(&self.buf[pos..])?;
                pos += step.consumed;
                if rechunk && !step.data.is_empty() {
                    // RFC 9112 §7.1: chunk-size in hex, CRLF, the data, CRLF.
                    let _ = write!(out, "{:x}\r\n", step.data.len());
                    out.extend_from_slice(step.data);
                    out.extend_from_slice(b"\r\n");
                } else {
                    out.extend_from_slice(step.data);
                }
            }
            self.consume(pos);
            if rechunk && dec.is_done() {
                // RFC 9112 §7.1: the last chunk and an empty trailer section.
                out.extend_from_slice(b"0\r\n\r\n");
            }
            if !out.is_empty() {
                write_upstream(up, &out, up_timeout).await?;
                out.clear();
            }
            if dec.is_done() {
                return Ok(());
            }
            self.read_body_bytes(&mut pace, &mut dec, STREAM_CHUNK)
                .await?;
        }
    }

    /// Read the next bytes of a body into the input buffer: at most `limit`, and never past the end
    /// of a Content-Length body, so the next request stays unread. The peer closing is the decoder's
    /// verdict (a body cut short is a 400).
    async fn read_body_bytes(
        &mut self,
        pace: &mut BodyPace,
        dec: &mut BodyDecoder,
        limit: usize,
    ) -> Result<(), Error> {
        let want = dec
            .bytes_left()
            .map_or(limit, |left| left.min(limit as u64) as usize);
        let mut input = std::mem::replace(&mut self.buf, Input::with_capacity(0));
        let got = self
            .read_paced(pace, input.spare(want.min(READ_CHUNK)), want)
            .await;
        self.buf = input;
        if got? == 0 {
            dec.eof()?;
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
        let n = match tokio::time::timeout(
            allowance.min(self.pace.read_timeout),
            limited.read_buf(dst),
        )
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
}

/// The caps on a request body: `max` bytes of payload, and the chunk grammar's caps on extensions
/// and trailers.
fn body_limits(max: u64) -> ChunkedLimits {
    ChunkedLimits {
        max_chunk_ext_bytes: MAX_CHUNK_EXT_BYTES,
        max_trailer_bytes: MAX_TRAILER_BYTES,
        max_body_bytes: max,
    }
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

#[cfg(test)]
mod tests {
    use super::super::Pace;
    use super::*;

    fn client_over(
        io: tokio::io::DuplexStream,
        buffered: &[u8],
    ) -> Client<tokio::io::DuplexStream> {
        let pace = Pace {
            read_timeout: Duration::from_secs(5),
            write_timeout: Duration::from_secs(5),
            min_body_rate: 1,
        };
        let mut client = Client::new(io, "127.0.0.1:1".parse().unwrap(), pace);
        client.buf.spare(buffered.len()).extend_from_slice(buffered);
        client
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
                .stream_body(
                    BodyFraming::Length(body.len() as u64),
                    1024,
                    &mut sink,
                    Duration::from_secs(5),
                )
                .await
                .unwrap();
            assert_eq!(sink, body, "split at {split}");
            let _peer = writer.await.unwrap();
            // Whatever of the next request has been read stays for the head parser.
            assert!(next.starts_with(&client.buf), "split at {split}");
        }
    }

    /// A streamed chunked body reaches the sink re-encoded: chunks that decode to the same payload,
    /// none of the client's extensions or trailer fields, one last chunk; and exactly the next
    /// request is left, at every split.
    #[tokio::test]
    async fn streamed_chunked_bodies_are_reencoded_at_every_split() {
        let body = b"3;x=y\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\nT: v\r\n\r\n";
        let next = b"GET /next HTTP/1.1\r\n\r\n";
        let wire = [&body[..], next].concat();
        for split in 0..=wire.len() {
            let (mut peer, io) = tokio::io::duplex(64 * 1024);
            let mut client = client_over(io, &wire[..split]);
            peer.write_all(&wire[split..]).await.unwrap();
            let mut sink = Vec::new();
            client
                .stream_body(
                    BodyFraming::Chunked,
                    1024,
                    &mut sink,
                    Duration::from_secs(5),
                )
                .await
                .unwrap();
            let mut dec = BodyDecoder::new(
                crate::http::body::Framing::Chunked,
                ChunkedLimits::with_max_body(1024),
            );
            let mut payload = Vec::new();
            assert_eq!(dec.decode(&sink, Some(&mut payload)), Ok(sink.len()));
            assert!(dec.is_done(), "split at {split}");
            assert_eq!(payload, b"abc0123456789abcdef", "split at {split}");
            let sent = String::from_utf8_lossy(&sink);
            assert!(!sent.contains("x=y") && !sent.contains("T: v"), "{sent:?}");
            assert!(sent.ends_with("\r\n0\r\n\r\n"), "{sent:?}");
            // Whatever was read past the body is the start of the next request, nothing else.
            assert!(next.starts_with(&client.buf), "split at {split}");
        }
    }

    /// A streamed chunked body that breaks its grammar or its cap part-way is an error.
    #[tokio::test]
    async fn a_streamed_chunked_body_is_checked_as_it_goes() {
        for (wire, cap, want) in [
            (
                &b"2\r\nab\r\nzz\r\n"[..],
                1024,
                Error::BadRequest("chunk size is not hex digits"),
            ),
            (b"2\r\nab\r\n7\r\n", 8, Error::BodyTooLarge),
        ] {
            let (_peer, io) = tokio::io::duplex(1024);
            let mut client = client_over(io, wire);
            let mut sink = Vec::new();
            let r = client
                .stream_body(BodyFraming::Chunked, cap, &mut sink, Duration::from_secs(5))
                .await;
            assert_eq!(r, Err(want));
            // Nothing of a read that breaks the framing goes on.
            assert!(sink.is_empty(), "{sink:?}");
        }
        // A client that stops inside it ends the stream with an error, never a last chunk.
        let (peer, io) = tokio::io::duplex(1024);
        drop(peer);
        let mut client = client_over(io, b"2\r\nab\r\n");
        let mut sink = Vec::new();
        let r = client
            .stream_body(
                BodyFraming::Chunked,
                1024,
                &mut sink,
                Duration::from_secs(5),
            )
            .await;
        assert!(matches!(r, Err(Error::BadRequest(_))), "{r:?}");
        assert_eq!(sink, b"2\r\nab\r\n");
    }

    /// The probe that decides between streaming and reading whole.
    #[test]
    fn whole_bodies_in_the_buffer_are_told_apart() {
        let (_peer, io) = tokio::io::duplex(64);
        let client = client_over(io, b"3\r\nabc\r\n0\r\n\r\nGET");
        assert_eq!(client.holds_whole_body(BodyFraming::Chunked, 10), Ok(true));
        assert_eq!(
            client.holds_whole_body(BodyFraming::Length(5), 10),
            Ok(true)
        );
        assert_eq!(
            client.holds_whole_body(BodyFraming::Length(50), 100),
            Ok(false)
        );
        assert_eq!(
            client.holds_whole_body(BodyFraming::Chunked, 2),
            Err(Error::BodyTooLarge)
        );
        let (_peer, io) = tokio::io::duplex(64);
        let client = client_over(io, b"3\r\nab");
        assert_eq!(client.holds_whole_body(BodyFraming::Chunked, 10), Ok(false));
        assert_eq!(client.holds_whole_body(BodyFraming::None, 10), Ok(true));
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
                let mut rest = client.buf.to_vec();
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
            .stream_body(
                BodyFraming::Length(10),
                1024,
                &mut sink,
                Duration::from_secs(5),
            )
            .await;
        assert!(matches!(r, Err(Error::BadRequest(_))), "{r:?}");
        assert_eq!(sink, b"abcdef");
    }
}
