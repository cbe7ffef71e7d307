//! Reading the usage a provider reports from a response body while the relay forwards it: the caller
//! hands [`Meter::feed`] a view of each piece of the (de-chunked) body after passing it on, so nothing is
//! delayed, and calls [`Meter::finish`] at the end. A JSON body is followed by `json/skim.rs`, which keeps
//! only the family's usage members; an event stream is split by `meter/sse.rs` and each event's data
//! skimmed the same way, so memory stays fixed whatever the size of the body or of one event. The
//! verdict says how far the reported usage can be trusted ([`MeterStatus`]); charging rules for each
//! verdict belong to the caller.

use crate::json::skim::{Captured, SkimError, Skimmer};
use crate::meter::sse::{SseItem, SseSplitter};
use crate::meter::usage::{Reported, Usage, UsageFamily};

/// How the body is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFormat {
    /// One JSON document (`application/json`; Gemini's streamed JSON array is one too).
    Json,
    /// Server-sent events (`text/event-stream`), one JSON document per event's data.
    EventStream,
}

impl BodyFormat {
    /// The format a `Content-Type` value announces: `text/event-stream` (any case, parameters
    /// allowed) is an event stream, anything else is read as JSON.
    pub fn from_content_type(value: &[u8]) -> BodyFormat {
        let essence = value.split(|&b| b == b';').next().unwrap_or_default();
        if essence
            .trim_ascii()
            .eq_ignore_ascii_case(b"text/event-stream")
        {
            BodyFormat::EventStream
        } else {
            BodyFormat::Json
        }
    }
}

/// How far the usage in a [`Metered`] can be trusted, from most to least doubtful.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MeterStatus {
    /// Something meant to hold usage was not JSON, a usage report was not one of its family (a
    /// non-integer count, a repeated member), or two reports were given in one object: the usage is
    /// what was read before, and may be short.
    Malformed,
    /// A usage report was larger than `json::skim::MAX_CAPTURE_BYTES` and was skipped unread.
    Unmetered,
    /// The body stopped inside a JSON document or an event: the last report may be missing.
    Truncated,
    /// At least one report was read and nothing was wrong.
    Complete,
    /// The body was well formed and reported no usage (an error answer, an endpoint without usage).
    NoUsage,
}

/// The outcome of metering one response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Metered {
    /// The usage read (zero where nothing was reported).
    pub usage: Usage,
    pub status: MeterStatus,
    /// Events whose data was not JSON or whose report was bad (event streams only).
    pub malformed_events: u32,
    /// Reports skipped as oversized.
    pub oversized: u32,
    /// The stream carried OpenAI's `data: [DONE]`.
    pub done_marker: bool,
}

/// The SSE data that ends an OpenAI stream; it is not JSON.
const DONE: &[u8] = b"[DONE]";

/// What the reports of one response added up to so far.
#[derive(Default)]
struct Tally {
    reported: Reported,
    seen: bool,
    bad: bool,
    oversized: u32,
}

impl Tally {
    fn take(&mut self, family: UsageFamily, c: Captured<'_>) {
        match c {
            // After a bad report nothing more is counted: the answer is malformed, and what it reports
            // after that cannot be trusted any more than the bad report itself.
            Captured::Value(_) if self.bad => {}
            Captured::Value(raw) => match self.reported.add(family, raw) {
                Ok(true) => self.seen = true,
                Ok(false) => {}
                Err(_) => self.bad = true,
            },
            Captured::Oversized => self.oversized = self.oversized.saturating_add(1),
        }
    }

    /// Add what one finished event reported.
    fn merge(&mut self, event: &Tally) {
        if !self.bad {
            self.reported.merge(&event.reported);
            self.seen |= event.seen;
        }
        self.bad |= event.bad;
        self.oversized = self.oversized.saturating_add(event.oversized);
    }
}

