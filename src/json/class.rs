//! What a byte means between JSON tokens, as 256-entry tables built at compile time: one lookup tells the
//! skimmer (`json/skim.rs`) which token a byte starts, and the runs of whitespace and scalar bytes are
//! stepped over with one table test per byte instead of a chain of comparisons.

/// The token a byte starts (or continues) outside a string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Not allowed between tokens.
    Other,
    /// RFC 8259 §2's insignificant whitespace.
    Space,
    /// `"`: a string or a member name.
    Quote,
    /// `{`.
    OpenObject,
    /// `[`.
    OpenArray,
    /// `}`.
    CloseObject,
    /// `]`.
    CloseArray,
    /// `,`.
    Comma,
    /// `:`.
    Colon,
    /// `[A-Za-z0-9+.-]`: a number or a `true`/`false`/`null` literal, whose grammar is left to the
    /// strict reader of the values that matter (`json/body_scan.rs`).
    Scalar,
}

/// The class of every byte value.
pub const CLASS: [Class; 256] = {
    let mut t = [Class::Other; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        t[i] = match b {
            b' ' | b'\t' | b'\n' | b'\r' => Class::Space,
            b'"' => Class::Quote,
            b'{' => Class::OpenObject,
            b'[' => Class::OpenArray,
            b'}' => Class::CloseObject,
            b']' => Class::CloseArray,
            b',' => Class::Comma,
            b':' => Class::Colon,
            b'+' | b'-' | b'.' => Class::Scalar,
            _ if b.is_ascii_alphanumeric() => Class::Scalar,
            _ => Class::Other,
        };
        i += 1;
    }
    t
};

/// The class of `b`.
#[inline]
pub fn class(b: u8) -> Class {
    CLASS[usize::from(b)]
}

/// How many bytes at the start of `s` are of class `c`.
#[inline]
pub fn run_of(s: &[u8], c: Class) -> usize {
    s.iter().position(|&b| class(b) != c).unwrap_or(s.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_are_rfc_8259s() {
        for b in 0..=255u8 {
            let want = match b {
                b' ' | b'\t' | b'\n' | b'\r' => Class::Space,
                b'"' => Class::Quote,
                b'{' => Class::OpenObject,
                b'[' => Class::OpenArray,
                b'}' => Class::CloseObject,
                b']' => Class::CloseArray,
                b',' => Class::Comma,
                b':' => Class::Colon,
                b'0'..=b'9' | b'a'..=b'z' | b'A'..=b'Z' | b'+' | b'-' | b'.' => Class::Scalar,
                _ => Class::Other,
            };
            assert_eq!(class(b), want, "{b:#x}");
        }
        assert_eq!(run_of(b"  \t\r\n{", Class::Space), 5);
        assert_eq!(run_of(b"-1.5e+3,", Class::Scalar), 7);
        assert_eq!(run_of(b"true", Class::Scalar), 4);
        assert_eq!(run_of(b"", Class::Scalar), 0);
    }
}
