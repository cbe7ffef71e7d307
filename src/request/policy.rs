//! Token limits that look inside the request: allowed endpoints (`paths`), allowed models (`models`),
//! the forced model (`ext.rep_m`) and the output ceiling (`mtok`), as one rule set per provider API
//! family ([`ApiFamily`]): where the family names the model (body `model`, Azure's deployment path
//! segment, Gemini's `models/{m}` path), which members bound the output (`max_tokens`,
//! `max_completion_tokens`, `max_output_tokens`, `generationConfig.maxOutputTokens`, ...) and which
//! multiply it (`n`, `best_of`, `candidateCount`); those shapes are classified in `upstream/api_routes.rs`.
//! Bodies are read with `json/body_scan.rs` (no tree, no copy) and rewritten by splicing byte ranges. Where
//! a rule cannot tell what a request will do (an endpoint it does not know, a body it cannot read), the
//! request is refused rather than forwarded unchecked; the table of what is enforced where is in
//! `docs/providers.md`. Pure functions over the path and body bytes; `request/relay.rs` calls
//! [`check_endpoint`] before the body is read and [`apply`] after.

use std::ops::Range;

use crate::error::Error;
use crate::json::body_scan::{self, ObjectScan, ScanError};
use crate::token::format::{Claims, MtokMode};
use crate::upstream::api_routes::{route, BodyModel, Generates, Group, Output, Route};
use crate::upstream::provider::ApiFamily;

/// Longest body `model` value compared with the allow-list, in bytes: no allowed name can be longer than
/// a whole token, so longer values are refused without being copied.
const MAX_MODEL_BYTES: usize = crate::token::format::MAX_TOKEN_LEN;

// The limits, as named in error messages.
const MODELS: &str = "model allow-list (`models`)";
const MTOK: &str = "output ceiling (`mtok`)";
const REP_M: &str = "forced model (`ext.rep_m`)";

const MODEL: Group = &["model"];
/// OpenRouter's fallback list (`"models": [...]`): the provider may answer with any model in it, so a
/// token that limits or forces the model refuses a body that has one. No other API defines a top-level
/// `models` member in a request, so the refusal costs nothing elsewhere.
const FALLBACK_MODELS: Group = &["models"];

/// The limits a token carries that look inside requests.
struct Limits<'a> {
    models: Option<&'a [String]>,
    forced: Option<&'a str>,
    mtok: Option<(u64, MtokMode)>,
}

impl<'a> Limits<'a> {
    fn of(claims: &'a Claims) -> Limits<'a> {
        Limits {
            models: claims.models.as_deref(),
            forced: claims.ext.as_ref().and_then(|e| e.rep_m.as_deref()),
            mtok: claims
                .mtok
                .map(|m| (m, claims.mtok_mode.unwrap_or(MtokMode::Clamp))),
        }
    }

    fn any(&self) -> bool {
        self.models.is_some() || self.forced.is_some() || self.mtok.is_some()
    }

    /// The limit to name when none can be enforced.
    fn first(&self) -> &'static str {
        if self.models.is_some() {
            MODELS
        } else if self.forced.is_some() {
            REP_M
        } else {
            MTOK
        }
    }

    fn reads_model(&self) -> bool {
        self.models.is_some() || self.forced.is_some()
    }
}

/// The endpoint check, done before the body is read: `paths` lists provider-relative paths, compared
/// exactly (query excluded); then the parts of the model and output limits that the path alone decides
/// (a family or path the rules cannot read, a model named in the path).
pub fn check_endpoint(claims: &Claims, family: ApiFamily, rest_path: &str) -> Result<(), Error> {
    if let Some(paths) = &claims.paths {
        if !paths.iter().any(|p| p == rest_path) {
            return Err(Error::EndpointNotAllowed);
        }
    }
    let limits = Limits::of(claims);
    if !limits.any() {
        return Ok(());
    }
    let route = route(family, rest_path).ok_or(Error::LimitNotEnforceable(limits.first()))?;
    check_path_model(&limits, &route)?;
    Ok(())
}

/// Does the token need to see or change the body at all? Most tokens do not, and then the body is
/// forwarded byte for byte.
pub fn inspects_body(claims: &Claims) -> bool {
    Limits::of(claims).any()
}

/// The request to forward after [`apply`].
#[derive(Debug, PartialEq, Eq)]
pub struct Applied {
    pub body: Vec<u8>,
    /// A new provider-relative path, when the model is named in the path: normalised, or with the
    /// forced model in it.
    pub path: Option<String>,
}

/// Apply `models`, `ext.rep_m` and `mtok` to a request for a provider of `family`. Returns the body to
/// forward (the same bytes when nothing changes; otherwise one copy with byte ranges replaced) and
/// maybe a new path. A body that must be read is refused unless it is one JSON object whose read members
/// each appear once; an empty body (a GET) carries nothing to limit.
pub fn apply(
    claims: &Claims,
    family: ApiFamily,
    rest_path: &str,
    body: Vec<u8>,
) -> Result<Applied, Error> {
    apply_limits(&Limits::of(claims), family, rest_path, body)
}

/// Lower (or write, when absent) a request's output ceiling to `ceiling` and its multipliers to 1,
/// as `mtok` in clamp mode does: the most a spend budget can pay for (`budget/charge.rs`). The caller
/// has already read the body with `budget/size.rs`, so the endpoint is one whose output is bounded.
pub fn cap_output(
    family: ApiFamily,
    rest_path: &str,
    body: Vec<u8>,
    ceiling: u64,
) -> Result<Vec<u8>, Error> {
    let limits = Limits {
        models: None,
        forced: None,
        mtok: Some((ceiling, MtokMode::Clamp)),
    };
    apply_limits(&limits, family, rest_path, body).map(|a| a.body)
}

