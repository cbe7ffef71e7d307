"""The SDK's exception hierarchy.

Every exception the SDK raises on purpose derives from :class:`RelayAPIError`, so callers can catch one
type, and carries a stable string ``code`` (``"ERR_API"``, ``"ERR_INVALID_TOKEN"``...), the same as the
JS SDK's, so callers can branch on ``err.code`` instead of message wording. ``sdk/api.json`` lists the
classes and codes; both SDKs' tests check them against it. Token verification failures are deliberately
uninformative (:class:`InvalidTokenError` carries no detail): a verifier that explains *why* a token
failed helps whoever is forging one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Optional

__all__ = [
    "APIError",
    "BadResponseError",
    "ConfigError",
    "InvalidArgumentError",
    "InvalidTokenError",
    "RelayAPIError",
    "RelayConnectionError",
    "TokenExpiredError",
    "TokenLifetimeTooLongError",
    "TokenNotYetValidError",
]


class RelayAPIError(Exception):
    """Base class of every error raised by the RelayAPI SDK."""

    #: Stable machine-readable code of the class; the same string in the JS SDK.
    code: ClassVar[str] = "ERR_RELAYAPI"


class ConfigError(RelayAPIError, ValueError):
    """The `.rai` client config is missing, unreadable or invalid.

    ``field`` names the offending member in dotted form (``"crypto.key"``), or ``"<file>"`` when the file
    itself could not be read or parsed.
    """

    code: ClassVar[str] = "ERR_CONFIG"

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"invalid .rai config: {field}: {problem}")


class InvalidArgumentError(RelayAPIError, ValueError):
    """An argument passed to an SDK call is out of range or of the wrong type.

    ``param`` names the argument as the caller spelled it (``"max_calls"``).
    """

    code: ClassVar[str] = "ERR_INVALID_ARGUMENT"

    def __init__(self, param: str, problem: str) -> None:
        self.param = param
        self.problem = problem
        super().__init__(f"{param}: {problem}")


class InvalidTokenError(RelayAPIError):
    """The token is not an authentic, well-formed RelayAPI v1 token for any loaded key.

    One message for every cause (bad encoding, unknown key id, failed tag, bad claims), like the relay's
    single ``invalid_token`` answer.
    """

    code: ClassVar[str] = "ERR_INVALID_TOKEN"

    def __init__(self) -> None:
        super().__init__("invalid token")


class TokenExpiredError(InvalidTokenError):
    """The token is authentic but ``now >= exp + leeway``."""

    code: ClassVar[str] = "ERR_TOKEN_EXPIRED"

    def __init__(self, claims: Mapping[str, Any]) -> None:
        super().__init__()
        self.claims = dict(claims)
        self.args = ("token expired",)


class TokenNotYetValidError(InvalidTokenError):
    """The token is authentic but ``iat > now + leeway`` (the minter's clock is ahead)."""

    code: ClassVar[str] = "ERR_TOKEN_NOT_YET_VALID"

    def __init__(self, claims: Mapping[str, Any]) -> None:
        super().__init__()
        self.claims = dict(claims)
        self.args = ("token not yet valid",)


class TokenLifetimeTooLongError(InvalidTokenError):
    """The token is authentic but ``exp - iat`` exceeds the verifier's ``max_lifetime`` (the relay's
    ``token_lifetime_too_long``)."""

    code: ClassVar[str] = "ERR_TOKEN_LIFETIME_TOO_LONG"

    def __init__(self, claims: Mapping[str, Any]) -> None:
        super().__init__()
        self.claims = dict(claims)
        self.args = ("token lifetime too long",)


class APIError(RelayAPIError):
    """The relay (or the provider behind it) answered with an HTTP error status.

    ``error_code`` is the relay's machine-readable code from the OpenAI-style error body
    (``"token_exhausted"``, ``"invalid_token"``...) or ``None`` when the body had none; ``code`` is the
    class's ``"ERR_API"`` like every SDK error (before 2.0, ``code`` held the relay's code).
    ``should_retry`` is false when the relay says a retry cannot succeed (``x-should-retry: false``).
    """

    code: ClassVar[str] = "ERR_API"

    def __init__(
        self,
        status: int,
        error_code: Optional[str],
        message: str,
        *,
        error_type: Optional[str] = None,
        headers: Optional[Mapping[str, str]] = None,
        body: Any = None,
    ) -> None:
        self.status = status
        self.error_code = error_code
        self.message = message
        self.error_type = error_type
        self.headers = {k.lower(): v for k, v in (headers or {}).items()}
        self.body = body
        self.should_retry = self.headers.get("x-should-retry") != "false"
        super().__init__(f"HTTP {status} {error_code or 'error'}: {message}")


class RelayConnectionError(RelayAPIError, ConnectionError):
    """The relay could not be reached, or the connection broke before a complete answer arrived."""

    code: ClassVar[str] = "ERR_CONNECTION"


class BadResponseError(RelayAPIError):
    """The relay answered 2xx with a body the SDK cannot read: not JSON, or not the event stream asked for.

    ``status`` is the HTTP status and ``body`` the start of what arrived.
    """

    code: ClassVar[str] = "ERR_BAD_RESPONSE"

    def __init__(self, message: str, *, status: int, body: Any = None) -> None:
        self.status = status
        self.body = body
        super().__init__(message)
