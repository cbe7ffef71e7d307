//! Token policies (`models`, `mtok`, `ext.rep_m`) through the relay binary, per provider API family,
//! asserting what the mock provider received or that nothing reached it (issue 9, findings 1, 7, 8):
//! duplicate members, escaped names, number spellings, `n`/`candidateCount`, Gemini's model in the path
//! (`tunedModels` included) and `generationConfig`, Azure deployments, and the relay's peak memory on a
//! 32 MiB body for a token that must read it.

mod common;

use common::*;
use relayapi::token::format::{Claims, Ext, MtokMode};
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

async fn post(relay: &Relay, token: &str, path: &str, body: &str) -> Resp {
    request(
        relay.addr,
        "POST",
        &format!("/relayapi/{token}{path}"),
        &[("content-type", "application/json")],
        body,
    )
    .await
}

fn code(r: &Resp) -> (u16, String) {
    (
        r.status,
        r.json()["error"]["code"].as_str().unwrap_or("").to_string(),
    )
}

fn with_models(mut c: Claims, models: &[&str]) -> Claims {
    c.models = Some(models.iter().map(|m| m.to_string()).collect());
    c
}

fn with_forced(mut c: Claims, m: &str) -> Claims {
    c.ext = Some(Ext {
        rep_m: Some(m.into()),
    });
    c
}

