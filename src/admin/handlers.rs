//! The admin endpoints a backend calls with its `.rai` key (docs/admin-api.md): a token's usage,
//! revoking one token, revoking everything of the tenant issued before a time, an end user's usage.
//! Signature checking is `admin/signing.rs`, the spend documents `admin/spend_docs.rs`; this file routes,
//! reads the small JSON bodies and shapes the answers. A tenant only ever reaches its own tokens and
//! users because every store call is scoped by the tenant the signature proved.

use serde_json::{json, Value};

use crate::admin::spend_docs;
use crate::app::App;
use crate::budget::lines::token_key;
use crate::error::Error;
use crate::store::{Spend, Usage};
use crate::token::cache::Verdict;

/// Admin bodies are tiny JSON documents; anything larger is refused before it is buffered.
pub const MAX_ADMIN_BODY: u64 = 16 * 1024;

/// An admin answer: status and JSON body, or an error for `request/reply.rs` to render.
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
            let mut doc = usage_doc(tenant, id, usage.as_ref());
            let spent = spend_docs::token_spend(&app.store, tenant, id).await?;
            let spent = spent.adjusted(
                &app.usage.pending(tenant, &token_key(id)),
                &Spend::default(),
            );
            spend_docs::add_token_spend(&mut doc, &spent);
            Ok((200, doc.to_string()))
        }
        ("POST", ["tokens", id, "revoke"]) => {
            let id = token_id(id)?;
            let usage = app
                .store
                .revoke(tenant, id)
                .await
                .map_err(|_| Error::StoreUnavailable)?;
            // This relay refuses the token from now on without asking the store again.
            let (now, epoch) = (app.clock.unix_now(), app.keys.tokens.epoch());
            app.keys
                .tokens
                .remember(tenant, id, Verdict::Revoked, now, epoch);
            let mut doc = usage_doc(tenant, id, Some(&usage));
            let spent = spend_docs::token_spend(&app.store, tenant, id).await?;
            let spent = spent.adjusted(
                &app.usage.pending(tenant, &token_key(id)),
                &Spend::default(),
            );
            spend_docs::add_token_spend(&mut doc, &spent);
            Ok((200, doc.to_string()))
        }
        ("POST", ["revoke-before"]) => {
            let before = serde_json::from_slice::<Value>(body)
                .ok()
                .and_then(|v| v.get("before").and_then(Value::as_u64))
                .ok_or(Error::BadRequest(
                    "expected a JSON body {\"before\": <unix seconds>}",
                ))?;
            check_revoke_before(before, app.clock.unix_now(), app.cfg.token.clock_skew)?;
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
        ("GET", ["users", uid, "usage"]) => {
            let uid = spend_docs::decode_uid(uid)?;
            let doc =
                spend_docs::user_usage(&app.store, tenant, &uid, app.clock.unix_now()).await?;
            Ok((200, doc.to_string()))
        }
        (_, ["tokens", _]) | (_, ["users", _, "usage"]) => Err(Error::MethodNotAllowed("GET")),
        (_, ["tokens", _, "revoke"]) | (_, ["revoke-before"]) => {
            Err(Error::MethodNotAllowed("POST"))
        }
        _ => Err(Error::NotFound),
    }
}

/// A revoke-before mark may not lie in the future beyond the tolerated clock skew: a mark after now
/// revokes every token the tenant has not minted yet, for good (marks never go down), and a time in
/// milliseconds (`Date.now()`) is such a mark (issue 9, finding 9).
fn check_revoke_before(before: u64, now: u64, clock_skew: u64) -> Result<(), Error> {
    if before > now.saturating_add(clock_skew) {
        return Err(Error::InvalidParameter(
            "`before` must be a time in Unix seconds (not milliseconds) no later than now plus the \
             relay's token.clock_skew; to revoke everything issued so far, send the current time",
        ));
    }
    Ok(())
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
    fn revoke_before_refuses_the_future() {
        let now = 1_790_000_000;
        assert!(check_revoke_before(0, now, 60).is_ok());
        assert!(check_revoke_before(now, now, 60).is_ok());
        assert!(check_revoke_before(now + 60, now, 60).is_ok());
        for bad in [now + 61, 9_999_999_999, now * 1000, u64::MAX] {
            let e = check_revoke_before(bad, now, 60).unwrap_err();
            assert_eq!((e.status(), e.code()), (400, "invalid_parameter"), "{bad}");
            assert!(e.message().contains("Unix seconds"), "{}", e.message());
        }
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
