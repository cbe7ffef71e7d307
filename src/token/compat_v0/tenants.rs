//! The tenants opted in to v0 tokens, and the one entry point that proves a v0 token: find the tenant
//! by the URL's `rai_hash`, open the envelope, read the layout, map the claims, and answer one
//! [`InvalidToken`] for every failure. The same work is done whatever fails: an unknown `rai_hash` or
//! a text that does not decode still decrypts a dummy blob of the size its length gives, a bad padding
//! is still parsed, and the verdicts are combined only at the end, so neither the answer nor its
//! timing tells a padding failure from a decoding or a claims failure. Also holds the admin keys.

use hkdf::Hkdf;
use sha2::Sha256;
use subtle::{Choice, ConstantTimeEq};

use crate::token::compat_v0::claims::{to_claims, TimeRules};
use crate::token::compat_v0::envelope::{self, MAX_TOKEN_TEXT};
use crate::token::compat_v0::layout;
use crate::token::compat_v0::rai::OriginalRai;
use crate::token::format::{Claims, InvalidToken};
use crate::token::keyring::Keyring;
use crate::token::secret::SecretKey;

pub use crate::token::compat_v0::claims::Policy;

/// HKDF info of the 32-byte tenant secret the admin key is derived from (`docs/compat-v0.md`).
const TENANT_SECRET_INFO: &[u8] = b"relayapi compat-v0 tenant key";

/// A tenant opted in: its ids, its original key and `rai_hash`, and what is forced on its tokens.
#[derive(Debug)]
pub struct CompatTenant {
    pub tenant_id: String,
    pub key_id: String,
    pub rai: OriginalRai,
    pub policy: Policy,
}

/// Every opted-in tenant (none by default).
pub struct CompatTenants {
    tenants: Vec<CompatTenant>,
    rules: TimeRules,
    /// Decrypts in place of a tenant's key when the `rai_hash` names none, so that case costs the same.
    dummy_key: [u8; 32],
    /// The tenants' admin keys, by `key_id` (for `admin/signing.rs`).
    admin: Keyring,
}

impl CompatTenants {
    /// No tenant: every v0 token is refused (the default).
    pub fn none() -> CompatTenants {
        CompatTenants {
            tenants: Vec::new(),
            rules: TimeRules {
                clock_skew: 0,
                max_lifetime: 0,
            },
            dummy_key: [0; 32],
            admin: Keyring::new(),
        }
    }

