//! The relay binary on the Redis topologies of `docs/redis.md`: two relays configured with
//! `store.cluster` let exactly a token's limit through a real 3-master Cluster; two relays configured
//! with `store.sentinel` answer 503 `store_unavailable` (never a hang, nothing forwarded) while the
//! master is killed and the replica promoted, then serve again without a restart, every 200 counted.

mod common;
mod store_support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};
use store_support::topology::{RedisCluster, SentinelSet};

const CHAT: &str = r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}"#;

fn with_store(up: &MockUpstream, store: Value) -> Value {
    let mut cfg = test_config(up);
    cfg["store"] = store;
    cfg
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_relays_on_a_cluster_let_exactly_max_calls_through() {
    let cluster = RedisCluster::start();
    let up = MockUpstream::start(false).await;
    let cfg = with_store(
        &up,
        json!({"type": "redis", "cluster": cluster.urls(), "key_prefix": "rc:",
               "connect_timeout": 1, "command_timeout": 1}),
    );
    let (a, b) = (Relay::start(cfg.clone()), Relay::start(cfg));
    let t = a.token("openai", Some(5));
    let mut tasks = Vec::new();
    for i in 0..100 {
        let (addr, t) = ([a.addr, b.addr][i % 2], t.clone());
        tasks.push(tokio::spawn(async move { chat(addr, &t).await }));
    }
    let (mut ok, mut exhausted) = (0, 0);
    for task in tasks {
        let r = task.await.unwrap();
        match r.status {
            200 => ok += 1,
            429 if r.json()["error"]["code"] == "token_exhausted" => exhausted += 1,
            s => panic!("unexpected {s}: {}", r.text()),
        }
    }
    assert_eq!((ok, exhausted), (5, 95));
    assert_eq!(up.count(), 5, "exactly 5 in total across both relays");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn relays_on_sentinel_answer_503_during_a_failover_then_recover() {
    let mut set = SentinelSet::start();
    let up = MockUpstream::start(false).await;
    let cfg = with_store(
        &up,
        json!({"type": "redis", "key_prefix": "rs:", "connect_timeout": 1, "command_timeout": 1,
               "sentinel": {"nodes": set.sentinel_urls(), "master": SentinelSet::MASTER}}),
    );
    let (a, b) = (Relay::start(cfg.clone()), Relay::start(cfg));
    let t = a.token("openai", None);
    assert_eq!(chat(a.addr, &t).await.status, 200);
    set.master.kill();

    let deadline = Instant::now() + Duration::from_secs(20);
    let (mut ok, mut unavailable, mut recovered) = (1, 0, 0);
    let mut slowest = Duration::ZERO;
    while recovered < 10 {
        assert!(
            Instant::now() < deadline,
            "no recovery: {ok} answered 200, {unavailable} answered 503"
        );
        for addr in [a.addr, b.addr] {
            let t0 = Instant::now();
            let r = chat(addr, &t).await;
            slowest = slowest.max(t0.elapsed());
            match r.status {
                200 => {
                    ok += 1;
                    recovered += usize::from(unavailable > 0);
                }
                503 => {
                    assert_eq!(
                        r.json()["error"]["code"],
                        "store_unavailable",
                        "{}",
                        r.text()
                    );
                    unavailable += 1;
                }
                s => panic!("unexpected {s}: {}", r.text()),
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(unavailable > 0, "the switch was answered with 503");
    assert!(
        slowest < Duration::from_secs(4),
        "an answer took {slowest:?}"
    );
    assert_eq!(
        up.count(),
        ok,
        "every 200 was forwarded once, every 503 never"
    );
}
