//! Sending a request to a provider, and the one retry a stale pooled connection earns. A provider may
//! close an idle keep-alive connection at the very moment the relay takes it from the pool (the pool's
//! probe saw it open); the request then fails although the provider never looked at it. [`Sending`]
//! writes the request, lets the caller stream a body and wait for the answer, and retries once on a
//! fresh connection when no byte of the request can have been processed (RFC 9112 §9.3.1):
//!
//! - the connection came from the pool, and
//! - writing the request failed, or the connection ended (EOF or reset) before a single response byte,
//!   and
//! - the whole request is still at hand to send again: the head always is, a body held whole (read for
//!   a policy, or already here) is too; a body streamed from the client is not once any of it has been
//!   read from the client, so it retries only when writing the head failed.
//!
//! The retry goes on a new connection, never a pooled one, so there is at most one. Whether a failed
//! request provably never reached the provider (so its reserved call may be given back) is part of the
//! answer: it did not when no connection could be made or the request could not be written whole. HTTP
//! itself (framing, the answer) stays with the caller.

use std::time::Duration;

use tokio::io::AsyncWriteExt;

use crate::error::Error;
use crate::metrics::Metrics;
use crate::upstream::client::{Conn, Unreachable, Upstream};

/// The `relayapi_upstream_errors_total` kind counted for each retry on a fresh connection.
pub const STALE_KIND: &str = "stale_connection";

/// The request as it goes to the provider. Its bytes, and `held` with them (the request's share of the
/// buffered-body budget), are let go as soon as no retry can need them: right after the write on a
/// fresh connection, once the answer begins on a pooled one.
pub struct Outgoing<H> {
    /// The head, and the body when it is held whole.
    pub bytes: Vec<u8>,
    /// True when `bytes` is the whole request (no body streamed from the client after it).
    pub whole: bool,
    /// Longest wait for the provider to take the bytes.
    pub write_timeout: Duration,
    /// Given back together with the bytes.
    pub held: H,
}

/// What the caller saw once the request was written (its reader of the answer's head says it).
pub enum Heard<T> {
    /// The provider's answer began, or the caller is done (the client left): the exchange goes on.
    Answer(T),
    /// The connection ended (EOF or reset) before a single response byte came back.
    Silent,
}

/// Why an attempt stopped before the provider answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// Writing the request (head and held body) failed or timed out.
    WriteFailed,
    /// The request was written, then the connection ended before any response byte.
    Silent,
}

/// Whether an attempt that ended in `stop` goes again on a fresh connection: only on a connection
/// from the pool (a fresh connection that fails says something about the provider, not the pool), and,
/// once the request was written, only when it can be written again whole. Pure.
pub fn may_retry(stop: Stop, reused: bool, whole: bool) -> bool {
    reused
        && match stop {
            Stop::WriteFailed => true,
            Stop::Silent => whole,
        }
}

/// A request that got no answer.
#[derive(Debug)]
pub enum SendError {
    /// No connection for the retry could be made: the request never left the relay.
    Unreachable(Unreachable),
    /// The request could not be written whole: the provider never got a complete request.
    NotSent(Error),
    /// Anything later: the provider may have processed the request.
    Failed(Error),
}

impl SendError {
    /// True when the provider provably never got the whole request, so its reserved call may be
    /// given back.
    pub fn never_reached(&self) -> bool {
        !matches!(self, SendError::Failed(_))
    }

    /// The client-facing error.
    pub fn error(&self) -> Error {
        match self {
            SendError::Unreachable(u) => u.error(),
            SendError::NotSent(e) | SendError::Failed(e) => e.clone(),
        }
    }
}

/// One request on its way to a provider: the connection it is on, and the request itself while a
/// retry may still need it. The caller drives it: [`Sending::write`], then stream any body and wait for
/// the answer; when the connection ends before a response byte, [`Sending::silent`] says whether the
/// request goes again on a fresh connection (then `write` again) or stays unanswered.
pub struct Sending<H> {
    conn: Conn,
    /// The request while a retry may still need it: let go right after the write when no retry can
    /// follow (a fresh connection, or a streamed body), else once the answer begins.
    req: Option<Outgoing<H>>,
    whole: bool,
}

