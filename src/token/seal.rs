//! Minting and verifying (§4, §6, §7): the per-token key derivation, the sealed envelope, and the checks
//! a verifier runs. Every way a token can fail before it is known to be authentic and well-formed (§7
//! steps 1-6) is the one opaque [`InvalidToken`]; the time checks that follow (steps 7-8) have their own
//! errors in [`TimeError`].

use std::fmt;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::text::grammar::is_key_id;
use crate::token::canonical::canonical_json;
use crate::token::claims::{claim_err, ClaimError, Claims};
use crate::token::keyring::Keyring;
use crate::token::secret::SecretKey;

/// Longest token text, in bytes (§3; a token is ASCII, so bytes and characters agree). Verifiers check it
/// before any decoding so that an attacker cannot make the relay base64-decode or allocate for
/// arbitrarily long input; minters refuse to produce a longer token (§6 step 8).
pub const MAX_TOKEN_LEN: usize = 4096;

/// Every token text starts with this (§3).
pub const PREFIX: &str = "rt1.";

const VERSION: u8 = 0x01;
pub(crate) const MODE_SYMMETRIC: u8 = 0x01;
/// Bytes of version, mode and kid_len.
const FIXED_HEADER_LEN: usize = 3;
pub const SALT_LEN: usize = 16;
const TAG_LEN: usize = 16;
/// Longest key id in the header (§2), the same bound as `text::grammar::MAX_KEY_ID_LEN`.
const MAX_KID_LEN: usize = crate::text::grammar::MAX_KEY_ID_LEN;
/// HKDF info string (§4).
const HKDF_INFO: &[u8] = b"relayapi token v1";
/// AES-256 key plus 96-bit GCM nonce (§4).
const OKM_LEN: usize = 32 + 12;

/// The one error of token verification steps 1-6. Deliberately carries no detail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidToken;

impl fmt::Display for InvalidToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("invalid token")
    }
}

impl std::error::Error for InvalidToken {}

/// The time checks of §7 steps 7-8; each has its own documented error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeError {
    NotYetValid,
    Expired,
    LifetimeTooLong,
}

impl TimeError {
    /// The error code the relay answers with (§7).
    pub fn code(self) -> &'static str {
        match self {
            TimeError::NotYetValid => "token_not_yet_valid",
            TimeError::Expired => "token_expired",
            TimeError::LifetimeTooLong => "token_lifetime_too_long",
        }
    }
}

impl fmt::Display for TimeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl std::error::Error for TimeError {}

/// Per-token AES key and nonce (§4), wiped after use.
fn derive(key: &SecretKey, salt: &[u8]) -> Zeroizing<[u8; OKM_LEN]> {
    let mut okm = Zeroizing::new([0u8; OKM_LEN]);
    // 44 bytes is far below HKDF-SHA256's 255*32 limit, so expand cannot fail.
    let expanded = Hkdf::<Sha256>::new(Some(salt), key.expose()).expand(HKDF_INFO, okm.as_mut());
    debug_assert!(expanded.is_ok());
    okm
}

fn cipher(okm: &[u8; OKM_LEN]) -> Aes256Gcm {
    // A 32-byte slice is always a valid AES-256 key.
    Aes256Gcm::new(okm[..32].into())
}

/// Seals an arbitrary plaintext (§6 steps 4-7) without looking at it. `mint_with` is the checked entry
/// point; tests use this directly to build authentic tokens with broken claims.
pub(crate) fn seal(kid: &str, key: &SecretKey, salt: [u8; SALT_LEN], plaintext: &[u8]) -> String {
    assert!(
        is_key_id(kid),
        "key id must be 1 to 32 characters from A-Z a-z 0-9 . _ -"
    );
    let mut blob =
        Vec::with_capacity(FIXED_HEADER_LEN + kid.len() + SALT_LEN + plaintext.len() + TAG_LEN);
    // The length fits: is_key_id caps it at 32.
    blob.extend_from_slice(&[VERSION, MODE_SYMMETRIC, kid.len() as u8]);
    blob.extend_from_slice(kid.as_bytes());
    blob.extend_from_slice(&salt);
    let okm = derive(key, &salt);
    let sealed = cipher(&okm)
        .encrypt(
            Nonce::from_slice(&okm[32..]),
            Payload {
                msg: plaintext,
                aad: &blob,
            },
        )
        // AES-GCM only fails for plaintexts beyond 64 GiB.
        .expect("AES-GCM encryption of a token cannot fail");
    blob.extend_from_slice(&sealed);
    let mut text = String::with_capacity(PREFIX.len() + blob.len().div_ceil(3) * 4);
    text.push_str(PREFIX);
    URL_SAFE_NO_PAD.encode_string(&blob, &mut text);
    text
}

/// Length in bytes of the token for a `kid_len`-byte kid and `claims_len` bytes of claims JSON (§6 step 8).
pub fn token_len(kid_len: usize, claims_len: usize) -> usize {
    let blob = FIXED_HEADER_LEN + kid_len + SALT_LEN + claims_len + TAG_LEN;
    PREFIX.len() + (4 * blob).div_ceil(3)
}

impl Claims {
    /// Everything [`mint_with`] requires: [`Claims::validate`], then that the token under `kid` stays
    /// within [`MAX_TOKEN_LEN`] (§6 step 8). Callers holding untrusted input call this first to report a
    /// readable error instead of reaching the panic.
    pub fn check_mintable(&self, kid: &str) -> Result<(), ClaimError> {
        self.validate()?;
        if token_len(kid.len(), canonical_json(self).len()) > MAX_TOKEN_LEN {
            return Err(claim_err(
                "(claims)",
                "claims small enough for a token of at most 4096 bytes (fewer or shorter list entries)",
            ));
        }
        Ok(())
    }
}

