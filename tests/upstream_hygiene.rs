//! What the provider gets to see and what the page gets back, through the real binary over real sockets:
//! paths that only look like provider paths are refused before anything is forwarded (issue 9,
//! finding 11), request headers are forwarded by allow-list (finding 10), and no run of the API key
//! reaches the client in response headers or error bodies (finding 13).

mod common;

use common::*;

#[tokio::test]
async fn issue9_dot_segment_look_alikes_never_reach_the_provider() {
    let up = MockUpstream::start(false).await;
    let relay = Relay::start(test_config(&up));
    let t = relay.token("openai", None);
    let look_alikes = [
        "/v1/..;/admin",
        "/..;/x",
        "/%252e%252e/x",
        "/%c0%ae%c0%ae/x",
        "/%e0%80%ae%e0%80%ae/x",
        "/%2e%2e/x",
        "/.%2e/x",
        "/./x",
        "/../x",
        "/.../x",
        "/a//x",
        "/a%2fx",
        "/a%5cx",
        "/a\\x",
        "/a%00",
        "/a%0d%0aX-Injected:%201",
        "/..%20/x",
        "/a;b=c/x",
        "/a%3bb/x",
    ];
    for path in look_alikes {
        for target in [
            format!("/relayapi/{t}{path}"),
            format!("/relayapi{path}?token={t}"),
        ] {
            let req = format!(
                "POST {target} HTTP/1.1\r\nhost: relay.test\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{{}}"
            );
            let r = raw(relay.addr, req.as_bytes()).await.expect("a response");
            assert_eq!(r.status, 400, "{target}: {}", r.text());
        }
    }
    assert_eq!(up.count(), 0, "a look-alike reached the provider");

    // The same relay still forwards a plain path, with its segments untouched.
    let r = request(
        relay.addr,
        "POST",
        &format!("/relayapi/{t}/models/gpt-4o:x/a.b"),
        &[],
        "{}",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(up.requests()[0].target, "/v1/models/gpt-4o:x/a.b");
}

/// Fields a client may send that must never reach a provider: billing choices, method and URL
/// overrides, framing look-alikes, credentials, forwarding claims, and codings the relay owns.
const NEVER_FORWARDED: &[(&str, &str)] = &[
    ("openai-organization", "org-attacker"),
    ("openai-project", "proj_attacker"),
    ("x-goog-user-project", "attacker-project"),
    ("x-http-method-override", "DELETE"),
    ("x-original-url", "/v1/files"),
    ("x-rewrite-url", "/v1/files"),
    ("proxy", "http://evil.example"),
    ("transfer_encoding", "chunked"),
    ("content_length", "0"),
    ("content-encoding", "gzip"),
    ("x-forwarded-for", "1.2.3.4"),
    ("forwarded", "for=1.2.3.4"),
    ("cookie", "sid=1"),
    ("origin", "https://app.example"),
    ("referer", "https://app.example/page"),
    ("x-unknown-debug", "1"),
];

#[tokio::test]
async fn issue9_request_headers_are_forwarded_by_allow_list() {
    let up = MockUpstream::start(false).await;
    let mut cfg = test_config(&up);
    cfg["providers"]["openai"]["forward_headers"] = serde_json::json!(["x-title"]);
    let relay = Relay::start(cfg);
    // (provider, path, headers its official SDK sends)
    type Case<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)]);
    let cases: &[Case] = &[
        (
            "openai",
            "/chat/completions",
            &[
                ("openai-beta", "assistants=v2"),
                ("idempotency-key", "stainless-python-retry-1"),
                ("x-stainless-lang", "python"),
                ("x-stainless-retry-count", "0"),
                ("x-title", "My App"),
            ],
        ),
        (
            "anthropic",
            "/v1/messages",
            &[
                ("anthropic-version", "2023-06-01"),
                ("anthropic-beta", "prompt-caching-2024-07-31"),
                ("anthropic-dangerous-direct-browser-access", "true"),
                ("x-stainless-lang", "js"),
            ],
        ),
        (
            "gemini",
            "/v1beta/models/gemini-2.0-flash:generateContent",
            &[
                ("x-goog-api-client", "google-genai-sdk/1.0.0 gl-node/22"),
                ("x-server-timeout", "60"),
            ],
        ),
    ];
    for (i, (prv, path, sdk_headers)) in cases.iter().enumerate() {
        let t = relay.token(prv, None);
        let mut headers: Vec<(&str, &str)> = vec![
            ("content-type", "application/json"),
            ("accept", "application/json"),
            ("user-agent", "sdk/1.0"),
            ("accept-encoding", "gzip, br"),
        ];
        headers.extend_from_slice(sdk_headers);
        headers.extend_from_slice(NEVER_FORWARDED);
        let r = request(
            relay.addr,
            "POST",
            &format!("/relayapi/{t}{path}"),
            &headers,
            "{}",
        )
        .await;
        assert_eq!(r.status, 200, "{prv}: {}", r.text());
        let rec = &up.requests()[i];
        for (name, value) in sdk_headers.iter().chain(&[
            ("content-type", "application/json"),
            ("user-agent", "sdk/1.0"),
        ]) {
            assert_eq!(
                rec.header(name),
                Some(*value),
                "{prv}: {name} not forwarded"
            );
        }
        for (name, _) in NEVER_FORWARDED {
            assert_eq!(rec.header(name), None, "{prv}: {name} forwarded");
        }
        // The relay asks for uncompressed answers whatever the client accepts.
        assert_eq!(rec.header("accept-encoding"), Some("identity"), "{prv}");
        assert_eq!(
            rec.headers
                .iter()
                .filter(|(n, _)| n == "accept-encoding")
                .count(),
            1
        );
        if *prv != "openai" {
            assert_eq!(
                rec.header("x-title"),
                None,
                "{prv}: openai's addition leaked"
            );
        }
        if *prv == "gemini" {
            assert_eq!(rec.header("x-stainless-lang"), None);
        }
    }

    // An allowed field the client names in `Connection` is hop-by-hop and stays behind.
    let t = relay.token("openai", None);
    let r = request(
        relay.addr,
        "POST",
        &format!("/relayapi/{t}/chat/completions"),
        &[
            ("connection", "keep-alive, User-Agent"),
            ("user-agent", "hop/1"),
        ],
        "{}",
    )
    .await;
    assert_eq!(r.status, 200);
    let rec = up.requests().pop().unwrap();
    assert_eq!(rec.header("user-agent"), None);
    assert_eq!(rec.header("connection"), None);
}

