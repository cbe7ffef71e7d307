//! Reading a few members of a JSON document (a request body, a provider's usage report) without building a
//! tree: a strict RFC 8259 scanner over the bytes that validates the whole document, follows one object's
//! members, and reports the byte range of the values a caller asked for. Nothing is allocated per member or
//! per nesting level (the open containers are bits in one `u128`), so inspecting a 32 MiB body costs a few
//! hundred bytes whatever its shape. Member names are unescaped before they are compared (`"m\u006fdel"` is
//! `model`), and a name the caller reads that appears twice is an error: providers' parsers disagree on
//! which copy wins. Policy (which members matter and what to do with them) lives in `request/policy.rs` and
//! `meter/`; this file knows only JSON.

use std::ops::Range;

use crate::json::plain::plain_run;

/// Deepest nesting accepted, counting the outer object as 1: the same bound as `serde_json`'s default
/// recursion limit, far beyond any real API request, and the width of the bit stack below.
pub const MAX_DEPTH: usize = 128;

/// Longest member name (in bytes, after unescaping) that can match a wanted name. Longer names are still
/// validated but compared as "no match", so a huge escaped name costs no memory.
const MAX_NAME_BYTES: usize = 64;

/// Why a body could not be scanned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScanError {
    /// The bytes are not UTF-8 (RFC 8259 §8.1).
    NotUtf8,
    /// Not one JSON value, or not valid JSON (unterminated string, bad escape, trailing bytes, ...).
    Syntax,
    /// Nested deeper than [`MAX_DEPTH`].
    TooDeep,
    /// Valid JSON, but not an object.
    NotAnObject,
    /// A decoded string holds a `\uD800`–`\uDFFF` escape that is not half of a surrogate pair.
    LoneSurrogate,
    /// The member group with this index (into the caller's `wanted`) appears more than once.
    Duplicate(usize),
    /// The value is not a JSON string.
    NotAString,
}

/// One object's shape, as far as the caller asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectScan {
    /// Offset just after the opening `{`: where a new first member can be inserted.
    pub inner_start: usize,
    /// The object has no members (an inserted member then needs no trailing comma).
    pub is_empty: bool,
    /// For each wanted group, the byte range of its value (without surrounding whitespace).
    pub found: Vec<Option<Range<usize>>>,
}

/// Scan a whole body that must be exactly one JSON object (whitespace around it allowed). `wanted` lists
/// groups of member names; the names in one group are spellings of the same member (Google APIs accept
/// both `generationConfig` and `generation_config`), so two of them in one object count as a duplicate.
pub fn scan_object(doc: &[u8], wanted: &[&[&str]]) -> Result<ObjectScan, ScanError> {
    let mut found = vec![None; wanted.len()];
    let (inner_start, is_empty) = scan_object_into(doc, wanted, &mut found)?;
    Ok(ObjectScan {
        inner_start,
        is_empty,
        found,
    })
}

/// [`scan_object`] into the caller's `found` (one slot per group of `wanted`, all `None` on entry),
/// returning `inner_start` and `is_empty`: for a caller that scans on every answer and keeps the slots
/// on its stack (`meter/usage.rs`).
pub fn scan_object_into(
    doc: &[u8],
    wanted: &[&[&str]],
    found: &mut [Option<Range<usize>>],
) -> Result<(usize, bool), ScanError> {
    debug_assert!(
        wanted
            .iter()
            .flat_map(|g| g.iter())
            .all(|n| n.len() <= MAX_NAME_BYTES),
        "a wanted name longer than MAX_NAME_BYTES could never match"
    );
    std::str::from_utf8(doc).map_err(|_| ScanError::NotUtf8)?;
    let mut s = Scanner { b: doc, i: 0 };
    s.ws();
    if s.peek() != Some(b'{') {
        // Tell "valid but not an object" apart from "not JSON" for a useful error message.
        s.skip_value(0)?;
        s.ws();
        return Err(if s.i == doc.len() {
            ScanError::NotAnObject
        } else {
            ScanError::Syntax
        });
    }
    let scan = s.object(1, wanted, found)?;
    s.ws();
    if s.i != doc.len() {
        return Err(ScanError::Syntax);
    }
    Ok(scan)
}

