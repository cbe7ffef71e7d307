//! Tokens and the keys behind them: the token format, `.rai` client configs, secret newtypes and the
//! cache of tokens already proven.

pub mod cache;
pub mod format;
pub mod rai;
pub mod secret;
