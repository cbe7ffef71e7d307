//! Which request methods the relay forwards to providers. Pure and free of imports, so the CORS rules
//! (`http/cors.rs`) and the admission steps (`request/admit.rs`) read the same list.

/// The methods forwarded to providers: every call in the OpenAI, Anthropic, Gemini and Azure OpenAI
/// data-plane APIs is one of these (docs/providers.md). `HEAD` (no provider documents it, and it would
/// spend a call for an empty answer), `PUT` (none of the providers' data-plane APIs use it), `OPTIONS`
/// other than a CORS preflight, `TRACE`, `CONNECT` and any other token, including lower-case spellings
/// (methods are case-sensitive, RFC 9110 §9.1), are refused with 405 before any token work.
pub const FORWARDED_METHODS: [&str; 4] = ["GET", "POST", "PATCH", "DELETE"];

/// The `Allow` header of a 405 on a relay URL (RFC 9110 §15.5.6).
pub const ALLOW_FORWARDED: &str = "GET, POST, PATCH, DELETE";

/// Whether `method` is forwarded (exact, case-sensitive match).
pub fn method_forwarded(method: &str) -> bool {
    FORWARDED_METHODS.contains(&method)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_provider_methods_are_forwarded() {
        for m in ["GET", "POST", "PATCH", "DELETE"] {
            assert!(method_forwarded(m), "{m}");
            assert!(ALLOW_FORWARDED.split(", ").any(|a| a == m), "{m}");
        }
        for m in [
            "HEAD", "PUT", "OPTIONS", "TRACE", "CONNECT", "FOO", "get", "Post", "",
        ] {
            assert!(!method_forwarded(m), "{m}");
        }
    }
}
