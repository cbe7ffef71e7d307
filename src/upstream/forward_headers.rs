//! Which request headers a client may pass to the provider: an allow-list per provider family, the
//! `x-stainless-*` telemetry of the OpenAI and Anthropic SDKs, and what the operator adds in
//! `config.json` (`upstream.forward_headers` for every provider, `providers.<name>.forward_headers` for
//! one). Everything else is dropped, so a client cannot choose billing (`OpenAI-Organization`,
//! `OpenAI-Project`, `x-goog-user-project`), change what the request means to a gateway
//! (`X-HTTP-Method-Override`, `X-Original-URL`, `Transfer_Encoding`), or reach the provider with fields
//! nobody has looked at. The relay writes `host`, `content-length`, `accept-encoding` and the
//! provider's credential itself (`request/forward.rs`, `request`); fields in [`NEVER`] cannot be
//! allowed even by the operator.
//!
//! Sources for the lists: the official SDKs (openai-python / openai-node, anthropic-sdk-python /
//! anthropic-sdk-typescript, google-genai for Python and JS) and the providers' API references. A
//! lookup is a few string comparisons on the already lower-cased name: no allocation per header.

use std::sync::Arc;

/// Longest field name an operator may list; real ones are far shorter.
pub const MAX_NAME_BYTES: usize = 64;

/// Allowed for every provider.
const COMMON: &[&str] = &[
    // The media type of the body: JSON, or multipart for file and audio uploads.
    "content-type",
    // JSON or `text/event-stream`; some endpoints answer by content negotiation.
    "accept",
    // The SDK's name and version; providers use it for support and deprecation notices.
    "user-agent",
];

/// OpenAI and the OpenAI-compatible APIs (every provider whose key goes in `Authorization: Bearer`
/// or Azure's `api-key`).
const OPENAI: &[&str] = &[
    // Opt-in to beta APIs (`assistants=v2`, `realtime=v1`); the official SDKs send it.
    "openai-beta",
    // Sent by the official SDKs on non-GET requests so a retried request is not run twice.
    "idempotency-key",
];

/// Anthropic (key in `x-api-key`).
const ANTHROPIC: &[&str] = &[
    // Required API version; the relay adds `2023-06-01` when the client sent none.
    "anthropic-version",
    // Opt-in to beta features (prompt caching, larger outputs, ...).
    "anthropic-beta",
    // Sent by the TypeScript SDK in a browser (`dangerouslyAllowBrowser`); changes only CORS upstream,
    // whose answer headers the relay replaces anyway.
    "anthropic-dangerous-direct-browser-access",
    // As for OpenAI: the Stainless SDKs send it so retries are not run twice.
    "idempotency-key",
];

/// Google Gemini API (key in `x-goog-api-key`).
const GEMINI: &[&str] = &[
    // SDK and runtime identification (`google-genai-sdk/1.x gl-python/3.x`).
    "x-goog-api-client",
    // The deadline google-genai asks the server to respect when a timeout is set.
    "x-server-timeout",
];

/// Client telemetry of the Stainless-generated SDKs (OpenAI, Anthropic): language, OS, runtime, retry
/// count, timeout. Informational only.
const STAINLESS_PREFIX: &str = "x-stainless-";

/// Never forwarded from the client, whatever `config.json` lists; the config is refused if it names
/// one. Hop-by-hop fields belong to our hop (RFC 9110 §7.6.1); framing and `host` are written by the
/// relay; credentials and cookies belong to the client (the token must never reach the provider);
/// `accept-encoding` is the relay's (it asks for `identity` so error answers can be checked for the
/// key) and so is `content-encoding` (policies read the body as sent); the rest change the method,
/// the URL or the claimed client address behind the relay's checks.
pub const NEVER: &[&str] = &[
    // Hop-by-hop and framing.
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
    "expect",
    "host",
    // Credentials.
    "authorization",
    "proxy-authorization",
    "x-api-key",
    "x-goog-api-key",
    "api-key",
    "cookie",
    // Owned by the relay.
    "accept-encoding",
    "content-encoding",
    // Change the meaning behind the relay's checks, or claim an address.
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
    "x-original-url",
    "x-rewrite-url",
    "proxy",
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-real-ip",
];

/// The header families of the provider APIs; `upstream/provider.rs` maps each provider's API family
/// (`ApiFamily`) onto one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// OpenAI, Azure OpenAI and the OpenAI-compatible APIs.
    OpenAi,
    Anthropic,
    Gemini,
    /// An API the relay knows nothing about: the common fields and the operator's list only.
    Other,
}

impl Family {
    fn list(self) -> &'static [&'static str] {
        match self {
            Family::OpenAi => OPENAI,
            Family::Anthropic => ANTHROPIC,
            Family::Gemini => GEMINI,
            Family::Other => &[],
        }
    }

    fn stainless(self) -> bool {
        matches!(self, Family::OpenAi | Family::Anthropic)
    }
}

