//! Request bodies through the relay binary (issue 9, finding 2): bodies no policy reads are streamed to
//! the provider in bounded memory, bodies a policy reads are held within a global budget and a
//! per-address share, and a body that falls behind `server.min_body_rate` is cut off with 408.
//! Distinct 127.0.0.x source addresses stand for distinct clients.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::*;
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, TcpStream};

/// A connection to the relay from the loopback address `from` (127.0.0.x stands for a distinct client).
async fn connect_from(from: &str, to: SocketAddr) -> TcpStream {
    let s = TcpSocket::new_v4().unwrap();
    s.bind(SocketAddr::new(from.parse::<IpAddr>().unwrap(), 0))
        .unwrap();
    s.connect(to).await.unwrap()
}

/// Peak resident memory of a process (`VmHWM`), in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .expect("VmHWM in /proc/<pid>/status");
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// A chat body naming model `m`, padded to exactly `len` bytes.
fn chat_body(len: usize) -> String {
    let frame = r#"{"model":"m","pad":""}"#;
    format!(
        r#"{{"model":"m","pad":"{}"}}"#,
        "a".repeat(len - frame.len())
    )
}

fn head(token: &str, path: &str, len: usize) -> String {
    format!("POST /relayapi/{token}{path} HTTP/1.1\r\nhost: relay.test\r\ncontent-length: {len}\r\n\r\n")
}

/// What a streamed body may add to the relay's peak RSS: its fixed buffers are a few KiB, so the
/// bound is the relay's own footprint (well under 32 MiB in a debug build) with room to spare, and
/// half the size of the body that passes through.
const STREAMED_PEAK_RSS_KIB: u64 = 32 * 1024;

/// Issue 9, finding 2: a body no policy reads goes to the provider as it arrives, with the same
/// length and bytes, and the relay's memory does not grow with it.
#[tokio::test]
async fn a_64_mib_body_is_streamed_intact_in_bounded_memory() {
    const LEN: usize = 64 * 1024 * 1024;
    let up = MockUpstream::start(false).await;
    let mut cfg = test_config(&up);
    cfg["server"]["max_body_bytes"] = json!(LEN);
    cfg["server"]["max_buffered_body_bytes_per_ip"] = json!(LEN);
    cfg["server"]["max_buffered_body_bytes"] = json!(LEN);
    let relay = Relay::start(cfg);
    let t = relay.token("openai", None);
    let body: Vec<u8> = (0..LEN).map(|i| (i % 251) as u8).collect();

    let mut s = TcpStream::connect(relay.addr).await.unwrap();
    s.write_all(head(&t, "/embeddings", LEN).as_bytes())
        .await
        .unwrap();
    for part in body.chunks(1024 * 1024) {
        s.write_all(part).await.unwrap();
    }
    let r = read_response(&mut s, &mut Vec::new(), false).await.unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    {
        let recorded = up.requests.lock().unwrap();
        assert_eq!(recorded.len(), 1);
        assert_eq!(
            recorded[0].header("content-length"),
            Some(LEN.to_string().as_str())
        );
        assert!(recorded[0].body == body, "the provider got the same bytes");
    }
    let peak = peak_rss_kib(relay.child.id());
    assert!(
        peak < STREAMED_PEAK_RSS_KIB,
        "relay peak RSS {peak} KiB while streaming a {} KiB body",
        LEN / 1024
    );
    // The connection carries on: the next request is parsed from the bytes after the body.
    s.write_all(b"GET /health HTTP/1.1\r\nhost: relay.test\r\n\r\n")
        .await
        .unwrap();
    let r = read_response(&mut s, &mut Vec::new(), false).await.unwrap();
    assert_eq!(r.status, 200);
}

