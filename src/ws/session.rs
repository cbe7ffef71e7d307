//! A WebSocket session after both handshakes: bytes are passed each way as they arrive (a frame is
//! never held whole), every frame head is checked on the way (`ws/frame.rs`), and each message the
//! provider sends is shown to a usage meter so the caller can charge the session as it goes. The caller
//! drives it with [`Session::next`], which returns whenever a message reported usage or the session
//! ended, and may end it early with [`Session::close`] (a limit ran out). Memory per session is fixed:
//! one read buffer per direction and the meter's bounded state.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

use crate::meter::extract::{BodyFormat, Meter, MeterStatus};
use crate::meter::usage::{Usage, UsageFamily};
use crate::server::shutdown::ShutdownWatch;
use crate::ws::frame::{close_frame, Event, FrameError, FrameReader, Opcode, Sender};
use crate::ws::model_guard::{ModelGuard, Refusal};

/// Bytes read from either side at once.
const READ_CHUNK: usize = 16 * 1024;

/// How a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// Both sides exchanged close frames, or one side closed its connection after its close frame.
    Closed,
    /// The client's connection ended without a close frame.
    ClientGone,
    /// The provider's connection ended without a close frame.
    UpstreamGone,
    /// The client broke the protocol: closed with 1002 or 1009.
    ClientProtocol(FrameError),
    /// The provider broke the protocol: the client gets 1011.
    UpstreamProtocol(FrameError),
    /// Nothing moved either way for the idle timeout: closed with 1001.
    Idle,
    /// The relay began shutting down: closed with 1001 so the client reconnects elsewhere.
    ShuttingDown,
    /// The caller closed it (a limit ran out).
    ClosedByRelay,
    /// The session reached its longest allowed life (the token's `ssec`): closed with 1008.
    TimeLimit,
    /// A client event broke the token's model limits (`ws/model_guard.rs`): closed with 1008.
    Refused(Refusal),
}

/// What [`Session::next`] stopped for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// A provider message reported this usage (already passed on to the client).
    Usage(Usage),
    End(End),
}

/// Settings of one session.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest frame payload accepted from either side.
    pub max_frame: u64,
    /// A session where nothing moves for this long is closed.
    pub idle: Duration,
    /// Per write to either side.
    pub write_timeout: Duration,
    /// The longest the session may stay open, counted from [`Session::new`] (the token's `ssec`).
    pub lifetime: Option<Duration>,
}

/// One session between a client and a provider.
pub struct Session<'a, C, U> {
    client: &'a mut C,
    upstream: &'a mut U,
    limits: Limits,
    /// Masks for the relay's own frames to the provider (a client's frames must be masked, §5.3).
    mask: [u8; 4],
    from_client: FrameReader,
    from_upstream: FrameReader,
    family: Option<UsageFamily>,
    meter: Option<Meter>,
    usage: VecDeque<Usage>,
    cbuf: Vec<u8>,
    ubuf: Vec<u8>,
    /// Provider bytes read before the session began (after its 101), still to be relayed.
    early_upstream: Vec<u8>,
    scratch: Vec<u8>,
    /// Close frames seen from each side.
    client_closing: bool,
    upstream_closing: bool,
    ended: Option<End>,
    shutdown: ShutdownWatch,
    /// When the session must end, from `limits.lifetime`.
    deadline: Option<Instant>,
    /// The token's model limits on the client's events, when it has any (boxed: most sessions have
    /// none, and the skimmer's state would otherwise sit in every session).
    guard: Option<Box<ModelGuard>>,
    /// Payload bytes sent to the client.
    pub sent: u64,
}

