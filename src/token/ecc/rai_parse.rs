//! The `crypto` object of an ecc `.rai` file (`docs/client-config.md`, "ecc files", rules E1-E7): the
//! relay-side form (relay keys and the tenant's signers) and the backend-side form (a signing key and the
//! relay key's public half). Errors are `(field, expected)` pairs that `token/rai_parse.rs` turns into
//! file errors; like every `.rai` error they never repeat a value from the file.

use crate::text::grammar::{is_key_id, is_tenant_id};
use crate::text::strict_json::{Json, Object};
use crate::token::ecc::keys::{EccPrivateKey, EccPublicKey};
use crate::token::keyring::KeyWindow;
use crate::token::rai_window::take_window;

/// The `crypto.method` of ecc files.
pub const ECC_METHOD: &str = "ecc-p256";

/// Rule E5: at most this many signers and previous relay keys; every entry is a key that can open or
/// sign tokens, and a long list is a sign of a mistake.
const MAX_LIST: usize = 16;

type FieldError = (String, String);

/// An ecc `crypto` object, one side or the other (rule E1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EccCrypto {
    Relay(EccRelaySide),
    Backend(EccBackendSide),
}

/// The relay-side file: what opens the tenant's tokens and whose signatures it trusts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EccRelaySide {
    pub tenant_id: String,
    pub relay_key_id: String,
    pub relay_private_key: EccPrivateKey,
    /// Window of `relay_private_key` (the top-level `not_before` / `not_after`).
    pub window: KeyWindow,
    pub previous_relay_keys: Vec<EccRelayKey>,
    pub signers: Vec<EccSigner>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EccRelayKey {
    pub key_id: String,
    pub private_key: EccPrivateKey,
    pub window: KeyWindow,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EccSigner {
    pub signer_id: String,
    pub public_key: EccPublicKey,
    pub window: KeyWindow,
}

/// The backend-side file: what mints the tenant's tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EccBackendSide {
    pub tenant_id: String,
    pub signer_id: String,
    pub signing_key: EccPrivateKey,
    /// Window of `signing_key`: the SDKs and `relayapi mint` refuse to mint outside it.
    pub window: KeyWindow,
    pub relay_key_id: String,
    pub relay_public_key: EccPublicKey,
}

const RELAY_FIELDS: &[&str] = &[
    "method",
    "tenant_id",
    "relay_key_id",
    "relay_private_key",
    "previous_relay_keys",
    "signers",
    "not_before",
    "not_after",
];

const BACKEND_FIELDS: &[&str] = &[
    "method",
    "tenant_id",
    "signer_id",
    "signing_key",
    "relay_key_id",
    "relay_public_key",
    "not_before",
    "not_after",
];

/// Whether a `crypto` value names the ecc method (so its fields are read by [`parse_ecc_crypto`]).
pub fn is_ecc(crypto: &Json) -> bool {
    let Json::Object(members) = crypto else {
        return false;
    };
    members
        .iter()
        .any(|(n, v)| n == "method" && matches!(v, Json::Str(s) if s.as_str() == ECC_METHOD))
}

/// Reads an ecc `crypto` object under rules E1-E7 (and rule 8 for `tenant_id`).
pub fn parse_ecc_crypto(crypto: &Json) -> Result<EccCrypto, FieldError> {
    let Json::Object(members) = crypto else {
        return Err(("crypto".into(), "a JSON object".into()));
    };
    let has = |name: &str| members.iter().any(|(n, _)| n == name);
    // Rule E1: the private key a file holds says which side it is.
    match (has("relay_private_key"), has("signing_key")) {
        (true, true) => Err((
            "crypto.signing_key".into(),
            "either `relay_private_key` (the relay-side file) or `signing_key` (the backend-side file), \
             never both in one file"
                .into(),
        )),
        (true, false) => relay_side(crypto).map(EccCrypto::Relay),
        (false, true) => backend_side(crypto).map(EccCrypto::Backend),
        (false, false) => Err((
            "crypto.relay_private_key".into(),
            "`relay_private_key` (the relay-side file) or `signing_key` (the backend-side file); \
             write both with `relayapi gen-rai --method ecc`"
                .into(),
        )),
    }
}

