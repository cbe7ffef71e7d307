//! Counts survive `kill -9` of the relay with the SQLite store. The relay is killed while requests are
//! in flight (some held open at the mock provider, many more racing through), then restarted on the
//! same database file: every call the provider received is still counted, and a `max_calls` token
//! cannot exceed its limit across the restart.
//!
//! Spend reservations get the same proof with a child process of their own (the test binary run again
//! as `spend_reserving_child`): every reservation it reported granted before `kill -9` is still in the
//! file, on every line it touched, and what is left of the limit is exactly what the file says.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use relayapi::store::{Spend, SpendLimit, SpendLine, SpendReservation, Store};
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// Calls allowed to the limited token.
const LIMIT: u64 = 40;

/// One request that may fail (the relay is killed under it); answers the status if a response came.
async fn try_chat(addr: SocketAddr, token: &str, model: &str, gated: bool) -> Option<u16> {
    let body = if gated {
        json!({"model": model, "stream": true, "messages": []}).to_string()
    } else {
        json!({"model": model, "messages": []}).to_string()
    };
    let req = format!(
        "POST /relayapi/{token}/chat/completions HTTP/1.1\r\nhost: relay.test\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n{}\r\n{body}",
        body.len(),
        if gated { "x-test-gated: 1\r\n" } else { "" },
    );
    let mut s = TcpStream::connect(addr).await.ok()?;
    s.write_all(req.as_bytes()).await.ok()?;
    let mut buf = Vec::new();
    read_response(&mut s, &mut buf, false)
        .await
        .map(|r| r.status)
}

/// Requests the provider received for a token, told apart by the `model` each one sends.
fn received(up: &MockUpstream, model: &str) -> u64 {
    up.requests()
        .iter()
        .filter(|r| r.json()["model"] == model)
        .count() as u64
}

