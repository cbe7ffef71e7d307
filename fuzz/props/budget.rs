//! Sizing a budgeted call from a stranger's body (`budget/parts.rs`, `budget/size.rs`, and the ceiling
//! written by `policy::cap_output`), judged by what a provider reads: `serde_json`'s parse of the same
//! bytes. The media-part count accepts exactly the JSON texts `serde_json` accepts and never counts
//! fewer parts than the reference walk over the parsed tree (a provider could bill each one); the
//! model and output ceiling read are those `serde_json` sees; after the ceiling is capped, the body
//! reads back with a ceiling at most the cap, whatever the spelling of the original.
//!
//! Input: a flag byte (which endpoint, which cap), then the body.

use relayapi::budget::parts::{media_parts, MEDIA_MEMBERS, MEDIA_TYPES};
use relayapi::budget::size::asked;
use relayapi::request::policy::cap_output;
use relayapi::upstream::provider::ApiFamily;
use serde_json::Value;

use super::json;

const ENDPOINTS: [(ApiFamily, &str, &[&str]); 3] = [
    (
        ApiFamily::OpenAi,
        "/v1/chat/completions",
        &["max_tokens", "max_completion_tokens"],
    ),
    (ApiFamily::Anthropic, "/v1/messages", &["max_tokens"]),
    (ApiFamily::OpenAi, "/v1/responses", &["max_output_tokens"]),
];

/// Media parts in a parsed tree, counted as the module doc says.
fn reference_parts(v: &Value) -> u64 {
    match v {
        Value::Array(a) => a.iter().map(reference_parts).sum(),
        Value::Object(o) => o
            .iter()
            .map(|(k, v)| {
                let own = u64::from(
                    MEDIA_MEMBERS.contains(&k.as_str())
                        || (k == "type" && v.as_str().is_some_and(|t| MEDIA_TYPES.contains(&t))),
                );
                own + reference_parts(v)
            })
            .sum(),
        _ => 0,
    }
}

pub fn check(data: &[u8]) {
    let Some((&flags, body)) = data.split_first() else {
        return;
    };
    let parsed = std::str::from_utf8(body).ok().and_then(json::parse);
    let counted = media_parts(body);
    match &parsed {
        Some((value, _)) => {
            let n = counted.expect("serde_json reads it, so the count must too");
            assert!(n >= reference_parts(value), "undercounted media parts");
        }
        None => assert!(counted.is_err(), "counted parts of a body that is not JSON"),
    }

    let (family, path, ceilings) = ENDPOINTS[usize::from(flags) % ENDPOINTS.len()];
    let Ok(a) = asked(family, path, body) else {
        return;
    };
    if body.is_empty() {
        return;
    }
    let Some((value, duplicate)) = parsed else {
        // The scanner reads a few texts serde_json refuses for its own limits; nothing to compare.
        return;
    };
    if !duplicate {
        assert_eq!(
            a.model.as_deref(),
            value
                .get("model")
                .and_then(Value::as_str)
                .filter(|m| m.len() <= 256),
            "model read differently"
        );
        let most = ceilings
            .iter()
            .filter_map(|c| value.get(*c).and_then(Value::as_u64))
            .max();
        assert_eq!(a.output, most, "ceiling read differently");
    }
    let cap = u64::from(flags >> 2);
    let Ok(capped) = cap_output(family, path, body.to_vec(), cap) else {
        return;
    };
    let again = asked(family, path, &capped).expect("a capped body reads back");
    assert!(
        again.output.is_some_and(|o| o <= cap),
        "ceiling above the cap"
    );
    assert_eq!(again.model, a.model, "capping changed the model");
}
