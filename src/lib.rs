//! RelayAPI: a relay that lets frontends call AI providers with encrypted, limited tokens.
//!
//! The binary (`src/main.rs`) is a thin shell over this library so that integration tests and fuzz
//! targets can reach the pure parts (head parsing, framing, chunked decoding, tokens, the limiter).
// No unsafe code except one function: the mapping of the SQLite store's grant journal
// (`store/sqlite/journal.rs::map`, allowed there with its reasoning). `deny`, not `forbid`, only so
// that one `allow` can exist; anything else unsafe fails to build.
#![deny(unsafe_code)]

pub mod access_line;
pub mod admin;
pub mod app;
pub mod budget;
pub mod calendar;
pub mod cli;
pub mod clock;
pub mod config;
pub mod error;
pub mod gen_rai;
pub mod http;
pub mod json;
pub mod limits;
pub mod log;
pub mod log_writer;
pub mod meter;
pub mod metrics;
pub mod redact;
pub mod request;
pub mod server;
pub mod store;
pub mod text;
pub mod token;
pub mod upstream;
pub mod ws;
