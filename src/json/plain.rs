//! The run of bytes at the start of a JSON string's text that stand for themselves (no `"`, `\` or
//! control character, RFC 8259 §7), found eight bytes at a time: the skimmer (`json/skim.rs`) steps
//! over such runs, and the log writer (`json/write.rs`) copies them without escaping. Strings are most
//! of a provider's answer and of an access-log line, so this search is where their bytes go.

/// How many bytes at the start of `s` a JSON string holds as they are: the offset of the first `"`,
/// `\` or byte below 0x20, or `s.len()` if there is none. Every other byte, UTF-8 or not, stands for
/// itself here (checking UTF-8 is the caller's business).
pub fn plain_run(s: &[u8]) -> usize {
    const ONES: u64 = u64::from_le_bytes([1; 8]);
    const HIGH: u64 = u64::from_le_bytes([0x80; 8]);
    // The high bit of each byte of `x` below `n` (n <= 0x80), after "Bit Twiddling Hacks" ("determine
    // if a word has a byte less than n"). A borrow can also flag a byte above a flagged one, never one
    // below it: the lowest flag is exact, and only the lowest is used.
    let below = |x: u64, n: u8| x.wrapping_sub(ONES * u64::from(n)) & !x & HIGH;
    let mut i = 0;
    while let Some(w) = s.get(i..i + 8) {
        let x = u64::from_le_bytes(w.try_into().expect("eight bytes"));
        let hits = below(x ^ (ONES * u64::from(b'"')), 1)
            | below(x ^ (ONES * u64::from(b'\\')), 1)
            | below(x, 0x20);
        if hits != 0 {
            // Little-endian: the lowest flagged bit belongs to the first of the eight bytes.
            return i + (hits.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    i + s[i..]
        .iter()
        .position(|&b| b == b'"' || b == b'\\' || b < 0x20)
        .unwrap_or(s.len() - i)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The byte-by-byte definition.
    fn slow(s: &[u8]) -> usize {
        s.iter()
            .position(|&b| b == b'"' || b == b'\\' || b < 0x20)
            .unwrap_or(s.len())
    }

    #[test]
    fn stops_where_a_byte_by_byte_scan_does() {
        // Every stop byte at every offset of a 20-byte run, with UTF-8 and DEL around it.
        for stop in [b'"', b'\\', 0x00, 0x1f, b'\n'] {
            for at in 0..20 {
                let mut s = "é\u{7f}abcdefghijklmnopqrstuvwxyz".as_bytes()[..20].to_vec();
                s[at] = stop;
                assert_eq!(plain_run(&s), at, "{stop:#x} at {at}");
                // A stop byte above the first one (a borrow could flag it) does not move it.
                s[19] = 0x01;
                assert_eq!(plain_run(&s), at.min(19));
            }
        }
        assert_eq!(plain_run(b"plain text \xff\x80 ~\x7f"), 16);
        assert_eq!(plain_run(b""), 0);
    }

    #[test]
    fn agrees_with_the_definition_on_every_byte_pair() {
        // Each pair of byte values, at each alignment within a word and across two words.
        let mut s = [b'a'; 18];
        for a in 0..=255u8 {
            for b in [
                0u8, 0x01, 0x1f, 0x20, b'"', b'#', b'\\', b']', 0x7f, 0x80, 0xa2, 0xdc, 0xff,
            ] {
                for at in [0, 3, 7, 8, 9, 15] {
                    s.fill(b'a');
                    s[at] = a;
                    s[at + 1] = b;
                    assert_eq!(plain_run(&s), slow(&s), "{a:#x} {b:#x} at {at}");
                    assert_eq!(plain_run(&s[1..]), slow(&s[1..]));
                }
            }
        }
    }
}
