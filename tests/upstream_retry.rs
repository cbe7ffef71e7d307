//! Issue 10, item 4: a pooled provider connection that goes stale at the instant the relay reuses it.
//! The mock provider here answers the first request on each connection with keep-alive, so the relay
//! pools the connection, and treats the next request on that connection as the test says: close after
//! its first byte without answering (the provider's idle close racing the reuse), or begin an answer and
//! close. The relay must retry exactly when no byte of the request can have been processed, count the
//! call once, and give the call back only when the request provably never reached the provider.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use common::*;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const CHAT: &str = r#"{"model":"gpt-4o-mini","messages":[]}"#;
const ANSWER: &str = r#"{"id":"chatcmpl-1","object":"chat.completion","choices":[]}"#;

/// What the mock does with the second request on a connection (the one the relay sends on a pooled
/// connection).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
enum Second {
    /// Read its first byte, then close without a word: the request was never looked at.
    CloseAtFirstByte = 0,
    /// Read it whole, send the start of a status line, then close: the answer had begun.
    BeginThenClose = 1,
}

/// What the mock does with a request on a fresh connection once `hostile` is set: read it whole and
/// close without answering (a provider that took the request and died).
struct StaleMock {
    addr: SocketAddr,
    second: Arc<AtomicU8>,
    hostile: Arc<std::sync::atomic::AtomicBool>,
    /// The targets of the requests the mock read whole, in order.
    complete: Arc<Mutex<Vec<String>>>,
    accepted: Arc<AtomicUsize>,
    /// Stops the accept loop, whose end drops the listener.
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    accepting: Option<tokio::task::JoinHandle<()>>,
}

impl StaleMock {
    async fn start(second: Second) -> StaleMock {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
        let m = StaleMock {
            addr: listener.local_addr().unwrap(),
            second: Arc::new(AtomicU8::new(second as u8)),
            hostile: Arc::default(),
            complete: Arc::default(),
            accepted: Arc::default(),
            stop: Some(stop_tx),
            accepting: None,
        };
        let (mode, hostile, complete, accepted) = (
            m.second.clone(),
            m.hostile.clone(),
            m.complete.clone(),
            m.accepted.clone(),
        );
        let mut m = m;
        m.accepting = Some(tokio::spawn(async move {
            loop {
                let sock = tokio::select! {
                    s = listener.accept() => match s { Ok((s, _)) => s, Err(_) => continue },
                    _ = &mut stop_rx => return,
                };
                accepted.fetch_add(1, Ordering::SeqCst);
                let second = if mode.load(Ordering::SeqCst) == 0 {
                    Second::CloseAtFirstByte
                } else {
                    Second::BeginThenClose
                };
                let hostile = hostile.load(Ordering::SeqCst);
                tokio::spawn(serve(sock, second, hostile, complete.clone()));
            }
        }));
        m
    }

    /// Stop listening: from now on every new connection is refused.
    async fn stop_listening(&mut self) {
        self.stop.take().unwrap().send(()).unwrap();
        self.accepting.take().unwrap().await.unwrap();
    }

    fn complete(&self) -> Vec<String> {
        self.complete.lock().unwrap().clone()
    }
}

/// One connection: the first request answered with keep-alive (unless hostile), the second per `second`.
async fn serve(mut s: TcpStream, second: Second, hostile: bool, complete: Arc<Mutex<Vec<String>>>) {
    let mut buf = Vec::new();
    if hostile {
        if let Some(target) = read_request(&mut s, &mut buf).await {
            complete.lock().unwrap().push(target);
        }
        return;
    }
    let Some(target) = read_request(&mut s, &mut buf).await else {
        return;
    };
    complete.lock().unwrap().push(target);
    let answer = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{ANSWER}",
        ANSWER.len()
    );
    if s.write_all(answer.as_bytes()).await.is_err() {
        return;
    }
    match second {
        Second::CloseAtFirstByte => {
            // The next request's first byte arrives on an idle connection the provider is closing.
            let mut one = [0u8; 1];
            let _ = s.read(&mut one).await;
        }
        Second::BeginThenClose => {
            if let Some(target) = read_request(&mut s, &mut buf).await {
                complete.lock().unwrap().push(target);
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-le").await;
            }
        }
    }
}

