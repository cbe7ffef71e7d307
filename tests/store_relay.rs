//! The relay binary with its persistent and shared usage stores: exact call limits under 200 parallel
//! requests (one relay on SQLite; two relays on one real `redis-server`), revocation through one relay
//! honoured by another, a stopped or hung Redis answered with 503 `store_unavailable` and nothing
//! forwarded, and start-up refusing a store it cannot use.

mod common;
mod store_support;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};
use store_support::RedisServer;

const CHAT: &str = r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}"#;

fn with_store(up: &MockUpstream, store: Value) -> Value {
    let mut cfg = test_config(up);
    cfg["store"] = store;
    cfg
}

fn redis_store(server: &RedisServer) -> Value {
    json!({"type": "redis", "url": server.url(), "key_prefix": "relay-test:",
           "connect_timeout": 1, "command_timeout": 1})
}

async fn store_kind(relay: &Relay) -> String {
    let r = request(relay.addr, "GET", "/health", &[], "").await;
    r.json()["store"].as_str().unwrap_or_default().to_string()
}

async fn chat(addr: SocketAddr, token: &str) -> Resp {
    request(
        addr,
        "POST",
        &format!("/relayapi/{token}/chat/completions"),
        &[],
        CHAT,
    )
    .await
}

/// Sends `n` requests at once, spread over `relays`, and answers (granted, exhausted).
async fn burst(relays: &[SocketAddr], token: &str, n: usize) -> (usize, usize) {
    let mut tasks = Vec::new();
    for i in 0..n {
        let (addr, token) = (relays[i % relays.len()], token.to_string());
        tasks.push(tokio::spawn(async move { chat(addr, &token).await }));
    }
    let (mut ok, mut exhausted) = (0, 0);
    for t in tasks {
        let r = t.await.unwrap();
        match r.status {
            200 => ok += 1,
            429 if r.json()["error"]["code"] == "token_exhausted" => exhausted += 1,
            s => panic!("unexpected {s}: {}", r.text()),
        }
    }
    (ok, exhausted)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_store_lets_exactly_max_calls_through_and_keeps_them() {
    let up = MockUpstream::start(false).await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("usage.db");
    let cfg = with_store(&up, json!({"type": "sqlite", "path": db}));
    let mut relay = Relay::start(cfg.clone());
    assert_eq!(store_kind(&relay).await, "sqlite");
    let t = relay.token("openai", Some(5));
    assert_eq!(burst(&[relay.addr], &t, 200).await, (5, 195));
    assert_eq!(
        up.count(),
        5,
        "exactly max_calls requests reached the provider"
    );
    relay.terminate();

    let relay = Relay::start(cfg);
    let r = chat(relay.addr, &t).await;
    assert_eq!(r.status, 429, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], "token_exhausted");
    assert_eq!(up.count(), 5);
}

