//! The exact plaintext `relayapi-sdk` 1.0.0 encrypts: Python's `json.dumps(token_data,
//! separators=(',', ':'))` of the dict its `create_token` builds, members in that order,
//!
//! `{"id":"token-<float>","api_key":"<s>","max_calls":<int>,"expire_time":"<iso>","created_at":"<iso>",
//! "provider":"<s>","ext_info":"<s>"}`
//!
//! where `<iso>` is `datetime.isoformat()` of an aware UTC time (`YYYY-MM-DDTHH:MM:SS[.ffffff]+00:00`).
//! Only this byte layout is read: no whitespace, no other order, no duplicate or extra members, no
//! escapes except in `ext_info`. With unauthenticated CBC every second spelling of the same claims
//! would be room for an attacker who flips ciphertext bits, so there is exactly one. Pure; the checks
//! between members are `token/compat_v0/claims.rs`'s.

use subtle::ConstantTimeEq;

/// The fixed start of every plaintext: compared in constant time before anything else is read.
const PREFIX: &[u8] = br#"{"id":"token-"#;
/// `api_key` bytes: printable ASCII (the relay's rule for provider keys).
pub const MAX_API_KEY: usize = 1024;
/// `provider` bytes.
const MAX_PROVIDER: usize = 64;
/// `ext_info` bytes as encoded.
pub const MAX_EXT_INFO: usize = 1024;
/// Digits of `max_calls`: anything above 2^53 is refused later anyway.
const MAX_INT_DIGITS: usize = 16;
/// Characters of the `id` timestamp (`1790000000.123456` is 17).
const MAX_ID_TS: usize = 24;

/// The members of a v0 plaintext, borrowed from it; times in Unix microseconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V0Plain<'a> {
    /// The float after `token-` in `id`, as written.
    pub id_ts: &'a str,
    pub api_key: &'a str,
    pub max_calls: u64,
    pub expire_us: i64,
    pub created_us: i64,
    pub provider: &'a str,
    /// As encoded (JSON escapes left in): the relay does not use it.
    pub ext_info: &'a str,
}

struct Cursor<'a> {
    s: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn lit(&mut self, l: &[u8]) -> Option<()> {
        let end = self.at.checked_add(l.len())?;
        (self.s.get(self.at..end)? == l).then(|| self.at = end)
    }

    /// The longest run of bytes matching `ok`, between `min` and `max` bytes long.
    fn run(&mut self, min: usize, max: usize, ok: impl Fn(u8) -> bool) -> Option<&'a str> {
        let start = self.at;
        while self.at < self.s.len() && ok(self.s[self.at]) {
            self.at += 1;
        }
        let n = self.at - start;
        if n < min || n > max {
            return None;
        }
        // Every `ok` used here admits ASCII only.
        std::str::from_utf8(&self.s[start..self.at]).ok()
    }

    /// `ext_info` as Python's `json.dumps` (with `ensure_ascii`) writes any string: printable ASCII
    /// except `"` and `\`, or one of the escapes it emits (`\"` `\\` `\n` `\r` `\t` `\b` `\f`,
    /// `\u` and four lower-case hex digits).
    fn escaped(&mut self, max: usize) -> Option<&'a str> {
        let start = self.at;
        loop {
            match *self.s.get(self.at)? {
                b'"' => break,
                b'\\' => {
                    let e = *self.s.get(self.at + 1)?;
                    self.at += 2;
                    match e {
                        b'"' | b'\\' | b'n' | b'r' | b't' | b'b' | b'f' => {}
                        b'u' => {
                            for _ in 0..4 {
                                let h = *self.s.get(self.at)?;
                                if !matches!(h, b'0'..=b'9' | b'a'..=b'f') {
                                    return None;
                                }
                                self.at += 1;
                            }
                        }
                        _ => return None,
                    }
                }
                0x20..=0x7e => self.at += 1,
                _ => return None,
            }
            if self.at - start > max {
                return None;
            }
        }
        std::str::from_utf8(&self.s[start..self.at]).ok()
    }

    fn end(&self) -> Option<()> {
        (self.at == self.s.len()).then_some(())
    }
}

