//! Character classes and the small name and path grammars: RFC 3986 URI characters, RFC 9110 tokens,
//! the identifier rules of key ids, tenant ids, key names and provider names, base paths, and one walk
//! over percent-encoded text. Host names are `text/host.rs`'s; which rule applies where is decided by
//! the callers (`config/`, `token/`, `http/`), which name the field and write the message.

/// Longest key id (token format §2): it travels in every token header.
pub const MAX_KEY_ID_LEN: usize = 32;
/// Longest tenant id (token format §2).
pub const MAX_TENANT_ID_LEN: usize = 64;
/// Longest key name (`config.json` `api_keys`, the token's `kref`, token format §5.1.9).
pub const MAX_KEY_NAME_LEN: usize = 64;
/// Longest provider name (`prv` claim, `config.json` `providers`, token format §5.1.7).
pub const MAX_PROVIDER_NAME_LEN: usize = 32;
/// Longest base path (docs/client-config.md rule 5): it prefixes every relay URL.
pub const MAX_BASE_PATH_LEN: usize = 128;

/// The table of a byte class, computed at compile time (a macro: a `const fn` cannot call a closure).
macro_rules! byte_table {
    (|$b:ident| $class:expr) => {{
        let mut table = [false; 256];
        let mut i = 0;
        while i < 256 {
            let $b = i as u8;
            table[i] = $class;
            i += 1;
        }
        table
    }};
}

/// Printable ASCII, space included (0x20-0x7E).
pub fn is_printable_ascii(b: u8) -> bool {
    (0x20..=0x7e).contains(&b)
}

/// RFC 3986 §2.3 unreserved: `ALPHA / DIGIT / "-" / "." / "_" / "~"`.
pub const fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// RFC 3986 §2.2 sub-delims: `"!" / "$" / "&" / "'" / "(" / ")" / "*" / "+" / "," / ";" / "="`.
pub const fn is_sub_delim(b: u8) -> bool {
    matches!(
        b,
        b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'='
    )
}

/// RFC 3986 unreserved / sub-delims: the characters a path segment and a host name share.
#[inline]
pub fn is_unreserved_or_sub_delim(b: u8) -> bool {
    UNRESERVED_OR_SUB_DELIM[b as usize]
}

/// RFC 3986 §3.3 pchar without pct-encoded: unreserved / sub-delims / ":" / "@".
#[inline]
pub fn is_pchar(b: u8) -> bool {
    PCHAR[b as usize]
}

/// [`is_unreserved_or_sub_delim`] for every byte. Every request-target is walked byte by byte on every
/// request, and a relay target carries a token of hundreds of bytes: one load per byte instead of two
/// chains of comparisons and a call (2,500 instructions less per request, `bench/instructions.sh`).
const UNRESERVED_OR_SUB_DELIM: [bool; 256] = byte_table!(|b| is_unreserved(b) || is_sub_delim(b));
/// [`is_pchar`] for every byte.
const PCHAR: [bool; 256] =
    byte_table!(|b| is_unreserved(b) || is_sub_delim(b) || b == b':' || b == b'@');

/// RFC 3986 unreserved, reserved (gen-delims and sub-delims) and `%`: every byte a URI may hold.
pub fn is_uri_char(b: u8) -> bool {
    is_unreserved_or_sub_delim(b) || b"%:/?#[]@".contains(&b)
}

/// RFC 9110 §5.6.2: tchar, the characters of a token (field names, methods, transfer codings,
/// connection options).
#[inline]
pub fn is_tchar(b: u8) -> bool {
    TCHAR[b as usize]
}

/// The tchar rule as RFC 9110 §5.6.2 spells it: `"!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" /
/// "." / "^" / "_" / "`" / "|" / "~" / DIGIT / ALPHA`. [`is_tchar`] reads it from [`TCHAR`].
const fn tchar_by_rule(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'!' | b'#'
                | b'$'
                | b'%'
                | b'&'
                | b'\''
                | b'*'
                | b'+'
                | b'-'
                | b'.'
                | b'^'
                | b'_'
                | b'`'
                | b'|'
                | b'~'
        )
}

/// [`tchar_by_rule`] for every byte. Every response's Connection options, chunk extensions and CORS
/// field names are checked byte by byte: one load per byte instead of a chain of comparisons.
const TCHAR: [bool; 256] = byte_table!(|b| tchar_by_rule(b));

/// Why a percent-encoded text was refused by [`check_percent_encoded`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PercentError {
    /// A `%` not followed by two hex digits.
    BadEscape,
    /// A byte the caller's class does not allow, outside an escape.
    Byte(u8),
}

