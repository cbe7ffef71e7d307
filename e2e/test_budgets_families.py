"""Spend limits on every API family the relay meters (docs/budgets.md section 3): OpenAI's Responses API
and embeddings, Gemini in its three answer forms, cache-priced usage, and the worst-case bound's
multipliers (`n`, lowered to 1) and media allowance.
"""

from __future__ import annotations

import json
import urllib.request
from typing import Any

import openai
import pytest

from relayapi import RelayAPIClient

from .budget_support import (
    ANTHROPIC_MODEL,
    DEFAULT_MAX_OUTPUT,
    INPUT_OVERHEAD,
    OPENAI_MODEL,
    PART_ALLOWANCE,
    PRICES,
    Sent,
    call,
    charged_since,
    client,
    forwarded,
    metered,
    micro_cost,
    mint,
    probe_length,
    reported,
    since,
    token_kinds,
    tokens_of,
    until,
)
from .harness import MockUpstream, Relay

GEMINI_MODEL = "gemini-2.0-flash"


@pytest.mark.parametrize("stream", [False, True])
def test_responses_api_is_metered_and_its_ceiling_written(
    mock: MockUpstream, brelay: Relay, bsdk: RelayAPIClient, stream: bool
) -> None:
    token = mint(bsdk, budget_tokens=1_000_000)
    before = metered(brelay)
    answer = client("openai", bsdk.url_for_token(token)).responses.create(
        model=OPENAI_MODEL, instructions="terse", input="hello [out:9]", stream=stream
    )
    events = list(answer) if stream else [answer]
    assert events[-1].type == "response.completed" if stream else events[0].usage is not None
    assert forwarded(mock)[0]["max_output_tokens"] == DEFAULT_MAX_OUTPUT
    expected = {"input": 20, "output": 9, "cached_input": 0}
    assert token_kinds(charged_since(brelay, before, 9)) == expected
    assert tokens_of(until(lambda: bsdk.get_usage(token), lambda d: tokens_of(d) == expected)) == expected


def test_embeddings_are_metered(mock: MockUpstream, brelay: Relay, bsdk: RelayAPIClient) -> None:
    token = mint(bsdk, budget_tokens=1_000_000)
    before = metered(brelay)
    sdk_client = client("openai", bsdk.url_for_token(token))
    sdk_client.embeddings.create(model="text-embedding-3-small", input=["a", "b", "c"])
    jti = bsdk.decode_token(token)["jti"]
    brelay.process.access_entry(lambda line: line.get("jti") == jti)
    assert token_kinds(since(metered(brelay), before)) == {"input": 30, "output": 0, "cached_input": 0}


