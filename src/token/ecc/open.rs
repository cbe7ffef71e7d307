//! Verifying an ecc token (`docs/token-format.md` §10.4 steps 2-6) from its decoded blob: the header,
//! the relay key and the signer (in force now, of the same relay-side file), HPKE open, the low-S
//! signature over `header || claims`, the claims and their tenant. Every failure is the one
//! [`InvalidToken`]; steps 1 (text, base64url) and the time checks are shared with the symmetric method.

use zeroize::Zeroizing;

use crate::token::claims::Claims;
use crate::token::ecc::{hpke_suite, layout, signature};
use crate::token::keyring::Keyring;
use crate::token::seal::InvalidToken;

/// The ids of the relay key and the signer that proved a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EccIds {
    pub rkid: String,
    pub skid: String,
}

/// §10.4 steps 2-6 on a decoded blob, with the keys of `ring` in force at `now`.
pub fn open_blob(blob: &[u8], ring: &Keyring, now: u64) -> Result<(Claims, EccIds), InvalidToken> {
    // Step 2.
    let parts = layout::split(blob).ok_or(InvalidToken)?;
    // Step 3: both ids loaded, in force, and of one relay-side file.
    let rkid = std::str::from_utf8(parts.rkid).map_err(|_| InvalidToken)?;
    let skid = std::str::from_utf8(parts.skid).map_err(|_| InvalidToken)?;
    let (tenant, relay_file, relay_key) = ring.relay_key(rkid, now).ok_or(InvalidToken)?;
    let (_, signer_file, signer) = ring.signer(skid, now).ok_or(InvalidToken)?;
    if relay_file != signer_file {
        return Err(InvalidToken);
    }
    // Step 4.
    let plaintext =
        hpke_suite::open(relay_key, parts.enc, parts.header, parts.ct).ok_or(InvalidToken)?;
    // Step 5 (`layout::split` guarantees at least 64 bytes of plaintext).
    let (sig, claims) = plaintext.split_at(signature::SIG_LEN);
    let mut signed = Zeroizing::new(Vec::with_capacity(parts.header.len() + claims.len()));
    signed.extend_from_slice(parts.header);
    signed.extend_from_slice(claims);
    if !signature::verify(signer, &signed, sig) {
        return Err(InvalidToken);
    }
    // Step 6.
    let json = std::str::from_utf8(claims).map_err(|_| InvalidToken)?;
    let claims = Claims::from_json(json).map_err(|_| InvalidToken)?;
    if claims.tid != tenant {
        return Err(InvalidToken);
    }
    Ok((
        claims,
        EccIds {
            rkid: rkid.to_owned(),
            skid: skid.to_owned(),
        },
    ))
}

#[cfg(test)]
mod tests {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;

    use super::*;
    use crate::token::canonical::canonical_json;
    use crate::token::ecc::hpke_suite::derive_key_pair;
    use crate::token::ecc::keys::EccPrivateKey;
    use crate::token::ecc::mint::EccMinter;
    use crate::token::keyring::KeyWindow;
    use crate::token::secret::{SecretKey, SecretString};
    use crate::token::verify::verify;

    const T0: u64 = 1_790_000_000;

    fn key(b: u8) -> EccPrivateKey {
        derive_key_pair(&[b; 32]).0
    }

    fn claims(tid: &str) -> Claims {
        Claims {
            key: Some(SecretString::new("sk-test")),
            max: Some(5),
            ..Claims::new(
                "0123456789abcdef0123456789abcdef".into(),
                tid.into(),
                T0,
                T0 + 3600,
                "openai".into(),
            )
        }
    }

    /// Two relay-side files: acme (relay key r1 = key 1, signer s1 = key 2) and globex (relay key r2 =
    /// key 3, signer s2 = key 4), plus a symmetric key k1 of acme.
    fn ring() -> Keyring {
        let mut ring = Keyring::new();
        let open = KeyWindow::default();
        ring.insert_relay_key("r1", "acme", key(1), open, 0)
            .unwrap();
        ring.insert_signer("s1", "acme", key(2).public_key(), open, 0)
            .unwrap();
        ring.insert_relay_key("r2", "globex", key(3), open, 1)
            .unwrap();
        ring.insert_signer("s2", "globex", key(4).public_key(), open, 1)
            .unwrap();
        ring.insert("k1", "acme", SecretKey::from_bytes([5; 32]))
            .unwrap();
        ring
    }

