//! The provider side: the registry, the transport, and the rules for what the relay forwards (path,
//! headers) and what it scrubs from answers.

pub mod api_routes;
pub mod builtins;
pub mod client;
pub mod forward_headers;
pub mod forward_path;
pub mod key_scrub;
pub mod provider;
pub mod retry;
