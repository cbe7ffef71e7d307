//! One incremental decoder for every message body the relay reads, on both legs: the client's
//! request body and the provider's response body, framed by a length, by the chunked transfer
//! coding, or (responses only) by the end of the connection (RFC 9112 §6.3). It owns where a body
//! ends, the payload bytes it hands out, the body-size cap, and what the peer closing the
//! connection means for each framing; the chunk grammar itself is `http/chunked.rs`, and deciding
//! the framing from a head is `http/framing.rs`.
//!
//! Like the chunked decoder it does no I/O and keeps no buffer: bytes are fed as they arrive, split
//! anywhere, and the result does not depend on where the splits fall. Payload is handed out as
//! slices of the caller's input, never copied; bytes after the body (a pipelined request, or a
//! provider that sent too much) are left unconsumed. Its state is a few counters whatever the
//! body's size.

use crate::http::chunked::{ChunkError, ChunkedDecoder, ChunkedLimits};
use crate::http::framing::{BodyFraming, ResponseBody};

/// How a body is delimited: the union of the request leg's [`BodyFraming`] and the response leg's
/// [`ResponseBody`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body at all: the decoder is done before the first byte.
    Empty,
    /// Exactly this many bytes (RFC 9112 §6.3 rule 6 and 7: Content-Length).
    Length(u64),
    /// The chunked transfer coding (RFC 9112 §7.1).
    Chunked,
    /// Everything until the peer closes (RFC 9112 §6.3 rule 8: responses only).
    UntilClose,
}

impl From<BodyFraming> for Framing {
    fn from(f: BodyFraming) -> Self {
        match f {
            BodyFraming::None => Framing::Empty,
            BodyFraming::Length(n) => Framing::Length(n),
            BodyFraming::Chunked => Framing::Chunked,
        }
    }
}

impl From<ResponseBody> for Framing {
    fn from(f: ResponseBody) -> Self {
        match f {
            ResponseBody::None => Framing::Empty,
            ResponseBody::Length(n) => Framing::Length(n),
            ResponseBody::Chunked => Framing::Chunked,
            ResponseBody::UntilClose => Framing::UntilClose,
        }
    }
}

/// Why a body was refused. On the request leg these are the client's errors (400 or 413); on the
/// response leg the provider's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyError {
    /// The bytes break the chunked grammar or one of its caps (the text says which).
    Malformed(&'static str),
    /// The payload is larger than `max_body_bytes`: said before a byte of it is handed out for a
    /// Content-Length, at the size line for a chunk, as soon as the cap is passed for a body that
    /// runs until close.
    TooLarge,
    /// The peer closed the connection before a length- or chunk-delimited body ended.
    Truncated,
}

impl From<ChunkError> for BodyError {
    fn from(e: ChunkError) -> Self {
        match e {
            ChunkError::Malformed(why) => BodyError::Malformed(why),
            ChunkError::TooLarge => BodyError::TooLarge,
        }
    }
}

/// What one call to [`BodyDecoder::next`] did with its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress<'a> {
    /// Bytes of the input that belong to this body and are now used up (framing and payload).
    pub consumed: usize,
    /// Payload found in them: a slice of the input ending at `consumed`, empty when the consumed
    /// bytes were framing only.
    pub data: &'a [u8],
}

#[derive(Debug, Clone)]
enum State {
    Length { left: u64 },
    Chunked(ChunkedDecoder),
    UntilClose { seen: u64 },
    Done,
    Failed(BodyError),
}

/// An incremental body decoder. Feed it with [`BodyDecoder::next`] (payload as slices of the input)
/// or [`BodyDecoder::decode`] (payload appended to a buffer) until [`BodyDecoder::is_done`]; tell it
/// when the peer closed with [`BodyDecoder::eof`]. After an error every later call returns the same
/// error: the connection is out of sync and must be closed.
#[derive(Debug, Clone)]
pub struct BodyDecoder {
    state: State,
    /// Payload cap for a body that runs until close (the others check theirs up front or per chunk).
    max_body_bytes: u64,
}