#[tokio::test]
async fn issue_9_duplicate_members_never_reach_the_provider() {
    let up = MockUpstream::start(false).await;
    let relay = Relay::start(test_config(&up));
    let t = relay.mint(&with_models(relay.claims("openai", None), &["gpt-4o-mini"]));
    for body in [
        r#"{"model":"gpt-4o","model":"gpt-4o-mini"}"#,
        r#"{"model":"gpt-4o-mini","model":"gpt-4o"}"#,
        r#"{"model":"gpt-4o-mini","m\u006fdel":"gpt-4o"}"#,
    ] {
        let r = post(&relay, &t, "/chat/completions", body).await;
        assert_eq!(code(&r), (400, "duplicate_member".into()), "{body}");
        assert!(r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("`model`"));
    }
    let mut c = relay.claims("openai", None);
    c.mtok = Some(100);
    let t2 = relay.mint(&c);
    let r = post(
        &relay,
        &t2,
        "/chat/completions",
        r#"{"model":"m","max_tokens":10,"max_to\u006bens":100000}"#,
    )
    .await;
    assert_eq!(code(&r), (400, "duplicate_member".into()));
    assert_eq!(up.count(), 0, "nothing was forwarded");
    // The same token with one copy of each member goes through.
    let r = post(
        &relay,
        &t,
        "/chat/completions",
        r#"{"m\u006fdel":"gpt-4o-mini"}"#,
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(up.requests()[0].json()["model"], "gpt-4o-mini");
}

#[tokio::test]
async fn issue_9_openai_ceilings_choices_and_number_spellings() {
    let up = MockUpstream::start(false).await;
    let relay = Relay::start(test_config(&up));
    let mut c = relay.claims("openai", None);
    c.mtok = Some(100);
    let t = relay.mint(&c);
    let r = post(
        &relay,
        &t,
        "/chat/completions",
        r#"{"model":"m","n":128,"max_tokens":500}"#,
    )
    .await;
    assert_eq!(r.status, 200);
    let got = up.requests()[0].json();
    assert_eq!(
        (got["n"].clone(), got["max_tokens"].clone()),
        (json!(1), json!(100))
    );
    let r = post(&relay, &t, "/chat/completions", r#"{"model":"m"}"#).await;
    assert_eq!(r.status, 200);
    assert_eq!(up.requests()[1].json()["max_completion_tokens"], 100);
    let r = post(&relay, &t, "/responses", r#"{"model":"m","input":"hi"}"#).await;
    assert_eq!(r.status, 200);
    assert_eq!(up.requests()[2].json()["max_output_tokens"], 100);
    for v in [
        "1e3",
        "100.0",
        "\"100\"",
        "-1",
        "null",
        "99999999999999999999999",
    ] {
        let r = post(
            &relay,
            &t,
            "/chat/completions",
            &format!(r#"{{"model":"m","max_tokens":{v}}}"#),
        )
        .await;
        assert_eq!(code(&r), (400, "invalid_body".into()), "{v}");
    }
    // An endpoint whose output the rules cannot bound is refused, not forwarded unchecked.
    let r = post(
        &relay,
        &t,
        "/images/generations",
        r#"{"prompt":"x","n":10}"#,
    )
    .await;
    assert_eq!(code(&r), (403, "limit_not_enforceable".into()));
    let r = post(&relay, &t, "/chat/completions", "not json").await;
    assert_eq!(code(&r), (400, "invalid_body".into()));
    assert_eq!(up.count(), 3);

    c.mtok_mode = Some(MtokMode::Reject);
    let t = relay.mint(&c);
    let r = post(&relay, &t, "/chat/completions", r#"{"model":"m","n":2}"#).await;
    assert_eq!(code(&r), (403, "max_tokens_exceeded".into()));
    assert_eq!(up.count(), 3);
}

#[tokio::test]
async fn issue_9_anthropic_rules() {
    let up = MockUpstream::start(false).await;
    let relay = Relay::start(test_config(&up));
    let mut c = with_models(relay.claims("anthropic", None), &["claude-haiku"]);
    c.mtok = Some(64);
    let t = relay.mint(&c);
    let r = post(
        &relay,
        &t,
        "/v1/messages",
        r#"{"model":"claude-haiku","max_tokens":4096,"messages":[]}"#,
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(up.requests()[0].json()["max_tokens"], 64);
    let r = post(
        &relay,
        &t,
        "/v1/messages",
        r#"{"model":"claude-haiku","messages":[]}"#,
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        up.requests()[1].json()["max_tokens"],
        64,
        "added when absent"
    );
    let r = post(
        &relay,
        &t,
        "/v1/messages",
        r#"{"model":"claude-opus","max_tokens":1}"#,
    )
    .await;
    assert_eq!(code(&r), (403, "model_not_allowed".into()));
    let r = post(
        &relay,
        &t,
        "/v1/messages/batches",
        r#"{"requests":[{"custom_id":"a","params":{"model":"claude-opus","max_tokens":9999}}]}"#,
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(up.count(), 2);
    let t = relay.mint(&with_forced(
        relay.claims("anthropic", None),
        "claude-haiku",
    ));
    let r = post(
        &relay,
        &t,
        "/v1/messages",
        r#"{"model":"claude-opus","max_tokens":5}"#,
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(up.requests()[2].json()["model"], "claude-haiku");
}

#[tokio::test]
async fn issue_9_gemini_model_in_the_path_and_generation_config() {
    let up = MockUpstream::start(false).await;
    let relay = Relay::start(test_config(&up));
    let mut c = with_models(relay.claims("gemini", None), &["gemini-2.0-flash"]);
    c.mtok = Some(50);
    let t = relay.mint(&c);
    let gen = r#"{"contents":[{"parts":[{"text":"hi"}]}]}"#;
    // Finding 8: `tunedModels/<x>` and other spellings no longer get around `models`.
    for (path, want) in [
        (
            "/v1beta/tunedModels/gemini-2.0-flash:generateContent",
            (403, "model_not_allowed"),
        ),
        (
            "/v1beta/models/gemini-2.5-pro:generateContent",
            (403, "model_not_allowed"),
        ),
        (
            "/v1beta/models/gemini%2D2.5-pro:generateContent",
            (403, "model_not_allowed"),
        ),
        (
            "/v1beta/models/gemini-2.0-flash:batchGenerateContent",
            (403, "limit_not_enforceable"),
        ),
        (
            "/v1beta/openai/chat/completions",
            (403, "limit_not_enforceable"),
        ),
        ("/v1beta/cachedContents", (403, "limit_not_enforceable")),
    ] {
        let r = post(&relay, &t, path, gen).await;
        assert_eq!(code(&r), (want.0, want.1.to_string()), "{path}");
    }
    assert_eq!(up.count(), 0);
    let r = post(
        &relay,
        &t,
        "/v1beta/models/gemini-2.0-flash:generateContent",
        gen,
    )
    .await;
    assert_eq!(r.status, 200);
    let got = &up.requests()[0];
    assert_eq!(
        got.target,
        "/v1beta/models/gemini-2.0-flash:generateContent"
    );
    assert_eq!(got.json()["generationConfig"]["maxOutputTokens"], 50);
    assert_eq!(
        got.json().get("max_tokens"),
        None,
        "Gemini defines no max_tokens"
    );
    let r = post(
        &relay,
        &t,
        "/v1/models/gemini%2D2.0-flash:streamGenerateContent?alt=sse",
        r#"{"contents":[],"generationConfig":{"maxOutputTokens":8192,"candidateCount":4,"temperature":1}}"#,
    )
    .await;
    assert_eq!(r.status, 200);
    let got = &up.requests()[1];
    assert_eq!(
        got.target,
        "/v1/models/gemini-2.0-flash:streamGenerateContent?alt=sse"
    );
    assert_eq!(
        got.json()["generationConfig"],
        json!({"maxOutputTokens": 50, "candidateCount": 1, "temperature": 1})
    );
    let r = post(
        &relay,
        &t,
        "/v1beta/models/gemini-2.0-flash:generateContent",
        r#"{"generationConfig":{"maxOutputTokens":1},"generation_config":{"maxOutputTokens":9000}}"#,
    )
    .await;
    assert_eq!(code(&r), (400, "duplicate_member".into()));
    assert_eq!(up.count(), 2);

    // `ext.rep_m` rewrites the model in the path.
    let t = relay.mint(&with_forced(
        relay.claims("gemini", None),
        "gemini-2.0-flash-lite",
    ));
    let r = post(
        &relay,
        &t,
        "/v1beta/tunedModels/expensive:generateContent",
        gen,
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        up.requests()[2].target,
        "/v1beta/models/gemini-2.0-flash-lite:generateContent"
    );
}

#[tokio::test]
async fn issue_9_azure_deployment_is_the_model() {
    let up = MockUpstream::start(false).await;
    let relay = Relay::start(test_config(&up));
    let t = relay.mint(&with_models(relay.claims("azure", None), &["gpt-4o-mini"]));
    let q = "?api-version=2024-10-21";
    let r = post(
        &relay,
        &t,
        &format!("/deployments/gpt-4o/chat/completions{q}"),
        r#"{"model":"gpt-4o-mini","messages":[]}"#,
    )
    .await;
    assert_eq!(code(&r), (403, "model_not_allowed".into()));
    assert_eq!(up.count(), 0);
    let r = post(
        &relay,
        &t,
        &format!("/deployments/gpt-4o-mini/chat/completions{q}"),
        r#"{"messages":[]}"#,
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        up.requests()[0].target,
        format!("/openai/deployments/gpt-4o-mini/chat/completions{q}")
    );
    let t = relay.mint(&with_forced(relay.claims("azure", None), "cheap"));
    let r = post(
        &relay,
        &t,
        &format!("/deployments/gpt-4o/chat/completions{q}"),
        r#"{"model":"gpt-4o","messages":[]}"#,
    )
    .await;
    assert_eq!(r.status, 200);
    let got = &up.requests()[1];
    assert_eq!(
        got.target,
        format!("/openai/deployments/cheap/chat/completions{q}")
    );
    assert_eq!(got.json()["model"], "cheap");
}

#[tokio::test]
async fn issue_9_openrouter_fallback_models_cannot_widen_the_allow_list() {
    let up = MockUpstream::start(false).await;
    let mut cfg = test_config(&up);
    cfg["providers"]["openrouter"] = json!({"base_url": up.base_url("/api/v1")});
    let relay = Relay::start(cfg);
    let t = relay.mint(&with_models(
        relay.claims("openrouter", None),
        &["openai/gpt-4o-mini"],
    ));
    let r = post(
        &relay,
        &t,
        "/chat/completions",
        r#"{"model":"openai/gpt-4o-mini","models":["anthropic/claude-opus-4"],"messages":[]}"#,
    )
    .await;
    assert_eq!(code(&r), (400, "invalid_body".into()));
    assert_eq!(up.count(), 0);
    let mut c = relay.claims("openrouter", None);
    c.mtok = Some(30);
    let t = relay.mint(&c);
    let r = post(
        &relay,
        &t,
        "/chat/completions",
        r#"{"model":"m","messages":[]}"#,
    )
    .await;
    assert_eq!(r.status, 200);
    let got = &up.requests()[0];
    assert_eq!(got.target, "/api/v1/chat/completions");
    assert_eq!(
        got.json()["max_tokens"],
        30,
        "OpenAI-compatible providers get max_tokens"
    );
}

#[tokio::test]
async fn issue_9_family_other_refuses_body_limits() {
    let up = MockUpstream::start(false).await;
    let mut cfg = test_config(&up);
    cfg["providers"]["opaque"] =
        json!({"base_url": up.base_url("/v1"), "auth": "bearer", "family": "other"});
    let relay = Relay::start(cfg);
    let t = relay.mint(&with_models(relay.claims("opaque", None), &["m"]));
    let r = post(&relay, &t, "/chat/completions", r#"{"model":"m"}"#).await;
    assert_eq!(code(&r), (403, "limit_not_enforceable".into()));
    let t = relay.token("opaque", None);
    assert_eq!(
        post(&relay, &t, "/chat/completions", r#"{"model":"m"}"#)
            .await
            .status,
        200,
        "tokens without body limits work there"
    );
}

/// Send `body` with a Content-Length and read the answer; writing continues in the background so a
/// relay that answers before reading everything does not deadlock the test.
async fn post_big(relay: &Relay, token: &str, body: Vec<u8>) -> Resp {
    let s = TcpStream::connect(relay.addr).await.unwrap();
    let (mut rd, mut wr) = s.into_split();
    let head = format!(
        "POST /relayapi/{token}/chat/completions HTTP/1.1\r\nhost: relay.test\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    let writer = tokio::spawn(async move {
        let _ = wr.write_all(head.as_bytes()).await;
        let _ = wr.write_all(&body).await;
        wr
    });
    let mut buf = Vec::new();
    let r = read_response(&mut rd, &mut buf, false)
        .await
        .expect("a response");
    let _ = writer.await;
    r
}

/// Peak resident memory of a process, from `VmHWM` in `/proc/<pid>/status`, in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc status");
    kb * 1024
}

/// The body size limit the relay runs with (the default, 32 MiB).
const MAX_BODY: usize = 32 * 1024 * 1024;

/// Finding 1: a 32 MiB `{"model":"m","x":[0,0,...]}` took the relay to 1.3 GB when a policy parsed it
/// into a tree (~40 times the body). The bound: two copies of the body (the body as read, and the one
/// rewritten copy a ceiling insertion needs) plus 64 MiB for the runtime and allocator slack. Measured
/// 77 MiB with the default 32 MiB `max_body_bytes`.
const PEAK_BOUND: u64 = 2 * MAX_BODY as u64 + 64 * 1024 * 1024;

#[tokio::test]
async fn issue_9_policy_on_a_32_mib_body_keeps_memory_bounded() {
    let up = MockUpstream::start(false).await;
    let relay = Relay::start(test_config(&up));
    let big = |prefix: &[u8]| {
        let mut body = prefix.to_vec();
        while body.len() < MAX_BODY - 16 {
            body.extend_from_slice(b"0,");
        }
        body.extend_from_slice(b"0]}");
        assert!(body.len() <= MAX_BODY);
        body
    };
    let body = big(br#"{"model":"m","x":["#);

    let mut c = with_models(relay.claims("openai", Some(1)), &["m"]);
    c.mtok = Some(10);
    let t = relay.mint(&c);
    let r = post_big(&relay, &t, body.clone()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let got = up.requests().pop().unwrap();
    assert_eq!(
        got.body.len(),
        body.len() + r#""max_completion_tokens":10,"#.len()
    );
    assert!(got
        .body
        .starts_with(br#"{"max_completion_tokens":10,"model":"m","x":[0,0,"#));
    assert!(got.body.ends_with(b",0,0]}"));
    // The token is now used up: the same body again, and a duplicate-laden one.
    let r = post_big(&relay, &t, body.clone()).await;
    assert_eq!(r.status, 429, "{}", r.text());
    // Refused either for the duplicate or for the used-up token, depending on which is checked first.
    let r = post_big(&relay, &t, big(br#"{"model":"x","model":"m","x":["#)).await;
    assert!(matches!(r.status, 400 | 429), "{}", r.text());
    assert_eq!(up.count(), 1);

    let peak = peak_rss(relay.child.id());
    eprintln!("relay peak RSS: {} MiB", peak >> 20);
    assert!(
        peak < PEAK_BOUND,
        "relay peak RSS {} MiB exceeds the bound {} MiB",
        peak >> 20,
        PEAK_BOUND >> 20
    );
}
