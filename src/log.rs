//! Structured logs: operational events as JSON lines on stderr, one access-log JSON line per request on
//! stdout. This file formats the lines; `log_writer.rs` queues them and writes them from its own
//! threads, so a stalled log pipe drops lines instead of stalling requests. This file also owns
//! redaction: a request target is logged only after every token-looking path segment and query value
//! is replaced, so token text can never reach a log.

use std::io::Write as _;
use std::net::IpAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};

use crate::calendar::civil_from_days;
use crate::json::write;
use crate::log_writer::LogWriter;

/// What a token looks like on the wire (docs/token-format.md §3).
const TOKEN_PREFIX: &str = "rt1.";

fn now_rfc3339_millis() -> String {
    let mut out = Vec::with_capacity(24);
    write_rfc3339_millis(&mut out, SystemTime::now());
    // Only ASCII digits and punctuation were written.
    String::from_utf8(out).unwrap_or_default()
}

/// Appends `at` as `YYYY-MM-DDTHH:MM:SS.mmmZ` (UTC) to `out`, digit by digit: the access log writes
/// one per request, and `format!` would cost an allocation and the formatting machinery each time.
fn write_rfc3339_millis(out: &mut Vec<u8>, at: SystemTime) {
    let d = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, dd) = civil_from_days(days as i64);
    // Years outside 0..=9999 cannot come from a real clock; clamped so the field keeps its width.
    push_digits(out, y.clamp(0, 9999) as u64, 4);
    out.push(b'-');
    push_digits(out, u64::from(m), 2);
    out.push(b'-');
    push_digits(out, u64::from(dd), 2);
    out.push(b'T');
    push_digits(out, rem / 3600, 2);
    out.push(b':');
    push_digits(out, rem % 3600 / 60, 2);
    out.push(b':');
    push_digits(out, rem % 60, 2);
    out.push(b'.');
    push_digits(out, u64::from(d.subsec_millis()), 3);
    out.push(b'Z');
}

/// The last `width` decimal digits of `v`, zero-padded.
fn push_digits(out: &mut Vec<u8>, mut v: u64, width: usize) {
    let start = out.len();
    out.resize(start + width, b'0');
    for slot in out[start..].iter_mut().rev() {
        *slot = b'0' + (v % 10) as u8;
        v /= 10;
    }
}

/// One access-log line, written straight from borrowed fields (`format_access_line`). The caller
/// passes an already redacted path.
pub struct AccessLine<'a> {
    pub rid: &'a str,
    pub ip: std::net::IpAddr,
    pub method: &'a str,
    pub path: &'a str,
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

thread_local! {
    /// Per-thread line buffer, reused so an access line costs no allocation.
    static LINE: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Writes log lines: formats them on the caller's thread and hands them to the queue of their stream.
/// Cheap to clone (the writers are shared).
#[derive(Clone)]
pub struct Logger {
    /// Whether access lines are written (`log.access`).
    pub access: bool,
    stdout: Arc<LogWriter>,
    stderr: Arc<LogWriter>,
}

impl std::fmt::Debug for Logger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Logger")
            .field("access", &self.access)
            .finish_non_exhaustive()
    }
}

impl Logger {
    /// Start the writer threads for stdout (access log, written only when `access`) and stderr
    /// (operational events). Every line either of them drops adds one to `dropped`.
    pub fn new(access: bool, dropped: Arc<AtomicU64>) -> std::io::Result<Logger> {
        Ok(Logger {
            access,
            stdout: Arc::new(LogWriter::spawn(
                "log-stdout",
                Box::new(std::io::stdout()),
                dropped.clone(),
            )?),
            stderr: Arc::new(LogWriter::spawn(
                "log-stderr",
                Box::new(std::io::stderr()),
                dropped,
            )?),
        })
    }

    /// At shutdown: write every line queued so far, waiting at most `within` for each stream. Lines
    /// logged afterwards are dropped (and counted).
    pub fn flush(&self, within: Duration) {
        self.stdout.close(within);
        self.stderr.close(within);
    }

    /// An operational event on stderr: `{"ts", "level", "msg", ...fields}`.
    pub fn event(&self, level: &str, msg: &str, fields: Value) {
        let mut m = Map::new();
        m.insert("ts".into(), json!(now_rfc3339_millis()));
        m.insert("level".into(), json!(level));
        m.insert("msg".into(), json!(msg));
        if let Value::Object(f) = fields {
            m.extend(f);
        }
        let mut line = Value::Object(m).to_string();
        line.push('\n');
        self.stderr.push(line.as_bytes());
    }

    pub fn info(&self, msg: &str, fields: Value) {
        self.event("info", msg, fields)
    }

    pub fn warn(&self, msg: &str, fields: Value) {
        self.event("warn", msg, fields)
    }

