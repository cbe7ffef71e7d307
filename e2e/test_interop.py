"""Tokens cross implementations: Rust-minted tokens decode in Python, Python-minted ones pass the relay."""

from __future__ import annotations

import json
import os
import subprocess
import time

from relayapi import RelayAPIClient

from .checks import assert_clean_upstream, only_request
from .clients import openai_client
from .harness import (
    REAL_KEY,
    SERVER_KEY,
    SERVER_KEY_NAME,
    MockUpstream,
    Relay,
    relay_binary,
)

MINT_KEY_ENV = "E2E_MINT_KEY"


def _rust_mint(relay: Relay, *args: str) -> str:
    result = subprocess.run(
        [str(relay_binary()), "mint", "--rai", str(relay.rai_path), *args],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, MINT_KEY_ENV: REAL_KEY},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    token = result.stdout.strip()
    assert token.startswith("rt1."), result.stdout
    # The key passed through the environment must not be echoed anywhere.
    assert REAL_KEY not in result.stdout
    assert REAL_KEY not in result.stderr
    return token


def test_rust_minted_token_decodes_in_python(relay: Relay, sdk: RelayAPIClient) -> None:
    before = int(time.time())
    token = _rust_mint(
        relay,
        "--provider",
        "openai",
        "--key-env",
        MINT_KEY_ENV,
        "--max-calls",
        "3",
        "--expire-seconds",
        "600",
    )
    claims = sdk.decode_token(token)
    assert claims["tid"] == "e2e"
    assert claims["prv"] == "openai"
    assert claims["key"] == REAL_KEY
    assert claims["max"] == 3
    assert claims["exp"] - claims["iat"] == 600
    assert before - 5 <= claims["iat"] <= int(time.time()) + 5
    assert "ext" not in claims
    assert sdk.verify_token(token) == claims


def test_rust_minted_forced_model_reaches_the_upstream(
    relay: Relay, sdk: RelayAPIClient, mock: MockUpstream
) -> None:
    token = _rust_mint(relay, "--provider", "openai", "--key-env", MINT_KEY_ENV, "--model", "gpt-rust")
    assert sdk.decode_token(token)["ext"] == {"rep_m": "gpt-rust"}
    reply = openai_client(sdk.url_for_token(token)).chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
    )
    assert reply.model == "gpt-rust"
    seen = only_request(mock)
    assert json.loads(seen["body"])["model"] == "gpt-rust"
    assert_clean_upstream(seen, token, provider="openai")


def test_rust_minted_key_reference(relay: Relay, sdk: RelayAPIClient, mock: MockUpstream) -> None:
    token = _rust_mint(relay, "--provider", "openai", "--key-ref", SERVER_KEY_NAME)
    claims = sdk.decode_token(token)
    assert claims["kref"] == SERVER_KEY_NAME
    assert "key" not in claims
    openai_client(sdk.url_for_token(token)).chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
    )
    assert_clean_upstream(only_request(mock), token, provider="openai", key=SERVER_KEY)


def test_python_token_with_every_limit_passes_the_relay(sdk: RelayAPIClient, mock: MockUpstream) -> None:
    base_url = sdk.generate_url(
        api_key=REAL_KEY,
        max_calls=3,
        expire_seconds=600,
        rate_limit=(100, 60),
        max_concurrent=4,
        allowed_models=["gpt-4o-mini"],
        allowed_endpoints=["/chat/completions"],
        allowed_ips=["127.0.0.0/8", "::1/128"],
        max_tokens=256,
        max_tokens_mode="clamp",
        user_id="e2e-user",
    )
    reply = openai_client(base_url).chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "hi"}],
        max_tokens=4096,
    )
    assert reply.choices[0].message.content == "echo: hi"
    body = json.loads(only_request(mock)["body"])
    assert body["max_tokens"] == 256  # clamped to the token's ceiling


def test_relay_log_never_holds_keys_or_tokens(relay: Relay, sdk: RelayAPIClient, mock: MockUpstream) -> None:
    token = sdk.create_token(api_key=REAL_KEY, max_calls=2)
    openai_client(sdk.url_for_token(token)).chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
    )
    time.sleep(0.2)  # let the access log line reach our reader
    log = "\n".join(relay.log)
    assert '"msg":"listening"' in log.replace(" ", "")
    assert token not in log
    assert "rt1." not in log
    assert REAL_KEY not in log
    assert SERVER_KEY not in log
    assert relay.rai["crypto"]["key"] not in log