fn relay_side(crypto: &Json) -> Result<EccRelaySide, FieldError> {
    let mut obj = Object::new(crypto, "crypto", RELAY_FIELDS)?;
    obj.take("method");
    let tenant_id = take_tenant(&mut obj)?;
    let relay_key_id = take_id(&mut obj, "crypto", "relay_key_id")?;
    let relay_private_key = take_private(&mut obj, "crypto", "relay_private_key")?;
    let window = take_window(&mut obj, "crypto")?;
    let mut ids = vec![relay_key_id.clone()];
    let mut publics = vec![relay_private_key.public_key()];

    let mut previous_relay_keys = Vec::new();
    for (i, item) in take_list(&mut obj, "previous_relay_keys", false)?
        .iter()
        .enumerate()
    {
        let path = format!("crypto.previous_relay_keys[{i}]");
        let mut entry = Object::new(
            item,
            &path,
            &["key_id", "private_key", "not_before", "not_after"],
        )?;
        let key_id = take_id(&mut entry, &path, "key_id")?;
        unique(&mut ids, &key_id, &path, "key_id")?;
        let private_key = take_private(&mut entry, &path, "private_key")?;
        publics.push(private_key.public_key());
        let window = take_window(&mut entry, &path)?;
        previous_relay_keys.push(EccRelayKey {
            key_id,
            private_key,
            window,
        });
    }

    let mut signers = Vec::new();
    for (i, item) in take_list(&mut obj, "signers", true)?.iter().enumerate() {
        let path = format!("crypto.signers[{i}]");
        let mut entry = Object::new(
            item,
            &path,
            &["signer_id", "public_key", "not_before", "not_after"],
        )?;
        let signer_id = take_id(&mut entry, &path, "signer_id")?;
        unique(&mut ids, &signer_id, &path, "signer_id")?;
        let public_key = take_public(&mut entry, &path, "public_key")?;
        // Rule E7: a signing key never doubles as a decryption key.
        if publics.contains(&public_key) {
            return Err((
                format!("{path}.public_key"),
                "the public key of a signing key, not of a relay key of this file (a key that \
                 decrypts tokens must never also sign them)"
                    .into(),
            ));
        }
        let window = take_window(&mut entry, &path)?;
        signers.push(EccSigner {
            signer_id,
            public_key,
            window,
        });
    }
    Ok(EccRelaySide {
        tenant_id,
        relay_key_id,
        relay_private_key,
        window,
        previous_relay_keys,
        signers,
    })
}

fn backend_side(crypto: &Json) -> Result<EccBackendSide, FieldError> {
    let mut obj = Object::new(crypto, "crypto", BACKEND_FIELDS)?;
    obj.take("method");
    let tenant_id = take_tenant(&mut obj)?;
    let signer_id = take_id(&mut obj, "crypto", "signer_id")?;
    let signing_key = take_private(&mut obj, "crypto", "signing_key")?;
    let relay_key_id = take_id(&mut obj, "crypto", "relay_key_id")?;
    if relay_key_id == signer_id {
        return Err((
            "crypto.relay_key_id".into(),
            "an id other than `signer_id` (all ids of a file are distinct)".into(),
        ));
    }
    let relay_public_key = take_public(&mut obj, "crypto", "relay_public_key")?;
    // Rule E7.
    if relay_public_key == signing_key.public_key() {
        return Err((
            "crypto.relay_public_key".into(),
            "the relay key's public half, which differs from the public half of `signing_key`"
                .into(),
        ));
    }
    let window = take_window(&mut obj, "crypto")?;
    Ok(EccBackendSide {
        tenant_id,
        signer_id,
        signing_key,
        window,
        relay_key_id,
        relay_public_key,
    })
}

