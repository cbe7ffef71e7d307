//! The accept loop: a listener with a large backlog, a connection permit taken *before* `accept` (so at
//! most `max_connections` sockets are ever open), back-off when `accept` fails (e.g. out of file
//! descriptors), one task per connection, and a drain on shutdown. With `tls` set, each connection's
//! task first runs the TLS handshake (bounded by `tls.handshake_timeout`, so a stalled client holds its
//! permit no longer than that). A connection over its address's share (`limits/conns.rs`) is closed at
//! once with a one-shot 429 written without waiting. HTTP lives in `request/conn.rs`, TLS in `server/tls.rs`.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::net::{TcpListener, TcpSocket, TcpStream};

use crate::app::App;
use crate::error::Error;
use crate::http::respond::Response;
use crate::limits::conns::{ConnLimits, Reclaim, Slot};
use crate::request::conn;
use crate::server::shutdown::{Shutdown, ShutdownWatch};
use crate::server::tls::ServerTls;

/// Pending-connection queue; the std/mio default of 128 overflows under a burst of a few hundred
/// connects and costs clients one-second SYN retries (see PERFORMANCE notes in the README).
const LISTEN_BACKLOG: u32 = 4096;
/// Longest pause after repeated `accept` failures.
const MAX_ACCEPT_BACKOFF: Duration = Duration::from_secs(1);
/// How often idle upstream connections past their idle timeout are closed.
const POOL_SWEEP_EVERY: Duration = Duration::from_secs(15);
/// Log lines per second about connections refused by the per-address cap: a client opening thousands
/// of connections must not turn into thousands of log lines (the metrics count every one).
const REFUSED_LOG_LINES_PER_SEC: u64 = 2;

/// Bind the listening socket.
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    // Restarting right after a stop must not fail on sockets in TIME_WAIT.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Serve until `stop` resolves, then stop accepting and give in-flight requests the grace period.
/// With `tls`, the listener speaks HTTPS.
pub async fn run(
    app: Arc<App>,
    listener: TcpListener,
    tls: Option<Arc<ServerTls>>,
    stop: impl Future<Output = ()>,
) {
    let shutdown = Shutdown::new();
    let limits = ConnLimits::new(
        app.cfg.server.max_connections,
        app.cfg.server.max_connections_per_ip,
        app.nets.trusted_proxies.clone(),
    );
    let refused_log = Sampler::new(REFUSED_LOG_LINES_PER_SEC);
    let sweeper = {
        let app = app.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(POOL_SWEEP_EVERY);
            loop {
                tick.tick().await;
                app.upstream.pool.sweep();
            }
        })
    };
    tokio::pin!(stop);
    let mut backoff = Duration::from_millis(5);
    loop {
        let permit = tokio::select! {
            p = limits.permit() => p,
            _ = &mut stop => break,
        };
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = &mut stop => break,
        };
        let (stream, peer) = match accepted {
            Ok(a) => {
                backoff = Duration::from_millis(5);
                a
            }
            Err(e) => {
                app.obs.log.warn(
                    "accept failed",
                    json!({"error": e.to_string(), "retry_ms": backoff.as_millis() as u64}),
                );
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_ACCEPT_BACKOFF);
                continue;
            }
        };
        let slot = match limits.admit(permit, peer.ip()) {
            Ok(slot) => slot,
            Err(_) => {
                refuse(&app, &refused_log, &stream, peer, tls.is_some());
                continue;
            }
        };
        // Small writes (SSE events) must leave at once, not wait for Nagle.
        stream.set_nodelay(true).ok();
        let app = app.clone();
        let watch = shutdown.watcher();
        let tls = tls.clone();
        let reclaim = limits.reclaim();
        tokio::spawn(serve_accepted(app, tls, stream, peer, watch, reclaim, slot));
    }
    drop(listener);
    sweeper.abort();
    let grace = app.cfg.server.shutdown_grace;
    app.obs
        .log
        .info("shutting down", json!({"grace_secs": grace.as_secs()}));
    let clean = shutdown.drain(grace).await;
    app.obs.log.info("stopped", json!({"drained": clean}));
}

