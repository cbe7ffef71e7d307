"""``RelayAPIClient``: tokens and URLs (inherited from :class:`TokenGenerator`) plus HTTP helpers.

The helpers are for backends and scripts that talk to the relay themselves; frontends should hand the
URL from :meth:`RelayAPIClient.generate_url` to the provider's official SDK instead. Helpers send the token
in the ``Authorization`` header (the header form) so it never lands in URL access logs on the way.
"""

from __future__ import annotations

import json
import re
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, Union, overload

from . import __version__, urls
from ._http import Transport, open_stream, read_json
from .admin import authorization_header, ecdsa_authorization_header
from .claims import MAX_SAFE_INT, MAX_UID_CHARS
from .config import ConfigSource, EccConfig
from .errors import InvalidArgumentError
from .options import TokenOptions
from .token import TOKEN_PREFIX, TokenGenerator

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["DEFAULT_TIMEOUT", "DEFAULT_TIMEOUT_SECONDS", "MAX_CLOCK_SKEW_SECONDS", "RelayAPIClient"]

#: Seconds of silence accepted: for connecting, for the answer's head and for each read of its body. A
#: long answer that keeps arriving is never cut (model calls stream for minutes); same in the JS SDK.
DEFAULT_TIMEOUT_SECONDS = 600
#: Deprecated name of :data:`DEFAULT_TIMEOUT_SECONDS`.
DEFAULT_TIMEOUT = float(DEFAULT_TIMEOUT_SECONDS)
#: Longest timeout accepted, in seconds: Node's timers hold at most 2**31-1 ms, and both SDKs accept the
#: same values.
MAX_TIMEOUT_SECONDS = (2**31 - 1) // 1000
#: How far past this machine's clock ``revoke_before`` may reach, in seconds: the relay's default
#: ``token.clock_skew``. A later time would refuse every token minted until then, so it is a mistake
#: (often milliseconds passed as seconds).
MAX_CLOCK_SKEW_SECONDS = 60
_TOKEN_ID = re.compile(r"[0-9a-f]{32}")
_PRINTABLE = re.compile(r"[\x20-\x7e]+")
#: RFC 3986 unreserved: the only characters a user id keeps unescaped in its admin path segment.
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_USER_AGENT = f"relayapi-tokens-python/{__version__}"


def _deprecated(old: str, new: str) -> None:
    warnings.warn(f"{old} is deprecated; use {new}", DeprecationWarning, stacklevel=3)