impl BodyDecoder {
    /// A decoder for one body of `framing`. `limits.max_body_bytes` caps the payload of every
    /// framing; the extension and trailer caps apply to chunked bodies. A Content-Length over the
    /// cap is refused by the first call, before any byte is read.
    pub fn new(framing: Framing, limits: ChunkedLimits) -> Self {
        let state = match framing {
            Framing::Empty | Framing::Length(0) => State::Done,
            Framing::Length(n) if n > limits.max_body_bytes => State::Failed(BodyError::TooLarge),
            Framing::Length(n) => State::Length { left: n },
            Framing::Chunked => State::Chunked(ChunkedDecoder::new(limits)),
            Framing::UntilClose => State::UntilClose { seen: 0 },
        };
        BodyDecoder {
            state,
            max_body_bytes: limits.max_body_bytes,
        }
    }

    /// Consumes a prefix of `input` up to and including the next run of payload, and hands that run
    /// out. Consumes all of `input` unless a run of payload or the body ends inside it; call again
    /// with the rest. `consumed` is 0 only for empty input or once the body is done, so a loop
    /// "while input is left and not done" always advances.
    pub fn next<'a>(&mut self, input: &'a [u8]) -> Result<Progress<'a>, BodyError> {
        let (consumed, data) = match &mut self.state {
            State::Done => (0, 0..0),
            State::Failed(e) => return Err(e.clone()),
            State::Length { left } => {
                // Bounded by the input length, so the cast cannot truncate.
                let n = (*left).min(input.len() as u64) as usize;
                *left -= n as u64;
                if *left == 0 {
                    self.state = State::Done;
                }
                (n, 0..n)
            }
            State::UntilClose { seen } => {
                match seen.checked_add(input.len() as u64) {
                    Some(total) if total <= self.max_body_bytes => *seen = total,
                    _ => return Err(self.fail(BodyError::TooLarge)),
                }
                (input.len(), 0..input.len())
            }
            State::Chunked(dec) => match dec.next_data(input) {
                Ok((used, data)) => {
                    if dec.is_done() {
                        self.state = State::Done;
                    }
                    (used, data)
                }
                Err(e) => return Err(self.fail(e.into())),
            },
        };
        Ok(Progress {
            consumed,
            data: &input[data],
        })
    }

    /// Consumes a prefix of `input` as [`BodyDecoder::next`] does, but all the way: every byte up to
    /// the end of the input or of the body. Payload is appended to `out` when given, else only
    /// scanned. Returns the bytes consumed; on error, the payload before the error has been
    /// appended.
    pub fn decode(
        &mut self,
        input: &[u8],
        mut out: Option<&mut Vec<u8>>,
    ) -> Result<usize, BodyError> {
        let mut pos = 0;
        loop {
            let step = self.next(&input[pos..])?;
            if let Some(out) = out.as_deref_mut() {
                out.extend_from_slice(step.data);
            }
            pos += step.consumed;
            if step.consumed == 0 || pos == input.len() {
                return Ok(pos);
            }
        }
    }

    /// The peer closed its side: this ends a body that runs until close, and is
    /// [`BodyError::Truncated`] for one that had not ended yet.
    pub fn eof(&mut self) -> Result<(), BodyError> {
        match &self.state {
            State::Done => Ok(()),
            State::Failed(e) => Err(e.clone()),
            State::UntilClose { .. } => {
                self.state = State::Done;
                Ok(())
            }
            State::Length { .. } | State::Chunked(_) => Err(self.fail(BodyError::Truncated)),
        }
    }

    /// True once the whole body has been consumed (for a body that runs until close: once
    /// [`BodyDecoder::eof`] was called).
    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Done)
    }

    /// How many more bytes belong to the body, when the framing says so in advance (a
    /// Content-Length); `None` when only the bytes themselves tell. A reader can stop there, so that
    /// a pipelined request behind the body is not read before it is wanted.
    pub fn bytes_left(&self) -> Option<u64> {
        match self.state {
            State::Length { left } => Some(left),
            State::Done => Some(0),
            _ => None,
        }
    }

    fn fail(&mut self, e: BodyError) -> BodyError {
        self.state = State::Failed(e.clone());
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: ChunkedLimits = ChunkedLimits {
        max_chunk_ext_bytes: 32,
        max_trailer_bytes: 64,
        max_body_bytes: 100,
    };

    /// What a caller sees after feeding a whole wire: bytes consumed (or the error), the payload,
    /// whether the body ended, and what the peer closing right after would mean.
    #[derive(Debug, Clone, PartialEq, Eq)]
    struct Outcome {
        consumed: Result<usize, BodyError>,
        payload: Vec<u8>,
        done: bool,
        at_eof: Result<(), BodyError>,
    }

    /// Feeds `wire` in the pieces between `cuts` (ascending offsets), like successive socket reads,
    /// through `next`, checking its contract at every call: payload is a slice ending where the
    /// consumed bytes end, and all of a piece is consumed unless the body ended in it.
    fn feed(framing: Framing, limits: ChunkedLimits, wire: &[u8], cuts: &[usize]) -> Outcome {
        let mut dec = BodyDecoder::new(framing, limits);
        let mut payload = Vec::new();
        let mut consumed = 0;
        let mut start = 0;
        for &end in cuts.iter().chain(std::iter::once(&wire.len())) {
            let mut piece = &wire[start..end];
            start = end;
            loop {
                match dec.next(piece) {
                    Ok(p) => {
                        assert!(p.consumed <= piece.len());
                        assert!(p.data.len() <= p.consumed);
                        assert_eq!(
                            p.data,
                            &piece[p.consumed - p.data.len()..p.consumed],
                            "payload is the tail of the consumed bytes"
                        );
                        payload.extend_from_slice(p.data);
                        consumed += p.consumed;
                        piece = &piece[p.consumed..];
                        if p.consumed == 0 {
                            assert!(piece.is_empty() || dec.is_done(), "no progress");
                            break;
                        }
                    }
                    Err(e) => {
                        let at_eof = dec.eof();
                        assert_eq!(at_eof, Err(e.clone()), "errors are sticky");
                        return Outcome {
                            consumed: Err(e),
                            payload,
                            done: false,
                            at_eof,
                        };
                    }
                }
            }
            // Only the end of the body leaves bytes of a piece unconsumed.
            if !dec.is_done() {
                assert_eq!(consumed, end);
            }
        }
        let done = dec.is_done();
        Outcome {
            consumed: Ok(consumed),
            payload,
            done,
            at_eof: dec.eof(),
        }
    }

    /// The same wire through `decode`, in one call per piece.
    fn feed_decode(
        framing: Framing,
        limits: ChunkedLimits,
        wire: &[u8],
        cuts: &[usize],
    ) -> Outcome {
        let mut dec = BodyDecoder::new(framing, limits);
        let mut payload = Vec::new();
        let mut consumed = 0;
        let mut start = 0;
        for &end in cuts.iter().chain(std::iter::once(&wire.len())) {
            match dec.decode(&wire[start..end], Some(&mut payload)) {
                Ok(n) => consumed += n,
                Err(e) => {
                    let at_eof = dec.eof();
                    return Outcome {
                        consumed: Err(e),
                        payload,
                        done: false,
                        at_eof,
                    };
                }
            }
            start = end;
        }
        let done = dec.is_done();
        Outcome {
            consumed: Ok(consumed),
            payload,
            done,
            at_eof: dec.eof(),
        }
    }

    /// A small deterministic generator for random split points (xorshift64*), so a failure
    /// reproduces.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % n.max(1)
        }
    }

    /// Checks that `wire` gives `expected` however it is split: in one piece, split in two at every
    /// offset, one byte at a time, and in 200 random cuttings; through `next` and `decode` alike;
    /// and that scanning without keeping the payload agrees (hyper's habit for body decoders).
    fn check(framing: Framing, limits: ChunkedLimits, wire: &[u8], expected: &Outcome) {
        let name = format!("{framing:?} {:?}", String::from_utf8_lossy(wire));
        let mut cuttings: Vec<Vec<usize>> = vec![vec![]];
        cuttings.extend((0..=wire.len()).map(|c| vec![c]));
        cuttings.push((1..wire.len()).collect());
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ wire.len() as u64);
        for _ in 0..200 {
            let mut cuts: Vec<usize> = (0..rng.below(6))
                .map(|_| rng.below(wire.len() + 1))
                .collect();
            cuts.sort_unstable();
            cuttings.push(cuts);
        }
        for cuts in &cuttings {
            assert_eq!(
                &feed(framing, limits, wire, cuts),
                expected,
                "next, cuts {cuts:?}: {name}"
            );
            assert_eq!(
                &feed_decode(framing, limits, wire, cuts),
                expected,
                "decode, cuts {cuts:?}: {name}"
            );
        }
        let mut scanner = BodyDecoder::new(framing, limits);
        assert_eq!(
            (scanner.decode(wire, None), scanner.is_done()),
            (expected.consumed.clone(), expected.done),
            "scan only: {name}"
        );
    }

    /// A body that ends inside the wire after `consumed` bytes, with `payload`.
    fn ended(consumed: usize, payload: &[u8]) -> Outcome {
        Outcome {
            consumed: Ok(consumed),
            payload: payload.to_vec(),
            done: true,
            at_eof: Ok(()),
        }
    }

    /// A body still open at the end of the wire: all of it consumed, the peer closing now would cut
    /// it short.
    fn open(consumed: usize, payload: &[u8]) -> Outcome {
        Outcome {
            consumed: Ok(consumed),
            payload: payload.to_vec(),
            done: false,
            at_eof: Err(BodyError::Truncated),
        }
    }

    fn refused(e: BodyError, payload: &[u8]) -> Outcome {
        Outcome {
            consumed: Err(e.clone()),
            payload: payload.to_vec(),
            done: false,
            at_eof: Err(e),
        }
    }

    const NEXT: &[u8] = b"GET /next HTTP/1.1\r\nHost: h\r\n\r\n";

    #[test]
    fn length_bodies_end_exactly_and_leave_pipelined_bytes() {
        let body = b"0123456789";
        check(Framing::Length(10), LIMITS, body, &ended(10, body));
        let wire = [&body[..], NEXT].concat();
        check(Framing::Length(10), LIMITS, &wire, &ended(10, body));
        check(Framing::Length(10), LIMITS, b"01234", &open(5, b"01234"));
        check(Framing::Length(10), LIMITS, b"", &open(0, b""));
        // The cap, at and over it: refused before a byte is read.
        let at_cap = vec![b'x'; 100];
        check(Framing::Length(100), LIMITS, &at_cap, &ended(100, &at_cap));
        check(
            Framing::Length(101),
            LIMITS,
            &at_cap,
            &refused(BodyError::TooLarge, b""),
        );
        check(
            Framing::Length(u64::MAX),
            LIMITS,
            b"x",
            &refused(BodyError::TooLarge, b""),
        );
    }

    #[test]
    fn empty_bodies_consume_nothing() {
        check(Framing::Empty, LIMITS, NEXT, &ended(0, b""));
        check(Framing::Length(0), LIMITS, NEXT, &ended(0, b""));
        check(Framing::Empty, LIMITS, b"", &ended(0, b""));
        assert_eq!(
            BodyDecoder::new(Framing::Empty, LIMITS).bytes_left(),
            Some(0)
        );
    }

    #[test]
    fn chunked_bodies_on_both_legs() {
        // Extensions and trailers are validated and dropped; what follows the body stays unread.
        let body = b"3;x=y\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\nT: v\r\nU:\r\n\r\n";
        let payload = b"abc0123456789abcdef";
        check(Framing::Chunked, LIMITS, body, &ended(body.len(), payload));
        let wire = [&body[..], NEXT].concat();
        check(Framing::Chunked, LIMITS, &wire, &ended(body.len(), payload));
        check(Framing::Chunked, LIMITS, b"0\r\n\r\n", &ended(5, b""));
        // Cut short anywhere, the peer closing is a truncated body.
        for end in 0..body.len() {
            let mut dec = BodyDecoder::new(Framing::Chunked, LIMITS);
            assert_eq!(dec.decode(&body[..end], None), Ok(end));
            assert_eq!(dec.eof(), Err(BodyError::Truncated), "cut at {end}");
        }
    }

    #[test]
    fn chunked_errors_are_the_chunk_grammars() {
        let bad_size = BodyError::Malformed("chunk size is not hex digits");
        check(
            Framing::Chunked,
            LIMITS,
            b"zz\r\nab\r\n0\r\n\r\n",
            &refused(bad_size.clone(), b""),
        );
        check(
            Framing::Chunked,
            LIMITS,
            b"2\r\nab\r\nq\r\n",
            &refused(bad_size, b"ab"),
        );
        check(
            Framing::Chunked,
            LIMITS,
            b"ffffffffffffffffff\r\n",
            &refused(BodyError::Malformed("chunk size overflows"), b""),
        );
        // Over the body cap at the size line, before its data.
        check(
            Framing::Chunked,
            LIMITS,
            b"65\r\n",
            &refused(BodyError::TooLarge, b""),
        );
        check(
            Framing::Chunked,
            LIMITS,
            b"50\r\n0123\r\n",
            &open(10, b"0123\r\n"),
        );
        check(Framing::Chunked, LIMITS, b"40\r\n0123", &open(8, b"0123"));
        check(
            Framing::Chunked,
            LIMITS,
            b"50\r\nabc\r\n",
            &open(9, b"abc\r\n"),
        );
        let over = format!("40\r\n{}\r\n40\r\n", "x".repeat(64));
        check(
            Framing::Chunked,
            LIMITS,
            over.as_bytes(),
            &refused(BodyError::TooLarge, "x".repeat(64).as_bytes()),
        );
        check(
            Framing::Chunked,
            LIMITS,
            b"5\r\nhello!\r\n",
            &refused(
                BodyError::Malformed("missing CRLF after chunk data"),
                b"hello",
            ),
        );
        let long_trailer = format!("0\r\nX: {}\r\n\r\n", "v".repeat(60));
        check(
            Framing::Chunked,
            LIMITS,
            long_trailer.as_bytes(),
            &refused(BodyError::Malformed("trailer section too large"), b""),
        );
        check(
            Framing::Chunked,
            LIMITS,
            b"0\r\nX : y\r\n\r\n",
            &refused(BodyError::Malformed("invalid trailer field name"), b""),
        );
    }

    #[test]
    fn close_delimited_bodies_end_at_eof_within_the_cap() {
        let wire = b"data: 1\n\ndata: 2\n\n";
        let mut outcome = open(wire.len(), wire);
        outcome.at_eof = Ok(());
        check(Framing::UntilClose, LIMITS, wire, &outcome);
        let mut empty = open(0, b"");
        empty.at_eof = Ok(());
        check(Framing::UntilClose, LIMITS, b"", &empty);
        let at_cap = vec![b'x'; 100];
        let mut full = open(100, &at_cap);
        full.at_eof = Ok(());
        check(Framing::UntilClose, LIMITS, &at_cap, &full);
        // One byte over the cap is refused whole, in whichever read it arrives.
        let over = vec![b'x'; 101];
        let mut dec = BodyDecoder::new(Framing::UntilClose, LIMITS);
        assert_eq!(dec.decode(&over[..100], None), Ok(100));
        assert_eq!(dec.next(&over[100..]), Err(BodyError::TooLarge));
        assert_eq!(dec.eof(), Err(BodyError::TooLarge));
        let mut dec = BodyDecoder::new(Framing::UntilClose, LIMITS);
        assert_eq!(dec.next(&over), Err(BodyError::TooLarge));
        assert_eq!(
            BodyDecoder::new(Framing::UntilClose, LIMITS).bytes_left(),
            None
        );
    }

    #[test]
    fn bytes_left_counts_down_a_length() {
        let mut dec = BodyDecoder::new(Framing::Length(10), LIMITS);
        assert_eq!(dec.bytes_left(), Some(10));
        assert_eq!(dec.next(b"0123").map(|p| p.consumed), Ok(4));
        assert_eq!(dec.bytes_left(), Some(6));
        assert_eq!(dec.decode(b"456789GET", None), Ok(6));
        assert_eq!(dec.bytes_left(), Some(0));
        assert!(dec.is_done());
        assert_eq!(
            dec.next(b"GET"),
            Ok(Progress {
                consumed: 0,
                data: b""
            })
        );
        assert_eq!(
            BodyDecoder::new(Framing::Chunked, LIMITS).bytes_left(),
            None
        );
    }

    #[test]
    fn framings_of_both_legs_map_onto_one() {
        assert_eq!(Framing::from(BodyFraming::None), Framing::Empty);
        assert_eq!(Framing::from(BodyFraming::Length(3)), Framing::Length(3));
        assert_eq!(Framing::from(BodyFraming::Chunked), Framing::Chunked);
        assert_eq!(Framing::from(ResponseBody::None), Framing::Empty);
        assert_eq!(Framing::from(ResponseBody::Length(3)), Framing::Length(3));
        assert_eq!(Framing::from(ResponseBody::Chunked), Framing::Chunked);
        assert_eq!(Framing::from(ResponseBody::UntilClose), Framing::UntilClose);
    }
}
