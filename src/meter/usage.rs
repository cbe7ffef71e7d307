//! What a call used, in tokens, as each provider family reports it: where the report sits in a response
//! body or stream event ([`UsageFamily::paths`]), how one report object reads (member names per family,
//! strict integers only, read with `json/body_scan.rs`), how successive reports of one response combine
//! (the largest value per member: streamed reports are cumulative), and how they normalise into one
//! [`Usage`] whose `input` counts every input token whatever the provider's convention.

use crate::json::body_scan::{self, ScanError};
use crate::json::path::{Path, Step};

/// The shapes of usage report there are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsageFamily {
    /// OpenAI-compatible chat completions, legacy completions and embeddings: top-level `usage` with
    /// `prompt_tokens`, `completion_tokens`, `prompt_tokens_details.cached_tokens` and
    /// `completion_tokens_details.reasoning_tokens`; streamed, the chunk that carries `usage` (the
    /// others say `"usage": null`).
    OpenAiChat,
    /// OpenAI's Responses API and image generation: `usage` with `input_tokens`, `output_tokens`,
    /// `input_tokens_details.cached_tokens`, `output_tokens_details.reasoning_tokens`; streamed, the
    /// `response` of `response.completed` (or `.incomplete`, `.failed`) carries it, or for images the
    /// top-level `usage` of `image_generation.completed`.
    OpenAiResponses,
    /// Anthropic messages: `usage` with `input_tokens`, `output_tokens`, `cache_creation_input_tokens`,
    /// `cache_read_input_tokens` (input_tokens excludes both cache counts); streamed,
    /// `message_start.message.usage` then `message_delta.usage` with cumulative counts.
    Anthropic,
    /// Gemini `generateContent` / `streamGenerateContent`: `usageMetadata` with `promptTokenCount`
    /// (cached tokens included), `candidatesTokenCount`, `cachedContentTokenCount`,
    /// `thoughtsTokenCount` (billed as output, not in `candidatesTokenCount`) and
    /// `toolUsePromptTokenCount` (billed as input); streamed as SSE events or as one JSON array whose
    /// elements each carry the cumulative counts.
    Gemini,
    /// OpenAI Realtime sessions: `response.done`'s `response.usage` (or a top-level `usage`) with
    /// `input_tokens`, `output_tokens` and the Realtime API's own detail name,
    /// `input_token_details.cached_tokens` (singular `token`, unlike the Responses API).
    OpenAiRealtime,
    /// Gemini Live sessions: a server message's `usageMetadata`, as `generateContent`'s but with the
    /// output counted in `responseTokenCount` (there are no candidates in a Live session).
    GeminiLive,
}

/// Tokens one call used, normalised across families.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Every input token: uncached, read from a cache and written to a cache.
    pub input: u64,
    /// Every output token, reasoning included.
    pub output: u64,
    /// The part of `input` read from a prompt cache.
    pub cached_input: u64,
    /// The part of `input` written to a prompt cache (Anthropic).
    pub cache_creation: u64,
    /// The part of `output` spent on reasoning ("thinking"), for information.
    pub reasoning: u64,
}

/// One report is not a usage report of its family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadReport;

/// The members a report can carry, in one order for all families.
const INPUT: usize = 0;
const OUTPUT: usize = 1;
const CACHED: usize = 2;
const CACHE_CREATION: usize = 3;
const REASONING: usize = 4;
const TOOL_PROMPT: usize = 5;
const FIELDS: usize = 6;
/// Most top-level members a family's report is read from (a layout's `top`).
const MAX_TOP: usize = FIELDS;

/// The combined reports of one response: the largest value seen per member.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reported {
    values: [Option<u64>; FIELDS],
}

