//! Admin API request signatures (`docs/admin-api.md`): the admin key derived from a tenant key, the
//! `Authorization: RelayAPI-HMAC-SHA256 ...` header, the `RelayAPI-ECDSA-P256-SHA256` header of ecc
//! tenants (signed with a signer's key, "ecc tenants"), and checking a request against either.
//!
//! Pure code: the caller passes the header bytes, the request line parts, the body and `now`. Routing,
//! the usage store and the JSON answers belong to the server side; like token checks, every failure here
//! is one opaque error so that a caller learns nothing about which part was wrong.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::token::ecc::keys::EccPrivateKey;
use crate::token::ecc::signature;
pub use crate::token::format::InvalidToken;
use crate::token::rai::{is_valid_key_id, Keyring};
use crate::token::secret::SecretKey;

/// The authorization scheme name (compared case-insensitively, as RFC 9110 §11.1 requires).
pub const SCHEME: &str = "RelayAPI-HMAC-SHA256";

/// The scheme of ecc tenants: an ECDSA-P256-SHA256 signature (low S) by a signer of the relay-side file.
pub const SCHEME_ECDSA: &str = "RelayAPI-ECDSA-P256-SHA256";

/// Which of the two schemes a header uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminScheme {
    /// HMAC-SHA256 under the admin key derived from a symmetric tenant key.
    Hmac,
    /// ECDSA by an ecc signer.
    Ecdsa,
}

impl AdminScheme {
    /// The only signature length accepted for the scheme.
    fn sig_len(self) -> usize {
        match self {
            AdminScheme::Hmac => SIG_LEN,
            AdminScheme::Ecdsa => signature::SIG_LEN,
        }
    }
}

/// How far a request's `ts` may be from the relay's clock, in seconds, either way. Bounds how long a
/// captured request can be replayed.
pub const MAX_CLOCK_DIFF_SECS: u64 = 300;

/// HKDF info string of the admin key.
const ADMIN_INFO: &[u8] = b"relayapi admin v1";

/// HMAC-SHA256 output length; the only signature length accepted.
const SIG_LEN: usize = 32;

/// Longest accepted header value: the scheme, a 32-byte kid, 20 digits and an 86-character ECDSA
/// signature fit in well under this; anything longer is not ours and is refused before any work.
const MAX_HEADER_LEN: usize = 256;

/// `HKDF-SHA256(IKM = tenant_key, salt = "", info = "relayapi admin v1", L = 32)`. A separate key means an
/// admin signature can never be mistaken for a token and reveals nothing about the tenant key.
pub fn admin_key(tenant_key: &SecretKey) -> [u8; 32] {
    let mut out = [0u8; 32];
    // 32 bytes is far below HKDF-SHA256's limit, so expand cannot fail.
    let expanded = Hkdf::<Sha256>::new(Some(&[]), tenant_key.expose()).expand(ADMIN_INFO, &mut out);
    debug_assert!(expanded.is_ok());
    out
}

/// The parts of an `Authorization: RelayAPI-HMAC-SHA256 kid=...,ts=...,sig=...` header (or
/// `RelayAPI-ECDSA-P256-SHA256` with the same parameters).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminAuth {
    pub scheme: AdminScheme,
    pub kid: String,
    pub ts: u64,
    /// The decoded MAC (32 bytes) or ECDSA signature (64 bytes, `r || s`).
    pub sig: Vec<u8>,
}

