"""Relay URLs built from a `.rai` config (docs/client-config.md, "Relay URLs").

Pure string building; no I/O. The path form (token as the last segment of the base URL) is what the
provider's official SDKs take as ``base_url``; the query form is the original RelayAPI's; the header form
is the bare relay base URL with the token sent as the SDK's API key.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import MappingProxyType

from .config import AnyConfig
from .errors import InvalidArgumentError

__all__ = [
    "API_TYPES",
    "ENDPOINTS",
    "api_url",
    "check_token",
    "endpoint",
    "header_base_url",
    "origin",
    "path_base_url",
    "query_url",
]

#: Endpoint names accepted by the URL helpers (the original SDK's api types) and the provider-relative
#: path each maps to. Any other provider-relative path (``"/v1/messages"``) is accepted as it is.
ENDPOINTS: Mapping[str, str] = MappingProxyType({
    "": "",
    "chat_completions": "/chat/completions",
    "images_generations": "/images/generations",
    "embeddings": "/embeddings",
})  # fmt: skip
#: Deprecated name of :data:`ENDPOINTS`.
API_TYPES = ENDPOINTS
# A provider-relative path as it may appear in a URL: no query, fragment, spaces or dot segments. The
# same pattern as the JS SDK's.
_ENDPOINT_PATH = re.compile(r"(?:/(?!\.\.?(?:/|$))[A-Za-z0-9._~!$&'()*+,;=:@%-]+)+")
_DEFAULT_PORTS = {"http": 80, "https": 443}
# What a token's text can hold; checked so a caller's typo can never inject "/", "?" or "#" into a URL.
_TOKEN_TEXT = re.compile(r"rt1\.[A-Za-z0-9_-]+")


def origin(config: AnyConfig) -> str:
    """``scheme://host[:port]``, the port left out when it is the scheme's default."""
    port = "" if _DEFAULT_PORTS[config.scheme] == config.port else f":{config.port}"
    return f"{config.scheme}://{config.host}{port}"


def header_base_url(config: AnyConfig) -> str:
    """Base URL for the header form: no token in it; the token goes in as the SDK's API key."""
    return origin(config) + config.base_path


def check_token(token: str) -> str:
    if not isinstance(token, str) or not _TOKEN_TEXT.fullmatch(token):
        raise InvalidArgumentError("token", 'must be a RelayAPI token ("rt1." followed by base64url)')
    return token


def endpoint(name: str) -> str:
    """The provider-relative path of an endpoint name or path; ``""`` for the base URL."""
    if isinstance(name, str):
        if name in ENDPOINTS:
            return ENDPOINTS[name]
        if _ENDPOINT_PATH.fullmatch(name):
            return name
    raise InvalidArgumentError(
        "endpoint",
        f"must be one of {', '.join(repr(t) for t in ENDPOINTS)} or a path such as '/v1/messages'; "
        f"got {name!r}",
    )


def path_base_url(config: AnyConfig, token: str) -> str:
    """``{scheme}://{host}[:{port}]{base_path}{token}``: the ``base_url`` for the provider's SDK."""
    return header_base_url(config) + check_token(token)


def api_url(config: AnyConfig, token: str, name: str = "") -> str:
    """Path-form endpoint URL: the base URL plus the endpoint ``name`` ("" = the base URL)."""
    return path_base_url(config, token) + endpoint(name)


def query_url(config: AnyConfig, token: str, name: str = "chat_completions") -> str:
    """Query-form endpoint URL of the original RelayAPI: ``{base_path}{endpoint}?token={token}``."""
    path = endpoint(name)
    if not path:
        raise InvalidArgumentError("endpoint", "the query form needs an endpoint, not the base URL")
    return header_base_url(config) + path.lstrip("/") + "?token=" + check_token(token)
