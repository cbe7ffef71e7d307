//! The HPKE suite of the ecc method (`docs/token-format.md` §10.1): RFC 9180 base mode with
//! DHKEM(P-256, HKDF-SHA256), HKDF-SHA256 and AES-256-GCM, single shot, `aad` empty. rust-hpke does the
//! work; this file fixes the suite and injects the ephemeral key's input `ikm_e` (§10.3 step 6), so a
//! token can be pinned byte for byte by the vectors.
//!
//! rust-hpke draws the ephemeral key as `DeriveKeyPair(ikm)` with `ikm` = 32 bytes from the sender's
//! RNG, exactly RFC 9180's own construction; [`IkmRng`] hands it `ikm_e` as those bytes and refuses any
//! other draw, so the ephemeral key is `DeriveKeyPair(ikm_e)` or sealing panics.

use hpke::aead::AesGcm256;
use hpke::kdf::HkdfSha256;
use hpke::kem::DhP256HkdfSha256;
use hpke::rand_core::{CryptoRng, RngCore};
use hpke::{Deserializable, Kem as _, OpModeR, OpModeS, Serializable};
use zeroize::Zeroizing;

use crate::token::ecc::keys::{EccPrivateKey, EccPublicKey, PUBLIC_KEY_LEN};

type Kem = DhP256HkdfSha256;

/// The encapsulated key: the ephemeral public key, SEC1 uncompressed.
pub const ENC_LEN: usize = PUBLIC_KEY_LEN;
/// The AES-256-GCM tag at the end of the ciphertext.
pub const TAG_LEN: usize = 16;
/// Bytes of `ikm_e`, the input the ephemeral key is derived from (`Nsk` for P-256).
pub const IKM_LEN: usize = 32;

/// An RNG that yields `ikm_e` once, for rust-hpke's ephemeral key, and panics on any other draw: a
/// change in how the library draws would otherwise silently change every token.
struct IkmRng {
    ikm: Zeroizing<[u8; IKM_LEN]>,
    used: bool,
}

impl RngCore for IkmRng {
    fn next_u32(&mut self) -> u32 {
        unreachable!("HPKE sealing draws only the ephemeral key's 32 bytes")
    }

    fn next_u64(&mut self) -> u64 {
        unreachable!("HPKE sealing draws only the ephemeral key's 32 bytes")
    }

    fn fill_bytes(&mut self, dst: &mut [u8]) {
        assert!(
            !self.used && dst.len() == IKM_LEN,
            "HPKE sealing draws only the ephemeral key's 32 bytes"
        );
        dst.copy_from_slice(self.ikm.as_ref());
        self.used = true;
    }
}

impl CryptoRng for IkmRng {}

/// `SealBase(pkR, info, aad = "", pt)` with the ephemeral key `DeriveKeyPair(ikm_e)`: returns `enc` and
/// the ciphertext (tag included). `ikm_e` must never repeat under one relay key.
pub fn seal(
    relay: &EccPublicKey,
    info: &[u8],
    plaintext: &[u8],
    ikm_e: &[u8; IKM_LEN],
) -> ([u8; ENC_LEN], Vec<u8>) {
    let pk_r = <Kem as hpke::Kem>::PublicKey::from_bytes(&relay.to_sec1())
        .expect("an EccPublicKey is a valid HPKE public key");
    let mut rng = IkmRng {
        ikm: Zeroizing::new(*ikm_e),
        used: false,
    };
    let (enc, ct) = hpke::single_shot_seal::<AesGcm256, HkdfSha256, Kem, _>(
        &OpModeS::Base,
        &pk_r,
        info,
        plaintext,
        b"",
        &mut rng,
    )
    // Only a plaintext beyond AES-GCM's limit (64 GiB) or a broken key could fail.
    .expect("HPKE sealing of a token cannot fail");
    assert!(rng.used, "HPKE sealing drew the ephemeral key from ikm_e");
    let mut out = [0u8; ENC_LEN];
    out.copy_from_slice(&enc.to_bytes());
    (out, ct)
}

/// `OpenBase(enc, skR, info, aad = "", ct)`: the plaintext, or `None` when `enc` is not an uncompressed
/// point on the curve or the tag does not verify.
pub fn open(
    relay: &EccPrivateKey,
    enc: &[u8],
    info: &[u8],
    ct: &[u8],
) -> Option<Zeroizing<Vec<u8>>> {
    // §10.4 step 4: exactly the uncompressed form (rust-hpke checks length, coordinates and curve).
    let enc = EccPublicKey::from_sec1(enc)?;
    let encapped = <Kem as hpke::Kem>::EncappedKey::from_bytes(&enc.to_sec1()).ok()?;
    let sk_r = <Kem as hpke::Kem>::PrivateKey::from_bytes(relay.expose_bytes().as_ref()).ok()?;
    hpke::single_shot_open::<AesGcm256, HkdfSha256, Kem>(
        &OpModeR::Base,
        &sk_r,
        &encapped,
        info,
        ct,
        b"",
    )
    .ok()
    .map(Zeroizing::new)
}

/// RFC 9180 `DeriveKeyPair(ikm)` for DHKEM(P-256, HKDF-SHA256): the private key's 32 bytes and the
/// public key. For the RFC's test vectors and for generating keys from fresh randomness.
pub fn derive_key_pair(ikm: &[u8]) -> (EccPrivateKey, EccPublicKey) {
    let (sk, _) = Kem::derive_keypair(ikm);
    let bytes = Zeroizing::new(<[u8; 32]>::from(sk.to_bytes()));
    let key = EccPrivateKey::from_bytes(&bytes).expect("DeriveKeyPair yields a valid scalar");
    let public = key.public_key();
    (key, public)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trip_and_binding() {
        let (sk, pk) = derive_key_pair(&[1; 32]);
        let (enc, ct) = seal(&pk, b"info", b"hello", &[2; 32]);
        assert_eq!(ct.len(), 5 + TAG_LEN);
        assert_eq!(
            open(&sk, &enc, b"info", &ct).as_deref().map(Vec::as_slice),
            Some(&b"hello"[..])
        );
        // Deterministic for one ikm_e, different for another.
        assert_eq!(seal(&pk, b"info", b"hello", &[2; 32]), (enc, ct.clone()));
        assert_ne!(seal(&pk, b"info", b"hello", &[3; 32]).0, enc);
        // The ephemeral key is DeriveKeyPair(ikm_e).
        assert_eq!(enc, derive_key_pair(&[2; 32]).1.to_sec1());
        assert!(open(&sk, &enc, b"other", &ct).is_none());
        assert!(open(&derive_key_pair(&[9; 32]).0, &enc, b"info", &ct).is_none());
        let mut bad = ct.clone();
        bad[0] ^= 1;
        assert!(open(&sk, &enc, b"info", &bad).is_none());
        let mut off = enc;
        off[64] ^= 1;
        assert!(open(&sk, &off, b"info", &ct).is_none());
        assert!(open(&sk, &enc[..64], b"info", &ct).is_none());
    }
}
