//! Finding and proving a `relayapi-sdk` 1.0.0 token (`docs/compat-v0.md`), for tenants that opted in:
//! the URL shapes that SDK and the official OpenAI SDKs make of its URLs, and the one call into
//! `token/compat_v0/`. A request is read as v0 when its query carries a `token` that is not a v1 token
//! and a `rai_hash`; without a tenant opted in every such token is refused. v1 tokens are located by
//! `request/route.rs`'s rules, unchanged. Every failure here is the
//! same 401 as a bad v1 token.
//!
//! The shapes, with `base_path` `/relayapi/`:
//! - `/relayapi//relayapi/chat/completions?token=T&rai_hash=H`: the SDK's
//!   `generate_api_url_with_token(t, "chat_completions")`, base path doubled;
//! - `/relayapi/?token=T&rai_hash=H`: the same with no endpoint (the provider base itself);
//! - `/relayapi/?token=T&rai_hash=H/chat/completions` (the OpenAI JS SDK) and
//!   `/relayapi/?token=T&rai_hash=Hchat/completions` (the OpenAI Python SDK): that URL given to an
//!   OpenAI SDK as `base_url`, which appends the endpoint to the query;
//! - `/relayapi/chat/completions?token=T&rai_hash=H`: the plain form a hand-written client would use.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::app::App;
use crate::error::Error;
use crate::request::route::Located;
use crate::token::format::Claims;
use crate::token::secret::SecretString;
use crate::upstream::forward_path;

/// Length of a `rai_hash`: SHA-256 in lower-case hex.
const RAI_HASH_LEN: usize = 64;

/// Where a v0 token and its `rai_hash` were found, and what to forward.
#[derive(Debug, PartialEq, Eq)]
pub struct V0Located<'a> {
    pub token: &'a str,
    pub rai_hash: &'a str,
    /// Provider-relative path, starting with '/' (or empty).
    pub rest: String,
    /// The query to forward without `token` and `rai_hash`, with its leading '?' when non-empty.
    pub query: String,
}

/// Reads one of the v0 shapes: `after_base` is the path after the base path `base`, `query` the query
/// without its `?`. `None` when the request is not v0-shaped: no `rai_hash`, a `token` or `rai_hash`
/// that is missing or repeated, a malformed hash, a v1 token, or an endpoint both in the path and after
/// the hash. The token text itself is the decoder's to judge. Pure; fuzzed with the decoder
/// (`fuzz/props/compat_v0.rs`).
pub fn locate_v0<'a>(
    after_base: &'a str,
    query: Option<&'a str>,
    base: &str,
) -> Option<V0Located<'a>> {
    let (mut token, mut hash, mut hash_path) = (None, None, None);
    let mut kept = String::new();
    for pair in query?.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("token", v)) => {
                if token.replace(v).is_some() {
                    return None;
                }
            }
            Some(("rai_hash", v)) => {
                // The OpenAI SDKs append the endpoint to the last query value: the JS SDK as
                // `H/chat/completions`, the Python SDK (which sees a base path already ending in '/')
                // as `Hchat/completions`. A hash is exactly 64 characters, so the split is unambiguous.
                let (h, path) = match (v.get(..RAI_HASH_LEN), v.get(RAI_HASH_LEN..)) {
                    (Some(h), Some(rest)) if !rest.is_empty() => (h, Some(rest)),
                    _ => (v, None),
                };
                if hash.replace(h).is_some() {
                    return None;
                }
                hash_path = path;
            }
            _ => {
                kept.push(if kept.is_empty() { '?' } else { '&' });
                kept.push_str(pair);
            }
        }
    }
    let (token, hash) = (token?, hash?);
    let hash_ok = hash.len() == RAI_HASH_LEN
        && hash
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    // Any other text is left to the decoder, so a token that is not base64url gets the same 401 as one
    // with a bad padding; a v1 token keeps the v1 rules even next to a `rai_hash`.
    let token_ok = !token.is_empty() && !token.starts_with("rt1.");
    if !hash_ok || !token_ok {
        return None;
    }
    // The SDK joins `base_path` twice: `{base}{base without its last '/'}/endpoint`.
    let in_path = match after_base.strip_prefix(base) {
        Some(endpoint) => format!("/{endpoint}"),
        None if after_base.is_empty() => String::new(),
        None => format!("/{}", after_base.trim_start_matches('/')),
    };
    let rest = match (in_path.is_empty(), hash_path) {
        (_, None) => in_path,
        (true, Some(p)) if p.starts_with('/') => p.to_owned(),
        (true, Some(p)) => format!("/{p}"),
        (false, Some(_)) => return None,
    };
    Some(V0Located {
        token,
        rai_hash: hash,
        rest,
        query: kept,
    })
}