    /// The tenants with the relay's `token.clock_skew` and `token.max_lifetime`; `rng` fills the dummy
    /// key. Errors (for the operator) when two tenants share a `rai_hash` or a key id.
    pub fn new(
        tenants: Vec<CompatTenant>,
        clock_skew: u64,
        max_lifetime: u64,
        mut rng: impl FnMut(&mut [u8]),
    ) -> Result<CompatTenants, String> {
        let mut admin = Keyring::new();
        for (i, t) in tenants.iter().enumerate() {
            if tenants[..i]
                .iter()
                .any(|o| o.rai.rai_hash == t.rai.rai_hash)
            {
                return Err(format!(
                    "tenant `{}`: the same original .rai is opted in twice",
                    t.tenant_id
                ));
            }
            admin
                .insert(&t.key_id, &t.tenant_id, tenant_secret(&t.rai))
                .map_err(|e| format!("tenant `{}`: {e}", t.tenant_id))?;
        }
        let mut dummy_key = [0u8; 32];
        rng(&mut dummy_key);
        Ok(CompatTenants {
            tenants,
            rules: TimeRules {
                clock_skew,
                max_lifetime,
            },
            dummy_key,
            admin,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.tenants.is_empty()
    }

    pub fn tenants(&self) -> &[CompatTenant] {
        &self.tenants
    }

    /// The admin keys of the opted-in tenants, as a key ring `admin/signing.rs` can check against.
    pub fn admin_keyring(&self) -> &Keyring {
        &self.admin
    }

    /// Proves a v0 token `text` sent with `rai_hash` at `now` (Unix seconds): its claims as v1 claims
    /// of the tenant, or the one [`InvalidToken`].
    pub fn verify(&self, text: &str, rai_hash: &str, now: u64) -> Result<Claims, InvalidToken> {
        // Compare against every tenant's hash, without stopping at the first match.
        let mut found: Option<&CompatTenant> = None;
        for t in &self.tenants {
            let eq: Choice = t.rai.rai_hash.as_bytes().ct_eq(rai_hash.as_bytes());
            if bool::from(eq) {
                found = Some(t);
            }
        }
        let key = found.map_or(&self.dummy_key[..], |t| t.rai.key.expose());
        let decoded = envelope::decode(text);
        let dummy;
        let blob: &[u8] = match &decoded {
            Some(b) => b,
            None => {
                // As many blocks as a text of this length would decode to (at least two, at most
                // what the longest accepted text holds), so a text that does not decode costs what
                // a decodable one of its length costs.
                let len = text.len().min(MAX_TOKEN_TEXT) * 3 / 4;
                dummy = vec![0u8; (len / envelope::BLOCK).max(2) * envelope::BLOCK];
                &dummy
            }
        };
        let opened = envelope::open(key, blob).ok_or(InvalidToken)?;
        // Parsed and mapped whatever the padding said; the verdicts are combined below.
        let claims = match (layout::parse(opened.plaintext()), found) {
            (Some(p), Some(t)) => to_claims(&p, &t.tenant_id, &t.policy, self.rules, now).ok(),
            (Some(p), None) => {
                let _ = to_claims(&p, "", &Policy::refusing(), self.rules, now);
                None
            }
            _ => None,
        };
        let ok = bool::from(opened.padding_ok) & decoded.is_some() & found.is_some();
        match claims {
            Some(c) if ok => Ok(c),
            _ => Err(InvalidToken),
        }
    }
}

impl Policy {
    /// A policy no token meets (for the work done on behalf of an unknown `rai_hash`).
    fn refusing() -> Policy {
        Policy {
            max_lifetime: 0,
            max_calls: 0,
            providers: Vec::new(),
            krefs: Vec::new(),
            rate: None,
        }
    }
}

/// `HKDF-SHA256(IKM = AES key, salt = "", info = "relayapi compat-v0 tenant key", L = 32)`: stands for
/// the tenant's v1 key where the admin API derives its admin key (`admin/signing.rs`), so a v0 tenant
/// signs admin requests like a v1 tenant without the AES key itself being reused.
pub fn tenant_secret(rai: &OriginalRai) -> SecretKey {
    let mut out = [0u8; 32];
    let expanded =
        Hkdf::<Sha256>::new(Some(&[]), rai.key.expose()).expand(TENANT_SECRET_INFO, &mut out);
    debug_assert!(
        expanded.is_ok(),
        "32 bytes is within HKDF-SHA256's output limit"
    );
    SecretKey::from_bytes(out)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;

    use super::*;
    use crate::token::compat_v0::envelope::seal;
    use crate::token::compat_v0::rai::parse;

    const KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
    const SAMPLE: &str = r#"{"id":"token-1796617571.123456","api_key":"sk-test","max_calls":5,"expire_time":"2026-12-08T04:26:11.123456+00:00","created_at":"2026-12-07T04:26:11.123456+00:00","provider":"openai","ext_info":""}"#;
    const NOW: u64 = 1_796_617_600;

    fn tenants() -> (CompatTenants, String) {
        let text = format!(
            r#"{{"crypto":{{"method":"aes","aes_key":"{KEY}","aes_iv_seed":"0123456789abcdef"}}}}"#
        );
        let rai = parse(&text, Path::new("o.rai")).unwrap();
        let hash = rai.rai_hash.clone();
        let t = CompatTenant {
            tenant_id: "legacy".into(),
            key_id: "legacy-v0".into(),
            rai,
            policy: Policy {
                max_lifetime: 86_400,
                max_calls: 100,
                providers: vec!["openai".into()],
                krefs: vec![],
                rate: None,
            },
        };
        let all =
            CompatTenants::new(vec![t], 60, 30 * 86_400, |b: &mut [u8]| b.fill(0x5a)).unwrap();
        (all, hash)
    }

    fn key() -> Vec<u8> {
        (0u8..32).collect()
    }

    #[test]
    fn a_token_as_the_sdk_mints_it_is_accepted() {
        let (all, hash) = tenants();
        let token = seal(&key(), [0x42; 16], SAMPLE.as_bytes());
        let c = all.verify(&token, &hash, NOW).unwrap();
        assert_eq!((c.tid.as_str(), c.max), ("legacy", Some(5)));
    }

    /// Minted by the published relayapi-sdk 1.0.0 (`create_token("sk-test", max_calls=5,
    /// provider="openai")`, `expire_days=1`) under the test key and seed, with its `rai_hash`.
    #[test]
    fn a_token_minted_by_the_published_sdk() {
        const TOKEN: &str = "-wnOgIlcz7k6ePGLT7hkcIyfLoOJrGCvqPGZpwh37Hh2QQIybqEztdpvAFEGl7lrF6MPK2IktLORFVgt28FcLhsnd-6Vyff13qD7yMprR_7pvIffFsqQJQBH0ZdCPtBZbQEwjSlzKeFuYWsm7GUwUd_Q8XbAS6-d1prEYwi6YClbe_5hRB6kxWO9FMQRGJSha1gBcSqLFMkR720Cw3FbJ1cfUw3BPiWl6FSihIdRtYkXqU3gG2K5I8rFkHf-aMGX6La2ZwRNhF7cZQJnqeR4VCtTD-54Q7qWblGzqa_S6GA";
        const SDK_HASH: &str = "17c6ddc0cac694b6b2eae7e4105bb73b96ed1f8a143f18c75e43bd46e404b16a";
        let (all, hash) = tenants();
        assert_eq!(hash, SDK_HASH);
        let c = all.verify(TOKEN, SDK_HASH, 1_796_619_300).unwrap();
        assert_eq!(c.iat, 1_796_619_236);
        assert_eq!(c.exp, 1_796_619_236 + 86_400);
        assert_eq!(c.key.unwrap().expose(), "sk-test");
        assert_eq!(
            c.jti,
            crate::token::compat_v0::claims::jti("legacy", "1796619236.131309")
        );
        // A day and a minute later (the clock skew) it has expired.
        assert_eq!(
            all.verify(TOKEN, SDK_HASH, 1_796_619_236 + 86_400 + 60),
            Err(InvalidToken)
        );
    }

    #[test]
    fn every_failure_is_the_same_invalid_token() {
        let (all, hash) = tenants();
        let good = seal(&key(), [0x42; 16], SAMPLE.as_bytes());
        let mut blob = URL_SAFE_NO_PAD.decode(&good).unwrap();
        // Rewriting the first block through the IV ("token-1796..." to "token-2796..."): valid padding,
        // valid layout, but the id is no longer the creation time.
        blob[13] ^= b'1' ^ b'2';
        let iv_flipped = URL_SAFE_NO_PAD.encode(&blob);
        // Garbling the second-last block changes the last block's padding.
        let mut blob = URL_SAFE_NO_PAD.decode(&good).unwrap();
        let n = blob.len();
        blob[n - 17] ^= 0x80;
        let bad_padding = URL_SAFE_NO_PAD.encode(&blob);
        let cases = [
            ("base64", "!!!!".to_string(), hash.clone()),
            ("short", URL_SAFE_NO_PAD.encode([0u8; 16]), hash.clone()),
            ("padding", bad_padding, hash.clone()),
            ("json", seal(&key(), [1; 16], b"{\"id\":"), hash.clone()),
            ("claims", iv_flipped, hash.clone()),
            ("expired", good.clone(), hash.clone()),
            ("rai_hash", good.clone(), "0".repeat(64)),
            (
                "other key",
                seal(&[9; 32], [1; 16], SAMPLE.as_bytes()),
                hash.clone(),
            ),
        ];
        for (what, token, h) in cases {
            let now = if what == "expired" {
                NOW + 2 * 86_400
            } else {
                NOW
            };
            assert_eq!(all.verify(&token, &h, now), Err(InvalidToken), "{what}");
        }
        assert!(CompatTenants::none().verify(&good, &hash, NOW).is_err());
    }

    #[test]
    fn the_admin_key_is_derived_not_reused() {
        let (all, _) = tenants();
        let (tenant, secret) = all.admin_keyring().get("legacy-v0", NOW).unwrap();
        assert_eq!(tenant, "legacy");
        assert_ne!(secret.expose(), &key()[..]);
    }
}