/// Scan the object at `range` of `doc` (a value range reported by [`scan_object`]), reporting offsets
/// into `doc`. A value that is valid JSON but not an object gives [`ScanError::NotAnObject`].
pub fn scan_object_at(
    doc: &[u8],
    range: Range<usize>,
    wanted: &[&[&str]],
) -> Result<ObjectScan, ScanError> {
    let mut found = vec![None; wanted.len()];
    let (inner_start, is_empty) = scan_object_at_into(doc, range, wanted, &mut found)?;
    Ok(ObjectScan {
        inner_start,
        is_empty,
        found,
    })
}

/// [`scan_object_at`] into the caller's `found`, as [`scan_object_into`].
pub fn scan_object_at_into(
    doc: &[u8],
    range: Range<usize>,
    wanted: &[&[&str]],
    found: &mut [Option<Range<usize>>],
) -> Result<(usize, bool), ScanError> {
    let b = doc.get(..range.end).ok_or(ScanError::Syntax)?;
    std::str::from_utf8(b.get(range.start..).ok_or(ScanError::Syntax)?)
        .map_err(|_| ScanError::NotUtf8)?;
    let mut s = Scanner { b, i: range.start };
    if s.peek() != Some(b'{') {
        s.skip_value(0)?;
        return Err(if s.i == range.end {
            ScanError::NotAnObject
        } else {
            ScanError::Syntax
        });
    }
    let scan = s.object(1, wanted, found)?;
    if s.i != range.end {
        return Err(ScanError::Syntax);
    }
    Ok(scan)
}

/// Decode a JSON string value (its raw bytes, quotes included). `Ok(None)` when the decoded text is longer
/// than `cap` bytes: it is still validated, but not kept.
pub fn decode_string(raw: &[u8], cap: usize) -> Result<Option<String>, ScanError> {
    std::str::from_utf8(raw).map_err(|_| ScanError::NotUtf8)?;
    if raw.first() != Some(&b'"') {
        return Err(ScanError::NotAString);
    }
    let mut s = Scanner { b: raw, i: 0 };
    let mut out = Vec::new();
    let mut fits = true;
    s.string_decoded(&mut |bytes: &[u8]| {
        if fits && out.len() + bytes.len() <= cap {
            out.extend_from_slice(bytes);
        } else {
            fits = false;
        }
    })?;
    if s.i != raw.len() {
        return Err(ScanError::Syntax);
    }
    Ok(fits.then(|| String::from_utf8(out).expect("decoded from valid UTF-8 and escapes")))
}

/// A value that is a plain non-negative integer: digits only, no sign, fraction or exponent (`1e3`,
/// `100.0`, `-0` and `"100"` are not), small enough for a `u64`.
pub fn uint_value(raw: &[u8]) -> Option<u64> {
    if raw.is_empty() || !raw.iter().all(u8::is_ascii_digit) || (raw.len() > 1 && raw[0] == b'0') {
        return None;
    }
    std::str::from_utf8(raw).ok()?.parse().ok()
}

/// Rebuild `doc` with each `(range, replacement)` applied; ranges must be sorted and disjoint (an empty
/// range inserts). One output allocation of the final size.
pub fn splice(doc: &[u8], edits: &[(Range<usize>, Vec<u8>)]) -> Vec<u8> {
    let grow: usize = edits.iter().map(|(_, r)| r.len()).sum();
    let mut out = Vec::with_capacity(doc.len() + grow);
    let mut at = 0;
    for (range, replacement) in edits {
        debug_assert!(range.start >= at && range.end >= range.start);
        out.extend_from_slice(&doc[at..range.start]);
        out.extend_from_slice(replacement);
        at = range.end;
    }
    out.extend_from_slice(&doc[at..]);
    out
}

