//! The accept loop: a listener with a large backlog, a connection permit taken *before* `accept` (so at
//! most `max_connections` sockets are ever open), back-off when `accept` fails (e.g. out of file
//! descriptors), one task per connection, and a drain on shutdown. With `tls` set, each connection's
//! task first runs the TLS handshake (bounded by `tls.handshake_timeout`, so a stalled client holds its
//! permit no longer than that). HTTP lives in `conn.rs`, TLS in `tls.rs`.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::Semaphore;

use crate::app::App;
use crate::conn;
use crate::shutdown::{Shutdown, ShutdownWatch};
use crate::tls::ServerTls;

/// Pending-connection queue; the std/mio default of 128 overflows under a burst of a few hundred
/// connects and costs clients one-second SYN retries (see PERFORMANCE notes in the README).
const LISTEN_BACKLOG: u32 = 4096;
/// Longest pause after repeated `accept` failures.
const MAX_ACCEPT_BACKOFF: Duration = Duration::from_secs(1);
/// How often idle upstream connections past their idle timeout are closed.
const POOL_SWEEP_EVERY: Duration = Duration::from_secs(15);

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
    let permits = Arc::new(Semaphore::new(app.cfg.server.max_connections));
    let sweeper = {
        let app = app.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(POOL_SWEEP_EVERY);
            loop {
                tick.tick().await;
                app.upstream.sweep();
            }
        })
    };
    tokio::pin!(stop);
    let mut backoff = Duration::from_millis(5);
    loop {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => p.expect("the semaphore is never closed"),
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
                app.log.warn(
                    "accept failed",
                    json!({"error": e.to_string(), "retry_ms": backoff.as_millis() as u64}),
                );
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_ACCEPT_BACKOFF);
                continue;
            }
        };
        // Small writes (SSE events) must leave at once, not wait for Nagle.
        stream.set_nodelay(true).ok();
        let app = app.clone();
        let watch = shutdown.watcher();
        let tls = tls.clone();
        tokio::spawn(async move {
            match tls {
                None => conn::serve(app, stream, peer, watch).await,
                Some(tls) => serve_tls(app, &tls, stream, peer, watch).await,
            }
            drop(permit);
        });
    }
    drop(listener);
    sweeper.abort();
    let grace = Duration::from_secs(app.cfg.server.shutdown_grace);
    app.log
        .info("shutting down", json!({"grace_secs": grace.as_secs()}));
    let clean = shutdown.drain(grace).await;
    app.log.info("stopped", json!({"drained": clean}));
}

/// Handshake, then HTTP over the TLS stream. A failed or timed-out handshake just closes: on a public
/// port most of them are scanners, so they are not logged one by one.
async fn serve_tls(
    app: Arc<App>,
    tls: &ServerTls,
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    mut watch: ShutdownWatch,
) {
    let accepted = tokio::select! {
        a = tls.accept(stream) => a,
        // A handshake in progress is not a request in flight: drop it at once on shutdown.
        _ = watch.wait() => return,
    };
    if let Ok(io) = accepted {
        conn::serve(app, io, peer, watch).await;
    }
}
