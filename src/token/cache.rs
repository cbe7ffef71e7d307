//! A small, bounded cache of tokens already proven authentic, so a frontend that makes many calls with
//! one token pays for key derivation, decryption and claims parsing once. Only successful verifications
//! are cached (a flood of invalid tokens cannot fill it), entries are the immutable claims of the exact
//! token text, and every check that depends on time or state (expiry, revocation, call counts, limits)
//! still runs on each request. A proof holds only for the key ring that made it (a reload that removes or
//! changes a key makes every proof of the old ring void at once) and only while the key that made it is
//! in its validity window, which is checked again on every use.
//!
//! It also remembers definite store verdicts for token ids (`Verdict`): a token found revoked stays
//! revoked, and a token found used up is remembered for `EXHAUSTED_MEMORY_SECS`, so repeat requests
//! with a dead token are refused before any store operation or body read. A remembered verdict only
//! ever refuses more; a revocation made through another relay is still caught by the store at
//! reservation, and a call given back in this process (`forget_exhausted`) clears the verdict at once.
//! A "used up" answer that raced with a give-back in this process is not remembered at all (the
//! give-back epoch in `remember`), so a token with a call left is never refused from memory because of
//! a refund in this process.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::sync::{Arc, Mutex};

use crate::token::format::{self, Claims, InvalidToken, ProvenBy};
use crate::token::rai::Keyring;

/// Tokens remembered at once. A few thousand covers the active tokens of a busy relay; when full, the
/// cache starts over, which costs one verification per active token and keeps memory bounded
/// (about 1 KiB per entry).
pub const TOKEN_CACHE_ENTRIES: usize = 4096;

/// Seconds a "used up" verdict is remembered. A call can be given back (a refund when a request never
/// left the relay), possibly by another relay sharing the store, so "used up" is not forever; for this
/// long after the verdict, requests with that token are refused without asking the store (at most one
/// store operation per token and relay per interval), and a refund elsewhere is noticed at most this
/// late. Refunds in this process clear the verdict at once.
pub const EXHAUSTED_MEMORY_SECS: u64 = 10;

/// A definite answer of the store about a token id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Every call is used (until a call is given back).
    Exhausted,
    /// Revoked, by id or by the tenant's revoke-before mark: never undone.
    Revoked,
}

/// Bytes at the end of a token's text that its digest covers (with the length). A token ends in its
/// AEAD tag or signature, bytes nobody can choose without the key; hashing the whole text (a few
/// hundred bytes with SipHash) was the largest cost of a cache hit.
const DIGEST_TAIL_BYTES: usize = 32;

pub struct TokenCache {
    /// Proofs by the digest of their token's text ([`TokenCache::digest`]). The digest only picks
    /// the entry: a proof is used only for exactly its own text, and two texts with one digest take
    /// turns in the entry (costing a verification, never a wrong answer).
    entries: Mutex<HashMap<u64, Proof, BuildHasherDefault<Digested>>>,
    /// The per-process random key of the digests, so nobody can choose texts whose digests collide.
    digest_key: RandomState,
    verdicts: Mutex<Verdicts>,
    capacity: usize,
}

/// The hasher of the proof table: its keys are already keyed SipHash digests, used as they are.
#[derive(Default)]
struct Digested(u64);

