//! Ecc token text to claims (`src/token/ecc/`, `docs/token-format.md` §10) under the key ring of
//! `tests/vectors/ecc.json`: one relay-side file per tenant (acme: relay keys `relay-acme-2026-12`,
//! `relay-acme-2026-06`, signers `acme-backend-1`, `acme-backend-2`; globex-corp: `relay-globex`,
//! `globex-backend`).
//!
//! The first byte picks the mode:
//! - even: the rest is token text. Whatever `verify` accepts must be an ecc blob whose text is its one
//!   canonical spelling, whose relay key and signer are of one tenant, whose plaintext (opened here
//!   with rust-hpke directly, not the relay's wrapper) starts with a low-S signature that p256 verifies
//!   over `header || claims` under the named signer's key, and whose claims name that tenant.
//! - odd: the next byte picks a relay key and a signer (cross-tenant pairs included), the next 32 bytes
//!   are `ikm_e` and the rest is a plaintext that the minter signs and seals as claims. `verify` must
//!   accept exactly when the pair is of one tenant, the plaintext is claims JSON naming it and the
//!   token fits the length limit; changing any one character of an accepted token makes it invalid.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hpke::Deserializable;
use p256::ecdsa::signature::Verifier;
use relayapi::token::ecc::keys::{EccPrivateKey, EccPublicKey};
use relayapi::token::ecc::mint::EccMinter;
use relayapi::token::format::{self, Claims, MAX_TOKEN_LEN};
use relayapi::token::keyring::KeyWindow;
use relayapi::token::rai::Keyring;

/// Relay keys of `tests/vectors/ecc.json`: id, tenant, private key.
const RELAY_KEYS: [(&str, &str, &str); 3] = [
    (
        "relay-acme-2026-12",
        "acme",
        "4NdjXzP-jFFp-4Mv7YNmr37yyA2bgiF2D7zcTCxLd24",
    ),
    (
        "relay-acme-2026-06",
        "acme",
        "SBcfoi2E5qGG2xTRuljZbZwh7RzjR0CJtWms7M8FGno",
    ),
    (
        "relay-globex",
        "globex-corp",
        "_-zgK7lPYnr69VqJ7Q8MF8E8MbEoF7x95n3pVoZrqKU",
    ),
];

/// Signers of `tests/vectors/ecc.json`: id, tenant, signing key.
const SIGNERS: [(&str, &str, &str); 3] = [
    (
        "acme-backend-1",
        "acme",
        "c_QSdFUGMBMi7DFP3waqyLNYUD6xHFpYp6rB1kKYLCg",
    ),
    (
        "acme-backend-2",
        "acme",
        "gQTT-di0jqSychZrwLaE9sOWkaMLc5J4ckGZ_-Vorr0",
    ),
    (
        "globex-backend",
        "globex-corp",
        "tVf5KNPlCmXF6ZSA3EqladHH8m6d2OVLW43ZfB9sw2w",
    ),
];

fn private(b64: &str) -> EccPrivateKey {
    EccPrivateKey::from_base64url(b64).expect("vector key")
}

/// One file per tenant: acme is file 0, globex-corp file 1.
fn file_of(tenant: &str) -> u32 {
    u32::from(tenant != "acme")
}

pub fn keyring() -> Keyring {
    let mut ring = Keyring::new();
    for (id, tenant, key) in RELAY_KEYS {
        ring.insert_relay_key(
            id,
            tenant,
            private(key),
            KeyWindow::default(),
            file_of(tenant),
        )
        .expect("vector key");
    }
    for (id, tenant, key) in SIGNERS {
        ring.insert_signer(
            id,
            tenant,
            private(key).public_key(),
            KeyWindow::default(),
            file_of(tenant),
        )
        .expect("vector key");
    }
    ring
}

pub fn check(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        if let Ok(text) = std::str::from_utf8(rest) {
            check_text(text);
        }
    } else if let Some((&pick, rest)) = rest.split_first() {
        if rest.len() >= 32 {
            let (ikm, plaintext) = rest.split_at(32);
            check_sealed(pick, ikm.try_into().expect("32 bytes"), plaintext);
        }
    }
}

