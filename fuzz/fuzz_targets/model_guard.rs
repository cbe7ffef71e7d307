//! Fuzz target `model_guard`: the properties are in `fuzz/props/model_guard.rs` (shared with the
//! stable replay in `tests/fuzz_regressions.rs`).
#![no_main]

#[allow(dead_code)]
#[path = "../props/mod.rs"]
mod props;

libfuzzer_sys::fuzz_target!(|data: &[u8]| props::model_guard::check(data));
