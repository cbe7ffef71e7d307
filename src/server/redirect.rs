//! The optional plain-HTTP listener of an HTTPS relay (`tls.redirect_http_port`): every request gets a
//! `308 Permanent Redirect` to the same target on `https://`, and the connection closes. 308 rather
//! than 301 so that a POST stays a POST with its body (RFC 9110 §15.4.9). Nothing is ever proxied here:
//! a token sent in clear has already been exposed, and serving it would teach clients that plain HTTP
//! works.
//!
//! Heads are parsed by the same strict `http/head.rs` and `http/framing.rs` gate as on the main listener, with
//! the same limits and deadlines; what fails it gets the same 4xx and a close. The `Location` host is the
//! configured name (`tls.redirect_host`, else `server.host`), never the request's `Host`: reflecting a
//! client-chosen name would make the relay an open redirector for anyone who can set a Host header
//! (issue 9, finding 13). The port is the HTTPS listener's, left out when it is 443.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Map};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::app::App;
use crate::error::Error;
use crate::http::framing::request_framing;
use crate::http::head::RequestHead;
use crate::http::respond::Response;
use crate::log::redact_target;
use crate::request::client::{Client, Closing};
use crate::request::conn::{head_limits, pace};
use crate::request::reply;

/// Connections the redirect listener holds at once. Each lives for one short exchange; past this,
/// new ones wait in the kernel backlog.
const MAX_CONNECTIONS: usize = 1024;
/// After answering, how long the unread rest of a request (a POST body) is read and dropped before the
/// socket closes: closing with unread input makes the kernel send a reset that can destroy the
/// response before the client has read it (RFC 9112 §9.6).
const LINGER: Duration = Duration::from_secs(2);
/// Bytes drained during the linger; a client still sending after this gets the reset.
const LINGER_BYTES: usize = 256 * 1024;
/// The `Location` for `head`: `https://` + `name` (`config::HttpRedirect::host`) + the HTTPS port unless 443 +
/// the target.
///
/// Errors (all 400): `OPTIONS *`, which names no resource to redirect to. Framing errors from
/// `http/framing.rs` (a missing or repeated Host included) are passed on as they are.
pub fn location(head: &RequestHead, name: &str, https_port: u16) -> Result<String, Error> {
    request_framing(head)?;
    if !head.target().starts_with('/') {
        return Err(Error::BadRequest(
            "no https URL for an asterisk-form target",
        ));
    }
    let port = if https_port == 443 {
        String::new()
    } else {
        format!(":{https_port}")
    };
    Ok(format!("https://{name}{port}{}", head.target()))
}

/// Answer on `listener` until `stop` resolves. `name` is the relay's public name
/// (`config::HttpRedirect::host`),
/// `https_port` the port of the relay's HTTPS listener.
pub async fn run(
    app: Arc<App>,
    listener: TcpListener,
    name: String,
    https_port: u16,
    stop: impl Future<Output = ()>,
) {
    let name: Arc<str> = name.into();
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    tokio::pin!(stop);
    loop {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => p.expect("the semaphore is never closed"),
            _ = &mut stop => return,
        };
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = &mut stop => return,
        };
        let Ok((stream, peer)) = accepted else {
            // Out of descriptors and the like: the main listener logs these; back off quietly.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        stream.set_nodelay(true).ok();
        let app = app.clone();
        let name = name.clone();
        tokio::spawn(async move {
            serve(&app, stream, peer, &name, https_port).await;
            drop(permit);
        });
    }
}

