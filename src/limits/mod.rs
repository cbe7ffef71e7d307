//! Limits that keep one client from costing everyone else: rate buckets, connection slots, body memory
//! and pace, and log volume.

pub mod body_budget;
pub mod body_pace;
pub mod conns;
pub mod limiter;
pub mod log_sampler;
