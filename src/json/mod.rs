//! JSON read without building a tree, shared by the request policy and the usage meter: `body_scan`
//! validates a whole document in memory and reports the byte ranges of the members asked for; `skim`
//! follows a document fed in pieces and keeps only the few values it was told to watch (`class` is its
//! byte table); `plain` finds the runs of a string that need no escape (for both, and for `write`,
//! which writes the access log's JSON by hand).

pub mod body_scan;
pub mod class;
pub mod path;
pub mod plain;
pub mod skim;
pub mod write;
