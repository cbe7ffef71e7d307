"""Token claims: the rules of docs/token-format.md section 5, their canonical JSON, and strict parsing.

Pure functions over values, no crypto and no clock. Minting and verification share this validator, so
the SDK refuses exactly the claims that every verifier refuses (section 5.1: minters refuse non-canonical
input, verifiers refuse non-canonical tokens; nothing is normalised into shape). The shared vectors
(``conformance.json``) pin the verdict of every rule in the relay and both SDKs. The validator raises
:class:`ClaimError` with a readable reason; the token layer turns that into the detail-free
``InvalidTokenError`` when verifying, and into ``InvalidArgumentError`` when minting.
"""

from __future__ import annotations

import ipaddress
import json
import re
import string
from collections.abc import Mapping
from typing import Any, Optional, Union

from ._json import JsonRuleError, loads_strict

__all__ = [
    "BUDGET_ORDER",
    "CLAIM_ORDER",
    "QUOTA_ORDER",
    "WINDOWS",
    "ClaimError",
    "parse_claims",
    "serialize_claims",
    "validate_claims",
]

#: Member order of the canonical serialisation (section 5 table order).
CLAIM_ORDER = (
    "jti", "tid", "iat", "exp", "prv", "key", "kref", "url", "max", "ext", "rate", "conc",
    "models", "paths", "origins", "ips", "mtok", "mtok_mode", "uid", "bud", "uq", "ssec",
)  # fmt: skip
#: Members of ``bud`` (rule 5.1.20) and of each ``uq`` entry (rule 5.1.21), in canonical order.
BUDGET_ORDER = ("tok", "cost")
QUOTA_ORDER = ("w", "calls", "tok", "cost")
#: Windows of an end-user quota: UTC calendar day, UTC calendar month, all time.
WINDOWS = ("day", "month", "all")
#: Most ``uq`` entries: one per window.
MAX_QUOTAS = 3
_REQUIRED = ("jti", "tid", "iat", "exp", "prv")

#: Every integer in the claims is below 2^53 so that JavaScript minters and verifiers agree exactly.
MAX_SAFE_INT = 2**53 - 1
#: `rate.n` and `rate.s` upper bound: one year of seconds.
MAX_RATE = 86400 * 365
#: `conc` upper bound: in-flight requests of one token.
MAX_CONCURRENT = 10_000
#: `ssec` upper bound (rule 5.1.22): one day of seconds; providers end their sessions long before.
MAX_SESSION_SECONDS = 86_400
#: Longest provider key accepted (bytes of printable ASCII).
MAX_KEY_CHARS = 1024
MAX_MODELS = 64
MAX_MODEL_CHARS = 256
MAX_UID_CHARS = 128
MAX_URL_CHARS = 2048

_JTI = re.compile(r"[0-9a-f]{32}")
_TENANT = re.compile(r"[A-Za-z0-9._-]{1,64}")
_PROVIDER = re.compile(r"[a-z0-9_-]{1,32}")
_PRINTABLE = re.compile(r"[\x20-\x7e]+")
_CIDR_PREFIX = re.compile(r"0|[1-9][0-9]{0,2}")
_KEY_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")
# C0 controls, DEL and C1 controls (rule 5.1.3).
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# "/" then visible ASCII except "#" (0x23) and "?" (0x3f) (rule 5.1.14).
_PATH = re.compile(r"/[\x21\x22\x24-\x3e\x40-\x7e]*")
_ORIGIN = re.compile(
    r"(https?)://(?:([a-z0-9_-]{1,63}(?:\.[a-z0-9_-]{1,63})*)|\[([0-9a-f:]+)\])(?::([1-9][0-9]{0,4}))?"
)
_DEFAULT_PORTS = {"http": 80, "https": 443}
# RFC 3986 unreserved and reserved characters plus "%".
_URI_CHARS = frozenset(string.ascii_letters + string.digits + "-._~:/?#[]@!$&'()*+,;=%")
_HOST_LABEL = re.compile(r"[A-Za-z0-9_-]{1,63}")
_PORT = re.compile(r"[0-9]{1,5}")
_BROKEN_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")


class ClaimError(ValueError):
    """A claim violates section 5. ``member`` names it (``"rate.n"``)."""

    def __init__(self, member: str, problem: str) -> None:
        self.member = member
        self.problem = problem
        super().__init__(f"{member}: {problem}")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _int(claims: Mapping[str, Any], name: str, lo: int, hi: int) -> None:
    v = claims[name]
    if not _is_int(v) or not lo <= v <= hi:
        raise ClaimError(name, f"must be an integer from {lo} to {hi}")


