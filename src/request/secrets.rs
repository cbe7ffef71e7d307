//! Provider secrets a page could ask for through the relay: OpenAI's realtime `client_secrets` (and the
//! older `sessions` / `transcription_sessions`) mint a short-lived provider key that the page then uses
//! directly with the provider, past every limit the relay enforces (calls, budgets, revocation, rate).
//! So such an endpoint is refused unless the token names it explicitly in `paths` (a backend's opt-in),
//! it is refused for a token with a spend limit (which no provider secret can carry), and the secret's
//! lifetime is clamped to what is left of the token's: a secret never outlives the token that got it.

use crate::budget::charge::budgeted;
use crate::budget::size::BUDGET;
use crate::error::Error;
use crate::json::body_scan::{self, ScanError};
use crate::token::format::Claims;
use crate::upstream::provider::ApiFamily;

/// Endpoints that hand out a provider secret, as provider-relative path suffixes.
const SECRET_ENDPOINTS: &[&str] = &[
    "/realtime/client_secrets",
    "/realtime/sessions",
    "/realtime/transcription_sessions",
];
/// The endpoint whose request sets the secret's lifetime (`expires_after.seconds`).
const CLIENT_SECRETS: &str = "/realtime/client_secrets";
/// The session-seconds cap, as named in error messages.
pub const SESSION_SECONDS: &str = "session time limit (`ssec`)";
/// Longest `session.model` compared, in bytes: a `models` entry is at most 256 characters.
const MAX_MODEL_BYTES: usize = 256 * 4;
/// OpenAI's default lifetime of a client secret when the request names none, in seconds.
const DEFAULT_SECRET_SECONDS: u64 = 600;

/// Does `rest_path` (query excluded) mint a provider secret?
pub fn is_secret_endpoint(family: ApiFamily, rest_path: &str) -> bool {
    matches!(
        family,
        ApiFamily::OpenAi | ApiFamily::Azure | ApiFamily::OpenAiCompatible
    ) && SECRET_ENDPOINTS.iter().any(|e| rest_path.ends_with(e))
}

/// Refuse a secret endpoint the token did not opt into, or whose secret would escape a spend limit.
pub fn check(claims: &Claims, family: ApiFamily, rest_path: &str) -> Result<(), Error> {
    if !is_secret_endpoint(family, rest_path) {
        return Ok(());
    }
    if !claims
        .paths
        .as_ref()
        .is_some_and(|p| p.iter().any(|p| p == rest_path))
    {
        return Err(Error::EndpointNotAllowed);
    }
    if budgeted(claims) {
        return Err(Error::LimitNotEnforceable(BUDGET));
    }
    // A provider secret opens sessions the relay never sees, so their length cannot be capped.
    if claims.ssec.is_some() {
        return Err(Error::LimitNotEnforceable(SESSION_SECONDS));
    }
    Ok(())
}

