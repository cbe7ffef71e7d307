//! Asking an OpenAI-compatible chat stream to report its usage: a streamed `/chat/completions` request
//! reports none unless its body says `"stream_options": {"include_usage": true}`, so before a metered
//! stream is forwarded its body gets that member, spliced in with every other byte left as it was. The
//! body is read with `json/body_scan.rs`, which validates all of it and refuses a repeated `stream`,
//! `stream_options` or `include_usage` (a provider could read another copy than the one rewritten);
//! a body it cannot rewrite safely is refused, and the caller decides what an unmeterable request gets.
//! When the client did not ask for usage itself, the extra chunk is removed from what it receives by
//! `meter/usage_filter.rs`.

use crate::json::body_scan::{self, ScanError};

/// What the request needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IncludeUsage {
    /// Not a stream (`stream` absent or not `true`): the answer reports usage anyway.
    NotStreamed,
    /// The client asked for usage itself: forward the body unchanged and pass the usage chunk on.
    AlreadyAsked,
    /// Forward this body instead, and filter the usage chunk out of the answer.
    Rewritten(Vec<u8>),
}

/// Why a body cannot be rewritten.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RewriteError {
    /// Not one JSON object, or one that repeats a member the rewrite reads.
    Body(ScanError),
    /// `stream_options` is neither an object nor `null`, or its `include_usage` is neither a boolean
    /// nor `null`: the provider would refuse the body, and a rewrite would hide why.
    StreamOptions,
}

const STREAM: &[&str] = &["stream"];
const STREAM_OPTIONS: &[&str] = &["stream_options"];
const INCLUDE_USAGE: &[&str] = &["include_usage"];

