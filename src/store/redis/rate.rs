//! Shared rate limits (`rate_limit.shared`) on Redis: one GCRA script, on the server's clock.

use std::time::Duration;

use crate::store::redis::RedisStore;
use crate::store::StoreError;

/// Shared rate limits (`rate_limit.shared`): GCRA, the exact equivalent of a token bucket, on the
/// server's own clock so that instances with skewed clocks still agree. One scope per call, so the
/// relay can charge the client's key for every routed request and the global key only for calls whose
/// token is proven authentic (issue 9, finding 4). KEYS: the scope's key. ARGV: emission interval in
/// µs (never 0: a scope that is off is not sent), burst. Answers 0 and charges the key when allowed, or
/// the microseconds until a retry can succeed (positive), charging nothing. Run once per operation, so
/// a retried request is charged once.
pub(super) const RATE: &str = r"
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

impl RedisStore {
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
        let key = self.rate_key(client);
        let args = [interval.to_string(), limit.burst.to_string()];
        let wait: i64 = self
            .eval_once(&self.scripts.rate, &[&key], &key, &args)
            .await?;
        if wait <= 0 {
            return Ok(Ok(()));
        }
        let wait = Duration::from_micros(wait as u64);
        Ok(Err(match client {
            Some(_) => SharedRejection::Ip(wait),
            None => SharedRejection::Global(wait),
        }))
    }
}
