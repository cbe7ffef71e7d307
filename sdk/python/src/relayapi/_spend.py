"""The spend-limit options (docs/budgets.md section 1) turned into the claims ``bud`` and ``uq``.

``budget_tokens`` and ``budget_cost`` become ``bud`` (rule 5.1.20 of docs/token-format.md), ``user_quotas``
becomes ``uq`` (rule 5.1.21). Every rule is checked here against the option names the caller wrote, so
a mistake is reported as ``user_quotas: entry 1: ...`` rather than in claim names; the claim validator
checks the result again. The JS SDK's ``budgetTokens``, ``budgetCost`` and ``userQuotas`` follow the same
rules with the same messages.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Optional

from .claims import MAX_QUOTAS, MAX_SAFE_INT, WINDOWS
from .errors import InvalidArgumentError

__all__ = ["budget_claim", "quotas_claim"]

#: Keys of one ``user_quotas`` entry and the claim member each becomes.
_QUOTA_KEYS = {"window": "w", "calls": "calls", "tokens": "tok", "cost": "cost"}


def _amount(param: str, where: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_SAFE_INT:
        raise InvalidArgumentError(
            param, f"{where}must be an integer from 1 to {MAX_SAFE_INT}, got {value!r}"
        )
    return value


def budget_claim(budget_tokens: Any, budget_cost: Any) -> Optional[dict[str, int]]:
    """``{"tok": ..., "cost": ...}`` from the two budget options, or ``None`` when neither is given."""
    bud: dict[str, int] = {}
    if budget_tokens is not None:
        bud["tok"] = _amount("budget_tokens", "", budget_tokens)
    if budget_cost is not None:
        bud["cost"] = _amount("budget_cost", "", budget_cost)
    return bud or None


def quotas_claim(user_quotas: Any, user_id: Optional[str]) -> Optional[list[dict[str, Any]]]:
    """The ``uq`` claim from ``user_quotas``: entries in the order given, members in claim order."""
    if user_quotas is None:
        return None
    param = "user_quotas"
    # A bare mapping or string is a mistake for a list of one quota, never a list itself.
    if isinstance(user_quotas, (str, bytes, Mapping)) or not isinstance(user_quotas, Sequence):
        raise InvalidArgumentError(param, 'must be a list of quotas such as [{"window": "day", "calls": 50}]')
    if not 1 <= len(user_quotas) <= MAX_QUOTAS:
        raise InvalidArgumentError(param, f"must hold 1 to {MAX_QUOTAS} quotas, one per window")
    if user_id is None:
        raise InvalidArgumentError(param, "needs user_id: quotas are counted per end user")
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for i, entry in enumerate(user_quotas):
        at = f"entry {i}: "
        if not isinstance(entry, Mapping):
            raise InvalidArgumentError(
                param, f'{at}must be a mapping such as {{"window": "day", "calls": 50}}'
            )
        for key in entry:
            if key not in _QUOTA_KEYS:
                raise InvalidArgumentError(
                    param, f"{at}unknown key {key!r}; the keys are window, calls, tokens and cost"
                )
        window = entry.get("window")
        if not isinstance(window, str) or window not in WINDOWS:
            raise InvalidArgumentError(param, f'{at}window must be "day", "month" or "all", got {window!r}')
        if window in seen:
            raise InvalidArgumentError(param, f"{at}window {window!r} appears twice")
        seen.add(window)
        quota: dict[str, Any] = {"w": window}
        for key in ("calls", "tokens", "cost"):
            if entry.get(key) is not None:
                quota[_QUOTA_KEYS[key]] = _amount(param, f"{at}{key} ", entry[key])
        if len(quota) == 1:
            raise InvalidArgumentError(param, f"{at}set at least one of calls, tokens and cost")
        out.append(quota)
    return out
