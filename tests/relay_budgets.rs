//! Spend limits through the relay binary (`docs/budgets.md`): the worst case reserved before
//! forwarding and the output ceiling lowered (or written) to what the budget can pay for, refusals
//! that forward nothing and count no call, `stream_options.include_usage` added to a streamed chat
//! request and its usage chunk kept from a client that did not ask, settlement to the reported usage
//! (or to the reservation for a client that leaves mid-stream), money limits refused on an unpriced
//! model, and an end user's daily quota shared by two tokens. What the budget has left is read back
//! from the ceiling the next call is forwarded with, so every figure is the relay's own arithmetic.

mod common;

use common::*;
use relayapi::token::format::{Budget, Claims, UserQuota, Window};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const BODY: &str = r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}"#;

/// The test config with a price table and no hidden-prompt overhead, so the worst case of a call is
/// exactly its body's length plus its output ceiling.
fn config(up: &MockUpstream) -> Value {
    let mut c = test_config(up);
    c["budgets"] = json!({
        "prices": {"openai": {"gpt-4o": {"input": 1_000_000, "output": 2_000_000}}},
        "input_overhead": 0,
        "default_max_output": 100,
        "min_output": 5,
    });
    c
}

fn budget(relay: &Relay, tok: Option<u64>, cost: Option<u64>) -> Claims {
    Claims {
        bud: Some(Budget { tok, cost }),
        ..relay.claims("openai", None)
    }
}

async fn chat(relay: &Relay, token: &str, body: &str) -> Resp {
    request(
        relay.addr,
        "POST",
        &format!("/relayapi/{token}/chat/completions"),
        &[("content-type", "application/json")],
        body,
    )
    .await
}

/// The output ceiling the mock received in its latest request.
fn last_ceiling(up: &MockUpstream) -> u64 {
    let r = up.requests().pop().expect("a request reached the mock");
    r.json()["max_completion_tokens"]
        .as_u64()
        .unwrap_or_else(|| panic!("no max_completion_tokens in {}", r.json()))
}

