//! Following a JSON document fed in pieces and keeping only the values at a few watched paths (a provider
//! response's `usage`, `response.usage`, each array element's `usageMetadata`, ...), so a body of any
//! size is read as it passes by with a fixed amount of memory: one nesting bit per open container (as in
//! `body_scan.rs`), one member name of at most [`MAX_RAW_NAME_BYTES`], and one captured value of at most
//! [`MAX_CAPTURE_BYTES`]; which paths are watched is `json/path.rs`. It is a skimmer, not a parser: it checks the structure it walks (strings closed,
//! no control characters in them, brackets matched, names where names go, commas and colons in place, one
//! top-level value) and treats any run of `[A-Za-z0-9+.-]` as a scalar without checking its grammar. The
//! values it hands back are read with the strict `body_scan.rs`, and member names on a watched path are
//! unescaped by it too (`"usag\u0065"` is `usage`), so the validation that matters is done once, there.
//! A watched member that appears twice in one object is an error: which copy a client reads is unknown.

use crate::json::body_scan::{self, MAX_DEPTH};
pub use crate::json::path::{Path, Step, MAX_NAME_BYTES};
use crate::json::path::{Paths, MAX_PATH_STEPS};
use crate::json::plain::plain_run;

/// Largest value kept for one watched path, in bytes. A usage report is a few hundred bytes (OpenAI's
/// with every detail object is under 600); a larger one is reported as oversized, never buffered.
pub const MAX_CAPTURE_BYTES: usize = 4096;

/// Longest raw member name kept for comparison: [`MAX_NAME_BYTES`] characters written as `\uXXXX`
/// escapes, plus the quotes. A longer name can never unescape to a watched one.
pub const MAX_RAW_NAME_BYTES: usize = MAX_NAME_BYTES * 6 + 2;

/// What a watched value turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Captured<'a> {
    /// The value's bytes, from its first to its last byte.
    Value(&'a [u8]),
    /// The value was longer than [`MAX_CAPTURE_BYTES`] and was skipped.
    Oversized,
}

/// Why a document could not be followed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkimError {
    /// Not the structure of a JSON value (or a watched name with a bad escape or bad UTF-8).
    Syntax,
    /// Nested deeper than `body_scan::MAX_DEPTH`.
    TooDeep,
    /// A watched member appears twice in one object.
    Duplicate,
    /// The input ended inside the value (or held no value at all).
    Truncated,
}

/// Where the lexer is: between tokens, in a value string or a member name (just after a backslash
/// or not), or in a scalar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lex {
    Outside,
    Str,
    StrEscape,
    Name,
    NameEscape,
    Scalar,
}

/// What the innermost open container (or the top level) accepts next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// A value (at the top level, after `:` or after `,` in an array).
    Value,
    /// Just after `[`: a value or `]`.
    ValueOrClose,
    /// Just after `{`: a name or `}`.
    NameOrClose,
    /// After `,` in an object.
    Name,
    /// After a member name.
    Colon,
    /// After a value inside a container.
    CommaOrClose,
    /// After the top-level value: nothing but whitespace.
    End,
}

/// A value being kept.
struct Capture {
    path: usize,
    /// Open containers around the value when it started.
    depth: usize,
    oversized: bool,
}

/// An incremental skimmer over one JSON document. Feed it the document in pieces of any size; it calls
/// the sink once per watched value, as soon as the value ends.
pub struct Skimmer {
    paths: Paths,
    lex: Lex,
    expect: Expect,
    /// Open containers.
    depth: usize,
    /// Bit `k`: the `k`-th open container (from 0) is an object.
    stack: u128,
    /// `live[d]`: the paths whose first `d` steps lead to the open container at depth `d` (`live[0]`:
    /// every path, for the top-level value).
    live: [u32; MAX_PATH_STEPS + 1],
    /// Per open container at depth `d <= MAX_PATH_STEPS`, the paths whose member at that level was
    /// already seen in it.
    seen: [u32; MAX_PATH_STEPS + 1],
    /// The paths that the next value's step matches.
    pending: u32,
    name: [u8; MAX_RAW_NAME_BYTES],
    name_len: usize,
    name_escaped: bool,
    /// The current member name can be on a watched path (its container is one), so its bytes are
    /// recorded; no other name is ever compared.
    name_kept: bool,
    capture: Option<Capture>,
    /// Where the running capture's bytes start in the piece being fed (0 when it began in an earlier
    /// piece, whose bytes are then in `buf`).
    kept_from: usize,
    /// The running capture's bytes from earlier pieces; empty while the value lies within one piece,
    /// which is then handed on as a slice of it.
    buf: Vec<u8>,
    started: bool,
    error: Option<SkimError>,
}