/// A key that looks like a real one: no English word in it, so only echoes can match.
const RANDOM_KEY: &str = "fake-key-Q7vX2mK9pL4nR8tW3yZ6bC1dF5gH0jJxE2";

/// Every 8-byte run of `key` found in `hay` (8 is `key_scrub::MIN_FRAGMENT_BYTES`).
fn key_runs_in(hay: &[u8], key: &str) -> Vec<String> {
    key.as_bytes()
        .windows(8)
        .filter(|w| hay.windows(8).any(|h| h == *w))
        .map(|w| String::from_utf8_lossy(w).into_owned())
        .collect()
}

fn token_with_key(relay: &Relay, prv: &str) -> String {
    let mut c = relay.claims(prv, None);
    c.key = Some(relayapi::token::secret::SecretString::new(RANDOM_KEY));
    relay.mint(&c)
}

fn head_bytes(r: &Resp) -> Vec<u8> {
    r.headers
        .iter()
        .flat_map(|(n, v)| format!("{n}: {v}\r\n").into_bytes())
        .collect()
}

#[tokio::test]
async fn issue9_partial_key_echoes_never_reach_the_client_in_headers() {
    let up = MockUpstream::start(false).await;
    let relay = Relay::start(test_config(&up));
    for prv in ["openai", "anthropic", "gemini"] {
        let t = token_with_key(&relay, prv);
        let mut s = tokio::net::TcpStream::connect(relay.addr).await.unwrap();
        let req = format!(
            "POST /relayapi/{t}/echo-key-partial HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\n{{}}"
        );
        tokio::io::AsyncWriteExt::write_all(&mut s, req.as_bytes())
            .await
            .unwrap();
        let mut buf = Vec::new();
        let r = read_response(&mut s, &mut buf, false).await.unwrap();
        assert_eq!(r.status, 200, "{prv}");
        // The mock received the key (and echoed pieces of it)...
        let rec = up.requests().pop().unwrap();
        assert!(
            rec.headers.iter().any(|(_, v)| v.contains(RANDOM_KEY)),
            "{prv}"
        );
        // ...and not one 8-byte run of it reached the client, nor the reason phrase it was in.
        let seen = head_bytes(&r);
        assert_eq!(
            key_runs_in(&seen, RANDOM_KEY),
            Vec::<String>::new(),
            "{prv}"
        );
        for h in ["x-debug-partial", "x-debug-tail", "x-debug-mid"] {
            assert_eq!(r.header(h), None, "{prv}: {h}");
        }
        assert_eq!(r.header("x-safe"), Some("yes"), "{prv}");
    }
}

