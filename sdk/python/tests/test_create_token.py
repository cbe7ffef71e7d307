"""create_token: fresh randomness, the claims each argument maps to, and argument validation."""

from __future__ import annotations

import time
from typing import Any

import pytest

from relayapi import ConfigError, InvalidArgumentError, RelayAPIClient, TokenGenerator
from relayapi._b64 import decode as b64decode
from relayapi.claims import ClaimError
from relayapi.token import seal

from .support import rai_dict


def test_defaults(client: RelayAPIClient) -> None:
    before = int(time.time())
    claims = client.decode_token(client.create_token(api_key="test-key-123"))
    after = int(time.time())
    assert before <= claims["iat"] <= after
    assert claims["exp"] == claims["iat"] + 3600
    assert claims["prv"] == "openai"
    assert claims["key"] == "test-key-123"
    assert claims["max"] == 100
    assert claims["tid"] == "acme"
    assert set(claims) == {"jti", "tid", "iat", "exp", "prv", "key", "max"}


def test_create_token_never_repeats(client: RelayAPIClient) -> None:
    tokens = [client.create_token(api_key="test-key-123") for _ in range(200)]
    assert len(set(tokens)) == 200
    jtis = {client.decode_token(t)["jti"] for t in tokens}
    assert len(jtis) == 200
    salts = {b64decode(t[4:])[5:21] for t in tokens}  # type: ignore[index]
    assert len(salts) == 200


def test_options_are_keyword_only(client: RelayAPIClient) -> None:
    # 2.0: the 1.x positional order (api_key, max_calls, expire_seconds, provider, ext_info) is gone, so a
    # positional call fails loudly instead of putting a value into the wrong option.
    with pytest.raises(TypeError):
        client.create_token("test-key-123", 7)  # type: ignore[call-arg]
    claims = client.decode_token(
        client.create_token(
            api_key="test-key-123",
            max_calls=7,
            expire_seconds=60,
            provider="anthropic",
            ext_info='{"rep_m": "m1"}',
        )
    )
    assert (claims["max"], claims["exp"] - claims["iat"], claims["prv"], claims["ext"]) == (
        7, 60, "anthropic", {"rep_m": "m1"},
    )  # fmt: skip


@pytest.mark.parametrize("method", ["create_token", "generate_url"])
def test_unknown_option_is_named(client: RelayAPIClient, method: str) -> None:
    with pytest.raises(InvalidArgumentError) as info:
        getattr(client, method)(api_key="test-key-123", max_call=5)
    assert info.value.param == "max_call"
    assert info.value.code == "ERR_INVALID_ARGUMENT"


def test_every_option_maps_to_its_claim(client: RelayAPIClient) -> None:
    token = client.create_token(
        key_ref="openai-main",
        max_calls=None,
        expire_seconds=120,
        provider="deepseek",
        ext_info={"rep_m": "deepseek-chat"},
        base_url="https://llm-proxy.example.com/v1",
        rate_limit=(10, 60),
        max_concurrent=2,
        allowed_models=("deepseek-chat",),
        allowed_endpoints=["/chat/completions"],
        allowed_origins=["https://app.example.com", "http://localhost:5173"],
        allowed_ips=["203.0.113.0/24", "2001:db8::/32"],
        max_tokens=512,
        max_tokens_mode="reject",
        user_id="user-42",
        session_seconds=900,
    )
    claims = client.decode_token(token)
    assert {k: v for k, v in claims.items() if k not in ("jti", "tid", "iat", "exp")} == {
        "prv": "deepseek",
        "kref": "openai-main",
        "url": "https://llm-proxy.example.com/v1",
        "ext": {"rep_m": "deepseek-chat"},
        "rate": {"n": 10, "s": 60},
        "conc": 2,
        "models": ["deepseek-chat"],
        "paths": ["/chat/completions"],
        "origins": ["https://app.example.com", "http://localhost:5173"],
        "ips": ["203.0.113.0/24", "2001:db8::/32"],
        "mtok": 512,
        "mtok_mode": "reject",
        "uid": "user-42",
        "ssec": 900,
    }
    assert claims["exp"] - claims["iat"] == 120


@pytest.mark.parametrize("ext_info", ["", None, "{}", {}], ids=["empty", "None", "empty JSON", "empty dict"])
def test_empty_ext_info_writes_no_ext(client: RelayAPIClient, ext_info: Any) -> None:
    assert "ext" not in client.decode_token(client.create_token(api_key="test-key-123", ext_info=ext_info))


