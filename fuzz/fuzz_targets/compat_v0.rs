//! Fuzz target `compat_v0`: the properties are in `fuzz/props/compat_v0.rs` (shared with the stable
//! replay in `tests/fuzz_regressions.rs`).
#![no_main]

#[allow(dead_code)]
#[path = "../props/mod.rs"]
mod props;

libfuzzer_sys::fuzz_target!(|data: &[u8]| props::compat_v0::check(data));
