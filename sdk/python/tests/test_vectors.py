"""The shared token vectors (tests/vectors): byte-identical minting, verification results, refusals."""

from __future__ import annotations

import copy
from typing import Any

import jsonschema
import pytest

from relayapi import (
    InvalidTokenError,
    RelayAPIClient,
    TokenExpiredError,
    TokenNotYetValidError,
)
from relayapi._b64 import decode as b64decode
from relayapi.claims import serialize_claims
from relayapi.errors import TokenLifetimeTooLongError
from relayapi.token import check_time, seal

from .support import GENERATE, INVALID, KEY_BY_KID, VERIFY, client_for_tenant, rai_dict, schema_for


def _ids(cases: list[dict[str, Any]]) -> list[str]:
    return [c["desc"] for c in cases]


def test_vector_files_are_not_empty() -> None:
    assert len(GENERATE) >= 8
    assert len(VERIFY) >= 3 * len(GENERATE)
    assert len(INVALID) >= 40


def test_schema_check_rejects_a_misspelled_member() -> None:
    # The fernet spec's own invalid file once spelled its keys differently; prove our check would notice.
    broken = copy.deepcopy(INVALID)
    broken[0]["description"] = broken[0].pop("desc")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(schema_for("invalid")).validate(broken)


@pytest.mark.parametrize("case", GENERATE, ids=_ids(GENERATE))
def test_generate_claims_json_is_byte_identical(case: dict[str, Any]) -> None:
    assert serialize_claims(case["claims"]) == case["claims_json"]


@pytest.mark.parametrize("case", GENERATE, ids=_ids(GENERATE))
def test_generate_token_is_byte_identical(case: dict[str, Any]) -> None:
    key = b64decode(KEY_BY_KID[case["kid"]]["key"])
    assert key is not None
    token = seal(case["claims"], kid=case["kid"], key=key, salt=bytes.fromhex(case["salt"]))
    assert token == case["token"]


def _create_token_args(claims: dict[str, Any]) -> dict[str, Any]:
    rate = claims.get("rate")
    return {
        "api_key": claims.get("key"),
        "key_ref": claims.get("kref"),
        "base_url": claims.get("url"),
        "max_calls": claims.get("max"),
        "expire_seconds": claims["exp"] - claims["iat"],
        "provider": claims["prv"],
        "ext_info": claims.get("ext", ""),
        "rate_limit": (rate["n"], rate["s"]) if rate else None,
        "max_concurrent": claims.get("conc"),
        "allowed_models": claims.get("models"),
        "allowed_endpoints": claims.get("paths"),
        "allowed_origins": claims.get("origins"),
        "allowed_ips": claims.get("ips"),
        "max_tokens": claims.get("mtok"),
        "max_tokens_mode": claims.get("mtok_mode"),
        "user_id": claims.get("uid"),
        "budget_tokens": claims.get("bud", {}).get("tok"),
        "budget_cost": claims.get("bud", {}).get("cost"),
        "user_quotas": [
            {"window": q["w"], "calls": q.get("calls"), "tokens": q.get("tok"), "cost": q.get("cost")}
            for q in claims["uq"]
        ]
        if "uq" in claims
        else None,
        "session_seconds": claims.get("ssec"),
    }


@pytest.mark.parametrize("case", GENERATE, ids=_ids(GENERATE))
def test_create_token_from_parts_reproduces_the_vector(case: dict[str, Any]) -> None:
    # Every generate vector is mintable through the public options: minters and verifiers share one rule
    # set (section 5.1), so there is no claim a verifier accepts that the SDK would refuse to write.
    claims = case["claims"]
    gen = RelayAPIClient(rai_dict(case["kid"]))
    token = gen._create_token_from_parts(
        now=claims["iat"], jti=claims["jti"], salt=bytes.fromhex(case["salt"]), **_create_token_args(claims)
    )
    assert token == case["token"]


def _tenant_of(token: str) -> str:
    blob = b64decode(token[4:])
    assert blob is not None
    return KEY_BY_KID[blob[3 : 3 + blob[2]].decode()]["tenant"]


_TIME_ERRORS: dict[str, type[InvalidTokenError]] = {
    "expired": TokenExpiredError,
    "not_yet_valid": TokenNotYetValidError,
    "lifetime_too_long": TokenLifetimeTooLongError,
}


@pytest.mark.parametrize("case", VERIFY, ids=_ids(VERIFY))
def test_verify(case: dict[str, Any]) -> None:
    client = client_for_tenant(_tenant_of(case["token"]))
    # Authentic whatever the time: decode_token (no time check) reads it, e.g. for usage queries.
    claims = client.decode_token(case["token"])
    if case["result"] == "ok":
        assert claims == case["claims"]
        assert client.verify_token(case["token"], now=case["now"], leeway=0) == case["claims"]
        check_time(claims, case["now"], 0, case["max_lifetime"])
        return
    with pytest.raises(_TIME_ERRORS[case["result"]]):
        check_time(claims, case["now"], 0, case["max_lifetime"])


def test_leeway_extends_both_ends() -> None:
    case = VERIFY[0]
    client = client_for_tenant("acme")
    claims = case["claims"]
    assert client.verify_token(case["token"], now=claims["exp"] + 59, leeway=60) == claims
    assert client.verify_token(case["token"], now=claims["iat"] - 60, leeway=60) == claims
    with pytest.raises(TokenExpiredError):
        client.verify_token(case["token"], now=claims["exp"] + 60, leeway=60)
    with pytest.raises(TokenNotYetValidError):
        client.verify_token(case["token"], now=claims["iat"] - 61, leeway=60)


@pytest.mark.parametrize("tenant", ["acme", "globex-corp"])
@pytest.mark.parametrize("case", INVALID, ids=_ids(INVALID))
def test_invalid_tokens_raise_one_uninformative_error(case: dict[str, Any], tenant: str) -> None:
    client = client_for_tenant(tenant)
    with pytest.raises(InvalidTokenError) as info:
        client.decode_token(case["token"])
    # Exactly the base class, one message, and no chained cause that could explain the failure.
    assert type(info.value) is InvalidTokenError
    assert str(info.value) == "invalid token"
    assert info.value.__cause__ is None
    assert info.value.__context__ is None


def test_a_token_of_one_tenant_is_invalid_for_another() -> None:
    token = GENERATE[0]["token"]
    assert client_for_tenant("acme").decode_token(token)
    with pytest.raises(InvalidTokenError):
        client_for_tenant("globex-corp").decode_token(token)


def test_previous_keys_verify_but_never_mint() -> None:
    rotated = RelayAPIClient(rai_dict("k1", previous=("k2-2026.rotated",)))
    old_token = next(c for c in GENERATE if c["kid"] == "k2-2026.rotated")["token"]
    assert rotated.decode_token(old_token)["kref"] == "openai-main"
    fresh = rotated.create_token(api_key="test-key-123")
    assert b64decode(fresh[4:])[3:5] == b"k1"  # type: ignore[index]
    without_previous = RelayAPIClient(rai_dict("k1"))
    with pytest.raises(InvalidTokenError):
        without_previous.decode_token(old_token)
