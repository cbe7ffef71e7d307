//! The properties the fuzz targets check, shared by the targets (`fuzz/fuzz_targets/*.rs`, nightly,
//! libFuzzer) and by their replay on stable (`tests/fuzz_regressions.rs`), so a saved input is judged
//! by exactly the code that found it. Each submodule has one `check(data: &[u8])` that panics when a
//! property breaks; "does not panic" is the least of them, every module states what else it asserts.
//!
//! Where two implementations of the same rule exist, the check is differential: the relay's parser
//! against a crate that does the same job (`httparse`, `serde_json`) plus our documented stricter
//! rules, or against a small reference written here from the spec (chunked and body decoding, the
//! token envelope). The references are deliberately simple and slow; they only have to be obviously right.

pub mod admin;
pub mod body;
pub mod budget;
pub mod chunked;
pub mod claims;
pub mod compat_v0;
pub mod config;
pub mod cors;
pub mod ecc;
pub mod framing;
pub mod head;
pub mod json;
pub mod locate;
pub mod meter;
pub mod model_guard;
pub mod policy;
pub mod rai;
pub mod token;
pub mod webrtc;
pub mod ws;

/// A target's property check: panics when a property breaks.
pub type Check = fn(&[u8]);

/// Every target by name, with its check (the replay test asserts that `fuzz/fuzz_targets/` has the
/// same names).
pub const TARGETS: &[(&str, Check)] = &[
    ("admin", admin::check),
    ("body", body::check),
    ("budget", budget::check),
    ("chunked", chunked::check),
    ("claims_json", claims::check),
    ("compat_v0", compat_v0::check),
    ("config", config::check),
    ("cors", cors::check),
    ("ecc", ecc::check),
    ("framing", framing::check),
    ("head", head::check),
    ("locate", locate::check),
    ("meter", meter::check),
    ("model_guard", model_guard::check),
    ("policy", policy::check),
    ("rai", rai::check),
    ("token", token::check),
    ("webrtc", webrtc::check),
    ("ws", ws::check),
];

/// Splits `data` at the NUL bytes into at most `n` fields (the last one keeps any further NULs), so
/// a target can take several byte strings from one input; missing fields are empty.
pub fn fields(data: &[u8], n: usize) -> Vec<&[u8]> {
    let mut out: Vec<&[u8]> = data.splitn(n, |&b| b == 0).collect();
    out.resize(n, &[]);
    out
}
