//! Usage metering (`meter/extract.rs` over `json/skim.rs` and `meter/sse.rs`), the usage-chunk filter
//! (`meter/usage_filter.rs`), the `include_usage` rewrite and the cost function, judged against
//! references written here the simple way: the whole body parsed by `serde_json`, a whole-input SSE
//! splitter, `Value` lookups along each family's paths.
//!
//! - Meter: the verdict does not depend on how the body is cut into pieces; when `serde_json` reads the
//!   body (or every event's data) as JSON without a repeated member name, the usage and status are the
//!   reference's (unless a report was skipped as oversized, which needs a report of 4 KiB).
//! - Filter: the output does not depend on the pieces; it is the input less exactly the events whose
//!   data `serde_json` reads as an object with `"choices": []` and an object `usage`.
//! - Rewrite: a rewritten body is the input plus `stream_options.include_usage: true` as
//!   `serde_json` reads both, and rewriting it again finds the client asked; the verdict agrees with
//!   the reference on `stream` and `stream_options`.
//! - Cost: never below the exact price, less than one micro-unit above it.
//!
//! Input: a mode byte (low 2 bits: meter JSON / meter SSE / filter / rewrite and cost; bits 2-3: the
//! family), a byte seeding the cuts, then the body.

use relayapi::meter::extract::{BodyFormat, Meter, MeterStatus, Metered};
use relayapi::meter::include_usage::{include_usage, IncludeUsage};
use relayapi::meter::price::Price;
use relayapi::meter::usage::{Usage, UsageFamily};
use relayapi::meter::usage_filter::UsageChunkFilter;
use serde_json::Value;

use super::json;

pub fn check(data: &[u8]) {
    let [mode, seed, body @ ..] = data else {
        return;
    };
    let family = UsageFamily::ALL[usize::from(mode >> 2) % UsageFamily::ALL.len()];
    match mode & 3 {
        0 => check_meter(family, BodyFormat::Json, *seed, body),
        1 => check_meter(family, BodyFormat::EventStream, *seed, body),
        2 => check_filter(*seed, body),
        _ => {
            check_rewrite(body);
            check_cost(body);
        }
    }
}

/// `body` cut at the points a seed picks: one cut, then pieces of 1 to 16 bytes.
fn cuts(seed: u8, body: &[u8]) -> [Vec<&[u8]>; 2] {
    let at = usize::from(seed) * body.len() / 255;
    let mut pieces = Vec::new();
    let mut rest = body;
    let mut s = u32::from(seed) | 1;
    while !rest.is_empty() {
        s = s.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        let (p, r) = rest.split_at((1 + (s >> 16) as usize % 16).min(rest.len()));
        pieces.push(p);
        rest = r;
    }
    [vec![&body[..at], &body[at..]], pieces]
}

fn meter(family: UsageFamily, format: BodyFormat, pieces: &[&[u8]]) -> Metered {
    let mut m = Meter::new(family, format);
    pieces.iter().for_each(|p| m.feed(p));
    m.finish()
}

fn check_meter(family: UsageFamily, format: BodyFormat, seed: u8, body: &[u8]) {
    let whole = meter(family, format, &[body]);
    for pieces in cuts(seed, body) {
        assert_eq!(meter(family, format, &pieces), whole, "cut differently");
    }
    if whole.status == MeterStatus::Unmetered {
        assert!(body.len() > relayapi::json::skim::MAX_CAPTURE_BYTES);
        return;
    }
    let Ok(text) = std::str::from_utf8(body) else {
        return;
    };
    let mut reference = Reference::default();
    let truncated = match format {
        BodyFormat::Json => {
            if text.trim_matches([' ', '\t', '\n', '\r']).is_empty() {
                false
            } else if !reference.document(family, text) {
                return;
            } else {
                false
            }
        }
        BodyFormat::EventStream => {
            let (events, unfinished) = sse_events(text);
            for (data, _) in &events {
                if data.as_str() == "[DONE]"
                    || data.trim_matches([' ', '\t', '\n', '\r']).is_empty()
                {
                    continue;
                }
                if !reference.document(family, data) {
                    return;
                }
            }
            unfinished
        }
    };
    let usage = reference.usage(family);
    let status = if reference.bad || usage.is_none() {
        MeterStatus::Malformed
    } else if truncated {
        MeterStatus::Truncated
    } else if reference.seen {
        MeterStatus::Complete
    } else {
        MeterStatus::NoUsage
    };
    assert_eq!(whole.status, status, "{whole:?}");
    assert_eq!(whole.usage, usage.unwrap_or_default());
}

