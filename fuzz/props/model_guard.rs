//! The realtime model guard (`ws/model_guard.rs`) on a stranger's client messages, for a token that
//! allows two models. The verdict must not depend on how the frames cut the message (whole, cut at
//! one point the input chooses, byte by byte up to 512 bytes, or after an earlier accepted message),
//! a message it lets through must be JSON whose `session.model` and `setup.model`, as `serde_json`
//! reads them, are allowed strings, and a plainly written message (serde_json's own compact output)
//! naming only allowed models must be let through. The guard follows the message with `json/skim.rs`,
//! which checks structure but neither the grammar of numbers and literals (a run of `[A-Za-z0-9+.-]`
//! outside strings is one scalar to it) nor the escapes of strings it does not keep (a backslash and
//! the character after it are one unit to it; the watched values themselves are decoded strictly).
//! Neither can hide or add a member, so a let-through message is judged with each such run read as `0`
//! and each escape that is not RFC 8259's (or names a lone surrogate) read as a literal backslash.
//!
//! Input: a flag byte (bit 0: Gemini resource names; the rest: where to cut), then the message.

use relayapi::ws::model_guard::{AllowedModels, ModelGuard, Refusal};
use serde_json::Value;

const ALLOWED: [&str; 2] = ["gpt-realtime", "gemini-live"];

fn guard(gemini: bool) -> ModelGuard {
    let names: Vec<String> = ALLOWED.iter().map(|s| (*s).to_owned()).collect();
    ModelGuard::new(AllowedModels::of(Some(&names), None, gemini).expect("models are limited"))
}

/// The verdict after feeding `msg` in the pieces `cuts` makes, then ending it.
fn verdict(g: &mut ModelGuard, msg: &[u8], cuts: &[usize]) -> Option<Refusal> {
    let mut at = 0;
    for &c in cuts.iter().chain(std::iter::once(&msg.len())) {
        let c = c.clamp(at, msg.len());
        g.feed(&msg[at..c]);
        at = c;
    }
    g.end_message();
    g.refused()
}

fn allows(gemini: bool, model: &str) -> bool {
    ALLOWED.contains(&model)
        || (gemini
            && model
                .strip_prefix("models/")
                .is_some_and(|m| ALLOWED.contains(&m)))
}

/// Whether every model the message names (as serde_json reads it) is an allowed string.
fn models_allowed(v: &Value, gemini: bool) -> bool {
    ["session", "setup"]
        .iter()
        .filter_map(|outer| v.get(outer).and_then(|o| o.get("model")))
        .all(|m| m.as_str().is_some_and(|m| allows(gemini, m)))
}

/// `msg` as the skimmer walks it: every run of scalar bytes outside strings written as `0`, and every
/// escape that is not RFC 8259's (or is a lone surrogate) written as a literal backslash and the
/// character after it (`?` for a control character, which the skimmer does not look at there).
fn as_skimmed(msg: &[u8]) -> String {
    let text = String::from_utf8_lossy(msg);
    let chars: Vec<char> = text.chars().collect();
    let (mut out, mut in_string, mut in_scalar, mut i) = (String::new(), false, false, 0);
    while i < chars.len() {
        let c = chars[i];
        i += 1;
        if in_string {
            match c {
                '\\' => {
                    let n = escape_len(&chars[i..]);
                    if n == 0 {
                        // The skimmer takes the byte after the backslash unread, even a control
                        // character.
                        out.push_str("\\\\");
                        match chars.get(i) {
                            Some(c) if c.is_control() => out.push('?'),
                            Some(&c) => out.push(c),
                            None => {}
                        }
                        i += 1;
                    } else {
                        out.push('\\');
                        out.extend(&chars[i..i + n]);
                        i += n;
                    }
                }
                '"' => {
                    in_string = false;
                    out.push(c);
                }
                _ => out.push(c),
            }
            continue;
        }
        if c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.') {
            if !in_scalar {
                out.push('0');
                in_scalar = true;
            }
            continue;
        }
        in_scalar = false;
        in_string = c == '"';
        out.push(c);
    }
    out
}

/// Characters after a backslash that make an escape `serde_json` reads (a surrogate pair whole), or 0.
fn escape_len(rest: &[char]) -> usize {
    let hex = |at: usize| -> Option<u32> {
        let s: String = rest.get(at..at + 4)?.iter().collect();
        if s.chars().all(|c| c.is_ascii_hexdigit()) {
            u32::from_str_radix(&s, 16).ok()
        } else {
            None
        }
    };
    match rest.first() {
        Some('"' | '\\' | '/' | 'b' | 'f' | 'n' | 'r' | 't') => 1,
        Some('u') => match hex(1) {
            Some(0xD800..=0xDBFF) => match (rest.get(5), rest.get(6), hex(7)) {
                (Some('\\'), Some('u'), Some(0xDC00..=0xDFFF)) => 11,
                _ => 0,
            },
            Some(0xDC00..=0xDFFF) | None => 0,
            Some(_) => 5,
        },
        _ => 0,
    }
}

pub fn check(data: &[u8]) {
    let Some((&flag, msg)) = data.split_first() else {
        return;
    };
    let gemini = flag & 1 == 1;
    let cut = usize::from(flag >> 1) * msg.len() / 127;

    let whole = verdict(&mut guard(gemini), msg, &[]);
    assert_eq!(
        verdict(&mut guard(gemini), msg, &[cut]),
        whole,
        "cut at {cut}"
    );
    if msg.len() <= 512 {
        let every: Vec<usize> = (1..msg.len()).collect();
        assert_eq!(
            verdict(&mut guard(gemini), msg, &every),
            whole,
            "byte by byte"
        );
    }
    let mut after = guard(gemini);
    assert_eq!(
        verdict(
            &mut after,
            br#"{"type":"session.update","session":{"model":"gpt-realtime"}}"#,
            &[]
        ),
        None
    );
    assert_eq!(
        verdict(&mut after, msg, &[cut]),
        whole,
        "after an accepted message"
    );

    // serde_json reads UTF-8 only; a binary message's other bytes are the provider's to refuse.
    if std::str::from_utf8(msg).is_err() {
        return;
    }
    let parsed = serde_json::from_slice::<Value>(msg);
    if whole.is_none() {
        match &serde_json::from_str::<Value>(&as_skimmed(msg)) {
            Ok(v) => assert!(models_allowed(v, gemini), "let through a refused model"),
            // Nesting past serde_json's own limit is not a disagreement about JSON.
            Err(e) if e.to_string().contains("recursion limit") => {}
            Err(e) => panic!("let through a message that is not JSON: {e}"),
        }
    }
    if let Ok(v) = parsed {
        if serde_json::to_vec(&v).is_ok_and(|plain| plain == msg) && models_allowed(&v, gemini) {
            assert_eq!(whole, None, "refused a plain message naming allowed models");
        }
    }
}
