//! ECDSA over P-256 with SHA-256 in the one spelling the ecc method accepts (`docs/token-format.md`
//! §10.1): the fixed 64 bytes `r || s` with low S (`1 <= s <= (n-1)/2`). Signing is RFC 6979
//! (deterministic, so the vectors pin whole tokens); a high-S result is replaced by `n - s`. Verifying
//! refuses high S although it is mathematically valid, so every signed message has one signature. Used
//! by tokens (`open.rs`, `mint.rs`) and by admin request signatures (`admin/signing.rs`).

use p256::ecdsa::signature::{Signer, Verifier};
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};

use crate::token::ecc::keys::{EccPrivateKey, EccPublicKey};

/// `r || s`, each 32 bytes big-endian.
pub const SIG_LEN: usize = 64;

/// The low-S signature of `msg` (RFC 6979 nonce, SHA-256 of `msg`).
pub fn sign(key: &EccPrivateKey, msg: &[u8]) -> [u8; SIG_LEN] {
    let signing = SigningKey::from(key.inner());
    let sig: Signature = signing.sign(msg);
    // p256 does not normalise S; the format accepts only the low half.
    let sig = sig.normalize_s().unwrap_or(sig);
    sig.to_bytes().into()
}

/// Whether `sig` is a low-S signature of `msg` under `key`. `r` and `s` must be in `1..n` (p256 refuses
/// 0 and values not below `n` when reading them) and `s <= (n-1)/2`.
pub fn verify(key: &EccPublicKey, msg: &[u8], sig: &[u8]) -> bool {
    let Ok(sig) = Signature::from_slice(sig) else {
        return false;
    };
    // `normalize_s` returns a new signature exactly when S is in the high half.
    if sig.normalize_s().is_some() {
        return false;
    }
    VerifyingKey::from(key.inner()).verify(msg, &sig).is_ok()
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

    /// `n - s` for a 32-byte big-endian `s < n`.
    fn negate(s: &[u8]) -> [u8; 32] {
        let mut out = [0u8; 32];
        let mut borrow = 0i16;
        for i in (0..32).rev() {
            let d = i16::from(N[i]) - i16::from(s[i]) - borrow;
            borrow = i16::from(d < 0);
            out[i] = (d + 256 * borrow) as u8;
        }
        out
    }

    fn key(b: u8) -> EccPrivateKey {
        EccPrivateKey::from_bytes(&[b; 32]).unwrap()
    }

    #[test]
    fn signatures_are_deterministic_low_s_and_bound_to_key_and_message() {
        let k = key(1);
        let pk = k.public_key();
        for i in 0..64u8 {
            let msg = [i; 20];
            let sig = sign(&k, &msg);
            assert_eq!(sig, sign(&k, &msg), "RFC 6979 is deterministic");
            assert!(verify(&pk, &msg, &sig));
            assert!(!verify(&pk, &[i ^ 1; 20], &sig));
            assert!(!verify(&key(2).public_key(), &msg, &sig));
            // The same signature with S = n - s: valid ECDSA, refused here.
            let mut high = sig;
            high[32..].copy_from_slice(&negate(&sig[32..]));
            assert_ne!(high, sig);
            assert!(!verify(&pk, &msg, &high), "high S is refused");
        }
    }

    #[test]
    fn out_of_range_and_misshapen_signatures_are_refused() {
        let k = key(3);
        let pk = k.public_key();
        let sig = sign(&k, b"m");
        let mut r0 = sig;
        r0[..32].fill(0);
        assert!(!verify(&pk, b"m", &r0));
        let mut s0 = sig;
        s0[32..].fill(0);
        assert!(!verify(&pk, b"m", &s0));
        let mut rn = sig;
        rn[..32].copy_from_slice(&N);
        assert!(!verify(&pk, b"m", &rn));
        assert!(!verify(&pk, b"m", &sig[..63]));
        assert!(!verify(&pk, b"m", &[sig.as_slice(), &[0]].concat()));
    }
}
