//! The access log's line format: one JSON object per request, written by hand into the caller's buffer
//! byte for byte as `serde_json` would write the same members, with the request-target redacted on the
//! way in (`redact.rs`). Queueing and writing lines is `log.rs` and `log_writer.rs`.

use std::io::Write as _;
use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::calendar::civil_from_days;
use crate::json::plain::plain_run;
use crate::json::write;
use crate::redact::redact_str;

/// One access-log line, written straight from borrowed fields (`format_access_line`).
pub struct AccessLine<'a> {
    pub rid: &'a str,
    pub ip: std::net::IpAddr,
    pub method: &'a str,
    /// The request-target as the client sent it (`Head::target`); the line carries it redacted, as
    /// its `path` member.
    pub target: &'a str,
    pub status: u16,
    pub bytes: u64,
    pub dur_ms: f64,
    pub ttfb_ms: Option<f64>,
    pub tenant: Option<&'a str>,
    pub jti: Option<&'a str>,
    pub provider: Option<&'a str>,
    pub uid: Option<&'a str>,
    pub reason: Option<&'a str>,
    /// Input tokens, output tokens and cost (micro-units) the call was charged (`docs/budgets.md`).
    pub in_tok: Option<u64>,
    pub out_tok: Option<u64>,
    pub cost: Option<u64>,
}

/// Appends the access line's bytes to `buf`: `{"ts":...,` (`at` as written by `stamp`) then the
/// members in the order of [`AccessLine`]'s fields, absent ones left out, and a newline. The one
/// place an access line is formatted, so its cost can be measured and cut here.
pub fn format_access_line(buf: &mut Vec<u8>, stamp: &mut Stamp, at: SystemTime, line: &AccessLine) {
    buf.extend_from_slice(b"{\"ts\":\"");
    stamp.write(buf, at);
    buf.extend_from_slice(b"\",\"rid\":");
    write::push_str(buf, line.rid);
    buf.extend_from_slice(b",\"ip\":\"");
    push_ip(buf, line.ip);
    buf.extend_from_slice(b"\",\"method\":");
    write::push_str(buf, line.method);
    buf.extend_from_slice(b",\"path\":\"");
    // Redacted straight into the line: no `String` for the redacted target, and the runs of the target
    // that need no escaping (all of them, in practice) are copied whole.
    redact_str(line.target, &mut |s| push_string_body(buf, s));
    buf.extend_from_slice(b"\",\"status\":");
    write::push_u64(buf, u64::from(line.status));
    buf.extend_from_slice(b",\"bytes\":");
    write::push_u64(buf, line.bytes);
    buf.extend_from_slice(b",\"dur_ms\":");
    push_ms(buf, line.dur_ms);
    if let Some(v) = line.ttfb_ms {
        buf.extend_from_slice(b",\"ttfb_ms\":");
        push_ms(buf, v);
    }
    let texts = [
        (&b",\"tenant\":"[..], line.tenant),
        (b",\"jti\":", line.jti),
        (b",\"provider\":", line.provider),
        (b",\"uid\":", line.uid),
        (b",\"reason\":", line.reason),
    ];
    for (member, value) in texts {
        if let Some(v) = value {
            buf.extend_from_slice(member);
            write::push_str(buf, v);
        }
    }
    let counts = [
        (&b",\"in_tok\":"[..], line.in_tok),
        (b",\"out_tok\":", line.out_tok),
        (b",\"cost\":", line.cost),
    ];
    for (member, value) in counts {
        if let Some(v) = value {
            buf.extend_from_slice(member);
            write::push_u64(buf, v);
        }
    }
    buf.extend_from_slice(b"}\n");
}

/// Appends `s` as the inside of a JSON string (no quotes), escaped as `write::push_str` escapes it.
fn push_string_body(buf: &mut Vec<u8>, s: &str) {
    if plain_run(s.as_bytes()) == s.len() {
        buf.extend_from_slice(s.as_bytes());
    } else {
        // A target with a quote, backslash or control character: rare enough to go the long way.
        let mut quoted = Vec::with_capacity(s.len() + 8);
        write::push_str(&mut quoted, s);
        buf.extend_from_slice(&quoted[1..quoted.len() - 1]);
    }
}

/// Appends `ip` as its `Display` writes it (which never needs JSON escaping); an IPv4 address, the
/// usual case, spelt into a stack buffer and appended at once, without the formatting machinery.
fn push_ip(buf: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            // `255.255.255.255` is the longest.
            let mut text = [0u8; 15];
            let mut len = 0;
            for (k, octet) in v4.octets().into_iter().enumerate() {
                if k > 0 {
                    text[len] = b'.';
                    len += 1;
                }
                if octet >= 100 {
                    text[len] = b'0' + octet / 100;
                    len += 1;
                }
                if octet >= 10 {
                    text[len] = b'0' + octet / 10 % 10;
                    len += 1;
                }
                text[len] = b'0' + octet % 10;
                len += 1;
            }
            buf.extend_from_slice(&text[..len]);
        }
        IpAddr::V6(v6) => {
            // Writing to a `Vec` cannot fail.
            let _ = write!(buf, "{v6}");
        }
    }
}