/// How one family's report reads: the top-level members to look for, each listed once (a details
/// object can hold two fields), and for each of the [`FIELDS`] members the family has, which of them
/// holds it and, for a member inside a details object, its name there. Written out per family so that
/// reading a report (once per answer, and once per chunk of a stream) builds nothing.
struct Layout {
    /// Top-level member names, each a group of one for `body_scan::scan_object`.
    top: &'static [&'static [&'static str]],
    /// Per field: the index in `top` of the member holding it, and the member inside that details
    /// object (`None`: the top-level member is the count itself).
    fields: [Option<(usize, Option<&'static str>)>; FIELDS],
}

impl UsageFamily {
    /// Every family, for tests and fuzz targets that go through them all.
    pub const ALL: [UsageFamily; 6] = [
        UsageFamily::OpenAiChat,
        UsageFamily::OpenAiResponses,
        UsageFamily::Anthropic,
        UsageFamily::Gemini,
        UsageFamily::OpenAiRealtime,
        UsageFamily::GeminiLive,
    ];

    /// The paths of the report in a response body or in one stream event's data.
    pub fn paths(self) -> &'static [Path] {
        const USAGE: Path = &[Step::Member("usage")];
        match self {
            UsageFamily::OpenAiChat => &[USAGE],
            UsageFamily::OpenAiResponses | UsageFamily::OpenAiRealtime => {
                &[USAGE, &[Step::Member("response"), Step::Member("usage")]]
            }
            UsageFamily::Anthropic => &[USAGE, &[Step::Member("message"), Step::Member("usage")]],
            UsageFamily::Gemini | UsageFamily::GeminiLive => &[
                &[Step::Member("usageMetadata")],
                &[Step::Element, Step::Member("usageMetadata")],
            ],
        }
    }

    /// Where each of the [`FIELDS`] members sits, if the family has it.
    fn layout(self) -> &'static Layout {
        match self {
            UsageFamily::OpenAiChat => &Layout {
                top: &[
                    &["prompt_tokens"],
                    &["completion_tokens"],
                    &["prompt_tokens_details"],
                    &["completion_tokens_details"],
                ],
                fields: [
                    Some((0, None)),
                    Some((1, None)),
                    Some((2, Some("cached_tokens"))),
                    None,
                    Some((3, Some("reasoning_tokens"))),
                    None,
                ],
            },
            UsageFamily::OpenAiResponses => &Layout {
                top: &[
                    &["input_tokens"],
                    &["output_tokens"],
                    &["input_tokens_details"],
                    &["output_tokens_details"],
                ],
                fields: [
                    Some((0, None)),
                    Some((1, None)),
                    Some((2, Some("cached_tokens"))),
                    None,
                    Some((3, Some("reasoning_tokens"))),
                    None,
                ],
            },
            UsageFamily::OpenAiRealtime => &Layout {
                top: &[
                    &["input_tokens"],
                    &["output_tokens"],
                    &["input_token_details"],
                ],
                fields: [
                    Some((0, None)),
                    Some((1, None)),
                    Some((2, Some("cached_tokens"))),
                    None,
                    None,
                    None,
                ],
            },
            UsageFamily::Anthropic => &Layout {
                top: &[
                    &["input_tokens"],
                    &["output_tokens"],
                    &["cache_read_input_tokens"],
                    &["cache_creation_input_tokens"],
                ],
                fields: [
                    Some((0, None)),
                    Some((1, None)),
                    Some((2, None)),
                    Some((3, None)),
                    None,
                    None,
                ],
            },
            UsageFamily::Gemini => &Layout {
                top: &[
                    &["promptTokenCount"],
                    &["candidatesTokenCount"],
                    &["cachedContentTokenCount"],
                    &["thoughtsTokenCount"],
                    &["toolUsePromptTokenCount"],
                ],
                fields: [
                    Some((0, None)),
                    Some((1, None)),
                    Some((2, None)),
                    None,
                    Some((3, None)),
                    Some((4, None)),
                ],
            },
            UsageFamily::GeminiLive => &Layout {
                top: &[
                    &["promptTokenCount"],
                    &["responseTokenCount"],
                    &["cachedContentTokenCount"],
                    &["thoughtsTokenCount"],
                    &["toolUsePromptTokenCount"],
                ],
                fields: [
                    Some((0, None)),
                    Some((1, None)),
                    Some((2, None)),
                    None,
                    Some((3, None)),
                    Some((4, None)),
                ],
            },
        }
    }
}

/// A member's value: absent and `null` are "not reported"; anything but a plain non-negative integer
/// is a bad report.
fn count(doc: &[u8], range: Option<std::ops::Range<usize>>) -> Result<Option<u64>, BadReport> {
    match range {
        None => Ok(None),
        Some(r) if &doc[r.clone()] == b"null" => Ok(None),
        Some(r) => body_scan::uint_value(&doc[r]).map(Some).ok_or(BadReport),
    }
}

/// The larger of two reported values; a value beats no value.
fn max_of(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

impl Reported {
    /// Read one report object (`raw`: the bytes of the value at one of the family's paths) and combine
    /// it into what was seen. `Ok(false)` when the value is `null` (a stream chunk without usage).
    pub fn add(&mut self, family: UsageFamily, raw: &[u8]) -> Result<bool, BadReport> {
        if raw == b"null" {
            return Ok(false);
        }
        let layout = family.layout();
        // The slots live here rather than in `scan_object`'s vector: this runs on every metered
        // answer and stream event.
        let mut found = [const { None }; MAX_TOP];
        let found = &mut found[..layout.top.len()];
        body_scan::scan_object_into(raw, layout.top, found).map_err(|_: ScanError| BadReport)?;
        let mut got = [None; FIELDS];
        for (slot, place) in got.iter_mut().zip(&layout.fields) {
            let Some((at, detail)) = *place else { continue };
            let range = found[at].clone();
            *slot = match (detail, range) {
                (None, range) => count(raw, range)?,
                (Some(_), None) => None,
                (Some(_), Some(r)) if &raw[r.clone()] == b"null" => None,
                (Some(d), Some(r)) => {
                    let mut inner = [None];
                    body_scan::scan_object_at_into(raw, r, &[&[d]], &mut inner)
                        .map_err(|_| BadReport)?;
                    let [inner] = inner;
                    count(raw, inner)?
                }
            };
        }
        self.merge(&Reported { values: got });
        Ok(true)
    }

    /// Combine the reports of `other` into these (the largest value per member).
    pub fn merge(&mut self, other: &Reported) {
        for (mine, new) in self.values.iter_mut().zip(other.values) {
            *mine = max_of(*mine, new);
        }
    }

    /// The normalised usage (`None` when a sum overflows a `u64`: no real report does).
    pub fn usage(&self, family: UsageFamily) -> Option<Usage> {
        let v = |k: usize| self.values[k].unwrap_or(0);
        let u = match family {
            UsageFamily::OpenAiChat
            | UsageFamily::OpenAiResponses
            | UsageFamily::OpenAiRealtime => Usage {
                input: v(INPUT),
                output: v(OUTPUT),
                cached_input: v(CACHED),
                cache_creation: 0,
                reasoning: v(REASONING),
            },
            // Anthropic's input_tokens counts only the uncached part.
            UsageFamily::Anthropic => Usage {
                input: v(INPUT)
                    .checked_add(v(CACHED))?
                    .checked_add(v(CACHE_CREATION))?,
                output: v(OUTPUT),
                cached_input: v(CACHED),
                cache_creation: v(CACHE_CREATION),
                reasoning: 0,
            },
            // Gemini bills tool-use prompt tokens as input and thoughts as output, outside the two
            // main counts; promptTokenCount already includes the cached tokens.
            UsageFamily::Gemini | UsageFamily::GeminiLive => Usage {
                input: v(INPUT).checked_add(v(TOOL_PROMPT))?,
                output: v(OUTPUT).checked_add(v(REASONING))?,
                cached_input: v(CACHED),
                cache_creation: 0,
                reasoning: v(REASONING),
            },
        };
        Some(u)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_list_each_top_member_once_and_use_every_one() {
        for family in UsageFamily::ALL {
            let layout = family.layout();
            let names: Vec<&str> = layout.top.iter().map(|g| g[0]).collect();
            assert!(layout.top.iter().all(|g| g.len() == 1), "{family:?}");
            assert!(
                layout.top.len() <= MAX_TOP,
                "{family:?}: more slots than `add` keeps"
            );
            for (i, n) in names.iter().enumerate() {
                assert!(!names[..i].contains(n), "{family:?}: {n} twice");
                assert!(
                    layout.fields.iter().flatten().any(|&(at, _)| at == i),
                    "{family:?}: {n} unused"
                );
            }
            // Every field reads a member of its own: no two fields share a (member, detail) place.
            let places: Vec<_> = layout.fields.iter().flatten().collect();
            for (i, p) in places.iter().enumerate() {
                assert!(!places[..i].contains(p), "{family:?}: {p:?} twice");
            }
            // Input and output are reported by every family.
            assert!(layout.fields[INPUT].is_some() && layout.fields[OUTPUT].is_some());
        }
    }

    fn read(family: UsageFamily, reports: &[&str]) -> Result<Option<Usage>, BadReport> {
        let mut r = Reported::default();
        for raw in reports {
            r.add(family, raw.as_bytes())?;
        }
        Ok(r.usage(family))
    }

    #[test]
    fn openai_chat_and_responses() {
        let chat = r#"{"prompt_tokens":1117,"completion_tokens":46,"total_tokens":1163,
            "prompt_tokens_details":{"cached_tokens":1024,"audio_tokens":0},
            "completion_tokens_details":{"reasoning_tokens":12,"audio_tokens":0,
            "accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}"#;
        assert_eq!(
            read(UsageFamily::OpenAiChat, &[chat]),
            Ok(Some(Usage {
                input: 1117,
                output: 46,
                cached_input: 1024,
                cache_creation: 0,
                reasoning: 12
            }))
        );
        // Embeddings: no completion tokens, no details.
        let emb = r#"{"prompt_tokens":8,"total_tokens":8}"#;
        assert_eq!(
            read(UsageFamily::OpenAiChat, &[emb]).unwrap().unwrap(),
            Usage {
                input: 8,
                ..Usage::default()
            }
        );
        // Compatible providers sometimes send null details.
        let nulls = r#"{"prompt_tokens":5,"completion_tokens":null,"prompt_tokens_details":null}"#;
        assert_eq!(
            read(UsageFamily::OpenAiChat, &[nulls])
                .unwrap()
                .unwrap()
                .input,
            5
        );
        let resp = r#"{"input_tokens":36,"input_tokens_details":{"cached_tokens":4},
            "output_tokens":87,"output_tokens_details":{"reasoning_tokens":0},"total_tokens":123}"#;
        assert_eq!(
            read(UsageFamily::OpenAiResponses, &[resp])
                .unwrap()
                .unwrap(),
            Usage {
                input: 36,
                output: 87,
                cached_input: 4,
                cache_creation: 0,
                reasoning: 0
            }
        );
    }

    #[test]
    fn anthropic_counts_cache_reads_and_writes_as_input() {
        let start = r#"{"input_tokens":25,"cache_creation_input_tokens":200,
            "cache_read_input_tokens":1000,"output_tokens":1,"service_tier":"standard"}"#;
        let delta = r#"{"output_tokens":15}"#;
        assert_eq!(
            read(UsageFamily::Anthropic, &[start, delta])
                .unwrap()
                .unwrap(),
            Usage {
                input: 1225,
                output: 15,
                cached_input: 1000,
                cache_creation: 200,
                reasoning: 0
            }
        );
        // Gateways that report input only on message_delta: the larger (cumulative) count wins.
        let start0 = r#"{"input_tokens":0,"output_tokens":0}"#;
        let delta9 = r#"{"input_tokens":9,"output_tokens":30}"#;
        assert_eq!(
            read(UsageFamily::Anthropic, &[start0, delta9])
                .unwrap()
                .unwrap(),
            Usage {
                input: 9,
                output: 30,
                ..Usage::default()
            }
        );
    }

    #[test]
    fn realtime_sessions_read_their_own_member_names() {
        // OpenAI Realtime's `response.done` usage: `input_token_details`, not the Responses API's
        // `input_tokens_details`; the Responses family would miss the cached tokens.
        let done = r#"{"total_tokens":57,"input_tokens":40,"output_tokens":17,
            "input_token_details":{"text_tokens":30,"audio_tokens":10,"cached_tokens":8},
            "output_token_details":{"text_tokens":5,"audio_tokens":12}}"#;
        let want = Usage {
            input: 40,
            output: 17,
            cached_input: 8,
            ..Usage::default()
        };
        assert_eq!(read(UsageFamily::OpenAiRealtime, &[done]), Ok(Some(want)));
        assert_eq!(
            read(UsageFamily::OpenAiResponses, &[done])
                .unwrap()
                .unwrap()
                .cached_input,
            0
        );
        // Gemini Live's `usageMetadata` counts the output in `responseTokenCount`.
        let live = r#"{"promptTokenCount":21,"responseTokenCount":9,"totalTokenCount":30,
            "cachedContentTokenCount":4}"#;
        let want = Usage {
            input: 21,
            output: 9,
            cached_input: 4,
            ..Usage::default()
        };
        assert_eq!(read(UsageFamily::GeminiLive, &[live]), Ok(Some(want)));
        assert_eq!(
            read(UsageFamily::Gemini, &[live]).unwrap().unwrap().output,
            0
        );
    }

