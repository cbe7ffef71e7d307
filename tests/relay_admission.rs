//! Admission through the relay binary (issue 9): junk spends only its sender's allowance and never the
//! relay-wide budget (finding 4), a used-up or revoked token is refused before its body is read and
//! calls that never leave are given back (finding 1), access-log volume is bounded per client and reason
//! (finding 5), only provider methods are forwarded (finding 6), a malformed `Origin` is refused
//! (finding 12), `/health` details, the bearer scheme's case, and revoke-before in the future (findings
//! 9 and 13). Distinct clients are distinct 127.0.0.x source addresses.

mod common;
mod store_support;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::*;
use relayapi::limits::log_sampler::PER_KEY_LINES_PER_SEC;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CHAT: &str = r#"{"model":"gpt-4o-mini","messages":[]}"#;
const VALID: [u8; 4] = [127, 0, 0, 20];

fn chat_target(token: &str) -> String {
    format!("/relayapi/{token}/chat/completions")
}

/// Garbage tokens from `junk` addresses, as fast as the relay answers (a few ms apart), until `stop`.
/// Answers the number of requests sent and how many of them the per-address limit refused.
fn flood_junk(
    addr: std::net::SocketAddr,
    junk: Vec<[u8; 4]>,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<(usize, usize)> {
    flood(addr, junk, "/relayapi/rt1.garbage/models".into(), stop)
}

/// Requests for `target` from `sources`, as fast as the relay answers, until `stop`. Only 401, 429 and
/// (for a real token) 200 are expected. Answers the number sent and how many were refused with 429.
fn flood(
    addr: std::net::SocketAddr,
    sources: Vec<[u8; 4]>,
    target: String,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<(usize, usize)> {
    tokio::spawn(async move {
        let sent = Arc::new(AtomicUsize::new(0));
        let limited = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for src in sources {
            let (stop, sent, limited) = (stop.clone(), sent.clone(), limited.clone());
            let target = target.clone();
            tasks.push(tokio::spawn(async move {
                let mut s = connect_from(src, addr).await;
                let mut buf = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let r = send_on(&mut s, &mut buf, "GET", &target, &[], "").await;
                    let Some(r) = r else {
                        s = connect_from(src, addr).await;
                        buf.clear();
                        continue;
                    };
                    sent.fetch_add(1, Ordering::Relaxed);
                    match r.status {
                        200 => {}
                        401 => assert_eq!(r.json()["error"]["code"], "invalid_token"),
                        429 => {
                            // Refused by the sender's address or by the token's own limit, never by
                            // the relay-wide bucket.
                            let m = r.json()["error"]["message"]
                                .as_str()
                                .unwrap_or("")
                                .to_string();
                            assert!(!m.contains("relay"), "flood spent the global budget: {m}");
                            limited.fetch_add(1, Ordering::Relaxed);
                        }
                        s => panic!("junk got {s}: {}", r.text()),
                    }
                    tokio::time::sleep(Duration::from_millis(3)).await;
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        (
            sent.load(Ordering::Relaxed),
            limited.load(Ordering::Relaxed),
        )
    })
}

/// Issue 9, finding 4: ten addresses sending garbage tokens while a valid client calls at a steady rate
/// within its own per-address budget: every valid call gets through.
pub async fn junk_does_not_starve_a_valid_client(cfg: Value) {
    let up = MockUpstream::start(false).await;
    let mut cfg_full = test_config(&up);
    for (k, v) in cfg.as_object().unwrap() {
        cfg_full[k] = v.clone();
    }
    // Global: 10/s with a burst of 10. Per address: 5/s with a burst of 5. Ten junk addresses may send
    // 50/s between them: charged to the global bucket, they would leave nothing for the valid client.
    cfg_full["rate_limit"] = json!({"requests_per_second": 10, "burst": 10,
        "ip_limit": {"requests_per_second": 5, "burst": 5, "max_tracked_ips": 1000},
        "shared": cfg_full["rate_limit"]["shared"].as_bool().unwrap_or(false)});
    let relay = Relay::start(cfg_full);
    let t = relay.token("openai", None);
    let stop = Arc::new(AtomicBool::new(false));
    let junk: Vec<[u8; 4]> = (2..=11).map(|d| [127, 0, 0, d]).collect();
    let flood = flood_junk(relay.addr, junk, stop.clone());
    // Let the flood drain every junk address's burst first.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut statuses = Vec::new();
    for _ in 0..12 {
        let r = request_from(VALID, relay.addr, "POST", &chat_target(&t), &[], CHAT).await;
        statuses.push((r.status, r.json()["error"]["message"].clone()));
        // About 3 calls a second: within the valid client's own 5/s.
        tokio::time::sleep(Duration::from_millis(330)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let (sent, limited) = flood.await.unwrap();
    assert!(
        statuses.iter().all(|(s, _)| *s == 200),
        "valid client refused: {statuses:?}"
    );
    assert_eq!(up.count(), 12);
    // The junk really flooded: far beyond what the global bucket holds, mostly refused per address.
    assert!(
        sent > 200 && limited > sent / 2,
        "sent {sent}, limited {limited}"
    );
}

/// A public token with its own rate limit, used from ten addresses as fast as they can: its callers
/// are refused by the token's limit before they reach the relay-wide bucket, so a valid client calling
/// with its own token is never refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rate_limited_token_shared_by_ten_addresses_does_not_starve_a_valid_client() {
    let up = MockUpstream::start(false).await;
    let mut cfg = test_config(&up);
    cfg["rate_limit"] = json!({"requests_per_second": 10, "burst": 10,
        "ip_limit": {"requests_per_second": 5, "burst": 5, "max_tracked_ips": 1000}});
    let relay = Relay::start(cfg);
    let mut c = relay.claims("openai", None);
    c.rate = Some(relayapi::token::format::Rate { n: 1, s: 3600 });
    let shared = relay.mint(&c);
    let t = relay.token("openai", None);
    let stop = Arc::new(AtomicBool::new(false));
    let sources: Vec<[u8; 4]> = (2..=11).map(|d| [127, 0, 0, d]).collect();
    let flooding = flood(
        relay.addr,
        sources,
        format!("/relayapi/{shared}/models"),
        stop.clone(),
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut statuses = Vec::new();
    for _ in 0..12 {
        let r = request_from(VALID, relay.addr, "POST", &chat_target(&t), &[], CHAT).await;
        statuses.push((r.status, r.json()["error"]["message"].clone()));
        tokio::time::sleep(Duration::from_millis(330)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let (sent, limited) = flooding.await.unwrap();
    assert!(
        statuses.iter().all(|(s, _)| *s == 200),
        "valid client refused: {statuses:?}"
    );
    // The shared token made one call; everything else it sent was refused before the global bucket.
    assert_eq!(up.count(), 13);
    assert!(
        sent > 200 && limited + 1 == sent,
        "sent {sent}, limited {limited}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn junk_tokens_from_ten_addresses_do_not_starve_a_valid_client() {
    junk_does_not_starve_a_valid_client(json!({})).await;
}

#[tokio::test]
async fn per_address_limit_covers_404s_and_preflights_and_health_from_outside() {
    let up = MockUpstream::start(false).await;
    let mut cfg = test_config(&up);
    cfg["rate_limit"] = json!({"requests_per_second": 0, "burst": 0,
        "ip_limit": {"requests_per_second": 1, "burst": 3, "max_tracked_ips": 100}});
    let relay = Relay::start(cfg);
    let preflight = [
        ("origin", "https://app.example"),
        ("access-control-request-method", "POST"),
    ];
    for (src, method, target, headers) in [
        ([127, 0, 0, 2], "GET", "/nothing-here", &[][..]),
        ([127, 0, 0, 3], "OPTIONS", "/relayapi/x", &preflight[..]),
        ([127, 0, 0, 4], "GET", "/health", &[][..]),
    ] {
        let mut s = connect_from(src, relay.addr).await;
        let mut buf = Vec::new();
        let mut got = Vec::new();
        for _ in 0..6 {
            got.push(
                send_on(&mut s, &mut buf, method, target, headers, "")
                    .await
                    .unwrap()
                    .status,
            );
        }
        assert!(got[..3].iter().all(|s| *s != 429), "{target}: {got:?}");
        // The burst of 3 is spent; only a refill (1/s) could let one more through.
        assert!(
            got[3..].iter().filter(|s| **s == 429).count() >= 2,
            "{target}: {got:?}"
        );
    }
    // Monitoring from the /metrics ranges (loopback 127.0.0.1 by default) is never refused.
    let mut s = connect_from([127, 0, 0, 1], relay.addr).await;
    let mut buf = Vec::new();
    for _ in 0..10 {
        let r = send_on(&mut s, &mut buf, "GET", "/health", &[], "")
            .await
            .unwrap();
        assert_eq!(r.status, 200);
    }
}

/// Send a request head announcing a body, without the body; read whatever the relay answers first.
async fn head_only(addr: std::net::SocketAddr, token: &str, extra: &str, len: u64) -> String {
    let mut s = connect_from(VALID, addr).await;
    let req = format!(
        "POST {} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {len}\r\n{extra}\r\n",
        chat_target(token)
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let mut tmp = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains("}}") {
        match tokio::time::timeout(Duration::from_secs(15), s.read(&mut tmp)).await {
            Ok(Ok(n)) if n > 0 => got.extend_from_slice(&tmp[..n]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

#[tokio::test]
async fn used_up_or_revoked_tokens_are_refused_before_the_body_is_read() {
    let up = MockUpstream::start(false).await;
    let relay = Relay::start(test_config(&up));
    let t = relay.token("openai", Some(1));
    assert_eq!(
        request(relay.addr, "POST", &chat_target(&t), &[], CHAT)
            .await
            .status,
        200
    );
    // Used up: the answer comes without the relay asking for (or waiting for) a single body byte, both
    // for a client waiting for 100-continue and for one announcing 32 MiB it never sends (had the relay
    // waited for the body, the read timeout would answer 408 instead).
    for (extra, len) in [("expect: 100-continue\r\n", 1000), ("", 32 << 20)] {
        let got = head_only(relay.addr, &t, extra, len).await;
        assert!(got.starts_with("HTTP/1.1 429 "), "{got}");
        assert!(got.contains("token_exhausted"), "{got}");
        assert!(!got.contains("100 Continue"), "{got}");
    }

    // Revoked through the admin API: the same.
    let claims = relay.claims("openai", None);
    let r = relay.mint(&claims);
    assert_eq!(
        request(relay.addr, "POST", &chat_target(&r), &[], CHAT)
            .await
            .status,
        200
    );
    let revoked = relay
        .admin(
            "POST",
            &format!("/admin/v1/tokens/{}/revoke", claims.jti),
            "",
        )
        .await;
    assert_eq!(revoked.status, 200, "{}", revoked.text());
    for (extra, len) in [("expect: 100-continue\r\n", 1000), ("", 32 << 20)] {
        let got = head_only(relay.addr, &r, extra, len).await;
        assert!(got.starts_with("HTTP/1.1 401 "), "{got}");
        assert!(got.contains("token_revoked"), "{got}");
        assert!(!got.contains("100 Continue"), "{got}");
    }
    assert_eq!(up.count(), 2);
}

#[tokio::test]
async fn calls_refused_after_reservation_are_given_back() {
    let up = MockUpstream::start(false).await;
    let relay = Relay::start(test_config(&up));
    let mut c = relay.claims("openai", Some(1));
    c.models = Some(vec!["gpt-4o-mini".into()]);
    let t = relay.mint(&c);
    // A policy refusal after the reservation: the call never left, so it is given back.
    for _ in 0..3 {
        let r = request(
            relay.addr,
            "POST",
            &chat_target(&t),
            &[],
            r#"{"model":"gpt-4o","messages":[]}"#,
        )
        .await;
        assert_eq!(
            r.json()["error"]["code"],
            "model_not_allowed",
            "{}",
            r.text()
        );
    }
    // A client that leaves inside its body: given back too.
    for _ in 0..3 {
        let mut s = connect_from(VALID, relay.addr).await;
        let req = format!(
            "POST {} HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n{{\"model\":",
            chat_target(&t)
        );
        s.write_all(req.as_bytes()).await.unwrap();
        s.shutdown().await.unwrap();
        let mut sink = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut sink)).await;
    }
    // The one call is still there, and exactly one.
    let r = request(relay.addr, "POST", &chat_target(&t), &[], CHAT).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = request(relay.addr, "POST", &chat_target(&t), &[], CHAT).await;
    assert_eq!(r.json()["error"]["code"], "token_exhausted");
    assert_eq!(up.count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_limit_of_n_allows_exactly_n_with_refunds_racing() {
    let up = MockUpstream::start(false).await;
    let relay = Relay::start(test_config(&up));
    let mut c = relay.claims("openai", Some(3));
    c.models = Some(vec!["gpt-4o-mini".into()]);
    let t = relay.mint(&c);
    let mut tasks = Vec::new();
    for i in 0..60 {
        let (addr, target) = (relay.addr, chat_target(&t));
        tasks.push(tokio::spawn(async move {
            // Every other request is refused by policy after its reservation, and given back.
            let body = if i % 2 == 0 {
                CHAT
            } else {
                r#"{"model":"gpt-4o","messages":[]}"#
            };
            request(addr, "POST", &target, &[], body).await.status
        }));
    }
    let mut ok = 0;
    for t in tasks {
        ok += usize::from(t.await.unwrap() == 200);
    }
    assert!(ok <= 3, "{ok}");
    // Whatever the race left, sequential calls use exactly the rest: never more than 3 in all.
    for _ in 0..5 {
        let r = request(relay.addr, "POST", &chat_target(&t), &[], CHAT).await;
        if r.status == 200 {
            ok += 1;
        } else {
            assert_eq!(r.json()["error"]["code"], "token_exhausted", "{}", r.text());
        }
    }
    assert_eq!((ok, up.count()), (3, 3));
}

fn access_lines(relay: &Relay) -> Vec<Value> {
    relay
        .stdout
        .lock()
        .unwrap()
        .iter()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn access_log_volume_is_bounded_per_client_and_reason() {
    let up = MockUpstream::start(false).await;
    let relay = Relay::start(test_config(&up));
    let flooder = [127, 0, 0, 2];
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let addr = relay.addr;
        tasks.push(tokio::spawn(async move {
            let mut s = connect_from(flooder, addr).await;
            let mut buf = Vec::new();
            for _ in 0..500 {
                let r = send_on(&mut s, &mut buf, "GET", "/no/such/path", &[], "")
                    .await
                    .unwrap();
                assert_eq!(r.status, 404);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let elapsed = started.elapsed();
    // Another client's lines are all there, and so is every counted call, also from the flooder.
    let mut rids = Vec::new();
    for _ in 0..3 {
        let r = request_from([127, 0, 0, 3], relay.addr, "GET", "/other", &[], "").await;
        assert_eq!(r.status, 404);
        rids.push(r.header("x-request-id").unwrap().to_string());
    }
    let t = relay.token("openai", None);
    let mut s = connect_from(flooder, relay.addr).await;
    let mut buf = Vec::new();
    for _ in 0..(PER_KEY_LINES_PER_SEC + 3) {
        let r = send_on(&mut s, &mut buf, "POST", &chat_target(&t), &[], CHAT)
            .await
            .unwrap();
        assert_eq!(r.status, 200);
        // The relay's own id comes after any the provider sent.
        let rid = r
            .headers
            .iter()
            .rev()
            .find(|(n, _)| n == "x-request-id")
            .unwrap();
        rids.push(rid.1.clone());
    }
    // Lines reach stdout just after each answer: wait (bounded) until every one of these is there.
    let mut lines = access_lines(&relay);
    for _ in 0..100 {
        if rids
            .iter()
            .all(|rid| lines.iter().any(|l| l["rid"] == rid.as_str()))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        lines = access_lines(&relay);
    }
    for rid in &rids {
        assert!(
            lines.iter().any(|l| l["rid"] == rid.as_str()),
            "{rid} not logged"
        );
    }
    // Stdout keeps write order, so every flood line is in by now.
    let flood_lines = lines
        .iter()
        .filter(|l| l["ip"] == "127.0.0.2" && l["status"] == 404)
        .count();
    // At most PER_KEY_LINES_PER_SEC in each wall-clock second the flood touched.
    let seconds = elapsed.as_secs() as usize + 2;
    assert!(
        flood_lines >= 1 && flood_lines <= PER_KEY_LINES_PER_SEC as usize * seconds,
        "{flood_lines} lines in {elapsed:?}"
    );
    // Nothing disappears silently: the relay's operational log reports every held-back line.
    let mut reports: Vec<Value> = Vec::new();
    for _ in 0..200 {
        reports = relay
            .stderr
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains("access log lines suppressed"))
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let reported: u64 = reports
            .iter()
            .map(|r| r["suppressed"].as_u64().unwrap())
            .sum();
        if reported as usize + flood_lines >= 2000 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let reported: u64 = reports
        .iter()
        .map(|r| r["suppressed"].as_u64().unwrap())
        .sum();
    assert_eq!(reported as usize + flood_lines, 2000, "{reports:?}");
    assert_eq!(reports[0]["top"][0]["ip"], "127.0.0.2", "{reports:?}");
    assert_eq!(reports[0]["top"][0]["class"], "not_found", "{reports:?}");
}

#[tokio::test]
async fn only_provider_methods_are_forwarded() {
    let up = MockUpstream::start(false).await;
    let relay = Relay::start(test_config(&up));
    let t = relay.token("openai", None);
    let target = format!("/relayapi/{t}/models");
    for method in [
        "TRACE", "CONNECT", "FOO", "get", "post", "HEAD", "PUT", "OPTIONS",
    ] {
        let mut s = connect_from(VALID, relay.addr).await;
        let mut buf = Vec::new();
        let r = send_on(&mut s, &mut buf, method, &target, &[], "")
            .await
            .unwrap();
        assert_eq!(r.status, 405, "{method}: {}", r.text());
        assert_eq!(
            r.header("allow"),
            Some("GET, POST, PATCH, DELETE"),
            "{method}"
        );
        if method != "HEAD" {
            assert_eq!(r.json()["error"]["code"], "method_not_allowed");
        }
    }
    // Refused before any token work: a garbage token gets the same 405, not a 401.
    let r = request(relay.addr, "FOO", "/relayapi/rt1.garbage/models", &[], "").await;
    assert_eq!(r.status, 405);
    assert_eq!(up.count(), 0, "nothing was forwarded");
    for method in ["GET", "DELETE", "PATCH"] {
        let r = request(relay.addr, method, &target, &[], "").await;
        assert_eq!(r.status, 200, "{method}: {}", r.text());
    }
    assert_eq!(up.count(), 3);
    // The relay's own endpoints name their methods too.
    let r = request(relay.addr, "POST", "/health", &[], "").await;
    assert_eq!((r.status, r.header("allow")), (405, Some("GET, HEAD")));
}

#[tokio::test]
async fn malformed_origins_are_refused_not_ignored() {
    let up = MockUpstream::start(false).await;
    let relay = Relay::start(test_config(&up));
    let t = relay.token("openai", None);
    let bad_origins: [&[u8]; 4] = [
        b"https://app.example\xff",
        b"\xc3\x28",
        b"https://app.example/path",
        b"app.example",
    ];
    for origin in bad_origins {
        for (method, extra) in [
            ("POST", format!("content-length: {}\r\n", CHAT.len())),
            (
                "OPTIONS",
                "access-control-request-method: POST\r\n".to_string(),
            ),
        ] {
            let mut req = format!(
                "{method} {} HTTP/1.1\r\nhost: x\r\n{extra}origin: ",
                chat_target(&t)
            )
            .into_bytes();
            req.extend_from_slice(origin);
            req.extend_from_slice(b"\r\n\r\n");
            if method == "POST" {
                req.extend_from_slice(CHAT.as_bytes());
            }
            let r = raw(relay.addr, &req).await.unwrap();
            assert_eq!(r.status, 403, "{method} {origin:?}: {}", r.text());
            assert!(r.header("access-control-allow-origin").is_none());
        }
    }
    assert_eq!(up.count(), 0);
    // A well-formed origin (allowed by the default "*") still works.
    let r = request(
        relay.addr,
        "POST",
        &chat_target(&t),
        &[("origin", "https://app.example")],
        CHAT,
    )
    .await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn health_details_only_for_the_metrics_ranges() {
    let up = MockUpstream::start(false).await;
    let relay = Relay::start(test_config(&up));
    let public = request_from([127, 0, 0, 9], relay.addr, "GET", "/health", &[], "").await;
    assert_eq!(public.status, 200);
    assert_eq!(public.json(), json!({"status": "ok"}));
    let local = request_from([127, 0, 0, 1], relay.addr, "GET", "/health", &[], "").await;
    assert_eq!(local.json()["status"], "ok");
    assert!(
        local.json()["requests"]["total"].as_u64().is_some(),
        "{}",
        local.text()
    );
    assert!(local.json()["version"].is_string());
}

#[tokio::test]
async fn the_bearer_scheme_is_case_insensitive() {
    let up = MockUpstream::start(false).await;
    let relay = Relay::start(test_config(&up));
    let t = relay.token("openai", None);
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let auth = format!("{scheme} {t}");
        let r = request(
            relay.addr,
            "POST",
            "/relayapi/chat/completions",
            &[("authorization", &auth)],
            CHAT,
        )
        .await;
        assert_eq!(r.status, 200, "{scheme}: {}", r.text());
    }
    let r = request(
        relay.addr,
        "POST",
        "/relayapi/chat/completions",
        &[("authorization", &format!("Basic {t}"))],
        CHAT,
    )
    .await;
    assert_eq!(r.status, 401);
    assert_eq!(up.count(), 4);
}

#[tokio::test]
async fn revoke_before_in_the_future_is_refused() {
    let up = MockUpstream::start(false).await;
    let relay = Relay::start(test_config(&up));
    let t = relay.token("openai", None);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    for before in [9_999_999_999, now * 1000, now + 3600] {
        let body = format!(r#"{{"before": {before}}}"#);
        let r = relay.admin("POST", "/admin/v1/revoke-before", &body).await;
        assert_eq!(r.status, 400, "{before}: {}", r.text());
        assert_eq!(r.json()["error"]["code"], "invalid_parameter");
        let msg = r.json()["error"]["message"].as_str().unwrap().to_string();
        assert!(
            msg.contains("Unix seconds") && msg.contains("clock_skew"),
            "{msg}"
        );
    }
    // Nothing was revoked.
    assert_eq!(
        request(relay.addr, "POST", &chat_target(&t), &[], CHAT)
            .await
            .status,
        200
    );
    // Now is fine (within the clock skew), and revokes what was issued before it.
    let body = format!(r#"{{"before": {}}}"#, now + 30);
    let r = relay.admin("POST", "/admin/v1/revoke-before", &body).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = request(relay.addr, "POST", &chat_target(&t), &[], CHAT).await;
    assert_eq!(r.json()["error"]["code"], "token_revoked");
}

/// The same with the limits shared through Redis (`rate_limit.shared`): the global key is charged for
/// authenticated calls only.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn junk_tokens_do_not_starve_a_valid_client_with_shared_limits() {
    let server = store_support::RedisServer::start();
    junk_does_not_starve_a_valid_client(json!({
        "store": {"type": "redis", "url": server.url(), "key_prefix": "admission-test:",
                  "connect_timeout": 1, "command_timeout": 1},
        "rate_limit": {"shared": true},
    }))
    .await;
}

/// With Redis gone, a token this relay already found used up or revoked is still refused (from
/// memory, without a store operation), while a token it knows nothing about is refused because the
/// store cannot answer: limits never fail open.
#[tokio::test]
async fn dead_tokens_are_refused_from_memory_without_a_store_operation() {
    let mut server = store_support::RedisServer::start();
    let up = MockUpstream::start(false).await;
    let mut cfg = test_config(&up);
    cfg["store"] = json!({"type": "redis", "url": server.url(), "key_prefix": "admission-test:",
                          "connect_timeout": 1, "command_timeout": 1});
    let relay = Relay::start(cfg);
    let used = relay.token("openai", Some(1));
    assert_eq!(
        request(relay.addr, "POST", &chat_target(&used), &[], CHAT)
            .await
            .status,
        200
    );
    let r = request(relay.addr, "POST", &chat_target(&used), &[], CHAT).await;
    assert_eq!(r.json()["error"]["code"], "token_exhausted");
    let claims = relay.claims("openai", None);
    let revoked = relay.mint(&claims);
    let r = relay
        .admin(
            "POST",
            &format!("/admin/v1/tokens/{}/revoke", claims.jti),
            "",
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    server.stop();
    let r = request(relay.addr, "POST", &chat_target(&revoked), &[], CHAT).await;
    assert_eq!(r.json()["error"]["code"], "token_revoked", "{}", r.text());
    let r = request(relay.addr, "POST", &chat_target(&used), &[], CHAT).await;
    assert_eq!(r.json()["error"]["code"], "token_exhausted", "{}", r.text());
    let fresh = relay.token("openai", Some(1));
    let r = request(relay.addr, "POST", &chat_target(&fresh), &[], CHAT).await;
    assert_eq!(
        r.json()["error"]["code"],
        "store_unavailable",
        "{}",
        r.text()
    );
    assert_eq!(up.count(), 1);
}

/// Signed admin requests are never throttled to the per-address rate (a backend revoking many tokens
/// at once), while admin requests with a bad signature spend their sender's allowance like other junk.
#[tokio::test]
async fn signed_admin_calls_are_not_charged_but_bad_signatures_are() {
    let up = MockUpstream::start(false).await;
    let mut cfg = test_config(&up);
    cfg["rate_limit"] = json!({"requests_per_second": 0, "burst": 0,
        "ip_limit": {"requests_per_second": 1, "burst": 3, "max_tracked_ips": 100}});
    let relay = Relay::start(cfg);
    for _ in 0..10 {
        let id = relay.claims("openai", None).jti;
        let r = relay
            .admin("POST", &format!("/admin/v1/tokens/{id}/revoke"), "")
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let mut got = Vec::new();
    let mut s = connect_from([127, 0, 0, 5], relay.addr).await;
    let mut buf = Vec::new();
    for _ in 0..6 {
        let r = send_on(
            &mut s,
            &mut buf,
            "GET",
            "/admin/v1/tokens/0123456789abcdef0123456789abcdef",
            &[("authorization", "RelayAPI-HMAC-SHA256 nonsense")],
            "",
        )
        .await
        .unwrap();
        got.push(r.status);
    }
    assert_eq!(got[..3], [401, 401, 401], "{got:?}");
    assert!(
        got[3..].iter().filter(|s| **s == 429).count() >= 2,
        "{got:?}"
    );
}
