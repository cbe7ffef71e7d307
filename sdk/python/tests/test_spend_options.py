"""The spend-limit options (docs/budgets.md section 1): budget_tokens, budget_cost and user_quotas become the
claims bud and uq, and every rule of token format 5.1.20-21 is refused under the option's name."""

from __future__ import annotations

from typing import Any

import pytest

from relayapi import InvalidArgumentError, RelayAPIClient
from relayapi.claims import ClaimError, serialize_claims, validate_claims

MAX = 2**53 - 1


def _claims(client: RelayAPIClient, **options: Any) -> dict[str, Any]:
    return client.decode_token(client.create_token(api_key="test-key-123", **options))


def test_budget_options_become_bud(client: RelayAPIClient) -> None:
    assert _claims(client, budget_tokens=200_000, budget_cost=1_000_000)["bud"] == {
        "tok": 200_000,
        "cost": 1_000_000,
    }
    assert _claims(client, budget_cost=MAX)["bud"] == {"cost": MAX}
    assert _claims(client, budget_tokens=1, budget_cost=None)["bud"] == {"tok": 1}
    assert "bud" not in _claims(client, budget_tokens=None)


def test_user_quotas_become_uq_in_the_order_given(client: RelayAPIClient) -> None:
    quotas = [
        {"window": "month", "cost": 20_000_000},
        {"window": "day", "calls": 50, "tokens": 200_000, "cost": 1_000_000},
        {"window": "all", "tokens": MAX, "calls": None},
    ]
    claims = _claims(client, user_id="user-42", user_quotas=quotas)
    assert claims["uq"] == [
        {"w": "month", "cost": 20_000_000},
        {"w": "day", "calls": 50, "tok": 200_000, "cost": 1_000_000},
        {"w": "all", "tok": MAX},
    ]
    assert claims["uid"] == "user-42"
    # A tuple is a sequence too.
    assert _claims(client, user_id="u", user_quotas=({"window": "day", "calls": 1},))["uq"] == [
        {"w": "day", "calls": 1}
    ]


def test_canonical_bytes_put_bud_and_uq_last_in_member_order(client: RelayAPIClient) -> None:
    token = client._create_token_from_parts(
        now=1_790_000_000, jti="ab" * 16, salt=bytes(16), api_key="k", max_calls=None,
        user_id="u", budget_cost=5, budget_tokens=7, user_quotas=[{"cost": 3, "window": "day", "tokens": 2}],
    )  # fmt: skip
    assert serialize_claims(client.decode_token(token)).endswith(
        '"uid":"u","bud":{"tok":7,"cost":5},"uq":[{"w":"day","tok":2,"cost":3}]}'
    )


BAD: list[tuple[dict[str, Any], str, str]] = [
    ({"budget_tokens": 0}, "budget_tokens", "from 1 to"),
    ({"budget_tokens": MAX + 1}, "budget_tokens", "from 1 to"),
    ({"budget_tokens": "100"}, "budget_tokens", "integer"),
    ({"budget_tokens": True}, "budget_tokens", "integer"),
    ({"budget_cost": 1.5}, "budget_cost", "integer"),
    ({"budget_cost": -1}, "budget_cost", "from 1 to"),
    ({"user_quotas": [{"window": "day", "calls": 5}]}, "user_quotas", "needs user_id"),
    ({"user_id": "u", "user_quotas": []}, "user_quotas", "1 to 3"),
    ({"user_id": "u", "user_quotas": {"window": "day", "calls": 5}}, "user_quotas", "list of quotas"),
    ({"user_id": "u", "user_quotas": "day"}, "user_quotas", "list of quotas"),
    ({"user_id": "u", "user_quotas": [["day", 5]]}, "user_quotas", "entry 0: must be a mapping"),
    ({"user_id": "u", "user_quotas": [{"window": "week", "calls": 5}]}, "user_quotas", "entry 0: window"),
    ({"user_id": "u", "user_quotas": [{"window": "Day", "calls": 5}]}, "user_quotas", "entry 0: window"),
    ({"user_id": "u", "user_quotas": [{"calls": 5}]}, "user_quotas", "entry 0: window"),
    ({"user_id": "u", "user_quotas": [{"window": "day"}]}, "user_quotas", "at least one of"),
    ({"user_id": "u", "user_quotas": [{"window": "day", "calls": None}]}, "user_quotas", "at least one of"),
    ({"user_id": "u", "user_quotas": [{"window": "day", "tok": 5}]}, "user_quotas", "unknown key 'tok'"),
    ({"user_id": "u", "user_quotas": [{"window": "day", "calls": 0}]}, "user_quotas", "entry 0: calls"),
    (
        {"user_id": "u", "user_quotas": [{"window": "day", "tokens": MAX + 1}]},
        "user_quotas",
        "entry 0: tokens",
    ),
    ({"user_id": "u", "user_quotas": [{"window": "day", "cost": "5"}]}, "user_quotas", "entry 0: cost"),
    (
        {"user_id": "u", "user_quotas": [{"window": "day", "calls": 5}, {"window": "day", "tokens": 5}]},
        "user_quotas",
        "entry 1: window 'day' appears twice",
    ),
    (
        {"user_id": "u", "user_quotas": [{"window": w, "calls": 1} for w in ("day", "month", "all", "day")]},
        "user_quotas",
        "1 to 3",
    ),
]


@pytest.mark.parametrize(("kwargs", "param", "says"), BAD, ids=[f"{p}:{k!r}"[:80] for k, p, _ in BAD])
def test_bad_spend_option_is_named(
    client: RelayAPIClient, kwargs: dict[str, Any], param: str, says: str
) -> None:
    with pytest.raises(InvalidArgumentError) as info:
        client.create_token(api_key="test-key-123", **kwargs)
    assert info.value.param == param
    assert says in str(info.value)


BASE = {"jti": "cd" * 16, "tid": "acme", "iat": 10, "exp": 20, "prv": "openai", "key": "k"}


@pytest.mark.parametrize(
    ("extra", "member"),
    [
        ({"bud": {}}, "bud"),
        ({"bud": {"tok": 1, "calls": 1}}, "bud.calls"),
        ({"bud": {"cost": 0}}, "bud.cost"),
        ({"bud": [1]}, "bud"),
        ({"uq": [{"w": "day", "calls": 1}]}, "uq"),
        ({"uid": "u", "uq": [{"w": "day", "calls": 1}] * 2}, "uq[1].w"),
        ({"uid": "u", "uq": [{"w": "day"}]}, "uq[0]"),
        ({"uid": "u", "uq": [{"w": "day", "calls": 1, "tokens": 1}]}, "uq[0].tokens"),
        ({"uid": "u", "uq": []}, "uq"),
        ({"uid": "u", "uq": [{"w": None, "calls": 1}]}, "uq[0].w"),
    ],
)
def test_the_validator_names_the_member(extra: dict[str, Any], member: str) -> None:
    with pytest.raises(ClaimError) as info:
        validate_claims({**BASE, **extra})
    assert info.value.member == member
