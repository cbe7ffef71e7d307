//! An incremental decoder for the chunked transfer coding (RFC 9112 §7.1). It owns the chunk
//! grammar: size lines, extensions, the CRLF after each chunk, the last chunk and the trailer
//! section, and the cap on decoded bytes. It keeps no buffer of its own: bytes are fed as they
//! arrive, split anywhere, and the result does not depend on where the splits fall. On the request
//! leg it hands out the decoded payload so the relay can re-frame it; on the response leg it only
//! finds where the body ends while the bytes pass through untouched. Deciding *that* a body is
//! chunked belongs to `http/framing.rs`.
//!
//! Trailer fields are validated like header fields and then dropped (RFC 9110 §6.5.1 lets a
//! recipient discard them); the relay never merges them into the head.

use std::ops::Range;

use crate::http::head::{is_field_value_byte, is_tchar};

/// Default cap on the chunk extensions of one size line, in bytes. Extensions carry nothing the
/// relay uses; the cap only has to let real senders through.
pub const DEFAULT_MAX_CHUNK_EXT_BYTES: usize = 4096;

/// Default cap on the trailer section, in bytes of field lines (their CRLFs included, the final
/// empty line not).
pub const DEFAULT_MAX_TRAILER_BYTES: usize = 8192;

/// Cap on the extension bytes of a whole body, in bytes. With only a per-line cap, a peer could send
/// a 1-byte chunk with 4 KiB of extensions for every payload byte and keep us parsing junk for the
/// whole body budget (hyper caps the total for the same reason).
const MAX_TOTAL_CHUNK_EXT_BYTES: u64 = 64 * 1024;

/// Cap on hex digits in one chunk-size. Sixteen fill a u64; leading zeros are valid, so we allow
/// some, but not an endless run of them that would keep us reading a size line forever.
const MAX_CHUNK_SIZE_DIGITS: usize = 32;

/// Limits for one chunked body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkedLimits {
    /// Bytes of chunk extensions (everything between the size digits and the CRLF) on one line.
    pub max_chunk_ext_bytes: usize,
    /// Bytes of trailer field lines, their CRLFs included.
    pub max_trailer_bytes: usize,
    /// Payload bytes of the whole body; over it is a 413.
    pub max_body_bytes: u64,
}

impl ChunkedLimits {
    /// The default extension and trailer caps with the configured body limit.
    pub fn with_max_body(max_body_bytes: u64) -> Self {
        ChunkedLimits {
            max_chunk_ext_bytes: DEFAULT_MAX_CHUNK_EXT_BYTES,
            max_trailer_bytes: DEFAULT_MAX_TRAILER_BYTES,
            max_body_bytes,
        }
    }
}

/// Why a chunked body was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChunkError {
    /// 400 (502 on the response leg): the bytes break the chunked grammar or a size cap.
    Malformed(&'static str),
    /// 413: the payload is larger than `max_body_bytes`.
    TooLarge,
}

/// Where the decoder is in the grammar. The names follow RFC 9112 §7.1:
///
/// ```text
/// chunk      = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
/// chunk-ext  = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )
/// last-chunk = 1*("0") [ chunk-ext ] CRLF
/// trailer-section = *( field-line CRLF )   followed by the final CRLF
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// Reading chunk-size hex digits; `digits` so far.
    Size {
        digits: usize,
    },
    /// BWS after the size or after an extension value: only more BWS or ";" may follow.
    ExtBwsBeforeSemi,
    /// After ";": BWS, then the extension name.
    ExtNameStart,
    ExtName,
    /// BWS after an extension name: "=" or ";" must follow.
    ExtNameBws,
    /// After "=": BWS, then a token or a quoted-string.
    ExtValueStart,
    ExtToken,
    ExtQuoted,
    /// After a backslash inside a quoted-string.
    ExtQuotedPair,
    /// After the closing quote.
    ExtQuotedEnd,
    /// Saw the CR that ends the size line.
    SizeLf,
    /// Inside chunk-data; `remaining` bytes of it are left.
    Data,
    /// After chunk-data: the CR, then the LF.
    DataCr,
    DataLf,
    /// At the start of a trailer field line, or of the final empty line.
    TrailerLineStart,
    TrailerName,
    TrailerValue,
    TrailerLf,
    /// Saw the CR of the final empty line.
    EndLf,
    Done,
    /// An error was returned; every later call returns it again.
    Failed(ChunkError),
}

