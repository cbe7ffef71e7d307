//! `token.compat_v0` in `config.json`: the tenants whose `relayapi-sdk` 1.0.0 tokens the relay accepts
//! (`docs/compat-v0.md`), each with the original `.rai` file and the limits forced on its tokens. An
//! empty list (the default) accepts none. The schema and its checks only; reading the original `.rai`
//! and verifying tokens is `token/compat_v0/`'s, loading both at start `server/compat_keys.rs`'s.

use std::path::PathBuf;

use serde::Deserialize;

use crate::text::grammar::{is_key_id, is_tenant_id};

/// Default longest lifetime of a v0 token: one day, the SDK's own default (`expire_days=1`).
const DEFAULT_MAX_LIFETIME: u64 = 86_400;
/// Default largest `max_calls`: 100, the SDK's own default.
const DEFAULT_MAX_CALLS: u64 = 100;
/// Largest `max_calls` an operator may allow: 2^53 - 1, the largest integer claim (token format §5).
const MAX_CALLS: u64 = (1 << 53) - 1;
/// Longest lifetime an operator may allow: 30 days (v0 tokens cannot be re-keyed per token; a stolen
/// one should not outlive a month).
const MAX_MAX_LIFETIME: u64 = 30 * 86_400;

/// One tenant opted in to v0 tokens.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompatV0Tenant {
    /// The tenant its tokens count, revoke and report under (may be a v1 tenant too).
    pub tenant_id: String,
    /// The original `.rai` file (`crypto.method` `"aes"`), as the tenant's backends hold it.
    pub rai: PathBuf,
    /// The key id the tenant signs admin API requests with (its admin key is derived from the AES key).
    pub key_id: String,
    /// Seconds; tokens whose `expire_time - created_at` is longer are refused.
    #[serde(default = "default_max_lifetime")]
    pub max_lifetime: u64,
    /// Tokens asking for more calls are refused.
    #[serde(default = "default_max_calls")]
    pub max_calls: u64,
    /// Providers its tokens may name (required: at least one).
    pub providers: Vec<String>,
    /// When not empty: `api_key` in its tokens names one of these server-held keys (`api_keys`), and
    /// a token carrying anything else is refused.
    #[serde(default)]
    pub krefs: Vec<String>,
    /// A rate every token of the tenant gets: at most `n` calls in any `s` seconds.
    #[serde(default)]
    pub rate: Option<CompatRate>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompatRate {
    pub n: u64,
    pub s: u64,
}

fn default_max_lifetime() -> u64 {
    DEFAULT_MAX_LIFETIME
}

fn default_max_calls() -> u64 {
    DEFAULT_MAX_CALLS
}

/// Checks every entry; on error, the field (`token.compat_v0[i].member`) and what is expected.
/// `is_provider` says whether a name is a built-in or configured provider, `is_key_name` whether it is
/// a name in `api_keys`.
pub(super) fn check(
    list: &[CompatV0Tenant],
    is_provider: impl Fn(&str) -> bool,
    is_key_name: impl Fn(&str) -> bool,
) -> Result<(), (String, String)> {
    let mut seen = std::collections::BTreeSet::new();
    for (i, t) in list.iter().enumerate() {
        let field = |m: &str| format!("token.compat_v0[{i}].{m}");
        let fail = |m: &str, what: &str| Err((field(m), format!("expected {what}")));
        if !is_tenant_id(&t.tenant_id) {
            return fail("tenant_id", "1 to 64 characters from A-Z a-z 0-9 . _ -");
        }
        if !is_key_id(&t.key_id) {
            return fail("key_id", "1 to 32 characters from A-Z a-z 0-9 . _ -");
        }
        if !seen.insert(t.key_id.clone()) {
            return fail("key_id", "a key id no other compat_v0 entry uses");
        }
        if t.rai.as_os_str().is_empty() {
            return fail("rai", "the path of the original RelayAPI .rai file");
        }
        if t.max_lifetime == 0 || t.max_lifetime > MAX_MAX_LIFETIME {
            return fail("max_lifetime", "seconds from 1 to 2592000 (30 days)");
        }
        if t.max_calls == 0 || t.max_calls > MAX_CALLS {
            return fail("max_calls", "a number of calls from 1 to 2^53-1");
        }
        if t.providers.is_empty() {
            return fail("providers", "at least one provider name its tokens may use");
        }
        for (j, p) in t.providers.iter().enumerate() {
            if !is_provider(p) {
                return fail(
                    &format!("providers[{j}]"),
                    "a built-in or configured provider name",
                );
            }
        }
        for (j, k) in t.krefs.iter().enumerate() {
            if !is_key_name(k) {
                return fail(&format!("krefs[{j}]"), "a name defined in `api_keys`");
            }
        }
        if let Some(r) = t.rate {
            if r.n == 0 || r.s == 0 || r.n > 31_536_000 || r.s > 31_536_000 {
                return fail(
                    "rate",
                    "{\"n\": calls, \"s\": seconds}, each from 1 to 31536000",
                );
            }
        }
    }
    Ok(())
}
