//! The request-target rules of a request head (RFC 9112 §3.2): which forms we accept and which bytes
//! an origin-form target may hold. `http/head.rs` calls [`check_target`] once httparse has found the
//! target, and maps [`TargetError`] into its own error. The byte classes are one table, so the
//! grammar's percent-encoded walk costs one load per byte of the (hundreds of bytes long) target.

use crate::text::grammar::{check_percent_encoded, PercentError};

/// Why a request-target was refused; `http/head.rs` turns it into its `HeadError`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TargetError {
    /// Longer than `max_uri_bytes` (414).
    TooLong,
    /// Not a target we accept; the message says why (400).
    Malformed(&'static str),
}

/// Bytes an origin-form target may hold outside a percent-escape (RFC 3986 §3.3 pchar, `/` and `?`),
/// `%` excluded: it starts an escape, which the byte walk checks.
const PLAIN: [bool; 256] = {
    let mut table = [false; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        table[i] = b != b'%' && (pchar_byte(b) || b == b'/' || b == b'?');
        i += 1;
    }
    table
};

/// `text::grammar::is_pchar` as a `const fn` for the table above (RFC 3986 §3.3: unreserved / sub-delims / ":" /
/// "@"); a test checks that both agree on every byte.
const fn pchar_byte(b: u8) -> bool {
    crate::text::grammar::is_unreserved(b)
        || crate::text::grammar::is_sub_delim(b)
        || b == b':'
        || b == b'@'
}

/// RFC 9112 §3.2: the request-target forms we accept. Only origin-form (§3.2.1) and, for OPTIONS,
/// asterisk-form (§3.2.4). absolute-form (§3.2.2) is refused even though §3.2.2 says servers MUST
/// accept it: the relay is not a proxy, and a second authority in the target that could disagree
/// with Host is one more thing for two parsers to read differently. authority-form (§3.2.3) is for
/// CONNECT, which we do not support.
pub(crate) fn check_target(
    method: &str,
    target: &str,
    max_uri_bytes: usize,
) -> Result<(), TargetError> {
    if target.len() > max_uri_bytes {
        return Err(TargetError::TooLong);
    }
    if target == "*" {
        return if method == "OPTIONS" {
            Ok(())
        } else {
            Err(TargetError::Malformed(
                "asterisk-form request-target is only valid for OPTIONS",
            ))
        };
    }
    let bytes = target.as_bytes();
    if bytes.first() != Some(&b'/') {
        return Err(TargetError::Malformed(
            "request-target must be origin-form (start with /)",
        ));
    }
    // origin-form = absolute-path [ "?" query ] (RFC 9112 §3.2.1), characters per RFC 3986 §3.3 and
    // §3.4. httparse lets through any visible ASCII and non-ASCII bytes; we do not.
    match walk(bytes) {
        Ok(()) => Ok(()),
        Err(PercentError::BadEscape) => Err(TargetError::Malformed(
            "invalid percent-encoding in request-target",
        )),
        // A fragment is never sent (RFC 9110 §7.1); a '#' here means the target was not
        // encoded, and servers disagree about where such a path ends.
        Err(PercentError::Byte(b'#')) => Err(TargetError::Malformed("fragment in request-target")),
        Err(PercentError::Byte(_)) => Err(TargetError::Malformed(
            "invalid character in request-target",
        )),
    }
}

/// The origin-form walk: RFC 3986 percent-encoding over [`PLAIN`].
fn walk(text: &[u8]) -> Result<(), PercentError> {
    check_percent_encoded(text, |b| PLAIN[usize::from(b)])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::grammar::{check_percent_encoded, is_pchar};

    fn grammar(text: &[u8]) -> Result<(), PercentError> {
        check_percent_encoded(text, |b| is_pchar(b) || b == b'/' || b == b'?')
    }

    #[test]
    fn the_table_is_the_grammar_class() {
        for b in 0..=255u8 {
            let class = is_pchar(b) || b == b'/' || b == b'?';
            assert_eq!(PLAIN[usize::from(b)], class && b != b'%', "{b:#04x}");
            assert_eq!(pchar_byte(b), is_pchar(b), "{b:#04x}");
        }
    }

    #[test]
    fn the_walk_answers_as_the_grammar_walk() {
        // Every byte at every offset of a long plain target, with escapes around run boundaries.
        let base = b"/relayapi/eyJhbGciOiJFZERTQSJ9.abc-def_ghi~jk/chat/completions?x=1&y=2";
        for at in 0..base.len() {
            for b in 0..=255u8 {
                let mut t = base.to_vec();
                t[at] = b;
                assert_eq!(walk(&t), grammar(&t), "byte {b:#04x} at {at}");
            }
            for insert in [&b"%"[..], b"%2", b"%2F", b"%zz", b"%%41", b"%4", b"#", b" "] {
                let mut t = base[..at].to_vec();
                t.extend_from_slice(insert);
                t.extend_from_slice(&base[at..]);
                assert_eq!(walk(&t), grammar(&t), "{insert:?} at {at}");
                t.truncate(at + insert.len());
                assert_eq!(walk(&t), grammar(&t), "{insert:?} ending at {at}");
            }
        }
        assert_eq!(walk(b""), Ok(()));
        assert_eq!(walk(b"/aaaaaaa%2"), Err(PercentError::BadEscape));
        assert_eq!(walk(b"/aaaaaaaa#"), Err(PercentError::Byte(b'#')));
    }
}
