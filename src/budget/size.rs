//! Sizing a budgeted call (`docs/budgets.md` §3), as pure functions: what the request asks for (its
//! model, its output ceiling, which usage report its answer carries), the worst case of its input
//! (bytes, the configured overhead, an allowance per media part), what a reservation of a given
//! output costs, and, when a reservation found no room, the largest output every line can still pay
//! for.

use crate::config::budgets::Budgets;
use crate::error::Error;
use crate::json::body_scan::{self, ScanError};
use crate::meter::price::Price;
use crate::meter::usage::{Usage, UsageFamily};
use crate::store::{Spend, SpendLine};
use crate::upstream::api_routes::{route, Generates, Group};
use crate::upstream::provider::ApiFamily;

/// The limit named when a budget cannot be enforced on an endpoint.
pub const BUDGET: &str = "spend budget (`bud`, `uq`)";
/// Longest model name read from a body, in bytes (the price table's bound).
const MAX_MODEL: usize = 256;

/// What a request asks for, as far as its cost goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Asked {
    /// The model, from the path or the body (`None`: the request names none).
    pub model: Option<String>,
    /// The largest output ceiling the body names (`None`: none, the relay writes one).
    pub output: Option<u64>,
    /// The endpoint generates text (its output is bounded by a ceiling); else it costs input only.
    pub generates: bool,
}

/// Read what `body` (already through the token's policy) asks of the endpoint `rest` of `family`. An
/// endpoint whose output the relay cannot bound refuses the budget rather than guess.
pub fn asked(family: ApiFamily, rest: &str, body: &[u8]) -> Result<Asked, Error> {
    let r = route(family, rest).ok_or(Error::LimitNotEnforceable(BUDGET))?;
    let out = match r.generates {
        // A request without a body (a GET of a listing or a file) asks nothing to be generated.
        Generates::Unknown if body.is_empty() => None,
        Generates::Unknown => return Err(Error::LimitNotEnforceable(BUDGET)),
        Generates::Nothing => None,
        Generates::Bounded(out) => Some(out),
    };
    let path_model = r
        .path_model
        .as_ref()
        .map(|pm| match pm.collection.as_deref() {
            Some("tunedModels") => format!("tunedModels/{}", pm.id),
            _ => pm.id.clone(),
        });
    let mut asked = Asked {
        model: path_model,
        output: None,
        generates: out.is_some(),
    };
    if body.is_empty() {
        return Ok(asked);
    }
    const MODEL: Group = &["model"];
    let mut wanted: Vec<Group> = vec![MODEL];
    if let Some(out) = out {
        match out.container {
            Some(c) => wanted.push(c),
            None => wanted.extend_from_slice(out.ceilings),
        }
    }
    let top = body_scan::scan_object(body, &wanted).map_err(scan_error)?;
    if asked.model.is_none() {
        if let Some(range) = &top.found[0] {
            asked.model = body_scan::decode_string(&body[range.clone()], MAX_MODEL)
                .map_err(|_| Error::InvalidMember("model", "a string"))?;
        }
    }
    let Some(out) = out else { return Ok(asked) };
    // The ceilings' value ranges, at the top level or inside the family's container.
    let found = match (out.container, top.found[1].clone()) {
        (None, _) => top.found[1..].to_vec(),
        (Some(_), None) => Vec::new(),
        (Some(container), Some(range)) => {
            body_scan::scan_object_at(body, range, out.ceilings)
                .map_err(|_| Error::InvalidMember(container[0], "an object"))?
                .found
        }
    };
    for (group, range) in out.ceilings.iter().zip(found) {
        let Some(range) = range else { continue };
        let v = body_scan::uint_value(&body[range])
            .ok_or(Error::InvalidMember(group[0], "a non-negative integer"))?;
        asked.output = Some(asked.output.map_or(v, |o| o.max(v)));
    }
    Ok(asked)
}

fn scan_error(e: ScanError) -> Error {
    match e {
        ScanError::Duplicate(_) => Error::DuplicateMember("model or output ceiling"),
        ScanError::NotAnObject => Error::InvalidBody("not a JSON object"),
        ScanError::TooDeep => Error::InvalidBody("nested too deep"),
        ScanError::NotUtf8 => Error::InvalidBody("not UTF-8"),
        ScanError::LoneSurrogate => Error::InvalidBody("a lone surrogate escape"),
        ScanError::Syntax | ScanError::NotAString => Error::InvalidBody("not valid JSON"),
    }
}

