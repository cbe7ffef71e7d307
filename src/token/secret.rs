//! Newtypes for secrets: provider API keys and token text (`SecretString`) and 32-byte tenant keys
//! (`SecretKey`). Their `Debug` and `Display` print `[redacted]`, so a secret that reaches a log line, a
//! panic message or an error by accident shows nothing; reading the value takes an explicit `expose()`.
//! Both wipe their memory on drop and compare in constant time.
//!
//! Parsing keys out of files is `token/rai.rs`'s job; this file only knows the base64url text form of a key.

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, Zeroizing};

/// What every secret prints instead of its value.
const REDACTED: &str = "[redacted]";

/// Length of a tenant key in bytes (token format §2).
pub const KEY_LEN: usize = 32;

/// Length of a tenant key in its unpadded base64url text form.
pub const KEY_B64_LEN: usize = 43;

/// A secret text: a provider API key or a token.
#[derive(Clone, Default)]
pub struct SecretString(String);

impl SecretString {
    pub fn new(s: impl Into<String>) -> Self {
        SecretString(s.into())
    }

    /// The secret itself. Every call site is a place where the secret leaves its wrapper; keep them few.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<String> for SecretString {
    fn from(s: String) -> Self {
        SecretString(s)
    }
}

impl From<&str> for SecretString {
    fn from(s: &str) -> Self {
        SecretString(s.to_owned())
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl PartialEq for SecretString {
    /// Constant time in the content; the length is not treated as secret.
    fn eq(&self, other: &Self) -> bool {
        self.0.as_bytes().ct_eq(other.0.as_bytes()).into()
    }
}

impl Eq for SecretString {}

impl Drop for SecretString {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

/// A 32-byte tenant key (AES-256 / HKDF input keying material).
#[derive(Clone)]
pub struct SecretKey([u8; KEY_LEN]);

impl SecretKey {
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        SecretKey(bytes)
    }

    /// Decodes the `.rai` text form: exactly 43 characters of canonical unpadded base64url.
    /// Anything else (padding, the standard alphabet, whitespace, another length, unused bits set) is
    /// `None`; a key is never hashed or padded into shape.
    pub fn from_base64url(text: &str) -> Option<Self> {
        if text.len() != KEY_B64_LEN {
            return None;
        }
        let decoded = Zeroizing::new(URL_SAFE_NO_PAD.decode(text.as_bytes()).ok()?);
        let bytes: [u8; KEY_LEN] = decoded.as_slice().try_into().ok()?;
        Some(SecretKey(bytes))
    }

    /// The `.rai` text form (43 characters); wiped when the caller drops it.
    pub fn to_base64url(&self) -> Zeroizing<String> {
        Zeroizing::new(URL_SAFE_NO_PAD.encode(self.0))
    }

    /// The key bytes. Every call site is a place where the key leaves its wrapper; keep them few.
    pub fn expose(&self) -> &[u8; KEY_LEN] {
        &self.0
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl PartialEq for SecretKey {
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl Eq for SecretKey {}

impl Drop for SecretKey {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_string_debug_and_display_redact() {
        let s = SecretString::new("test-key-123");
        assert_eq!(format!("{s}"), "[redacted]");
        assert_eq!(format!("{s:?}"), "[redacted]");
        assert_eq!(format!("{s:#?}"), "[redacted]");
        assert_eq!(s.expose(), "test-key-123");
    }

    #[test]
    fn secret_string_redacts_inside_derived_debug() {
        #[derive(Debug)]
        #[allow(dead_code)] // only read through Debug
        struct Holder {
            key: Option<SecretString>,
        }
        let h = Holder {
            key: Some(SecretString::new("test-key-123")),
        };
        let text = format!("{h:?}");
        assert!(!text.contains("test-key-123"), "{text}");
        assert!(text.contains("[redacted]"), "{text}");
    }

    #[test]
    fn secret_key_debug_and_display_redact() {
        let k = SecretKey::from_bytes([0x41; 32]);
        for text in [format!("{k}"), format!("{k:?}"), format!("{k:#?}")] {
            assert_eq!(text, "[redacted]");
        }
        assert_eq!(k.expose(), &[0x41; 32]);
    }

    #[test]
    fn secret_equality() {
        assert_eq!(SecretString::new("a-b"), SecretString::new("a-b"));
        assert_ne!(SecretString::new("a-b"), SecretString::new("a-c"));
        assert_ne!(SecretString::new("a-b"), SecretString::new("a-bc"));
        assert_eq!(
            SecretKey::from_bytes([1; 32]),
            SecretKey::from_bytes([1; 32])
        );
        let mut other = [1; 32];
        other[31] = 2;
        assert_ne!(SecretKey::from_bytes([1; 32]), SecretKey::from_bytes(other));
    }

    #[test]
    fn key_base64url_round_trip() {
        let k = SecretKey::from_bytes(core::array::from_fn(|i| (i * 7) as u8));
        let text = k.to_base64url();
        assert_eq!(text.len(), KEY_B64_LEN);
        assert_eq!(SecretKey::from_base64url(&text), Some(k));
    }

    #[test]
    fn key_base64url_rejects_everything_but_the_canonical_form() {
        let good = "OdH0uvCbZNDfk421X_UpgK9lWWVVNyHqkSFMb5oCtg4";
        assert!(SecretKey::from_base64url(good).is_some());
        let bad = [
            "",
            "OdH0uvCbZNDfk421X_UpgK9lWWVVNyHqkSFMb5oCtg4=", // padding
            "OdH0uvCbZNDfk421X/UpgK9lWWVVNyHqkSFMb5oCtg4",  // standard alphabet
            "OdH0uvCbZNDfk421X_UpgK9lWWVVNyHqkSFMb5oCtg",   // 31.5 bytes
            "OdH0uvCbZNDfk421X_UpgK9lWWVVNyHqkSFMb5oCtg4A", // too long
            "OdH0uvCbZNDfk421X_UpgK9lWWVVNyHqkSFMb5oCtg5",  // unused bits set
            " dH0uvCbZNDfk421X_UpgK9lWWVVNyHqkSFMb5oCtg4",  // whitespace
            "OdH0uvCbZNDfk421X_UpgK9lWWVVNyHqkSFMb5oCtg4\n", // trailing newline
        ];
        for text in bad {
            assert!(SecretKey::from_base64url(text).is_none(), "{text:?}");
        }
    }
}
