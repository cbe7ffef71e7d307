"""relayapi-sdk 1.0.0 compatibility (issue 13 section 3, docs/compat-v0.md): tokens minted by the real
published SDK, sent to the real relay binary in every URL shape that SDK and the official OpenAI SDK
make, with expiry, call limits, revocation, the operator's forced limits, off by default, and no
oracle between padding, decoding and claims failures."""

from __future__ import annotations

import base64
import json
import pathlib
import re
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import openai
import pytest

from relayapi import APIError, RelayAPIClient

from .clients import openai_client
from .compat_v0_support import jti, run_sdk, tenant_secret, write_original_rai
from .harness import SERVER_KEY, SERVER_KEY_NAME, MockUpstream, Relay, headers_of

TENANT = "legacy"
KREF_TENANT = "legacy-kref"
RB_TENANT = "legacy-rb"
#: The warning the relay logs at start for each tenant opted in.
WARNING = (
    "relayapi-sdk 1.0.0 tokens accepted for a tenant: they are AES-CBC without integrity protection, so a "
    "token holder may alter them undetected within the limits forced here; migrate the tenant to v1 tokens "
    "(docs/compat-v0.md)"
)
UPSTREAM_KEY = "sk-legacy-upstream-0042"
MESSAGES = [{"role": "user", "content": "hello"}]


class Setup:
    def __init__(
        self, relay: Relay, rai: dict[str, Any], kref_rai: dict[str, Any], rb_rai: dict[str, Any]
    ) -> None:
        self.relay = relay
        self.rai = rai
        self.kref_rai = kref_rai
        self.rb_rai = rb_rai

    def mint(self, rai: dict[str, Any] | None = None, **args: Any) -> dict[str, Any]:
        args.setdefault("api_key", UPSTREAM_KEY)
        return run_sdk(rai or self.rai, "mint", **args)  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def v0(mock: MockUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    workdir: pathlib.Path = tmp_path_factory.mktemp("compat")
    # The relay reads only `crypto`; the port is the SDK's business and set once the relay listens.
    rai = write_original_rai(workdir / "legacy.rai", 0)
    kref_rai = write_original_rai(workdir / "legacy-kref.rai", 0)
    rb_rai = write_original_rai(workdir / "legacy-rb.rai", 0)
    compat = [
        {"tenant_id": TENANT, "rai": str(workdir / "legacy.rai"), "key_id": "legacy-v0",
         "max_lifetime": 7 * 86400, "max_calls": 1000, "providers": ["openai"]},
        {"tenant_id": KREF_TENANT, "rai": str(workdir / "legacy-kref.rai"), "key_id": "legacy-kref-v0",
         "providers": ["openai"], "krefs": [SERVER_KEY_NAME], "rate": {"n": 2, "s": 3600}},
        {"tenant_id": RB_TENANT, "rai": str(workdir / "legacy-rb.rai"), "key_id": "legacy-rb-v0",
         "providers": ["openai"]},
    ]  # fmt: skip
    relay = Relay(workdir, mock.port, config={"token": {"compat_v0": compat}})
    try:
        for r in (rai, kref_rai, rb_rai):
            r["server"]["port"] = relay.port
        yield Setup(relay, rai, kref_rai, rb_rai)
    finally:
        relay.stop()


def _post(url: str, body: Any = None) -> tuple[int, dict[str, Any]]:
    data = json.dumps(body or {"model": "gpt-4o-mini", "messages": MESSAGES}).encode()
    req = urllib.request.Request(url, data=data, method="POST", headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _forwarded(mock: MockUpstream) -> tuple[str, str]:
    """The path and Authorization of the one request the mock received."""
    (req,) = mock.requests()
    return req["path"], headers_of(req)["authorization"][0]


def test_the_sdks_own_call_goes_through(mock: MockUpstream, v0: Setup) -> None:
    minted = v0.mint()
    answer = run_sdk(v0.rai, "chat", token=minted["token"])
    assert answer["object"] == "chat.completion"
    assert _forwarded(mock) == ("/v1/chat/completions", f"Bearer {UPSTREAM_KEY}")


def test_each_url_shape_with_plain_http(mock: MockUpstream, v0: Setup) -> None:
    minted = v0.mint(max_calls=10)
    port = v0.relay.port
    h = minted["rai_hash"]
    t = minted["token"]
    # The SDK's own strings: the doubled base path, and the no-endpoint base.
    assert (
        minted["url_chat"]
        == f"http://127.0.0.1:{port}/relayapi//relayapi/chat/completions?token={t}&rai_hash={h}"
    )
    assert minted["url_base"] == f"http://127.0.0.1:{port}/relayapi/?token={t}&rai_hash={h}"
    shapes = [
        minted["url_chat"],
        minted["url_base"] + "/chat/completions",  # what the OpenAI JS SDK makes of the base URL
        minted["url_base"] + "chat/completions",  # ... and the OpenAI Python SDK
        f"http://127.0.0.1:{port}/relayapi/chat/completions?token={t}&rai_hash={h}",
    ]
    for url in shapes:
        mock.reset()
        status, doc = _post(url)
        assert status == 200, (url, doc)
        # Neither the token nor the rai_hash reaches the provider; the token's key does.
        assert _forwarded(mock) == ("/v1/chat/completions", f"Bearer {UPSTREAM_KEY}")


def test_the_official_openai_sdk_with_the_no_endpoint_url(mock: MockUpstream, v0: Setup) -> None:
    minted = v0.mint()
    client = openai_client(minted["url_base"])
    done = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)  # type: ignore[arg-type]
    assert done.choices[0].message.content
    assert _forwarded(mock) == ("/v1/chat/completions", f"Bearer {UPSTREAM_KEY}")
    # Streaming too.
    mock.reset()
    stream = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)  # type: ignore[arg-type]
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices)