    /// One access-log line on stdout. The line is queued whole, so lines from several threads never
    /// interleave.
    pub fn access_line(&self, line: &AccessLine<'_>) {
        if !self.access {
            return;
        }
        LINE.with(|buf| {
            let mut buf = buf.borrow_mut();
            format_access_line(&mut buf, line);
            self.stdout.push(&buf);
        });
    }

    /// One access-log line on stdout from loose fields (rare paths). The caller passes a redacted target.
    pub fn access(&self, mut fields: Map<String, Value>) {
        if !self.access {
            return;
        }
        fields.insert("ts".into(), json!(now_rfc3339_millis()));
        let mut line = Value::Object(fields).to_string();
        line.push('\n');
        self.stdout.push(line.as_bytes());
    }
}

/// The access line's bytes into `buf` (cleared first): `{"ts":...,` then the members in the order of
/// [`AccessLine`]'s fields, absent ones left out, and a newline. The one place an access line is
/// formatted, so its cost can be measured and cut here: written by hand (`json/write.rs`), as
/// `serde_json` would write the struct, without its serializer.
pub fn format_access_line(buf: &mut Vec<u8>, line: &AccessLine<'_>) {
    buf.clear();
    buf.extend_from_slice(b"{\"ts\":\"");
    write_rfc3339_millis(buf, SystemTime::now());
    buf.extend_from_slice(b"\",\"rid\":");
    write::push_str(buf, line.rid);
    buf.extend_from_slice(b",\"ip\":\"");
    push_ip(buf, line.ip);
    buf.extend_from_slice(b"\",\"method\":");
    write::push_str(buf, line.method);
    buf.extend_from_slice(b",\"path\":");
    write::push_str(buf, line.path);
    buf.extend_from_slice(b",\"status\":");
    write::push_u64(buf, u64::from(line.status));
    buf.extend_from_slice(b",\"bytes\":");
    write::push_u64(buf, line.bytes);
    buf.extend_from_slice(b",\"dur_ms\":");
    write::push_f64(buf, line.dur_ms);
    if let Some(v) = line.ttfb_ms {
        buf.extend_from_slice(b",\"ttfb_ms\":");
        write::push_f64(buf, v);
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

/// Appends `ip` as its `Display` writes it (which never needs JSON escaping); an IPv4 address, the
/// usual case, without the formatting machinery.
fn push_ip(buf: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            for (k, octet) in v4.octets().into_iter().enumerate() {
                if k > 0 {
                    buf.push(b'.');
                }
                write::push_u64(buf, u64::from(octet));
            }
        }
        IpAddr::V6(v6) => {
            // Writing to a `Vec` cannot fail.
            let _ = write!(buf, "{v6}");
        }
    }
}