def _string(v: Any, name: str) -> str:
    if not isinstance(v, str):
        raise ClaimError(name, "must be a string")
    try:
        v.encode("utf-8")
    except UnicodeEncodeError as exc:
        # Lone surrogates (possible from "\ud800" escapes) have no UTF-8 form.
        raise ClaimError(name, "must be valid Unicode") from exc
    return v


def _string_list(claims: Mapping[str, Any], name: str, max_items: int | None = None) -> list[str]:
    v = claims[name]
    if not isinstance(v, list) or not v:
        raise ClaimError(name, "must be a non-empty array of strings")
    if max_items is not None and len(v) > max_items:
        raise ClaimError(name, f"must have at most {max_items} entries")
    return [_string(item, f"{name}[{i}]") for i, item in enumerate(v)]


def ipv6_text(packed: bytes) -> str:
    """RFC 5952 section 4 text of a 16-byte IPv6 address (rule 5.1.16.2): lower-case hex, no leading
    zeros, the first longest run of two or more zero groups as ``::``, never a dotted quad."""
    groups = [int.from_bytes(packed[i : i + 2], "big") for i in range(0, 16, 2)]
    best_start, best_len = -1, 1
    i = 0
    while i < 8:
        if groups[i] == 0:
            j = i
            while j < 8 and groups[j] == 0:
                j += 1
            if j - i > best_len:
                best_start, best_len = i, j - i
            i = j
        else:
            i += 1
    hexes = [f"{g:x}" for g in groups]
    if best_start < 0:
        return ":".join(hexes)
    return ":".join(hexes[:best_start]) + "::" + ":".join(hexes[best_start + best_len :])


def _canonical_ipv6(text: str) -> Optional[ipaddress.IPv6Address]:
    """The address if ``text`` is its canonical RFC 5952 form (no zone, no dotted quad), else None."""
    if "%" in text or "." in text:
        return None
    try:
        addr = ipaddress.IPv6Address(text)
    except ValueError:
        return None
    return addr if ipv6_text(addr.packed) == text else None


def is_canonical_cidr(text: str) -> bool:
    """Rule 5.1.16: canonical address, decimal prefix without leading zeros, no host bits, not mapped."""
    addr_text, sep, prefix_text = text.partition("/")
    if not sep or not _CIDR_PREFIX.fullmatch(prefix_text):
        return False
    addr: Union[ipaddress.IPv4Address, ipaddress.IPv6Address, None]
    if ":" in addr_text:
        addr = _canonical_ipv6(addr_text)
        if addr is None or addr.ipv4_mapped is not None:
            return False
    else:
        try:
            addr = ipaddress.IPv4Address(addr_text)
        except ValueError:
            return False
        if str(addr) != addr_text:
            return False
    prefix = int(prefix_text)
    if prefix > addr.max_prefixlen:
        return False
    return int(addr) & ((1 << (addr.max_prefixlen - prefix)) - 1) == 0


def is_origin(text: str) -> bool:
    """Rule 5.1.15: an origin exactly as browsers serialise it (lower case, no default port, no path)."""
    m = _ORIGIN.fullmatch(text)
    if m is None:
        return False
    scheme, v6, port = m.group(1), m.group(3), m.group(4)
    if v6 is not None and _canonical_ipv6(v6) is None:
        return False
    return port is None or (int(port) <= 65535 and int(port) != _DEFAULT_PORTS[scheme])


def is_path(text: str) -> bool:
    """Rule 5.1.14: "/" then visible ASCII without "?" and "#"."""
    return _PATH.fullmatch(text) is not None


def _text(v: Any, name: str, max_len: int) -> str:
    """Rule 5.1.3: Unicode text without control characters, 1 to ``max_len`` scalar values."""
    text = _string(v, name)
    if not 1 <= len(text) <= max_len or _CONTROL.search(text):
        raise ClaimError(name, f"must be 1 to {max_len} characters without control characters")
    return text


def _check_url(text: str) -> None:
    """RFC 3986 absolute https URL with a host, no user info and no fragment (the relay's exact rule)."""
    bad = ClaimError("url", "must be an absolute https:// URL with a host, without credentials or fragment")
    if len(text.encode("utf-8")) > MAX_URL_CHARS or not text.startswith("https://"):
        raise bad
    rest = text[len("https://") :]
    if any(c not in _URI_CHARS or c == "#" for c in rest):
        raise bad
    end = next((i for i, c in enumerate(rest) if c in "/?"), len(rest))
    authority, tail = rest[:end], rest[end:]
    # Credentials belong in `key`; an "@" in the authority is also the classic way to disguise a host.
    if "@" in authority:
        raise bad
    port: Optional[str] = None
    if authority.startswith("["):
        inside, closed, after = authority[1:].partition("]")
        if not closed or "%" in inside or (after and not after.startswith(":")):
            raise bad
        try:
            ipaddress.IPv6Address(inside)
        except ValueError:
            raise bad from None
        port = after[1:] if after else None
    else:
        host, colon, after = authority.partition(":")
        port = after if colon else None
        if not (0 < len(host) <= 253 and all(_HOST_LABEL.fullmatch(label) for label in host.split("."))):
            raise bad
    if port is not None and not (_PORT.fullmatch(port) and 1 <= int(port) <= 65535):
        raise bad
    if _BROKEN_ESCAPE.search(tail):
        raise bad


