//! Reservations per second through the relay's own Redis store code, on one `redis-server` and on Redis
//! Clusters of growing size, with the Redis CPU each reservation costs (`bench/README.md`, "Past one
//! Redis"). Run: `cargo bench --bench store_reserve` (needs `redis-server` and `redis-cli`).
//!
//! Settings (environment): `BENCH_SECS` seconds per measurement (default 5), `BENCH_CONC` reservations
//! in flight (default 64), `BENCH_MASTERS` cluster sizes (default `3,4,6`).
//!
//! Every process runs on this one machine, so throughput here is capped by its cores, not by Redis: a
//! cluster's masters and the client share them. The figure that carries over to a real deployment, where
//! each master has a core of its own, is the Redis CPU per reservation (from `INFO cpu`, summed over
//! the masters) and how evenly it spreads (the busiest master's share; `1/masters` is perfect).

#[path = "../tests/store_support/mod.rs"]
mod store_support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use relayapi::store::redis::{RedisOptions, RedisTarget};
use relayapi::store::{Spend, SpendLimit, SpendLine, Store, TokenRef};
use store_support::topology::{Node, RedisCluster};

/// Distinct tokens and end users the load cycles through, so keys spread over slots as a relay's do.
const TOKENS: usize = 10_000;
const USERS: usize = 1_000;
/// Linux's `USER_HZ`, the unit of `utime`/`stime` in `/proc/self/stat`.
const CLOCK_TICKS_PER_SEC: f64 = 100.0;

#[derive(Clone, Copy)]
enum Kind {
    /// A call reservation (`Store::reserve`), the one every relayed request makes.
    Call,
    /// A spend reservation on the token's line and one end-user day line: two slots on a cluster.
    Spend,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::Call => "call",
            Kind::Spend => "spend (token + user day line)",
        }
    }
}

struct Row {
    topology: String,
    kind: Kind,
    per_sec: f64,
    redis_us: f64,
    busiest_share: f64,
    client_us: f64,
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// User plus system CPU seconds of this process so far.
fn own_cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    // The command name (field 2) may hold spaces; the fields after its closing parenthesis are fixed.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    ticks / CLOCK_TICKS_PER_SEC
}

/// A node's CPU seconds so far (`used_cpu_sys + used_cpu_user` of `INFO cpu`).
fn node_cpu_secs(n: &Node) -> f64 {
    n.command("INFO cpu")
        .lines()
        .filter_map(|l| {
            let (k, v) = l.trim().split_once(':')?;
            (k == "used_cpu_sys" || k == "used_cpu_user").then(|| v.parse::<f64>().ok())?
        })
        .sum()
}

fn open(target: RedisTarget, prefix: &str) -> Arc<Store> {
    let opts = RedisOptions {
        target,
        key_prefix: prefix.into(),
        connect_timeout: Duration::from_secs(2),
        command_timeout: Duration::from_secs(5),
        replica_acks: 0,
    };
    Arc::new(Store::open_redis(opts, 86_400).unwrap())
}

async fn one(store: &Store, kind: Kind, jtis: &[String], users: &[String], i: usize, t: u64) {
    let jti = &jtis[i % TOKENS];
    match kind {
        Kind::Call => {
            let token = TokenRef {
                jti,
                tenant: "bench",
                iat: t,
                exp: t + 3_600,
                max: None,
            };
            store.reserve(token, t).await.expect("reserve");
        }
        Kind::Spend => {
            let unlimited = SpendLimit::default();
            let lines = [
                SpendLine {
                    key: format!("t/{jti}"),
                    limit: unlimited,
                    keep_until: t + 7_200,
                },
                SpendLine {
                    key: format!("u/{}/d/bench", users[i % USERS]),
                    limit: unlimited,
                    keep_until: t + 7_200,
                },
            ];
            let amount = Spend {
                calls: 1,
                input: 512,
                output: 256,
                ..Spend::default()
            };
            store
                .spend_reserve("bench", &lines, &amount, t)
                .await
                .expect("spend_reserve");
        }
    }
}