/// Meters one response body fed in pieces.
pub struct Meter {
    family: UsageFamily,
    sse: Option<SseSplitter>,
    skim: Skimmer,
    tally: Tally,
    /// What the current event reported: counted once the event is dispatched (its blank line came),
    /// as a client would see it; an unfinished event counts for nothing.
    event: Tally,
    malformed_events: u32,
    done_marker: bool,
    /// The first bytes of the current event's data, to recognise `[DONE]`, and the data's length.
    head: [u8; DONE.len()],
    data_len: usize,
}

impl Meter {
    /// A meter for a response of `family` framed as `format`.
    pub fn new(family: UsageFamily, format: BodyFormat) -> Self {
        Meter {
            family,
            sse: (format == BodyFormat::EventStream).then(SseSplitter::new),
            skim: Skimmer::new(family.paths()),
            tally: Tally::default(),
            event: Tally::default(),
            malformed_events: 0,
            done_marker: false,
            head: [0; DONE.len()],
            data_len: 0,
        }
    }

    /// Read the next piece of the body.
    pub fn feed(&mut self, bytes: &[u8]) {
        let Meter {
            family,
            sse,
            skim,
            tally,
            event,
            malformed_events,
            done_marker,
            head,
            data_len,
        } = self;
        let family = *family;
        let Some(sse) = sse else {
            skim.feed(bytes, &mut |_, c| tally.take(family, c));
            return;
        };
        sse.feed(bytes, &mut |item| match item {
            SseItem::Data(d) => {
                let at = (*data_len).min(DONE.len());
                let keep = (DONE.len() - at).min(d.len());
                head[at..at + keep].copy_from_slice(&d[..keep]);
                *data_len = data_len.saturating_add(d.len());
                skim.feed(d, &mut |_, c| event.take(family, c));
            }
            SseItem::EventEnd { has_data, .. } => {
                if has_data && *data_len == DONE.len() && *head == *DONE {
                    *done_marker = true;
                } else if has_data {
                    match skim.finish(&mut |_, c| event.take(family, c)) {
                        Ok(()) => tally.merge(event),
                        // Empty or blank data: nothing to read.
                        Err(SkimError::Truncated) if !skim.started() => {}
                        // An event's data is one JSON document; anything else cannot be metered.
                        Err(_) => {
                            *malformed_events = malformed_events.saturating_add(1);
                            tally.bad = true;
                        }
                    }
                }
                skim.reset();
                *event = Tally::default();
                *data_len = 0;
            }
        });
    }

