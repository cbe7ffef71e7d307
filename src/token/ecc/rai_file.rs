//! Making ecc `.rai` files (`relayapi gen-rai --method ecc`, `docs/client-config.md` "ecc files"): a
//! fresh relay key and signing key written as the relay-side and the backend-side file, or, for a tenant
//! that makes its own signing key, only the backend-side file for a relay key it was given. Keys come
//! from the caller's RNG; parsing the files back is `rai_parse.rs`'s.

use serde::Serialize;
use zeroize::Zeroizing;

use crate::token::ecc::hpke_suite::{derive_key_pair, IKM_LEN};
use crate::token::ecc::keys::{EccPrivateKey, EccPublicKey};
use crate::token::ecc::rai_parse::{
    EccBackendSide, EccCrypto, EccRelaySide, EccSigner, ECC_METHOD,
};
use crate::token::keyring::KeyWindow;
use crate::token::rai_parse::{EccRaiConfig, RaiServer};

/// A fresh P-256 key pair: RFC 9180 `DeriveKeyPair` of 32 bytes from `rng` (the same construction the
/// ephemeral keys use; any 32 random bytes give a valid scalar).
pub fn new_key(rng: &mut dyn FnMut(&mut [u8])) -> EccPrivateKey {
    let mut ikm = Zeroizing::new([0u8; IKM_LEN]);
    rng(ikm.as_mut());
    derive_key_pair(ikm.as_ref()).0
}

/// The two files of a new ecc tenant: (relay-side, backend-side), with a fresh relay key and signing
/// key. Run each through [`to_json_pretty`] and `parse_rai_any` to check operator-supplied values.
pub fn generate_ecc_pair(
    server: &RaiServer,
    tenant: &str,
    relay_key_id: &str,
    signer_id: &str,
    rng: &mut dyn FnMut(&mut [u8]),
) -> (EccRaiConfig, EccRaiConfig) {
    let relay_key = new_key(rng);
    let relay_public_key = relay_key.public_key();
    let backend = generate_ecc_backend(
        server,
        tenant,
        relay_key_id,
        &relay_public_key,
        signer_id,
        rng,
    );
    let EccCrypto::Backend(b) = &backend.crypto else {
        unreachable!("generate_ecc_backend makes a backend-side file")
    };
    let relay = EccRaiConfig {
        version: 1,
        server: server.clone(),
        crypto: EccCrypto::Relay(EccRelaySide {
            tenant_id: tenant.to_owned(),
            relay_key_id: relay_key_id.to_owned(),
            relay_private_key: relay_key,
            window: KeyWindow::default(),
            previous_relay_keys: Vec::new(),
            signers: vec![signer_entry(b)],
        }),
    };
    (relay, backend)
}

/// A backend-side file with a fresh signing key, for the relay key `relay_key_id` / `relay_public_key`.
pub fn generate_ecc_backend(
    server: &RaiServer,
    tenant: &str,
    relay_key_id: &str,
    relay_public_key: &EccPublicKey,
    signer_id: &str,
    rng: &mut dyn FnMut(&mut [u8]),
) -> EccRaiConfig {
    EccRaiConfig {
        version: 1,
        server: server.clone(),
        crypto: EccCrypto::Backend(EccBackendSide {
            tenant_id: tenant.to_owned(),
            signer_id: signer_id.to_owned(),
            signing_key: new_key(rng),
            window: KeyWindow::default(),
            relay_key_id: relay_key_id.to_owned(),
            relay_public_key: relay_public_key.clone(),
        }),
    }
}

/// The relay-side `signers` entry for a backend-side file: id and public key, no secret.
pub fn signer_entry(backend: &EccBackendSide) -> EccSigner {
    EccSigner {
        signer_id: backend.signer_id.clone(),
        public_key: backend.signing_key.public_key(),
        window: KeyWindow::default(),
    }
}

