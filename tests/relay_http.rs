//! HTTP/1.1 framing over the wire: the relay binary fed raw bytes. Ambiguous framing is refused with 400
//! and a closed connection; pipelined requests are each checked on their own; limits and timeouts hold.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn setup() -> (MockUpstream, Relay) {
    let up = MockUpstream::start(false).await;
    let relay = Relay::start(test_config(&up));
    (up, relay)
}

/// Send `bytes`, expect one response with `status`, then the connection closed by the relay.
async fn expect_rejected_and_closed(relay: &Relay, bytes: &[u8], status: u16) {
    let mut s = TcpStream::connect(relay.addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let mut buf = Vec::new();
    let r = read_response(&mut s, &mut buf, false)
        .await
        .unwrap_or_else(|| panic!("no response to {:?}", String::from_utf8_lossy(bytes)));
    assert_eq!(
        r.status,
        status,
        "{:?}: {}",
        String::from_utf8_lossy(bytes),
        r.text()
    );
    assert_eq!(r.header("connection"), Some("close"));
    assert!(
        closed_by_peer(&mut s).await,
        "connection left open after {:?}",
        String::from_utf8_lossy(bytes)
    );
}

#[tokio::test]
async fn ambiguous_framing_is_rejected_and_closed() {
    let (up, relay) = setup().await;
    let t = relay.token("openai", None);
    let p = format!("/relayapi/{t}/chat/completions");
    let cases: Vec<String> = vec![
        format!("POST {p} HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
        format!("POST {p} HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"),
        format!("POST {p} HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 5\r\n\r\nhello"),
        format!("POST {p} HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\nhello"),
        format!("POST {p} HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n\r\n"),
        format!("POST {p} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n"),
        format!("POST {p} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n"),
        format!("POST {p} HTTP/1.1\r\nHost: x\r\nX-Folded: a\r\n b\r\nContent-Length: 0\r\n\r\n"),
        format!("POST {p} HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
        format!("POST {p} HTTP/1.1\r\nContent-Length: 0\r\n\r\n"),
        format!("POST {p} HTTP/1.1\r\nHost: x\r\nHost: y\r\nContent-Length: 0\r\n\r\n"),
        format!("POST {p} HTTP/1.1\r\nHost: x\r\nX-Bad: a\rb\r\nContent-Length: 0\r\n\r\n"),
        format!("POST http://evil.example{p} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"),
        format!("POST {p} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n"),
        format!("POST {p} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n"),
        format!("POST {p} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffffffff\r\n"),
    ];
    for c in &cases {
        expect_rejected_and_closed(&relay, c.as_bytes(), 400).await;
    }
    expect_rejected_and_closed(
        &relay,
        format!("GET {p} HTTP/2.0\r\nHost: x\r\n\r\n").as_bytes(),
        505,
    )
    .await;
    // RFC 9112 §6.3: chunked not final is a 400; a coding we do not implement before it is a 501.
    expect_rejected_and_closed(
        &relay,
        format!("POST {p} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n").as_bytes(),
        400,
    )
    .await;
    expect_rejected_and_closed(
        &relay,
        format!(
            "POST {p} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"
        )
        .as_bytes(),
        501,
    )
    .await;
    assert_eq!(up.count(), 0, "nothing ambiguous reached the provider");
}

#[tokio::test]
async fn size_limits() {
    let up = MockUpstream::start(false).await;
    let mut cfg = test_config(&up);
    cfg["server"]["max_body_bytes"] = json!(1024);
    let relay = Relay::start(cfg);
    let t = relay.token("openai", None);
    let p = format!("/relayapi/{t}/chat/completions");
    let big_header = format!(
        "GET {p} HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(20_000)
    );
    expect_rejected_and_closed(&relay, big_header.as_bytes(), 431).await;
    let long_uri = format!(
        "GET /relayapi/{} HTTP/1.1\r\nHost: x\r\n\r\n",
        "a".repeat(9000)
    );
    expect_rejected_and_closed(&relay, long_uri.as_bytes(), 414).await;
    let big_body = format!("POST {p} HTTP/1.1\r\nHost: x\r\nContent-Length: 2048\r\n\r\n");
    expect_rejected_and_closed(&relay, big_body.as_bytes(), 413).await;
    let chunks = format!("POST {p} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n400\r\n{}\r\n400\r\n{}\r\n0\r\n\r\n", "a".repeat(1024), "b".repeat(1024));
    expect_rejected_and_closed(&relay, chunks.as_bytes(), 413).await;
    assert_eq!(up.count(), 0);
}

#[tokio::test]
async fn pipelined_requests_are_each_checked() {
    let (up, relay) = setup().await;
    let good = relay.token("openai", None);
    let body = r#"{"model":"m"}"#;
    // The first request is valid; the second, smuggled behind it on the same connection, has no token.
    let first = format!("POST /relayapi/{good}/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}", body.len());
    let second = format!(
        "POST /relayapi/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let third = "GET /health HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut s = TcpStream::connect(relay.addr).await.unwrap();
    s.write_all(format!("{first}{second}{third}").as_bytes())
        .await
        .unwrap();
    let mut buf = Vec::new();
    let r1 = read_response(&mut s, &mut buf, false).await.unwrap();
    let r2 = read_response(&mut s, &mut buf, false).await.unwrap();
    let r3 = read_response(&mut s, &mut buf, false).await.unwrap();
    assert_eq!((r1.status, r2.status, r3.status), (200, 401, 200));
    assert_eq!(
        up.count(),
        1,
        "the smuggled request did not ride the first token"
    );
}

#[tokio::test]
async fn smuggling_via_content_length_body_is_parsed_as_a_request() {
    let (up, relay) = setup().await;
    let good = relay.token("openai", None);
    // A body that itself looks like a request: it is body bytes (forwarded as the body), never a request.
    let inner = "GET /relayapi/chat/completions HTTP/1.1\r\nHost: x\r\n\r\n";
    let req = format!("POST /relayapi/{good}/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{inner}", inner.len());
    let r = raw(relay.addr, req.as_bytes()).await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(up.count(), 1);
    assert_eq!(up.requests()[0].body, inner.as_bytes());
}

#[tokio::test]
async fn chunked_request_bodies_are_decoded_and_reframed() {
    let (up, relay) = setup().await;
    let t = relay.token("openai", None);
    let req = format!(
        "POST /relayapi/{t}/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\n{{\"mod\r\n8\r\nel\":\"m\"}}\r\n0\r\nX-Trailer: 1\r\n\r\n"
    );
    let r = raw(relay.addr, req.as_bytes()).await.unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let rec = &up.requests()[0];
    assert_eq!(rec.body, br#"{"model":"m"}"#);
    assert_eq!(rec.header("content-length"), Some("13"));
    assert_eq!(rec.header("transfer-encoding"), None);
}

#[tokio::test]
async fn expect_100_continue_only_after_the_token_check() {
    let (up, relay) = setup().await;
    let t = relay.token("openai", None);
    let body = r#"{"model":"m"}"#;
    // Invalid token: the final answer comes at once, without 100 Continue, and the body is never read.
    let mut s = TcpStream::connect(relay.addr).await.unwrap();
    let bad = format!("POST /relayapi/chat/completions HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n", body.len());
    s.write_all(bad.as_bytes()).await.unwrap();
    let mut got = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut got))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&got[..n]);
    assert!(text.starts_with("HTTP/1.1 401"), "{text}");
    // Valid token: 100 Continue first, then the body is accepted.
    let mut s = TcpStream::connect(relay.addr).await.unwrap();
    let good = format!("POST /relayapi/{t}/chat/completions HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n", body.len());
    s.write_all(good.as_bytes()).await.unwrap();
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut got))
        .await
        .unwrap()
        .unwrap();
    assert!(String::from_utf8_lossy(&got[..n]).starts_with("HTTP/1.1 100 Continue"));
    s.write_all(body.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let r = read_response(&mut s, &mut buf, false).await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(up.count(), 1);
}

#[tokio::test]
async fn slow_headers_are_cut_off() {
    let up = MockUpstream::start(false).await;
    let mut cfg = test_config(&up);
    cfg["server"]["read_timeout"] = json!(1);
    let relay = Relay::start(cfg);
    let mut s = TcpStream::connect(relay.addr).await.unwrap();
    s.write_all(b"GET /health HTTP/1.1\r\n").await.unwrap();
    let start = std::time::Instant::now();
    // Dribble a byte every 300 ms: the head deadline is total, not per read.
    let mut closed = false;
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        if s.write_all(b"X").await.is_err() {
            closed = true;
            break;
        }
        let mut tmp = [0u8; 512];
        if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(1), s.read(&mut tmp)).await {
            if n == 0 || String::from_utf8_lossy(&tmp[..n]).contains("408") {
                closed = true;
                break;
            }
        }
    }
    assert!(
        closed,
        "slowloris connection still open after {:?}",
        start.elapsed()
    );
    assert!(start.elapsed() < Duration::from_secs(4));
}

