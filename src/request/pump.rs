//! Moving the provider's answer body: read it from the provider while noticing a client that leaves
//! (and keeping what a pipelining client sends meanwhile), and either copy it to the client as it
//! arrives ([`pump_body`]: SSE events go out as soon as each read returns) or read a small error body
//! whole ([`read_error_body`]). Framing is decoded exactly, so the provider connection is reused only
//! when its body ended where its framing said.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::time::Instant;

use crate::budget::tap::Tap;
use crate::error::Error;
use crate::http::body::{BodyDecoder, BodyError};
use crate::http::chunked::ChunkedLimits;
use crate::http::framing::ResponseBody;
use crate::request::client::{Client, MAX_CHUNK_EXT_BYTES, MAX_TRAILER_BYTES};
use crate::request::context::Request;
use crate::request::outcome::Cut;
use crate::upstream::client::Conn;
use crate::upstream::key_scrub::MAX_ERROR_BODY_BYTES;

/// Read size for the upstream socket once an answer comes in bulk; SSE events are forwarded as soon as
/// each read returns.
pub const UPSTREAM_READ: usize = 8 * 1024;
/// Room for each read of a provider's head and the start of its body, and of a body that arrives in
/// small pieces (an event stream): the buffer starts with this much, so an open stream holds 2 KiB for
/// its provider rather than 8 KiB, and a read that fills it switches the rest of the body to
/// [`UPSTREAM_READ`]. A provider's head (about 1 KiB from the big APIs) and a small JSON answer fit in
/// one read.
pub const FIRST_UPSTREAM_READ: usize = 2 * 1024;

/// How a response body is framed and passed on.
#[derive(Debug, Clone, Copy)]
pub struct BodyPlan {
    pub kind: ResponseBody,
    /// What the client gets of it.
    pub emit: Emit,
    /// The provider allows reusing the connection once this body has been read exactly.
    pub upstream_keep_alive: bool,
}

/// The framing of the body the client gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Emit {
    /// The provider's bytes as framed.
    Raw,
    /// The payload, delimited by closing the connection (an HTTP/1.0 client cannot read chunks).
    Payload,
    /// The payload re-encoded as chunks: the meter changed it (`budget/tap.rs`), so the provider's
    /// framing no longer fits.
    Chunks,
}

/// What one wait on the provider brought.
pub enum Read {
    /// Bytes read from the provider (0: it closed).
    Upstream(usize),
    ClientGone,
}