/// The relay's logs once `needle` appears `n` times (the log writer flushes on its own thread), or
/// after two seconds.
async fn wait_for_logs(relay: &Relay, needle: &str, n: usize) -> String {
    for _ in 0..100 {
        let logs = relay.all_logs();
        if logs.matches(needle).count() >= n {
            return logs;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    relay.all_logs()
}

fn code(r: &Resp) -> String {
    r.json()["error"]["code"].as_str().unwrap_or("").to_string()
}

#[tokio::test]
async fn the_ceiling_is_written_lowered_and_follows_the_settled_usage() {
    let up = MockUpstream::start(false).await;
    let relay = Relay::start(config(&up));
    let len = BODY.len() as u64;
    // Room for the body and 50 output tokens: the default ceiling of 100 is lowered to 50.
    let t = relay.mint(&budget(&relay, Some(len + 50), None));
    let r = chat(&relay, &t, BODY).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(last_ceiling(&up), 50);
    // The mock reported 1 input and 3 output tokens: 4 are spent, so the same body now finds room
    // for 46 output tokens.
    let r = chat(&relay, &t, BODY).await;
    assert_eq!(r.status, 200);
    assert_eq!(last_ceiling(&up), len + 50 - 4 - len);
    // A ceiling the page asked for below what the budget allows is kept as it is.
    let small = r#"{"model":"gpt-4o","max_completion_tokens":7,"messages":[]}"#;
    let r = chat(&relay, &t, small).await;
    assert_eq!(r.status, 200);
    assert_eq!(last_ceiling(&up), 7);
    // The access log carries what each call was charged.
    let logs = wait_for_logs(&relay, r#""in_tok":1,"out_tok":3,"cost":"#, 1).await;
    assert!(
        logs.contains("\"in_tok\":1,\"out_tok\":3,\"cost\":"),
        "{logs}"
    );
}

#[tokio::test]
async fn a_call_the_budget_cannot_pay_for_is_refused_uncounted_and_unforwarded() {
    let up = MockUpstream::start(false).await;
    let relay = Relay::start(config(&up));
    let len = BODY.len() as u64;
    // Room for 4 output tokens, below min_output (5).
    let mut c = budget(&relay, Some(len + 4), None);
    c.max = Some(1);
    let t = relay.mint(&c);
    let r = chat(&relay, &t, BODY).await;
    assert_eq!(
        (r.status, code(&r)),
        (429, "budget_exhausted".into()),
        "{}",
        r.text()
    );
    assert_eq!(r.json()["error"]["type"], "insufficient_quota");
    assert_eq!(r.header("x-should-retry"), Some("false"));
    assert_eq!(up.count(), 0, "nothing reaches the provider");
    // The call was not counted: the token's one call is still there for a request that fits.
    let fits = r#"{"model":"gpt-4o","max_completion_tokens":2}"#;
    let r = chat(&relay, &t, fits).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let m = request(relay.addr, "GET", "/metrics", &[], "").await.text();
    assert!(m.contains("relayapi_budget_refusals_total 1"), "{m}");
    assert!(
        m.contains("relayapi_tokens_total{provider=\"openai\",model=\"gpt-4o\",kind=\"output\"} 3"),
        "{m}"
    );
}

#[tokio::test]
async fn money_limits_need_a_price() {
    let up = MockUpstream::start(false).await;
    let relay = Relay::start(config(&up));
    let t = relay.mint(&budget(&relay, None, Some(1_000_000)));
    let unpriced = r#"{"model":"gpt-4.1","messages":[]}"#;
    let r = chat(&relay, &t, unpriced).await;
    assert_eq!((r.status, code(&r)), (403, "model_not_priced".into()));
    assert_eq!(up.count(), 0);
    // Priced: 1 micro-unit per input token, 2 per output token. A budget of len + 2 * 30 pays for
    // 30 output tokens.
    let len = BODY.len() as u64;
    let t = relay.mint(&budget(&relay, None, Some(len + 60)));
    let r = chat(&relay, &t, BODY).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(last_ceiling(&up), 30);
    // A token budget without money needs no price.
    let t = relay.mint(&budget(&relay, Some(10_000), None));
    assert_eq!(chat(&relay, &t, unpriced).await.status, 200);
}

/// Read a streamed answer to its end; returns its body.
async fn stream(relay: &Relay, token: &str, body: &str) -> String {
    let r = chat(relay, token, body).await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.text()
}

#[tokio::test]
async fn streams_are_metered_and_the_usage_chunk_is_kept_from_clients_that_did_not_ask() {
    let up = MockUpstream::start(false).await;
    let relay = Relay::start(config(&up));
    let t = relay.mint(&budget(&relay, Some(100_000), None));
    let asked_none = r#"{"model":"gpt-4o","stream":true,"messages":[]}"#;
    let text = stream(&relay, &t, asked_none).await;
    let sent = up.requests().pop().unwrap().json();
    assert_eq!(sent["stream_options"]["include_usage"], true, "{sent}");
    assert!(text.contains("part2") && text.contains("[DONE]"), "{text}");
    assert!(
        !text.contains("\"usage\""),
        "the usage chunk was passed on: {text}"
    );
    // Every event a client reads still has a first choice.
    for data in text.lines().filter_map(|l| l.strip_prefix("data: ")) {
        if data != "[DONE]" {
            let v: Value = serde_json::from_str(data).unwrap();
            assert!(v["choices"][0].is_object(), "{data}");
        }
    }
    let asked =
        r#"{"model":"gpt-4o","stream":true,"stream_options":{"include_usage":true},"messages":[]}"#;
    let text = stream(&relay, &t, asked).await;
    assert!(text.contains("\"completion_tokens\":3"), "{text}");
    // Both streams were settled to the reported usage (4 tokens each).
    let logs = wait_for_logs(&relay, r#""in_tok":1,"out_tok":3"#, 2).await;
    assert_eq!(
        logs.matches("\"in_tok\":1,\"out_tok\":3").count(),
        2,
        "{logs}"
    );
}

#[tokio::test]
async fn a_client_that_leaves_mid_stream_is_charged_the_reservation() {
    let up = MockUpstream::start(false).await;
    let relay = Relay::start(config(&up));
    let body = r#"{"model":"gpt-4o","stream":true,"messages":[]}"#;
    let budget_tokens = 10_000;
    let t = relay.mint(&budget(&relay, Some(budget_tokens), None));
    let mut s = tokio::net::TcpStream::connect(relay.addr).await.unwrap();
    let req = format!(
        "POST /relayapi/{t}/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
         x-test-gated: 1\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    // The head may come on its own, before the first event.
    let mut got = Vec::new();
    let mut buf = vec![0u8; 4096];
    while !String::from_utf8_lossy(&got).contains("part0") {
        let n = s.read(&mut buf).await.unwrap();
        assert!(n > 0, "{}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    drop(s);
    // The relay notices, settles to the whole reservation (input bound and a ceiling of 100).
    let mut left = None;
    for _ in 0..100 {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        if relay.all_logs().contains("\"reason\":\"client_closed\"") {
            left = Some(());
            break;
        }
    }
    assert!(left.is_some(), "{}", relay.all_logs());
    // The mock is still holding its next event; let it go.
    up.release();
    up.release();
    // What is left shows in the next call's ceiling: the first call's worst case (its body as the
    // client sent it, and 100 output tokens) was charged.
    let first_input = body.len() as u64;
    let r = chat(&relay, &t, BODY).await;
    assert_eq!(r.status, 200);
    let expected = (budget_tokens - first_input - 100 - BODY.len() as u64).min(100);
    assert_eq!(last_ceiling(&up), expected);
    let logs = wait_for_logs(
        &relay,
        &format!("\"in_tok\":{first_input},\"out_tok\":100"),
        1,
    )
    .await;
    assert!(
        logs.contains(&format!("\"in_tok\":{first_input},\"out_tok\":100")),
        "{logs}"
    );
}

#[tokio::test]
async fn an_end_users_daily_quota_is_shared_by_all_of_its_tokens() {
    let up = MockUpstream::start(false).await;
    let relay = Relay::start(config(&up));
    let quota = |relay: &Relay, uid: &str| Claims {
        uid: Some(uid.into()),
        uq: Some(vec![UserQuota {
            w: Window::Day,
            calls: Some(2),
            tok: None,
            cost: None,
        }]),
        ..relay.claims("openai", None)
    };
    let first = relay.mint(&quota(&relay, "user-1"));
    let second = relay.mint(&quota(&relay, "user-1"));
    let other = relay.mint(&quota(&relay, "user-2"));
    assert_eq!(chat(&relay, &first, BODY).await.status, 200);
    assert_eq!(chat(&relay, &second, BODY).await.status, 200);
    let r = chat(&relay, &second, BODY).await;
    assert_eq!((r.status, code(&r)), (429, "budget_exhausted".into()));
    let wait: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=86_400).contains(&wait), "{wait}");
    assert_eq!(chat(&relay, &first, BODY).await.status, 429);
    // Another user's quota is their own.
    assert_eq!(chat(&relay, &other, BODY).await.status, 200);
    assert_eq!(up.count(), 3);
}

#[tokio::test]
async fn the_admin_documents_report_what_calls_were_charged() {
    let up = MockUpstream::start(false).await;
    let relay = Relay::start(config(&up));
    let c = Claims {
        uid: Some("user 7".into()),
        uq: Some(vec![UserQuota {
            w: Window::Month,
            calls: None,
            tok: Some(1_000_000),
            cost: None,
        }]),
        bud: Some(Budget {
            tok: Some(1_000_000),
            cost: None,
        }),
        ..relay.claims("openai", None)
    };
    let t = relay.mint(&c);
    for _ in 0..2 {
        assert_eq!(chat(&relay, &t, BODY).await.status, 200);
    }
    // The mock reports 1 input and 3 output tokens per call; gpt-4o costs 1 per input token and 2
    // per output token (micro-units): 7 per call.
    let doc = relay
        .admin("GET", &format!("/admin/v1/tokens/{}", c.jti), "")
        .await
        .json();
    assert_eq!(doc["calls_used"], 2, "{doc}");
    assert_eq!(
        doc["tokens"],
        json!({"input": 2, "output": 6, "cached_input": 0}),
        "{doc}"
    );
    assert_eq!(doc["cost"], 14, "{doc}");
    let users = relay
        .admin("GET", "/admin/v1/users/user%207/usage", "")
        .await
        .json();
    let month = &users["windows"]["month"];
    assert_eq!(month["calls"], 2, "{users}");
    assert_eq!(month["tokens"]["output"], 6, "{users}");
    assert_eq!(month["cost"], 14, "{users}");
    // No day quota: the day window counted nothing.
    assert_eq!(users["windows"]["day"]["calls"], 0, "{users}");
}

#[tokio::test]
async fn the_sqlite_store_reserves_and_settles_the_same_way() {
    let up = MockUpstream::start(false).await;
    let mut cfg = config(&up);
    // The default store: a SQLite file beside config.json.
    cfg["store"] = json!({"type": "sqlite", "path": "usage.db"});
    let relay = Relay::start(cfg);
    let len = BODY.len() as u64;
    let t = relay.mint(&budget(&relay, Some(len + 50), None));
    assert_eq!(chat(&relay, &t, BODY).await.status, 200);
    assert_eq!(last_ceiling(&up), 50);
    assert_eq!(chat(&relay, &t, BODY).await.status, 200);
    assert_eq!(last_ceiling(&up), 46);
    let small = budget(&relay, Some(len + 4), None);
    let r = chat(&relay, &relay.mint(&small), BODY).await;
    assert_eq!((r.status, code(&r)), (429, "budget_exhausted".into()));
}

#[tokio::test]
async fn endpoints_that_bill_no_tokens_cost_a_budget_nothing_but_the_call() {
    let up = MockUpstream::start(false).await;
    let relay = Relay::start(config(&up));
    // A budget of 1 token: no chat call fits, but listing models costs no tokens.
    let t = relay.mint(&budget(&relay, Some(1), None));
    let r = request(relay.addr, "GET", &format!("/relayapi/{t}/models"), &[], "").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = chat(&relay, &t, BODY).await;
    assert_eq!((r.status, code(&r)), (429, "budget_exhausted".into()));
    // An endpoint the budget cannot bound is refused.
    let r = request(
        relay.addr,
        "POST",
        &format!("/relayapi/{t}/audio/speech"),
        &[("content-type", "application/json")],
        "{}",
    )
    .await;
    assert_eq!((r.status, code(&r)), (403, "limit_not_enforceable".into()));
}
