//! Token format v1 (`docs/token-format.md`): the one path that names the whole public API of tokens.
//! The claims and their §5 rules are `token/claims.rs`; reading them from JSON `token/claims_json.rs`;
//! their canonical JSON `token/canonical.rs`; minting and verifying `token/seal.rs` (symmetric) and
//! `token/ecc/` (ecc), both verified through `token/verify.rs`; the key ring
//! `token/keyring.rs`, and `.rai` loading `token/rai.rs`.
//!
//! Pure code: no I/O, no clock, no global randomness. Time (`now`) and randomness (`rng`) come from the
//! caller so that the shared vectors in `tests/vectors/` are reproducible. Every way a token can fail
//! before it is known to be authentic and well-formed (§7 steps 1-6) is the one opaque [`InvalidToken`]:
//! the relay must not become an oracle that tells an attacker which byte was wrong. The time checks that
//! follow (steps 7-8) have their own errors in [`TimeError`]; revocation and call counting belong to the
//! relay's store.

pub use crate::text::ipnet::{canonical_ip_text, IpNet};
pub use crate::text::strict_json::{json_within_rules, MAX_JSON_DEPTH};
pub use crate::token::canonical::canonical_json;
pub use crate::token::claims::{
    Budget, ClaimError, Claims, Ext, MtokMode, Rate, UserQuota, Window, MAX_INT,
};
pub use crate::token::seal::{
    check_time, mint, mint_with, new_token_id, os_rng, token_len, InvalidToken, TimeError,
    MAX_TOKEN_LEN, PREFIX, SALT_LEN,
};
pub use crate::token::secret::SecretString;
pub use crate::token::verify::{verify, verify_proven, ProvenBy};

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;

    use crate::token::keyring::Keyring;
    use crate::token::seal::seal;
    use crate::token::secret::SecretKey;

    const T0: u64 = 1_790_000_000;

    fn keyring() -> (Keyring, SecretKey) {
        let key = SecretKey::from_bytes([7; 32]);
        let mut ring = Keyring::new();
        ring.insert("k1", "acme", key.clone()).unwrap();
        ring.insert("other", "globex", SecretKey::from_bytes([9; 32]))
            .unwrap();
        (ring, key)
    }

    fn claims() -> Claims {
        Claims {
            key: Some(SecretString::new("test-key-123")),
            max: Some(10),
            ..Claims::new(
                "0123456789abcdef0123456789abcdef".into(),
                "acme".into(),
                T0,
                T0 + 3600,
                "openai".into(),
            )
        }
    }

    /// Seals `json` as an authentic k1 token, bypassing the claims check.
    fn sealed(json: &str) -> String {
        seal(
            "k1",
            &SecretKey::from_bytes([7; 32]),
            [3; 16],
            json.as_bytes(),
        )
    }

    fn base_json() -> String {
        canonical_json(&claims())
    }

    /// `base_json()` with `,"member":value` spliced in before the closing brace.
    fn with_member(extra: &str) -> String {
        let base = base_json();
        format!("{},{extra}}}", &base[..base.len() - 1])
    }

    #[test]
    fn round_trip() {
        let (ring, key) = keyring();
        let token = mint_with(&claims(), "k1", &key, [1; 16]);
        assert!(token.starts_with("rt1."));
        assert_eq!(verify(&token, &ring, T0), Ok(claims()));
    }

    #[test]
    fn sealed_helper_accepts_valid_claims() {
        // Guards the negative tests below: they fail for the member they change, not for the helper.
        let (ring, _) = keyring();
        assert_eq!(verify(&sealed(&base_json()), &ring, T0), Ok(claims()));
        assert!(verify(&sealed(&with_member(r#""uid":"u1""#)), &ring, T0).is_ok());
    }

    #[test]
    fn duplicate_members_are_rejected_by_serde_derive() {
        let (ring, _) = keyring();
        assert_eq!(
            verify(&sealed(&with_member(r#""max":1000"#)), &ring, T0),
            Err(InvalidToken)
        );
        assert_eq!(
            verify(&sealed(&with_member(r#""tid":"acme""#)), &ring, T0),
            Err(InvalidToken)
        );
        // Nested objects too.
        let dup_rate = with_member(r#""rate":{"n":1,"s":1,"n":2}"#);
        assert_eq!(verify(&sealed(&dup_rate), &ring, T0), Err(InvalidToken));
        let dup_ext = with_member(r#""ext":{"rep_m":"a","rep_m":"b"}"#);
        assert_eq!(verify(&sealed(&dup_ext), &ring, T0), Err(InvalidToken));
    }

    #[test]
    fn sequence_forms_of_objects_are_rejected() {
        let (ring, _) = keyring();
        let positional = r#"["0123456789abcdef0123456789abcdef","acme",1790000000,1790003600,"openai","test-key-123"]"#;
        assert_eq!(verify(&sealed(positional), &ring, T0), Err(InvalidToken));
        assert_eq!(
            verify(&sealed(&with_member(r#""rate":[10,60]"#)), &ring, T0),
            Err(InvalidToken)
        );
        assert!(verify(
            &sealed(&with_member(r#""rate":{"n":10,"s":60}"#)),
            &ring,
            T0
        )
        .is_ok());
    }

    #[test]
    fn wrong_types_and_ranges_are_rejected() {
        let (ring, _) = keyring();
        let bad = [
            r#""conc":null"#,
            r#""conc":0"#,
            r#""conc":10001"#,
            r#""conc":4294967297"#,
            r#""mtok":1e3"#,
            r#""mtok":0"#,
            r#""mtok":9007199254740992"#,
            r#""mtok":18446744073709551616"#,
            r#""rate":{"n":0,"s":60}"#,
            r#""rate":{"n":1,"s":31536001}"#,
            r#""rate":{"n":1}"#,
            r#""rate":{"n":1,"s":1,"x":1}"#,
            r#""ext":{"rep_m":""}"#,
            r#""ext":{"rep_m":null}"#,
            r#""ext":[]"#,
            r#""ext":["m"]"#,
            r#""rate":[10,60]"#,
            r#""models":["a",1]"#,
            r#""paths":[]"#,
            r#""origins":[]"#,
            r#""origins":"https://app.example.com""#,
            r#""ips":[]"#,
            r#""ips":["10.0.0.1"]"#,
            r#""ips":["10.0.0.0/33"]"#,
            r#""ips":["10.0.0.0/08"]"#,
            r#""ips":["10.0.0.0/+8"]"#,
            r#""ips":["2001:db8::/129"]"#,
            r#""mtok_mode":"Clamp""#,
            r#""mtok_mode":"clamp""#,
            r#""models":["", "any string"]"#,
            r#""models":["a\u0001"]"#,
            r#""paths":["chat/completions"]"#,
            r#""paths":["/x?y"]"#,
            r#""origins":["https://app.example.com/"]"#,
            r#""origins":["https://App.example.com"]"#,
            r#""origins":["https://app.example.com:443"]"#,
            r#""ext":{}"#,
            r#""ips":["203.0.113.7/24"]"#,
            r#""ips":["2001:DB8::/32"]"#,
            r#""ips":["::ffff:10.0.0.0/104"]"#,
            r#""uid":"a\nb""#,
            r#""uid":"é""#,
            r#""uid":"""#,
            r#""url":"https://""#,
            r#""url":"https://user@example.com/""#,
            r#""url":"https://example.com:0/""#,
            r#""url":"https://example.com:65536""#,
            r#""url":"https://example.com/v1#frag""#,
            r#""url":"https://exa mple.com""#,
            r#""url":"https://example.com/%zz""#,
            r#""url":"https://[::1""#,
            r#""url":"HTTPS://example.com""#,
            r#""url":"https:example.com""#,
        ];
        for extra in bad {
            assert_eq!(
                verify(&sealed(&with_member(extra)), &ring, T0),
                Err(InvalidToken),
                "{extra}"
            );
        }
        let models: Vec<String> = (0..65).map(|i| format!("\"m{i}\"")).collect();
        let too_many = with_member(&format!(r#""models":[{}]"#, models.join(",")));
        assert_eq!(verify(&sealed(&too_many), &ring, T0), Err(InvalidToken));
        let long_uid = with_member(&format!(r#""uid":"{}""#, "u".repeat(129)));
        assert_eq!(verify(&sealed(&long_uid), &ring, T0), Err(InvalidToken));
    }

    #[test]
    fn valid_optional_members_are_accepted() {
        let (ring, _) = keyring();
        let good = [
            r#""conc":10000"#,
            r#""mtok":1"#,
            r#""paths":["/","/v1/chat/completions"]"#,
            r#""origins":["http://localhost:3000","https://[::1]:8443","https://app.example.com"]"#,
            r#""url":"https://my_host.example.com/v1/%2F""#,
            r#""url":"https://example.com/v1?api-version=2024-06-01""#,
            r#""models":["any string", "modèle 😀"]"#,
            r#""paths":["/chat/completions", "/x:y"]"#,
            r#""origins":["https://app.example.com"]"#,
            r#""ext":{"rep_m":"m"}"#,
            r#""rate":{"s":31536000,"n":1}"#,
            r#""ips":["0.0.0.0/0","::/0","203.0.113.0/24"]"#,
            r#""url":"https://example.com""#,
            r#""url":"https://example.com:8443/v1/""#,
            r#""url":"https://[2001:db8::1]:443/v1""#,
            r#""url":"https://10.0.0.1/""#,
            r#""mtok":5,"mtok_mode":"clamp""#,
        ];
        for extra in good {
            assert!(
                verify(&sealed(&with_member(extra)), &ring, T0).is_ok(),
                "{extra}"
            );
        }
        let models: Vec<String> = (0..64).map(|i| format!("\"m{i}\"")).collect();
        let max_models = with_member(&format!(r#""models":[{}]"#, models.join(",")));
        assert!(verify(&sealed(&max_models), &ring, T0).is_ok());
    }

    #[test]
    fn key_and_kref_rules() {
        let (ring, _) = keyring();
        let mut c = claims();
        c.key = None;
        c.kref = Some("main".into());
        assert!(verify(&sealed(&canonical_json(&c)), &ring, T0).is_ok());
        c.kref = Some(String::new());
        assert_eq!(
            verify(&sealed(&canonical_json(&c)), &ring, T0),
            Err(InvalidToken)
        );
        // §5.1.9: the config.json naming rule, nothing else.
        c.kref = Some("any name, even with spaces".into());
        assert_eq!(
            verify(&sealed(&canonical_json(&c)), &ring, T0),
            Err(InvalidToken)
        );
        c.kref = Some("k".repeat(64));
        assert!(verify(&sealed(&canonical_json(&c)), &ring, T0).is_ok());
        for key in [
            String::new(),
            "a\u{7f}b".into(),
            "a\nb".into(),
            "é".into(),
            "k".repeat(1025),
        ] {
            let mut c = claims();
            c.key = Some(SecretString::new(key));
            assert_eq!(
                verify(&sealed(&canonical_json(&c)), &ring, T0),
                Err(InvalidToken)
            );
        }
        let mut c = claims();
        c.key = Some(SecretString::new("k".repeat(1024)));
        assert!(verify(&sealed(&canonical_json(&c)), &ring, T0).is_ok());
    }

    #[test]
    fn tenant_must_match_the_key() {
        let (ring, _) = keyring();
        let mut c = claims();
        c.tid = "globex".into();
        // Authentic under k1 (tenant acme) but claiming globex.
        assert_eq!(
            verify(&sealed(&canonical_json(&c)), &ring, T0),
            Err(InvalidToken)
        );
        let token = mint_with(&c, "other", &SecretKey::from_bytes([9; 32]), [0; 16]);
        assert!(verify(&token, &ring, T0).is_ok());
    }

    #[test]
    fn verify_never_panics_on_short_or_odd_blobs() {
        let (ring, _) = keyring();
        for len in 0..80usize {
            for fill in [0u8, 1, 32, 255] {
                let mut blob = vec![fill; len];
                if len > 2 {
                    blob[0] = 1;
                    blob[1] = 1;
                }
                let text = format!("rt1.{}", URL_SAFE_NO_PAD.encode(&blob));
                assert_eq!(verify(&text, &ring, T0), Err(InvalidToken));
            }
        }
        assert_eq!(verify("rt1.é", &ring, T0), Err(InvalidToken));
        assert_eq!(verify(&"é".repeat(3000), &ring, T0), Err(InvalidToken));
    }

    #[test]
    fn length_limit_is_exactly_4096() {
        let (ring, key) = keyring();
        let claims_with_model_len = |n: usize| {
            let mut c = claims();
            // Thirteen long entries bring the token near the limit; the last one fine-tunes it.
            let mut models = vec!["m".repeat(200); 13];
            models.push("m".repeat(n));
            c.models = Some(models);
            c
        };
        // Sealed without the minter's checks, so that the over-long token exists to be refused.
        let token_with_model_len = |n: usize| {
            seal(
                "k1",
                &key,
                [0; 16],
                canonical_json(&claims_with_model_len(n)).as_bytes(),
            )
        };
        for n in 1..=256 {
            let c = claims_with_model_len(n);
            let len = token_with_model_len(n).len();
            assert_eq!(token_len(2, canonical_json(&c).len()), len);
            // §6 step 8: the minter refuses exactly the tokens verifiers refuse for their length.
            assert_eq!(
                c.check_mintable("k1").is_ok(),
                len <= MAX_TOKEN_LEN,
                "{len}"
            );
        }
        // Base64 output lengths step by 1 or 2, so 4096 is reachable and 4097 is not; 4098 is the next.
        let at_limit = (1..=256)
            .map(token_with_model_len)
            .find(|t| t.len() == MAX_TOKEN_LEN)
            .unwrap();
        assert!(verify(&at_limit, &ring, T0).is_ok());
        let over = (1..=256)
            .map(token_with_model_len)
            .find(|t| t.len() == MAX_TOKEN_LEN + 2)
            .unwrap();
        assert_eq!(verify(&over, &ring, T0), Err(InvalidToken));
    }

    #[test]
    fn check_time_boundaries() {
        let c = claims();
        let life = 3600;
        assert_eq!(check_time(&c, T0, 0, life), Ok(()));
        assert_eq!(check_time(&c, T0 - 1, 0, life), Err(TimeError::NotYetValid));
        assert_eq!(check_time(&c, T0 - 60, 60, life), Ok(()));
        assert_eq!(
            check_time(&c, T0 - 61, 60, life),
            Err(TimeError::NotYetValid)
        );
        assert_eq!(check_time(&c, T0 + 3599, 0, life), Ok(()));
        assert_eq!(check_time(&c, T0 + 3600, 0, life), Err(TimeError::Expired));
        assert_eq!(check_time(&c, T0 + 3659, 60, life), Ok(()));
        assert_eq!(check_time(&c, T0 + 3660, 60, life), Err(TimeError::Expired));
        assert_eq!(
            check_time(&c, T0, 0, life - 1),
            Err(TimeError::LifetimeTooLong)
        );
        assert_eq!(
            check_time(&c, u64::MAX, u64::MAX, life),
            Err(TimeError::Expired)
        );
        assert_eq!(TimeError::Expired.code(), "token_expired");
    }

    #[test]
    fn canonical_json_escapes_minimally() {
        let mut c = claims();
        c.uid = Some("a\"\\\u{8}\u{c}\n\r\t\u{1}\u{1f}\u{7f}/é😀".into());
        let json = canonical_json(&c);
        let expected = concat!(r#","uid":"a\"\\\b\f\n\r\t\u0001\u001f"#, "\u{7f}/é😀\"}");
        assert!(json.ends_with(expected), "{json}");
        // Written as §5 says, but no valid claim holds control characters or non-ASCII in uid (§5.1.18).
        assert!(Claims::from_json(&json).is_err());
        c.uid = None;
        c.ext = Some(Ext {
            rep_m: Some("a\"\\/é😀".into()),
        });
        let json = canonical_json(&c);
        assert!(json.ends_with(r#""ext":{"rep_m":"a\"\\/é😀"}}"#), "{json}");
        assert_eq!(Claims::from_json(&json), Ok(c));
    }

    #[test]
    fn canonical_json_orders_nested_members() {
        let mut c = claims();
        c.rate = Some(Rate { n: 5, s: 60 });
        c.ext = Some(Ext::default());
        c.mtok_mode = Some(MtokMode::Clamp);
        let json = canonical_json(&c);
        // Serialised faithfully, though `"ext":{}` and a mode without `mtok` are refused (§5.1.11, 17).
        assert!(c.validate().is_err());
        assert!(
            json.contains(r#""max":10,"ext":{},"rate":{"n":5,"s":60},"mtok_mode":"clamp"}"#),
            "{json}"
        );
    }

    #[test]
    #[should_panic(expected = "claim `max`")]
    fn minting_invalid_claims_panics() {
        let mut c = claims();
        c.max = Some(0);
        mint_with(&c, "k1", &SecretKey::from_bytes([7; 32]), [0; 16]);
    }

    #[test]
    fn claim_errors_do_not_echo_the_key() {
        let mut c = claims();
        c.key = Some(SecretString::new("test-key-\n-123"));
        let err = c.validate().unwrap_err();
        assert_eq!(err.member, "key");
        assert!(!err.to_string().contains("test-key"));
        assert!(!format!("{c:?}").contains("test-key"));
    }

    #[test]
    fn new_token_id_is_lowercase_hex() {
        let mut n = 0u8;
        let mut rng = |buf: &mut [u8]| {
            for b in buf {
                *b = n;
                n = n.wrapping_add(0x11);
            }
        };
        assert_eq!(new_token_id(&mut rng), "00112233445566778899aabbccddeeff");
        let mut os = os_rng();
        let a = new_token_id(&mut os);
        assert_eq!(a.len(), 32);
        assert_ne!(a, new_token_id(&mut os));
    }
}
