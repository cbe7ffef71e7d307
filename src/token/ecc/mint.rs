//! Minting an ecc token (`docs/token-format.md` §10.3): sign `header || claims` with the backend's
//! signing key (RFC 6979, low S), seal `sig || claims` to the relay key with HPKE, the ephemeral key
//! derived from `ikm_e`. Time, `jti` (in the claims) and `ikm_e` come from the caller, so the vectors
//! are reproducible; [`mint`] draws `ikm_e` from the given RNG.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use zeroize::Zeroizing;

use crate::text::grammar::is_key_id;
use crate::token::canonical::canonical_json;
use crate::token::claims::{claim_err, ClaimError, Claims};
use crate::token::ecc::hpke_suite::{self, IKM_LEN};
use crate::token::ecc::keys::{EccPrivateKey, EccPublicKey};
use crate::token::ecc::{layout, signature};
use crate::token::seal::{MAX_TOKEN_LEN, PREFIX};

/// What a backend mints with: its signer id and signing key, and the relay key's id and public half
/// (the backend-side file, `docs/client-config.md` "ecc files").
#[derive(Debug, Clone)]
pub struct EccMinter {
    pub rkid: String,
    pub relay_public_key: EccPublicKey,
    pub skid: String,
    pub signing_key: EccPrivateKey,
}

impl EccMinter {
    /// [`Claims::validate`], then that the token stays within [`MAX_TOKEN_LEN`] (§10.2); the ids must
    /// be key ids.
    pub fn check_mintable(&self, c: &Claims) -> Result<(), ClaimError> {
        c.validate()?;
        if !is_key_id(&self.rkid) || !is_key_id(&self.skid) {
            return Err(claim_err(
                "(ids)",
                "relay key id and signer id of 1 to 32 characters from A-Z a-z 0-9 . _ -",
            ));
        }
        let len = layout::token_len(self.rkid.len(), self.skid.len(), canonical_json(c).len());
        if len > MAX_TOKEN_LEN {
            return Err(claim_err(
                "(claims)",
                "claims small enough for a token of at most 4096 bytes (fewer or shorter list entries)",
            ));
        }
        Ok(())
    }

    /// The token for `c` with this `ikm_e` (§10.3 steps 3-7). Deterministic, for vectors and tests.
    /// Panics if [`EccMinter::check_mintable`] fails: a token every verifier refuses must not leave the
    /// minter.
    pub fn mint_with(&self, c: &Claims, ikm_e: &[u8; IKM_LEN]) -> String {
        if let Err(e) = self.check_mintable(c) {
            panic!("refusing to mint invalid claims: {e}");
        }
        let claims = Zeroizing::new(canonical_json(c));
        self.seal(claims.as_bytes(), ikm_e)
    }

    /// [`EccMinter::mint_with`] with a fresh `ikm_e` from `rng` (use `token::format::os_rng()`).
    pub fn mint(&self, c: &Claims, rng: &mut dyn FnMut(&mut [u8])) -> String {
        let mut ikm_e = Zeroizing::new([0u8; IKM_LEN]);
        rng(ikm_e.as_mut());
        self.mint_with(c, &ikm_e)
    }

    /// Signs and seals any claims bytes without looking at them: authentic tokens with broken claims,
    /// for tests and the `ecc` fuzz target. Never for real tokens (use [`EccMinter::mint`]).
    pub fn seal(&self, claims: &[u8], ikm_e: &[u8; IKM_LEN]) -> String {
        let header = layout::header(&self.rkid, &self.skid);
        let mut signed = Zeroizing::new(header.clone());
        signed.extend_from_slice(claims);
        let sig = signature::sign(&self.signing_key, &signed);
        let mut plaintext = Zeroizing::new(Vec::with_capacity(sig.len() + claims.len()));
        plaintext.extend_from_slice(&sig);
        plaintext.extend_from_slice(claims);
        let (enc, ct) = hpke_suite::seal(&self.relay_public_key, &header, &plaintext, ikm_e);
        let mut blob = header;
        blob.extend_from_slice(&enc);
        blob.extend_from_slice(&ct);
        let mut text = String::with_capacity(PREFIX.len() + blob.len().div_ceil(3) * 4);
        text.push_str(PREFIX);
        URL_SAFE_NO_PAD.encode_string(&blob, &mut text);
        text
    }
}
