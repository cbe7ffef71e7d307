"""The ecc method's backend-side `.rai` (docs/client-config.md, "ecc files", rules E1-E7).

:mod:`relayapi.config` reads the file and its ``server`` part and hands an ecc ``crypto`` object here.
The SDK mints, so it loads the backend-side file (the tenant's signing key and the relay's public key)
and refuses the relay-side file, which holds the relay's private key and belongs on the relay only.
Keys are checked as P-256 keys at load time, so a bad key fails here and never at minting.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Optional

from cryptography.hazmat.primitives.asymmetric import ec

from . import _b64
from ._hpke import P256_ORDER, serialize_public_key
from ._rai_fields import KID, in_window, object_with, window
from .errors import ConfigError

__all__ = ["ECC_METHOD", "EccConfig", "EccSigningKey", "parse_ecc_crypto"]

ECC_METHOD = "ecc-p256"
PRIVATE_KEY_BYTES = 32
PUBLIC_KEY_BYTES = 65
# P-256 (SEC 2): field prime and the curve's b; a = -3.
_P = 0xFFFFFFFF00000001000000000000000000000000FFFFFFFFFFFFFFFFFFFFFFFF
_B = 0x5AC635D8AA3A93E7B3EBBD55769886BC651D06B0CC53B0F63BCE3C3E27D2604B
_BACKEND_FIELDS = {"method", "tenant_id", "signer_id", "signing_key", "relay_key_id", "relay_public_key"}
_RELAY_FIELDS = ("signers", "previous_relay_keys")


@dataclass(frozen=True)
class EccSigningKey:
    """The backend's signing key: its signer id, the key and its validity window (rule E6).

    ``repr`` never shows the key. ``key_id`` is the signer id, the name the relay knows the key by.
    """

    key_id: str
    private_key: ec.EllipticCurvePrivateKey = field(repr=False)
    not_before: Optional[int] = None
    not_after: Optional[int] = None

    def in_force(self, now: int) -> bool:
        """Whether the key may mint at ``now`` (Unix seconds): ``not_before`` included, ``not_after`` not."""
        return in_window(self.not_before, self.not_after, now)


@dataclass(frozen=True)
class EccConfig:
    """A validated ecc backend-side `.rai`: mints tokens for the relay key it names, opens none."""

    scheme: str
    host: str
    port: int
    base_path: str
    tenant_id: str
    signer: EccSigningKey
    relay_key_id: str
    relay_public_key: ec.EllipticCurvePublicKey = field(repr=False)


def parse_ecc_crypto(crypto: Mapping[str, Any], server: Mapping[str, Any], *, file: str) -> EccConfig:
    """Rules E1-E7 for the backend side; ``server`` holds the already checked ``scheme``, ``host``,
    ``port``, ``base_path`` and ``tenant_id``; ``file`` names the file in messages."""
    if not isinstance(crypto, Mapping):
        raise ConfigError("crypto", "must be an object")
    if "relay_private_key" in crypto and "signing_key" in crypto:
        raise ConfigError(
            "crypto", "holds both relay_private_key and signing_key: an ecc file is either relay-side or "
            "backend-side, never both (regenerate the pair with `relayapi gen-rai --method ecc`)",
        )  # fmt: skip
    if "relay_private_key" in crypto:
        raise ConfigError(
            "crypto.relay_private_key",
            f"{file} is the relay-side ecc file (it holds the relay's private key and can open every "
            "token): give it to the relay only (relayapi --rai) and load the backend-side file in the SDK, "
            "the one `relayapi gen-rai --method ecc` wrote with --backend-out",
        )
    for name in _RELAY_FIELDS:
        if name in crypto:
            raise ConfigError(f"crypto.{name}", "is a relay-side field; a backend-side file cannot hold it")
    object_with(crypto, "crypto", _BACKEND_FIELDS, {"not_before", "not_after"})
    signer_id = _id(crypto["signer_id"], "crypto.signer_id")
    relay_key_id = _id(crypto["relay_key_id"], "crypto.relay_key_id")
    if signer_id == relay_key_id:
        raise ConfigError(
            "crypto.signer_id", "must differ from relay_key_id (all ids of a file are distinct)"
        )
    private_key = _private_key(crypto["signing_key"], "crypto.signing_key")
    public_key = _public_key(crypto["relay_public_key"], "crypto.relay_public_key")
    if serialize_public_key(private_key.public_key()) == serialize_public_key(public_key):
        raise ConfigError(
            "crypto.relay_public_key", "is the signing key's own public key: a signing key never doubles as "
            "the relay's decryption key",
        )  # fmt: skip
    not_before, not_after = window(crypto, "crypto")
    return EccConfig(
        scheme=server["scheme"],
        host=server["host"],
        port=server["port"],
        base_path=server["base_path"],
        tenant_id=server["tenant_id"],
        signer=EccSigningKey(signer_id, private_key, not_before, not_after),
        relay_key_id=relay_key_id,
        relay_public_key=public_key,
    )


def _id(value: Any, name: str) -> str:
    if not isinstance(value, str) or not KID.fullmatch(value):
        raise ConfigError(name, "must be 1 to 32 characters from A-Z a-z 0-9 . _ -")
    return value


def _private_key(text: Any, name: str) -> ec.EllipticCurvePrivateKey:
    """Rule E3: canonical unpadded base64url of 32 bytes, a scalar d with 1 <= d < n."""
    raw = _b64.decode(text) if isinstance(text, str) else None
    if raw is None or len(raw) != PRIVATE_KEY_BYTES:
        raise ConfigError(name, "must be a P-256 private key: 32 bytes as unpadded base64url (43 characters)")
    d = int.from_bytes(raw, "big")
    if not 1 <= d < P256_ORDER:
        raise ConfigError(name, "is not a P-256 private key (the scalar must be from 1 to n-1)")
    return ec.derive_private_key(d, ec.SECP256R1())


def _public_key(text: Any, name: str) -> ec.EllipticCurvePublicKey:
    """Rule E4: canonical unpadded base64url of 65 bytes, 0x04 || X || Y with X, Y < p, on the curve."""
    raw = _b64.decode(text) if isinstance(text, str) else None
    if raw is None or len(raw) != PUBLIC_KEY_BYTES or raw[0] != 0x04:
        raise ConfigError(
            name, "must be a P-256 public key: the 65-byte uncompressed point 0x04 || X || Y as unpadded "
            "base64url (87 characters); compressed points are not accepted",
        )  # fmt: skip
    x, y = int.from_bytes(raw[1:33], "big"), int.from_bytes(raw[33:], "big")
    # Checked here rather than left to the library, so every SDK refuses exactly the same points.
    if x >= _P or y >= _P or (y * y - (x * x * x - 3 * x + _B)) % _P != 0:
        raise ConfigError(name, "is not a point on the P-256 curve")
    return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), raw)
