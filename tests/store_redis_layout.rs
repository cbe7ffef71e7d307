//! The Redis key layout (`docs/redis.md`) against a real `redis-server`: a counting script sent twice
//! (a retry after a lost reply, replayed here byte for byte from `MONITOR`) counts once, and the
//! one-time migration script renames a store of the old key names so a new relay reads it.

mod store_support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use relayapi::store::{
    RedisOptions, RedisTarget, Reservation, Spend, SpendLimit, SpendLine, SpendReservation, Store,
    TokenRef,
};
use store_support::RedisServer;

const TOKEN_LIFE: u64 = 7 * 24 * 3600;

fn open(server: &RedisServer, prefix: &str) -> Store {
    Store::open_redis(
        RedisOptions {
            target: RedisTarget::Server(server.url()),
            key_prefix: prefix.into(),
            connect_timeout: Duration::from_secs(2),
            command_timeout: Duration::from_secs(2),
            replica_acks: 0,
        },
        TOKEN_LIFE,
    )
    .unwrap()
}

fn tok(jti: &str) -> TokenRef<'_> {
    TokenRef {
        jti,
        tenant: "acme",
        iat: 1_000,
        exp: 10_000,
        max: Some(5),
    }
}

/// A connection in `MONITOR` mode: every command the server runs, one line each.
fn monitor(server: &RedisServer) -> BufReader<TcpStream> {
    let mut s = TcpStream::connect(server.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    s.write_all(b"MONITOR\r\n").unwrap();
    let mut r = BufReader::new(s);
    let mut ok = String::new();
    r.read_line(&mut ok).unwrap();
    assert_eq!(ok.trim(), "+OK");
    r
}

/// The quoted words of one `MONITOR` line (`"EVALSHA" "…" "2" …`), unescaped.
fn words(line: &str) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut cur: Option<Vec<u8>> = None;
    let mut bytes = line.bytes();
    while let Some(b) = bytes.next() {
        match (&mut cur, b) {
            (None, b'"') => cur = Some(Vec::new()),
            (None, _) => {}
            (Some(w), b'"') => {
                out.push(std::mem::take(w));
                cur = None;
            }
            (Some(w), b'\\') => match bytes.next() {
                Some(b'x') => {
                    let hex: Vec<u8> = bytes.by_ref().take(2).collect();
                    let hex = std::str::from_utf8(&hex).unwrap();
                    w.push(u8::from_str_radix(hex, 16).unwrap());
                }
                Some(b'n') => w.push(b'\n'),
                Some(b'r') => w.push(b'\r'),
                Some(c) => w.push(c),
                None => {}
            },
            (Some(w), c) => w.push(c),
        }
    }
    out
}

/// Every `EVALSHA` the monitor saw until it fell quiet, as quoted words.
fn evalshas(m: &mut BufReader<TcpStream>) -> Vec<Vec<Vec<u8>>> {
    let mut found = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        match m.read_line(&mut line) {
            Ok(0) | Err(_) => return found,
            Ok(_) => {
                let w = words(&line);
                if w.first()
                    .is_some_and(|c| c.eq_ignore_ascii_case(b"EVALSHA"))
                {
                    found.push(w);
                }
            }
        }
    }
}

/// The last of `calls` whose first key contains `key_part`.
fn last_on(calls: &[Vec<Vec<u8>>], key_part: &str) -> Vec<Vec<u8>> {
    calls
        .iter()
        .rev()
        .find(|w| {
            w.get(3)
                .is_some_and(|k| String::from_utf8_lossy(k).contains(key_part))
        })
        .cloned()
        .unwrap_or_else(|| panic!("no EVALSHA on a key holding {key_part:?} was seen"))
}

/// Sends one command in RESP and answers the reply's first line.
fn send(server: &RedisServer, args: &[Vec<u8>]) -> String {
    let mut s = TcpStream::connect(server.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut req = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        req.extend(format!("${}\r\n", a.len()).as_bytes());
        req.extend(a);
        req.extend(b"\r\n");
    }
    s.write_all(&req).unwrap();
    let mut buf = [0u8; 4096];
    let n = s.read(&mut buf).unwrap();
    String::from_utf8_lossy(&buf[..n]).to_string()
}

#[tokio::test]
async fn a_counting_script_sent_twice_counts_once() {
    let server = RedisServer::start();
    let s = open(&server, "idem:");
    let mut m = monitor(&server);
    assert_eq!(
        s.reserve(tok("t1"), 1_100).await.unwrap(),
        Reservation::Granted { used: 1 }
    );
    let call = last_on(&evalshas(&mut m), "tok:{acme:t1}");
    // The retry a client library sends after a lost reply: the same script, keys and arguments.
    assert_eq!(
        send(&server, &call).lines().next(),
        Some(":1"),
        "the first answer"
    );
    assert_eq!(server.command("HGET idem:tok:{acme:t1} used"), "$1");
    let u = s.usage("acme", "t1").await.unwrap().unwrap();
    assert_eq!(u.calls_used, 1, "the replay did not count");
    assert_eq!(
        s.reserve(tok("t1"), 1_100).await.unwrap(),
        Reservation::Granted { used: 2 },
        "a new operation counts"
    );

    // A spend reservation across the token's line and an end user's lines, replayed group by group.
    let amount = Spend {
        calls: 1,
        input: 10,
        output: 5,
        cached_input: 0,
        cost: 7,
    };
    let lines = [
        SpendLine {
            key: "t/t1".into(),
            limit: SpendLimit::default(),
            keep_until: 1 << 32,
        },
        SpendLine {
            key: "u/ann/a".into(),
            limit: SpendLimit {
                calls: Some(3),
                ..SpendLimit::default()
            },
            keep_until: 1 << 32,
        },
    ];
    let mut m = monitor(&server);
    assert_eq!(
        s.spend_reserve("acme", &lines, &amount, 1_100)
            .await
            .unwrap(),
        SpendReservation::Granted
    );
    let calls = evalshas(&mut m);
    for key in ["sp:{acme:t/t1}", "sp:{acme:u/ann}"] {
        let call = last_on(&calls, key);
        assert_eq!(send(&server, &call).lines().next(), Some("*1"), "{key}");
    }
    assert_eq!(
        s.spend_get("acme", &["t/t1", "u/ann/a"]).await.unwrap(),
        [amount; 2],
        "the replays did not count"
    );
}

