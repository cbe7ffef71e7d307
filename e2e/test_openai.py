"""The official `openai` package against the relay: every call shape a frontend uses."""

from __future__ import annotations

import json
import urllib.request
import uuid

from relayapi import RelayAPIClient

from .checks import assert_clean_upstream, only_request, wait_until_waiting
from .clients import openai_client
from .harness import REAL_KEY, SERVER_KEY, SERVER_KEY_NAME, MockUpstream, Relay

HELLO = [{"role": "user", "content": "hello relay"}]


def test_health(relay: Relay, sdk: RelayAPIClient) -> None:
    health = sdk.health_check()
    assert health["status"] == "ok"
    assert isinstance(health["version"], str)
    assert isinstance(health["uptime_secs"], int)
    with urllib.request.urlopen(relay.base + "/health", timeout=10) as resp:
        assert resp.status == 200
        assert json.loads(resp.read())["status"] == "ok"


def test_chat_path_form(mock: MockUpstream, sdk: RelayAPIClient) -> None:
    base_url = sdk.generate_url(api_key=REAL_KEY, max_calls=5)
    reply = openai_client(base_url).chat.completions.create(model="gpt-4o-mini", messages=HELLO)
    assert reply.choices[0].message.content == "echo: hello relay"
    assert reply.model == "gpt-4o-mini"
    seen = only_request(mock)
    assert (seen["method"], seen["path"]) == ("POST", "/v1/chat/completions")
    assert json.loads(seen["body"]) == {"model": "gpt-4o-mini", "messages": HELLO}
    assert_clean_upstream(seen, base_url.rsplit("/", 1)[1], provider="openai")


def test_chat_header_form(mock: MockUpstream, sdk: RelayAPIClient) -> None:
    token = sdk.create_token(api_key=REAL_KEY, max_calls=5)
    reply = openai_client(sdk.relay_base_url, api_key=token).chat.completions.create(
        model="gpt-4o-mini", messages=HELLO
    )
    assert reply.choices[0].message.content == "echo: hello relay"
    assert_clean_upstream(only_request(mock), token, provider="openai")


def test_chat_query_form(mock: MockUpstream, sdk: RelayAPIClient) -> None:
    token = sdk.create_token(api_key=REAL_KEY, max_calls=5)
    body = json.dumps({"model": "gpt-4o-mini", "messages": HELLO}).encode()
    req = urllib.request.Request(
        sdk.query_url_for_token(token),
        data=body,
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        assert json.loads(resp.read())["choices"][0]["message"]["content"] == "echo: hello relay"
    seen = only_request(mock)
    assert seen["path"] == "/v1/chat/completions"
    assert_clean_upstream(seen, token, provider="openai")


def test_chat_streamed(mock: MockUpstream, sdk: RelayAPIClient) -> None:
    base_url = sdk.generate_url(api_key=REAL_KEY, max_calls=5)
    stream = openai_client(base_url).chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "stream three words"}],
        stream=True,
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "echo: stream three words"
    assert chunks[-1].choices[0].finish_reason == "stop"
    seen = only_request(mock)
    assert json.loads(seen["body"])["stream"] is True
    assert_clean_upstream(seen, base_url.rsplit("/", 1)[1], provider="openai")


def test_stream_events_reach_the_client_while_the_mock_is_still_producing(
    mock: MockUpstream, sdk: RelayAPIClient
) -> None:
    gate = uuid.uuid4().hex
    base_url = sdk.generate_url(api_key=REAL_KEY, max_calls=5)
    stream = openai_client(base_url).chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": f"wait [gate:{gate}]"}],
        stream=True,
    )
    events = iter(stream)
    try:
        first = next(events)
        assert first.choices[0].delta.role == "assistant"
        # The first event is in our hands and the mock is parked before its second: nothing buffered
        # the whole answer on the way.
        wait_until_waiting(mock, gate)
    finally:
        mock.release(gate)
    rest = "".join(c.choices[0].delta.content or "" for c in events if c.choices)
    assert rest == f"echo: wait [gate:{gate}]"


def test_embeddings(mock: MockUpstream, sdk: RelayAPIClient) -> None:
    client = openai_client(sdk.generate_url(api_key=REAL_KEY, max_calls=5))
    result = client.embeddings.create(model="text-embedding-3-small", input=["ab", "cde"])
    assert [d.embedding for d in result.data] == [[2.0, 0.0, 0.5], [3.0, 1.0, 0.5]]
    seen = only_request(mock)
    assert seen["path"] == "/v1/embeddings"
    assert json.loads(seen["body"])["input"] == ["ab", "cde"]