/// One connection: read one head, answer it, close.
pub async fn serve<S>(app: &App, io: S, peer: SocketAddr, name: &str, https_port: u16)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let server = &app.cfg.server;
    let mut client = Client::new(io, peer, pace(app));
    let limits = head_limits(app);
    let mut head = RequestHead::default();
    match client
        .read_head(
            &mut head,
            &limits,
            server.idle_timeout(),
            &mut Closing::never(),
        )
        .await
    {
        Ok(true) => {}
        Ok(false) => return,
        Err(e) => {
            reply::unframed(app, &mut client, None, &e).await;
            close(&mut client).await;
            return;
        }
    }
    match location(&head, name, https_port) {
        Ok(loc) => {
            let r = Response {
                status: 308,
                headers: vec![("location".into(), loc)],
                body: Vec::new(),
                close: true,
            };
            let _ = client.write_all(&r.encode(head.method() == "HEAD")).await;
            app.obs.stats.count_status(r.status);
            if !app.obs.log.access
                || !app
                    .obs
                    .log_sampler
                    .admit(peer.ip(), "https_redirect", app.clock.unix_now())
            {
                return close(&mut client).await;
            }
            let mut f = Map::new();
            f.insert("rid".into(), json!(app.obs.ids.next()));
            f.insert("ip".into(), json!(peer.ip().to_string()));
            f.insert("method".into(), json!(head.method()));
            f.insert(
                "path".into(),
                json!(redact_target(head.target().as_bytes())),
            );
            f.insert("status".into(), json!(r.status));
            f.insert("reason".into(), json!("https_redirect"));
            app.obs.log.access(f);
        }
        Err(e) => reply::unframed(app, &mut client, Some(&head), &e).await,
    }
    close(&mut client).await;
}

/// Half-close, then read and drop what the client still sends, for a bounded time and amount.
async fn close<S: AsyncRead + AsyncWrite + Unpin>(client: &mut Client<S>) {
    client.shutdown().await;
    client.linger(Instant::now() + LINGER, LINGER_BYTES).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::head::{parse_request_head, HeadLimits};

    fn head(raw: &str) -> RequestHead {
        let limits = HeadLimits {
            max_head_bytes: 16 * 1024,
            max_headers: 100,
            max_uri_bytes: 8 * 1024,
        };
        parse_request_head(raw.as_bytes(), &limits)
            .unwrap()
            .expect("a complete head")
    }

    fn loc(raw: &str, port: u16) -> Result<String, Error> {
        location(&head(raw), "relay.example.com", port)
    }

    #[test]
    fn location_keeps_the_target_and_uses_the_https_port() {
        let get = "GET /relayapi/rt1.x/chat/completions?a=1&b=%20 HTTP/1.1\r\nHost: relay.example.com\r\n\r\n";
        assert_eq!(
            loc(get, 443).unwrap(),
            "https://relay.example.com/relayapi/rt1.x/chat/completions?a=1&b=%20"
        );
        assert_eq!(
            loc(get, 8443).unwrap(),
            "https://relay.example.com:8443/relayapi/rt1.x/chat/completions?a=1&b=%20"
        );
        assert_eq!(
            location(&head("GET /h HTTP/1.1\r\nHost: x\r\n\r\n"), "[::1]", 443).unwrap(),
            "https://[::1]/h"
        );
    }

    #[test]
    fn the_client_host_is_never_reflected() {
        // Issue 9, finding 13: whatever the client names, it is sent to the configured name.
        for raw in [
            "GET /x HTTP/1.1\r\nHost: evil.example\r\n\r\n",
            "GET /x HTTP/1.1\r\nHost: evil.example:80\r\n\r\n",
            "GET /x HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n",
            "GET /x HTTP/1.0\r\n\r\n",
        ] {
            assert_eq!(
                loc(raw, 443).unwrap(),
                "https://relay.example.com/x",
                "{raw:?}"
            );
        }
    }

    #[test]
    fn requests_without_a_target_or_with_bad_framing_are_refused() {
        let e = loc("OPTIONS * HTTP/1.1\r\nHost: relay.example.com\r\n\r\n", 443).unwrap_err();
        assert_eq!(e.status(), 400);
        // The framing gate's own refusals pass through.
        for raw in [
            "GET / HTTP/1.1\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
        ] {
            assert_eq!(loc(raw, 443).unwrap_err().status(), 400, "{raw:?}");
        }
    }
}
