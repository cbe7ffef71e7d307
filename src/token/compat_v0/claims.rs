//! A v0 plaintext turned into the relay's own [`Claims`], so expiry, call counting, revocation and rate
//! limits run exactly as for v1 tokens. Before that every rule the SDK's own output always meets is
//! checked (the `id` is the creation time, the lifetime a whole number of days), and every limit the
//! operator forced on the tenant ([`Policy`]); a token that fails any of them, or is expired, not yet
//! valid or lives too long, is the one [`InvalidToken`] like a bad padding, so nothing about a
//! decrypted plaintext is told apart.

use sha2::{Digest, Sha256};

use crate::token::compat_v0::layout::V0Plain;
use crate::token::format::{check_time, Claims, InvalidToken, Rate, MAX_INT};
use crate::token::secret::SecretString;

/// Domain of the token id derivation (`docs/compat-v0.md`).
const JTI_DOMAIN: &[u8] = b"relayapi compat-v0 jti";

/// What the operator forces on a tenant's v0 tokens (`token.compat_v0[]` in `config.json`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Longest `expire_time - created_at` accepted, in seconds (the relay-wide `token.max_lifetime`
    /// applies too).
    pub max_lifetime: u64,
    /// Largest `max_calls` accepted.
    pub max_calls: u64,
    /// Providers the tokens may name.
    pub providers: Vec<String>,
    /// When not empty, `api_key` is the name of a server-held key (one of these) and never a provider
    /// key itself.
    pub krefs: Vec<String>,
    /// A rate every token of the tenant gets, as a v1 `rate` claim.
    pub rate: Option<Rate>,
}

/// The relay's clock rules: `token.clock_skew` and `token.max_lifetime`.
#[derive(Debug, Clone, Copy)]
pub struct TimeRules {
    pub clock_skew: u64,
    pub max_lifetime: u64,
}

/// The v1 claims of a v0 plaintext for `tenant`, or [`InvalidToken`].
pub fn to_claims(
    p: &V0Plain<'_>,
    tenant: &str,
    policy: &Policy,
    rules: TimeRules,
    now: u64,
) -> Result<Claims, InvalidToken> {
    // The SDK writes `id` as `f"token-{now.timestamp()}"` and `created_at` from the same `now`: one
    // is Python's repr of the other's microseconds / 1e6 (both correctly rounded, as Rust's are).
    if p.id_ts != python_float_repr(p.created_us as f64 / 1e6) {
        return Err(InvalidToken);
    }
    // `expire_time` is `now + timedelta(days=expire_days)`: a whole number of days after creation.
    let life_us = p.expire_us - p.created_us;
    if life_us <= 0 || life_us % 86_400_000_000 != 0 {
        return Err(InvalidToken);
    }
    if !policy.providers.iter().any(|x| x == p.provider) {
        return Err(InvalidToken);
    }
    if p.max_calls == 0 || p.max_calls > policy.max_calls.min(MAX_INT) {
        return Err(InvalidToken);
    }
    let (key, kref) = if policy.krefs.is_empty() {
        (Some(SecretString::new(p.api_key)), None)
    } else if policy.krefs.iter().any(|k| k == p.api_key) {
        (None, Some(p.api_key.to_owned()))
    } else {
        return Err(InvalidToken);
    };
    let iat = u64::try_from(p.created_us.div_euclid(1_000_000)).map_err(|_| InvalidToken)?;
    let exp = u64::try_from(p.expire_us.div_euclid(1_000_000)).map_err(|_| InvalidToken)?;
    let claims = Claims {
        key,
        kref,
        max: Some(p.max_calls),
        rate: policy.rate,
        ..Claims::new(
            jti(tenant, p.id_ts),
            tenant.to_owned(),
            iat,
            exp,
            p.provider.to_owned(),
        )
    };
    let lifetime = policy.max_lifetime.min(rules.max_lifetime);
    check_time(&claims, now, rules.clock_skew, lifetime).map_err(|_| InvalidToken)?;
    Ok(claims)
}

