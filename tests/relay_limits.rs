//! Limits a token carries and the client address they apply to, through the relay binary: per-token
//! call windows and concurrency, client IP ranges, the `max_tokens` reject mode, and `X-Forwarded-For`
//! believed only from trusted proxies.

mod common;

use std::time::Duration;

use common::*;
use relayapi::token::format::{IpNet, MtokMode, Rate};
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const CHAT: &str = r#"{"model":"m","messages":[]}"#;

async fn chat(relay: &Relay, token: &str, headers: &[(&str, &str)], body: &str) -> Resp {
    request(
        relay.addr,
        "POST",
        &format!("/relayapi/{token}/chat/completions"),
        headers,
        body,
    )
    .await
}

#[tokio::test]
async fn per_token_call_window() {
    let up = MockUpstream::start(false).await;
    let relay = Relay::start(test_config(&up));
    let mut c = relay.claims("openai", None);
    c.rate = Some(Rate { n: 2, s: 3600 });
    let t = relay.mint(&c);
    assert_eq!(chat(&relay, &t, &[], CHAT).await.status, 200);
    assert_eq!(chat(&relay, &t, &[], CHAT).await.status, 200);
    let r = chat(&relay, &t, &[], CHAT).await;
    assert_eq!(
        (r.status, r.json()["error"]["code"].as_str()),
        (429, Some("rate_limited"))
    );
    let wait: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!(wait > 3000 && wait <= 3600, "{wait}");
    // Another token is not affected by this one's window.
    assert_eq!(
        chat(&relay, &relay.token("openai", None), &[], CHAT)
            .await
            .status,
        200
    );
    assert_eq!(up.count(), 3);
}

#[tokio::test]
async fn per_token_concurrency() {
    let up = MockUpstream::start(false).await;
    let relay = Relay::start(test_config(&up));
    let mut c = relay.claims("openai", None);
    c.conc = Some(1);
    let t = relay.mint(&c);
    // Hold one stream open (the mock waits for a release between events).
    let body = r#"{"model":"m","stream":true}"#;
    let mut held = TcpStream::connect(relay.addr).await.unwrap();
    let req = format!(
        "POST /relayapi/{t}/chat/completions HTTP/1.1\r\nhost: x\r\nx-test-gated: 1\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    held.write_all(req.as_bytes()).await.unwrap();
    for _ in 0..250 {
        if up.count() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let r = chat(&relay, &t, &[], CHAT).await;
    assert_eq!(
        (r.status, r.json()["error"]["code"].as_str()),
        (429, Some("too_many_concurrent_requests"))
    );
    // When the stream ends, the slot is free again.
    up.release();
    up.release();
    let mut buf = Vec::new();
    assert!(read_response(&mut held, &mut buf, false)
        .await
        .unwrap()
        .text()
        .contains("[DONE]"));
    let mut ok = false;
    for _ in 0..50 {
        if chat(&relay, &t, &[], CHAT).await.status == 200 {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(ok, "the concurrency slot was never released");
}

#[tokio::test]
async fn client_ip_ranges_and_trusted_proxies() {
    let up = MockUpstream::start(false).await;
    let mut cfg = test_config(&up);
    cfg["trusted_proxies"] = json!(["127.0.0.1"]);
    let relay = Relay::start(cfg);
    let mut c = relay.claims("openai", None);
    c.ips = Some(vec![IpNet::parse("203.0.113.0/24").unwrap()]);
    let t = relay.mint(&c);
    // The peer (127.0.0.1) is a trusted proxy: the client is the right-most untrusted X-Forwarded-For hop.
    let r = chat(
        &relay,
        &t,
        &[("x-forwarded-for", "198.51.100.1, 203.0.113.9")],
        CHAT,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    // A client cannot prepend an allowed address: only the hop our proxy appended counts.
    let r = chat(
        &relay,
        &t,
        &[("x-forwarded-for", "203.0.113.9, 198.51.100.1")],
        CHAT,
    )
    .await;
    assert_eq!(
        (r.status, r.json()["error"]["code"].as_str()),
        (403, Some("ip_not_allowed"))
    );
    let r = chat(&relay, &t, &[], CHAT).await;
    assert_eq!(
        r.json()["error"]["code"],
        "ip_not_allowed",
        "the proxy itself is not in the range"
    );
    assert_eq!(up.count(), 1);
}

#[tokio::test]
async fn forwarded_for_is_ignored_from_untrusted_peers() {
    let up = MockUpstream::start(false).await;
    let mut cfg = test_config(&up);
    cfg["rate_limit"]["ip_limit"] = json!({"requests_per_second": 1, "burst": 2});
    let relay = Relay::start(cfg);
    let t = relay.token("openai", None);
    // Rotating X-Forwarded-For does not buy a fresh per-IP bucket when the peer is not trusted.
    let mut statuses = Vec::new();
    for i in 0..4 {
        let xff = format!("198.51.100.{i}");
        statuses.push(
            chat(&relay, &t, &[("x-forwarded-for", &xff)], CHAT)
                .await
                .status,
        );
    }
    assert_eq!(&statuses[..2], &[200, 200]);
    assert!(statuses[2..].contains(&429), "{statuses:?}");
}

#[tokio::test]
async fn max_tokens_reject_mode() {
    let up = MockUpstream::start(false).await;
    let relay = Relay::start(test_config(&up));
    let mut c = relay.claims("openai", None);
    c.mtok = Some(100);
    c.mtok_mode = Some(MtokMode::Reject);
    let t = relay.mint(&c);
    let r = chat(&relay, &t, &[], r#"{"model":"m","max_tokens":101}"#).await;
    assert_eq!(
        (r.status, r.json()["error"]["code"].as_str()),
        (403, Some("max_tokens_exceeded"))
    );
    assert_eq!(r.header("x-should-retry"), Some("false"));
    let r = chat(
        &relay,
        &t,
        &[],
        r#"{"model":"m","max_completion_tokens":100}"#,
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(up.count(), 1);
    assert_eq!(up.requests()[0].json()["max_completion_tokens"], 100);
}