def test_max_calls_exact_under_parallel_calls(mock: MockUpstream, v0: Setup) -> None:
    minted = v0.mint(max_calls=5)
    client = openai_client(minted["url_base"])
    messages = [{"role": "user", "content": "race [delay:0.3]"}]

    def call(_i: int) -> Any:
        try:
            return client.chat.completions.create(model="gpt-4o-mini", messages=messages)  # type: ignore[arg-type]
        except openai.APIStatusError as exc:
            return exc

    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(call, range(20)))
    refused = [r for r in results if isinstance(r, Exception)]
    assert len(results) - len(refused) == 5
    assert all(isinstance(r, openai.RateLimitError) and r.code == "token_exhausted" for r in refused)
    assert len(mock.requests()) == 5


def test_expired_and_overlong_tokens_are_refused(mock: MockUpstream, v0: Setup) -> None:
    # Real SDK tokens: minted two days ago for one day, and for longer than the tenant allows (7 days).
    for args in ({"age_days": 2, "expire_days": 1}, {"expire_days": 8}, {"expire_days": 0}):
        minted = v0.mint(**args)
        status, doc = _post(minted["url_chat"])
        assert (status, doc["error"]["code"]) == (401, "invalid_token"), args
    # Seven days is within the limit, and a token minted a day ago for two days is still good.
    for args in ({"expire_days": 7}, {"age_days": 1, "expire_days": 2}):
        assert _post(v0.mint(**args)["url_chat"])[0] == 200, args
    # A provider the tenant may not use, and more calls than it allows.
    for args in ({"provider": "dashscope"}, {"max_calls": 1001}):
        assert _post(v0.mint(**args)["url_chat"])[0] == 401, args
    assert len(mock.requests()) == 2


def _admin(v0: Setup, key_id: str, tenant: str, rai: dict[str, Any] | None = None) -> RelayAPIClient:
    # A v0 tenant signs admin requests with the key derived from its AES key (docs/compat-v0.md).
    aes_key = (rai or v0.rai)["crypto"]["aes_key"]
    key = base64.urlsafe_b64encode(tenant_secret(aes_key)).rstrip(b"=").decode()
    server = {"scheme": "http", "host": "127.0.0.1", "port": v0.relay.port, "base_path": "/relayapi/"}
    crypto = {"method": "aes-256-gcm-hkdf-sha256", "key_id": key_id, "key": key, "tenant_id": tenant}
    return RelayAPIClient({"version": 1, "server": server, "crypto": crypto})


def test_revocation_and_usage_through_the_admin_api(mock: MockUpstream, v0: Setup) -> None:
    minted = v0.mint(max_calls=3)
    assert _post(minted["url_chat"])[0] == 200
    admin = _admin(v0, "legacy-v0", TENANT)
    token_id = jti(TENANT, minted["id"])
    usage = admin.get_usage(token_id)
    assert (usage["calls_used"], usage["max_calls"], usage["revoked"]) == (1, 3, False)
    admin.revoke(token_id)
    status, doc = _post(minted["url_chat"])
    assert (status, doc["error"]["code"]) == (401, "token_revoked")
    assert len(mock.requests()) == 1


def test_revoke_before_needs_no_token_id(mock: MockUpstream, v0: Setup) -> None:
    minted = v0.mint(v0.rb_rai)
    assert _post(minted["url_chat"])[0] == 200
    # Every token of the tenant minted before the next second (this one's created_at is earlier).
    _admin(v0, "legacy-rb-v0", RB_TENANT, v0.rb_rai).revoke_before(int(time.time()) + 1)
    status, doc = _post(minted["url_chat"])
    assert (status, doc["error"]["code"]) == (401, "token_revoked")
    # The other tenants' tokens are untouched.
    assert _post(v0.mint()["url_chat"])[0] == 200


