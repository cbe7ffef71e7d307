//! The key ring in force, swappable while the relay serves: a reload (`server/key_reload.rs`) puts a new
//! ring in at once, and each request reads the ring once and keeps that snapshot to its end, so a request
//! in flight finishes with the keys it started with and the next one sees the new keys. Lives in `App`;
//! nothing global.

use std::sync::{Arc, RwLock};

use crate::token::keyring::Keyring;

pub struct LiveKeyring {
    current: RwLock<Arc<Keyring>>,
}

impl LiveKeyring {
    pub fn new(ring: Keyring) -> LiveKeyring {
        LiveKeyring {
            current: RwLock::new(Arc::new(ring.with_generation(0))),
        }
    }

    /// The ring in force: read once per request (a read lock held for one `Arc` clone).
    pub fn current(&self) -> Arc<Keyring> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Puts `ring` in force for every request that reads the ring from now on; returns it as numbered.
    pub fn replace(&self, ring: Keyring) -> Arc<Keyring> {
        let mut cur = self.current.write().unwrap_or_else(|p| p.into_inner());
        let next = Arc::new(ring.with_generation(cur.generation().wrapping_add(1)));
        *cur = next.clone();
        next
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::secret::SecretKey;

    #[test]
    fn a_snapshot_outlives_a_replacement() {
        let mut a = Keyring::new();
        a.insert("a", "acme", SecretKey::from_bytes([1; 32]))
            .unwrap();
        let live = LiveKeyring::new(a);
        let before = live.current();
        let mut b = Keyring::new();
        b.insert("b", "acme", SecretKey::from_bytes([2; 32]))
            .unwrap();
        live.replace(b);
        assert!(
            before.get("a", 0).is_some(),
            "the old snapshot is unchanged"
        );
        let after = live.current();
        assert!(after.get("a", 0).is_none() && after.get("b", 0).is_some());
        assert_ne!(before.generation(), after.generation());
    }
}
