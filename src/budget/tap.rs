//! The meter on a response as the relay passes it on (`docs/budgets.md` §3): every piece of the
//! decoded body is shown to the usage meter (`meter/extract.rs`) after it is decided what the client
//! gets, and, when the relay itself asked an OpenAI-compatible stream for usage, the usage-only chunk the
//! client did not ask for is taken out (`meter/usage_filter.rs`). Memory is fixed whatever the body.

use crate::meter::extract::{BodyFormat, Meter, Metered};
use crate::meter::usage::UsageFamily;
use crate::meter::usage_filter::UsageChunkFilter;

/// What a request's answer needs, decided before it is forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Metering {
    pub family: UsageFamily,
    /// The relay added `stream_options.include_usage` and the client did not ask for usage: the
    /// usage-only chunk is not passed on.
    pub drop_usage_chunk: bool,
}

/// The meter of one answer.
pub struct Tap {
    meter: Meter,
    filter: Option<UsageChunkFilter>,
}

impl Tap {
    /// A tap for an answer whose `Content-Type` is `content_type`. Only an event stream can hold the
    /// usage chunk, so only an event stream is filtered.
    pub fn new(m: Metering, content_type: &[u8]) -> Tap {
        let format = BodyFormat::from_content_type(content_type);
        let filter =
            (m.drop_usage_chunk && format == BodyFormat::EventStream).then(UsageChunkFilter::new);
        Tap {
            meter: Meter::new(m.family, format),
            filter,
        }
    }

    /// Whether the client gets other bytes than the provider sent (the body must then be re-framed).
    pub fn filters(&self) -> bool {
        self.filter.is_some()
    }

    /// Meter the next piece of the decoded body and, when filtering, append what the client gets to
    /// `out`.
    pub fn pass(&mut self, payload: &[u8], out: &mut Vec<u8>) {
        self.meter.feed(payload);
        if let Some(f) = &mut self.filter {
            f.push(payload, out);
        }
    }

    /// The body ended: append what the filter still holds to `out`.
    pub fn end(&mut self, out: &mut Vec<u8>) {
        if let Some(f) = &mut self.filter {
            f.finish(out);
        }
    }

    /// What the answer reported.
    pub fn finish(self) -> Metered {
        self.meter.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meter::extract::MeterStatus;

    const STREAM: &[u8] = b"data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}],\"usage\":null}\n\n\
data: {\"choices\":[],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":3,\"total_tokens\":10}}\n\n\
data: [DONE]\n\n";

    #[test]
    fn a_stream_is_metered_and_the_usage_chunk_dropped_for_a_client_that_did_not_ask() {
        let m = Metering {
            family: UsageFamily::OpenAiChat,
            drop_usage_chunk: true,
        };
        let mut tap = Tap::new(m, b"text/event-stream; charset=utf-8");
        assert!(tap.filters());
        let mut out = Vec::new();
        for b in STREAM.chunks(5) {
            tap.pass(b, &mut out);
        }
        tap.end(&mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(!text.contains("usage\":{"), "{text}");
        assert!(text.contains("\"hi\"") && text.ends_with("data: [DONE]\n\n"));
        let metered = tap.finish();
        assert_eq!(metered.status, MeterStatus::Complete);
        assert_eq!((metered.usage.input, metered.usage.output), (7, 3));
    }

    #[test]
    fn json_answers_are_metered_and_never_filtered() {
        let m = Metering {
            family: UsageFamily::OpenAiChat,
            drop_usage_chunk: true,
        };
        let mut tap = Tap::new(m, b"application/json");
        assert!(!tap.filters());
        let mut out = Vec::new();
        tap.pass(
            br#"{"choices":[],"usage":{"prompt_tokens":2,"completion_tokens":1}}"#,
            &mut out,
        );
        assert!(out.is_empty());
        assert_eq!(tap.finish().usage.output, 1);
    }
}