def test_the_relay_warns_once_per_tenant_at_start(v0: Setup, relay: Relay) -> None:
    tenants = [e["tenant"] for e in map(_json_line, v0.relay.log) if e.get("msg") == WARNING]
    assert sorted(tenants) == sorted([TENANT, KREF_TENANT, RB_TENANT])
    assert not [line for line in relay.log if WARNING in line]


def _json_line(line: str) -> dict[str, Any]:
    try:
        found = json.loads(line)
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}


def test_admin_signatures_of_another_key_are_refused(v0: Setup) -> None:
    # The kref tenant's key id signed with the first tenant's derived key.
    with pytest.raises(APIError) as refused:
        _admin(v0, "legacy-kref-v0", KREF_TENANT).get_usage("0" * 32)
    assert refused.value.status == 401


def test_kref_only_tenant_and_its_forced_rate(mock: MockUpstream, v0: Setup) -> None:
    # `api_key` names a server-held key; a token carrying a raw key is refused.
    assert _post(v0.mint(v0.kref_rai, api_key="sk-raw-key")["url_chat"])[0] == 401
    minted = v0.mint(v0.kref_rai, api_key=SERVER_KEY_NAME)
    assert _post(minted["url_chat"])[0] == 200
    assert _forwarded(mock) == ("/v1/chat/completions", f"Bearer {SERVER_KEY}")
    assert _post(minted["url_chat"])[0] == 200
    status, doc = _post(minted["url_chat"])
    assert (status, doc["error"]["code"]) == (429, "rate_limited")
    # A token of the other tenant under this tenant's rai_hash is refused.
    other = v0.mint()
    assert _post(other["url_chat"].replace(other["rai_hash"], minted["rai_hash"]))[0] == 401


def test_off_by_default(mock: MockUpstream, relay: Relay, v0: Setup) -> None:
    # The suite's default relay has no compat_v0 entry: the same SDK tokens are refused in every shape.
    minted = v0.mint()
    here = f"http://127.0.0.1:{v0.relay.port}"
    there = f"http://127.0.0.1:{relay.port}"
    shapes = [
        minted["url_chat"],
        minted["url_base"] + "/chat/completions",
        minted["url_base"] + "chat/completions",
    ]
    for url in shapes:
        status, doc = _post(url.replace(here, there))
        assert (status, doc["error"]["code"]) == (401, "invalid_token"), url
    assert mock.requests() == []


def _raw(port: int, target: str) -> bytes:
    body = json.dumps({"model": "gpt-4o-mini", "messages": MESSAGES}).encode()
    head = (
        f"POST {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(head + body)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    # The one part that differs per request by design: the request id.
    return re.sub(rb"x-request-id: [^\r]*", b"x-request-id: X", out)


def test_no_oracle_every_failure_answers_the_same_bytes(mock: MockUpstream, v0: Setup) -> None:
    variants = run_sdk(v0.rai, "variants")
    minted = v0.mint()
    good = base64.urlsafe_b64decode(minted["token"] + "=" * (-len(minted["token"]) % 4))
    # What anyone holding one token can do: rewrite the first block through the IV ("token-1" to
    # "token-2"), keeping padding and JSON valid.
    flipped = bytearray(good)
    flipped[13] ^= ord("1") ^ ord("2")
    tokens = {
        "base64": "AAAA!AAAA",
        "short": base64.urlsafe_b64encode(good[:16]).rstrip(b"=").decode(),
        "padding": variants["padding"],
        "json": variants["json"],
        "claims_provider": variants["claims_provider"],
        "claims_expired": variants["claims_expired"],
        "claims_iv_flipped": base64.urlsafe_b64encode(bytes(flipped)).rstrip(b"=").decode(),
    }
    h = minted["rai_hash"]
    tokens["rai_hash"] = minted["token"]
    path = "/relayapi//relayapi/chat/completions"
    answers = {
        what: _raw(v0.relay.port, f"{path}?token={t}&rai_hash={'0' * 64 if what == 'rai_hash' else h}")
        for what, t in tokens.items()
    }
    first = answers["padding"]
    assert first.startswith(b"HTTP/1.1 401 "), first
    for what, answer in answers.items():
        assert answer == first, what
    # The control: the same construction with valid claims is accepted.
    assert _post(f"{v0.relay.base}/relayapi/chat/completions?token={variants['good']}&rai_hash={h}")[0] == 200
    assert len(mock.requests()) == 1
