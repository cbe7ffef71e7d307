"""Admin API signing: the header matches an HMAC computed by hand from docs/admin-api.md."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import pytest

from relayapi import APIError, InvalidArgumentError, InvalidTokenError, RelayAPIClient
from relayapi.admin import admin_key, authorization_header
from relayapi.client import MAX_CLOCK_SKEW_SECONDS, check_revoke_before

from .fake_relay import FakeRelay, Recorded, Reply
from .support import GENERATE, KEY_BY_KID, rai_dict

K1 = base64.urlsafe_b64decode(KEY_BY_KID["k1"]["key"] + "=")
USAGE = {
    "token_id": "74281f178e39643b62ddd692c98d6547",
    "tenant_id": "acme",
    "calls_used": 3,
    "max_calls": 100,
    "remaining": 97,
    "first_used_at": 1790000012,
    "last_used_at": 1790000420,
    "expires_at": 1790003600,
    "revoked": False,
    "tokens": {"input": 5120, "output": 2048, "cached_input": 1024},
    "cost": 33280,
}


def _hand_admin_key(tenant_key: bytes) -> bytes:
    # RFC 5869 written out: extract with the empty salt, then one expand block (32 bytes = L).
    prk = hmac.new(b"", tenant_key, hashlib.sha256).digest()
    return hmac.new(prk, b"relayapi admin v1\x01", hashlib.sha256).digest()


def _hand_signature(method: str, path: str, ts: int, body: bytes) -> str:
    msg = f"{method}\n{path}\n{ts}\n{hashlib.sha256(body).hexdigest()}".encode()
    mac = hmac.new(_hand_admin_key(K1), msg, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def test_admin_key_derivation_matches_rfc5869_by_hand() -> None:
    assert admin_key(K1) == _hand_admin_key(K1)
    assert admin_key(K1) != admin_key(bytes(32))


def test_header_matches_hand_computed_hmac() -> None:
    body = b'{"before":1790000000}'
    header = authorization_header(
        key_id="k1", tenant_key=K1, method="post", path="/admin/v1/revoke-before", body=body, now=1790000123
    )
    sig = _hand_signature("POST", "/admin/v1/revoke-before", 1790000123, body)
    assert header == f"RelayAPI-HMAC-SHA256 kid=k1,ts=1790000123,sig={sig}"
    assert len(sig) == 43
    assert "=" not in sig


def _check_signed(rec: Recorded, method: str, path: str, body: bytes) -> None:
    scheme, _, params = rec.headers["authorization"].partition(" ")
    assert scheme == "RelayAPI-HMAC-SHA256"
    fields = dict(p.split("=", 1) for p in params.split(","))
    assert set(fields) == {"kid", "ts", "sig"}
    assert fields["kid"] == "k1"
    ts = int(fields["ts"])
    assert abs(ts - time.time()) <= 5
    assert (rec.method, rec.path, rec.body) == (method, path, body)
    assert hmac.compare_digest(fields["sig"], _hand_signature(method, path, ts, body))


def test_get_usage_by_token_and_by_id(fake_relay: FakeRelay, relay_client: RelayAPIClient) -> None:
    path = "/admin/v1/tokens/74281f178e39643b62ddd692c98d6547"
    fake_relay.route("GET", path, Reply(body=json.dumps(USAGE).encode()))
    # GENERATE[0] is an acme token of key k1, decoded locally for its jti.
    assert relay_client.get_usage(GENERATE[0]["token"]) == USAGE
    assert relay_client.get_usage("74281f178e39643b62ddd692c98d6547") == USAGE
    for rec in fake_relay.requests:
        _check_signed(rec, "GET", path, b"")


def test_revoke(fake_relay: FakeRelay, relay_client: RelayAPIClient) -> None:
    token = relay_client.create_token(api_key="test-key-123")
    jti = relay_client.decode_token(token)["jti"]
    path = f"/admin/v1/tokens/{jti}/revoke"
    fake_relay.route(
        "POST", path, Reply(body=json.dumps({**USAGE, "token_id": jti, "revoked": True}).encode())
    )
    assert relay_client.revoke(token)["revoked"] is True
    [rec] = fake_relay.requests
    _check_signed(rec, "POST", path, b"")
    assert rec.headers["content-length"] == "0"


def test_revoke_before(fake_relay: FakeRelay, relay_client: RelayAPIClient) -> None:
    fake_relay.route(
        "POST", "/admin/v1/revoke-before", Reply(body=b'{"tenant_id":"acme","revoked_before":1790000000}')
    )
    assert relay_client.revoke_before(1790000000) == {"tenant_id": "acme", "revoked_before": 1790000000}
    [rec] = fake_relay.requests
    _check_signed(rec, "POST", "/admin/v1/revoke-before", b'{"before":1790000000}')
    assert rec.headers["content-type"] == "application/json"


def test_admin_paths_ignore_the_base_path(fake_relay: FakeRelay) -> None:
    client = RelayAPIClient(rai_dict(port=fake_relay.port, base_path="/ai/"), timeout=10)
    fake_relay.route("POST", "/admin/v1/revoke-before", Reply(body=b"{}"))
    client.revoke_before(5)
    assert fake_relay.requests[0].path == "/admin/v1/revoke-before"


def test_refused_signature_is_an_api_error(fake_relay: FakeRelay, relay_client: RelayAPIClient) -> None:
    fake_relay.route(
        "POST",
        "/admin/v1/revoke-before",
        Reply(
            401, body=b'{"error":{"message":"bad signature","type":"auth","code":"invalid_admin_signature"}}'
        ),
    )
    with pytest.raises(APIError) as info:
        relay_client.revoke_before(1)
    assert (info.value.status, info.value.error_code) == (401, "invalid_admin_signature")


@pytest.mark.parametrize("bad", ["74281F178E39643B62DDD692C98D6547", "1234", "../../health", "", 42], ids=str)
def test_bad_token_id(relay_client: RelayAPIClient, fake_relay: FakeRelay, bad: object) -> None:
    with pytest.raises(InvalidArgumentError):
        relay_client.get_usage(bad)  # type: ignore[arg-type]
    assert fake_relay.requests == []


def test_a_foreign_token_is_refused_locally(relay_client: RelayAPIClient, fake_relay: FakeRelay) -> None:
    globex_token = next(c for c in GENERATE if c["kid"] == "globex")["token"]
    with pytest.raises(InvalidTokenError):
        relay_client.revoke(globex_token)
    assert fake_relay.requests == []


@pytest.mark.parametrize("ts", [-1, 1.5, True, "1790000000", 2**53])
def test_bad_revoke_before_time(relay_client: RelayAPIClient, ts: object) -> None:
    with pytest.raises(InvalidArgumentError):
        relay_client.revoke_before(ts)  # type: ignore[arg-type]


NOW = 1_790_000_000


@pytest.mark.parametrize("ts", [0, NOW - 86_400, NOW, NOW + MAX_CLOCK_SKEW_SECONDS])
def test_revoke_before_accepts_up_to_now_plus_clock_skew(ts: int) -> None:
    check_revoke_before(ts, NOW)


@pytest.mark.parametrize(
    ("ts", "hint"),
    [
        (NOW + MAX_CLOCK_SKEW_SECONDS + 1, False),
        (NOW + 3600, False),
        (9_999_999_999, False),  # issue 9 finding 9: year 2286 silently killed every future token
        (NOW * 1000, True),  # int(time.time() * 1000): milliseconds passed as seconds
        (NOW * 1000 + 999, True),
    ],
)
def test_revoke_before_refuses_a_future_time(ts: int, hint: bool) -> None:
    with pytest.raises(InvalidArgumentError) as info:
        check_revoke_before(ts, NOW)
    assert info.value.param == "ts"
    assert "future" in str(info.value)
    assert ("milliseconds" in str(info.value)) is hint


def test_revoke_before_in_the_future_sends_nothing(
    relay_client: RelayAPIClient, fake_relay: FakeRelay
) -> None:
    with pytest.raises(InvalidArgumentError):
        relay_client.revoke_before(int(time.time() * 1000))
    assert fake_relay.requests == []


USER_USAGE = {
    "tenant_id": "acme",
    "user_id": "user 42/a",
    "windows": {
        "day": {
            "period": "2026-12-07",
            "calls": 3,
            "tokens": {"input": 120, "output": 80, "cached_input": 0},
            "cost": 1500,
            "resets_at": 1796688000,
        },
        "month": {
            "period": "2026-12",
            "calls": 9,
            "tokens": {"input": 400, "output": 300, "cached_input": 64},
            "cost": 4100,
            "resets_at": 1798761600,
        },
        "all": {
            "period": None,
            "calls": 9,
            "tokens": {"input": 400, "output": 300, "cached_input": 64},
            "cost": 4100,
            "resets_at": None,
        },
    },
}


@pytest.mark.parametrize(
    ("user_id", "segment"),
    [
        ("user-42", "user-42"),
        ("user 42/a", "user%2042%2Fa"),
        ("Az09-._~", "Az09-._~"),
        (
            "!*'()\"%+:@?#&=;,$[]\\^`{|}<>",
            "%21%2A%27%28%29%22%25%2B%3A%40%3F%23%26%3D%3B%2C%24%5B%5D%5C%5E%60%7B%7C%7D%3C%3E",
        ),
        ("u" * 128, "u" * 128),
    ],
)
def test_get_user_usage_sends_the_uid_as_one_encoded_segment(
    fake_relay: FakeRelay, relay_client: RelayAPIClient, user_id: str, segment: str
) -> None:
    path = f"/admin/v1/users/{segment}/usage"
    fake_relay.route("GET", path, Reply(body=json.dumps(USER_USAGE).encode()))
    assert relay_client.get_user_usage(user_id) == USER_USAGE
    [rec] = fake_relay.requests
    _check_signed(rec, "GET", path, b"")


@pytest.mark.parametrize("bad", ["", "u" * 129, "line\nbreak", "usér", ".", "..", None, 42], ids=repr)
def test_get_user_usage_refuses_an_impossible_user_id(
    relay_client: RelayAPIClient, fake_relay: FakeRelay, bad: object
) -> None:
    with pytest.raises(InvalidArgumentError) as info:
        relay_client.get_user_usage(bad)  # type: ignore[arg-type]
    assert info.value.param == "user_id"
    assert fake_relay.requests == []


def test_get_user_usage_reports_relay_errors(fake_relay: FakeRelay, relay_client: RelayAPIClient) -> None:
    fake_relay.route(
        "GET",
        "/admin/v1/users/u1/usage",
        Reply(
            503, body=b'{"error":{"message":"store unavailable","type":"server","code":"store_unavailable"}}'
        ),
    )
    with pytest.raises(APIError) as info:
        relay_client.get_user_usage("u1")
    assert (info.value.status, info.value.error_code) == (503, "store_unavailable")
