"""``RelayAPIClient``: tokens and URLs (inherited from :class:`TokenGenerator`) plus HTTP helpers.

The helpers are for backends and scripts that talk to the relay themselves; frontends should hand the
URL from :meth:`RelayAPIClient.generate_url` to the provider's official SDK instead. Helpers send the token
in the ``Authorization`` header (the header form) so it never lands in URL access logs on the way.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Literal, Optional, Union, overload

from . import __version__, urls
from ._http import Transport, iter_sse, read_json
from .admin import authorization_header
from .claims import MAX_SAFE_INT
from .config import ConfigSource
from .errors import InvalidArgumentError
from .token import TOKEN_PREFIX, ExtInfo, TokenGenerator

__all__ = ["DEFAULT_TIMEOUT", "RelayAPIClient"]

#: Seconds to wait for connect and for each read. Long completions stream, so this bounds silence, not
#: the whole answer.
DEFAULT_TIMEOUT = 600.0
_TOKEN_ID = re.compile(r"[0-9a-f]{32}")
_USER_AGENT = f"relayapi-sdk-python/{__version__}"


class RelayAPIClient(TokenGenerator):
    """Mint tokens, build relay URLs and call the relay, all from one `.rai` config.

    ``config`` is a `.rai` path, the parsed dict or a :class:`~relayapi.config.RaiConfig` (``ConfigError``
    otherwise). ``timeout`` is in seconds, per connect and per read.
    """

    def __init__(self, config: ConfigSource, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        super().__init__(config)
        self._transport = Transport(timeout=timeout)

    # -- URLs ------------------------------------------------------------------------------------------

    @property
    def relay_base_url(self) -> str:
        """Base URL for the header form: pass it as ``base_url`` and the token as the SDK's API key."""
        return urls.header_base_url(self.config)

    def generate_url(
        self,
        api_key: Optional[str] = None,
        max_calls: Optional[int] = 100,
        expire_seconds: int = 3600,
        provider: str = "openai",
        ext_info: ExtInfo = "",
        *,
        key_ref: Optional[str] = None,
        base_url: Optional[str] = None,
        rate_limit: Optional[tuple[int, int]] = None,
        max_concurrent: Optional[int] = None,
        allowed_models: Optional[Sequence[str]] = None,
        allowed_endpoints: Optional[Sequence[str]] = None,
        allowed_origins: Optional[Sequence[str]] = None,
        allowed_ips: Optional[Sequence[str]] = None,
        max_tokens: Optional[int] = None,
        max_tokens_mode: Optional[str] = None,
        user_id: Optional[str] = None,
    ) -> str:
        """Mint a token (same arguments as :meth:`create_token`) and return the relay base URL carrying it.

        Hand the result to the provider's official SDK as ``base_url`` / ``baseURL``.
        """
        token = self.create_token(
            api_key, max_calls, expire_seconds, provider, ext_info,
            key_ref=key_ref, base_url=base_url, rate_limit=rate_limit, max_concurrent=max_concurrent,
            allowed_models=allowed_models, allowed_endpoints=allowed_endpoints,
            allowed_origins=allowed_origins, allowed_ips=allowed_ips, max_tokens=max_tokens,
            max_tokens_mode=max_tokens_mode, user_id=user_id,
        )  # fmt: skip
        return urls.path_base_url(self.config, token)

    def generate_api_url_with_token(self, token: str, api_type: str = "") -> str:
        """Path-form URL for an existing token: the base URL, or an endpoint URL for ``api_type``
        (``"chat_completions"``, ``"images_generations"``, ``"embeddings"``; ``""`` = base URL)."""
        return urls.api_url(self.config, token, api_type)

    def generate_query_url(self, token: str, api_type: str = "chat_completions") -> str:
        """Query-form endpoint URL (``...?token=...``), the original RelayAPI's URL shape."""
        return urls.query_url(self.config, token, api_type)

    def generate_api_url(
        self,
        api_key: Optional[str] = None,
        max_calls: Optional[int] = 100,
        expire_seconds: int = 3600,
        provider: str = "openai",
        ext_info: ExtInfo = "",
        *,
        api_type: str = "chat_completions",
        key_ref: Optional[str] = None,
        base_url: Optional[str] = None,
        rate_limit: Optional[tuple[int, int]] = None,
        max_concurrent: Optional[int] = None,
        allowed_models: Optional[Sequence[str]] = None,
        allowed_endpoints: Optional[Sequence[str]] = None,
        allowed_origins: Optional[Sequence[str]] = None,
        allowed_ips: Optional[Sequence[str]] = None,
        max_tokens: Optional[int] = None,
        max_tokens_mode: Optional[str] = None,
        user_id: Optional[str] = None,
    ) -> str:
        """Mint a token and return the path-form endpoint URL for ``api_type`` in one step."""
        urls.endpoint(api_type)  # fail on a bad api_type before minting anything
        token = self.create_token(
            api_key, max_calls, expire_seconds, provider, ext_info,
            key_ref=key_ref, base_url=base_url, rate_limit=rate_limit, max_concurrent=max_concurrent,
            allowed_models=allowed_models, allowed_endpoints=allowed_endpoints,
            allowed_origins=allowed_origins, allowed_ips=allowed_ips, max_tokens=max_tokens,
            max_tokens_mode=max_tokens_mode, user_id=user_id,
        )  # fmt: skip
        return urls.api_url(self.config, token, api_type)

    # -- provider calls through the relay --------------------------------------------------------------

    def _post(self, token: str, api_type: str, body: Mapping[str, Any], *, stream: bool = False) -> Any:
        endpoint = urls.API_TYPES[api_type]
        url = urls.header_base_url(self.config) + endpoint.lstrip("/")
        headers = {
            "Authorization": f"Bearer {urls.check_token(token)}",
            "Content-Type": "application/json",
            "Accept": "text/event-stream" if stream else "application/json",
            "User-Agent": _USER_AGENT,
        }
        data = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        response = self._transport.send("POST", url, headers=headers, body=data)
        return iter_sse(response) if stream else read_json(response)

    @overload
    def chat_completions(
        self, token: str, messages: Sequence[Mapping[str, Any]], model: str, stream: Literal[False] = False,
        **kwargs: Any,
    ) -> dict[str, Any]: ...  # fmt: skip

    @overload
    def chat_completions(
        self,
        token: str,
        messages: Sequence[Mapping[str, Any]],
        model: str,
        stream: Literal[True],
        **kwargs: Any,
    ) -> Iterator[dict[str, Any]]: ...

    def chat_completions(
        self,
        token: str,
        messages: Sequence[Mapping[str, Any]],
        model: str,
        stream: bool = False,
        **kwargs: Any,
    ) -> Union[dict[str, Any], Iterator[dict[str, Any]]]:
        """``POST /chat/completions`` through the relay; extra keyword arguments go into the JSON body.

        With ``stream=True`` the request is sent at once (errors raise here) and the returned iterator
        yields each parsed SSE chunk as a dict until ``[DONE]``. Raises :class:`~relayapi.errors.APIError`
        for error answers and :class:`~relayapi.errors.RelayConnectionError` for network failures.
        """
        body: dict[str, Any] = {"model": model, "messages": list(messages), **kwargs}
        if stream:
            body["stream"] = True
        return self._post(token, "chat_completions", body, stream=stream)  # type: ignore[no-any-return]

    def images_generations(self, token: str, prompt: str, **kwargs: Any) -> dict[str, Any]:
        """``POST /images/generations`` through the relay; extra keyword arguments go into the body."""
        return self._post(token, "images_generations", {"prompt": prompt, **kwargs})  # type: ignore[no-any-return]

    def embeddings(
        self,
        token: str,
        input: Union[str, Sequence[Any]],
        model: str,
        **kwargs: Any,
    ) -> dict[str, Any]:
        """``POST /embeddings`` through the relay; extra keyword arguments go into the body."""
        value = input if isinstance(input, str) else list(input)
        return self._post(token, "embeddings", {"model": model, "input": value, **kwargs})  # type: ignore[no-any-return]

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
            return str(self.decode_token(token_or_id)["jti"])
        if not isinstance(token_or_id, str) or not _TOKEN_ID.fullmatch(token_or_id):
            raise InvalidArgumentError(
                "token_or_id", 'must be a token ("rt1....") or a 32-hex-digit token id'
            )
        return token_or_id

    def _admin(self, method: str, path: str, body: bytes = b"") -> dict[str, Any]:
        headers = {
            "Authorization": authorization_header(
                key_id=self.config.key.key_id, tenant_key=self.config.key.key,
                method=method, path=path, body=body, now=int(time.time()),
            ),
            "Accept": "application/json",
            "User-Agent": _USER_AGENT,
        }  # fmt: skip
        if method == "POST":
            headers["Content-Type"] = "application/json"
        response = self._transport.send(
            method, urls.origin(self.config) + path, headers=headers, body=body if method == "POST" else None
        )
        return read_json(response)  # type: ignore[no-any-return]

    def get_usage(self, token_or_id: str) -> dict[str, Any]:
        """Usage of one token: ``calls_used``, ``max_calls``, ``remaining``, ``revoked``... (UTC seconds).

        ``token_or_id`` is a token (decrypted locally for its id; ``InvalidTokenError`` if it is not one of
        this tenant's) or a token id.
        """
        return self._admin("GET", f"/admin/v1/tokens/{self._token_id(token_or_id)}")

    def revoke(self, token_or_id: str) -> dict[str, Any]:
        """Revoke one token on every relay sharing the store; idempotent. Returns the usage document."""
        return self._admin("POST", f"/admin/v1/tokens/{self._token_id(token_or_id)}/revoke")

    def revoke_before(self, ts: int) -> dict[str, Any]:
        """Revoke every token of this tenant issued strictly before UTC second ``ts``."""
        if not isinstance(ts, int) or isinstance(ts, bool) or not 0 <= ts <= MAX_SAFE_INT:
            raise InvalidArgumentError("ts", "must be UTC seconds as a non-negative integer")
        body = json.dumps({"before": ts}, separators=(",", ":")).encode("ascii")
        return self._admin("POST", "/admin/v1/revoke-before", body)
