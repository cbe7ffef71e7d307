//! The model a request names in its query (`?model=`), as OpenAI's realtime WebSocket URL and its WebRTC
//! call set-up do: held to the token's `models` and replaced by its `ext.rep_m`, with the query rebuilt
//! (percent-encoded) around it. A query naming the model twice is refused: which copy a provider reads is
//! unknown.

use crate::error::Error;
use crate::request::route::Located;
use crate::token::format::Claims;

/// `models` and `ext.rep_m` on the model a URL names in its query (`?model=`): the only model an allowed
/// model may be, or the forced one written over it. Without either limit nothing changes.
pub fn apply(claims: &Claims, loc: &mut Located) -> Result<(), Error> {
    let forced = claims.ext.as_ref().and_then(|e| e.rep_m.as_deref());
    if claims.models.is_none() && forced.is_none() {
        return Ok(());
    }
    let query = loc.query.strip_prefix('?').unwrap_or(&loc.query);
    let mut model = None;
    let mut kept: Vec<String> = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("model", v)) => {
                if model.is_some() {
                    return Err(Error::DuplicateMember("model"));
                }
                model =
                    Some(percent_decode(v).ok_or(Error::InvalidMember("model", "a model name"))?);
            }
            _ => kept.push(pair.to_string()),
        }
    }
    if let Some(forced) = forced {
        kept.push(format!("model={}", percent_encode(forced)));
    } else if let Some(models) = &claims.models {
        match &model {
            Some(m) if models.iter().any(|a| a == m) => {
                kept.push(format!("model={}", percent_encode(m)))
            }
            _ => return Err(Error::ModelNotAllowed),
        }
    }
    loc.query = format!("?{}", kept.join("&"));
    Ok(())
}

fn percent_decode(v: &str) -> Option<String> {
    let b = v.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => return None,
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

fn percent_encode(v: &str) -> String {
    v.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::format::Ext;

    fn loc(query: &str) -> Located {
        Located {
            token: None,
            rest: "/realtime".into(),
            query: query.into(),
        }
    }

    fn claims(models: Option<&[&str]>, forced: Option<&str>) -> Claims {
        Claims {
            models: models.map(|m| m.iter().map(|s| s.to_string()).collect()),
            ext: forced.map(|f| Ext {
                rep_m: Some(f.into()),
            }),
            ..Claims::new("0".repeat(32), "t".into(), 0, 1, "openai".into())
        }
    }

    #[test]
    fn allowed_forced_and_refused_models() {
        let mut l = loc("?model=gpt-realtime&x=1");
        apply(&claims(Some(&["gpt-realtime"]), None), &mut l).unwrap();
        assert_eq!(l.query, "?x=1&model=gpt-realtime");
        let mut l = loc("?model=gpt%2Drealtime");
        apply(&claims(Some(&["gpt-realtime"]), None), &mut l).unwrap();
        let mut l = loc("?model=other");
        assert_eq!(
            apply(&claims(Some(&["gpt-realtime"]), None), &mut l),
            Err(Error::ModelNotAllowed)
        );
        let mut l = loc("");
        assert_eq!(
            apply(&claims(Some(&["gpt-realtime"]), None), &mut l),
            Err(Error::ModelNotAllowed)
        );
        let mut l = loc("?model=a&model=b");
        assert!(apply(&claims(Some(&["a", "b"]), None), &mut l).is_err());
        let mut l = loc("?model=other");
        apply(&claims(None, Some("mini rt")), &mut l).unwrap();
        assert_eq!(l.query, "?model=mini%20rt");
        let mut l = loc("?model=anything");
        apply(&claims(None, None), &mut l).unwrap();
        assert_eq!(l.query, "?model=anything");
    }
}