/// Appends a figure in milliseconds (`access_log.rs` rounds them to whole microseconds) as
/// `write::push_f64` writes it. Such a figure is `n / 1000` for a whole `n`, and below 10^15 its
/// shortest decimal spelling, the one `serde_json` (ryu) writes, is the digits of `n` with the point
/// three places from the right: no decimal of 15 significant digits or fewer reads back as another
/// double, so no shorter spelling can read back as this one. Anything else (negative, huge, not a
/// whole number of microseconds, not finite) goes through `write::push_f64`.
fn push_ms(buf: &mut Vec<u8>, v: f64) {
    // `v < 1e12` is false for NaN; `is_sign_positive` keeps `-0.0` (written `-0.0`) out.
    if v.is_sign_positive() && v < 1e12 {
        let n = (v * 1000.0).round() as u64;
        if n as f64 / 1000.0 == v {
            write::push_u64(buf, n / 1000);
            let frac = (n % 1000) as u32;
            if frac == 0 {
                // ryu writes a whole number as `12.0`.
                buf.extend_from_slice(b".0");
            } else {
                let digits = [
                    b'.',
                    b'0' + (frac / 100) as u8,
                    b'0' + (frac / 10 % 10) as u8,
                    b'0' + (frac % 10) as u8,
                ];
                // Without trailing zeros: `1.5`, not `1.500`.
                let keep = if frac % 100 == 0 {
                    2
                } else if frac % 10 == 0 {
                    3
                } else {
                    4
                };
                buf.extend_from_slice(&digits[..keep]);
            }
            return;
        }
    }
    write::push_f64(buf, v);
}

/// The time of an access line, `YYYY-MM-DDTHH:MM:SS.mmmZ` (UTC), with the text of the last whole
/// second kept: lines written in the same second (nearly all of them, under load) only write their
/// milliseconds. Each thread that writes lines keeps its own (`log.rs`).
#[derive(Debug, Default)]
pub struct Stamp {
    /// The second `text` spells, if any yet.
    secs: Option<u64>,
    /// `YYYY-MM-DDTHH:MM:SS.` for `secs`.
    text: [u8; 20],
}

impl Stamp {
    /// Appends `at` (a clock reading before 1970 as 1970-01-01T00:00:00.000Z).
    pub fn write(&mut self, out: &mut Vec<u8>, at: SystemTime) {
        let d = at.duration_since(UNIX_EPOCH).unwrap_or_default();
        let secs = d.as_secs();
        if self.secs != Some(secs) {
            self.text = second_text(secs);
            self.secs = Some(secs);
        }
        let ms = d.subsec_millis();
        let mut all = [0u8; 24];
        all[..20].copy_from_slice(&self.text);
        all[20] = b'0' + (ms / 100) as u8;
        all[21] = b'0' + (ms / 10 % 10) as u8;
        all[22] = b'0' + (ms % 10) as u8;
        all[23] = b'Z';
        out.extend_from_slice(&all);
    }
}

