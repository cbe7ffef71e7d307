"""Spend limits (docs/budgets.md) through the official openai and anthropic SDKs, streamed and not.

One relay for the module (`brelay`, memory store, the budget config of `budget_support.py`). The mock
reports usage by the rule of `mock_usage.py` (10 input tokens per message or `[in:N]`, output
`min(ceiling, [out:N])`), so every expected figure below is arithmetic on what the test sent. A call's
worst case is `len(body) + input_overhead` input tokens plus its output ceiling; the reservation is
sized from the client's body bytes, which `Sent` records."""

from __future__ import annotations

import datetime
import urllib.request
import uuid
from typing import Any, Optional

import anthropic
import openai
import pytest

from relayapi import RelayAPIClient

from .budget_support import (
    DEFAULT_MAX_OUTPUT,
    INPUT_OVERHEAD,
    MIN_OUTPUT,
    OPENAI_MODEL,
    PRICES,
    RACE_CEILING,
    Sent,
    call,
    charged_since,
    client,
    error_code,
    forwarded,
    is_budget_refusal,
    metered,
    micro_cost,
    mint,
    new_uid,
    probe_length,
    race_and_drain,
    race_texts,
    reported,
    since,
    spent,
    token_kinds,
    tokens_of,
    until,
    user_window,
)
from .checks import wait_until_waiting
from .harness import MockUpstream, Relay

#: Calls of the race the budget pays for in full.
RACE_FULL_CALLS = 20


@pytest.mark.parametrize(("kind", "stream"), [("openai", True), ("anthropic", False)])
def test_parallel_calls_on_a_token_budget(
    mock: MockUpstream, brelay: Relay, bsdk: RelayAPIClient, kind: str, stream: bool
) -> None:
    racing, calm, bound = race_texts(mock, kind, stream)
    worst = bound + RACE_CEILING
    budget = RACE_FULL_CALLS * worst + worst // 2
    token = mint(bsdk, kind, budget_tokens=budget)
    before = metered(brelay)
    served, refused = race_and_drain([client(kind, bsdk.url_for_token(token))], kind, stream, racing, calm)

    upstream = reported(mock)
    assert upstream["calls"] == served
    charged = charged_since(brelay, before, upstream["output"])
    # Every token the provider reported is charged, and nothing else.
    assert token_kinds(charged) == token_kinds(upstream)
    assert charged["refusals"] == len(refused)
    assert budget - worst <= charged["input"] + charged["output"] <= budget
    doc = until(lambda: bsdk.get_usage(token), lambda d: tokens_of(d)["output"] == upstream["output"])
    assert tokens_of(doc) == token_kinds(upstream)
    assert doc["calls_used"] == served, "refused calls must not count"
    assert budget - worst <= spent(doc) <= budget
    for body in forwarded(mock):
        assert body["max_tokens"] <= RACE_CEILING


@pytest.mark.parametrize(("kind", "stream"), [("openai", False), ("anthropic", True)])
def test_parallel_calls_of_one_user_on_many_tokens_share_a_daily_quota(
    mock: MockUpstream, brelay: Relay, bsdk: RelayAPIClient, kind: str, stream: bool
) -> None:
    racing, calm, bound = race_texts(mock, kind, stream)
    worst = bound + RACE_CEILING
    budget = RACE_FULL_CALLS * worst + worst // 3
    uid = new_uid()
    # A backend that mints a fresh token per page load: four tokens, one user, one quota.
    tokens = [
        mint(bsdk, kind, user_id=uid, user_quotas=[{"window": "day", "tokens": budget}]) for _ in range(4)
    ]
    clients = [client(kind, bsdk.url_for_token(t)) for t in tokens]
    before = metered(brelay)
    served, _ = race_and_drain(clients, kind, stream, racing, calm)

    upstream = reported(mock)
    assert upstream["calls"] == served
    charged = charged_since(brelay, before, upstream["output"])
    assert token_kinds(charged) == token_kinds(upstream)
    assert budget - worst <= charged["input"] + charged["output"] <= budget
    day = until(lambda: user_window(bsdk, uid), lambda d: tokens_of(d)["output"] == upstream["output"])
    assert tokens_of(day) == token_kinds(upstream)
    assert day["calls"] == served
    assert budget - worst <= spent(day) <= budget
    per_token = [tokens_of(bsdk.get_usage(t)) for t in tokens]
    assert sum(t["input"] + t["output"] for t in per_token) == spent(day)


