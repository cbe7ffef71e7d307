//! The shared usage store: a Redis server that every relay instance talks to, so a token's limit and
//! revocation hold across instances.
//!
//! Each operation is one Lua script on keys of one hash slot (`keys.rs` holds the layout,
//! `docs/redis.md` the reasoning), which Redis runs atomically: a reservation checks the token's own
//! mark and its count and increments in one step, so two relays racing for the last call of a token
//! cannot both win. Keys expire with the token (relative `EXPIRE` computed from the caller's clock, so
//! tests with an injected clock behave like production); a spend line expires at its `keep_until`
//! (`EXPIREAT`, the one absolute expiry: a line's `keep_until` is a calendar time).
//!
//! Files: this one holds the connection and the script runner; `keys.rs` the key names and the
//! run-once wrapper; `tokens.rs` the token operations, `rate.rs` the shared rate limit, `spend.rs` the
//! spend lines.
//!
//! One connection (`conn.rs`: to one server, to the master a Sentinel set names, or to a Cluster) is
//! shared by all requests. Opening it is bounded by the connect timeout
//! and every command by the command timeout, so a hung server turns into `store_unavailable` instead of
//! a hung request; a connection that failed is dropped and the next operation opens a new one.

mod conn;
mod keys;
mod rate;
mod spend;
mod tokens;

use std::time::{Duration, Instant};

use redis::{AsyncConnectionConfig, ErrorKind, RedisError, Script, ServerErrorKind};
use tokio::sync::Mutex;

use crate::store::redis::conn::{Conn, Connector};
pub use crate::store::redis::conn::{MasterAuth, RedisTarget};
pub use crate::store::redis::rate::{SharedRejection, SharedScope};
use crate::store::{keep_unseen_revocation_for, StoreError};

/// After a failed connection attempt, operations fail at once for this long instead of each waiting
/// out its own connect timeout while the server is down.
const RECONNECT_BACKOFF: Duration = Duration::from_millis(500);

/// An idempotency record lives this many command timeouts (plus the margin below): more than the
/// attempts the client library makes for one command.
const IDEM_TTL_TIMEOUTS: u64 = 4;
/// Seconds added to an idempotency record's life for clock drift between the relay and Redis.
const IDEM_TTL_MARGIN_SECS: u64 = 10;

/// How to reach the server (`store` in config.json).
#[derive(Debug, Clone)]
pub struct RedisOptions {
    /// One server, a Cluster or a Sentinel set. Never logged: it may carry a password.
    pub target: RedisTarget,
    pub key_prefix: String,
    pub connect_timeout: Duration,
    pub command_timeout: Duration,
    /// Replicas that must acknowledge each write before it is answered (`WAIT`); 0 answers at once.
    /// Not with a Cluster.
    pub replica_acks: u32,
}