#[tokio::test]
async fn idle_keep_alive_connections_are_closed() {
    let up = MockUpstream::start(false).await;
    let mut cfg = test_config(&up);
    cfg["server"]["idle_timeout"] = json!(1);
    let relay = Relay::start(cfg);
    let mut s = TcpStream::connect(relay.addr).await.unwrap();
    s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    assert_eq!(
        read_response(&mut s, &mut buf, false).await.unwrap().status,
        200
    );
    assert!(closed_by_peer(&mut s).await);
}

#[tokio::test]
async fn path_traversal_is_refused() {
    let (up, relay) = setup().await;
    let t = relay.token("openai", None);
    for p in [
        "/../admin",
        "/%2e%2e/admin",
        "/a/%2F/b",
        "/chat//completions",
    ] {
        let r = request(relay.addr, "POST", &format!("/relayapi/{t}{p}"), &[], "{}").await;
        assert_eq!(r.status, 400, "{p}");
    }
    assert_eq!(up.count(), 0);
}

#[tokio::test]
async fn http10_gets_a_close_delimited_answer() {
    let (_up, relay) = setup().await;
    let t = relay.token("openai", None);
    let body = r#"{"model":"m","stream":true}"#;
    let req = format!(
        "POST /relayapi/{t}/chat/completions HTTP/1.0\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut s = TcpStream::connect(relay.addr).await.unwrap();
    s.write_all(req.as_bytes()).await.unwrap();
    let mut all = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut all))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&all);
    assert!(
        !text.to_ascii_lowercase().contains("transfer-encoding"),
        "{text}"
    );
    assert!(text.contains("data: [DONE]"), "{text}");
}