/// The forwarding rule of one provider: its family's lists plus the operator's additions.
#[derive(Debug, Clone)]
pub struct ForwardHeaders {
    family: Family,
    /// `upstream.forward_headers` and `providers.<name>.forward_headers`, validated.
    extra: Arc<[Box<str>]>,
}

impl ForwardHeaders {
    /// `extra` must have passed [`check_name`] (config validation does that).
    pub fn new(family: Family, extra: Arc<[Box<str>]>) -> ForwardHeaders {
        ForwardHeaders { family, extra }
    }

    /// Whether a client field named `name` (lower-case, as `http/head.rs` stores names) goes to the
    /// provider. Fields the client listed in `Connection` are the caller's to drop.
    pub fn allows(&self, name: &str) -> bool {
        COMMON.contains(&name)
            || self.family.list().contains(&name)
            || (self.family.stainless() && name.starts_with(STAINLESS_PREFIX))
            || self.extra.iter().any(|e| **e == *name)
    }
}

/// Checks a field name an operator wants forwarded: lower-case letters, digits and '-' (so no `_`
/// look-alike of a framing field), at most [`MAX_NAME_BYTES`], and not one of [`NEVER`].
pub fn check_name(name: &str) -> Result<(), &'static str> {
    let shape_ok = !name.is_empty()
        && name.len() <= MAX_NAME_BYTES
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if !shape_ok {
        return Err(
            "expected a lower-case header name of letters, digits and '-', e.g. \"x-title\"",
        );
    }
    if NEVER.contains(&name) {
        return Err(
            "names a hop-by-hop, framing or credential header, or one the relay writes itself; it is never forwarded",
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(family: Family, extra: &[&str]) -> ForwardHeaders {
        ForwardHeaders::new(family, extra.iter().map(|s| Box::from(*s)).collect())
    }

    #[test]
    fn official_sdk_headers_pass() {
        let openai = rule(Family::OpenAi, &[]);
        for h in [
            "content-type",
            "accept",
            "user-agent",
            "openai-beta",
            "idempotency-key",
            "x-stainless-lang",
            "x-stainless-retry-count",
        ] {
            assert!(openai.allows(h), "{h}");
        }
        let anthropic = rule(Family::Anthropic, &[]);
        for h in [
            "anthropic-version",
            "anthropic-beta",
            "anthropic-dangerous-direct-browser-access",
            "x-stainless-os",
        ] {
            assert!(anthropic.allows(h), "{h}");
        }
        let gemini = rule(Family::Gemini, &[]);
        for h in ["x-goog-api-client", "x-server-timeout", "content-type"] {
            assert!(gemini.allows(h), "{h}");
        }
        // Each family's own fields stay with it.
        assert!(!gemini.allows("x-stainless-lang"));
        assert!(!gemini.allows("anthropic-version"));
        assert!(!openai.allows("anthropic-beta"));
        assert!(!anthropic.allows("openai-beta"));
    }

    #[test]
    fn billing_meaning_and_look_alike_headers_are_dropped() {
        for family in [
            Family::OpenAi,
            Family::Anthropic,
            Family::Gemini,
            Family::Other,
        ] {
            let r = rule(family, &["x-title"]);
            for h in [
                "openai-organization",
                "openai-project",
                "x-goog-user-project",
                "x-http-method-override",
                "x-original-url",
                "x-rewrite-url",
                "proxy",
                "transfer_encoding",
                "content_length",
                "transfer-encoding",
                "content-length",
                "authorization",
                "x-api-key",
                "cookie",
                "origin",
                "referer",
                "accept-encoding",
                "content-encoding",
                "x-forwarded-for",
                "x-stainless",
                "host",
            ] {
                assert!(!r.allows(h), "{family:?} forwards {h}");
            }
            assert!(r.allows("x-title"), "operator addition");
        }
    }

    #[test]
    fn an_unknown_api_gets_the_common_fields_and_the_operators_list() {
        let other = rule(Family::Other, &["x-title"]);
        for h in ["content-type", "accept", "user-agent", "x-title"] {
            assert!(other.allows(h), "{h}");
        }
        for h in [
            "openai-beta",
            "anthropic-version",
            "x-goog-api-client",
            "x-stainless-lang",
        ] {
            assert!(!other.allows(h), "{h}");
        }
    }

    #[test]
    fn operator_names_are_checked() {
        for ok in [
            "x-title",
            "http-referer",
            "openai-organization",
            "traceparent",
        ] {
            assert_eq!(check_name(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "X-Title",
            "x_title",
            "transfer_encoding",
            "-x",
            "x-",
            "x title",
            "x:y",
            &"x".repeat(MAX_NAME_BYTES + 1),
        ] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
        for never in NEVER {
            assert!(check_name(never).is_err(), "{never}");
        }
    }
}