/// Read from the provider into `rbuf`, with room for at least `room` bytes, waiting until `deadline`;
/// meanwhile, notice a client that disconnects (and cancel at once) and keep any pipelined bytes it
/// sends for the next request.
pub async fn read_upstream_or_client<S: AsyncRead + AsyncWrite + Unpin>(
    client: &mut Client<S>,
    conn: &mut Conn,
    rbuf: &mut Vec<u8>,
    room: usize,
    deadline: Instant,
) -> Result<Read, Error> {
    rbuf.reserve(room);
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

/// The caps on a provider's body: `max_body_bytes` of payload, the client leg's caps on chunk
/// extensions and trailers.
fn response_limits(max_body_bytes: u64) -> ChunkedLimits {
    ChunkedLimits {
        max_chunk_ext_bytes: MAX_CHUNK_EXT_BYTES,
        max_trailer_bytes: MAX_TRAILER_BYTES,
        max_body_bytes,
    }
}

/// The per-read idle timeout on the provider's answer.
fn read_idle<S>(req: &Request<'_, S>) -> Duration {
    req.app.cfg.upstream.read_idle_timeout
}

/// Copy the response body to the client as it arrives, `head` (the client's response head, not sent
/// yet) in front of the first bytes, showing each decoded piece to `tap` when the answer is metered.
/// Returns the body bytes sent and, for a metered answer, its last piece unsent (the head in front if
/// it is still unsent), so the caller can settle the call's spend before the client has the whole
/// answer and can send its next call; or the bytes sent and why the stream was cut. The connection is returned to the
/// pool the moment its body is fully read, before the last bytes go to the client, so a client's next
/// request can already reuse it.
pub async fn pump_body<S: AsyncRead + AsyncWrite + Unpin>(
    req: &mut Request<'_, S>,
    conn: Conn,
    mut head: Option<Vec<u8>>,
    mut pending: Vec<u8>,
    plan: BodyPlan,
    mut tap: Option<&mut Tap>,
) -> Result<(u64, Vec<u8>), (u64, Cut)> {
    let BodyPlan {
        kind,
        emit,
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
    if kind == ResponseBody::None {
        release(&mut conn, pending.is_empty());
        return Ok((0, head.unwrap_or_default()));
    }
    // The provider's framing is checked, not trusted: no cap on a streamed answer's size, the
    // chunk grammar's caps on its framing.
    let mut dec = BodyDecoder::new(kind.into(), response_limits(u64::MAX));
    let filtering = tap.as_ref().is_some_and(|t| t.filters());
    let decode = emit != Emit::Raw || tap.is_some();
    let mut decoded = Vec::new();
    let mut passed = Vec::new();
    let mut framed = Vec::new();
    // Room for the next read: small while the body comes in small pieces, `UPSTREAM_READ` for the rest
    // of it once a read fills the small room.
    let mut room = FIRST_UPSTREAM_READ;
    loop {
        let mut finished = false;
        let mut take = 0;
        if !pending.is_empty() {
            // Forward exactly the bytes that belong to this body; anything after it means the provider
            // is out of sync, and the connection is not reused.
            take = dec
                .decode(&pending, decode.then_some(&mut decoded))
                .map_err(|_| (sent, Cut::UpstreamBadChunked))?;
            finished = dec.is_done();
            if finished {
                release(&mut conn, take == pending.len());
            }
        } else if conn.is_none() {
            finished = true;
        }
        if take > 0 || finished {
            if let Some(t) = tap.as_deref_mut() {
                t.pass(&decoded, &mut passed);
                if finished {
                    t.end(&mut passed);
                }
            }
            let payload: &[u8] = if filtering { &passed } else { &decoded };
            let out: &[u8] = match emit {
                Emit::Raw => &pending[..take],
                Emit::Payload => payload,
                Emit::Chunks => {
                    framed.clear();
                    if !payload.is_empty() {
                        framed.extend_from_slice(format!("{:x}\r\n", payload.len()).as_bytes());
                        framed.extend_from_slice(payload);
                        framed.extend_from_slice(b"\r\n");
                    }
                    if finished {
                        framed.extend_from_slice(b"0\r\n\r\n");
                    }
                    &framed
                }
            };
            if finished && tap.is_some() {
                let mut last = head.take().unwrap_or_default();
                last.extend_from_slice(out);
                return Ok((sent + out.len() as u64, last));
            }
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
            passed.clear();
            pending.drain(..take);
            if finished {
                return Ok((sent, Vec::new()));
            }
        }
        let deadline = Instant::now() + idle;
        let up = conn.as_mut().expect("held until the body is complete");
        match read_upstream_or_client(client, up, &mut pending, room, deadline).await {
            // The provider closing ends a body that runs until close (the next turn passes on what
            // a metering filter still holds), and cuts any other.
            Ok(Read::Upstream(0)) => {
                dec.eof().map_err(|_| (sent, Cut::UpstreamEof))?;
                conn = None;
            }
            Ok(Read::Upstream(n)) => {
                if n >= room {
                    room = UPSTREAM_READ;
                }
            }
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
    // Over the cap (a Content-Length at once, any other framing as it grows) the body cannot be
    // checked for the key: the relay answers `upstream_error_unchecked` instead.
    let unchecked = |e: BodyError| match e {
        BodyError::TooLarge => Error::UpstreamErrorUnchecked,
        BodyError::Malformed(_) | BodyError::Truncated => Error::UpstreamProtocol,
    };
    let mut dec = BodyDecoder::new(kind.into(), response_limits(MAX_ERROR_BODY_BYTES as u64));
    let mut body = Vec::new();
    let idle = read_idle(req);
    loop {
        let used = dec.decode(&pending, Some(&mut body)).map_err(unchecked)?;
        if dec.is_done() {
            return Ok(ErrorBody::Read(body, used == pending.len()));
        }
        pending.clear();
        let deadline = Instant::now() + idle;
        match read_upstream_or_client(req.client, conn, &mut pending, UPSTREAM_READ, deadline)
            .await?
        {
            // A body until close ends here, and its connection is never reused.
            Read::Upstream(0) => {
                dec.eof().map_err(unchecked)?;
                return Ok(ErrorBody::Read(body, false));
            }
            Read::Upstream(_) => {}
            Read::ClientGone => return Ok(ErrorBody::ClientGone),
        }
    }
}
