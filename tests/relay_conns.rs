//! Connection slots through the relay binary (issue 9, findings 3 and 13): the per-address connection
//! cap, idle keep-alive connections given back when slots run short, and a too-long request-target
//! answered before the rest of the request-line arrives. Distinct 127.0.0.x source addresses stand for
//! distinct clients.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use common::*;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// Well below every relay timeout these tests configure: an answer that arrives within it did not wait
/// for one of them.
const CLIENT_WAIT: Duration = Duration::from_secs(5);

/// A connection to the relay from the loopback address `from` (127.0.0.x stands for a distinct client).
async fn connect_from(from: &str, to: SocketAddr) -> TcpStream {
    let s = TcpSocket::new_v4().unwrap();
    s.bind(SocketAddr::new(from.parse::<IpAddr>().unwrap(), 0))
        .unwrap();
    s.connect(to).await.unwrap()
}

/// Send one keep-alive request for `/health` and read its answer, within `CLIENT_WAIT`.
async fn health_on(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Resp> {
    s.write_all(b"GET /health HTTP/1.1\r\nhost: relay.test\r\n\r\n")
        .await
        .ok()?;
    tokio::time::timeout(CLIENT_WAIT, read_response(s, buf, false))
        .await
        .ok()
        .flatten()
}

/// Closed by the relay: EOF (or a reset) within `CLIENT_WAIT`, after any answer it wrote.
async fn closed_soon(s: &mut TcpStream) -> bool {
    let mut tmp = [0u8; 1024];
    loop {
        match tokio::time::timeout(CLIENT_WAIT, s.read(&mut tmp)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

/// The value of the `/metrics` line starting with `line_start`.
async fn metric(relay: &Relay, line_start: &str) -> Option<u64> {
    let body = request(relay.addr, "GET", "/metrics", &[], "").await.text();
    body.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Issue 9, finding 3: one address holding its maximum of connections leaves everyone else served.
#[tokio::test]
async fn one_address_at_its_connection_cap_does_not_lock_out_others() {
    let up = MockUpstream::start(false).await;
    let mut cfg = test_config(&up);
    cfg["server"]["max_connections_per_ip"] = json!(4);
    cfg["server"]["idle_timeout"] = json!(60);
    let relay = Relay::start(cfg);

    let mut held = Vec::new();
    for _ in 0..4 {
        let mut s = connect_from("127.0.0.2", relay.addr).await;
        let mut buf = Vec::new();
        assert_eq!(health_on(&mut s, &mut buf).await.unwrap().status, 200);
        held.push((s, buf));
    }
    // The fifth from the same address is refused at once with a 429, then closed.
    let mut fifth = connect_from("127.0.0.2", relay.addr).await;
    let mut buf = Vec::new();
    let r = tokio::time::timeout(CLIENT_WAIT, read_response(&mut fifth, &mut buf, false))
        .await
        .expect("answered without waiting")
        .expect("a 429 before the close");
    assert_eq!(r.status, 429);
    assert_eq!(r.json()["error"]["code"], "too_many_connections");
    assert!(closed_soon(&mut fifth).await);

    // Another address is served within CLIENT_WAIT, well before the first one's idle_timeout.
    let mut other = connect_from("127.0.0.3", relay.addr).await;
    assert_eq!(
        health_on(&mut other, &mut Vec::new()).await.unwrap().status,
        200
    );
    // The capped address's connections still work: the cap refused only the extra one.
    let (s, b) = &mut held[0];
    assert_eq!(health_on(s, b).await.unwrap().status, 200);

    // Closing one of them frees a place for that address again (the count went down, not stuck).
    drop(held.pop());
    let mut again = None;
    for _ in 0..50 {
        let mut s = connect_from("127.0.0.2", relay.addr).await;
        if let Some(r) = health_on(&mut s, &mut Vec::new()).await {
            if r.status == 200 {
                again = Some(s);
                break;
            }
        }
        // The relay may not have seen the close yet.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        again.is_some(),
        "a freed place is given to the same address"
    );
    let refused = metric(
        &relay,
        "relayapi_rejections_total{reason=\"too_many_connections\"}",
    )
    .await;
    assert!(refused >= Some(1), "{refused:?}");
    // The log writer appends in batches (log_writer.rs, LINGER), and a loaded machine delays it more:
    // wait for the line instead of reading the logs once.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !relay.all_logs().contains("per-address connection cap") {
        assert!(std::time::Instant::now() < deadline, "{}", relay.all_logs());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Issue 9, finding 3: when connection slots run short, idle keep-alive connections give theirs back.
#[tokio::test]
async fn idle_keep_alive_connections_are_reclaimed_when_slots_run_short() {
    let up = MockUpstream::start(false).await;
    let mut cfg = test_config(&up);
    cfg["server"]["max_connections"] = json!(4);
    // Far longer than the test waits: only the reclaim can free a slot.
    cfg["server"]["idle_timeout"] = json!(600);
    let relay = Relay::start(cfg);

    let mut idle = Vec::new();
    for i in 0..4 {
        let mut s = connect_from(&format!("127.0.0.{}", 10 + i), relay.addr).await;
        let mut buf = Vec::new();
        assert_eq!(health_on(&mut s, &mut buf).await.unwrap().status, 200);
        idle.push(s);
    }
    // Every slot is held by an idle keep-alive connection; a new client still gets in.
    let mut fresh = connect_from("127.0.0.20", relay.addr).await;
    let r = health_on(&mut fresh, &mut Vec::new()).await;
    assert_eq!(r.map(|r| r.status), Some(200), "new client served");
    let mut reclaimed = 0;
    for s in &mut idle {
        if closed_soon(s).await {
            reclaimed += 1;
        }
    }
    assert!(reclaimed >= 1, "an idle connection gave its slot back");
}

/// Issue 9, finding 13: a request-target over `max_uri_bytes` without a line end is a 414 as soon as
/// that many bytes arrived, not a 408 after `read_timeout`.
#[tokio::test]
async fn an_unterminated_long_target_is_a_414_without_waiting_for_the_read_timeout() {
    let up = MockUpstream::start(false).await;
    let mut cfg = test_config(&up);
    cfg["server"]["read_timeout"] = json!(120);
    let relay = Relay::start(cfg);
    let mut s = TcpStream::connect(relay.addr).await.unwrap();
    let line = format!("GET /{}", "a".repeat(9000));
    s.write_all(line.as_bytes()).await.unwrap();
    let r = tokio::time::timeout(CLIENT_WAIT, read_response(&mut s, &mut Vec::new(), false))
        .await
        .expect("answered well before read_timeout")
        .expect("a response");
    assert_eq!(r.status, 414);
    assert!(closed_soon(&mut s).await);
}