    /// The body ended: the verdict.
    pub fn finish(mut self) -> Metered {
        let family = self.family;
        let truncated = match &self.sse {
            Some(sse) => sse.in_event(),
            None => {
                let tally = &mut self.tally;
                match self.skim.finish(&mut |_, c| tally.take(family, c)) {
                    Ok(()) => false,
                    // An empty body (a 204, a HEAD answer) reports nothing but is not broken.
                    Err(SkimError::Truncated) => self.skim.started(),
                    Err(_) => {
                        self.tally.bad = true;
                        false
                    }
                }
            }
        };
        let usage = self.tally.reported.usage(family);
        let status = if self.tally.bad || usage.is_none() {
            MeterStatus::Malformed
        } else if self.tally.oversized > 0 {
            MeterStatus::Unmetered
        } else if truncated {
            MeterStatus::Truncated
        } else if self.tally.seen {
            MeterStatus::Complete
        } else {
            MeterStatus::NoUsage
        };
        Metered {
            usage: usage.unwrap_or_default(),
            status,
            malformed_events: self.malformed_events,
            oversized: self.tally.oversized,
            done_marker: self.done_marker,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::skim::MAX_CAPTURE_BYTES;

    fn meter(family: UsageFamily, format: BodyFormat, pieces: &[&[u8]]) -> Metered {
        let mut m = Meter::new(family, format);
        for p in pieces {
            m.feed(p);
        }
        m.finish()
    }

    /// The verdict on `body` whole, which must be the same when it is split at every byte, fed one
    /// byte at a time, and cut into random pieces.
    fn meter_all_ways(family: UsageFamily, format: BodyFormat, body: &str) -> Metered {
        let b = body.as_bytes();
        let whole = meter(family, format, &[b]);
        for at in 0..=b.len() {
            assert_eq!(
                meter(family, format, &[&b[..at], &b[at..]]),
                whole,
                "split at {at}"
            );
        }
        let bytes: Vec<&[u8]> = b.chunks(1).collect();
        assert_eq!(meter(family, format, &bytes), whole, "bytewise");
        let mut state = 0x2545_f491_4f6c_dd1d_u64 ^ b.len() as u64;
        for _ in 0..64 {
            let mut pieces = Vec::new();
            let mut rest = b;
            while !rest.is_empty() {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let n = (state as usize % 40).min(rest.len());
                let (p, r) = rest.split_at(n);
                pieces.push(p);
                rest = r;
            }
            assert_eq!(meter(family, format, &pieces), whole, "random pieces");
        }
        whole
    }

    fn complete(m: Metered) -> Usage {
        assert_eq!(m.status, MeterStatus::Complete, "{m:?}");
        m.usage
    }

    const OPENAI_CHAT: &str = r#"{
  "id": "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG",
  "object": "chat.completion",
  "created": 1741570283,
  "model": "gpt-4o-2024-08-06",
  "choices": [
    {
      "index": 0,
      "message": {
        "role": "assistant",
        "content": "The \"usage\": {\"prompt_tokens\": 9} in a reply is only text. }]",
        "refusal": null,
        "annotations": []
      },
      "logprobs": null,
      "finish_reason": "stop"
    }
  ],
  "usage": {
    "prompt_tokens": 1117,
    "completion_tokens": 46,
    "total_tokens": 1163,
    "prompt_tokens_details": {
      "cached_tokens": 0,
      "audio_tokens": 0
    },
    "completion_tokens_details": {
      "reasoning_tokens": 0,
      "audio_tokens": 0,
      "accepted_prediction_tokens": 0,
      "rejected_prediction_tokens": 0
    }
  },
  "service_tier": "default"
}
"#;

    const OPENAI_CHAT_STREAM: &str = "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}],\"usage\":null}\n\n\
data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"},\"finish_reason\":null}],\"usage\":null}\n\n\
data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":null}\n\n\
data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o-mini\",\"choices\":[],\"usage\":{\"prompt_tokens\":19,\"completion_tokens\":10,\"total_tokens\":29,\"prompt_tokens_details\":{\"cached_tokens\":3,\"audio_tokens\":0},\"completion_tokens_details\":{\"reasoning_tokens\":0,\"audio_tokens\":0,\"accepted_prediction_tokens\":0,\"rejected_prediction_tokens\":0}}}\n\n\
data: [DONE]\n\n";

    #[test]
    fn openai_chat_whole_and_streamed() {
        let m = meter_all_ways(UsageFamily::OpenAiChat, BodyFormat::Json, OPENAI_CHAT);
        assert_eq!(
            complete(m),
            Usage {
                input: 1117,
                output: 46,
                ..Usage::default()
            }
        );
        let m = meter_all_ways(
            UsageFamily::OpenAiChat,
            BodyFormat::EventStream,
            OPENAI_CHAT_STREAM,
        );
        assert!(m.done_marker);
        assert_eq!(
            complete(m),
            Usage {
                input: 19,
                output: 10,
                cached_input: 3,
                ..Usage::default()
            }
        );
        // The same stream with CRLF line ends.
        let crlf = OPENAI_CHAT_STREAM.replace('\n', "\r\n");
        assert_eq!(
            meter(
                UsageFamily::OpenAiChat,
                BodyFormat::EventStream,
                &[crlf.as_bytes()]
            ),
            m
        );
        // Without include_usage there is no report.
        let no_usage: String = OPENAI_CHAT_STREAM
            .split_inclusive("\n\n")
            .filter(|e| !e.contains("\"choices\":[]"))
            .collect();
        let m = meter_all_ways(UsageFamily::OpenAiChat, BodyFormat::EventStream, &no_usage);
        assert_eq!(
            (m.status, m.usage),
            (MeterStatus::NoUsage, Usage::default())
        );
    }

    #[test]
    fn openai_embeddings_and_images() {
        let emb = r#"{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.0023064255,-0.009327292,-0.0028842222]}],"model":"text-embedding-3-small","usage":{"prompt_tokens":8,"total_tokens":8}}"#;
        let m = meter_all_ways(UsageFamily::OpenAiChat, BodyFormat::Json, emb);
        assert_eq!(complete(m).input, 8);
        let img = r#"{"created":1713833628,"data":[{"b64_json":"iVBORw0KGgo="}],"usage":{"total_tokens":100,"input_tokens":50,"output_tokens":50,"input_tokens_details":{"text_tokens":10,"image_tokens":40}}}"#;
        let m = meter_all_ways(UsageFamily::OpenAiResponses, BodyFormat::Json, img);
        assert_eq!(
            complete(m),
            Usage {
                input: 50,
                output: 50,
                ..Usage::default()
            }
        );
        // DALL-E answers carry no usage.
        let dalle =
            r#"{"created":1,"data":[{"url":"https://example.com/x.png","revised_prompt":"x"}]}"#;
        let m = meter_all_ways(UsageFamily::OpenAiResponses, BodyFormat::Json, dalle);
        assert_eq!(m.status, MeterStatus::NoUsage);
    }

    const RESPONSES: &str = r#"{"id":"resp_67cc","object":"response","created_at":1741476542,"status":"completed","error":null,"model":"gpt-4.1-2025-04-14","output":[{"type":"message","id":"msg_67cc","status":"completed","role":"assistant","content":[{"type":"output_text","text":"In a peaceful grove...","annotations":[]}]}],"parallel_tool_calls":true,"usage":{"input_tokens":36,"input_tokens_details":{"cached_tokens":0},"output_tokens":87,"output_tokens_details":{"reasoning_tokens":0},"total_tokens":123},"user":null,"metadata":{}}"#;

    const RESPONSES_STREAM: &str = "event: response.created\ndata: {\"type\":\"response.created\",\"sequence_number\":0,\"response\":{\"id\":\"resp_1\",\"object\":\"response\",\"status\":\"in_progress\",\"output\":[],\"usage\":null}}\n\n\
event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"sequence_number\":4,\"item_id\":\"msg_1\",\"output_index\":0,\"content_index\":0,\"delta\":\"Hi\"}\n\n\
event: response.completed\ndata: {\"type\":\"response.completed\",\"sequence_number\":9,\"response\":{\"id\":\"resp_1\",\"object\":\"response\",\"status\":\"completed\",\"output\":[{\"type\":\"message\",\"content\":[{\"type\":\"output_text\",\"text\":\"Hi\"}]}],\"usage\":{\"input_tokens\":37,\"input_tokens_details\":{\"cached_tokens\":5},\"output_tokens\":11,\"output_tokens_details\":{\"reasoning_tokens\":4},\"total_tokens\":48}}}\n\n";

    #[test]
    fn openai_responses_whole_and_streamed() {
        let m = meter_all_ways(UsageFamily::OpenAiResponses, BodyFormat::Json, RESPONSES);
        assert_eq!(
            complete(m),
            Usage {
                input: 36,
                output: 87,
                ..Usage::default()
            }
        );
        let m = meter_all_ways(
            UsageFamily::OpenAiResponses,
            BodyFormat::EventStream,
            RESPONSES_STREAM,
        );
        assert_eq!(
            complete(m),
            Usage {
                input: 37,
                output: 11,
                cached_input: 5,
                cache_creation: 0,
                reasoning: 4
            }
        );
    }

    const ANTHROPIC: &str = r#"{"id":"msg_013Zva2CMHLNnXjNJJKqJ2EF","type":"message","role":"assistant","model":"claude-sonnet-4-20250514","content":[{"type":"text","text":"Hi! My name is Claude."}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":2095,"cache_creation_input_tokens":0,"cache_read_input_tokens":1800,"cache_creation":{"ephemeral_5m_input_tokens":0,"ephemeral_1h_input_tokens":0},"output_tokens":503,"service_tier":"standard"}}"#;

    const ANTHROPIC_STREAM: &str = "event: message_start\n\
data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"model\":\"claude-sonnet-4-20250514\",\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":25,\"cache_creation_input_tokens\":100,\"cache_read_input_tokens\":0,\"output_tokens\":1}}}\n\n\
event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n\
event: ping\ndata: {\"type\": \"ping\"}\n\n\
event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hello\"}}\n\n\
event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n\
event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":15}}\n\n\
event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";

    #[test]
    fn anthropic_whole_and_streamed() {
        let m = meter_all_ways(UsageFamily::Anthropic, BodyFormat::Json, ANTHROPIC);
        assert_eq!(
            complete(m),
            Usage {
                input: 3895,
                output: 503,
                cached_input: 1800,
                cache_creation: 0,
                reasoning: 0
            }
        );
        let m = meter_all_ways(
            UsageFamily::Anthropic,
            BodyFormat::EventStream,
            ANTHROPIC_STREAM,
        );
        assert_eq!(
            complete(m),
            Usage {
                input: 125,
                output: 15,
                cached_input: 0,
                cache_creation: 100,
                reasoning: 0
            }
        );
        // Cut after message_start: the stream ended between events, so the report is what was seen;
        // cut inside an event, the verdict says so.
        let cut = ANTHROPIC_STREAM.find("event: content_block_delta").unwrap();
        let m = meter(
            UsageFamily::Anthropic,
            BodyFormat::EventStream,
            &[&ANTHROPIC_STREAM.as_bytes()[..cut + 30]],
        );
        assert_eq!((m.status, m.usage.output), (MeterStatus::Truncated, 1));
    }

    const GEMINI: &str = r#"{"candidates":[{"content":{"parts":[{"text":"AI learns patterns."}],"role":"model"},"finishReason":"STOP","index":0}],"usageMetadata":{"promptTokenCount":8,"candidatesTokenCount":5,"totalTokenCount":41,"cachedContentTokenCount":2,"promptTokensDetails":[{"modality":"TEXT","tokenCount":8}],"thoughtsTokenCount":28},"modelVersion":"gemini-2.5-flash","responseId":"abc"}"#;

    #[test]
    fn gemini_whole_sse_and_json_array() {
        let want = Usage {
            input: 8,
            output: 33,
            cached_input: 2,
            cache_creation: 0,
            reasoning: 28,
        };
        let m = meter_all_ways(UsageFamily::Gemini, BodyFormat::Json, GEMINI);
        assert_eq!(complete(m), want);
        let first = r#"{"candidates":[{"content":{"parts":[{"text":"AI"}],"role":"model"},"index":0}],"usageMetadata":{"promptTokenCount":8,"totalTokenCount":8},"modelVersion":"gemini-2.5-flash"}"#;
        let sse = format!("data: {first}\r\n\r\ndata: {GEMINI}\r\n\r\n");
        let m = meter_all_ways(UsageFamily::Gemini, BodyFormat::EventStream, &sse);
        assert_eq!(complete(m), want);
        let array = format!("[{first}\n,\r\n{GEMINI}\n]");
        let m = meter_all_ways(UsageFamily::Gemini, BodyFormat::Json, &array);
        assert_eq!(complete(m), want);
    }

    #[test]
    fn errors_report_no_usage_and_empty_bodies_are_not_broken() {
        let err = r#"{"error":{"message":"Incorrect API key provided.","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}"#;
        for family in [
            UsageFamily::OpenAiChat,
            UsageFamily::OpenAiResponses,
            UsageFamily::Anthropic,
            UsageFamily::Gemini,
        ] {
            let m = meter_all_ways(family, BodyFormat::Json, err);
            assert_eq!(m.status, MeterStatus::NoUsage);
            assert_eq!(
                meter(family, BodyFormat::Json, &[]).status,
                MeterStatus::NoUsage
            );
            assert_eq!(
                meter(family, BodyFormat::EventStream, &[]).status,
                MeterStatus::NoUsage
            );
        }
    }

    #[test]
    fn malformed_bodies_and_reports() {
        for (family, format, body) in [
            (
                UsageFamily::OpenAiChat,
                BodyFormat::Json,
                r#"{"usage":{"prompt_tokens":1}}}"#,
            ),
            (
                UsageFamily::OpenAiChat,
                BodyFormat::Json,
                r#"{"usage":{"prompt_tokens":1.5}}"#,
            ),
            (
                UsageFamily::OpenAiChat,
                BodyFormat::Json,
                r#"{"usage":{"prompt_tokens":1},"usage":null}"#,
            ),
            (
                UsageFamily::OpenAiChat,
                BodyFormat::Json,
                "<html>502 Bad Gateway</html>",
            ),
            (
                UsageFamily::Anthropic,
                BodyFormat::Json,
                r#"{"usage":{"input_tokens":-3}}"#,
            ),
            (
                UsageFamily::Gemini,
                BodyFormat::Json,
                r#"{"usageMetadata":{"promptTokenCount":"8"}}"#,
            ),
            (
                UsageFamily::OpenAiChat,
                BodyFormat::EventStream,
                "data: {\"usage\":{\"prompt_tokens\":1}}\n\ndata: {oops}\n\n",
            ),
            (
                UsageFamily::OpenAiChat,
                BodyFormat::EventStream,
                "data: {\"usage\":{\"prompt_tokens\":1}\n\n",
            ),
            (
                UsageFamily::OpenAiChat,
                BodyFormat::EventStream,
                "data: [DONE]x\n\n",
            ),
        ] {
            let m = meter_all_ways(family, format, body);
            assert_eq!(m.status, MeterStatus::Malformed, "{body}");
        }
        // Truncated, not malformed: the body stopped inside the document.
        let m = meter_all_ways(
            UsageFamily::OpenAiChat,
            BodyFormat::Json,
            &OPENAI_CHAT[..OPENAI_CHAT.len() - 30],
        );
        assert_eq!((m.status, m.usage.input), (MeterStatus::Truncated, 1117));
    }

    #[test]
    fn oversized_reports_and_huge_bodies() {
        let pad = "9".repeat(MAX_CAPTURE_BYTES);
        let big = format!(r#"{{"usage":{{"prompt_tokens":1,"x":{pad}}}}}"#);
        let m = meter(UsageFamily::OpenAiChat, BodyFormat::Json, &[big.as_bytes()]);
        assert_eq!((m.status, m.oversized), (MeterStatus::Unmetered, 1));
        let sse = format!("data: {big}\n\ndata: {{\"usage\":{{\"prompt_tokens\":2}}}}\n\n");
        let m = meter(
            UsageFamily::OpenAiChat,
            BodyFormat::EventStream,
            &[sse.as_bytes()],
        );
        assert_eq!(
            (m.status, m.oversized, m.usage.input),
            (MeterStatus::Unmetered, 1, 2)
        );
        // An event of 8 MiB of text around its usage is metered (nothing of it is kept).
        let mut meter = Meter::new(UsageFamily::OpenAiResponses, BodyFormat::EventStream);
        meter
            .feed(b"data: {\"type\":\"response.completed\",\"response\":{\"output\":[{\"text\":\"");
        let chunk = vec![b'a'; 1 << 16];
        for _ in 0..128 {
            meter.feed(&chunk);
        }
        meter.feed(b"\"}],\"usage\":{\"input_tokens\":7,\"output_tokens\":2000000}}}\n\n");
        let m = meter.finish();
        assert_eq!(
            (m.status, m.usage.output),
            (MeterStatus::Complete, 2_000_000)
        );
    }

    #[test]
    fn content_type_decides_the_format() {
        for (ct, want) in [
            (&b"text/event-stream"[..], BodyFormat::EventStream),
            (b"Text/Event-Stream; charset=utf-8", BodyFormat::EventStream),
            (b" text/event-stream ", BodyFormat::EventStream),
            (b"application/json", BodyFormat::Json),
            (b"text/event-streams", BodyFormat::Json),
            (b"", BodyFormat::Json),
        ] {
            assert_eq!(BodyFormat::from_content_type(ct), want);
        }
    }
}
