//! Token verification's one entry point (`docs/token-format.md` §7 steps 1-6 and §10.4): decode the text
//! once, read the mode byte and hand the blob to its method, the symmetric one (`token/seal.rs`) or ecc
//! (`token/ecc/open.rs`). Every failure is the one [`InvalidToken`], whichever method refused.

use crate::token::claims::Claims;
use crate::token::ecc::layout::MODE_ECC;
use crate::token::ecc::open::{self, EccIds};
use crate::token::keyring::Keyring;
use crate::token::seal::{self, InvalidToken, MODE_SYMMETRIC};

/// The loaded keys that proved a token: every one of them must still be in force each time the proof
/// is used again (the token cache).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProvenBy {
    /// A symmetric tenant key.
    Key(String),
    /// An ecc relay key and signer.
    Ecc(EccIds),
}

impl ProvenBy {
    /// Whether every key behind the proof is loaded in `ring` and in force at `now`.
    pub fn in_force(&self, ring: &Keyring, now: u64) -> bool {
        match self {
            ProvenBy::Key(kid) => ring.is_in_force(kid, now),
            ProvenBy::Ecc(ids) => {
                ring.is_in_force(&ids.rkid, now) && ring.is_in_force(&ids.skid, now)
            }
        }
    }
}

/// Decodes, authenticates and checks a token of either method with the keys of `ring` in force at
/// `now` (Unix seconds). Every failure is [`InvalidToken`]; never panics, whatever the input.
pub fn verify(text: &str, ring: &Keyring, now: u64) -> Result<Claims, InvalidToken> {
    verify_proven(text, ring, now).map(|(claims, _)| claims)
}

/// [`verify`], also returning the keys that proved the token.
pub fn verify_proven(
    text: &str,
    ring: &Keyring,
    now: u64,
) -> Result<(Claims, ProvenBy), InvalidToken> {
    let blob = seal::decode_text(text)?;
    match blob.get(1) {
        Some(&MODE_SYMMETRIC) => {
            seal::open_blob(&blob, ring, now).map(|(c, kid)| (c, ProvenBy::Key(kid)))
        }
        Some(&MODE_ECC) => {
            open::open_blob(&blob, ring, now).map(|(c, ids)| (c, ProvenBy::Ecc(ids)))
        }
        _ => Err(InvalidToken),
    }
}
