"""Loading and validating the `.rai` client config (docs/client-config.md).

This module owns the shape of the file: every field is checked here, once, and a bad file fails at load
time with a :class:`~relayapi.errors.ConfigError` that names the field. Keys are never hashed or padded
into shape. The ecc method's ``crypto`` object is read by :mod:`relayapi.ecc_config`; building URLs from
the loaded config is left to :mod:`relayapi.urls`.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Optional, Union

from . import _b64
from ._json import JsonRuleError, loads_strict
from ._rai_fields import KID as _KID
from ._rai_fields import TENANT as _TENANT
from ._rai_fields import in_window
from ._rai_fields import is_int as _is_int
from ._rai_fields import object_with as _object
from ._rai_fields import window as _window
from .ecc_config import ECC_METHOD, EccConfig, parse_ecc_crypto
from .errors import ConfigError

__all__ = ["KEY_BYTES", "AnyConfig", "EccConfig", "RaiConfig", "RaiKey", "load_config"]

#: A tenant key is exactly this many bytes (AES-256 input keying material).
KEY_BYTES = 32
CRYPTO_METHOD = "aes-256-gcm-hkdf-sha256"
DEFAULT_BASE_PATH = "/relayapi/"

# One DNS label (docs/client-config.md rule 3); IDNs must be given in their ASCII (xn--) form.
_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
MAX_HOST_BYTES = 253
# RFC 3986 pchar plus "/", without "%" so a base path can never smuggle an encoded separator (rule 5).
_BASE_PATH = re.compile(r"/(?:[A-Za-z0-9._~!$&'()*+,;=:@-]+/)*")
MAX_BASE_PATH_BYTES = 128
#: A `.rai` is a few hundred bytes; a bigger file is a wrong path (a log, a binary), not a config (rule 1).
MAX_RAI_BYTES = 64 * 1024
#: Rotation keeps one or two old keys; a long list is a mistake, and every key can still mint (rule 9).
MAX_PREVIOUS_KEYS = 16

ConfigSource = Union[str, "os.PathLike[str]", Mapping[str, Any], "RaiConfig", EccConfig]


@dataclass(frozen=True)
class RaiKey:
    """One tenant key: its id, its 32 bytes and its validity window. ``repr`` never shows the key bytes.

    ``not_before`` / ``not_after`` are Unix seconds (``None``: open); the key is in force from
    ``not_before`` included to ``not_after`` excluded.
    """

    key_id: str
    key: bytes = field(repr=False)
    not_before: Optional[int] = None
    not_after: Optional[int] = None

    def in_force(self, now: int) -> bool:
        """Whether the key may mint and verify at ``now`` (Unix seconds)."""
        return in_window(self.not_before, self.not_after, now)


@dataclass(frozen=True)
class RaiConfig:
    """A validated `.rai` file. ``key`` mints; ``key`` and ``previous_keys`` verify."""

    scheme: str
    host: str
    port: int
    base_path: str
    tenant_id: str
    key: RaiKey
    previous_keys: tuple[RaiKey, ...] = ()

    @property
    def all_keys(self) -> tuple[RaiKey, ...]:
        return (self.key, *self.previous_keys)


#: What a `.rai` loads as: a symmetric config, or an ecc backend-side config (``crypto.method``).
AnyConfig = Union[RaiConfig, EccConfig]


def load_config(source: ConfigSource) -> AnyConfig:
    """Load a `.rai` config from a path, a parsed dict, or pass a loaded config through.

    Raises :class:`ConfigError` naming the field for every problem, ``"<file>"`` for I/O and JSON errors.
    An ecc relay-side file is refused with a message saying to load the backend-side file instead.
    """
    if isinstance(source, (RaiConfig, EccConfig)):
        return source
    if isinstance(source, Mapping):
        return _parse(source, "this .rai config")
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        try:
            with open(path, encoding="utf-8") as fh:
                text = fh.read()
        except OSError as exc:
            raise ConfigError("<file>", f"cannot read {path!r}: {exc.strerror or exc}") from exc
        except UnicodeDecodeError as exc:
            raise ConfigError("<file>", f"{path!r} is not UTF-8") from exc
        if len(text.encode("utf-8")) > MAX_RAI_BYTES:
            raise ConfigError("<file>", f"{path!r} is larger than {MAX_RAI_BYTES} bytes")
        try:
            data = loads_strict(text)
        except JsonRuleError as exc:
            raise ConfigError("<file>", f"{path!r} is not valid JSON: {exc}") from None
        if not isinstance(data, Mapping):
            raise ConfigError("<file>", f"{path!r} must hold a JSON object")
        return _parse(data, repr(path))
    raise ConfigError("<config>", f"expected a .rai path or a dict, got {type(source).__name__}")


def _parse(data: Mapping[str, Any], file: str) -> AnyConfig:
    _object(data, "<config>", {"version", "server", "crypto"}, set())
    if not _is_int(data["version"]) or data["version"] != 1:
        raise ConfigError("version", "must be the integer 1")

    server = _object(data["server"], "server", {"host", "port"}, {"scheme", "base_path"})
    scheme = server.get("scheme", "http")
    if scheme not in ("http", "https"):
        raise ConfigError("server.scheme", 'must be "http" or "https"')
    host = _parse_host(server["host"])
    port = server["port"]
    if not _is_int(port) or not 1 <= port <= 65535:
        raise ConfigError("server.port", "must be an integer from 1 to 65535")
    base_path = server.get("base_path", DEFAULT_BASE_PATH)
    if (
        not isinstance(base_path, str)
        or len(base_path) > MAX_BASE_PATH_BYTES
        or not _BASE_PATH.fullmatch(base_path)
        or any(seg in (".", "..") for seg in base_path.split("/"))
    ):
        raise ConfigError(
            "server.base_path",
            'must start and end with "/" and hold only URL path characters, e.g. "/relayapi/" '
            '(at most 128 characters, no "%", "." or ".." segments)',
        )

    crypto = data["crypto"]
    method = crypto.get("method") if isinstance(crypto, Mapping) else None
    if method == ECC_METHOD:
        tenant = _tenant(crypto)
        checked = {"scheme": scheme, "host": host, "port": port, "base_path": base_path, "tenant_id": tenant}
        return parse_ecc_crypto(crypto, checked, file=file)
    crypto = _object(
        crypto,
        "crypto",
        {"method", "key_id", "key", "tenant_id"},
        {"previous_keys", "not_before", "not_after"},
    )
    if crypto["method"] != CRYPTO_METHOD:
        raise ConfigError(
            "crypto.method", f'must be "{CRYPTO_METHOD}" (symmetric) or "{ECC_METHOD}" (ecc, backend-side)'
        )
    tenant_id = _tenant(crypto)
    key = _parse_key(crypto, "crypto")

    previous = crypto.get("previous_keys", [])
    if not isinstance(previous, list) or len(previous) > MAX_PREVIOUS_KEYS:
        raise ConfigError(
            "crypto.previous_keys", f"must be an array of at most {MAX_PREVIOUS_KEYS} {{key_id, key}} objects"
        )
    prev_keys = []
    seen = {key.key_id}
    for i, entry in enumerate(previous):
        name = f"crypto.previous_keys[{i}]"
        _object(entry, name, {"key_id", "key"}, {"not_before", "not_after"})
        k = _parse_key(entry, name)
        if k.key_id in seen:
            raise ConfigError(f"{name}.key_id", f"duplicate key id {k.key_id!r}")
        seen.add(k.key_id)
        prev_keys.append(k)

    return RaiConfig(
        scheme=scheme,
        host=host,
        port=port,
        base_path=base_path,
        tenant_id=tenant_id,
        key=key,
        previous_keys=tuple(prev_keys),
    )


def _tenant(crypto: Mapping[str, Any]) -> str:
    if "tenant_id" not in crypto:
        raise ConfigError("crypto.tenant_id", "is required")
    tenant_id = crypto["tenant_id"]
    if not isinstance(tenant_id, str) or not _TENANT.fullmatch(tenant_id):
        raise ConfigError("crypto.tenant_id", "must be 1 to 64 characters from A-Z a-z 0-9 . _ -")
    return tenant_id


def _parse_key(entry: Mapping[str, Any], prefix: str) -> RaiKey:
    key_id, key_text = entry["key_id"], entry["key"]
    if not isinstance(key_id, str) or not _KID.fullmatch(key_id):
        raise ConfigError(f"{prefix}.key_id", "must be 1 to 32 characters from A-Z a-z 0-9 . _ -")
    raw = _b64.decode(key_text) if isinstance(key_text, str) else None
    if raw is None or len(raw) != KEY_BYTES:
        # Deliberately no attempt to hash or pad other lengths into shape: a wrong key must fail loudly.
        raise ConfigError(
            f"{prefix}.key", "must be exactly 32 bytes as unpadded base64url (43 characters, no '=')"
        )
    not_before, not_after = _window(entry, prefix)
    return RaiKey(key_id=key_id, key=raw, not_before=not_before, not_after=not_after)


def _parse_host(host: Any) -> str:
    """Check rule 3 and return the host as URLs need it: IPv6 literals in brackets, the rest as given."""
    if not isinstance(host, str) or not host:
        raise ConfigError("server.host", "must be a non-empty host name or IP address")
    if ":" in host:
        # An IPv6 literal, written without brackets and without a zone id.
        try:
            if "%" in host or host.startswith("["):
                raise ValueError(host)
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ConfigError(
                "server.host", f"{host!r} is not an IPv6 address (write it without brackets or zone id)"
            ) from None
        return f"[{host}]"
    labels = host.split(".")
    ok = len(host) <= MAX_HOST_BYTES and all(_LABEL.fullmatch(label) for label in labels)
    if ok and labels[-1].isdigit():
        # A numeric last label is never a DNS name: the whole host must be a canonical IPv4 address.
        try:
            ok = str(ipaddress.IPv4Address(host)) == host
        except ValueError:
            ok = False
    if not ok:
        raise ConfigError(
            "server.host",
            f"{host!r} is not a host name (labels of ASCII letters, digits and inner '-') or IP address",
        )
    return host