async fn calls_used(db: &std::path::Path, tenant: &str, jti: &str) -> u64 {
    // Opening the file also replays its WAL, as the restarted relay does.
    let s = Store::open_sqlite(db, 3600).unwrap();
    s.usage(tenant, jti)
        .await
        .unwrap()
        .map_or(0, |u| u.calls_used)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn counts_survive_kill_9_mid_load() {
    let up = MockUpstream::start(false).await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("usage.db");
    let mut cfg = test_config(&up);
    cfg["store"] = json!({"type": "sqlite", "path": db});

    let mut relay = Relay::start(cfg.clone());
    let (open_c, limited_c) = (
        relay.claims("openai", None),
        relay.claims("openai", Some(LIMIT)),
    );
    let (open_t, limited_t) = (relay.mint(&open_c), relay.mint(&limited_c));

    // Streams the mock holds open after its first event: certainly in flight at the kill.
    let mut held = Vec::new();
    for _ in 0..8 {
        let (addr, t) = (relay.addr, open_t.clone());
        held.push(tokio::spawn(async move {
            try_chat(addr, &t, "open", true).await
        }));
    }
    // Many more racing through on both tokens until the kill.
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for i in 0..16 {
        let (addr, stop) = (relay.addr, stop.clone());
        let (t, model) = if i % 4 == 0 {
            (limited_t.clone(), "limited")
        } else {
            (open_t.clone(), "open")
        };
        workers.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                if try_chat(addr, &t, model, false).await.is_none() {
                    break;
                }
            }
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while received(&up, "open") < 150 || received(&up, "limited") < 10 {
        assert!(Instant::now() < deadline, "the load did not get going");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    relay.child.kill().unwrap(); // SIGKILL
    relay.child.wait().unwrap();
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }
    for h in held {
        assert_eq!(
            h.await.unwrap(),
            None,
            "a held stream was cut by the kill, not finished"
        );
    }

    let (open_seen, limited_seen) = (received(&up, "open"), received(&up, "limited"));
    let open_used = calls_used(&db, &relay.tenant, &open_c.jti).await;
    let limited_used = calls_used(&db, &relay.tenant, &limited_c.jti).await;
    assert!(
        open_used >= open_seen,
        "forgot reserved calls: {open_used} counted, {open_seen} reached the provider"
    );
    assert!(
        limited_used >= limited_seen && limited_used <= LIMIT,
        "limited token: {limited_used} counted, {limited_seen} reached the provider"
    );

    // Restart on the same file and spend the limited token to the end.
    let mut relay = Relay::start(cfg);
    let mut statuses = Vec::new();
    for _ in 0..(LIMIT + 5) {
        statuses.push(
            try_chat(relay.addr, &limited_t, "limited", false)
                .await
                .unwrap(),
        );
    }
    let granted = statuses.iter().filter(|&&s| s == 200).count() as u64;
    assert!(
        statuses.iter().all(|&s| s == 200 || s == 429),
        "{statuses:?}"
    );
    assert_eq!(
        granted,
        LIMIT - limited_used,
        "after the restart exactly what was left of the limit"
    );
    assert!(
        received(&up, "limited") <= LIMIT,
        "the limit held across the kill: {} calls reached the provider",
        received(&up, "limited")
    );
    assert_eq!(
        try_chat(relay.addr, &open_t, "open", false).await,
        Some(200)
    );
    // The relay owns its SQLite file while it runs; read the count after a second kill -9, which
    // must not lose it either.
    relay.child.kill().unwrap();
    relay.child.wait().unwrap();
    assert_eq!(
        calls_used(&db, &relay.tenant, &open_c.jti).await,
        open_used + 1,
        "the restarted relay counts on from the recovered number"
    );
}

/// Where `spend_reserving_child` finds its database.
const SPEND_DB_VAR: &str = "RELAYAPI_TEST_SPEND_DB";

/// Calls the child's token line allows; far more than it reaches before the kill.
const SPEND_LIMIT: u64 = 1_000_000;

/// What each of the child's reservations takes.
const SPEND_AMOUNT: Spend = Spend {
    calls: 1,
    input: 120,
    output: 380,
    cached_input: 7,
    cost: 2_500,
};

/// The lines every reservation of the child touches, all or nothing.
fn spend_lines() -> [SpendLine; 2] {
    [
        SpendLine {
            key: "t/crash".into(),
            limit: SpendLimit {
                calls: Some(SPEND_LIMIT),
                ..SpendLimit::default()
            },
            keep_until: 1 << 32,
        },
        SpendLine {
            key: "u/crash/a".into(),
            limit: SpendLimit::default(),
            keep_until: 1 << 32,
        },
    ]
}

/// The child process of `spend_reservations_survive_kill_9`, never run on its own: reserves from
/// several tasks on the SQLite file named by [`SPEND_DB_VAR`] and prints `granted` on stdout after
/// each reservation the store granted, until it is killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the child process of spend_reservations_survive_kill_9"]
async fn spend_reserving_child() {
    let db = std::env::var_os(SPEND_DB_VAR).expect("run by spend_reservations_survive_kill_9");
    let s = Arc::new(Store::open_sqlite(std::path::Path::new(&db), 3600).unwrap());
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let lines = spend_lines();
            loop {
                let r = s.spend_reserve("acme", &lines, &SPEND_AMOUNT, 1_100).await;
                assert_eq!(r.unwrap(), SpendReservation::Granted);
                let mut out = std::io::stdout().lock();
                writeln!(out, "granted").unwrap();
                out.flush().unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

#[tokio::test]
async fn spend_reservations_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("usage.db");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "spend_reserving_child",
            "--exact",
            "--ignored",
            "--nocapture",
        ])
        .env(SPEND_DB_VAR, &db)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut reported = 0u64;
    while reported < 500 {
        let line = lines
            .next()
            .expect("the child stopped before reporting 500 grants")
            .unwrap();
        reported += u64::from(line == "granted");
    }
    child.kill().unwrap(); // SIGKILL, with reservations still racing
    child.wait().unwrap();
    // Grants the child printed after the 500th but before the kill count too.
    reported += lines
        .map_while(Result::ok)
        .filter(|l| l == "granted")
        .count() as u64;

    // Opening the file replays its WAL, as a restarted relay does.
    let s = Store::open_sqlite(&db, 3600).unwrap();
    let got = s
        .spend_get("acme", &["t/crash", "u/crash/a"])
        .await
        .unwrap();
    let used = got[0].calls;
    assert!(
        used >= reported && used < SPEND_LIMIT,
        "{used} reservations in the file, {reported} reported granted"
    );
    let each = |n: u64| Spend {
        calls: n,
        input: SPEND_AMOUNT.input * n,
        output: SPEND_AMOUNT.output * n,
        cached_input: SPEND_AMOUNT.cached_input * n,
        cost: SPEND_AMOUNT.cost * n,
    };
    assert_eq!(
        got,
        [each(used); 2],
        "every line holds every reservation whole"
    );
    // What is left of the limit is exactly what the file says: it takes that much and no more.
    let lines = spend_lines();
    let rest = Spend {
        calls: SPEND_LIMIT - used,
        ..Spend::default()
    };
    let r = s.spend_reserve("acme", &lines, &rest, 1_200).await.unwrap();
    assert_eq!(r, SpendReservation::Granted);
    let one = Spend {
        calls: 1,
        ..Spend::default()
    };
    let r = s.spend_reserve("acme", &lines, &one, 1_200).await.unwrap();
    assert!(matches!(r, SpendReservation::NoRoom(_)), "{r:?}");
}
