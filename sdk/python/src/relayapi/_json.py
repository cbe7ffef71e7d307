"""Strict JSON for token claims and `.rai` files (docs/token-format.md section 7.1, rules J1-J7).

``json.loads`` is too forgiving for a security format and too fragile for hostile input: it keeps the
last of two duplicate members, turns ``-0`` into ``0``, accepts ``NaN``, a byte-order mark is only an
error by accident, and deep nesting raises ``RecursionError`` instead of a parse error. This module owns
exactly that gap, as ``json.js`` does for the JavaScript SDK and ``token::json_within_rules`` for the relay,
so the three reach the same verdict on every document. What the values mean is left to the callers.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["MAX_DEPTH", "JsonRuleError", "loads_strict"]

#: Most levels of nested arrays and objects a document may have (J6; the top-level object is level 1).
#: Claims need 2 and `.rai` files 4; the cap is checked by a flat scan before parsing, so no input can
#: exhaust the recursion limit of the parser.
MAX_DEPTH = 16


class JsonRuleError(ValueError):
    """The text breaks RFC 8259 or one of the J rules. The message never quotes the document."""


def _check_depth(text: str) -> None:
    depth = 0
    in_string = False
    escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                raise JsonRuleError(f"nested deeper than {MAX_DEPTH} levels")
        elif ch in "]}":
            depth -= 1


class _DuplicateMemberError(JsonRuleError):
    pass


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in pairs:
        # Names arrive unescaped, so "\u006dax" and "max" are the same member (J3).
        if name in out:
            raise _DuplicateMemberError("duplicate member")
        out[name] = value
    return out


def _no_float(_text: str) -> Any:
    raise JsonRuleError("numbers must be integers without fraction or exponent")


def _integer(text: str) -> int:
    # Every number in our formats is a non-negative integer; "-0" and "-1" are refused outright (J5).
    if text.startswith("-"):
        raise JsonRuleError("numbers must not carry a sign")
    return int(text)


def _no_constant(_name: str) -> Any:
    raise JsonRuleError("NaN and Infinity are not JSON")


def _check_strings(value: Any) -> None:
    # Depth is at most MAX_DEPTH here, so this recursion is bounded.
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise JsonRuleError("lone surrogate in a string") from None
    elif isinstance(value, dict):
        for name, item in value.items():
            _check_strings(name)
            _check_strings(item)
    elif isinstance(value, list):
        for item in value:
            _check_strings(item)


def loads_strict(text: str) -> Any:
    """Parse ``text`` under rules J1-J7; raise :class:`JsonRuleError` for anything else."""
    if text.startswith("\ufeff"):
        raise JsonRuleError("byte-order mark before the JSON text")
    _check_depth(text)
    try:
        value = json.loads(
            text,
            object_pairs_hook=_object,
            parse_float=_no_float,
            parse_int=_integer,
            parse_constant=_no_constant,
        )
    except JsonRuleError:
        raise
    except (ValueError, RecursionError):
        raise JsonRuleError("not valid JSON") from None
    _check_strings(value)
    return value