/// The reports of one response as `serde_json` reads them.
#[derive(Default)]
struct Reference {
    /// Largest value per member: input, output, cached, cache creation, reasoning, tool prompt.
    values: [Option<u64>; 6],
    seen: bool,
    bad: bool,
}

impl Reference {
    /// Take the reports of one JSON document; `false` when serde cannot judge it (not JSON, or a
    /// repeated member name somewhere).
    fn document(&mut self, family: UsageFamily, text: &str) -> bool {
        let Some((value, duplicate)) = json::parse(text) else {
            return false;
        };
        if duplicate {
            return false;
        }
        let (name, nested): (&str, Option<&str>) = match family {
            UsageFamily::OpenAiChat => ("usage", None),
            UsageFamily::OpenAiResponses | UsageFamily::OpenAiRealtime => {
                ("usage", Some("response"))
            }
            UsageFamily::Anthropic => ("usage", Some("message")),
            UsageFamily::Gemini | UsageFamily::GeminiLive => ("usageMetadata", None),
        };
        let mut reports: Vec<&Value> = Vec::new();
        match &value {
            Value::Object(top) => {
                reports.extend(top.get(name));
                if let Some(Value::Object(inner)) = nested.and_then(|n| top.get(n)) {
                    reports.extend(inner.get(name));
                }
            }
            Value::Array(items)
                if matches!(family, UsageFamily::Gemini | UsageFamily::GeminiLive) =>
            {
                for item in items {
                    if let Value::Object(o) = item {
                        reports.extend(o.get(name));
                    }
                }
            }
            _ => {}
        }
        for r in reports {
            self.report(family, r);
        }
        true
    }

    fn report(&mut self, family: UsageFamily, r: &Value) {
        let Value::Object(o) = r else {
            self.bad |= !r.is_null();
            return;
        };
        let top = |n: &str| o.get(n).filter(|v| !v.is_null());
        let detail = |n: &str, d: &str| match top(n) {
            None => Ok(None),
            Some(Value::Object(inner)) => Ok(inner.get(d).filter(|v| !v.is_null())),
            Some(_) => Err(()),
        };
        let places: [Result<Option<&Value>, ()>; 6] = match family {
            UsageFamily::OpenAiChat => [
                Ok(top("prompt_tokens")),
                Ok(top("completion_tokens")),
                detail("prompt_tokens_details", "cached_tokens"),
                Ok(None),
                detail("completion_tokens_details", "reasoning_tokens"),
                Ok(None),
            ],
            UsageFamily::OpenAiResponses => [
                Ok(top("input_tokens")),
                Ok(top("output_tokens")),
                detail("input_tokens_details", "cached_tokens"),
                Ok(None),
                detail("output_tokens_details", "reasoning_tokens"),
                Ok(None),
            ],
            UsageFamily::OpenAiRealtime => [
                Ok(top("input_tokens")),
                Ok(top("output_tokens")),
                detail("input_token_details", "cached_tokens"),
                Ok(None),
                Ok(None),
                Ok(None),
            ],
            UsageFamily::Anthropic => [
                Ok(top("input_tokens")),
                Ok(top("output_tokens")),
                Ok(top("cache_read_input_tokens")),
                Ok(top("cache_creation_input_tokens")),
                Ok(None),
                Ok(None),
            ],
            UsageFamily::Gemini => [
                Ok(top("promptTokenCount")),
                Ok(top("candidatesTokenCount")),
                Ok(top("cachedContentTokenCount")),
                Ok(None),
                Ok(top("thoughtsTokenCount")),
                Ok(top("toolUsePromptTokenCount")),
            ],
            UsageFamily::GeminiLive => [
                Ok(top("promptTokenCount")),
                Ok(top("responseTokenCount")),
                Ok(top("cachedContentTokenCount")),
                Ok(None),
                Ok(top("thoughtsTokenCount")),
                Ok(top("toolUsePromptTokenCount")),
            ],
        };
        let mut got = [None; 6];
        for (k, p) in places.into_iter().enumerate() {
            match p {
                Err(()) => self.bad = true,
                Ok(None) => {}
                Ok(Some(v)) => match v.as_u64() {
                    Some(n) => got[k] = Some(n),
                    None => self.bad = true,
                },
            }
        }
        if self.bad {
            return;
        }
        self.seen = true;
        for (mine, new) in self.values.iter_mut().zip(got) {
            *mine = match (*mine, new) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            };
        }
    }

    fn usage(&self, family: UsageFamily) -> Option<Usage> {
        let v = |k: usize| self.values[k].unwrap_or(0);
        Some(match family {
            UsageFamily::OpenAiChat
            | UsageFamily::OpenAiResponses
            | UsageFamily::OpenAiRealtime => Usage {
                input: v(0),
                output: v(1),
                cached_input: v(2),
                cache_creation: 0,
                reasoning: v(4),
            },
            UsageFamily::Anthropic => Usage {
                input: v(0).checked_add(v(2))?.checked_add(v(3))?,
                output: v(1),
                cached_input: v(2),
                cache_creation: v(3),
                reasoning: 0,
            },
            UsageFamily::Gemini | UsageFamily::GeminiLive => Usage {
                input: v(0).checked_add(v(5))?,
                output: v(1).checked_add(v(4))?,
                cached_input: v(2),
                cache_creation: 0,
                reasoning: v(4),
            },
        })
    }
}

