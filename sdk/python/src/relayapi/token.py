"""Token format v1: sealing claims into ``rt1.`` tokens and opening them again (docs/token-format.md).

The symmetric method's byte layout, key derivation and verification steps live here; the ecc method's
sealing in :mod:`relayapi.ecc_token`; the claim rules in :mod:`relayapi.claims`. :func:`seal` is the
deterministic "from parts" core (salt injected, like fernet's ``_encrypt_from_parts``);
:class:`TokenGenerator` is the public face: it mints with the method its `.rai` names, drawing ``jti``
and the salt (or the ecc ephemeral key's ``ikm_e``) from the OS CSPRNG and reading the clock on every call.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Callable, NamedTuple, Optional, Union

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from . import _b64
from ._spend import budget_claim, quotas_claim
from .claims import (
    MAX_CONCURRENT,
    MAX_KEY_CHARS,
    MAX_MODEL_CHARS,
    MAX_RATE,
    MAX_SAFE_INT,
    MAX_SESSION_SECONDS,
    MAX_UID_CHARS,
    ClaimError,
    parse_claims,
    serialize_claims,
)
from .config import AnyConfig, ConfigSource, EccConfig, RaiKey, load_config
from .ecc_config import EccSigningKey
from .ecc_token import IKM_E_BYTES, seal_ecc
from .errors import (
    ConfigError,
    InvalidArgumentError,
    InvalidTokenError,
    TokenExpiredError,
    TokenLifetimeTooLongError,
    TokenNotYetValidError,
)
from .options import ExtInfo, TokenOptions
from .options import resolve as resolve_options

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = [
    "TOKEN_PREFIX",
    "MintedToken",
    "TokenGenerator",
    "check_time",
    "open_token",
    "seal",
    "token_length",
]

TOKEN_PREFIX = "rt1."  # noqa: S105  (the format marker, not a secret)
VERSION = 0x01
MODE_SYMMETRIC = 0x01
SALT_BYTES = 16
TAG_BYTES = 16
JTI_BYTES = 16
#: Longest token text accepted; checked before any decoding so huge input costs nothing.
MAX_TOKEN_CHARS = 4096
HKDF_INFO = b"relayapi token v1"
_KID = re.compile(r"[A-Za-z0-9._-]{1,32}")
# Minting hygiene beyond section 5 (which leaves these formats open); see _build_claims.
_KEY_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")
_ENDPOINT = re.compile(r"/[\x21-\x7e]*")
# A browser origin: scheme "://" host [":" port], nothing after it (an Origin header never has a path).
_ORIGIN = re.compile(r"https?://(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?")
_PRINTABLE = re.compile(r"[\x20-\x7e]+")
_MIN_BLOB = 3 + 1 + SALT_BYTES + TAG_BYTES


def _derive(key: bytes, salt: bytes) -> tuple[bytes, bytes]:
    okm = HKDF(algorithm=hashes.SHA256(), length=44, salt=salt, info=HKDF_INFO).derive(key)
    return okm[:32], okm[32:]


def token_length(kid_len: int, claims_len: int) -> int:
    """Length in bytes of a token with a ``kid_len``-byte kid and ``claims_len`` bytes of claims JSON."""
    blob = 3 + kid_len + SALT_BYTES + claims_len + TAG_BYTES
    return len(TOKEN_PREFIX) + (4 * blob + 2) // 3


def seal(claims: Mapping[str, Any], *, kid: str, key: bytes, salt: bytes) -> str:
    """Mint a token from parts: canonical claims sealed under ``key`` with the given ``salt``.

    Deterministic, for the shared vectors. Raises ``ClaimError`` for claims outside section 5 or a token
    over the 4096-byte limit (member ``"token"``), and ``ValueError`` for a malformed kid, key or salt.
    Real tokens come from :meth:`TokenGenerator.create_token`.
    """
    if not _KID.fullmatch(kid):
        raise ValueError("kid must be 1 to 32 characters from A-Z a-z 0-9 . _ -")
    if len(key) != 32 or len(salt) != SALT_BYTES:
        raise ValueError("key must be 32 bytes and salt 16 bytes")
    plaintext = serialize_claims(claims).encode("utf-8")
    kid_b = kid.encode("ascii")
    length = token_length(len(kid_b), len(plaintext))
    if length > MAX_TOKEN_CHARS:
        # Section 6 step 8: every verifier refuses longer text unread, so such a token is never returned.
        raise ClaimError("token", f"the claims make the token {length} bytes long, over {MAX_TOKEN_CHARS}")
    header = bytes((VERSION, MODE_SYMMETRIC, len(kid_b))) + kid_b + salt
    cek, nonce = _derive(key, salt)
    return TOKEN_PREFIX + _b64.encode(header + AESGCM(cek).encrypt(nonce, plaintext, header))


def open_token(token: str, keys: Iterable[RaiKey], tenant_id: str) -> dict[str, Any]:
    """Verify a token's authenticity and claims (section 7, steps 1-6) and return its claims.

    Every failure raises the same :class:`InvalidTokenError`. Time is *not* checked here: see
    :func:`check_time`.
    """
    try:
        return _open(token, keys, tenant_id)
    except (ClaimError, InvalidTag, ValueError, TypeError):
        pass
    # Raised outside the except block so no chained cause leaks the reason into tracebacks or logs.
    raise InvalidTokenError


def _open(token: str, keys: Iterable[RaiKey], tenant_id: str) -> dict[str, Any]:
    if not isinstance(token, str) or len(token) > MAX_TOKEN_CHARS or not token.startswith(TOKEN_PREFIX):
        raise ValueError
    blob = _b64.decode(token[len(TOKEN_PREFIX) :])
    if blob is None or len(blob) < _MIN_BLOB or blob[0] != VERSION or blob[1] != MODE_SYMMETRIC:
        raise ValueError
    kid_len = blob[2]
    header_len = 3 + kid_len + SALT_BYTES
    if not 1 <= kid_len <= 32 or len(blob) < header_len + TAG_BYTES:
        raise ValueError
    kid = blob[3 : 3 + kid_len].decode("ascii")
    key = next((k.key for k in keys if k.key_id == kid), None)
    if key is None:
        raise ValueError
    header, sealed = blob[:header_len], blob[header_len:]
    cek, nonce = _derive(key, header[-SALT_BYTES:])
    claims = parse_claims(AESGCM(cek).decrypt(nonce, sealed, header))
    if claims["tid"] != tenant_id:
        raise ValueError
    return claims


def check_time(
    claims: Mapping[str, Any], now: int, leeway: int = 0, max_lifetime: Optional[int] = None
) -> None:
    """Section 7 steps 7-9 for authentic claims, in that order: raise if not yet valid or expired at
    ``now``, or (only when ``max_lifetime`` is given) if ``exp - iat`` exceeds it."""
    if claims["iat"] > now + leeway:
        raise TokenNotYetValidError(claims)
    if now >= claims["exp"] + leeway:
        raise TokenExpiredError(claims)
    if max_lifetime is not None and claims["exp"] - claims["iat"] > max_lifetime:
        raise TokenLifetimeTooLongError(claims)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _int_arg(name: str, value: Any, lo: int, hi: int) -> int:
    if not _is_int(value) or not lo <= value <= hi:
        raise InvalidArgumentError(name, f"must be an integer from {lo} to {hi}, got {value!r}")
    return int(value)


def _list_arg(name: str, value: Any, entry_ok: Callable[[str], bool], example: str) -> list[str]:
    # A bare string is a sequence of characters; accepting it would silently allow "g", "p", "t"...
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise InvalidArgumentError(name, f"must be a list of strings, got {type(value).__name__}")
    if not value or not all(isinstance(v, str) for v in value):
        raise InvalidArgumentError(name, "must be a non-empty list of strings")
    for v in value:
        if not entry_ok(v):
            raise InvalidArgumentError(name, f"{v!r} is not valid; expected e.g. {example}")
    return list(value)


def _is_model(v: str) -> bool:
    return 1 <= len(v) <= MAX_MODEL_CHARS


def _is_endpoint(v: str) -> bool:
    return bool(_ENDPOINT.fullmatch(v)) and "?" not in v and "#" not in v


def _is_origin(v: str) -> bool:
    return bool(_ORIGIN.fullmatch(v))


def _is_any(_v: str) -> bool:
    return True  # the claim validator checks CIDR syntax and names the bad entry


def _parse_ext(ext_info: ExtInfo) -> Optional[dict[str, Any]]:
    if ext_info is None or ext_info == "":
        return None
    if isinstance(ext_info, str):
        try:
            ext = json.loads(ext_info)
        except ValueError as exc:
            raise InvalidArgumentError(
                "ext_info", 'must be "" or a JSON object such as {"rep_m": "gpt-4o"}'
            ) from exc
    else:
        ext = ext_info
    if not isinstance(ext, Mapping):
        raise InvalidArgumentError("ext_info", "must be a JSON object")
    for name in ext:
        if name != "rep_m":
            raise InvalidArgumentError("ext_info", f"unknown member {name!r}: only rep_m is supported")
    return dict(ext) or None


_CLAIM_TO_PARAM = {
    "key": "api_key", "kref": "key_ref", "url": "base_url", "max": "max_calls", "ext": "ext_info",
    "rate": "rate_limit", "conc": "max_concurrent", "models": "allowed_models", "paths": "allowed_endpoints",
    "origins": "allowed_origins", "ips": "allowed_ips", "mtok": "max_tokens", "mtok_mode": "max_tokens_mode",
    "uid": "user_id", "prv": "provider", "exp": "expire_seconds", "bud": "budget_tokens", "uq": "user_quotas",
    "ssec": "session_seconds",
}  # fmt: skip


def _check_key_in_force(key: Union[RaiKey, EccSigningKey], now: int) -> None:
    """Refuse to mint with a key outside its validity window: the relay would refuse every token."""
    if key.in_force(now):
        return
    if key.not_before is not None and now < key.not_before:
        raise ConfigError(
            "crypto.not_before", f"key {key.key_id!r} is not valid before {key.not_before}; now is {now}"
        )
    raise ConfigError("crypto.not_after", f"key {key.key_id!r} was retired at {key.not_after}; now is {now}")


class MintedToken(NamedTuple):
    """A fresh token and the claims it carries (``claims["jti"]`` is its id for the admin calls)."""

    token: str
    claims: dict[str, Any]


_CANNOT_OPEN = (
    "an ecc backend-side .rai cannot open tokens (they are sealed to the relay's key); keep the claims "
    "create_token_with_claims(...) returns, and pass claims['jti'] to the admin calls"
)


class TokenGenerator:
    """Mints (and, for the symmetric method, decodes) tokens with the keys of one `.rai` config.

    ``config`` is a `.rai` path, the parsed dict, or a loaded config; problems raise ``ConfigError``. The
    method follows from the file: a symmetric `.rai` mints with its tenant key, an ecc backend-side `.rai`
    signs with its signing key and seals to the relay's public key (docs/client-config.md).
    """

    def __init__(self, config: ConfigSource) -> None:
        self.config: AnyConfig = load_config(config)

    def create_token(self, **options: Unpack[TokenOptions]) -> str:
        """Mint a fresh token; the current UTC second, a random ``jti`` and fresh randomness every call.

        Options are keyword-only (:class:`~relayapi.options.TokenOptions`): exactly one of ``api_key``
        (the provider key, carried encrypted) and ``key_ref`` (the name of a key held by the relay) is
        required. ``max_calls=None`` means unlimited; ``rate_limit`` is ``(calls, seconds)``. Raises
        :class:`InvalidArgumentError` naming the offending option (also for an unknown option), and
        ``ConfigError`` when the `.rai` key is outside its validity window.
        """
        return self.create_token_with_claims(**options).token

    def create_token_with_claims(self, **options: Unpack[TokenOptions]) -> MintedToken:
        """Mint exactly as :meth:`create_token` does and also return the claims the token carries.

        Returns ``MintedToken(token, claims)``; ``claims["jti"]`` is the id ``get_usage`` and ``revoke``
        take, the only way to learn it with an ecc backend-side `.rai`, which cannot open its own tokens.
        """
        ecc = isinstance(self.config, EccConfig)
        return self._mint_from_parts(
            now=int(time.time()),
            jti=os.urandom(JTI_BYTES).hex(),
            salt=None if ecc else os.urandom(SALT_BYTES),
            ikm_e=os.urandom(IKM_E_BYTES) if ecc else None,
            **options,
        )

    def _create_token_from_parts(
        self,
        *,
        now: int,
        jti: str,
        salt: Optional[bytes] = None,
        ikm_e: Optional[bytes] = None,
        sig: Optional[bytes] = None,
        **options: Any,
    ) -> str:
        """``create_token`` with the clock and randomness injected (tests and vectors only)."""
        return self._mint_from_parts(now=now, jti=jti, salt=salt, ikm_e=ikm_e, sig=sig, **options).token

    def _mint_from_parts(
        self,
        *,
        now: int,
        jti: str,
        salt: Optional[bytes] = None,
        ikm_e: Optional[bytes] = None,
        sig: Optional[bytes] = None,
        **options: Any,
    ) -> MintedToken:
        claims = self._build_claims(now=now, jti=jti, **options)
        config = self.config
        try:
            if isinstance(config, EccConfig):
                _check_key_in_force(config.signer, now)
                if ikm_e is None:
                    raise ValueError("an ecc token needs ikm_e")
                token = seal_ecc(
                    claims,
                    relay_key_id=config.relay_key_id,
                    relay_public_key=config.relay_public_key,
                    signer_id=config.signer.key_id,
                    signing_key=config.signer.private_key,
                    ikm_e=ikm_e,
                    sig=sig,
                )
            else:
                _check_key_in_force(config.key, now)
                if salt is None:
                    raise ValueError("a symmetric token needs a salt")
                token = seal(claims, kid=config.key.key_id, key=config.key.key, salt=salt)
        except ClaimError as exc:
            top = exc.member.split(".")[0].split("[")[0]
            param = "budget_cost" if exc.member == "bud.cost" else _CLAIM_TO_PARAM.get(top, top)
            raise InvalidArgumentError(param, exc.problem) from None
        return MintedToken(token, claims)

    def _build_claims(self, *, now: int, jti: str, **options: Any) -> dict[str, Any]:
        o = resolve_options(options)
        api_key, key_ref, base_url, max_calls = o["api_key"], o["key_ref"], o["base_url"], o["max_calls"]
        expire_seconds, provider, ext_info = o["expire_seconds"], o["provider"], o["ext_info"]
        rate_limit, max_concurrent, user_id = o["rate_limit"], o["max_concurrent"], o["user_id"]
        allowed_models, allowed_endpoints = o["allowed_models"], o["allowed_endpoints"]
        allowed_origins, allowed_ips = o["allowed_origins"], o["allowed_ips"]
        max_tokens, max_tokens_mode = o["max_tokens"], o["max_tokens_mode"]
        _int_arg("now", now, 0, MAX_SAFE_INT)
        expire_seconds = _int_arg("expire_seconds", expire_seconds, 1, MAX_SAFE_INT - now)
        if not isinstance(provider, str):
            raise InvalidArgumentError("provider", 'must be a provider name such as "openai"')
        claims: dict[str, Any] = {
            "jti": jti,
            "tid": self.config.tenant_id,
            "iat": now,
            "exp": now + expire_seconds,
            "prv": provider,
        }
        if (api_key is None) == (key_ref is None):
            raise InvalidArgumentError("api_key", "pass exactly one of api_key and key_ref")
        if api_key is not None:
            if not isinstance(api_key, str) or not api_key:
                raise InvalidArgumentError("api_key", "must be a non-empty string")
            if len(api_key) > MAX_KEY_CHARS:
                raise InvalidArgumentError("api_key", f"must be at most {MAX_KEY_CHARS} characters")
            claims["key"] = api_key
        else:
            if not isinstance(key_ref, str) or not _KEY_NAME.fullmatch(key_ref):
                raise InvalidArgumentError(
                    "key_ref", "must be a key name of 1 to 64 characters from A-Z a-z 0-9 . _ -"
                )
            claims["kref"] = key_ref
        if base_url is not None:
            if isinstance(base_url, str) and ("?" in base_url or "#" in base_url):
                raise InvalidArgumentError("base_url", "must be a base URL without a query or fragment")
            claims["url"] = base_url
        if max_calls is not None:
            claims["max"] = _int_arg("max_calls", max_calls, 1, MAX_SAFE_INT)
        ext = _parse_ext(ext_info)
        if ext is not None:
            claims["ext"] = ext
        if rate_limit is not None:
            if (
                isinstance(rate_limit, (str, bytes))
                or not isinstance(rate_limit, Sequence)
                or len(rate_limit) != 2
            ):
                raise InvalidArgumentError("rate_limit", "must be a (calls, seconds) pair")
            claims["rate"] = {
                "n": _int_arg("rate_limit", rate_limit[0], 1, MAX_RATE),
                "s": _int_arg("rate_limit", rate_limit[1], 1, MAX_RATE),
            }
        if max_concurrent is not None:
            claims["conc"] = _int_arg("max_concurrent", max_concurrent, 1, MAX_CONCURRENT)
        for param, member, value, entry_ok, example in (
            ("allowed_models", "models", allowed_models, _is_model, '"gpt-4o-mini"'),
            ("allowed_endpoints", "paths", allowed_endpoints, _is_endpoint, '"/chat/completions"'),
            ("allowed_origins", "origins", allowed_origins, _is_origin, '"https://app.example.com"'),
            ("allowed_ips", "ips", allowed_ips, _is_any, '"203.0.113.0/24"'),
        ):
            if value is not None:
                claims[member] = _list_arg(param, value, entry_ok, example)
        if max_tokens is not None:
            claims["mtok"] = _int_arg("max_tokens", max_tokens, 1, MAX_SAFE_INT)
        if max_tokens_mode is not None:
            if max_tokens is None:
                raise InvalidArgumentError("max_tokens_mode", "only makes sense together with max_tokens")
            claims["mtok_mode"] = max_tokens_mode
        if user_id is not None:
            # Stricter than the verifier (see claims.validate_claims): the uid ends up in access logs,
            # where control characters could forge log lines.
            if (
                not isinstance(user_id, str)
                or not _PRINTABLE.fullmatch(user_id)
                or len(user_id) > MAX_UID_CHARS
            ):
                raise InvalidArgumentError(
                    "user_id", f"must be 1 to {MAX_UID_CHARS} printable ASCII characters"
                )
            claims["uid"] = user_id
        bud = budget_claim(o["budget_tokens"], o["budget_cost"])
        if bud is not None:
            claims["bud"] = bud
        uq = quotas_claim(o["user_quotas"], user_id)
        if uq is not None:
            claims["uq"] = uq
        if o["session_seconds"] is not None:
            claims["ssec"] = _int_arg("session_seconds", o["session_seconds"], 1, MAX_SESSION_SECONDS)
        return claims

    def decode_token(self, token: str) -> dict[str, Any]:
        """Return the claims of an authentic token minted with any key of this config's tenant.

        Expiry is deliberately not checked, so the id of an expired token can still be used for usage
        queries; use :meth:`verify_token` for a time check. Raises :class:`InvalidTokenError`, and
        :class:`InvalidArgumentError` with an ecc backend-side `.rai`, which cannot open tokens.
        """
        if isinstance(self.config, EccConfig):
            raise InvalidArgumentError("token", _CANNOT_OPEN)
        return open_token(token, self.config.all_keys, self.config.tenant_id)

    def verify_token(self, token: str, *, now: Optional[int] = None, leeway: int = 0) -> dict[str, Any]:
        """Like :meth:`decode_token`, then check validity at ``now`` (default: the current UTC second).

        Raises :class:`InvalidTokenError`, or its subclasses :class:`TokenExpiredError` and
        :class:`TokenNotYetValidError` for authentic tokens outside their lifetime.
        """
        claims = self.decode_token(token)
        check_time(claims, int(time.time()) if now is None else now, leeway)
        return claims