impl<'a, C, U> Session<'a, C, U>
where
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    /// A session over two connections whose handshakes are done. `early` holds bytes the client sent
    /// after its handshake that were already read; `family` the usage reports to meter; `mask` a
    /// random mask for frames the relay itself writes to the provider.
    pub fn new(
        client: &'a mut C,
        upstream: &'a mut U,
        limits: Limits,
        family: Option<UsageFamily>,
        mask: [u8; 4],
        early: Vec<u8>,
        shutdown: ShutdownWatch,
    ) -> Self {
        Session {
            client,
            upstream,
            limits,
            mask,
            from_client: FrameReader::new(Sender::Client, limits.max_frame),
            from_upstream: FrameReader::new(Sender::Server, limits.max_frame),
            family,
            meter: None,
            usage: VecDeque::new(),
            cbuf: early,
            ubuf: Vec::with_capacity(READ_CHUNK),
            early_upstream: Vec::new(),
            scratch: Vec::new(),
            client_closing: false,
            upstream_closing: false,
            ended: None,
            shutdown,
            deadline: limits.lifetime.map(|d| Instant::now() + d),
            guard: None,
            sent: 0,
        }
    }

    /// Hold the client's events to the token's model limits: a message naming another model ends the
    /// session with 1008 before the piece that completes it reaches the provider.
    pub fn guard_models(&mut self, guard: ModelGuard) {
        self.guard = Some(Box::new(guard));
    }

    /// Provider bytes that came with its handshake answer: relayed first, checked like any.
    pub fn push_upstream(&mut self, bytes: Vec<u8>) {
        self.early_upstream = bytes;
    }

    /// Relay until a message reports usage or the session ends.
    pub async fn next(&mut self) -> Step {
        loop {
            if let Some(u) = self.usage.pop_front() {
                return Step::Usage(u);
            }
            if let Some(end) = self.ended {
                return Step::End(end);
            }
            if !self.early_upstream.is_empty() {
                let bytes = std::mem::take(&mut self.early_upstream);
                self.relay_upstream_bytes(&bytes).await;
                continue;
            }
            if !self.cbuf.is_empty() {
                let bytes = std::mem::take(&mut self.cbuf);
                self.relay_client_bytes(&bytes).await;
                continue;
            }
            self.cbuf.reserve(READ_CHUNK);
            self.ubuf.clear();
            self.ubuf.reserve(READ_CHUNK);
            let idle = tokio::time::sleep(self.limits.idle);
            let deadline = self.deadline;
            let time_up = async move {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                r = self.client.read_buf(&mut self.cbuf) => match r {
                    Ok(n) if n > 0 => {}
                    _ => {
                        self.cbuf.clear();
                        // A client gone after its close frame has finished the close handshake.
                        self.ended = Some(if self.client_closing { End::Closed } else { End::ClientGone });
                        // Gone without one: the provider is told so with a close frame (it would
                        // otherwise see an abnormal 1006), when no frame of the client's is cut off.
                        if self.may_say_close() && self.from_client.at_boundary() {
                            let f = close_frame(1001, "client gone", Some(self.mask));
                            self.write_close(true, &f).await;
                        }
                        let _ = self.upstream.shutdown().await;
                    }
                },
                r = self.upstream.read_buf(&mut self.ubuf) => match r {
                    Ok(n) if n > 0 => {
                        let bytes = std::mem::take(&mut self.ubuf);
                        self.relay_upstream_bytes(&bytes).await;
                        self.ubuf = bytes;
                    }
                    _ => {
                        self.ended = Some(if self.upstream_closing { End::Closed } else { End::UpstreamGone });
                        // The same for a provider gone without a close frame: the client gets 1011.
                        if self.may_say_close() && self.from_upstream.at_boundary() {
                            let f = close_frame(1011, "provider closed the connection", None);
                            self.write_close(false, &f).await;
                        }
                        let _ = self.client.shutdown().await;
                    }
                },
                () = idle => {
                    self.close_both(1001, "idle timeout").await;
                    self.ended = Some(End::Idle);
                }
                // 1008 (policy violation) as for every limit that ends a session; the reason names
                // the limit, never the token.
                () = time_up => {
                    self.close_both(1008, "session time limit reached").await;
                    self.ended = Some(End::TimeLimit);
                }
                () = self.shutdown.wait() => {
                    self.close_both(1001, "relay shutting down").await;
                    self.ended = Some(End::ShuttingDown);
                }
            }
        }
    }

    /// End the session now: a close frame with `code` and `reason` (which must carry no secret) to
    /// both sides.
    pub async fn close(&mut self, code: u16, reason: &str) {
        if self.ended.is_none() {
            self.close_both(code, reason).await;
            self.ended = Some(End::ClosedByRelay);
        }
    }

    /// Whether the relay may still send a close frame of its own: no side has started closing.
    fn may_say_close(&self) -> bool {
        !self.client_closing && !self.upstream_closing
    }

    /// Write a close frame the relay made to the provider (`upstream`) or the client, bounded in time.
    async fn write_close(&mut self, upstream: bool, frame: &[u8]) {
        let t = self.limits.write_timeout;
        if upstream {
            send(&mut *self.upstream, frame, t).await;
        } else {
            send(&mut *self.client, frame, t).await;
        }
    }

    async fn close_both(&mut self, code: u16, reason: &str) {
        if !self.client_closing {
            let f = close_frame(code, reason, None);
            send(&mut *self.client, &f, self.limits.write_timeout).await;
        }
        if !self.upstream_closing {
            let f = close_frame(code, reason, Some(self.mask));
            send(&mut *self.upstream, &f, self.limits.write_timeout).await;
        }
        let _ = self.client.shutdown().await;
        let _ = self.upstream.shutdown().await;
    }

    /// Check the client's bytes frame by frame and pass them to the provider.
    async fn relay_client_bytes(&mut self, bytes: &[u8]) {
        let mut closing = false;
        let guard = &mut self.guard;
        let checked = self
            .from_client
            .feed(bytes, &mut self.scratch, &mut |e| match e {
                Event::Close { .. } => closing = true,
                Event::Data { bytes, .. } => {
                    if let Some(g) = guard.as_deref_mut() {
                        g.feed(bytes);
                    }
                }
                Event::MessageEnd { .. } => {
                    if let Some(g) = guard.as_deref_mut() {
                        g.end_message();
                    }
                }
            });
        if let Err(e) = checked {
            self.close_both(e.close_code(), "protocol error").await;
            self.ended = Some(End::ClientProtocol(e));
            return;
        }
        // Nothing of these bytes is forwarded: the provider never holds the whole refused event.
        if let Some(refusal) = self.guard.as_ref().and_then(|g| g.refused()) {
            self.close_both(1008, refusal.reason()).await;
            self.ended = Some(End::Refused(refusal));
            return;
        }
        self.client_closing |= closing;
        if !send(&mut *self.upstream, bytes, self.limits.write_timeout).await {
            self.close_both(1011, "provider unreachable").await;
            self.ended = Some(End::UpstreamGone);
        }
    }

    /// Check the provider's bytes frame by frame, meter its messages, and pass them to the client.
    async fn relay_upstream_bytes(&mut self, bytes: &[u8]) {
        let (family, meter, usage) = (self.family, &mut self.meter, &mut self.usage);
        let mut closing = false;
        let checked = self
            .from_upstream
            .feed(bytes, &mut self.scratch, &mut |e| match e {
                Event::Data { message, bytes } => {
                    if let (Some(f), Opcode::Text | Opcode::Binary) = (family, message) {
                        meter
                            .get_or_insert_with(|| Meter::new(f, BodyFormat::Json))
                            .feed(bytes);
                    }
                }
                Event::MessageEnd { .. } => {
                    if let Some(m) = meter.take() {
                        let m = m.finish();
                        if m.status == MeterStatus::Complete {
                            usage.push_back(m.usage);
                        }
                    }
                }
                Event::Close { .. } => closing = true,
            });
        if let Err(e) = checked {
            self.close_both(1011, "provider protocol error").await;
            self.ended = Some(End::UpstreamProtocol(e));
            return;
        }
        self.upstream_closing |= closing;
        if send(&mut *self.client, bytes, self.limits.write_timeout).await {
            self.sent += bytes.len() as u64;
        } else {
            self.close_both(1001, "client gone").await;
            self.ended = Some(End::ClientGone);
        }
    }
}

