//! HTTP/1.1 as bytes: request and response heads, the framing gate, body and chunked decoding, the replies the
//! relay writes itself, and CORS.

pub mod body;
pub mod chunked;
pub mod cors;
pub mod fields;
pub mod framing;
pub mod head;
pub mod respond;
pub mod target;
