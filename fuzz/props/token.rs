//! Token text to claims (`src/token/format.rs`, `docs/token-format.md` §3-§7) under a fixed key ring, the
//! three keys of `tests/vectors/keys.json`.
//!
//! The first byte picks the mode:
//! - even: the rest is token text, as a client sends it. Whatever `verify` accepts must open with the
//!   reference envelope code below (written from the spec: its own base64url, HKDF and AES-GCM
//!   calls), must re-seal to the very same text (no second spelling of one token: base64 padding,
//!   unused bits, header bytes), its claims must be those of the plaintext, and when the plaintext is
//!   canonical the reference minter (`mint_with`) must give back the same text. Nothing else is
//!   ever accepted: a token the minter did not produce for that key fails.
//! - odd: the next byte picks a key and the rest is a plaintext that the reference code seals with
//!   it, so the fuzzer reaches the claims parser behind the AEAD. `verify` must accept exactly when
//!   the plaintext is claims JSON (`Claims::from_json`) naming the key's tenant and the token fits
//!   the length limit; accepted claims survive canonical re-encoding byte for byte; and changing any
//!   one character of the token makes it invalid.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use hkdf::Hkdf;
use relayapi::token::format::{self, canonical_json, mint_with, Claims, MAX_TOKEN_LEN};
use relayapi::token::rai::Keyring;
use relayapi::token::secret::SecretKey;
use sha2::Sha256;

/// `tests/vectors/keys.json`: key id, tenant, key (unpadded base64url).
pub const KEYS: [(&str, &str, &str); 3] = [
    ("k1", "acme", "OdH0uvCbZNDfk421X_UpgK9lWWVVNyHqkSFMb5oCtg4"),
    (
        "k2-2026.rotated",
        "acme",
        "UcxyB0sPQ8uNWS6Zon2Q3kfUP0LKsMmCmaI4xKXfsjI",
    ),
    (
        "globex",
        "globex-corp",
        "bOg-RLEcQ1mowFb6L8BMOKlVU5X3h8sNPGYKt1OOmTY",
    ),
];

/// The salt the odd mode seals with; the envelope does not depend on its value.
const SALT: [u8; 16] = *b"fuzz-salt-16byte";

pub fn keyring() -> Keyring {
    let mut ring = Keyring::new();
    for (kid, tenant, key) in KEYS {
        ring.insert(kid, tenant, key_of(key)).expect("test key");
    }
    ring
}

fn key_of(b64: &str) -> SecretKey {
    SecretKey::from_base64url(b64).expect("test key")
}

pub fn check(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        if let Ok(text) = std::str::from_utf8(rest) {
            check_text(text);
        }
    } else if let Some((&pick, plaintext)) = rest.split_first() {
        check_sealed(usize::from(pick) % KEYS.len(), plaintext);
    }
}

fn check_text(text: &str) {
    let ring = keyring();
    let verified = format::verify(text, &ring, 0);
    let opened = open(text);
    let expected = opened.as_ref().and_then(|o| {
        let claims = Claims::from_json(std::str::from_utf8(&o.plaintext).ok()?).ok()?;
        (text.len() <= MAX_TOKEN_LEN && claims.tid == KEYS[o.key].1).then_some(claims)
    });
    assert_eq!(
        verified.as_ref().ok(),
        expected.as_ref(),
        "verify vs reference"
    );
    let (Ok(claims), Some(o)) = (verified, opened) else {
        return;
    };
    let (kid, _, key) = KEYS[o.key];
    assert_eq!(seal(kid, key, o.salt, &o.plaintext), text, "one spelling");
    if o.plaintext == canonical_json(&claims).as_bytes() {
        assert_eq!(mint_with(&claims, kid, &key_of(key), o.salt), text);
    }
    check_canonical(&claims);
}

fn check_sealed(key: usize, plaintext: &[u8]) {
    let ring = keyring();
    let (kid, tenant, b64) = KEYS[key];
    let text = seal(kid, b64, SALT, plaintext);
    let expected = std::str::from_utf8(plaintext)
        .ok()
        .and_then(|json| Claims::from_json(json).ok())
        .filter(|c| c.tid == tenant && text.len() <= MAX_TOKEN_LEN);
    let verified = format::verify(&text, &ring, 0);
    assert_eq!(
        verified.as_ref().ok(),
        expected.as_ref(),
        "verify vs reference"
    );
    if let Ok(claims) = verified {
        check_canonical(&claims);
        let minted = mint_with(&claims, kid, &key_of(b64), SALT);
        assert_eq!(format::verify(&minted, &ring, 0).as_ref(), Ok(&claims));
        // One changed character anywhere (prefix, header, salt, ciphertext, tag) is refused.
        let mut bytes = text.clone().into_bytes();
        let at = plaintext.len().wrapping_mul(31) % bytes.len();
        bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(bytes).expect("ASCII");
        assert!(
            format::verify(&tampered, &ring, 0).is_err(),
            "tampered at {at}"
        );
    }
}

