//! The request shapes of each provider API family ([`ApiFamily`]): where a request names its model
//! (the body's `model`, Azure's deployment path segment, Gemini's `models/{m}` resource in the path) and
//! which body members bound or multiply the text an endpoint generates. Pure classification of a
//! provider-relative path; what a token's limits do with it is `request/policy.rs`. A path a family's rules
//! cannot classify gives `None`, and the policy then refuses rather than guesses.

use crate::upstream::provider::ApiFamily;

/// The spellings of one member (Google's JSON mapping accepts camelCase and the proto's snake_case).
pub(crate) type Group = &'static [&'static str];

/// How an endpoint bounds the text it generates.
pub(crate) struct Output {
    /// The object holding the members below when it is not the body itself (Gemini `generationConfig`).
    pub(crate) container: Option<Group>,
    /// Members that cap generated tokens: each one present is clamped or refused above the ceiling.
    pub(crate) ceilings: &'static [Group],
    /// Members that ask for several answers per request, multiplying the output: above 1 they are
    /// clamped to 1 (`mtok_mode: clamp`) or refused (`reject`).
    pub(crate) multipliers: &'static [Group],
    /// The ceiling member added (inside `container`, itself added when absent) when none is present.
    pub(crate) insert: &'static str,
}

/// OpenAI chat completions, on the OpenAI API itself: reasoning models refuse `max_tokens`.
const OPENAI_CHAT: Output = Output {
    container: None,
    ceilings: &[&["max_tokens"], &["max_completion_tokens"]],
    multipliers: &[&["n"]],
    insert: "max_completion_tokens",
};
/// Chat completions on OpenAI-compatible servers, which all understand `max_tokens`.
const COMPATIBLE_CHAT: Output = Output {
    insert: "max_tokens",
    ..OPENAI_CHAT
};
/// Legacy text completions: `best_of` candidates are generated server-side, each up to `max_tokens`.
const COMPLETIONS: Output = Output {
    container: None,
    ceilings: &[&["max_tokens"]],
    multipliers: &[&["n"], &["best_of"]],
    insert: "max_tokens",
};
/// The OpenAI Responses API.
const RESPONSES: Output = Output {
    container: None,
    ceilings: &[&["max_output_tokens"]],
    multipliers: &[],
    insert: "max_output_tokens",
};
/// Anthropic Messages (`max_tokens` is required there, so adding it also makes a bare request valid).
const ANTHROPIC_MESSAGES: Output = Output {
    container: None,
    ceilings: &[&["max_tokens"]],
    multipliers: &[],
    insert: "max_tokens",
};
/// Anthropic's legacy Text Completions.
const ANTHROPIC_COMPLETE: Output = Output {
    container: None,
    ceilings: &[&["max_tokens_to_sample"]],
    multipliers: &[],
    insert: "max_tokens_to_sample",
};
/// Gemini `generateContent` and `streamGenerateContent`.
const GEMINI_GENERATE: Output = Output {
    container: Some(&["generationConfig", "generation_config"]),
    ceilings: &[&["maxOutputTokens", "max_output_tokens"]],
    multipliers: &[&["candidateCount", "candidate_count"]],
    insert: "maxOutputTokens",
};

/// What an endpoint generates.
#[derive(Clone, Copy)]
pub(crate) enum Generates {
    /// Nothing the ceiling is about (embeddings, token counts, model listings).
    Nothing,
    /// Text, bounded as described.
    Bounded(&'static Output),
    /// The rule set does not know this endpoint: a ceiling cannot be enforced there.
    Unknown,
}

/// What the body's top-level `model` member means on a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyModel {
    /// It names the model: required under `models`, written (or added) under `ext.rep_m`.
    Names,
    /// The path names the model; the body's copy, when present, is held to the same rules too (Azure's
    /// SDK sends both).
    AlsoChecked,
    /// The path names the model and the API defines no body copy (Gemini): a `model` member is refused
    /// rather than guessing which one the provider would use.
    Refused,
}

/// A model named in the path, decoded, with the path around it so it can be rebuilt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PathModel {
    /// Decoded segments before the model's own segments (`["v1beta"]`, `["openai", "deployments"]`).
    pub(crate) before: Vec<String>,
    /// Gemini's collection (`models` or `tunedModels`); `None` for Azure deployments.
    pub(crate) collection: Option<String>,
    /// The model or deployment id.
    pub(crate) id: String,
    /// What follows the id: `:generateContent`, `/chat/completions`, or nothing.
    pub(crate) after: String,
}

impl PathModel {
    /// Is this model in the token's allow-list? Gemini compares resource names: `models/x` is allowed by
    /// `x` or `models/x`, a tuned model only by its full `tunedModels/x`.
    pub(crate) fn allowed(&self, models: &[String]) -> bool {
        models.iter().any(|m| match self.collection.as_deref() {
            None => *m == self.id,
            Some(c) => {
                m.strip_prefix(c).and_then(|r| r.strip_prefix('/')) == Some(self.id.as_str())
                    || (c == "models" && *m == self.id)
            }
        })
    }