/// One round trip to Redis.
enum Op<'a> {
    /// EVALSHA (loading the script first when the server does not know it).
    Script(&'a Script, &'a [&'a str], &'a [String]),
    Get(&'a str),
}

pub struct RedisStore {
    connector: Connector,
    config: AsyncConnectionConfig,
    pub(super) prefix: String,
    connect_timeout: Duration,
    command_timeout: Duration,
    replica_acks: u32,
    pub(super) unseen_revocation_secs: u64,
    conn: Mutex<Slot>,
    pub(super) scripts: Scripts,
    /// Ids of counting operations, for their idempotency records (`keys.rs`).
    ids: keys::OpIds,
}

pub(super) struct Scripts {
    pub(super) reserve: Script,
    pub(super) refund: Script,
    pub(super) usage: Script,
    pub(super) revoke: Script,
    pub(super) revoke_before: Script,
    pub(super) rate: Script,
    pub(super) spend_reserve: Script,
    pub(super) spend_settle: Script,
    pub(super) spend_get: Script,
}

/// The shared connection, with a generation so that a failure seen on an old connection does not
/// throw away a newer one that another request already opened.
#[derive(Default)]
struct Slot {
    conn: Option<(u64, Conn)>,
    generation: u64,
    failed_at: Option<Instant>,
}

impl RedisStore {
    pub(crate) fn new(opts: RedisOptions, max_token_life: u64) -> Result<RedisStore, StoreError> {
        if opts.replica_acks > 0 && matches!(opts.target, RedisTarget::Cluster(_)) {
            return Err(StoreError(
                "replica acknowledgements (WAIT) are not available on a Redis Cluster".into(),
            ));
        }
        // The parser's message may quote the URL, and with it a password: say only that it is invalid.
        let connector = Connector::new(&opts.target, opts.connect_timeout, opts.command_timeout)?;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(opts.connect_timeout))
            .set_response_timeout(Some(opts.command_timeout));
        let [spend_reserve, spend_settle, spend_get] = spend::scripts();
        Ok(RedisStore {
            connector,
            config,
            prefix: opts.key_prefix,
            connect_timeout: opts.connect_timeout,
            command_timeout: opts.command_timeout,
            replica_acks: opts.replica_acks,
            unseen_revocation_secs: keep_unseen_revocation_for(max_token_life),
            conn: Mutex::new(Slot::default()),
            ids: keys::OpIds::new(),
            scripts: Scripts {
                reserve: Script::new(&keys::once(tokens::RESERVE)),
                refund: Script::new(&keys::once(tokens::REFUND)),
                usage: Script::new(tokens::USAGE),
                revoke: Script::new(tokens::REVOKE),
                revoke_before: Script::new(tokens::REVOKE_BEFORE),
                rate: Script::new(&keys::once(rate::RATE)),
                spend_reserve: Script::new(&spend_reserve),
                spend_settle: Script::new(&spend_settle),
                spend_get: Script::new(&spend_get),
            },
        })
    }

    async fn open(&self) -> Result<Conn, StoreError> {
        // The library bounds the attempt too; the outer timeout is the guarantee this file promises.
        match tokio::time::timeout(self.connect_timeout, self.connector.open(&self.config)).await {
            Ok(Ok(c)) => Ok(c),
            Ok(Err(e)) => Err(StoreError(format!("cannot connect to Redis: {e}"))),
            Err(_) => Err(StoreError(format!(
                "cannot connect to Redis within {} s",
                self.connect_timeout.as_secs_f32()
            ))),
        }
    }

    /// The shared connection, opened if needed. Concurrent callers wait for one attempt rather than
    /// each opening their own.
    async fn connection(&self) -> Result<(u64, Conn), StoreError> {
        let mut slot = self.conn.lock().await;
        if let Some((generation, c)) = &slot.conn {
            return Ok((*generation, c.clone()));
        }
        if slot
            .failed_at
            .is_some_and(|t| t.elapsed() < RECONNECT_BACKOFF)
        {
            return Err(StoreError("Redis is unreachable (retrying shortly)".into()));
        }
        match self.open().await {
            Ok(c) => {
                slot.generation += 1;
                slot.failed_at = None;
                slot.conn = Some((slot.generation, c.clone()));
                Ok((slot.generation, c))
            }
            Err(e) => {
                slot.failed_at = Some(Instant::now());
                Err(e)
            }
        }
    }

    /// Forgets connection `generation` after a transport failure, so the next operation reconnects.
    async fn discard(&self, generation: u64) {
        let mut slot = self.conn.lock().await;
        if slot.conn.as_ref().is_some_and(|(g, _)| *g == generation) {
            slot.conn = None;
        }
    }

    /// Runs a counting script (wrapped by [`keys::once`]) as one operation: its idempotency record
    /// lives in the slot of `slot_key` (every key of `keys` shares that slot) and outlasts any retry
    /// of the operation, so a reply lost and the script sent again counts once.
    pub(super) async fn eval_once<T: redis::FromRedisValue>(
        &self,
        script: &Script,
        keys: &[&str],
        slot_key: &str,
        args: &[String],
    ) -> Result<T, StoreError> {
        let record = Self::idem_key(slot_key, &self.ids.next());
        let mut keys = keys.to_vec();
        keys.push(&record);
        let mut args = args.to_vec();
        args.push(self.idem_ttl_secs().to_string());
        self.run(Op::Script(script, &keys, &args), true).await
    }

    /// Runs a script that writes, acknowledged by `replica_acks` replicas when set.
    pub(super) async fn eval_write<T: redis::FromRedisValue>(
        &self,
        script: &Script,
        keys: &[&str],
        args: &[String],
    ) -> Result<T, StoreError> {
        self.run(Op::Script(script, keys, args), true).await
    }

    /// Reads one string key. A plain `GET`, not a script: Redis runs it for a fraction of a script
    /// call's cost (`bench/README.md`, "Past one Redis").
    pub(super) async fn get(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.run(Op::Get(key), false).await
    }

    /// Runs a script that only reads.
    pub(super) async fn eval<T: redis::FromRedisValue>(
        &self,
        script: &Script,
        keys: &[&str],
        args: &[String],
    ) -> Result<T, StoreError> {
        self.run(Op::Script(script, keys, args), false).await
    }

    /// How long an idempotency record is kept: longer than the client library can go on retrying
    /// one command (each attempt bounded by the command timeout), with a margin.
    fn idem_ttl_secs(&self) -> u64 {
        self.command_timeout
            .as_secs()
            .saturating_mul(IDEM_TTL_TIMEOUTS)
            .saturating_add(IDEM_TTL_MARGIN_SECS)
    }

    /// Runs one operation with a hard deadline; transport failures and timeouts drop the connection.
    /// A write then waits for `replica_acks` replicas (on the same connection: `WAIT` counts this
    /// client's writes); too few acknowledgements fail the operation, which was counted (an error
    /// only ever over-counts) but might not survive a failover.
    async fn run<T: redis::FromRedisValue>(
        &self,
        op: Op<'_>,
        write: bool,
    ) -> Result<T, StoreError> {
        let (generation, mut conn) = self.connection().await?;
        let acks = if write { self.replica_acks } else { 0 };
        // Half the command timeout for the replicas, so the deadline below rarely has to cut in.
        let wait_ms = (self.command_timeout / 2).as_millis().max(1) as u64;
        let work = async {
            let v: T = match op {
                Op::Script(script, keys, args) => {
                    let mut inv = script.prepare_invoke();
                    for k in keys {
                        inv.key(*k);
                    }
                    for a in args {
                        inv.arg(a.as_str());
                    }
                    inv.invoke_async(&mut conn).await?
                }
                Op::Get(key) => redis::cmd("GET").arg(key).query_async(&mut conn).await?,
            };
            if acks == 0 {
                return Ok(Ok(v));
            }
            let got: u32 = redis::cmd("WAIT")
                .arg(acks)
                .arg(wait_ms)
                .query_async(&mut conn)
                .await?;
            Ok(if got >= acks {
                Ok(v)
            } else {
                Err(StoreError(format!(
                    "Redis: {got} of {acks} replicas acknowledged the write within {wait_ms} ms"
                )))
            })
        };
        let result: Result<redis::RedisResult<Result<T, StoreError>>, _> =
            tokio::time::timeout(self.command_timeout, work).await;
        match result {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => {
                if is_transport_error(&e) {
                    self.discard(generation).await;
                }
                Err(StoreError(format!("Redis: {e}")))
            }
            Err(_) => {
                self.discard(generation).await;
                Err(StoreError(format!(
                    "Redis did not answer within {} s",
                    self.command_timeout.as_secs_f32()
                )))
            }
        }
    }

    pub(crate) async fn check(&self) -> Result<(), StoreError> {
        let mut conn = self.open().await?;
        let ping = redis::cmd("PING");
        match tokio::time::timeout(self.command_timeout, ping.query_async::<String>(&mut conn))
            .await
        {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(StoreError(format!("Redis: {e}"))),
            Err(_) => Err(StoreError(format!(
                "Redis did not answer PING within {} s",
                self.command_timeout.as_secs_f32()
            ))),
        }
    }
}

/// Errors after which the connection cannot be trusted (as opposed to a script error answered by a
/// healthy server). A `READONLY` answer means the server was demoted to a replica by a failover: the
/// next connection asks the Sentinels for the new master.
fn is_transport_error(e: &RedisError) -> bool {
    e.kind() == ErrorKind::Server(ServerErrorKind::ReadOnly)
        || e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
        || e.is_unrecoverable_error()
}
