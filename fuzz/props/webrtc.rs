//! The WebRTC call set-up's model check (`request/webrtc.rs`) on a stranger's content type and body, for
//! a token that allows one model. Whatever the bytes, an accepted multipart form never carries a
//! `session` part whose model (as `serde_json` reads that part, in either the bare or the wrapped
//! shape) is another one: the reference here splits the form naively on the delimiter and reads every
//! part named `session`.
//!
//! Input: the content type, a NUL, then the body.

use relayapi::request::route::Located;
use relayapi::request::webrtc::apply;
use relayapi::token::format::Claims;
use serde_json::Value;

use super::fields;

const ALLOWED: &str = "gpt-realtime";

fn models_of(part: &[u8]) -> Vec<String> {
    let Ok(v) = serde_json::from_slice::<Value>(part) else {
        return Vec::new();
    };
    [
        v.get("model"),
        v.get("session").and_then(|s| s.get("model")),
    ]
    .into_iter()
    .flatten()
    .map(|m| m.as_str().map_or_else(|| m.to_string(), str::to_owned))
    .collect()
}

pub fn check(data: &[u8]) {
    let f = fields(data, 2);
    let (ct, body) = (f[0], f[1]);
    let claims = Claims {
        models: Some(vec![ALLOWED.to_owned()]),
        ..Claims::new("0".repeat(32), "t".into(), 0, 1, "openai".into())
    };
    let mut loc = Located {
        token: None,
        rest: "/realtime/calls".into(),
        query: String::new(),
    };
    if apply(&claims, Some(ct), &mut loc, body).is_err() {
        return;
    }
    // The parameter named exactly `boundary` (a name that only ends in it is another parameter).
    // Splitting on `;` misreads a quoted boundary holding one; such a form is not judged here.
    // Names are case-insensitive, the boundary itself is not.
    let ct = String::from_utf8_lossy(ct);
    let mut values = ct.split(';').skip(1).filter_map(|p| {
        let (name, value) = p.split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("boundary")
            .then(|| value.trim())
    });
    let Some(b) = values.next() else {
        return;
    };
    if b.starts_with('"') != (b.ends_with('"') && b.len() > 1) {
        return;
    }
    let b = b.trim_matches('"');
    let delim = format!("--{b}");
    let text = String::from_utf8_lossy(body);
    for part in text.split(delim.as_str()) {
        let Some((head, content)) = part.split_once("\r\n\r\n") else {
            continue;
        };
        if !head.contains("name=\"session\"") {
            continue;
        }
        let content = content.strip_suffix("\r\n").unwrap_or(content);
        for m in models_of(content.as_bytes()) {
            assert_eq!(m, ALLOWED, "accepted a session part naming {m}");
        }
    }
}