/// Clamp a `client_secrets` request's `expires_after.seconds` to `left` (the token's remaining life),
/// writing it when the body names none. Other secret endpoints are returned unchanged (their secrets
/// live a minute).
pub fn clamp_lifetime(rest_path: &str, body: Vec<u8>, left: u64) -> Result<Vec<u8>, Error> {
    if !rest_path.ends_with(CLIENT_SECRETS) {
        return Ok(body);
    }
    let top: &[&[&str]] = &[&["expires_after"]];
    let scan = body_scan::scan_object(if body.is_empty() { b"{}" } else { &body }, top)
        .map_err(|e| scan_error(e, "the request body"))?;
    if body.is_empty() {
        let seconds = left.min(DEFAULT_SECRET_SECONDS);
        return Ok(
            format!(r#"{{"expires_after":{{"anchor":"created_at","seconds":{seconds}}}}}"#)
                .into_bytes(),
        );
    }
    let Some(range) = scan.found[0].clone() else {
        let seconds = left.min(DEFAULT_SECRET_SECONDS);
        let comma = if scan.is_empty { "" } else { "," };
        let member =
            format!(r#""expires_after":{{"anchor":"created_at","seconds":{seconds}}}{comma}"#);
        let at = scan.inner_start;
        return Ok(body_scan::splice(&body, &[(at..at, member.into_bytes())]));
    };
    let inner = body_scan::scan_object_at(&body, range, &[&["seconds"]])
        .map_err(|e| scan_error(e, "`expires_after`"))?;
    match inner.found[0].clone() {
        Some(r) => {
            let asked = body_scan::uint_value(&body[r.clone()]).ok_or(Error::InvalidMember(
                "expires_after.seconds",
                "a non-negative integer",
            ))?;
            if asked <= left {
                return Ok(body);
            }
            Ok(body_scan::splice(
                &body,
                &[(r, left.to_string().into_bytes())],
            ))
        }
        None => {
            let seconds = left.min(DEFAULT_SECRET_SECONDS);
            let comma = if inner.is_empty { "" } else { "," };
            let at = inner.inner_start;
            let member = format!(r#""seconds":{seconds}{comma}"#);
            Ok(body_scan::splice(&body, &[(at..at, member.into_bytes())]))
        }
    }
}

/// Does this endpoint take the secret's session model in `session.model` (the GA `client_secrets`)?
/// The older `sessions` endpoint names it at the top level like any OpenAI body (`request/policy.rs`).
pub fn names_session_model(rest_path: &str) -> bool {
    rest_path.ends_with(CLIENT_SECRETS)
}

/// `models` and `ext.rep_m` on a `client_secrets` request's `session.model`: the model every session
/// opened with the secret uses, so it must be one the token allows (and is written when the token
/// forces one). A request without a session model is refused under `models` (the provider would pick
/// its default), and an output ceiling cannot be held to sessions the relay never sees.
pub fn apply_session_model(claims: &Claims, body: Vec<u8>) -> Result<Vec<u8>, Error> {
    if claims.mtok.is_some() {
        return Err(Error::LimitNotEnforceable("output ceiling (`mtok`)"));
    }
    let forced = claims.ext.as_ref().and_then(|e| e.rep_m.as_deref());
    let models = claims.models.as_deref();
    if forced.is_none() && models.is_none() {
        return Ok(body);
    }
    let doc: &[u8] = if body.is_empty() { b"{}" } else { &body };
    let top = body_scan::scan_object(doc, &[&["session"]])
        .map_err(|e| model_scan_error(e, "the request body"))?;
    let Some(session) = top.found[0].clone() else {
        let Some(forced) = forced else {
            return Err(Error::ModelNotAllowed);
        };
        let comma = if top.is_empty { "" } else { "," };
        let member = format!(
            r#""session":{{"type":"realtime","model":{}}}{comma}"#,
            json_string(forced)
        );
        let at = top.inner_start;
        return Ok(body_scan::splice(doc, &[(at..at, member.into_bytes())]));
    };
    let inner = body_scan::scan_object_at(doc, session, &[&["model"]])
        .map_err(|e| model_scan_error(e, "`session`"))?;
    match (inner.found[0].clone(), forced) {
        (Some(range), Some(forced)) => Ok(body_scan::splice(
            doc,
            &[(range, json_string(forced).into_bytes())],
        )),
        (None, Some(forced)) => {
            let comma = if inner.is_empty { "" } else { "," };
            let member = format!(r#""model":{}{comma}"#, json_string(forced));
            let at = inner.inner_start;
            Ok(body_scan::splice(doc, &[(at..at, member.into_bytes())]))
        }
        (Some(range), None) => {
            let name = body_scan::decode_string(&doc[range], MAX_MODEL_BYTES)
                .map_err(|e| model_scan_error(e, "`session.model`"))?;
            match name {
                Some(n) if models.unwrap_or_default().contains(&n) => Ok(body),
                _ => Err(Error::ModelNotAllowed),
            }
        }
        (None, None) => Err(Error::ModelNotAllowed),
    }
}

fn json_string(s: &str) -> String {
    serde_json::to_string(s).expect("a string always serialises")
}

fn model_scan_error(e: ScanError, what: &'static str) -> Error {
    match e {
        ScanError::Duplicate(_) => Error::DuplicateMember(if what == "`session`" {
            "session.model"
        } else {
            "session"
        }),
        ScanError::NotAnObject => Error::InvalidMember(what, "a JSON object"),
        ScanError::NotAString => Error::InvalidMember("session.model", "a string"),
        _ => Error::InvalidBody("not valid JSON"),
    }
}

fn scan_error(e: ScanError, what: &'static str) -> Error {
    match e {
        ScanError::Duplicate(_) => Error::DuplicateMember("expires_after"),
        ScanError::NotAnObject => Error::InvalidMember(what, "a JSON object"),
        _ => Error::InvalidBody("not valid JSON"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::format::{Budget, Claims};

    fn claims(paths: Option<&[&str]>) -> Claims {
        Claims {
            paths: paths.map(|p| p.iter().map(|s| s.to_string()).collect()),
            ..Claims::new("0".repeat(32), "t".into(), 0, 100, "openai".into())
        }
    }

    #[test]
    fn a_secret_endpoint_needs_an_explicit_opt_in_and_no_budget() {
        let p = "/realtime/client_secrets";
        assert_eq!(
            check(&claims(None), ApiFamily::OpenAi, p),
            Err(Error::EndpointNotAllowed)
        );
        assert_eq!(
            check(&claims(Some(&["/chat/completions"])), ApiFamily::OpenAi, p),
            Err(Error::EndpointNotAllowed)
        );
        assert_eq!(check(&claims(Some(&[p])), ApiFamily::OpenAi, p), Ok(()));
        let mut b = claims(Some(&[p]));
        b.bud = Some(Budget {
            tok: Some(1),
            cost: None,
        });
        assert_eq!(
            check(&b, ApiFamily::OpenAi, p),
            Err(Error::LimitNotEnforceable(BUDGET))
        );
        let mut capped = claims(Some(&[p]));
        capped.ssec = Some(600);
        assert_eq!(
            check(&capped, ApiFamily::OpenAi, p),
            Err(Error::LimitNotEnforceable(SESSION_SECONDS))
        );
        assert_eq!(
            check(&claims(None), ApiFamily::OpenAi, "/chat/completions"),
            Ok(())
        );
        assert_eq!(check(&claims(None), ApiFamily::Anthropic, p), Ok(()));
    }

    #[test]
    fn the_secret_session_model_is_held_to_the_token() {
        let limited = Claims {
            models: Some(vec!["gpt-realtime".into()]),
            ..claims(None)
        };
        let apply = |c: &Claims, body: &str| {
            apply_session_model(c, body.into()).map(|b| String::from_utf8(b).unwrap())
        };
        let ok = r#"{"session":{"type":"realtime","model":"gpt-realtime"}}"#;
        assert_eq!(apply(&limited, ok).as_deref(), Ok(ok));
        for bad in [
            r#"{"session":{"type":"realtime","model":"gpt-4o-realtime-preview"}}"#,
            r#"{"session":{"type":"realtime"}}"#,
            r#"{"expires_after":{"seconds":60}}"#,
            "",
        ] {
            assert_eq!(apply(&limited, bad), Err(Error::ModelNotAllowed), "{bad}");
        }
        for bad in [
            r#"{"session":{"model":"gpt-realtime","model":"gpt-4o"}}"#,
            r#"{"session":{"model":"gpt-realtime"},"sessio\u006e":{"model":"x"}}"#,
            r#"{"session":{"model":["gpt-realtime"]}}"#,
            r#"{"session":"gpt-realtime"}"#,
            r#"{"session":{"model":"gpt-realtime"}"#,
        ] {
            assert!(apply(&limited, bad).is_err(), "{bad}");
        }
        // A forced model is written over the session's or added to it.
        let forced = Claims {
            ext: Some(crate::token::format::Ext {
                rep_m: Some("gpt-realtime-mini".into()),
            }),
            ..claims(None)
        };
        assert_eq!(
            apply(
                &forced,
                r#"{"session":{"type":"realtime","model":"gpt-realtime"}}"#
            )
            .unwrap(),
            r#"{"session":{"type":"realtime","model":"gpt-realtime-mini"}}"#
        );
        assert_eq!(
            apply(&forced, r#"{"session":{"type":"realtime"}}"#).unwrap(),
            r#"{"session":{"model":"gpt-realtime-mini","type":"realtime"}}"#
        );
        assert_eq!(
            apply(&forced, r#"{"expires_after":{"seconds":60}}"#).unwrap(),
            r#"{"session":{"type":"realtime","model":"gpt-realtime-mini"},"expires_after":{"seconds":60}}"#
        );
        assert_eq!(
            apply(&forced, "").unwrap(),
            r#"{"session":{"type":"realtime","model":"gpt-realtime-mini"}}"#
        );
        // No model limit: the body is not read.
        assert_eq!(apply(&claims(None), "not json").unwrap(), "not json");
        let capped = Claims {
            mtok: Some(10),
            ..claims(None)
        };
        assert!(apply(&capped, ok).is_err());
    }

    #[test]
    fn the_secret_never_outlives_the_token() {
        let p = "/realtime/client_secrets";
        let clamp = |body: &str, left| {
            String::from_utf8(clamp_lifetime(p, body.into(), left).unwrap()).unwrap()
        };
        assert_eq!(
            clamp(
                r#"{"expires_after":{"anchor":"created_at","seconds":7200},"session":{}}"#,
                300
            ),
            r#"{"expires_after":{"anchor":"created_at","seconds":300},"session":{}}"#
        );
        assert_eq!(
            clamp(
                r#"{"expires_after":{"anchor":"created_at","seconds":60}}"#,
                300
            ),
            r#"{"expires_after":{"anchor":"created_at","seconds":60}}"#
        );
        assert_eq!(
            clamp(r#"{"session":{"model":"m"}}"#, 3000),
            r#"{"expires_after":{"anchor":"created_at","seconds":600},"session":{"model":"m"}}"#
        );
        assert_eq!(
            clamp("{}", 30),
            r#"{"expires_after":{"anchor":"created_at","seconds":30}}"#
        );
        assert_eq!(
            clamp("", 30),
            r#"{"expires_after":{"anchor":"created_at","seconds":30}}"#
        );
        assert_eq!(
            clamp(r#"{"expires_after":{"anchor":"created_at"}}"#, 30),
            r#"{"expires_after":{"seconds":30,"anchor":"created_at"}}"#
        );
        // Spellings that could hide a second lifetime are refused.
        for bad in [
            r#"{"expires_after":{"seconds":1},"expires_\u0061fter":{"seconds":9999}}"#,
            r#"{"expires_after":{"seconds":1,"seconds":9999}}"#,
            r#"{"expires_after":{"seconds":1e9}}"#,
            r#"{"expires_after":[]}"#,
        ] {
            assert!(clamp_lifetime(p, bad.into(), 30).is_err(), "{bad}");
        }
        assert_eq!(
            clamp_lifetime("/chat/completions", b"x".to_vec(), 1).unwrap(),
            b"x"
        );
    }
}
