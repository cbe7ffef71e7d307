//! The key ring: the tenant keys a relay verifies tokens with, by key id, and the published development
//! key it must recognise. Filled from `.rai` files (`token/rai_file.rs`); read by `token/seal.rs`.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use crate::text::grammar::{is_key_id, is_tenant_id};
use crate::token::secret::SecretKey;

/// The phrase whose SHA-256 is the published development key in the repository's `default.rai`.
const DEV_KEY_PHRASE: &[u8] = b"relayapi published development key, never use in production";

/// The tenant keys a relay verifies with, by key id.
#[derive(Debug, Clone, Default)]
pub struct Keyring {
    keys: BTreeMap<String, (String, SecretKey)>,
}

impl Keyring {
    pub fn new() -> Self {
        Keyring::default()
    }

    /// Adds a key. Errors (a sentence for the operator) on an invalid key id or tenant id, and on a key
    /// id that is already loaded: two keys under one id would make verification depend on load order.
    pub fn insert(&mut self, kid: &str, tenant: &str, key: SecretKey) -> Result<(), String> {
        if !is_key_id(kid) {
            return Err("key id must be 1 to 32 characters from A-Z a-z 0-9 . _ -".into());
        }
        if !is_tenant_id(tenant) {
            return Err("tenant id must be 1 to 64 characters from A-Z a-z 0-9 . _ -".into());
        }
        if self.keys.contains_key(kid) {
            return Err(format!("key id `{kid}` is already loaded"));
        }
        self.keys.insert(kid.to_owned(), (tenant.to_owned(), key));
        Ok(())
    }

    /// The tenant and key for a key id.
    pub fn get(&self, kid: &str) -> Option<(&str, &SecretKey)> {
        self.keys
            .get(kid)
            .map(|(tenant, key)| (tenant.as_str(), key))
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Whether any loaded key is the published development key (the relay refuses that on public
    /// addresses).
    pub fn contains_published_dev_key(&self) -> bool {
        self.keys.values().any(|(_, key)| is_published_dev_key(key))
    }
}

/// The published development key (SHA-256 of a fixed phrase, see `docs/client-config.md`): everyone has
/// it, so the relay refuses it on public addresses.
pub fn is_published_dev_key(key: &SecretKey) -> bool {
    let dev = SecretKey::from_bytes(Sha256::digest(DEV_KEY_PHRASE).into());
    *key == dev
}