/// An incremental chunked-body decoder. Feed it with [`ChunkedDecoder::decode`] until
/// [`ChunkedDecoder::is_done`]; bytes after the body are left unconsumed for the next message.
#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    limits: ChunkedLimits,
    state: State,
    /// The chunk-size being read, then the bytes of chunk-data still to come.
    remaining: u64,
    /// Payload bytes of all chunks whose size line was accepted.
    total: u64,
    ext_bytes: usize,
    total_ext_bytes: u64,
    trailer_bytes: usize,
}

impl ChunkedDecoder {
    pub fn new(limits: ChunkedLimits) -> Self {
        ChunkedDecoder {
            limits,
            state: State::Size { digits: 0 },
            remaining: 0,
            total: 0,
            ext_bytes: 0,
            total_ext_bytes: 0,
            trailer_bytes: 0,
        }
    }

    /// Consumes a prefix of `input`: all of it, unless the body ends inside it, in which case the
    /// bytes after the body are not consumed. Decoded payload bytes are appended to `out` when it is
    /// `Some` (request leg: we decode and re-frame) and only scanned when it is `None` (response
    /// leg: the bytes are passed through untouched). Returns how many bytes were consumed; `Ok(0)`
    /// once done.
    ///
    /// Errors: `TooLarge` as soon as a chunk-size would take the payload over `max_body_bytes`
    /// (before its data arrives), `Malformed` for anything off-grammar. After an error the decoder
    /// returns the same error forever; the connection must be closed.
    pub fn decode(
        &mut self,
        input: &[u8],
        mut out: Option<&mut Vec<u8>>,
    ) -> Result<usize, ChunkError> {
        let mut pos = 0;
        loop {
            let (used, data) = self.next_data(&input[pos..])?;
            if let Some(out) = out.as_deref_mut() {
                out.extend_from_slice(&input[pos..][data]);
            }
            pos += used;
            if used == 0 || pos == input.len() {
                return Ok(pos);
            }
        }
    }

    /// Consumes a prefix of `input` up to and including the next run of chunk-data, and says where
    /// that run is: `(consumed, data)` with `data` a range of `input` that ends at `consumed` (empty
    /// when the prefix held framing only). Call again with the rest of the input for the next run.
    /// Consumes all of `input` unless a run of data or the body ends inside it; `Ok((0, 0..0))` once
    /// done. Errors as [`ChunkedDecoder::decode`]; the payload is handed out without a copy.
    pub fn next_data(&mut self, input: &[u8]) -> Result<(usize, Range<usize>), ChunkError> {
        let mut pos = 0;
        while pos < input.len() {
            match self.state {
                State::Done => break,
                State::Failed(ref e) => return Err(e.clone()),
                State::Data => {
                    // Bounded by the input length, so the cast cannot truncate.
                    let n = self.remaining.min((input.len() - pos) as u64) as usize;
                    self.remaining -= n as u64;
                    if self.remaining == 0 {
                        self.state = State::DataCr;
                    }
                    return Ok((pos + n, pos..pos + n));
                }
                _ => {
                    if let Err(e) = self.step(input[pos]) {
                        self.state = State::Failed(e.clone());
                        return Err(e);
                    }
                    pos += 1;
                }
            }
        }
        match self.state {
            State::Failed(ref e) => Err(e.clone()),
            _ => Ok((pos, pos..pos)),
        }
    }

