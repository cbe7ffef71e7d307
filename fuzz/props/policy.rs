//! The policy's body inspection (`policy::apply` over `body_scan.rs`), judged by what a provider reads:
//! the forwarded body as `serde_json` parses it. A body the policy accepts for a token that limits
//! models never carries a model outside the list, under any spelling the JSON grammar allows (escaped
//! names, repeated members, whitespace): its top level names `model` at most once, and that value is
//! an allowed string, the forced one when the token forces it; it carries no `models` fallback list;
//! with an output ceiling, the ceiling members present are integers at most the ceiling and the
//! multipliers (`n` on chat completions) at most 1. The scanner itself is checked against `serde_json` too: the value ranges it reports hold
//! the values `serde_json` reads for those names, and a repeated name is reported as one.
//!
//! Input: a flag byte (which limits the token carries, which endpoint), then the body.

use relayapi::json::body_scan::{scan_object, ScanError};
use relayapi::request::policy::apply;
use relayapi::token::format::{Claims, Ext, MtokMode};
use relayapi::upstream::provider::ApiFamily;
use serde_json::Value;

use super::json;

const ALLOWED: [&str; 2] = ["gpt-4o-mini", "claude-3-5-haiku-latest"];
const FORCED: &str = "gpt-4o-mini";
const CEILING: u64 = 100;

/// Endpoints whose body names the model and whose output members are at the top level: family, path,
/// ceiling members, multiplier members.
type Endpoint = (
    ApiFamily,
    &'static str,
    &'static [&'static str],
    &'static [&'static str],
);

const CHAT_CEILINGS: &[&str] = &["max_tokens", "max_completion_tokens"];
const ENDPOINTS: [Endpoint; 4] = [
    (
        ApiFamily::OpenAi,
        "/v1/chat/completions",
        CHAT_CEILINGS,
        &["n"],
    ),
    (
        ApiFamily::OpenAiCompatible,
        "/v1/chat/completions",
        CHAT_CEILINGS,
        &["n"],
    ),
    (ApiFamily::Anthropic, "/v1/messages", &["max_tokens"], &[]),
    (ApiFamily::OpenAi, "/v1/embeddings", &[], &[]),
];

pub fn check(data: &[u8]) {
    let Some((&flags, body)) = data.split_first() else {
        return;
    };
    check_scanner(body);

    let (family, path, ceilings, multipliers) =
        ENDPOINTS[usize::from(flags >> 4) % ENDPOINTS.len()];
    let models = flags & 1 != 0;
    let forced = flags & 2 != 0;
    let mtok = flags & 4 != 0;
    let claims = Claims {
        models: models.then(|| ALLOWED.iter().map(|m| (*m).to_owned()).collect()),
        ext: forced.then(|| Ext {
            rep_m: Some(FORCED.to_owned()),
        }),
        mtok: mtok.then_some(CEILING),
        mtok_mode: mtok.then_some(if flags & 8 != 0 {
            MtokMode::Reject
        } else {
            MtokMode::Clamp
        }),
        ..Claims::new(
            "0123456789abcdef0123456789abcdef".into(),
            "acme".into(),
            1,
            2,
            "openai".into(),
        )
    };
    let Ok(applied) = apply(&claims, family, path, body.to_vec()) else {
        return;
    };
    if !(models || forced || mtok) {
        assert_eq!(applied.body, body, "a token without limits changes nothing");
        return;
    }
    if applied.body.is_empty() {
        return;
    }
    let text = std::str::from_utf8(&applied.body).expect("an accepted body is UTF-8");
    let Some((value, _)) = json::parse(text) else {
        // serde_json refuses some texts the scanner passes through unread (a lone surrogate escape in
        // a string the policy does not read, a huge number); the model was still read exactly.
        assert!(
            json::refused_for_serde_limit(text),
            "forwarded a body that is not JSON: {text:?}"
        );
        return;
    };
    let names = json::top_level_names(text).expect("an object");
    let count = |name: &str| names.iter().filter(|n| *n == name).count();
    if models || forced {
        assert!(count("model") <= 1, "model named twice: {text}");
        assert_eq!(count("models"), 0, "fallback list forwarded: {text}");
        if let Some(model) = value.get("model") {
            let model = model.as_str().expect("the model is a string");
            if forced {
                assert_eq!(model, FORCED);
            } else {
                assert!(ALLOWED.contains(&model), "forbidden model {model:?}");
            }
        }
    }
    if mtok {
        for name in ceilings {
            assert!(count(name) <= 1);
            if let Some(v) = value.get(*name) {
                let n = v
                    .as_u64()
                    .filter(|_| !v.is_f64())
                    .expect("an integer ceiling");
                assert!(n <= CEILING, "{name} {n} over the ceiling");
            }
        }
        for name in multipliers {
            assert!(count(name) <= 1);
            if let Some(n) = value.get(*name) {
                assert!(n.as_u64().is_some_and(|n| n <= 1), "{name} = {n}");
            }
        }
    }
}

/// `scan_object` against `serde_json` for two member groups.
fn check_scanner(body: &[u8]) {
    let wanted: [&[&str]; 2] = [&["model"], &["max_tokens", "maxTokens"]];
    let scanned = scan_object(body, &wanted);
    let Ok(text) = std::str::from_utf8(body) else {
        assert_eq!(scanned, Err(ScanError::NotUtf8));
        return;
    };
    let names = json::top_level_names(text);
    match scanned {
        Ok(scan) => {
            // serde_json has limits of its own that the scanner, checking the grammar, does not.
            let (Some(names), Some((value, _))) = (names, json::parse(text)) else {
                assert!(
                    json::refused_for_serde_limit(text),
                    "scanned a body serde_json refuses: {text:?}"
                );
                return;
            };
            for (group, found) in wanted.iter().zip(&scan.found) {
                let present: Vec<&&str> = group
                    .iter()
                    .filter(|g| names.iter().any(|n| n == **g))
                    .collect();
                match found {
                    None => assert!(present.is_empty(), "{group:?} missed"),
                    Some(range) => {
                        assert_eq!(present.len(), 1, "{group:?}");
                        assert_eq!(names.iter().filter(|n| n == present[0]).count(), 1);
                        let raw: Value = serde_json::from_slice(&body[range.clone()])
                            .expect("a reported range is one JSON value");
                        assert_eq!(Some(&raw), value.get(*present[0]), "{group:?}");
                    }
                }
            }
        }
        // The scanner stops at the second copy, so the rest of the body may not even be JSON; when it
        // is, the name really is there twice.
        Err(ScanError::Duplicate(i)) => {
            if let Some(names) = names {
                let n = names
                    .iter()
                    .filter(|n| wanted[i].contains(&n.as_str()))
                    .count();
                assert!(
                    n >= 2,
                    "{:?} reported twice but appears {n} times",
                    wanted[i]
                );
            }
        }
        Err(_) => {}
    }
}
