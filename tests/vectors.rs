//! The Rust side of the shared token vectors in `tests/vectors/` (docs/token-format.md §9).
//!
//! Every file is first checked against `schema.json` (interpreted here for the keywords it uses, so a
//! vector file that drifts from the schema fails before any case runs), then every case runs against
//! `relayapi::token::format` (`ecc.json` also against `token::ecc`, `hpke-rfc9180.json` against
//! rust-hpke and the relay's HPKE wrapper). Property tests on top: round trips under random keys, no
//! repeated tokens from the public `mint`, and no single-bit change of a valid token that still verifies.

use std::collections::HashSet;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use relayapi::token::ecc::hpke_suite as ecc_hpke;
use relayapi::token::ecc::keys::{EccPrivateKey, EccPublicKey};
use relayapi::token::ecc::layout as ecc_layout;
use relayapi::token::ecc::mint::EccMinter;
use relayapi::token::ecc::signature as ecc_signature;
use relayapi::token::format::{
    self, canonical_json, check_time, mint, mint_with, new_token_id, os_rng, verify, Budget,
    Claims, Ext, InvalidToken, IpNet, MtokMode, Rate, TimeError, UserQuota, Window,
};
use relayapi::token::rai::{parse_rai_any, EccCrypto, Keyring, RaiFile};
use relayapi::token::secret::{SecretKey, SecretString};
use serde::Deserialize;
use serde_json::Value;

fn vector_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/vectors")
        .join(name)
}

