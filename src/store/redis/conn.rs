//! How the store reaches Redis (`store.url`, `store.cluster` or `store.sentinel`): one server, a
//! Redis Cluster (seed nodes; the client library follows `MOVED` and `ASK` and refreshes its slot
//! map), or the master a Sentinel set names; and the one connection type the script runner uses for
//! all three. Timeouts and reconnection stay with the runner in `mod.rs`.

use std::time::Duration;

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType};
use redis::{
    AsyncConnectionConfig, Client, Cmd, Pipeline, RedisConnectionInfo, RedisFuture, RedisResult,
    Value,
};
use tokio::sync::Mutex;

use crate::store::StoreError;

/// Attempts the Cluster client makes for one command after the first (a connection error, a
/// `TRYAGAIN`, a slot moved during resharding). Each attempt is bounded by the command timeout, and
/// the runner's own deadline bounds them all; the idempotency record outlives them (`keys.rs`).
const CLUSTER_RETRIES: u32 = 2;

/// Where the Redis store lives. Every address may carry a password: never logged.
#[derive(Clone, PartialEq, Eq)]
pub enum RedisTarget {
    /// One server: `redis://[user:password@]host[:port][/db]` or `unix:///path`.
    Server(String),
    /// A Redis (or Valkey) Cluster, by some of its nodes (`redis://host:port`); the client learns
    /// the rest from them.
    Cluster(Vec<String>),
    /// The master that the Sentinels at `nodes` (`redis://host:26379`) name `master`, followed
    /// through failovers, reached with `auth` and on database `db`.
    Sentinel {
        nodes: Vec<String>,
        master: String,
        auth: MasterAuth,
    },
}

/// How to log in to the master behind Sentinel, whose address the store learns from the Sentinels.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct MasterAuth {
    pub username: Option<String>,
    pub password: Option<String>,
    pub db: i64,
}

impl std::fmt::Debug for RedisTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RedisTarget::Server(_) => f.write_str("Server(redacted)"),
            RedisTarget::Cluster(n) => write!(f, "Cluster({} nodes, redacted)", n.len()),
            RedisTarget::Sentinel { nodes, master, .. } => {
                write!(f, "Sentinel({} nodes, master {master:?})", nodes.len())
            }
        }
    }
}

/// What opens connections for a target.
pub(super) enum Connector {
    Server(Client),
    Cluster(ClusterClient),
    /// Asking the Sentinels needs `&mut`; the runner opens one connection at a time anyway.
    Sentinel(Mutex<SentinelClient>),
}

impl Connector {
    /// Checks the addresses without connecting. Messages never quote an address.
    pub(super) fn new(
        target: &RedisTarget,
        connect_timeout: Duration,
        command_timeout: Duration,
    ) -> Result<Connector, StoreError> {
        let invalid = |what: &str| StoreError(format!("{what} is not a valid Redis URL"));
        match target {
            RedisTarget::Server(url) => Client::open(url.as_str())
                .map(Connector::Server)
                .map_err(|_| invalid("the Redis URL")),
            RedisTarget::Cluster(nodes) => {
                ClusterClientBuilder::new(nodes.iter().map(String::as_str))
                    .connection_timeout(connect_timeout)
                    .response_timeout(command_timeout)
                    .retries(CLUSTER_RETRIES)
                    .build()
                    .map(Connector::Cluster)
                    .map_err(|_| invalid("a Redis Cluster node"))
            }
            RedisTarget::Sentinel {
                nodes,
                master,
                auth,
            } => SentinelClient::build(
                nodes.iter().map(String::as_str).collect(),
                master.clone(),
                Some(master_login(auth)),
                SentinelServerType::Master,
            )
            .map(|c| Connector::Sentinel(Mutex::new(c)))
            .map_err(|_| invalid("a Sentinel node")),
        }
    }

    pub(super) async fn open(&self, config: &AsyncConnectionConfig) -> RedisResult<Conn> {
        match self {
            Connector::Server(c) => c
                .get_multiplexed_async_connection_with_config(config)
                .await
                .map(Conn::Server),
            Connector::Cluster(c) => c.get_async_connection().await.map(Conn::Cluster),
            Connector::Sentinel(s) => s
                .lock()
                .await
                .get_async_connection_with_config(config)
                .await
                .map(Conn::Server),
        }
    }
}

fn master_login(auth: &MasterAuth) -> SentinelNodeConnectionInfo {
    let mut info = RedisConnectionInfo::default().set_db(auth.db);
    if let Some(u) = &auth.username {
        info = info.set_username(u);
    }
    if let Some(p) = &auth.password {
        info = info.set_password(p);
    }
    SentinelNodeConnectionInfo::default().set_redis_connection_info(info)
}

/// An open connection: to one server (also the Sentinel-named master) or to a whole Cluster.
#[derive(Clone)]
pub(super) enum Conn {
    Server(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Server(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Server(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Server(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}
