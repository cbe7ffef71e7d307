"""The conformance vectors (tests/vectors/conformance.json): one case per rule of the token format's
section 5.1, section 7.1 and the 4096-byte limit, and of the `.rai` rules, with the verdict that the relay
and the JavaScript SDK reach too. Token cases run through the verifier and, when they carry claims, through
the minter; `.rai` cases through ``load_config`` on a real file."""

from __future__ import annotations

import pathlib
from typing import Any

import pytest

from relayapi import ConfigError, InvalidTokenError
from relayapi._b64 import decode as b64decode
from relayapi.claims import ClaimError, serialize_claims
from relayapi.config import RaiKey, load_config
from relayapi.token import open_token, seal

from .support import CONFORMANCE, KEY_BY_KID

TOKENS = CONFORMANCE["tokens"]
RAI = CONFORMANCE["rai"]
MINT = [c for c in TOKENS if "claims" in c]


def _ids(cases: list[dict[str, Any]]) -> list[str]:
    return [f"{c['rule']} {c['desc']}" for c in cases]


def _k1() -> bytes:
    key = b64decode(KEY_BY_KID["k1"]["key"])
    assert key is not None
    return key


def test_conformance_covers_every_rule_group() -> None:
    rules = {c["rule"].split(".")[0] if c["rule"][0].isdigit() else c["rule"] for c in TOKENS}
    assert {"J1", "J2", "J3", "J4", "J5", "J6", "J7", "5", "3", "6"} <= rules
    assert {f"C{i}" for i in range(1, 10)} <= {c["rule"] for c in RAI}
    assert {c["verdict"] for c in TOKENS} == {"valid", "invalid"}
    assert {c["verdict"] for c in RAI} == {"load", "refuse"}


@pytest.mark.parametrize("case", TOKENS, ids=_ids(TOKENS))
def test_verifier_verdict(case: dict[str, Any]) -> None:
    keys = [RaiKey("k1", _k1())]
    if case["verdict"] == "valid":
        claims = open_token(case["token"], keys, "acme")
        if "claims" in case:
            assert claims == case["claims"]
        return
    with pytest.raises(InvalidTokenError) as info:
        open_token(case["token"], keys, "acme")
    assert type(info.value) is InvalidTokenError


@pytest.mark.parametrize("case", MINT, ids=_ids(MINT))
def test_minter_verdict(case: dict[str, Any]) -> None:
    salt = bytes.fromhex(case["salt"])
    if case["verdict"] == "valid":
        assert serialize_claims(case["claims"]) == case["canonical"]
        token = seal(case["claims"], kid="k1", key=_k1(), salt=salt)
        assert open_token(token, [RaiKey("k1", _k1())], "acme") == case["claims"]
        if case["plaintext"] == case["canonical"]:
            assert token == case["token"]
        return
    with pytest.raises(ClaimError):
        seal(case["claims"], kid="k1", key=_k1(), salt=salt)


@pytest.mark.parametrize("case", RAI, ids=_ids(RAI))
def test_rai_verdict(case: dict[str, Any], tmp_path: pathlib.Path) -> None:
    path = tmp_path / "tenant.rai"
    path.write_bytes(case["rai"].encode("utf-8"))
    if case["verdict"] == "load":
        assert load_config(path).tenant_id
        return
    with pytest.raises(ConfigError):
        load_config(path)
