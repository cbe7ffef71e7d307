//! WebSocket sessions through the relay (RFC 6455): the opening handshake on both legs, frames read
//! as they pass, and the session that splices the two legs while metering the provider's usage events.

pub mod frame;
pub mod handshake;
pub mod session;
