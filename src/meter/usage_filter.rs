//! Removing the usage-only chunk from an OpenAI-compatible chat stream whose client did not ask for it:
//! with `stream_options.include_usage` (added by `meter/include_usage.rs` so the relay can meter), the
//! provider sends one more event before `data: [DONE]` whose `choices` is an empty array and whose
//! `usage` is an object, and client code that reads `chunk.choices[0]` breaks on it. This filter passes
//! every other event byte for byte and drops that one. To decide, it holds the event it is in until the
//! blank line that ends it (a client cannot act on part of an event anyway), up to
//! [`MAX_HELD_EVENT_BYTES`]; a longer event is no usage chunk and is passed on as it arrives (however
//! the stream is cut into pieces: the verdict depends on the event's length, not on when it was held). The
//! meter (`meter/extract.rs`) reads the stream as the provider sent it, usage chunk included.

use crate::json::body_scan;
use crate::meter::sse::{SseItem, SseSplitter};

/// Most bytes of one event held back while deciding. A usage chunk is under 1 KiB (OpenAI's with every
/// detail object and a long model name is about 600 bytes); content chunks are smaller still.
pub const MAX_HELD_EVENT_BYTES: usize = 16 * 1024;

/// A filter over one response stream.
#[derive(Debug, Default)]
pub struct UsageChunkFilter {
    sse: SseSplitter,
    /// Raw bytes of the current event not yet passed on.
    held: Vec<u8>,
    /// The current event's data, while it is held.
    data: Vec<u8>,
    /// The current event outgrew the hold and is being passed on as it arrives.
    passing: bool,
    /// A dropped event ended in CR: an LF right after it is the rest of that line end, dropped too.
    skip_lf: bool,
    dropped: u32,
}

impl UsageChunkFilter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Usage chunks removed so far.
    pub fn dropped(&self) -> u32 {
        self.dropped
    }

    /// Filter the next piece of the stream, appending what the client gets to `out`.
    pub fn push(&mut self, input: &[u8], out: &mut Vec<u8>) {
        let UsageChunkFilter {
            sse,
            held,
            data,
            passing,
            skip_lf,
            dropped,
        } = self;
        let mut start = 0;
        // The LF completing a dropped event's CRLF goes with it (else a client sees a stray blank line).
        let skip = |skip_lf: &mut bool, start: usize| {
            let n = usize::from(*skip_lf && input.get(start) == Some(&b'\n'));
            if start < input.len() {
                *skip_lf = false;
            }
            start + n
        };
        sse.feed(input, &mut |item| match item {
            SseItem::Data(d) => {
                // Past the bound the event is no usage chunk: `data` then stays too long to match.
                if !*passing && data.len() <= MAX_HELD_EVENT_BYTES {
                    let room = MAX_HELD_EVENT_BYTES + 1 - data.len();
                    data.extend_from_slice(&d[..d.len().min(room)]);
                }
            }
            SseItem::EventEnd { end, has_data } => {
                let raw = &input[skip(skip_lf, start)..end];
                if *passing {
                    out.extend_from_slice(raw);
                } else if has_data
                    && held.len() + raw.len() <= MAX_HELD_EVENT_BYTES
                    && is_usage_chunk(data)
                {
                    *dropped = dropped.saturating_add(1);
                    *skip_lf = raw.last() == Some(&b'\r');
                } else {
                    out.extend_from_slice(held);
                    out.extend_from_slice(raw);
                }
                held.clear();
                data.clear();
                *passing = false;
                start = end;
            }
        });
        let rest = &input[skip(skip_lf, start)..];
        if *passing {
            out.extend_from_slice(rest);
        } else if held.len() + rest.len() > MAX_HELD_EVENT_BYTES {
            out.extend_from_slice(held);
            out.extend_from_slice(rest);
            *held = Vec::new();
            *data = Vec::new();
            *passing = true;
        } else {
            held.extend_from_slice(rest);
        }
    }

    /// The stream ended: pass on what is held (an unfinished event goes as it came).
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        out.append(&mut self.held);
        self.data.clear();
    }
}

