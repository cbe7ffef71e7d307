"""Relay URL building: ports, IPv6, https, base paths, api types and the three token transports."""

from __future__ import annotations

from typing import Any

import pytest

from relayapi import InvalidArgumentError, RelayAPIClient

from .support import GENERATE, rai_dict

TOKEN = GENERATE[0]["token"]


@pytest.mark.parametrize(
    ("server", "origin"),
    [
        ({"host": "127.0.0.1", "port": 8080}, "http://127.0.0.1:8080"),
        ({"host": "relay.example.com", "port": 80}, "http://relay.example.com"),
        ({"host": "relay.example.com", "port": 443}, "http://relay.example.com:443"),
        ({"host": "relay.example.com", "port": 443, "scheme": "https"}, "https://relay.example.com"),
        ({"host": "relay.example.com", "port": 80, "scheme": "https"}, "https://relay.example.com:80"),
        ({"host": "relay.example.com", "port": 8443, "scheme": "https"}, "https://relay.example.com:8443"),
        ({"host": "::1", "port": 8080}, "http://[::1]:8080"),
        ({"host": "2001:db8::1", "port": 443, "scheme": "https"}, "https://[2001:db8::1]"),
        ({"host": "2001:db8::1", "port": 80}, "http://[2001:db8::1]"),
    ],
)
def test_origin_and_base_url(server: dict[str, Any], origin: str) -> None:
    client = RelayAPIClient(rai_dict(**server))
    assert client.relay_base_url == origin + "/relayapi/"
    assert client.url_for_token(TOKEN) == f"{origin}/relayapi/{TOKEN}"


def test_custom_base_path() -> None:
    client = RelayAPIClient(rai_dict(base_path="/ai/relay/"))
    assert client.url_for_token(TOKEN, "embeddings") == (f"http://127.0.0.1:8080/ai/relay/{TOKEN}/embeddings")
    assert (
        client.query_url_for_token(TOKEN) == f"http://127.0.0.1:8080/ai/relay/chat/completions?token={TOKEN}"
    )


@pytest.mark.parametrize(
    ("api_type", "suffix"),
    [("", ""), ("chat_completions", "/chat/completions"), ("images_generations", "/images/generations"),
     ("embeddings", "/embeddings")],
)  # fmt: skip
def test_api_types(client: RelayAPIClient, api_type: str, suffix: str) -> None:
    assert client.url_for_token(TOKEN, api_type) == f"http://127.0.0.1:8080/relayapi/{TOKEN}{suffix}"


@pytest.mark.parametrize(
    "endpoint",
    ["chat", "completions", "/../admin", "/v1/./x", "/a b", "/x?y", "/x#y", "//", None, "EMBEDDINGS"],
)
def test_unknown_endpoint(client: RelayAPIClient, endpoint: Any) -> None:
    with pytest.raises(InvalidArgumentError) as info:
        client.url_for_token(TOKEN, endpoint)
    assert info.value.param == "endpoint"


@pytest.mark.parametrize(
    "path", ["/v1/messages", "/chat/completions", "/v1beta/models/gemini:generateContent"]
)
def test_provider_relative_path_as_endpoint(client: RelayAPIClient, path: str) -> None:
    # The same rule as the JS SDK's: any provider-relative path without dot segments, query or fragment.
    assert client.url_for_token(TOKEN, path) == f"http://127.0.0.1:8080/relayapi/{TOKEN}{path}"


def test_query_form(client: RelayAPIClient) -> None:
    assert client.query_url_for_token(TOKEN, "images_generations") == (
        f"http://127.0.0.1:8080/relayapi/images/generations?token={TOKEN}"
    )
    with pytest.raises(InvalidArgumentError):
        client.query_url_for_token(TOKEN, "")


@pytest.mark.parametrize(
    "token", ["", "abc", TOKEN + "/../admin", TOKEN + "?x=1", TOKEN + "#f", "rt1.", " " + TOKEN, None]
)
def test_text_that_is_not_a_token_never_reaches_a_url(client: RelayAPIClient, token: Any) -> None:
    with pytest.raises(InvalidArgumentError) as info:
        client.url_for_token(token)
    assert info.value.param == "token"


def test_generate_url_mints_a_fresh_verifiable_token(client: RelayAPIClient) -> None:
    url = client.generate_url(api_key="test-key-123", max_calls=3, provider="anthropic")
    prefix = "http://127.0.0.1:8080/relayapi/"
    assert url.startswith(prefix + "rt1.")
    claims = client.decode_token(url[len(prefix) :])
    assert (claims["max"], claims["prv"], claims["key"]) == (3, "anthropic", "test-key-123")
    assert client.generate_url(api_key="test-key-123") != client.generate_url(api_key="test-key-123")


def test_generate_url_with_an_endpoint(client: RelayAPIClient) -> None:
    url = client.generate_url(
        api_key="test-key-123", endpoint="embeddings", allowed_models=["text-embedding-3-small"]
    )
    prefix = "http://127.0.0.1:8080/relayapi/"
    assert url.startswith(prefix)
    assert url.endswith("/embeddings")
    token = url[len(prefix) : -len("/embeddings")]
    assert client.decode_token(token)["models"] == ["text-embedding-3-small"]
    base = client.generate_url(api_key="test-key-123")
    assert "/" not in base[len(prefix) :]  # the default endpoint "" is the base URL itself


def test_generate_url_checks_the_endpoint_before_minting(client: RelayAPIClient) -> None:
    with pytest.raises(InvalidArgumentError) as info:
        client.generate_url(api_key="test-key-123", endpoint="completions")
    assert info.value.param == "endpoint"
