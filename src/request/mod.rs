//! The request pipeline: one client connection, then each request routed, admitted, forwarded and
//! exchanged with the provider.

pub mod admission;
pub mod conn;
pub mod endpoints;
pub mod policy;
pub mod relay;
