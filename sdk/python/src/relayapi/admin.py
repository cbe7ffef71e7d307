"""Signing admin API requests (docs/admin-api.md). Pure functions; the clock is an argument.

Symmetric tenants sign with an admin key derived from the tenant key under its own HKDF label, so an
admin signature can never be confused with a token and reveals nothing about the tenant key. Ecc tenants
sign the same string with the backend's P-256 signing key (``RelayAPI-ECDSA-P256-SHA256``); the string
starts with an upper-case method name and token signatures cover bytes starting 0x01 0x02, so neither
signature can pass for the other.
"""

from __future__ import annotations

import hashlib
import hmac

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from . import _b64
from .ecc_token import sign

__all__ = [
    "ECDSA_SCHEME",
    "SCHEME",
    "admin_key",
    "authorization_header",
    "ecdsa_authorization_header",
    "string_to_sign",
]

SCHEME = "RelayAPI-HMAC-SHA256"
ECDSA_SCHEME = "RelayAPI-ECDSA-P256-SHA256"
ADMIN_INFO = b"relayapi admin v1"


def admin_key(tenant_key: bytes) -> bytes:
    """``HKDF-SHA256(IKM=tenant_key, salt="", info="relayapi admin v1", L=32)``."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=b"", info=ADMIN_INFO).derive(tenant_key)


def string_to_sign(method: str, path: str, ts: int, body: bytes) -> bytes:
    """``METHOD \\n PATH \\n TS \\n hex(SHA-256(body))``; ``path`` is the request target as sent."""
    return f"{method.upper()}\n{path}\n{ts}\n{hashlib.sha256(body).hexdigest()}".encode()


def authorization_header(
    *, key_id: str, tenant_key: bytes, method: str, path: str, body: bytes, now: int
) -> str:
    """The ``Authorization`` header value for one admin request signed at UTC second ``now``."""
    mac = hmac.new(admin_key(tenant_key), string_to_sign(method, path, now, body), hashlib.sha256).digest()
    return f"{SCHEME} kid={key_id},ts={now},sig={_b64.encode(mac)}"


def ecdsa_authorization_header(
    *, signer_id: str, signing_key: ec.EllipticCurvePrivateKey, method: str, path: str, body: bytes, now: int
) -> str:
    """The ``Authorization`` header of an ecc tenant's admin request: ECDSA-P256-SHA256 (``r || s``, low S)
    by the backend's signing key over :func:`string_to_sign`, at UTC second ``now``."""
    sig = sign(signing_key, string_to_sign(method, path, now, body))
    return f"{ECDSA_SCHEME} kid={signer_id},ts={now},sig={_b64.encode(sig)}"
