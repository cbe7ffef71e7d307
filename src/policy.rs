//! Token limits that look inside the request: allowed endpoints, allowed models, the forced model
//! (`ext.rep_m`) and the `max_tokens` ceiling. Pure functions over the path and the buffered body, so the
//! rules are unit-tested without sockets. `relay.rs` calls them after the body has been read.

use serde_json::Value;

use crate::error::Error;
use crate::token::{Claims, MtokMode};

/// Body members that bound the output length, by API: OpenAI chat (`max_tokens`, the newer
/// `max_completion_tokens`), OpenAI Responses (`max_output_tokens`), Anthropic messages (`max_tokens`).
const MAX_TOKEN_FIELDS: &[&str] = &["max_tokens", "max_completion_tokens", "max_output_tokens"];

/// The endpoint check: `paths` lists provider-relative paths, compared exactly (query excluded).
pub fn check_endpoint(claims: &Claims, rest_path: &str) -> Result<(), Error> {
    match &claims.paths {
        Some(paths) if !paths.iter().any(|p| p == rest_path) => Err(Error::EndpointNotAllowed),
        _ => Ok(()),
    }
}

/// Does the token need to see or change the body at all? Most tokens do not, and then the body is
/// forwarded byte for byte.
pub fn inspects_body(claims: &Claims) -> bool {
    claims.models.is_some()
        || claims.ext.as_ref().is_some_and(|e| e.rep_m.is_some())
        || claims.mtok.is_some()
}

/// A model named in the path, as Gemini does: `/v1beta/models/gemini-2.0-flash:generateContent`.
fn model_in_path(rest_path: &str) -> Option<&str> {
    let i = rest_path.find("/models/")?;
    let after = &rest_path[i + "/models/".len()..];
    let end = after.find([':', '/']).unwrap_or(after.len());
    Some(&after[..end]).filter(|m| !m.is_empty())
}

