//! The admin API a backend calls with its `.rai` key: request signatures, the endpoints and their
//! spend documents.

pub mod handlers;
pub mod signing;
pub mod spend_docs;