def test_parallel_streamed_calls_on_a_money_budget(
    mock: MockUpstream, brelay: Relay, bsdk: RelayAPIClient
) -> None:
    prices = PRICES["openai"][OPENAI_MODEL]
    racing, calm, bound = race_texts(mock, "openai", True)
    worst = micro_cost(prices, bound, 0, RACE_CEILING)
    budget = RACE_FULL_CALLS * worst + worst // 2
    token = mint(bsdk, budget_cost=budget)
    before = metered(brelay)
    served, _ = race_and_drain([client("openai", bsdk.url_for_token(token))], "openai", True, racing, calm)

    expected = sum(
        micro_cost(prices, r["reported"]["input"], 0, r["reported"]["output"]) for r in mock.requests()
    )
    charged = charged_since(brelay, before, reported(mock)["output"])
    assert charged["cost"] == expected, "each call costs its reported usage, rounded up once"
    assert budget - worst <= charged["cost"] <= budget
    doc = until(lambda: bsdk.get_usage(token), lambda d: d["cost"] == expected)
    assert doc["cost"] == expected, "each call costs its reported usage, rounded up once"
    assert doc["calls_used"] == served
    assert budget - worst <= doc["cost"] <= budget


# -- (b) a client that drops the stream is charged the whole reservation ------------------------------


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
def test_a_dropped_stream_is_charged_the_whole_reservation(
    mock: MockUpstream, brelay: Relay, bsdk: RelayAPIClient, kind: str
) -> None:
    gate = uuid.uuid4().hex
    token = mint(bsdk, kind, budget_tokens=1_000_000)
    sent = Sent()
    sdk_client = client(kind, bsdk.url_for_token(token), sent)
    messages = [{"role": "user", "content": f"drop [gate:{gate}] [out:5]"}]
    before = metered(brelay)
    if kind == "openai":
        stream: Any = sdk_client.chat.completions.create(
            model=OPENAI_MODEL, messages=messages, max_tokens=300, stream=True
        )
    else:
        stream = sdk_client.messages.create(
            model="claude-test-model", messages=messages, max_tokens=300, stream=True
        )
    try:
        next(iter(stream))
        wait_until_waiting(mock, gate)
        stream.close()  # the client goes away mid-answer
    finally:
        mock.release(gate)
    jti = bsdk.decode_token(token)["jti"]
    line = brelay.process.access_entry(lambda line: line.get("jti") == jti)
    reservation = {"input": sent.one_length() + INPUT_OVERHEAD, "output": 300, "cached_input": 0}
    assert token_kinds(since(metered(brelay), before)) == reservation
    assert (line.get("in_tok"), line.get("out_tok")) == (reservation["input"], 300)
    doc = bsdk.get_usage(token)
    assert tokens_of(doc) == reservation
    assert doc["calls_used"] == 1


# -- (e) a money limit on an unpriced model is refused before anything is forwarded ------------------


