//! The body decoder (`src/http/body.rs`) for every framing of both legs (none, Content-Length,
//! chunked, until close), against a reference written here from RFC 9112 §6.3: a length body is the
//! first `n` bytes and refused whole over the cap, a body until close is everything until EOF within
//! the cap, and a chunked body is what the chunked target's reference decoder (`props/chunked.rs`)
//! reads. Checked for every way of cutting the input that the fuzzer picks (one piece, two at a
//! chosen point, up to eight random pieces), through `next` (payload as slices of the input) and
//! `decode` (payload appended) alike: the same bytes consumed, the same payload, the same end or
//! kind of error, and the same verdict when the peer closes right after. Bytes after the body are
//! never consumed; a piece is consumed whole unless the body ends in it; `next` hands out payload
//! that is the tail of what it consumed.
//!
//! Layout: byte 0 picks the framing, bytes 1-3 the limits (as in `props/chunked.rs`), byte 4 a
//! Content-Length (×4), byte 5 a split point and byte 6 the seed of the random cuts; the rest is the
//! wire.

use relayapi::http::body::{BodyDecoder, BodyError, Framing};
use relayapi::http::chunked::{ChunkError, ChunkedLimits};

/// What a caller sees after the wire: bytes consumed (or the error), the payload, whether the body
/// ended, and what the peer closing then would mean.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Outcome {
    consumed: Result<usize, BodyError>,
    payload: Vec<u8>,
    done: bool,
    at_eof: Result<(), BodyError>,
}

pub fn check(data: &[u8]) {
    let [f, a, b, c, len, cut, seed, wire @ ..] = data else {
        return;
    };
    let limits = ChunkedLimits {
        max_chunk_ext_bytes: usize::from(*a),
        max_trailer_bytes: usize::from(*b) * 4,
        max_body_bytes: u64::from(*c) * 16,
    };
    let framing = match f % 4 {
        0 => Framing::Empty,
        1 => Framing::Length(u64::from(*len) * 4),
        2 => Framing::Chunked,
        _ => Framing::UntilClose,
    };
    let expected = reference(framing, &limits, wire);

    let cut = usize::from(*cut) % (wire.len() + 1);
    let mut cuttings = vec![vec![], vec![cut]];
    let mut rng = u64::from(*seed) | 0x100;
    let mut random: Vec<usize> = (0..(*seed % 8))
        .map(|_| {
            rng = rng
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (rng >> 33) as usize % (wire.len() + 1)
        })
        .collect();
    random.sort_unstable();
    cuttings.push(random);

    for cuts in &cuttings {
        for by_slices in [true, false] {
            let got = feed(framing, limits, wire, cuts, by_slices);
            if framing == Framing::UntilClose && expected.consumed.is_err() {
                // Refused at the read that crosses the cap: what was handed out before depends on
                // where reads end, but never reaches past the cap.
                assert_eq!((&got.consumed, got.done), (&expected.consumed, false));
                assert!(wire.starts_with(&got.payload));
                assert!(got.payload.len() as u64 <= limits.max_body_bytes);
            } else {
                assert_eq!(
                    got, expected,
                    "{framing:?}, cuts {cuts:?}, slices {by_slices}"
                );
            }
        }
    }
    let mut scanner = BodyDecoder::new(framing, limits);
    let scanned = scanner.decode(wire, None).map_err(same_kind);
    assert_eq!(
        (scanned, scanner.is_done()),
        (expected.consumed, expected.done)
    );
}

fn reference(framing: Framing, limits: &ChunkedLimits, wire: &[u8]) -> Outcome {
    let max = limits.max_body_bytes;
    let refused = |e: BodyError| Outcome {
        consumed: Err(e.clone()),
        payload: Vec::new(),
        done: false,
        at_eof: Err(e),
    };
    match framing {
        Framing::Empty => Outcome {
            consumed: Ok(0),
            payload: Vec::new(),
            done: true,
            at_eof: Ok(()),
        },
        Framing::Length(n) if n > max => refused(BodyError::TooLarge),
        Framing::Length(n) => {
            let take = wire.len().min(n as usize);
            let done = take as u64 == n;
            Outcome {
                consumed: Ok(take),
                payload: wire[..take].to_vec(),
                done,
                at_eof: if done {
                    Ok(())
                } else {
                    Err(BodyError::Truncated)
                },
            }
        }
        Framing::UntilClose if wire.len() as u64 > max => refused(BodyError::TooLarge),
        Framing::UntilClose => Outcome {
            consumed: Ok(wire.len()),
            payload: wire.to_vec(),
            done: false,
            at_eof: Ok(()),
        },
        Framing::Chunked => {
            let (consumed, payload, done) = super::chunked::reference(wire, limits);
            let consumed = consumed.map_err(|e| match e {
                ChunkError::TooLarge => BodyError::TooLarge,
                ChunkError::Malformed(_) => malformed(),
            });
            let at_eof = match (&consumed, done) {
                (Err(e), _) => Err(e.clone()),
                (Ok(_), true) => Ok(()),
                (Ok(_), false) => Err(BodyError::Truncated),
            };
            Outcome {
                consumed,
                payload,
                done,
                at_eof,
            }
        }
    }
}

/// Only the kind of a grammar error is compared; the decoder's messages are for people.
fn malformed() -> BodyError {
    BodyError::Malformed("reference")
}

fn same_kind(e: BodyError) -> BodyError {
    match e {
        BodyError::Malformed(_) => malformed(),
        e => e,
    }
}

/// Feeds the pieces of `wire` between `cuts` as successive reads, through `next` or `decode`.
fn feed(
    framing: Framing,
    limits: ChunkedLimits,
    wire: &[u8],
    cuts: &[usize],
    by_slices: bool,
) -> Outcome {
    let mut dec = BodyDecoder::new(framing, limits);
    let mut payload = Vec::new();
    let mut consumed = 0;
    let mut start = 0;
    let fail = |e: BodyError, dec: &mut BodyDecoder, payload: Vec<u8>| {
        let at_eof = dec.eof().map_err(same_kind);
        let e = same_kind(e);
        assert_eq!(at_eof, Err(e.clone()), "errors are sticky");
        assert!(!dec.is_done());
        Outcome {
            consumed: Err(e),
            payload,
            done: false,
            at_eof,
        }
    };
    for &end in cuts.iter().chain(std::iter::once(&wire.len())) {
        let mut piece = &wire[start..end];
        start = end;
        if by_slices {
            loop {
                match dec.next(piece) {
                    Ok(p) => {
                        assert!(p.consumed <= piece.len());
                        assert!(piece[..p.consumed].ends_with(p.data));
                        payload.extend_from_slice(p.data);
                        consumed += p.consumed;
                        piece = &piece[p.consumed..];
                        if p.consumed == 0 {
                            assert!(piece.is_empty() || dec.is_done());
                            break;
                        }
                    }
                    Err(e) => return fail(e, &mut dec, payload),
                }
            }
        } else {
            match dec.decode(piece, Some(&mut payload)) {
                Ok(n) => consumed += n,
                Err(e) => return fail(e, &mut dec, payload),
            }
        }
        if !dec.is_done() {
            assert_eq!(
                consumed, end,
                "a piece is consumed whole unless the body ends in it"
            );
        }
        if let Some(left) = dec.bytes_left() {
            assert!(matches!(framing, Framing::Empty | Framing::Length(_)) || left == 0);
        }
    }
    let done = dec.is_done();
    let at_eof = dec.eof().map_err(same_kind);
    Outcome {
        consumed: Ok(consumed),
        payload,
        done,
        at_eof,
    }
}
