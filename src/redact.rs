//! Redaction of request targets before they reach a log: every token-looking path segment and query
//! value (and every value of a `token=` query member) is replaced by `[token]`, so token text can never
//! reach a log line, and the result is capped so lines stay bounded. Writing the result (a `String`, or
//! straight into an access line's JSON) is left to the caller's sink.

/// What a token looks like on the wire (docs/token-format.md §3).
const TOKEN_PREFIX: &[u8] = b"rt1.";

/// The same prefix with its dot percent-encoded (`%2e` / `%2E`), as a client may send it.
const TOKEN_PREFIX_ENCODED: &[u8] = b"rt1%2e";

/// What a replaced segment or value reads as in the log.
const REPLACEMENT: &str = "[token]";

/// Bytes of redacted target kept in a log line; a longer one is cut (at a character boundary) and
/// ends in `…`, so a client cannot grow log lines with long targets.
const MAX: usize = 512;

/// Replace every path segment and query value that looks like a token (or follows `token=`) with
/// `[token]`. Works on raw bytes so that invalid UTF-8 cannot smuggle a token past it; the output is
/// lossily decoded and capped so log lines stay bounded.
pub fn redact_target(target: &[u8]) -> String {
    let mut out = String::with_capacity(target.len().min(MAX) + 3);
    redact_bytes(target, &mut |s| out.push_str(s));
    out
}

/// [`redact_target`], handing the result to `sink` piece by piece instead of building a `String`.
pub fn redact_bytes(target: &[u8], sink: &mut impl FnMut(&str)) {
    match std::str::from_utf8(target) {
        Ok(s) => redact_str(s, sink),
        // Invalid sequences are replaced by U+FFFD, never merged with the ASCII around them: the
        // delimiters and every token spelling (all ASCII) stand where they stood, so decoding first
        // finds the same segments and the same tokens as checking the raw bytes piece by piece.
        Err(_) => redact_str(&String::from_utf8_lossy(target), sink),
    }
}

/// [`redact_target`] for a target that is already text (`Head::target`), piece by piece into `sink`.
/// The result is the target with some ranges replaced by `[token]`, so it reaches `sink` as a few
/// long runs of the target itself and the replacements between them; a target with nothing to
/// redact reaches it whole.
pub fn redact_str(target: &str, sink: &mut impl FnMut(&str)) {
    let mut out = Capped {
        sink,
        len: 0,
        full: false,
    };
    let bytes = target.as_bytes();
    // `kept`: where the part of the target not yet handed on begins.
    let mut kept = 0;
    // The path in one pass: its segments end at `/`, the path at the first `?`. A segment holding a
    // token spelling (none spans a `/` or `?`) is replaced whole, and its rest, most of a token, is
    // skipped with `memchr2` instead of being walked byte by byte.
    let mut segment = 0;
    let mut at = 0;
    let query = loop {
        match bytes.get(at) {
            None => break None,
            Some(b'?') => break Some(at + 1),
            Some(b'/') => segment = at + 1,
            Some(b'r' | b'R') if token_at(&bytes[at..]) => {
                let end = memchr::memchr2(b'/', b'?', &bytes[at..]).map_or(bytes.len(), |e| at + e);
                out.replace(target, &mut kept, segment, end);
                if out.full {
                    return;
                }
                at = end;
                continue;
            }
            Some(_) => {}
        }
        at += 1;
    };
    if let Some(q) = query {
        for (start, end) in pieces(bytes, q, bytes.len(), b'&') {
            if out.full {
                return;
            }
            let pair = &bytes[start..end];
            match memchr::memchr(b'=', pair) {
                // The name stays (`token=[token]`) and only the value goes, unless the name is itself
                // token-looking: then the whole member goes (below).
                Some(e)
                    if (pair[..e].eq_ignore_ascii_case(b"token")
                        || looks_like_token(&pair[e + 1..]))
                        && !looks_like_token(&pair[..e]) =>
                {
                    out.replace(target, &mut kept, start + e + 1, end);
                }
                _ if looks_like_token(pair) => out.replace(target, &mut kept, start, end),
                _ => {}
            }
        }
    }
    out.put(&target[kept..]);
}