/// The events of a whole stream, the simple way: (data, raw bytes including the blank line), and
/// whether it stopped inside an event.
fn sse_events(text: &str) -> (Vec<(String, String)>, bool) {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut events = Vec::new();
    let mut data: Option<String> = None;
    let mut raw = String::new();
    let mut in_event = false;
    let mut rest = text;
    while !rest.is_empty() {
        let end = rest.find(['\r', '\n']);
        let Some(end) = end else {
            // A line without its end: the event never completes.
            return (events, true);
        };
        let line = &rest[..end];
        let mut next = end + 1;
        if rest[end..].starts_with("\r\n") {
            next += 1;
        }
        raw.push_str(&rest[..next]);
        rest = &rest[next..];
        if line.is_empty() {
            if in_event {
                events.push((data.take().unwrap_or_default(), std::mem::take(&mut raw)));
            }
            in_event = false;
            continue;
        }
        in_event = true;
        let (field, value) = match line.find(':') {
            Some(c) => (
                &line[..c],
                line[c + 1..].strip_prefix(' ').unwrap_or(&line[c + 1..]),
            ),
            None => (line, ""),
        };
        if field == "data" {
            match &mut data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(value);
                }
                None => data = Some(value.to_owned()),
            }
        }
    }
    (events, in_event)
}

fn filter(pieces: &[&[u8]]) -> Vec<u8> {
    let mut f = UsageChunkFilter::new();
    let mut out = Vec::new();
    pieces.iter().for_each(|p| f.push(p, &mut out));
    f.finish(&mut out);
    out
}

fn check_filter(seed: u8, body: &[u8]) {
    let whole = filter(&[body]);
    for pieces in cuts(seed, body) {
        assert_eq!(filter(&pieces), whole, "cut differently");
    }
    let Ok(text) = std::str::from_utf8(body) else {
        return;
    };
    if text.contains('\r') || text.starts_with('\u{feff}') {
        // The reference keeps CRs and the BOM simple by not seeing them; split invariance still holds.
        return;
    }
    let (events, _) = sse_events(text);
    let mut want = String::new();
    let mut consumed = 0;
    for (data, raw) in &events {
        consumed += raw.len();
        let Some(verdict) = usage_chunk(data) else {
            return;
        };
        if !verdict {
            want.push_str(raw);
        }
    }
    want.push_str(&text[consumed..]);
    assert_eq!(String::from_utf8_lossy(&whole), want);
}

