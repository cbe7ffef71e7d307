//! Moving the provider's answer body: read it from the provider while noticing a client that leaves
//! (and keeping what a pipelining client sends meanwhile), and either copy it to the client as it
//! arrives ([`pump_body`]: SSE events go out as soon as each read returns) or read a small error body
//! whole ([`read_error_body`]). Framing is decoded exactly, so the provider connection is reused only
//! when its body ended where its framing said.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::time::Instant;

use crate::error::Error;
use crate::http::chunked::{ChunkError, ChunkedDecoder, ChunkedLimits};
use crate::http::framing::ResponseBody;
use crate::request::client::{Client, MAX_CHUNK_EXT_BYTES, MAX_TRAILER_BYTES};
use crate::request::context::Request;
use crate::request::outcome::Cut;
use crate::upstream::client::Conn;
use crate::upstream::key_scrub::MAX_ERROR_BODY_BYTES;

/// Read size for the upstream socket; SSE events are forwarded as soon as each read returns.
pub const UPSTREAM_READ: usize = 8 * 1024;

/// How a response body is framed and passed on.
#[derive(Debug, Clone, Copy)]
pub struct BodyPlan {
    pub kind: ResponseBody,
    /// Decode chunked framing for an HTTP/1.0 client (which then gets a close-delimited body).
    pub dechunk: bool,
    /// The provider allows reusing the connection once this body has been read exactly.
    pub upstream_keep_alive: bool,
}

/// What one wait on the provider brought.
pub enum Read {
    /// Bytes read from the provider (0: it closed).
    Upstream(usize),
    ClientGone,
}

/// Read from the provider into `rbuf`, waiting until `deadline`; meanwhile, notice a client that
/// disconnects (and cancel at once) and keep any pipelined bytes it sends for the next request.
pub async fn read_upstream_or_client<S: AsyncRead + AsyncWrite + Unpin>(
    client: &mut Client<S>,
    conn: &mut Conn,
    rbuf: &mut Vec<u8>,
    deadline: Instant,
) -> Result<Read, Error> {
    rbuf.reserve(UPSTREAM_READ);
    loop {
        let watch_client = client.may_read_ahead();
        tokio::select! {
            biased;
            r = tokio::time::timeout_at(deadline, conn.stream.read_buf(rbuf)) => {
                return match r {
                    Ok(Ok(n)) => Ok(Read::Upstream(n)),
                    Ok(Err(_)) => Err(Error::UpstreamProtocol),
                    Err(_) => Err(Error::UpstreamTimeout),
                };
            }
            still_there = client.read_ahead(), if watch_client => {
                if !still_there {
                    return Ok(Read::ClientGone);
                }
            }
        }
    }
}

/// The per-read idle timeout on the provider's answer.
fn read_idle<S>(req: &Request<'_, S>) -> Duration {
    req.app.cfg.upstream.read_idle_timeout
}

