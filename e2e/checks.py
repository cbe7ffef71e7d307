"""Assertions shared by the end-to-end tests about what reached the mock upstream."""

from __future__ import annotations

import json
import time
from typing import Any

from .harness import REAL_KEY, MockUpstream, headers_of

#: Seconds to wait for a condition polled over the mock's control endpoint.
POLL_TIMEOUT_SECS = 10.0


def assert_clean_upstream(
    recorded: dict[str, Any], token: str, *, provider: str, key: str = REAL_KEY
) -> None:
    """The upstream saw the real key in the provider's own header and no trace of the token."""
    headers = headers_of(recorded)
    everything = json.dumps(recorded)
    assert token not in everything, "the token reached the upstream"
    assert "rt1." not in everything, "token text reached the upstream"
    assert "token=" not in recorded["path"]
    assert "cookie" not in headers
    if provider == "openai":
        assert headers.get("authorization") == [f"Bearer {key}"]
        assert "x-api-key" not in headers
    elif provider == "anthropic":
        assert headers.get("x-api-key") == [key]
        assert "authorization" not in headers
        assert headers.get("anthropic-version"), "anthropic-version must reach the upstream"
    else:
        raise AssertionError(f"no header rule for {provider}")


def only_request(mock: MockUpstream) -> dict[str, Any]:
    seen = mock.requests()
    assert len(seen) == 1, f"expected exactly one upstream request, got {len(seen)}"
    return seen[0]


def wait_until_waiting(mock: MockUpstream, gate: str) -> None:
    deadline = time.monotonic() + POLL_TIMEOUT_SECS
    while not mock.waiting_at(gate):
        assert time.monotonic() < deadline, f"the mock never parked at gate {gate}"
        time.sleep(0.02)