/// A sink that takes at most [`MAX`] bytes and then `…`: the same text as building the whole
/// redacted target and cutting it at the last character boundary at or before [`MAX`].
struct Capped<'s, F> {
    sink: &'s mut F,
    len: usize,
    full: bool,
}

impl<F: FnMut(&str)> Capped<'_, F> {
    fn put(&mut self, s: &str) {
        if self.full || s.is_empty() {
            return;
        }
        if self.len + s.len() <= MAX {
            (self.sink)(s);
            self.len += s.len();
            return;
        }
        // The first piece that does not fit: the whole text is longer than MAX. Pieces are whole
        // strings, so a boundary of this piece is a boundary of the whole.
        let mut cut = MAX - self.len;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        (self.sink)(&s[..cut]);
        (self.sink)("…");
        self.full = true;
    }

    /// Hand on the target up to `start`, then `[token]` in place of `start..end`.
    fn replace(&mut self, target: &str, kept: &mut usize, start: usize, end: usize) {
        self.put(&target[*kept..start]);
        self.put(REPLACEMENT);
        *kept = end;
    }
}

/// The pieces of `s[from..to]` between `sep`s, as `slice::split` gives them, as ranges of `s`, found
/// with `memchr`: a target's token segment is a few hundred bytes, which a byte-by-byte split walked
/// twice for every request.
fn pieces(s: &[u8], from: usize, to: usize, sep: u8) -> impl Iterator<Item = (usize, usize)> + '_ {
    let mut next = Some(from);
    std::iter::from_fn(move || {
        let start = next?;
        match memchr::memchr(sep, &s[start..to]) {
            Some(at) => {
                next = Some(start + at + 1);
                Some((start, start + at))
            }
            None => {
                next = None;
                Some((start, to))
            }
        }
    })
}

/// Anything containing the token prefix, plain or with its dot percent-encoded, in any case. Checked
/// on the raw bytes, so invalid UTF-8 next to the prefix cannot hide it. Only the places where an `r`
/// or `R` stands are compared.
fn looks_like_token(s: &[u8]) -> bool {
    (0..s.len()).any(|at| token_at(&s[at..]))
}

/// Does a token spelling (either one, any case) start `s`?
fn token_at(s: &[u8]) -> bool {
    s.first().is_some_and(|b| b.eq_ignore_ascii_case(&b'r'))
        && (starts_with_ignore_ascii_case(s, TOKEN_PREFIX)
            || starts_with_ignore_ascii_case(s, TOKEN_PREFIX_ENCODED))
}

