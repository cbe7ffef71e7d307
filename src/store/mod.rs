//! Usage state: how many calls each token has reserved, when it was first and last used, and what has
//! been revoked. The relay reserves a call atomically *before* forwarding, so a limit of N calls lets
//! exactly N through however many requests race. This file owns the operations, their contract and the
//! in-memory backend; the persistent backend lives in `store/sqlite/` and the shared one in
//! `store/redis/`. All three pass one conformance suite (`tests/store_conformance.rs`).
//!
//! Every record is keyed by (tenant, token id): token ids are chosen by minters, so one tenant must
//! never be able to touch another tenant's counters by reusing an id. Backends never fail open: when
//! one cannot answer, the caller gets a [`StoreError`] and the relay refuses the call.

pub mod redis;
pub mod spend;
pub mod sqlite;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

use crate::store::redis::RedisStore;
pub use crate::store::redis::{MasterAuth, RedisOptions, RedisTarget};
/// The vocabulary of the shared (cross-instance) rate limit, for callers of `Store::shared_rate_take`.
pub use crate::store::redis::{SharedRejection, SharedScope};
use crate::store::spend::MemorySpend;
pub use crate::store::spend::{Spend, SpendLimit, SpendLine, SpendReservation};
use crate::store::sqlite::SqliteStore;

/// Seconds a token's usage is kept after its `exp`. It must exceed the clock skew the relay tolerates
/// after `exp` (`token.clock_skew`, at most 3600): forgetting a token that can still be accepted would
/// hand it a fresh counter. The rest of the day keeps usage readable by the admin API after expiry.
pub const RETAIN_AFTER_EXPIRY: u64 = 24 * 3600;

/// Largest time the store accepts from callers, as in the token format (2^53 - 1): every backend can
/// hold it exactly (SQLite integers, Redis Lua numbers).
pub const MAX_TIME: u64 = (1 << 53) - 1;

/// Longest a record is kept, in seconds (about 136 years). Caps expiry arithmetic so that a huge
/// `token.max_lifetime` cannot overflow a backend's expiry field.
const MAX_RETENTION: u64 = 1 << 32;

/// What the relay knows about one token's use.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Usage {
    pub tenant: String,
    pub calls_used: u64,
    pub max_calls: Option<u64>,
    pub first_used_at: Option<u64>,
    pub last_used_at: Option<u64>,
    pub expires_at: Option<u64>,
    pub issued_at: Option<u64>,
    /// Revoked by id, or issued before the tenant's revoke-before mark.
    pub revoked: bool,
}

/// The token facts a reservation needs (all from authenticated claims).
#[derive(Debug, Clone, Copy)]
pub struct TokenRef<'a> {
    pub jti: &'a str,
    pub tenant: &'a str,
    pub iat: u64,
    pub exp: u64,
    pub max: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reservation {
    /// The call may go ahead; `used` counts it.
    Granted {
        used: u64,
    },
    Exhausted,
    Revoked,
}

/// The backend could not answer (unreachable, timed out, disk error). The relay answers 503
/// `store_unavailable` and forwards nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreError(pub String);

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "usage store: {}", self.0)
    }
}

impl std::error::Error for StoreError {}

/// When a record may be forgotten, as seconds after `now`: a token's record outlives the token by
/// [`RETAIN_AFTER_EXPIRY`].
pub fn keep_token_for(exp: u64, now: u64) -> u64 {
    exp.saturating_add(RETAIN_AFTER_EXPIRY)
        .saturating_sub(now)
        .clamp(1, MAX_RETENTION)
}

/// How long to keep the revocation of a token the store has never seen, and therefore whose `exp` it
/// does not know: as long as any token could still be accepted (`max_token_life`), plus the margin.
pub(crate) fn keep_unseen_revocation_for(max_token_life: u64) -> u64 {
    max_token_life
        .saturating_add(RETAIN_AFTER_EXPIRY)
        .min(MAX_RETENTION)
}

/// The backend in force. An enum rather than a trait object keeps the hot path free of boxing.
/// The Redis arms box their futures: a Redis call's future (a script through a cluster client) is
/// several KiB, and an enum's `async fn` holds the largest arm inline, so every connection's future
/// would carry it whatever the store (one allocation per Redis round trip costs nothing beside it).
// One `Store` lives per process, behind the shared `App`: the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
pub enum Store {
    Memory(MemoryStore),
    Sqlite(SqliteStore),
    Redis(RedisStore),
}

