"""HTTP helpers against a local stdlib server that asserts exactly what the SDK sent."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from relayapi import (
    APIError,
    BadResponseError,
    InvalidArgumentError,
    RelayAPIClient,
    RelayConnectionError,
)

from .fake_relay import FakeRelay, Recorded, Reply, sse
from .support import rai_dict

MESSAGES = [{"role": "user", "content": "Hello"}]


def _token(client: RelayAPIClient) -> str:
    return client.create_token(api_key="test-key-123", max_calls=5)


def test_chat_completions_sends_the_token_in_the_header(
    fake_relay: FakeRelay, relay_client: RelayAPIClient
) -> None:
    answer = {"id": "chatcmpl-1", "choices": [{"message": {"role": "assistant", "content": "Hi"}}]}
    fake_relay.route("POST", "/relayapi/chat/completions", Reply(body=json.dumps(answer).encode()))
    token = _token(relay_client)
    result = relay_client.chat_completions(token, messages=MESSAGES, model="gpt-4o-mini", temperature=0.2)
    assert result == answer
    [req] = fake_relay.requests
    assert req.method == "POST"
    assert req.path == "/relayapi/chat/completions"  # token stays out of the URL
    assert req.headers["authorization"] == f"Bearer {token}"
    assert req.headers["content-type"] == "application/json"
    assert req.headers["user-agent"].startswith("relayapi-tokens-python/")
    assert json.loads(req.body) == {"model": "gpt-4o-mini", "messages": MESSAGES, "temperature": 0.2}


def test_streamed_chat_yields_parsed_chunks_until_done(
    fake_relay: FakeRelay, relay_client: RelayAPIClient
) -> None:
    frames = [
        b": keep-alive comment\r\n\r\n",
        b'data: {"choices":[{"delta":{"content":"He"}}]}\r\n\r\n',
        b"event: message\n",
        b'data: {"choices":[{"delta":\n',
        b'data: {"content":"llo"}}]}\n\n',
        b"data: [DONE]\n\n",
        b'data: {"never": "yielded"}\n\n',
    ]
    fake_relay.route(
        "POST",
        "/relayapi/chat/completions",
        Reply(headers={"Content-Type": "text/event-stream"}, body=frames),
    )
    chunks = list(
        relay_client.chat_completions(
            _token(relay_client), messages=MESSAGES, model="gpt-4o-mini", stream=True
        )
    )
    assert chunks == [
        {"choices": [{"delta": {"content": "He"}}]},
        {"choices": [{"delta": {"content": "llo"}}]},
    ]
    [req] = fake_relay.requests
    assert json.loads(req.body)["stream"] is True
    assert req.headers["accept"] == "text/event-stream"


def test_stream_without_done_ends_at_end_of_body(fake_relay: FakeRelay, relay_client: RelayAPIClient) -> None:
    fake_relay.route(
        "POST", "/relayapi/chat/completions", Reply(body=sse('{"type":"message_stop"}', done=False))
    )
    chunks = list(
        relay_client.chat_completions(_token(relay_client), messages=MESSAGES, model="m", stream=True)
    )
    assert chunks == [{"type": "message_stop"}]


def test_stream_events_arrive_before_the_server_finishes(
    fake_relay: FakeRelay, relay_client: RelayAPIClient
) -> None:
    gate = threading.Event()
    fake_relay.route("POST", "/relayapi/chat/completions", Reply(body=sse('{"n":1}', '{"n":2}', gate=gate)))
    stream = relay_client.chat_completions(_token(relay_client), messages=MESSAGES, model="m", stream=True)
    started = time.monotonic()
    assert next(stream) == {"n": 1}
    # The server is still blocked on the gate: the first event was delivered while it was producing.
    assert not gate.is_set()
    assert time.monotonic() - started < 5
    gate.set()
    assert list(stream) == [{"n": 2}]


def test_error_event_in_stream_raises(fake_relay: FakeRelay, relay_client: RelayAPIClient) -> None:
    fake_relay.route(
        "POST",
        "/relayapi/chat/completions",
        Reply(body=sse('{"n":1}', '{"error":{"message":"upstream went away","code":"upstream_error"}}')),
    )
    stream = relay_client.chat_completions(_token(relay_client), messages=MESSAGES, model="m", stream=True)
    assert next(stream) == {"n": 1}
    with pytest.raises(APIError) as info:
        next(stream)
    assert info.value.error_code == "upstream_error"


def test_stream_cut_mid_way_is_a_connection_error(
    fake_relay: FakeRelay, relay_client: RelayAPIClient
) -> None:
    fake_relay.route(
        "POST", "/relayapi/chat/completions", Reply(body=sse('{"n":1}', done=False), truncate=True)
    )
    stream = relay_client.chat_completions(_token(relay_client), messages=MESSAGES, model="m", stream=True)
    assert next(stream) == {"n": 1}
    with pytest.raises(RelayConnectionError):
        next(stream)


def test_images_and_embeddings(fake_relay: FakeRelay, relay_client: RelayAPIClient) -> None:
    fake_relay.route("POST", "/relayapi/images/generations", Reply(body=b'{"data":[{"url":"u"}]}'))
    fake_relay.route("POST", "/relayapi/embeddings", Reply(body=b'{"data":[{"embedding":[0.5]}]}'))
    token = _token(relay_client)
    assert relay_client.images_generations(token, prompt="a cat", n=1, size="256x256") == {
        "data": [{"url": "u"}]
    }
    assert relay_client.embeddings(token, input=("a", "b"), model="text-embedding-3-small")["data"][0][
        "embedding"
    ] == [0.5]
    img, emb = fake_relay.requests
    assert (img.path, json.loads(img.body)) == (
        "/relayapi/images/generations",
        {"prompt": "a cat", "n": 1, "size": "256x256"},
    )
    assert (emb.path, json.loads(emb.body)) == (
        "/relayapi/embeddings",
        {"model": "text-embedding-3-small", "input": ["a", "b"]},
    )


def test_error_answer_becomes_api_error(fake_relay: FakeRelay, relay_client: RelayAPIClient) -> None:
    body = {"error": {"message": "max calls used", "type": "rate_limit_error", "code": "token_exhausted"}}
    fake_relay.route(
        "POST",
        "/relayapi/chat/completions",
        Reply(
            429, {"Content-Type": "application/json", "X-Should-Retry": "false"}, json.dumps(body).encode()
        ),
    )
    with pytest.raises(APIError) as info:
        relay_client.chat_completions(_token(relay_client), messages=MESSAGES, model="m")
    err = info.value
    assert (err.status, err.error_code, err.message, err.error_type) == (
        429,
        "token_exhausted",
        "max calls used",
        "rate_limit_error",
    )
    assert err.headers["x-should-retry"] == "false"
    assert err.body == body


def test_streamed_request_raises_at_call_time(fake_relay: FakeRelay, relay_client: RelayAPIClient) -> None:
    fake_relay.route(
        "POST", "/relayapi/chat/completions", Reply(401, body=b'{"error":{"code":"invalid_token"}}')
    )
    with pytest.raises(APIError) as info:
        relay_client.chat_completions(_token(relay_client), messages=MESSAGES, model="m", stream=True)
    assert (info.value.status, info.value.error_code) == (401, "invalid_token")


def test_non_json_error(fake_relay: FakeRelay, relay_client: RelayAPIClient) -> None:
    fake_relay.route(
        "POST", "/relayapi/embeddings", Reply(502, {"Content-Type": "text/plain"}, b"bad gateway from proxy")
    )
    with pytest.raises(APIError) as info:
        relay_client.embeddings(_token(relay_client), input="x", model="m")
    assert (info.value.status, info.value.error_code, info.value.message) == (
        502,
        None,
        "bad gateway from proxy",
    )


def test_redirect_is_not_followed(fake_relay: FakeRelay, relay_client: RelayAPIClient) -> None:
    fake_relay.route(
        "POST", "/relayapi/chat/completions", Reply(307, {"Location": "http://127.0.0.1:9/steal"}, b"")
    )
    with pytest.raises(APIError) as info:
        relay_client.chat_completions(_token(relay_client), messages=MESSAGES, model="m")
    assert info.value.status == 307
    assert len(fake_relay.requests) == 1


def test_health_check_is_at_the_root(fake_relay: FakeRelay, relay_client: RelayAPIClient) -> None:
    fake_relay.route("GET", "/health", Reply(body=b'{"status":"ok","version":"0.1.0","uptime_secs":3}'))
    assert relay_client.health_check()["status"] == "ok"
    [req] = fake_relay.requests
    assert (req.method, req.path, req.body) == ("GET", "/health", b"")
    assert "authorization" not in req.headers


def test_success_that_is_not_json(fake_relay: FakeRelay, relay_client: RelayAPIClient) -> None:
    # The same class as the JS SDK's for a 2xx it cannot read (sdk/api.json "non_json_2xx").
    fake_relay.route("GET", "/health", Reply(headers={"Content-Type": "text/html"}, body=b"<html>"))
    with pytest.raises(BadResponseError) as info:
        relay_client.health_check()
    assert (info.value.code, info.value.status, info.value.body) == ("ERR_BAD_RESPONSE", 200, b"<html>")


def test_stream_answer_that_is_not_an_event_stream(
    fake_relay: FakeRelay, relay_client: RelayAPIClient
) -> None:
    fake_relay.route("POST", "/relayapi/chat/completions", Reply(body=b'{"choices":[]}'))
    with pytest.raises(BadResponseError, match="expected an event stream"):
        relay_client.chat_completions(_token(relay_client), messages=MESSAGES, model="m", stream=True)


def test_stream_event_that_is_not_json(fake_relay: FakeRelay, relay_client: RelayAPIClient) -> None:
    fake_relay.route("POST", "/relayapi/chat/completions", Reply(body=sse("{not json")))
    stream = relay_client.chat_completions(_token(relay_client), messages=MESSAGES, model="m", stream=True)
    with pytest.raises(BadResponseError):
        next(stream)


def test_timeout_is_per_wait_not_for_the_whole_answer(
    fake_relay: FakeRelay, relay_client_factory: Any
) -> None:
    # Six events, each 0.5 s after the previous one: the whole answer takes longer than the 2 s timeout,
    # but no single wait does, so it completes (sdk/api.json "timeout", as in the JS SDK).
    def slow() -> Iterator[bytes]:
        for i in range(6):
            time.sleep(0.5)
            yield f'data: {{"n":{i}}}\n\n'.encode()

    fake_relay.route("POST", "/relayapi/chat/completions", Reply(body=slow()))
    client = relay_client_factory(timeout=2)
    chunks = list(client.chat_completions(_token(client), messages=MESSAGES, model="m", stream=True))
    assert chunks == [{"n": i} for i in range(6)]


def test_timeout_fires_on_silence(fake_relay: FakeRelay, relay_client_factory: Any) -> None:
    gate = threading.Event()
    fake_relay.route("POST", "/relayapi/chat/completions", Reply(body=sse('{"n":1}', '{"n":2}', gate=gate)))
    client = relay_client_factory(timeout=0.5)
    stream = client.chat_completions(_token(client), messages=MESSAGES, model="m", stream=True)
    assert next(stream) == {"n": 1}
    with pytest.raises(RelayConnectionError):
        next(stream)
    gate.set()


@pytest.mark.parametrize("timeout", [0, -1, True, "10", 10**7])
def test_timeout_must_be_positive_seconds(timeout: Any) -> None:
    with pytest.raises(InvalidArgumentError) as info:
        RelayAPIClient(rai_dict(), timeout=timeout)
    assert info.value.param == "timeout"


def test_unreachable_relay() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # The port was free a moment ago and nothing listens on it now.
    client = RelayAPIClient(rai_dict(port=port), timeout=5)
    with pytest.raises(RelayConnectionError) as info:
        client.health_check()
    assert isinstance(info.value, ConnectionError)


def test_read_timeout_is_a_connection_error(fake_relay: FakeRelay) -> None:
    release = threading.Event()

    def slow(_rec: Recorded) -> Reply:
        release.wait(10)
        return Reply(body=b"{}")

    fake_relay.route("GET", "/health", slow)
    client = RelayAPIClient(rai_dict(port=fake_relay.port), timeout=0.3)
    try:
        with pytest.raises(RelayConnectionError):
            client.health_check()
    finally:
        release.set()