def _amount(v: Any, name: str) -> None:
    """Rule 5.1.4 for spend amounts: an integer from 1 to 2^53-1."""
    if not _is_int(v) or not 1 <= v <= MAX_SAFE_INT:
        raise ClaimError(name, f"must be an integer from 1 to {MAX_SAFE_INT}")


def _check_bud(bud: Any) -> None:
    """Rule 5.1.20: ``{"tok": n, "cost": n}``, at least one, nothing else."""
    if not isinstance(bud, Mapping):
        raise ClaimError("bud", 'must be an object {"tok": tokens, "cost": micro-units}')
    for name in bud:
        if name not in BUDGET_ORDER:
            raise ClaimError(f"bud.{name}", "unknown budget member (only tok and cost)")
    if not bud:
        raise ClaimError("bud", 'must hold tok and/or cost (leave bud out for "no budget")')
    for name in bud:
        _amount(bud[name], f"bud.{name}")


def _check_uq(claims: Mapping[str, Any]) -> None:
    """Rule 5.1.21: 1 to 3 quotas ``{"w", "calls", "tok", "cost"}`` on distinct windows, with ``uid``."""
    uq = claims["uq"]
    if not isinstance(uq, list) or not 1 <= len(uq) <= MAX_QUOTAS:
        raise ClaimError("uq", f"must be an array of 1 to {MAX_QUOTAS} quotas")
    seen: set[str] = set()
    for i, quota in enumerate(uq):
        at = f"uq[{i}]"
        if not isinstance(quota, Mapping):
            raise ClaimError(at, 'must be an object {"w": window, "calls": n, "tok": n, "cost": n}')
        for name in quota:
            if name not in QUOTA_ORDER:
                raise ClaimError(f"{at}.{name}", "unknown quota member (only w, calls, tok and cost)")
        w = quota.get("w")
        if not isinstance(w, str) or w not in WINDOWS:
            raise ClaimError(f"{at}.w", 'is required and must be "day", "month" or "all"')
        if w in seen:
            raise ClaimError(f"{at}.w", f"window {w!r} appears twice")
        seen.add(w)
        limits = [name for name in QUOTA_ORDER[1:] if name in quota]
        if not limits:
            raise ClaimError(at, "must set at least one of calls, tok and cost")
        for name in limits:
            _amount(quota[name], f"{at}.{name}")
    if "uid" not in claims:
        # Quotas are counted per (tenant, uid, window): without a uid there is nobody to count.
        raise ClaimError("uq", "is only allowed together with uid")


