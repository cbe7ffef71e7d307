"""RelayAPI Python SDK (distribution ``relayapi-tokens``): mint encrypted, limited relay tokens and URLs
from a `.rai` client config, and talk to the relay.

>>> from relayapi import RelayAPIClient
>>> client = RelayAPIClient("default.rai")
>>> base_url = client.generate_url(api_key=os.environ["OPENAI_API_KEY"], max_calls=10)
>>> # frontend: OpenAI(base_url=base_url, api_key="unused")

The public surface is ``__all__``; it mirrors the JS SDK's exports (``sdk/api.json``).
"""

from __future__ import annotations

import warnings
from typing import Any

__version__ = "2.0.0"

from .client import (  # client.py reads __version__, set above
    DEFAULT_TIMEOUT_SECONDS,
    MAX_CLOCK_SKEW_SECONDS,
    RelayAPIClient,
)
from .errors import (
    APIError,
    BadResponseError,
    ConfigError,
    InvalidArgumentError,
    InvalidTokenError,
    RelayAPIError,
    RelayConnectionError,
    TokenExpiredError,
    TokenLifetimeTooLongError,
    TokenNotYetValidError,
)
from .options import DEFAULT_EXPIRE_SECONDS, DEFAULT_MAX_CALLS, DEFAULT_PROVIDER, TokenOptions
from .token import TokenGenerator
from .urls import ENDPOINTS

__all__ = [
    "DEFAULT_EXPIRE_SECONDS",
    "DEFAULT_MAX_CALLS",
    "DEFAULT_PROVIDER",
    "DEFAULT_TIMEOUT_SECONDS",
    "ENDPOINTS",
    "MAX_CLOCK_SKEW_SECONDS",
    "APIError",
    "BadResponseError",
    "ConfigError",
    "InvalidArgumentError",
    "InvalidTokenError",
    "RelayAPIClient",
    "RelayAPIError",
    "RelayConnectionError",
    "TokenExpiredError",
    "TokenGenerator",
    "TokenLifetimeTooLongError",
    "TokenNotYetValidError",
    "TokenOptions",
    "__version__",
]

# Exported before 2.0 although the JS SDK has no counterpart; still importable from relayapi.config.
_MOVED = {"RaiConfig", "RaiKey", "load_config"}


def __getattr__(name: str) -> Any:
    if name in _MOVED:
        warnings.warn(
            f"relayapi.{name} is deprecated; import it from relayapi.config", DeprecationWarning, stacklevel=2
        )
        from . import config

        return getattr(config, name)
    raise AttributeError(f"module 'relayapi' has no attribute {name!r}")
