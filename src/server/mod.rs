//! Serving: the accept loop, HTTPS, the plain-HTTP redirect listener and graceful shutdown.

pub mod accept;
pub mod redirect;
pub mod shutdown;
pub mod tls;
