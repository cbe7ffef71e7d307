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
        assert_eq!(
            check(&claims(None), ApiFamily::OpenAi, "/chat/completions"),
            Ok(())
        );
        assert_eq!(check(&claims(None), ApiFamily::Anthropic, p), Ok(()));
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
