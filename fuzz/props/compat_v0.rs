//! `relayapi-sdk` 1.0.0 tokens (`token/compat_v0/`) and their URL shapes (`request/compat_v0.rs`).
//!
//! Asserts, beyond not panicking:
//! - envelope: for any key size and blob, an opened plaintext is the whole decryption when the padding
//!   is bad and the decryption minus a valid PKCS#7 pad when it is good (checked against a plain
//!   reference); sealing the input and opening it gives the input back;
//! - layout: what `layout::parse` accepts is exactly the one spelling the SDK writes (re-written here
//!   from the parsed members, times formatted by a reference, and compared byte for byte);
//! - verify: the input sealed under a tenant's key verifies exactly when its parts accept it (layout,
//!   then claims), so the pipeline adds no path of its own; any text with any hash never panics;
//! - locate: a v0 location has a 64-hex hash, a token that is not a v1 token, a path that is empty or starts with
//!   `/`, and a forwarded query without `token` or `rai_hash`.
//!
//! Input: a flag byte (key size, whether the query is present), then NUL-separated fields: a plaintext
//! or token text, a path after the base, and a query.

use std::path::Path;

use relayapi::request::compat_v0::locate_v0;
use relayapi::token::compat_v0::claims::{to_claims, TimeRules};
use relayapi::token::compat_v0::envelope::{self, seal};
use relayapi::token::compat_v0::{layout, rai, CompatTenant, CompatTenants, Policy};

use super::fields;

const NOW: u64 = 1_796_617_600;
const RULES: TimeRules = TimeRules {
    clock_skew: 60,
    max_lifetime: 30 * 86_400,
};

pub fn check(data: &[u8]) {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let f = fields(rest, 3);
    let key: Vec<u8> = (0..[16u8, 24, 32][usize::from(flags % 3)]).collect();
    check_envelope(&key, f[0]);
    check_layout(f[0]);
    check_verify(&key, f[0]);
    if let (Ok(after_base), Ok(query)) = (std::str::from_utf8(f[1]), std::str::from_utf8(f[2])) {
        check_locate(after_base, (flags & 4 != 0).then_some(query));
    }
}

fn check_envelope(key: &[u8], input: &[u8]) {
    let token = seal(key, [7; 16], input);
    let blob = envelope::decode(&token);
    if token.len() <= envelope::MAX_TOKEN_TEXT {
        let opened = envelope::open(key, &blob.expect("a sealed token decodes")).unwrap();
        assert!(bool::from(opened.padding_ok));
        assert_eq!(opened.plaintext(), input);
    }
    // Any whole-block blob: the reference padding rule.
    let n = input.len() / 16 * 16;
    if n >= 32 {
        let opened = envelope::open(key, &input[..n]).unwrap();
        let full = opened.plaintext().len() == n - 16;
        if bool::from(opened.padding_ok) {
            let p = n - 16 - opened.plaintext().len();
            assert!((1..=16).contains(&p));
        } else {
            assert!(full, "a bad padding keeps every byte");
        }
    }
    if let Ok(text) = std::str::from_utf8(input) {
        if let Some(b) = envelope::decode(text) {
            assert!(b.len() >= 32 && b.len() % 16 == 0);
        }
    }
}

fn check_layout(input: &[u8]) {
    let Some(p) = layout::parse(input) else {
        return;
    };
    let again = format!(
        r#"{{"id":"token-{}","api_key":"{}","max_calls":{},"expire_time":"{}","created_at":"{}","provider":"{}","ext_info":"{}"}}"#,
        p.id_ts,
        p.api_key,
        p.max_calls,
        iso(p.expire_us),
        iso(p.created_us),
        p.provider,
        p.ext_info
    );
    assert_eq!(again.as_bytes(), input, "one spelling only");
}

/// Python's `isoformat()` of an aware UTC time, from Unix microseconds (reference: civil from days).
fn iso(us: i64) -> String {
    let (secs, micros) = (us.div_euclid(1_000_000), us.rem_euclid(1_000_000));
    let (days, sod) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let frac = if micros == 0 {
        String::new()
    } else {
        format!(".{micros:06}")
    };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}{frac}+00:00",
        sod / 3600,
        sod / 60 % 60,
        sod % 60
    )
}

fn check_verify(key: &[u8], input: &[u8]) {
    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    let text = format!(
        r#"{{"crypto":{{"method":"aes","aes_key":"{hex}","aes_iv_seed":"0123456789abcdef"}}}}"#
    );
    let original = rai::parse(&text, Path::new("fuzz.rai")).unwrap();
    let hash = original.rai_hash.clone();
    let policy = Policy {
        max_lifetime: 7 * 86_400,
        max_calls: 1000,
        providers: vec!["openai".into()],
        krefs: vec![],
        rate: None,
    };
    let tenants = CompatTenants::new(
        vec![CompatTenant {
            tenant_id: "fz".into(),
            key_id: "fz".into(),
            rai: original,
            policy: policy.clone(),
        }],
        RULES.clock_skew,
        RULES.max_lifetime,
        |b: &mut [u8]| b.fill(1),
    )
    .unwrap();
    let token = seal(key, [3; 16], input);
    let expected = layout::parse(input).and_then(|p| to_claims(&p, "fz", &policy, RULES, NOW).ok());
    let got = tenants.verify(&token, &hash, NOW).ok();
    if token.len() <= envelope::MAX_TOKEN_TEXT {
        assert_eq!(got, expected);
    } else {
        assert_eq!(got, None);
    }
    if let Ok(t) = std::str::from_utf8(input) {
        assert!(tenants.verify(t, &hash, NOW).is_err() || layout::parse(input).is_none());
        let _ = tenants.verify(t, t, NOW);
    }
}

fn check_locate(after_base: &str, query: Option<&str>) {
    for base in ["/relayapi/", "/"] {
        let Some(l) = locate_v0(after_base, query, base) else {
            continue;
        };
        assert_eq!(l.rai_hash.len(), 64);
        assert!(l
            .rai_hash
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        assert!(!l.token.is_empty());
        assert!(!l.token.is_empty() && !l.token.starts_with("rt1."));
        assert!(l.rest.is_empty() || l.rest.starts_with('/'));
        if let Some(q) = l.query.strip_prefix('?') {
            for pair in q.split('&') {
                assert!(
                    !pair.starts_with("token=") && !pair.starts_with("rai_hash="),
                    "{pair}"
                );
            }
        } else {
            assert!(l.query.is_empty());
        }
    }
}
