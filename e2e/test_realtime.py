"""Realtime sessions through the relay (issue 14 §1) with the official `openai` SDK's realtime client.

The frontend's set-up is the one the README gives: the relay's base URL and the relay token as the SDK's
API key, over plain HTTP. The provider is `mock_realtime.py` (OpenAI
Realtime event shapes, `response.done` with usage); it records every handshake, so the tests see that the
real key arrived in `Authorization` and the token never did. Limits: `max_calls` exact over parallel
session opens, a revoked token's new sessions refused, a token budget that closes the session with 1008
after the response that used it up; metering read back through the admin API (`get_usage`).
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from relayapi import RelayAPIClient

from .budget_support import tokens_of, until
from .harness import REAL_KEY
from .mock_realtime import GEMINI_USAGE, USAGE, Handshake, MockRealtime
from .realtime_support import CERTS, MODEL, connect_options, realtime_client

PARALLEL_OPENS = 20
MAX_CALLS = 5
GEMINI_PATH = "/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent"


def assert_clean_handshake(seen: Handshake, token: str, *, key_header: str = "authorization") -> None:
    """The provider saw the real key in its own header and no trace of the token, nor any extension."""
    everything = json.dumps([seen.path, seen.headers])
    assert token not in everything, "the token reached the provider"
    assert "rt1." not in everything, "token text reached the provider"
    assert "openai-insecure-api-key" not in everything.lower()
    assert seen.header("sec-websocket-extensions") == []
    if key_header == "authorization":
        assert seen.header("authorization") == [f"Bearer {REAL_KEY}"]
    else:
        assert seen.header(key_header) == [REAL_KEY]
        assert seen.header("authorization") == []


def one_response(conn: Any) -> list[Any]:
    """Ask for a response and read its events up to `response.done`."""
    conn.response.create()
    events = []
    for event in conn:
        events.append(event)
        if event.type == "response.done":
            return events
    raise AssertionError(f"the session ended before response.done: {[e.type for e in events]}")


@pytest.mark.parametrize("transport", ["plain", "tls"])
def test_sdk_session_flows_both_ways_and_is_metered(
    rt: MockRealtime, transport: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Plain, and over TLS served by the relay itself (wss:, the test CA; the SDK's admin calls trust it
    # through SSL_CERT_FILE, read by every new default TLS context).
    any_sdk: RelayAPIClient = request.getfixturevalue("rt_sdk" if transport == "plain" else "rt_tls_sdk")
    if transport == "tls":
        monkeypatch.setenv("SSL_CERT_FILE", str(CERTS / "ca.pem"))
    token = any_sdk.create_token(api_key=REAL_KEY, max_calls=MAX_CALLS)
    client = realtime_client(any_sdk, token)
    with client.realtime.connect(model=MODEL, websocket_connection_options=connect_options(any_sdk)) as conn:
        assert conn.recv().type == "session.created"
        conn.conversation.item.create(
            item={"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}
        )
        echo = conn.recv()
        assert echo.type == "echo"  # type: ignore[comparison-overlap]
        assert json.loads(echo.of)["item"]["content"][0]["text"] == "hi"  # type: ignore[attr-defined]
        for _ in range(2):
            events = one_response(conn)
            types = [e.type for e in events]
            assert types == [
                "response.created",
                "response.output_text.delta",
                "response.output_text.delta",
                "response.output_audio.delta",
                "response.done",
            ], types
            assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == (
                "Hello from the mock"
            )
            assert events[-1].response.usage.output_tokens == USAGE["output_tokens"]
    [seen] = rt.handshakes()
    assert seen.path == f"/v1/realtime?model={MODEL}"
    assert_clean_handshake(seen, token)
    # Both responses' usage reaches the admin usage document; the session is one call.
    want = {
        "input": 2 * USAGE["input_tokens"],
        "output": 2 * USAGE["output_tokens"],
        "cached_input": 2 * USAGE["input_token_details"]["cached_tokens"],
    }
    doc = until(lambda: any_sdk.get_usage(token), lambda d: tokens_of(d) == want)
    assert tokens_of(doc) == want, doc
    assert doc["calls_used"] == 1, doc


def test_browser_subprotocol_token_is_taken_and_removed(rt: MockRealtime, rt_sdk: RelayAPIClient) -> None:
    """What the official browser client sends: the relay token as `openai-insecure-api-key.<token>`."""
    token = rt_sdk.create_token(api_key=REAL_KEY, max_calls=MAX_CALLS)
    url = rt_sdk.relay_base_url.rstrip("/").replace("http:", "ws:") + f"/realtime?model={MODEL}"
    offered = ["realtime", f"openai-insecure-api-key.{token}"]
    with connect(url, subprotocols=offered, compression=None, open_timeout=10) as ws:  # type: ignore[arg-type]
        assert ws.subprotocol == "realtime"
        assert json.loads(ws.recv(timeout=10))["type"] == "session.created"
        ws.send(json.dumps({"type": "ping.me"}))
        assert json.loads(ws.recv(timeout=10)) == {"type": "echo", "of": '{"type": "ping.me"}'}
    [seen] = rt.handshakes()
    assert seen.protocols == ["realtime"]
    assert_clean_handshake(seen, token)


def _open_and_close(sdk: RelayAPIClient, token: str) -> Any:
    client = realtime_client(sdk, token)
    try:
        with client.realtime.connect(model=MODEL, websocket_connection_options=connect_options(sdk)) as conn:
            return conn.recv().type
    except InvalidStatus as exc:
        return exc


def test_max_calls_is_exact_over_parallel_session_opens(rt: MockRealtime, rt_sdk: RelayAPIClient) -> None:
    token = rt_sdk.create_token(api_key=REAL_KEY, max_calls=MAX_CALLS)
    with ThreadPoolExecutor(max_workers=PARALLEL_OPENS) as pool:
        results = list(pool.map(lambda _i: _open_and_close(rt_sdk, token), range(PARALLEL_OPENS)))
    opened = [r for r in results if r == "session.created"]
    refused = [r for r in results if isinstance(r, InvalidStatus)]
    assert len(opened) == MAX_CALLS, results
    assert len(refused) == PARALLEL_OPENS - MAX_CALLS, results
    assert {r.response.status_code for r in refused} == {429}
    assert {json.loads(r.response.body or b"{}")["error"]["code"] for r in refused} == {"token_exhausted"}
    assert len(rt.handshakes()) == MAX_CALLS
    assert rt_sdk.get_usage(token)["calls_used"] == MAX_CALLS


def test_a_revoked_tokens_new_sessions_are_refused(rt: MockRealtime, rt_sdk: RelayAPIClient) -> None:
    token = rt_sdk.create_token(api_key=REAL_KEY, max_calls=MAX_CALLS)
    assert _open_and_close(rt_sdk, token) == "session.created"
    rt_sdk.revoke(token)
    refused = _open_and_close(rt_sdk, token)
    assert isinstance(refused, InvalidStatus), refused
    assert refused.response.status_code == 401, refused.response.body
    assert json.loads(refused.response.body or b"{}")["error"]["code"] == "token_revoked"
    assert len(rt.handshakes()) == 1
    assert rt_sdk.get_usage(token)["calls_used"] == 1


def test_a_budget_closes_the_session_with_1008_after_the_response_that_used_it_up(
    rt: MockRealtime, rt_sdk: RelayAPIClient
) -> None:
    per_response = USAGE["input_tokens"] + USAGE["output_tokens"]
    # The first response leaves room; the second uses the budget up.
    token = rt_sdk.create_token(
        api_key=REAL_KEY, max_calls=None, budget_tokens=per_response + per_response // 2
    )
    client = realtime_client(rt_sdk, token)
    with client.realtime.connect(model=MODEL, websocket_connection_options=connect_options(rt_sdk)) as conn:
        assert conn.recv().type == "session.created"
        one_response(conn)
        # The response that crosses the budget is delivered whole, then the session is closed.
        assert one_response(conn)[-1].type == "response.done"
        with pytest.raises(ConnectionClosed) as closed:
            conn.recv()
    assert closed.value.rcvd is not None, "the relay closed without a close frame"
    assert closed.value.rcvd.code == 1008
    assert closed.value.rcvd.reason == "spend budget exhausted"
    doc = until(
        lambda: rt_sdk.get_usage(token), lambda d: tokens_of(d)["output"] == 2 * USAGE["output_tokens"]
    )
    assert tokens_of(doc)["input"] + tokens_of(doc)["output"] == 2 * per_response
    refused = _open_and_close(rt_sdk, token)
    assert isinstance(refused, InvalidStatus), refused
    assert refused.response.status_code == 429
    assert json.loads(refused.response.body or b"{}")["error"]["code"] == "budget_exhausted"
    assert len(rt.handshakes()) == 1


def test_a_gemini_live_session_is_relayed_and_metered(rt: MockRealtime, rt_sdk: RelayAPIClient) -> None:
    token = rt_sdk.create_token(api_key=REAL_KEY, max_calls=MAX_CALLS, provider="gemini")
    url = rt_sdk.url_for_token(token, GEMINI_PATH).replace("http:", "ws:")
    with connect(url, compression=None, open_timeout=10) as ws:
        ws.send(json.dumps({"setup": {"model": "models/gemini-live-test"}}))
        assert json.loads(ws.recv(timeout=10)) == {"setupComplete": {}}
        turn = {"turns": [{"role": "user", "parts": [{"text": "hi"}]}], "turnComplete": True}
        ws.send(json.dumps({"clientContent": turn}))
        texts = []
        while True:
            message = json.loads(ws.recv(timeout=10))
            content = message["serverContent"]
            if content.get("turnComplete"):
                assert message["usageMetadata"] == GEMINI_USAGE
                break
            texts.extend(p["text"] for p in content["modelTurn"]["parts"])
        assert "".join(texts) == "Hello from Live"
    [seen] = rt.handshakes()
    assert seen.path == GEMINI_PATH
    assert_clean_handshake(seen, token, key_header="x-goog-api-key")
    want = {
        "input": GEMINI_USAGE["promptTokenCount"],
        "output": GEMINI_USAGE["responseTokenCount"],
        "cached_input": 0,
    }
    doc = until(lambda: rt_sdk.get_usage(token), lambda d: tokens_of(d) == want)
    assert tokens_of(doc) == want, doc


def test_the_sdk_sees_a_refused_model(rt_sdk: RelayAPIClient) -> None:
    """A token limited to one model refuses a session for another before the provider is asked; the SDK
    raises the websockets library's own error for a refused upgrade."""
    token = rt_sdk.create_token(api_key=REAL_KEY, max_calls=MAX_CALLS, allowed_models=["other-model"])
    rt_client = realtime_client(rt_sdk, token)
    options = connect_options(rt_sdk)
    with (
        pytest.raises(InvalidStatus) as refused,
        rt_client.realtime.connect(model=MODEL, websocket_connection_options=options),
    ):
        pass
    assert refused.value.response.status_code == 403