#[tokio::test]
async fn sqlite_default_path_is_next_to_config_json() {
    let up = MockUpstream::start(false).await;
    let mut cfg = test_config(&up);
    cfg["store"] = json!({"type": "sqlite"});
    let relay = Relay::start(cfg);
    let t = relay.token("openai", None);
    assert_eq!(chat(relay.addr, &t).await.status, 200);
    assert!(relay.cfg_dir().join("relayapi-usage.db").is_file());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_relays_sharing_redis_let_exactly_max_calls_through() {
    let server = RedisServer::start();
    let up = MockUpstream::start(false).await;
    let cfg = with_store(&up, redis_store(&server));
    let (a, b) = (Relay::start(cfg.clone()), Relay::start(cfg));
    assert_eq!(store_kind(&b).await, "redis");
    let t = a.token("openai", Some(5));
    assert_eq!(burst(&[a.addr, b.addr], &t, 200).await, (5, 195));
    assert_eq!(up.count(), 5, "exactly 5 in total across both relays");
}

#[tokio::test]
async fn revocation_through_one_relay_is_honoured_by_the_other() {
    let server = RedisServer::start();
    let up = MockUpstream::start(false).await;
    let cfg = with_store(&up, redis_store(&server));
    let (a, b) = (Relay::start(cfg.clone()), Relay::start(cfg));
    let claims = a.claims("openai", Some(10));
    let t = a.mint(&claims);
    assert_eq!(chat(b.addr, &t).await.status, 200);

    let target = format!("/admin/v1/tokens/{}/revoke", claims.jti);
    let r = a.admin("POST", &target, "").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        (r.json()["revoked"].clone(), r.json()["calls_used"].clone()),
        (json!(true), json!(1)),
        "the usage recorded by the other relay"
    );
    for relay in [&a, &b] {
        let r = chat(relay.addr, &t).await;
        assert_eq!(r.status, 401, "{}", r.text());
        assert_eq!(r.json()["error"]["code"], "token_revoked");
    }

    // A tenant-wide mark set through b stops tokens on a.
    let older_claims = a.claims("openai", None);
    let older = a.mint(&older_claims);
    assert_eq!(chat(a.addr, &older).await.status, 200);
    // Just after the later of the two issue times (a second may have passed between the mints).
    let before = claims.iat.max(older_claims.iat) + 1;
    let r = b
        .admin(
            "POST",
            "/admin/v1/revoke-before",
            &format!(r#"{{"before": {before}}}"#),
        )
        .await;
    assert_eq!(r.json()["revoked_before"], json!(before), "{}", r.text());
    let r = chat(a.addr, &older).await;
    assert_eq!(r.json()["error"]["code"], "token_revoked", "{}", r.text());
    assert_eq!(up.count(), 2);
}

#[tokio::test]
async fn calls_that_never_left_are_refunded_on_every_store() {
    let server = RedisServer::start();
    let up = MockUpstream::start(false).await;
    let dir = tempfile::tempdir().unwrap();
    let closed = store_support::free_port();
    for store in [
        json!({"type": "sqlite", "path": dir.path().join("usage.db")}),
        redis_store(&server),
    ] {
        let mut cfg = with_store(&up, store.clone());
        // Nothing listens there: the connect fails before a byte of the request leaves the relay.
        cfg["providers"]["openai"]["base_url"] = json!(format!("http://127.0.0.1:{closed}/v1"));
        let relay = Relay::start(cfg);
        let t = relay.token("openai", Some(1));
        for _ in 0..3 {
            let r = chat(relay.addr, &t).await;
            assert_eq!(r.status, 502, "{store}: {}", r.text());
        }
    }
}

#[tokio::test]
async fn stopped_redis_answers_503_store_unavailable_and_forwards_nothing() {
    let mut server = RedisServer::start();
    let up = MockUpstream::start(false).await;
    let relay = Relay::start(with_store(&up, redis_store(&server)));
    let t = relay.token("openai", Some(100));
    for _ in 0..3 {
        assert_eq!(chat(relay.addr, &t).await.status, 200);
    }
    server.stop();
    for _ in 0..10 {
        let r = chat(relay.addr, &t).await;
        assert_eq!(r.status, 503, "{}", r.text());
        assert_eq!(r.json()["error"]["code"], "store_unavailable");
        assert!(r.header("retry-after").is_some());
    }
    assert_eq!(up.count(), 3, "nothing forwarded while the store is down");

    // Back (empty, persistence is off): the relay reconnects by itself.
    server.restart();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = chat(relay.addr, &t).await;
        if r.status == 200 {
            break;
        }
        assert_eq!(r.json()["error"]["code"], "store_unavailable");
        assert!(Instant::now() < deadline, "the relay did not reconnect");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(up.count(), 4);
}

#[tokio::test]
async fn hung_redis_answers_503_within_the_command_timeout() {
    let server = RedisServer::start();
    let up = MockUpstream::start(false).await;
    let relay = Relay::start(with_store(&up, redis_store(&server)));
    let t = relay.token("openai", None);
    assert_eq!(chat(relay.addr, &t).await.status, 200);
    server.freeze(true);
    let started = Instant::now();
    let r = chat(relay.addr, &t).await;
    let waited = started.elapsed();
    server.freeze(false);
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], "store_unavailable");
    assert!(
        waited < Duration::from_secs(4),
        "command_timeout is 1 s, waited {waited:?}"
    );
    assert_eq!(up.count(), 1);
    let deadline = Instant::now() + Duration::from_secs(10);
    while chat(relay.addr, &t).await.status != 200 {
        assert!(Instant::now() < deadline, "no recovery after the thaw");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Runs `relayapi` with `config` and answers its exit status and stderr; it must not start.
fn start_fails(config: Value) -> (std::process::ExitStatus, String) {
    let dir = tempfile::tempdir().unwrap();
    let cfg_path = dir.path().join("config.json");
    std::fs::write(&cfg_path, config.to_string()).unwrap();
    let rai_path = dir.path().join("t.rai");
    let mut seed = 3u8;
    let mut rng = |b: &mut [u8]| {
        for x in b.iter_mut() {
            seed = seed.wrapping_mul(13).wrapping_add(5);
            *x = seed;
        }
    };
    let r = relayapi::token::rai::generate_rai("http", "127.0.0.1", 8080, "acme", "k1", &mut rng);
    std::fs::write(&rai_path, relayapi::token::rai::to_json_pretty(&r)).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_relayapi"))
        .arg("--config")
        .arg(&cfg_path)
        .arg("--rai")
        .arg(&rai_path)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn start_up_refuses_a_store_it_cannot_use() {
    let up = MockUpstream::start(false).await;
    let nobody = store_support::free_port();
    let started = Instant::now();
    let (status, err) = start_fails(with_store(
        &up,
        json!({"type": "redis", "url": format!("redis://:secret-pw@127.0.0.1:{nobody}/0"),
               "connect_timeout": 1}),
    ));
    assert!(!status.success());
    assert!(err.contains("field `store.url`"), "{err}");
    assert!(
        !err.contains("secret-pw"),
        "the URL's password stays out: {err}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));

    let (status, err) = start_fails(with_store(
        &up,
        json!({"type": "sqlite", "path": "/nonexistent-dir/usage.db"}),
    ));
    assert!(!status.success());
    assert!(
        err.contains("field `store.path`") && err.contains("/nonexistent-dir/usage.db"),
        "{err}"
    );
    assert!(!Path::new("/nonexistent-dir").exists());
}

/// Sends `n` requests one after another, alternating between `relays`; answers (ok, rate limited).
async fn sequential(relays: &[SocketAddr], token: &str, n: usize) -> (usize, usize) {
    let (mut ok, mut limited) = (0, 0);
    for i in 0..n {
        let r = chat(relays[i % relays.len()], token).await;
        match r.status {
            200 => ok += 1,
            429 => {
                assert_eq!(r.json()["error"]["code"], "rate_limited");
                assert!(r.header("retry-after").is_some());
                limited += 1;
            }
            s => panic!("unexpected {s}: {}", r.text()),
        }
    }
    (ok, limited)
}

#[tokio::test]
async fn shared_rate_limits_hold_across_relays() {
    let mut server = RedisServer::start();
    let up = MockUpstream::start(false).await;
    let mut cfg = with_store(&up, redis_store(&server));
    cfg["rate_limit"] = json!({"requests_per_second": 1, "burst": 4,
                               "ip_limit": {"requests_per_second": 0, "burst": 0}, "shared": true});
    let (a, b) = (Relay::start(cfg.clone()), Relay::start(cfg.clone()));
    let t = a.token("openai", None);
    let started = Instant::now();
    let (ok, limited) = sequential(&[a.addr, b.addr], &t, 12).await;
    // One bucket for both relays: the burst of 4, plus at most one refill per elapsed second.
    let allowed = 4 + started.elapsed().as_secs() as usize;
    assert!(ok >= 4 && ok <= allowed, "ok {ok}, allowed {allowed}");
    assert_eq!(ok + limited, 12);

    // Control: without `shared`, each relay has its own bucket and lets its own burst through.
    let mut local = cfg.clone();
    local["rate_limit"]["shared"] = json!(false);
    let (c, d) = (Relay::start(local.clone()), Relay::start(local));
    let (ok_local, _) = sequential(&[c.addr, d.addr], &c.token("openai", None), 12).await;
    assert!(
        ok_local >= 8,
        "two local buckets allow 2 x 4, got {ok_local}"
    );

    // Limits never fail open: with Redis gone the relay refuses instead of skipping the check.
    server.stop();
    let r = chat(a.addr, &t).await;
    assert_eq!(
        (r.status, r.json()["error"]["code"].as_str()),
        (503, Some("store_unavailable"))
    );
}

#[test]
fn shared_rate_limits_need_the_redis_store() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.json");
    std::fs::write(
        &cfg,
        r#"{"rate_limit": {"shared": true}, "store": {"type": "memory"}}"#,
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_relayapi"))
        .arg("--config")
        .arg(&cfg)
        .arg("--rai")
        .arg(dir.path().join("x.rai"))
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("field `rate_limit.shared`"), "{err}");
}
