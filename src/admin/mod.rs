//! The admin API a backend calls with its `.rai` key: request signatures and the endpoints.

pub mod handlers;
pub mod signing;