/// Parses the header value. Parameters may come in any order, each exactly once, separated by commas
/// with optional spaces or tabs around them (RFC 9110 §5.6.1 list syntax); unknown parameters, quoted
/// values, `ts` with a sign or leading zeros (the MAC covers its decimal text, so only one spelling may
/// exist) and signatures that are not 32 (HMAC) or 64 (ECDSA) bytes of canonical unpadded base64url are
/// refused.
pub fn parse_authorization(value: &[u8]) -> Option<AdminAuth> {
    if value.len() > MAX_HEADER_LEN {
        return None;
    }
    let value = std::str::from_utf8(value).ok()?;
    let (scheme, params) = value.trim_matches(is_ows).split_once(' ')?;
    let scheme = if scheme.eq_ignore_ascii_case(SCHEME) {
        AdminScheme::Hmac
    } else if scheme.eq_ignore_ascii_case(SCHEME_ECDSA) {
        AdminScheme::Ecdsa
    } else {
        return None;
    };
    let (mut kid, mut ts, mut sig) = (None, None, None);
    for param in params.split(',') {
        let (name, v) = param.trim_matches(is_ows).split_once('=')?;
        let slot = match name {
            "kid" => &mut kid,
            "ts" => &mut ts,
            "sig" => &mut sig,
            _ => return None,
        };
        if slot.replace(v).is_some() {
            return None;
        }
    }
    let (kid, ts, sig) = (kid?, ts?, sig?);
    if !is_valid_key_id(kid) {
        return None;
    }
    let ts_ok = (1..=20).contains(&ts.len())
        && ts.bytes().all(|b| b.is_ascii_digit())
        && (ts == "0" || !ts.starts_with('0'));
    if !ts_ok {
        return None;
    }
    let ts: u64 = ts.parse().ok()?;
    let sig = URL_SAFE_NO_PAD.decode(sig).ok()?;
    if sig.len() != scheme.sig_len() {
        return None;
    }
    Some(AdminAuth {
        scheme,
        kid: kid.to_owned(),
        ts,
        sig,
    })
}

fn is_ows(c: char) -> bool {
    c == ' ' || c == '\t'
}

