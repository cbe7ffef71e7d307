//! Real multi-process Redis topologies for the store tests, on loopback with persistence off: a
//! 3-master Redis Cluster (`redis-cli --cluster create`), and a master with one replica watched by
//! three Sentinels (`redis-server --sentinel`). Missing binaries fail the test with how to install
//! them; every process is killed when its owner is dropped.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::free_port;

/// Longest a topology may take to come up before the test fails.
const START_DEADLINE: Duration = Duration::from_secs(15);

/// One `redis-server` process (a node, a replica or a Sentinel).
pub struct Node {
    child: Option<Child>,
    pub port: u16,
    /// Sent with `AUTH` before each command when the node requires a password.
    password: Option<String>,
}

impl Node {
    fn spawn(port: u16, dir: &Path, args: &[String]) -> Node {
        Self::spawn_with(port, dir, args, None)
    }

    fn spawn_with(port: u16, dir: &Path, args: &[String], password: Option<&str>) -> Node {
        let child = Command::new("redis-server")
            .args(args)
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run redis-server ({e}). The Redis Cluster and Sentinel tests need a real \
                     server: install it with `apt-get install redis-server` (scripts/test.sh does)"
                )
            });
        let node = Node {
            child: Some(child),
            port,
            password: password.map(String::from),
        };
        wait_until(
            || node.command("PING").ends_with("+PONG"),
            "redis-server to answer PING",
        );
        node
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Runs one command (inline protocol) and answers the whole reply, `\r\n` kept between lines.
    pub fn command(&self, cmd: &str) -> String {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else {
            return String::new();
        };
        let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
        let auth = match &self.password {
            Some(p) => format!("AUTH {p}\r\n"),
            None => String::new(),
        };
        if s.write_all(format!("{auth}{cmd}\r\n").as_bytes()).is_err() {
            return String::new();
        }
        let mut out = Vec::new();
        let mut buf = [0u8; 16 * 1024];
        // Replies here are small; read until the server pauses.
        while let Ok(n) = s.read(&mut buf) {
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
            if out.ends_with(b"\r\n") {
                let _ = s.set_read_timeout(Some(Duration::from_millis(50)));
            }
        }
        String::from_utf8_lossy(&out).trim_end().to_string()
    }

    /// SIGKILL, and wait for the process to go.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Node {
    /// A plain (non-cluster) server in `dir`, on a free port, persistence off.
    pub fn standalone(dir: &Path) -> Node {
        let port = free_port();
        Node::spawn(port, dir, &base_args(port))
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

fn wait_until(mut ready: impl FnMut() -> bool, what: &str) {
    let deadline = Instant::now() + START_DEADLINE;
    while !ready() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn base_args(port: u16) -> Vec<String> {
    [
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
    ]
    .map(String::from)
    .to_vec()
}

/// A Redis Cluster of three masters (no replicas), every slot assigned.
pub struct RedisCluster {
    pub nodes: Vec<Node>,
    _dir: tempfile::TempDir,
}

impl RedisCluster {
    pub fn start() -> RedisCluster {
        Self::with_masters(3)
    }

    /// A cluster of `masters` masters (at least 3, as `redis-cli --cluster create` requires).
    pub fn with_masters(masters: usize) -> RedisCluster {
        let dir = tempfile::tempdir().unwrap();
        let nodes: Vec<Node> = (0..masters)
            .map(|_| {
                let port = free_port();
                let mut args = base_args(port);
                args.extend(
                    [
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        &format!("nodes-{port}.conf"),
                        // The bus port is chosen too: port + 10000 may be taken or past 65535.
                        "--cluster-port",
                        &free_port().to_string(),
                        "--cluster-node-timeout",
                        "2000",
                    ]
                    .map(String::from),
                );
                Node::spawn(port, dir.path(), &args)
            })
            .collect();
        let mut create = Command::new("redis-cli");
        create.args(["--cluster", "create"]);
        for n in &nodes {
            create.arg(format!("127.0.0.1:{}", n.port));
        }
        let out = create
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .unwrap_or_else(|e| {
                panic!("cannot run redis-cli ({e}); it comes with `apt-get install redis-server`")
            });
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        for n in &nodes {
            wait_until(
                || n.command("CLUSTER INFO").contains("cluster_state:ok"),
                "the cluster to be ok on every node",
            );
        }
        RedisCluster { nodes, _dir: dir }
    }

    /// The seed nodes, as `store.cluster` takes them.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(Node::url).collect()
    }
}

/// A master, its replicas, and three Sentinels watching them under the name [`SentinelSet::MASTER`].
pub struct SentinelSet {
    pub master: Node,
    pub replicas: Vec<Node>,
    pub sentinels: Vec<Node>,
    _dir: tempfile::TempDir,
}

impl SentinelSet {
    pub const MASTER: &'static str = "relay-master";

    /// A master with one replica.
    pub fn start() -> SentinelSet {
        Self::with(1, None)
    }

    pub fn with_replicas(n: usize) -> SentinelSet {
        Self::with(n, None)
    }

    /// `n` replicas; with `password`, the master and replicas require it (the Sentinels do not).
    pub fn with(n: usize, password: Option<&str>) -> SentinelSet {
        let dir = tempfile::tempdir().unwrap();
        let auth_args = |args: &mut Vec<String>| {
            if let Some(p) = password {
                args.extend(["--requirepass", p, "--masterauth", p].map(String::from));
            }
        };
        let mport = free_port();
        let mut args = base_args(mport);
        auth_args(&mut args);
        let master = Node::spawn_with(mport, dir.path(), &args, password);
        let replicas: Vec<Node> = (0..n)
            .map(|_| {
                let rport = free_port();
                let mut args = base_args(rport);
                auth_args(&mut args);
                args.extend(["--replicaof", "127.0.0.1", &mport.to_string()].map(String::from));
                let replica = Node::spawn_with(rport, dir.path(), &args, password);
                wait_until(
                    || {
                        replica
                            .command("INFO replication")
                            .contains("master_link_status:up")
                    },
                    "the replica to sync",
                );
                replica
            })
            .collect();
        let sentinels: Vec<Node> = (0..3)
            .map(|_| {
                let port = free_port();
                // A Sentinel rewrites its file: each gets its own, in the temporary directory.
                let file = dir.path().join(format!("sentinel-{port}.conf"));
                let auth = password
                    .map(|p| format!("sentinel auth-pass {} {p}\n", Self::MASTER))
                    .unwrap_or_default();
                let conf = format!(
                    "port {port}\nbind 127.0.0.1\n\
                     sentinel monitor {m} 127.0.0.1 {mport} 2\n{auth}\
                     sentinel down-after-milliseconds {m} 1000\n\
                     sentinel failover-timeout {m} 4000\n\
                     sentinel parallel-syncs {m} 1\n",
                    m = Self::MASTER
                );
                std::fs::write(&file, conf).unwrap();
                Node::spawn(
                    port,
                    dir.path(),
                    &[file.display().to_string(), "--sentinel".into()],
                )
            })
            .collect();
        // A failover needs each Sentinel to know the replica and a quorum of the others.
        for s in &sentinels {
            wait_until(
                || {
                    let info = s.command(&format!("SENTINEL master {}", Self::MASTER));
                    field_after(&info, "num-slaves") == Some(n as u64)
                        && field_after(&info, "num-other-sentinels") == Some(2)
                },
                "every Sentinel to see the replica and the two other Sentinels",
            );
        }
        SentinelSet {
            master,
            replicas,
            sentinels,
            _dir: dir,
        }
    }

    pub fn sentinel_urls(&self) -> Vec<String> {
        self.sentinels.iter().map(Node::url).collect()
    }

    /// The port the Sentinels name as master now.
    pub fn master_port(&self) -> Option<u16> {
        let reply = self.sentinels[0].command(&format!(
            "SENTINEL get-master-addr-by-name {}",
            Self::MASTER
        ));
        reply.lines().nth(4).and_then(|p| p.trim().parse().ok())
    }
}

/// The number following `name` in a flat RESP reply of name/value lines.
fn field_after(reply: &str, name: &str) -> Option<u64> {
    let lines: Vec<&str> = reply.lines().collect();
    let at = lines.iter().position(|l| l.trim() == name)?;
    lines.get(at + 2)?.trim().parse().ok()
}