def validate_claims(claims: Mapping[str, Any]) -> None:
    """Check a claims object against section 5; raise :class:`ClaimError` on the first violation."""
    if not isinstance(claims, Mapping):
        raise ClaimError("claims", "must be a JSON object")
    for name in claims:
        if name not in CLAIM_ORDER:
            raise ClaimError(str(name), "unknown claim member")
    for name in _REQUIRED:
        if name not in claims:
            raise ClaimError(name, "is required")

    if not _JTI.fullmatch(_string(claims["jti"], "jti")):
        raise ClaimError("jti", "must be 32 lowercase hex characters")
    if not _TENANT.fullmatch(_string(claims["tid"], "tid")):
        raise ClaimError("tid", "must be 1 to 64 characters from A-Z a-z 0-9 . _ -")
    _int(claims, "iat", 0, MAX_SAFE_INT)
    _int(claims, "exp", 0, MAX_SAFE_INT)
    if claims["exp"] <= claims["iat"]:
        raise ClaimError("exp", "must be after iat")
    if not _PROVIDER.fullmatch(_string(claims["prv"], "prv")):
        raise ClaimError("prv", "must be 1 to 32 characters from a-z 0-9 _ -")

    if ("key" in claims) == ("kref" in claims):
        raise ClaimError("key", "exactly one of key and kref must be present")
    if "key" in claims:
        key = _string(claims["key"], "key")
        if not _PRINTABLE.fullmatch(key) or len(key) > MAX_KEY_CHARS:
            raise ClaimError("key", f"must be 1 to {MAX_KEY_CHARS} printable ASCII characters")
    if "kref" in claims and not _KEY_NAME.fullmatch(_string(claims["kref"], "kref")):
        raise ClaimError("kref", "must be a key name of 1 to 64 characters from A-Z a-z 0-9 . _ -")
    if "url" in claims:
        _check_url(_string(claims["url"], "url"))
    if "max" in claims:
        _int(claims, "max", 1, MAX_SAFE_INT)

    if "ext" in claims:
        ext = claims["ext"]
        if not isinstance(ext, Mapping):
            raise ClaimError("ext", "must be an object")
        for name in ext:
            if name != "rep_m":
                raise ClaimError(f"ext.{name}", "unknown extension member (only rep_m is defined)")
        if "rep_m" not in ext:
            raise ClaimError("ext", 'must hold rep_m (leave ext out for "no extension")')
        _text(ext["rep_m"], "ext.rep_m", MAX_MODEL_CHARS)

    if "rate" in claims:
        rate = claims["rate"]
        if not isinstance(rate, Mapping) or set(rate) != {"n", "s"}:
            raise ClaimError("rate", 'must be an object {"n": calls, "s": seconds}')
        _int(rate, "n", 1, MAX_RATE)
        _int(rate, "s", 1, MAX_RATE)
    if "conc" in claims:
        _int(claims, "conc", 1, MAX_CONCURRENT)

    if "models" in claims:
        for i, model in enumerate(_string_list(claims, "models", MAX_MODELS)):
            _text(model, f"models[{i}]", MAX_MODEL_CHARS)
    for name, entry_ok, example in (
        ("paths", is_path, '"/chat/completions" (no query or fragment)'),
        ("origins", is_origin, '"https://app.example.com" (lower case, no default port, no path)'),
        ("ips", is_canonical_cidr, '"203.0.113.0/24" or "2001:db8::/32" (canonical, no host bits)'),
    ):
        if name in claims:
            for i, entry in enumerate(_string_list(claims, name)):
                if not entry_ok(entry):
                    raise ClaimError(f"{name}[{i}]", f"{entry!r} is not valid; expected e.g. {example}")

    if "mtok" in claims:
        _int(claims, "mtok", 1, MAX_SAFE_INT)
    if "mtok_mode" in claims:
        if claims["mtok_mode"] not in ("clamp", "reject"):
            raise ClaimError("mtok_mode", 'must be "clamp" or "reject"')
        if "mtok" not in claims:
            raise ClaimError("mtok_mode", "is only allowed together with mtok")
    if "uid" in claims:
        # Rule 5.1.18: printable ASCII, for minters and verifiers alike (it is written into access logs).
        uid = _string(claims["uid"], "uid")
        if not _PRINTABLE.fullmatch(uid) or len(uid) > MAX_UID_CHARS:
            raise ClaimError("uid", f"must be 1 to {MAX_UID_CHARS} printable ASCII characters")
    if "bud" in claims:
        _check_bud(claims["bud"])
    if "uq" in claims:
        _check_uq(claims)
    if "ssec" in claims:
        _int(claims, "ssec", 1, MAX_SESSION_SECONDS)


def serialize_claims(claims: Mapping[str, Any]) -> str:
    """The canonical claims JSON: members in table order, compact, minimal escaping, UTF-8 text.

    ``json.dumps`` with ``ensure_ascii=False`` escapes exactly what section 5 asks (``"``, ``\\``, short
    forms for ``\\b \\f \\n \\r \\t``, ``\\u00xx`` in lowercase hex for other controls) and nothing else.
    """
    validate_claims(claims)
    ordered: dict[str, Any] = {name: claims[name] for name in CLAIM_ORDER if name in claims}
    if "rate" in ordered:
        ordered["rate"] = {"n": ordered["rate"]["n"], "s": ordered["rate"]["s"]}
    if "ext" in ordered:
        ordered["ext"] = dict(ordered["ext"])
    if "bud" in ordered:
        ordered["bud"] = {name: ordered["bud"][name] for name in BUDGET_ORDER if name in ordered["bud"]}
    if "uq" in ordered:
        # Members in rule 5.1.21 order; the entries keep the order they were given (never sorted).
        ordered["uq"] = [{name: q[name] for name in QUOTA_ORDER if name in q} for q in ordered["uq"]]
    return json.dumps(ordered, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def parse_claims(plaintext: bytes) -> dict[str, Any]:
    """Parse and validate decrypted claims; raise :class:`ClaimError` for anything outside section 5."""
    try:
        claims = loads_strict(plaintext.decode("utf-8"))
    except (UnicodeDecodeError, JsonRuleError):
        raise ClaimError("claims", "not UTF-8 JSON following section 7.1") from None
    validate_claims(claims)
    return claims  # type: ignore[no-any-return]  # validate_claims checked it is an object
