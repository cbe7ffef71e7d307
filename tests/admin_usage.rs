//! The admin API's usage documents against the relay binary over sockets (docs/admin-api.md,
//! docs/budgets.md §5), memory store: an end user's windows at `GET /admin/v1/users/{uid}/usage` with
//! the uid as one percent-encoded path segment, decoded strictly, and what a token used in tokens and
//! money. The counts themselves are the store's (`tests/store_conformance.rs`, `admin/spend_docs.rs`).

mod common;

use std::time::{SystemTime, UNIX_EPOCH};

use common::*;
use relayapi::calendar::{day_label, month_label, next_day, next_month};
use serde_json::{json, Value};

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The relay's document for `segment`, checked to be a 200 that is never cached.
async fn user_usage(relay: &Relay, segment: &str) -> Value {
    let r = relay
        .admin("GET", &format!("/admin/v1/users/{segment}/usage"), "")
        .await;
    assert_eq!(r.status, 200, "{segment}: {}", r.text());
    assert_eq!(r.header("cache-control"), Some("no-store"));
    r.json()
}

#[tokio::test]
async fn a_users_usage_lists_day_month_and_all() {
    let up = MockUpstream::start(false).await;
    let relay = Relay::start(test_config(&up));
    let before = now();
    let d = user_usage(&relay, "user-42").await;
    let after = now();
    assert_eq!(d["tenant_id"], relay.tenant.as_str());
    assert_eq!(d["user_id"], "user-42");
    let w = d["windows"].as_object().unwrap();
    assert_eq!(
        w.keys().map(String::as_str).collect::<Vec<_>>(),
        ["day", "month", "all"]
    );
    // The answer was built at some second between `before` and `after` (a day may end in between).
    let at = |t: u64| {
        json!({
            "day": {"period": day_label(t), "resets_at": next_day(t)},
            "month": {"period": month_label(t), "resets_at": next_month(t)},
        })
    };
    let seen = json!({
        "day": {"period": w["day"]["period"], "resets_at": w["day"]["resets_at"]},
        "month": {"period": w["month"]["period"], "resets_at": w["month"]["resets_at"]},
    });
    assert!(seen == at(before) || seen == at(after), "{seen}");
    assert!(w["all"]["period"].is_null() && w["all"]["resets_at"].is_null());
    // A user nobody has spent for yet: every counter zero.
    for name in ["day", "month", "all"] {
        assert_eq!(w[name]["calls"], 0, "{name}");
        assert_eq!(w[name]["cost"], 0, "{name}");
        assert_eq!(
            w[name]["tokens"],
            json!({"input": 0, "output": 0, "cached_input": 0}),
            "{name}"
        );
    }
}

#[tokio::test]
async fn the_uid_segment_is_percent_decoded_strictly() {
    let up = MockUpstream::start(false).await;
    let relay = Relay::start(test_config(&up));
    for (segment, uid) in [
        ("a%2Fb%20c", "a/b c"),
        ("%22quoted%22%5C", "\"quoted\"\\"),
        ("me@example.com", "me@example.com"),
        ("a+b", "a+b"),
        ("%41%42c", "ABc"),
    ] {
        assert_eq!(
            user_usage(&relay, segment).await["user_id"],
            uid,
            "{segment}"
        );
    }
    let long = "u".repeat(128);
    assert_eq!(user_usage(&relay, &long).await["user_id"], long.as_str());
    // A broken escape anywhere in a request target is refused by the HTTP layer before routing.
    for segment in ["%zz", "%4", "a%22%"] {
        let target = format!("/admin/v1/users/{segment}/usage");
        let r = relay.admin("GET", &target, "").await;
        assert_eq!(r.status, 400, "{segment}: {}", r.text());
    }
    for segment in [
        "",
        "%00",
        "%0A",
        "%7F",
        "%C3%A9",
        &"u".repeat(129),
        &"%75".repeat(129),
    ] {
        let target = format!("/admin/v1/users/{segment}/usage");
        let r = relay.admin("GET", &target, "").await;
        assert_eq!(r.status, 400, "{segment}: {}", r.text());
        assert_eq!(r.json()["error"]["code"], "invalid_parameter", "{segment}");
        let msg = r.json()["error"]["message"].as_str().unwrap().to_string();
        assert!(msg.contains("percent-encoded"), "{msg}");
    }
}

#[tokio::test]
async fn user_usage_is_signed_and_read_only() {
    let up = MockUpstream::start(false).await;
    let relay = Relay::start(test_config(&up));
    let r = request(relay.addr, "GET", "/admin/v1/users/u1/usage", &[], "").await;
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], "invalid_admin_signature");
    // Signed for another target: the signature covers the path as sent.
    let ts = now();
    let auth = relayapi::admin::signing::sign_request(
        &relay.kid,
        &relay.key,
        "GET",
        "/admin/v1/users/u2/usage",
        b"",
        ts,
    );
    let r = request(
        relay.addr,
        "GET",
        "/admin/v1/users/u1/usage",
        &[("authorization", &auth)],
        "",
    )
    .await;
    assert_eq!(r.status, 401, "{}", r.text());
    let r = relay.admin("POST", "/admin/v1/users/u1/usage", "").await;
    assert_eq!(r.status, 405, "{}", r.text());
    assert_eq!(r.header("allow"), Some("GET"));
    let r = relay.admin("GET", "/admin/v1/users/u1", "").await;
    assert_eq!(r.status, 404, "{}", r.text());
}

#[tokio::test]
async fn a_tokens_usage_has_its_tokens_and_cost() {
    let up = MockUpstream::start(false).await;
    let relay = Relay::start(test_config(&up));
    let jti = relay.claims("openai", Some(5)).jti;
    let zero = json!({"input": 0, "output": 0, "cached_input": 0});
    let r = relay
        .admin("GET", &format!("/admin/v1/tokens/{jti}"), "")
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let d = r.json();
    assert_eq!(
        (d["calls_used"].as_u64(), d["cost"].as_u64()),
        (Some(0), Some(0))
    );
    assert_eq!(d["tokens"], zero);
    // The relay cannot know a token's claims from its id, so the document has no budget member: the
    // budget is in the token (`bud`), which the backend that minted it can decode.
    assert!(d.get("budget").is_none(), "{d}");
    let r = relay
        .admin("POST", &format!("/admin/v1/tokens/{jti}/revoke"), "")
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let d = r.json();
    assert_eq!(d["revoked"], true);
    assert_eq!((d["tokens"].clone(), d["cost"].as_u64()), (zero, Some(0)));
}
