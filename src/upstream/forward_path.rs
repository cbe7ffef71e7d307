//! The rule for the provider-relative path the relay forwards (the part after the token): which bytes
//! it may hold so that it can never climb out of the provider's base path, hide a segment from the
//! relay's own checks (`request/policy.rs` reads the path too), or be read one way by the relay and another
//! way by a proxy or server in front of the provider. A pure function over the path text; the caller
//! answers 400 with the message it returns. Syntax of the whole request-target (RFC 9112 §3.2) is
//! `http/head.rs`'s job and has already been checked when this runs; the query string is not looked at here.
//!
//! The rule is stricter than RFC 3986 on purpose: every real provider path is made of plain segments
//! (`/v1/chat/completions`, `/v1beta/models/gemini-2.0-flash:generateContent`,
//! `/deployments/<name>/chat/completions`), so anything a normalising server could read as a different
//! path is refused rather than passed on:
//! - segments are RFC 3986 §3.3 `pchar`s, except `;` (path parameters: `..;/` is `../` to Tomcat and
//!   Spring; no provider in `docs/providers.md` uses `;`);
//! - a percent-escape must decode to a printable ASCII character that is not a delimiter: `%25` (a
//!   second round of decoding would see `%252e` as `%2e`), `%2e` (`.`), `%2f` (`/`), `%5c` (`\`), `%3b`
//!   (`;`), `%3f` (`?`), `%23` (`#`), `%20` (space, trimmed by some servers), controls and `%7f`, and
//!   every byte from `%80` (overlong UTF-8 such as `%c0%ae` is `.` to a lenient decoder) are refused;
//! - no segment made only of dots (`.`, `..`, and `...`, which servers that trim trailing dots from
//!   names, as Windows does, read as `..` or `.`), and no empty segment except a trailing one
//!   (`/models/` is a real path).

use crate::http::head::is_pchar;

/// Checks a provider-relative path: empty, or `/` followed by segments. `Err` says what is wrong, for
/// the 400 answer's message.
pub fn check(rest: &str) -> Result<(), &'static str> {
    if rest.is_empty() {
        return Ok(());
    }
    let Some(mut segments) = rest.as_bytes().strip_prefix(b"/") else {
        return Err("the path must start with '/'");
    };
    // One pass, segment by segment (this runs on every request).
    loop {
        let (seg, more) = match memchr::memchr(b'/', segments) {
            Some(slash) => (&segments[..slash], Some(&segments[slash + 1..])),
            None => (segments, None),
        };
        if seg.is_empty() {
            // A trailing slash is legitimate; an empty inner segment ('//') is not.
            return match more {
                None => Ok(()),
                Some(_) => Err("empty path segment ('//')"),
            };
        }
        if seg.iter().all(|&b| b == b'.') {
            return Err("'.' and '..' path segments are not allowed");
        }
        check_segment(seg)?;
        match more {
            Some(m) => segments = m,
            None => return Ok(()),
        }
    }
}

fn check_segment(seg: &[u8]) -> Result<(), &'static str> {
    let mut i = 0;
    while i < seg.len() {
        match seg[i] {
            b'%' => {
                let decoded = match (seg.get(i + 1), seg.get(i + 2)) {
                    (Some(&h), Some(&l)) => hex(h).zip(hex(l)).map(|(h, l)| (h << 4) | l),
                    _ => None,
                };
                match decoded {
                    Some(b) if safe_decoded(b) => i += 3,
                    Some(_) => return Err(
                        "percent-escapes in the path must stand for a printable ASCII character \
                             other than '%', '.', '/', '\\', ';', '?', '#' and space",
                    ),
                    None => return Err("invalid percent-escape in the path"),
                }
            }
            b';' => return Err("';' is not allowed in the path"),
            b if is_pchar(b) => i += 1,
            _ => return Err("invalid character in the path"),
        }
    }
    Ok(())
}

/// What a percent-escape may stand for: printable ASCII (0x21-0x7e) except the characters that end,
/// split or escape a path segment, or would be decoded a second time.
fn safe_decoded(b: u8) -> bool {
    (0x21..=0x7e).contains(&b) && !matches!(b, b'%' | b'.' | b'/' | b'\\' | b';' | b'?' | b'#')
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_paths_pass() {
        for ok in [
            "",
            "/",
            "/chat/completions",
            "/v1/messages",
            "/v1beta/models/gemini-2.0-flash:generateContent",
            "/v1beta/tunedModels/x:streamGenerateContent",
            "/deployments/gpt-4o_mini.2/chat/completions",
            "/models/",
            "/files/file-abc123/content",
            "/a/b@c/~d/e!$&'()*+,=",
            "/v1.5/x...y/.hidden/a..b",
            // Escapes of harmless characters pass (they are forwarded as sent).
            "/a%41b/%3A%40%7e%21",
        ] {
            assert_eq!(check(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn look_alikes_are_refused() {
        let cases: &[(&str, &str)] = &[
            ("/../x", "dot-segment"),
            ("/a/./b", "dot-segment"),
            ("/a/../b", "dot-segment"),
            (
                "/a/...",
                "dots only (trimmed to '..' by Windows-style servers)",
            ),
            ("/a/..", "trailing dot-segment"),
            ("/a/%2e%2e/b", "encoded dot-segment"),
            ("/a/.%2E/b", "half-encoded dot-segment"),
            ("/a/%2e", "encoded dot"),
            ("/a/b%2ejson", "any encoded dot"),
            ("/a/%252e%252e/b", "double-encoded dots"),
            ("/a/%25", "encoded percent"),
            ("/a/%c0%ae%c0%ae/b", "overlong UTF-8 dots"),
            ("/a/%e0%80%ae", "three-byte overlong dot"),
            ("/caf%c3%a9", "non-ASCII, even valid UTF-8"),
            ("/a/%ff", "high byte"),
            ("/a/%80", "high byte"),
            ("/a/..;/b", "path parameter dot-segment (Tomcat)"),
            ("/a;x=1/b", "path parameter"),
            ("/a/%3b", "encoded ';'"),
            ("/a//b", "empty inner segment"),
            ("//a", "empty first segment"),
            ("/a%2fb", "encoded slash"),
            ("/a%2Fb", "encoded slash, upper case"),
            ("/a\\b", "backslash"),
            ("/a%5cb", "encoded backslash"),
            ("/a/%00", "NUL"),
            ("/a/%0a", "LF"),
            ("/a/%0d%0aX:1", "CRLF"),
            ("/a/%09", "TAB"),
            ("/a/%7f", "DEL"),
            ("/a/%20", "space"),
            ("/a/..%20", "dot-segment with trailing space"),
            ("/a/%3f", "encoded '?'"),
            ("/a/%23", "encoded '#'"),
            ("/a/%2", "truncated escape"),
            ("/a/%zz", "not hex"),
            ("/a/%", "bare percent"),
            ("/a b", "raw space"),
            ("/a\"b", "raw quote"),
            ("/a?b", "query delimiter inside the path"),
            ("a/b", "no leading slash"),
        ];
        for (bad, why) in cases {
            assert!(check(bad).is_err(), "{bad} ({why}) passed");
        }
    }
}