/// Write all of `bytes` and flush, within `timeout`; `false` when that failed. The flush matters over
/// TLS: a write the socket could not take whole leaves its tail in the TLS layer's buffer, and a session
/// may have nothing more to write for a long time (the last event of a response, a 101 before a provider
/// that waits for the client).
pub async fn send<W: AsyncWrite + Unpin + ?Sized>(
    w: &mut W,
    bytes: &[u8],
    timeout: Duration,
) -> bool {
    let done = tokio::time::timeout(timeout, async {
        w.write_all(bytes).await?;
        w.flush().await
    })
    .await;
    matches!(done, Ok(Ok(())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::shutdown::Shutdown;
    use tokio::io::{duplex, DuplexStream};

    const LIMITS: Limits = Limits {
        max_frame: 1 << 20,
        idle: Duration::from_secs(5),
        write_timeout: Duration::from_secs(5),
        lifetime: None,
    };

    /// Everything a peer reads until its connection ends.
    async fn read_all(mut s: DuplexStream) -> Vec<u8> {
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out).await;
        out
    }

    /// A session whose provider (or client, with `provider_vanishes` false) writes one text frame and
    /// drops its connection without a close frame; returns what the other side read.
    async fn vanish(provider_vanishes: bool) -> (Step, Vec<u8>) {
        let (mut client, mut client_peer) = duplex(1 << 16);
        let (mut upstream, mut upstream_peer) = duplex(1 << 16);
        let (gone, stays) = if provider_vanishes {
            (&mut upstream_peer, client_peer)
        } else {
            (&mut client_peer, upstream_peer)
        };
        let text = if provider_vanishes {
            vec![0x81, 2, b'h', b'i']
        } else {
            vec![0x81, 0x82, 0, 0, 0, 0, b'h', b'i']
        };
        gone.write_all(&text).await.unwrap();
        gone.shutdown().await.unwrap();
        let reader = tokio::spawn(read_all(stays));
        let shutdown = Shutdown::new();
        let mut s = Session::new(
            &mut client,
            &mut upstream,
            LIMITS,
            None,
            [1, 2, 3, 4],
            Vec::new(),
            shutdown.watcher(),
        );
        let step = loop {
            if let Step::End(e) = s.next().await {
                break Step::End(e);
            }
        };
        drop(s);
        drop(client);
        drop(upstream);
        (step, reader.await.unwrap())
    }

    #[tokio::test]
    async fn frames_are_flushed_to_a_buffering_stream() {
        // A client stream that keeps what it is given until flushed, as a TLS stream can.
        let (client, mut client_peer) = duplex(1 << 16);
        let mut client = tokio::io::BufWriter::new(client);
        let (mut upstream, mut upstream_peer) = duplex(1 << 16);
        upstream_peer
            .write_all(&[0x81, 2, b'h', b'i'])
            .await
            .unwrap();
        let shutdown = Shutdown::new();
        let mut s = Session::new(
            &mut client,
            &mut upstream,
            LIMITS,
            None,
            [1, 2, 3, 4],
            Vec::new(),
            shutdown.watcher(),
        );
        let mut got = [0u8; 4];
        tokio::select! {
            _ = s.next() => panic!("the session ended"),
            r = tokio::time::timeout(Duration::from_secs(2), client_peer.read_exact(&mut got)) => {
                r.expect("the frame stayed in the client's buffer").unwrap();
            }
        }
        assert_eq!(got, [0x81, 2, b'h', b'i']);
    }

    #[tokio::test(start_paused = true)]
    async fn a_session_at_its_time_limit_is_closed_on_both_legs_with_1008() {
        let (mut client, client_peer) = duplex(1 << 16);
        let (mut upstream, upstream_peer) = duplex(1 << 16);
        let shutdown = Shutdown::new();
        let limits = Limits {
            idle: Duration::from_secs(3600),
            lifetime: Some(Duration::from_secs(90)),
            ..LIMITS
        };
        let started = Instant::now();
        let mut s = Session::new(
            &mut client,
            &mut upstream,
            limits,
            None,
            [1, 2, 3, 4],
            Vec::new(),
            shutdown.watcher(),
        );
        assert_eq!(s.next().await, Step::End(End::TimeLimit));
        assert_eq!(started.elapsed(), Duration::from_secs(90));
        drop(s);
        drop(client);
        drop(upstream);
        let reason = "session time limit reached";
        assert_eq!(read_all(client_peer).await, close_frame(1008, reason, None));
        assert_eq!(
            read_all(upstream_peer).await,
            close_frame(1008, reason, Some([1, 2, 3, 4]))
        );
    }

    #[tokio::test]
    async fn a_peer_gone_without_a_close_frame_is_reported_to_the_other_with_one() {
        let (step, got) = vanish(true).await;
        assert_eq!(step, Step::End(End::UpstreamGone));
        let mut want = vec![0x81, 2, b'h', b'i'];
        want.extend(close_frame(1011, "provider closed the connection", None));
        assert_eq!(got, want);
        let (step, got) = vanish(false).await;
        assert_eq!(step, Step::End(End::ClientGone));
        let mut want = vec![0x81, 0x82, 0, 0, 0, 0, b'h', b'i'];
        want.extend(close_frame(1001, "client gone", Some([1, 2, 3, 4])));
        assert_eq!(got, want);
    }
}
