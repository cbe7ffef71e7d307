"""The relay serving HTTPS itself (issue 6): the official `openai` package reaches it over TLS.

The relay runs with the test certificate from tests/certs (issued by the test CA for 127.0.0.1) and a
plain-HTTP redirect listener on an OS-chosen port. A frontend that trusts the CA gets its answers; one
that does not is refused at the handshake, before anything reaches the upstream.
"""

from __future__ import annotations

import http.client
import json
import ssl
import urllib.request
from collections.abc import Iterator
from typing import Optional

import openai
import pytest

from relayapi import RelayAPIClient

from .checks import assert_clean_upstream, only_request
from .clients import TIMEOUT_SECS
from .harness import REAL_KEY, REPO_ROOT, MockUpstream, Relay

CERTS = REPO_ROOT / "tests" / "certs"
HELLO = [{"role": "user", "content": "hello over tls"}]


@pytest.fixture(scope="module")
def https_relay(mock: MockUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Relay]:
    tls = {
        "cert_file": str(CERTS / "server.pem"),
        "key_file": str(CERTS / "server.key"),
        "redirect_http_port": 0,
    }
    server = Relay(tmp_path_factory.mktemp("https-relay"), mock.port, tls=tls)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def https_sdk(https_relay: Relay) -> RelayAPIClient:
    return RelayAPIClient(https_relay.rai_for_client(), timeout=30)


def _trusts_test_ca() -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(CERTS / "ca.pem"))


def _client(base_url: str, *, verify: Optional[ssl.SSLContext] = None) -> openai.OpenAI:
    """The SDK as a frontend configures it; without `verify`, httpx's default trust store (no test CA)."""
    http_client = openai.DefaultHttpxClient() if verify is None else openai.DefaultHttpxClient(verify=verify)
    return openai.OpenAI(
        base_url=base_url,
        api_key="unused",
        max_retries=0,
        timeout=TIMEOUT_SECS,
        http_client=http_client,
    )


def _redirect_port(relay: Relay) -> int:
    return int(str(relay.process.entry("redirect listening")["addr"]).rsplit(":", 1)[1])


def _token_of(base_url: str) -> str:
    return base_url.rstrip("/").rsplit("/", 1)[1]


def test_relay_says_https_and_the_sdk_mints_https_urls(https_relay: Relay, https_sdk: RelayAPIClient) -> None:
    assert https_relay.process.entry("listening")["scheme"] == "https"
    assert json.loads(https_relay.rai_path.read_text(encoding="utf-8"))["server"]["scheme"] == "https"
    url = https_sdk.generate_url(api_key=REAL_KEY, max_calls=1)
    assert url.startswith(f"https://127.0.0.1:{https_relay.port}/relayapi/")
    with urllib.request.urlopen(
        f"https://127.0.0.1:{https_relay.port}/health", timeout=10, context=_trusts_test_ca()
    ) as resp:
        assert resp.status == 200
        assert json.loads(resp.read())["status"] == "ok"


def test_chat_over_https(mock: MockUpstream, https_sdk: RelayAPIClient) -> None:
    base_url = https_sdk.generate_url(api_key=REAL_KEY, max_calls=5)
    with _client(base_url, verify=_trusts_test_ca()) as client:
        reply = client.chat.completions.create(model="gpt-4o-mini", messages=HELLO)
    assert reply.choices[0].message.content == "echo: hello over tls"
    seen = only_request(mock)
    assert (seen["method"], seen["path"]) == ("POST", "/v1/chat/completions")
    assert_clean_upstream(seen, _token_of(base_url), provider="openai")


def test_stream_over_https(mock: MockUpstream, https_sdk: RelayAPIClient) -> None:
    base_url = https_sdk.generate_url(api_key=REAL_KEY, max_calls=5)
    with _client(base_url, verify=_trusts_test_ca()) as client:
        chunks = list(
            client.chat.completions.create(
                model="gpt-4o-mini",
                messages=[{"role": "user", "content": "stream over tls"}],
                stream=True,
            )
        )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "echo: stream over tls"
    assert chunks[-1].choices[0].finish_reason == "stop"
    seen = only_request(mock)
    assert json.loads(seen["body"])["stream"] is True
    assert_clean_upstream(seen, _token_of(base_url), provider="openai")


def test_a_client_without_the_ca_is_refused_before_anything_is_forwarded(
    mock: MockUpstream, https_sdk: RelayAPIClient
) -> None:
    base_url = https_sdk.generate_url(api_key=REAL_KEY, max_calls=5)
    with _client(base_url) as client, pytest.raises(openai.APIConnectionError) as info:
        client.chat.completions.create(model="gpt-4o-mini", messages=HELLO)
    # The refusal must be the certificate check, not a relay that is simply not there.
    causes = []
    exc: Optional[BaseException] = info.value
    while exc is not None:
        causes.append(exc)
        exc = exc.__cause__ or exc.__context__
    assert any(isinstance(c, ssl.SSLCertVerificationError) for c in causes), [repr(c) for c in causes]
    assert mock.requests() == []


def _plain_request(port: int, method: str, target: str, body: bytes = b"") -> http.client.HTTPResponse:
    # http.client never follows redirects: the test sees the relay's own answer.
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = {"Content-Type": "application/json"} if body else {}
    conn.request(method, target, body=body or None, headers=headers)
    resp = conn.getresponse()
    resp.read()
    conn.close()
    return resp


def test_plain_http_port_redirects_to_https(https_relay: Relay) -> None:
    resp = _plain_request(_redirect_port(https_relay), "GET", "/health")
    assert resp.status == 308
    assert resp.getheader("location") == f"https://127.0.0.1:{https_relay.port}/health"


def test_a_token_sent_in_clear_is_redirected_never_forwarded(
    mock: MockUpstream, https_relay: Relay, https_sdk: RelayAPIClient
) -> None:
    token = https_sdk.create_token(api_key=REAL_KEY, max_calls=5)
    target = f"/relayapi/{token}/chat/completions"
    body = json.dumps({"model": "gpt-4o-mini", "messages": HELLO}).encode()
    resp = _plain_request(_redirect_port(https_relay), "POST", target, body)
    # 308 keeps the method and body on the retry (RFC 9110 §15.4.9).
    assert resp.status == 308
    assert resp.getheader("location") == f"https://127.0.0.1:{https_relay.port}{target}"
    assert mock.requests() == []
