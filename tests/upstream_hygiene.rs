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