/// Read one request with a Content-Length body; its target, or `None` if the connection ended first.
async fn read_request(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<String> {
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let mut chunk = [0u8; 4096];
        let n = s.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    while buf.len() < head_end + len {
        let mut chunk = [0u8; 4096];
        let n = s.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    buf.drain(..head_end + len);
    Some(head.split(' ').nth(1).unwrap_or_default().to_string())
}

fn relay_for(mock: &StaleMock, placeholder: &MockUpstream) -> Relay {
    let mut cfg = test_config(placeholder);
    cfg["providers"]["openai"]["base_url"] = json!(format!("http://{}/v1", mock.addr));
    Relay::start(cfg)
}

/// Calls of `token` on one keep-alive client connection, so each one follows the last at once.
async fn calls(relay: &Relay, token: &str, n: usize) -> Vec<Resp> {
    let mut s = connect_from([127, 0, 0, 2], relay.addr).await;
    let mut buf = Vec::new();
    let target = format!("/relayapi/{token}/chat/completions?n=");
    let mut out = Vec::new();
    for i in 0..n {
        let r = send_on(&mut s, &mut buf, "POST", &format!("{target}{i}"), &[], CHAT)
            .await
            .expect("an answer");
        out.push(r);
    }
    out
}

/// The calls the store counts for the token `jti` (admin API).
async fn calls_used(relay: &Relay, jti: &str) -> u64 {
    let r = relay
        .admin("GET", &format!("/admin/v1/tokens/{jti}"), "")
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v: Value = r.json();
    v["calls_used"].as_u64().unwrap()
}

async fn metric(relay: &Relay, line: &str) -> u64 {
    let body = request(relay.addr, "GET", "/metrics", &[], "").await.text();
    body.lines()
        .find_map(|l| l.strip_prefix(line))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

const RETRIES: &str = "relayapi_upstream_errors_total{kind=\"stale_connection\"}";

#[tokio::test]
async fn a_pooled_connection_closed_at_reuse_is_retried_once_on_a_fresh_one() {
    let placeholder = MockUpstream::start(false).await;
    let mock = StaleMock::start(Second::CloseAtFirstByte).await;
    let relay = relay_for(&mock, &placeholder);
    let claims = relay.claims("openai", Some(6));
    let token = relay.mint(&claims);
    // Each call after the first finds the connection the last one pooled, which the provider closes as
    // the request arrives: every such call goes again on a new connection and is answered.
    for r in calls(&relay, &token, 6).await {
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["id"], "chatcmpl-1");
    }
    // One complete request per call, in order, and one connection per call (the first, then a retry's
    // for each of the other five).
    let want: Vec<String> = (0..6)
        .map(|i| format!("/v1/chat/completions?n={i}"))
        .collect();
    assert_eq!(mock.complete(), want);
    assert_eq!(mock.accepted.load(Ordering::SeqCst), 6);
    assert_eq!(metric(&relay, RETRIES).await, 5);
    // Counted once each: all six used, and the token is now used up.
    assert_eq!(calls_used(&relay, &claims.jti).await, 6);
    let r = calls(&relay, &token, 1).await;
    assert_eq!(r[0].status, 429, "{}", r[0].text());
}

#[tokio::test]
async fn an_answer_that_began_is_never_retried_and_the_call_counts() {
    let placeholder = MockUpstream::start(false).await;
    let mock = StaleMock::start(Second::BeginThenClose).await;
    let relay = relay_for(&mock, &placeholder);
    let claims = relay.claims("openai", None);
    let token = relay.mint(&claims);
    let got = calls(&relay, &token, 2).await;
    assert_eq!(got[0].status, 200, "{}", got[0].text());
    // The provider had the request and started answering: no second attempt, a 502, and the call stays
    // spent.
    assert_eq!(got[1].status, 502, "{}", got[1].text());
    assert_eq!(mock.complete().len(), 2);
    assert_eq!(mock.accepted.load(Ordering::SeqCst), 1);
    assert_eq!(metric(&relay, RETRIES).await, 0);
    assert_eq!(calls_used(&relay, &claims.jti).await, 2);
}

#[tokio::test]
async fn a_retry_that_cannot_connect_gives_the_call_back() {
    let placeholder = MockUpstream::start(false).await;
    let mut mock = StaleMock::start(Second::CloseAtFirstByte).await;
    let relay = relay_for(&mock, &placeholder);
    let claims = relay.claims("openai", None);
    let token = relay.mint(&claims);
    let mut s = connect_from([127, 0, 0, 2], relay.addr).await;
    let mut buf = Vec::new();
    let target = format!("/relayapi/{token}/chat/completions");
    let r = send_on(&mut s, &mut buf, "POST", &target, &[], CHAT)
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    // The provider stops listening; the pooled connection dies as the next request arrives, and the
    // retry is refused: the request provably never reached the provider, so the call is given back.
    mock.stop_listening().await;
    let r = send_on(&mut s, &mut buf, "POST", &target, &[], CHAT)
        .await
        .unwrap();
    assert_eq!(r.status, 502, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], "upstream_connect_failed");
    assert_eq!(mock.complete().len(), 1);
    assert_eq!(metric(&relay, RETRIES).await, 1);
    assert_eq!(calls_used(&relay, &claims.jti).await, 1);
}

#[tokio::test]
async fn a_fresh_connection_that_took_the_request_keeps_the_call_spent() {
    let placeholder = MockUpstream::start(false).await;
    let mock = StaleMock::start(Second::CloseAtFirstByte).await;
    let relay = relay_for(&mock, &placeholder);
    let claims = relay.claims("openai", None);
    let token = relay.mint(&claims);
    let mut s = connect_from([127, 0, 0, 2], relay.addr).await;
    let mut buf = Vec::new();
    let target = format!("/relayapi/{token}/chat/completions");
    let r = send_on(&mut s, &mut buf, "POST", &target, &[], CHAT)
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    // From now on a new connection reads the request whole and closes without answering: the stale
    // pooled connection earns its one retry, and the retry's silence is not proof of anything (the
    // provider had the whole request), so the call stays spent.
    mock.hostile.store(true, Ordering::SeqCst);
    let r = send_on(&mut s, &mut buf, "POST", &target, &[], CHAT)
        .await
        .unwrap();
    assert_eq!(r.status, 502, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], "upstream_protocol_error");
    assert_eq!(mock.complete().len(), 2);
    assert_eq!(mock.accepted.load(Ordering::SeqCst), 2);
    assert_eq!(metric(&relay, RETRIES).await, 1);
    assert_eq!(calls_used(&relay, &claims.jti).await, 2);
}