@pytest.mark.parametrize(
    "options",
    [{"budget_cost": 1_000_000}, {"user_quotas": [{"window": "month", "cost": 1_000_000}]}],
    ids=["bud.cost", "uq.cost"],
)
def test_money_limit_on_an_unpriced_model_is_403_model_not_priced(
    mock: MockUpstream, brelay: Relay, bsdk: RelayAPIClient, options: dict[str, Any]
) -> None:
    if "user_quotas" in options:
        options = {**options, "user_id": new_uid()}
    openai_sdk = client("openai", bsdk.url_for_token(mint(bsdk, **options)))
    with pytest.raises(openai.PermissionDeniedError) as denied:
        openai_sdk.chat.completions.create(model="gpt-unpriced", messages=[{"role": "user", "content": "hi"}])
    assert denied.value.status_code == 403
    assert denied.value.code == "model_not_priced"
    anthropic_sdk = client("anthropic", bsdk.url_for_token(mint(bsdk, "anthropic", **options)))
    with pytest.raises(anthropic.PermissionDeniedError) as also:
        anthropic_sdk.messages.create(
            model="claude-unpriced", max_tokens=16, messages=[{"role": "user", "content": "hi"}]
        )
    assert error_code(also.value) == "model_not_priced"
    assert mock.requests() == []
    # A priced model under the same limit is served, and so is an unpriced one under a token-only budget.
    assert not isinstance(call("openai", openai_sdk, "hi", stream=False, max_tokens=16), Exception)
    tokens_only = client("openai", bsdk.url_for_token(mint(bsdk, budget_tokens=100_000)))
    tokens_only.chat.completions.create(model="gpt-unpriced", messages=[{"role": "user", "content": "hi"}])
    assert len(mock.requests()) == 2
    # Metrics name priced models only: any other model a client sends is counted as `other`.
    with urllib.request.urlopen(brelay.base + "/metrics", timeout=10) as resp:
        metrics = resp.read().decode()
    assert 'model="other"' in metrics
    assert "unpriced" not in metrics


# -- (f) the usage-only chunk reaches only the clients that asked for it -----------------------------


@pytest.mark.parametrize(
    "stream_options",
    [None, {"include_usage": False}, {"include_usage": True}],
    ids=["absent", "false", "true"],
)
def test_usage_chunk_only_for_clients_that_asked(
    mock: MockUpstream, brelay: Relay, bsdk: RelayAPIClient, stream_options: Optional[dict[str, bool]]
) -> None:
    token = mint(bsdk, budget_tokens=1_000_000)
    before = metered(brelay)
    extra = {} if stream_options is None else {"stream_options": stream_options}
    chunks = call(
        "openai",
        client("openai", bsdk.url_for_token(token)),
        "count me [out:7]",
        stream=True,
        max_tokens=100,
        **extra,
    )
    assert not isinstance(chunks, Exception), chunks
    sent_on = forwarded(mock)[0]
    assert sent_on["stream_options"] == {"include_usage": True}
    asked = stream_options == {"include_usage": True}
    content = chunks[:-1] if asked else chunks
    # Client code that reads chunk.choices[0] keeps working for every chunk it gets.
    assert "".join(c.choices[0].delta.content or "" for c in content) == "echo: count me [out:7]"
    assert all(c.usage is None for c in content)
    if asked:
        assert chunks[-1].choices == []
        assert chunks[-1].usage is not None
        assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (10, 7)
    # Either way the relay metered the usage it read: the reported figures, not the reservation.
    assert token_kinds(charged_since(brelay, before, 7)) == {"input": 10, "output": 7, "cached_input": 0}
    doc = until(lambda: bsdk.get_usage(token), lambda d: tokens_of(d)["output"] == 7)
    assert tokens_of(doc) == {"input": 10, "output": 7, "cached_input": 0}


# -- (g) a call whose minimum cannot be paid --------------------------------------------------------