impl Skimmer {
    /// A skimmer for one document, watching `paths` (within the limits of `json/path.rs`; of two
    /// overlapping paths, the outer value is kept).
    pub fn new(paths: &'static [Path]) -> Self {
        Skimmer::from_paths(Paths::new(paths))
    }

    fn from_paths(paths: Paths) -> Self {
        let all = paths.all();
        Skimmer {
            paths,
            lex: Lex::Outside,
            expect: Expect::Value,
            depth: 0,
            stack: 0,
            live: [all, 0, 0, 0],
            seen: [0; MAX_PATH_STEPS + 1],
            pending: all,
            name: [0; MAX_RAW_NAME_BYTES],
            name_len: 0,
            name_escaped: false,
            name_kept: false,
            capture: None,
            kept_from: 0,
            buf: Vec::new(),
            started: false,
            error: None,
        }
    }

    /// Start over on a new document with the same paths, keeping the capture buffer's memory.
    pub fn reset(&mut self) {
        let buf = std::mem::take(&mut self.buf);
        *self = Skimmer::from_paths(self.paths);
        self.buf = buf;
        self.buf.clear();
    }

    /// Follow the next piece of the document. `sink(path_index, captured)` is called for each watched
    /// value as it ends.
    pub fn feed(&mut self, input: &[u8], sink: &mut dyn FnMut(usize, Captured<'_>)) {
        // Runs of bytes that change nothing but the position (the inside of a string or name, a
        // number, whitespace) are skipped in one search each, and a watched value is handed on as a
        // slice of `input` when it lies within it: byte by byte, the bench's 300-byte answer cost
        // about 9,000 instructions (`bench/instructions.sh`).
        if self.error.is_some() {
            return;
        }
        self.kept_from = 0;
        let mut i = 0;
        while i < input.len() {
            let run = match self.lex {
                Lex::Str => plain_run(&input[i..]),
                Lex::Name => {
                    let run = plain_run(&input[i..]);
                    // The name's bytes are recorded as `byte` would, in one copy, when it can be
                    // on a watched path at all.
                    if self.name_kept {
                        let room = MAX_RAW_NAME_BYTES.saturating_sub(self.name_len).min(run);
                        if room > 0 {
                            self.name[self.name_len..self.name_len + room]
                                .copy_from_slice(&input[i..i + room]);
                        }
                        self.name_len = self.name_len.saturating_add(run);
                    }
                    run
                }
                Lex::Scalar => run_of(&input[i..], &SCALAR),
                // Compact JSON has no whitespace between tokens: look before searching.
                Lex::Outside if WHITESPACE[usize::from(input[i])] => {
                    run_of(&input[i..], &WHITESPACE)
                }
                Lex::Outside | Lex::StrEscape | Lex::NameEscape => 0,
            };
            i += run;
            if i == input.len() {
                break;
            }
            if let Err(e) = self.byte(input, i, sink) {
                self.error = Some(e);
                return;
            }
            i += 1;
        }
        self.stash(input);
    }

    /// The piece ended inside a watched value: keep its bytes from this piece, or give up on it once
    /// it is longer than [`MAX_CAPTURE_BYTES`].
    fn stash(&mut self, input: &[u8]) {
        let Some(c) = &mut self.capture else { return };
        if c.oversized {
            return;
        }
        let piece = &input[self.kept_from..];
        if self.buf.len() + piece.len() > MAX_CAPTURE_BYTES {
            c.oversized = true;
            self.buf.clear();
            return;
        }
        if self.buf.capacity() < self.buf.len() + piece.len() {
            // Exactly the cap, never the doubling that `extend` would choose.
            self.buf.reserve_exact(MAX_CAPTURE_BYTES - self.buf.len());
        }
        self.buf.extend_from_slice(piece);
    }

    /// The document ended: report whether it was one complete value.
    pub fn finish(&mut self, sink: &mut dyn FnMut(usize, Captured<'_>)) -> Result<(), SkimError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        if self.lex == Lex::Scalar {
            self.lex = Lex::Outside;
            // Everything of the value is in `buf` already (`stash`).
            self.kept_from = 0;
            self.value_end(&[], 0, sink);
        }
        if self.lex != Lex::Outside || self.expect != Expect::End {
            return Err(SkimError::Truncated);
        }
        Ok(())
    }

    /// Take the byte `input[at]`, which `feed`'s runs did not skip.
    fn byte(
        &mut self,
        input: &[u8],
        at: usize,
        sink: &mut dyn FnMut(usize, Captured<'_>),
    ) -> Result<(), SkimError> {
        let b = input[at];
        match self.lex {
            Lex::Str | Lex::StrEscape | Lex::Name | Lex::NameEscape => {
                let name = matches!(self.lex, Lex::Name | Lex::NameEscape);
                if name && self.name_kept {
                    if let Some(slot) = self.name.get_mut(self.name_len) {
                        *slot = b;
                    }
                    self.name_len = self.name_len.saturating_add(1);
                }
                self.lex = match (self.lex, b) {
                    (Lex::StrEscape, _) => Lex::Str,
                    (Lex::NameEscape, _) => Lex::Name,
                    // RFC 8259 §7: control characters must be escaped.
                    (_, 0..=0x1f) => return Err(SkimError::Syntax),
                    (Lex::Str, b'\\') => Lex::StrEscape,
                    (Lex::Name, b'\\') => {
                        self.name_escaped = true;
                        Lex::NameEscape
                    }
                    (_, b'"') if name => {
                        self.lex = Lex::Outside;
                        return self.name_end();
                    }
                    (_, b'"') => {
                        self.lex = Lex::Outside;
                        self.value_end(input, at + 1, sink);
                        return Ok(());
                    }
                    (lex, _) => lex,
                };
                return Ok(());
            }
            Lex::Scalar => {
                if is_scalar_byte(b) {
                    return Ok(());
                }
                // The scalar ends before this byte, which is not part of it.
                self.lex = Lex::Outside;
                self.value_end(input, at, sink);
            }
            Lex::Outside => {}
        }
        match b {
            // RFC 8259 §2: insignificant whitespace.
            b' ' | b'\t' | b'\n' | b'\r' => {}
            b'{' | b'[' => {
                self.value_start(at)?;
                if self.depth >= MAX_DEPTH {
                    return Err(SkimError::TooDeep);
                }
                let object = b == b'{';
                self.stack = self.stack & !(1 << self.depth) | u128::from(object) << self.depth;
                self.depth += 1;
                if self.depth <= MAX_PATH_STEPS {
                    let d = self.depth;
                    self.live[d] = self.pending & self.paths.longer_than(d - 1);
                    self.seen[d] = 0;
                }
                self.expect = if object {
                    Expect::NameOrClose
                } else {
                    self.element_pending();
                    Expect::ValueOrClose
                };
            }
            b'}' | b']' => {
                let object = b == b'}';
                let ok = match self.expect {
                    Expect::NameOrClose => object,
                    Expect::ValueOrClose => !object,
                    Expect::CommaOrClose => self.in_object() == object,
                    _ => false,
                };
                if !ok || self.depth == 0 {
                    return Err(SkimError::Syntax);
                }
                self.depth -= 1;
                self.value_end(input, at + 1, sink);
            }
            b',' => {
                if self.expect != Expect::CommaOrClose {
                    return Err(SkimError::Syntax);
                }
                if self.in_object() {
                    self.expect = Expect::Name;
                } else {
                    self.element_pending();
                    self.expect = Expect::Value;
                }
            }
            b':' => {
                if self.expect != Expect::Colon {
                    return Err(SkimError::Syntax);
                }
                self.expect = Expect::Value;
            }
            b'"' => match self.expect {
                Expect::Name | Expect::NameOrClose => {
                    self.name[0] = b'"';
                    self.name_len = 1;
                    self.name_escaped = false;
                    self.name_kept = self.depth <= MAX_PATH_STEPS && self.live[self.depth] != 0;
                    self.lex = Lex::Name;
                }
                _ => {
                    self.value_start(at)?;
                    self.lex = Lex::Str;
                }
            },
            c if is_scalar_byte(c) => {
                self.value_start(at)?;
                self.lex = Lex::Scalar;
            }
            _ => return Err(SkimError::Syntax),
        }
        Ok(())
    }

    fn in_object(&self) -> bool {
        self.depth > 0 && self.stack & (1 << (self.depth - 1)) != 0
    }

    /// The next value is an element of the array at `depth`: which paths it continues.
    fn element_pending(&mut self) {
        let d = self.depth;
        self.pending = if d <= MAX_PATH_STEPS && self.live[d] != 0 {
            self.live[d] & self.paths.elements_at(d)
        } else {
            0
        };
    }

    /// A member name ended (its raw bytes are in `name`): which paths its value continues.
    fn name_end(&mut self) -> Result<(), SkimError> {
        self.expect = Expect::Colon;
        let d = self.depth;
        self.pending = 0;
        // A name in a container that no watched path goes through was not recorded (`name_kept`,
        // decided when it started, at this same depth) and cannot match.
        if !self.name_kept || self.name_len > MAX_RAW_NAME_BYTES {
            return Ok(());
        }
        let raw = &self.name[..self.name_len];
        let decoded;
        let name: &[u8] = if self.name_escaped {
            decoded =
                body_scan::decode_string(raw, MAX_NAME_BYTES).map_err(|_| SkimError::Syntax)?;
            match &decoded {
                Some(s) => s.as_bytes(),
                None => return Ok(()),
            }
        } else {
            &raw[1..raw.len() - 1]
        };
        let live = self.live[d];
        let hit = self.paths.members_at(d, name) & live;
        if hit & self.seen[d] != 0 {
            return Err(SkimError::Duplicate);
        }
        self.seen[d] |= hit;
        self.pending = hit;
        Ok(())
    }

    /// A value starts at the current depth, with the byte at `at` of the piece being fed.
    fn value_start(&mut self, at: usize) -> Result<(), SkimError> {
        match self.expect {
            Expect::Value | Expect::ValueOrClose => {}
            _ => return Err(SkimError::Syntax),
        }
        self.started = true;
        if self.capture.is_none() && self.pending != 0 {
            let d = self.depth;
            if let Some(k) = self.paths.ending_at(self.pending, d) {
                self.buf.clear();
                self.kept_from = at;
                self.capture = Some(Capture {
                    path: k,
                    depth: d,
                    oversized: false,
                });
            }
        }
        if self.depth > MAX_PATH_STEPS || self.capture.is_some() {
            self.pending = 0;
        }
        Ok(())
    }

    /// The value at the current depth ended just before `input[end]`.
    fn value_end(&mut self, input: &[u8], end: usize, sink: &mut dyn FnMut(usize, Captured<'_>)) {
        self.expect = if self.depth == 0 {
            Expect::End
        } else {
            Expect::CommaOrClose
        };
        self.pending = 0;
        if matches!(&self.capture, Some(c) if c.depth == self.depth) {
            let c = self.capture.take().expect("checked above");
            let piece = &input[self.kept_from..end];
            if c.oversized || self.buf.len() + piece.len() > MAX_CAPTURE_BYTES {
                sink(c.path, Captured::Oversized);
            } else if self.buf.is_empty() {
                sink(c.path, Captured::Value(piece));
            } else {
                self.buf.extend_from_slice(piece);
                sink(c.path, Captured::Value(&self.buf));
            }
            self.buf.clear();
        }
    }

    /// Whether any value started (a document of only whitespace has none).
    pub fn started(&self) -> bool {
        self.started
    }

    /// The first error met so far, if any; the input after it is not read.
    pub fn error(&self) -> Option<SkimError> {
        self.error
    }
}

/// Bytes that may continue a number or a `true`/`false`/`null` literal (checked only loosely here).
fn is_scalar_byte(b: u8) -> bool {
    SCALAR[usize::from(b)]
}

/// A byte class as a table, one entry per byte value.
type Class = [bool; 256];

/// The table of the bytes `b` for which the expression holds, built at compile time.
macro_rules! class {
    (|$b:ident| $holds:expr) => {{
        let mut t: Class = [false; 256];
        let mut i = 0;
        while i < 256 {
            let $b = i as u8;
            t[i] = $holds;
            i += 1;
        }
        t
    }};
}

/// `[A-Za-z0-9+.-]`: see [`is_scalar_byte`].
const SCALAR: Class = class!(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));

/// RFC 8259 §2's insignificant whitespace.
const WHITESPACE: Class = class!(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'));

/// How many bytes at the start of `s` are of `class`.
fn run_of(s: &[u8], class: &Class) -> usize {
    s.iter()
        .position(|&b| !class[usize::from(b)])
        .unwrap_or(s.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    const USAGE: Path = &[Step::Member("usage")];
    const RESPONSE_USAGE: Path = &[Step::Member("response"), Step::Member("usage")];
    const ELEMENT_META: Path = &[Step::Element, Step::Member("usageMetadata")];
    const PATHS: &[Path] = &[USAGE, RESPONSE_USAGE, ELEMENT_META];

    /// The values kept (path index, text or `None` when oversized) and the verdict.
    type Skimmed = (Vec<(usize, Option<String>)>, Result<(), SkimError>);

    /// Everything the skimmer reports for `doc` fed in the given pieces.
    fn skim(pieces: &[&[u8]]) -> Skimmed {
        let mut s = Skimmer::new(PATHS);
        let mut out = Vec::new();
        let mut sink = |k: usize, c: Captured<'_>| {
            out.push((
                k,
                match c {
                    Captured::Value(v) => Some(String::from_utf8_lossy(v).into_owned()),
                    Captured::Oversized => None,
                },
            ))
        };
        for p in pieces {
            s.feed(p, &mut sink);
        }
        let r = s.finish(&mut sink);
        (out, r)
    }

    /// The same result whole, split at every byte, and one byte at a time.
    fn skim_all_splits(doc: &str) -> Skimmed {
        let d = doc.as_bytes();
        let whole = skim(&[d]);
        for at in 0..=d.len() {
            assert_eq!(skim(&[&d[..at], &d[at..]]), whole, "split at {at}: {doc}");
        }
        let bytes: Vec<&[u8]> = d.chunks(1).collect();
        assert_eq!(skim(&bytes), whole, "bytewise: {doc}");
        whole
    }

    #[test]
    fn keeps_watched_values_only() {
        let doc = r#"{"id":"x","usage" : {"a":1, "b":[2,3]} ,"choices":[{"usage":5}],"n":-1.5e3}"#;
        assert_eq!(
            skim_all_splits(doc),
            (vec![(0, Some(r#"{"a":1, "b":[2,3]}"#.into()))], Ok(()))
        );
        let doc =
            r#"{"type":"response.completed","response":{"id":"r","usage":{"input_tokens":3}}}"#;
        assert_eq!(
            skim_all_splits(doc),
            (vec![(1, Some(r#"{"input_tokens":3}"#.into()))], Ok(()))
        );
        let doc = r#"[{"usageMetadata":{"p":1}},{"x":{"usageMetadata":0}},{"usageMetadata":null}]"#;
        assert_eq!(
            skim_all_splits(doc),
            (
                vec![(2, Some(r#"{"p":1}"#.into())), (2, Some("null".into()))],
                Ok(())
            )
        );
        // Scalars end at the byte after them, which is not kept.
        assert_eq!(
            skim_all_splits(r#"{"usage":12}"#),
            (vec![(0, Some("12".into()))], Ok(()))
        );
        assert_eq!(
            skim_all_splits("{\"usage\":true\n}"),
            (vec![(0, Some("true".into()))], Ok(()))
        );
    }

    #[test]
    fn names_are_compared_unescaped_and_strings_are_opaque() {
        assert_eq!(
            skim_all_splits(r#"{"usag\u0065":{"x":1}}"#),
            (vec![(0, Some(r#"{"x":1}"#.into()))], Ok(()))
        );
        // Brackets, quotes and names inside strings are text.
        let doc = r#"{"content":"{\"usage\":1} ]}[","usage":"\"}"}"#;
        assert_eq!(
            skim_all_splits(doc),
            (vec![(0, Some(r#""\"}""#.into()))], Ok(()))
        );
        assert_eq!(
            skim_all_splits(r#"{"usage ":1,"Usage":2,"x":{"usage":3}}"#),
            (vec![], Ok(()))
        );
        assert_eq!(
            skim_all_splits(r#"{"x":{"\ud800":1}}"#).1,
            Ok(()),
            "names off the watched paths are not decoded"
        );
        assert_eq!(
            skim_all_splits(r#"{"\ud800sage":1}"#).1,
            Err(SkimError::Syntax)
        );
    }

    #[test]
    fn duplicates_of_watched_members_are_refused() {
        assert_eq!(
            skim_all_splits(r#"{"usage":1,"usage":2}"#).1,
            Err(SkimError::Duplicate)
        );
        assert_eq!(
            skim_all_splits(r#"{"usage":1,"u\u0073age":2}"#).1,
            Err(SkimError::Duplicate)
        );
        assert_eq!(
            skim_all_splits(r#"{"response":{},"response":{"usage":1}}"#).1,
            Err(SkimError::Duplicate)
        );
        // Repeats off the watched paths are not the skimmer's business.
        assert_eq!(skim_all_splits(r#"{"a":1,"a":2}"#).1, Ok(()));
    }

    #[test]
    fn structure_errors() {
        for doc in [
            "{",
            "}",
            "[}",
            "{]",
            "{\"a\"}",
            "{\"a\":}",
            "{\"a\":1,}",
            "[1,]",
            "[1 2]",
            "{\"a\" 1}",
            "{a:1}",
            "{'a':1}",
            "1 2",
            "{} {}",
            "[\"a\nb\"]",
            "{\"a\":1}x",
            "{\"a\":\"open",
            "",
            "   ",
            "[",
            "{\"usage\":{\"a\":",
            "@",
        ] {
            assert!(skim_all_splits(doc).1.is_err(), "{doc:?}");
        }
        let deep = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        assert_eq!(skim(&[deep.as_bytes()]).1, Err(SkimError::TooDeep));
        let ok = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert_eq!(skim(&[ok.as_bytes()]).1, Ok(()));
        assert_eq!(skim(&[b"{\"a\":1"]).1, Err(SkimError::Truncated));
        assert_eq!(skim(&[b""]).1, Err(SkimError::Truncated));
    }

    #[test]
    fn oversized_values_are_skipped_not_kept() {
        let big = format!(r#"{{"usage":"{}","x":1}}"#, "a".repeat(MAX_CAPTURE_BYTES));
        assert_eq!(skim(&[big.as_bytes()]), (vec![(0, None)], Ok(())));
        let fits = format!(r#"{{"usage":"{}"}}"#, "a".repeat(MAX_CAPTURE_BYTES - 2));
        assert_eq!(skim(&[fits.as_bytes()]).0.len(), 1);
        assert!(skim(&[fits.as_bytes()]).0[0].1.is_some());
        // A huge document costs no more memory than its watched values.
        let mut s = Skimmer::new(PATHS);
        let mut n = 0;
        s.feed(b"{\"content\":\"", &mut |_, _| n += 1);
        let chunk = vec![b'x'; 1 << 16];
        for _ in 0..64 {
            s.feed(&chunk, &mut |_, _| n += 1);
        }
        s.feed(b"\",\"usage\":{}}", &mut |_, _| n += 1);
        assert_eq!(s.finish(&mut |_, _| n += 1), Ok(()));
        assert_eq!(n, 1);
        assert!(s.buf.capacity() <= MAX_CAPTURE_BYTES);
    }

    #[test]
    fn values_across_pieces_are_kept_up_to_the_cap_exactly() {
        // A watched value of exactly the cap, and one byte more, cut at every byte: the first is kept
        // whole, the second reported as oversized, however the pieces fall.
        for (len, kept) in [(MAX_CAPTURE_BYTES, true), (MAX_CAPTURE_BYTES + 1, false)] {
            let value = format!("[\"{}\"]", "a".repeat(len - 4));
            let doc = format!(r#"{{"a":"x","usage":{value},"b":1}}"#);
            let d = doc.as_bytes();
            for at in (0..=d.len())
                .step_by(7)
                .chain([9, 10, 11, d.len() - 8, d.len() - 7])
            {
                let got = skim(&[&d[..at], &d[at..]]);
                let want = vec![(0, kept.then(|| value.clone()))];
                assert_eq!(got, (want, Ok(())), "len {len}, split at {at}");
            }
        }
        // A scalar ends at the next byte, even when that byte comes in the next piece.
        assert_eq!(
            skim(&[b"{\"usage\":12", b"34", b"5}"]),
            (vec![(0, Some("12345".into()))], Ok(()))
        );
    }

    #[test]
    fn reset_starts_a_new_document() {
        let mut s = Skimmer::new(PATHS);
        let mut got = Vec::new();
        s.feed(b"{\"usage\":1", &mut |k, _| got.push(k));
        s.reset();
        s.feed(b"[]", &mut |k, _| got.push(k));
        assert_eq!(s.finish(&mut |k, _| got.push(k)), Ok(()));
        assert!(got.is_empty());
        assert!(s.started());
    }
}
