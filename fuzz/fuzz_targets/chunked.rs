//! Fuzzes the chunked decoder. Beyond "never panics", it is a differential check of incrementality:
//! the same bytes fed in one call and split in two at a fuzzer-chosen point must give the same
//! result, the same payload and the same end; scanning without output must agree with decoding.
#![no_main]

use libfuzzer_sys::fuzz_target;
use relayapi::chunked::{ChunkError, ChunkedDecoder, ChunkedLimits};

/// Feeds `pieces` in order, as successive reads, and returns what a caller would see.
fn feed(
    limits: ChunkedLimits,
    pieces: &[&[u8]],
    keep: bool,
) -> (Result<usize, ChunkError>, Vec<u8>, bool) {
    let mut decoder = ChunkedDecoder::new(limits);
    let mut out = Vec::new();
    let mut consumed = 0;
    for piece in pieces {
        let sink = if keep { Some(&mut out) } else { None };
        match decoder.decode(piece, sink) {
            Ok(n) => {
                assert!(n <= piece.len());
                consumed += n;
            }
            Err(e) => return (Err(e), out, decoder.is_done()),
        }
    }
    (Ok(consumed), out, decoder.is_done())
}

fuzz_target!(|data: &[u8]| {
    // The first four bytes pick the limits and the split point; the rest is the body.
    let [a, b, c, d, body @ ..] = data else {
        return;
    };
    let limits = ChunkedLimits {
        max_chunk_ext_bytes: usize::from(*a),
        max_trailer_bytes: usize::from(*b) * 4,
        max_body_bytes: u64::from(*c) * 16,
    };
    let cut = if body.is_empty() {
        0
    } else {
        usize::from(*d) % (body.len() + 1)
    };

    let whole = feed(limits, &[body], true);
    let split = feed(limits, &[&body[..cut], &body[cut..]], true);
    assert_eq!(whole, split, "split at {cut}");

    let scanned = feed(limits, &[body], false);
    assert_eq!((&scanned.0, scanned.2), (&whole.0, whole.2));
    assert!(scanned.1.is_empty());

    if let (Ok(consumed), payload, done) = &whole {
        assert!(payload.len() as u64 <= limits.max_body_bytes);
        assert!(*consumed <= body.len());
        // The decoder keeps reading until the body ends; it stops early only when done.
        assert!(*done || *consumed == body.len());
    }
});