impl Hasher for Digested {
    fn write(&mut self, bytes: &[u8]) {
        // Only `u64` keys are hashed (`write_u64`); this keeps the trait's contract for anything else.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// A token proven authentic: its exact text, its claims, the keys that proved it (one key id, or an
/// ecc relay key and signer) and the ring that held them.
struct Proof {
    text: Box<str>,
    claims: Arc<Claims>,
    by: ProvenBy,
    generation: u64,
}

#[derive(Default)]
struct Verdicts {
    /// `tenant/jti` to the verdict and the Unix second it holds until (exclusive).
    map: HashMap<Box<str>, (Verdict, u64)>,
    /// Counts give-backs in this process; a "used up" answer obtained before the latest one is stale.
    epoch: u64,
}

fn verdict_key(tenant: &str, jti: &str) -> String {
    // Tenant ids never contain '/', token ids are hex: the key is unambiguous.
    format!("{tenant}/{jti}")
}

/// Longest `tenant/jti` key looked up without an allocation (real ones are well under it).
const STACK_KEY_BYTES: usize = 128;

/// Runs `f` on the `tenant/jti` key built on the stack: every proxied request looks its token's
/// verdict up, and building the key on the heap was an allocation per request.
fn with_verdict_key<R>(tenant: &str, jti: &str, f: impl FnOnce(&str) -> R) -> R {
    let len = tenant.len() + 1 + jti.len();
    if len <= STACK_KEY_BYTES {
        let mut buf = [0u8; STACK_KEY_BYTES];
        buf[..tenant.len()].copy_from_slice(tenant.as_bytes());
        buf[tenant.len()] = b'/';
        buf[tenant.len() + 1..len].copy_from_slice(jti.as_bytes());
        // Two strings and an ASCII byte joined are UTF-8; the check cannot fail.
        if let Ok(key) = std::str::from_utf8(&buf[..len]) {
            return f(key);
        }
    }
    f(&verdict_key(tenant, jti))
}

impl TokenCache {
    pub fn new(capacity: usize) -> TokenCache {
        TokenCache {
            entries: Mutex::new(HashMap::default()),
            digest_key: RandomState::new(),
            verdicts: Mutex::new(Verdicts::default()),
            capacity,
        }
    }

    /// `format::verify` at `now`, remembered. A remembered proof is used only with the ring that made it
    /// (same generation) and while its key is in its validity window, so a cached answer is exactly what
    /// verification would answer again; any other ring verifies afresh.
    pub fn verify(
        &self,
        text: &str,
        keyring: &Keyring,
        now: u64,
    ) -> Result<Arc<Claims>, InvalidToken> {
        if self.capacity == 0 {
            return format::verify(text, keyring, now).map(Arc::new);
        }
        let digest = self.digest(text);
        if let Some(p) = self.lock().get(&digest).filter(|p| *p.text == *text) {
            if p.generation == keyring.generation() {
                return match p.by.in_force(keyring, now) {
                    true => Ok(p.claims.clone()),
                    false => Err(InvalidToken),
                };
            }
        }
        let (claims, by) = format::verify_proven(text, keyring, now)?;
        let claims = Arc::new(claims);
        let mut entries = self.lock();
        if entries.len() >= self.capacity {
            entries.clear();
        }
        entries.insert(
            digest,
            Proof {
                text: text.into(),
                claims: claims.clone(),
                by,
                generation: keyring.generation(),
            },
        );
        Ok(claims)
    }

    /// The key of `text` in the proof table: its length and last [`DIGEST_TAIL_BYTES`] bytes under
    /// the process's random SipHash key.
    fn digest(&self, text: &str) -> u64 {
        let bytes = text.as_bytes();
        let tail = &bytes[bytes.len().saturating_sub(DIGEST_TAIL_BYTES)..];
        self.digest_key.hash_one((bytes.len(), tail))
    }

    /// A verdict remembered for this token id and still in force at `now` (Unix seconds).
    pub fn verdict(&self, tenant: &str, jti: &str, now: u64) -> Option<Verdict> {
        let v = self.verdicts();
        if v.map.is_empty() {
            return None;
        }
        with_verdict_key(tenant, jti, |key| {
            v.map
                .get(key)
                .filter(|(_, until)| now < *until)
                .map(|(verdict, _)| *verdict)
        })
    }

    /// The give-back epoch: read it before asking the store, pass it to `remember`.
    pub fn epoch(&self) -> u64 {
        self.verdicts().epoch
    }

    /// Remember the store's definite `verdict` about a token id, seen at `now`, from a store answer
    /// obtained after `epoch` was read. A "used up" answer is dropped when a call was given back in this
    /// process since then (it may be stale). Bounded like the token entries: when full, the table starts
    /// over (which only costs store operations).
    pub fn remember(&self, tenant: &str, jti: &str, verdict: Verdict, now: u64, epoch: u64) {
        if self.capacity == 0 {
            return;
        }
        let mut v = self.verdicts();
        let until = match verdict {
            Verdict::Exhausted if v.epoch != epoch => return,
            Verdict::Exhausted => now.saturating_add(EXHAUSTED_MEMORY_SECS),
            Verdict::Revoked => u64::MAX,
        };
        if v.map.len() >= self.capacity {
            v.map.clear();
        }
        let key = verdict_key(tenant, jti).into_boxed_str();
        // Revoked is final: a later "used up" answer must not shorten it.
        if v.map
            .get(&key)
            .is_some_and(|(old, _)| *old == Verdict::Revoked)
        {
            return;
        }
        v.map.insert(key, (verdict, until));
    }

    /// A call of this token was given back (call after the store's refund): a "used up" verdict no
    /// longer holds, and answers obtained before now are not remembered.
    pub fn forget_exhausted(&self, tenant: &str, jti: &str) {
        let mut v = self.verdicts();
        v.epoch = v.epoch.wrapping_add(1);
        with_verdict_key(tenant, jti, |key| {
            if v.map
                .get(key)
                .is_some_and(|(old, _)| *old == Verdict::Exhausted)
            {
                v.map.remove(key);
            }
        });
    }

    fn verdicts(&self) -> std::sync::MutexGuard<'_, Verdicts> {
        self.verdicts.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Proof, BuildHasherDefault<Digested>>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::secret::SecretKey;

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
        let t = format::mint_with(&claims, "k", &key, [1; 16]);
        assert_eq!(*cache.verify(&t, &ring, 1).unwrap(), claims);
        assert_eq!(*cache.verify(&t, &ring, 1).unwrap(), claims);
        assert_eq!(cache.len(), 1);
        let mut bad = t.clone();
        bad.push('A');
        assert!(cache.verify(&bad, &ring, 1).is_err());
        assert_eq!(cache.len(), 1, "failures are not cached");
        for salt in 2..10u8 {
            let t = format::mint_with(&claims, "k", &key, [salt; 16]);
            cache.verify(&t, &ring, 1).unwrap();
            assert!(cache.len() <= 2);
        }
    }

    #[test]
    fn verdicts_expire_stay_bounded_and_revocation_is_final() {
        let cache = TokenCache::new(2);
        assert_eq!(cache.verdict("acme", "a", 100), None);
        cache.remember("acme", "a", Verdict::Exhausted, 100, cache.epoch());
        assert_eq!(cache.verdict("acme", "a", 100), Some(Verdict::Exhausted));
        assert_eq!(
            cache.verdict("acme", "a", 100 + EXHAUSTED_MEMORY_SECS - 1),
            Some(Verdict::Exhausted)
        );
        assert_eq!(
            cache.verdict("acme", "a", 100 + EXHAUSTED_MEMORY_SECS),
            None
        );
        // Another tenant's token with the same id is another token.
        assert_eq!(cache.verdict("other", "a", 100), None);
        // A refund clears "used up" but never "revoked".
        cache.forget_exhausted("acme", "a");
        assert_eq!(cache.verdict("acme", "a", 100), None);
        cache.remember("acme", "b", Verdict::Revoked, 100, cache.epoch());
        cache.remember("acme", "b", Verdict::Exhausted, 200, cache.epoch());
        cache.forget_exhausted("acme", "b");
        assert_eq!(
            cache.verdict("acme", "b", u64::MAX - 1),
            Some(Verdict::Revoked)
        );
        // Bounded: a third id starts the table over.
        cache.remember("acme", "a", Verdict::Exhausted, 100, cache.epoch());
        cache.remember("acme", "c", Verdict::Exhausted, 100, cache.epoch());
        let remembered = ["a", "b", "c"]
            .iter()
            .filter(|j| cache.verdict("acme", j, 100).is_some())
            .count();
        assert!(remembered <= 2);
        assert_eq!(cache.verdict("acme", "c", 100), Some(Verdict::Exhausted));
        // A "used up" answer read before a give-back is stale and not remembered; "revoked" always is.
        let seen = cache.epoch();
        cache.forget_exhausted("acme", "z");
        cache.remember("acme", "d", Verdict::Exhausted, 100, seen);
        assert_eq!(cache.verdict("acme", "d", 100), None);
        cache.remember("acme", "d", Verdict::Revoked, 100, seen);
        assert_eq!(cache.verdict("acme", "d", 100), Some(Verdict::Revoked));
        // Keys too long for the stack are looked up all the same.
        let long = "t".repeat(STACK_KEY_BYTES);
        cache.remember(&long, "a", Verdict::Revoked, 100, cache.epoch());
        assert_eq!(cache.verdict(&long, "a", 100), Some(Verdict::Revoked));
        assert_eq!(cache.verdict(&long, "b", 100), None);
        // A cache with no room remembers nothing.
        let off = TokenCache::new(0);
        off.remember("acme", "a", Verdict::Revoked, 1, 0);
        assert_eq!(off.verdict("acme", "a", 1), None);
    }

    #[test]
    fn a_proof_is_used_only_for_its_own_text() {
        let (ring, key, claims) = setup();
        let cache = TokenCache::new(16);
        let t = format::mint_with(&claims, "k", &key, [5; 16]);
        cache.verify(&t, &ring, 1).unwrap();
        // Same length and same tail, so the same digest: the entry's text is compared whole and the
        // impostor is verified (and refused) on its own.
        let mut impostor = t.clone().into_bytes();
        let mid = impostor.len() / 2;
        impostor[mid] = if impostor[mid] == b'A' { b'B' } else { b'A' };
        let impostor = String::from_utf8(impostor).unwrap();
        assert_eq!(cache.digest(&impostor), cache.digest(&t));
        assert_eq!(cache.verify(&impostor, &ring, 1), Err(InvalidToken));
        assert_eq!(*cache.verify(&t, &ring, 1).unwrap(), claims);
        // Another cache digests with another key.
        let other = TokenCache::new(16);
        assert_ne!(other.digest(&t), cache.digest(&t));
    }

    #[test]
    fn a_cached_token_is_still_checked_against_the_ring() {
        let (ring, key, claims) = setup();
        let cache = TokenCache::new(16);
        let t = format::mint_with(&claims, "k", &key, [3; 16]);
        cache.verify(&t, &ring, 1).unwrap();
        // A cache in another process with another ring proves nothing about this one.
        let other = TokenCache::new(16);
        assert!(other.verify(&t, &Keyring::new(), 1).is_err());
    }

    #[test]
    fn a_proof_holds_only_for_its_ring_and_inside_its_key_window() {
        use crate::token::keyring::KeyWindow;
        use crate::token::live_keyring::LiveKeyring;
        let (_, key, claims) = setup();
        let window = KeyWindow {
            not_before: Some(10),
            not_after: Some(20),
        };
        let mut ring = Keyring::new();
        ring.insert_windowed("k", "acme", key.clone(), window)
            .unwrap();
        let live = LiveKeyring::new(ring.clone());
        let cache = TokenCache::new(16);
        let t = format::mint_with(&claims, "k", &key, [4; 16]);
        assert!(cache.verify(&t, &live.current(), 9).is_err());
        assert!(cache.verify(&t, &live.current(), 10).is_ok());
        assert_eq!(cache.len(), 1);
        // Cached, yet the window is checked again on every use.
        assert!(cache.verify(&t, &live.current(), 19).is_ok());
        assert_eq!(cache.verify(&t, &live.current(), 20), Err(InvalidToken));
        // A reload without the key: the proof of the old ring proves nothing.
        let old = live.current();
        live.replace(Keyring::new());
        assert_eq!(cache.verify(&t, &live.current(), 15), Err(InvalidToken));
        // A request that started with the old ring still finishes with it.
        assert!(cache.verify(&t, &old, 15).is_ok());
        // The same key id back under another key: the old proof is not reused.
        let mut other = Keyring::new();
        other
            .insert("k", "acme", SecretKey::from_bytes([8; 32]))
            .unwrap();
        live.replace(other);
        assert_eq!(cache.verify(&t, &live.current(), 15), Err(InvalidToken));
    }
}