/// A cursor over a body already known to be UTF-8.
struct Scanner<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Scanner<'a> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn eat(&mut self, c: u8) -> Result<(), ScanError> {
        if self.peek() == Some(c) {
            self.i += 1;
            Ok(())
        } else {
            Err(ScanError::Syntax)
        }
    }

    /// RFC 8259 §2: insignificant whitespace is space, tab, line feed and carriage return only.
    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    /// The members of the object at the cursor (`{`), matching names against `wanted` and putting the
    /// range of each wanted value in its group's slot of `found`. Returns where the members start
    /// (just after `{`) and whether there are none.
    fn object(
        &mut self,
        depth: usize,
        wanted: &[&[&str]],
        found: &mut [Option<Range<usize>>],
    ) -> Result<(usize, bool), ScanError> {
        debug_assert_eq!(found.len(), wanted.len());
        if depth > MAX_DEPTH {
            return Err(ScanError::TooDeep);
        }
        self.eat(b'{')?;
        let inner_start = self.i;
        self.ws();
        if self.peek() == Some(b'}') {
            self.i += 1;
            return Ok((inner_start, true));
        }
        loop {
            if self.peek() != Some(b'"') {
                return Err(ScanError::Syntax);
            }
            let mut decoded = [0u8; MAX_NAME_BYTES];
            // A name without escapes (every name of a real body) is its raw bytes, compared in place;
            // one with escapes is decoded into `decoded` first. `None`: too long to match.
            let name: Option<&[u8]> = match self.plain_string() {
                Some(raw) => (raw.len() <= MAX_NAME_BYTES).then_some(raw),
                None => {
                    let mut len = 0;
                    let mut fits = true;
                    self.string_decoded(&mut |bytes: &[u8]| {
                        if fits && len + bytes.len() <= MAX_NAME_BYTES {
                            decoded[len..len + bytes.len()].copy_from_slice(bytes);
                            len += bytes.len();
                        } else {
                            fits = false;
                        }
                    })?;
                    fits.then_some(&decoded[..len])
                }
            };
            // The group a wanted name belongs to, found before the cursor moves on.
            let group = name.and_then(|name| {
                wanted
                    .iter()
                    .position(|group| group.iter().any(|n| n.as_bytes() == name))
            });
            self.ws();
            self.eat(b':')?;
            self.ws();
            let value = self.skip_value(depth)?;
            if let Some(g) = group {
                if found[g].is_some() {
                    return Err(ScanError::Duplicate(g));
                }
                found[g] = Some(value);
            }
            self.ws();
            match self.peek() {
                Some(b',') => {
                    self.i += 1;
                    self.ws();
                }
                Some(b'}') => {
                    self.i += 1;
                    return Ok((inner_start, false));
                }
                _ => return Err(ScanError::Syntax),
            }
        }
    }

    /// The string at the cursor (`"`) when it holds no escape and no control byte: its bytes between
    /// the quotes, the cursor moved past it. `None` (cursor unmoved) for any other string, which
    /// [`Scanner::string_decoded`] then reads, or refuses.
    fn plain_string(&mut self) -> Option<&'a [u8]> {
        let b: &'a [u8] = self.b;
        let start = self.i + 1;
        let rest = b.get(start..)?;
        let run = plain_run(rest);
        if rest.get(run) != Some(&b'"') {
            return None;
        }
        self.i = start + run + 1;
        Some(&rest[..run])
    }

    /// Skip one value at the cursor, validating it; `depth` is the nesting depth of its container. Returns
    /// its byte range. Iterative: bit `k` of `stack` says whether the `k`-th open container is an object.
    fn skip_value(&mut self, depth: usize) -> Result<Range<usize>, ScanError> {
        let start = self.i;
        let mut stack: u128 = 0;
        let mut open = 0usize;
        loop {
            // A value starts here.
            self.ws();
            match self.peek() {
                Some(c @ (b'{' | b'[')) => {
                    if depth + open + 1 > MAX_DEPTH {
                        return Err(ScanError::TooDeep);
                    }
                    self.i += 1;
                    let is_object = c == b'{';
                    if is_object {
                        stack |= 1 << open;
                    } else {
                        stack &= !(1 << open);
                    }
                    open += 1;
                    self.ws();
                    let close = if is_object { b'}' } else { b']' };
                    if self.peek() == Some(close) {
                        self.i += 1;
                        open -= 1;
                    } else {
                        if is_object {
                            self.member_name()?;
                        }
                        continue;
                    }
                }
                Some(b'"') => self.string_skipped()?,
                Some(b'-' | b'0'..=b'9') => self.number()?,
                Some(b't') => self.literal(b"true")?,
                Some(b'f') => self.literal(b"false")?,
                Some(b'n') => self.literal(b"null")?,
                _ => return Err(ScanError::Syntax),
            }
            // A value ended: close containers until one continues with a comma.
            loop {
                if open == 0 {
                    return Ok(start..self.i);
                }
                let in_object = stack & (1 << (open - 1)) != 0;
                self.ws();
                match self.peek() {
                    Some(b',') => {
                        self.i += 1;
                        if in_object {
                            self.ws();
                            self.member_name()?;
                        }
                        break;
                    }
                    Some(b'}') if in_object => {
                        self.i += 1;
                        open -= 1;
                    }
                    Some(b']') if !in_object => {
                        self.i += 1;
                        open -= 1;
                    }
                    _ => return Err(ScanError::Syntax),
                }
            }
        }
    }

    /// A member name of a skipped object and its colon.
    fn member_name(&mut self) -> Result<(), ScanError> {
        if self.peek() != Some(b'"') {
            return Err(ScanError::Syntax);
        }
        self.string_skipped()?;
        self.ws();
        self.eat(b':')
    }

    fn literal(&mut self, word: &[u8]) -> Result<(), ScanError> {
        if self.b[self.i..].starts_with(word) {
            self.i += word.len();
            Ok(())
        } else {
            Err(ScanError::Syntax)
        }
    }

    /// RFC 8259 §6: `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`.
    fn number(&mut self) -> Result<(), ScanError> {
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        match self.peek() {
            Some(b'0') => self.i += 1,
            Some(b'1'..=b'9') => self.digits(),
            _ => return Err(ScanError::Syntax),
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            self.digits_one_or_more()?;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.i += 1;
            }
            self.digits_one_or_more()?;
        }
        Ok(())
    }

    fn digits(&mut self) {
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.i += 1;
        }
    }

    fn digits_one_or_more(&mut self) -> Result<(), ScanError> {
        let from = self.i;
        self.digits();
        if self.i == from {
            return Err(ScanError::Syntax);
        }
        Ok(())
    }

    /// A string nobody reads: check its grammar (RFC 8259 §7) without decoding it.
    fn string_skipped(&mut self) -> Result<(), ScanError> {
        self.eat(b'"')?;
        loop {
            self.i += plain_run(&self.b[self.i..]);
            match self.peek() {
                None | Some(0..=0x1f) => return Err(ScanError::Syntax),
                Some(b'"') => {
                    self.i += 1;
                    return Ok(());
                }
                Some(b'\\') => {
                    self.i += 1;
                    match self.peek() {
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => self.i += 1,
                        Some(b'u') => {
                            self.i += 1;
                            self.hex4()?;
                        }
                        _ => return Err(ScanError::Syntax),
                    }
                }
                Some(_) => self.i += 1,
            }
        }
    }

    /// A string somebody reads: decode it, handing UTF-8 pieces to `sink`, and refuse escapes of lone
    /// surrogates (they have no UTF-8 form, so providers' parsers would each do something different).
    fn string_decoded(&mut self, sink: &mut dyn FnMut(&[u8])) -> Result<(), ScanError> {
        self.eat(b'"')?;
        loop {
            let run = self.i;
            self.i += plain_run(&self.b[run..]);
            if self.i > run {
                sink(&self.b[run..self.i]);
            }
            match self.peek() {
                None | Some(0..=0x1f) => return Err(ScanError::Syntax),
                Some(b'"') => {
                    self.i += 1;
                    return Ok(());
                }
                _ => {
                    // A backslash.
                    self.i += 1;
                    let simple = match self.peek() {
                        Some(b'"') => b'"',
                        Some(b'\\') => b'\\',
                        Some(b'/') => b'/',
                        Some(b'b') => 0x08,
                        Some(b'f') => 0x0c,
                        Some(b'n') => b'\n',
                        Some(b'r') => b'\r',
                        Some(b't') => b'\t',
                        Some(b'u') => 0,
                        _ => return Err(ScanError::Syntax),
                    };
                    self.i += 1;
                    if simple != 0 {
                        sink(&[simple]);
                        continue;
                    }
                    let unit = self.hex4()?;
                    let c = match unit {
                        0xd800..=0xdbff => {
                            if !self.b[self.i..].starts_with(b"\\u") {
                                return Err(ScanError::LoneSurrogate);
                            }
                            self.i += 2;
                            let low = self.hex4()?;
                            if !(0xdc00..=0xdfff).contains(&low) {
                                return Err(ScanError::LoneSurrogate);
                            }
                            0x10000 + ((u32::from(unit) - 0xd800) << 10) + (u32::from(low) - 0xdc00)
                        }
                        0xdc00..=0xdfff => return Err(ScanError::LoneSurrogate),
                        _ => u32::from(unit),
                    };
                    let c = char::from_u32(c).expect("surrogates handled above");
                    sink(c.encode_utf8(&mut [0u8; 4]).as_bytes());
                }
            }
        }
    }

    fn hex4(&mut self) -> Result<u16, ScanError> {
        let digits = self.b.get(self.i..self.i + 4).ok_or(ScanError::Syntax)?;
        let mut v = 0u16;
        for d in digits {
            let x = (*d as char).to_digit(16).ok_or(ScanError::Syntax)?;
            v = v << 4 | x as u16;
        }
        self.i += 4;
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MODEL: &[&str] = &["model"];
    const MAX: &[&str] = &["max_tokens"];

    fn found(doc: &str, wanted: &[&[&str]]) -> Result<Vec<Option<String>>, ScanError> {
        let scan = scan_object(doc.as_bytes(), wanted)?;
        // The stack-slot entry point answers alike.
        let mut slots = vec![None; wanted.len()];
        let into = scan_object_into(doc.as_bytes(), wanted, &mut slots);
        assert_eq!(into, Ok((scan.inner_start, scan.is_empty)), "{doc}");
        assert_eq!(slots, scan.found, "{doc}");
        Ok(scan
            .found
            .into_iter()
            .map(|r| r.map(|r| doc[r].to_string()))
            .collect())
    }

    /// A member name is read in place when it holds no escape and decoded otherwise: every name spelled
    /// both ways, with an escape at each position, is found alike, and a name broken at any position
    /// is refused alike.
    #[test]
    fn plain_and_escaped_names_read_alike() {
        let (longest, too_long) = ("x".repeat(MAX_NAME_BYTES), "x".repeat(MAX_NAME_BYTES + 1));
        let wanted: &[&[&str]] = &[&["prompt_tokens"], &["n"], &[longest.as_str()]];
        for name in ["prompt_tokens", "n", &longest, &too_long, "other"] {
            let plain = format!(r#"{{"{name}":1, "b":2}}"#);
            let expected = found(&plain, wanted).unwrap();
            for at in 0..name.len() {
                let c = name.as_bytes()[at];
                let escaped = format!(
                    r#"{{"{}\u{:04x}{}":1, "b":2}}"#,
                    &name[..at],
                    c,
                    &name[at + 1..]
                );
                assert_eq!(found(&escaped, wanted).unwrap(), expected, "{escaped}");
                for bad in ["\\x", "\\u12", "\u{1}", "\n"] {
                    let broken = format!(r#"{{"{}{bad}":1}}"#, &name[..at]);
                    let err = found(&broken, wanted);
                    assert!(matches!(err, Err(ScanError::Syntax)), "{broken}: {err:?}");
                }
            }
            // Unterminated at every length.
            for end in 0..plain.len() {
                assert!(found(&plain[..end], wanted).is_err(), "{}", &plain[..end]);
            }
        }
        assert_eq!(
            found(r#"{"n":1,"\u006e":2}"#, wanted),
            Err(ScanError::Duplicate(1))
        );
    }

    #[test]
    fn finds_values_with_exact_ranges() {
        let doc = r#" { "a" : [1, {"model": "x"}], "model" :"gpt-4o" , "max_tokens":	100 } "#;
        assert_eq!(
            found(doc, &[MODEL, MAX, &["absent"]]).unwrap(),
            vec![Some("\"gpt-4o\"".into()), Some("100".into()), None]
        );
        let scan = scan_object(doc.as_bytes(), &[]).unwrap();
        assert_eq!(&doc[..scan.inner_start], " {");
        assert!(!scan.is_empty);
        let scan = scan_object(b" {\n} ", &[MODEL]).unwrap();
        assert_eq!((scan.inner_start, scan.is_empty), (2, true));
        assert_eq!(scan.found, vec![None]);
    }

    #[test]
    fn names_are_unescaped_before_comparing() {
        for doc in [
            r#"{"m\u006fdel":"x"}"#,
            r#"{"\u006D\u006f\u0064\u0065\u006C":"x"}"#,
            r#"{"mod\u0065l":"x"}"#,
        ] {
            assert_eq!(
                found(doc, &[MODEL]).unwrap(),
                vec![Some("\"x\"".into())],
                "{doc}"
            );
        }
        // A name that only looks alike is another member.
        assert_eq!(
            found(r#"{"model ":"x","Model":"y","model\u0000":"z"}"#, &[MODEL]).unwrap(),
            vec![None]
        );
        // A name longer than any wanted name is validated but never matches.
        let long = format!(r#"{{"{}\u0041":1,"model":"x"}}"#, "m".repeat(10_000));
        assert_eq!(found(&long, &[MODEL]).unwrap(), vec![Some("\"x\"".into())]);
    }

    #[test]
    fn duplicates_of_wanted_names_are_refused() {
        for doc in [
            r#"{"model":"a","model":"b"}"#,
            r#"{"model":"a","m\u006fdel":"b"}"#,
            r#"{"model":"a", "x": {"model": "c"}, "model" : "a"}"#,
        ] {
            assert_eq!(
                found(doc, &[MAX, MODEL]),
                Err(ScanError::Duplicate(1)),
                "{doc}"
            );
        }
        // Spellings of one member in a group count as the same member.
        let group: &[&str] = &["generationConfig", "generation_config"];
        assert_eq!(
            found(
                r#"{"generationConfig":{},"generation_config":{}}"#,
                &[group]
            ),
            Err(ScanError::Duplicate(0))
        );
        // Duplicates the caller does not read, or at other levels, are left alone.
        assert!(found(
            r#"{"x":1,"x":2,"y":{"model":1,"model":2},"model":"m"}"#,
            &[MODEL]
        )
        .is_ok());
    }

    #[test]
    fn only_objects_and_only_json() {
        for (doc, want) in [
            ("[1,2]", ScanError::NotAnObject),
            ("\"model\"", ScanError::NotAnObject),
            (" 12 ", ScanError::NotAnObject),
            ("null", ScanError::NotAnObject),
            ("", ScanError::Syntax),
            ("   ", ScanError::Syntax),
            ("{", ScanError::Syntax),
            ("{}{}", ScanError::Syntax),
            ("{} x", ScanError::Syntax),
            ("[1] x", ScanError::Syntax),
            ("{\"a\":1,}", ScanError::Syntax),
            ("{\"a\" 1}", ScanError::Syntax),
            ("{a:1}", ScanError::Syntax),
            ("{'a':1}", ScanError::Syntax),
            ("{\"a\":[1,]}", ScanError::Syntax),
            ("{\"a\":[1 2]}", ScanError::Syntax),
            ("{\"a\":{\"b\"}}", ScanError::Syntax),
            ("{\"a\":{\"b\":1,}}", ScanError::Syntax),
            ("{\"a\":[}", ScanError::Syntax),
            ("{\"a\":{]}", ScanError::Syntax),
            ("{\"a\":tru}", ScanError::Syntax),
            ("{\"a\":nul}", ScanError::Syntax),
            ("{\"a\":NaN}", ScanError::Syntax),
            ("{\"a\":Infinity}", ScanError::Syntax),
            ("{\"a\":01}", ScanError::Syntax),
            ("{\"a\":1.}", ScanError::Syntax),
            ("{\"a\":.5}", ScanError::Syntax),
            ("{\"a\":1e}", ScanError::Syntax),
            ("{\"a\":+1}", ScanError::Syntax),
            ("{\"a\":-}", ScanError::Syntax),
            ("{\"a\":\"\\x\"}", ScanError::Syntax),
            ("{\"a\":\"\\u12g4\"}", ScanError::Syntax),
            ("{\"a\":\"tab\there\"}", ScanError::Syntax),
            ("{\"a\":\"open}", ScanError::Syntax),
            ("{\"a\":1 /* c */}", ScanError::Syntax),
            ("\u{feff}{}", ScanError::Syntax),
            ("{\"a\":1}\u{0}", ScanError::Syntax),
            ("{\"a\u{0}\":1}", ScanError::Syntax),
        ] {
            assert_eq!(scan_object(doc.as_bytes(), &[MODEL]), Err(want), "{doc:?}");
        }
        assert_eq!(
            scan_object(b"{\"a\":\"\xff\"}", &[]),
            Err(ScanError::NotUtf8)
        );
        assert_eq!(
            scan_object(b"{\"a\":\"\xed\xa0\x80\"}", &[]),
            Err(ScanError::NotUtf8)
        );
        for doc in [
            "{\"a\":[1,-0,0.5,-1.5e+10,2E-3,1e5,true,false,null,\"\\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9\"]}",
            "\t\r\n{\t\r\n\"a\"\t\r\n:\t\r\n{}\t\r\n}\t\r\n",
            "{\"emoji\":\"\u{1f600}\",\"esc\":\"\\ud83d\\ude00\",\"\u{e9}\":[[],{},[{}]]}",
        ] {
            assert!(scan_object(doc.as_bytes(), &[MODEL]).is_ok(), "{doc:?}");
        }
    }

    #[test]
    fn lone_surrogates_in_read_strings() {
        assert_eq!(
            found(r#"{"\ud800":1}"#, &[MODEL]),
            Err(ScanError::LoneSurrogate)
        );
        assert_eq!(
            found(r#"{"\udc00x":1}"#, &[MODEL]),
            Err(ScanError::LoneSurrogate)
        );
        assert_eq!(
            found(r#"{"\ud800\u0041":1}"#, &[MODEL]),
            Err(ScanError::LoneSurrogate)
        );
        assert_eq!(
            found(r#"{"\ud800\ud800":1}"#, &[MODEL]),
            Err(ScanError::LoneSurrogate)
        );
        assert_eq!(
            decode_string(br#""gpt\udfff""#, 64),
            Err(ScanError::LoneSurrogate)
        );
        // Strings nobody reads only need valid escape grammar.
        assert!(found(r#"{"x":"\ud800"}"#, &[MODEL]).is_ok());
    }

    #[test]
    fn depth_is_bounded() {
        let nest = |n: usize| format!("{{\"a\":{}1{}}}", "[".repeat(n - 1), "]".repeat(n - 1));
        assert!(scan_object(nest(MAX_DEPTH).as_bytes(), &[]).is_ok());
        assert_eq!(
            scan_object(nest(MAX_DEPTH + 1).as_bytes(), &[]),
            Err(ScanError::TooDeep)
        );
        let objects = |n: usize| format!("{}1{}", "{\"a\":".repeat(n), "}".repeat(n));
        assert!(scan_object(objects(MAX_DEPTH).as_bytes(), &[]).is_ok());
        assert_eq!(
            scan_object(objects(MAX_DEPTH + 1).as_bytes(), &[]),
            Err(ScanError::TooDeep)
        );
        // A deep non-object is refused for depth, not walked.
        let arrays = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(scan_object(arrays.as_bytes(), &[]), Err(ScanError::TooDeep));
        // Deep mixed nesting closes each container with its own bracket.
        let mixed = format!("{{\"a\":{}0{}}}", "[{\"b\":".repeat(60), "}]".repeat(60));
        assert!(scan_object(mixed.as_bytes(), &[]).is_ok());
        let wrong = format!("{{\"a\":{}0{}}}", "[{\"b\":".repeat(60), "]}".repeat(60));
        assert_eq!(scan_object(wrong.as_bytes(), &[]), Err(ScanError::Syntax));
    }

    #[test]
    fn nested_object_scan_reports_offsets_into_the_body() {
        let g: &[&str] = &["generationConfig", "generation_config"];
        let m: &[&str] = &["maxOutputTokens", "max_output_tokens"];
        let doc = r#"{"contents":[],"generation_config": { "max_output_tokens" : 70 }}"#;
        let top = scan_object(doc.as_bytes(), &[g]).unwrap();
        let range = top.found[0].clone().unwrap();
        let inner = scan_object_at(doc.as_bytes(), range.clone(), &[m]).unwrap();
        assert_eq!(&doc[inner.found[0].clone().unwrap()], "70");
        assert_eq!(&doc[range.start..inner.inner_start], "{");
        let dup = r#"{"generationConfig":{"maxOutputTokens":1,"max_output_tokens":2}}"#;
        let top = scan_object(dup.as_bytes(), &[g]).unwrap();
        assert_eq!(
            scan_object_at(dup.as_bytes(), top.found[0].clone().unwrap(), &[m]),
            Err(ScanError::Duplicate(0))
        );
        let not_obj = r#"{"generationConfig":[1]}"#;
        let top = scan_object(not_obj.as_bytes(), &[g]).unwrap();
        assert_eq!(
            scan_object_at(not_obj.as_bytes(), top.found[0].clone().unwrap(), &[m]),
            Err(ScanError::NotAnObject)
        );
    }

    #[test]
    fn strings_and_integers() {
        assert_eq!(decode_string(br#""gpt-4o""#, 64), Ok(Some("gpt-4o".into())));
        assert_eq!(
            decode_string(br#""g\u0070t\n\"\ud83d\ude00""#, 64),
            Ok(Some("gpt\n\"\u{1f600}".into()))
        );
        assert_eq!(decode_string(br#""abcdef""#, 5), Ok(None));
        assert_eq!(decode_string(b"12", 64), Err(ScanError::NotAString));
        assert_eq!(decode_string(b"null", 64), Err(ScanError::NotAString));
        for (raw, want) in [
            ("0", Some(0)),
            ("100", Some(100)),
            ("18446744073709551615", Some(u64::MAX)),
            ("18446744073709551616", None),
            ("99999999999999999999999999", None),
            ("1e3", None),
            ("100.0", None),
            ("-1", None),
            ("-0", None),
            ("\"100\"", None),
            ("null", None),
            ("true", None),
            ("", None),
            ("01", None),
        ] {
            assert_eq!(uint_value(raw.as_bytes()), want, "{raw}");
        }
    }

    #[test]
    fn splice_replaces_and_inserts() {
        let doc = br#"{"model":"a","max_tokens":500}"#;
        let out = splice(
            doc,
            &[
                (1..1, b"\"x\":1,".to_vec()),
                (9..12, b"\"b\"".to_vec()),
                (26..29, b"10".to_vec()),
            ],
        );
        assert_eq!(out, br#"{"x":1,"model":"b","max_tokens":10}"#);
        assert_eq!(splice(doc, &[]), doc);
    }

    /// Agreement with serde_json on mutated documents: whatever one accepts as an object the other does.
    #[test]
    fn agrees_with_serde_json_on_mutations() {
        let seeds = [
            r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi \"there\" \u00e9"}],"n":1,"x":[1.5e3,-0,true,false,null,{}]}"#,
            r#"{"a":{"b":{"c":[[],[[]],{"d":"e"}]}},"f":"\\\/"}"#,
        ];
        let alphabet = b"{}[]\":,.-+eE0123456789 \\/tfnrbu\"abcxyz";
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) as usize
        };
        for round in 0..20_000 {
            let mut doc = seeds[round % seeds.len()].as_bytes().to_vec();
            for _ in 0..1 + next() % 3 {
                let at = next() % doc.len();
                match next() % 3 {
                    0 => doc[at] = alphabet[next() % alphabet.len()],
                    1 => {
                        doc.remove(at);
                    }
                    _ => doc.insert(at, alphabet[next() % alphabet.len()]),
                }
                if doc.is_empty() {
                    break;
                }
            }
            let ours = scan_object(&doc, &[]).is_ok();
            let theirs = matches!(
                serde_json::from_slice::<serde_json::Value>(&doc),
                Ok(serde_json::Value::Object(_))
            );
            assert_eq!(ours, theirs, "{}", String::from_utf8_lossy(&doc));
        }
    }
}