class RelayAPIClient(TokenGenerator):
    """Mint tokens, build relay URLs and call the relay, all from one `.rai` config.

    ``config`` is a `.rai` path, the parsed dict or a :class:`~relayapi.config.RaiConfig` (``ConfigError``
    otherwise). ``timeout`` is in seconds of silence: each wait (connecting, the answer's head, every read
    of its body) may last that long, the whole answer may take longer.
    """

    def __init__(self, config: ConfigSource, *, timeout: float = DEFAULT_TIMEOUT_SECONDS) -> None:
        super().__init__(config)
        if (
            not isinstance(timeout, (int, float))
            or isinstance(timeout, bool)
            or not 0 < timeout <= MAX_TIMEOUT_SECONDS
        ):
            raise InvalidArgumentError(
                "timeout", f"must be a positive number of seconds up to {MAX_TIMEOUT_SECONDS}"
            )
        self._transport = Transport(timeout=float(timeout))

    # -- URLs ------------------------------------------------------------------------------------------

    @property
    def origin(self) -> str:
        """``scheme://host[:port]`` of the relay, from the `.rai`."""
        return urls.origin(self.config)

    @property
    def relay_base_url(self) -> str:
        """Base URL for the header form: pass it as ``base_url`` and the token as the SDK's API key."""
        return urls.header_base_url(self.config)

    def generate_url(self, *, endpoint: str = "", **options: Unpack[TokenOptions]) -> str:
        """Mint a token (options as for :meth:`create_token`) and return the path-form URL carrying it.

        With the default ``endpoint=""`` that is the base URL to hand to the provider's official SDK as
        ``base_url`` / ``baseURL``; ``endpoint`` may also name an endpoint (``"chat_completions"``...) or
        be a provider-relative path such as ``"/v1/messages"``.
        """
        urls.endpoint(endpoint)  # fail on a bad endpoint before minting anything
        return urls.api_url(self.config, self.create_token(**options), endpoint)

    def url_for_token(self, token: str, endpoint: str = "") -> str:
        """Path-form URL for an existing token: ``{scheme}://{host}[:{port}]{base_path}{token}{endpoint}``.

        ``endpoint`` is ``""`` (the base URL), ``"chat_completions"``, ``"images_generations"``,
        ``"embeddings"`` or a provider-relative path such as ``"/v1/messages"``.
        """
        return urls.api_url(self.config, token, endpoint)

    def query_url_for_token(self, token: str, endpoint: str = "chat_completions") -> str:
        """Query-form endpoint URL (``...?token=...``), the original RelayAPI's URL shape."""
        return urls.query_url(self.config, token, endpoint)

    def generate_api_url_with_token(self, token: str, api_type: str = "") -> str:
        """Deprecated since 2.0: use :meth:`url_for_token`."""
        _deprecated("generate_api_url_with_token", "url_for_token")
        return self.url_for_token(token, api_type)

    def generate_query_url(self, token: str, api_type: str = "chat_completions") -> str:
        """Deprecated since 2.0: use :meth:`query_url_for_token`."""
        _deprecated("generate_query_url", "query_url_for_token")
        return self.query_url_for_token(token, api_type)

    def generate_api_url(self, *, api_type: str = "chat_completions", **options: Unpack[TokenOptions]) -> str:
        """Deprecated since 2.0: use ``generate_url(endpoint=..., **options)``."""
        _deprecated("generate_api_url", "generate_url(endpoint=...)")
        return self.generate_url(endpoint=api_type, **options)

    # -- provider calls through the relay --------------------------------------------------------------

    def _post(self, token: str, endpoint: str, body: Mapping[str, Any], *, stream: bool = False) -> Any:
        url = urls.header_base_url(self.config) + urls.ENDPOINTS[endpoint].lstrip("/")
        headers = {
            "Authorization": f"Bearer {urls.check_token(token)}",
            "Content-Type": "application/json",
            "Accept": "text/event-stream" if stream else "application/json",
            "User-Agent": _USER_AGENT,
        }
        data = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        response = self._transport.send("POST", url, headers=headers, body=data)
        return open_stream(response) if stream else read_json(response)

    @overload
    def chat_completions(
        self, token: str, *, model: str, messages: Sequence[Mapping[str, Any]],
        stream: Literal[False] = False, **body: Any,
    ) -> dict[str, Any]: ...  # fmt: skip

    @overload
    def chat_completions(
        self, token: str, *, model: str, messages: Sequence[Mapping[str, Any]], stream: Literal[True],
        **body: Any,
    ) -> Iterator[dict[str, Any]]: ...  # fmt: skip

    def chat_completions(
        self,
        token: str,
        *,
        model: str,
        messages: Sequence[Mapping[str, Any]],
        stream: bool = False,
        **body: Any,
    ) -> Union[dict[str, Any], Iterator[dict[str, Any]]]:
        """``POST /chat/completions`` through the relay; further keyword arguments go into the JSON body.

        With ``stream=True`` the request is sent at once (errors raise here) and the returned iterator
        yields each parsed SSE chunk as a dict until ``[DONE]``. Raises :class:`~relayapi.errors.APIError`
        for error answers, :class:`~relayapi.errors.BadResponseError` for a 2xx answer that is not JSON
        (or not an event stream) and :class:`~relayapi.errors.RelayConnectionError` for network failures.
        """
        if not isinstance(model, str) or not model:
            raise InvalidArgumentError("model", "is required")
        if isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence):
            raise InvalidArgumentError("messages", "must be a list")
        if not isinstance(stream, bool):
            raise InvalidArgumentError("stream", "must be a boolean")
        payload: dict[str, Any] = {**body, "model": model, "messages": list(messages)}
        if stream:
            payload["stream"] = True
        return self._post(token, "chat_completions", payload, stream=stream)  # type: ignore[no-any-return]

    def images_generations(self, token: str, *, prompt: str, **body: Any) -> dict[str, Any]:
        """``POST /images/generations`` through the relay; further keyword arguments go into the body."""
        if not isinstance(prompt, str) or not prompt:
            raise InvalidArgumentError("prompt", "is required")
        return self._post(token, "images_generations", {**body, "prompt": prompt})  # type: ignore[no-any-return]

    def embeddings(
        self, token: str, *, model: str, input: Union[str, Sequence[Any]], **body: Any
    ) -> dict[str, Any]:
        """``POST /embeddings`` through the relay; further keyword arguments go into the body."""
        if not isinstance(model, str) or not model:
            raise InvalidArgumentError("model", "is required")
        if input is None:
            raise InvalidArgumentError("input", "is required")
        value = input if isinstance(input, str) else list(input)
        return self._post(token, "embeddings", {**body, "model": model, "input": value})  # type: ignore[no-any-return]

    def health_check(self) -> dict[str, Any]:
        """``GET /health`` of the relay: ``{"status": "ok", "version": ..., ...}``."""
        response = self._transport.send(
            "GET",
            urls.origin(self.config) + "/health",
            headers={"Accept": "application/json", "User-Agent": _USER_AGENT},
        )
        return read_json(response)  # type: ignore[no-any-return]

    # -- admin API (docs/admin-api.md) -----------------------------------------------------------------

    def _token_id(self, token_or_id: str) -> str:
        if isinstance(token_or_id, str) and token_or_id.startswith(TOKEN_PREFIX):
            if isinstance(self.config, EccConfig):
                # Checked before anything is sent: an ecc backend cannot open the token to find its id.
                raise InvalidArgumentError(
                    "token", "an ecc backend-side .rai cannot open tokens: pass the token id, claims['jti'] "
                    "from create_token_with_claims(...)",
                )  # fmt: skip
            return str(self.decode_token(token_or_id)["jti"])
        if not isinstance(token_or_id, str) or not _TOKEN_ID.fullmatch(token_or_id):
            raise InvalidArgumentError(
                "token_or_id", 'must be a token ("rt1....") or a 32-hex-digit token id'
            )
        return token_or_id

    def _admin(self, method: str, path: str, body: bytes = b"") -> dict[str, Any]:
        config, now = self.config, int(time.time())
        if isinstance(config, EccConfig):
            authorization = ecdsa_authorization_header(
                signer_id=config.signer.key_id, signing_key=config.signer.private_key,
                method=method, path=path, body=body, now=now,
            )  # fmt: skip
        else:
            authorization = authorization_header(
                key_id=config.key.key_id, tenant_key=config.key.key,
                method=method, path=path, body=body, now=now,
            )  # fmt: skip
        headers = {"Authorization": authorization, "Accept": "application/json", "User-Agent": _USER_AGENT}
        if method == "POST":
            headers["Content-Type"] = "application/json"
        response = self._transport.send(
            method, urls.origin(self.config) + path, headers=headers, body=body if method == "POST" else None
        )
        return read_json(response)  # type: ignore[no-any-return]

    def get_usage(self, token_or_id: str) -> dict[str, Any]:
        """Usage of one token: ``calls_used``, ``max_calls``, ``remaining``, ``revoked``... (UTC seconds),
        ``tokens`` (``input``, ``output``, ``cached_input``) and ``cost`` (micro-units). The token's budget is
        not in it (the relay only gets the id): it is the ``bud`` claim of the token.

        ``token_or_id`` is a token (decrypted locally for its id; ``InvalidTokenError`` if it is not one of
        this tenant's) or a token id. With an ecc backend-side `.rai` it is a token id only (the ``jti``
        from :meth:`create_token_with_claims`): a token text raises :class:`InvalidArgumentError`.
        """
        return self._admin("GET", f"/admin/v1/tokens/{self._token_id(token_or_id)}")

    def get_user_usage(self, user_id: str) -> dict[str, Any]:
        """Usage of one end user of this tenant: ``{"tenant_id", "user_id", "windows": {"day", "month",
        "all"}}``, each window with its ``period``, ``calls``, ``tokens``, ``cost`` and ``resets_at``.

        ``user_id`` is the ``user_id`` the tokens were minted with; one that no token can carry raises
        :class:`InvalidArgumentError` before anything is sent.
        """
        return self._admin("GET", f"/admin/v1/users/{user_segment(user_id)}/usage")

    def revoke(self, token_or_id: str) -> dict[str, Any]:
        """Revoke one token on every relay sharing the store; idempotent. Returns the usage document."""
        return self._admin("POST", f"/admin/v1/tokens/{self._token_id(token_or_id)}/revoke")

    def revoke_before(self, ts: int) -> dict[str, Any]:
        """Revoke every token of this tenant issued strictly before UTC second ``ts``.

        ``ts`` may not lie more than :data:`MAX_CLOCK_SKEW_SECONDS` after this machine's clock: a later
        time would also refuse every token minted until then. Raises :class:`InvalidArgumentError`.
        """
        check_revoke_before(ts, int(time.time()))
        body = json.dumps({"before": ts}, separators=(",", ":")).encode("ascii")
        return self._admin("POST", "/admin/v1/revoke-before", body)