fn check_text(text: &str) {
    let ring = keyring();
    let Ok(claims) = format::verify(text, &ring, 0) else {
        return;
    };
    // Accepted: one spelling, and every part checked again here by other code.
    let blob = URL_SAFE_NO_PAD
        .decode(text.strip_prefix("rt1.").expect("prefix"))
        .expect("base64url");
    assert_eq!(format!("rt1.{}", URL_SAFE_NO_PAD.encode(&blob)), text);
    assert!(text.len() <= MAX_TOKEN_LEN);
    assert_eq!(&blob[..2], &[1, 2], "an ecc blob");
    let rkid_len = usize::from(blob[2]);
    let rkid = std::str::from_utf8(&blob[3..3 + rkid_len]).expect("rkid");
    let skid_len = usize::from(blob[3 + rkid_len]);
    let header_len = 4 + rkid_len + skid_len;
    let skid = std::str::from_utf8(&blob[4 + rkid_len..header_len]).expect("skid");
    let relay = RELAY_KEYS
        .iter()
        .find(|k| k.0 == rkid)
        .expect("a loaded relay key");
    let signer = SIGNERS
        .iter()
        .find(|k| k.0 == skid)
        .expect("a loaded signer");
    assert_eq!(relay.1, signer.1, "one tenant's file");
    assert_eq!(claims.tid, relay.1);
    type Kem = hpke::kem::DhP256HkdfSha256;
    let sk = <Kem as hpke::Kem>::PrivateKey::from_bytes(private(relay.2).expose_bytes().as_ref())
        .expect("key");
    let enc = <Kem as hpke::Kem>::EncappedKey::from_bytes(&blob[header_len..header_len + 65])
        .expect("enc on the curve");
    let plaintext = hpke::single_shot_open::<hpke::aead::AesGcm256, hpke::kdf::HkdfSha256, Kem>(
        &hpke::OpModeR::Base,
        &sk,
        &enc,
        &blob[..header_len],
        &blob[header_len + 65..],
        b"",
    )
    .expect("rust-hpke opens what the relay accepted");
    let (sig, json) = plaintext.split_at(64);
    let sig = p256::ecdsa::Signature::from_slice(sig).expect("r, s in range");
    assert!(sig.normalize_s().is_none(), "low S");
    let vk = p256::ecdsa::VerifyingKey::from_sec1_bytes(&private(signer.2).public_key().to_sec1())
        .expect("point");
    let signed = [&blob[..header_len], json].concat();
    assert!(
        vk.verify(&signed, &sig).is_ok(),
        "signature over header || claims"
    );
    assert_eq!(
        Claims::from_json(std::str::from_utf8(json).expect("UTF-8")),
        Ok(claims)
    );
}

fn check_sealed(pick: u8, ikm_e: [u8; 32], plaintext: &[u8]) {
    let relay = RELAY_KEYS[usize::from(pick % 3)];
    let signer = SIGNERS[usize::from(pick / 3 % 3)];
    let minter = EccMinter {
        rkid: relay.0.into(),
        relay_public_key: EccPublicKey::from_sec1(&private(relay.2).public_key().to_sec1())
            .expect("point"),
        skid: signer.0.into(),
        signing_key: private(signer.2),
    };
    let text = minter.seal(plaintext, &ikm_e);
    let ring = keyring();
    let verified = format::verify(&text, &ring, 0);
    let expected = std::str::from_utf8(plaintext)
        .ok()
        .and_then(|p| Claims::from_json(p).ok())
        .filter(|c| relay.1 == signer.1 && c.tid == relay.1 && text.len() <= MAX_TOKEN_LEN);
    assert_eq!(verified.as_ref().ok(), expected.as_ref(), "verify vs rule");
    if verified.is_ok() {
        // One changed character anywhere after the prefix makes the token invalid.
        let bytes = text.as_bytes();
        let at = 4 + usize::from(pick) * 7 % (bytes.len() - 4);
        let mut changed = bytes.to_vec();
        changed[at] = if changed[at] == b'A' { b'B' } else { b'A' };
        let changed = String::from_utf8(changed).expect("ASCII");
        assert!(
            format::verify(&changed, &ring, 0).is_err(),
            "changed at {at}"
        );
    }
}
