//! Request bodies on the client connection: read one whole (within the buffered-body budget), read
//! and drop one the relay will not forward, or stream one to the provider through one fixed buffer.
//! Every read keeps the body's pace (`limits/body_pace.rs`) and stops exactly at the body's end, so
//! what follows stays in the connection's buffer for the next request's head.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

use super::{Client, MAX_CHUNK_EXT_BYTES, MAX_TRAILER_BYTES, READ_CHUNK, STREAM_CHUNK};
use crate::error::Error;
use crate::http::chunked::{ChunkedDecoder, ChunkedLimits};
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
        let mut pace = BodyPace::new(self.pace.read_timeout, self.pace.min_body_rate);
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
        let mut pace = BodyPace::new(self.pace.read_timeout, self.pace.min_body_rate);
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
        let mut pace = BodyPace::new(self.pace.read_timeout, self.pace.min_body_rate);
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
        client.buf.extend_from_slice(buffered);
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
}
