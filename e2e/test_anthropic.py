"""The official `anthropic` package against the relay: messages, plain and streamed."""

from __future__ import annotations

import json
import uuid

from relayapi import RelayAPIClient

from .checks import assert_clean_upstream, only_request, wait_until_waiting
from .clients import anthropic_client
from .harness import REAL_KEY, MockUpstream

HELLO = [{"role": "user", "content": "hello claude"}]


def _token(sdk: RelayAPIClient, **options: object) -> str:
    return sdk.create_token(api_key=REAL_KEY, max_calls=5, provider="anthropic", **options)  # type: ignore[arg-type]


def test_messages_path_form(mock: MockUpstream, sdk: RelayAPIClient) -> None:
    token = _token(sdk)
    client = anthropic_client(sdk.url_for_token(token))
    reply = client.messages.create(model="claude-test-model", max_tokens=64, messages=HELLO)
    assert reply.content[0].type == "text"
    assert reply.content[0].text == "echo: hello claude"
    seen = only_request(mock)
    assert (seen["method"], seen["path"]) == ("POST", "/v1/messages")
    assert json.loads(seen["body"])["model"] == "claude-test-model"
    assert_clean_upstream(seen, token, provider="anthropic")


def test_messages_header_form(mock: MockUpstream, sdk: RelayAPIClient) -> None:
    # The Anthropic SDK sends its api_key as x-api-key; the relay takes the token from there.
    token = _token(sdk)
    client = anthropic_client(sdk.relay_base_url, api_key=token)
    reply = client.messages.create(model="claude-test-model", max_tokens=64, messages=HELLO)
    assert reply.content[0].text == "echo: hello claude"  # type: ignore[union-attr]
    assert_clean_upstream(only_request(mock), token, provider="anthropic")


def test_messages_streamed(mock: MockUpstream, sdk: RelayAPIClient) -> None:
    token = _token(sdk)
    client = anthropic_client(sdk.url_for_token(token))
    with client.messages.stream(model="claude-test-model", max_tokens=64, messages=HELLO) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "echo: hello claude"
    assert final.stop_reason == "end_turn"
    seen = only_request(mock)
    assert json.loads(seen["body"])["stream"] is True
    assert_clean_upstream(seen, token, provider="anthropic")


def test_streamed_events_arrive_while_the_mock_is_still_producing(
    mock: MockUpstream, sdk: RelayAPIClient
) -> None:
    gate = uuid.uuid4().hex
    client = anthropic_client(sdk.url_for_token(_token(sdk)))
    events = iter(
        client.messages.create(
            model="claude-test-model",
            max_tokens=64,
            messages=[{"role": "user", "content": f"wait [gate:{gate}]"}],
            stream=True,
        )
    )
    try:
        assert next(events).type == "message_start"
        wait_until_waiting(mock, gate)
    finally:
        mock.release(gate)
    kinds = [e.type for e in events]
    assert kinds[0] == "content_block_start"
    assert kinds[-1] == "message_stop"


def test_forced_model(mock: MockUpstream, sdk: RelayAPIClient) -> None:
    client = anthropic_client(sdk.url_for_token(_token(sdk, ext_info='{"rep_m": "claude-forced"}')))
    reply = client.messages.create(model="claude-test-model", max_tokens=64, messages=HELLO)
    assert reply.model == "claude-forced"
    body = json.loads(only_request(mock)["body"])
    assert body["model"] == "claude-forced"
    assert body["messages"] == HELLO
    assert body["max_tokens"] == 64