def _seconds_to_utc_midnight() -> int:
    now = datetime.datetime.now(datetime.timezone.utc)
    midnight = (now + datetime.timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return int((midnight - now).total_seconds()) + 1


@pytest.mark.parametrize("limit", ["bud", "uq-day"])
def test_a_call_whose_minimum_cannot_be_paid_is_429_budget_exhausted(
    mock: MockUpstream, bsdk: RelayAPIClient, limit: str
) -> None:
    # 100 tokens cannot even pay for the input bound (body + input_overhead) and min_output.
    options: dict[str, Any] = (
        {"budget_tokens": 100}
        if limit == "bud"
        else {"user_id": new_uid(), "user_quotas": [{"window": "day", "tokens": 100}]}
    )
    token = mint(bsdk, **options)
    with pytest.raises(openai.RateLimitError) as refused:
        client("openai", bsdk.url_for_token(token)).chat.completions.create(
            model=OPENAI_MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=16
        )
    err = refused.value
    assert err.status_code == 429
    assert err.code == "budget_exhausted"
    body = err.response.json()
    assert set(body) == {"error"}
    assert isinstance(body["error"]["message"], str)
    assert isinstance(body["error"]["type"], str)
    retry_after = err.response.headers.get("retry-after")
    if limit == "uq-day":
        assert retry_after is not None, "a daily quota resets at UTC midnight: say when"
        assert 0 < int(retry_after) <= _seconds_to_utc_midnight()
    else:
        assert retry_after is None, "a lifetime budget never resets"
    with pytest.raises(anthropic.RateLimitError) as also:
        client("anthropic", bsdk.url_for_token(mint(bsdk, "anthropic", **options))).messages.create(
            model="claude-test-model", max_tokens=16, messages=[{"role": "user", "content": "hi"}]
        )
    assert error_code(also.value) == "budget_exhausted"
    assert mock.requests() == []
    assert bsdk.get_usage(token)["calls_used"] == 0, "a refused call is not counted"


# -- (h) the output ceiling is lowered to what the budget pays for, and written when absent ----------


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
def test_output_ceiling_lowered_to_what_the_budget_can_pay(
    mock: MockUpstream, bsdk: RelayAPIClient, kind: str
) -> None:
    text = "lower me [out:999999]"
    bound = probe_length(mock, kind, text, stream=False, max_tokens=1000) + INPUT_OVERHEAD
    token = mint(bsdk, kind, budget_tokens=bound + 300)
    answer = call(kind, client(kind, bsdk.url_for_token(token)), text, stream=False, max_tokens=1000)
    assert not isinstance(answer, Exception), answer
    assert forwarded(mock)[0]["max_tokens"] == 300


def test_output_ceiling_written_when_absent(mock: MockUpstream, bsdk: RelayAPIClient) -> None:
    text = "no ceiling [out:999999]"
    bound = probe_length(mock, "openai", text, stream=False, max_tokens=None) + INPUT_OVERHEAD
    roomy = client("openai", bsdk.url_for_token(mint(bsdk, budget_tokens=1_000_000)))
    tight = client("openai", bsdk.url_for_token(mint(bsdk, budget_tokens=bound + 250)))
    for sdk_client in (roomy, tight):
        assert not isinstance(call("openai", sdk_client, text, stream=False, max_tokens=None), Exception)
    # OpenAI chat: the relay writes max_completion_tokens (docs/providers.md, "written when absent").
    assert [b.get("max_completion_tokens") for b in forwarded(mock)] == [DEFAULT_MAX_OUTPUT, 250]


def test_output_ceiling_lowered_by_a_money_budget(mock: MockUpstream, bsdk: RelayAPIClient) -> None:
    prices = PRICES["openai"][OPENAI_MODEL]
    text = "pay me [out:999999]"
    bound = probe_length(mock, "openai", text, stream=False, max_tokens=4000) + INPUT_OVERHEAD
    budget = micro_cost(prices, bound, 0, 1234)
    token = mint(bsdk, budget_cost=budget)
    assert not isinstance(
        call("openai", client("openai", bsdk.url_for_token(token)), text, stream=False, max_tokens=4000),
        Exception,
    )
    # The largest ceiling whose worst case, rounded up once, fits the budget.
    lowered = forwarded(mock)[0]["max_tokens"]
    assert micro_cost(prices, bound, 0, lowered) <= budget < micro_cost(prices, bound, 0, lowered + 1)


def test_output_ceiling_lowered_below_min_output_is_refused(mock: MockUpstream, bsdk: RelayAPIClient) -> None:
    text = "too little"
    bound = probe_length(mock, "openai", text, stream=False, max_tokens=1000) + INPUT_OVERHEAD
    token = mint(bsdk, budget_tokens=bound + MIN_OUTPUT - 1)
    refused = call("openai", client("openai", bsdk.url_for_token(token)), text, stream=False, max_tokens=1000)
    assert is_budget_refusal(refused), refused
    exact = mint(bsdk, budget_tokens=bound + MIN_OUTPUT)
    served = call("openai", client("openai", bsdk.url_for_token(exact)), text, stream=False, max_tokens=1000)
    assert not isinstance(served, Exception), served
    assert forwarded(mock)[0]["max_tokens"] == MIN_OUTPUT


# -- settlement rows of docs/budgets.md section 3 --------------------------------------------------


def test_an_upstream_error_without_usage_charges_nothing_but_counts(
    mock: MockUpstream, brelay: Relay, bsdk: RelayAPIClient
) -> None:
    token = mint(bsdk, budget_tokens=1_000_000)
    before = metered(brelay)
    failed = call(
        "openai", client("openai", bsdk.url_for_token(token)), "[status:500]", stream=False, max_tokens=100
    )
    assert isinstance(failed, openai.InternalServerError), failed
    jti = bsdk.decode_token(token)["jti"]
    brelay.process.access_entry(lambda line: line.get("jti") == jti)
    assert token_kinds(since(metered(brelay), before)) == {"input": 0, "output": 0, "cached_input": 0}
    doc = bsdk.get_usage(token)
    assert tokens_of(doc) == {"input": 0, "output": 0, "cached_input": 0}
    assert doc["calls_used"] == 1


@pytest.mark.parametrize("stream", [False, True])
def test_a_2xx_answer_without_usage_is_charged_the_whole_reservation(
    mock: MockUpstream, brelay: Relay, bsdk: RelayAPIClient, stream: bool
) -> None:
    token = mint(bsdk, budget_tokens=1_000_000)
    sent = Sent()
    before = metered(brelay)
    answer = call(
        "openai",
        client("openai", bsdk.url_for_token(token), sent),
        "quiet [nousage]",
        stream=stream,
        max_tokens=120,
    )
    assert not isinstance(answer, Exception), answer
    jti = bsdk.decode_token(token)["jti"]
    brelay.process.access_entry(lambda line: line.get("jti") == jti)
    reservation = {"input": sent.one_length() + INPUT_OVERHEAD, "output": 120, "cached_input": 0}
    assert token_kinds(since(metered(brelay), before)) == reservation
    assert tokens_of(bsdk.get_usage(token)) == reservation


def test_usage_beyond_the_reservation_is_still_charged_and_logged(
    mock: MockUpstream, brelay: Relay, bsdk: RelayAPIClient
) -> None:
    # The mock reports 5000 cached input tokens: more than any bound of this small body.
    token = mint(bsdk, budget_tokens=1_000_000)
    before = metered(brelay)
    answer = call(
        "openai",
        client("openai", bsdk.url_for_token(token)),
        "big [cached:5000] [out:3]",
        stream=False,
        max_tokens=50,
    )
    assert not isinstance(answer, Exception), answer
    used = {"input": 5010, "output": 3, "cached_input": 5000}
    charged = charged_since(brelay, before, 3)
    assert token_kinds(charged) == used
    assert charged["overshoots"] == 1
    jti = bsdk.decode_token(token)["jti"]
    logged = until(lambda: [x for x in brelay.log if "budget overshoot" in x and jti in x], bool)
    assert logged, "a `budget overshoot` line names the token id"
    assert tokens_of(bsdk.get_usage(token)) == used


def test_a_client_that_closes_right_after_done_is_charged_the_reported_usage(
    mock: MockUpstream, brelay: Relay, bsdk: RelayAPIClient
) -> None:
    # The openai SDK closes the connection as soon as it reads `data: [DONE]`; here the provider's
    # chunked body ends 0.5 s after that, so the relay sees the client leave before the provider ends.
    # The usage report was complete by then: it is what the provider bills.
    token = mint(bsdk, budget_tokens=1_000_000)
    before = metered(brelay)
    chunks = call(
        "openai",
        client("openai", bsdk.url_for_token(token)),
        "done [out:6] [linger:0.5]",
        stream=True,
        max_tokens=100,
    )
    assert not isinstance(chunks, Exception), chunks
    jti = bsdk.decode_token(token)["jti"]
    brelay.process.access_entry(lambda line: line.get("jti") == jti)
    assert token_kinds(since(metered(brelay), before)) == {"input": 10, "output": 6, "cached_input": 0}
