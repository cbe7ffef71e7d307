//! The relay binary against a local mock provider over real sockets: token transports, provider auth
//! styles, header hygiene, streaming, aborts, call limits and the identical 401 for every invalid token.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::*;
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const CHAT: &str = r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}"#;

#[tokio::test]
async fn path_query_and_header_token_transports() {
    let up = MockUpstream::start(false).await;
    let relay = Relay::start(test_config(&up));
    let t = relay.token("openai", None);

    let r = request(
        relay.addr,
        "POST",
        &format!("/relayapi/{t}/chat/completions"),
        &[("authorization", "Bearer sk-junk")],
        CHAT,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json()["choices"][0]["message"]["content"],
        "hello from mock"
    );

    let r = request(
        relay.addr,
        "POST",
        &format!("/relayapi/chat/completions?token={t}&api-version=1"),
        &[],
        CHAT,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());

    for h in ["authorization", "x-api-key", "x-goog-api-key"] {
        let v = if h == "authorization" {
            format!("Bearer {t}")
        } else {
            t.clone()
        };
        let r = request(
            relay.addr,
            "POST",
            "/relayapi/chat/completions",
            &[(h, &v)],
            CHAT,
        )
        .await;
        assert_eq!(r.status, 200, "{h}: {}", r.text());
    }

    let seen = up.requests();
    assert_eq!(seen.len(), 5);
    for rec in &seen {
        assert!(
            rec.target.starts_with("/v1/chat/completions"),
            "{}",
            rec.target
        );
        assert_eq!(
            rec.header("authorization"),
            Some(format!("Bearer {FAKE_KEY}").as_str())
        );
        assert_eq!(rec.header("x-api-key"), None);
        assert_eq!(rec.header("x-goog-api-key"), None);
        assert_eq!(rec.header("host"), Some(up.addr.to_string().as_str()));
        let raw = format!(
            "{} {:?} {}",
            rec.target,
            rec.headers,
            String::from_utf8_lossy(&rec.body)
        );
        assert!(
            !raw.contains("rt1."),
            "the token reached the provider: {raw}"
        );
    }
    assert_eq!(
        seen[1].target, "/v1/chat/completions?api-version=1",
        "token removed from the query"
    );
    let logs = relay.all_logs();
    assert!(!logs.contains(&t[4..40]), "token text in logs");
    assert!(!logs.contains(FAKE_KEY), "API key in logs");
}

#[tokio::test]
async fn each_provider_gets_its_own_auth_header() {
    let up = MockUpstream::start(false).await;
    let relay = Relay::start(test_config(&up));
    let cases = [
        (
            "openai",
            "/chat/completions",
            "authorization",
            format!("Bearer {FAKE_KEY}"),
            "/v1/chat/completions",
        ),
        (
            "anthropic",
            "/v1/messages",
            "x-api-key",
            FAKE_KEY.to_string(),
            "/v1/messages",
        ),
        (
            "gemini",
            "/v1beta/models/gemini-2.0-flash:generateContent",
            "x-goog-api-key",
            FAKE_KEY.to_string(),
            "/v1beta/models/gemini-2.0-flash:generateContent",
        ),
        (
            "azure",
            "/deployments/d1/chat/completions?api-version=2024-10-21",
            "api-key",
            FAKE_KEY.to_string(),
            "/openai/deployments/d1/chat/completions?api-version=2024-10-21",
        ),
    ];
    for (i, (prv, path, header, value, upstream_path)) in cases.iter().enumerate() {
        let t = relay.token(prv, None);
        let r = request(
            relay.addr,
            "POST",
            &format!("/relayapi/{t}{path}"),
            &[("x-api-key", "client-junk")],
            CHAT,
        )
        .await;
        assert_eq!(r.status, 200, "{prv}: {}", r.text());
        let rec = &up.requests()[i];
        assert_eq!(rec.target, *upstream_path);
        assert_eq!(rec.header(header), Some(value.as_str()), "{prv}");
        let others = ["authorization", "x-api-key", "x-goog-api-key", "api-key"];
        for o in others.iter().filter(|o| *o != header) {
            assert_eq!(rec.header(o), None, "{prv} leaked {o}");
        }
        if *prv == "anthropic" {
            assert_eq!(rec.header("anthropic-version"), Some("2023-06-01"));
        }
    }
}

