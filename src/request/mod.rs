//! The request pipeline, one step per file, each calling only down the chain: `conn` (one connection's
//! request loop) → `route` (which answer) → `endpoints` (the relay's own answers) or `relay` (the relay
//! proper: `admit` → `forward` → `exchange` → `pump`), ending in `access_log`. `client` (the connection's
//! socket), `context` (the per-request value), `outcome` (how a request ended) and `reply` (the relay's
//! own answers on the wire) are used by the steps; `methods` and `policy` are pure rules;
//! `compat_v0` locates and proves `relayapi-sdk` 1.0.0 tokens for `admit`.

pub mod access_log;
pub mod admit;
pub mod client;
pub mod compat_v0;
pub mod conn;
pub mod context;
pub mod endpoints;
pub mod exchange;
pub mod forward;
pub mod methods;
pub mod outcome;
pub mod policy;
pub mod pump;
pub mod query_model;
pub mod realtime;
pub mod relay;
pub mod reply;
pub mod route;
pub mod secrets;
pub mod webrtc;