/// Whether `data` is a usage-only chunk as `serde_json` reads it; `None` when serde cannot judge (a
/// limit of its own, or a repeated top-level name the filter's scanner would refuse).
fn usage_chunk(data: &str) -> Option<bool> {
    if json::refused_for_serde_limit(data) {
        return None;
    }
    let Ok(Value::Object(o)) = serde_json::from_str::<Value>(data) else {
        return Some(false);
    };
    let names = json::top_level_names(data)?;
    let count = |n: &str| names.iter().filter(|m| m.as_str() == n).count();
    if count("choices") > 1 || count("usage") > 1 {
        return Some(false);
    }
    Some(
        matches!(o.get("choices"), Some(Value::Array(a)) if a.is_empty())
            && matches!(o.get("usage"), Some(Value::Object(_))),
    )
}

fn check_rewrite(body: &[u8]) {
    let result = include_usage(body);
    let Ok(text) = std::str::from_utf8(body) else {
        assert!(result.is_err());
        return;
    };
    if json::refused_for_serde_limit(text) {
        return;
    }
    let Some((value, _)) = json::parse(text) else {
        assert!(result.is_err(), "not JSON, yet {result:?}");
        return;
    };
    let names = json::top_level_names(text);
    let top_dup = |n: &str| {
        names
            .as_ref()
            .is_some_and(|v| v.iter().filter(|m| m.as_str() == n).count() > 1)
    };
    let Value::Object(o) = &value else {
        assert!(result.is_err());
        return;
    };
    if top_dup("stream") || top_dup("stream_options") {
        assert!(result.is_err());
        return;
    }
    let streamed = o.get("stream") == Some(&Value::Bool(true));
    match result {
        Ok(IncludeUsage::NotStreamed) => assert!(!streamed),
        Ok(IncludeUsage::AlreadyAsked) => {
            assert!(streamed);
            assert_eq!(o["stream_options"]["include_usage"], Value::Bool(true));
        }
        Ok(IncludeUsage::Rewritten(out)) => {
            assert!(streamed);
            let out_text = std::str::from_utf8(&out).expect("a splice of UTF-8 with ASCII");
            let got: Value = serde_json::from_str(out_text).expect("the rewrite is JSON");
            let mut want = value.clone();
            let options = &mut want["stream_options"];
            if options.is_null() {
                *options = Value::Object(Default::default());
            }
            options["include_usage"] = Value::Bool(true);
            assert_eq!(got, want);
            assert_eq!(include_usage(&out), Ok(IncludeUsage::AlreadyAsked));
        }
        Err(_) => {
            // Refused: something the rewrite cannot do safely.
            let options = o.get("stream_options");
            let inner_ok = match options {
                None | Some(Value::Null) => true,
                Some(Value::Object(inner)) => matches!(
                    inner.get("include_usage"),
                    None | Some(Value::Null | Value::Bool(_))
                ),
                _ => false,
            };
            // Only a stream is looked into; serde keeps the last of repeated names inside
            // `stream_options` (perhaps spelled with escapes), the rewrite refuses them.
            let repeated = text.matches("include_usage").count() > 1 || text.contains('\\');
            assert!(streamed && (!inner_ok || repeated), "refused {text:?}");
        }
    }
}

fn check_cost(body: &[u8]) {
    let mut words = body
        .chunks(8)
        .map(|c| c.iter().fold(0u64, |a, &b| a << 8 | u64::from(b)));
    let mut next = || words.next().unwrap_or(0);
    let usage = Usage {
        input: next(),
        output: next(),
        cached_input: next(),
        cache_creation: next(),
        reasoning: 0,
    };
    let price = Price {
        input: next(),
        output: next(),
        cached_input: next(),
        cache_write: next(),
    };
    let fresh = usage
        .input
        .saturating_sub(usage.cached_input)
        .saturating_sub(usage.cache_creation);
    let exact = [
        (fresh, price.input),
        (usage.cached_input, price.cached_input),
        (usage.cache_creation, price.cache_write),
        (usage.output, price.output),
    ]
    .iter()
    .try_fold(0u128, |a, &(t, p)| {
        a.checked_add(u128::from(t) * u128::from(p))
    });
    match (price.cost(&usage), exact) {
        (Ok(c), Some(e)) => {
            let c = u128::from(c) * 1_000_000;
            assert!(c >= e && c - e < 1_000_000);
        }
        (Err(_), Some(e)) => assert!(e.div_ceil(1_000_000) > u128::from(u64::MAX)),
        (Err(_), None) => {}
        (Ok(_), None) => panic!("a cost from an overflowing sum"),
    }
}