fn apply_limits(
    limits: &Limits,
    family: ApiFamily,
    rest_path: &str,
    body: Vec<u8>,
) -> Result<Applied, Error> {
    if !limits.any() {
        return Ok(Applied { body, path: None });
    }
    let route = route(family, rest_path).ok_or(Error::LimitNotEnforceable(limits.first()))?;
    let path = check_path_model(limits, &route)?;
    if body.is_empty() {
        return Ok(Applied { body, path });
    }
    let bounded = match (limits.mtok, route.generates) {
        (Some(_), Generates::Unknown) => return Err(Error::LimitNotEnforceable(MTOK)),
        (Some(_), Generates::Bounded(out)) => Some(out),
        _ => None,
    };

    // Which top-level members to read: the model, then the output members or their container.
    let mut wanted: Vec<Group> = Vec::new();
    let model_at = limits.reads_model().then(|| {
        wanted.push(MODEL);
        wanted.push(FALLBACK_MODELS);
        wanted.len() - 2
    });
    let output_at = bounded.map(|out| {
        let at = wanted.len();
        match out.container {
            Some(c) => wanted.push(c),
            None => {
                wanted.extend_from_slice(out.ceilings);
                wanted.extend_from_slice(out.multipliers);
            }
        }
        at
    });
    let top = body_scan::scan_object(&body, &wanted).map_err(|e| scan_error(e, &wanted))?;

    let mut edits = Edits::default();
    if let Some(i) = model_at {
        body_model(limits, route.body_model, &body, &top, i, &mut edits)?;
    }
    if let (Some(out), Some(at), Some((ceiling, mode))) = (bounded, output_at, limits.mtok) {
        match out.container {
            None => {
                if let Some(member) =
                    bound_output(out, &body, &top.found[at..], ceiling, mode, &mut edits)?
                {
                    edits.insert_top(member);
                }
            }
            Some(group) => match top.found[at].clone() {
                None => {
                    edits.insert_top(format!("\"{}\":{{\"{}\":{ceiling}}}", group[0], out.insert))
                }
                Some(range) => {
                    let inner_wanted: Vec<Group> = out
                        .ceilings
                        .iter()
                        .chain(out.multipliers)
                        .copied()
                        .collect();
                    let inner = body_scan::scan_object_at(&body, range, &inner_wanted).map_err(
                        |e| match e {
                            ScanError::NotAnObject => Error::InvalidMember(group[0], "an object"),
                            e => scan_error(e, &inner_wanted),
                        },
                    )?;
                    let at = inner.inner_start;
                    if let Some(member) =
                        bound_output(out, &body, &inner.found, ceiling, mode, &mut edits)?
                    {
                        let comma = if inner.is_empty { "" } else { "," };
                        edits.replace(at..at, format!("{member}{comma}"));
                    }
                }
            },
        }
    }
    Ok(Applied {
        body: edits.apply(body, &top),
        path,
    })
}

/// Check or rewrite a model named in the path; returns the path to forward.
fn check_path_model(limits: &Limits, route: &Route) -> Result<Option<String>, Error> {
    let Some(pm) = &route.path_model else {
        return Ok(None);
    };
    if !limits.reads_model() {
        return Ok(None);
    }
    if let Some(forced) = limits.forced {
        // The forced model wins over whatever the page asked for; the allow-list is then moot.
        return pm
            .forced(forced)
            .map(Some)
            .ok_or(Error::LimitNotEnforceable(REP_M));
    }
    if let Some(models) = limits.models {
        if !pm.allowed(models) {
            return Err(Error::ModelNotAllowed);
        }
    }
    Ok(Some(pm.path()))
}

/// Apply `models` / `ext.rep_m` to the body's `model` member (found at `top.found[i]`, and a fallback
/// list at `top.found[i + 1]`).
fn body_model(
    limits: &Limits,
    rule: BodyModel,
    body: &[u8],
    top: &ObjectScan,
    i: usize,
    edits: &mut Edits,
) -> Result<(), Error> {
    let found = top.found[i].clone();
    if rule == BodyModel::Refused {
        return match found {
            Some(_) => Err(Error::InvalidMember(
                "model",
                "absent (this API names the model in the path)",
            )),
            None => Ok(()),
        };
    }
    if top.found[i + 1].is_some() {
        return Err(Error::InvalidMember(
            "models",
            "absent (a list of fallback models would get around the token's model limit)",
        ));
    }
    match (found, limits.forced) {
        (Some(range), Some(forced)) => {
            let current = body_scan::decode_string(&body[range.clone()], MAX_MODEL_BYTES);
            if !matches!(current, Ok(Some(ref m)) if m == forced) {
                edits.replace(range, json_string(forced));
            }
        }
        (None, Some(forced)) if rule == BodyModel::Names => {
            edits.insert_top(format!("\"model\":{}", json_string(forced)));
        }
        (Some(range), None) => {
            let models = limits.models.unwrap_or_default();
            let name =
                body_scan::decode_string(&body[range], MAX_MODEL_BYTES).map_err(|e| match e {
                    ScanError::NotAString => Error::InvalidMember("model", "a string"),
                    e => scan_error(e, &[MODEL]),
                })?;
            if !name.is_some_and(|n| models.contains(&n)) {
                return Err(Error::ModelNotAllowed);
            }
        }
        (None, None) if rule == BodyModel::Names => return Err(Error::ModelNotAllowed),
        (None, _) => {}
    }
    Ok(())
}

/// Hold the output members of one object to the ceiling. `found` holds the ceilings, then the
/// multipliers. Returns the member to add at the object's start when no ceiling is present.
fn bound_output(
    out: &Output,
    body: &[u8],
    found: &[Option<Range<usize>>],
    ceiling: u64,
    mode: MtokMode,
    edits: &mut Edits,
) -> Result<Option<String>, Error> {
    let (ceilings, multipliers) = found.split_at(out.ceilings.len());
    let groups = out
        .ceilings
        .iter()
        .zip(ceilings)
        .map(|(g, r)| (g, r, ceiling));
    let multi = out
        .multipliers
        .iter()
        .zip(multipliers)
        .map(|(g, r)| (g, r, 1));
    for (group, range, limit) in groups.chain(multi) {
        let Some(range) = range else { continue };
        let asked = body_scan::uint_value(&body[range.clone()])
            .ok_or(Error::InvalidMember(group[0], "a non-negative integer"))?;
        if asked > limit {
            if mode == MtokMode::Reject {
                return Err(Error::MaxTokensExceeded);
            }
            edits.replace(range.clone(), limit.to_string());
        }
    }
    // No explicit bound means "as much as the model allows": add the ceiling in the member the
    // endpoint understands, so the limit holds without the page's cooperation.
    Ok(ceilings
        .iter()
        .all(Option::is_none)
        .then(|| format!("\"{}\":{ceiling}", out.insert)))
}

/// Byte-range edits to a body, applied in one copy at the end.
#[derive(Default)]
struct Edits {
    replace: Vec<(Range<usize>, Vec<u8>)>,
    /// Members to add at the start of the top-level object.
    top: Vec<String>,
}

impl Edits {
    fn replace(&mut self, range: Range<usize>, text: String) {
        self.replace.push((range, text.into_bytes()));
    }

    fn insert_top(&mut self, member: String) {
        self.top.push(member);
    }

    fn apply(mut self, body: Vec<u8>, top: &ObjectScan) -> Vec<u8> {
        if !self.top.is_empty() {
            let comma = if top.is_empty { "" } else { "," };
            let text = format!("{}{comma}", self.top.join(","));
            self.replace
                .push((top.inner_start..top.inner_start, text.into_bytes()));
        }
        if self.replace.is_empty() {
            return body;
        }
        // Insertions at one offset keep their order (stable sort); ranges never overlap.
        self.replace.sort_by_key(|(r, _)| r.start);
        body_scan::splice(&body, &self.replace)
    }
}

fn json_string(s: &str) -> String {
    serde_json::to_string(s).expect("a string always serialises")
}

