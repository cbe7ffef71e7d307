//! The Redis store through a Sentinel failover, with real processes: a master, its replica and three
//! Sentinels. Two stores (two relays) reserve calls of one token without pause while the master is
//! killed (SIGKILL). Every answer comes within the timeouts (errors during the switch, never a hang),
//! the stores recover on their own once the replica is promoted, no limit is exceeded, and no granted
//! call is lost beyond the asynchronous-replication bound of `docs/redis.md` §4. And a Cluster master
//! killed: its tokens are refused with an error within the timeouts, never granted, never a hang.

mod store_support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use relayapi::store::{MasterAuth, RedisOptions, RedisTarget, Reservation, Store, TokenRef};
use store_support::topology::{RedisCluster, SentinelSet};

const TOKEN_LIFE: u64 = 7 * 24 * 3600;
/// The stores' connect and command timeouts.
const TIMEOUT: Duration = Duration::from_secs(1);
/// Reservation loops per store: at most this many reservations are in flight at the kill.
const LOOPS: usize = 4;
/// The token's call limit: the master is killed once half of it is granted.
const MAX_CALLS: u64 = 400;
/// Answers a loop waits for after its first error before it ends: together more than the half of
/// the limit left after the kill, so the limit is reached on the promoted master.
const RECOVERED_AFTER: usize = 60;

fn tok() -> TokenRef<'static> {
    TokenRef {
        jti: "failover",
        tenant: "acme",
        iat: 1_000,
        exp: 10_000,
        max: Some(MAX_CALLS),
    }
}

#[derive(Default)]
struct Seen {
    granted: Vec<(Instant, u64)>,
    exhausted: usize,
    errors: Vec<Instant>,
    slowest: Duration,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sentinel_failover_answers_errors_then_recovers_without_losing_grants() {
    failover(SentinelSet::start(), 0).await;
}

/// With `replica_acks: 1` (and two replicas, so one is left to acknowledge after the promotion) a
/// granted call was on a replica before it was answered: none is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_replica_acks_a_sentinel_failover_loses_no_grant() {
    failover(SentinelSet::with_replicas(2), 1).await;
}