def _gemini(url: str, body: Any) -> bytes:
    req = urllib.request.Request(
        url, data=json.dumps(body).encode(), method="POST", headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        return resp.read()  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    "method",
    ["generateContent", "streamGenerateContent?alt=sse", "streamGenerateContent"],
    ids=["plain", "sse", "json-array"],
)
def test_gemini_is_metered_in_every_answer_form(
    mock: MockUpstream, brelay: Relay, bsdk: RelayAPIClient, method: str
) -> None:
    token = mint(bsdk, "gemini", budget_tokens=1_000_000)
    before = metered(brelay)
    body = {
        "systemInstruction": {"parts": [{"text": "terse"}]},
        "contents": [{"role": "user", "parts": [{"text": "hi [out:12] [cached:4]"}]}],
    }
    raw = _gemini(bsdk.url_for_token(token) + f"/v1beta/models/{GEMINI_MODEL}:{method}", body)
    assert b"echo:" in raw
    # The relay wrote the ceiling Gemini's request did not name.
    assert forwarded(mock)[0]["generationConfig"]["maxOutputTokens"] == DEFAULT_MAX_OUTPUT
    expected = {"input": 24, "output": 12, "cached_input": 4}
    assert token_kinds(charged_since(brelay, before, 12)) == expected
    assert tokens_of(until(lambda: bsdk.get_usage(token), lambda d: tokens_of(d) == expected)) == expected


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
def test_cached_and_cache_written_tokens_are_priced_as_configured(
    mock: MockUpstream, brelay: Relay, bsdk: RelayAPIClient, kind: str
) -> None:
    token = mint(bsdk, kind, budget_cost=10_000_000)
    before = metered(brelay)
    text = "cache [cached:100] [cache_write:50] [out:20]"
    answer = call(kind, client(kind, bsdk.url_for_token(token)), text, stream=True, max_tokens=100)
    assert not isinstance(answer, Exception), answer
    usage = reported(mock)
    if kind == "openai":  # OpenAI has no cache writes: the marker is Anthropic's only
        cost = micro_cost(PRICES["openai"][OPENAI_MODEL], 10, 100, 20)
    else:
        prices = PRICES["anthropic"][ANTHROPIC_MODEL]
        cost = -(-(10 * prices["input"] + 100 * prices["cached_input"] + 50 * prices["cache_write"]
                   + 20 * prices["output"]) // 1_000_000)  # fmt: skip
    charged = charged_since(brelay, before, 20)
    assert token_kinds(charged) == token_kinds(usage)
    assert charged["cost"] == cost
    doc = until(lambda: bsdk.get_usage(token), lambda d: d.get("cost") == cost)
    assert doc["cost"] == cost


def test_a_budget_lowers_multipliers_to_one(mock: MockUpstream, bsdk: RelayAPIClient) -> None:
    # docs/budgets.md section 3.1: `n` is lowered to 1 so that one answer's ceiling bounds the call.
    text = "two choices"
    bound = probe_length(mock, "openai", text, stream=False, max_tokens=100, n=2) + INPUT_OVERHEAD
    token = mint(bsdk, budget_tokens=bound + 150)
    answer = call(
        "openai", client("openai", bsdk.url_for_token(token)), text, stream=False, max_tokens=100, n=2
    )
    assert not isinstance(answer, Exception), answer
    sent_on = forwarded(mock)[0]
    assert (sent_on["max_tokens"], sent_on["n"]) == (100, 1)


def test_an_image_part_adds_the_part_allowance(mock: MockUpstream, bsdk: RelayAPIClient) -> None:
    content = [
        {"type": "text", "text": "what is this"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
    ]
    sent = Sent()
    probe = client("openai", mock.base + "/v1", sent)
    probe.chat.completions.create(
        model=OPENAI_MODEL, messages=[{"role": "user", "content": content}], max_tokens=900
    )
    mock.reset()
    bound = sent.one_length() + INPUT_OVERHEAD + PART_ALLOWANCE
    token = mint(bsdk, budget_tokens=bound + 300)
    client("openai", bsdk.url_for_token(token)).chat.completions.create(
        model=OPENAI_MODEL, messages=[{"role": "user", "content": content}], max_tokens=900
    )
    assert forwarded(mock)[0]["max_tokens"] == 300


def test_an_endpoint_the_relay_cannot_bound_refuses_a_budget(
    mock: MockUpstream, bsdk: RelayAPIClient
) -> None:
    # Image generation has no output ceiling to bound: a budget cannot be enforced there, so it is refused.
    images = client("openai", bsdk.url_for_token(mint(bsdk, budget_tokens=1_000_000)))
    with pytest.raises(openai.PermissionDeniedError) as refused:
        images.images.generate(prompt="a lighthouse", n=1)
    assert refused.value.code == "limit_not_enforceable"
    assert mock.requests() == []


def test_a_token_without_a_budget_still_records_what_it_used(
    mock: MockUpstream, brelay: Relay, bsdk: RelayAPIClient
) -> None:
    # docs/budgets.md section 4: every token's line records the usage its answers reported. Without a
    # budget the body is streamed unread (no price known: cost 0) and a streamed chat call is not asked
    # for usage, so only the answer that reported usage by itself counts.
    token = mint(bsdk)
    sdk_client = client("openai", bsdk.url_for_token(token))
    assert not isinstance(call("openai", sdk_client, "plain [out:4]", stream=False, max_tokens=50), Exception)
    assert not isinstance(
        call("openai", sdk_client, "streamed [out:4]", stream=True, max_tokens=50), Exception
    )
    assert "stream_options" not in forwarded(mock)[1], "only a budget asks a stream for its usage"
    expected = {"input": 10, "output": 4, "cached_input": 0}
    doc = until(lambda: bsdk.get_usage(token), lambda d: tokens_of(d) == expected and d["calls_used"] == 2)
    assert tokens_of(doc) == expected
    assert (doc["calls_used"], doc["cost"]) == (2, 0)