    #[test]
    fn gemini_counts_thoughts_as_output_and_tool_prompts_as_input() {
        let meta = r#"{"promptTokenCount":120,"candidatesTokenCount":40,"totalTokenCount":210,
            "cachedContentTokenCount":100,"thoughtsTokenCount":50,"toolUsePromptTokenCount":7,
            "promptTokensDetails":[{"modality":"TEXT","tokenCount":120}]}"#;
        assert_eq!(
            read(UsageFamily::Gemini, &[r#"{"promptTokenCount":120}"#, meta])
                .unwrap()
                .unwrap(),
            Usage {
                input: 127,
                output: 90,
                cached_input: 100,
                cache_creation: 0,
                reasoning: 50
            }
        );
    }

    #[test]
    fn bad_reports() {
        for raw in [
            r#"{"prompt_tokens":1.0}"#,
            r#"{"prompt_tokens":-1}"#,
            r#"{"prompt_tokens":"1"}"#,
            r#"{"prompt_tokens":1e3}"#,
            r#"{"prompt_tokens":18446744073709551616}"#,
            r#"{"prompt_tokens":1,"prompt_tokens":2}"#,
            r#"{"prompt_tokens_details":{"cached_tokens":1,"cached_tokens":1}}"#,
            r#"{"prompt_tokens_details":[1]}"#,
            r#"{"prompt_tokens":1"#,
            "[]",
            "12",
            r#""usage""#,
        ] {
            assert_eq!(
                Reported::default().add(UsageFamily::OpenAiChat, raw.as_bytes()),
                Err(BadReport),
                "{raw}"
            );
        }
        assert_eq!(
            Reported::default().add(UsageFamily::OpenAiChat, b"null"),
            Ok(false)
        );
        let huge = format!(
            r#"{{"input_tokens":{m},"cache_read_input_tokens":{m}}}"#,
            m = u64::MAX
        );
        assert_eq!(read(UsageFamily::Anthropic, &[&huge]), Ok(None));
    }
}
