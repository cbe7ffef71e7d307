"""Spend limits across processes (docs/budgets.md sections 3 and 4): a relay killed with streams in flight
keeps what it reserved in SQLite, and two relays on one real redis-server share one user's quota exactly.
"""

from __future__ import annotations

import json
import pathlib
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from relayapi import RelayAPIClient

from .budget_support import (
    INPUT_OVERHEAD,
    OPENAI_MODEL,
    RACE_CEILING,
    RELAY_CONFIG,
    call,
    client,
    error_code,
    is_budget_refusal,
    metered,
    mint,
    new_uid,
    probe_length,
    race,
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
from .harness import MockUpstream, Relay
from .redis_server import RedisServer

IN_FLIGHT = 3


def test_kill_9_with_streams_in_flight_keeps_every_reservation(
    mock: MockUpstream, tmp_path: pathlib.Path
) -> None:
    config = {**RELAY_CONFIG, "store": {"type": "sqlite", "path": str(tmp_path / "usage.db")}}
    gate = uuid.uuid4().hex[:16]
    text = f"crash [gate:{gate}] [out:999999]"
    bound = probe_length(mock, "openai", text, stream=True, max_tokens=RACE_CEILING)
    bound += INPUT_OVERHEAD
    worst = bound + RACE_CEILING
    # After the reservations of the streams in flight, exactly one more call fits, with 21 output tokens.
    budget = IN_FLIGHT * worst + bound + 21
    uid = new_uid()
    first = Relay(tmp_path, mock.port, config=config)
    streams = []
    try:
        sdk = RelayAPIClient(first.rai_for_client(), timeout=30)
        token = mint(
            sdk, budget_tokens=budget, user_id=uid, user_quotas=[{"window": "day", "tokens": budget}]
        )
        sdk_client = client("openai", sdk.url_for_token(token))
        for _ in range(IN_FLIGHT):
            streams.append(
                sdk_client.chat.completions.create(
                    model=OPENAI_MODEL,
                    messages=[{"role": "user", "content": text}],
                    max_tokens=RACE_CEILING,
                    stream=True,
                )
            )
        until(lambda: mock.gate_count(gate), lambda n: n == IN_FLIGHT)
        assert mock.gate_count(gate) == IN_FLIGHT
        first.kill()
    finally:
        mock.release(gate)
        first.stop()
        for s in streams:
            s.close()

    second = Relay(tmp_path, mock.port, config=config, rai=first.rai)
    try:
        sdk = RelayAPIClient(second.rai_for_client(), timeout=30)
        # The limit still holds on the same database: one more call fits, lowered to what is left...
        mock.reset()
        calm = text.replace("[gate:", "[gat_:")
        again = client("openai", sdk.url_for_token(token))
        served = call("openai", again, calm, stream=True, max_tokens=RACE_CEILING)
        assert not isinstance(served, Exception), served
        assert json.loads(mock.requests()[0]["body"])["max_tokens"] == 21
        # ...and then nothing more.
        assert is_budget_refusal(call("openai", again, calm, stream=True, max_tokens=RACE_CEILING))
        # What was reserved before the kill stays charged, next to the one call settled since.
        charged = {
            "input": IN_FLIGHT * bound + 10,
            "output": IN_FLIGHT * RACE_CEILING + 21,
            "cached_input": 0,
        }
        doc = until(lambda: sdk.get_usage(token), lambda d: tokens_of(d) == charged)
        assert tokens_of(doc) == charged
        assert doc["calls_used"] == IN_FLIGHT + 1
        assert tokens_of(user_window(sdk, uid)) == charged
    finally:
        second.stop()


# -- two relays, one redis-server ------------------------------------------------------------------


@pytest.fixture(scope="module")
def relay_pair(mock: MockUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Relay, Relay]]:
    redis = RedisServer()
    store = {"type": "redis", "url": redis.url, "key_prefix": f"e2e-{uuid.uuid4().hex[:8]}:"}
    config = {**RELAY_CONFIG, "store": store}
    relays: list[Relay] = []
    try:
        relays.append(Relay(tmp_path_factory.mktemp("relay-a"), mock.port, config=config))
        relays.append(Relay(tmp_path_factory.mktemp("relay-b"), mock.port, config=config, rai=relays[0].rai))
        yield relays[0], relays[1]
    finally:
        for r in relays:
            r.stop()
        redis.stop()


def _sdks(pair: tuple[Relay, Relay]) -> list[RelayAPIClient]:
    return [RelayAPIClient(r.rai_for_client(), timeout=30) for r in pair]


def test_two_relays_share_one_users_call_quota_exactly(
    mock: MockUpstream, relay_pair: tuple[Relay, Relay]
) -> None:
    sdks, uid = _sdks(relay_pair), new_uid()
    quota = [{"window": "day", "calls": 7}]

    def one(i: int) -> Any:
        # A fresh token per call, alternately on each relay: the quota is the user's, not a token's.
        sdk = sdks[i % 2]
        sdk_client = client("openai", sdk.url_for_token(mint(sdk, user_id=uid, user_quotas=quota)))
        return call("openai", sdk_client, "quota [delay:0.2]", stream=False, max_tokens=16)

    results = race([lambda i=i: one(i) for i in range(60)])
    refused = [r for r in results if isinstance(r, Exception)]
    assert len(results) - len(refused) == 7
    assert all(is_budget_refusal(r) for r in refused), {
        f"{type(r).__name__} {error_code(r)}" for r in refused
    }
    assert len(mock.requests()) == 7
    assert [user_window(sdk, uid)["calls"] for sdk in sdks] == [7, 7]


def test_two_relays_share_one_users_token_quota(mock: MockUpstream, relay_pair: tuple[Relay, Relay]) -> None:
    sdks, uid = _sdks(relay_pair), new_uid()
    racing, calm, bound = race_texts(mock, "openai", True)
    worst = bound + RACE_CEILING
    budget = 20 * worst + worst // 2
    quota = [{"window": "day", "tokens": budget}]
    # Calls alternate between the relays, in the race and in the drain that follows it.
    clients = [client("openai", s.url_for_token(mint(s, user_id=uid, user_quotas=quota))) for s in sdks]
    before = [metered(r) for r in relay_pair]
    served, _ = race_and_drain(clients, "openai", True, racing, calm)

    upstream = reported(mock)
    assert upstream["calls"] == served

    def both() -> dict[str, int]:
        deltas = [token_kinds(since(metered(r), b)) for r, b in zip(relay_pair, before)]
        return {k: sum(d[k] for d in deltas) for k in deltas[0]}

    charged = until(both, lambda c: c["output"] == upstream["output"])
    assert charged == token_kinds(upstream), "both relays together charged what the provider reported"
    assert budget - worst <= charged["input"] + charged["output"] <= budget
    for sdk in sdks:
        day = until(lambda s=sdk: user_window(s, uid), lambda d: tokens_of(d)["output"] == upstream["output"])
        assert tokens_of(day) == token_kinds(upstream)
        assert day["calls"] == served
        assert budget - worst <= spent(day) <= budget