#[tokio::test]
async fn refused_requests_never_make_the_relay_buffer_a_large_body() {
    let up = MockUpstream::start(false).await;
    let mut cfg = test_config(&up);
    // Longer than the harness's 15 s read wait: a relay that waited for the rest of the body would
    // leave the client without an answer.
    cfg["server"]["read_timeout"] = json!(60);
    let relay = Relay::start(cfg);
    // A small body of a refused request is read and dropped: the connection carries on.
    let small =
        "POST /relayapi/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}";
    let mut s = TcpStream::connect(relay.addr).await.unwrap();
    s.write_all(format!("{small}GET /health HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut buf = Vec::new();
    assert_eq!(
        read_response(&mut s, &mut buf, false).await.unwrap().status,
        401
    );
    assert_eq!(
        read_response(&mut s, &mut buf, false).await.unwrap().status,
        200
    );
    // A large one (here 8 MiB announced, under max_body_bytes) is not read at all: answer, then close.
    let big =
        "POST /relayapi/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 8388608\r\n\r\n";
    let mut s = TcpStream::connect(relay.addr).await.unwrap();
    s.write_all(big.as_bytes()).await.unwrap();
    s.write_all(&vec![b'a'; 128 * 1024]).await.unwrap();
    let mut buf = Vec::new();
    let r = read_response(&mut s, &mut buf, false).await.unwrap();
    assert_eq!(r.status, 401);
    assert_eq!(r.header("connection"), Some("close"));
    assert!(closed_by_peer(&mut s).await);
    assert_eq!(up.count(), 0);
}

#[tokio::test]
async fn a_head_dripped_byte_by_byte_is_served() {
    let (_up, relay) = setup().await;
    let mut s = TcpStream::connect(relay.addr).await.unwrap();
    s.set_nodelay(true).unwrap();
    for b in b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n" {
        s.write_all(&[*b]).await.unwrap();
    }
    let mut buf = Vec::new();
    assert_eq!(
        read_response(&mut s, &mut buf, false).await.unwrap().status,
        200
    );
    // Without the blank line the head is never complete: the size limit still ends it.
    let mut s = TcpStream::connect(relay.addr).await.unwrap();
    s.write_all(format!("GET /health HTTP/1.1\r\nX: {}", "a".repeat(20_000)).as_bytes())
        .await
        .unwrap();
    let mut buf = Vec::new();
    assert_eq!(
        read_response(&mut s, &mut buf, false).await.unwrap().status,
        431
    );
}
