//! The relay's first reads are small (1 KiB of a request head, 2 KiB of a provider's answer: an open
//! stream holds little), and its buffers grow as reads fill them: a request head near the configured
//! limit, a provider head of several KiB and a body of hundreds of KiB, arriving whole, dripped or in a
//! trickle that turns into bulk, all pass byte for byte.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How the provider frames and paces its answer.
#[derive(Clone, Copy)]
enum Pace {
    /// Content-Length; the head with 1 KiB of body, a pause, then the rest in one write.
    Length,
    /// Chunked: twenty small chunks a few milliseconds apart (a trickle, as events), then the rest of
    /// the body as one chunk (bulk).
    Chunked,
}

/// The provider's answer body: JSON, `len` bytes.
fn body_of(len: usize) -> Vec<u8> {
    let pad = "p".repeat(len - r#"{"pad":""}"#.len());
    format!(r#"{{"pad":"{pad}"}}"#).into_bytes()
}

/// A provider that answers every request with a head of about 6 KiB (40 fields) and `body`, paced.
async fn provider(body: Vec<u8>, pace: Pace) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                continue;
            };
            let body = body.clone();
            tokio::spawn(async move {
                let mut req = Vec::new();
                let mut tmp = [0u8; 4096];
                while !request_complete(&req) {
                    match s.read(&mut tmp).await {
                        Ok(n) if n > 0 => req.extend_from_slice(&tmp[..n]),
                        _ => return,
                    }
                }
                let mut head =
                    String::from("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n");
                for i in 0..40 {
                    head.push_str(&format!("x-provider-field-{i:02}: {}\r\n", "v".repeat(130)));
                }
                match pace {
                    Pace::Length => {
                        head.push_str(&format!("content-length: {}\r\n\r\n", body.len()));
                        let mut first = head.into_bytes();
                        first.extend_from_slice(&body[..1024]);
                        s.write_all(&first).await.unwrap();
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        s.write_all(&body[1024..]).await.unwrap();
                    }
                    Pace::Chunked => {
                        head.push_str("transfer-encoding: chunked\r\n\r\n");
                        s.write_all(head.as_bytes()).await.unwrap();
                        let (small, rest) = body.split_at(20 * 100);
                        for piece in small.chunks(100) {
                            tokio::time::sleep(Duration::from_millis(5)).await;
                            s.write_all(&chunk(piece)).await.unwrap();
                        }
                        let mut last = chunk(rest);
                        last.extend_from_slice(b"0\r\n\r\n");
                        s.write_all(&last).await.unwrap();
                    }
                }
                // Keep the connection until the relay is done with it.
                let _ = s.read(&mut tmp).await;
            });
        }
    });
    addr
}

fn chunk(data: &[u8]) -> Vec<u8> {
    let mut out = format!("{:x}\r\n", data.len()).into_bytes();
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
    out
}

/// Whether `req` holds a whole request head and its Content-Length body.
fn request_complete(req: &[u8]) -> bool {
    let Some(end) = req.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&req[..end]).to_ascii_lowercase();
    let len = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map_or(0, |v| v.trim().parse::<usize>().unwrap());
    req.len() >= end + 4 + len
}

/// A relay whose `openai` provider is the paced one.
async fn relay_for(body: &[u8], pace: Pace) -> Relay {
    let addr = provider(body.to_vec(), pace).await;
    let mock = MockUpstream::start(false).await;
    let mut cfg = test_config(&mock);
    cfg["providers"]["openai"] = json!({"base_url": format!("http://{addr}/v1")});
    Relay::start(cfg)
}

/// A request whose head is `head_bytes` long (padded with a field the relay does not forward).
fn request_of(token: &str, head_bytes: usize) -> Vec<u8> {
    let body = r#"{"model":"gpt-4o-mini","messages":[]}"#;
    let start = format!("POST /relayapi/{token}/chat/completions HTTP/1.1\r\nhost: relay.test\r\n");
    let end = format!("content-length: {}\r\n\r\n", body.len());
    let pad = head_bytes - start.len() - end.len() - "x-pad: \r\n".len();
    format!("{start}x-pad: {}\r\n{end}{body}", "a".repeat(pad)).into_bytes()
}

#[tokio::test]
async fn a_head_near_the_limit_and_a_large_answer_pass_whole() {
    let body = body_of(300 * 1024);
    let relay = relay_for(&body, Pace::Length).await;
    let t = relay.token("openai", None);
    // 16 KiB is the default `max_header_bytes`: sixteen times the first read.
    let req = request_of(&t, 16 * 1024 - 100);
    let r = raw(relay.addr, &req).await.expect("a response");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.header("x-provider-field-39"),
        Some("v".repeat(130).as_str())
    );
    assert!(r.body == body, "the body arrived whole and unchanged");
}

#[tokio::test]
async fn a_dripped_head_and_a_trickle_that_turns_into_bulk_pass_whole() {
    let body = body_of(200 * 1024);
    let relay = relay_for(&body, Pace::Chunked).await;
    let t = relay.token("openai", None);
    let req = request_of(&t, 5000);
    let mut s = TcpStream::connect(relay.addr).await.unwrap();
    for piece in req.chunks(700) {
        s.write_all(piece).await.unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut buf = Vec::new();
    let r = read_response(&mut s, &mut buf, false)
        .await
        .expect("a response");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.body == body, "the body arrived whole and unchanged");
    // The connection carries on: a second request, with a small head, on the grown buffers.
    s.write_all(&request_of(&t, 600)).await.unwrap();
    let r = read_response(&mut s, &mut buf, false)
        .await
        .expect("a second response");
    assert_eq!(r.status, 200);
    assert!(r.body == body);
}
