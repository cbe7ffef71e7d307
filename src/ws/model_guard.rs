//! The token's model limits (`models`, `ext.rep_m`) on what a client sets inside a realtime session:
//! OpenAI Realtime's `session.update` (`{"type":"session.update","session":{"model":...}}`) and Gemini
//! Live's first message (`{"setup":{"model":"models/..."}}`) can name a model other than the one the URL
//! was checked for. Each client message is followed as it passes, in pieces of any size, by the
//! skimmer of `json/skim.rs` (fixed memory per session: no message is ever held), and a model outside
//! the limits is reported as soon as its value ends, before the piece that completes it is forwarded,
//! so the provider never receives the whole event. A message the relay cannot follow as JSON is
//! refused too: the provider would refuse it, and the relay must not pass what it cannot read. The
//! session (`ws/session.rs`) acts on the verdict; nothing here does I/O.

use std::sync::Arc;

use crate::json::body_scan;
use crate::json::skim::{Captured, Path, SkimError, Skimmer, Step};

/// Where a client message names the session's model: OpenAI's `session.update` (and the `session`
/// of any client event) and Gemini Live's `setup`.
const MODEL_PATHS: &[Path] = &[
    &[Step::Member("session"), Step::Member("model")],
    &[Step::Member("setup"), Step::Member("model")],
];

/// Longest model name compared, in bytes: a `models` entry is at most 256 characters of up to 4 bytes
/// (token format §5.1.13), so a longer name is refused without being kept.
const MAX_MODEL_BYTES: usize = 256 * 4;

/// Why a client message is refused. Each reason is safe to send as a close reason (no secret, well
/// under the 123 bytes a close frame carries).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The message names a model the token does not allow.
    ModelNotAllowed,
    /// The message could not be followed as one JSON value (or names its model twice, or not as a
    /// string), so its model cannot be known.
    Unreadable,
}

impl Refusal {
    /// The close reason sent to both sides.
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::ModelNotAllowed => "model not allowed by the token",
            Refusal::Unreadable => "client event is not JSON the relay can check",
        }
    }
}

/// The models a session may use.
#[derive(Debug, Clone)]
pub struct AllowedModels {
    /// The token's `models`, or its forced `ext.rep_m` alone (which wins, as it does in the URL).
    names: Arc<[String]>,
    /// Gemini compares resource names: `models/x` is allowed by `x` or `models/x`.
    gemini_names: bool,
}

impl AllowedModels {
    /// The limits of a token: `None` when it limits no model.
    pub fn of(models: Option<&[String]>, forced: Option<&str>, gemini: bool) -> Option<Self> {
        let names: Arc<[String]> = match (forced, models) {
            (Some(f), _) => Arc::from(vec![f.to_string()]),
            (None, Some(m)) => Arc::from(m.to_vec()),
            (None, None) => return None,
        };
        Some(AllowedModels {
            names,
            gemini_names: gemini,
        })
    }

    fn allows(&self, model: &str) -> bool {
        self.names.iter().any(|a| {
            a == model || (self.gemini_names && model.strip_prefix("models/") == Some(a.as_str()))
        })
    }
}

/// Follows the client's messages of one session.
pub struct ModelGuard {
    allowed: AllowedModels,
    skim: Skimmer,
    /// A message is in progress (its first piece has been seen).
    in_message: bool,
    refused: Option<Refusal>,
}

impl ModelGuard {
    pub fn new(allowed: AllowedModels) -> Self {
        ModelGuard {
            allowed,
            skim: Skimmer::new(MODEL_PATHS),
            in_message: false,
            refused: None,
        }
    }

    /// The next piece of a client data message's payload (unmasked).
    pub fn feed(&mut self, bytes: &[u8]) {
        if self.refused.is_some() {
            return;
        }
        if !self.in_message {
            self.skim.reset();
            self.in_message = true;
        }
        let (allowed, refused) = (&self.allowed, &mut self.refused);
        self.skim
            .feed(bytes, &mut |_, captured| judge(allowed, captured, refused));
        if self.refused.is_none() && self.skim_failed() {
            self.refused = Some(Refusal::Unreadable);
        }
    }

