//! The key ring: the tenant keys a relay verifies tokens with, by key id, each with its validity window,
//! and the published development key it must recognise. Symmetric tenant keys, ecc relay keys and ecc
//! signers share one id space (`docs/token-format.md` §8), so a key id always names one key. Filled from `.rai` files (`token/rai_file.rs`);
//! read by `token/seal.rs` and `admin/signing.rs`. A ring is immutable once built: a reload builds a new
//! one and swaps it in (`token/live_keyring.rs`).

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use crate::text::grammar::{is_key_id, is_tenant_id};
use crate::token::ecc::keys::{EccPrivateKey, EccPublicKey};
use crate::token::secret::SecretKey;

/// The phrase whose SHA-256 is the published development key in the repository's `default.rai`.
const DEV_KEY_PHRASE: &[u8] = b"relayapi published development key, never use in production";

/// When a key may mint and verify, in Unix seconds (`docs/client-config.md`, `not_before` /
/// `not_after`): from `not_before` included to `not_after` excluded; a missing end is open.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KeyWindow {
    pub not_before: Option<u64>,
    pub not_after: Option<u64>,
}

impl KeyWindow {
    /// Whether the key is in force at `now`. No clock-skew leeway: retiring a key must take effect at
    /// the second the operator wrote, on every relay.
    pub fn contains(&self, now: u64) -> bool {
        self.not_before.is_none_or(|nb| now >= nb) && self.not_after.is_none_or(|na| now < na)
    }
}

#[derive(Debug, Clone)]
struct Entry {
    tenant: String,
    key: Material,
    window: KeyWindow,
}

/// What a key id names. `file` numbers the relay-side ecc file a relay key or signer came from: a
/// token needs both from the same file (`docs/token-format.md` §10.4 step 3).
#[derive(Debug, Clone)]
enum Material {
    Symmetric(SecretKey),
    RelayKey { key: EccPrivateKey, file: u32 },
    Signer { key: EccPublicKey, file: u32 },
}

/// The tenant keys a relay verifies with, by key id.
#[derive(Debug, Clone, Default)]
pub struct Keyring {
    keys: BTreeMap<String, Entry>,
    /// Which ring of this process this is (0 for the first); the token cache keeps a proof only for the
    /// ring that made it.
    generation: u64,
}

impl Keyring {
    pub fn new() -> Self {
        Keyring::default()
    }

    /// Adds a key valid at all times; see [`Keyring::insert_windowed`].
    pub fn insert(&mut self, kid: &str, tenant: &str, key: SecretKey) -> Result<(), String> {
        self.insert_windowed(kid, tenant, key, KeyWindow::default())
    }

    /// Adds a key with its validity window. Errors (a sentence for the operator) on an invalid key id or
    /// tenant id, and on a key id that is already loaded: two keys under one id would make verification
    /// depend on load order.
    pub fn insert_windowed(
        &mut self,
        kid: &str,
        tenant: &str,
        key: SecretKey,
        window: KeyWindow,
    ) -> Result<(), String> {
        self.insert_entry(kid, tenant, Material::Symmetric(key), window)
    }

    /// Adds an ecc relay key (a private key tokens are sealed to) of relay-side file number `file`.
    /// Errors as [`Keyring::insert_windowed`].
    pub fn insert_relay_key(
        &mut self,
        kid: &str,
        tenant: &str,
        key: EccPrivateKey,
        window: KeyWindow,
        file: u32,
    ) -> Result<(), String> {
        self.insert_entry(kid, tenant, Material::RelayKey { key, file }, window)
    }

    /// Adds an ecc signer (a public key that signs tokens and admin requests) of relay-side file
    /// number `file`. Errors as [`Keyring::insert_windowed`].
    pub fn insert_signer(
        &mut self,
        kid: &str,
        tenant: &str,
        key: EccPublicKey,
        window: KeyWindow,
        file: u32,
    ) -> Result<(), String> {
        self.insert_entry(kid, tenant, Material::Signer { key, file }, window)
    }