#[tokio::test]
async fn issue9_error_bodies_are_scrubbed_of_the_key_in_every_framing() {
    let up = MockUpstream::start(false).await;
    let relay = Relay::start(test_config(&up));
    let t = token_with_key(&relay, "openai");
    for framing in ["length", "chunked", "close"] {
        let target = format!("/relayapi/{t}/error-echo-auth?framing={framing}");
        let r = request(relay.addr, "POST", &target, &[], "{}").await;
        assert_eq!(r.status, 401, "{framing}: {}", r.text());
        assert_eq!(
            key_runs_in(&r.body, RANDOM_KEY),
            Vec::<String>::new(),
            "{framing}: {}",
            r.text()
        );
        assert_eq!(
            key_runs_in(&head_bytes(&r), RANDOM_KEY),
            Vec::<String>::new()
        );
        // The provider's answer is still there, with every run of the key replaced and a length that
        // matches what was sent.
        let v = r.json();
        let msg = v["error"]["message"].as_str().unwrap_or_default();
        assert!(
            msg.starts_with("Incorrect API key provided: [redacted]****[redacted]."),
            "{framing}: {msg}"
        );
        assert_eq!(v["error"]["echo"]["authorization"], "Bearer [redacted]");
        assert_eq!(v["error"]["code"], "invalid_api_key");
        assert_eq!(
            r.header("content-length"),
            Some(r.body.len().to_string().as_str()),
            "{framing}"
        );
        assert_eq!(r.header("transfer-encoding"), None, "{framing}");
    }
    // Each provider's own auth header is scrubbed the same way.
    for prv in ["anthropic", "gemini"] {
        let t = token_with_key(&relay, prv);
        let r = request(
            relay.addr,
            "POST",
            &format!("/relayapi/{t}/error-echo-auth"),
            &[],
            "{}",
        )
        .await;
        assert_eq!(r.status, 401, "{prv}");
        assert_eq!(
            key_runs_in(&r.body, RANDOM_KEY),
            Vec::<String>::new(),
            "{prv}"
        );
        assert_eq!(r.json()["error"]["echo"]["authorization"], "[redacted]");
    }
    // Error answers without the key pass as the provider sent them.
    let r = request(
        relay.addr,
        "POST",
        &format!("/relayapi/{t}/error-plain"),
        &[],
        "{}",
    )
    .await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error"]["message"], "No such model: gpt-0");
}

#[tokio::test]
async fn issue9_a_connection_serves_the_next_request_after_a_scrubbed_error() {
    let up = MockUpstream::start(false).await;
    let relay = Relay::start(test_config(&up));
    let t = token_with_key(&relay, "openai");
    let mut s = tokio::net::TcpStream::connect(relay.addr).await.unwrap();
    let mut buf = Vec::new();
    for path in ["/error-echo-auth?framing=chunked", "/chat/completions"] {
        let body = r#"{"model":"m","messages":[]}"#;
        let req = format!(
            "POST /relayapi/{t}{path} HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        tokio::io::AsyncWriteExt::write_all(&mut s, req.as_bytes())
            .await
            .unwrap();
        let r = read_response(&mut s, &mut buf, false).await.unwrap();
        assert!(r.status == 401 || r.status == 200, "{path}: {}", r.status);
        assert_eq!(key_runs_in(&r.body, RANDOM_KEY), Vec::<String>::new());
    }
    assert!(buf.is_empty(), "no bytes beyond the two answers");
}

#[tokio::test]
async fn issue9_error_bodies_that_cannot_be_checked_are_withheld() {
    let up = MockUpstream::start(false).await;
    let relay = Relay::start(test_config(&up));
    let t = token_with_key(&relay, "openai");
    for query in [
        // Over the 256 KiB cap, announced by Content-Length, by chunks, and by closing.
        "size=300000",
        "size=300000&framing=chunked",
        "size=300000&framing=close",
        // Compressed (the relay asked for identity): the key could hide in it.
        "coding=gzip",
    ] {
        let r = request(
            relay.addr,
            "POST",
            &format!("/relayapi/{t}/error-echo-auth?{query}"),
            &[],
            "{}",
        )
        .await;
        assert_eq!(r.status, 502, "{query}");
        assert_eq!(
            r.json()["error"]["code"],
            "upstream_error_unchecked",
            "{query}"
        );
        assert_eq!(key_runs_in(&r.body, RANDOM_KEY), Vec::<String>::new());
    }
    // Just under the cap passes, scrubbed.
    let r = request(
        relay.addr,
        "POST",
        &format!("/relayapi/{t}/error-echo-auth?size=200000&framing=chunked"),
        &[],
        "{}",
    )
    .await;
    assert_eq!(r.status, 401);
    assert!(r.body.len() > 200_000);
    assert_eq!(key_runs_in(&r.body, RANDOM_KEY), Vec::<String>::new());
}
