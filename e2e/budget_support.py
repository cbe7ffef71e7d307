"""Shared pieces of the spend-limit tests (docs/budgets.md): the relay's budget config, clients that keep
the bytes they sent (the reservation is sized from them), one call through either official SDK, races,
and the usage figures read back from the relay and from the mock upstream.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Optional

import anthropic
import openai

from relayapi import RelayAPIClient

from .clients import TIMEOUT_SECS
from .harness import REAL_KEY, MockUpstream, Relay

#: `budgets` section of the relay config under test, the numbers of docs/budgets.md section 2.
INPUT_OVERHEAD = 512
PART_ALLOWANCE = 2000
DEFAULT_MAX_OUTPUT = 4096
MIN_OUTPUT = 16
OPENAI_MODEL = "gpt-4o-mini"
ANTHROPIC_MODEL = "claude-test-model"
PRICES: dict[str, dict[str, dict[str, int]]] = {
    "openai": {OPENAI_MODEL: {"input": 150000, "output": 600000, "cached_input": 75000}},
    "anthropic": {
        ANTHROPIC_MODEL: {
            "input": 3000000,
            "output": 15000000,
            "cached_input": 300000,
            "cache_write": 3750000,
        }
    },
}
BUDGETS: dict[str, Any] = {
    "prices": PRICES,
    "part_allowance": PART_ALLOWANCE,
    "input_overhead": INPUT_OVERHEAD,
    "default_max_output": DEFAULT_MAX_OUTPUT,
    "min_output": MIN_OUTPUT,
}
#: The config sections a budget test's relay runs with: the budgets, and room for 200 parallel calls from
#: one address (the per-address connection cap is not under test here).
RELAY_CONFIG: dict[str, Any] = {"budgets": BUDGETS, "server": {"max_connections_per_ip": 1024}}
#: Parallel calls of a race, and the output ceiling each asks for (the mock answers with all of it).
PARALLEL_CALLS = 200
RACE_CEILING = 2000
#: Seconds to wait for the relay to settle calls whose answers the client has already read.
SETTLE_TIMEOUT_SECS = 10.0


def mint(sdk: RelayAPIClient, provider: str = "openai", **options: Any) -> str:
    """A token for `provider` with no call limit and the given spend options (`budget_tokens`...)."""
    return sdk.create_token(api_key=REAL_KEY, max_calls=None, provider=provider, **options)


class Sent:
    """The request bodies an SDK client sent, in order (an httpx request hook fills it)."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self._lock = threading.Lock()

    def hook(self, request: Any) -> None:
        with self._lock:
            self.bodies.append(bytes(request.content))

    def one_length(self) -> int:
        """The length every recorded body has (the races send identical bodies)."""
        lengths = {len(b) for b in self.bodies}
        assert len(lengths) == 1, f"bodies of different lengths: {sorted(lengths)}"
        return lengths.pop()


def client(kind: str, base_url: str, sent: Optional[Sent] = None) -> Any:
    """The official SDK of `kind` ("openai" or "anthropic") on `base_url`; no retries, bodies kept."""
    hooks = {"request": [sent.hook]} if sent is not None else {}
    if kind == "openai":
        return openai.OpenAI(
            base_url=base_url,
            api_key="unused",
            max_retries=0,
            timeout=TIMEOUT_SECS,
            http_client=openai.DefaultHttpxClient(event_hooks=hooks),
        )
    return anthropic.Anthropic(
        base_url=base_url,
        api_key="unused",
        max_retries=0,
        timeout=TIMEOUT_SECS,
        http_client=anthropic.DefaultHttpxClient(event_hooks=hooks),
    )