fn scan_error(e: ScanError, wanted: &[Group]) -> Error {
    const _: () = assert!(
        body_scan::MAX_DEPTH == 128,
        "the message below names the depth"
    );
    match e {
        ScanError::NotUtf8 => Error::InvalidBody("it is not valid UTF-8"),
        ScanError::Syntax => Error::InvalidBody("it is not valid JSON"),
        ScanError::TooDeep => Error::InvalidBody("it nests deeper than 128 levels"),
        ScanError::NotAnObject => Error::InvalidBody("it is not a JSON object"),
        ScanError::LoneSurrogate => Error::InvalidBody(
            "a member the token's limits read holds an unpaired UTF-16 surrogate escape",
        ),
        ScanError::Duplicate(i) => Error::DuplicateMember(wanted[i][0]),
        ScanError::NotAString => Error::InvalidBody("a member that must be a string is not"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::format::Ext;
    use ApiFamily::*;

    fn claims() -> Claims {
        let text = r#"{"jti":"00000000000000000000000000000000","tid":"t","iat":1,"exp":2,"prv":"openai","key":"k"}"#;
        Claims::from_json(text).expect("valid test claims")
    }

    fn models(list: &[&str]) -> Claims {
        let mut c = claims();
        c.models = Some(list.iter().map(|m| m.to_string()).collect());
        c
    }

    fn forced(m: &str) -> Claims {
        let mut c = claims();
        c.ext = Some(Ext {
            rep_m: Some(m.into()),
        });
        c
    }

    fn mtok(n: u64, mode: Option<MtokMode>) -> Claims {
        let mut c = claims();
        c.mtok = Some(n);
        c.mtok_mode = mode;
        c
    }

    /// Apply and return (body as text, new path).
    fn run(
        c: &Claims,
        f: ApiFamily,
        path: &str,
        body: &str,
    ) -> Result<(String, Option<String>), Error> {
        let a = apply(c, f, path, body.as_bytes().to_vec())?;
        Ok((String::from_utf8(a.body).unwrap(), a.path))
    }

    fn body(c: &Claims, f: ApiFamily, path: &str, body: &str) -> Result<String, Error> {
        run(c, f, path, body).map(|(b, _)| b)
    }

    fn json(b: &str) -> serde_json::Value {
        serde_json::from_str(b).unwrap()
    }

    #[test]
    fn untouched_without_limits() {
        for f in [OpenAi, Anthropic, Gemini, Azure, Other] {
            assert_eq!(
                body(&claims(), f, "/chat/completions", "{ \"model\" : \"x\" }").unwrap(),
                "{ \"model\" : \"x\" }"
            );
            assert_eq!(body(&claims(), f, "/x", "not json").unwrap(), "not json");
            assert!(check_endpoint(&claims(), f, "/anything/at/all").is_ok());
        }
    }

    #[test]
    fn unchanged_bodies_are_the_same_bytes() {
        let raw = "{ \"model\" :\t\"a\" , \"max_tokens\" : 5 , \"x\" : [1, 2] }";
        let mut c = models(&["a"]);
        c.mtok = Some(10);
        assert_eq!(body(&c, OpenAi, "/chat/completions", raw).unwrap(), raw);
        assert_eq!(
            body(&forced("a"), OpenAi, "/chat/completions", raw).unwrap(),
            raw
        );
    }

    #[test]
    fn model_allow_list_in_the_body() {
        for f in [OpenAi, OpenAiCompatible, Anthropic, Azure] {
            let c = models(&["a", "b"]);
            let path = if f == Anthropic {
                "/v1/messages"
            } else {
                "/chat/completions"
            };
            assert!(body(&c, f, path, r#"{"model":"a"}"#).is_ok(), "{f:?}");
            assert!(body(&c, f, path, r#"{"model":"\u0062"}"#).is_ok(), "{f:?}");
            for bad in [
                r#"{"model":"c"}"#,
                r#"{"model":"a "}"#,
                r#"{"model":"A"}"#,
                "{}",
                r#"{"x":{"model":"a"}}"#,
            ] {
                assert_eq!(
                    body(&c, f, path, bad),
                    Err(Error::ModelNotAllowed),
                    "{f:?} {bad}"
                );
            }
            assert_eq!(
                body(&c, f, path, r#"{"model":["a"]}"#),
                Err(Error::InvalidMember("model", "a string"))
            );
            assert_eq!(
                body(&c, f, path, r#"{"model":"a\udc00"}"#),
                Err(Error::InvalidBody(
                    "a member the token's limits read holds an unpaired UTF-16 surrogate escape"
                ))
            );
            // A GET without a body uses no model.
            assert!(body(&c, f, "/models", "").is_ok());
        }
        let long = format!(r#"{{"model":"{}"}}"#, "a".repeat(MAX_MODEL_BYTES + 1));
        assert_eq!(
            body(&models(&["a"]), OpenAi, "/chat/completions", &long),
            Err(Error::ModelNotAllowed)
        );
    }

    #[test]
    fn fallback_model_lists_are_refused() {
        // OpenRouter answers with any model of `models`: the allow-list or forced model would not hold.
        let body_text = r#"{"model":"a","models":["a","gpt-4o"]}"#;
        let want = Err(Error::InvalidMember(
            "models",
            "absent (a list of fallback models would get around the token's model limit)",
        ));
        for f in [OpenAi, OpenAiCompatible, Azure, Anthropic] {
            assert_eq!(
                body(&models(&["a"]), f, "/chat/completions", body_text),
                want,
                "{f:?}"
            );
            assert_eq!(
                body(&forced("a"), f, "/chat/completions", body_text),
                want,
                "{f:?}"
            );
        }
        assert_eq!(
            body(
                &models(&["a"]),
                OpenAiCompatible,
                "/chat/completions",
                r#"{"model":"a","m\u006fdels":[]}"#
            ),
            want
        );
        // Only a token that limits the model cares.
        assert!(body(
            &mtok(5, None),
            OpenAiCompatible,
            "/chat/completions",
            body_text
        )
        .is_ok());
    }

    #[test]
    fn duplicate_members_are_refused() {
        // Finding 7: the checker and the provider could read different copies.
        let c = models(&["gpt-4o-mini"]);
        for dup in [
            r#"{"model":"gpt-4o","model":"gpt-4o-mini"}"#,
            r#"{"model":"gpt-4o-mini","model":"gpt-4o"}"#,
            r#"{"model":"gpt-4o-mini","m\u006fdel":"gpt-4o"}"#,
            r#"{"\u006dodel":"gpt-4o-mini", "messages": [], "model" : "gpt-4o-mini"}"#,
        ] {
            assert_eq!(
                body(&c, OpenAi, "/chat/completions", dup),
                Err(Error::DuplicateMember("model")),
                "{dup}"
            );
            assert_eq!(
                body(&forced("x"), OpenAi, "/chat/completions", dup),
                Err(Error::DuplicateMember("model"))
            );
        }
        let m = mtok(100, None);
        for (dup, member) in [
            (r#"{"max_tokens":1,"max_tokens":100000}"#, "max_tokens"),
            (r#"{"max_tokens":1,"max_to\u006bens":100000}"#, "max_tokens"),
            (
                r#"{"max_completion_tokens":1,"max_completion_tokens":9}"#,
                "max_completion_tokens",
            ),
            (r#"{"n":1,"n":128}"#, "n"),
        ] {
            assert_eq!(
                body(&m, OpenAi, "/chat/completions", dup),
                Err(Error::DuplicateMember(member)),
                "{dup}"
            );
        }
        // Members the token does not read may repeat (the provider's business), and so may nested ones.
        assert!(body(
            &c,
            OpenAi,
            "/chat/completions",
            r#"{"model":"gpt-4o-mini","x":1,"x":2,"max_tokens":1,"max_tokens":2}"#
        )
        .is_ok());
        assert!(body(
            &m,
            OpenAi,
            "/chat/completions",
            r#"{"model":"a","model":"b","max_tokens":1}"#
        )
        .is_ok());
        // Gemini: duplicates inside generationConfig, and across its two spellings.
        for dup in [
            r#"{"generationConfig":{"maxOutputTokens":1,"maxOutputTokens":900}}"#,
            r#"{"generationConfig":{"maxOutputTokens":1,"max_output_tokens":900}}"#,
            r#"{"generationConfig":{"candidateCount":1,"candidate_count":8}}"#,
        ] {
            assert!(
                matches!(
                    body(&m, Gemini, "/v1beta/models/g:generateContent", dup),
                    Err(Error::DuplicateMember(_))
                ),
                "{dup}"
            );
        }
        assert_eq!(
            body(
                &m,
                Gemini,
                "/v1beta/models/g:generateContent",
                r#"{"generationConfig":{},"generation_config":{"maxOutputTokens":9}}"#
            ),
            Err(Error::DuplicateMember("generationConfig"))
        );
    }

    #[test]
    fn bodies_that_cannot_be_read_are_refused() {
        let cases = [
            ("--multipart", "it is not valid JSON"),
            ("{\"model\":\"a\"", "it is not valid JSON"),
            (
                "{\"model\":\"a\"} {\"model\":\"b\"}",
                "it is not valid JSON",
            ),
            ("[{\"model\":\"a\"}]", "it is not a JSON object"),
            ("\"a\"", "it is not a JSON object"),
            ("null", "it is not a JSON object"),
        ];
        for c in [models(&["a"]), forced("a"), mtok(5, None)] {
            for (raw, why) in cases {
                assert_eq!(
                    body(&c, OpenAi, "/chat/completions", raw),
                    Err(Error::InvalidBody(why)),
                    "{raw}"
                );
            }
            assert_eq!(
                apply(
                    &c,
                    OpenAi,
                    "/chat/completions",
                    b"{\"model\":\"a\xff\"}".to_vec()
                ),
                Err(Error::InvalidBody("it is not valid UTF-8"))
            );
            let deep = format!(
                "{{\"model\":\"a\",\"x\":{}{}}}",
                "[".repeat(200),
                "]".repeat(200)
            );
            assert_eq!(
                body(&c, OpenAi, "/chat/completions", &deep),
                Err(Error::InvalidBody("it nests deeper than 128 levels"))
            );
        }
    }

    #[test]
    fn forced_model_rewrites_or_adds() {
        let c = forced("cheap");
        let out = body(
            &c,
            OpenAi,
            "/chat/completions",
            r#"{"model": "gpt-4o", "n": 1}"#,
        )
        .unwrap();
        assert_eq!(out, r#"{"model": "cheap", "n": 1}"#);
        let out = body(&c, OpenAi, "/chat/completions", r#"{"messages": []}"#).unwrap();
        assert_eq!(out, r#"{"model":"cheap","messages": []}"#);
        assert_eq!(
            body(&c, OpenAi, "/chat/completions", "{ }").unwrap(),
            r#"{"model":"cheap" }"#
        );
        let out = body(
            &c,
            Anthropic,
            "/v1/messages",
            r#"{"model":{"x":1},"max_tokens":5}"#,
        )
        .unwrap();
        assert_eq!(
            json(&out),
            serde_json::json!({"model": "cheap", "max_tokens": 5})
        );
        // The forced name is written as a JSON string, escapes and all.
        let out = body(&forced("a\"b"), OpenAi, "/embeddings", r#"{"model":"x"}"#).unwrap();
        assert_eq!(json(&out)["model"], "a\"b");
        // It wins over the allow-list.
        let mut c = models(&["a"]);
        c.ext = Some(Ext {
            rep_m: Some("z".into()),
        });
        assert_eq!(
            json(&body(&c, OpenAi, "/chat/completions", r#"{"model":"q"}"#).unwrap())["model"],
            "z"
        );
    }

    #[test]
    fn openai_ceilings_clamp_reject_and_add() {
        let c = mtok(100, None);
        let chat = "/chat/completions";
        assert_eq!(
            body(&c, OpenAi, chat, r#"{"max_tokens":500}"#).unwrap(),
            r#"{"max_tokens":100}"#
        );
        assert_eq!(
            body(&c, OpenAi, chat, r#"{"max_tokens":50}"#).unwrap(),
            r#"{"max_tokens":50}"#
        );
        assert_eq!(
            body(
                &c,
                OpenAi,
                chat,
                r#"{"max_tokens":500,"max_completion_tokens":700}"#
            )
            .unwrap(),
            r#"{"max_tokens":100,"max_completion_tokens":100}"#
        );
        assert_eq!(
            body(&c, OpenAi, chat, r#"{"model":"m"}"#).unwrap(),
            r#"{"max_completion_tokens":100,"model":"m"}"#
        );
        assert_eq!(
            body(&c, Azure, chat, r#"{"model":"m"}"#).unwrap(),
            r#"{"max_completion_tokens":100,"model":"m"}"#
        );
        assert_eq!(
            body(&c, OpenAiCompatible, chat, r#"{"model":"m"}"#).unwrap(),
            r#"{"max_tokens":100,"model":"m"}"#
        );
        assert_eq!(
            body(&c, OpenAi, chat, "{}").unwrap(),
            r#"{"max_completion_tokens":100}"#
        );
        assert_eq!(
            body(&c, OpenAi, "/responses", r#"{"max_output_tokens":101}"#).unwrap(),
            r#"{"max_output_tokens":100}"#
        );
        assert_eq!(
            body(&c, OpenAi, "/responses", r#"{"input":"x"}"#).unwrap(),
            r#"{"max_output_tokens":100,"input":"x"}"#
        );
        assert_eq!(
            body(&c, OpenAi, "/completions", r#"{"prompt":"x"}"#).unwrap(),
            r#"{"max_tokens":100,"prompt":"x"}"#
        );
        // `max_tokens` on the Responses API is no ceiling there: the real one is added.
        assert_eq!(
            body(&c, OpenAi, "/responses", r#"{"max_tokens":5}"#).unwrap(),
            r#"{"max_output_tokens":100,"max_tokens":5}"#
        );
        let r = mtok(100, Some(MtokMode::Reject));
        assert_eq!(
            body(&r, OpenAi, chat, r#"{"max_tokens":101}"#),
            Err(Error::MaxTokensExceeded)
        );
        assert_eq!(
            body(&r, OpenAi, chat, r#"{"max_completion_tokens":101}"#),
            Err(Error::MaxTokensExceeded)
        );
        assert!(body(&r, OpenAi, chat, r#"{"max_tokens":100}"#).is_ok());
        // Embeddings and moderations generate nothing; endpoints the rules do not know are refused.
        assert_eq!(
            body(&c, OpenAi, "/embeddings", r#"{"input":"x"}"#).unwrap(),
            r#"{"input":"x"}"#
        );
        for path in [
            "/images/generations",
            "/audio/speech",
            "/batches",
            "/chat/completions/",
            "/chat/%63ompletions",
        ] {
            assert_eq!(
                body(&c, OpenAi, path, r#"{"model":"m"}"#),
                Err(Error::LimitNotEnforceable(MTOK)),
                "{path}"
            );
        }
        assert!(
            body(&c, OpenAi, "/models", "").is_ok(),
            "a GET carries nothing to limit"
        );
    }

    #[test]
    fn ceiling_numbers_have_one_spelling() {
        let c = mtok(100, None);
        for v in [
            "1e3",
            "100.0",
            "1E2",
            "\"100\"",
            "-1",
            "-0",
            "null",
            "true",
            "[100]",
            "{}",
            "18446744073709551616",
            "1e400",
        ] {
            let raw = format!(r#"{{"max_tokens":{v}}}"#);
            assert_eq!(
                body(&c, OpenAi, "/chat/completions", &raw),
                Err(Error::InvalidMember("max_tokens", "a non-negative integer")),
                "{v}"
            );
        }
        assert_eq!(
            body(&c, OpenAi, "/chat/completions", r#"{"max_tokens":0}"#).unwrap(),
            r#"{"max_tokens":0}"#
        );
        assert_eq!(
            body(
                &c,
                OpenAi,
                "/chat/completions",
                r#"{"max_tokens":18446744073709551615}"#
            )
            .unwrap(),
            r#"{"max_tokens":100}"#
        );
        assert_eq!(
            body(&c, OpenAi, "/chat/completions", r#"{"n":2.0}"#),
            Err(Error::InvalidMember("n", "a non-negative integer"))
        );
    }

    #[test]
    fn choices_multiply_output() {
        // Finding 8: `n: 128` gave 128 times the ceiling.
        let c = mtok(100, None);
        assert_eq!(
            body(
                &c,
                OpenAi,
                "/chat/completions",
                r#"{"n":128,"max_tokens":100}"#
            )
            .unwrap(),
            r#"{"n":1,"max_tokens":100}"#
        );
        assert_eq!(
            body(&c, OpenAi, "/chat/completions", r#"{"n":1,"max_tokens":1}"#).unwrap(),
            r#"{"n":1,"max_tokens":1}"#
        );
        assert_eq!(
            body(
                &c,
                OpenAi,
                "/completions",
                r#"{"best_of":5,"n":3,"max_tokens":9}"#
            )
            .unwrap(),
            r#"{"best_of":1,"n":1,"max_tokens":9}"#
        );
        let r = mtok(100, Some(MtokMode::Reject));
        assert_eq!(
            body(&r, OpenAi, "/chat/completions", r#"{"n":2}"#),
            Err(Error::MaxTokensExceeded)
        );
        assert_eq!(
            body(&r, OpenAi, "/completions", r#"{"best_of":2}"#),
            Err(Error::MaxTokensExceeded)
        );
        assert!(body(&r, OpenAi, "/chat/completions", r#"{"n":1}"#).is_ok());
    }

    #[test]
    fn anthropic_rules() {
        let c = mtok(100, None);
        assert_eq!(
            body(&c, Anthropic, "/v1/messages", r#"{"max_tokens":4096}"#).unwrap(),
            r#"{"max_tokens":100}"#
        );
        assert_eq!(
            body(&c, Anthropic, "/v1/messages", r#"{"model":"m"}"#).unwrap(),
            r#"{"max_tokens":100,"model":"m"}"#
        );
        assert_eq!(
            body(
                &c,
                Anthropic,
                "/v1/complete",
                r#"{"max_tokens_to_sample":900}"#
            )
            .unwrap(),
            r#"{"max_tokens_to_sample":100}"#
        );
        // `max_completion_tokens` means nothing to Anthropic: it is neither read nor a ceiling.
        assert_eq!(
            body(
                &c,
                Anthropic,
                "/v1/messages",
                r#"{"max_completion_tokens":5}"#
            )
            .unwrap(),
            r#"{"max_tokens":100,"max_completion_tokens":5}"#
        );
        assert!(body(
            &c,
            Anthropic,
            "/v1/messages/count_tokens",
            r#"{"model":"m"}"#
        )
        .is_ok());
        assert_eq!(
            body(&c, Anthropic, "/v1/messages/batches", r#"{"requests":[]}"#),
            Err(Error::LimitNotEnforceable(MTOK))
        );
        // A batch names its models inside: the top level has none, so the allow-list refuses it.
        assert_eq!(
            body(
                &models(&["m"]),
                Anthropic,
                "/v1/messages/batches",
                r#"{"requests":[{"params":{"model":"m"}}]}"#
            ),
            Err(Error::ModelNotAllowed)
        );
    }

    #[test]
    fn gemini_model_in_the_path() {
        let c = models(&["gemini-2.0-flash", "tunedModels/mine"]);
        let gen = r#"{"contents":[]}"#;
        for ok in [
            "/v1beta/models/gemini-2.0-flash:generateContent",
            "/v1beta/models/gemini-2.0-flash:streamGenerateContent",
            "/v1beta/models/gemini-2.0-flash:countTokens",
            "/v1/models/gemini-2.0-flash:generateContent",
            "/v1alpha/models/gemini-2.0-flash:embedContent",
            "/models/gemini-2.0-flash:generateContent",
            "/v1beta/models/gemini%2D2.0-flash:generateContent",
            "/v1beta/models/gemini-2.0-flash%3AgenerateContent",
            "/v1beta/tunedModels/mine:generateContent",
            "/v1beta/models/gemini-2.0-flash",
            "/v1beta/models",
        ] {
            assert!(check_endpoint(&c, Gemini, ok).is_ok(), "{ok}");
            assert!(body(&c, Gemini, ok, gen).is_ok(), "{ok}");
        }
        // What is forwarded is the decoded path that was checked.
        assert_eq!(
            run(
                &c,
                Gemini,
                "/v1beta/models/gemini%2D2.0-flash%3AgenerateContent",
                gen
            )
            .unwrap()
            .1
            .as_deref(),
            Some("/v1beta/models/gemini-2.0-flash:generateContent")
        );
        for refused in [
            "/v1beta/models/gemini-2.5-pro:generateContent",
            "/v1beta/models/Gemini-2.0-Flash:generateContent",
            "/v1beta/tunedModels/gemini-2.0-flash:generateContent",
            "/v1beta/tunedModels/other:generateContent",
            "/v1beta/models/mine:generateContent",
        ] {
            assert_eq!(
                check_endpoint(&c, Gemini, refused),
                Err(Error::ModelNotAllowed),
                "{refused}"
            );
            assert_eq!(
                body(&c, Gemini, refused, gen),
                Err(Error::ModelNotAllowed),
                "{refused}"
            );
        }
        // Paths the rules cannot classify are refused, not forwarded unchecked.
        for odd in [
            "/v1beta/models/gemini-2.0-flash:batchGenerateContent",
            "/v1beta/models/gemini-2.0-flash:generateContent/x",
            "/v1beta/models/gemini-2.0-flash/",
            "/v1beta/models/gemini-2.0-flash:generateContent:x",
            "/v1beta/models/gemini%2Fx:generateContent",
            "/v1beta/models/%ZZ:generateContent",
            "/v1beta/models/%C0%AE:generateContent",
            "/v1beta/models/..:generateContent",
            "/v1beta/models/a%20b:generateContent",
            "/v1beta/openai/chat/completions",
            "/v1beta/cachedContents",
            "/v1beta/files",
            "/upload/v1beta/files",
            "/v2/models/gemini-2.0-flash:generateContent",
            "/v1beta/models:generateContent",
            "",
        ] {
            assert_eq!(
                check_endpoint(&c, Gemini, odd),
                Err(Error::LimitNotEnforceable(MODELS)),
                "{odd}"
            );
            assert_eq!(
                body(&c, Gemini, odd, gen),
                Err(Error::LimitNotEnforceable(MODELS)),
                "{odd}"
            );
        }
        assert_eq!(
            check_endpoint(&mtok(5, None), Gemini, "/v1beta/files"),
            Err(Error::LimitNotEnforceable(MTOK))
        );
        // Gemini defines no body `model`: one present could only be a way around the path.
        assert_eq!(
            body(
                &c,
                Gemini,
                "/v1beta/models/gemini-2.0-flash:generateContent",
                r#"{"model":"models/x"}"#
            ),
            Err(Error::InvalidMember(
                "model",
                "absent (this API names the model in the path)"
            ))
        );
        // An allow-list entry may also be the full resource name.
        assert!(check_endpoint(
            &models(&["models/gemini-2.0-flash"]),
            Gemini,
            "/v1beta/models/gemini-2.0-flash:generateContent"
        )
        .is_ok());
    }

    #[test]
    fn gemini_forced_model_rewrites_the_path() {
        let c = forced("gemini-2.0-flash-lite");
        let (b, p) = run(
            &c,
            Gemini,
            "/v1beta/models/gemini-2.5-pro:streamGenerateContent",
            r#"{"contents":[]}"#,
        )
        .unwrap();
        assert_eq!(b, r#"{"contents":[]}"#);
        assert_eq!(
            p.as_deref(),
            Some("/v1beta/models/gemini-2.0-flash-lite:streamGenerateContent")
        );
        let (_, p) = run(&c, Gemini, "/v1beta/tunedModels/mine:generateContent", "").unwrap();
        assert_eq!(
            p.as_deref(),
            Some("/v1beta/models/gemini-2.0-flash-lite:generateContent")
        );
        let (_, p) = run(
            &forced("tunedModels/mine"),
            Gemini,
            "/v1/models/x:generateContent",
            "",
        )
        .unwrap();
        assert_eq!(p.as_deref(), Some("/v1/tunedModels/mine:generateContent"));
        let (_, p) = run(&forced("models/g"), Gemini, "/v1/models/x:countTokens", "").unwrap();
        assert_eq!(p.as_deref(), Some("/v1/models/g:countTokens"));
        for bad in ["a/b", "cachedContents/x", "a b", "..", "x?y"] {
            assert_eq!(
                run(&forced(bad), Gemini, "/v1/models/x:generateContent", ""),
                Err(Error::LimitNotEnforceable(REP_M)),
                "{bad}"
            );
        }
        // The listing names no model: nothing to force.
        assert_eq!(run(&c, Gemini, "/v1beta/models", "").unwrap().1, None);
    }

    #[test]
    fn gemini_output_ceiling_lives_in_generation_config() {
        let c = mtok(100, None);
        let p = "/v1beta/models/g:generateContent";
        assert_eq!(
            body(&c, Gemini, p, r#"{"contents":[]}"#).unwrap(),
            r#"{"generationConfig":{"maxOutputTokens":100},"contents":[]}"#
        );
        assert_eq!(
            body(&c, Gemini, p, "{}").unwrap(),
            r#"{"generationConfig":{"maxOutputTokens":100}}"#
        );
        assert_eq!(
            body(&c, Gemini, p, r#"{"generationConfig":{"temperature":0.5}}"#).unwrap(),
            r#"{"generationConfig":{"maxOutputTokens":100,"temperature":0.5}}"#
        );
        assert_eq!(
            body(&c, Gemini, p, r#"{"generationConfig":{ }}"#).unwrap(),
            r#"{"generationConfig":{"maxOutputTokens":100 }}"#
        );
        assert_eq!(
            body(
                &c,
                Gemini,
                p,
                r#"{"generationConfig":{"maxOutputTokens":8192,"candidateCount":8}}"#
            )
            .unwrap(),
            r#"{"generationConfig":{"maxOutputTokens":100,"candidateCount":1}}"#
        );
        assert_eq!(
            body(
                &c,
                Gemini,
                p,
                r#"{"generation_config":{"max_output_tokens":8192}}"#
            )
            .unwrap(),
            r#"{"generation_config":{"max_output_tokens":100}}"#
        );
        assert_eq!(
            body(
                &c,
                Gemini,
                p,
                r#"{"generationConfig":{"maxOutputTokens":10}}"#
            )
            .unwrap(),
            r#"{"generationConfig":{"maxOutputTokens":10}}"#
        );
        // No top-level `max_tokens` is ever added, nor read.
        let out = body(&c, Gemini, p, r#"{"max_tokens":5}"#).unwrap();
        assert_eq!(
            out,
            r#"{"generationConfig":{"maxOutputTokens":100},"max_tokens":5}"#
        );
        for bad in [
            r#"{"generationConfig":null}"#,
            r#"{"generationConfig":[]}"#,
            r#"{"generationConfig":"x"}"#,
        ] {
            assert_eq!(
                body(&c, Gemini, p, bad),
                Err(Error::InvalidMember("generationConfig", "an object")),
                "{bad}"
            );
        }
        assert_eq!(
            body(
                &c,
                Gemini,
                p,
                r#"{"generationConfig":{"maxOutputTokens":"100"}}"#
            ),
            Err(Error::InvalidMember(
                "maxOutputTokens",
                "a non-negative integer"
            ))
        );
        let r = mtok(100, Some(MtokMode::Reject));
        assert_eq!(
            body(
                &r,
                Gemini,
                p,
                r#"{"generationConfig":{"maxOutputTokens":101}}"#
            ),
            Err(Error::MaxTokensExceeded)
        );
        assert_eq!(
            body(
                &r,
                Gemini,
                p,
                r#"{"generationConfig":{"candidateCount":2}}"#
            ),
            Err(Error::MaxTokensExceeded)
        );
        assert!(
            body(
                &c,
                Gemini,
                "/v1beta/models/g:countTokens",
                r#"{"contents":[]}"#
            )
            .unwrap()
                == r#"{"contents":[]}"#
        );
        // Everything at once: forced model in the path, ceiling in the body.
        let mut both = forced("g2");
        both.mtok = Some(7);
        let (b, path) = run(
            &both,
            Gemini,
            "/v1beta/models/g:streamGenerateContent",
            r#"{"contents":[]}"#,
        )
        .unwrap();
        assert_eq!(
            b,
            r#"{"generationConfig":{"maxOutputTokens":7},"contents":[]}"#
        );
        assert_eq!(
            path.as_deref(),
            Some("/v1beta/models/g2:streamGenerateContent")
        );
    }

    #[test]
    fn azure_deployments_are_the_model() {
        let c = models(&["gpt-4o-mini"]);
        let ok = "/deployments/gpt-4o-mini/chat/completions";
        assert!(check_endpoint(&c, Azure, ok).is_ok());
        assert!(
            body(&c, Azure, ok, r#"{"messages":[]}"#).is_ok(),
            "the path names the model"
        );
        assert!(body(&c, Azure, ok, r#"{"model":"gpt-4o-mini"}"#).is_ok());
        assert_eq!(
            body(&c, Azure, ok, r#"{"model":"gpt-4o"}"#),
            Err(Error::ModelNotAllowed)
        );
        assert_eq!(
            check_endpoint(&c, Azure, "/deployments/gpt-4o/chat/completions"),
            Err(Error::ModelNotAllowed)
        );
        assert_eq!(
            check_endpoint(&c, Azure, "/deployments/gpt%2D4o/chat/completions"),
            Err(Error::ModelNotAllowed)
        );
        assert_eq!(
            run(
                &c,
                Azure,
                "/deployments/gpt%2D4o%2Dmini/chat/completions",
                "{}"
            )
            .unwrap()
            .1
            .as_deref(),
            Some("/deployments/gpt-4o-mini/chat/completions")
        );
        assert_eq!(
            check_endpoint(&c, Azure, "/deployments/a%20b/chat/completions"),
            Err(Error::LimitNotEnforceable(MODELS))
        );
        assert_eq!(
            check_endpoint(&c, Azure, "/deployments"),
            Err(Error::LimitNotEnforceable(MODELS))
        );
        // The v1 API names the model in the body, like OpenAI.
        assert!(body(
            &c,
            Azure,
            "/v1/chat/completions",
            r#"{"model":"gpt-4o-mini"}"#
        )
        .is_ok());
        assert_eq!(
            body(&c, Azure, "/v1/chat/completions", "{}"),
            Err(Error::ModelNotAllowed)
        );
        // A forced model replaces the deployment and the body's copy.
        let (b, p) = run(
            &forced("cheap"),
            Azure,
            "/deployments/gpt-4o/chat/completions",
            r#"{"model":"gpt-4o"}"#,
        )
        .unwrap();
        assert_eq!(
            (b.as_str(), p.as_deref()),
            (
                r#"{"model":"cheap"}"#,
                Some("/deployments/cheap/chat/completions")
            )
        );
        let (b, _) = run(
            &forced("cheap"),
            Azure,
            "/deployments/gpt-4o/chat/completions",
            r#"{"n":1}"#,
        )
        .unwrap();
        assert_eq!(b, r#"{"n":1}"#);
        assert_eq!(
            body(
                &mtok(9, None),
                Azure,
                "/deployments/d/chat/completions",
                r#"{"max_tokens":10,"n":3}"#
            )
            .unwrap(),
            r#"{"max_tokens":9,"n":1}"#
        );
    }

    #[test]
    fn other_family_refuses_every_body_limit() {
        for (c, limit) in [
            (models(&["a"]), MODELS),
            (forced("a"), REP_M),
            (mtok(1, None), MTOK),
        ] {
            assert_eq!(
                check_endpoint(&c, Other, "/chat/completions"),
                Err(Error::LimitNotEnforceable(limit))
            );
            assert_eq!(
                body(&c, Other, "/chat/completions", r#"{"model":"a"}"#),
                Err(Error::LimitNotEnforceable(limit))
            );
        }
    }

    #[test]
    fn endpoints() {
        let mut c = claims();
        assert!(check_endpoint(&c, OpenAi, "/anything").is_ok());
        c.paths = Some(vec!["/chat/completions".into()]);
        assert!(check_endpoint(&c, OpenAi, "/chat/completions").is_ok());
        assert_eq!(
            check_endpoint(&c, OpenAi, "/embeddings"),
            Err(Error::EndpointNotAllowed)
        );
        assert_eq!(
            check_endpoint(&c, OpenAi, "/chat/completions/"),
            Err(Error::EndpointNotAllowed)
        );
    }

    /// Every member of an object in order, duplicates kept: how a first-wins parser would see it.
    struct Pairs(Vec<(String, serde_json::Value)>);

    impl<'de> serde::Deserialize<'de> for Pairs {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> serde::de::Visitor<'de> for V {
                type Value = Pairs;
                fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                    f.write_str("an object")
                }
                fn visit_map<A: serde::de::MapAccess<'de>>(
                    self,
                    mut m: A,
                ) -> Result<Pairs, A::Error> {
                    let mut v = Vec::new();
                    while let Some(e) = m.next_entry()? {
                        v.push(e);
                    }
                    Ok(Pairs(v))
                }
            }
            d.deserialize_map(V)
        }
    }

    /// No spelling slips past: random bodies built from look-alike names, escapes, duplicates, number
    /// spellings and whitespace are either refused, or forwarded with exactly one copy of each read
    /// member, an allowed model, and every ceiling and choice count within the token's limits, as any
    /// parser (first copy wins or last copy wins) would read them.
    #[test]
    fn nothing_slips_past_randomised_bodies() {
        let names = [
            r#""model""#,
            r#""m\u006fdel""#,
            r#""\u006dodel""#,
            r#""Model""#,
            r#""model ""#,
            r#""models""#,
            r#""max_tokens""#,
            r#""max_to\u006bens""#,
            r#""max_completion_tokens""#,
            r#""n""#,
            r#""\u006e""#,
            r#""best_of""#,
            r#""x""#,
        ];
        let values = [
            r#""ok""#,
            r#""\u006fk""#,
            r#""bad""#,
            r#""ok ""#,
            "5",
            "100",
            "101",
            "1e2",
            "100.0",
            "-1",
            r#""100""#,
            "null",
            "0",
            "1",
            "2",
            "128",
            "99999999999999999999",
            "[]",
            r#"{"model":"bad"}"#,
            "true",
        ];
        let ws = ["", " ", "\n", "\t "];
        let good = [
            r#""ok""#,
            r#""\u006fk""#,
            "0",
            "1",
            "5",
            "100",
            "101",
            "128",
        ];
        let mut state: u64 = 7;
        let mut next = |n: usize| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) as usize % n
        };
        let mut c = models(&["ok"]);
        c.mtok = Some(100);
        let (mut accepted, mut refused) = (0, 0);
        for _ in 0..20_000 {
            let mut b = String::from("{");
            // Most pages name a model first.
            let lead = next(10) < 8;
            if lead {
                b.push_str(names[next(3)]);
                b.push(':');
                b.push_str(good[next(2)]);
            }
            for k in usize::from(lead)..usize::from(lead) + next(5) {
                if k > 0 {
                    b.push(',');
                }
                b.push_str(ws[next(ws.len())]);
                b.push_str(names[next(names.len())]);
                b.push_str(ws[next(ws.len())]);
                b.push(':');
                b.push_str(ws[next(ws.len())]);
                // Mostly values a real page would send, so that many bodies get through.
                b.push_str(if next(10) < 7 {
                    good[next(good.len())]
                } else {
                    values[next(values.len())]
                });
            }
            b.push('}');
            let path = ["/chat/completions", "/completions"][next(2)];
            let Ok(out) = body(&c, OpenAi, path, &b) else {
                refused += 1;
                continue;
            };
            accepted += 1;
            let Pairs(pairs) =
                serde_json::from_str(&out).expect("forwarded bodies are JSON objects");
            // The members this endpoint's rules read (others may repeat: the token does not care).
            let read: &[&str] = if path == "/chat/completions" {
                &[
                    "model",
                    "models",
                    "max_tokens",
                    "max_completion_tokens",
                    "n",
                ]
            } else {
                &["model", "models", "max_tokens", "n", "best_of"]
            };
            for name in read {
                let copies: Vec<_> = pairs.iter().filter(|(k, _)| k == name).collect();
                assert!(copies.len() <= 1, "{name} twice in {out} (from {b})");
            }
            let get = |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.clone())
            };
            assert_eq!(
                get("model"),
                Some(serde_json::json!("ok")),
                "{out} (from {b})"
            );
            assert_eq!(get("models"), None);
            let ceilings = if path == "/chat/completions" {
                &["max_tokens", "max_completion_tokens"][..]
            } else {
                &["max_tokens"][..]
            };
            assert!(
                ceilings.iter().any(|m| get(m).is_some()),
                "no ceiling in {out}"
            );
            for m in ceilings {
                if let Some(v) = get(m) {
                    assert!(
                        v.as_u64().is_some_and(|v| v <= 100),
                        "{m} in {out} (from {b})"
                    );
                }
            }
            let multipliers = if path == "/completions" {
                &["n", "best_of"][..]
            } else {
                &["n"][..]
            };
            for m in multipliers {
                if let Some(v) = get(m) {
                    assert!(
                        v.as_u64().is_some_and(|v| v <= 1),
                        "{m} in {out} (from {b})"
                    );
                }
            }
        }
        assert!(
            accepted > 1_000 && refused > 1_000,
            "{accepted} accepted, {refused} refused"
        );
    }

    /// The same for Gemini's `generationConfig`, with both spellings of each member.
    #[test]
    fn nothing_slips_past_randomised_gemini_bodies() {
        let outer = [
            r#""generationConfig""#,
            r#""generation_config""#,
            r#""generationC\u006fnfig""#,
            r#""contents""#,
        ];
        let inner = [
            r#""maxOutputTokens""#,
            r#""max_output_tokens""#,
            r#""maxOutputT\u006fkens""#,
            r#""candidateCount""#,
            r#""candidate_count""#,
            r#""temperature""#,
        ];
        let values = [
            "0", "1", "2", "50", "100", "101", "9000", "1e2", "100.0", r#""7""#, "null", "-1",
        ];
        let mut state: u64 = 11;
        let mut next = |n: usize| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) as usize % n
        };
        let c = mtok(100, None);
        let (mut accepted, mut refused) = (0, 0);
        for _ in 0..20_000 {
            let mut members = Vec::new();
            for _ in 0..next(3) {
                let name = outer[next(outer.len())];
                let value = if name == r#""contents""# {
                    "[]".to_string()
                } else {
                    let fields: Vec<String> = (0..next(3))
                        .map(|_| {
                            format!(
                                "{}: {}",
                                inner[next(inner.len())],
                                values[next(values.len())]
                            )
                        })
                        .collect();
                    format!("{{{}}}", fields.join(", "))
                };
                members.push(format!("{name}:{value}"));
            }
            let b = format!("{{{}}}", members.join(","));
            let Ok(out) = body(&c, Gemini, "/v1beta/models/g:generateContent", &b) else {
                refused += 1;
                continue;
            };
            accepted += 1;
            let Pairs(top) = serde_json::from_str(&out).unwrap();
            let configs: Vec<_> = top
                .iter()
                .filter(|(k, _)| k == "generationConfig" || k == "generation_config")
                .collect();
            assert_eq!(configs.len(), 1, "{out} (from {b})");
            let Pairs(cfg) = serde_json::from_value(configs[0].1.clone()).unwrap();
            let ceilings: Vec<_> = cfg
                .iter()
                .filter(|(k, _)| k == "maxOutputTokens" || k == "max_output_tokens")
                .collect();
            assert_eq!(ceilings.len(), 1, "{out} (from {b})");
            assert!(
                ceilings[0].1.as_u64().is_some_and(|v| v <= 100),
                "{out} (from {b})"
            );
            let counts: Vec<_> = cfg
                .iter()
                .filter(|(k, _)| k == "candidateCount" || k == "candidate_count")
                .collect();
            assert!(counts.len() <= 1, "{out} (from {b})");
            assert!(
                counts
                    .iter()
                    .all(|(_, v)| v.as_u64().is_some_and(|v| v <= 1)),
                "{out} (from {b})"
            );
        }
        assert!(
            accepted > 1_000 && refused > 1_000,
            "{accepted} accepted, {refused} refused"
        );
    }

    #[test]
    fn memory_does_not_grow_with_the_body() {
        // Finding 1: a 32 MiB array of zeros became a 1.3 GB tree. Now the body is scanned in place; the
        // only allocation that may scale is the single rewritten copy.
        let mut raw = b"{\"model\":\"m\",\"x\":[".to_vec();
        raw.extend(std::iter::repeat_n(b"0,".as_slice(), 1 << 20).flatten());
        raw.extend_from_slice(b"0]}");
        let (len, ptr) = (raw.len(), raw.as_ptr());
        let c = models(&["m"]);
        let a = apply(&c, OpenAi, "/chat/completions", raw).unwrap();
        assert_eq!(
            (a.body.len(), a.body.as_ptr()),
            (len, ptr),
            "unchanged: the same buffer"
        );
        let mut c = mtok(5, None);
        c.models = Some(vec!["m".into()]);
        let a = apply(&c, OpenAi, "/chat/completions", a.body).unwrap();
        assert_eq!(a.body.len(), len + r#""max_completion_tokens":5,"#.len());
    }
}