/// Decide and, if needed, rewrite a chat completions request body so the stream reports usage.
pub fn include_usage(body: &[u8]) -> Result<IncludeUsage, RewriteError> {
    let top =
        body_scan::scan_object(body, &[STREAM, STREAM_OPTIONS]).map_err(RewriteError::Body)?;
    let streamed = matches!(&top.found[0], Some(r) if &body[r.clone()] == b"true");
    if !streamed {
        return Ok(IncludeUsage::NotStreamed);
    }
    let edit = match top.found[1].clone() {
        // `stream` is there, so the object has members: the new one goes first, with a comma.
        None => (
            top.inner_start..top.inner_start,
            br#""stream_options":{"include_usage":true},"#.to_vec(),
        ),
        Some(r) if &body[r.clone()] == b"null" => (r, br#"{"include_usage":true}"#.to_vec()),
        Some(r) => {
            let options = match body_scan::scan_object_at(body, r, &[INCLUDE_USAGE]) {
                Ok(scan) => scan,
                Err(ScanError::NotAnObject) => return Err(RewriteError::StreamOptions),
                Err(e) => return Err(RewriteError::Body(e)),
            };
            match options.found[0].clone() {
                None if options.is_empty => (
                    options.inner_start..options.inner_start,
                    br#""include_usage":true"#.to_vec(),
                ),
                None => (
                    options.inner_start..options.inner_start,
                    br#""include_usage":true,"#.to_vec(),
                ),
                Some(v) => match &body[v.clone()] {
                    b"true" => return Ok(IncludeUsage::AlreadyAsked),
                    b"false" | b"null" => (v, b"true".to_vec()),
                    _ => return Err(RewriteError::StreamOptions),
                },
            }
        }
    };
    Ok(IncludeUsage::Rewritten(body_scan::splice(body, &[edit])))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn rewritten(body: &str) -> String {
        match include_usage(body.as_bytes()) {
            Ok(IncludeUsage::Rewritten(b)) => String::from_utf8(b).unwrap(),
            other => panic!("{body}: {other:?}"),
        }
    }

    #[test]
    fn adds_the_member_and_keeps_every_other_byte() {
        let body =
            r#"{"model":"gpt-4o-mini", "messages":[{"role":"user","content":"Hi"}],"stream":true}"#;
        assert_eq!(
            rewritten(body),
            r#"{"stream_options":{"include_usage":true},"model":"gpt-4o-mini", "messages":[{"role":"user","content":"Hi"}],"stream":true}"#
        );
        assert_eq!(
            rewritten(r#"{"stream":true,"stream_options":null}"#),
            r#"{"stream":true,"stream_options":{"include_usage":true}}"#
        );
        assert_eq!(
            rewritten(r#"{"stream":true,"stream_options":{ }}"#),
            r#"{"stream":true,"stream_options":{"include_usage":true }}"#
        );
        assert_eq!(
            rewritten(r#"{"stream":true,"stream_options":{"include_obfuscation":false}}"#),
            r#"{"stream":true,"stream_options":{"include_usage":true,"include_obfuscation":false}}"#
        );
        assert_eq!(
            rewritten(r#"{"stream" : true,"stream_options":{"include_usage" :  false}}"#),
            r#"{"stream" : true,"stream_options":{"include_usage" :  true}}"#
        );
        assert_eq!(
            rewritten(r#"{"stream":true,"stream_\u006fptions":{"include_usage":null}}"#),
            r#"{"stream":true,"stream_\u006fptions":{"include_usage":true}}"#
        );
    }

    #[test]
    fn what_a_provider_reads_is_the_body_plus_the_member() {
        for body in [
            json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": "é \" }"}]}),
            json!({"stream": true, "stream_options": {"include_obfuscation": true}, "n": 2}),
            json!({"stream": true, "stream_options": null}),
            json!({"stream": true, "stream_options": {"include_usage": false}}),
        ] {
            let text = serde_json::to_string_pretty(&body).unwrap();
            let out: Value = serde_json::from_str(&rewritten(&text)).unwrap();
            let mut want = body.clone();
            let options = &mut want["stream_options"];
            if options.is_null() {
                *options = json!({});
            }
            options["include_usage"] = json!(true);
            assert_eq!(out, want);
        }
    }

    #[test]
    fn streams_only_and_the_client_s_own_request() {
        for body in [
            r#"{"model":"m"}"#,
            r#"{"stream":false}"#,
            r#"{"stream":null}"#,
            r#"{"stream":"true"}"#,
            r#"{"stream":false,"stream_options":[1]}"#,
        ] {
            assert_eq!(
                include_usage(body.as_bytes()),
                Ok(IncludeUsage::NotStreamed),
                "{body}"
            );
        }
        assert_eq!(
            include_usage(br#"{"stream":true,"stream_options":{"include_usage":true}}"#),
            Ok(IncludeUsage::AlreadyAsked)
        );
    }

    #[test]
    fn refuses_what_it_cannot_rewrite_safely() {
        for (body, want) in [
            (
                r#"{"stream":true,"stream":false}"#,
                RewriteError::Body(ScanError::Duplicate(0)),
            ),
            (
                r#"{"stream":true,"stream_options":{},"stream_options":{}}"#,
                RewriteError::Body(ScanError::Duplicate(1)),
            ),
            (
                r#"{"stream":true,"stream_options":{"include_usage":false,"include_usage":true}}"#,
                RewriteError::Body(ScanError::Duplicate(0)),
            ),
            (
                r#"{"stream":true,"stream_options":[]}"#,
                RewriteError::StreamOptions,
            ),
            (
                r#"{"stream":true,"stream_options":"x"}"#,
                RewriteError::StreamOptions,
            ),
            (
                r#"{"stream":true,"stream_options":{"include_usage":1}}"#,
                RewriteError::StreamOptions,
            ),
            (r#"{"stream":true,"#, RewriteError::Body(ScanError::Syntax)),
            (
                r#"[{"stream":true}]"#,
                RewriteError::Body(ScanError::NotAnObject),
            ),
        ] {
            assert_eq!(include_usage(body.as_bytes()), Err(want), "{body}");
        }
    }
}