def call(
    kind: str, sdk_client: Any, text: str, *, stream: bool, max_tokens: Optional[int], **extra: Any
) -> Any:
    """One chat call with one user message; streamed answers are read to the end. Returns the answer
    (a list of events when streamed), or the SDK's APIStatusError. `max_tokens=None` leaves the
    ceiling out (OpenAI only: Anthropic requires it)."""
    messages = [{"role": "user", "content": text}]
    try:
        if kind == "openai":
            if max_tokens is not None:
                extra["max_tokens"] = max_tokens
            answer = sdk_client.chat.completions.create(
                model=OPENAI_MODEL, messages=messages, stream=stream, **extra
            )
        else:
            answer = sdk_client.messages.create(
                model=ANTHROPIC_MODEL, messages=messages, max_tokens=max_tokens, stream=stream, **extra
            )
        return list(answer) if stream else answer
    except (openai.APIStatusError, anthropic.APIStatusError) as exc:
        return exc


def error_code(exc: Any) -> Optional[str]:
    """The relay's error code from either SDK's exception."""
    body = exc.body if isinstance(exc.body, dict) else {}
    inner = body.get("error", body)
    return inner.get("code") if isinstance(inner, dict) else None


def is_budget_refusal(result: Any) -> bool:
    return (
        isinstance(result, (openai.RateLimitError, anthropic.RateLimitError))
        and error_code(result) == "budget_exhausted"
    )


def race(calls: Sequence[Callable[[], Any]]) -> list[Any]:
    """Run every call at once, each on its own thread."""
    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return list(pool.map(lambda f: f(), calls))


def reported(mock: MockUpstream) -> dict[str, int]:
    """The usage the mock reported over all its recorded requests, summed (docs/budgets.md `tok` terms)."""
    total = {"input": 0, "output": 0, "cached_input": 0, "calls": 0}
    for entry in mock.requests():
        total["calls"] += 1
        for name in ("input", "output", "cached_input"):
            total[name] += (entry["reported"] or {}).get(name, 0)
    return total


def metered(relay: Relay) -> dict[str, int]:
    """The relay's spend counters from `/metrics`, summed over providers and models: `input`, `output`,
    `cached_input`, `cost`, `refusals`, `overshoots`."""
    with urllib.request.urlopen(relay.base + "/metrics", timeout=10) as resp:
        text = resp.read().decode()
    out = dict.fromkeys(("input", "output", "cached_input", "cost", "refusals", "overshoots"), 0)
    for line in text.splitlines():
        name, _, value = line.rpartition(" ")
        if name.startswith("relayapi_tokens_total{"):
            out[name.split('kind="')[1].split('"')[0]] += int(value)
        elif name.startswith("relayapi_cost_total{"):
            out["cost"] += int(value)
        elif name == "relayapi_budget_refusals_total":
            out["refusals"] = int(value)
        elif name == "relayapi_budget_overshoot_total":
            out["overshoots"] = int(value)
    return out