impl Store {
    /// Counters in this process only, lost on restart: tests and development.
    pub fn memory() -> Store {
        Store::Memory(MemoryStore::default())
    }

    /// The persistent default: a SQLite database at `path` (created when missing), written by one
    /// dedicated thread. `max_token_life` is the longest a token can still be accepted after it is
    /// issued, in seconds (`token.max_lifetime` plus twice `token.clock_skew`); it bounds how long the
    /// revocation of a never-seen token is kept. Errors name the file and what went wrong.
    pub fn open_sqlite(path: &Path, max_token_life: u64) -> Result<Store, StoreError> {
        SqliteStore::open(path, max_token_life).map(Store::Sqlite)
    }

    /// A Redis server shared by every relay instance. Does not connect: the first operation does, and
    /// a lost connection is re-opened by a later one. Use [`Store::check`] to fail fast at start-up.
    /// `max_token_life` as for [`Store::open_sqlite`].
    pub fn open_redis(opts: RedisOptions, max_token_life: u64) -> Result<Store, StoreError> {
        RedisStore::new(opts, max_token_life).map(Store::Redis)
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Store::Memory(_) => "memory",
            Store::Sqlite(_) => "sqlite",
            Store::Redis(_) => "redis",
        }
    }

    /// Proves the backend answers (Redis: a fresh connection and `PING`), without keeping anything
    /// tied to the calling runtime. The in-process backends always answer.
    pub async fn check(&self) -> Result<(), StoreError> {
        match self {
            Store::Memory(_) => Ok(()),
            Store::Sqlite(s) => s.check().await,
            Store::Redis(r) => Box::pin(r.check()).await,
        }
    }

    /// Atomically check revocation (the token's own mark and its tenant's revoke-before mark) and the
    /// call limit, and count the call if allowed. A token issued before its tenant's mark is refused
    /// without being recorded. On `Err` the call may or may not have been counted (a Redis reply lost
    /// to a timeout): the caller must not forward it, so the error only ever over-counts.
    pub async fn reserve(&self, t: TokenRef<'_>, now: u64) -> Result<Reservation, StoreError> {
        match self {
            Store::Memory(m) => Ok(m.reserve(t, now)),
            Store::Sqlite(s) => s.reserve(t, now).await,
            Store::Redis(r) => Box::pin(r.reserve(t, now)).await,
        }
    }

    /// Charge one request to a shared rate-limit scope (`rate_limit.shared`): the client key's, or
    /// with `None` the relay-wide one. Only Redis can share them.
    pub async fn shared_rate_take(
        &self,
        client: Option<std::net::IpAddr>,
        limit: crate::store::redis::SharedScope,
    ) -> Result<Result<(), crate::store::redis::SharedRejection>, StoreError> {
        match self {
            Store::Redis(r) => Box::pin(r.rate_take(client, limit)).await,
            _ => Err(StoreError("shared rate limits need the Redis store".into())),
        }
    }

    /// Give back a reservation for a call that provably never left the relay. Never goes below zero;
    /// a token the store does not know is left unknown.
    pub async fn refund(&self, tenant: &str, jti: &str) -> Result<(), StoreError> {
        match self {
            Store::Memory(m) => {
                m.refund(tenant, jti);
                Ok(())
            }
            Store::Sqlite(s) => s.refund(tenant, jti).await,
            Store::Redis(r) => Box::pin(r.refund(tenant, jti)).await,
        }
    }

    /// What the store knows about a token: `None` when it never reserved a call for it nor revoked it
    /// (or forgot it after expiry). `revoked` includes the tenant's revoke-before mark.
    pub async fn usage(&self, tenant: &str, jti: &str) -> Result<Option<Usage>, StoreError> {
        match self {
            Store::Memory(m) => Ok(m.usage(tenant, jti)),
            Store::Sqlite(s) => s.usage(tenant, jti).await,
            Store::Redis(r) => Box::pin(r.usage(tenant, jti)).await,
        }
    }

    /// Revoke one token, seen or not (idempotent). Answers its usage, with `revoked: true`.
    pub async fn revoke(&self, tenant: &str, jti: &str) -> Result<Usage, StoreError> {
        match self {
            Store::Memory(m) => Ok(m.revoke(tenant, jti)),
            Store::Sqlite(s) => s.revoke(tenant, jti).await,
            Store::Redis(r) => Box::pin(r.revoke(tenant, jti)).await,
        }
    }

    /// Reserve `amount` on every line of `lines` (all of the tenant's), all or nothing: granted only if
    /// every line's used amount plus `amount` stays within its limits; otherwise nothing changes and the
    /// answer holds each line's used amount. On `Err` the reservation may or may not have been made:
    /// the caller must not forward the call (the error only ever over-charges).
    pub async fn spend_reserve(
        &self,
        tenant: &str,
        lines: &[SpendLine],
        amount: &Spend,
        now: u64,
    ) -> Result<SpendReservation, StoreError> {
        match self {
            Store::Memory(m) => Ok(m.spend.reserve(tenant, lines, amount, now)),
            Store::Sqlite(s) => s.spend_reserve(tenant, lines, amount, now).await,
            // Redis forgets a line on its own clock, at the line's `keep_until`.
            Store::Redis(r) => Box::pin(r.spend_reserve(tenant, lines, amount)).await,
        }
    }

    /// Replace a reservation by what the call used: every line gets `actual - reserved` added (each
    /// member floored at zero). With `reserved` zero this records usage that was never reserved (a
    /// token without a budget). Lines missing from the store are created.
    pub async fn spend_settle(
        &self,
        tenant: &str,
        lines: &[SpendLine],
        reserved: &Spend,
        actual: &Spend,
    ) -> Result<(), StoreError> {
        match self {
            Store::Memory(m) => {
                m.spend.settle(tenant, lines, reserved, actual);
                Ok(())
            }
            Store::Sqlite(s) => s.spend_settle(tenant, lines, reserved, actual).await,
            Store::Redis(r) => Box::pin(r.spend_settle(tenant, lines, reserved, actual)).await,
        }
    }

    /// What each line of `keys` has used (reservations in flight included); zero for a line the
    /// store does not hold.
    pub async fn spend_get(&self, tenant: &str, keys: &[&str]) -> Result<Vec<Spend>, StoreError> {
        match self {
            Store::Memory(m) => Ok(m.spend.get(tenant, keys)),
            Store::Sqlite(s) => s.spend_get(tenant, keys).await,
            Store::Redis(r) => Box::pin(r.spend_get(tenant, keys)).await,
        }
    }

    /// Revoke every token of `tenant` issued strictly before `ts` (monotonic: never lowers the mark).
    /// Answers the mark in force. `ts` is capped at [`MAX_TIME`], above any valid `iat`.
    pub async fn revoke_before(&self, tenant: &str, ts: u64) -> Result<u64, StoreError> {
        let ts = ts.min(MAX_TIME);
        match self {
            Store::Memory(m) => Ok(m.revoke_before(tenant, ts)),
            Store::Sqlite(s) => s.revoke_before(tenant, ts).await,
            Store::Redis(r) => Box::pin(r.revoke_before(tenant, ts)).await,
        }
    }
}

