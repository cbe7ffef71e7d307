//! The chunked decoder (`src/http/chunked.rs`), differential against a reference decoder written here the
//! simple way: the whole input at once, one grammar rule per function, positions instead of states
//! (RFC 9112 §7.1 with our limits: at most 32 size digits, extensions counted per line and per body,
//! trailer bytes counted with their CRLFs, CRLF as the only line ending, the body cap checked when a
//! size line ends). Both must agree on the outcome (bytes consumed and done, still incomplete, or
//! which kind of error) and on the payload handed out, also when the input is split in two at a
//! fuzzer-chosen point; scanning without output must agree with decoding.
//!
//! The first four bytes pick the limits and the split point; the rest is the body.

use relayapi::http::chunked::{ChunkError, ChunkedDecoder, ChunkedLimits};

/// `chunked.rs`'s cap on the extension bytes of one body.
const MAX_TOTAL_EXT: usize = 64 * 1024;
/// `chunked.rs`'s cap on hex digits in one chunk-size.
const MAX_SIZE_DIGITS: usize = 32;

/// What a caller sees: bytes consumed (or the error), the payload, and whether the body ended.
pub type Outcome = (Result<usize, ChunkError>, Vec<u8>, bool);

pub fn check(data: &[u8]) {
    let [a, b, c, d, body @ ..] = data else {
        return;
    };
    let limits = ChunkedLimits {
        max_chunk_ext_bytes: usize::from(*a),
        max_trailer_bytes: usize::from(*b) * 4,
        max_body_bytes: u64::from(*c) * 16,
    };
    let cut = usize::from(*d) % (body.len() + 1);

    let whole = feed(limits, &[body], true);
    assert_eq!(
        kind(whole.clone()),
        reference(body, &limits),
        "decoder vs reference"
    );
    let split = feed(limits, &[&body[..cut], &body[cut..]], true);
    assert_eq!(whole, split, "split at {cut}");
    let scanned = feed(limits, &[body], false);
    assert_eq!((&scanned.0, scanned.2), (&whole.0, whole.2));
    assert!(scanned.1.is_empty());
}

/// Feeds `pieces` in order, as successive reads.
fn feed(limits: ChunkedLimits, pieces: &[&[u8]], keep: bool) -> Outcome {
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

/// Why the reference stopped before the end of the body.
enum Stop {
    /// The input ended; everything was consumed.
    More,
    Bad(ChunkError),
}

fn malformed() -> Stop {
    Stop::Bad(malformed_error())
}

struct Reader<'a> {
    input: &'a [u8],
    pos: usize,
    limits: &'a ChunkedLimits,
    payload: Vec<u8>,
    total: u64,
    ext_total: usize,
    trailer: usize,
}

pub fn reference(input: &[u8], limits: &ChunkedLimits) -> Outcome {
    let mut r = Reader {
        input,
        pos: 0,
        limits,
        payload: Vec::new(),
        total: 0,
        ext_total: 0,
        trailer: 0,
    };
    match r.body() {
        Ok(()) => (Ok(r.pos), r.payload, true),
        Err(Stop::More) => (Ok(input.len()), r.payload, false),
        // Only the kind of error is compared; the decoder's messages are for people.
        Err(Stop::Bad(e)) => (Err(e), r.payload, false),
    }
}

/// The outcome with the error message dropped: the decoder's messages are for people, only the
/// kind of error is part of the contract.
pub fn kind(o: Outcome) -> Outcome {
    match o {
        (Err(ChunkError::Malformed(_)), payload, done) => (Err(malformed_error()), payload, done),
        o => o,
    }
}

pub fn malformed_error() -> ChunkError {
    ChunkError::Malformed("reference")
}

