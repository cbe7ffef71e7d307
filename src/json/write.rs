//! Writing JSON by hand where it is written once per request (the access-log line, `log.rs`): strings
//! escaped byte for byte as `serde_json` escapes them (`"`, `\` and control characters only; the short
//! forms `\b \t \n \f \r`, otherwise `\u00xx` in lower-case hex; everything else, non-ASCII included,
//! as it is), unsigned integers in decimal, and floats through `serde_json` itself. Going through
//! `serde_json`'s serializer for every member cost about 4,900 instructions a line
//! (`bench/instructions.sh`); the runs that need no escaping are copied whole (`json/plain.rs`).

use crate::json::plain::plain_run;

/// Appends `s` to `out` as a JSON string, quotes included.
pub fn push_str(out: &mut Vec<u8>, s: &str) {
    let mut rest = s.as_bytes();
    out.push(b'"');
    loop {
        let run = plain_run(rest);
        out.extend_from_slice(&rest[..run]);
        let Some(&b) = rest.get(run) else { break };
        let short = match b {
            b'"' => b'"',
            b'\\' => b'\\',
            0x08 => b'b',
            b'\t' => b't',
            b'\n' => b'n',
            0x0c => b'f',
            b'\r' => b'r',
            _ => 0,
        };
        if short != 0 {
            out.extend_from_slice(&[b'\\', short]);
        } else {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            let (hi, lo) = (HEX[usize::from(b >> 4)], HEX[usize::from(b & 0xf)]);
            out.extend_from_slice(&[b'\\', b'u', b'0', b'0', hi, lo]);
        }
        rest = &rest[run + 1..];
    }
    out.push(b'"');
}

/// Two decimal digits for each value below 100: `push_u64` writes two digits per division, and the
/// access line writes a dozen numbers (status, sizes, the client address's octets).
const PAIRS: &[u8; 200] = b"\
0001020304050607080910111213141516171819\
2021222324252627282930313233343536373839\
4041424344454647484950515253545556575859\
6061626364656667686970717273747576777879\
8081828384858687888990919293949596979899";

/// Appends `v` in decimal.
pub fn push_u64(out: &mut Vec<u8>, mut v: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    while v >= 100 {
        let pair = (v % 100) as usize * 2;
        v /= 100;
        at -= 2;
        digits[at..at + 2].copy_from_slice(&PAIRS[pair..pair + 2]);
    }
    // `v` is below 100 now.
    let pair = v as usize * 2;
    if v >= 10 {
        at -= 2;
        digits[at..at + 2].copy_from_slice(&PAIRS[pair..pair + 2]);
    } else {
        at -= 1;
        digits[at] = PAIRS[pair + 1];
    }
    out.extend_from_slice(&digits[at..]);
}

/// Appends `v` as `serde_json` writes a float: the shortest text that reads back as `v` (`1.5`,
/// `12.0`, `1e-7`), or `null` when it is not finite.
pub fn push_f64(out: &mut Vec<u8>, v: f64) {
    // Writing to a `Vec` cannot fail, and a float always serialises.
    let _ = serde_json::to_writer(&mut *out, &v);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn string(s: &str) -> String {
        let mut out = Vec::new();
        push_str(&mut out, s);
        String::from_utf8(out).expect("valid UTF-8 in, valid UTF-8 out")
    }

    #[test]
    fn strings_are_escaped_as_serde_json_escapes_them() {
        let every_ascii: String = (0u8..=0x7f).map(char::from).collect();
        let long_plain = "plain ".repeat(40);
        for s in [
            "",
            "a",
            "r-0123456789abcdef",
            "/relayapi/[token]/chat/completions?x=1&y=2",
            "\"",
            "\\",
            "\"\\\"\\",
            "tab\there\nnewline\r\u{8}\u{c}\u{0}\u{1f}\u{7f}",
            "ends with a quote\"",
            "\u{1}\u{2}\u{3}\u{4}\u{5}\u{6}\u{7}\u{b}\u{e}\u{f}\u{10}\u{1a}\u{1b}",
            "héllo wörld €100 😀 \u{2028}\u{2029} \u{fffd}",
            "\u{fffd}\u{fffd}x\u{fffd}",
            &every_ascii,
            &long_plain,
            &format!("{long_plain}\"{long_plain}\\{long_plain}\u{0}"),
        ] {
            let want = serde_json::to_string(s).unwrap();
            assert_eq!(string(s), want, "{s:?}");
            // And it reads back as the same text.
            assert_eq!(serde_json::from_str::<String>(&want).unwrap(), s);
        }
    }

    #[test]
    fn numbers_are_written_as_serde_json_writes_them() {
        for v in [
            0u64,
            7,
            10,
            99,
            100,
            200,
            65_535,
            1 << 32,
            u64::MAX / 10,
            u64::MAX,
        ] {
            let mut out = Vec::new();
            push_u64(&mut out, v);
            assert_eq!(out, serde_json::to_vec(&v).unwrap(), "{v}");
        }
        // Every value up to six digits, and each power of ten and its neighbours.
        let powers = (0..20).flat_map(|k| {
            let p = 10u64.pow(k);
            [p - 1, p, p + 1]
        });
        for v in (0..1_000_000u64).chain(powers) {
            let mut out = b"x".to_vec();
            push_u64(&mut out, v);
            assert_eq!(out, format!("x{v}").into_bytes(), "{v}");
        }
        for v in [
            0.0,
            1.5,
            12.0,
            0.001,
            1e-7,
            123_456.789,
            f64::NAN,
            f64::INFINITY,
        ] {
            let mut out = b"x".to_vec();
            push_f64(&mut out, v);
            let want = [&b"x"[..], &serde_json::to_vec(&v).unwrap()].concat();
            assert_eq!(out, want, "{v}");
        }
    }
}