/// The relay's token id for a v0 token: the first 32 hex digits of
/// `SHA-256("relayapi compat-v0 jti" 0x00 tenant 0x00 id-timestamp)`. Stable, so counts and revocations
/// follow the token; computable by a tenant from the `id` its SDK made (`docs/compat-v0.md`).
pub fn jti(tenant: &str, id_ts: &str) -> String {
    let mut h = Sha256::new();
    h.update(JTI_DOMAIN);
    h.update([0]);
    h.update(tenant.as_bytes());
    h.update([0]);
    h.update(id_ts.as_bytes());
    h.finalize()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Python's `repr(float)` for the positive, non-huge values seen here: Rust's shortest round-trip
/// digits, with `.0` added to whole numbers as Python writes them.
fn python_float_repr(v: f64) -> String {
    let s = format!("{v}");
    if s.contains('.') {
        s
    } else {
        format!("{s}.0")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::compat_v0::layout::parse;

    const SAMPLE: &str = r#"{"id":"token-1796617571.123456","api_key":"sk-test","max_calls":5,"expire_time":"2026-12-08T04:26:11.123456+00:00","created_at":"2026-12-07T04:26:11.123456+00:00","provider":"openai","ext_info":""}"#;
    const NOW: u64 = 1_796_617_600;
    const RULES: TimeRules = TimeRules {
        clock_skew: 60,
        max_lifetime: 30 * 86_400,
    };

    fn policy() -> Policy {
        Policy {
            max_lifetime: 7 * 86_400,
            max_calls: 1000,
            providers: vec!["openai".into(), "dashscope".into()],
            krefs: vec![],
            rate: None,
        }
    }

    fn claims(text: &str, policy: &Policy, now: u64) -> Result<Claims, InvalidToken> {
        to_claims(
            &parse(text.as_bytes()).ok_or(InvalidToken)?,
            "legacy",
            policy,
            RULES,
            now,
        )
    }

    #[test]
    fn maps_onto_v1_claims() {
        let c = claims(SAMPLE, &policy(), NOW).unwrap();
        assert_eq!(c.tid, "legacy");
        assert_eq!(c.iat, 1_796_617_571);
        assert_eq!(c.exp, 1_796_617_571 + 86_400);
        assert_eq!(c.prv, "openai");
        assert_eq!(c.key.unwrap().expose(), "sk-test");
        assert_eq!(c.kref, None);
        assert_eq!(c.max, Some(5));
        assert_eq!(c.jti, jti("legacy", "1796617571.123456"));
        assert_eq!(c.jti.len(), 32);
    }

    #[test]
    fn python_reprs() {
        assert_eq!(
            python_float_repr(1_796_617_571_123_456.0 / 1e6),
            "1796617571.123456"
        );
        assert_eq!(
            python_float_repr(1_796_617_571_000_000.0 / 1e6),
            "1796617571.0"
        );
        assert_eq!(
            python_float_repr(1_796_617_571_100_000.0 / 1e6),
            "1796617571.1"
        );
        // Python: (1796617571000001 / 10**6) -> 1796617571.000001
        assert_eq!(
            python_float_repr(1_796_617_571_000_001.0 / 1e6),
            "1796617571.000001"
        );
    }

    #[test]
    fn the_sdk_rules_and_the_policy_are_enforced() {
        let p = policy();
        let bad = [
            // id no longer the creation time (what flipping IV bits can do to the first block)
            SAMPLE.replace("token-1796617571.123456", "token-9996617571.123456"),
            SAMPLE.replace(
                "created_at\":\"2026-12-07T04:26:11.123456",
                "created_at\":\"2026-12-07T04:26:12.123456",
            ),
            // not a whole number of days
            SAMPLE.replace("2026-12-08T04:26:11.123456", "2026-12-08T04:26:12.123456"),
            // expire_days=0 or negative
            SAMPLE.replace("2026-12-08T04:26:11.123456", "2026-12-07T04:26:11.123456"),
            SAMPLE.replace("2026-12-08T04:26:11.123456", "2026-12-06T04:26:11.123456"),
            // beyond the tenant's lifetime
            SAMPLE.replace("2026-12-08T04:26:11.123456", "2026-12-15T04:26:11.123456"),
            SAMPLE.replace("\"openai\"", "\"anthropic\""),
            SAMPLE.replace("\"max_calls\":5", "\"max_calls\":0"),
            SAMPLE.replace("\"max_calls\":5", "\"max_calls\":1001"),
        ];
        for b in bad {
            assert_eq!(claims(&b, &p, NOW), Err(InvalidToken), "{b}");
        }
        // Seven days is the tenant's limit, included.
        let week = SAMPLE.replace("2026-12-08T04:26:11.123456", "2026-12-14T04:26:11.123456");
        assert!(claims(&week, &p, NOW).is_ok());
    }

    #[test]
    fn time_failures_are_the_same_invalid_token() {
        let p = policy();
        // expired (after the skew) and not yet valid (beyond it)
        assert_eq!(
            claims(SAMPLE, &p, 1_796_617_571 + 86_400 + 60),
            Err(InvalidToken)
        );
        assert!(claims(SAMPLE, &p, 1_796_617_571 + 86_400 + 59).is_ok());
        assert_eq!(claims(SAMPLE, &p, 1_796_617_571 - 61), Err(InvalidToken));
    }

    #[test]
    fn kref_only_tenants_read_api_key_as_a_key_name() {
        let p = Policy {
            krefs: vec!["openai-main".into()],
            ..policy()
        };
        assert_eq!(
            claims(SAMPLE, &p, NOW),
            Err(InvalidToken),
            "a raw key is refused"
        );
        let named = SAMPLE.replace("sk-test", "openai-main");
        let c = claims(&named, &p, NOW).unwrap();
        assert_eq!(c.kref.as_deref(), Some("openai-main"));
        assert!(c.key.is_none());
    }
}