/// Bytes [`check_percent_encoded`] looks at in one go before walking byte by byte.
const PLAIN_RUN: usize = 8;

/// Walks `text` as RFC 3986 percent-encoded text: every `%` must start a complete `%XX` escape (two hex
/// digits, RFC 3986 §2.1), and every other byte must satisfy `allowed`. Decodes nothing: callers that
/// need the decoded bytes check them after this walk.
pub fn check_percent_encoded(
    text: &[u8],
    allowed: impl Fn(u8) -> bool,
) -> Result<(), PercentError> {
    // `allowed` is never asked about `%` below (a `%` always starts an escape), so only a class that
    // allows it needs the fast path to look for `%` itself; for the usual class this folds away.
    let percent_allowed = allowed(b'%');
    let mut i = 0;
    while i < text.len() {
        // Fast path for the long plain runs a request-target is made of (the token in the path is
        // hundreds of bytes): a run of `PLAIN_RUN` bytes that are all allowed and none a `%` involves
        // none of the decisions below, so it is skipped at once; anything else is walked byte by byte.
        if let Some(run) = text.get(i..i + PLAIN_RUN) {
            if run.iter().fold(true, |all, &b| {
                all & allowed(b) & (!percent_allowed | (b != b'%'))
            }) {
                i += PLAIN_RUN;
                continue;
            }
        }
        match text[i] {
            b'%' => {
                let complete = text.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                    && text.get(i + 2).is_some_and(u8::is_ascii_hexdigit);
                if !complete {
                    return Err(PercentError::BadEscape);
                }
                i += 3;
            }
            b if allowed(b) => i += 1,
            b => return Err(PercentError::Byte(b)),
        }
    }
    Ok(())
}

/// The identifier class of key ids, tenant ids and key names (token format §2): `A-Z a-z 0-9 . _ -`.
pub fn is_id_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')
}

fn is_identifier(s: &str, max: usize) -> bool {
    (1..=max).contains(&s.len()) && s.bytes().all(is_id_byte)
}

/// Key ids: 1 to 32 characters from `A-Z a-z 0-9 . _ -` (token format §2).
pub fn is_key_id(s: &str) -> bool {
    is_identifier(s, MAX_KEY_ID_LEN)
}

/// Tenant ids: 1 to 64 characters from `A-Z a-z 0-9 . _ -` (token format §2).
pub fn is_tenant_id(s: &str) -> bool {
    is_identifier(s, MAX_TENANT_ID_LEN)
}

/// Names of server-side API keys (`config.json` `api_keys`) and the `kref` claim that names them:
/// 1 to 64 characters from `A-Z a-z 0-9 . _ -` (token format §5.1.9).
pub fn is_key_name(s: &str) -> bool {
    is_identifier(s, MAX_KEY_NAME_LEN)
}

