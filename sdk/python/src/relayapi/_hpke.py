"""HPKE (RFC 9180) base mode, sender side, for DHKEM(P-256, HKDF-SHA256) with HKDF-SHA256 and AES-GCM.

The ecc token method (docs/token-format.md section 10) seals each token to the relay's P-256 key with
this suite and AES-256-GCM. Built on pyca/cryptography's primitives (ECDH, AES-GCM) and the standard
library's HMAC for HKDF's extract and expand, so it runs on every cryptography version the SDK supports
(cryptography's own HPKE module is newer); tests check it against the RFC 9180 vectors in
tests/vectors/hpke-rfc9180.json and against cryptography's HPKE where installed. The ephemeral key is
derived from ``ikm_e`` (RFC 9180 section 7.1.3, ``DeriveKeyPair``) so vectors can pin whole tokens; the
caller draws ``ikm_e`` fresh for every token. Only the sender is here: the SDK never opens a token.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import NamedTuple

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

__all__ = [
    "AEAD_AES_128_GCM",
    "AEAD_AES_256_GCM",
    "P256_ORDER",
    "Context",
    "derive_key_pair",
    "seal_base",
    "serialize_public_key",
    "setup_base_sender",
]

KEM_P256_HKDF_SHA256 = 0x0010
KDF_HKDF_SHA256 = 0x0001
AEAD_AES_128_GCM = 0x0001
AEAD_AES_256_GCM = 0x0002
_AEAD_KEY_BYTES = {AEAD_AES_128_GCM: 16, AEAD_AES_256_GCM: 32}
_NONCE_BYTES = 12
_HASH_BYTES = 32
#: The order n of P-256: private keys are the integers 1..n-1.
P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
_KEM_SUITE = b"KEM" + KEM_P256_HKDF_SHA256.to_bytes(2, "big")
_MODE_BASE = b"\x00"


def _extract(salt: bytes, ikm: bytes) -> bytes:
    # HKDF-Extract (RFC 5869): an empty salt is HashLen zero bytes, which HMAC pads to the same key.
    return hmac.new(salt, ikm, hashlib.sha256).digest()


def _expand(prk: bytes, info: bytes, length: int) -> bytes:
    out, block, counter = b"", b"", 1
    while len(out) < length:
        block = hmac.new(prk, block + info + bytes((counter,)), hashlib.sha256).digest()
        out += block
        counter += 1
    return out[:length]


def _labeled_extract(suite: bytes, salt: bytes, label: bytes, ikm: bytes) -> bytes:
    return _extract(salt, b"HPKE-v1" + suite + label + ikm)


def _labeled_expand(suite: bytes, prk: bytes, label: bytes, info: bytes, length: int) -> bytes:
    return _expand(prk, length.to_bytes(2, "big") + b"HPKE-v1" + suite + label + info, length)


def serialize_public_key(key: ec.EllipticCurvePublicKey) -> bytes:
    """``SerializePublicKey``: the SEC1 uncompressed point, 65 bytes."""
    return key.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)


def derive_key_pair(ikm: bytes) -> ec.EllipticCurvePrivateKey:
    """``DeriveKeyPair(ikm)`` for P-256 (RFC 9180 section 7.1.3: the candidate loop, bitmask 0xff)."""
    prk = _labeled_extract(_KEM_SUITE, b"", b"dkp_prk", ikm)
    for counter in range(256):
        candidate = _labeled_expand(_KEM_SUITE, prk, b"candidate", bytes((counter,)), 32)
        sk = int.from_bytes(candidate, "big")
        if 0 < sk < P256_ORDER:
            return ec.derive_private_key(sk, ec.SECP256R1())
    # Probability about 2^-8192: a broken hash, not bad luck.
    raise ValueError("DeriveKeyPair found no scalar")


class Context(NamedTuple):
    """A sender context after ``SetupBaseS``; ``seal`` takes the sequence number explicitly."""

    key: bytes
    base_nonce: bytes

    def seal(self, aad: bytes, pt: bytes, seq: int = 0) -> bytes:
        nonce = (int.from_bytes(self.base_nonce, "big") ^ seq).to_bytes(_NONCE_BYTES, "big")
        return AESGCM(self.key).encrypt(nonce, pt, aad)


def setup_base_sender(
    pk_r: ec.EllipticCurvePublicKey, info: bytes, *, ikm_e: bytes, aead_id: int = AEAD_AES_256_GCM
) -> tuple[bytes, Context]:
    """``SetupBaseS(pkR, info)`` with the ephemeral key ``DeriveKeyPair(ikm_e)``: ``(enc, context)``."""
    sk_e = derive_key_pair(ikm_e)
    enc = serialize_public_key(sk_e.public_key())
    dh = sk_e.exchange(ec.ECDH(), pk_r)  # the x-coordinate, 32 bytes
    eae_prk = _labeled_extract(_KEM_SUITE, b"", b"eae_prk", dh)
    shared_secret = _labeled_expand(
        _KEM_SUITE, eae_prk, b"shared_secret", enc + serialize_public_key(pk_r), _HASH_BYTES
    )
    suite = (
        b"HPKE"
        + KEM_P256_HKDF_SHA256.to_bytes(2, "big")
        + KDF_HKDF_SHA256.to_bytes(2, "big")
        + aead_id.to_bytes(2, "big")
    )
    context = (
        _MODE_BASE
        + _labeled_extract(suite, b"", b"psk_id_hash", b"")
        + _labeled_extract(suite, b"", b"info_hash", info)
    )
    secret = _labeled_extract(suite, shared_secret, b"secret", b"")
    key = _labeled_expand(suite, secret, b"key", context, _AEAD_KEY_BYTES[aead_id])
    base_nonce = _labeled_expand(suite, secret, b"base_nonce", context, _NONCE_BYTES)
    return enc, Context(key, base_nonce)


def seal_base(pk_r: ec.EllipticCurvePublicKey, info: bytes, aad: bytes, pt: bytes, *, ikm_e: bytes) -> bytes:
    """Single-shot ``SealBase`` with AES-256-GCM: ``enc || ct`` (65 bytes, then the sealed ``pt``)."""
    enc, ctx = setup_base_sender(pk_r, info, ikm_e=ikm_e)
    return enc + ctx.seal(aad, pt)