/// Issue 10: a chunked body no policy reads is streamed too, decoded and re-encoded chunk by chunk
/// (the client's extensions and trailer fields are checked and dropped, never passed on), with the
/// same payload, and the relay's memory does not grow with it.
#[tokio::test]
async fn a_64_mib_chunked_body_is_streamed_intact_in_bounded_memory() {
    const LEN: usize = 64 * 1024 * 1024;
    let up = MockUpstream::start(false).await;
    let mut cfg = test_config(&up);
    cfg["server"]["max_body_bytes"] = json!(LEN);
    // The budget would let the relay buffer the whole body: only streaming keeps the peak low.
    cfg["server"]["max_buffered_body_bytes_per_ip"] = json!(LEN);
    cfg["server"]["max_buffered_body_bytes"] = json!(LEN);
    let relay = Relay::start(cfg);
    let t = relay.token("openai", None);
    let body: Vec<u8> = (0..LEN).map(|i| (i % 251) as u8).collect();

    let mut s = TcpStream::connect(relay.addr).await.unwrap();
    let head = format!("POST /relayapi/{t}/embeddings HTTP/1.1\r\nhost: relay.test\r\ntransfer-encoding: chunked\r\n\r\n");
    s.write_all(head.as_bytes()).await.unwrap();
    // Chunks of uneven sizes, some with extensions, then a trailer field.
    let mut sizes = [1usize, 7, 4096, 65_536, 1 << 20, 333].into_iter().cycle();
    let mut at = 0;
    while at < LEN {
        let n = sizes.next().unwrap().min(LEN - at);
        let ext = if n % 2 == 1 { ";x=y" } else { "" };
        let mut wire = format!("{n:x}{ext}\r\n").into_bytes();
        wire.extend_from_slice(&body[at..at + n]);
        wire.extend_from_slice(b"\r\n");
        s.write_all(&wire).await.unwrap();
        at += n;
    }
    s.write_all(b"0\r\nx-client-trailer: secret\r\n\r\n")
        .await
        .unwrap();
    let r = read_response(&mut s, &mut Vec::new(), false).await.unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    {
        let recorded = up.requests.lock().unwrap();
        assert_eq!(recorded.len(), 1);
        assert_eq!(recorded[0].header("transfer-encoding"), Some("chunked"));
        assert_eq!(recorded[0].header("content-length"), None);
        assert!(recorded[0].body == body, "the provider got the same bytes");
    }
    let peak = peak_rss_kib(relay.child.id());
    assert!(
        peak < STREAMED_PEAK_RSS_KIB,
        "relay peak RSS {peak} KiB while streaming a {} KiB chunked body",
        LEN / 1024
    );
    // The connection carries on: the next request is parsed from the bytes after the body.
    s.write_all(b"GET /health HTTP/1.1\r\nhost: relay.test\r\n\r\n")
        .await
        .unwrap();
    let r = read_response(&mut s, &mut Vec::new(), false).await.unwrap();
    assert_eq!(r.status, 200);
}

/// A streamed chunked body that breaks the chunk grammar part-way ends the exchange: the provider's
/// request is cut (never completed with the client's bytes) and the client is answered 400 and
/// closed.
#[tokio::test]
async fn a_streamed_chunked_body_broken_part_way_is_refused_and_never_completed() {
    let up = MockUpstream::start(false).await;
    let relay = Relay::start(test_config(&up));
    let t = relay.token("openai", None);
    let mut s = TcpStream::connect(relay.addr).await.unwrap();
    let head = format!("POST /relayapi/{t}/embeddings HTTP/1.1\r\nhost: relay.test\r\ntransfer-encoding: chunked\r\n\r\n");
    s.write_all(head.as_bytes()).await.unwrap();
    // Sent apart from the head, so the body cannot be whole in the relay's buffer at once.
    tokio::time::sleep(Duration::from_millis(100)).await;
    s.write_all(b"5\r\nhello\r\nzz\r\nGET /health HTTP/1.1\r\n\r\n")
        .await
        .unwrap();
    let r = read_response(&mut s, &mut Vec::new(), false).await.unwrap();
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.header("connection"), Some("close"));
    assert!(
        up.requests.lock().unwrap().is_empty(),
        "the provider never saw a complete request"
    );
}

/// Send `head`, then one body byte every `every` until the relay answers (in a task of its own), and
/// return the answer (None when none came within `wait`).
async fn drip(
    from: &str,
    relay: &Relay,
    head: String,
    every: Duration,
    wait: Duration,
) -> Option<Resp> {
    let s = connect_from(from, relay.addr).await;
    let (mut rd, mut wr) = s.into_split();
    wr.write_all(head.as_bytes()).await.unwrap();
    let dripper = tokio::spawn(async move {
        for _ in 0..600 {
            tokio::time::sleep(every).await;
            if wr.write_all(b" ").await.is_err() {
                break;
            }
        }
    });
    let r = tokio::time::timeout(wait, read_response(&mut rd, &mut Vec::new(), false))
        .await
        .ok()
        .flatten();
    dripper.abort();
    r
}