/// Does `hay` start with `prefix` (ASCII, lower case), ignoring ASCII case?
fn starts_with_ignore_ascii_case(hay: &[u8], prefix: &[u8]) -> bool {
    hay.get(..prefix.len())
        .is_some_and(|h| h.eq_ignore_ascii_case(prefix))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_path_and_query_tokens() {
        assert_eq!(
            redact_target(b"/relayapi/rt1.AQECabc/chat/completions"),
            "/relayapi/[token]/chat/completions"
        );
        assert_eq!(
            redact_target(b"/relayapi/chat/completions?token=rt1.AQEC&x=1"),
            "/relayapi/chat/completions?token=[token]&x=1"
        );
        assert_eq!(
            redact_target(b"/relayapi/x?token=anything"),
            "/relayapi/x?token=[token]"
        );
        assert_eq!(redact_target(b"/a?q=RT1.zzz"), "/a?q=[token]");
        assert_eq!(redact_target(b"/a/xrt1%2Ezzz/b"), "/a/[token]/b");
        assert_eq!(redact_target(b"/health"), "/health");
        // Multi-byte characters (and invalid UTF-8, decoded lossily) right at the start of a segment.
        assert_eq!(redact_target("/ab€cd/x".as_bytes()), "/ab€cd/x");
        assert_eq!(
            redact_target(b"/\xff\xfe\xfdrt1.x?q=\xffz"),
            "/[token]?q=\u{fffd}z"
        );
    }

    #[test]
    fn token_lookalikes_are_found_wherever_they_stand() {
        // The definition: a window equal to either spelling, ignoring ASCII case.
        let slow = |s: &[u8]| {
            [&b"rt1."[..], b"rt1%2e"]
                .iter()
                .any(|n| s.windows(n.len()).any(|w| w.eq_ignore_ascii_case(n)))
        };
        let pieces: [&[u8]; 12] = [
            b"r",
            b"R",
            b"t",
            b"T",
            b"1",
            b".",
            b"%2",
            b"e",
            b"E",
            b"x",
            b"\xff",
            b"\xc3\xa9",
        ];
        // Every sequence of up to four pieces.
        let mut seqs: Vec<Vec<u8>> = vec![Vec::new()];
        for _ in 0..4 {
            seqs = (seqs.iter())
                .flat_map(|s| {
                    let longer = pieces.iter().map(move |p| [&s[..], p].concat());
                    longer.chain([s.clone()])
                })
                .collect();
        }
        for s in &seqs {
            let padded = [&b"ab"[..], s, b"cd"].concat();
            assert_eq!(looks_like_token(s), slow(s), "{s:?}");
            assert_eq!(looks_like_token(&padded), slow(&padded), "{padded:?}");
        }
        assert!(
            looks_like_token(b"xRt1%2Ey")
                && looks_like_token(b"rrT1.")
                && !looks_like_token(b"rt1")
        );
    }

    #[test]
    fn pieces_are_what_split_gives() {
        for s in [
            &b""[..],
            b"/",
            b"//",
            b"a",
            b"/a/b/",
            b"a//b",
            b"/relayapi/rt1.x/chat",
        ] {
            for from in 0..=s.len() {
                let want: Vec<&[u8]> = s[from..].split(|&b| b == b'/').collect();
                let got: Vec<&[u8]> = pieces(s, from, s.len(), b'/')
                    .map(|(a, b)| &s[a..b])
                    .collect();
                assert_eq!(got, want, "{s:?} from {from}");
            }
        }
    }

    #[test]
    fn redaction_is_bounded() {
        let long = format!("/{}", "a".repeat(5000));
        assert!(redact_target(long.as_bytes()).len() < 600);
    }

    /// Redaction as it was written before it handed on runs of the target (split, decode each piece,
    /// build a `String`, cut it): the definition the faster code is checked against.
    fn reference(target: &[u8]) -> String {
        let (path, query) = match target.iter().position(|&b| b == b'?') {
            Some(q) => (&target[..q], Some(&target[q + 1..])),
            None => (target, None),
        };
        let mut out = String::new();
        for (i, seg) in path.split(|&b| b == b'/').enumerate() {
            if i > 0 {
                out.push('/');
            }
            if looks_like_token(seg) {
                out.push_str("[token]");
            } else {
                out.push_str(&String::from_utf8_lossy(seg));
            }
        }
        if let Some(q) = query {
            out.push('?');
            for (i, pair) in q.split(|&b| b == b'&').enumerate() {
                if i > 0 {
                    out.push('&');
                }
                let kv = pair
                    .iter()
                    .position(|&b| b == b'=')
                    .map(|e| (&pair[..e], &pair[e + 1..]));
                match kv {
                    // Before 2026-12-07 a token-looking name kept when its value was redacted
                    // (`?rt1.x=rt1.y` logged `rt1.x=[token]`); such a member is now replaced whole.
                    Some((k, v))
                        if (k.eq_ignore_ascii_case(b"token") || looks_like_token(v))
                            && !looks_like_token(k) =>
                    {
                        out.push_str(&String::from_utf8_lossy(k));
                        out.push_str("=[token]");
                    }
                    _ if looks_like_token(pair) => out.push_str("[token]"),
                    _ => out.push_str(&String::from_utf8_lossy(pair)),
                }
            }
        }
        if out.len() > MAX {
            let mut cut = MAX;
            while !out.is_char_boundary(cut) {
                cut -= 1;
            }
            out.truncate(cut);
            out.push('…');
        }
        out
    }

    /// Targets built from pieces that exercise every rule: delimiters, token spellings in both cases,
    /// `token=` names, multi-byte and invalid UTF-8.
    fn targets() -> Vec<Vec<u8>> {
        let pieces: [&[u8]; 14] = [
            b"/",
            b"?",
            b"&",
            b"=",
            b"rt1.AQ",
            b"RT1%2Ezz",
            b"token",
            b"ToKeN=",
            b"rt1",
            b"ab",
            b"\xe2\x82\xac",
            b"\xff",
            b"\xe2\x82",
            b"",
        ];
        let mut seqs: Vec<Vec<u8>> = vec![Vec::new()];
        for _ in 0..4 {
            seqs = (seqs.iter())
                .flat_map(|s| pieces.iter().map(move |p| [&s[..], p].concat()))
                .collect();
            seqs.dedup();
        }
        seqs
    }

    #[test]
    fn redaction_is_what_the_piece_by_piece_definition_gives() {
        for t in targets() {
            for prefix in [&b""[..], b"/relayapi/"] {
                let t = [prefix, &t].concat();
                let got = redact_target(&t);
                assert_eq!(got, reference(&t), "{t:?}");
                // No token spelling survives anywhere in the result.
                assert!(!looks_like_token(got.as_bytes()), "{t:?} -> {got}");
            }
        }
    }

    #[test]
    fn a_token_as_a_query_name_is_redacted_with_its_value() {
        // The name once stayed when the value was redacted too.
        assert_eq!(redact_target(b"/a?rt1.SECRET=rt1.x&b=1"), "/a?[token]&b=1");
        assert_eq!(
            redact_target(b"/a?x=1&RT1%2eSECRET=token"),
            "/a?x=1&[token]"
        );
        assert_eq!(redact_target(b"/a?token=rt1.x"), "/a?token=[token]");
    }

    #[test]
    fn the_cap_cuts_where_the_whole_text_would_be_cut() {
        // Long targets around the cap: a run of `a`s, then tokens, multi-byte characters and query
        // members that straddle byte 512 of the result at every offset.
        let tails: [&[u8]; 6] = [
            b"/rt1.secretsecret/x",
            b"?token=secret&b=1",
            "€€€€".as_bytes(),
            b"/\xff\xffrt1.z",
            b"?q=rt1%2esecret",
            b"/ab",
        ];
        for fill in 490..520 {
            for tail in tails {
                let t = [
                    b"/".to_vec(),
                    b"a".repeat(fill),
                    tail.to_vec(),
                    tail.to_vec(),
                ]
                .concat();
                let got = redact_target(&t);
                assert_eq!(got, reference(&t), "{fill} {tail:?}");
                assert!(!got.contains("secret"), "{got}");
            }
        }
    }

    #[test]
    fn a_target_with_nothing_to_redact_is_handed_on_whole() {
        let mut runs = Vec::new();
        redact_str("/relayapi/chat/completions?x=1", &mut |s| {
            runs.push(s.to_string())
        });
        assert_eq!(runs, ["/relayapi/chat/completions?x=1"]);
        runs.clear();
        redact_str("/relayapi/rt1.abc/chat/completions", &mut |s| {
            runs.push(s.to_string())
        });
        assert_eq!(runs, ["/relayapi/", "[token]", "/chat/completions"]);
    }
}