def test_from_parts_is_deterministic() -> None:
    gen = TokenGenerator(rai_dict())
    parts = {"now": 1_790_000_000, "jti": "ab" * 16, "salt": bytes(range(16)), "api_key": "test-key-123"}
    assert gen._create_token_from_parts(**parts) == gen._create_token_from_parts(**parts)
    assert gen._create_token_from_parts(**parts) != gen._create_token_from_parts(
        **{**parts, "now": 1_790_000_001}
    )


BAD_ARGUMENTS: list[tuple[dict[str, Any], str]] = [
    ({}, "api_key"),
    ({"api_key": "test-key-123", "key_ref": "main"}, "api_key"),
    ({"api_key": ""}, "api_key"),
    ({"api_key": 123}, "api_key"),
    ({"api_key": "test key\n"}, "api_key"),
    ({"api_key": "k" * 1025}, "api_key"),
    ({"key_ref": "has space"}, "key_ref"),
    ({"key_ref": ""}, "key_ref"),
    ({"key_ref": 5}, "key_ref"),
    ({"max_calls": 0}, "max_calls"),
    ({"max_calls": -1}, "max_calls"),
    ({"max_calls": 1.5}, "max_calls"),
    ({"max_calls": True}, "max_calls"),
    ({"max_calls": 2**53}, "max_calls"),
    ({"expire_seconds": 0}, "expire_seconds"),
    ({"expire_seconds": -5}, "expire_seconds"),
    ({"expire_seconds": "3600"}, "expire_seconds"),
    ({"expire_seconds": 2**53}, "expire_seconds"),
    ({"provider": "OpenAI"}, "provider"),
    ({"provider": ""}, "provider"),
    ({"provider": "https://api.openai.com"}, "provider"),
    ({"provider": None}, "provider"),
    ({"ext_info": "not json"}, "ext_info"),
    ({"ext_info": "[1]"}, "ext_info"),
    ({"ext_info": {"rep_m": "x", "other": 1}}, "ext_info"),
    ({"ext_info": {"rep_m": ""}}, "ext_info"),
    ({"ext_info": {"rep_m": 5}}, "ext_info"),
    ({"base_url": "http://llm-proxy.example.com/v1"}, "base_url"),
    ({"base_url": "https://user:pw@example.com/v1"}, "base_url"),
    ({"base_url": "https:///v1"}, "base_url"),
    ({"base_url": "https://llm-proxy.example.com/v1?tenant=1"}, "base_url"),
    ({"base_url": "https://llm-proxy.example.com:99999/v1"}, "base_url"),
    ({"rate_limit": 10}, "rate_limit"),
    ({"rate_limit": (10,)}, "rate_limit"),
    ({"rate_limit": (0, 60)}, "rate_limit"),
    ({"rate_limit": (10, 86400 * 365 + 1)}, "rate_limit"),
    ({"max_concurrent": 0}, "max_concurrent"),
    ({"max_concurrent": 10_001}, "max_concurrent"),
    ({"allowed_models": "gpt-4o"}, "allowed_models"),
    ({"allowed_models": []}, "allowed_models"),
    ({"allowed_models": [""]}, "allowed_models"),
    ({"allowed_models": [f"m{i}" for i in range(65)]}, "allowed_models"),
    ({"allowed_endpoints": ["chat/completions"]}, "allowed_endpoints"),
    ({"allowed_endpoints": ["/chat/completions?x=1"]}, "allowed_endpoints"),
    ({"allowed_origins": ["https://app.example.com/"]}, "allowed_origins"),
    ({"allowed_origins": ["app.example.com"]}, "allowed_origins"),
    ({"allowed_ips": ["10.0.0.300/8"]}, "allowed_ips"),
    ({"allowed_ips": ["10.0.0.1"]}, "allowed_ips"),
    ({"allowed_ips": ["10.0.0.0/33"]}, "allowed_ips"),
    ({"allowed_ips": ["10.0.0.0/255.0.0.0"]}, "allowed_ips"),
    ({"allowed_ips": ["2001:db8::/129"]}, "allowed_ips"),
    ({"allowed_ips": [7]}, "allowed_ips"),
    ({"max_tokens": 0}, "max_tokens"),
    ({"max_tokens": 10, "max_tokens_mode": "ignore"}, "max_tokens_mode"),
    ({"max_tokens_mode": "clamp"}, "max_tokens_mode"),
    ({"user_id": ""}, "user_id"),
    ({"user_id": "u" * 129}, "user_id"),
    ({"user_id": "line\nbreak"}, "user_id"),
    ({"user_id": "usér"}, "user_id"),
    ({"session_seconds": 0}, "session_seconds"),
    ({"session_seconds": 86_401}, "session_seconds"),
    ({"session_seconds": 60.0}, "session_seconds"),
    ({"session_seconds": "600"}, "session_seconds"),
    ({"session_seconds": True}, "session_seconds"),
]


