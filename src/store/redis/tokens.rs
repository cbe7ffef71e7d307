//! The token operations on Redis (call reservation, refund, usage, revocation), one Lua script each.
//!
//! A token's hash and its tenant's revoke-before mark live in different slots (a tenant-wide slot
//! would make a large tenant one hot node), so no script touches both: the mark is read first and
//! passed to the reservation. A `revoke_before` acknowledged before a reservation starts is always
//! honoured; one racing a reservation already past its mark read may let that one call through,
//! exactly as if the call had been reserved a moment before the mark was raised (`docs/redis.md`).

use std::collections::HashMap;

use crate::store::redis::RedisStore;
use crate::store::{keep_token_for, Reservation, StoreError, TokenRef, Usage};

/// KEYS: token hash. ARGV: iat, exp, max ("" = unlimited), now, seconds to keep, the tenant's mark
/// ("" = none). Answers the new count, or -1 (exhausted) or -2 (revoked). Run once per operation.
pub(super) const RESERVE: &str = r"
if ARGV[6] ~= '' and tonumber(ARGV[1]) < tonumber(ARGV[6]) then return -2 end
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

/// KEYS: token hash. Never creates the key, never goes below zero. Run once per operation.
pub(super) const REFUND: &str = r"
local used = tonumber(redis.call('HGET', KEYS[1], 'used') or '0')
if used > 0 then redis.call('HINCRBY', KEYS[1], 'used', -1) end
return 0
";

/// KEYS: token hash. Answers the hash as a flat field/value list; empty when the token is unknown.
pub(super) const USAGE: &str = r"
return redis.call('HGETALL', KEYS[1])
";

/// KEYS: token hash. ARGV: seconds to keep a never-seen token's revocation. Answers like USAGE.
/// Idempotent by nature.
pub(super) const REVOKE: &str = r"
redis.call('HSET', KEYS[1], 'revoked', '1')
if redis.call('TTL', KEYS[1]) == -1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return redis.call('HGETALL', KEYS[1])
";

/// KEYS: tenant mark. ARGV: ts. Raises the mark, never lowers it; answers the mark in force.
pub(super) const REVOKE_BEFORE: &str = r"
local cur = redis.call('GET', KEYS[1])
if not cur or tonumber(ARGV[1]) > tonumber(cur) then
  redis.call('SET', KEYS[1], ARGV[1])
  cur = ARGV[1]
end
return cur
";

impl RedisStore {
    /// The tenant's revoke-before mark, if any.
    async fn mark(&self, tenant: &str) -> Result<Option<String>, StoreError> {
        let key = self.mark_key(tenant);
        self.get(&key).await
    }

    pub(crate) async fn reserve(
        &self,
        t: TokenRef<'_>,
        now: u64,
    ) -> Result<Reservation, StoreError> {
        let mark = self.mark(t.tenant).await?;
        let args = [
            t.iat.to_string(),
            t.exp.to_string(),
            t.max.map(|m| m.to_string()).unwrap_or_default(),
            now.to_string(),
            keep_token_for(t.exp, now).to_string(),
            mark.unwrap_or_default(),
        ];
        let tok = self.token_key(t.tenant, t.jti);
        let answer: i64 = self
            .eval_once(&self.scripts.reserve, &[&tok], &tok, &args)
            .await?;
        match answer {
            -2 => Ok(Reservation::Revoked),
            -1 => Ok(Reservation::Exhausted),
            used => u64::try_from(used)
                .map(|used| Reservation::Granted { used })
                .map_err(|_| StoreError(format!("Redis: unexpected reservation answer {used}"))),
        }
    }

    pub(crate) async fn refund(&self, tenant: &str, jti: &str) -> Result<(), StoreError> {
        let tok = self.token_key(tenant, jti);
        self.eval_once::<i64>(&self.scripts.refund, &[&tok], &tok, &[])
            .await
            .map(drop)
    }

    pub(crate) async fn usage(&self, tenant: &str, jti: &str) -> Result<Option<Usage>, StoreError> {
        let tok = self.token_key(tenant, jti);
        let keys = [tok.as_str()];
        let (flat, mark) = tokio::join!(
            self.eval::<Vec<String>>(&self.scripts.usage, &keys, &[]),
            self.mark(tenant)
        );
        let flat = flat?;
        if flat.is_empty() {
            return Ok(None);
        }
        parse_usage(tenant, &with_mark(flat, mark?)).map(Some)
    }

    pub(crate) async fn revoke(&self, tenant: &str, jti: &str) -> Result<Usage, StoreError> {
        let tok = self.token_key(tenant, jti);
        let keys = [tok.as_str()];
        let args = [self.unseen_revocation_secs.to_string()];
        let (flat, mark) = tokio::join!(
            self.eval_write::<Vec<String>>(&self.scripts.revoke, &keys, &args),
            self.mark(tenant)
        );
        parse_usage(tenant, &with_mark(flat?, mark?))
    }

    pub(crate) async fn revoke_before(&self, tenant: &str, ts: u64) -> Result<u64, StoreError> {
        let mark = self.mark_key(tenant);
        let answer: String = self
            .eval_write(&self.scripts.revoke_before, &[&mark], &[ts.to_string()])
            .await?;
        answer
            .parse()
            .map_err(|_| StoreError(format!("Redis: unexpected mark {answer:?}")))
    }
}

/// The token's fields followed by the tenant's mark as `_mark`, when there is one.
fn with_mark(mut flat: Vec<String>, mark: Option<String>) -> Vec<String> {
    if let Some(m) = mark {
        flat.extend(["_mark".to_string(), m]);
    }
    flat
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
