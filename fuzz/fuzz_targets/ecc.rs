//! Fuzz target `ecc`: the properties are in `fuzz/props/ecc.rs` (shared with the stable replay in
//! `tests/fuzz_regressions.rs`).
#![no_main]

#[allow(dead_code)]
#[path = "../props/mod.rs"]
mod props;

libfuzzer_sys::fuzz_target!(|data: &[u8]| props::ecc::check(data));