/// One accepted connection's task: plain HTTP, or TLS first; `slot` is held until it ends.
async fn serve_accepted(
    app: Arc<App>,
    tls: Option<Arc<ServerTls>>,
    stream: TcpStream,
    peer: SocketAddr,
    watch: ShutdownWatch,
    reclaim: Reclaim,
    slot: Slot,
) {
    match tls {
        None => conn::serve(app, stream, peer, watch, reclaim).await,
        // Boxed: a TLS connection's state (the handshake, then the TLS session beside the connection
        // loop) is kilobytes larger than a plain one's, and a task is as large as its largest branch:
        // unboxed, every plain connection would carry it.
        Some(tls) => Box::pin(serve_tls(app, &tls, stream, peer, watch, reclaim)).await,
    }
    drop(slot);
}

/// Handshake, then HTTP over the TLS stream. A failed or timed-out handshake just closes: on a public
/// port most of them are scanners, so they are not logged one by one.
async fn serve_tls(
    app: Arc<App>,
    tls: &ServerTls,
    stream: TcpStream,
    peer: SocketAddr,
    mut watch: ShutdownWatch,
    reclaim: Reclaim,
) {
    let accepted = tokio::select! {
        a = tls.accept(stream) => a,
        // A handshake in progress is not a request in flight: drop it at once on shutdown.
        _ = watch.wait() => return,
    };
    if let Ok(io) = accepted {
        conn::serve(app, io, peer, watch, reclaim).await;
    }
}

/// Close a connection over its address's share. On plain HTTP a short 429 goes out if the socket
/// takes it at once (`try_write`: never waits, never buffers); on HTTPS nothing can be said before a
/// handshake, so the socket just closes.
fn refuse(app: &App, log_sampler: &Sampler, stream: &TcpStream, peer: SocketAddr, tls: bool) {
    let e = Error::TooManyConnections;
    app.obs.metrics.rejection(e.reason());
    if !tls {
        let mut r = Response::error(&e);
        r.close = true;
        let _ = stream.try_write(&r.encode(false));
    }
    if log_sampler.admit(app.clock.unix_now()) {
        app.obs.log.warn(
            "connection refused: per-address connection cap reached",
            json!({"ip": peer.ip().to_string(), "max_connections_per_ip": app.cfg.server.max_connections_per_ip}),
        );
    }
}

/// Admits at most `per_second` events per wall-clock second (for sampling log lines under floods).
#[derive(Debug)]
pub struct Sampler {
    per_second: u64,
    /// Second in the high 32 bits, count in the low 32: one atomic word, no lock.
    state: AtomicU64,
}

impl Sampler {
    pub fn new(per_second: u64) -> Sampler {
        Sampler {
            per_second,
            state: AtomicU64::new(0),
        }
    }

    pub fn admit(&self, now: u64) -> bool {
        let sec = now & 0xffff_ffff;
        let mut cur = self.state.load(Ordering::Relaxed);
        loop {
            let (s, n) = (cur >> 32, cur & 0xffff_ffff);
            let next = if s == sec {
                (sec << 32) | (n + 1)
            } else {
                (sec << 32) | 1
            };
            if s == sec && n >= self.per_second {
                return false;
            }
            match self
                .state
                .compare_exchange_weak(cur, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return true,
                Err(actual) => cur = actual,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A connection's task is allocated at the size of this future's largest state, and all of it is
    /// copied in, so every open connection (an SSE stream: for minutes) holds all of it. What is large
    /// and rarely needed (connecting to a provider, TLS, a WebSocket session, the Redis store) is
    /// boxed; this keeps a change from quietly growing every connection again. In a debug build it is
    /// 4,104 bytes; with the TLS branch unboxed it was 7,920, with the retry's connect unboxed 4,736.
    /// (Before both were boxed, DHAT put the task's allocation at 8,576 bytes in a release build.)
    #[test]
    fn a_connection_task_stays_small() {
        fn future_size<F, Fut>(_: F) -> usize
        where
            F: FnOnce(
                Arc<App>,
                Option<Arc<ServerTls>>,
                TcpStream,
                SocketAddr,
                ShutdownWatch,
                Reclaim,
                Slot,
            ) -> Fut,
        {
            std::mem::size_of::<Fut>()
        }
        let size = future_size(serve_accepted);
        println!("connection task future: {size} bytes");
        assert!(size <= 4608, "a connection's task future of {size} bytes");
    }

    #[test]
    fn sampler_caps_each_second() {
        let s = Sampler::new(3);
        let admitted = (0..10).filter(|_| s.admit(100)).count();
        assert_eq!(admitted, 3);
        assert!(s.admit(101), "a new second starts a new allowance");
    }
}
