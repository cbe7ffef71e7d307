//! The shared usage store: a Redis server that every relay instance talks to, so a token's limit and
//! revocation hold across instances.
//!
//! Each operation is one Lua script, which Redis runs atomically: a reservation reads the tenant's
//! revoke-before mark, the token's own mark and its count, and increments in one step, so two relays
//! racing for the last call of a token cannot both win. Keys expire with the token (relative `EXPIRE`
//! computed from the caller's clock, so tests with an injected clock behave like production):
//!
//! - `{prefix}tok:{tenant}:{jti}`: hash `used`, `max` (empty when unlimited), `first`, `last`, `exp`,
//!   `iat`, `revoked` (`1`). Tenant ids cannot contain `:` (see `token/rai.rs`), so keys never collide.
//! - `{prefix}rb:{tenant}`: the tenant's revoke-before mark (kept: it is one key per tenant).
//!
//! One multiplexed connection is shared by all requests. Opening it is bounded by the connect timeout
//! and every command by the command timeout, so a hung server turns into `store_unavailable` instead of
//! a hung request; a connection that failed is dropped and the next operation opens a new one.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, RedisError, Script};
use tokio::sync::Mutex;

use crate::store::{
    keep_token_for, keep_unseen_revocation_for, Reservation, StoreError, TokenRef, Usage,
};

/// After a failed connection attempt, operations fail at once for this long instead of each waiting
/// out its own connect timeout while the server is down.
const RECONNECT_BACKOFF: Duration = Duration::from_millis(500);

/// KEYS: token hash, tenant mark. ARGV: iat, exp, max ("" = unlimited), now, seconds to keep.
/// Answers the new count, or -1 (exhausted) or -2 (revoked).
const RESERVE: &str = r"
local mark = redis.call('GET', KEYS[2])
if mark and tonumber(ARGV[1]) < tonumber(mark) then return -2 end
redis.call('HSET', KEYS[1], 'iat', ARGV[1], 'exp', ARGV[2], 'max', ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[5])
if redis.call('HGET', KEYS[1], 'revoked') == '1' then return -2 end
local used = tonumber(redis.call('HGET', KEYS[1], 'used') or '0')
if ARGV[3] ~= '' and used >= tonumber(ARGV[3]) then return -1 end
used = redis.call('HINCRBY', KEYS[1], 'used', 1)
redis.call('HSETNX', KEYS[1], 'first', ARGV[4])
redis.call('HSET', KEYS[1], 'last', ARGV[4])
return used
";

/// KEYS: token hash. Never creates the key, never goes below zero.
const REFUND: &str = r"
local used = tonumber(redis.call('HGET', KEYS[1], 'used') or '0')
if used > 0 then redis.call('HINCRBY', KEYS[1], 'used', -1) end
return 0
";

