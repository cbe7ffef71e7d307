"""The mock upstream's usage reports, read straight from the mock by the official SDKs' own parsers.

The budget tests trust these figures, so they are checked here first without the relay in between: each
provider's format, streamed and not, and the rule of ``mock_usage.py`` (10 input tokens per entry, output
``min(ceiling, [out:N])``, cache markers on top).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import openai
import pytest

from .clients import anthropic_client, openai_client
from .harness import MockUpstream


def _openai(mock: MockUpstream) -> openai.OpenAI:
    return openai_client(mock.base + "/v1")


def _reported(mock: MockUpstream) -> list[Any]:
    return [r["reported"] for r in mock.requests()]


def test_chat_reports_usage_by_the_rule(mock: MockUpstream) -> None:
    messages: Any = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hi [out:500] [cached:7]"},
    ]
    reply = _openai(mock).chat.completions.create(model="gpt-4o-mini", messages=messages, max_tokens=120)
    assert reply.usage is not None
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (27, 120)
    assert reply.usage.total_tokens == 147
    assert reply.usage.prompt_tokens_details is not None
    assert reply.usage.prompt_tokens_details.cached_tokens == 7
    plain = _openai(mock).chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "three words here"}]
    )
    assert plain.usage is not None
    assert (plain.usage.prompt_tokens, plain.usage.completion_tokens) == (10, 4)  # "echo: three words here"
    assert _reported(mock) == [
        {"input": 27, "output": 120, "cached_input": 7, "cache_write": 0},
        {"input": 10, "output": 4, "cached_input": 0, "cache_write": 0},
    ]


def test_chat_stream_carries_usage_only_when_asked(mock: MockUpstream) -> None:
    client = _openai(mock)
    messages: Any = [{"role": "user", "content": "hi [out:9]"}]
    plain = list(client.chat.completions.create(model="m", messages=messages, stream=True))
    assert all(len(c.choices) == 1 and c.usage is None for c in plain)
    assert all("usage" not in (c.model_extra or {}) and "usage" not in c.model_fields_set for c in plain)
    asked = list(
        client.chat.completions.create(
            model="m",
            messages=messages,
            stream=True,
            stream_options={"include_usage": True},
            max_completion_tokens=5,
        )
    )
    *content, last = asked
    assert all(len(c.choices) == 1 and c.usage is None and "usage" in c.model_fields_set for c in content)
    assert last.choices == []
    assert last.usage is not None
    assert (last.usage.prompt_tokens, last.usage.completion_tokens, last.usage.total_tokens) == (10, 5, 15)
    assert _reported(mock) == [None, {"input": 10, "output": 5, "cached_input": 0, "cache_write": 0}]


def test_responses_plain_and_streamed(mock: MockUpstream) -> None:
    client = _openai(mock)
    reply = client.responses.create(model="gpt-4o", input="hello [out:50]", max_output_tokens=30)
    assert reply.output_text == "echo: hello [out:50]"
    assert reply.usage is not None
    assert (reply.usage.input_tokens, reply.usage.output_tokens) == (10, 30)
    events = list(
        client.responses.create(
            model="gpt-4o",
            instructions="terse",
            input=[{"role": "user", "content": "a [cached:3]"}],
            stream=True,
        )
    )
    assert events[0].type == "response.created"
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == "echo: a [cached:3]"
    done = events[-1]
    assert done.type == "response.completed"
    usage = done.response.usage
    assert usage is not None
    assert (usage.input_tokens, usage.input_tokens_details.cached_tokens, usage.output_tokens) == (23, 3, 3)


def test_embeddings_usage(mock: MockUpstream) -> None:
    result = _openai(mock).embeddings.create(model="text-embedding-3-small", input=["ab", "cde"])
    assert (result.usage.prompt_tokens, result.usage.total_tokens) == (20, 20)


def test_anthropic_plain_and_streamed(mock: MockUpstream) -> None:
    client = anthropic_client(mock.base)
    text = "hi [out:40] [cached:5] [cache_write:2]"
    messages: Any = [{"role": "user", "content": text}]
    reply = client.messages.create(model="claude", max_tokens=25, system="sys", messages=messages)
    usage = reply.usage
    assert (usage.input_tokens, usage.output_tokens) == (20, 25)
    assert (usage.cache_read_input_tokens, usage.cache_creation_input_tokens) == (5, 2)
    events = list(client.messages.create(model="claude", max_tokens=25, messages=messages, stream=True))
    start, delta = events[0], next(e for e in events if e.type == "message_delta")
    assert start.type == "message_start"
    assert (start.message.usage.input_tokens, start.message.usage.output_tokens) == (10, 1)
    assert delta.usage.output_tokens == 25
    assert _reported(mock) == [
        {"input": 27, "output": 25, "cached_input": 5, "cache_write": 2},
        {"input": 17, "output": 25, "cached_input": 5, "cache_write": 2},
    ]


def _post(url: str, body: Any) -> tuple[int, bytes]:
    req = urllib.request.Request(
        url, data=json.dumps(body).encode(), method="POST", headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def test_gemini_plain_sse_and_array(mock: MockUpstream) -> None:
    body = {
        "contents": [{"role": "user", "parts": [{"text": "x [out:8]"}]}],
        "generationConfig": {"maxOutputTokens": 6},
    }
    base = mock.base + "/v1beta/models/gemini-2.0-flash"
    status, raw = _post(base + ":generateContent", body)
    assert status == 200
    meta = json.loads(raw)["usageMetadata"]
    assert (meta["promptTokenCount"], meta["candidatesTokenCount"], meta["totalTokenCount"]) == (10, 6, 16)
    _, sse = _post(base + ":streamGenerateContent?alt=sse", body)
    frames = [json.loads(f[len("data: ") :]) for f in sse.decode().split("\r\n\r\n") if f]
    assert [f["usageMetadata"]["candidatesTokenCount"] for f in frames] == [2, 4, 6]
    assert frames[-1]["candidates"][0]["finishReason"] == "STOP"
    _, array = _post(base + ":streamGenerateContent", body)
    elements = json.loads(array)
    assert [e["usageMetadata"]["candidatesTokenCount"] for e in elements] == [2, 4, 6]
    assert "".join(e["candidates"][0]["content"]["parts"][0]["text"] for e in elements) == "echo: x [out:8]"


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/chat/completions", {"model": "m", "messages": [{"role": "user", "content": "[status:503]"}]}),
        (
            "/v1/messages",
            {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "[status:429]"}]},
        ),
    ],
)
def test_status_marker_answers_an_error_without_usage(mock: MockUpstream, path: str, body: Any) -> None:
    status, raw = _post(mock.base + path, body)
    assert status in (503, 429)
    assert "usage" not in json.loads(raw)
    assert _reported(mock) == [None]


def test_nousage_marker(mock: MockUpstream) -> None:
    reply = _openai(mock).chat.completions.create(
        model="m", messages=[{"role": "user", "content": "x [nousage]"}]
    )
    assert reply.usage is None
    assert _reported(mock) == [None]