/// `YYYY-MM-DDTHH:MM:SS.` for `secs` since the Unix epoch.
fn second_text(secs: u64) -> [u8; 20] {
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    let mut t = *b"0000-00-00T00:00:00.";
    // Years outside 0..=9999 cannot come from a real clock; clamped so the field keeps its width.
    let y = y.clamp(0, 9999) as u32;
    for (at, v) in [
        (0, y / 100),
        (2, y % 100),
        (5, m),
        (8, d),
        (11, (rem / 3600) as u32),
        (14, (rem % 3600 / 60) as u32),
        (17, (rem % 60) as u32),
    ] {
        t[at] = b'0' + (v / 10) as u8;
        t[at + 1] = b'0' + (v % 10) as u8;
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Map, Value};

    /// A line formatted with a fresh stamp at a fixed time.
    fn formatted(line: &AccessLine<'_>) -> String {
        let mut buf = Vec::new();
        let at = UNIX_EPOCH + std::time::Duration::from_millis(1_798_761_599_999);
        format_access_line(&mut buf, &mut Stamp::default(), at, line);
        String::from_utf8(buf).unwrap()
    }

    fn sample() -> AccessLine<'static> {
        AccessLine {
            rid: "r-1",
            ip: "127.0.0.1".parse().unwrap(),
            method: "POST",
            target: "/relayapi/rt1.AQECsecret/chat/completions",
            status: 200,
            bytes: 42,
            dur_ms: 1.5,
            ttfb_ms: None,
            tenant: Some("acme"),
            jti: None,
            provider: Some("openai"),
            uid: None,
            reason: None,
            in_tok: None,
            out_tok: None,
            cost: None,
        }
    }

    #[test]
    fn access_line_format() {
        // `{"ts":"...",` then the members in declaration order, absent ones left out; the token in the
        // target is gone.
        assert_eq!(
            formatted(&sample()),
            "{\"ts\":\"2026-12-31T23:59:59.999Z\",\
             \"rid\":\"r-1\",\"ip\":\"127.0.0.1\",\"method\":\"POST\",\
             \"path\":\"/relayapi/[token]/chat/completions\",\"status\":200,\"bytes\":42,\
             \"dur_ms\":1.5,\"tenant\":\"acme\",\"provider\":\"openai\"}\n"
        );
    }

    /// The line after its `{`, as `serde_json` writes the same members (the `preserve_order` map keeps
    /// their order) with the target redacted by `redact_target`: what the line was before it was
    /// written by hand and redacted into place.
    fn reference(line: &AccessLine<'_>) -> String {
        let mut m = Map::new();
        m.insert("rid".into(), json!(line.rid));
        m.insert("ip".into(), json!(line.ip.to_string()));
        m.insert("method".into(), json!(line.method));
        let path = crate::redact::redact_target(line.target.as_bytes());
        m.insert("path".into(), json!(path));
        m.insert("status".into(), json!(line.status));
        m.insert("bytes".into(), json!(line.bytes));
        m.insert("dur_ms".into(), json!(line.dur_ms));
        let mut opt = |k: &str, v: Option<Value>| {
            if let Some(v) = v {
                m.insert(k.into(), v);
            }
        };
        opt("ttfb_ms", line.ttfb_ms.map(|v| json!(v)));
        opt("tenant", line.tenant.map(|v| json!(v)));
        opt("jti", line.jti.map(|v| json!(v)));
        opt("provider", line.provider.map(|v| json!(v)));
        opt("uid", line.uid.map(|v| json!(v)));
        opt("reason", line.reason.map(|v| json!(v)));
        opt("in_tok", line.in_tok.map(|v| json!(v)));
        opt("out_tok", line.out_tok.map(|v| json!(v)));
        opt("cost", line.cost.map(|v| json!(v)));
        Value::Object(m).to_string()[1..].to_string()
    }

    #[test]
    fn access_lines_are_what_serde_json_wrote() {
        let lossy = String::from_utf8_lossy(b"/a\xff\xfe/b\xe2\x82");
        let tricky = "quote\" back\\ nl\n tab\t cr\r nul\u{0} esc\u{1b} del\u{7f} é€😀 \u{2028}";
        let every_ascii: String = (0u8..=0x7f).map(char::from).collect();
        let long_escaped = format!(
            "/{}\"/rt1.x\"?token=\\{}",
            "\u{1}".repeat(300),
            "é".repeat(300)
        );
        let mut lines = Vec::new();
        for (ip, path, text) in [
            ("10.0.0.255", "/health", "acme"),
            ("0.0.0.0", lossy.as_ref(), tricky),
            (
                "2001:db8::1",
                "/relayapi/rt1.secret/v1/messages?x=1&y=\"&token=\\secret",
                &every_ascii[..],
            ),
            ("::ffff:192.0.2.1", tricky, ""),
            ("192.168.100.9", &long_escaped, "x"),
            ("1.2.3.4", &every_ascii, "y"),
        ] {
            for all in [false, true] {
                lines.push(AccessLine {
                    rid: text,
                    ip: ip.parse().unwrap(),
                    method: if all { "DELETE" } else { text },
                    target: path,
                    status: if all { 599 } else { 100 },
                    bytes: if all { u64::MAX } else { 0 },
                    dur_ms: if all { 0.001 } else { 12.0 },
                    ttfb_ms: all.then_some(1e-7),
                    tenant: all.then_some(text),
                    jti: all.then_some("0123456789abcdef0123456789abcdef"),
                    provider: all.then_some("openai"),
                    uid: all.then_some(tricky),
                    reason: all.then_some("budget_exhausted"),
                    in_tok: all.then_some(0),
                    out_tok: all.then_some(4_000_000_000),
                    cost: all.then_some(17),
                });
            }
        }
        for line in &lines {
            let text = formatted(line);
            // `{"ts":"` and 24 bytes of time and `",`, then the members, `}` and a newline.
            assert_eq!(&text[33..text.len() - 1], reference(line));
            let parsed: Value = serde_json::from_str(&text).unwrap();
            assert!(parsed["path"].is_string());
            assert!(!text.contains("secret"), "{text}");
            assert!(text.ends_with("}\n"));
        }
    }

    #[test]
    fn addresses_are_written_as_display_writes_them() {
        // Every octet value in every position, and a few IPv6 forms.
        let mut ips: Vec<IpAddr> = (0..=255u8)
            .flat_map(|o| {
                [[o, 0, 0, 0], [9, o, 10, 99], [100, 255, o, 1], [1, 2, 3, o]].map(IpAddr::from)
            })
            .collect();
        ips.extend(
            ["::1", "2001:db8::1", "::ffff:192.0.2.1", "fe80::1:2:3:4"]
                .map(|a| a.parse::<IpAddr>().unwrap()),
        );
        for ip in ips {
            let mut out = b"x".to_vec();
            push_ip(&mut out, ip);
            assert_eq!(out, format!("x{ip}").into_bytes());
        }
    }

    #[test]
    fn milliseconds_are_written_as_serde_json_writes_them() {
        let check = |v: f64| {
            let (mut fast, mut slow) = (Vec::new(), Vec::new());
            push_ms(&mut fast, v);
            write::push_f64(&mut slow, v);
            assert_eq!(fast, slow, "{v:?}");
        };
        // Every figure the relay writes below 2,000 ms, as `access_log.rs` rounds them.
        for us in 0..2_000_000u64 {
            check(us as f64 / 1e3);
        }
        // Larger figures up to the fast path's bound and past it, and its neighbours.
        let mut us = 2_000_000u64;
        while us < 10_000_000_000_000_000 {
            for d in [0, 1, 9, 10, 99, 100, 101, 500, 999] {
                check((us + d) as f64 / 1e3);
            }
            us = us * 7 / 3 + 11;
        }
        for v in [
            0.0,
            -0.0,
            -1.5,
            1e-7,
            0.0005,
            1.0005,
            1e12,
            1e12 - 0.001,
            999_999_999_999.999,
            1e15,
            1e300,
            f64::MIN_POSITIVE,
            f64::MAX,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NAN,
            0.1 + 0.2,
            1.0 / 3.0,
        ] {
            check(v);
        }
    }

    #[test]
    fn timestamps_are_rfc3339_with_milliseconds() {
        let at = |stamp: &mut Stamp, secs: u64, millis: u64| {
            let mut out = b"x".to_vec();
            let t = UNIX_EPOCH + std::time::Duration::from_millis(secs * 1000 + millis);
            stamp.write(&mut out, t);
            String::from_utf8(out).unwrap()
        };
        let s = &mut Stamp::default();
        assert_eq!(at(s, 0, 0), "x1970-01-01T00:00:00.000Z");
        assert_eq!(at(s, 951_782_400 + 3_723, 7), "x2000-02-29T01:02:03.007Z");
        assert_eq!(at(s, 951_782_400 + 3_723, 70), "x2000-02-29T01:02:03.070Z");
        assert_eq!(at(s, 1_798_761_599, 999), "x2026-12-31T23:59:59.999Z");
        assert_eq!(at(s, 1_798_761_600, 0), "x2027-01-01T00:00:00.000Z");
        // Before 1970 reads as the epoch.
        let mut out = Vec::new();
        s.write(&mut out, UNIX_EPOCH - std::time::Duration::from_secs(5));
        assert_eq!(out, b"1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn a_kept_second_writes_what_a_fresh_stamp_writes() {
        // One stamp carried along a walk through time (seconds, day, month, leap-year and century
        // boundaries, and back again), each reading compared with a fresh stamp's and with the
        // calendar.
        let mut kept = Stamp::default();
        let mut ms: u64 = 946_684_799_000 - 3_000;
        let mut k = 0u64;
        while ms < 4_107_542_400_000 {
            let t = UNIX_EPOCH + std::time::Duration::from_millis(ms);
            let (mut a, mut b) = (Vec::new(), Vec::new());
            kept.write(&mut a, t);
            Stamp::default().write(&mut b, t);
            assert_eq!(a, b, "{ms}");
            let days = ms / 86_400_000;
            let (y, m, d) = civil_from_days(days as i64);
            let rem = ms % 86_400_000;
            let want = format!(
                "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
                rem / 3_600_000,
                rem / 60_000 % 60,
                rem / 1000 % 60,
                rem % 1000
            );
            assert_eq!(String::from_utf8(a).unwrap(), want);
            k += 1;
            // Mostly small steps (same second, next second), now and then a jump, now and then back.
            ms = match k % 7 {
                0 => ms + 86_399_999 * (k % 13 + 1),
                3 => ms - ms % 1000 - 1,
                _ => ms + 337,
            };
        }
    }
}
