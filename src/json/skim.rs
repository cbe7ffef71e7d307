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
use crate::json::class::{class, run_of, Class};
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
    /// The innermost open container is an object (its bit in `stack`, read once per `}` or `]`).
    in_object: bool,
    /// `live[d]`: the paths whose first `d` steps lead to the open container at depth `d` (`live[0]`:
    /// every path, for the top-level value).
    live: [u32; MAX_PATH_STEPS + 1],
    /// Per open container at depth `d <= MAX_PATH_STEPS`, the paths whose member at that level was
    /// already seen in it.
    seen: [u32; MAX_PATH_STEPS + 1],
    /// The paths that the next value's step matches.
    pending: u32,
    name: [u8; MAX_RAW_NAME_BYTES],
    /// The bytes of the current member name kept from earlier pieces (0 while it lies in this one).
    name_len: usize,
    /// Where the current member name starts in the piece being fed (0 when it began in an earlier one).
    name_from: usize,
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
            in_object: false,
            live: [all, 0, 0, 0],
            seen: [0; MAX_PATH_STEPS + 1],
            pending: all,
            name: [0; MAX_RAW_NAME_BYTES],
            name_len: 0,
            name_from: 0,
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
        if self.error.is_some() {
            return;
        }
        self.kept_from = 0;
        if let Err(e) = self.walk(input, sink) {
            self.error = Some(e);
            return;
        }
        self.stash(input);
    }

    /// Walk `input` token by token. Between tokens one table lookup ([`class`]) picks the token; the
    /// inside of a string or name is crossed in the same step as its opening quote ([`Skimmer::text`]),
    /// and runs of whitespace or scalar bytes in one search each, so no byte costs a second dispatch.
    /// (Byte by byte over (lexer state, expected token), the bench's 290-byte answer cost about 6,700
    /// instructions here; token by token, about 4,700: `bench/instructions.sh`.)
    fn walk(
        &mut self,
        input: &[u8],
        sink: &mut dyn FnMut(usize, Captured<'_>),
    ) -> Result<(), SkimError> {
        // First finish the token the previous piece ended in.
        let mut i = match self.lex {
            Lex::Outside => 0,
            Lex::Scalar => {
                let run = run_of(input, Class::Scalar);
                if run == input.len() {
                    return Ok(());
                }
                self.lex = Lex::Outside;
                self.value_end(input, run, sink);
                run
            }
            Lex::Str | Lex::StrEscape | Lex::Name | Lex::NameEscape => {
                self.name_from = 0;
                match self.text(input, 0, sink)? {
                    Some(end) => end,
                    None => return Ok(()),
                }
            }
        };
        while let Some(&b) = input.get(i) {
            match class(b) {
                // RFC 8259 §2: insignificant whitespace.
                Class::Space => i += run_of(&input[i..], Class::Space),
                Class::Quote => {
                    if matches!(self.expect, Expect::Name | Expect::NameOrClose) {
                        self.name_len = 0;
                        self.name_from = i;
                        self.name_escaped = false;
                        self.name_kept = self.depth <= MAX_PATH_STEPS && self.live[self.depth] != 0;
                        self.lex = Lex::Name;
                    } else {
                        self.value_start(i)?;
                        self.lex = Lex::Str;
                    }
                    match self.text(input, i + 1, sink)? {
                        Some(end) => i = end,
                        None => return Ok(()),
                    }
                }
                Class::Scalar => {
                    self.value_start(i)?;
                    i += run_of(&input[i..], Class::Scalar);
                    if i == input.len() {
                        self.lex = Lex::Scalar;
                        return Ok(());
                    }
                    // The scalar ends before the byte at `i`, which is not part of it.
                    self.value_end(input, i, sink);
                }
                Class::OpenObject | Class::OpenArray => {
                    self.open(b == b'{', i)?;
                    i += 1;
                }
                Class::CloseObject | Class::CloseArray => {
                    let object = b == b'}';
                    let ok = match self.expect {
                        Expect::NameOrClose => object,
                        Expect::ValueOrClose => !object,
                        Expect::CommaOrClose => self.in_object == object,
                        _ => false,
                    };
                    if !ok || self.depth == 0 {
                        return Err(SkimError::Syntax);
                    }
                    self.depth -= 1;
                    self.in_object = self.depth > 0 && self.stack & (1 << (self.depth - 1)) != 0;
                    i += 1;
                    self.value_end(input, i, sink);
                }
                Class::Comma => {
                    if self.expect != Expect::CommaOrClose {
                        return Err(SkimError::Syntax);
                    }
                    if self.in_object {
                        self.expect = Expect::Name;
                    } else {
                        self.element_pending();
                        self.expect = Expect::Value;
                    }
                    i += 1;
                }
                Class::Colon => {
                    if self.expect != Expect::Colon {
                        return Err(SkimError::Syntax);
                    }
                    self.expect = Expect::Value;
                    i += 1;
                }
                Class::Other => return Err(SkimError::Syntax),
            }
        }
        Ok(())
    }

    /// Cross the text of the string or member name being read (`lex`) from `input[from]` on: the
    /// offset after its closing quote, or `None` when the piece ends inside it. Inlined: a call per
    /// string cost about 150 instructions per bench answer.
    #[inline(always)]
    fn text(
        &mut self,
        input: &[u8],
        from: usize,
        sink: &mut dyn FnMut(usize, Captured<'_>),
    ) -> Result<Option<usize>, SkimError> {
        let name = matches!(self.lex, Lex::Name | Lex::NameEscape);
        let mut j = from;
        if matches!(self.lex, Lex::StrEscape | Lex::NameEscape) {
            // The previous piece ended with a backslash: the byte after it is taken unread.
            if j == input.len() {
                return Ok(None);
            }
            j += 1;
            self.lex = if name { Lex::Name } else { Lex::Str };
        }
        loop {
            j += plain_run(&input[j..]);
            match input.get(j) {
                Some(b'"') if name => {
                    self.lex = Lex::Outside;
                    self.name_end(&input[self.name_from..=j])?;
                    return Ok(Some(j + 1));
                }
                Some(b'"') => {
                    self.lex = Lex::Outside;
                    self.value_end(input, j + 1, sink);
                    return Ok(Some(j + 1));
                }
                Some(b'\\') => {
                    self.name_escaped |= name;
                    if j + 1 == input.len() {
                        self.lex = if name {
                            Lex::NameEscape
                        } else {
                            Lex::StrEscape
                        };
                        j += 1;
                        break;
                    }
                    j += 2;
                }
                // RFC 8259 §7: control characters must be escaped.
                Some(_) => return Err(SkimError::Syntax),
                None => break,
            }
        }
        // The piece ended inside: keep what it held of a name that may be compared.
        if name {
            self.keep_name(&input[self.name_from..j]);
        }
        Ok(None)
    }

    /// Add `bytes` to the member name kept from earlier pieces, up to [`MAX_RAW_NAME_BYTES`] (a longer
    /// name is only counted: it can never be a watched one).
    fn keep_name(&mut self, bytes: &[u8]) {
        if !self.name_kept {
            return;
        }
        let room = MAX_RAW_NAME_BYTES
            .saturating_sub(self.name_len)
            .min(bytes.len());
        // Once the name is past the bound, `name_len` is beyond `name`: nothing more is copied.
        if room > 0 {
            self.name[self.name_len..self.name_len + room].copy_from_slice(&bytes[..room]);
        }
        self.name_len = self.name_len.saturating_add(bytes.len());
    }

    /// The value at the current depth starts with `{` (`object`) or `[` at `input[at]`.
    fn open(&mut self, object: bool, at: usize) -> Result<(), SkimError> {
        self.value_start(at)?;
        if self.depth >= MAX_DEPTH {
            return Err(SkimError::TooDeep);
        }
        let bit = 1u128 << self.depth;
        if object {
            self.stack |= bit;
        } else {
            self.stack &= !bit;
        }
        self.in_object = object;
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
        Ok(())
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

    /// The next value is an element of the array at `depth`: which paths it continues.
    fn element_pending(&mut self) {
        let d = self.depth;
        self.pending = if d <= MAX_PATH_STEPS && self.live[d] != 0 {
            self.live[d] & self.paths.elements_at(d)
        } else {
            0
        };
    }

    /// A member name ended; `last` is what this piece held of it (its closing quote last, and its
    /// opening quote first when it began in this piece). Which paths does its value continue?
    fn name_end(&mut self, last: &[u8]) -> Result<(), SkimError> {
        self.expect = Expect::Colon;
        self.pending = 0;
        // A name in a container that no watched path goes through was not recorded (`name_kept`,
        // decided when it started, at this same depth) and cannot match.
        if !self.name_kept {
            return Ok(());
        }
        // A name within one piece is read where it lies; one cut by a piece boundary from `name`.
        let raw = if self.name_len == 0 {
            last
        } else {
            self.keep_name(last);
            &self.name[..self.name_len.min(MAX_RAW_NAME_BYTES)]
        };
        if self.name_len > MAX_RAW_NAME_BYTES || raw.len() > MAX_RAW_NAME_BYTES {
            return Ok(());
        }
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
        let d = self.depth;
        let hit = self.paths.members_at(d, name) & self.live[d];
        if hit & self.seen[d] != 0 {
            return Err(SkimError::Duplicate);
        }
        self.seen[d] |= hit;
        self.pending = hit;
        Ok(())
    }

    /// A value starts at the current depth, with the byte at `at` of the piece being fed.
    #[inline]
    fn value_start(&mut self, at: usize) -> Result<(), SkimError> {
        match self.expect {
            Expect::Value | Expect::ValueOrClose => {}
            _ => return Err(SkimError::Syntax),
        }
        self.started = true;
        if self.pending != 0 {
            self.watch(at);
        }
        Ok(())
    }

    /// A value that continues some watched paths (`pending`) starts at `input[at]`: keep it if one of
    /// them ends here and no outer value is being kept already.
    fn watch(&mut self, at: usize) {
        if self.capture.is_none() {
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
    }

    /// The value at the current depth ended just before `input[end]`.
    #[inline]
    fn value_end(&mut self, input: &[u8], end: usize, sink: &mut dyn FnMut(usize, Captured<'_>)) {
        self.expect = if self.depth == 0 {
            Expect::End
        } else {
            Expect::CommaOrClose
        };
        self.pending = 0;
        if matches!(&self.capture, Some(c) if c.depth == self.depth) {
            self.hand_on(input, end, sink);
        }
    }

    /// The kept value ended just before `input[end]`: give it to the sink.
    fn hand_on(&mut self, input: &[u8], end: usize, sink: &mut dyn FnMut(usize, Captured<'_>)) {
        let c = self.capture.take().expect("a value is being kept");
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

    /// Whether any value started (a document of only whitespace has none).
    pub fn started(&self) -> bool {
        self.started
    }

    /// The first error met so far, if any; the input after it is not read.
    pub fn error(&self) -> Option<SkimError> {
        self.error
    }
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

    /// `doc` in the strict JSON that the skimmer reads it as: each run of scalar bytes outside strings
    /// is `0`, and each backslash in a string with the byte after it (taken unread) is `\n`.
    fn as_skimmed(doc: &[u8]) -> Vec<u8> {
        let (mut out, mut in_string, mut in_scalar, mut i) = (Vec::new(), false, false, 0);
        while let Some(&b) = doc.get(i) {
            i += 1;
            if in_string {
                match b {
                    b'\\' => {
                        out.extend_from_slice(b"\\n");
                        i += 1;
                    }
                    b'"' => {
                        in_string = false;
                        out.push(b);
                    }
                    _ => out.push(b),
                }
                continue;
            }
            if class(b) == Class::Scalar {
                if !in_scalar {
                    out.push(b'0');
                }
                in_scalar = true;
                continue;
            }
            in_scalar = false;
            in_string = b == b'"';
            out.push(b);
        }
        out
    }

    /// A random ASCII document: a JSON value of a few levels with whitespace, escapes and scalars that
    /// the strict grammar refuses (`1.`, `abc`), then up to two bytes deleted, inserted or replaced.
    fn random_doc(next: &mut impl FnMut(usize) -> usize) -> Vec<u8> {
        fn value(next: &mut dyn FnMut(usize) -> usize, out: &mut Vec<u8>, depth: usize) {
            const WS: [&str; 5] = ["", "", " ", "\n  ", "\t\r\n"];
            const SCALARS: [&str; 7] = ["1", "-2.5e+3", "true", "null", "abc", "1.", "+"];
            const STRINGS: [&str; 6] = [
                r#""""#,
                r#""x""#,
                r#""a\"b""#,
                r#""\\""#,
                r#""\u00e9""#,
                r#""{\"u\":1}]""#,
            ];
            out.extend_from_slice(WS[next(WS.len())].as_bytes());
            match next(if depth > 4 { 2 } else { 4 }) {
                0 => out.extend_from_slice(SCALARS[next(SCALARS.len())].as_bytes()),
                1 => out.extend_from_slice(STRINGS[next(STRINGS.len())].as_bytes()),
                k => {
                    let object = k == 3;
                    out.push(if object { b'{' } else { b'[' });
                    for m in 0..next(4) {
                        if m > 0 {
                            out.push(b',');
                        }
                        if object {
                            out.extend_from_slice(STRINGS[next(STRINGS.len())].as_bytes());
                            out.extend_from_slice(WS[next(WS.len())].as_bytes());
                            out.push(b':');
                        }
                        value(next, out, depth + 1);
                    }
                    out.extend_from_slice(WS[next(WS.len())].as_bytes());
                    out.push(if object { b'}' } else { b']' });
                }
            }
            out.extend_from_slice(WS[next(WS.len())].as_bytes());
        }
        let mut doc = Vec::new();
        value(next, &mut doc, 0);
        for _ in 0..next(3) {
            let at = next(doc.len() + 1);
            const BYTES: &[u8] = b"{}[],:\"\\ 1a\x01\t";
            let b = BYTES[next(BYTES.len())];
            match next(3) {
                0 if at < doc.len() => drop(doc.remove(at)),
                1 if at < doc.len() => doc[at] = b,
                _ => doc.insert(at, b),
            }
        }
        doc
    }

    #[test]
    fn accepts_what_body_scan_accepts_once_scalars_and_escapes_are_made_strict() {
        // Watching nothing, the skimmer's verdict is about structure alone: the document is accepted
        // exactly when `body_scan`, which checks all of RFC 8259, accepts it with every scalar written
        // as `0` and every escape as `\n` (the two things the skimmer does not read).
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = |n: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % n as u64) as usize
        };
        let (mut accepted, mut refused) = (0, 0);
        for _ in 0..3000 {
            let doc = random_doc(&mut next);
            let strict = as_skimmed(&doc);
            let want = match body_scan::scan_object(&strict, &[]) {
                Ok(_) | Err(body_scan::ScanError::NotAnObject) => Ok(()),
                Err(e) => Err(e),
            };
            let run = |pieces: &[&[u8]]| {
                let mut s = Skimmer::new(&[]);
                pieces.iter().for_each(|p| s.feed(p, &mut |_, _| {}));
                s.finish(&mut |_, _| {})
            };
            let got = run(&[&doc]);
            let text = String::from_utf8_lossy(&doc);
            assert_eq!(
                got.is_ok(),
                want.is_ok(),
                "{text:?}: {got:?}, body_scan {want:?}"
            );
            let at = next(doc.len() + 1);
            assert_eq!(
                run(&[&doc[..at], &doc[at..]]),
                got,
                "split at {at}: {text:?}"
            );
            let bytes: Vec<&[u8]> = doc.chunks(1).collect();
            assert_eq!(run(&bytes), got, "bytewise: {text:?}");
            if got.is_ok() {
                accepted += 1;
            } else {
                refused += 1;
            }
        }
        // Both verdicts are common, or the comparison proves little.
        assert!(
            accepted > 500 && refused > 500,
            "{accepted} accepted, {refused} refused"
        );
        // Nesting: the same bound on both sides.
        for depth in [MAX_DEPTH - 1, MAX_DEPTH, MAX_DEPTH + 1] {
            let doc = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
            let mut s = Skimmer::new(&[]);
            s.feed(doc.as_bytes(), &mut |_, _| {});
            let got = s.finish(&mut |_, _| {});
            let want = body_scan::scan_object(doc.as_bytes(), &[]);
            assert_eq!(
                got.is_ok(),
                want == Err(body_scan::ScanError::NotAnObject),
                "{depth}"
            );
        }
    }

    #[test]
    fn a_long_name_cut_into_many_pieces_is_counted_not_kept() {
        // Found by the `meter` fuzz target: a name past MAX_RAW_NAME_BYTES that goes on over a
        // further piece boundary must not index beyond the kept bytes.
        let doc = format!(
            r#"{{"{}":1,"usage":2}}"#,
            "n".repeat(MAX_RAW_NAME_BYTES + 10)
        );
        let bytes: Vec<&[u8]> = doc.as_bytes().chunks(1).collect();
        assert_eq!(skim(&bytes), (vec![(0, Some("2".into()))], Ok(())));
        let pieces: Vec<&[u8]> = doc.as_bytes().chunks(100).collect();
        assert_eq!(skim(&pieces), (vec![(0, Some("2".into()))], Ok(())));
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
