"""The token options: one typed definition of every keyword ``create_token`` and ``generate_url`` take.

``TokenOptions`` is what the type checker sees (``**options: Unpack[TokenOptions]``), ``DEFAULTS`` what a
missing option means, and :func:`resolve` the runtime gate that refuses an unknown name. The JS SDK's
``createToken`` options are the same names in camelCase with the same defaults and units; ``sdk/api.json``
lists them and both test suites check their SDK against it. Turning options into claims is
``relayapi.token``'s business.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal, Optional, TypedDict, Union

from .errors import InvalidArgumentError

__all__ = [
    "DEFAULTS",
    "DEFAULT_EXPIRE_SECONDS",
    "DEFAULT_MAX_CALLS",
    "DEFAULT_PROVIDER",
    "ExtInfo",
    "TokenOptions",
    "UserQuota",
    "resolve",
]

#: Calls a token allows when ``max_calls`` is not given (``None`` = unlimited).
DEFAULT_MAX_CALLS = 100
#: Lifetime of a token, in seconds, when ``expire_seconds`` is not given.
DEFAULT_EXPIRE_SECONDS = 3600
#: Provider name when ``provider`` is not given.
DEFAULT_PROVIDER = "openai"

ExtInfo = Union[str, Mapping[str, Any], None]


class _QuotaWindow(TypedDict):
    #: ``"day"`` (UTC calendar day), ``"month"`` (UTC calendar month) or ``"all"`` (never resets).
    window: Literal["day", "month", "all"]


class UserQuota(_QuotaWindow, total=False):
    """One entry of ``user_quotas``: ``window`` and at least one of the three limits."""

    #: Calls per window.
    calls: Optional[int]
    #: Input plus output tokens per window.
    tokens: Optional[int]
    #: Money per window, in micro-units of the relay's price table currency.
    cost: Optional[int]


class TokenOptions(TypedDict, total=False):
    """Keyword options of ``create_token`` and ``generate_url``; every one may be left out.

    Units are seconds and UTC. ``None`` means "absent" for every option (``max_calls=None``: unlimited).
    """

    #: The provider key, carried encrypted in the token. Exactly one of ``api_key`` and ``key_ref``.
    api_key: Optional[str]
    #: Name of a key the relay holds (``config.json`` ``api_keys``). Exactly one of the two.
    key_ref: Optional[str]
    #: Calls the token allows; default 100, ``None`` for unlimited.
    max_calls: Optional[int]
    #: Seconds from now until the token expires; default 3600.
    expire_seconds: int
    #: Provider name in the relay's registry; default ``"openai"``.
    provider: str
    #: ``""``/``None``, or a JSON object (text or mapping) with ``rep_m``, the model forced on every call.
    ext_info: ExtInfo
    #: Upstream base URL instead of the provider's; the relay must allow it (``upstream.allowed_base_urls``).
    base_url: Optional[str]
    #: ``(calls, seconds)``: at most ``calls`` calls per ``seconds``.
    rate_limit: Optional[Sequence[int]]
    #: Calls in flight at once.
    max_concurrent: Optional[int]
    #: Models the token may ask for.
    allowed_models: Optional[Sequence[str]]
    #: Provider-relative paths the token may call, e.g. ``"/chat/completions"``.
    allowed_endpoints: Optional[Sequence[str]]
    #: Browser origins (``Origin`` header values) the token may be used from.
    allowed_origins: Optional[Sequence[str]]
    #: Client addresses in CIDR form, e.g. ``"203.0.113.0/24"``.
    allowed_ips: Optional[Sequence[str]]
    #: Ceiling on the output tokens a call may ask for.
    max_tokens: Optional[int]
    #: What to do with a call over ``max_tokens``: ``"clamp"`` or ``"reject"``.
    max_tokens_mode: Optional[str]
    #: The end user this token is for, in access logs and usage.
    user_id: Optional[str]
    #: The token's own budget over its whole life in tokens (input plus output, as the provider reports).
    budget_tokens: Optional[int]
    #: The token's own budget over its whole life in micro-units of the relay's price table currency.
    budget_cost: Optional[int]
    #: Quotas of the end user ``user_id`` (required with them), shared by every token of that user:
    #: ``[{"window": "day", "calls": 50, "tokens": 200000, "cost": 1000000}]``, 1 to 3, one per window.
    user_quotas: Optional[Sequence[UserQuota]]
    #: Seconds a realtime (WebSocket) session of this token may stay open, 1 to 86400; the relay then
    #: closes it with code 1008. Plain HTTP calls are not affected.
    session_seconds: Optional[int]


#: What each option means when it is not given. Absent options not listed here default to ``None``.
DEFAULTS: Mapping[str, Any] = {
    "max_calls": DEFAULT_MAX_CALLS,
    "expire_seconds": DEFAULT_EXPIRE_SECONDS,
    "provider": DEFAULT_PROVIDER,
}

_NAMES = frozenset(TokenOptions.__annotations__)


def resolve(options: Mapping[str, Any], *, operation: str = "create_token") -> dict[str, Any]:
    """Every option with its value or default; an unknown name raises :class:`InvalidArgumentError`.

    ``None`` is kept as given: it means "absent" (for ``max_calls``: unlimited), not "use the default".
    """
    for name in options:
        if name not in _NAMES:
            raise InvalidArgumentError(name, f"is not a {operation} option")
    return {name: options.get(name, DEFAULTS.get(name)) for name in sorted(_NAMES)}