/// Which usage report the answer to `rest` carries, if the relay can read one.
pub fn usage_family(family: ApiFamily, rest: &str) -> Option<UsageFamily> {
    let path = rest.split('?').next().unwrap_or(rest);
    match family {
        ApiFamily::OpenAi | ApiFamily::OpenAiCompatible | ApiFamily::Azure => {
            if path.ends_with("/chat/completions")
                || path.ends_with("/completions")
                || path.ends_with("/embeddings")
            {
                Some(UsageFamily::OpenAiChat)
            } else if path.ends_with("/responses")
                || path.ends_with("/images/generations")
                || path.ends_with("/images/edits")
            {
                Some(UsageFamily::OpenAiResponses)
            } else {
                None
            }
        }
        ApiFamily::Anthropic => path
            .ends_with("/messages")
            .then_some(UsageFamily::Anthropic),
        ApiFamily::Gemini => (path.ends_with(":generateContent")
            || path.ends_with(":streamGenerateContent"))
        .then_some(UsageFamily::Gemini),
        ApiFamily::Other => None,
    }
}

/// The worst case of a call's input: every body byte a token (a byte-level BPE token covers at least
/// one byte, and JSON only adds bytes), the hidden prompt overhead, and an allowance per media part.
pub fn worst_input(cfg: &Budgets, body_len: usize, media_parts: u64) -> u64 {
    (body_len as u64)
        .saturating_add(cfg.input_overhead)
        .saturating_add(media_parts.saturating_mul(cfg.part_allowance))
}

/// The price a reservation is taken at: every input token at the dearer of the input and cache-write
/// prices (the provider decides which applies), as `Price::affordable_output` assumes.
pub fn reservation_price(p: Price) -> Price {
    Price {
        input: p.input.max(p.cache_write),
        ..p
    }
}

/// What a call of `input` and `output` tokens reserves: one call, the tokens, and their cost at the
/// reservation price (zero without a price). `None` when the cost overflows.
pub fn amount(price: Option<Price>, input: u64, output: u64) -> Option<Spend> {
    let cost = match price {
        Some(p) => reservation_price(p)
            .cost(&Usage {
                input,
                output,
                ..Usage::default()
            })
            .ok()?,
        None => 0,
    };
    Some(Spend {
        calls: 1,
        input,
        output,
        cached_input: 0,
        cost,
    })
}