/// Provider names (`prv` claim, `config.json` `providers`): 1 to 32 characters from `a-z 0-9 _ -`.
pub fn is_provider_name(s: &str) -> bool {
    (1..=MAX_PROVIDER_NAME_LEN).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// The relay's URL prefix (`config.json` `server.base_path`, `.rai` `server.base_path`,
/// docs/client-config.md rule 5): at most 128 bytes, `/` alone or `/` followed by segments that each end
/// in `/`. A segment is plain RFC 3986 path text that no client or proxy would rewrite: 1 or more bytes
/// of unreserved, sub-delims, `:` and `@`, and not `.` or `..` (no empty segments, no percent-escapes).
pub fn is_base_path(p: &str) -> bool {
    let segment_ok =
        |seg: &str| seg != "." && seg != ".." && !seg.is_empty() && seg.bytes().all(is_pchar);
    if p == "/" {
        return true;
    }
    p.len() <= MAX_BASE_PATH_LEN
        && p.len() >= 2
        && p.starts_with('/')
        && p.ends_with('/')
        && p[1..p.len() - 1].split('/').all(segment_ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The percent-encoded walk without the run fast path: one byte at a time.
    fn walk_bytewise(text: &[u8], allowed: impl Fn(u8) -> bool) -> Result<(), PercentError> {
        let mut i = 0;
        while i < text.len() {
            match text[i] {
                b'%' => {
                    let complete = text.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                        && text.get(i + 2).is_some_and(u8::is_ascii_hexdigit);
                    if !complete {
                        return Err(PercentError::BadEscape);
                    }
                    i += 3;
                }
                b if allowed(b) => i += 1,
                b => return Err(PercentError::Byte(b)),
            }
        }
        Ok(())
    }

    #[test]
    fn the_run_fast_path_answers_as_the_byte_walk() {
        // Every byte at every offset, and escapes across run boundaries, for a class that refuses '%'
        // like most callers and for one that allows every byte ('%' must still start an escape).
        let target = |b: u8| is_pchar(b) || b == b'/' || b == b'?';
        let classes: [&dyn Fn(u8) -> bool; 3] = [&target, &|_| true, &is_pchar];
        let base = b"/relayapi/eyJhbGciOiJFZERTQSJ9.abc-def_ghi~jk/chat/completions?x=1&y=2";
        for allowed in classes {
            let same = |t: &[u8], what: &str| {
                assert_eq!(
                    check_percent_encoded(t, allowed),
                    walk_bytewise(t, allowed),
                    "{what}: {t:?}"
                );
            };
            for at in 0..base.len() {
                for b in 0..=255u8 {
                    let mut t = base.to_vec();
                    t[at] = b;
                    same(&t, "byte");
                }
                for insert in [&b"%"[..], b"%2", b"%2F", b"%zz", b"%%41", b"%4", b"#", b" "] {
                    let mut t = base[..at].to_vec();
                    t.extend_from_slice(insert);
                    t.extend_from_slice(&base[at..]);
                    same(&t, "insert");
                    t.truncate(at + insert.len());
                    same(&t, "insert at the end");
                }
            }
        }
        assert_eq!(
            check_percent_encoded(b"aaaaaaa%", |_| true),
            Err(PercentError::BadEscape)
        );
    }

    #[test]
    fn the_byte_tables_are_rfc_3986_spelled_out() {
        // RFC 3986 §2.3 unreserved, §2.2 sub-delims, then the two more bytes of §3.3 pchar.
        const SEGMENT: &[u8] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~!$&'()*+,;=";
        for b in 0..=255u8 {
            let in_segment = SEGMENT.contains(&b);
            assert_eq!(is_unreserved_or_sub_delim(b), in_segment, "{b:#04x}");
            assert_eq!(
                is_pchar(b),
                in_segment || b == b':' || b == b'@',
                "{b:#04x}"
            );
        }
    }

    #[test]
    fn the_tchar_table_is_rfc_9110_spelled_out() {
        // RFC 9110 §5.6.2 tchar, listed in full.
        const TCHARS: &[u8] =
            b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
        for b in 0..=255u8 {
            assert_eq!(is_tchar(b), TCHARS.contains(&b), "{b:#04x}");
            assert_eq!(is_tchar(b), tchar_by_rule(b), "{b:#04x}");
        }
    }

    #[test]
    fn percent_walk_needs_complete_escapes() {
        let any = |_: u8| true;
        assert_eq!(check_percent_encoded(b"/a%20b", any), Ok(()));
        assert_eq!(
            check_percent_encoded(b"%2", any),
            Err(PercentError::BadEscape)
        );
        assert_eq!(
            check_percent_encoded(b"%zz", any),
            Err(PercentError::BadEscape)
        );
        assert_eq!(
            check_percent_encoded(b"a%", any),
            Err(PercentError::BadEscape)
        );
        assert_eq!(
            check_percent_encoded(b"a#b", is_pchar),
            Err(PercentError::Byte(b'#'))
        );
        // An escape is skipped whole: "%25" is one escaped '%', never the start of another.
        assert_eq!(check_percent_encoded(b"%25zz", is_pchar), Ok(()));
    }

    #[test]
    fn identifiers() {
        assert!(is_key_id("acme-2026.11_a"));
        assert!(!is_key_id(&"a".repeat(33)));
        assert!(is_tenant_id(&"a".repeat(64)));
        assert!(!is_tenant_id(""));
        assert!(!is_key_name("my key"));
        assert!(is_provider_name("openai-compatible_2"));
        assert!(!is_provider_name("OpenAI"));
    }

    #[test]
    fn base_paths() {
        for ok in ["/", "/relayapi/", "/a/b/", "/~x/a:b@c/", "/v1.2/"] {
            assert!(is_base_path(ok), "{ok}");
        }
        for bad in [
            "", "relay", "/relay", "relay/", "//", "/a//b/", "/./", "/../", "/a/../b/", "/a%20/",
            "/a b/", "/a?/", "/a#/",
        ] {
            assert!(!is_base_path(bad), "{bad}");
        }
        assert!(!is_base_path(&format!("/{}/", "a".repeat(127))));
    }
}