/// Apply `models`, `ext.rep_m` and `mtok` to a request. Returns the body to forward (unchanged when
/// nothing applies). Bodies that are not JSON objects cannot be checked: a token with an allow-list of
/// models or a token ceiling refuses them rather than let an unchecked request through.
pub fn apply(claims: &Claims, rest_path: &str, body: Vec<u8>) -> Result<Vec<u8>, Error> {
    if !inspects_body(claims) {
        return Ok(body);
    }
    let forced = claims.ext.as_ref().and_then(|e| e.rep_m.as_deref());
    if let (Some(models), Some(m)) = (&claims.models, model_in_path(rest_path)) {
        if !models.iter().any(|a| a == m) && forced.is_none() {
            return Err(Error::ModelNotAllowed);
        }
    }
    if body.is_empty() {
        return Ok(body);
    }
    let mut doc: Value = match serde_json::from_slice(&body) {
        Ok(v @ Value::Object(_)) => v,
        _ if claims.models.is_some() && model_in_path(rest_path).is_none() => {
            return Err(Error::ModelNotAllowed)
        }
        _ if claims.mtok.is_some() => return Err(Error::MaxTokensExceeded),
        _ => return Ok(body),
    };
    let obj = doc.as_object_mut().expect("matched an object above");
    let mut changed = false;
    if let Some(m) = forced {
        // The forced model wins over whatever the page asked for; the allow-list is then moot.
        if obj.get("model").and_then(Value::as_str) != Some(m) {
            obj.insert("model".into(), Value::String(m.to_string()));
            changed = true;
        }
    } else if let Some(models) = &claims.models {
        match obj.get("model").and_then(Value::as_str) {
            Some(m) if models.iter().any(|a| a == m) => {}
            Some(_) => return Err(Error::ModelNotAllowed),
            None if model_in_path(rest_path).is_some() => {}
            None => return Err(Error::ModelNotAllowed),
        }
    }
    if let Some(ceiling) = claims.mtok {
        let mode = claims.mtok_mode.unwrap_or(MtokMode::Clamp);
        let mut seen = false;
        for field in MAX_TOKEN_FIELDS {
            if let Some(v) = obj.get_mut(*field) {
                seen = true;
                let asked = v.as_u64().ok_or(Error::MaxTokensExceeded)?;
                if asked > ceiling {
                    if mode == MtokMode::Reject {
                        return Err(Error::MaxTokensExceeded);
                    }
                    *v = Value::from(ceiling);
                    changed = true;
                }
            }
        }
        if !seen {
            // No explicit bound means "as much as the model allows": add the ceiling in the member the
            // endpoint understands, so the limit holds without the page's cooperation.
            let field = if rest_path.ends_with("/responses") {
                "max_output_tokens"
            } else if rest_path.ends_with("/chat/completions") {
                "max_completion_tokens"
            } else {
                "max_tokens"
            };
            obj.insert(field.into(), Value::from(ceiling));
            changed = true;
        }
    }
    if !changed {
        return Ok(body);
    }
    Ok(serde_json::to_vec(&doc).expect("a Value always serialises"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::Ext;

    fn claims() -> Claims {
        let text = r#"{"jti":"00000000000000000000000000000000","tid":"t","iat":1,"exp":2,"prv":"openai","key":"k"}"#;
        Claims::from_json(text).expect("valid test claims")
    }

    fn body(v: serde_json::Value) -> Vec<u8> {
        serde_json::to_vec(&v).unwrap()
    }

    fn parse(b: &[u8]) -> serde_json::Value {
        serde_json::from_slice(b).unwrap()
    }

    #[test]
    fn untouched_without_limits() {
        let raw = b"{ \"model\" : \"x\" }".to_vec();
        assert_eq!(
            apply(&claims(), "/chat/completions", raw.clone()).unwrap(),
            raw
        );
        assert_eq!(
            apply(&claims(), "/x", b"not json".to_vec()).unwrap(),
            b"not json"
        );
    }

    #[test]
    fn forced_model_rewrites() {
        let mut c = claims();
        c.ext = Some(Ext {
            rep_m: Some("cheap".into()),
        });
        let out = apply(
            &c,
            "/chat/completions",
            body(serde_json::json!({"model": "gpt-4o", "n": 1})),
        )
        .unwrap();
        assert_eq!(parse(&out), serde_json::json!({"model": "cheap", "n": 1}));
        let out = apply(
            &c,
            "/chat/completions",
            body(serde_json::json!({"messages": []})),
        )
        .unwrap();
        assert_eq!(parse(&out)["model"], "cheap");
    }

    #[test]
    fn model_allow_list() {
        let mut c = claims();
        c.models = Some(vec!["a".into(), "b".into()]);
        assert!(apply(
            &c,
            "/chat/completions",
            body(serde_json::json!({"model": "a"}))
        )
        .is_ok());
        assert_eq!(
            apply(
                &c,
                "/chat/completions",
                body(serde_json::json!({"model": "c"}))
            ),
            Err(Error::ModelNotAllowed)
        );
        assert_eq!(
            apply(&c, "/chat/completions", body(serde_json::json!({}))),
            Err(Error::ModelNotAllowed)
        );
        assert_eq!(
            apply(&c, "/audio", b"--multipart".to_vec()),
            Err(Error::ModelNotAllowed)
        );
        assert!(apply(
            &c,
            "/v1beta/models/a:generateContent",
            body(serde_json::json!({}))
        )
        .is_ok());
        assert_eq!(
            apply(
                &c,
                "/v1beta/models/z:generateContent",
                body(serde_json::json!({}))
            ),
            Err(Error::ModelNotAllowed)
        );
        assert!(
            apply(&c, "/models", Vec::new()).is_ok(),
            "a GET without a body uses no model"
        );
    }

    #[test]
    fn max_tokens_clamp_and_reject() {
        let mut c = claims();
        c.mtok = Some(100);
        let out = apply(
            &c,
            "/chat/completions",
            body(serde_json::json!({"max_tokens": 500})),
        )
        .unwrap();
        assert_eq!(parse(&out)["max_tokens"], 100);
        let out = apply(
            &c,
            "/chat/completions",
            body(serde_json::json!({"max_tokens": 50})),
        )
        .unwrap();
        assert_eq!(parse(&out)["max_tokens"], 50);
        let out = apply(
            &c,
            "/chat/completions",
            body(serde_json::json!({"model": "m"})),
        )
        .unwrap();
        assert_eq!(parse(&out)["max_completion_tokens"], 100);
        let out = apply(&c, "/v1/messages", body(serde_json::json!({"model": "m"}))).unwrap();
        assert_eq!(parse(&out)["max_tokens"], 100);
        assert_eq!(
            apply(
                &c,
                "/chat/completions",
                body(serde_json::json!({"max_tokens": "lots"}))
            ),
            Err(Error::MaxTokensExceeded)
        );
        c.mtok_mode = Some(MtokMode::Reject);
        assert_eq!(
            apply(
                &c,
                "/chat/completions",
                body(serde_json::json!({"max_tokens": 101}))
            ),
            Err(Error::MaxTokensExceeded)
        );
        assert!(apply(
            &c,
            "/chat/completions",
            body(serde_json::json!({"max_tokens": 100}))
        )
        .is_ok());
    }

    #[test]
    fn endpoints() {
        let mut c = claims();
        assert!(check_endpoint(&c, "/anything").is_ok());
        c.paths = Some(vec!["/chat/completions".into()]);
        assert!(check_endpoint(&c, "/chat/completions").is_ok());
        assert_eq!(
            check_endpoint(&c, "/embeddings"),
            Err(Error::EndpointNotAllowed)
        );
        assert_eq!(
            check_endpoint(&c, "/chat/completions/"),
            Err(Error::EndpointNotAllowed)
        );
    }
}