    /// True once the last chunk, the trailer section and the final CRLF have been consumed.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Advances over one byte outside chunk-data.
    fn step(&mut self, b: u8) -> Result<(), ChunkError> {
        use State::*;
        // RFC 9112 §2.2: we accept no bare LF as a line ending anywhere in the framing.
        if b == b'\n' && !matches!(self.state, SizeLf | DataLf | TrailerLf | EndLf) {
            return Err(ChunkError::Malformed("bare LF in chunked body"));
        }
        // The CR that ends the line is not part of the extensions.
        if self.in_extension() && b != b'\r' {
            self.count_ext_byte()?;
        }
        self.state = match self.state {
            Size { digits } => match (hex_value(b), b) {
                (Some(v), _) => {
                    // RFC 9112 §7.1: chunk-size = 1*HEXDIG, nothing else: no sign, no "0x", no
                    // leading whitespace. Checked arithmetic, because a wrapped size is a smuggling
                    // vector.
                    if digits == MAX_CHUNK_SIZE_DIGITS {
                        return Err(ChunkError::Malformed("chunk size has too many digits"));
                    }
                    self.remaining = self
                        .remaining
                        .checked_mul(16)
                        .and_then(|n| n.checked_add(u64::from(v)))
                        .ok_or(ChunkError::Malformed("chunk size overflows"))?;
                    Size { digits: digits + 1 }
                }
                _ if digits == 0 => {
                    return Err(ChunkError::Malformed("chunk size is not hex digits"))
                }
                (None, b' ' | b'\t') => {
                    self.count_ext_byte()?;
                    ExtBwsBeforeSemi
                }
                (None, b';') => {
                    self.count_ext_byte()?;
                    ExtNameStart
                }
                (None, b'\r') => SizeLf,
                (None, _) => return Err(ChunkError::Malformed("invalid byte after chunk size")),
            },
            // RFC 9112 §7.1.1: BWS is allowed only before ";" and "=" and after them, never before
            // the CRLF.
            ExtBwsBeforeSemi => match b {
                b' ' | b'\t' => ExtBwsBeforeSemi,
                b';' => ExtNameStart,
                _ => return Err(ChunkError::Malformed("invalid chunk extension")),
            },
            ExtNameStart => match b {
                b' ' | b'\t' => ExtNameStart,
                b if is_tchar(b) => ExtName,
                _ => return Err(ChunkError::Malformed("invalid chunk extension name")),
            },
            ExtName => match b {
                b if is_tchar(b) => ExtName,
                b' ' | b'\t' => ExtNameBws,
                b'=' => ExtValueStart,
                b';' => ExtNameStart,
                b'\r' => SizeLf,
                _ => return Err(ChunkError::Malformed("invalid chunk extension name")),
            },
            ExtNameBws => match b {
                b' ' | b'\t' => ExtNameBws,
                b'=' => ExtValueStart,
                b';' => ExtNameStart,
                _ => return Err(ChunkError::Malformed("invalid chunk extension")),
            },
            ExtValueStart => match b {
                b' ' | b'\t' => ExtValueStart,
                b'"' => ExtQuoted,
                b if is_tchar(b) => ExtToken,
                _ => return Err(ChunkError::Malformed("invalid chunk extension value")),
            },
            ExtToken => match b {
                b if is_tchar(b) => ExtToken,
                b' ' | b'\t' => ExtBwsBeforeSemi,
                b';' => ExtNameStart,
                b'\r' => SizeLf,
                _ => return Err(ChunkError::Malformed("invalid chunk extension value")),
            },
            // RFC 9110 §5.6.4: qdtext = HTAB / SP / %x21 / %x23-5B / %x5D-7E / obs-text.
            ExtQuoted => match b {
                b'"' => ExtQuotedEnd,
                b'\\' => ExtQuotedPair,
                b'\t' | b' ' | 0x21 | 0x23..=0x5b | 0x5d..=0x7e | 0x80..=0xff => ExtQuoted,
                _ => {
                    return Err(ChunkError::Malformed(
                        "invalid byte in quoted chunk extension",
                    ))
                }
            },
            // RFC 9110 §5.6.4: quoted-pair = "\" ( HTAB / SP / VCHAR / obs-text ).
            ExtQuotedPair => match b {
                b'\t' | b' ' | 0x21..=0x7e | 0x80..=0xff => ExtQuoted,
                _ => {
                    return Err(ChunkError::Malformed(
                        "invalid byte in quoted chunk extension",
                    ))
                }
            },
            ExtQuotedEnd => match b {
                b' ' | b'\t' => ExtBwsBeforeSemi,
                b';' => ExtNameStart,
                b'\r' => SizeLf,
                _ => return Err(ChunkError::Malformed("invalid chunk extension")),
            },
            SizeLf => {
                if b != b'\n' {
                    return Err(ChunkError::Malformed("bare CR in chunk size line"));
                }
                self.ext_bytes = 0;
                if self.remaining == 0 {
                    TrailerLineStart
                } else {
                    // Refuse the body when its size line arrives rather than after we have read
                    // the data: the total is known now.
                    self.total = self
                        .total
                        .checked_add(self.remaining)
                        .filter(|&t| t <= self.limits.max_body_bytes)
                        .ok_or(ChunkError::TooLarge)?;
                    Data
                }
            }
            // RFC 9112 §7.1: chunk-data is followed by exactly CRLF.
            DataCr => match b {
                b'\r' => DataLf,
                _ => return Err(ChunkError::Malformed("missing CRLF after chunk data")),
            },
            DataLf => match b {
                b'\n' => {
                    self.remaining = 0;
                    Size { digits: 0 }
                }
                _ => return Err(ChunkError::Malformed("missing CRLF after chunk data")),
            },
            TrailerLineStart => match b {
                b'\r' => EndLf,
                // RFC 9112 §5.2 and §7.1.2: trailer fields follow the header field rules, so no
                // obs-fold and no whitespace before a field name.
                b' ' | b'\t' => {
                    return Err(ChunkError::Malformed(
                        "trailer line starts with whitespace (obs-fold)",
                    ))
                }
                b if is_tchar(b) => {
                    self.count_trailer_byte()?;
                    TrailerName
                }
                _ => return Err(ChunkError::Malformed("invalid trailer field name")),
            },
            TrailerName => {
                self.count_trailer_byte()?;
                match b {
                    b if is_tchar(b) => TrailerName,
                    b':' => TrailerValue,
                    // RFC 9112 §5.1: no whitespace between the field name and the colon.
                    _ => return Err(ChunkError::Malformed("invalid trailer field name")),
                }
            }
            TrailerValue => {
                self.count_trailer_byte()?;
                match b {
                    b'\r' => TrailerLf,
                    // RFC 9110 §5.5: no CTLs other than HTAB in a field value.
                    b if is_field_value_byte(b) => TrailerValue,
                    _ => return Err(ChunkError::Malformed("invalid trailer field value")),
                }
            }
            TrailerLf => {
                self.count_trailer_byte()?;
                match b {
                    b'\n' => TrailerLineStart,
                    _ => return Err(ChunkError::Malformed("bare CR in trailer section")),
                }
            }
            EndLf => match b {
                b'\n' => Done,
                _ => return Err(ChunkError::Malformed("bare CR after trailer section")),
            },
            // `decode` handles these without calling `step`.
            Data | Done | Failed(_) => return Ok(()),
        };
        Ok(())
    }

