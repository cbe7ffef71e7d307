//! Tokens of the original RelayAPI's published Python SDK, `relayapi-sdk` 1.0.0 ("compat v0",
//! `docs/compat-v0.md`), accepted only for tenants the operator opted in (`token.compat_v0` in
//! `config.json`). The original `.rai` file is `rai.rs`, the unauthenticated AES-CBC envelope
//! `envelope.rs`, the plaintext's exact layout `layout.rs`, the mapping onto the relay's own [`Claims`]
//! and its strict checks `claims.rs`, and the loaded tenants with the one verify entry point
//! `tenants.rs`. Every failure is the one opaque [`InvalidToken`](crate::token::format::InvalidToken).
//!
//! [`Claims`]: crate::token::format::Claims

pub mod claims;
pub mod envelope;
pub mod layout;
pub mod rai;
pub mod tenants;

pub use tenants::{CompatTenant, CompatTenants, Policy};