    fn minter(rkid: &str, relay: u8, skid: &str, signer: u8) -> EccMinter {
        EccMinter {
            rkid: rkid.into(),
            relay_public_key: key(relay).public_key(),
            skid: skid.into(),
            signing_key: key(signer),
        }
    }

    fn blob(token: &str) -> Vec<u8> {
        URL_SAFE_NO_PAD.decode(&token[4..]).unwrap()
    }

    fn text(blob: &[u8]) -> String {
        format!("rt1.{}", URL_SAFE_NO_PAD.encode(blob))
    }

    #[test]
    fn round_trip_and_ids() {
        let ring = ring();
        let t = minter("r1", 1, "s1", 2).mint_with(&claims("acme"), &[9; 32]);
        let (c, ids) = open_blob(&blob(&t), &ring, T0).unwrap();
        assert_eq!(c, claims("acme"));
        assert_eq!((ids.rkid.as_str(), ids.skid.as_str()), ("r1", "s1"));
        assert_eq!(verify(&t, &ring, T0), Ok(claims("acme")));
        assert_eq!(
            t.len(),
            crate::token::ecc::layout::token_len(2, 2, canonical_json(&claims("acme")).len())
        );
        let t2 = minter("r2", 3, "s2", 4).mint_with(&claims("globex"), &[9; 32]);
        assert!(verify(&t2, &ring, T0).is_ok());
    }

    #[test]
    fn strangers_other_tenants_and_public_key_holders_cannot_mint() {
        let ring = ring();
        let c = claims("acme");
        let refused = [
            // Signed by an unlisted key under a listed signer id.
            minter("r1", 1, "s1", 7).mint_with(&c, &[1; 32]),
            // Globex's signer on acme's relay key (another file).
            minter("r1", 1, "s2", 4).mint_with(&c, &[1; 32]),
            // Acme's signer sealing to globex's relay key.
            minter("r2", 3, "s1", 2).mint_with(&c, &[1; 32]),
            // Sealed to a key that is not the relay's under the relay key id.
            minter("r1", 8, "s1", 2).mint_with(&c, &[1; 32]),
            // Unknown ids.
            minter("r9", 1, "s1", 2).mint_with(&c, &[1; 32]),
            minter("r1", 1, "s9", 2).mint_with(&c, &[1; 32]),
            // A symmetric key id named as relay key or signer.
            minter("k1", 1, "s1", 2).mint_with(&c, &[1; 32]),
            minter("r1", 1, "k1", 2).mint_with(&c, &[1; 32]),
            // A relay key id named as signer (its public half signs nothing).
            minter("r1", 1, "r1", 1).mint_with(&c, &[1; 32]),
        ];
        for (i, t) in refused.iter().enumerate() {
            assert_eq!(verify(t, &ring, T0), Err(InvalidToken), "case {i}");
        }
        // Authentic under acme's file but claiming globex.
        let t = minter("r1", 1, "s1", 2).mint_with(&claims("globex"), &[1; 32]);
        assert_eq!(verify(&t, &ring, T0), Err(InvalidToken));
    }

    #[test]
    fn every_byte_of_the_blob_matters() {
        let ring = ring();
        let t = minter("r1", 1, "s1", 2).mint_with(&claims("acme"), &[2; 32]);
        let b = blob(&t);
        for i in 0..b.len() {
            for bit in [0x01u8, 0x80] {
                let mut m = b.clone();
                m[i] ^= bit;
                assert_eq!(verify(&text(&m), &ring, T0), Err(InvalidToken), "byte {i}");
            }
        }
        for cut in 0..b.len() {
            assert_eq!(verify(&text(&b[..cut]), &ring, T0), Err(InvalidToken));
        }
        let mut longer = b.clone();
        longer.push(0);
        assert_eq!(verify(&text(&longer), &ring, T0), Err(InvalidToken));
    }

