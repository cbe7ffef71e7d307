//! The grammar of the texts the relay reads, from operators (`config.json`, `.rai`) and from clients
//! (request heads, token claims): character classes, names, host names, paths, IP ranges, base URLs,
//! strict JSON and the error that points into a file. Pure functions only; every other module that
//! checks text asks here, so one rule is written once.

pub mod base_url;
pub mod file_error;
pub mod grammar;
pub mod host;
pub mod ipnet;
pub mod strict_json;