/// Steps 2 and 3 of admission for a v0 request: `None` when the request is not v0-shaped (the v1 rules
/// apply then); else where to forward and the token's claims as v1 claims, or
/// the same 401 as any bad token (a path the relay would not forward is the same 400 as for v1).
pub fn prove(
    app: &App,
    after_base: &str,
    query: Option<&str>,
    now: u64,
) -> Option<Result<(Located, Arc<Claims>), Error>> {
    // With no tenant opted in, a v0-shaped request still takes this path, so the same token gets the
    // same 401 whatever the relay's configuration (the v1 rules would refuse the doubled base path
    // with a 400 before looking at the token).
    let found = locate_v0(after_base, query, &app.cfg.server.base_path)?;
    Some((|| {
        forward_path::check(&found.rest).map_err(Error::BadRequest)?;
        let claims = app
            .keys
            .compat
            .verify(found.token, found.rai_hash, now)
            .map_err(|_| {
                app.obs.stats.rejected_token.fetch_add(1, Ordering::Relaxed);
                Error::InvalidToken
            })?;
        let loc = Located {
            token: None::<SecretString>,
            rest: found.rest,
            query: found.query,
        };
        Ok((loc, Arc::new(claims)))
    })())
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: &str = "8f434346648f6b96df89dda901c5176b10a6d83961dd3c1ac88b59b2dc327aa4";
    const BASE: &str = "/relayapi/";

    fn q(s: &str) -> String {
        s.replace("H", H)
    }

    fn at(after_base: &str, query: &str) -> Option<(String, String)> {
        let query = q(query);
        locate_v0(after_base, Some(&query), BASE).map(|l| {
            assert_eq!(l.token, "T0k-_");
            assert_eq!(l.rai_hash, H);
            (l.rest, l.query)
        })
    }

    #[test]
    fn every_sdk_shape() {
        let chat = Some(("/chat/completions".to_string(), String::new()));
        // /relayapi//relayapi/chat/completions?token=T&rai_hash=H
        assert_eq!(
            at("/relayapi/chat/completions", "token=T0k-_&rai_hash=H"),
            chat
        );
        // /relayapi/?token=T&rai_hash=H/chat/completions (the OpenAI JS SDK given the no-endpoint URL)
        assert_eq!(at("", "token=T0k-_&rai_hash=H/chat/completions"), chat);
        // /relayapi/?token=T&rai_hash=Hchat/completions (the OpenAI Python SDK, same URL)
        assert_eq!(at("", "token=T0k-_&rai_hash=Hchat/completions"), chat);
        assert_eq!(
            at("", "token=T0k-_&rai_hash=Hembeddings"),
            Some(("/embeddings".into(), String::new()))
        );
        // /relayapi/chat/completions?token=T&rai_hash=H
        assert_eq!(at("chat/completions", "token=T0k-_&rai_hash=H"), chat);
        // /relayapi/?token=T&rai_hash=H: the provider base itself
        assert_eq!(
            at("", "token=T0k-_&rai_hash=H"),
            Some((String::new(), String::new()))
        );
        // Other parameters are forwarded; order does not matter.
        assert_eq!(
            at("", "rai_hash=H/models&token=T0k-_&limit=5"),
            Some(("/models".into(), "?limit=5".into()))
        );
    }

    #[test]
    fn with_a_root_base_path() {
        let query = q("token=T&rai_hash=H");
        let l = locate_v0("/chat/completions", Some(&query), "/").unwrap();
        assert_eq!(l.rest, "/chat/completions");
    }

    #[test]
    fn anything_else_is_not_v0() {
        let none = [
            ("", "token=T0k-_"),
            ("", "rai_hash=H"),
            ("", "token=T0k-_&token=T0k-_&rai_hash=H"),
            ("", "token=T0k-_&rai_hash=H&rai_hash=H"),
            ("", "token=&rai_hash=H"),
            ("", "token=rt1.abc&rai_hash=H"),
            ("", "token=T0k-_&rai_hash=ABC"),
            (
                "chat/completions",
                "token=T0k-_&rai_hash=H/chat/completions",
            ),
        ];
        for (p, query) in none {
            let query = q(query);
            assert_eq!(locate_v0(p, Some(&query), BASE), None, "{p}?{query}");
        }
        assert_eq!(locate_v0("", None, BASE), None);
        let upper = q("token=T&rai_hash=H")
            .to_uppercase()
            .replace("TOKEN", "token")
            .replace("RAI_HASH", "rai_hash");
        assert_eq!(locate_v0("", Some(&upper), BASE), None);
    }
}