impl<H> Sending<H> {
    pub fn new(conn: Conn, req: Outgoing<H>) -> Sending<H> {
        Sending {
            conn,
            whole: req.whole,
            req: Some(req),
        }
    }

    /// Write the request on the current connection; when that fails on a pooled connection, once more
    /// on a fresh one. Answers the connection to stream the body on and read the answer from. Call it
    /// once, and once more after [`Sending::silent`] moved the request to a fresh connection; the
    /// request is gone otherwise (`Failed`).
    pub async fn write(
        &mut self,
        upstream: &Upstream,
        metrics: &Metrics,
    ) -> Result<&mut Conn, SendError> {
        loop {
            let Some(req) = &self.req else {
                return Err(SendError::Failed(Error::UpstreamProtocol));
            };
            match write(&mut self.conn, &req.bytes, req.write_timeout).await {
                Ok(()) => {
                    if !may_retry(Stop::Silent, self.conn.reused, self.whole) {
                        self.req = None;
                    }
                    return Ok(&mut self.conn);
                }
                Err(e) if !may_retry(Stop::WriteFailed, self.conn.reused, self.whole) => {
                    return Err(SendError::NotSent(e));
                }
                Err(_) => self.reconnect(upstream, metrics).await?,
            }
        }
    }

    /// The connection ended (EOF or reset) before a single response byte. `Ok`: the request moved to a
    /// fresh connection, [`Sending::write`] it again. `Err`: it stays unanswered.
    pub async fn silent(
        &mut self,
        upstream: &Upstream,
        metrics: &Metrics,
    ) -> Result<(), SendError> {
        if self.req.is_none() || !may_retry(Stop::Silent, self.conn.reused, self.whole) {
            return Err(SendError::Failed(Error::UpstreamProtocol));
        }
        self.reconnect(upstream, metrics).await
    }

    /// The connection the exchange goes on with, once the answer began.
    pub fn into_conn(self) -> Conn {
        self.conn
    }

    async fn reconnect(&mut self, upstream: &Upstream, metrics: &Metrics) -> Result<(), SendError> {
        metrics.upstream_error(STALE_KIND);
        self.conn = upstream
            .connect_fresh(&self.conn.key)
            .await
            .map_err(SendError::Unreachable)?;
        Ok(())
    }
}

/// One write (and flush, so a TLS record leaves too) for the head and any held body: one syscall and,
/// usually, one packet.
async fn write(conn: &mut Conn, bytes: &[u8], timeout: Duration) -> Result<(), Error> {
    let stream = &mut conn.stream;
    let written = async {
        stream.write_all(bytes).await?;
        stream.flush().await
    };
    tokio::time::timeout(timeout, written)
        .await
        .map_err(|_| Error::UpstreamTimeout)?
        .map_err(|_| Error::UpstreamConnect)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_pooled_connection_retries_and_only_what_can_be_sent_again() {
        use Stop::*;
        // (stop, reused, whole) → retry
        let table = [
            (WriteFailed, true, true, true),
            (WriteFailed, true, false, true),
            (Silent, true, true, true),
            // The streamed body was read from the client: it cannot be sent again.
            (Silent, true, false, false),
            // A fresh connection never retries (which also bounds the retries to one).
            (WriteFailed, false, true, false),
            (WriteFailed, false, false, false),
            (Silent, false, true, false),
            (Silent, false, false, false),
        ];
        for (stop, reused, whole, want) in table {
            assert_eq!(
                may_retry(stop, reused, whole),
                want,
                "{stop:?} reused={reused} whole={whole}"
            );
        }
    }

    #[test]
    fn only_an_unsent_request_is_given_back() {
        let unreachable = Unreachable {
            cause: crate::upstream::client::Cause::Refused,
            detail: "refused".into(),
        };
        assert!(SendError::Unreachable(unreachable).never_reached());
        assert!(SendError::NotSent(Error::UpstreamConnect).never_reached());
        assert!(!SendError::Failed(Error::UpstreamProtocol).never_reached());
    }
}
