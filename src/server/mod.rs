//! Serving: the accept loop, HTTPS, the plain-HTTP redirect listener, key reloads and graceful shutdown.

pub mod accept;
pub mod key_reload;
pub mod redirect;
pub mod shutdown;
pub mod tls;
