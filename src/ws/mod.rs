//! WebSocket sessions through the relay (RFC 6455): the opening handshake on both legs, frames read
//! as they pass, the session that splices the two legs while metering the provider's usage events, and
//! the token's model limits on the client's session events.

pub mod frame;
pub mod handshake;
pub mod model_guard;
pub mod session;