@pytest.mark.parametrize(
    ("kwargs", "param"), BAD_ARGUMENTS, ids=[f"{p}:{k!r}"[:70] for k, p in BAD_ARGUMENTS]
)
def test_bad_argument_is_named(client: RelayAPIClient, kwargs: dict[str, Any], param: str) -> None:
    if "api_key" not in kwargs and "key_ref" not in kwargs and param != "api_key":
        kwargs = {"api_key": "test-key-123", **kwargs}
    with pytest.raises(InvalidArgumentError) as info:
        client.create_token(**kwargs)
    assert info.value.param == param
    assert isinstance(info.value, ValueError)


def test_unknown_keyword_is_refused(client: RelayAPIClient) -> None:
    with pytest.raises(InvalidArgumentError, match="expire_days: is not a create_token option"):
        client.create_token(api_key="test-key-123", expire_days=1)  # type: ignore[call-arg]


def test_boundaries_are_accepted(client: RelayAPIClient) -> None:
    claims = client.decode_token(
        client.create_token(
            api_key="k" * 1024, max_calls=2**53 - 1, expire_seconds=1, rate_limit=(86400 * 365, 1),
            max_concurrent=10_000, allowed_models=[f"m{i}" for i in range(64)], user_id="u" * 128,
            allowed_ips=["0.0.0.0/0", "::/0", "192.0.2.7/32"], session_seconds=86_400,
        )
    )  # fmt: skip
    assert claims["max"] == 2**53 - 1
    assert claims["exp"] - claims["iat"] == 1
    assert len(claims["models"]) == 64
    assert claims["ssec"] == 86_400
    assert client.decode_token(client.create_token(api_key="k", session_seconds=1))["ssec"] == 1


def test_a_token_too_long_to_verify_is_refused(client: RelayAPIClient) -> None:
    origins = [f"https://app{i}.example.com" for i in range(200)]
    with pytest.raises(InvalidArgumentError) as info:
        client.create_token(api_key="test-key-123", allowed_origins=origins)
    assert info.value.param == "token"
    # Just under the limit still works and verifies.
    assert client.decode_token(client.create_token(api_key="test-key-123", allowed_origins=origins[:100]))


def test_seal_refuses_what_every_verifier_refuses() -> None:
    # Section 5.1: one rule set for minters and verifiers, so there is no token another conforming minter
    # may write that this SDK refuses to decode, and no claims this SDK writes that a verifier refuses.
    gen = TokenGenerator(rai_dict())
    base = {"jti": "cd" * 16, "tid": "acme", "iat": 1_790_000_000, "exp": 1_790_000_060, "prv": "openai"}
    key = gen.config.key
    for extra in ({"kref": "team/main key"}, {"key": "k", "models": [""]}, {"key": "k", "paths": ["chat"]},
                  {"key": "k", "origins": ["*"]}, {"key": "k", "ips": ["10.0.0.1/8"]}):  # fmt: skip
        with pytest.raises(ClaimError):
            seal({**base, **extra}, kid=key.key_id, key=key.key, salt=bytes(16))


def _windowed(**window: int) -> TokenGenerator:
    data = rai_dict()
    data["crypto"].update(window)
    return TokenGenerator(data)


def test_a_key_mints_only_inside_its_window() -> None:
    gen = _windowed(not_before=1_790_000_000, not_after=1_790_000_100)
    parts: dict[str, Any] = {"jti": "0" * 32, "salt": bytes(16), "api_key": "k"}
    for now in (1_790_000_000, 1_790_000_099):
        assert gen.decode_token(gen._create_token_from_parts(now=now, **parts))["iat"] == now
    with pytest.raises(ConfigError) as early:
        gen._create_token_from_parts(now=1_789_999_999, **parts)
    assert early.value.field == "crypto.not_before"
    with pytest.raises(ConfigError) as late:
        gen._create_token_from_parts(now=1_790_000_100, **parts)
    assert late.value.field == "crypto.not_after"
    assert "retired" in str(late.value)


def test_a_retired_key_refuses_create_token_and_generate_url() -> None:
    retired = rai_dict()
    retired["crypto"]["not_after"] = int(time.time()) - 1
    client = RelayAPIClient(retired)
    with pytest.raises(ConfigError):
        client.create_token(api_key="k")
    with pytest.raises(ConfigError):
        client.generate_url(api_key="k")
    # The window of a previous key never matters for minting: only the current key mints.
    fine = rai_dict("k1", previous=("k2-2026.rotated",))
    fine["crypto"]["previous_keys"][0]["not_after"] = 1
    assert RelayAPIClient(fine).create_token(api_key="k").startswith("rt1.")
