//! Usage state: how many calls each token has reserved, when it was first and last used, and what has
//! been revoked. The relay reserves a call atomically *before* forwarding, so a limit of N calls lets
//! exactly N through however many requests race. This file owns the operations and the in-memory
//! backend; persistent and shared backends plug in behind the same `Store` type.

use std::collections::HashMap;
use std::sync::Mutex;

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

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreError(pub String);

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "usage store: {}", self.0)
    }
}

/// The backend in force. An enum rather than a trait object keeps the hot path free of boxing.
pub enum Store {
    Memory(MemoryStore),
}

impl Store {
    pub fn memory() -> Store {
        Store::Memory(MemoryStore::default())
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Store::Memory(_) => "memory",
        }
    }

    /// Atomically check revocation and the call limit, and count the call if allowed.
    pub async fn reserve(&self, t: TokenRef<'_>, now: u64) -> Result<Reservation, StoreError> {
        match self {
            Store::Memory(m) => Ok(m.reserve(t, now)),
        }
    }

    /// Give back a reservation for a call that provably never left the relay.
    pub async fn refund(&self, tenant: &str, jti: &str) -> Result<(), StoreError> {
        match self {
            Store::Memory(m) => {
                m.refund(tenant, jti);
                Ok(())
            }
        }
    }

    pub async fn usage(&self, tenant: &str, jti: &str) -> Result<Option<Usage>, StoreError> {
        match self {
            Store::Memory(m) => Ok(m.usage(tenant, jti)),
        }
    }

    pub async fn revoke(&self, tenant: &str, jti: &str) -> Result<Usage, StoreError> {
        match self {
            Store::Memory(m) => Ok(m.revoke(tenant, jti)),
        }
    }

    /// Revoke every token of `tenant` issued strictly before `ts` (monotonic: never lowers the mark).
    pub async fn revoke_before(&self, tenant: &str, ts: u64) -> Result<u64, StoreError> {
        match self {
            Store::Memory(m) => Ok(m.revoke_before(tenant, ts)),
        }
    }
}

#[derive(Default)]
pub struct MemoryStore {
    inner: Mutex<MemoryInner>,
}

#[derive(Default)]
struct MemoryInner {
    /// Keyed by (tenant, token id): token ids are chosen by minters, so one tenant must never be able
    /// to touch another tenant's counters by reusing an id.
    tokens: HashMap<(String, String), Usage>,
    revoked_before: HashMap<String, u64>,
}

impl MemoryInner {
    /// Drop entries whose token expired long ago; a revoked or exhausted expired token is refused for
    /// being expired anyway, so forgetting it is safe.
    fn sweep(&mut self, now: u64) {
        const GRACE: u64 = 24 * 3600;
        if self.tokens.len() > 10_000 {
            self.tokens
                .retain(|_, u| u.expires_at.is_none_or(|e| e.saturating_add(GRACE) > now));
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

    fn t(jti: &str, max: Option<u64>) -> TokenRef<'_> {
        TokenRef {
            jti,
            tenant: "acme",
            iat: 100,
            exp: 10_000,
            max,
        }
    }

    #[tokio::test]
    async fn exactly_max_calls() {
        let s = Store::memory();
        for i in 1..=3 {
            assert_eq!(
                s.reserve(t("a", Some(3)), 200).await.unwrap(),
                Reservation::Granted { used: i }
            );
        }
        assert_eq!(
            s.reserve(t("a", Some(3)), 200).await.unwrap(),
            Reservation::Exhausted
        );
        s.refund("acme", "a").await.unwrap();
        assert_eq!(
            s.reserve(t("a", Some(3)), 201).await.unwrap(),
            Reservation::Granted { used: 3 }
        );
        let u = s.usage("acme", "a").await.unwrap().unwrap();
        assert_eq!(
            s.usage("other-tenant", "a").await.unwrap(),
            None,
            "tenants never see each other"
        );
        assert_eq!(
            (u.calls_used, u.first_used_at, u.last_used_at),
            (3, Some(200), Some(201))
        );
    }

    #[tokio::test]
    async fn parallel_reservations_never_exceed_max() {
        let s = std::sync::Arc::new(Store::memory());
        let mut handles = Vec::new();
        for _ in 0..200 {
            let s = s.clone();
            handles.push(tokio::spawn(async move {
                s.reserve(t("p", Some(5)), 1).await.unwrap()
            }));
        }
        let mut granted = 0;
        for h in handles {
            if matches!(h.await.unwrap(), Reservation::Granted { .. }) {
                granted += 1;
            }
        }
        assert_eq!(granted, 5);
    }

    #[tokio::test]
    async fn revocation() {
        let s = Store::memory();
        s.revoke("acme", "r").await.unwrap();
        assert_eq!(
            s.reserve(t("r", None), 1).await.unwrap(),
            Reservation::Revoked
        );
        assert_eq!(s.revoke_before("acme", 101).await.unwrap(), 101);
        assert_eq!(
            s.revoke_before("acme", 50).await.unwrap(),
            101,
            "never lowers the mark"
        );
        assert_eq!(
            s.reserve(t("other", None), 1).await.unwrap(),
            Reservation::Revoked
        );
        let mut later = t("later", None);
        later.iat = 101;
        assert!(matches!(
            s.reserve(later, 1).await.unwrap(),
            Reservation::Granted { .. }
        ));
    }
}
