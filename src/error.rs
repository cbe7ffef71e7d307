//! Every way a request can fail, who failed (client, upstream, relay), and the one place that maps a
//! failure to an HTTP status, an OpenAI-style error body and whether the connection must close.
//! Messages are written for the developer reading them in an SDK exception and never contain token
//! text or API keys.

use std::time::Duration;

use crate::http::body::BodyError;
use crate::http::framing::FramingError;
use crate::http::head::HeadError;

/// Which party caused a failure; decides the status family and the log level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Client,
    Upstream,
    Relay,
}

/// What the rate limit applied to, for the error message and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitScope {
    Global,
    Ip,
    Token,
}

impl LimitScope {
    pub fn as_str(self) -> &'static str {
        match self {
            LimitScope::Global => "global",
            LimitScope::Ip => "ip",
            LimitScope::Token => "token",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    // The request itself (framing, size, routing).
    BadRequest(&'static str),
    HeadersTooLarge,
    UriTooLong,
    BodyTooLarge,
    VersionNotSupported,
    ExpectationFailed,
    NotImplemented(&'static str),
    RequestTimeout,
    /// The client's address already holds `server.max_connections_per_ip` connections.
    TooManyConnections,
    NotFound,
    /// The method is not served on this path; the value is the `Allow` header (RFC 9110 §15.5.6).
    MethodNotAllowed(&'static str),
    /// A well-framed request whose parameter is out of range; says what a valid value is.
    InvalidParameter(&'static str),
    // The token and its limits.
    InvalidToken,
    TokenExpired,
    TokenNotYetValid,
    TokenLifetimeTooLong,
    TokenRevoked,
    TokenExhausted,
    ProviderUnavailable,
    ApiKeyUnavailable,
    RateLimited(LimitScope, Duration),
    TooManyConcurrent,
    ModelNotAllowed,
    EndpointNotAllowed,
    OriginNotAllowed,
    IpNotAllowed,
    MaxTokensExceeded,
    /// A spend limit (the token's `bud` or one of its user's quotas) cannot pay for the smallest call
    /// worth forwarding; carries the time until the tightest exhausted window resets, if it does.
    BudgetExhausted(Option<Duration>),
    /// A money limit applies and the price table has no price for the requested model.
    ModelNotPriced,
    /// A token limit needs to read the body, and the body cannot be read: not UTF-8, not JSON, not an
    /// object, nested too deep, or an unpaired surrogate escape in a member the limit reads.
    InvalidBody(&'static str),
    /// A member a token limit reads has the wrong kind of value: (member, what it must be).
    InvalidMember(&'static str, &'static str),
    /// A member a token limit reads appears more than once (after unescaping its name).
    DuplicateMember(&'static str),
    /// The token carries a limit (named here) that the relay cannot enforce on this provider or endpoint.
    LimitNotEnforceable(&'static str),
    InvalidAdminSignature,
    // The provider.
    UpstreamConnect,
    UpstreamTls,
    UpstreamTimeout,
    UpstreamProtocol,
    /// The provider's error answer could not be checked for the API key (too large, or compressed).
    UpstreamErrorUnchecked,
    /// The provider answered a WebSocket upgrade with this status instead of 101.
    UpstreamRefusedUpgrade(u16),
    // The relay itself.
    StoreUnavailable,
    /// Buffered request bodies already hold `server.max_buffered_body_bytes`, or this client's share.
    BodyBudgetExhausted,
    ShuttingDown,
}

/// The generic message for every failure before a token is proven authentic: one text, so the answer
/// carries no oracle about which check failed.
pub const INVALID_TOKEN_MESSAGE: &str = "Invalid or missing relay token.";

impl Error {
    pub fn side(&self) -> Side {
        use Error::*;
        match self {
            UpstreamConnect
            | UpstreamTls
            | UpstreamTimeout
            | UpstreamProtocol
            | UpstreamErrorUnchecked => Side::Upstream,
            StoreUnavailable | ShuttingDown | ApiKeyUnavailable | BodyBudgetExhausted => {
                Side::Relay
            }
            _ => Side::Client,
        }
    }

    pub fn status(&self) -> u16 {
        use Error::*;
        match self {
            BadRequest(_) => 400,
            HeadersTooLarge => 431,
            UriTooLong => 414,
            BodyTooLarge => 413,
            VersionNotSupported => 505,
            ExpectationFailed => 417,
            NotImplemented(_) => 501,
            RequestTimeout => 408,
            TooManyConnections => 429,
            NotFound => 404,
            MethodNotAllowed(_) => 405,
            InvalidParameter(_) => 400,
            InvalidToken
            | TokenExpired
            | TokenNotYetValid
            | TokenLifetimeTooLong
            | TokenRevoked
            | InvalidAdminSignature => 401,
            TokenExhausted | RateLimited(..) | TooManyConcurrent | BudgetExhausted(_) => 429,
            ModelNotAllowed
            | EndpointNotAllowed
            | OriginNotAllowed
            | IpNotAllowed
            | MaxTokensExceeded
            | ModelNotPriced
            | LimitNotEnforceable(_) => 403,
            ProviderUnavailable | InvalidBody(_) | InvalidMember(..) | DuplicateMember(_) => 400,
            ApiKeyUnavailable | StoreUnavailable | ShuttingDown | BodyBudgetExhausted => 503,
            UpstreamConnect | UpstreamTls | UpstreamProtocol | UpstreamErrorUnchecked => 502,
            UpstreamTimeout => 504,
            // The provider's own 4xx says what the client got wrong (a model it does not serve);
            // anything else is the relay's gateway failure.
            UpstreamRefusedUpgrade(s) if (400..500).contains(s) => *s,
            UpstreamRefusedUpgrade(_) => 502,
        }
    }

    /// Stable machine-readable code (documented in the README).
    pub fn code(&self) -> &'static str {
        use Error::*;
        match self {
            BadRequest(_) => "bad_request",
            HeadersTooLarge => "headers_too_large",
            UriTooLong => "uri_too_long",
            BodyTooLarge => "body_too_large",
            VersionNotSupported => "http_version_not_supported",
            ExpectationFailed => "expectation_failed",
            NotImplemented(_) => "not_implemented",
            RequestTimeout => "request_timeout",
            TooManyConnections => "too_many_connections",
            NotFound => "not_found",
            MethodNotAllowed(_) => "method_not_allowed",
            InvalidParameter(_) => "invalid_parameter",
            InvalidToken => "invalid_token",
            TokenExpired => "token_expired",
            TokenNotYetValid => "token_not_yet_valid",
            TokenLifetimeTooLong => "token_lifetime_too_long",
            TokenRevoked => "token_revoked",
            TokenExhausted => "token_exhausted",
            ProviderUnavailable => "provider_unavailable",
            ApiKeyUnavailable => "api_key_unavailable",
            RateLimited(..) => "rate_limited",
            TooManyConcurrent => "too_many_concurrent_requests",
            ModelNotAllowed => "model_not_allowed",
            EndpointNotAllowed => "endpoint_not_allowed",
            OriginNotAllowed => "origin_not_allowed",
            IpNotAllowed => "ip_not_allowed",
            MaxTokensExceeded => "max_tokens_exceeded",
            BudgetExhausted(_) => "budget_exhausted",
            ModelNotPriced => "model_not_priced",
            InvalidBody(_) | InvalidMember(..) => "invalid_body",
            DuplicateMember(_) => "duplicate_member",
            LimitNotEnforceable(_) => "limit_not_enforceable",
            InvalidAdminSignature => "invalid_admin_signature",
            UpstreamConnect => "upstream_connect_failed",
            UpstreamTls => "upstream_tls_failed",
            UpstreamTimeout => "upstream_timeout",
            UpstreamProtocol => "upstream_protocol_error",
            UpstreamErrorUnchecked => "upstream_error_unchecked",
            UpstreamRefusedUpgrade(_) => "upstream_refused_upgrade",
            StoreUnavailable => "store_unavailable",
            BodyBudgetExhausted => "too_many_buffered_bodies",
            ShuttingDown => "shutting_down",
        }
    }

    /// The reason recorded in logs and metrics: the code, with the scope for rate limits.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::RateLimited(LimitScope::Global, _) => "rate_limited_global",
            Error::RateLimited(LimitScope::Ip, _) => "rate_limited_ip",
            Error::RateLimited(LimitScope::Token, _) => "rate_limited_token",
            e => e.code(),
        }
    }

    /// The OpenAI error `type` member.
    pub fn error_type(&self) -> &'static str {
        use Error::*;
        match self {
            InvalidToken
            | TokenExpired
            | TokenNotYetValid
            | TokenLifetimeTooLong
            | TokenRevoked
            | InvalidAdminSignature => "authentication_error",
            TokenExhausted | BudgetExhausted(_) => "insufficient_quota",
            RateLimited(..) | TooManyConcurrent | TooManyConnections => "rate_limit_error",
            ModelNotAllowed
            | EndpointNotAllowed
            | OriginNotAllowed
            | IpNotAllowed
            | MaxTokensExceeded
            | ModelNotPriced
            | LimitNotEnforceable(_) => "permission_error",
            UpstreamConnect
            | UpstreamTls
            | UpstreamTimeout
            | UpstreamProtocol
            | UpstreamErrorUnchecked
            | UpstreamRefusedUpgrade(_) => "upstream_error",
            StoreUnavailable | ShuttingDown | ApiKeyUnavailable | BodyBudgetExhausted => {
                "server_error"
            }
            _ => "invalid_request_error",
        }
    }

    pub fn message(&self) -> String {
        use Error::*;
        match self {
            BadRequest(why) => format!("Malformed HTTP request: {why}."),
            HeadersTooLarge => "Request headers are too large.".into(),
            UriTooLong => "Request URI is too long.".into(),
            BodyTooLarge => "Request body is too large.".into(),
            VersionNotSupported => "Only HTTP/1.0 and HTTP/1.1 are supported.".into(),
            ExpectationFailed => "Only `Expect: 100-continue` is supported.".into(),
            NotImplemented(why) => format!("Not implemented: {why}."),
            RequestTimeout => "The request was not received in time.".into(),
            TooManyConnections => {
                "Too many open connections from your address; close idle ones and retry.".into()
            }
            NotFound => {
                "Not found. Relay URLs are the relay's base path (server.base_path, /relayapi/ \
                          by default), then a token, then the provider's path: \
                          /relayapi/rt1.<token>/chat/completions (see the README)."
                    .into()
            }
            MethodNotAllowed(allow) => {
                format!("Method not allowed on this path; allowed: {allow}.")
            }
            InvalidParameter(why) => format!("Invalid parameter: {why}."),
            InvalidToken => INVALID_TOKEN_MESSAGE.into(),
            TokenExpired => "The relay token has expired. Ask your backend for a new one.".into(),
            TokenNotYetValid => {
                "The relay token is not valid yet (check the minting server's clock).".into()
            }
            TokenLifetimeTooLong => {
                "The relay token's lifetime exceeds what this relay accepts.".into()
            }
            TokenRevoked => "The relay token has been revoked.".into(),
            TokenExhausted => "The relay token has used all of its calls.".into(),
            ProviderUnavailable => "The token's provider is not available on this relay.".into(),
            ApiKeyUnavailable => {
                "The server-side API key named by the token is not configured.".into()
            }
            RateLimited(scope, _) => match scope {
                LimitScope::Global => {
                    "The relay is receiving too many requests; retry later.".into()
                }
                LimitScope::Ip => "Too many requests from your address; retry later.".into(),
                LimitScope::Token => "Too many requests with this token; retry later.".into(),
            },
            TooManyConcurrent => "Too many concurrent requests with this token.".into(),
            ModelNotAllowed => "This token may not use the requested model.".into(),
            EndpointNotAllowed => "This token may not call this endpoint.".into(),
            OriginNotAllowed => "This token may not be used from this origin.".into(),
            IpNotAllowed => "This token may not be used from your address.".into(),
            MaxTokensExceeded => "The requested max_tokens exceeds this token's ceiling.".into(),
            BudgetExhausted(_) => {
                "The spend budget of this token or its user cannot pay for this call.".into()
            }
            ModelNotPriced => "This token has a money budget and the relay has no price for the \
                               requested model (budgets.prices in config.json), so the call was \
                               not forwarded."
                .into(),
            InvalidBody(why) => format!(
                "This token's limits read the request body, which must be one JSON object: {why}."
            ),
            InvalidMember(member, expected) => {
                format!("The request member `{member}` must be {expected} for this token.")
            }
            DuplicateMember(member) => format!(
                "The request body names `{member}` more than once; providers differ on which copy \
                 counts, so this token refuses it."
            ),
            LimitNotEnforceable(limit) => format!(
                "This token's {limit} cannot be enforced on this provider or endpoint, so the \
                 request was not forwarded (see docs/providers.md)."
            ),
            InvalidAdminSignature => "Invalid or missing admin signature.".into(),
            UpstreamConnect => "Could not connect to the provider.".into(),
            UpstreamTls => "TLS handshake with the provider failed.".into(),
            UpstreamTimeout => "The provider did not answer in time.".into(),
            UpstreamProtocol => "The provider sent an invalid HTTP response.".into(),
            UpstreamRefusedUpgrade(status) => format!(
                "The provider refused the WebSocket session with status {status} (check the model \
                 and the endpoint)."
            ),
            UpstreamErrorUnchecked => format!(
                "The provider answered with an error whose body could not be checked for the API key \
                 (larger than {} KiB, or compressed); it was withheld.",
                crate::upstream::key_scrub::MAX_ERROR_BODY_BYTES / 1024
            ),
            StoreUnavailable => {
                "The usage store is unavailable; the request was not forwarded.".into()
            }
            ShuttingDown => "The relay is shutting down; retry on another instance.".into(),
            BodyBudgetExhausted => {
                "The relay is holding too many request bodies right now; retry shortly.".into()
            }
        }
    }

    /// Post-authentication token failures will not change on retry: tell official SDKs not to retry.
    pub fn should_not_retry(&self) -> bool {
        use Error::*;
        matches!(
            self,
            TokenExpired
                | TokenNotYetValid
                | TokenLifetimeTooLong
                | TokenRevoked
                | TokenExhausted
                | ModelNotAllowed
                | EndpointNotAllowed
                | OriginNotAllowed
                | IpNotAllowed
                | MaxTokensExceeded
                | BudgetExhausted(_)
                | ModelNotPriced
                | InvalidBody(_)
                | InvalidMember(..)
                | DuplicateMember(_)
                | LimitNotEnforceable(_)
                | InvalidToken
        )
    }

    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::RateLimited(_, d) | Error::BudgetExhausted(Some(d)) => Some(*d),
            Error::ShuttingDown
            | Error::StoreUnavailable
            | Error::TooManyConnections
            | Error::BodyBudgetExhausted => Some(Duration::from_secs(1)),
            _ => None,
        }
    }

    /// Framing errors leave the byte stream in an unknown state: the connection must not be reused.
    /// Refusals that must not wait for a body to be drained close it too.
    pub fn must_close(&self) -> bool {
        use Error::*;
        matches!(
            self,
            BadRequest(_)
                | HeadersTooLarge
                | UriTooLong
                | BodyTooLarge
                | VersionNotSupported
                | ExpectationFailed
                | NotImplemented(_)
                | RequestTimeout
                | TooManyConnections
                | BodyBudgetExhausted
                | ShuttingDown
        )
    }

    /// The JSON body official SDKs parse into their exception types.
    pub fn body(&self) -> String {
        serde_json::json!({
            "error": {
                "message": self.message(),
                "type": self.error_type(),
                "code": self.code(),
            }
        })
        .to_string()
    }
}

impl From<HeadError> for Error {
    fn from(e: HeadError) -> Self {
        match e {
            HeadError::TooLarge | HeadError::TooManyHeaders => Error::HeadersTooLarge,
            HeadError::UriTooLong => Error::UriTooLong,
            HeadError::BadVersion => Error::VersionNotSupported,
            HeadError::Malformed(why) => Error::BadRequest(why),
        }
    }
}

impl From<FramingError> for Error {
    fn from(e: FramingError) -> Self {
        match e {
            FramingError::Bad(why) => Error::BadRequest(why),
            FramingError::UnsupportedExpect => Error::ExpectationFailed,
            FramingError::NotImplemented(why) => Error::NotImplemented(why),
        }
    }
}

/// A request body's error (the client's side); the response leg maps the provider's own.
impl From<BodyError> for Error {
    fn from(e: BodyError) -> Self {
        match e {
            BodyError::Malformed(why) => Error::BadRequest(why),
            BodyError::TooLarge => Error::BodyTooLarge,
            BodyError::Truncated => Error::BadRequest("connection closed inside the request body"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_token_body_is_fixed() {
        let b = Error::InvalidToken.body();
        assert_eq!(
            b,
            r#"{"error":{"message":"Invalid or missing relay token.","type":"authentication_error","code":"invalid_token"}}"#
        );
    }

    #[test]
    fn statuses_by_side() {
        assert_eq!(Error::UpstreamTimeout.status(), 504);
        assert_eq!(Error::UpstreamConnect.side(), Side::Upstream);
        assert_eq!(Error::TokenExhausted.status(), 429);
        assert!(Error::TokenExhausted.should_not_retry());
        assert!(!Error::RateLimited(LimitScope::Ip, Duration::from_secs(1)).should_not_retry());
        assert!(Error::BadRequest("x").must_close());
        assert!(!Error::InvalidToken.must_close());
    }
}
