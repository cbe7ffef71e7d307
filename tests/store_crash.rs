//! Counts survive `kill -9` of the relay with the SQLite store. The relay is killed while requests are
//! in flight (some held open at the mock provider, many more racing through), then restarted on the
//! same database file: every call the provider received is still counted, and a `max_calls` token
//! cannot exceed its limit across the restart.
//!
//! Spend reservations get the same proof with a child process of their own (the test binary run again
//! as `spend_reserving_child`): every reservation it reported granted before `kill -9` is still in the
//! file, on every line it touched, and what is left of the limit is exactly what the file says.
//!
//! Call reservations of a token the store thread has proved are granted on the caller's thread and
//! recorded only in the mapped grant journal (`<db>.grants`) until a fold writes them into the rows;
//! `call_reservations_survive_kill_9` proves that path with a child of its own (`reserving_child`):
//! every call it reported granted before `kill -9` is counted after the journal is replayed, no
//! number is handed out twice, a limit holds, and a refund stands, twice over on the same file.

mod common;

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use relayapi::store::{
    Reservation, Spend, SpendLimit, SpendLine, SpendReservation, Store, TokenRef,
};
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

/// Where `reserving_child` finds its database.
const CALLS_DB_VAR: &str = "RELAYAPI_TEST_CALLS_DB";

/// The child's tasks, each with at most one call in flight: at the kill, at most this many calls
/// can have been granted (and counted) without being reported.
const CALL_TASKS: u64 = 4;

/// Calls allowed to `lim`; far more than it reaches before the kills.
const LIM_MAX: u64 = 1_000_000;

/// Calls allowed to `small`, all taken early in the first child's life.
const SMALL_MAX: u64 = 50;

/// Grants each child reports before it is killed. A half of the journal holds about 13,000 records
/// of these names and a fold starts the next epoch when it is half full, so the journal moves
/// through several epochs (and both halves are reused) in each child's life.
const CALL_GRANTS: usize = 30_000;

/// Refunds each child reports done before it is killed, so the refund path is always taken.
const CALL_REFUNDS: u64 = 3;

/// The one tenant's token `jti`. The claims and the time of the call are the same on every call:
/// the facts a held token is granted with on the caller's thread.
fn call_token(jti: &str) -> TokenRef<'_> {
    TokenRef {
        jti,
        tenant: "acme",
        iat: 1_000,
        exp: 10_000_000,
        max: match jti {
            "lim" => Some(LIM_MAX),
            "small" => Some(SMALL_MAX),
            _ => None,
        },
    }
}

/// When every call is made.
const CALL_NOW: u64 = 2_000;