/// Copy the response body to the client as it arrives, `head` (the client's response head, not sent
/// yet) in front of the first bytes. Returns the body bytes sent, or those and why the stream was cut.
/// The connection is returned to the pool the moment its body is fully read, before the last bytes go
/// to the client, so a client's next request can already reuse it.
pub async fn pump_body<S: AsyncRead + AsyncWrite + Unpin>(
    req: &mut Request<'_, S>,
    conn: Conn,
    mut head: Option<Vec<u8>>,
    mut pending: Vec<u8>,
    plan: BodyPlan,
) -> Result<u64, (u64, Cut)> {
    let BodyPlan {
        kind,
        dechunk,
        upstream_keep_alive,
    } = plan;
    let pool = &req.app.upstream.pool;
    let mut conn = Some(conn);
    let release = |conn: &mut Option<Conn>, clean: bool| {
        if let Some(c) = conn.take() {
            if clean && upstream_keep_alive {
                pool.release(c);
            }
        }
    };
    let idle = read_idle(req);
    let client = &mut *req.client;
    let mut sent: u64 = 0;
    let mut remaining = match kind {
        ResponseBody::None => {
            release(&mut conn, pending.is_empty());
            return Ok(0);
        }
        ResponseBody::Length(n) => Some(n),
        _ => None,
    };
    let mut dec = (kind == ResponseBody::Chunked).then(|| {
        ChunkedDecoder::new(ChunkedLimits {
            max_chunk_ext_bytes: MAX_CHUNK_EXT_BYTES,
            max_trailer_bytes: MAX_TRAILER_BYTES,
            max_body_bytes: u64::MAX,
        })
    });
    let mut decoded = Vec::new();
    loop {
        if !pending.is_empty() {
            // Forward exactly the bytes that belong to this body; anything after it means the provider
            // is out of sync, and the connection is not reused.
            let (take, finished) = match (&mut dec, remaining) {
                (Some(d), _) => {
                    let used = d
                        .decode(&pending, if dechunk { Some(&mut decoded) } else { None })
                        .map_err(|_| (sent, Cut::UpstreamBadChunked))?;
                    (used, d.is_done())
                }
                (None, Some(n)) => {
                    let take = (pending.len() as u64).min(n) as usize;
                    remaining = Some(n - take as u64);
                    (take, n == take as u64)
                }
                (None, None) => (pending.len(), false),
            };
            let leftover = pending.len() > take;
            if finished {
                release(&mut conn, !leftover);
            }
            let out: &[u8] = if dechunk { &decoded } else { &pending[..take] };
            if let Some(mut h) = head.take() {
                h.extend_from_slice(out);
                client
                    .write_all(&h)
                    .await
                    .map_err(|_| (sent, Cut::ClientClosed))?;
                sent += out.len() as u64;
            } else if !out.is_empty() {
                client
                    .write_all(out)
                    .await
                    .map_err(|_| (sent, Cut::ClientClosed))?;
                sent += out.len() as u64;
            }
            decoded.clear();
            pending.drain(..take);
            if finished {
                return Ok(sent);
            }
        }
        let deadline = Instant::now() + idle;
        let up = conn.as_mut().expect("held until the body is complete");
        match read_upstream_or_client(client, up, &mut pending, deadline).await {
            Ok(Read::Upstream(0)) => {
                return if kind == ResponseBody::UntilClose {
                    Ok(sent)
                } else {
                    Err((sent, Cut::UpstreamEof))
                };
            }
            Ok(Read::Upstream(_)) => {}
            Ok(Read::ClientGone) => return Err((sent, Cut::ClientClosed)),
            Err(Error::UpstreamTimeout) => return Err((sent, Cut::UpstreamIdleTimeout)),
            Err(_) => return Err((sent, Cut::UpstreamReadError)),
        }
    }
}

/// An error answer's body, read whole.
pub enum ErrorBody {
    /// The payload, and whether the provider's bytes ended exactly where it did (the connection may
    /// then be reused).
    Read(Vec<u8>, bool),
    ClientGone,
}

/// Read a whole response body of framing `kind` (never `None`), starting with the bytes already
/// read, up to `MAX_ERROR_BODY_BYTES`; each read waits at most `upstream.read_idle_timeout`.
pub async fn read_error_body<S: AsyncRead + AsyncWrite + Unpin>(
    req: &mut Request<'_, S>,
    conn: &mut Conn,
    mut pending: Vec<u8>,
    kind: ResponseBody,
) -> Result<ErrorBody, Error> {
    let cap = MAX_ERROR_BODY_BYTES as u64;
    if matches!(kind, ResponseBody::Length(n) if n > cap) {
        return Err(Error::UpstreamErrorUnchecked);
    }
    let mut dec = (kind == ResponseBody::Chunked).then(|| {
        ChunkedDecoder::new(ChunkedLimits {
            max_chunk_ext_bytes: MAX_CHUNK_EXT_BYTES,
            max_trailer_bytes: MAX_TRAILER_BYTES,
            max_body_bytes: cap,
        })
    });
    let mut body = Vec::new();
    let idle = read_idle(req);
    loop {
        match (&mut dec, kind) {
            (Some(d), _) => {
                let used = d.decode(&pending, Some(&mut body)).map_err(|e| match e {
                    ChunkError::TooLarge => Error::UpstreamErrorUnchecked,
                    ChunkError::Malformed(_) => Error::UpstreamProtocol,
                })?;
                pending.drain(..used);
                if d.is_done() {
                    return Ok(ErrorBody::Read(body, pending.is_empty()));
                }
            }
            (None, ResponseBody::Length(n)) => {
                if pending.len() as u64 >= n {
                    let clean = pending.len() as u64 == n;
                    pending.truncate(n as usize);
                    return Ok(ErrorBody::Read(pending, clean));
                }
            }
            (None, _) => {
                if pending.len() as u64 > cap {
                    return Err(Error::UpstreamErrorUnchecked);
                }
            }
        }
        let deadline = Instant::now() + idle;
        match read_upstream_or_client(req.client, conn, &mut pending, deadline).await? {
            Read::Upstream(0) if kind == ResponseBody::UntilClose => {
                if pending.len() as u64 > cap {
                    return Err(Error::UpstreamErrorUnchecked);
                }
                return Ok(ErrorBody::Read(pending, false));
            }
            Read::Upstream(0) => return Err(Error::UpstreamProtocol),
            Read::Upstream(_) => {}
            Read::ClientGone => return Ok(ErrorBody::ClientGone),
        }
    }
}