    fn in_extension(&self) -> bool {
        use State::*;
        matches!(
            self.state,
            ExtBwsBeforeSemi
                | ExtNameStart
                | ExtName
                | ExtNameBws
                | ExtValueStart
                | ExtToken
                | ExtQuoted
                | ExtQuotedPair
                | ExtQuotedEnd
        )
    }

    /// Counts one byte of chunk extension against the per-line and per-body caps.
    fn count_ext_byte(&mut self) -> Result<(), ChunkError> {
        self.ext_bytes += 1;
        self.total_ext_bytes += 1;
        if self.ext_bytes > self.limits.max_chunk_ext_bytes
            || self.total_ext_bytes > MAX_TOTAL_CHUNK_EXT_BYTES
        {
            return Err(ChunkError::Malformed("chunk extensions too long"));
        }
        Ok(())
    }

    fn count_trailer_byte(&mut self) -> Result<(), ChunkError> {
        self.trailer_bytes += 1;
        if self.trailer_bytes > self.limits.max_trailer_bytes {
            return Err(ChunkError::Malformed("trailer section too large"));
        }
        Ok(())
    }
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
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

    /// What one feed produced: bytes consumed (or the error), the payload, and whether it finished.
    type Outcome = (Result<usize, ChunkError>, Vec<u8>, bool);

    /// Feeds `input` in pieces cut at `cuts` (ascending offsets), like successive socket reads.
    fn feed(input: &[u8], cuts: &[usize], limits: ChunkedLimits) -> Outcome {
        let mut decoder = ChunkedDecoder::new(limits);
        let mut out = Vec::new();
        let mut consumed = 0;
        let mut start = 0;
        for &end in cuts.iter().chain(std::iter::once(&input.len())) {
            // The decoder consumes every byte it is given until the body ends, and nothing after.
            match decoder.decode(&input[start..end], Some(&mut out)) {
                Ok(n) => consumed += n,
                Err(e) => return (Err(e), out, decoder.is_done()),
            }
            start = end;
        }
        (Ok(consumed), out, decoder.is_done())
    }