def since(now: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {k: now[k] - before[k] for k in now}


def tokens_of(doc: dict[str, Any]) -> dict[str, int]:
    """`tokens` of a token usage document, or the token members of a user window."""
    figures = doc.get("tokens", doc)
    return {name: int(figures[name]) for name in ("input", "output", "cached_input")}


def spent(doc: dict[str, Any]) -> int:
    t = tokens_of(doc)
    return t["input"] + t["output"]


def user_window(sdk: RelayAPIClient, uid: str, window: str = "day") -> dict[str, Any]:
    """One window (`day`, `month`, `all`) of `GET /admin/v1/users/{uid}/usage`."""
    return sdk.get_user_usage(uid)["windows"][window]  # type: ignore[no-any-return]


def until(read: Callable[[], Any], ok: Callable[[Any], bool], timeout: float = SETTLE_TIMEOUT_SECS) -> Any:
    """Poll `read` until `ok` holds of its value (settlement may trail the client's last byte); the last
    value either way, so the caller's assertion shows what the relay answered."""
    deadline = time.monotonic() + timeout
    value = read()
    while not ok(value) and time.monotonic() < deadline:
        time.sleep(0.05)
        value = read()
    return value


def micro_cost(prices: dict[str, int], fresh: int, cached: int, output: int) -> int:
    """A call's cost in micro-units, rounded up once (docs/budgets.md section 2)."""
    units = fresh * prices["input"] + cached * prices.get("cached_input", prices["input"])
    units += output * prices["output"]
    return -(-units // 1_000_000)


def new_uid() -> str:
    """A user id no other test uses (user quotas outlive a test in the relay's store)."""
    return "e2e-" + uuid.uuid4().hex[:12]


def forwarded(mock: MockUpstream) -> list[dict[str, Any]]:
    """The JSON bodies that reached the mock, oldest first."""
    return [json.loads(r["body"]) for r in mock.requests()]


def probe_length(mock: MockUpstream, kind: str, text: str, **params: Any) -> int:
    """The length of the body the SDK sends for this call, measured against the mock directly (the body
    does not depend on the base URL); the mock's record is cleared again."""
    sent = Sent()
    base = mock.base + "/v1" if kind == "openai" else mock.base
    call(kind, client(kind, base, sent), text.replace("[gate:", "[gat_:"), **params)
    mock.reset()
    return sent.one_length()


TOKEN_KINDS = ("input", "output", "cached_input")


def charged_since(relay: Relay, before: dict[str, int], output: int) -> dict[str, int]:
    """What the relay charged since `before` (its `/metrics`), once `output` tokens have been settled."""
    return until(lambda: since(metered(relay), before), lambda m: m["output"] == output)  # type: ignore[no-any-return]


def token_kinds(figures: dict[str, int]) -> dict[str, int]:
    """The token members (`input`, `output`, `cached_input`) of a set of figures."""
    return {k: figures[k] for k in TOKEN_KINDS}


def race_texts(mock: MockUpstream, kind: str, stream: bool) -> tuple[str, str, int]:
    """The user texts of a race whose every call reports exactly what it reserved: `[in:N]` makes the
    mock report the input bound (the body's length plus `input_overhead`: the digits keep the length
    fixed) and `[out:...]` the whole output ceiling. So the settled total can only stay within a budget
    if no call was ever let through without room for its worst case. Answers the racing text (the mock
    answers after 0.2 s, so the calls overlap), the same without the delay, and the input bound."""
    template = "race [delay:0.2] [out:999999] [in:{:06d}]"
    bound = (
        probe_length(mock, kind, template.format(0), stream=stream, max_tokens=RACE_CEILING) + INPUT_OVERHEAD
    )
    racing = template.format(bound)
    return racing, racing.replace("[delay:0.2]", "[delay:0.0]"), bound


def race_and_drain(
    clients: list[Any], kind: str, stream: bool, racing: str, calm: str
) -> tuple[int, list[Any]]:
    """`PARALLEL_CALLS` parallel calls spread over `clients`, then calls one at a time (still spread) until
    the first refusal: with nothing in flight, that refusal proves the rest cannot pay for a minimal
    call. Answers the number of calls served and every refusal (each must be `budget_exhausted`)."""

    def one(i: int, text: str) -> Any:
        return call(kind, clients[i % len(clients)], text, stream=stream, max_tokens=RACE_CEILING)

    results = race([lambda i=i: one(i, racing) for i in range(PARALLEL_CALLS)])
    refused = [r for r in results if isinstance(r, Exception)]
    served = len(results) - len(refused)
    assert 0 < served < PARALLEL_CALLS, (
        f"{served} of {PARALLEL_CALLS} served: the race did not test the budget"
    )
    for i in range(100):
        result = one(i, calm)
        if isinstance(result, Exception):
            refused.append(result)
            break
        served += 1
    else:
        raise AssertionError("the budget never ran out")
    assert all(is_budget_refusal(r) for r in refused), {
        f"{type(r).__name__} {error_code(r)}" for r in refused
    }
    return served, refused