/// Issue 9, finding 2: a client dripping a body (each byte well within `read_timeout`, so the per-read
/// timeout never fires) is cut off with 408 once it falls behind `min_body_rate`, whether its body is
/// streamed or held for a policy.
#[tokio::test]
async fn a_dripping_body_is_cut_off_with_408() {
    let up = MockUpstream::start(false).await;
    let mut cfg = test_config(&up);
    cfg["server"]["read_timeout"] = json!(2);
    cfg["server"]["min_body_rate"] = json!(1000);
    let relay = Relay::start(cfg);
    let plain = relay.token("openai", None);
    let mut c = relay.claims("openai", None);
    c.models = Some(vec!["m".into()]);
    let inspected = relay.mint(&c);
    // Far longer than read_timeout plus what 1000 B/s would grant for the drip: without the pace the
    // relay would still be waiting when the client gives up.
    let wait = Duration::from_secs(15);
    let every = Duration::from_millis(400);
    for (from, t) in [("127.0.0.2", &plain), ("127.0.0.3", &inspected)] {
        let r = drip(
            from,
            &relay,
            head(t, "/chat/completions", 100_000),
            every,
            wait,
        )
        .await;
        let r = r.expect("answered before the client gave up");
        assert_eq!(r.status, 408, "{}", r.text());
        assert_eq!(r.json()["error"]["code"], "request_timeout");
    }
    // Neither incomplete request was answered by the provider; the streamed one's connection was
    // closed rather than reused.
    assert_eq!(up.count(), 0);
    for _ in 0..100 {
        if up.closed.load(Ordering::SeqCst) >= up.accepted.load(Ordering::SeqCst) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        up.accepted.load(Ordering::SeqCst) >= 1,
        "the streamed body reached the provider"
    );
    assert_eq!(
        up.closed.load(Ordering::SeqCst),
        up.accepted.load(Ordering::SeqCst),
        "the half-sent upstream request was closed"
    );
}

/// Start a request whose body a policy must read, send `sent` bytes of it, and hold the connection.
async fn hold(from: &str, relay: &Relay, token: &str, body: &str, sent: usize) -> TcpStream {
    let mut s = connect_from(from, relay.addr).await;
    s.write_all(head(token, "/chat/completions", body.len()).as_bytes())
        .await
        .unwrap();
    s.write_all(&body.as_bytes()[..sent]).await.unwrap();
    s
}

/// The answer on `s` if one comes within a few seconds (a held request gets none; `read_timeout` is
/// far longer).
async fn answer(s: &mut TcpStream) -> Option<Resp> {
    tokio::time::timeout(
        Duration::from_secs(3),
        read_response(s, &mut Vec::new(), false),
    )
    .await
    .ok()
    .flatten()
}

/// Issue 9, finding 2: bodies held for a policy share one budget and a per-address part of it; past
/// either, a request is refused at once with 503 and Retry-After instead of buffering more.
#[tokio::test]
async fn the_buffered_body_budget_answers_503_at_once() {
    const LEN: usize = 40_000;
    let up = MockUpstream::start(false).await;
    let mut cfg = test_config(&up);
    cfg["server"]["max_body_bytes"] = json!(LEN);
    cfg["server"]["max_buffered_body_bytes_per_ip"] = json!(LEN);
    cfg["server"]["max_buffered_body_bytes"] = json!(2 * LEN);
    // Held bodies must outlive the test's waits, loaded machine included.
    cfg["server"]["read_timeout"] = json!(60);
    let relay = Relay::start(cfg);
    let mut c = relay.claims("openai", None);
    c.models = Some(vec!["m".into()]);
    let t = relay.mint(&c);
    let body = chat_body(LEN);

    // 127.0.0.2 holds its whole share; a second body from it is refused, whatever the total.
    let mut a = hold("127.0.0.2", &relay, &t, &body, 100).await;
    let mut refused = None;
    for _ in 0..20 {
        let mut a2 = hold("127.0.0.2", &relay, &t, &body, 100).await;
        match answer(&mut a2).await {
            Some(r) => {
                refused = Some(r);
                break;
            }
            // The relay had not taken a's share yet: a2 now holds it, and a is the one over.
            None => {
                if let Some(r) = answer(&mut a).await {
                    refused = Some(r);
                    a = a2;
                    break;
                }
            }
        }
    }
    let r = refused.expect("a second body from one address is refused");
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], "too_many_buffered_bodies");
    assert_eq!(r.header("retry-after"), Some("1"));

    // 127.0.0.3 takes the rest of the total; 127.0.0.4, within its own share, finds nothing left.
    let mut b = hold("127.0.0.3", &relay, &t, &body, 100).await;
    assert!(answer(&mut b).await.is_none(), "b is buffering");
    let mut c4 = hold("127.0.0.4", &relay, &t, &body, 100).await;
    let r = answer(&mut c4).await.expect("refused at once");
    assert_eq!(r.status, 503);
    assert_eq!(up.count(), 0);

    // Finished bodies give their bytes back: a completes, then 127.0.0.4 is served.
    a.write_all(&body.as_bytes()[100..]).await.unwrap();
    let r = read_response(&mut a, &mut Vec::new(), false).await.unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let mut c5 = hold("127.0.0.4", &relay, &t, &body, 100).await;
    assert!(answer(&mut c5).await.is_none(), "buffering again");
    c5.write_all(&body.as_bytes()[100..]).await.unwrap();
    let r = read_response(&mut c5, &mut Vec::new(), false)
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    drop(b);
}