    /// Checks `input` decodes to `expected` in one call, split at every offset, one byte at a
    /// time, and scanned without output (hyper's habit for body decoders).
    fn check(input: &[u8], expected: &Outcome) {
        check_with(input, expected, LIMITS);
    }

    fn check_with(input: &[u8], expected: &Outcome, limits: ChunkedLimits) {
        let name = String::from_utf8_lossy(input);
        assert_eq!(&feed(input, &[], limits), expected, "one shot: {name:?}");
        for cut in 0..=input.len() {
            assert_eq!(
                &feed(input, &[cut], limits),
                expected,
                "split at {cut}: {name:?}"
            );
        }
        let every: Vec<usize> = (1..input.len()).collect();
        assert_eq!(
            &feed(input, &every, limits),
            expected,
            "byte by byte: {name:?}"
        );

        let mut scanner = ChunkedDecoder::new(limits);
        let scanned = scanner.decode(input, None);
        assert_eq!(
            (scanned, scanner.is_done()),
            (expected.0.clone(), expected.2),
            "scan only: {name:?}"
        );
    }

    fn ok(consumed: usize, payload: &[u8]) -> Outcome {
        (Ok(consumed), payload.to_vec(), true)
    }

    fn malformed(why: &'static str, payload: &[u8]) -> Outcome {
        (Err(ChunkError::Malformed(why)), payload.to_vec(), false)
    }

