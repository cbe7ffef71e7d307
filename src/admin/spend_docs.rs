//! The spend parts of the admin API (`docs/admin-api.md`, `docs/budgets.md` §5): the `tokens` and `cost`
//! members of a token's usage document, and the end-user usage document of
//! `GET /admin/v1/users/{uid}/usage` with its percent-encoded uid segment. The lines and their keys are
//! `budget/lines.rs`'s, the counters the store's; routing and the rest of the token document are
//! `admin/handlers.rs`'s.

use serde_json::{json, Value};

use crate::budget::lines::{token_key, user_key, window_end};
use crate::calendar::{day_label, month_label};
use crate::error::Error;
use crate::store::{Spend, Store};
use crate::text::grammar::{check_percent_encoded, is_pchar, is_printable_ascii};
use crate::token::format::Window;

/// Longest end-user id in bytes, as the `uid` claim allows (token format §5.1.18).
const MAX_UID_LEN: usize = 128;

/// The windows of a user's usage document, in the order it lists them.
const WINDOWS: [Window; 3] = [Window::Day, Window::Month, Window::All];

/// What a refused uid segment says: the rule, never the bytes (they may be anything a client sent).
const BAD_UID: &str = "the user id must be 1 to 128 printable ASCII characters, sent as one \
                       percent-encoded path segment (every byte outside A-Z a-z 0-9 - . _ ~ as %XX)";

/// The end user a path segment names: RFC 3986 percent-decoding with every escape complete and every
/// other byte a `pchar` (what a path segment may hold unescaped, §3.3), then the `uid` rule of token
/// format §5.1.18 on the decoded bytes. Nothing is repaired: a `+` stays a `+`, and `%2F` is a `/` of
/// the uid, never a path separator.
pub fn decode_uid(segment: &str) -> Result<String, Error> {
    let bad = || Error::InvalidParameter(BAD_UID);
    let raw = segment.as_bytes();
    check_percent_encoded(raw, is_pchar).map_err(|_| bad())?;
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'%' {
            // Complete and hex: checked above.
            let hex = std::str::from_utf8(&raw[i + 1..i + 3]).map_err(|_| bad())?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| bad())?);
            i += 3;
        } else {
            out.push(raw[i]);
            i += 1;
        }
    }
    if !(1..=MAX_UID_LEN).contains(&out.len()) || !out.iter().copied().all(is_printable_ascii) {
        return Err(bad());
    }
    String::from_utf8(out).map_err(|_| bad())
}

/// `{"input", "output", "cached_input"}` of one line.
fn tokens_doc(s: &Spend) -> Value {
    json!({"input": s.input, "output": s.output, "cached_input": s.cached_input})
}

/// What token `jti` used in tokens and money, from its line `t/<jti>` (zero when it has none).
pub async fn token_spend(store: &Store, tenant: &str, jti: &str) -> Result<Spend, Error> {
    let key = token_key(jti);
    let got = store
        .spend_get(tenant, &[key.as_str()])
        .await
        .map_err(|_| Error::StoreUnavailable)?;
    Ok(got.first().copied().unwrap_or_default())
}

/// Adds `tokens` and `cost` to a token's usage document.
pub fn add_token_spend(doc: &mut Value, s: &Spend) {
    doc["tokens"] = tokens_doc(s);
    doc["cost"] = json!(s.cost);
}

/// The usage document of end user `uid` of `tenant` at `now`: one entry per window with the period it
/// counts (`null` for `all`), what it holds (reservations in flight included), and when it resets.
pub async fn user_usage(store: &Store, tenant: &str, uid: &str, now: u64) -> Result<Value, Error> {
    let keys: Vec<String> = WINDOWS.iter().map(|&w| user_key(uid, w, now)).collect();
    let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    let spent = store
        .spend_get(tenant, &refs)
        .await
        .map_err(|_| Error::StoreUnavailable)?;
    Ok(user_doc(tenant, uid, now, &spent))
}