impl Reader<'_> {
    fn peek(&self) -> Result<u8, Stop> {
        self.input.get(self.pos).copied().ok_or(Stop::More)
    }

    fn take(&mut self) -> Result<u8, Stop> {
        let b = self.peek()?;
        self.pos += 1;
        Ok(b)
    }

    fn expect(&mut self, want: u8) -> Result<(), Stop> {
        if self.take()? == want {
            Ok(())
        } else {
            Err(malformed())
        }
    }

    fn body(&mut self) -> Result<(), Stop> {
        loop {
            let size = self.chunk_size()?;
            self.extensions()?;
            self.expect(b'\r')?;
            self.expect(b'\n')?;
            if size == 0 {
                return self.trailer_section();
            }
            self.total = self
                .total
                .checked_add(size)
                .filter(|&t| t <= self.limits.max_body_bytes)
                .ok_or(Stop::Bad(ChunkError::TooLarge))?;
            let mut left = size;
            while left > 0 {
                let b = self.take()?;
                self.payload.push(b);
                left -= 1;
            }
            self.expect(b'\r')?;
            self.expect(b'\n')?;
        }
    }

    /// chunk-size = 1*HEXDIG, at most 32 digits, within a u64.
    fn chunk_size(&mut self) -> Result<u64, Stop> {
        let mut size = 0u64;
        let mut digits = 0;
        while let Some(v) = char::from(self.peek()?).to_digit(16) {
            if digits == MAX_SIZE_DIGITS {
                return Err(malformed());
            }
            size = size
                .checked_mul(16)
                .and_then(|s| s.checked_add(u64::from(v)))
                .ok_or_else(malformed)?;
            digits += 1;
            self.pos += 1;
        }
        if digits == 0 {
            return Err(malformed());
        }
        Ok(size)
    }

    /// chunk-ext = *( BWS ";" BWS name [ BWS "=" BWS ( token / quoted-string ) ] ), up to the CR
    /// (BWS directly before the CR is refused). Every byte of it counts against the per-line and
    /// per-body caps as it is read.
    fn extensions(&mut self) -> Result<(), Stop> {
        let mut line = 0;
        loop {
            // After the size or a value: the CR, or BWS ";".
            if self.peek()? == b'\r' {
                return Ok(());
            }
            self.bws(&mut line)?;
            if self.ext_byte(&mut line)? != b';' {
                return Err(malformed());
            }
            self.bws(&mut line)?;
            if !is_tchar(self.ext_byte(&mut line)?) {
                return Err(malformed());
            }
            while is_tchar(self.peek()?) {
                self.ext_byte(&mut line)?;
            }
            // After the name: the CR, the next ";", or BWS "=".
            match self.peek()? {
                b'\r' => return Ok(()),
                b';' => continue,
                _ => {}
            }
            self.bws(&mut line)?;
            match self.peek()? {
                b';' => continue,
                b'=' => {}
                _ => {
                    self.ext_byte(&mut line)?;
                    return Err(malformed());
                }
            }
            self.ext_byte(&mut line)?;
            self.bws(&mut line)?;
            match self.ext_byte(&mut line)? {
                b'"' => loop {
                    match self.ext_byte(&mut line)? {
                        b'"' => break,
                        b'\\' => {
                            let q = self.ext_byte(&mut line)?;
                            if !(q == b'\t' || (0x20..=0x7e).contains(&q) || q >= 0x80) {
                                return Err(malformed());
                            }
                        }
                        b'\t' | b' ' | 0x21 | 0x23..=0x5b | 0x5d..=0x7e | 0x80..=0xff => {}
                        _ => return Err(malformed()),
                    }
                },
                b if is_tchar(b) => {
                    while is_tchar(self.peek()?) {
                        self.ext_byte(&mut line)?;
                    }
                }
                _ => return Err(malformed()),
            }
        }
    }

    fn bws(&mut self, line: &mut usize) -> Result<(), Stop> {
        while matches!(self.peek()?, b' ' | b'\t') {
            self.ext_byte(line)?;
        }
        Ok(())
    }

    /// Takes one extension byte, counting it; a LF here is a bare LF.
    fn ext_byte(&mut self, line: &mut usize) -> Result<u8, Stop> {
        let b = self.take()?;
        *line += 1;
        self.ext_total += 1;
        if b == b'\n' || *line > self.limits.max_chunk_ext_bytes || self.ext_total > MAX_TOTAL_EXT {
            return Err(malformed());
        }
        Ok(b)
    }

    /// trailer-section = *( field-name ":" field-value CRLF ) CRLF, field lines counted with their
    /// CRLFs against the trailer cap.
    fn trailer_section(&mut self) -> Result<(), Stop> {
        loop {
            if self.peek()? == b'\r' {
                self.pos += 1;
                return self.expect(b'\n');
            }
            let first = self.trailer_byte()?;
            if !is_tchar(first) {
                return Err(malformed());
            }
            loop {
                match self.trailer_byte()? {
                    b':' => break,
                    b if is_tchar(b) => {}
                    _ => return Err(malformed()),
                }
            }
            loop {
                match self.trailer_byte()? {
                    b'\r' => break,
                    b'\t' | b' ' | 0x21..=0x7e | 0x80..=0xff => {}
                    _ => return Err(malformed()),
                }
            }
            if self.trailer_byte()? != b'\n' {
                return Err(malformed());
            }
        }
    }

    fn trailer_byte(&mut self) -> Result<u8, Stop> {
        let b = self.take()?;
        self.trailer += 1;
        if self.trailer > self.limits.max_trailer_bytes {
            return Err(malformed());
        }
        Ok(b)
    }
}

/// RFC 9110 §5.6.2 tchar.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}