#[tokio::test]
async fn hop_by_hop_cookies_and_credential_echoes_are_dropped() {
    let up = MockUpstream::start(false).await;
    let relay = Relay::start(test_config(&up));
    let t = relay.token("openai", None);
    let r = request(
        relay.addr,
        "POST",
        &format!("/relayapi/{t}/echo-key"),
        &[
            ("cookie", "sid=1"),
            ("connection", "x-secret-hop"),
            ("x-secret-hop", "1"),
            ("x-stainless-lang", "python"),
            ("origin", "https://app.example"),
            ("x-forwarded-for", "1.2.3.4"),
        ],
        "{}",
    )
    .await;
    assert_eq!(r.status, 200);
    let rec = &up.requests()[0];
    for h in ["cookie", "x-secret-hop", "origin", "x-forwarded-for"] {
        assert_eq!(rec.header(h), None, "{h} forwarded");
    }
    assert_eq!(rec.header("x-stainless-lang"), Some("python"));
    // The mock echoes the key in x-echo and sets a cookie and its own CORS policy.
    assert_eq!(r.header("x-echo"), None, "credential echo passed back");
    assert_eq!(r.header("set-cookie"), None);
    assert_eq!(r.header("x-safe"), Some("yes"));
    assert_eq!(r.header("referrer-policy"), Some("no-referrer"));
    assert_ne!(
        r.header("access-control-allow-origin"),
        Some("https://evil.example")
    );
}