/// A `signers` entry as the JSON object an operator pastes into the relay-side file.
pub fn signer_entry_json(s: &EccSigner) -> String {
    let out = OutSigner {
        signer_id: &s.signer_id,
        public_key: &s.public_key.to_base64url(),
        not_before: s.window.not_before,
        not_after: s.window.not_after,
    };
    serde_json::to_string_pretty(&out).expect("a signer entry always serialises")
}

#[derive(Serialize)]
struct OutFile<'a, C: Serialize> {
    version: u32,
    server: OutServer<'a>,
    crypto: C,
}

#[derive(Serialize)]
struct OutServer<'a> {
    scheme: &'a str,
    host: &'a str,
    port: u16,
    base_path: &'a str,
}

#[derive(Serialize)]
struct OutRelay<'a> {
    method: &'a str,
    tenant_id: &'a str,
    relay_key_id: &'a str,
    relay_private_key: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    not_before: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    not_after: Option<u64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    previous_relay_keys: Vec<OutRelayKey<'a>>,
    signers: Vec<OutSigner<'a>>,
}

#[derive(Serialize)]
struct OutRelayKey<'a> {
    key_id: &'a str,
    private_key: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    not_before: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    not_after: Option<u64>,
}

#[derive(Serialize)]
struct OutSigner<'a> {
    signer_id: &'a str,
    public_key: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    not_before: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    not_after: Option<u64>,
}

#[derive(Serialize)]
struct OutBackend<'a> {
    method: &'a str,
    tenant_id: &'a str,
    signer_id: &'a str,
    signing_key: &'a str,
    relay_key_id: &'a str,
    relay_public_key: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    not_before: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    not_after: Option<u64>,
}

/// The file form of an ecc `.rai`: pretty JSON, keys as unpadded base64url, a trailing newline. Holds
/// a private key in clear (either side); write it with owner-only permissions.
pub fn to_json_pretty(r: &EccRaiConfig) -> String {
    let server = OutServer {
        scheme: &r.server.scheme,
        host: &r.server.host,
        port: r.server.port,
        base_path: &r.server.base_path,
    };
    // Serialised text of keys is built first so the borrowed output structs can point at it.
    let mut text = match &r.crypto {
        EccCrypto::Relay(c) => {
            let key = c.relay_private_key.to_base64url();
            let previous: Vec<_> = c
                .previous_relay_keys
                .iter()
                .map(|p| (p, p.private_key.to_base64url()))
                .collect();
            let signers: Vec<_> = c
                .signers
                .iter()
                .map(|s| (s, s.public_key.to_base64url()))
                .collect();
            let crypto = OutRelay {
                method: ECC_METHOD,
                tenant_id: &c.tenant_id,
                relay_key_id: &c.relay_key_id,
                relay_private_key: &key,
                not_before: c.window.not_before,
                not_after: c.window.not_after,
                previous_relay_keys: previous
                    .iter()
                    .map(|(p, k)| OutRelayKey {
                        key_id: &p.key_id,
                        private_key: k,
                        not_before: p.window.not_before,
                        not_after: p.window.not_after,
                    })
                    .collect(),
                signers: signers
                    .iter()
                    .map(|(s, k)| OutSigner {
                        signer_id: &s.signer_id,
                        public_key: k,
                        not_before: s.window.not_before,
                        not_after: s.window.not_after,
                    })
                    .collect(),
            };
            to_text(&OutFile {
                version: r.version,
                server,
                crypto,
            })
        }
        EccCrypto::Backend(c) => {
            let key = c.signing_key.to_base64url();
            let crypto = OutBackend {
                method: ECC_METHOD,
                tenant_id: &c.tenant_id,
                signer_id: &c.signer_id,
                signing_key: &key,
                relay_key_id: &c.relay_key_id,
                relay_public_key: &c.relay_public_key.to_base64url(),
                not_before: c.window.not_before,
                not_after: c.window.not_after,
            };
            to_text(&OutFile {
                version: r.version,
                server,
                crypto,
            })
        }
    };
    text.push('\n');
    text
}

fn to_text<T: Serialize>(v: &T) -> String {
    // Plain structs of strings and integers always serialise.
    serde_json::to_string_pretty(v).expect("a .rai always serialises")
}
