//! RelayAPI: a relay that lets frontends call AI providers with encrypted, limited tokens.
//!
//! The binary (`src/main.rs`) is a thin shell over this library so that integration tests and fuzz
//! targets can reach the pure parts (head parsing, framing, chunked decoding, tokens, the limiter).
#![forbid(unsafe_code)]

pub mod admin;
pub mod admin_http;
pub mod admission;
pub mod api_routes;
pub mod app;
pub mod body_budget;
pub mod body_pace;
pub mod body_scan;
pub mod chunked;
pub mod cli;
pub mod clock;
pub mod config;
pub mod config_words;
pub mod conn;
pub mod conn_limit;
pub mod cors;
pub mod endpoints;
pub mod error;
pub mod forward_headers;
pub mod forward_path;
pub mod framing;
pub mod head;
pub mod key_scrub;
pub mod limiter;
pub mod log;
pub mod log_sampler;
pub mod metrics;
pub mod policy;
pub mod provider;
pub mod rai;
pub mod redirect;
pub mod relay;
pub mod respond;
pub mod secret;
pub mod server;
pub mod shutdown;
pub mod store;
pub mod store_redis;
pub mod store_sqlite;
pub mod tls;
pub mod token;
pub mod token_cache;
pub mod upstream;