    /// The data message ended: it must have been one complete JSON value.
    pub fn end_message(&mut self) {
        if self.refused.is_some() {
            return;
        }
        self.in_message = false;
        let (allowed, refused) = (&self.allowed, &mut self.refused);
        let done = self
            .skim
            .finish(&mut |_, captured| judge(allowed, captured, refused));
        if self.refused.is_none() && done.is_err() {
            self.refused = Some(Refusal::Unreadable);
        }
        self.skim.reset();
    }

    /// Whether a message so far broke a rule: the session must end before the piece is forwarded.
    pub fn refused(&self) -> Option<Refusal> {
        self.refused
    }

    /// A structural error or a repeated watched member, found while feeding (a document that merely
    /// has not ended yet is only an error once the message ends).
    fn skim_failed(&self) -> bool {
        matches!(
            self.skim.error(),
            Some(SkimError::Syntax | SkimError::TooDeep | SkimError::Duplicate)
        )
    }
}

/// The verdict on one watched value: a string naming an allowed model, or a refusal.
fn judge(allowed: &AllowedModels, captured: Captured<'_>, refused: &mut Option<Refusal>) {
    if refused.is_some() {
        return;
    }
    let verdict = match captured {
        Captured::Oversized => Some(Refusal::ModelNotAllowed),
        Captured::Value(raw) => match body_scan::decode_string(raw, MAX_MODEL_BYTES) {
            Ok(Some(model)) if allowed.allows(&model) => None,
            Ok(_) => Some(Refusal::ModelNotAllowed),
            // Not a string (`null`, an array), or a string with a broken escape.
            Err(_) => Some(Refusal::Unreadable),
        },
    };
    *refused = verdict;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(models: &[&str], gemini: bool) -> ModelGuard {
        let m: Vec<String> = models.iter().map(|s| s.to_string()).collect();
        ModelGuard::new(AllowedModels::of(Some(&m), None, gemini).unwrap())
    }

    /// The verdict on `msg` fed at every split point into two pieces, and the verdict after its first
    /// piece alone, for each split.
    fn verdicts(models: &[&str], gemini: bool, msg: &str) -> Option<Refusal> {
        let whole = {
            let mut g = guard(models, gemini);
            g.feed(msg.as_bytes());
            g.end_message();
            g.refused()
        };
        for at in 0..=msg.len() {
            let mut g = guard(models, gemini);
            g.feed(&msg.as_bytes()[..at]);
            g.feed(&msg.as_bytes()[at..]);
            g.end_message();
            assert_eq!(g.refused(), whole, "split at {at} of {msg}");
        }
        // Byte by byte too.
        let mut g = guard(models, gemini);
        for b in msg.as_bytes() {
            g.feed(std::slice::from_ref(b));
        }
        g.end_message();
        assert_eq!(g.refused(), whole, "byte by byte: {msg}");
        whole
    }

    #[test]
    fn session_update_models_are_held_to_the_token() {
        let ok = ["gpt-realtime", "gpt-realtime-mini"];
        for msg in [
            r#"{"type":"session.update","session":{"model":"gpt-realtime"}}"#,
            r#"{"type":"session.update","session":{"type":"realtime","instructions":"x"}}"#,
            r#"{"type":"input_audio_buffer.append","audio":"AAAA"}"#,
            r#"{"session":{"model":"gpt-realtime-mini"},"type":"session.update"}"#,
            r#"{"type":"session.update","session":{"model":"gpt\u002drealtime"}}"#,
            // A transcription model is not the session's model.
            r#"{"type":"session.update","session":{"input_audio_transcription":{"model":"whisper-1"}}}"#,
            r#" { "type" : "session.update" , "session" : { "model" : "gpt-realtime" } } "#,
        ] {
            assert_eq!(verdicts(&ok, false, msg), None, "{msg}");
        }
        for msg in [
            r#"{"type":"session.update","session":{"model":"gpt-4o-realtime-preview"}}"#,
            r#"{"type":"session.update","session":{"mod\u0065l":"gpt-4o-realtime-preview"}}"#,
            r#"{"type":"session.update","sessio\u006e":{"model":"other"}}"#,
            r#"{"type":"session.update","session":{"model":""}}"#,
        ] {
            assert_eq!(
                verdicts(&ok, false, msg),
                Some(Refusal::ModelNotAllowed),
                "{msg}"
            );
        }
        for msg in [
            // Which copy the provider reads is unknown.
            r#"{"session":{"model":"gpt-realtime","model":"gpt-4o"}}"#,
            r#"{"session":{"model":"gpt-realtime"},"session":{"model":"gpt-4o"}}"#,
            r#"{"session":{"model":["gpt-realtime"]}}"#,
            r#"{"session":{"model":null}}"#,
            r#"{"type":"session.update""#,
            r#"{"type":"x"}}"#,
            "not json",
            "",
        ] {
            assert_eq!(
                verdicts(&ok, false, msg),
                Some(Refusal::Unreadable),
                "{msg}"
            );
        }
    }

    #[test]
    fn gemini_setup_names_resources() {
        let ok = ["gemini-live-test"];
        let setup = |m: &str| format!(r#"{{"setup":{{"model":"{m}","generationConfig":{{}}}}}}"#);
        assert_eq!(verdicts(&ok, true, &setup("models/gemini-live-test")), None);
        assert_eq!(verdicts(&ok, true, &setup("gemini-live-test")), None);
        assert_eq!(
            verdicts(&ok, true, &setup("models/gemini-pro")),
            Some(Refusal::ModelNotAllowed)
        );
        assert_eq!(
            verdicts(&ok, true, &setup("tunedModels/gemini-live-test")),
            Some(Refusal::ModelNotAllowed)
        );
        // Not for OpenAI, whose model names have no collection prefix.
        assert_eq!(
            verdicts(
                &ok,
                false,
                r#"{"session":{"model":"models/gemini-live-test"}}"#
            ),
            Some(Refusal::ModelNotAllowed)
        );
    }

    #[test]
    fn a_bad_model_is_refused_before_the_piece_that_completes_it_is_forwarded() {
        let mut g = guard(&["gpt-realtime"], false);
        g.feed(br#"{"type":"session.update","session":{"model":"gpt-4o"#);
        assert_eq!(g.refused(), None, "the value has not ended yet");
        g.feed(br#"","voice":"alloy"}}"#);
        assert_eq!(g.refused(), Some(Refusal::ModelNotAllowed));
        // Messages after a good one are read afresh.
        let mut g = guard(&["gpt-realtime"], false);
        g.feed(br#"{"session":{"model":"gpt-realtime"}}"#);
        g.end_message();
        g.feed(br#"{"session":{"model":"gpt-4o"}}"#);
        assert_eq!(g.refused(), Some(Refusal::ModelNotAllowed));
    }

    #[test]
    fn memory_stays_fixed_whatever_the_message() {
        // A huge audio event passes in pieces without being kept.
        let mut g = guard(&["gpt-realtime"], false);
        g.feed(br#"{"type":"input_audio_buffer.append","audio":""#);
        for _ in 0..1000 {
            g.feed(&[b'A'; 16 * 1024]);
        }
        g.feed(br#""}"#);
        g.end_message();
        assert_eq!(g.refused(), None);
        // A model name far longer than any allowed one is refused, never kept whole.
        let mut g = guard(&["gpt-realtime"], false);
        g.feed(br#"{"session":{"model":""#);
        for _ in 0..100 {
            g.feed(&[b'm'; 1024]);
        }
        g.feed(br#""}}"#);
        assert_eq!(g.refused(), Some(Refusal::ModelNotAllowed));
        // Nesting beyond the skimmer's depth is refused rather than followed.
        let mut g = guard(&["gpt-realtime"], false);
        g.feed(&[b'['; 10_000]);
        assert_eq!(g.refused(), Some(Refusal::Unreadable));
    }
}