#[tokio::test]
async fn sse_events_arrive_before_the_provider_sends_the_next() {
    let up = MockUpstream::start(false).await;
    let relay = Relay::start(test_config(&up));
    let t = relay.token("openai", None);
    let body = r#"{"model":"m","stream":true,"messages":[]}"#;
    let req = format!(
        "POST /relayapi/{t}/chat/completions HTTP/1.1\r\nhost: x\r\nx-test-gated: 1\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut s = TcpStream::connect(relay.addr).await.unwrap();
    s.write_all(req.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    for i in 0..3 {
        // Event i must be readable before the mock is allowed to produce event i+1.
        let want = format!("part{i} ");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while !String::from_utf8_lossy(&got).contains(&want) {
            let mut tmp = [0u8; 4096];
            let n =
                tokio::time::timeout_at(deadline, tokio::io::AsyncReadExt::read(&mut s, &mut tmp))
                    .await
                    .unwrap_or_else(|_| {
                        panic!("event {i} did not arrive while the provider waited")
                    })
                    .unwrap();
            assert!(n > 0);
            got.extend_from_slice(&tmp[..n]);
        }
        up.release();
    }
    let text = String::from_utf8_lossy(&got);
    assert!(text.contains("content-type: text/event-stream"), "{text}");
    assert!(text.contains("transfer-encoding: chunked"));
}

#[tokio::test]
async fn client_abort_closes_the_upstream_connection() {
    let up = MockUpstream::start(false).await;
    let relay = Relay::start(test_config(&up));
    let t = relay.token("openai", None);
    let mut s = TcpStream::connect(relay.addr).await.unwrap();
    let req =
        format!("POST /relayapi/{t}/hang HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\n{{}}");
    s.write_all(req.as_bytes()).await.unwrap();
    for _ in 0..50 {
        if up.count() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(up.count(), 1, "request reached the provider");
    assert_eq!(up.closed.load(Ordering::SeqCst), 0);
    drop(s);
    for _ in 0..100 {
        if up.closed.load(Ordering::SeqCst) == 1 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the relay kept the upstream request open after the client left");
}

#[tokio::test]
async fn upstream_connections_are_pooled() {
    let up = MockUpstream::start(false).await;
    let relay = Relay::start(test_config(&up));
    let t = relay.token("openai", None);
    for _ in 0..5 {
        let r = request(
            relay.addr,
            "POST",
            &format!("/relayapi/{t}/chat/completions"),
            &[],
            CHAT,
        )
        .await;
        assert_eq!(r.status, 200);
    }
    assert_eq!(
        up.accepted.load(Ordering::SeqCst),
        1,
        "one upstream connection served all five"
    );
    // A close-delimited answer is not reusable.
    let r = request(
        relay.addr,
        "GET",
        &format!("/relayapi/{t}/close-delimited"),
        &[],
        "",
    )
    .await;
    assert_eq!((r.status, r.text().as_str()), (200, "until-close-body"));
    let r = request(
        relay.addr,
        "POST",
        &format!("/relayapi/{t}/chat/completions"),
        &[],
        CHAT,
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(up.accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn tls_upstream_with_the_test_ca() {
    let up = MockUpstream::start(true).await;
    let mut cfg = test_config(&up);
    cfg["providers"]["openai"]["base_url"] =
        json!(format!("https://localhost:{}/v1", up.addr.port()));
    let relay = Relay::start(cfg);
    let t = relay.token("openai", None);
    for _ in 0..3 {
        let r = request(
            relay.addr,
            "POST",
            &format!("/relayapi/{t}/chat/completions"),
            &[],
            CHAT,
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    assert_eq!(
        up.accepted.load(Ordering::SeqCst),
        1,
        "TLS connection reused"
    );
    assert_eq!(
        up.requests()[0].header("host"),
        Some(format!("localhost:{}", up.addr.port()).as_str())
    );
}

#[tokio::test]
async fn tls_upstream_with_an_untrusted_certificate_fails_and_refunds() {
    let up = MockUpstream::start(true).await;
    let mut cfg = test_config(&up);
    cfg["providers"]["openai"]["base_url"] =
        json!(format!("https://localhost:{}/v1", up.addr.port()));
    cfg["upstream"]["extra_ca_file"] = Value::Null;
    let relay = Relay::start(cfg);
    let t = relay.token("openai", Some(1));
    for _ in 0..3 {
        let r = request(
            relay.addr,
            "POST",
            &format!("/relayapi/{t}/chat/completions"),
            &[],
            CHAT,
        )
        .await;
        assert_eq!(r.status, 502);
        assert_eq!(r.json()["error"]["code"], "upstream_tls_failed");
    }
}

#[tokio::test]
async fn max_calls_is_exact_under_concurrency() {
    let up = MockUpstream::start(false).await;
    let relay = Relay::start(test_config(&up));
    let t = relay.token("openai", Some(5));
    let mut tasks = Vec::new();
    for _ in 0..200 {
        let (addr, path) = (relay.addr, format!("/relayapi/{t}/chat/completions"));
        tasks.push(tokio::spawn(async move {
            request(addr, "POST", &path, &[], CHAT).await
        }));
    }
    let mut ok = 0;
    let mut exhausted = 0;
    for task in tasks {
        let r = task.await.unwrap();
        match r.status {
            200 => ok += 1,
            429 => {
                assert_eq!(r.json()["error"]["code"], "token_exhausted");
                assert_eq!(r.header("x-should-retry"), Some("false"));
                exhausted += 1;
            }
            s => panic!("unexpected {s}: {}", r.text()),
        }
    }
    assert_eq!((ok, exhausted), (5, 195));
    assert_eq!(
        up.count(),
        5,
        "exactly max_calls requests reached the provider"
    );
}

#[tokio::test]
async fn every_invalid_vector_gets_the_identical_401() {
    let up = MockUpstream::start(false).await;
    let relay = Relay::start(test_config(&up));
    let invalid: Vec<Value> =
        serde_json::from_str(include_str!("vectors/invalid.json")).expect("invalid.json parses");
    // Tokens minted for another key ring are invalid here too, as is a missing token.
    let mut bodies = std::collections::BTreeSet::new();
    let mut n = 0;
    for v in &invalid {
        let tok = v["token"].as_str().unwrap();
        for (target, headers) in [
            (
                format!(
                    "/relayapi/chat/completions?token={}",
                    tok.replace(['&', '#', ' '], "")
                ),
                vec![],
            ),
            (
                "/relayapi/chat/completions".to_string(),
                vec![("authorization".to_string(), format!("Bearer {tok}"))],
            ),
        ] {
            if tok.contains(['\r', '\n']) {
                continue;
            }
            let hs: Vec<(&str, &str)> = headers
                .iter()
                .map(|(a, b)| (a.as_str(), b.as_str()))
                .collect();
            let r = request(relay.addr, "POST", &target, &hs, CHAT).await;
            assert!(
                r.status == 401 || r.status == 431 || r.status == 414,
                "{}: {}",
                v["desc"],
                r.status
            );
            if r.status == 401 {
                bodies.insert(r.body.clone());
                n += 1;
            }
        }
    }
    let r = request(relay.addr, "POST", "/relayapi/chat/completions", &[], CHAT).await;
    bodies.insert(r.body.clone());
    assert!(n > 60, "{n}");
    assert_eq!(bodies.len(), 1, "different 401 bodies: {bodies:?}");
    assert_eq!(up.count(), 0);
    assert_eq!(r.json()["error"]["code"], "invalid_token");
}

#[tokio::test]
async fn expired_and_future_tokens_have_their_own_codes() {
    let up = MockUpstream::start(false).await;
    let relay = Relay::start(test_config(&up));
    let mut c = relay.claims("openai", None);
    c.iat -= 7200;
    c.exp = c.iat + 3600;
    let r = request(
        relay.addr,
        "POST",
        &format!("/relayapi/{}/chat/completions", relay.mint(&c)),
        &[],
        CHAT,
    )
    .await;
    assert_eq!(
        (r.status, r.json()["error"]["code"].as_str()),
        (401, Some("token_expired"))
    );
    assert_eq!(r.header("x-should-retry"), Some("false"));
    let mut c = relay.claims("openai", None);
    c.iat += 3600;
    c.exp += 3600;
    let r = request(
        relay.addr,
        "POST",
        &format!("/relayapi/{}/chat/completions", relay.mint(&c)),
        &[],
        CHAT,
    )
    .await;
    assert_eq!(r.json()["error"]["code"], "token_not_yet_valid");
    let mut c = relay.claims("openai", None);
    c.exp = c.iat + 90 * 24 * 3600;
    let r = request(
        relay.addr,
        "POST",
        &format!("/relayapi/{}/chat/completions", relay.mint(&c)),
        &[],
        CHAT,
    )
    .await;
    assert_eq!(r.json()["error"]["code"], "token_lifetime_too_long");
    let c = relay.claims("no-such-provider", None);
    let r = request(
        relay.addr,
        "POST",
        &format!("/relayapi/{}/chat/completions", relay.mint(&c)),
        &[],
        CHAT,
    )
    .await;
    assert_eq!(r.json()["error"]["code"], "provider_unavailable");
    assert_eq!(up.count(), 0);
}

#[tokio::test]
async fn token_limits_model_override_and_endpoints() {
    let up = MockUpstream::start(false).await;
    let relay = Relay::start(test_config(&up));
    let mut c = relay.claims("openai", None);
    c.ext = Some(relayapi::token::format::Ext {
        rep_m: Some("forced-model".into()),
    });
    c.paths = Some(vec!["/chat/completions".into()]);
    let t = relay.mint(&c);
    let r = request(
        relay.addr,
        "POST",
        &format!("/relayapi/{t}/chat/completions"),
        &[],
        CHAT,
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(up.requests()[0].json()["model"], "forced-model");
    assert_eq!(r.json()["model"], "forced-model");
    let r = request(
        relay.addr,
        "POST",
        &format!("/relayapi/{t}/embeddings"),
        &[],
        "{}",
    )
    .await;
    assert_eq!(
        (r.status, r.json()["error"]["code"].as_str()),
        (403, Some("endpoint_not_allowed"))
    );

    let mut c = relay.claims("openai", None);
    c.models = Some(vec!["gpt-4o-mini".into()]);
    c.mtok = Some(10);
    c.origins = Some(vec!["https://app.example".into()]);
    let t = relay.mint(&c);
    let r = request(
        relay.addr,
        "POST",
        &format!("/relayapi/{t}/chat/completions"),
        &[],
        r#"{"model":"gpt-4o","max_tokens":5}"#,
    )
    .await;
    assert_eq!(r.json()["error"]["code"], "model_not_allowed");
    let r = request(
        relay.addr,
        "POST",
        &format!("/relayapi/{t}/chat/completions"),
        &[("origin", "https://evil.example")],
        CHAT,
    )
    .await;
    assert_eq!(r.json()["error"]["code"], "origin_not_allowed");
    let r = request(
        relay.addr,
        "POST",
        &format!("/relayapi/{t}/chat/completions"),
        &[("origin", "https://app.example")],
        r#"{"model":"gpt-4o-mini","max_tokens":500}"#,
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        up.requests().last().unwrap().json()["max_tokens"],
        10,
        "clamped"
    );
}

#[tokio::test]
async fn rate_limits_answer_429_with_retry_after() {
    let up = MockUpstream::start(false).await;
    let mut cfg = test_config(&up);
    cfg["rate_limit"] = json!({"requests_per_second": 0, "burst": 0, "ip_limit": {"requests_per_second": 1, "burst": 3}});
    let relay = Relay::start(cfg);
    let t = relay.token("openai", None);
    let mut statuses = Vec::new();
    for _ in 0..5 {
        let r = request(
            relay.addr,
            "POST",
            &format!("/relayapi/{t}/chat/completions"),
            &[],
            CHAT,
        )
        .await;
        if r.status == 429 {
            assert_eq!(r.json()["error"]["code"], "rate_limited");
            assert!(r.header("retry-after").unwrap().parse::<u64>().unwrap() >= 1);
        }
        statuses.push(r.status);
    }
    assert_eq!(&statuses[..3], &[200, 200, 200]);
    assert_eq!(statuses[4], 429);
    // Health and preflights are not rate limited as calls.
    let r = request(relay.addr, "GET", "/health", &[], "").await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn health_and_cors_preflight_need_no_token() {
    let up = MockUpstream::start(false).await;
    let relay = Relay::start(test_config(&up));
    let r = request(relay.addr, "GET", "/health", &[], "").await;
    assert_eq!(r.status, 200);
    let h = r.json();
    assert_eq!(h["status"], "ok");
    assert!(h["uptime_secs"].is_u64());
    assert!(h["requests"]["total"].as_u64().unwrap() >= 1);
    let r = request(
        relay.addr,
        "OPTIONS",
        "/relayapi/rt1.whatever/chat/completions",
        &[
            ("origin", "http://localhost:5173"),
            ("access-control-request-method", "POST"),
            (
                "access-control-request-headers",
                "authorization, content-type, x-stainless-os, anthropic-version",
            ),
        ],
        "",
    )
    .await;
    assert_eq!(r.status, 204, "{}", r.text());
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("http://localhost:5173")
    );
    let allowed = r
        .header("access-control-allow-headers")
        .unwrap()
        .to_ascii_lowercase();
    assert!(
        allowed.contains("x-stainless-os") && allowed.contains("authorization"),
        "{allowed}"
    );
    assert_eq!(up.count(), 0);
}

#[tokio::test]
async fn unknown_paths_are_404_and_kref_uses_server_keys() {
    let up = MockUpstream::start(false).await;
    let mut cfg = test_config(&up);
    cfg["api_keys"] = json!({"main": {"env": "RELAY_TEST_SERVER_KEY"}});
    let relay = Relay::start_with_env(cfg, &[("RELAY_TEST_SERVER_KEY", "server-side-key-42")]);
    let r = request(relay.addr, "GET", "/nothing-here", &[], "").await;
    assert_eq!(r.status, 404);
    let mut c = relay.claims("openai", None);
    c.key = None;
    c.kref = Some("main".into());
    let r = request(
        relay.addr,
        "POST",
        &format!("/relayapi/{}/chat/completions", relay.mint(&c)),
        &[],
        CHAT,
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        up.requests()[0].header("authorization"),
        Some("Bearer server-side-key-42")
    );
    c.kref = Some("missing".into());
    let r = request(
        relay.addr,
        "POST",
        &format!("/relayapi/{}/chat/completions", relay.mint(&c)),
        &[],
        CHAT,
    )
    .await;
    assert_eq!(r.json()["error"]["code"], "api_key_unavailable");
}

#[tokio::test]
async fn graceful_shutdown_lets_a_stream_finish() {
    let up = MockUpstream::start(false).await;
    let mut relay = Relay::start(test_config(&up));
    let t = relay.token("openai", None);
    let body = r#"{"model":"m","stream":true}"#;
    let req = format!(
        "POST /relayapi/{t}/chat/completions HTTP/1.1\r\nhost: x\r\nx-test-gated: 1\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut s = TcpStream::connect(relay.addr).await.unwrap();
    s.write_all(req.as_bytes()).await.unwrap();
    // The stream is in flight once the provider has the request.
    for _ in 0..250 {
        if up.count() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(up.count(), 1);
    let pid = relay.child.id();
    let _ = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status();
    // New connections are refused while the old stream drains (poll: the signal is handled async).
    let mut refused = false;
    for _ in 0..100 {
        if TcpStream::connect(relay.addr).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(refused, "still accepting after SIGTERM");
    up.release();
    up.release();
    let mut buf = Vec::new();
    let resp = read_response(&mut s, &mut buf, false)
        .await
        .expect("the stream completed");
    assert!(resp.text().contains("[DONE]"), "{}", resp.text());
    let status = relay.terminate();
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn metrics_count_requests_rejections_and_carry_no_token_ids() {
    let up = MockUpstream::start(false).await;
    let relay = Relay::start(test_config(&up));
    let mut c = relay.claims("openai", Some(1));
    c.uid = Some("end-user-7".into());
    let t = relay.mint(&c);
    let path = format!("/relayapi/{t}/chat/completions");
    assert_eq!(
        request(relay.addr, "POST", &path, &[], CHAT).await.status,
        200
    );
    assert_eq!(
        request(relay.addr, "POST", &path, &[], CHAT).await.status,
        429
    );
    assert_eq!(
        request(relay.addr, "POST", "/relayapi/chat/completions", &[], CHAT)
            .await
            .status,
        401
    );
    // A request is counted just after its last byte is written: poll until the relay's tasks caught up.
    let mut text = String::new();
    for _ in 0..50 {
        let r = request(relay.addr, "GET", "/metrics", &[], "").await;
        assert_eq!(r.status, 200);
        assert!(r
            .header("content-type")
            .unwrap()
            .starts_with("text/plain; version=0.0.4"));
        text = r.text();
        if text.contains("relayapi_requests_total{status=\"200\",provider=\"openai\"} 1")
            && text.contains("relayapi_requests_total{status=\"401\",provider=\"none\"} 1")
            && text.contains("relayapi_requests_total{status=\"429\",provider=\"openai\"} 1")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for want in [
        "relayapi_requests_total{status=\"200\",provider=\"openai\"} 1",
        "relayapi_requests_total{status=\"429\",provider=\"openai\"} 1",
        "relayapi_requests_total{status=\"401\",provider=\"none\"} 1",
        "relayapi_rejections_total{reason=\"token_exhausted\"} 1",
        "relayapi_rejections_total{reason=\"invalid_token\"} 1",
        "relayapi_request_duration_seconds_count",
        "relayapi_time_to_first_byte_seconds_count 1",
        "relayapi_store_duration_seconds_count",
        "relayapi_active_connections ",
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }
    for secret in [
        c.jti.as_str(),
        "end-user-7",
        FAKE_KEY,
        "127.0.0.1",
        &t[4..30],
    ] {
        assert!(!text.contains(secret), "{secret} leaked into metrics");
    }
    // The access log has the token id and the end user, never the token or the key.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let logs = relay.all_logs();
    let line = logs
        .lines()
        .find(|l| l.contains("\"status\":200") && l.contains(&c.jti))
        .expect("access line");
    let v: Value = serde_json::from_str(line).unwrap();
    assert_eq!(v["uid"], "end-user-7");
    assert_eq!(v["provider"], "openai");
    assert_eq!(v["path"], "/relayapi/[token]/chat/completions");
    assert!(v["ttfb_ms"].is_number() && v["dur_ms"].is_number() && v["rid"].is_string());
    assert!(!logs.contains(&t[4..30]) && !logs.contains(FAKE_KEY));
}
