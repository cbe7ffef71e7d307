//! A small, bounded cache of tokens already proven authentic, so a frontend that makes many calls with
//! one token pays for key derivation, decryption and claims parsing once. Only successful verifications
//! are cached (a flood of invalid tokens cannot fill it), entries are the immutable claims of the exact
//! token text, and every check that depends on time or state (expiry, revocation, call counts, limits)
//! still runs on each request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::rai::Keyring;
use crate::token::{self, Claims, InvalidToken};

/// Tokens remembered at once. A few thousand covers the active tokens of a busy relay; when full, the
/// cache starts over, which costs one verification per active token and keeps memory bounded
/// (about 1 KiB per entry).
pub const TOKEN_CACHE_ENTRIES: usize = 4096;

pub struct TokenCache {
    entries: Mutex<HashMap<Box<str>, Arc<Claims>>>,
    capacity: usize,
}

impl TokenCache {
    pub fn new(capacity: usize) -> TokenCache {
        TokenCache {
            entries: Mutex::new(HashMap::new()),
            capacity,
        }
    }

    /// `token::verify`, remembered. The key ring is fixed for the life of the process, so a cached
    /// answer is exactly what verification would answer again.
    pub fn verify(&self, text: &str, keyring: &Keyring) -> Result<Arc<Claims>, InvalidToken> {
        if self.capacity == 0 {
            return token::verify(text, keyring).map(Arc::new);
        }
        if let Some(c) = self.lock().get(text) {
            return Ok(c.clone());
        }
        let claims = Arc::new(token::verify(text, keyring)?);
        let mut entries = self.lock();
        if entries.len() >= self.capacity {
            entries.clear();
        }
        entries.insert(text.into(), claims.clone());
        Ok(claims)
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Box<str>, Arc<Claims>>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::SecretKey;

    fn setup() -> (Keyring, SecretKey, Claims) {
        let key = SecretKey::from_bytes([7; 32]);
        let mut ring = Keyring::new();
        ring.insert("k", "acme", key.clone()).unwrap();
        let claims = Claims::from_json(
            r#"{"jti":"0123456789abcdef0123456789abcdef","tid":"acme","iat":1,"exp":2,"prv":"openai","key":"k-1"}"#,
        )
        .unwrap();
        (ring, key, claims)
    }

    #[test]
    fn caches_only_valid_tokens_and_stays_bounded() {
        let (ring, key, claims) = setup();
        let cache = TokenCache::new(2);
        let t = token::mint_with(&claims, "k", &key, [1; 16]);
        assert_eq!(*cache.verify(&t, &ring).unwrap(), claims);
        assert_eq!(*cache.verify(&t, &ring).unwrap(), claims);
        assert_eq!(cache.len(), 1);
        let mut bad = t.clone();
        bad.push('A');
        assert!(cache.verify(&bad, &ring).is_err());
        assert_eq!(cache.len(), 1, "failures are not cached");
        for salt in 2..10u8 {
            let t = token::mint_with(&claims, "k", &key, [salt; 16]);
            cache.verify(&t, &ring).unwrap();
            assert!(cache.len() <= 2);
        }
    }

    #[test]
    fn a_cached_token_is_still_checked_against_the_ring() {
        let (ring, key, claims) = setup();
        let cache = TokenCache::new(16);
        let t = token::mint_with(&claims, "k", &key, [3; 16]);
        cache.verify(&t, &ring).unwrap();
        // A cache in another process with another ring proves nothing about this one.
        let other = TokenCache::new(16);
        assert!(other.verify(&t, &Keyring::new()).is_err());
    }
}