/// The signed string of both schemes: `METHOD \n TARGET \n TS \n hex(SHA-256(body))`.
fn signed_string(method: &str, target: &str, body: &[u8], ts: u64) -> String {
    let mut s = format!("{method}\n{target}\n{ts}\n");
    for b in Sha256::digest(body) {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// HMAC of the signed string, ready to finalize or verify.
fn mac(key: &SecretKey, method: &str, target: &str, body: &[u8], ts: u64) -> Hmac<Sha256> {
    let admin = Zeroizing::new(admin_key(key));
    // HMAC takes keys of any length.
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(admin.as_ref()).expect("HMAC accepts any key length");
    mac.update(signed_string(method, target, body, ts).as_bytes());
    mac
}

/// Checks a signed admin request and returns the signing key's tenant id. `method` and `target` are as
/// received (method case-sensitive, target = path and query exactly as sent), `now` is UTC seconds.
/// Fails with the one opaque error when the header does not parse, the key id is not loaded (for ECDSA:
/// as a signer) or its key is outside its validity window at `now`, `ts` is more than
/// [`MAX_CLOCK_DIFF_SECS`] away from `now`, or the MAC differs (compared in constant time) or the ECDSA
/// signature does not verify (low S only).
pub fn verify_request(
    keyring: &Keyring,
    auth_header: &[u8],
    method: &str,
    target: &str,
    body: &[u8],
    now: u64,
) -> Result<String, InvalidToken> {
    let auth = parse_authorization(auth_header).ok_or(InvalidToken)?;
    if now.abs_diff(auth.ts) > MAX_CLOCK_DIFF_SECS {
        return Err(InvalidToken);
    }
    let tenant = match auth.scheme {
        AdminScheme::Hmac => {
            let (tenant, key) = keyring.get(&auth.kid, now).ok_or(InvalidToken)?;
            mac(key, method, target, body, auth.ts)
                .verify_slice(&auth.sig)
                .map_err(|_| InvalidToken)?;
            tenant
        }
        AdminScheme::Ecdsa => {
            let (tenant, _, key) = keyring.signer(&auth.kid, now).ok_or(InvalidToken)?;
            let signed = signed_string(method, target, body, auth.ts);
            if !signature::verify(key, signed.as_bytes(), &auth.sig) {
                return Err(InvalidToken);
            }
            tenant
        }
    };
    Ok(tenant.to_owned())
}

/// The `Authorization` header value for a request (what the SDKs send; used by tests and tools).
pub fn sign_request(
    kid: &str,
    key: &SecretKey,
    method: &str,
    target: &str,
    body: &[u8],
    ts: u64,
) -> String {
    let tag = mac(key, method, target, body, ts).finalize().into_bytes();
    format!(
        "{SCHEME} kid={kid},ts={ts},sig={}",
        URL_SAFE_NO_PAD.encode(tag)
    )
}

/// The `Authorization` header value of an ecc tenant's request, signed with the signer's key.
pub fn sign_request_ecdsa(
    signer_id: &str,
    key: &EccPrivateKey,
    method: &str,
    target: &str,
    body: &[u8],
    ts: u64,
) -> String {
    let sig = signature::sign(key, signed_string(method, target, body, ts).as_bytes());
    format!(
        "{SCHEME_ECDSA} kid={signer_id},ts={ts},sig={}",
        URL_SAFE_NO_PAD.encode(sig)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_790_000_000;
    const TARGET: &str = "/admin/v1/tokens/74281f178e39643b62ddd692c98d6547/revoke";

    fn key() -> SecretKey {
        SecretKey::from_base64url("OdH0uvCbZNDfk421X_UpgK9lWWVVNyHqkSFMb5oCtg4").unwrap()
    }

    fn ring() -> Keyring {
        let mut ring = Keyring::new();
        ring.insert("k1", "acme", key()).unwrap();
        ring.insert("globex", "globex-corp", SecretKey::from_bytes([9; 32]))
            .unwrap();
        ring
    }

    /// Values computed independently with Python's hmac and hashlib (HKDF written out by hand), for the
    /// k1 key of tests/vectors/keys.json.
    #[test]
    fn matches_an_independent_implementation() {
        let admin = admin_key(&key());
        let hex: String = admin.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "b2a091b9062ac518a2398d9fae54ade0db8ec35cf61e48418900e701301fd841"
        );
        let header = sign_request(
            "k1",
            &key(),
            "POST",
            "/admin/v1/revoke-before",
            b"{\"before\":1790000000}",
            NOW,
        );
        assert_eq!(header, "RelayAPI-HMAC-SHA256 kid=k1,ts=1790000000,sig=mtr-gjK6MvHeYFtA9_A0NW9ENJ4Hrl_8cQhx_758fs0");
    }

    #[test]
    fn sign_then_verify() {
        let header = sign_request("k1", &key(), "POST", TARGET, b"", NOW);
        assert_eq!(
            verify_request(&ring(), header.as_bytes(), "POST", TARGET, b"", NOW),
            Ok("acme".into())
        );
        let body = br#"{"before":1790000000}"#;
        let header = sign_request(
            "globex",
            &SecretKey::from_bytes([9; 32]),
            "POST",
            "/admin/v1/revoke-before",
            body,
            NOW,
        );
        let tenant = verify_request(
            &ring(),
            header.as_bytes(),
            "POST",
            "/admin/v1/revoke-before",
            body,
            NOW,
        );
        assert_eq!(tenant, Ok("globex-corp".into()));
    }

    #[test]
    fn every_signed_part_matters() {
        let ring = ring();
        let header = sign_request("k1", &key(), "GET", TARGET, b"", NOW);
        let h = header.as_bytes();
        assert!(verify_request(&ring, h, "GET", TARGET, b"", NOW).is_ok());
        assert_eq!(
            verify_request(&ring, h, "POST", TARGET, b"", NOW),
            Err(InvalidToken)
        );
        assert_eq!(
            verify_request(&ring, h, "get", TARGET, b"", NOW),
            Err(InvalidToken)
        );
        assert_eq!(
            verify_request(&ring, h, "GET", &format!("{TARGET}?x=1"), b"", NOW),
            Err(InvalidToken)
        );
        assert_eq!(
            verify_request(&ring, h, "GET", TARGET, b"x", NOW),
            Err(InvalidToken)
        );
        // Same MAC presented with another timestamp.
        let shifted = header.replace(&format!("ts={NOW}"), &format!("ts={}", NOW + 1));
        assert_eq!(
            verify_request(&ring, shifted.as_bytes(), "GET", TARGET, b"", NOW),
            Err(InvalidToken)
        );
        // Same MAC under another key id.
        let other = header.replace("kid=k1", "kid=globex");
        assert_eq!(
            verify_request(&ring, other.as_bytes(), "GET", TARGET, b"", NOW),
            Err(InvalidToken)
        );
        let unknown = sign_request("k9", &key(), "GET", TARGET, b"", NOW);
        assert_eq!(
            verify_request(&ring, unknown.as_bytes(), "GET", TARGET, b"", NOW),
            Err(InvalidToken)
        );
    }

    #[test]
    fn clock_window_is_300_seconds_either_way() {
        let ring = ring();
        for (ts, ok) in [
            (NOW - 300, true),
            (NOW + 300, true),
            (NOW - 301, false),
            (NOW + 301, false),
        ] {
            let header = sign_request("k1", &key(), "GET", TARGET, b"", ts);
            assert_eq!(
                verify_request(&ring, header.as_bytes(), "GET", TARGET, b"", NOW).is_ok(),
                ok,
                "{ts}"
            );
        }
        let header = sign_request("k1", &key(), "GET", TARGET, b"", 0);
        assert!(verify_request(&ring, header.as_bytes(), "GET", TARGET, b"", 100).is_ok());
        assert_eq!(
            verify_request(&ring, header.as_bytes(), "GET", TARGET, b"", u64::MAX),
            Err(InvalidToken)
        );
    }

    #[test]
    fn tampered_signature_bits_fail() {
        let ring = ring();
        let header = sign_request("k1", &key(), "GET", TARGET, b"", NOW);
        let auth = parse_authorization(header.as_bytes()).unwrap();
        for i in 0..SIG_LEN * 8 {
            let mut sig = auth.sig.clone();
            sig[i / 8] ^= 1 << (i % 8);
            let forged = format!(
                "{SCHEME} kid=k1,ts={NOW},sig={}",
                URL_SAFE_NO_PAD.encode(&sig)
            );
            assert_eq!(
                verify_request(&ring, forged.as_bytes(), "GET", TARGET, b"", NOW),
                Err(InvalidToken)
            );
        }
    }

    #[test]
    fn header_syntax() {
        let sig = URL_SAFE_NO_PAD.encode([7u8; 32]);
        let good = [
            format!("RelayAPI-HMAC-SHA256 kid=k1,ts=5,sig={sig}"),
            format!("relayapi-hmac-sha256 kid=k1,ts=5,sig={sig}"),
            format!("RelayAPI-HMAC-SHA256 sig={sig}, ts=5 ,kid=k1"),
            format!("RelayAPI-HMAC-SHA256  kid=k1,\tts=5,sig={sig} "),
            format!("RelayAPI-HMAC-SHA256 kid=k1,ts=0,sig={sig}"),
        ];
        for text in &good {
            let auth = parse_authorization(text.as_bytes()).unwrap_or_else(|| panic!("{text}"));
            assert_eq!(auth.kid, "k1");
            assert_eq!(auth.sig, vec![7u8; 32]);
        }
        let bad = [
            String::new(),
            format!("Bearer kid=k1,ts=5,sig={sig}"),
            format!("RelayAPI-HMAC-SHA256kid=k1,ts=5,sig={sig}"),
            "RelayAPI-HMAC-SHA256 kid=k1,ts=5".to_owned(),
            format!("RelayAPI-HMAC-SHA256 kid=k1,ts=5,sig={sig},x=1"),
            format!("RelayAPI-HMAC-SHA256 kid=k1,kid=k1,ts=5,sig={sig}"),
            format!("RelayAPI-HMAC-SHA256 kid=k1,ts=05,sig={sig}"),
            format!("RelayAPI-HMAC-SHA256 kid=k1,ts=+5,sig={sig}"),
            format!("RelayAPI-HMAC-SHA256 kid=k1,ts=-5,sig={sig}"),
            format!("RelayAPI-HMAC-SHA256 kid=k1,ts=18446744073709551616,sig={sig}"),
            format!("RelayAPI-HMAC-SHA256 kid=\"k1\",ts=5,sig={sig}"),
            format!("RelayAPI-HMAC-SHA256 kid=k 1,ts=5,sig={sig}"),
            format!("RelayAPI-HMAC-SHA256 kid=,ts=5,sig={sig}"),
            format!("RelayAPI-HMAC-SHA256 kid=k1,ts=5,sig={sig}="),
            format!("RelayAPI-HMAC-SHA256 kid=k1,ts=5,sig={}", &sig[..42]),
            format!(
                "RelayAPI-HMAC-SHA256 kid=k1,ts=5,sig={}",
                URL_SAFE_NO_PAD.encode([7u8; 31])
            ),
            format!("RelayAPI-HMAC-SHA256 kid=k1,,ts=5,sig={sig}"),
            format!(
                "RelayAPI-HMAC-SHA256 kid=k1,ts=5,sig={sig}{}",
                " ".repeat(300)
            ),
        ];
        for text in &bad {
            assert_eq!(parse_authorization(text.as_bytes()), None, "{text}");
        }
        assert_eq!(parse_authorization(&[0xff, 0xfe]), None);
    }

    #[test]
    fn a_key_outside_its_window_signs_nothing() {
        let mut ring = Keyring::new();
        let window = crate::token::keyring::KeyWindow {
            not_before: Some(NOW - 10),
            not_after: Some(NOW + 10),
        };
        ring.insert_windowed("k1", "acme", key(), window).unwrap();
        for (now, ok) in [
            (NOW - 11, false),
            (NOW - 10, true),
            (NOW + 9, true),
            (NOW + 10, false),
        ] {
            let header = sign_request("k1", &key(), "GET", TARGET, b"", now);
            assert_eq!(
                verify_request(&ring, header.as_bytes(), "GET", TARGET, b"", now).is_ok(),
                ok,
                "{now}"
            );
        }
    }

    #[test]
    fn ecdsa_signatures_of_ecc_signers() {
        use crate::token::ecc::hpke_suite::derive_key_pair;
        let signer = derive_key_pair(&[1; 32]).0;
        let relay = derive_key_pair(&[2; 32]).0;
        let mut ring = ring();
        let open = crate::token::keyring::KeyWindow::default();
        ring.insert_signer("s1", "acme", signer.public_key(), open, 0)
            .unwrap();
        ring.insert_relay_key("r1", "acme", relay.clone(), open, 0)
            .unwrap();
        let body = br#"{"before":1790000000}"#;
        let path = "/admin/v1/revoke-before";
        let header = sign_request_ecdsa("s1", &signer, "POST", path, body, NOW);
        assert!(header.starts_with("RelayAPI-ECDSA-P256-SHA256 kid=s1,ts="));
        let check = |h: &str, method: &str, target: &str, body: &[u8], now: u64| {
            verify_request(&ring, h.as_bytes(), method, target, body, now)
        };
        assert_eq!(check(&header, "POST", path, body, NOW), Ok("acme".into()));
        assert_eq!(
            check(&header, "POST", path, body, NOW + 300),
            Ok("acme".into())
        );
        assert_eq!(
            check(&header, "POST", path, body, NOW + 301),
            Err(InvalidToken)
        );
        assert_eq!(check(&header, "POST", path, b"{}", NOW), Err(InvalidToken));
        assert_eq!(check(&header, "GET", path, body, NOW), Err(InvalidToken));
        // A stranger's key, the relay key, and a symmetric key id under the ECDSA scheme.
        for (kid, key) in [
            ("s1", derive_key_pair(&[3; 32]).0),
            ("r1", relay),
            ("k1", signer.clone()),
        ] {
            let h = sign_request_ecdsa(kid, &key, "POST", path, body, NOW);
            assert_eq!(
                check(&h, "POST", path, body, NOW),
                Err(InvalidToken),
                "{kid}"
            );
        }
        // The ECDSA signature presented under the HMAC scheme, and a high-S twin.
        let as_hmac = header.replace(SCHEME_ECDSA, SCHEME);
        assert_eq!(check(&as_hmac, "POST", path, body, NOW), Err(InvalidToken));
        let auth = parse_authorization(header.as_bytes()).unwrap();
        use p256::elliptic_curve::PrimeField;
        let s = p256::Scalar::from_repr(*p256::FieldBytes::from_slice(&auth.sig[32..])).unwrap();
        let mut high = auth.sig.clone();
        high[32..].copy_from_slice(&(-s).to_bytes());
        let h = format!(
            "{SCHEME_ECDSA} kid=s1,ts={NOW},sig={}",
            URL_SAFE_NO_PAD.encode(&high)
        );
        assert_eq!(check(&h, "POST", path, body, NOW), Err(InvalidToken));
        // A signer out of its window signs nothing.
        let mut ring2 = Keyring::new();
        let w = crate::token::keyring::KeyWindow {
            not_before: None,
            not_after: Some(NOW),
        };
        ring2
            .insert_signer("s1", "acme", signer.public_key(), w, 0)
            .unwrap();
        assert_eq!(
            verify_request(&ring2, header.as_bytes(), "POST", path, body, NOW),
            Err(InvalidToken)
        );
    }
}