async fn failover(mut set: SentinelSet, replica_acks: u32) {
    let old_master = set.master_port();
    let open = || {
        let opts = RedisOptions {
            target: RedisTarget::Sentinel {
                nodes: set.sentinel_urls(),
                master: SentinelSet::MASTER.into(),
                auth: MasterAuth::default(),
            },
            key_prefix: "fo:".into(),
            connect_timeout: TIMEOUT,
            command_timeout: TIMEOUT,
            replica_acks,
        };
        Arc::new(Store::open_redis(opts, TOKEN_LIFE).unwrap())
    };
    let stores = [open(), open()];
    stores[0].check().await.unwrap();

    let stop_at = Instant::now() + Duration::from_secs(15);
    let granted_so_far = Arc::new(AtomicU64::new(0));
    let mut loops = Vec::new();
    for i in 0..2 * LOOPS {
        let (s, granted_so_far) = (stores[i % 2].clone(), granted_so_far.clone());
        loops.push(tokio::spawn(async move {
            let mut seen = Seen::default();
            // Answers after the switch: enough to prove recovery, then the loop ends.
            let mut ok_after_error = 0;
            while Instant::now() < stop_at && ok_after_error < RECOVERED_AFTER {
                let t0 = Instant::now();
                let r = s.reserve(tok(), 1_100).await;
                seen.slowest = seen.slowest.max(t0.elapsed());
                match r {
                    Ok(Reservation::Granted { used }) => {
                        seen.granted.push((Instant::now(), used));
                        granted_so_far.fetch_add(1, Ordering::Relaxed);
                        ok_after_error += usize::from(!seen.errors.is_empty());
                    }
                    Ok(Reservation::Exhausted) => {
                        seen.exhausted += 1;
                        ok_after_error += usize::from(!seen.errors.is_empty());
                    }
                    Ok(Reservation::Revoked) => panic!("never revoked"),
                    Err(_) => {
                        seen.errors.push(Instant::now());
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            seen
        }));
    }
    while granted_so_far.load(Ordering::Relaxed) < MAX_CALLS / 2 {
        assert!(Instant::now() < stop_at, "no progress before the kill");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let killed_at = Instant::now();
    set.master.kill();

    let mut all = Seen::default();
    for l in loops {
        let s = l.await.unwrap();
        all.granted.extend(s.granted);
        all.exhausted += s.exhausted;
        all.errors.extend(s.errors);
        all.slowest = all.slowest.max(s.slowest);
    }
    assert_ne!(
        set.master_port(),
        old_master,
        "the Sentinels promoted the replica"
    );
    assert!(
        !all.errors.is_empty(),
        "the switch was seen as store errors (the relay's 503)"
    );
    // An operation is a mark read and a script, plus at most one connection attempt.
    assert!(
        all.slowest <= 3 * TIMEOUT + Duration::from_millis(500),
        "an answer took {:?}: the store hung",
        all.slowest
    );
    let last_error = *all.errors.iter().max().unwrap();
    let after: Vec<u64> = all
        .granted
        .iter()
        .filter(|(at, _)| *at > last_error)
        .map(|(_, used)| *used)
        .collect();
    assert!(
        !after.is_empty() || all.exhausted > 0,
        "the stores recovered on their own after the switch"
    );
    assert!(
        all.granted.iter().any(|(at, _)| *at < killed_at),
        "calls were granted before the kill"
    );

    // What the promoted master holds: never above the limit, and at most the calls in flight at
    // the kill short of what was granted (the asynchronous-replication bound).
    let used = stores[0]
        .usage("acme", "failover")
        .await
        .unwrap()
        .unwrap()
        .calls_used;
    let granted = all.granted.len() as u64;
    if replica_acks > 0 {
        assert!(
            granted <= used,
            "granted {granted}, counted {used}: a grant was lost"
        );
    }
    assert!(used <= MAX_CALLS, "the limit holds: {used}");
    assert!(all.exhausted > 0, "the limit was reached after the switch");
    assert!(
        granted <= MAX_CALLS + (2 * LOOPS) as u64,
        "granted {granted}: beyond the limit by more than the in-flight bound"
    );
    assert!(
        granted <= used + (2 * LOOPS) as u64,
        "granted {granted}, counted {used}: more lost than the calls in flight at the kill"
    );
    let mut numbers: Vec<u64> = all.granted.iter().map(|(_, u)| *u).collect();
    numbers.sort_unstable();
    numbers.dedup();
    assert!(
        numbers.len() as u64 >= granted - (2 * LOOPS) as u64,
        "a count was handed out twice beyond the in-flight bound"
    );
    eprintln!(
        "failover (replica_acks {replica_acks}): {granted} granted ({} before the kill), {} exhausted, {used} counted on the new \
         master, {} errors over {:?}, slowest answer {:?}",
        all.granted.iter().filter(|(at, _)| *at < killed_at).count(),
        all.exhausted,
        all.errors.len(),
        all.errors.iter().max().unwrap().duration_since(*all.errors.iter().min().unwrap()),
        all.slowest
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_master_down_is_an_error_within_the_timeouts_never_a_grant() {
    let mut cluster = RedisCluster::start();
    let opts = RedisOptions {
        target: RedisTarget::Cluster(cluster.urls()),
        key_prefix: "down:".into(),
        connect_timeout: TIMEOUT,
        command_timeout: TIMEOUT,
        replica_acks: 0,
    };
    let s = Store::open_redis(opts, TOKEN_LIFE).unwrap();
    let jtis: Vec<String> = (0..12).map(|i| format!("t{i}")).collect();
    for j in &jtis {
        assert_eq!(
            s.reserve(token(j), 1_100).await.unwrap(),
            Reservation::Granted { used: 1 }
        );
    }
    cluster.nodes[0].kill();
    let mut errors = 0;
    for j in &jtis {
        let t0 = Instant::now();
        let r = s.reserve(token(j), 1_100).await;
        assert!(
            t0.elapsed() <= 3 * TIMEOUT + Duration::from_millis(500),
            "{j}: answered after {:?}",
            t0.elapsed()
        );
        match r {
            Err(_) => errors += 1,
            Ok(answer) => assert_eq!(answer, Reservation::Exhausted, "{j}: the limit of 1 holds"),
        }
    }
    assert!(
        errors > 0,
        "the tokens of the lost master are refused with an error"
    );
}

fn token(jti: &str) -> TokenRef<'_> {
    TokenRef {
        jti,
        tenant: "acme",
        iat: 1_000,
        exp: 10_000,
        max: Some(1),
    }
}

#[tokio::test]
async fn a_master_behind_sentinel_is_reached_with_its_password_and_database() {
    let set = SentinelSet::with(1, Some("s3cret"));
    let open = |password: Option<&str>| {
        let opts = RedisOptions {
            target: RedisTarget::Sentinel {
                nodes: set.sentinel_urls(),
                master: SentinelSet::MASTER.into(),
                auth: MasterAuth {
                    username: None,
                    password: password.map(String::from),
                    db: 3,
                },
            },
            key_prefix: "auth:".into(),
            connect_timeout: TIMEOUT,
            command_timeout: TIMEOUT,
            replica_acks: 0,
        };
        Store::open_redis(opts, TOKEN_LIFE).unwrap()
    };
    let s = open(Some("s3cret"));
    s.check().await.unwrap();
    assert_eq!(
        s.reserve(token("t1"), 1_100).await.unwrap(),
        Reservation::Granted { used: 1 }
    );
    assert_eq!(
        set.master.command("SELECT 3\r\nEXISTS auth:tok:{acme:t1}"),
        "+OK\r\n+OK\r\n:1",
        "written on database 3"
    );
    let e = open(None).check().await.unwrap_err();
    assert!(!e.to_string().contains("s3cret"), "{e}");
    assert!(open(Some("wrong"))
        .reserve(token("t1"), 1_100)
        .await
        .is_err());
}