/// Canonical JSON is a fixed point: parsing it gives the same claims, writing those gives the same
/// bytes.
pub fn check_canonical(claims: &Claims) {
    let json = canonical_json(claims);
    let again = Claims::from_json(&json).expect("canonical JSON of valid claims parses");
    assert_eq!(&again, claims);
    assert_eq!(canonical_json(&again), json);
}

/// A token opened by the reference code: which key, the salt, the plaintext.
struct Opened {
    key: usize,
    salt: [u8; 16],
    plaintext: Vec<u8>,
}

/// §7 steps 1-5 written from the spec, independently of `src/token/format.rs`.
fn open(text: &str) -> Option<Opened> {
    let blob = b64_decode(text.strip_prefix("rt1.")?)?;
    let (&[version, mode, kid_len], rest) = blob.split_first_chunk::<3>()?;
    let kid_len = usize::from(kid_len);
    if version != 1 || mode != 1 || !(1..=32).contains(&kid_len) || rest.len() < kid_len + 16 + 16 {
        return None;
    }
    let kid = std::str::from_utf8(&rest[..kid_len]).ok()?;
    let key = KEYS.iter().position(|(k, _, _)| *k == kid)?;
    let salt: [u8; 16] = rest[kid_len..kid_len + 16].try_into().ok()?;
    let header_len = 3 + kid_len + 16;
    let (aead_key, nonce) = derive(KEYS[key].2, &salt);
    let plaintext = Aes256Gcm::new(&aead_key.into())
        .decrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: &blob[header_len..],
                aad: &blob[..header_len],
            },
        )
        .ok()?;
    Some(Opened {
        key,
        salt,
        plaintext,
    })
}

/// §6 steps 4-7: seals any plaintext, valid claims or not.
pub fn seal(kid: &str, key: &str, salt: [u8; 16], plaintext: &[u8]) -> String {
    let mut blob = vec![1, 1, u8::try_from(kid.len()).expect("short kid")];
    blob.extend_from_slice(kid.as_bytes());
    blob.extend_from_slice(&salt);
    let (aead_key, nonce) = derive(key, &salt);
    let sealed = Aes256Gcm::new(&aead_key.into())
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad: &blob,
            },
        )
        .expect("AES-GCM seals short plaintexts");
    blob.extend_from_slice(&sealed);
    format!("rt1.{}", b64_encode(&blob))
}

/// §4: HKDF-SHA256(salt, key, "relayapi token v1") gives the AES-256 key and the 96-bit nonce.
fn derive(key: &str, salt: &[u8]) -> ([u8; 32], [u8; 12]) {
    let mut okm = [0u8; 44];
    Hkdf::<Sha256>::new(Some(salt), key_of(key).expose())
        .expand(b"relayapi token v1", &mut okm)
        .expect("44 bytes is a valid HKDF length");
    let mut aead_key = [0u8; 32];
    let mut nonce = [0u8; 12];
    aead_key.copy_from_slice(&okm[..32]);
    nonce.copy_from_slice(&okm[32..]);
    (aead_key, nonce)
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Unpadded base64url (RFC 4648 §5), the obvious way.
pub fn b64_encode(bytes: &[u8]) -> String {
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(char::from(B64[(n >> (18 - 6 * i) & 63) as usize]));
        }
    }
    out
}

/// The inverse of [`b64_encode`]: only its alphabet, no padding, and a text is refused unless it is
/// exactly what `b64_encode` writes for the bytes it decodes to (so unused bits must be zero and a
/// length of 1 mod 4 is impossible).
pub fn b64_decode(text: &str) -> Option<Vec<u8>> {
    let mut bits = 0u32;
    let mut nbits = 0;
    let mut out = Vec::new();
    for c in text.bytes() {
        bits = bits << 6 | B64.iter().position(|&a| a == c)? as u32;
        nbits += 6;
        if nbits >= 8 {
            nbits -= 8;
            out.push((bits >> nbits) as u8);
            bits &= (1 << nbits) - 1;
        }
    }
    (b64_encode(&out) == text).then_some(out)
}