/// Rule E2: the ids of one file are distinct.
fn unique(seen: &mut Vec<String>, id: &str, path: &str, name: &str) -> Result<(), FieldError> {
    if seen.iter().any(|s| s == id) {
        return Err((
            format!("{path}.{name}"),
            "an id that appears only once in this file".into(),
        ));
    }
    seen.push(id.to_owned());
    Ok(())
}

fn take_tenant(obj: &mut Object<'_>) -> Result<String, FieldError> {
    let expected = "1 to 64 characters from A-Z a-z 0-9 . _ -";
    match obj.take("tenant_id") {
        Some(Json::Str(s)) if is_tenant_id(s) => Ok(s.to_string()),
        None => Err((
            "crypto.tenant_id".into(),
            format!("{expected} (this field is required)"),
        )),
        Some(_) => Err(("crypto.tenant_id".into(), expected.into())),
    }
}

fn take_id(obj: &mut Object<'_>, path: &str, name: &str) -> Result<String, FieldError> {
    let expected = "1 to 32 characters from A-Z a-z 0-9 . _ -";
    match obj.take(name) {
        Some(Json::Str(s)) if is_key_id(s) => Ok(s.to_string()),
        None => Err((
            format!("{path}.{name}"),
            format!("{expected} (this field is required)"),
        )),
        Some(_) => Err((format!("{path}.{name}"), expected.into())),
    }
}

fn take_private(obj: &mut Object<'_>, path: &str, name: &str) -> Result<EccPrivateKey, FieldError> {
    let expected = "a P-256 private key: 32 bytes as unpadded base64url (43 characters from \
                    A-Z a-z 0-9 - _), a scalar from 1 to n-1 (generate one with `relayapi gen-rai --method ecc`)";
    take_key(obj, path, name, expected, EccPrivateKey::from_base64url)
}

fn take_public(obj: &mut Object<'_>, path: &str, name: &str) -> Result<EccPublicKey, FieldError> {
    let expected =
        "a P-256 public key: the 65-byte SEC1 uncompressed point 0x04 || X || Y on the curve, \
                    as unpadded base64url (87 characters); compressed points are refused";
    take_key(obj, path, name, expected, EccPublicKey::from_base64url)
}

/// A required key field: a string that `parse` accepts, else an error naming the field and what was
/// `expected` (with "this field is required" when it is absent).
fn take_key<K>(
    obj: &mut Object<'_>,
    path: &str,
    name: &str,
    expected: &str,
    parse: impl FnOnce(&str) -> Option<K>,
) -> Result<K, FieldError> {
    let found = match obj.take(name) {
        Some(Json::Str(s)) => parse(s.as_str()),
        None => {
            return Err((
                format!("{path}.{name}"),
                format!("{expected}; this field is required"),
            ))
        }
        Some(_) => None,
    };
    found.ok_or_else(|| (format!("{path}.{name}"), expected.into()))
}

/// Rule E5: an array of at most 16 entries; `signers` (required) has at least one.
fn take_list<'a>(
    obj: &mut Object<'a>,
    name: &str,
    required: bool,
) -> Result<&'a [Json], FieldError> {
    let field = format!("crypto.{name}");
    let expected = if required {
        "an array of 1 to 16 objects {\"signer_id\": ..., \"public_key\": ...}"
    } else {
        "an array of at most 16 objects {\"key_id\": ..., \"private_key\": ...}"
    };
    match obj.take(name) {
        None if !required => Ok(&[]),
        None => Err((field, format!("{expected} (this field is required)"))),
        Some(Json::Array(items)) if items.len() <= MAX_LIST && (!required || !items.is_empty()) => {
            Ok(items)
        }
        Some(_) => Err((field, expected.into())),
    }
}
