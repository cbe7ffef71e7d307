//! One client connection, start to end: wait for each request head, hand the request to
//! `request/route.rs`, and loop for keep-alive and pipelined requests until the outcome, the client or a
//! shutdown ends it. Every request, including the second one in a pipelined burst, starts again from
//! `parse_request_head`: bytes after a request's body are never forwarded on the strength of an earlier
//! request's checks. The socket side (reads, deadlines, bodies) is `request/client.rs`.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};

use crate::app::App;
use crate::http::head::{HeadLimits, RequestHead, ResponseHead};
use crate::limits::conns::Reclaim;
use crate::request::client::{Client, Closing, Pace};
use crate::request::outcome::Next;
use crate::request::{reply, route};
use crate::server::shutdown::ShutdownWatch;

/// Serve one connection until it closes, the relay shuts down, or `reclaim` takes it back while idle.
pub async fn serve<S>(
    app: Arc<App>,
    io: S,
    peer: SocketAddr,
    shutdown: ShutdownWatch,
    reclaim: Reclaim,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    // Held for the life of the connection, and given back even if a request task panics.
    let _open = app.obs.stats.active_connections.enter();
    let server = &app.cfg.server;
    let mut client = Client::new(io, peer, pace(app.as_ref()));
    let limits = head_limits(app.as_ref());
    // One head each way for the life of the connection: each request, and each provider's answer,
    // is parsed into it, reusing its buffers.
    let mut head = RequestHead::default();
    let mut answer = ResponseHead::default();
    let mut closing = Closing::new(Some(shutdown.clone()), reclaim);
    loop {
        match client
            .read_head(&mut head, &limits, server.idle_timeout(), &mut closing)
            .await
        {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => {
                // The head could not be framed: answer once and close, the stream is out of sync.
                reply::unframed(&app, &mut client, None, &e).await;
                break;
            }
        }
        let next = route::handle(&app, &mut client, &head, &mut answer, &shutdown).await;
        if next == Next::Close || shutdown.is_shutting_down() || client.is_eof() {
            break;
        }
    }
    client.shutdown().await;
}

/// The client connection's deadlines, from `server` config.
pub fn pace(app: &App) -> Pace {
    let server = &app.cfg.server;
    Pace {
        read_timeout: server.read_timeout(),
        write_timeout: server.write_timeout(),
        min_body_rate: server.min_body_rate,
    }
}

/// The request-head limits, from `server` config.
pub fn head_limits(app: &App) -> HeadLimits {
    let server = &app.cfg.server;
    HeadLimits {
        max_head_bytes: server.max_header_bytes,
        max_headers: server.max_headers,
        max_uri_bytes: server.max_uri_bytes,
    }
}