/// An event whose data is a JSON object with `"choices": []` and an object `usage`.
fn is_usage_chunk(data: &[u8]) -> bool {
    let Ok(scan) = body_scan::scan_object(data, &[&["choices"], &["usage"]]) else {
        return false;
    };
    let (Some(choices), Some(usage)) = (scan.found[0].clone(), scan.found[1].clone()) else {
        return false;
    };
    let choices = &data[choices];
    let empty_array = choices.len() >= 2
        && choices[0] == b'['
        && choices[choices.len() - 1] == b']'
        && choices[1..choices.len() - 1].trim_ascii().is_empty();
    empty_array && data[usage].starts_with(b"{")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(pieces: &[&[u8]]) -> (String, u32) {
        let mut f = UsageChunkFilter::new();
        let mut out = Vec::new();
        for p in pieces {
            f.push(p, &mut out);
        }
        f.finish(&mut out);
        (String::from_utf8(out).unwrap(), f.dropped())
    }

    /// The same output whole, split at every byte, one byte at a time and in random pieces.
    fn filter_all_ways(stream: &[u8]) -> (String, u32) {
        let whole = filter(&[stream]);
        for at in 0..=stream.len() {
            assert_eq!(
                filter(&[&stream[..at], &stream[at..]]),
                whole,
                "split at {at}"
            );
        }
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(filter(&bytes), whole);
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        for _ in 0..32 {
            let mut pieces = Vec::new();
            let mut rest = stream;
            while !rest.is_empty() {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let (p, r) = rest.split_at((state as usize % 50).min(rest.len()));
                pieces.push(p);
                rest = r;
            }
            assert_eq!(filter(&pieces), whole);
        }
        whole
    }

    const CONTENT: &str = "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"},\"finish_reason\":null}],\"usage\":null}\n\n";
    const USAGE: &str = "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o-mini\",\"choices\":[],\"usage\":{\"prompt_tokens\":19,\"completion_tokens\":10,\"total_tokens\":29}}\n\n";
    const DONE: &str = "data: [DONE]\n\n";
    /// Azure OpenAI's first chunk: empty choices, but no usage.
    const AZURE_FILTER: &str = "data: {\"choices\":[],\"created\":0,\"id\":\"\",\"model\":\"\",\"object\":\"\",\"prompt_filter_results\":[{\"prompt_index\":0,\"content_filter_results\":{}}]}\n\n";

    #[test]
    fn drops_the_usage_chunk_only() {
        let stream = format!("{AZURE_FILTER}{CONTENT}: keep-alive\n\n{CONTENT}{USAGE}{DONE}");
        let want = format!("{AZURE_FILTER}{CONTENT}: keep-alive\n\n{CONTENT}{DONE}");
        assert_eq!(filter_all_ways(stream.as_bytes()), (want, 1));
        // CRLF and spacing variants of the same chunk.
        let crlf = USAGE
            .replace('\n', "\r\n")
            .replace("\"choices\":[]", "\"choices\" : [ ]");
        let stream = format!("{CONTENT}{crlf}{DONE}");
        assert_eq!(
            filter_all_ways(stream.as_bytes()),
            (format!("{CONTENT}{DONE}"), 1)
        );
    }

    #[test]
    fn everything_else_passes_byte_for_byte() {
        for stream in [
            format!("{CONTENT}{CONTENT}{DONE}"),
            // Usage on a chunk that still has choices (some compatible providers) is kept.
            CONTENT.replace("\"usage\":null", "\"usage\":{\"prompt_tokens\":1}"),
            // Empty choices with a null usage, non-JSON data, an unfinished event.
            USAGE.replace(
                "\"usage\":{\"prompt_tokens\":19,\"completion_tokens\":10,\"total_tokens\":29}",
                "\"usage\":null",
            ),
            "data: {\"choices\":[],\"usage\":{}\n\n".into(),
            "data: {\"choices\":[],\"usage\":{},\"usage\":{}}\n\n".into(),
            format!("{CONTENT}data: {{\"choices\":[],\"usage\":{{}}}}"),
            "\u{feff}event: x\r\r\n\n\n".into(),
        ] {
            assert_eq!(filter_all_ways(stream.as_bytes()), (stream, 0));
        }
    }

    #[test]
    fn long_events_pass_as_they_arrive() {
        let big = format!(
            "data: {{\"choices\":[],\"usage\":{{\"x\":\"{}\"}}}}\n\n",
            "a".repeat(MAX_HELD_EVENT_BYTES)
        );
        let stream = format!("{big}{USAGE}{DONE}");
        assert_eq!(filter(&[stream.as_bytes()]), (format!("{big}{DONE}"), 1));
        // Fed in pieces, what is held never exceeds the bound, and what is past it went out already.
        let mut f = UsageChunkFilter::new();
        let mut out = Vec::new();
        for piece in big.as_bytes().chunks(1000) {
            f.push(piece, &mut out);
            assert!(f.held.len() <= MAX_HELD_EVENT_BYTES);
            assert!(f.data.len() <= MAX_HELD_EVENT_BYTES);
        }
        assert!(out == big.as_bytes(), "{} {}", out.len(), big.len());
        // Fed at once, the data kept to decide stays bounded too, and the bytes went out.
        let mut f = UsageChunkFilter::new();
        let mut out = Vec::new();
        f.push(&big.as_bytes()[..big.len() - 2], &mut out);
        assert!(f.data.capacity() <= 2 * MAX_HELD_EVENT_BYTES + 2);
        assert!(out == big.as_bytes()[..big.len() - 2]);
    }
}