fn plain_char(b: u8) -> bool {
    (0x20..=0x7e).contains(&b) && b != b'"' && b != b'\\'
}

/// Reads a v0 plaintext; `None` for anything but the exact layout above.
///
/// The first 13 bytes are compared whole, in constant time: a parser that stops at the first wrong byte
/// takes longer the more leading bytes are right, and for a block an attacker put first (`R || C`, the
/// classic CBC probe) that time would tell, byte by byte, what the block decrypts to. Past this fixed
/// start the plaintext is either the genuine first block or a 2^-104 accident.
pub fn parse(plaintext: &[u8]) -> Option<V0Plain<'_>> {
    let head = plaintext.get(..PREFIX.len())?;
    if !bool::from(head.ct_eq(PREFIX)) {
        return None;
    }
    let mut c = Cursor {
        s: plaintext,
        at: PREFIX.len(),
    };
    let id_ts = c.run(3, MAX_ID_TS, |b| b.is_ascii_digit() || b == b'.')?;
    let (whole, frac) = id_ts.split_once('.')?;
    if whole.is_empty() || frac.is_empty() || frac.contains('.') {
        return None;
    }
    c.lit(br#"","api_key":""#)?;
    let api_key = c.run(1, MAX_API_KEY, plain_char)?;
    c.lit(br#"","max_calls":"#)?;
    let digits = c.run(1, MAX_INT_DIGITS, |b| b.is_ascii_digit())?;
    if digits.len() > 1 && digits.starts_with('0') {
        return None;
    }
    let max_calls = digits.parse().ok()?;
    c.lit(br#","expire_time":""#)?;
    let expire_us = iso_utc_micros(c.run(25, 32, |b| b != b'"' && b.is_ascii())?)?;
    c.lit(br#"","created_at":""#)?;
    let created_us = iso_utc_micros(c.run(25, 32, |b| b != b'"' && b.is_ascii())?)?;
    c.lit(br#"","provider":""#)?;
    let provider = c.run(1, MAX_PROVIDER, |b| {
        b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_' || b == b'.'
    })?;
    c.lit(br#"","ext_info":""#)?;
    let ext_info = c.escaped(MAX_EXT_INFO)?;
    c.lit(br#""}"#)?;
    c.end()?;
    Some(V0Plain {
        id_ts,
        api_key,
        max_calls,
        expire_us,
        created_us,
        provider,
        ext_info,
    })
}

/// `datetime.isoformat()` of an aware UTC time, years 1970 to 9999: `YYYY-MM-DDTHH:MM:SS+00:00`, or
/// with `.ffffff` (six digits, never all zero: Python leaves the fraction out then) before the offset.
/// Returns Unix microseconds.
pub fn iso_utc_micros(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let (main, micros) = match b.len() {
        25 => (b, 0),
        32 if b[19] == b'.' => {
            let f = num(&b[20..26])?;
            if f == 0 {
                return None;
            }
            let mut m = b[..19].to_vec();
            m.extend_from_slice(&b[26..]);
            return iso_utc_micros(std::str::from_utf8(&m).ok()?).map(|s| s + f);
        }
        _ => return None,
    };
    let shape = |i: usize, c: u8| main[i] == c;
    if !(shape(4, b'-')
        && shape(7, b'-')
        && shape(10, b'T')
        && shape(13, b':')
        && shape(16, b':')
        && &main[19..] == b"+00:00")
    {
        return None;
    }
    let (y, mo, d) = (num(&main[0..4])?, num(&main[5..7])?, num(&main[8..10])?);
    let (h, mi, se) = (
        num(&main[11..13])?,
        num(&main[14..16])?,
        num(&main[17..19])?,
    );
    if !(1970..=9999).contains(&y) || !(1..=12).contains(&mo) || h > 23 || mi > 59 || se > 59 {
        return None;
    }
    if d < 1 || d > days_in_month(y, mo) {
        return None;
    }
    let days = days_from_civil(y, mo, d);
    Some(((days * 86_400 + h * 3600 + mi * 60 + se) * 1_000_000) + micros)
}

fn num(digits: &[u8]) -> Option<i64> {
    digits.iter().try_fold(0i64, |acc, &c| {
        c.is_ascii_digit().then(|| acc * 10 + i64::from(c - b'0'))
    })
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the SDK wrote for `create_token("sk-test", max_calls=5, expire_days=1, provider="openai")`.
    pub const SAMPLE: &str = r#"{"id":"token-1796617571.123456","api_key":"sk-test","max_calls":5,"expire_time":"2026-12-08T04:26:11.123456+00:00","created_at":"2026-12-07T04:26:11.123456+00:00","provider":"openai","ext_info":""}"#;

    #[test]
    fn reads_the_sdk_layout() {
        let p = parse(SAMPLE.as_bytes()).unwrap();
        assert_eq!(p.id_ts, "1796617571.123456");
        assert_eq!(p.api_key, "sk-test");
        assert_eq!(p.max_calls, 5);
        assert_eq!(p.created_us, 1_796_617_571_123_456);
        assert_eq!(p.expire_us - p.created_us, 86_400_000_000);
        assert_eq!(p.provider, "openai");
        assert_eq!(p.ext_info, "");
    }

    #[test]
    fn iso_times() {
        assert_eq!(iso_utc_micros("1970-01-01T00:00:00+00:00"), Some(0));
        assert_eq!(
            iso_utc_micros("2000-03-01T00:00:00.000001+00:00"),
            Some(951_868_800_000_001)
        );
        assert_eq!(
            iso_utc_micros("2024-02-29T23:59:59+00:00"),
            Some(1_709_251_199_000_000)
        );
        for bad in [
            "2023-02-29T00:00:00+00:00",
            "2026-12-07T04:26:11.000000+00:00",
            "2026-12-07T04:26:11.12345+00:00",
            "2026-12-07T04:26:11+01:00",
            "2026-12-07T24:00:00+00:00",
            "2026-12-07 04:26:11+00:00",
            "2026-13-07T04:26:11+00:00",
            "1969-12-31T23:59:59+00:00",
            "2026-12-07T04:26:11Z",
            "+026-12-07T04:26:11+00:00",
        ] {
            assert_eq!(iso_utc_micros(bad), None, "{bad}");
        }
    }

    #[test]
    fn any_other_spelling_is_refused() {
        let bad = [
            SAMPLE.replace(r#"{"id""#, r#"{ "id""#),
            SAMPLE.replace(r#""max_calls":5"#, r#""max_calls":05"#),
            SAMPLE.replace(r#""max_calls":5"#, r#""max_calls":-5"#),
            SAMPLE.replace(r#""max_calls":5"#, r#""max_calls":5.0"#),
            SAMPLE.replace(r#""max_calls":5"#, r#""max_calls":true"#),
            SAMPLE.replace(r#""ext_info":"""#, r#""ext_info":"","x":1"#),
            SAMPLE.replace(r#""ext_info":"""#, r#""ext_info":"\x""#),
            SAMPLE.replace(r#""ext_info":"""#, r#""ext_info":"\u00E9""#),
            SAMPLE.replace("sk-test", r#"sk\"test"#),
            SAMPLE.replace("sk-test", ""),
            SAMPLE.replace("openai", "OpenAI"),
            SAMPLE.replace("token-1796617571.123456", "token-1796617571"),
            SAMPLE.replace("token-1796617571.123456", "token-17966.17571.123456"),
            format!("{SAMPLE} "),
            SAMPLE[..SAMPLE.len() - 1].to_string(),
        ];
        for b in bad {
            assert_eq!(parse(b.as_bytes()), None, "{b}");
        }
        let ok = SAMPLE.replace(
            r#""ext_info":"""#,
            r#""ext_info":"{\"rep_m\": \"x\"}\n\u00e9""#,
        );
        assert!(parse(ok.as_bytes()).is_some());
    }

    #[test]
    fn never_panics_on_prefixes() {
        for i in 0..SAMPLE.len() {
            assert_eq!(parse(&SAMPLE.as_bytes()[..i]), None);
        }
    }
}