/// KEYS: token hash, tenant mark. Answers the hash as a flat field/value list plus `_mark` when the
/// tenant has one; empty when the token is unknown.
const USAGE: &str = r"
local h = redis.call('HGETALL', KEYS[1])
if #h == 0 then return h end
local mark = redis.call('GET', KEYS[2])
if mark then h[#h + 1] = '_mark'; h[#h + 1] = mark end
return h
";

/// KEYS: token hash, tenant mark. ARGV: seconds to keep a never-seen token's revocation. Answers like
/// USAGE.
const REVOKE: &str = r"
redis.call('HSET', KEYS[1], 'revoked', '1')
if redis.call('TTL', KEYS[1]) == -1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
local h = redis.call('HGETALL', KEYS[1])
local mark = redis.call('GET', KEYS[2])
if mark then h[#h + 1] = '_mark'; h[#h + 1] = mark end
return h
";

/// KEYS: tenant mark. ARGV: ts. Raises the mark, never lowers it; answers the mark in force.
const REVOKE_BEFORE: &str = r"
local cur = redis.call('GET', KEYS[1])
if not cur or tonumber(ARGV[1]) > tonumber(cur) then
  redis.call('SET', KEYS[1], ARGV[1])
  cur = ARGV[1]
end
return cur
";

/// Shared rate limits (`rate_limit.shared`): GCRA, the exact equivalent of a token bucket, on the
/// server's own clock so that instances with skewed clocks still agree. One scope per call, so the
/// relay can charge the client's key for every routed request and the global key only for calls whose
/// token is proven authentic (issue 9, finding 4). KEYS: the scope's key. ARGV: emission interval in
/// µs (never 0: a scope that is off is not sent), burst. Answers 0 and charges the key when allowed, or
/// the microseconds until a retry can succeed (positive), charging nothing.
const RATE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local new = tat + interval
local allow_at = new - burst * interval
if now < allow_at then return allow_at - now end
redis.call('SET', KEYS[1], string.format('%.0f', new), 'PX', math.ceil((new - now) / 1000) + 1)
return 0
";

/// One scope of the shared limiter: requests per second and burst (rate 0 = off).
#[derive(Debug, Clone, Copy)]
pub struct SharedScope {
    pub per_second: u64,
    pub burst: u64,
}

impl SharedScope {
    fn interval_micros(self) -> u64 {
        // 0 tells the script the scope is off.
        1_000_000u64
            .checked_div(self.per_second)
            .map_or(0, |i| i.max(1))
    }
}

/// Which shared scope refused a request, and how long until it would accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SharedRejection {
    Ip(Duration),
    Global(Duration),
}

/// How to reach the server (`store` in config.json).
#[derive(Debug, Clone)]
pub struct RedisOptions {
    /// `redis://[user:password@]host[:port][/db]`. Never logged: it may carry a password.
    pub url: String,
    pub key_prefix: String,
    pub connect_timeout: Duration,
    pub command_timeout: Duration,
}

pub struct RedisStore {
    client: Client,
    config: AsyncConnectionConfig,
    prefix: String,
    connect_timeout: Duration,
    command_timeout: Duration,
    unseen_revocation_secs: u64,
    conn: Mutex<Slot>,
    scripts: Scripts,
}

struct Scripts {
    reserve: Script,
    refund: Script,
    usage: Script,
    revoke: Script,
    revoke_before: Script,
    rate: Script,
}

/// The shared connection, with a generation so that a failure seen on an old connection does not
/// throw away a newer one that another request already opened.
#[derive(Default)]
struct Slot {
    conn: Option<(u64, MultiplexedConnection)>,
    generation: u64,
    failed_at: Option<Instant>,
}

impl RedisStore {
    pub(crate) fn new(opts: RedisOptions, max_token_life: u64) -> Result<RedisStore, StoreError> {
        // The parser's message may quote the URL, and with it a password: say only that it is invalid.
        let client = Client::open(opts.url.as_str())
            .map_err(|_| StoreError("the Redis URL is not valid".into()))?;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(opts.connect_timeout))
            .set_response_timeout(Some(opts.command_timeout));
        Ok(RedisStore {
            client,
            config,
            prefix: opts.key_prefix,
            connect_timeout: opts.connect_timeout,
            command_timeout: opts.command_timeout,
            unseen_revocation_secs: keep_unseen_revocation_for(max_token_life),
            conn: Mutex::new(Slot::default()),
            scripts: Scripts {
                reserve: Script::new(RESERVE),
                refund: Script::new(REFUND),
                usage: Script::new(USAGE),
                revoke: Script::new(REVOKE),
                revoke_before: Script::new(REVOKE_BEFORE),
                rate: Script::new(RATE),
            },
        })
    }

    fn token_key(&self, tenant: &str, jti: &str) -> String {
        format!("{}tok:{tenant}:{jti}", self.prefix)
    }

    fn mark_key(&self, tenant: &str) -> String {
        format!("{}rb:{tenant}", self.prefix)
    }

    async fn open(&self) -> Result<MultiplexedConnection, StoreError> {
        // The library bounds the attempt too; the outer timeout is the guarantee this file promises.
        match tokio::time::timeout(
            self.connect_timeout,
            self.client
                .get_multiplexed_async_connection_with_config(&self.config),
        )
        .await
        {
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
    async fn connection(&self) -> Result<(u64, MultiplexedConnection), StoreError> {
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

    /// Runs one script with a hard deadline; transport failures and timeouts drop the connection.
    async fn eval<T: redis::FromRedisValue>(
        &self,
        script: &Script,
        keys: &[&str],
        args: &[String],
    ) -> Result<T, StoreError> {
        let (generation, mut conn) = self.connection().await?;
        let mut inv = script.prepare_invoke();
        for k in keys {
            inv.key(*k);
        }
        for a in args {
            inv.arg(a.as_str());
        }
        let result = tokio::time::timeout(self.command_timeout, inv.invoke_async(&mut conn)).await;
        match result {
            Ok(Ok(v)) => Ok(v),
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

    pub(crate) async fn reserve(
        &self,
        t: TokenRef<'_>,
        now: u64,
    ) -> Result<Reservation, StoreError> {
        let args = [
            t.iat.to_string(),
            t.exp.to_string(),
            t.max.map(|m| m.to_string()).unwrap_or_default(),
            now.to_string(),
            keep_token_for(t.exp, now).to_string(),
        ];
        let (tok, mark) = (self.token_key(t.tenant, t.jti), self.mark_key(t.tenant));
        let answer: i64 = self
            .eval(&self.scripts.reserve, &[&tok, &mark], &args)
            .await?;
        match answer {
            -2 => Ok(Reservation::Revoked),
            -1 => Ok(Reservation::Exhausted),
            used => u64::try_from(used)
                .map(|used| Reservation::Granted { used })
                .map_err(|_| StoreError(format!("Redis: unexpected reservation answer {used}"))),
        }
    }

    /// Charge one request to a shared scope: the client's (`client` is the limiter's client key, an
    /// IPv4 address or IPv6 /64) or, with `None`, the relay-wide one. A scope with rate 0 is off.
    pub(crate) async fn rate_take(
        &self,
        client: Option<std::net::IpAddr>,
        limit: SharedScope,
    ) -> Result<Result<(), SharedRejection>, StoreError> {
        let interval = limit.interval_micros();
        if interval == 0 {
            return Ok(Ok(()));
        }
        let key = match client {
            Some(ip) => format!("{}rl:ip:{ip}", self.prefix),
            None => format!("{}rl:global", self.prefix),
        };
        let args = [interval.to_string(), limit.burst.to_string()];
        let wait: i64 = self.eval(&self.scripts.rate, &[&key], &args).await?;
        if wait <= 0 {
            return Ok(Ok(()));
        }
        let wait = Duration::from_micros(wait as u64);
        Ok(Err(match client {
            Some(_) => SharedRejection::Ip(wait),
            None => SharedRejection::Global(wait),
        }))
    }

    pub(crate) async fn refund(&self, tenant: &str, jti: &str) -> Result<(), StoreError> {
        let tok = self.token_key(tenant, jti);
        self.eval::<i64>(&self.scripts.refund, &[&tok], &[])
            .await
            .map(drop)
    }

    pub(crate) async fn usage(&self, tenant: &str, jti: &str) -> Result<Option<Usage>, StoreError> {
        let (tok, mark) = (self.token_key(tenant, jti), self.mark_key(tenant));
        let flat: Vec<String> = self.eval(&self.scripts.usage, &[&tok, &mark], &[]).await?;
        if flat.is_empty() {
            return Ok(None);
        }
        parse_usage(tenant, &flat).map(Some)
    }

    pub(crate) async fn revoke(&self, tenant: &str, jti: &str) -> Result<Usage, StoreError> {
        let (tok, mark) = (self.token_key(tenant, jti), self.mark_key(tenant));
        let args = [self.unseen_revocation_secs.to_string()];
        let flat: Vec<String> = self
            .eval(&self.scripts.revoke, &[&tok, &mark], &args)
            .await?;
        parse_usage(tenant, &flat)
    }

    pub(crate) async fn revoke_before(&self, tenant: &str, ts: u64) -> Result<u64, StoreError> {
        let mark = self.mark_key(tenant);
        let answer: String = self
            .eval(&self.scripts.revoke_before, &[&mark], &[ts.to_string()])
            .await?;
        answer
            .parse()
            .map_err(|_| StoreError(format!("Redis: unexpected mark {answer:?}")))
    }
}

/// Errors after which the connection cannot be trusted (as opposed to a script error answered by a
/// healthy server).
fn is_transport_error(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
        || e.is_unrecoverable_error()
}

/// Builds a [`Usage`] from the flat field/value list the scripts answer.
fn parse_usage(tenant: &str, flat: &[String]) -> Result<Usage, StoreError> {
    let fields: HashMap<&str, &str> = flat
        .chunks_exact(2)
        .map(|kv| (kv[0].as_str(), kv[1].as_str()))
        .collect();
    let num = |name: &str| -> Result<Option<u64>, StoreError> {
        match fields.get(name) {
            None | Some(&"") => Ok(None),
            Some(v) => v
                .parse()
                .map(Some)
                .map_err(|_| StoreError(format!("Redis: field {name} holds {v:?}"))),
        }
    };
    let issued_at = num("iat")?;
    let before_mark = match (issued_at, num("_mark")?) {
        (Some(iat), Some(mark)) => iat < mark,
        _ => false,
    };
    Ok(Usage {
        tenant: tenant.to_string(),
        calls_used: num("used")?.unwrap_or(0),
        max_calls: num("max")?,
        first_used_at: num("first")?,
        last_used_at: num("last")?,
        expires_at: num("exp")?,
        issued_at,
        revoked: fields.get("revoked") == Some(&"1") || before_mark,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_from_a_flat_reply() {
        let flat: Vec<String> = [
            "used", "3", "max", "", "iat", "100", "exp", "900", "first", "110", "last", "120",
            "_mark", "101",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let u = parse_usage("acme", &flat).unwrap();
        assert_eq!(
            u,
            Usage {
                tenant: "acme".into(),
                calls_used: 3,
                max_calls: None,
                first_used_at: Some(110),
                last_used_at: Some(120),
                expires_at: Some(900),
                issued_at: Some(100),
                revoked: true,
            }
        );
        let bad = ["used".to_string(), "x".to_string()];
        assert!(parse_usage("acme", &bad).is_err());
    }
}