def test_images(mock: MockUpstream, sdk: RelayAPIClient) -> None:
    client = openai_client(sdk.generate_url(api_key=REAL_KEY, max_calls=5))
    result = client.images.generate(prompt="a lighthouse", n=2, size="256x256")
    assert [d.url for d in result.data or []] == [
        "https://images.mock.invalid/0.png",
        "https://images.mock.invalid/1.png",
    ]
    seen = only_request(mock)
    assert seen["path"] == "/v1/images/generations"
    assert json.loads(seen["body"])["prompt"] == "a lighthouse"


def test_models_get(mock: MockUpstream, sdk: RelayAPIClient) -> None:
    token = sdk.create_token(api_key=REAL_KEY, max_calls=5)
    models = openai_client(sdk.url_for_token(token)).models.list()
    assert [m.id for m in models] == ["gpt-4o-mini"]
    seen = only_request(mock)
    assert (seen["method"], seen["path"]) == ("GET", "/v1/models")
    assert_clean_upstream(seen, token, provider="openai")


def test_sdk_helpers_against_the_relay(mock: MockUpstream, sdk: RelayAPIClient) -> None:
    token = sdk.create_token(api_key=REAL_KEY, max_calls=5)
    assert sdk.chat_completions(token, messages=HELLO, model="gpt-4o-mini")["choices"][0]["message"][
        "content"
    ] == ("echo: hello relay")
    streamed = sdk.chat_completions(token, messages=HELLO, model="gpt-4o-mini", stream=True)
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in streamed) == "echo: hello relay"
    assert len(sdk.embeddings(token, input="abc", model="text-embedding-3-small")["data"]) == 1
    assert len(sdk.images_generations(token, prompt="a cat")["data"]) == 1
    assert [r["path"] for r in mock.requests()] == [
        "/v1/chat/completions",
        "/v1/chat/completions",
        "/v1/embeddings",
        "/v1/images/generations",
    ]


def test_forced_model_rewrites_the_body(mock: MockUpstream, sdk: RelayAPIClient) -> None:
    base_url = sdk.generate_url(api_key=REAL_KEY, max_calls=5, ext_info={"rep_m": "gpt-forced"})
    reply = openai_client(base_url).chat.completions.create(model="gpt-4o", messages=HELLO, temperature=0.5)
    assert reply.model == "gpt-forced"
    body = json.loads(only_request(mock)["body"])
    assert body == {"model": "gpt-forced", "messages": HELLO, "temperature": 0.5}


def test_server_side_key_reference(mock: MockUpstream, sdk: RelayAPIClient) -> None:
    token = sdk.create_token(key_ref=SERVER_KEY_NAME, max_calls=5)
    openai_client(sdk.url_for_token(token)).chat.completions.create(model="gpt-4o-mini", messages=HELLO)
    assert_clean_upstream(only_request(mock), token, provider="openai", key=SERVER_KEY)


def test_usage_reflects_calls(mock: MockUpstream, sdk: RelayAPIClient) -> None:
    token = sdk.create_token(api_key=REAL_KEY, max_calls=5)
    claims = sdk.decode_token(token)
    fresh = sdk.get_usage(token)
    assert fresh["calls_used"] == 0
    client = openai_client(sdk.url_for_token(token))
    for _ in range(2):
        client.chat.completions.create(model="gpt-4o-mini", messages=HELLO)
    usage = sdk.get_usage(claims["jti"])
    assert usage["token_id"] == claims["jti"]
    assert usage["tenant_id"] == "e2e"
    assert (usage["calls_used"], usage["max_calls"], usage["remaining"]) == (2, 5, 3)
    assert usage["expires_at"] == claims["exp"]
    assert usage["revoked"] is False
    assert len(mock.requests()) == 2


def test_cors_preflight_needs_no_token(mock: MockUpstream, sdk: RelayAPIClient) -> None:
    # A browser sends the preflight without credentials; it must be answered before any token check.
    url = sdk.url_for_token(sdk.create_token(api_key=REAL_KEY, max_calls=1), "chat_completions")
    req = urllib.request.Request(
        url,
        method="OPTIONS",
        headers={
            "Origin": "https://app.example.com",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type, authorization",
        },
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert 200 <= resp.status < 300
        assert resp.headers["Access-Control-Allow-Origin"] in ("*", "https://app.example.com")
        assert "POST" in resp.headers["Access-Control-Allow-Methods"].upper()
    assert mock.requests() == []