fn read_json(name: &str) -> Value {
    let text = std::fs::read_to_string(vector_path(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"))
}

// ---- schema.json, interpreted -------------------------------------------------------------------

/// The regular expressions schema.json uses, as predicates. A pattern missing here fails the test, so
/// the schema cannot gain a rule this suite silently skips.
fn pattern_matches(pattern: &str, s: &str) -> bool {
    let charset = |s: &str, extra: &[u8]| {
        s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || extra.contains(&b))
    };
    match pattern {
        "^[0-9a-f]{32}$" => {
            s.len() == 32 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        }
        "^[A-Za-z0-9._-]{1,32}$" => (1..=32).contains(&s.len()) && charset(s, b"._-"),
        "^[A-Za-z0-9._-]{1,64}$" => (1..=64).contains(&s.len()) && charset(s, b"._-"),
        "^[A-Za-z0-9_-]{43}$" => s.len() == 43 && charset(s, b"_-"),
        "^[A-Za-z0-9_-]{87}$" => s.len() == 87 && charset(s, b"_-"),
        "^[0-9a-f]*$" => s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')),
        r"^rt1\.[A-Za-z0-9_-]+$" => s
            .strip_prefix("rt1.")
            .is_some_and(|r| !r.is_empty() && charset(r, b"_-")),
        other => panic!("schema.json uses a pattern this suite does not implement: {other}"),
    }
}

struct Schema {
    root: Value,
}

impl Schema {
    fn resolve<'a>(&'a self, node: &'a Value) -> &'a Value {
        match node.get("$ref").and_then(Value::as_str) {
            Some(r) => {
                let name = r
                    .strip_prefix("#/$defs/")
                    .unwrap_or_else(|| panic!("unsupported $ref {r}"));
                self.resolve(&self.root["$defs"][name])
            }
            None => node,
        }
    }

    /// Errors as `path: problem`, empty when `value` is valid.
    fn check(&self, node: &Value, value: &Value, path: &str, errors: &mut Vec<String>) {
        let node = self.resolve(node);
        let obj = node.as_object().expect("schema nodes are objects");
        for (keyword, arg) in obj {
            match keyword.as_str() {
                "$ref" | "$schema" | "$id" | "title" | "description" | "$defs" | "then"
                | "else" => {}
                "type" => {
                    let ok = match arg.as_str().unwrap() {
                        "string" => value.is_string(),
                        "integer" => value.is_i64() || value.is_u64(),
                        "object" => value.is_object(),
                        "array" => value.is_array(),
                        t => panic!("unsupported type {t}"),
                    };
                    if !ok {
                        errors.push(format!("{path}: not of type {arg}"));
                    }
                }
                "pattern" => {
                    if let Some(s) = value.as_str() {
                        if !pattern_matches(arg.as_str().unwrap(), s) {
                            errors.push(format!("{path}: does not match {arg}"));
                        }
                    }
                }
                "minLength" => {
                    if let Some(s) = value.as_str() {
                        if (s.chars().count() as u64) < arg.as_u64().unwrap() {
                            errors.push(format!("{path}: shorter than {arg}"));
                        }
                    }
                }
                "minItems" => {
                    if let Some(a) = value.as_array() {
                        if (a.len() as u64) < arg.as_u64().unwrap() {
                            errors.push(format!("{path}: fewer than {arg} items"));
                        }
                    }
                }
                "enum" => {
                    if !arg.as_array().unwrap().contains(value) {
                        errors.push(format!("{path}: not one of {arg}"));
                    }
                }
                "const" => {
                    if arg != value {
                        errors.push(format!("{path}: not {arg}"));
                    }
                }
                "required" => {
                    if let Some(o) = value.as_object() {
                        for name in arg.as_array().unwrap() {
                            if !o.contains_key(name.as_str().unwrap()) {
                                errors.push(format!("{path}: missing {name}"));
                            }
                        }
                    }
                }
                "properties" => {
                    if let Some(o) = value.as_object() {
                        for (name, sub) in arg.as_object().unwrap() {
                            if let Some(v) = o.get(name) {
                                self.check(sub, v, &format!("{path}.{name}"), errors);
                            }
                        }
                    }
                }
                "additionalProperties" => {
                    assert_eq!(
                        arg,
                        &Value::Bool(false),
                        "only additionalProperties: false is supported"
                    );
                    if let Some(o) = value.as_object() {
                        let known = obj.get("properties").and_then(Value::as_object);
                        for name in o.keys() {
                            if !known.is_some_and(|k| k.contains_key(name)) {
                                errors.push(format!("{path}: unexpected member {name}"));
                            }
                        }
                    }
                }
                "items" => {
                    if let Some(a) = value.as_array() {
                        for (i, v) in a.iter().enumerate() {
                            self.check(arg, v, &format!("{path}[{i}]"), errors);
                        }
                    }
                }
                "if" => {
                    let mut probe = Vec::new();
                    self.check(arg, value, path, &mut probe);
                    let branch = if probe.is_empty() { "then" } else { "else" };
                    if let Some(sub) = obj.get(branch) {
                        self.check(sub, value, path, errors);
                    }
                }
                "not" => {
                    let mut probe = Vec::new();
                    self.check(arg, value, path, &mut probe);
                    if probe.is_empty() {
                        errors.push(format!("{path}: matches a `not` schema"));
                    }
                }
                other => {
                    panic!("schema.json uses a keyword this suite does not implement: {other}")
                }
            }
        }
    }

    fn validate(&self, def: &str, value: &Value) -> Vec<String> {
        let mut errors = Vec::new();
        self.check(&self.root["$defs"][def], value, def, &mut errors);
        errors
    }
}

fn schema() -> Schema {
    Schema {
        root: read_json("schema.json"),
    }
}

/// Reads a vector file after checking it against its schema definition.
fn load<T: for<'de> Deserialize<'de>>(file: &str, def: &str) -> T {
    let value = read_json(file);
    let errors = schema().validate(def, &value);
    assert!(
        errors.is_empty(),
        "{file} does not match schema.json: {errors:#?}"
    );
    serde_json::from_value(value).unwrap_or_else(|e| panic!("{file}: {e}"))
}

// Typed views of the files; deny_unknown_fields repeats the schema's additionalProperties: false.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyEntry {
    kid: String,
    tenant: String,
    key: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GenerateCase {
    desc: String,
    kid: String,
    salt: String,
    claims: Value,
    claims_json: String,
    token: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VerifyCase {
    desc: String,
    token: String,
    now: u64,
    max_lifetime: u64,
    result: String,
    claims: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InvalidCase {
    desc: String,
    token: String,
    now: u64,
}

/// Any verification time: the vector keys carry no validity window.
const ANY_TIME: u64 = 0;

fn keyring() -> Keyring {
    let keys: Vec<KeyEntry> = load("keys.json", "keys");
    let mut ring = Keyring::new();
    for k in keys {
        let key = SecretKey::from_base64url(&k.key)
            .unwrap_or_else(|| panic!("keys.json: bad key for {}", k.kid));
        ring.insert(&k.kid, &k.tenant, key).unwrap();
    }
    ring
}

fn claims_of(value: &Value) -> Claims {
    Claims::from_json(&value.to_string()).unwrap_or_else(|e| panic!("vector claims refused: {e}"))
}

fn salt_of(hex: &str) -> [u8; 16] {
    core::array::from_fn(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
}

#[test]
fn every_vector_file_matches_the_schema() {
    let s = schema();
    for (file, def) in [
        ("keys.json", "keys"),
        ("generate.json", "generate"),
        ("verify.json", "verify"),
        ("invalid.json", "invalid"),
        ("conformance.json", "conformance"),
        ("ecc.json", "ecc"),
        ("hpke-rfc9180.json", "hpke"),
    ] {
        let errors = s.validate(def, &read_json(file));
        assert!(errors.is_empty(), "{file}: {errors:#?}");
    }
}

#[test]
fn schema_check_can_fail() {
    // The interpreter must catch what the schema forbids, or the test above proves nothing.
    let s = schema();
    let mut cases: Vec<Value> = serde_json::from_value(read_json("verify.json")).unwrap();
    let good = cases[0].clone();
    let mut broken = Vec::new();
    let mut extra = good.clone();
    extra["expected"] = Value::from("x");
    broken.push(extra);
    let mut no_claims = good.clone();
    no_claims.as_object_mut().unwrap().remove("claims");
    broken.push(no_claims);
    let mut bad_result = good.clone();
    bad_result["result"] = Value::from("fine");
    broken.push(bad_result);
    let mut bad_jti = good.clone();
    bad_jti["claims"]["jti"] = Value::from("ABC");
    broken.push(bad_jti);
    let mut float_now = good.clone();
    float_now["now"] = serde_json::json!(1.5);
    broken.push(float_now);
    let mut expired_with_claims = good.clone();
    expired_with_claims["result"] = Value::from("expired");
    broken.push(expired_with_claims);
    for b in broken {
        cases[0] = b.clone();
        assert!(
            !s.validate("verify", &Value::Array(cases.clone()))
                .is_empty(),
            "{b}"
        );
    }
    assert!(!s.validate("keys", &serde_json::json!([])).is_empty());
    assert!(!s
        .validate(
            "keys",
            &serde_json::json!([{"kid": "k", "tenant": "t", "key": "short"}])
        )
        .is_empty());
}

#[test]
fn generate_vectors() {
    let ring = keyring();
    let cases: Vec<GenerateCase> = load("generate.json", "generate");
    for case in &cases {
        let claims = claims_of(&case.claims);
        assert_eq!(canonical_json(&claims), case.claims_json, "{}", case.desc);
        let (_, key) = ring.get(&case.kid, ANY_TIME).unwrap();
        assert_eq!(
            mint_with(&claims, &case.kid, key, salt_of(&case.salt)),
            case.token,
            "{}",
            case.desc
        );
        assert_eq!(
            verify(&case.token, &ring, ANY_TIME),
            Ok(claims),
            "{}",
            case.desc
        );
    }
    assert_eq!(cases.len(), 11);
}

#[test]
fn verify_vectors() {
    let ring = keyring();
    let cases: Vec<VerifyCase> = load("verify.json", "verify");
    for case in &cases {
        let claims = verify(&case.token, &ring, ANY_TIME)
            .unwrap_or_else(|_| panic!("{}: refused", case.desc));
        let result = match check_time(&claims, case.now, 0, case.max_lifetime) {
            Ok(()) => "ok",
            Err(TimeError::Expired) => "expired",
            Err(TimeError::NotYetValid) => "not_yet_valid",
            Err(TimeError::LifetimeTooLong) => "lifetime_too_long",
        };
        assert_eq!(result, case.result, "{}", case.desc);
        if let Some(expected) = &case.claims {
            assert_eq!(claims, claims_of(expected), "{}", case.desc);
        }
    }
    assert_eq!(cases.len(), 40);
}

#[test]
fn invalid_vectors() {
    let ring = keyring();
    let cases: Vec<InvalidCase> = load("invalid.json", "invalid");
    for case in &cases {
        let outcome = catch_unwind(AssertUnwindSafe(|| verify(&case.token, &ring, ANY_TIME)));
        match outcome {
            Ok(result) => assert_eq!(
                result,
                Err(InvalidToken),
                "{} (now {})",
                case.desc,
                case.now
            ),
            Err(_) => panic!("verify panicked on: {}", case.desc),
        }
    }
    assert_eq!(cases.len(), 52);
}

// ---- conformance.json -----------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Conformance {
    tokens: Vec<ConformanceToken>,
    rai: Vec<ConformanceRai>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConformanceToken {
    rule: String,
    desc: String,
    verdict: String,
    plaintext: Option<String>,
    plaintext_hex: Option<String>,
    salt: String,
    token: String,
    claims: Option<Value>,
    canonical: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConformanceRai {
    rule: String,
    desc: String,
    verdict: String,
    rai: String,
}

/// Every token case through the verifier (§7 steps 1-6), and every case with `claims` through the
/// minter's checks: the same verdict both ways, and for valid cases the canonical bytes.
#[test]
fn conformance_tokens() {
    let ring = keyring();
    let (_, k1) = ring.get("k1", ANY_TIME).unwrap();
    let conf: Conformance = load("conformance.json", "conformance");
    let mut minted = 0;
    for case in &conf.tokens {
        let label = format!("{} {}", case.rule, case.desc);
        assert!(
            case.plaintext.is_some() != case.plaintext_hex.is_some(),
            "{label}"
        );
        let outcome = catch_unwind(AssertUnwindSafe(|| verify(&case.token, &ring, ANY_TIME)))
            .unwrap_or_else(|_| panic!("verify panicked: {label}"));
        match case.verdict.as_str() {
            "valid" => {
                let claims = outcome.unwrap_or_else(|_| panic!("refused: {label}"));
                if let Some(expected) = &case.claims {
                    assert_eq!(canonical_json(&claims), canonical_of(expected), "{label}");
                }
            }
            "invalid" => assert_eq!(outcome, Err(InvalidToken), "{label}"),
            other => panic!("unknown verdict {other}"),
        }
        let Some(claims_value) = &case.claims else {
            continue;
        };
        minted += 1;
        // The minter's side: the claims object becomes `Claims` only if §5 allows it, and `mint_with`
        // only accepts what `check_mintable` does (its panic is covered in the unit tests).
        let mintable = Claims::from_json(&claims_value.to_string())
            .and_then(|c| c.check_mintable("k1").map(|()| c));
        match (case.verdict.as_str(), mintable) {
            ("valid", Ok(c)) => {
                let canonical = case.canonical.as_deref().unwrap();
                assert_eq!(canonical_json(&c), canonical, "{label}");
                let token = mint_with(&c, "k1", k1, salt_of(&case.salt));
                assert_eq!(verify(&token, &ring, ANY_TIME), Ok(c), "{label}");
                if case.plaintext.as_deref() == Some(canonical) {
                    assert_eq!(token, case.token, "{label}");
                }
            }
            ("invalid", Err(_)) => {}
            (verdict, got) => panic!("{label}: expected {verdict}, minter said {:?}", got.err()),
        }
    }
    assert!(conf.tokens.len() >= 180, "{}", conf.tokens.len());
    assert!(minted >= 140, "{minted}");
}

/// The canonical JSON of a claims value from the vector file (valid cases only).
fn canonical_of(value: &Value) -> String {
    canonical_json(&claims_of(value))
}

#[test]
fn conformance_rai() {
    let conf: Conformance = load("conformance.json", "conformance");
    for case in &conf.rai {
        let label = format!("{} {}", case.rule, case.desc);
        let parsed = relayapi::token::rai::parse_rai(&case.rai, std::path::Path::new("case.rai"));
        match case.verdict.as_str() {
            "load" => assert!(parsed.is_ok(), "{label}: {}", parsed.unwrap_err()),
            "refuse" => assert!(parsed.is_err(), "{label}"),
            other => panic!("unknown verdict {other}"),
        }
    }
    assert!(conf.rai.len() >= 60, "{}", conf.rai.len());
}

// ---- properties ---------------------------------------------------------------------------------

/// A small deterministic generator (xorshift64*) so that failures reproduce; the keys and salts it
/// feeds are test data only.
struct TestRng(u64);

impl TestRng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn fill(&mut self, buf: &mut [u8]) {
        for b in buf {
            *b = self.next() as u8;
        }
    }

    fn word(&mut self, alphabet: &[u8], min: u64, max: u64) -> String {
        let len = min + self.below(max - min + 1);
        (0..len)
            .map(|_| alphabet[self.below(alphabet.len() as u64) as usize] as char)
            .collect()
    }

    fn maybe(&mut self) -> bool {
        self.below(2) == 0
    }
}

const ID_CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-";

fn random_claims(r: &mut TestRng, tenant: &str) -> Claims {
    let iat = r.below(1 << 40);
    let use_kref = r.maybe();
    let jti = new_token_id(&mut |buf: &mut [u8]| r.fill(buf));
    let mtok = r.maybe().then(|| 1 + r.below(100_000));
    let uid = r.maybe().then(|| r.word(b"user- \"\\~", 1, 128));
    Claims {
        jti,
        tid: tenant.to_owned(),
        iat,
        exp: iat + 1 + r.below(1 << 20),
        prv: r.word(b"abcdefghijklmnopqrstuvwxyz0123456789_-", 1, 32),
        key: (!use_kref).then(|| SecretString::new(r.word(b"test-key-0123456789 !\"~", 1, 80))),
        kref: use_kref.then(|| r.word(ID_CHARS, 1, 20)),
        url: r
            .maybe()
            .then(|| format!("https://{}.example/v{}", r.word(b"abc", 1, 8), r.below(9))),
        max: r.maybe().then(|| 1 + r.below(format::MAX_INT)),
        ext: r.maybe().then(|| Ext {
            rep_m: Some("modèle-\"x\"\\😀 ".repeat(1 + r.below(3) as usize)),
        }),
        rate: r.maybe().then(|| Rate {
            n: 1 + r.below(1000),
            s: 1 + r.below(86_400),
        }),
        conc: r.maybe().then(|| 1 + r.below(10_000) as u32),
        models: r
            .maybe()
            .then(|| (0..1 + r.below(5)).map(|i| format!("m-{i}")).collect()),
        paths: r.maybe().then(|| vec!["/chat/completions".to_owned()]),
        origins: r.maybe().then(|| {
            vec![
                "https://app.example.com".to_owned(),
                "http://localhost:3000".to_owned(),
            ]
        }),
        ips: r.maybe().then(|| {
            vec![
                IpNet::parse(&format!("10.{}.0.0/16", r.below(256))).unwrap(),
                IpNet::parse("2001:db8::/32").unwrap(),
            ]
        }),
        mtok,
        // §5.1.17: a mode only next to a ceiling.
        mtok_mode: (mtok.is_some() && r.maybe()).then(|| {
            if r.maybe() {
                MtokMode::Clamp
            } else {
                MtokMode::Reject
            }
        }),
        bud: r.maybe().then(|| random_budget(r)),
        // §5.1.21: user quotas only next to a uid.
        uq: uid
            .is_some()
            .then(|| r.maybe().then(|| random_quotas(r)))
            .flatten(),
        uid,
        ssec: r.maybe().then(|| 1 + r.below(86_400)),
    }
}

/// A spend amount: small, or anywhere up to 2^53-1 (§5.1.4).
fn random_amount(r: &mut TestRng) -> u64 {
    if r.maybe() {
        1 + r.below(1_000_000)
    } else {
        1 + r.below(format::MAX_INT)
    }
}

/// `tok`, `cost` or both (§5.1.20: never neither).
fn random_budget(r: &mut TestRng) -> Budget {
    match r.below(3) {
        0 => Budget {
            tok: Some(random_amount(r)),
            cost: None,
        },
        1 => Budget {
            tok: None,
            cost: Some(random_amount(r)),
        },
        _ => Budget {
            tok: Some(random_amount(r)),
            cost: Some(random_amount(r)),
        },
    }
}

/// 1 to 3 quotas on distinct windows in a random order, each with a random non-empty set of limits.
fn random_quotas(r: &mut TestRng) -> Vec<UserQuota> {
    let mut windows = vec![Window::Day, Window::Month, Window::All];
    let mut out = Vec::new();
    for _ in 0..1 + r.below(3) {
        let w = windows.remove(r.below(windows.len() as u64) as usize);
        let set = 1 + r.below(7); // bits: calls, tok, cost; at least one
        let mut pick = |bit: u64| (set & bit != 0).then(|| random_amount(r));
        let (calls, tok, cost) = (pick(1), pick(2), pick(4));
        out.push(UserQuota {
            w,
            calls,
            tok,
            cost,
        });
    }
    out
}

#[test]
fn mint_verify_round_trip_with_random_keys() {
    let mut r = TestRng(0x5eed_1234_abcd_0001);
    let mut os = os_rng();
    for _ in 0..300 {
        let mut key_bytes = [0u8; 32];
        os(&mut key_bytes);
        let key = SecretKey::from_bytes(key_bytes);
        let kid = r.word(ID_CHARS, 1, 32);
        let tenant = r.word(ID_CHARS, 1, 64);
        let mut ring = Keyring::new();
        ring.insert(&kid, &tenant, key.clone()).unwrap();
        let claims = random_claims(&mut r, &tenant);
        let token = mint(&claims, &kid, &key, &mut os);
        assert_eq!(verify(&token, &ring, ANY_TIME), Ok(claims.clone()));
        // The canonical form re-parses to the same claims, so minters in other languages agree.
        assert_eq!(
            Claims::from_json(&canonical_json(&claims)),
            Ok(claims.clone())
        );
        // Same kid, another key: refused.
        let mut other = Keyring::new();
        key_bytes[0] ^= 1;
        other
            .insert(&kid, &tenant, SecretKey::from_bytes(key_bytes))
            .unwrap();
        assert_eq!(verify(&token, &other, ANY_TIME), Err(InvalidToken));
    }
}

#[test]
fn public_mint_never_repeats_a_token() {
    let ring = keyring();
    let cases: Vec<GenerateCase> = load("generate.json", "generate");
    let claims = claims_of(&cases[0].claims);
    let (_, key) = ring.get(&cases[0].kid, ANY_TIME).unwrap();
    let mut os = os_rng();
    let mut tokens = HashSet::new();
    let mut ids = HashSet::new();
    for _ in 0..10_000 {
        assert!(tokens.insert(mint(&claims, &cases[0].kid, key, &mut os)));
        assert!(ids.insert(new_token_id(&mut os)));
    }
    // Each of them still verifies (spot check: the salt changed, not the meaning).
    for t in tokens.iter().take(20) {
        assert_eq!(verify(t, &ring, ANY_TIME).as_ref(), Ok(&claims));
    }
}

#[test]
fn flipping_any_single_bit_fails_verification() {
    let ring = keyring();
    let cases: Vec<GenerateCase> = load("generate.json", "generate");
    let mut checked = 0usize;
    for case in &cases {
        assert!(verify(&case.token, &ring, ANY_TIME).is_ok());
        // Bits of the text after the prefix. Flips that leave ASCII are tested; the others cannot be
        // a &str at all.
        let text = case.token.as_bytes();
        for i in 4..text.len() {
            for bit in 0..7 {
                let mut t = text.to_vec();
                t[i] ^= 1 << bit;
                let t = String::from_utf8(t).unwrap();
                assert_eq!(
                    verify(&t, &ring, ANY_TIME),
                    Err(InvalidToken),
                    "{}: text byte {i} bit {bit}",
                    case.desc
                );
                checked += 1;
            }
        }
        // Bits of the decoded blob, re-encoded canonically.
        let blob = URL_SAFE_NO_PAD.decode(&case.token[4..]).unwrap();
        for i in 0..blob.len() {
            for bit in 0..8 {
                let mut b = blob.clone();
                b[i] ^= 1 << bit;
                let t = format!("rt1.{}", URL_SAFE_NO_PAD.encode(&b));
                assert_eq!(
                    verify(&t, &ring, ANY_TIME),
                    Err(InvalidToken),
                    "{}: blob byte {i} bit {bit}",
                    case.desc
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 20_000, "{checked}");
}

// ---- ecc.json and hpke-rfc9180.json (docs/token-format.md §10.5) ---------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EccFile {
    keys: EccKeys,
    generate: Vec<EccGenerate>,
    verify: Vec<VerifyCase>,
    invalid: Vec<EccInvalid>,
    rai: Vec<EccRai>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EccKeys {
    relay_keys: Vec<EccRelayKeyEntry>,
    signers: Vec<EccSignerEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EccRelayKeyEntry {
    key_id: String,
    tenant: String,
    private_key: String,
    public_key: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EccSignerEntry {
    signer_id: String,
    tenant: String,
    signing_key: String,
    public_key: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EccGenerate {
    desc: String,
    rkid: String,
    skid: String,
    ikm_e: String,
    now: u64,
    claims: Value,
    claims_json: String,
    header: String,
    sig: String,
    enc: String,
    token: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EccInvalid {
    desc: String,
    fails_at: String,
    token: String,
    now: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EccRai {
    rule: String,
    loader: String,
    desc: String,
    verdict: String,
    rai: String,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len() / 2)
        .map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

fn ecc_file() -> EccFile {
    load("ecc.json", "ecc")
}

/// One relay-side file per tenant, holding every relay key and signer of that tenant (as ecc.json's
/// schema says the cases are evaluated).
fn ecc_keyring(keys: &EccKeys) -> Keyring {
    let mut tenants: Vec<&str> = keys.relay_keys.iter().map(|k| k.tenant.as_str()).collect();
    tenants.sort();
    tenants.dedup();
    let file_of = |t: &str| tenants.iter().position(|x| *x == t).unwrap() as u32;
    let mut ring = Keyring::new();
    let open = relayapi::token::rai::KeyWindow::default();
    for k in &keys.relay_keys {
        let key = EccPrivateKey::from_base64url(&k.private_key).unwrap();
        assert_eq!(
            key.public_key().to_base64url(),
            k.public_key,
            "{}",
            k.key_id
        );
        ring.insert_relay_key(&k.key_id, &k.tenant, key, open, file_of(&k.tenant))
            .unwrap();
    }
    for s in &keys.signers {
        let key = EccPrivateKey::from_base64url(&s.signing_key).unwrap();
        assert_eq!(
            key.public_key().to_base64url(),
            s.public_key,
            "{}",
            s.signer_id
        );
        ring.insert_signer(
            &s.signer_id,
            &s.tenant,
            key.public_key(),
            open,
            file_of(&s.tenant),
        )
        .unwrap();
    }
    ring
}

#[test]
fn ecc_generate_vectors() {
    let file = ecc_file();
    let ring = ecc_keyring(&file.keys);
    for case in &file.generate {
        let claims = claims_of(&case.claims);
        assert_eq!(canonical_json(&claims), case.claims_json, "{}", case.desc);
        assert_eq!(claims.iat, case.now, "{}", case.desc);
        let relay = file
            .keys
            .relay_keys
            .iter()
            .find(|k| k.key_id == case.rkid)
            .unwrap();
        let signer = file
            .keys
            .signers
            .iter()
            .find(|s| s.signer_id == case.skid)
            .unwrap();
        let minter = EccMinter {
            rkid: case.rkid.clone(),
            relay_public_key: EccPublicKey::from_base64url(&relay.public_key).unwrap(),
            skid: case.skid.clone(),
            signing_key: EccPrivateKey::from_base64url(&signer.signing_key).unwrap(),
        };
        let header = ecc_layout::header(&case.rkid, &case.skid);
        assert_eq!(hex(&header), case.header, "{}", case.desc);
        let signed = [header.as_slice(), case.claims_json.as_bytes()].concat();
        assert_eq!(
            hex(&ecc_signature::sign(&minter.signing_key, &signed)),
            case.sig,
            "{}: RFC 6979, low S",
            case.desc
        );
        let ikm_e: [u8; 32] = unhex(&case.ikm_e).try_into().unwrap();
        let token = minter.mint_with(&claims, &ikm_e);
        let blob = URL_SAFE_NO_PAD.decode(&token[4..]).unwrap();
        assert_eq!(
            hex(&blob[header.len()..header.len() + 65]),
            case.enc,
            "{}",
            case.desc
        );
        assert_eq!(token, case.token, "{}", case.desc);
        assert_eq!(
            verify(&case.token, &ring, case.now),
            Ok(claims),
            "{}",
            case.desc
        );
    }
    assert_eq!(file.generate.len(), 8);
}

#[test]
fn ecc_verify_vectors() {
    let file = ecc_file();
    let ring = ecc_keyring(&file.keys);
    for case in &file.verify {
        let claims = verify(&case.token, &ring, case.now)
            .unwrap_or_else(|_| panic!("{}: refused", case.desc));
        let result = match check_time(&claims, case.now, 0, case.max_lifetime) {
            Ok(()) => "ok",
            Err(TimeError::Expired) => "expired",
            Err(TimeError::NotYetValid) => "not_yet_valid",
            Err(TimeError::LifetimeTooLong) => "lifetime_too_long",
        };
        assert_eq!(result, case.result, "{}", case.desc);
        if let Some(expected) = &case.claims {
            assert_eq!(claims, claims_of(expected), "{}", case.desc);
        }
    }
    assert_eq!(file.verify.len(), 28);
}

#[test]
fn ecc_invalid_vectors() {
    let file = ecc_file();
    let ring = ecc_keyring(&file.keys);
    for case in &file.invalid {
        let outcome = catch_unwind(AssertUnwindSafe(|| verify(&case.token, &ring, case.now)));
        match outcome {
            Ok(result) => assert_eq!(
                result,
                Err(InvalidToken),
                "{} (fails at {})",
                case.desc,
                case.fails_at
            ),
            Err(_) => panic!("verify panicked on: {}", case.desc),
        }
    }
    assert_eq!(file.invalid.len(), 54);
}

/// Every rai case through the relay's parser: `relay` cases load exactly when the file is a valid
/// relay-side file, `sdk` cases exactly when it is a valid backend-side file (the side the SDKs load).
#[test]
fn ecc_rai_vectors() {
    let file = ecc_file();
    for case in &file.rai {
        let parsed = parse_rai_any(&case.rai, std::path::Path::new("case.rai"));
        let side = match &parsed {
            Ok(RaiFile::Ecc(r)) => match r.crypto {
                EccCrypto::Relay(_) => "relay",
                EccCrypto::Backend(_) => "sdk",
            },
            _ => "none",
        };
        let verdict = if side == case.loader {
            "load"
        } else {
            "refuse"
        };
        assert_eq!(
            verdict,
            case.verdict,
            "{} {} ({}): {:?}",
            case.rule,
            case.desc,
            case.loader,
            parsed.err()
        );
    }
    assert_eq!(file.rai.len(), 93);
}

#[derive(Deserialize)]
struct HpkeFile {
    vectors: Vec<Value>,
}

/// RFC 9180 base-mode vectors for the suite's KEM and KDF: rust-hpke's DeriveKeyPair, and with AES-256-GCM
/// (the token suite) every listed encryption from a sender whose RNG yields `ikmE` (which is how the
/// relay's minter injects `ikm_e`); the relay's own wrapper derives the same `enc`.
#[test]
fn hpke_rfc9180_vectors() {
    use hpke::{Deserializable, Serializable};
    type Kem = hpke::kem::DhP256HkdfSha256;
    let file: HpkeFile = load("hpke-rfc9180.json", "hpke");
    let mut aes256 = 0;
    for v in &file.vectors {
        let h = |name: &str| unhex(v[name].as_str().unwrap());
        let (sk_r, pk_r) = ecc_hpke::derive_key_pair(&h("ikmR"));
        assert_eq!(sk_r.expose_bytes().to_vec(), h("skRm"));
        assert_eq!(pk_r.to_sec1().to_vec(), h("pkRm"));
        let (sk_e, pk_e) = ecc_hpke::derive_key_pair(&h("ikmE"));
        assert_eq!(sk_e.expose_bytes().to_vec(), h("skEm"));
        assert_eq!(pk_e.to_sec1().to_vec(), h("enc"));
        if v["aead_id"] != 2 {
            continue;
        }
        aes256 += 1;
        let ikm_e: [u8; 32] = h("ikmE").try_into().unwrap();
        // The wrapper's ephemeral key is DeriveKeyPair(ikm_e).
        let (enc, _) = ecc_hpke::seal(&pk_r, &h("info"), b"pt", &ikm_e);
        assert_eq!(enc.to_vec(), h("enc"));
        let pk_r_h = <Kem as hpke::Kem>::PublicKey::from_bytes(&h("pkRm")).unwrap();
        let sk_r_h = <Kem as hpke::Kem>::PrivateKey::from_bytes(&h("skRm")).unwrap();
        let mut rng = FixedRng(Some(ikm_e));
        let (encapped, mut sender) = hpke::setup_sender::<
            hpke::aead::AesGcm256,
            hpke::kdf::HkdfSha256,
            Kem,
            _,
        >(&hpke::OpModeS::Base, &pk_r_h, &h("info"), &mut rng)
        .unwrap();
        assert_eq!(encapped.to_bytes().to_vec(), h("enc"));
        let mut receiver =
            hpke::setup_receiver::<hpke::aead::AesGcm256, hpke::kdf::HkdfSha256, Kem>(
                &hpke::OpModeR::Base,
                &sk_r_h,
                &encapped,
                &h("info"),
            )
            .unwrap();
        for (i, e) in v["encryptions"].as_array().unwrap().iter().enumerate() {
            let x = |name: &str| unhex(e[name].as_str().unwrap());
            assert_eq!(e["sequence_number"], i);
            assert_eq!(
                sender.seal(&x("pt"), &x("aad")).unwrap(),
                x("ct"),
                "{} #{i}",
                v["name"]
            );
            assert_eq!(receiver.open(&x("ct"), &x("aad")).unwrap(), x("pt"));
        }
    }
    assert_eq!(aes256, 1, "the AES-256-GCM vector is present");
}

/// Yields the given 32 bytes once (the ephemeral key's input), nothing else.
struct FixedRng(Option<[u8; 32]>);

impl hpke::rand_core::RngCore for FixedRng {
    fn next_u32(&mut self) -> u32 {
        unreachable!()
    }
    fn next_u64(&mut self) -> u64 {
        unreachable!()
    }
    fn fill_bytes(&mut self, dst: &mut [u8]) {
        dst.copy_from_slice(&self.0.take().expect("one draw"));
    }
}

impl hpke::rand_core::CryptoRng for FixedRng {}
