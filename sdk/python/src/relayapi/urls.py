"""Relay URLs built from a `.rai` config (docs/client-config.md, "Relay URLs").

Pure string building; no I/O. The path form (token as the last segment of the base URL) is what the
provider's official SDKs take as ``base_url``; the query form is the original RelayAPI's; the header form
is the bare relay base URL with the token sent as the SDK's API key.
"""

from __future__ import annotations

import re

from .config import RaiConfig
from .errors import InvalidArgumentError

__all__ = [
    "API_TYPES",
    "api_url",
    "check_token",
    "endpoint",
    "header_base_url",
    "origin",
    "path_base_url",
    "query_url",
]

#: ``api_type`` values accepted by the URL helpers and the provider-relative path each maps to.
API_TYPES = {
    "": "",
    "chat_completions": "/chat/completions",
    "images_generations": "/images/generations",
    "embeddings": "/embeddings",
}
_DEFAULT_PORTS = {"http": 80, "https": 443}
# What a token's text can hold; checked so a caller's typo can never inject "/", "?" or "#" into a URL.
_TOKEN_TEXT = re.compile(r"rt1\.[A-Za-z0-9_-]+")


def origin(config: RaiConfig) -> str:
    """``scheme://host[:port]``, the port left out when it is the scheme's default."""
    port = "" if _DEFAULT_PORTS[config.scheme] == config.port else f":{config.port}"
    return f"{config.scheme}://{config.host}{port}"


def header_base_url(config: RaiConfig) -> str:
    """Base URL for the header form: no token in it; the token goes in as the SDK's API key."""
    return origin(config) + config.base_path


def check_token(token: str) -> str:
    if not isinstance(token, str) or not _TOKEN_TEXT.fullmatch(token):
        raise InvalidArgumentError("token", 'must be a RelayAPI token ("rt1." followed by base64url)')
    return token


def endpoint(api_type: str) -> str:
    try:
        return API_TYPES[api_type]
    except (KeyError, TypeError):
        raise InvalidArgumentError(
            "api_type", f"must be one of {', '.join(repr(t) for t in API_TYPES)}; got {api_type!r}"
        ) from None


def path_base_url(config: RaiConfig, token: str) -> str:
    """``{scheme}://{host}[:{port}]{base_path}{token}``: the ``base_url`` for the provider's SDK."""
    return header_base_url(config) + check_token(token)


def api_url(config: RaiConfig, token: str, api_type: str = "") -> str:
    """Path-form endpoint URL: the base URL plus the endpoint of ``api_type`` ("" = the base URL)."""
    return path_base_url(config, token) + endpoint(api_type)


def query_url(config: RaiConfig, token: str, api_type: str = "chat_completions") -> str:
    """Query-form endpoint URL of the original RelayAPI: ``{base_path}{endpoint}?token={token}``."""
    path = endpoint(api_type)
    if not path:
        raise InvalidArgumentError("api_type", "the query form needs an endpoint, not the base URL")
    return header_base_url(config) + path.lstrip("/") + "?token=" + check_token(token)
