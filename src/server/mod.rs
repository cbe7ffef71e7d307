//! Serving: the accept loop, HTTPS, the plain-HTTP redirect listener, key reloads, the tenants opted in to `relayapi-sdk` 1.0.0 tokens, and
//! graceful shutdown.

pub mod accept;
pub mod compat_keys;
pub mod key_reload;
pub mod redirect;
pub mod shutdown;
pub mod tls;