fn user_doc(tenant: &str, uid: &str, now: u64, spent: &[Spend]) -> Value {
    let mut windows = serde_json::Map::new();
    for (i, &w) in WINDOWS.iter().enumerate() {
        let s = spent.get(i).copied().unwrap_or_default();
        let period = match w {
            Window::Day => Some(day_label(now)),
            Window::Month => Some(month_label(now)),
            Window::All => None,
        };
        windows.insert(
            w.as_str().to_owned(),
            json!({
                "period": period,
                "calls": s.calls,
                "tokens": tokens_doc(&s),
                "cost": s.cost,
                "resets_at": window_end(w, now),
            }),
        );
    }
    json!({"tenant_id": tenant, "user_id": uid, "windows": windows})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::budget::lines::user_keep_until;
    use crate::store::{SpendLimit, SpendLine};

    /// 2026-12-07T01:39:51Z.
    const NOW: u64 = 1_796_607_591;

    #[test]
    fn uid_segments_decode_strictly() {
        for (seg, uid) in [
            ("user-42", "user-42"),
            ("a%2Fb", "a/b"),
            ("a%2fb", "a/b"),
            ("%20x%22%5C%25", " x\"\\%"),
            ("a+b", "a+b"),
            ("me@example.com", "me@example.com"),
            ("%7E~", "~~"),
        ] {
            assert_eq!(decode_uid(seg).unwrap(), uid, "{seg}");
        }
        assert_eq!(decode_uid(&"u".repeat(128)).unwrap().len(), 128);
        assert_eq!(decode_uid(&"%41".repeat(128)).unwrap(), "A".repeat(128));
        for bad in [
            "",
            "%",
            "%4",
            "%zz",
            "a%2",
            "%00",
            "%0A",
            "%7F",
            "%C3%A9",
            "a b",
            "a\"b",
            "a#b",
            "é",
            &"u".repeat(129),
            &"%41".repeat(129),
        ] {
            let e = decode_uid(bad).unwrap_err();
            assert_eq!(
                (e.status(), e.code()),
                (400, "invalid_parameter"),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn every_byte_escaped_or_raw() {
        for b in 0..=255u8 {
            // Escaped: exactly the printable ASCII bytes are a uid, and they decode to themselves.
            let escaped = decode_uid(&format!("%{b:02X}"));
            assert_eq!(escaped.is_ok(), is_printable_ascii(b), "%{b:02X}");
            if let Ok(uid) = escaped {
                assert_eq!(uid.as_bytes(), [b]);
            }
            // Raw: only what a path segment may hold unescaped.
            if let Ok(raw) = std::str::from_utf8(&[b]) {
                assert_eq!(decode_uid(raw).is_ok(), is_pchar(b), "{b:#04x}");
            }
        }
    }

    #[test]
    fn the_user_document_names_each_window() {
        let day = Spend {
            calls: 2,
            input: 10,
            output: 20,
            cached_input: 5,
            cost: 7,
        };
        let d = user_doc("acme", "u/1", NOW, &[day, Spend::default(), day]);
        assert_eq!(
            (d["tenant_id"].as_str(), d["user_id"].as_str()),
            (Some("acme"), Some("u/1"))
        );
        let w = &d["windows"];
        assert_eq!(w["day"]["period"], "2026-12-07");
        assert_eq!(w["day"]["resets_at"], 1_796_688_000); // 2026-12-08T00:00:00Z
        assert_eq!(
            w["day"]["tokens"],
            json!({"input": 10, "output": 20, "cached_input": 5})
        );
        assert_eq!(
            (w["day"]["calls"].as_u64(), w["day"]["cost"].as_u64()),
            (Some(2), Some(7))
        );
        assert_eq!(w["month"]["period"], "2026-12");
        assert_eq!(w["month"]["resets_at"], 1_798_761_600); // 2027-01-01T00:00:00Z
        assert_eq!(w["month"]["calls"], 0);
        assert!(w["all"]["period"].is_null() && w["all"]["resets_at"].is_null());
        assert_eq!(w["all"]["cost"], 7);
    }

    #[tokio::test]
    async fn the_store_lines_are_read_per_tenant_and_user() {
        let store = Store::memory();
        let used = Spend {
            calls: 1,
            input: 100,
            output: 50,
            cached_input: 0,
            cost: 3,
        };
        let lines: Vec<SpendLine> = [Window::Day, Window::All]
            .iter()
            .map(|&w| SpendLine {
                key: user_key("u/1", w, NOW),
                limit: SpendLimit::default(),
                keep_until: user_keep_until(w, NOW),
            })
            .collect();
        store
            .spend_reserve("acme", &lines, &used, NOW)
            .await
            .unwrap();
        let token_line = [SpendLine {
            key: token_key("ab"),
            limit: SpendLimit::default(),
            keep_until: NOW + 60,
        }];
        store
            .spend_reserve("acme", &token_line, &used, NOW)
            .await
            .unwrap();
        let d = user_usage(&store, "acme", "u/1", NOW).await.unwrap();
        assert_eq!(d["windows"]["day"]["tokens"]["input"], 100);
        assert_eq!(d["windows"]["month"]["calls"], 0);
        assert_eq!(d["windows"]["all"]["cost"], 3);
        // Another tenant, another user, the next day: nothing.
        for (tenant, uid, now) in [
            ("globex", "u/1", NOW),
            ("acme", "u", NOW),
            ("acme", "u/1", NOW + 86_400),
        ] {
            let d = user_usage(&store, tenant, uid, now).await.unwrap();
            assert_eq!(d["windows"]["day"]["calls"], 0, "{tenant} {uid} {now}");
        }
        let mut doc = json!({});
        add_token_spend(&mut doc, &token_spend(&store, "acme", "ab").await.unwrap());
        assert_eq!(
            doc,
            json!({"tokens": {"input": 100, "output": 50, "cached_input": 0}, "cost": 3})
        );
        assert_eq!(
            token_spend(&store, "globex", "ab").await.unwrap(),
            Spend::default()
        );
    }
}
