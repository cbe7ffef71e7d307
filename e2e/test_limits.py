"""Call limits under concurrency: the count is taken before forwarding, atomically."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import openai

from relayapi import RelayAPIClient

from .clients import openai_client
from .harness import REAL_KEY, MockUpstream

PARALLEL_CALLS = 50


def _race(base_url: str, n: int) -> list[Any]:
    client = openai_client(base_url)
    # A short upstream delay keeps the calls in flight together, so a relay that counted a call only
    # after its answer would let all of them through.
    messages = [{"role": "user", "content": "race [delay:0.3]"}]

    def call(_i: int) -> Any:
        try:
            return client.chat.completions.create(model="gpt-4o-mini", messages=messages)
        except openai.APIStatusError as exc:
            return exc

    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(call, range(n)))


def test_max_calls_is_exact_under_parallel_calls(mock: MockUpstream, sdk: RelayAPIClient) -> None:
    results = _race(sdk.generate_url(api_key=REAL_KEY, max_calls=5), PARALLEL_CALLS)
    ok = [r for r in results if not isinstance(r, Exception)]
    refused = [r for r in results if isinstance(r, Exception)]
    assert len(ok) == 5
    assert all(isinstance(r, openai.RateLimitError) and r.code == "token_exhausted" for r in refused), {
        type(r).__name__ for r in refused
    }
    assert len(mock.requests()) == 5


def test_unlimited_token_serves_every_parallel_call(mock: MockUpstream, sdk: RelayAPIClient) -> None:
    results = _race(sdk.generate_url(api_key=REAL_KEY, max_calls=None), 20)
    assert [r for r in results if isinstance(r, Exception)] == []
    assert len(mock.requests()) == 20