/// Replace every path segment and query value that looks like a token (or follows `token=`) with
/// `[token]`. Works on raw bytes so that invalid UTF-8 cannot smuggle a token past it; the output is
/// lossily decoded and capped so log lines stay bounded.
pub fn redact_target(target: &[u8]) -> String {
    const MAX: usize = 512;
    // Split and checked as bytes, decoded piece by piece: the delimiters are ASCII, which is never part
    // of an invalid UTF-8 sequence, so this is the same as decoding first, and a token segment (the
    // longest part of most targets) is never decoded or scanned past its prefix.
    let (path, query) = match memchr::memchr(b'?', target) {
        Some(q) => (&target[..q], Some(&target[q + 1..])),
        None => (target, None),
    };
    let mut out = String::with_capacity(target.len().min(MAX));
    for (i, seg) in pieces(path, b'/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        if looks_like_token(seg) {
            out.push_str("[token]");
        } else {
            push_lossy(&mut out, seg);
        }
    }
    if let Some(q) = query {
        out.push('?');
        for (i, pair) in pieces(q, b'&').enumerate() {
            if i > 0 {
                out.push('&');
            }
            let kv = pair
                .iter()
                .position(|&b| b == b'=')
                .map(|e| (&pair[..e], &pair[e + 1..]));
            match kv {
                Some((k, v)) if k.eq_ignore_ascii_case(b"token") || looks_like_token(v) => {
                    push_lossy(&mut out, k);
                    out.push_str("=[token]");
                }
                _ if looks_like_token(pair) => out.push_str("[token]"),
                _ => push_lossy(&mut out, pair),
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

/// The pieces of `s` between `sep`s, as `slice::split` gives them, found with `memchr`: a target's
/// token segment is a few hundred bytes, which a byte-by-byte split walked twice for every request.
fn pieces(s: &[u8], sep: u8) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(s);
    std::iter::from_fn(move || {
        let r = rest?;
        match memchr::memchr(sep, r) {
            Some(at) => {
                rest = Some(&r[at + 1..]);
                Some(&r[..at])
            }
            None => {
                rest = None;
                Some(r)
            }
        }
    })
}

/// Anything containing the token prefix, plain or with its dot percent-encoded, in any case. Checked
/// on the raw bytes, so invalid UTF-8 next to the prefix cannot hide it. Runs on every path segment of
/// every logged request, so only the places where an `r` or `R` stands are compared.
fn looks_like_token(s: &[u8]) -> bool {
    s.iter().enumerate().any(|(at, &b)| {
        b.eq_ignore_ascii_case(&b'r') && {
            let rest = &s[at..];
            starts_with_ignore_ascii_case(rest, TOKEN_PREFIX.as_bytes())
                || starts_with_ignore_ascii_case(rest, b"rt1%2e")
        }
    })
}

/// Does `hay` start with `prefix` (ASCII, lower case), ignoring ASCII case?
fn starts_with_ignore_ascii_case(hay: &[u8], prefix: &[u8]) -> bool {
    hay.get(..prefix.len())
        .is_some_and(|h| h.eq_ignore_ascii_case(prefix))
}

/// Appends `bytes` decoded as UTF-8, each invalid sequence as U+FFFD (`String::from_utf8_lossy`),
/// without a copy when they are valid (the usual case).
fn push_lossy(out: &mut String, bytes: &[u8]) {
    match std::str::from_utf8(bytes) {
        Ok(s) => out.push_str(s),
        Err(_) => out.push_str(&String::from_utf8_lossy(bytes)),
    }
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
            let want: Vec<&[u8]> = s.split(|&b| b == b'/').collect();
            assert_eq!(pieces(s, b'/').collect::<Vec<_>>(), want, "{s:?}");
        }
    }

    #[test]
    fn redaction_is_bounded() {
        let long = format!("/{}", "a".repeat(5000));
        assert!(redact_target(long.as_bytes()).len() < 600);
    }

    #[test]
    fn access_line_format() {
        let line = AccessLine {
            rid: "r-1",
            ip: "127.0.0.1".parse().unwrap(),
            method: "POST",
            path: "/relayapi/[token]/chat/completions",
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
        };
        let mut buf = Vec::new();
        format_access_line(&mut buf, &line);
        let text = String::from_utf8(buf).unwrap();
        // `{"ts":"2026-01-01T00:00:00.000Z",` then the members in declaration order, absent ones left out.
        assert_eq!(&text[..7], r#"{"ts":""#);
        assert_eq!(&text[7 + 24..9 + 24], "\",");
        assert_eq!(
            &text[9 + 24..],
            "\"rid\":\"r-1\",\"ip\":\"127.0.0.1\",\"method\":\"POST\",\
             \"path\":\"/relayapi/[token]/chat/completions\",\"status\":200,\"bytes\":42,\
             \"dur_ms\":1.5,\"tenant\":\"acme\",\"provider\":\"openai\"}\n"
        );
    }

    /// The line after its `{`, as `serde_json` writes the same members (the `preserve_order` map keeps
    /// their order): what the line was before it was written by hand.
    fn reference(line: &AccessLine<'_>) -> String {
        let mut m = Map::new();
        m.insert("rid".into(), json!(line.rid));
        m.insert("ip".into(), json!(line.ip.to_string()));
        m.insert("method".into(), json!(line.method));
        m.insert("path".into(), json!(line.path));
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
        let mut lines = Vec::new();
        for (ip, path, text) in [
            ("10.0.0.255", "/health", "acme"),
            ("0.0.0.0", lossy.as_ref(), tricky),
            (
                "2001:db8::1",
                "/relayapi/[token]/v1/messages?x=1&y=\"",
                &every_ascii[..],
            ),
            ("::ffff:192.0.2.1", tricky, ""),
        ] {
            for all in [false, true] {
                lines.push(AccessLine {
                    rid: text,
                    ip: ip.parse().unwrap(),
                    method: if all { "DELETE" } else { text },
                    path,
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
            let mut buf = Vec::new();
            format_access_line(&mut buf, line);
            let text = String::from_utf8(buf).unwrap();
            // `{"ts":"` and 24 bytes of time and `",`, then the members, `}` and a newline.
            assert_eq!(&text[33..text.len() - 1], reference(line));
            let parsed: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(parsed["path"], line.path);
            assert!(text.ends_with("}\n"));
        }
    }

    #[test]
    fn timestamps_are_rfc3339_with_milliseconds() {
        let at = |secs: u64, millis: u64| {
            let mut out = b"x".to_vec();
            write_rfc3339_millis(
                &mut out,
                UNIX_EPOCH + std::time::Duration::from_millis(secs * 1000 + millis),
            );
            String::from_utf8(out).unwrap()
        };
        assert_eq!(at(0, 0), "x1970-01-01T00:00:00.000Z");
        assert_eq!(at(951_782_400 + 3_723, 7), "x2000-02-29T01:02:03.007Z");
        assert_eq!(at(1_798_761_599, 999), "x2026-12-31T23:59:59.999Z");
        assert_eq!(now_rfc3339_millis().len(), 24);
    }
}