    /// The normalised path: decoded segments, so what was checked is what is forwarded.
    pub(crate) fn path(&self) -> String {
        let mut p = String::new();
        for seg in &self.before {
            p.push('/');
            p.push_str(seg);
        }
        if let Some(c) = &self.collection {
            p.push('/');
            p.push_str(c);
        }
        p.push('/');
        p.push_str(&self.id);
        p.push_str(&self.after);
        p
    }

    /// The path with the forced model in place of the requested one; `None` when the forced name is not
    /// a plain id (optionally after `models/` or `tunedModels/` on Gemini).
    pub(crate) fn forced(&self, forced: &str) -> Option<String> {
        let mut m = self.clone();
        match &self.collection {
            None => m.id = forced.to_string(),
            Some(_) => {
                let (c, id) = match forced.split_once('/') {
                    Some((c @ ("models" | "tunedModels"), id)) => (c, id),
                    Some(_) => return None,
                    None => ("models", forced),
                };
                m.collection = Some(c.to_string());
                m.id = id.to_string();
            }
        }
        valid_id(&m.id).then(|| m.path())
    }
}

/// How the rule set of a family reads one request path.
pub(crate) struct Route {
    pub(crate) path_model: Option<PathModel>,
    pub(crate) body_model: BodyModel,
    pub(crate) generates: Generates,
}

/// The rule set for `family` applied to a provider-relative path (no query); `None` when the rules
/// cannot tell where this request names its model.
pub(crate) fn route(family: ApiFamily, rest: &str) -> Option<Route> {
    match family {
        ApiFamily::OpenAi | ApiFamily::OpenAiCompatible => Some(Route {
            path_model: None,
            body_model: BodyModel::Names,
            generates: openai_output(family, rest),
        }),
        ApiFamily::Azure => azure_route(rest),
        ApiFamily::Anthropic => Some(Route {
            path_model: None,
            body_model: BodyModel::Names,
            // By last segments, like OpenAI's: an operator's base URL may already end in `/v1`.
            generates: if rest.ends_with("/messages") {
                Generates::Bounded(&ANTHROPIC_MESSAGES)
            } else if rest.ends_with("/complete") {
                Generates::Bounded(&ANTHROPIC_COMPLETE)
            } else if rest.ends_with("/messages/count_tokens") || rest.ends_with("/models") {
                Generates::Nothing
            } else {
                Generates::Unknown
            },
        }),
        ApiFamily::Gemini => gemini_route(rest),
        ApiFamily::Other => None,
    }
}

/// OpenAI endpoints by their last segments (the base path may or may not end in `/v1`).
fn openai_output(family: ApiFamily, rest: &str) -> Generates {
    if rest.ends_with("/chat/completions") {
        Generates::Bounded(if family == ApiFamily::OpenAiCompatible {
            &COMPATIBLE_CHAT
        } else {
            &OPENAI_CHAT
        })
    } else if rest.ends_with("/completions") {
        Generates::Bounded(&COMPLETIONS)
    } else if rest.ends_with("/responses") {
        Generates::Bounded(&RESPONSES)
    } else if rest.ends_with("/embeddings") || rest.ends_with("/moderations") {
        Generates::Nothing
    } else {
        Generates::Unknown
    }
}

/// Azure OpenAI: `/deployments/{name}/...` picks the model by deployment (the body's `model`, which the
/// SDK also sends, is held to the same rules); other paths (the v1 API) name it in the body.
fn azure_route(rest: &str) -> Option<Route> {
    let segs = decoded_segments(rest)?;
    let Some(k) = segs.iter().position(|s| s == "deployments") else {
        return Some(Route {
            path_model: None,
            body_model: BodyModel::Names,
            generates: openai_output(ApiFamily::Azure, rest),
        });
    };
    let id = segs.get(k + 1).filter(|id| valid_id(id))?;
    let after: String = segs[k + 2..].iter().map(|s| format!("/{s}")).collect();
    let generates = openai_output(ApiFamily::Azure, &after);
    Some(Route {
        path_model: Some(PathModel {
            before: segs[..=k].to_vec(),
            collection: None,
            id: id.clone(),
            after,
        }),
        body_model: BodyModel::AlsoChecked,
        generates,
    })
}

