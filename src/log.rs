//! Structured logs: operational events as JSON lines on stderr, one access-log JSON line per request on
//! stdout. This file formats the lines; `log_writer.rs` queues them and writes them from its own
//! threads, so a stalled log pipe drops lines instead of stalling requests. This file also owns
//! redaction: a request target is logged only after every token-looking path segment and query value
//! is replaced, so token text can never reach a log.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::calendar::civil_from_days;
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

/// One access-log line (the hot path: serialised straight from borrowed fields, no intermediate map).
/// The caller passes an already redacted path.
#[derive(Serialize)]
pub struct AccessLine<'a> {
    pub rid: &'a str,
    #[serde(serialize_with = "as_display")]
    pub ip: std::net::IpAddr,
    pub method: &'a str,
    pub path: &'a str,
    pub status: u16,
    pub bytes: u64,
    pub dur_ms: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttfb_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jti: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'a str>,
    /// Input tokens, output tokens and cost (micro-units) the call was charged (`docs/budgets.md`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub in_tok: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub out_tok: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost: Option<u64>,
}

fn as_display<T: std::fmt::Display, S: serde::Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
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
            if format_access_line(&mut buf, line) {
                self.stdout.push(&buf);
            }
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

/// The access line's bytes, `{"ts":..., ...line}` and a newline, into `buf` (cleared first): the one
/// place an access line is formatted, so its cost can be measured and cut here. False when the line
/// cannot be serialised (nothing is then logged).
pub fn format_access_line(buf: &mut Vec<u8>, line: &AccessLine<'_>) -> bool {
    buf.clear();
    buf.extend_from_slice(b"{\"ts\":\"");
    write_rfc3339_millis(buf, SystemTime::now());
    buf.extend_from_slice(b"\",");
    // The struct serialises as an object; splice its members after our "ts" member.
    let start = buf.len();
    if serde_json::to_writer(&mut *buf, line).is_err() {
        return false;
    }
    buf.remove(start);
    buf.push(b'\n');
    true
}

/// Replace every path segment and query value that looks like a token (or follows `token=`) with
/// `[token]`. Works on raw bytes so that invalid UTF-8 cannot smuggle a token past it; the output is
/// lossily decoded and capped so log lines stay bounded.
pub fn redact_target(target: &[u8]) -> String {
    const MAX: usize = 512;
    // Split and checked as bytes, decoded piece by piece: the delimiters are ASCII, which is never part
    // of an invalid UTF-8 sequence, so this is the same as decoding first, and a token segment (the
    // longest part of most targets) is never decoded or scanned past its prefix.
    let (path, query) = match target.iter().position(|&b| b == b'?') {
        Some(q) => (&target[..q], Some(&target[q + 1..])),
        None => (target, None),
    };
    let mut out = String::with_capacity(target.len().min(MAX));
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
                Some((k, v)) if k.eq_ignore_ascii_case(b"token") || looks_like_token(v) => {
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

/// Anything containing the token prefix, plain or with its dot percent-encoded, in any case. Checked
/// on the raw bytes, so invalid UTF-8 next to the prefix cannot hide it.
fn looks_like_token(s: &[u8]) -> bool {
    contains_ignore_ascii_case(s, TOKEN_PREFIX.as_bytes())
        || contains_ignore_ascii_case(s, b"rt1%2e")
}

/// Does `hay` contain `needle` (ASCII, lower case), ignoring ASCII case? Runs once per path segment of
/// every logged request, so it compares in place instead of lower-casing a copy.
fn contains_ignore_ascii_case(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle))
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
        assert!(format_access_line(&mut buf, &line));
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