#[tokio::test]
async fn a_refused_user_line_gives_back_the_token_line() {
    let server = RedisServer::start();
    let s = open(&server, "back:");
    let amount = Spend {
        calls: 1,
        ..Spend::default()
    };
    let line = |key: &str, calls: Option<u64>| SpendLine {
        key: key.into(),
        limit: SpendLimit {
            calls,
            ..SpendLimit::default()
        },
        keep_until: 1 << 32,
    };
    let lines = [line("t/t1", None), line("u/ann/a", Some(1))];
    let r = s.spend_reserve("acme", &lines, &amount, 1).await.unwrap();
    assert_eq!(r, SpendReservation::Granted);
    let r = s.spend_reserve("acme", &lines, &amount, 1).await.unwrap();
    assert_eq!(r, SpendReservation::NoRoom(vec![amount; 2]));
    assert_eq!(
        s.spend_get("acme", &["t/t1", "u/ann/a"]).await.unwrap(),
        [amount; 2],
        "the token's line, reserved first, was given back"
    );
    assert_eq!(
        server.command("EXISTS back:sp:{acme:t/t1}"),
        ":1",
        "the token's line has a slot of its own"
    );
}

#[tokio::test]
async fn the_migration_script_renames_an_old_store() {
    let server = RedisServer::start();
    for cmd in [
        "HSET relayapi:tok:acme:j1 used 3 max 5 iat 1000 exp 10000",
        "SET relayapi:rb:acme 900",
        "HSET relayapi:sp:acme:t/j1 calls 2 input 40 output 2 cached_input 0 cost 9",
        "HSET relayapi:sp:acme:u/ann/d/2026-12-07 calls 4 input 0 output 0 cached_input 0 cost 1",
        "SET relayapi:rl:global 5",
        "SET other-app:tok:acme:j1 1",
    ] {
        assert_ne!(server.command(cmd).chars().next(), Some('-'), "{cmd}");
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/redis-migrate-keys.sh");
    let out = Command::new(script)
        .args(["relayapi:", "-p", &server.port.to_string()])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {script} ({e}); it needs redis-cli"));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("done: 5 keys renamed, 0 left"), "{said}");

    let s = open(&server, "relayapi:");
    let u = s.usage("acme", "j1").await.unwrap().unwrap();
    assert_eq!((u.calls_used, u.max_calls, u.revoked), (3, Some(5), false));
    assert_eq!(s.revoke_before("acme", 0).await.unwrap(), 900, "the mark");
    let got = s
        .spend_get("acme", &["t/j1", "u/ann/d/2026-12-07"])
        .await
        .unwrap();
    assert_eq!((got[0].calls, got[0].input, got[0].cost), (2, 40, 9));
    assert_eq!((got[1].calls, got[1].cost), (4, 1));
    assert_eq!(server.command("EXISTS other-app:tok:acme:j1"), ":1");
    assert_eq!(server.command("EXISTS relayapi:rl:{global}"), ":1");

    // A second run finds nothing left to rename.
    let again = Command::new(script)
        .args(["relayapi:", "-p", &server.port.to_string()])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&again.stdout).contains("done: 0 keys renamed, 0 left"));
}

#[tokio::test]
async fn replica_acks_without_a_replica_fail_closed() {
    // `replica_acks: 1` on a server with no replica: the write happens, no replica acknowledges it,
    // and the operation fails (the relay answers 503) instead of answering a grant a failover could
    // lose. Reads still answer.
    let server = RedisServer::start();
    let s = Store::open_redis(
        RedisOptions {
            target: RedisTarget::Server(server.url()),
            key_prefix: "acks:".into(),
            connect_timeout: Duration::from_secs(1),
            command_timeout: Duration::from_secs(1),
            replica_acks: 1,
        },
        TOKEN_LIFE,
    )
    .unwrap();
    let t0 = std::time::Instant::now();
    let e = s.reserve(tok("t1"), 1_100).await.unwrap_err();
    assert!(e.to_string().contains("0 of 1 replicas"), "{e}");
    assert!(
        t0.elapsed() < Duration::from_millis(1_500),
        "{:?}",
        t0.elapsed()
    );
    assert!(
        s.revoke_before("acme", 5).await.is_err(),
        "a revocation too"
    );
    let u = s.usage("acme", "t1").await.unwrap().unwrap();
    assert_eq!(u.calls_used, 1, "counted: an error only ever over-counts");
}
