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
