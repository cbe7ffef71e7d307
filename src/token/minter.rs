//! Minting with whichever `.rai` a backend holds (`relayapi mint`): a symmetric file mints with its
//! current key (`token/seal.rs`), an ecc backend-side file signs with its signing key and seals to the
//! relay key (`token/ecc/mint.rs`). A relay-side ecc file cannot mint (it holds no signing key) and is
//! refused naming the file to use instead.

use std::path::Path;

use crate::text::file_error::FileError;
use crate::token::claims::{ClaimError, Claims};
use crate::token::ecc::mint::EccMinter;
use crate::token::ecc::rai_parse::EccCrypto;
use crate::token::keyring::KeyWindow;
use crate::token::rai_parse::RaiFile;
use crate::token::seal;
use crate::token::secret::SecretKey;

/// What mints: a symmetric key or an ecc signer.
#[derive(Debug)]
pub enum Minter {
    Symmetric {
        kid: String,
        key: SecretKey,
        tenant: String,
        window: KeyWindow,
    },
    Ecc {
        minter: EccMinter,
        tenant: String,
        window: KeyWindow,
    },
}

impl Minter {
    /// The minter of a loaded `.rai` (`file` names it in errors).
    pub fn from_rai(rai: RaiFile, file: &Path) -> Result<Minter, FileError> {
        match rai {
            RaiFile::Symmetric(r) => Ok(Minter::Symmetric {
                kid: r.crypto.key_id,
                key: r.crypto.key,
                tenant: r.crypto.tenant_id,
                window: r.crypto.window,
            }),
            RaiFile::Ecc(r) => match r.crypto {
                EccCrypto::Backend(b) => Ok(Minter::Ecc {
                    minter: EccMinter {
                        rkid: b.relay_key_id,
                        relay_public_key: b.relay_public_key,
                        skid: b.signer_id,
                        signing_key: b.signing_key,
                    },
                    tenant: b.tenant_id,
                    window: b.window,
                }),
                EccCrypto::Relay(_) => Err(FileError::new(
                    file,
                    "crypto.relay_private_key",
                    "expected the backend-side ecc file (this is the relay-side file: it opens tokens but \
                     holds no signing key; mint with the `--backend-out` file of `relayapi gen-rai --method ecc`)",
                )),
            },
        }
    }

    /// The tenant every token of this minter carries (`tid`).
    pub fn tenant(&self) -> &str {
        match self {
            Minter::Symmetric { tenant, .. } | Minter::Ecc { tenant, .. } => tenant,
        }
    }

    /// The id of the key that signs (the symmetric key id, or the ecc signer id).
    pub fn key_id(&self) -> &str {
        match self {
            Minter::Symmetric { kid, .. } => kid,
            Minter::Ecc { minter, .. } => &minter.skid,
        }
    }

    /// When the minting key may mint (`crypto.not_before` / `crypto.not_after`).
    pub fn window(&self) -> KeyWindow {
        match self {
            Minter::Symmetric { window, .. } | Minter::Ecc { window, .. } => *window,
        }
    }

    /// Everything [`Minter::mint`] requires of the claims, as a readable error.
    pub fn check_mintable(&self, c: &Claims) -> Result<(), ClaimError> {
        match self {
            Minter::Symmetric { kid, .. } => c.check_mintable(kid),
            Minter::Ecc { minter, .. } => minter.check_mintable(c),
        }
    }

    /// A token for `c`, with fresh randomness from `rng` (the salt, or `ikm_e`). Panics like the
    /// methods' own mint functions when [`Minter::check_mintable`] fails.
    pub fn mint(&self, c: &Claims, rng: &mut dyn FnMut(&mut [u8])) -> String {
        match self {
            Minter::Symmetric { kid, key, .. } => seal::mint(c, kid, key, rng),
            Minter::Ecc { minter, .. } => minter.mint(c, rng),
        }
    }
}
