//! Structured logs: operational events as JSON lines on stderr, one access-log JSON line per request on
//! stdout. This file formats the events and hands every line to the queue of its stream; the access
//! line's format is `access_line.rs`, redaction `redact.rs`, and `log_writer.rs` queues the lines and
//! writes them from its own threads, so a stalled log pipe drops lines instead of stalling requests.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde_json::{json, Map, Value};

pub use crate::access_line::AccessLine;
use crate::access_line::{format_access_line, Stamp};
use crate::log_writer::LogWriter;
pub use crate::redact::redact_target;

fn now_rfc3339_millis() -> String {
    let mut out = Vec::with_capacity(24);
    Stamp::default().write(&mut out, SystemTime::now());
    // Only ASCII digits and punctuation were written.
    String::from_utf8(out).unwrap_or_default()
}

/// What a thread keeps between the access lines it writes, so a line costs no allocation and, within
/// a second, no calendar arithmetic.
#[derive(Default)]
struct Scratch {
    line: Vec<u8>,
    stamp: Stamp,
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::default();
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
        let at = SystemTime::now();
        SCRATCH.with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            let Scratch { line: buf, stamp } = &mut *scratch;
            buf.clear();
            format_access_line(buf, stamp, at, line);
            self.stdout.push(buf);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_times_are_rfc3339_with_milliseconds() {
        let ts = now_rfc3339_millis();
        assert_eq!(ts.len(), 24);
        assert!(ts.ends_with('Z') && ts.as_bytes()[10] == b'T', "{ts}");
    }
}
