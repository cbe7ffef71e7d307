"""The ecc method's shared vectors: RFC 9180 HPKE (hpke-rfc9180.json), byte-identical ecc tokens and the
`.rai` rules E1-E7 (ecc.json), both schema-checked before use (support.py)."""

from __future__ import annotations

import json
import pathlib
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from relayapi import ConfigError, RelayAPIClient
from relayapi._hpke import derive_key_pair, serialize_public_key, setup_base_sender
from relayapi.claims import serialize_claims
from relayapi.config import EccConfig, load_config
from relayapi.ecc_token import ecc_header, seal_ecc, sign

from .support import ECC, ECC_RELAY_KEYS, ECC_SIGNERS, HPKE, ecc_backend_dict
from .test_vectors import _create_token_args

GENERATE = ECC["generate"]
SDK_RAI = [c for c in ECC["rai"] if c["loader"] == "sdk"]
RELAY_SIDE = [c for c in ECC["rai"] if c["loader"] == "relay" and c["verdict"] == "load"]


def _ids(cases: list[dict[str, Any]]) -> list[str]:
    return [c["desc"] if "desc" in c else c["name"] for c in cases]


def _h(text: str) -> bytes:
    return bytes.fromhex(text)


def test_vector_files_cover_what_they_promise() -> None:
    assert {v["aead_id"] for v in HPKE["vectors"]} == {1, 2}
    assert len(GENERATE) >= 8
    assert len(ECC["invalid"]) >= 40
    assert {c["rule"] for c in ECC["rai"]} >= {f"E{i}" for i in range(1, 8)}
    assert any(c["verdict"] == "load" for c in SDK_RAI)
    assert any(c["verdict"] == "refuse" for c in SDK_RAI)


@pytest.mark.parametrize("vector", HPKE["vectors"], ids=_ids(HPKE["vectors"]))
def test_hpke_matches_rfc9180(vector: dict[str, Any]) -> None:
    sk_r = derive_key_pair(_h(vector["ikmR"]))
    assert sk_r.private_numbers().private_value.to_bytes(32, "big") == _h(vector["skRm"])
    pk_r = sk_r.public_key()
    assert serialize_public_key(pk_r) == _h(vector["pkRm"])
    sk_e = derive_key_pair(_h(vector["ikmE"]))
    assert sk_e.private_numbers().private_value.to_bytes(32, "big") == _h(vector["skEm"])
    enc, ctx = setup_base_sender(
        pk_r, _h(vector["info"]), ikm_e=_h(vector["ikmE"]), aead_id=vector["aead_id"]
    )
    assert enc == _h(vector["enc"]) == _h(vector["pkEm"])
    assert ctx.key == _h(vector["key"])
    assert ctx.base_nonce == _h(vector["base_nonce"])
    for e in vector["encryptions"]:
        assert ctx.seal(_h(e["aad"]), _h(e["pt"]), e["sequence_number"]) == _h(e["ct"])


@pytest.mark.parametrize("case", GENERATE, ids=_ids(GENERATE))
def test_generate_header_signature_and_token_are_byte_identical(case: dict[str, Any]) -> None:
    config = load_config(ecc_backend_dict(case["skid"], case["rkid"]))
    assert isinstance(config, EccConfig)
    claims_json = serialize_claims(case["claims"])
    assert claims_json == case["claims_json"]
    header = ecc_header(case["rkid"], case["skid"])
    assert header.hex() == case["header"]
    # RFC 6979 makes the signature reproducible; one case has a high S that sign() must normalise.
    assert sign(config.signer.private_key, header + claims_json.encode()).hex() == case["sig"]
    token = seal_ecc(
        case["claims"],
        relay_key_id=case["rkid"],
        relay_public_key=config.relay_public_key,
        signer_id=case["skid"],
        signing_key=config.signer.private_key,
        ikm_e=_h(case["ikm_e"]),
    )
    assert token == case["token"]
    # The injected signature path (for minters that cannot sign deterministically) gives the same bytes.
    assert (
        seal_ecc(
            case["claims"],
            relay_key_id=case["rkid"],
            relay_public_key=config.relay_public_key,
            signer_id=case["skid"],
            signing_key=config.signer.private_key,
            ikm_e=_h(case["ikm_e"]),
            sig=_h(case["sig"]),
        )
        == token
    )


@pytest.mark.parametrize("case", GENERATE, ids=_ids(GENERATE))
def test_create_token_from_parts_reproduces_the_vector(case: dict[str, Any]) -> None:
    # The public options path (same checks as create_token) mints every vector.
    claims = case["claims"]
    client = RelayAPIClient(ecc_backend_dict(case["skid"], case["rkid"]))
    minted = client._mint_from_parts(
        now=case["now"], jti=claims["jti"], ikm_e=_h(case["ikm_e"]), **_create_token_args(claims)
    )
    assert minted.token == case["token"]
    assert minted.claims == claims


@pytest.mark.parametrize("case", SDK_RAI, ids=_ids(SDK_RAI))
def test_rai_rules_for_the_backend_side(case: dict[str, Any], tmp_path: pathlib.Path) -> None:
    path = tmp_path / "backend.rai"
    path.write_text(case["rai"], encoding="utf-8")
    if case["verdict"] == "load":
        assert isinstance(load_config(path), EccConfig)
    else:
        with pytest.raises(ConfigError):
            load_config(path)


@pytest.mark.parametrize("case", RELAY_SIDE, ids=_ids(RELAY_SIDE))
def test_a_relay_side_file_is_refused_naming_the_file_and_the_fix(
    case: dict[str, Any], tmp_path: pathlib.Path
) -> None:
    path = tmp_path / "relay-side.rai"
    path.write_text(case["rai"], encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        RelayAPIClient(path)
    assert info.value.field == "crypto.relay_private_key"
    assert str(path) in info.value.problem
    assert "backend-side file" in info.value.problem


def test_a_config_error_never_echoes_a_key(tmp_path: pathlib.Path) -> None:
    secrets = [k["signing_key"] for k in ECC_SIGNERS.values()] + [
        k["private_key"] for k in ECC_RELAY_KEYS.values()
    ]
    for case in ECC["rai"]:
        if case["verdict"] != "refuse":
            continue
        path = tmp_path / "x.rai"
        path.write_text(case["rai"], encoding="utf-8")
        if case["loader"] == "sdk":
            with pytest.raises(ConfigError) as info:
                load_config(path)
            assert not any(s in str(info.value) for s in secrets), case["desc"]


def test_repr_never_shows_the_signing_key() -> None:
    config = load_config(ecc_backend_dict())
    assert isinstance(config, EccConfig)
    assert "private_key" not in repr(config)
    assert isinstance(config.signer.private_key, ec.EllipticCurvePrivateKey)


def test_rai_texts_are_json_the_loader_reads_by_path_only_when_valid() -> None:
    # Guard against a vector that refuses for a reason outside its rule: every sdk "refuse" case is valid
    # JSON except the byte-order-mark one, so the rule at hand is what the loader trips on.
    broken = [c["desc"] for c in SDK_RAI if c["rai"].startswith("\ufeff")]
    assert broken == ["byte-order mark"]
    for c in SDK_RAI:
        if not c["rai"].startswith("\ufeff"):
            json.loads(c["rai"])
