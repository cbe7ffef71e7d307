"""Minting ecc tokens (docs/token-format.md section 10): the claims signed with the backend's P-256 key
(ECDSA-SHA256, RFC 6979 nonce, low S), then sealed to the relay's public key with HPKE.

:func:`seal_ecc` is the deterministic "from parts" core: ``ikm_e`` (and, for tests, the signature) are
injected, so the shared vectors pin whole tokens; :class:`~relayapi.token.TokenGenerator` draws ``ikm_e``
fresh for every token. The HPKE itself lives in :mod:`relayapi._hpke`; the claim rules in
:mod:`relayapi.claims`. The SDK only mints ecc tokens: opening one takes the relay's private key.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Optional

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from . import _b64, _hpke
from ._rai_fields import KID
from .claims import ClaimError, serialize_claims

__all__ = ["IKM_E_BYTES", "SIGNATURE_BYTES", "ecc_header", "ecc_token_length", "seal_ecc", "sign"]

VERSION = 0x01
MODE_ECC = 0x02
#: ``ikm_e``: the input of the ephemeral key's DeriveKeyPair, fresh from the CSPRNG for every token.
IKM_E_BYTES = 32
#: ``r || s``, each 32 bytes big-endian.
SIGNATURE_BYTES = 64
ENC_BYTES = 65
TAG_BYTES = 16
MAX_TOKEN_CHARS = 4096
_HALF_ORDER = (_hpke.P256_ORDER - 1) // 2


def ecc_header(relay_key_id: str, signer_id: str) -> bytes:
    """``0x01 || 0x02 || len(rkid) || rkid || len(skid) || skid`` (section 10.2)."""
    for kid in (relay_key_id, signer_id):
        if not KID.fullmatch(kid):
            raise ValueError("key ids must be 1 to 32 characters from A-Z a-z 0-9 . _ -")
    rkid, skid = relay_key_id.encode("ascii"), signer_id.encode("ascii")
    return bytes((VERSION, MODE_ECC, len(rkid))) + rkid + bytes((len(skid),)) + skid


def ecc_token_length(header_len: int, claims_len: int) -> int:
    """Length in bytes of an ecc token with this header and ``claims_len`` bytes of claims JSON."""
    blob = header_len + ENC_BYTES + SIGNATURE_BYTES + claims_len + TAG_BYTES
    return len("rt1.") + (4 * blob + 2) // 3


def sign(key: ec.EllipticCurvePrivateKey, message: bytes) -> bytes:
    """ECDSA-P256-SHA256 over ``message`` as the fixed 64 bytes ``r || s``, with low S (section 10.1).

    The nonce is RFC 6979's, so the same key and message always give the same signature (the vectors
    rely on it) and no weak random source can leak the key. A high ``s`` is replaced by ``n - s``: the
    same signature in the one spelling verifiers accept.
    """
    der = key.sign(message, ec.ECDSA(hashes.SHA256(), deterministic_signing=True))
    r, s = decode_dss_signature(der)
    if s > _HALF_ORDER:
        s = _hpke.P256_ORDER - s
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def seal_ecc(
    claims: Mapping[str, Any],
    *,
    relay_key_id: str,
    relay_public_key: ec.EllipticCurvePublicKey,
    signer_id: str,
    signing_key: ec.EllipticCurvePrivateKey,
    ikm_e: bytes,
    sig: Optional[bytes] = None,
) -> str:
    """Mint an ecc token from parts (section 10.3 steps 3-7): canonical claims, signed, sealed.

    Deterministic, for the shared vectors; ``sig`` replaces the signature only in tests. Raises
    ``ClaimError`` for claims outside section 5 or a token over the 4096-byte limit (member ``"token"``),
    and ``ValueError`` for a malformed key id, ``ikm_e`` or ``sig``.
    """
    if len(ikm_e) != IKM_E_BYTES or (sig is not None and len(sig) != SIGNATURE_BYTES):
        raise ValueError("ikm_e must be 32 bytes and sig 64 bytes")
    plaintext = serialize_claims(claims).encode("utf-8")
    header = ecc_header(relay_key_id, signer_id)
    length = ecc_token_length(len(header), len(plaintext))
    if length > MAX_TOKEN_CHARS:
        # Section 6 step 8 (and 10.2): every verifier refuses longer text unread.
        raise ClaimError("token", f"the claims make the token {length} bytes long, over {MAX_TOKEN_CHARS}")
    signature = sign(signing_key, header + plaintext) if sig is None else sig
    sealed = _hpke.seal_base(relay_public_key, header, b"", signature + plaintext, ikm_e=ikm_e)
    return "rt1." + _b64.encode(header + sealed)
