"""Shared test data: the repository's token vectors (schema-checked before use) and test configs."""

from __future__ import annotations

import json
import pathlib
from typing import Any

import jsonschema

from relayapi import RelayAPIClient


def _find_vectors() -> pathlib.Path:
    # The SDK lives at sdk/python inside the repository; walk up instead of hard-coding the depth so the
    # tests also run from a copy of the tree.
    for parent in pathlib.Path(__file__).resolve().parents:
        candidate = parent / "tests" / "vectors"
        if (candidate / "schema.json").is_file():
            return candidate
    raise RuntimeError("tests/vectors/schema.json not found above " + __file__)


VECTORS_DIR = _find_vectors()


def _load(name: str) -> Any:
    return json.loads((VECTORS_DIR / name).read_text(encoding="utf-8"))


SCHEMA = _load("schema.json")


def schema_for(kind: str) -> dict[str, Any]:
    """The root schema with a root ``$ref`` to one ``$defs`` entry, so ``$ref``s inside still resolve."""
    return {**SCHEMA, "$ref": f"#/$defs/{kind}"}


def load_vectors(kind: str, file: str | None = None) -> Any:
    data = _load(file or f"{kind}.json")
    jsonschema.Draft202012Validator(schema_for(kind)).validate(data)
    return data


KEYS = load_vectors("keys")
GENERATE = load_vectors("generate")
VERIFY = load_vectors("verify")
INVALID = load_vectors("invalid")
CONFORMANCE = load_vectors("conformance")
KEY_BY_KID = {k["kid"]: k for k in KEYS}
ECC = load_vectors("ecc")
HPKE = load_vectors("hpke", "hpke-rfc9180.json")
ECC_RELAY_KEYS = {k["key_id"]: k for k in ECC["keys"]["relay_keys"]}
ECC_SIGNERS = {k["signer_id"]: k for k in ECC["keys"]["signers"]}


def rai_dict(
    kid: str = "k1",
    *,
    previous: tuple[str, ...] = (),
    host: str = "127.0.0.1",
    port: int = 8080,
    **server: Any,
) -> dict[str, Any]:
    """A `.rai` config dict built from the vector key ring."""
    key = KEY_BY_KID[kid]
    crypto: dict[str, Any] = {
        "method": "aes-256-gcm-hkdf-sha256",
        "key_id": kid,
        "key": key["key"],
        "tenant_id": key["tenant"],
    }
    if previous:
        crypto["previous_keys"] = [{"key_id": p, "key": KEY_BY_KID[p]["key"]} for p in previous]
    return {"version": 1, "server": {"host": host, "port": port, **server}, "crypto": crypto}


def client_for_tenant(tenant: str) -> RelayAPIClient:
    """A client that verifies with every vector key of ``tenant`` (newest first mints)."""
    kids = [k["kid"] for k in KEYS if k["tenant"] == tenant]
    return RelayAPIClient(rai_dict(kids[0], previous=tuple(kids[1:])))


def ecc_backend_dict(
    signer_id: str = "acme-backend-1",
    relay_key_id: str = "relay-acme-2026-12",
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    **crypto: Any,
) -> dict[str, Any]:
    """An ecc backend-side `.rai` dict built from the ecc vector keys (``crypto`` adds or replaces fields)."""
    signer = ECC_SIGNERS[signer_id]
    return {
        "version": 1,
        "server": {"host": host, "port": port},
        "crypto": {
            "method": "ecc-p256",
            "tenant_id": signer["tenant"],
            "signer_id": signer_id,
            "signing_key": signer["signing_key"],
            "relay_key_id": relay_key_id,
            "relay_public_key": ECC_RELAY_KEYS[relay_key_id]["public_key"],
            **crypto,
        },
    }