/// Mints a token with the given salt (§6 steps 3-8). Deterministic, for the vectors and tests; real
/// tokens come from [`mint`], which draws the salt.
///
/// Panics if [`Claims::check_mintable`] fails (claims that break §5, or a token over 4096 bytes) or `kid`
/// is not a valid key id: both are caller bugs, and a token that every verifier would refuse must not
/// leave the minter.
pub fn mint_with(c: &Claims, kid: &str, key: &SecretKey, salt: [u8; SALT_LEN]) -> String {
    if let Err(e) = c.check_mintable(kid) {
        panic!("refusing to mint invalid claims: {e}");
    }
    let plaintext = Zeroizing::new(canonical_json(c));
    seal(kid, key, salt, plaintext.as_bytes())
}

/// Mints a token with a fresh salt drawn from `rng` (use [`os_rng`] outside tests). The caller sets
/// `jti` (see [`new_token_id`]), `iat` and `exp`. Panics like [`mint_with`].
pub fn mint(c: &Claims, kid: &str, key: &SecretKey, rng: &mut dyn FnMut(&mut [u8])) -> String {
    let mut salt = [0u8; SALT_LEN];
    rng(&mut salt);
    mint_with(c, kid, key, salt)
}

/// A fresh token id: 128 random bits as 32 lowercase hex characters.
pub fn new_token_id(rng: &mut dyn FnMut(&mut [u8])) -> String {
    let mut bytes = [0u8; 16];
    rng(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The operating system's CSPRNG. Panics if it fails: there is no safe way to mint without randomness.
pub fn os_rng() -> impl FnMut(&mut [u8]) {
    |buf: &mut [u8]| {
        getrandom::getrandom(buf).expect("the operating system's random number generator failed")
    }
}

/// §7 steps 1-2 for both methods: the length, the prefix and canonical unpadded base64url. Text over
/// [`MAX_TOKEN_LEN`] bytes is refused before decoding.
pub(crate) fn decode_text(text: &str) -> Result<Vec<u8>, InvalidToken> {
    if text.len() > MAX_TOKEN_LEN {
        return Err(InvalidToken);
    }
    let encoded = text.strip_prefix(PREFIX).ok_or(InvalidToken)?;
    // The engine refuses padding, other alphabets and set unused bits.
    URL_SAFE_NO_PAD.decode(encoded).map_err(|_| InvalidToken)
}

/// §7 steps 3-6 on a decoded symmetric blob (mode `0x01`), with the keys of `keyring` in their validity
/// window at `now` (a key outside it is as unknown as a key id never loaded). Returns the claims and the
/// key id that proved them. `token/verify.rs` is the entry point for token text.
pub(crate) fn open_blob(
    blob: &[u8],
    keyring: &Keyring,
    now: u64,
) -> Result<(Claims, String), InvalidToken> {
    // Step 3.
    if blob.len() < FIXED_HEADER_LEN + 1 + SALT_LEN + TAG_LEN
        || blob[0] != VERSION
        || blob[1] != MODE_SYMMETRIC
    {
        return Err(InvalidToken);
    }
    let kid_len = usize::from(blob[2]);
    if !(1..=MAX_KID_LEN).contains(&kid_len) {
        return Err(InvalidToken);
    }
    let header_len = FIXED_HEADER_LEN + kid_len + SALT_LEN;
    if blob.len() < header_len + TAG_LEN {
        return Err(InvalidToken);
    }
    let (header, sealed) = blob.split_at(header_len);
    // Step 4.
    let kid = std::str::from_utf8(&header[FIXED_HEADER_LEN..FIXED_HEADER_LEN + kid_len])
        .map_err(|_| InvalidToken)?;
    let (tenant, key) = keyring.get(kid, now).ok_or(InvalidToken)?;
    // Step 5.
    let okm = derive(key, &header[FIXED_HEADER_LEN + kid_len..]);
    let plaintext = Zeroizing::new(
        cipher(&okm)
            .decrypt(
                Nonce::from_slice(&okm[32..]),
                Payload {
                    msg: sealed,
                    aad: header,
                },
            )
            .map_err(|_| InvalidToken)?,
    );
    // Step 6.
    let json = std::str::from_utf8(&plaintext).map_err(|_| InvalidToken)?;
    let claims = Claims::from_json(json).map_err(|_| InvalidToken)?;
    if claims.tid != tenant {
        return Err(InvalidToken);
    }
    Ok((claims, kid.to_owned()))
}

/// §7 steps 7-8 for an authentic token. `leeway` is the allowed clock skew and `max_lifetime` the
/// relay's cap on `exp - iat`, both in seconds; `now` is UTC seconds.
pub fn check_time(c: &Claims, now: u64, leeway: u64, max_lifetime: u64) -> Result<(), TimeError> {
    if c.iat > now.saturating_add(leeway) {
        return Err(TimeError::NotYetValid);
    }
    if now >= c.exp.saturating_add(leeway) {
        return Err(TimeError::Expired);
    }
    if c.exp.saturating_sub(c.iat) > max_lifetime {
        return Err(TimeError::LifetimeTooLong);
    }
    Ok(())
}