    #[test]
    fn decodes_valid_bodies() {
        let vectors: &[(&[u8], &[u8])] = &[
            (b"0\r\n\r\n", b""),
            (b"5\r\nhello\r\n0\r\n\r\n", b"hello"),
            (b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", b"hello world"),
            (b"A\r\n0123456789\r\n0\r\n\r\n", b"0123456789"),
            (b"a\r\n0123456789\r\n000\r\n\r\n", b"0123456789"),
            (b"0005\r\nhe\r\nl\r\n0\r\n\r\n", b"he\r\nl"),
            (b"3;name\r\nabc\r\n0\r\n\r\n", b"abc"),
            (
                b"3;name=value;other=\"q \\\" s\"\r\nabc\r\n0;last\r\n\r\n",
                b"abc",
            ),
            (b"3 ; a = b\t;\tc\r\nabc\r\n0\r\n\r\n", b"abc"),
            (b"3;a=\"\"\r\nabc\r\n0\r\n\r\n", b"abc"),
            (b"3\r\nabc\r\n0\r\nX-Trailer: yes\r\nOther:\r\n\r\n", b"abc"),
            (b"1\r\n\x00\r\n0\r\nX: a\tb\xff\r\n\r\n", b"\x00"),
        ];
        for (input, payload) in vectors {
            check(input, &ok(input.len(), payload));
        }
    }

    #[test]
    fn leaves_bytes_after_the_body() {
        let input = b"3\r\nabc\r\n0\r\n\r\nGET / HTTP/1.1\r\n";
        check(input, &ok(input.len() - 16, b"abc"));
        let mut decoder = ChunkedDecoder::new(LIMITS);
        assert_eq!(decoder.decode(input, None), Ok(input.len() - 16));
        assert_eq!(decoder.decode(b"more", None), Ok(0));
        assert!(decoder.is_done());
    }

    #[test]
    fn incomplete_bodies_wait() {
        for input in [
            &b""[..],
            b"5",
            b"5\r",
            b"5\r\nhel",
            b"5\r\nhello\r",
            b"5\r\nhello\r\n0\r\n",
            b"0\r\nX: y\r\n",
            b"0\r\n\r",
        ] {
            let payload = if input.starts_with(b"5\r\n") {
                &input[3..input.len().min(8)]
            } else {
                b""
            };
            check(input, &(Ok(input.len()), payload.to_vec(), false));
        }
    }

    #[test]
    fn chunk_size_is_hex_digits_only() {
        let not_hex = "chunk size is not hex digits";
        check(
            b"0x5\r\nhello\r\n0\r\n\r\n",
            &malformed("invalid byte after chunk size", b""),
        );
        check(b"-1\r\n", &malformed(not_hex, b""));
        check(b"+5\r\nhello\r\n", &malformed(not_hex, b""));
        check(b" 5\r\nhello\r\n", &malformed(not_hex, b""));
        check(b"\r\n", &malformed(not_hex, b""));
        check(b"g\r\n", &malformed(not_hex, b""));
        check(b"5g\r\n", &malformed("invalid byte after chunk size", b""));
        check(
            b"5 \r\nhello\r\n",
            &malformed("invalid chunk extension", b""),
        );
        check(
            b"ffffffffffffffffff\r\n",
            &malformed("chunk size overflows", b""),
        );
        check(
            b"10000000000000000\r\n",
            &malformed("chunk size overflows", b""),
        );
        let zeros = format!("{}1\r\nx\r\n0\r\n\r\n", "0".repeat(31));
        check(zeros.as_bytes(), &ok(zeros.len(), b"x"));
        let too_many = format!("{}1\r\n", "0".repeat(32));
        check(
            too_many.as_bytes(),
            &malformed("chunk size has too many digits", b""),
        );
    }

    #[test]
    fn crlf_is_exact() {
        check(
            b"5\nhello\r\n0\r\n\r\n",
            &malformed("bare LF in chunked body", b""),
        );
        check(
            b"5\rhello\r\n",
            &malformed("bare CR in chunk size line", b""),
        );
        check(
            b"5\r\nhelloX\r\n",
            &malformed("missing CRLF after chunk data", b"hello"),
        );
        check(
            b"5\r\nhello0\r\n\r\n",
            &malformed("missing CRLF after chunk data", b"hello"),
        );
        check(
            b"5\r\nhello\n0\r\n\r\n",
            &malformed("bare LF in chunked body", b"hello"),
        );
        check(
            b"5\r\nhello\rX",
            &malformed("missing CRLF after chunk data", b"hello"),
        );
        check(
            b"5\r\nhello\r\n0\n\n",
            &malformed("bare LF in chunked body", b"hello"),
        );
        check(b"0\r\n\n", &malformed("bare LF in chunked body", b""));
        check(
            b"0\r\n\rX",
            &malformed("bare CR after trailer section", b""),
        );
        check(
            b"5\r\nhelloX\n0\r\n\r\n",
            &malformed("missing CRLF after chunk data", b"hello"),
        );
        // A data chunk longer than its size is the classic smuggling shape.
        check(
            b"3\r\nabcdef\r\n0\r\n\r\n",
            &malformed("missing CRLF after chunk data", b"abc"),
        );
    }

    #[test]
    fn extensions_follow_the_grammar() {
        let ext = "invalid chunk extension";
        let name = "invalid chunk extension name";
        let value = "invalid chunk extension value";
        check(b"3;\r\nabc\r\n", &malformed(name, b""));
        check(b"3;=v\r\nabc\r\n", &malformed(name, b""));
        check(b"3;a b\r\nabc\r\n", &malformed(ext, b""));
        check(b"3;a \r\nabc\r\n", &malformed(ext, b""));
        check(b"3;a=\r\nabc\r\n", &malformed(value, b""));
        check(b"3;a=b c\r\nabc\r\n", &malformed(ext, b""));
        check(b"3;a=(b)\r\nabc\r\n", &malformed(value, b""));
        check(
            b"3;a=\"b\r\nabc\r\n",
            &malformed("invalid byte in quoted chunk extension", b""),
        );
        check(
            b"3;a=\"b\x00\"\r\nabc\r\n",
            &malformed("invalid byte in quoted chunk extension", b""),
        );
        check(b"3;a=\"b\"c\r\nabc\r\n", &malformed(ext, b""));
        check(b"3;a\nabc\r\n", &malformed("bare LF in chunked body", b""));
        check(
            b"3;a\rabc\r\n",
            &malformed("bare CR in chunk size line", b""),
        );
    }

    #[test]
    fn extension_bytes_are_capped() {
        // 32 bytes of extension on one line pass; 33 do not.
        let at_cap = format!("1;{}\r\nx\r\n0\r\n\r\n", "a".repeat(31));
        check(at_cap.as_bytes(), &ok(at_cap.len(), b"x"));
        let over = format!("1;{}\r\nx\r\n0\r\n\r\n", "a".repeat(32));
        check(
            over.as_bytes(),
            &malformed("chunk extensions too long", b""),
        );
        let over_bws = format!("1{};a\r\nx\r\n", " ".repeat(33));
        check(
            over_bws.as_bytes(),
            &malformed("chunk extensions too long", b""),
        );
        // The per-body cap stops many small chunks each carrying the per-line maximum.
        let limits = ChunkedLimits {
            max_chunk_ext_bytes: 4096,
            max_trailer_bytes: 64,
            max_body_bytes: 1 << 20,
        };
        let line = format!("1;{}\r\nx\r\n", "e".repeat(4094));
        let mut decoder = ChunkedDecoder::new(limits);
        let mut result = Ok(0);
        for _ in 0..17 {
            result = decoder.decode(line.as_bytes(), None);
            if result.is_err() {
                break;
            }
        }
        assert_eq!(
            result,
            Err(ChunkError::Malformed("chunk extensions too long"))
        );
    }

    #[test]
    fn trailers_follow_field_rules() {
        check(
            b"0\r\nX : y\r\n\r\n",
            &malformed("invalid trailer field name", b""),
        );
        check(
            b"0\r\n X: y\r\n\r\n",
            &malformed("trailer line starts with whitespace (obs-fold)", b""),
        );
        check(
            b"0\r\nX: y\r\n z\r\n\r\n",
            &malformed("trailer line starts with whitespace (obs-fold)", b""),
        );
        check(
            b"0\r\nX: y\x00\r\n\r\n",
            &malformed("invalid trailer field value", b""),
        );
        check(
            b"0\r\nX: y\x7f\r\n\r\n",
            &malformed("invalid trailer field value", b""),
        );
        check(
            b"0\r\nX: y\rz\r\n\r\n",
            &malformed("bare CR in trailer section", b""),
        );
        check(
            b"0\r\nX: y\n\r\n",
            &malformed("bare LF in chunked body", b""),
        );
        check(
            b"0\r\nNoColon\r\n\r\n",
            &malformed("invalid trailer field name", b""),
        );
        check(
            b"0\r\n:v\r\n\r\n",
            &malformed("invalid trailer field name", b""),
        );
        // 64 bytes of field lines pass, 65 do not.
        let at_cap = format!("0\r\nX: {}\r\n\r\n", "v".repeat(59));
        check(at_cap.as_bytes(), &ok(at_cap.len(), b""));
        let over = format!("0\r\nX: {}\r\n\r\n", "v".repeat(60));
        check(
            over.as_bytes(),
            &malformed("trailer section too large", b""),
        );
    }

    #[test]
    fn body_size_is_capped_at_the_size_line() {
        let limits = ChunkedLimits {
            max_body_bytes: 10,
            ..LIMITS
        };
        let exact = b"5\r\nhello\r\n5\r\nworld\r\n0\r\n\r\n";
        check_with(exact, &ok(exact.len(), b"helloworld"), limits);
        // Refused when the size line that crosses the limit is complete, before its data.
        check_with(
            b"5\r\nhello\r\n6\r\nworld!\r\n0\r\n\r\n",
            &(Err(ChunkError::TooLarge), b"hello".to_vec(), false),
            limits,
        );
        check_with(
            b"b\r\n",
            &(Err(ChunkError::TooLarge), vec![], false),
            limits,
        );
        check_with(
            b"ffffffffffffffff\r\n",
            &(Err(ChunkError::TooLarge), vec![], false),
            limits,
        );
    }

    #[test]
    fn errors_are_sticky() {
        let mut decoder = ChunkedDecoder::new(LIMITS);
        let err = Err(ChunkError::Malformed("chunk size is not hex digits"));
        assert_eq!(decoder.decode(b"z", None), err);
        assert_eq!(decoder.decode(b"0\r\n\r\n", None), err);
        assert_eq!(decoder.decode(b"", None), err);
        assert!(!decoder.is_done());
    }

    #[test]
    fn default_limits() {
        let limits = ChunkedLimits::with_max_body(7);
        assert_eq!(limits.max_body_bytes, 7);
        assert_eq!(limits.max_chunk_ext_bytes, DEFAULT_MAX_CHUNK_EXT_BYTES);
        assert_eq!(limits.max_trailer_bytes, DEFAULT_MAX_TRAILER_BYTES);
    }
}