def user_segment(user_id: Any) -> str:
    """A user id as one path segment: the uid rule of the token format (5.1.18), then every character
    outside RFC 3986 unreserved as ``%XX`` (upper-case hex), the same bytes the JS SDK sends. ``"."`` and
    ``".."`` are refused as in the JS SDK, whose ``fetch`` resolves them as dot segments."""
    if not isinstance(user_id, str) or not _PRINTABLE.fullmatch(user_id) or len(user_id) > MAX_UID_CHARS:
        raise InvalidArgumentError("user_id", f"must be 1 to {MAX_UID_CHARS} printable ASCII characters")
    if user_id in (".", ".."):
        raise InvalidArgumentError("user_id", 'cannot be "." or "..", which URLs treat as dot segments')
    return "".join(c if c in _UNRESERVED else f"%{ord(c):02X}" for c in user_id)


def check_revoke_before(ts: Any, now: int) -> None:
    """Refuse a ``revoke_before`` time that is not UTC seconds up to ``now + MAX_CLOCK_SKEW_SECONDS``."""
    if not isinstance(ts, int) or isinstance(ts, bool) or not 0 <= ts <= MAX_SAFE_INT:
        raise InvalidArgumentError("ts", "must be UTC seconds as a non-negative integer")
    if ts > now + MAX_CLOCK_SKEW_SECONDS:
        hint = (
            "; it looks like milliseconds: pass int(time.time())"
            if 10**9 <= ts // 1000 <= now + MAX_CLOCK_SKEW_SECONDS
            else ""
        )
        raise InvalidArgumentError(
            "ts",
            f"{ts} is more than {MAX_CLOCK_SKEW_SECONDS} s after now ({now}): revoking up to a future time "
            f"would also refuse every token minted until then{hint}",
        )
