//! Tokens and the keys behind them: the token format (claims, their JSON, sealing), `.rai` client
//! configs, the key ring, secret newtypes, the cache of tokens already proven, and the opt-in reading of
//! `relayapi-sdk` 1.0.0 tokens (`token/compat_v0/`).

pub mod cache;
pub mod canonical;
pub mod claims;
pub mod claims_json;
pub mod compat_v0;
pub mod ecc;
pub mod format;
pub mod keyring;
pub mod live_keyring;
pub mod minter;
pub mod rai;
pub mod rai_file;
pub mod rai_parse;
pub mod rai_window;
pub mod seal;
pub mod secret;
pub mod spend_claims;
pub mod verify;
