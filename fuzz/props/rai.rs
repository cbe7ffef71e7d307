//! `.rai` loading (`src/token/rai.rs`, `docs/client-config.md`), differential against `serde_json`: what
//! `parse_rai` accepts is a JSON object without repeated member names (rai.rs keeps duplicates that
//! `serde_json::Value` would silently merge, and must refuse them), with only the documented members
//! at each level, and the parsed values are the ones `serde_json` reads. An accepted file survives
//! `to_json_pretty` and re-parsing unchanged, its key ids are valid and distinct, its key windows are
//! the integers in the file. Neither an error
//! message nor the parsed value's `Debug` ever repeats a key from the file.

use std::path::Path;

use relayapi::token::rai::{is_valid_key_id, parse_rai, to_json_pretty, KeyWindow};
use relayapi::token::secret::SecretKey;
use serde_json::Value;

use super::json;

const FILE: &str = "/etc/relayapi/fuzz.rai";

pub fn check(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let parsed = parse_rai(text, Path::new(FILE));
    let reference = json::parse(text);
    // Values that may be keys: every string under a `key` member, when they are long enough that
    // finding one in a message is no accident.
    let mut keys = Vec::new();
    if let Some((value, _)) = &reference {
        json::strings_under(value, "key", &mut keys);
    }
    // A key the file also spells elsewhere (inside a member name, say) may rightly be quoted from
    // there: only text found nowhere but in a key's value proves a leak.
    keys.retain(|k| k.len() >= 8 && text.matches(*k).count() == 1);
    let rai = match parsed {
        Err(e) => {
            assert_eq!(e.file, Path::new(FILE));
            let message = e.to_string();
            for k in keys.iter().filter(|k| message.contains(**k)) {
                // The message may quote fixed wording that happens to equal the key's text. It leaks
                // the key only if it stops quoting it once the key's value is spelled differently.
                let other = text.replacen(*k, &"#".repeat(k.len()), 1);
                let again = parse_rai(&other, Path::new(FILE))
                    .err()
                    .map(|e| e.to_string());
                assert!(
                    again.is_some_and(|m| m.contains(*k)),
                    "error repeats a key: {message}"
                );
            }
            return;
        }
        Ok(rai) => rai,
    };
    let debug = format!("{rai:?}");
    for k in &keys {
        assert!(!debug.contains(k), "Debug shows a key");
    }

    let (value, duplicate) = reference.expect("an accepted .rai is JSON");
    assert!(!duplicate, "accepted a repeated member name");
    let top = only(&value, &["version", "server", "crypto"]);
    let server = only(&top["server"], &["scheme", "host", "port", "base_path"]);
    let crypto = only(
        &top["crypto"],
        &[
            "method",
            "key_id",
            "key",
            "tenant_id",
            "previous_keys",
            "not_before",
            "not_after",
        ],
    );
    assert_eq!(top["version"].as_u64(), Some(u64::from(rai.version)));
    assert_eq!(server["host"].as_str(), Some(rai.server.host.as_str()));
    assert_eq!(server["port"].as_u64(), Some(u64::from(rai.server.port)));
    assert_eq!(
        server.get("scheme").map_or(Some("http"), Value::as_str),
        Some(rai.server.scheme.as_str())
    );
    assert_eq!(crypto["key_id"].as_str(), Some(rai.crypto.key_id.as_str()));
    assert_eq!(
        crypto["tenant_id"].as_str(),
        Some(rai.crypto.tenant_id.as_str())
    );
    assert_eq!(key(&crypto["key"]), rai.crypto.key);
    check_window(crypto, &rai.crypto.window);
    let previous = crypto.get("previous_keys").map_or(&[][..], |p| {
        p.as_array().expect("previous_keys is an array")
    });
    assert_eq!(previous.len(), rai.crypto.previous_keys.len());
    for (item, p) in previous.iter().zip(&rai.crypto.previous_keys) {
        let item = only(item, &["key_id", "key", "not_before", "not_after"]);
        assert_eq!(item["key_id"].as_str(), Some(p.key_id.as_str()));
        assert_eq!(key(&item["key"]), p.key);
        check_window(item, &p.window);
    }

    let mut ids: Vec<&str> = vec![&rai.crypto.key_id];
    ids.extend(rai.crypto.previous_keys.iter().map(|p| p.key_id.as_str()));
    assert!(ids.iter().all(|k| is_valid_key_id(k)));
    let mut distinct = ids.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), ids.len(), "repeated key id");
    let base = &rai.server.base_path;
    assert!(base.starts_with('/') && base.ends_with('/'));

    let written = to_json_pretty(&rai);
    let again = parse_rai(&written, Path::new(FILE)).expect("a written .rai parses");
    assert_eq!(again, rai);
}

/// A key's `not_before` / `not_after` are the integers serde_json reads, at most 2^53-1, and a window
/// with both ends is not empty.
fn check_window(obj: &serde_json::Map<String, Value>, window: &KeyWindow) {
    let end = |name: &str| obj.get(name).map(|v| v.as_u64().expect("an integer"));
    assert_eq!(end("not_before"), window.not_before);
    assert_eq!(end("not_after"), window.not_after);
    for v in [window.not_before, window.not_after].into_iter().flatten() {
        assert!(v < 1 << 53);
    }
    if let (Some(nb), Some(na)) = (window.not_before, window.not_after) {
        assert!(nb < na, "an empty window");
    }
}

/// The object's members, asserting there are no others.
fn only<'a>(v: &'a Value, names: &[&str]) -> &'a serde_json::Map<String, Value> {
    let obj = v.as_object().expect("an object");
    for name in obj.keys() {
        assert!(
            names.contains(&name.as_str()),
            "accepted unknown member {name:?}"
        );
    }
    obj
}

fn key(v: &Value) -> SecretKey {
    SecretKey::from_base64url(v.as_str().expect("a key string")).expect("a valid key")
}
