"""Token failures surface as the documented errors through the official SDKs' exception types."""

from __future__ import annotations

import os
import time
from typing import Any

import anthropic
import openai
import pytest

from relayapi import RelayAPIClient

from .clients import anthropic_client, openai_client
from .harness import REAL_KEY, MockUpstream, Relay

HELLO = [{"role": "user", "content": "hello"}]
_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def _chat(base_url: str, model: str = "gpt-4o-mini", api_key: str = "unused") -> Any:
    return openai_client(base_url, api_key).chat.completions.create(model=model, messages=HELLO)


def _minted_at(sdk: RelayAPIClient, now: int, **options: Any) -> str:
    """A token as if minted at UTC second ``now`` (the relay judges it by its own clock)."""
    return sdk._create_token_from_parts(
        now=now,
        jti=os.urandom(16).hex(),
        salt=os.urandom(16),
        api_key=REAL_KEY,
        **options,
    )


def _tampered(token: str) -> str:
    # Change one character in the middle of the ciphertext: still perfectly valid base64url.
    i = len(token) // 2
    return token[:i] + _ALPHABET[(_ALPHABET.index(token[i]) + 1) % 64] + token[i + 1 :]


def _pre_auth_failure(relay: Relay, token: str) -> openai.AuthenticationError:
    with pytest.raises(openai.AuthenticationError) as info:
        _chat(f"{relay.base}/relayapi/{token}")
    return info.value


def test_invalid_tampered_and_foreign_tokens_get_one_identical_answer(
    relay: Relay, sdk: RelayAPIClient, mock: MockUpstream
) -> None:
    good = sdk.create_token(api_key=REAL_KEY, max_calls=5)
    # Same key id, different key: what someone who guessed the kid but not the key would mint.
    forged_rai = relay.rai_for_client()
    forged_rai["crypto"]["key"] = "A" * 43
    forged = RelayAPIClient(forged_rai).create_token(api_key=REAL_KEY)
    failures = [
        _pre_auth_failure(relay, token)
        for token in ("rt1." + "A" * 80, _tampered(good), forged, "rt1.AAAA", good[:-4])
    ]
    for err in failures:
        assert err.status_code == 401
        assert err.code == "invalid_token"
        assert err.response.headers.get("content-type", "").startswith("application/json")
    # No oracle: every pre-authentication failure answers byte for byte the same body.
    assert len({e.response.content for e in failures}) == 1
    assert mock.requests() == []


def test_no_token_at_all(relay: Relay, sdk: RelayAPIClient, mock: MockUpstream) -> None:
    with pytest.raises(openai.AuthenticationError) as info:
        _chat(sdk.relay_base_url, api_key="not-a-relay-token")
    assert info.value.code == "invalid_token"
    assert mock.requests() == []


def test_expired(sdk: RelayAPIClient, mock: MockUpstream) -> None:
    token = _minted_at(sdk, int(time.time()) - 7200, expire_seconds=600)
    with pytest.raises(openai.AuthenticationError) as info:
        _chat(sdk.url_for_token(token))
    assert info.value.code == "token_expired"
    assert info.value.response.headers.get("x-should-retry") == "false"
    assert mock.requests() == []


def test_not_yet_valid(sdk: RelayAPIClient, mock: MockUpstream) -> None:
    token = _minted_at(sdk, int(time.time()) + 7200, expire_seconds=600)
    with pytest.raises(openai.AuthenticationError) as info:
        _chat(sdk.url_for_token(token))
    assert info.value.code == "token_not_yet_valid"
    assert mock.requests() == []


def test_used_up(sdk: RelayAPIClient, mock: MockUpstream) -> None:
    base_url = sdk.generate_url(api_key=REAL_KEY, max_calls=2)
    _chat(base_url)
    _chat(base_url)
    with pytest.raises(openai.RateLimitError) as info:
        _chat(base_url)
    assert info.value.status_code == 429
    assert info.value.code == "token_exhausted"
    assert info.value.response.headers.get("x-should-retry") == "false"
    assert len(mock.requests()) == 2


def test_revoked(sdk: RelayAPIClient, mock: MockUpstream) -> None:
    token = sdk.create_token(api_key=REAL_KEY, max_calls=5)
    base_url = sdk.url_for_token(token)
    _chat(base_url)
    usage = sdk.revoke(token)
    assert usage["revoked"] is True
    assert usage["calls_used"] == 1
    with pytest.raises(openai.AuthenticationError) as info:
        _chat(base_url)
    assert info.value.code == "token_revoked"
    assert sdk.get_usage(token)["revoked"] is True
    assert len(mock.requests()) == 1


def test_revoke_before(sdk: RelayAPIClient, mock: MockUpstream) -> None:
    now = int(time.time())
    old = _minted_at(sdk, now - 100, expire_seconds=3600)
    sdk.revoke_before(now - 50)
    with pytest.raises(openai.AuthenticationError) as info:
        _chat(sdk.url_for_token(old))
    assert info.value.code == "token_revoked"
    # Tokens issued after the cut still work.
    _chat(sdk.generate_url(api_key=REAL_KEY, max_calls=1))
    assert len(mock.requests()) == 1


def test_model_not_allowed(sdk: RelayAPIClient, mock: MockUpstream) -> None:
    base_url = sdk.generate_url(api_key=REAL_KEY, max_calls=5, allowed_models=["gpt-4o-mini"])
    with pytest.raises(openai.PermissionDeniedError) as info:
        _chat(base_url, model="gpt-4o")
    assert info.value.code == "model_not_allowed"
    assert info.value.response.headers.get("x-should-retry") == "false"
    assert _chat(base_url, model="gpt-4o-mini").choices[0].message.content == "echo: hello"
    assert len(mock.requests()) == 1


def test_endpoint_not_allowed(sdk: RelayAPIClient, mock: MockUpstream) -> None:
    base_url = sdk.generate_url(api_key=REAL_KEY, max_calls=5, allowed_endpoints=["/chat/completions"])
    with pytest.raises(openai.PermissionDeniedError) as info:
        openai_client(base_url).embeddings.create(model="text-embedding-3-small", input="x")
    assert info.value.code == "endpoint_not_allowed"
    assert mock.requests() == []


def test_anthropic_sdk_sees_the_same_errors(relay: Relay, sdk: RelayAPIClient, mock: MockUpstream) -> None:
    def ask(base_url: str) -> Any:
        return anthropic_client(base_url).messages.create(
            model="claude-test-model", max_tokens=16, messages=HELLO
        )

    with pytest.raises(anthropic.AuthenticationError) as bad:
        ask(f"{relay.base}/relayapi/rt1.{'A' * 80}")
    assert bad.value.status_code == 401
    assert bad.value.body["error"]["code"] == "invalid_token"  # type: ignore[index]

    base_url = sdk.generate_url(api_key=REAL_KEY, max_calls=1, provider="anthropic")
    ask(base_url)
    with pytest.raises(anthropic.RateLimitError) as exhausted:
        ask(base_url)
    assert exhausted.value.body["error"]["code"] == "token_exhausted"  # type: ignore[index]

    expired = _minted_at(sdk, int(time.time()) - 7200, expire_seconds=600, provider="anthropic")
    with pytest.raises(anthropic.AuthenticationError) as late:
        ask(sdk.url_for_token(expired))
    assert late.value.body["error"]["code"] == "token_expired"  # type: ignore[index]
    assert len(mock.requests()) == 1
