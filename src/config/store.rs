//! `store`: the kind of store and the options of that kind, checked and turned into a
//! [`StoreConfig`]. The fields of the other kinds are refused, so a typo such as `"url"` on a sqlite
//! store does not pass silently; a Redis URL is never repeated in a message (it may carry a password).

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::schema;
use crate::config::types::{RedisStoreConfig, StoreConfig};
use crate::store::{MasterAuth, RedisTarget};

/// The sqlite file when `store.path` is absent, next to `config.json`.
pub const DEFAULT_SQLITE_PATH: &str = "relayapi-usage.db";
/// Redis key prefix when `store.key_prefix` is absent.
pub const DEFAULT_KEY_PREFIX: &str = "relayapi:";
/// Redis connect and command timeout when absent: long enough for a server on the same network.
const DEFAULT_REDIS_TIMEOUT: Duration = Duration::from_secs(2);
/// Highest database number accepted for the master behind Sentinel (Redis' default has 16).
const MAX_DB: i64 = 1 << 16;
/// Most replicas a write can wait for (`store.replica_acks`): more than any sane replica set.
const MAX_REPLICA_ACKS: u32 = 16;
/// Longest Redis key prefix: it is sent with every command.
const MAX_KEY_PREFIX_LEN: usize = 64;

/// Checks `store` and builds the typed store settings. Errors are `(field, problem)`.
pub(super) fn store(
    raw: &schema::StoreConfig,
    config_file: &Path,
) -> Result<StoreConfig, (&'static str, String)> {
    let redis_only = [
        ("store.url", raw.url.is_some()),
        ("store.cluster", raw.cluster.is_some()),
        ("store.sentinel", raw.sentinel.is_some()),
        ("store.key_prefix", raw.key_prefix.is_some()),
        ("store.connect_timeout", raw.connect_timeout.is_some()),
        ("store.command_timeout", raw.command_timeout.is_some()),
        ("store.replica_acks", raw.replica_acks.is_some()),
    ];
    let not_for =
        |kind: &str, fields: &[(&'static str, bool)]| match fields.iter().find(|(_, given)| *given)
        {
            Some((field, _)) => Err((*field, format!("is not used by a {kind} store"))),
            None => Ok(()),
        };
    match raw.kind.as_str() {
        "memory" => {
            not_for(
                "memory",
                &[&[("store.path", raw.path.is_some())][..], &redis_only[..]].concat(),
            )?;
            Ok(StoreConfig::Memory)
        }
        "sqlite" => {
            not_for("sqlite", &redis_only)?;
            match &raw.path {
                Some(p) if p.as_os_str().is_empty() => Err((
                    "store.path",
                    "expected a file name such as \"relayapi-usage.db\"".into(),
                )),
                p => Ok(StoreConfig::Sqlite {
                    path: sqlite_path(p.as_deref(), config_file),
                }),
            }
        }
        "redis" => {
            not_for("redis", &[("store.path", raw.path.is_some())])?;
            redis(raw).map(StoreConfig::Redis)
        }
        other => Err((
            "store.type",
            format!(
                "\"{other}\" is not a store this relay knows; expected \"sqlite\", \"redis\" or \"memory\""
            ),
        )),
    }
}

fn redis(raw: &schema::StoreConfig) -> Result<RedisStoreConfig, (&'static str, String)> {
    let target = match (&raw.url, &raw.cluster, &raw.sentinel) {
        (Some(url), None, None) => RedisTarget::Server(server_url(url)?),
        (None, Some(nodes), None) => RedisTarget::Cluster(nodes_of("store.cluster", nodes)?),
        (None, None, Some(s)) => {
            if s.master.is_empty() || !s.master.bytes().all(|b| b.is_ascii_graphic()) {
                return Err((
                    "store.sentinel.master",
                    "expected the master's name as the Sentinels know it, e.g. \"mymaster\"".into(),
                ));
            }
            let db = match s.db.unwrap_or(0) {
                db @ 0..=MAX_DB => db,
                _ => {
                    return Err((
                        "store.sentinel.db",
                        format!("expected a database number from 0 to {MAX_DB}"),
                    ))
                }
            };
            RedisTarget::Sentinel {
                nodes: nodes_of("store.sentinel.nodes", &s.nodes)?,
                master: s.master.clone(),
                auth: MasterAuth {
                    username: s.username.clone(),
                    password: s.password.clone(),
                    db,
                },
            }
        }
        (None, None, None) => {
            return Err((
                "store.url",
                "is required for a redis store, e.g. \"redis://127.0.0.1:6379/0\" (or give \
                 store.cluster or store.sentinel instead)"
                    .into(),
            ))
        }
        (_, _, sentinel) => {
            return Err((
                if sentinel.is_some() {
                    "store.sentinel"
                } else {
                    "store.cluster"
                },
                "give one of store.url, store.cluster and store.sentinel".into(),
            ))
        }
    };
    let key_prefix = raw.key_prefix.as_deref().unwrap_or(DEFAULT_KEY_PREFIX);
    if key_prefix.len() > MAX_KEY_PREFIX_LEN || !key_prefix.bytes().all(|b| b.is_ascii_graphic()) {
        return Err((
            "store.key_prefix",
            "expected up to 64 printable ASCII characters without spaces, e.g. \"relayapi:\""
                .into(),
        ));
    }
    let seconds = |field: &'static str, v: Option<u64>| match v {
        None => Ok(DEFAULT_REDIS_TIMEOUT),
        Some(s @ 1..=60) => Ok(Duration::from_secs(s)),
        Some(_) => Err((field, "expected seconds from 1 to 60".to_string())),
    };
    let replica_acks =
        match (raw.replica_acks.unwrap_or(0), &target) {
            (0, _) => 0,
            (_, RedisTarget::Cluster(_)) => return Err((
                "store.replica_acks",
                "is not available with store.cluster (WAIT cannot follow a script to its slot's \
                 node); use min-replicas-to-write on the masters instead (docs/redis.md §5)"
                    .into(),
            )),
            (n @ 1..=MAX_REPLICA_ACKS, _) => n,
            _ => {
                return Err((
                    "store.replica_acks",
                    format!("expected a number of replicas from 0 to {MAX_REPLICA_ACKS}"),
                ))
            }
        };
    Ok(RedisStoreConfig {
        target,
        replica_acks,
        key_prefix: key_prefix.to_owned(),
        connect_timeout: seconds("store.connect_timeout", raw.connect_timeout)?,
        command_timeout: seconds("store.command_timeout", raw.command_timeout)?,
    })
}

/// One server's URL, checked. The message never repeats the URL: it may carry a password.
fn server_url(url: &str) -> Result<String, (&'static str, String)> {
    if !(url.starts_with("redis://") || url.starts_with("unix://")) {
        return Err((
            "store.url",
            "expected redis://[user:password@]host[:port][/db] or unix:///path/to/redis.sock \
             (TLS rediss:// is not built in)"
                .into(),
        ));
    }
    if redis::Client::open(url).is_err() {
        return Err((
            "store.url",
            "is not a valid Redis URL; expected redis://[user:password@]host[:port][/db]".into(),
        ));
    }
    Ok(url.to_owned())
}

/// The nodes of a Cluster or a Sentinel set: at least one, each `redis://host:port`. Messages say
/// which entry, never what it holds.
fn nodes_of(field: &'static str, nodes: &[String]) -> Result<Vec<String>, (&'static str, String)> {
    if nodes.is_empty() {
        return Err((field, "expected at least one \"redis://host:port\"".into()));
    }
    for (i, n) in nodes.iter().enumerate() {
        if !n.starts_with("redis://") || redis::Client::open(n.as_str()).is_err() {
            return Err((
                field,
                format!(
                    "entry {i} is not a valid node; expected \"redis://[user:password@]host:port\""
                ),
            ));
        }
    }
    Ok(nodes.to_vec())
}

/// The sqlite file, with a relative path resolved against the directory of `config_file` so the relay
/// finds the same counters whatever directory it is started from.
fn sqlite_path(path: Option<&Path>, config_file: &Path) -> PathBuf {
    let p = path.unwrap_or(Path::new(DEFAULT_SQLITE_PATH));
    if p.is_absolute() {
        return p.to_path_buf();
    }
    match config_file.parent() {
        Some(dir) => dir.join(p),
        None => p.to_path_buf(),
    }
}