/// The largest output, at most `want`, that every line can pay for on top of what it `used` and of
/// `input`; `Err(i)` names the first line (index into `lines`) that cannot pay even for no output.
/// A cost limit without `price` counts as unpayable (the caller refuses unpriced money budgets first).
pub fn fit_output(
    lines: &[SpendLine],
    used: &[Spend],
    input: u64,
    want: u64,
    price: Option<Price>,
) -> Result<u64, usize> {
    let mut out = want;
    for (i, (line, used)) in lines.iter().zip(used).enumerate() {
        let l = &line.limit;
        if l.calls.is_some_and(|c| used.calls >= c) {
            return Err(i);
        }
        if let Some(t) = l.tokens {
            let room = t.saturating_sub(used.tokens());
            out = out.min(room.checked_sub(input).ok_or(i)?);
        }
        if let Some(c) = l.cost {
            let room = c.checked_sub(used.cost).ok_or(i)?;
            let p = price.map(reservation_price).ok_or(i)?;
            out = out.min(p.affordable_output(room, input).ok_or(i)?);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SpendLimit;

    fn line(tokens: Option<u64>, cost: Option<u64>, calls: Option<u64>) -> SpendLine {
        SpendLine {
            key: "k".into(),
            limit: SpendLimit {
                calls,
                tokens,
                cost,
            },
            keep_until: 1,
        }
    }

    #[test]
    fn reads_model_and_ceiling_per_family() {
        let a = asked(
            ApiFamily::OpenAi,
            "/chat/completions",
            br#"{"model":"gpt-4o","max_tokens":50,"max_completion_tokens":70}"#,
        )
        .unwrap();
        assert_eq!(a.model.as_deref(), Some("gpt-4o"));
        assert_eq!(a.output, Some(70));
        assert!(a.generates);
        let g = asked(
            ApiFamily::Gemini,
            "/v1beta/models/gemini-2.0-flash:generateContent",
            br#"{"contents":[],"generationConfig":{"maxOutputTokens":9}}"#,
        )
        .unwrap();
        assert_eq!(g.model.as_deref(), Some("gemini-2.0-flash"));
        assert_eq!(g.output, Some(9));
        let e = asked(
            ApiFamily::OpenAi,
            "/embeddings",
            br#"{"model":"e","input":"x"}"#,
        )
        .unwrap();
        assert!(!e.generates);
        let none = asked(
            ApiFamily::Anthropic,
            "/v1/messages",
            br#"{"model":"c","messages":[]}"#,
        )
        .unwrap();
        assert_eq!(none.output, None);
    }

    #[test]
    fn unknown_endpoints_and_bad_bodies_are_refused() {
        assert_eq!(
            asked(ApiFamily::OpenAi, "/audio/speech", b"{}"),
            Err(Error::LimitNotEnforceable(BUDGET))
        );
        assert!(asked(
            ApiFamily::OpenAi,
            "/chat/completions",
            br#"{"max_tokens":"9"}"#
        )
        .is_err());
        assert!(asked(
            ApiFamily::OpenAi,
            "/chat/completions",
            br#"{"max_tokens":1,"max_tokens":2}"#
        )
        .is_err());
        assert!(asked(ApiFamily::OpenAi, "/chat/completions", b"[1]").is_err());
    }

    #[test]
    fn sizing_takes_the_tightest_line() {
        let price = Price {
            input: 1_000_000,
            output: 2_000_000,
            cached_input: 0,
            cache_write: 0,
        };
        // 1 micro-unit per input token, 2 per output token.
        let lines = [line(Some(1000), None, None), line(None, Some(500), Some(3))];
        let used = [
            Spend {
                input: 600,
                output: 100,
                ..Spend::default()
            },
            Spend {
                calls: 2,
                cost: 100,
                ..Spend::default()
            },
        ];
        // Tokens: 300 left, 100 of them input: 200 output. Money: 400 left, 100 input: 150 output.
        assert_eq!(fit_output(&lines, &used, 100, 4096, Some(price)), Ok(150));
        assert_eq!(fit_output(&lines, &used, 100, 10, Some(price)), Ok(10));
        assert_eq!(fit_output(&lines, &used, 301, 10, Some(price)), Err(0));
        let used_up = [
            used[0],
            Spend {
                calls: 3,
                ..used[1]
            },
        ];
        assert_eq!(fit_output(&lines, &used_up, 1, 10, Some(price)), Err(1));
        assert_eq!(fit_output(&lines, &used, 1, 10, None), Err(1));
        // What fits is exactly payable: the amount at that output stays within the money line.
        let a = amount(Some(price), 100, 150).unwrap();
        assert!(used[1].cost + a.cost <= 500);
        assert!(used[1].cost + amount(Some(price), 100, 151).unwrap().cost > 500);
    }

    #[test]
    fn usage_families_by_path() {
        assert_eq!(
            usage_family(ApiFamily::OpenAi, "/chat/completions"),
            Some(UsageFamily::OpenAiChat)
        );
        assert_eq!(
            usage_family(ApiFamily::OpenAi, "/responses"),
            Some(UsageFamily::OpenAiResponses)
        );
        assert_eq!(
            usage_family(ApiFamily::Anthropic, "/v1/messages"),
            Some(UsageFamily::Anthropic)
        );
        assert_eq!(
            usage_family(ApiFamily::Gemini, "/v1beta/models/g:streamGenerateContent"),
            Some(UsageFamily::Gemini)
        );
        assert_eq!(usage_family(ApiFamily::OpenAi, "/models"), None);
    }

    #[test]
    fn worst_input_adds_overhead_and_parts() {
        let cfg = Budgets::default();
        assert_eq!(worst_input(&cfg, 100, 2), 100 + 512 + 4000);
    }
}