/// Keeps `conc` reservations in flight for `secs` seconds and measures them.
fn measure(
    rt: &tokio::runtime::Runtime,
    topology: &str,
    masters: &[&Node],
    target: RedisTarget,
    kind: Kind,
) -> Row {
    let secs: u64 = env_or("BENCH_SECS", 5);
    let conc: usize = env_or("BENCH_CONC", 64);
    let store = open(target, &format!("b{}:", now() % 100_000));
    let jtis: Arc<Vec<String>> = Arc::new((0..TOKENS).map(|i| format!("{i:032x}")).collect());
    let users: Arc<Vec<String>> = Arc::new((0..USERS).map(|i| format!("user-{i}")).collect());
    let t = now();
    // Warm up: connections, the slot map, script loading, the keys' first creation.
    rt.block_on(async {
        for i in 0..TOKENS.max(USERS) {
            one(&store, kind, &jtis, &users, i, t).await;
        }
    });
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let cpu0: Vec<f64> = masters.iter().map(|n| node_cpu_secs(n)).collect();
    let own0 = own_cpu_secs();
    let start = Instant::now();
    rt.block_on(async {
        let tasks: Vec<_> = (0..conc)
            .map(|w| {
                let (store, jtis, users) = (store.clone(), jtis.clone(), users.clone());
                let (done, stop) = (done.clone(), stop.clone());
                tokio::spawn(async move {
                    let mut i = w * 7_919;
                    while !stop.load(Ordering::Relaxed) {
                        one(&store, kind, &jtis, &users, i, t).await;
                        done.fetch_add(1, Ordering::Relaxed);
                        i += conc;
                    }
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_secs(secs)).await;
        stop.store(true, Ordering::Relaxed);
        for task in tasks {
            task.await.unwrap();
        }
    });
    let elapsed = start.elapsed().as_secs_f64();
    let own = own_cpu_secs() - own0;
    let per_node: Vec<f64> = masters
        .iter()
        .zip(&cpu0)
        .map(|(n, c0)| node_cpu_secs(n) - c0)
        .collect();
    let total: f64 = per_node.iter().sum();
    let n = done.load(Ordering::Relaxed) as f64;
    Row {
        topology: topology.into(),
        kind,
        per_sec: n / elapsed,
        redis_us: total / n * 1e6,
        busiest_share: per_node.iter().cloned().fold(0.0, f64::max) / total.max(f64::EPSILON),
        client_us: own / n * 1e6,
    }
}

/// What Redis ran for one kind of reservation, from `INFO commandstats`: each command's calls and its
/// own time per call as Redis measures it (a script's time includes the commands it calls).
fn command_breakdown(n: &Node, kind: Kind) -> String {
    let mut out = format!(
        "\nOn one redis-server, {} reservations (warm-up included):\n",
        kind.label()
    );
    for line in n.command("INFO commandstats").lines() {
        let Some((name, rest)) = line
            .trim()
            .strip_prefix("cmdstat_")
            .and_then(|l| l.split_once(':'))
        else {
            continue;
        };
        let field = |f: &str| {
            rest.split(',')
                .find_map(|kv| kv.strip_prefix(f)?.strip_prefix('='))
                .unwrap_or("?")
                .to_string()
        };
        if ["info", "ping", "script|load", "hello", "client|setinfo"].contains(&name) {
            continue;
        }
        out += &format!(
            "  {name}: {} calls, {} µs per call\n",
            field("calls"),
            field("usec_per_call")
        );
    }
    out
}

fn main() {
    let masters: Vec<usize> = std::env::var("BENCH_MASTERS")
        .unwrap_or_else(|_| "3,4,6".into())
        .split(',')
        .map(|m| m.trim().parse().expect("BENCH_MASTERS: sizes like 3,4,6"))
        .collect();
    // One worker thread, as a relay on one core: the other core is left to the Redis processes.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let mut rows = Vec::new();
    let dir = tempfile::tempdir().unwrap();
    let mut breakdown = String::new();
    for kind in [Kind::Call, Kind::Spend] {
        // A fresh server per kind, so its command statistics describe that kind alone.
        let node = Node::standalone(dir.path());
        let target = RedisTarget::Server(node.url());
        let row = measure(&rt, "one redis-server", &[&node], target, kind);
        breakdown += &command_breakdown(&node, kind);
        rows.push(row);
    }
    for m in masters {
        let cluster = RedisCluster::with_masters(m);
        let nodes: Vec<&Node> = cluster.nodes.iter().collect();
        for kind in [Kind::Call, Kind::Spend] {
            let target = RedisTarget::Cluster(cluster.urls());
            rows.push(measure(
                &rt,
                &format!("cluster, {m} masters"),
                &nodes,
                target,
                kind,
            ));
        }
    }
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "\nReservations through the relay's Redis store ({} s each, {} in flight, load average {})\n",
        env_or::<u64>("BENCH_SECS", 5),
        env_or::<usize>("BENCH_CONC", 64),
        load.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
    );
    println!("| topology | reservation | per second (this machine) | Redis CPU per reservation (all masters) | busiest master's share of it | client CPU per reservation |");
    println!("|---|---|---|---|---|---|");
    print!("{breakdown}");
    println!();
    for r in rows {
        println!(
            "| {} | {} | {:.0} | {:.1} µs | {:.0} % | {:.1} µs |",
            r.topology,
            r.kind.label(),
            r.per_sec,
            r.redis_us,
            r.busiest_share * 100.0,
            r.client_us
        );
    }
}
