//! Method ecc (`docs/token-format.md` §10, mode `0x02`): the tenant's backend signs the claims with its
//! own P-256 key (ECDSA, low S) and seals signature and claims to the relay's P-256 key with HPKE
//! (RFC 9180 base mode, DHKEM(P-256, HKDF-SHA256), HKDF-SHA256, AES-256-GCM). Holding public keys is
//! not enough to mint, and the relay's operator cannot mint a tenant's tokens.
//!
//! One concern per file: the key types (`keys.rs`), the byte layout (`layout.rs`), the signature
//! (`signature.rs`), the HPKE suite (`hpke_suite.rs`), minting (`mint.rs`), verifying (`open.rs`) and
//! the `crypto` object of ecc `.rai` files (`rai_parse.rs`) and making new ones (`rai_file.rs`). The claims, their JSON and the time checks
//! are shared with the symmetric method (`token/claims.rs`, `token/seal.rs`).

pub mod hpke_suite;
pub mod keys;
pub mod layout;
pub mod mint;
pub mod open;
pub mod rai_file;
pub mod rai_parse;
pub mod signature;

#[cfg(test)]
mod rai_tests;
