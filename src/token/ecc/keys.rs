//! P-256 keys of the ecc method (`docs/token-format.md` §10.1, `docs/client-config.md` rules E3-E4):
//! private keys (the relay key, a backend's signing key) as a newtype that redacts and wipes, public
//! keys (a signer's, the relay key's public half) as SEC1 uncompressed points. Only their text and byte
//! forms live here; what they sign or open is `signature.rs` and `hpke_suite.rs`.

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use p256::elliptic_curve::sec1::ToEncodedPoint;
use zeroize::Zeroizing;

/// A private key is a 32-byte big-endian scalar (RFC 9180 `SerializePrivateKey` for P-256).
pub const PRIVATE_KEY_LEN: usize = 32;

/// A public key is a SEC1 uncompressed point `0x04 || X || Y` (RFC 9180 `SerializePublicKey`).
pub const PUBLIC_KEY_LEN: usize = 65;

/// The SEC1 tag of an uncompressed point; compressed (`0x02`, `0x03`) and identity (`0x00`) forms are
/// refused.
const UNCOMPRESSED: u8 = 0x04;

/// A P-256 private key: a scalar `d` with `1 <= d < n`. `Debug` and `Display` print `[redacted]`; the
/// scalar is wiped on drop (p256's `SecretKey` zeroizes itself).
#[derive(Clone)]
pub struct EccPrivateKey(p256::SecretKey);

impl EccPrivateKey {
    /// The key from its 32 bytes, or `None` when the scalar is 0 or not below the group order.
    pub fn from_bytes(bytes: &[u8; PRIVATE_KEY_LEN]) -> Option<Self> {
        p256::SecretKey::from_bytes(bytes.into())
            .ok()
            .map(EccPrivateKey)
    }

    /// Rule E3: canonical unpadded base64url of exactly 32 bytes holding a valid scalar.
    pub fn from_base64url(text: &str) -> Option<Self> {
        if text.len() != 43 {
            return None;
        }
        let bytes = Zeroizing::new(URL_SAFE_NO_PAD.decode(text).ok()?);
        let array: &[u8; PRIVATE_KEY_LEN] = bytes.as_slice().try_into().ok()?;
        Self::from_bytes(array)
    }

    /// The key's text form, for writing a `.rai`.
    pub fn to_base64url(&self) -> Zeroizing<String> {
        Zeroizing::new(URL_SAFE_NO_PAD.encode(self.0.to_bytes()))
    }

    /// The 32-byte scalar, wiped when dropped. Every call site is a place the key leaves its wrapper.
    pub fn expose_bytes(&self) -> Zeroizing<[u8; PRIVATE_KEY_LEN]> {
        Zeroizing::new(self.0.to_bytes().into())
    }

    pub fn public_key(&self) -> EccPublicKey {
        EccPublicKey(self.0.public_key())
    }

    pub(crate) fn inner(&self) -> &p256::SecretKey {
        &self.0
    }
}

impl fmt::Debug for EccPrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl PartialEq for EccPrivateKey {
    /// Constant time (p256 compares secret scalars with `subtle`).
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}

impl Eq for EccPrivateKey {}

/// A P-256 public key: a point on the curve other than the identity. Not secret.
#[derive(Clone, PartialEq, Eq)]
pub struct EccPublicKey(p256::PublicKey);

impl EccPublicKey {
    /// Rule E4 / §10.4 step 4 for the bytes: exactly 65 bytes, `0x04 || X || Y`, `X, Y < p`, on the
    /// curve. p256 checks the coordinates and the curve equation; the tag and length are checked here
    /// so that no other SEC1 form is ever accepted.
    pub fn from_sec1(bytes: &[u8]) -> Option<Self> {
        if bytes.len() != PUBLIC_KEY_LEN || bytes[0] != UNCOMPRESSED {
            return None;
        }
        p256::PublicKey::from_sec1_bytes(bytes)
            .ok()
            .map(EccPublicKey)
    }

    /// Rule E4: canonical unpadded base64url of the 65-byte point (87 characters).
    pub fn from_base64url(text: &str) -> Option<Self> {
        if text.len() != 87 {
            return None;
        }
        Self::from_sec1(&URL_SAFE_NO_PAD.decode(text).ok()?)
    }

    pub fn to_sec1(&self) -> [u8; PUBLIC_KEY_LEN] {
        let point = self.0.to_encoded_point(false);
        let mut out = [0u8; PUBLIC_KEY_LEN];
        out.copy_from_slice(point.as_bytes());
        out
    }

    pub fn to_base64url(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.to_sec1())
    }

    pub(crate) fn inner(&self) -> &p256::PublicKey {
        &self.0
    }
}

impl fmt::Debug for EccPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EccPublicKey({})", self.to_base64url())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The P-256 group order n, big-endian.
    const N: [u8; 32] = [
        0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63,
        0x25, 0x51,
    ];

    #[test]
    fn private_keys_are_scalars_in_range() {
        assert!(EccPrivateKey::from_bytes(&[0; 32]).is_none());
        assert!(EccPrivateKey::from_bytes(&N).is_none());
        let mut n_minus_1 = N;
        n_minus_1[31] -= 1;
        assert!(EccPrivateKey::from_bytes(&n_minus_1).is_some());
        let mut one = [0; 32];
        one[31] = 1;
        let k = EccPrivateKey::from_bytes(&one).unwrap();
        let text = k.to_base64url();
        assert_eq!(EccPrivateKey::from_base64url(&text).unwrap(), k);
        assert!(EccPrivateKey::from_base64url(&format!("{}=", text.as_str())).is_none());
        assert!(!format!("{k:?}").contains(text.as_str()));
        // Non-canonical last character (unused bits set).
        let mut bad = text.to_string();
        bad.replace_range(42.., "B");
        assert!(EccPrivateKey::from_base64url(&bad).is_none());
    }

    #[test]
    fn public_keys_are_uncompressed_points_on_the_curve() {
        let k = EccPrivateKey::from_bytes(&[7; 32]).unwrap();
        let pk = k.public_key();
        let sec1 = pk.to_sec1();
        assert_eq!(sec1[0], 4);
        assert_eq!(EccPublicKey::from_sec1(&sec1).unwrap(), pk);
        assert_eq!(
            EccPublicKey::from_base64url(&pk.to_base64url()).unwrap(),
            pk
        );
        // Compressed form of the same point.
        let compressed = pk.inner().to_encoded_point(true);
        assert!(EccPublicKey::from_sec1(compressed.as_bytes()).is_none());
        // Off the curve: Y + 1.
        let mut off = sec1;
        off[64] ^= 1;
        assert!(EccPublicKey::from_sec1(&off).is_none());
        // Tag changed, identity, truncated, coordinate X = p.
        let mut tag = sec1;
        tag[0] = 2;
        assert!(EccPublicKey::from_sec1(&tag).is_none());
        assert!(EccPublicKey::from_sec1(&[0]).is_none());
        assert!(EccPublicKey::from_sec1(&sec1[..64]).is_none());
        let mut big = [0xffu8; 65];
        big[0] = 4;
        assert!(EccPublicKey::from_sec1(&big).is_none());
    }
}
