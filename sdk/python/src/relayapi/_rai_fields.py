"""Field checks shared by both kinds of `.rai` file (docs/client-config.md): objects with a fixed set of
members, key ids, tenant ids and validity windows.

:mod:`relayapi.config` (the file as a whole, symmetric keys) and :mod:`relayapi.ecc_config` (the ecc
method's backend-side file) both read their fields through these, so the two apply one rule one way.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Optional

from .errors import ConfigError

__all__ = ["KID", "MAX_WINDOW_SECONDS", "TENANT", "is_int", "object_with", "window"]

KID = re.compile(r"[A-Za-z0-9._-]{1,32}")
TENANT = re.compile(r"[A-Za-z0-9._-]{1,64}")
#: The largest ``not_before`` / ``not_after`` (rule 10): 2^53-1, exact in every JSON reader.
MAX_WINDOW_SECONDS = 2**53 - 1


def is_int(value: Any) -> bool:
    # bool is a subclass of int in Python; `"port": true` must not pass as port 1.
    return isinstance(value, int) and not isinstance(value, bool)


def object_with(value: Any, name: str, required: set[str], optional: set[str]) -> Mapping[str, Any]:
    """``value`` as an object holding every ``required`` member and nothing outside ``optional``."""
    if not isinstance(value, Mapping):
        raise ConfigError(name, "must be an object")
    prefix = f"{name}." if name != "<config>" else ""
    for k in value:
        if k not in required and k not in optional:
            raise ConfigError(f"{prefix}{k}", "unknown field (check the spelling)")
    for k in sorted(required):
        if k not in value:
            raise ConfigError(f"{prefix}{k}", "is required")
    return value


def window(entry: Mapping[str, Any], prefix: str) -> tuple[Optional[int], Optional[int]]:
    """``(not_before, not_after)`` of one key (rule 10): Unix seconds, ``None`` when open, never empty."""
    out: list[Optional[int]] = []
    for name in ("not_before", "not_after"):
        if name not in entry:
            out.append(None)
            continue
        value = entry[name]
        if not is_int(value) or not 0 <= value <= MAX_WINDOW_SECONDS:
            raise ConfigError(f"{prefix}.{name}", "must be Unix seconds: an integer from 0 to 2^53-1")
        out.append(value)
    not_before, not_after = out
    if not_before is not None and not_after is not None and not_after <= not_before:
        raise ConfigError(f"{prefix}.not_after", "must be after not_before (the key would never be valid)")
    return not_before, not_after


def in_window(not_before: Optional[int], not_after: Optional[int], now: int) -> bool:
    """Whether a key is in force at ``now`` (rule 10): ``not_before`` included, ``not_after`` not."""
    return (not_before is None or now >= not_before) and (not_after is None or now < not_after)