#[derive(Default)]
pub struct MemoryStore {
    inner: Mutex<MemoryInner>,
    spend: MemorySpend,
}

#[derive(Default)]
struct MemoryInner {
    /// By tenant and token id, from authenticated claims only: foldhash, not SipHash (the lookup is on
    /// every call).
    tokens: HashMap<(String, String), Usage, foldhash::fast::RandomState>,
    revoked_before: HashMap<String, u64>,
}

impl MemoryInner {
    /// Drop entries whose token expired long ago; a revoked or exhausted expired token is refused for
    /// being expired anyway, so forgetting it is safe.
    fn sweep(&mut self, now: u64) {
        if self.tokens.len() > 10_000 {
            self.tokens.retain(|_, u| {
                u.expires_at
                    .is_none_or(|e| e.saturating_add(RETAIN_AFTER_EXPIRY) > now)
            });
        }
    }
}

impl MemoryStore {
    fn reserve(&self, t: TokenRef<'_>, now: u64) -> Reservation {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if g.revoked_before.get(t.tenant).is_some_and(|&b| t.iat < b) {
            return Reservation::Revoked;
        }
        let key = (t.tenant.to_string(), t.jti.to_string());
        if !g.tokens.contains_key(&key) {
            g.sweep(now);
        }
        let u = g.tokens.entry(key).or_insert_with(|| Usage {
            tenant: t.tenant.to_string(),
            ..Usage::default()
        });
        u.max_calls = t.max;
        u.expires_at = Some(t.exp);
        u.issued_at = Some(t.iat);
        if u.revoked {
            return Reservation::Revoked;
        }
        if t.max.is_some_and(|m| u.calls_used >= m) {
            return Reservation::Exhausted;
        }
        u.calls_used += 1;
        u.first_used_at.get_or_insert(now);
        u.last_used_at = Some(now);
        Reservation::Granted { used: u.calls_used }
    }

    fn refund(&self, tenant: &str, jti: &str) {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(u) = g.tokens.get_mut(&(tenant.to_string(), jti.to_string())) {
            u.calls_used = u.calls_used.saturating_sub(1);
        }
    }

    fn usage(&self, tenant: &str, jti: &str) -> Option<Usage> {
        let g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let mut u = g
            .tokens
            .get(&(tenant.to_string(), jti.to_string()))
            .cloned()?;
        // A token issued before its tenant's revocation mark is revoked even if never marked itself.
        if let (Some(iat), Some(&mark)) = (u.issued_at, g.revoked_before.get(&u.tenant)) {
            u.revoked |= iat < mark;
        }
        Some(u)
    }

    fn revoke(&self, tenant: &str, jti: &str) -> Usage {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let u = g
            .tokens
            .entry((tenant.to_string(), jti.to_string()))
            .or_insert_with(|| Usage {
                tenant: tenant.to_string(),
                ..Usage::default()
            });
        u.revoked = true;
        u.clone()
    }

    fn revoke_before(&self, tenant: &str, ts: u64) -> u64 {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let mark = g.revoked_before.entry(tenant.to_string()).or_insert(0);
        *mark = (*mark).max(ts);
        *mark
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every connection's future holds the store call it awaits inline, sized by the largest backend:
    /// a Redis script call through the cluster client is several KiB, which is why the Redis arms are
    /// boxed. This keeps a backend from quietly inflating every open connection again.
    #[test]
    fn store_futures_stay_small_whatever_the_backend() {
        let store = Store::memory();
        let t = TokenRef {
            jti: "j",
            tenant: "t",
            iat: 0,
            exp: 1,
            max: None,
        };
        let lines: [SpendLine; 0] = [];
        let none = Spend::default();
        let sizes = [
            std::mem::size_of_val(&store.reserve(t, 0)),
            std::mem::size_of_val(&store.refund("t", "j")),
            std::mem::size_of_val(&store.usage("t", "j")),
            std::mem::size_of_val(&store.revoke("t", "j")),
            std::mem::size_of_val(&store.spend_reserve("t", &lines, &none, 0)),
            std::mem::size_of_val(&store.spend_settle("t", &lines, &none, &none)),
            std::mem::size_of_val(&store.spend_get("t", &[])),
        ];
        for size in sizes {
            assert!(size <= 2048, "a store future of {size} bytes: {sizes:?}");
        }
    }

    #[test]
    fn retention_outlives_the_token_and_is_bounded() {
        assert_eq!(keep_token_for(1_000, 400), 600 + RETAIN_AFTER_EXPIRY);
        assert_eq!(
            keep_token_for(1_000, 1_000 + 2 * RETAIN_AFTER_EXPIRY),
            1,
            "never zero: an expiry of 0 would delete a record being written"
        );
        assert_eq!(keep_token_for(u64::MAX, 0), MAX_RETENTION);
        assert_eq!(
            keep_unseen_revocation_for(3_600),
            3_600 + RETAIN_AFTER_EXPIRY
        );
        assert_eq!(keep_unseen_revocation_for(u64::MAX), MAX_RETENTION);
    }

    #[test]
    fn retention_exceeds_the_largest_clock_skew() {
        // config.rs caps token.clock_skew at 3600 s; a token accepted that long after exp must still
        // find its counter.
        const _: () = assert!(RETAIN_AFTER_EXPIRY > 3_600);
    }
}
