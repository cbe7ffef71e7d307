//! The realtime model guard (`ws/model_guard.rs`) on a stranger's client messages, for a token that
//! allows two models. The verdict must not depend on how the frames cut the message (whole, cut at
//! one point the input chooses, byte by byte up to 512 bytes, or after an earlier accepted message),
//! a message it lets through must be JSON whose `session.model` and `setup.model`, as `serde_json`
//! reads them, are allowed strings, and a plainly written message (serde_json's own compact output)
//! naming only allowed models must be let through.
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
        match &parsed {
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