    /// Seals `sig || claims` exactly as given, to test what the signature check refuses.
    fn sealed_with_sig(sig: &[u8], claims: &[u8]) -> String {
        let header = crate::token::ecc::layout::header("r1", "s1");
        let pt = [sig, claims].concat();
        let (enc, ct) =
            crate::token::ecc::hpke_suite::seal(&key(1).public_key(), &header, &pt, &[4; 32]);
        text(&[header.as_slice(), &enc, &ct].concat())
    }

    #[test]
    fn high_s_zero_and_misplaced_signatures_are_refused() {
        let ring = ring();
        let json = canonical_json(&claims("acme"));
        let header = crate::token::ecc::layout::header("r1", "s1");
        let signed = [header.as_slice(), json.as_bytes()].concat();
        let sig = crate::token::ecc::signature::sign(&key(2), &signed);
        assert!(verify(&sealed_with_sig(&sig, json.as_bytes()), &ring, T0).is_ok());
        // High S: the same signature with s replaced by n - s.
        use p256::elliptic_curve::PrimeField;
        let s = p256::Scalar::from_repr(*p256::FieldBytes::from_slice(&sig[32..])).unwrap();
        let mut high = sig;
        high[32..].copy_from_slice(&(-s).to_bytes());
        assert_eq!(
            verify(&sealed_with_sig(&high, json.as_bytes()), &ring, T0),
            Err(InvalidToken)
        );
        let mut r0 = sig;
        r0[..32].fill(0);
        let mut s0 = sig;
        s0[32..].fill(0);
        for bad in [r0, s0] {
            assert_eq!(
                verify(&sealed_with_sig(&bad, json.as_bytes()), &ring, T0),
                Err(InvalidToken)
            );
        }
        // A signature over the claims alone (without the header).
        let bare = crate::token::ecc::signature::sign(&key(2), json.as_bytes());
        assert_eq!(
            verify(&sealed_with_sig(&bare, json.as_bytes()), &ring, T0),
            Err(InvalidToken)
        );
        // Claims that are authentic but break §5 are refused like forged ones.
        let bad_json = json.replace("\"max\":5", "\"max\":0");
        let signed = [header.as_slice(), bad_json.as_bytes()].concat();
        let sig = crate::token::ecc::signature::sign(&key(2), &signed);
        assert_eq!(
            verify(&sealed_with_sig(&sig, bad_json.as_bytes()), &ring, T0),
            Err(InvalidToken)
        );
    }

    #[test]
    fn enc_must_be_an_uncompressed_point_on_the_curve() {
        let ring = ring();
        let t = minter("r1", 1, "s1", 2).mint_with(&claims("acme"), &[3; 32]);
        let b = blob(&t);
        let enc_at = crate::token::ecc::layout::header("r1", "s1").len();
        // Identity-like and off-curve encodings in the enc slot.
        let mut zero = b.clone();
        zero[enc_at..enc_at + 65].fill(0);
        let mut compressed = b.clone();
        compressed[enc_at] = 2;
        let mut off = b.clone();
        off[enc_at + 64] ^= 1;
        for m in [zero, compressed, off] {
            assert_eq!(verify(&text(&m), &ring, T0), Err(InvalidToken));
        }
    }

    #[test]
    fn both_windows_are_checked() {
        let mut ring = Keyring::new();
        let w = |nb, na| KeyWindow {
            not_before: Some(nb),
            not_after: Some(na),
        };
        ring.insert_relay_key("r1", "acme", key(1), w(T0 - 10, T0 + 10), 0)
            .unwrap();
        ring.insert_signer("s1", "acme", key(2).public_key(), w(T0 - 5, T0 + 5), 0)
            .unwrap();
        let t = minter("r1", 1, "s1", 2).mint_with(&claims("acme"), &[5; 32]);
        for (now, ok) in [
            (T0 - 6, false),
            (T0 - 5, true),
            (T0 + 4, true),
            (T0 + 5, false),
        ] {
            assert_eq!(verify(&t, &ring, now).is_ok(), ok, "{now}");
        }
    }
}