    fn insert_entry(
        &mut self,
        kid: &str,
        tenant: &str,
        key: Material,
        window: KeyWindow,
    ) -> Result<(), String> {
        if !is_key_id(kid) {
            return Err("key id must be 1 to 32 characters from A-Z a-z 0-9 . _ -".into());
        }
        if !is_tenant_id(tenant) {
            return Err("tenant id must be 1 to 64 characters from A-Z a-z 0-9 . _ -".into());
        }
        if self.keys.contains_key(kid) {
            return Err(format!("key id `{kid}` is already loaded"));
        }
        self.keys.insert(
            kid.to_owned(),
            Entry {
                tenant: tenant.to_owned(),
                key,
                window,
            },
        );
        Ok(())
    }

    /// The tenant and key for a key id, if the key is in its validity window at `now` (Unix seconds).
    /// A key outside its window is as unknown as a key id never loaded: every path that proves
    /// something with a key (tokens, admin signatures) looks it up here.
    pub fn get(&self, kid: &str, now: u64) -> Option<(&str, &SecretKey)> {
        match self.in_force(kid, now)? {
            (tenant, Material::Symmetric(key)) => Some((tenant, key)),
            _ => None,
        }
    }

    /// The tenant, file number and key of an ecc relay key in force at `now`.
    pub fn relay_key(&self, kid: &str, now: u64) -> Option<(&str, u32, &EccPrivateKey)> {
        match self.in_force(kid, now)? {
            (tenant, Material::RelayKey { key, file }) => Some((tenant, *file, key)),
            _ => None,
        }
    }

    /// The tenant, file number and public key of an ecc signer in force at `now`.
    pub fn signer(&self, kid: &str, now: u64) -> Option<(&str, u32, &EccPublicKey)> {
        match self.in_force(kid, now)? {
            (tenant, Material::Signer { key, file }) => Some((tenant, *file, key)),
            _ => None,
        }
    }

    /// Whether a key id of any kind is loaded and in force at `now` (the token cache re-checks the keys
    /// behind a remembered proof with it).
    pub fn is_in_force(&self, kid: &str, now: u64) -> bool {
        self.in_force(kid, now).is_some()
    }

    fn in_force(&self, kid: &str, now: u64) -> Option<(&str, &Material)> {
        self.keys
            .get(kid)
            .filter(|e| e.window.contains(now))
            .map(|e| (e.tenant.as_str(), &e.key))
    }

    /// Key ids and windows, in key id order (for log lines; never the keys).
    pub fn key_ids(&self) -> impl Iterator<Item = (&str, KeyWindow)> {
        self.keys.iter().map(|(kid, e)| (kid.as_str(), e.window))
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// This ring, numbered as the `generation`-th of its process (`token/live_keyring.rs`).
    pub(crate) fn with_generation(mut self, generation: u64) -> Self {
        self.generation = generation;
        self
    }

    /// Whether any loaded key is the published development key (the relay refuses it without an
    /// explicit development switch).
    pub fn contains_published_dev_key(&self) -> bool {
        self.keys
            .values()
            .any(|e| matches!(&e.key, Material::Symmetric(k) if is_published_dev_key(k)))
    }
}

/// The published development key (SHA-256 of a fixed phrase, see `docs/client-config.md`): everyone has
/// it, so the relay refuses it unless started for development.
pub fn is_published_dev_key(key: &SecretKey) -> bool {
    let dev = SecretKey::from_bytes(Sha256::digest(DEV_KEY_PHRASE).into());
    *key == dev
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_includes_its_start_and_excludes_its_end() {
        let w = KeyWindow {
            not_before: Some(100),
            not_after: Some(200),
        };
        assert!(!w.contains(99));
        assert!(w.contains(100));
        assert!(w.contains(199));
        assert!(!w.contains(200));
        assert!(KeyWindow::default().contains(0));
        assert!(KeyWindow::default().contains(u64::MAX));
        let mut ring = Keyring::new();
        ring.insert_windowed("k", "acme", SecretKey::from_bytes([1; 32]), w)
            .unwrap();
        assert!(ring.get("k", 99).is_none());
        assert_eq!(ring.get("k", 150).unwrap().0, "acme");
        assert!(ring.get("k", 200).is_none());
        assert_eq!(ring.key_ids().collect::<Vec<_>>(), [("k", w)]);
    }
}