/// Gemini: `[/{version}]/{models|tunedModels}/{id}[:{method}]` and the model listing; anything else
/// (files, caches, batches, the OpenAI-compatible paths, upload URLs) is not classified.
fn gemini_route(rest: &str) -> Option<Route> {
    let segs = decoded_segments(rest)?;
    let mut at = 0;
    if segs
        .first()
        .is_some_and(|v| matches!(v.as_str(), "v1" | "v1beta" | "v1alpha"))
    {
        at = 1;
    }
    let before = segs[..at].to_vec();
    if is_gemini_live(&segs) {
        // Gemini Live names its model in the session's `setup` message, which the relay reads as it
        // passes (`ws/model_guard.rs`); what a session generates has no ceiling the relay can set.
        return Some(Route {
            path_model: None,
            body_model: BodyModel::Refused,
            generates: Generates::Unknown,
        });
    }
    match &segs[at..] {
        [list] if list == "models" || list == "tunedModels" => Some(Route {
            path_model: None,
            body_model: BodyModel::Refused,
            generates: Generates::Nothing,
        }),
        [collection, last] if collection == "models" || collection == "tunedModels" => {
            let (id, method) = match last.split_once(':') {
                Some((id, method)) => (id, Some(method)),
                None => (last.as_str(), None),
            };
            if !valid_id(id) {
                return None;
            }
            let generates = match method {
                None | Some("countTokens" | "embedContent") => Generates::Nothing,
                Some("generateContent" | "streamGenerateContent") => {
                    Generates::Bounded(&GEMINI_GENERATE)
                }
                Some(_) => return None,
            };
            Some(Route {
                path_model: Some(PathModel {
                    before,
                    collection: Some(collection.clone()),
                    id: id.to_string(),
                    after: method.map(|m| format!(":{m}")).unwrap_or_default(),
                }),
                body_model: BodyModel::Refused,
                generates,
            })
        }
        _ => None,
    }
}

/// Gemini Live's WebSocket endpoint: `/ws/google.ai.generativelanguage.{version}.GenerativeService.
/// BidiGenerateContent`.
fn is_gemini_live(segs: &[String]) -> bool {
    match segs {
        [ws, service] if ws == "ws" => service
            .strip_prefix("google.ai.generativelanguage.")
            .and_then(|r| r.split_once('.'))
            .is_some_and(|(version, rest)| {
                matches!(version, "v1" | "v1beta" | "v1alpha")
                    && rest == "GenerativeService.BidiGenerateContent"
            }),
        _ => false,
    }
}

/// The path's segments, percent-decoded (a provider decodes them before routing, so the rules must
/// too). `None` for a bad escape, a decoded byte sequence that is not UTF-8, or a decoded `/`.
fn decoded_segments(rest: &str) -> Option<Vec<String>> {
    let rest = rest.strip_prefix('/')?;
    rest.split('/')
        .map(|seg| {
            let b = seg.as_bytes();
            let mut out = Vec::with_capacity(b.len());
            let mut i = 0;
            while i < b.len() {
                if b[i] == b'%' {
                    let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
                    out.push(u8::from_str_radix(hex, 16).ok()?);
                    i += 3;
                } else {
                    out.push(b[i]);
                    i += 1;
                }
            }
            String::from_utf8(out).ok().filter(|s| !s.contains('/'))
        })
        .collect()
}

/// A model or deployment id as it may appear in a path: letters, digits, `.`, `_` and `-`, which is
/// every published Gemini model and Azure deployment name and leaves no room for path tricks.
fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 256
        && id != "."
        && id != ".."
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_decoded_once_and_strictly() {
        assert_eq!(
            decoded_segments("/v1beta/models/gemini%2D2.0:generateContent"),
            Some(vec![
                "v1beta".into(),
                "models".into(),
                "gemini-2.0:generateContent".into()
            ])
        );
        assert_eq!(
            decoded_segments("/a/%2561"),
            Some(vec!["a".into(), "%61".into()])
        );
        for bad in ["no-slash", "/a%2fb", "/%zz", "/%4", "/%c0%ae", "/%ff"] {
            assert_eq!(decoded_segments(bad), None, "{bad}");
        }
        assert!(valid_id("gemini-2.0-flash_001.x"));
        for bad in ["", ".", "..", "a b", "a/b", "a:b", "%61", "é"] {
            assert!(!valid_id(bad), "{bad}");
        }
    }

    #[test]
    fn every_family_classifies_its_main_endpoints() {
        let bounded = |f, p| {
            matches!(
                route(f, p).map(|r| r.generates),
                Some(Generates::Bounded(_))
            )
        };
        assert!(bounded(ApiFamily::OpenAi, "/chat/completions"));
        assert!(bounded(ApiFamily::OpenAiCompatible, "/v1/chat/completions"));
        assert!(bounded(ApiFamily::Azure, "/deployments/d/chat/completions"));
        assert!(bounded(ApiFamily::Anthropic, "/v1/messages"));
        assert!(bounded(ApiFamily::Anthropic, "/messages"));
        assert!(bounded(
            ApiFamily::Gemini,
            "/v1beta/models/g:generateContent"
        ));
        assert!(!bounded(ApiFamily::Anthropic, "/v1/messages/batches"));
        assert!(route(ApiFamily::Other, "/chat/completions").is_none());
    }
}
