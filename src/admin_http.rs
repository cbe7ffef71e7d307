//! The admin endpoints a backend calls with its `.rai` key (docs/admin-api.md): a token's usage,
//! revoking one token, revoking everything of the tenant issued before a time. Signature checking is
//! `admin.rs`; this file routes, reads the small JSON bodies and shapes the answers. A tenant only
//! ever reaches its own tokens because every store call is scoped by the tenant the signature proved.

use serde_json::{json, Value};

use crate::app::App;
use crate::error::Error;
use crate::store::Usage;

/// Admin bodies are tiny JSON documents; anything larger is refused before it is buffered.
pub const MAX_ADMIN_BODY: u64 = 16 * 1024;

/// An admin answer: status and JSON body, or an error for `relay.rs` to render.
pub type AdminResult = Result<(u16, String), Error>;

/// Dispatch an authenticated admin request. `tenant` comes from the verified signature.
pub async fn dispatch(
    app: &App,
    tenant: &str,
    method: &str,
    path: &str,
    body: &[u8],
) -> AdminResult {
    let rest = path.strip_prefix("/admin/v1/").ok_or(Error::NotFound)?;
    let segs: Vec<&str> = rest.split('/').collect();
    match (method, segs.as_slice()) {
        ("GET", ["tokens", id]) => {
            let id = token_id(id)?;
            let usage = app
                .store
                .usage(tenant, id)
                .await
                .map_err(|_| Error::StoreUnavailable)?;
            Ok((200, usage_doc(tenant, id, usage.as_ref()).to_string()))
        }
        ("POST", ["tokens", id, "revoke"]) => {
            let id = token_id(id)?;
            let usage = app
                .store
                .revoke(tenant, id)
                .await
                .map_err(|_| Error::StoreUnavailable)?;
            Ok((200, usage_doc(tenant, id, Some(&usage)).to_string()))
        }
        ("POST", ["revoke-before"]) => {
            let before = serde_json::from_slice::<Value>(body)
                .ok()
                .and_then(|v| v.get("before").and_then(Value::as_u64))
                .ok_or(Error::BadRequest(
                    "expected a JSON body {\"before\": <unix seconds>}",
                ))?;
            let mark = app
                .store
                .revoke_before(tenant, before)
                .await
                .map_err(|_| Error::StoreUnavailable)?;
            Ok((
                200,
                json!({"tenant_id": tenant, "revoked_before": mark}).to_string(),
            ))
        }
        (_, ["tokens", _]) | (_, ["tokens", _, "revoke"]) | (_, ["revoke-before"]) => {
            Err(Error::MethodNotAllowed)
        }
        _ => Err(Error::NotFound),
    }
}

/// Token ids are 32 lowercase hex characters (docs/token-format.md §5).
fn token_id(id: &str) -> Result<&str, Error> {
    if id.len() == 32
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        Ok(id)
    } else {
        Err(Error::BadRequest(
            "a token id is 32 lowercase hex characters",
        ))
    }
}

fn usage_doc(tenant: &str, id: &str, u: Option<&Usage>) -> Value {
    match u {
        None => json!({
            "token_id": id, "tenant_id": tenant, "calls_used": 0, "max_calls": null, "remaining": null,
            "first_used_at": null, "last_used_at": null, "expires_at": null, "revoked": false,
        }),
        Some(u) => json!({
            "token_id": id,
            "tenant_id": tenant,
            "calls_used": u.calls_used,
            "max_calls": u.max_calls,
            "remaining": u.max_calls.map(|m| m.saturating_sub(u.calls_used)),
            "first_used_at": u.first_used_at,
            "last_used_at": u.last_used_at,
            "expires_at": u.expires_at,
            "revoked": u.revoked,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_ids_are_validated() {
        assert!(token_id("0123456789abcdef0123456789abcdef").is_ok());
        assert!(token_id("0123456789ABCDEF0123456789abcdef").is_err());
        assert!(token_id("../../etc").is_err());
    }

    #[test]
    fn usage_document_shapes() {
        let d = usage_doc("acme", "x", None);
        assert_eq!(d["calls_used"], 0);
        assert!(d["max_calls"].is_null());
        let u = Usage {
            calls_used: 3,
            max_calls: Some(5),
            expires_at: Some(9),
            ..Usage::default()
        };
        let d = usage_doc("acme", "x", Some(&u));
        assert_eq!(
            (d["remaining"].as_u64(), d["revoked"].as_bool()),
            (Some(2), Some(false))
        );
    }
}