/// The child process of `call_reservations_survive_kill_9`, never run on its own: reserves calls of
/// `open` (no limit), `lim` and `small` from several tasks on the SQLite file named by
/// [`CALLS_DB_VAR`] and prints `<jti> <used>` on stdout after each granted one, until it is killed.
/// Now and then a task reads the usage of `open` or refunds a call of it (printing `refunding open`
/// before and `refunded open` once the refund returned): both fold the journal into the rows while
/// the other tasks keep granting, and a refund also takes `open` off the caller's thread until the
/// store thread proves it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "the child process of call_reservations_survive_kill_9"]
async fn reserving_child() {
    let db = std::env::var_os(CALLS_DB_VAR).expect("run by call_reservations_survive_kill_9");
    let s = Arc::new(Store::open_sqlite(std::path::Path::new(&db), 3600).unwrap());
    let say = |line: &str| {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{line}").unwrap();
        out.flush().unwrap();
    };
    let mut tasks = Vec::new();
    for _ in 0..CALL_TASKS {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            for i in 1u64.. {
                for jti in ["open", "lim", "small"] {
                    match s.reserve(call_token(jti), CALL_NOW).await.unwrap() {
                        Reservation::Granted { used } => say(&format!("{jti} {used}")),
                        Reservation::Exhausted if jti == "small" => {}
                        r => panic!("{jti}: {r:?}"),
                    }
                }
                // About every 500 grants of this task.
                if i % 250 == 0 {
                    s.usage("acme", "open").await.unwrap().unwrap();
                }
                if i % 1_000 == 0 {
                    say("refunding open");
                    s.refund("acme", "open").await.unwrap();
                    say("refunded open");
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

/// What one child reported, its last lines before the kill included.
#[derive(Default)]
struct Reported {
    open: Vec<u64>,
    lim: Vec<u64>,
    small: Vec<u64>,
    /// Refunds of `open` begun: each may have changed the count, whether it returned or not.
    refunding: u64,
    /// Refunds of `open` that returned: each certainly did.
    refunded: u64,
}

impl Reported {
    fn grants(&self) -> usize {
        self.open.len() + self.lim.len() + self.small.len()
    }

    /// Takes one line of the child. The test harness may put its own words in front of the first.
    fn take(&mut self, line: &str) {
        let words: Vec<&str> = line.split_whitespace().collect();
        let [.., what, arg] = words[..] else {
            return;
        };
        match (what, arg) {
            ("refunding", "open") => self.refunding += 1,
            ("refunded", "open") => self.refunded += 1,
            ("open" | "lim" | "small", n) => {
                let n: u64 = n.parse().unwrap_or_else(|_| panic!("{line:?}"));
                match what {
                    "open" => &mut self.open,
                    "lim" => &mut self.lim,
                    _ => &mut self.small,
                }
                .push(n);
            }
            _ => {}
        }
    }
}

/// Runs `reserving_child` on `db` until it has reported [`CALL_GRANTS`] grants, [`CALL_REFUNDS`]
/// refunds and `small` grants of `small`, then kills it with SIGKILL, calls still racing.
fn reserve_until_killed(db: &std::path::Path, small: usize) -> Reported {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["reserving_child", "--exact", "--ignored", "--nocapture"])
        .env(CALLS_DB_VAR, db)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = Reported::default();
    while seen.grants() < CALL_GRANTS || seen.refunded < CALL_REFUNDS || seen.small.len() < small {
        let line = lines
            .next()
            .expect("the child stopped before reporting enough")
            .unwrap();
        seen.take(&line);
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    // What the child printed before it died counts too.
    for line in lines.map_while(Result::ok) {
        seen.take(&line);
    }
    seen
}

/// Every call the child reported granted is still counted after `kill -9`, though most were only in
/// the grant journal when it died: reopening the store replays it.
///
/// With `c` the count the child started from, `g` the grants it reported and `b` and `r` the refunds
/// it began and finished, the count it left is at least `c + g - b` (a refund under way at the kill
/// may or may not have committed) and at most `c + g - r` plus the calls granted but not yet
/// reported (one per task). The numbers reported must also be the store's own: `lim`, never
/// refunded, never hands out a number twice, across both children and the checks between them, and
/// each child numbers on from what the file held; `open` hands a number out again only after a
/// refund took it back, so its repeats are at most the refunds begun.
#[tokio::test]
async fn call_reservations_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("usage.db");
    let (mut open_start, mut lim_start) = (0u64, 0u64);
    let (mut open_all, mut lim_all) = (Vec::new(), HashSet::new());
    let mut refunds_begun = 0u64;
    for run in 0..2 {
        // The first child takes all of `small`; the second finds it exhausted.
        let small = if run == 0 { SMALL_MAX as usize } else { 0 };
        let seen = reserve_until_killed(&db, small);

        // Opening the file replays the journal and the WAL, as a restarted relay does.
        let s = Store::open_sqlite(&db, 3600).unwrap();
        let used = |u: Option<relayapi::store::Usage>| u.unwrap().calls_used;
        let open = used(s.usage("acme", "open").await.unwrap());
        let lim = used(s.usage("acme", "lim").await.unwrap());
        let small_used = used(s.usage("acme", "small").await.unwrap());
        let g = seen.open.len() as u64;
        let ctx = format!(
            "run {run}: open counted {open} from {open_start}, {g} grants reported (highest {:?}), \
             {} refunds begun, {} finished",
            seen.open.iter().max(),
            seen.refunding,
            seen.refunded
        );
        assert!(
            open + seen.refunding >= open_start + g,
            "lost grants: {ctx}"
        );
        assert!(
            open + seen.refunded <= open_start + g + CALL_TASKS,
            "counted grants never made: {ctx}"
        );
        let highest = seen.open.iter().copied().max().unwrap_or(0);
        assert!(open + seen.refunding >= highest, "{ctx}");
        assert!(
            seen.open.iter().all(|&n| n + seen.refunding > open_start),
            "numbered below the count the file held: {ctx}"
        );
        refunds_begun += seen.refunding;
        open_all.extend(&seen.open);

        let g = seen.lim.len() as u64;
        let ctx = format!(
            "run {run}: lim counted {lim} from {lim_start}, {g} grants reported (highest {:?})",
            seen.lim.iter().max()
        );
        assert!(lim >= lim_start + g, "lost grants: {ctx}");
        assert!(
            lim <= lim_start + g + CALL_TASKS,
            "counted grants never made: {ctx}"
        );
        assert!(lim < LIM_MAX, "{ctx}");
        assert!(
            seen.lim.iter().all(|&n| n > lim_start && n <= lim),
            "numbered outside the count: {ctx}"
        );
        for &n in &seen.lim {
            assert!(lim_all.insert(n), "lim {n} granted twice: {ctx}");
        }

        if run == 0 {
            let mut small = seen.small.clone();
            small.sort_unstable();
            assert_eq!(small, (1..=SMALL_MAX).collect::<Vec<_>>());
        } else {
            assert_eq!(seen.small, Vec::<u64>::new(), "granted past its limit");
        }
        assert_eq!(small_used, SMALL_MAX);

        // The reopened store goes on from what it recovered.
        let r = s.reserve(call_token("small"), CALL_NOW).await.unwrap();
        assert_eq!(r, Reservation::Exhausted);
        let r = s.reserve(call_token("open"), CALL_NOW).await.unwrap();
        assert_eq!(r, Reservation::Granted { used: open + 1 });
        let r = s.reserve(call_token("lim"), CALL_NOW).await.unwrap();
        assert_eq!(r, Reservation::Granted { used: lim + 1 });
        open_all.push(open + 1);
        assert!(lim_all.insert(lim + 1));
        (open_start, lim_start) = (open + 1, lim + 1);
        // Closed cleanly, so the next child opens the file.
        drop(s);
    }
    let distinct = open_all.iter().collect::<HashSet<_>>().len() as u64;
    let repeats = open_all.len() as u64 - distinct;
    assert!(
        repeats <= refunds_begun,
        "open: {repeats} numbers handed out again, {refunds_begun} refunds begun"
    );
}
