"""RelayAPI Python SDK: mint encrypted, limited relay tokens and URLs from a `.rai` client config.

>>> from relayapi import RelayAPIClient
>>> client = RelayAPIClient("default.rai")
>>> base_url = client.generate_url(api_key=os.environ["OPENAI_API_KEY"], max_calls=10)
>>> # frontend: OpenAI(base_url=base_url, api_key="unused")
"""

__version__ = "0.1.0"

from .client import RelayAPIClient  # client.py reads __version__, set above
from .config import RaiConfig, RaiKey, load_config
from .errors import (
    APIError,
    ConfigError,
    InvalidArgumentError,
    InvalidTokenError,
    RelayAPIError,
    RelayConnectionError,
    TokenExpiredError,
    TokenNotYetValidError,
)
from .token import TokenGenerator

__all__ = [
    "APIError",
    "ConfigError",
    "InvalidArgumentError",
    "InvalidTokenError",
    "RaiConfig",
    "RaiKey",
    "RelayAPIClient",
    "RelayAPIError",
    "RelayConnectionError",
    "TokenExpiredError",
    "TokenGenerator",
    "TokenNotYetValidError",
    "__version__",
    "load_config",
]
