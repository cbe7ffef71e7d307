//! Metering what a provider reports a call used, and pricing it: pure functions over bytes, fed as the
//! response passes by, with fixed memory whatever the body.

pub mod extract;
pub mod include_usage;
pub mod price;
pub mod sse;
pub mod usage;
pub mod usage_filter;
