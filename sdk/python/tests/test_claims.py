"""The claim validator beyond the vectors: section 5 rules that verifiers share with the relay."""

from __future__ import annotations

from typing import Any

import pytest

from relayapi.claims import ClaimError, parse_claims, serialize_claims, validate_claims

BASE: dict[str, Any] = {
    "jti": "ab" * 16,
    "tid": "acme",
    "iat": 1_790_000_000,
    "exp": 1_790_003_600,
    "prv": "openai",
    "key": "test-key-123",
}


@pytest.mark.parametrize(
    "url",
    [
        "https://llm-proxy.example.com",
        "https://llm-proxy.example.com/v1",
        "https://llm-proxy.example.com:8443/v1/",
        "https://10.1.2.3/v1",
        "https://[2001:db8::1]:443/v1",
        "https://under_score.example.com/v1",
        "https://llm-proxy.example.com/v1?api-version=2024-10-21",
        "https://llm-proxy.example.com/a%20b",
    ],
)
def test_url_accepted(url: str) -> None:
    validate_claims({**BASE, "url": url})


@pytest.mark.parametrize(
    "url",
    [
        "http://llm-proxy.example.com/v1",
        "HTTPS://llm-proxy.example.com/v1",
        "https://",
        "https:///v1",
        "https://user:pw@llm-proxy.example.com/v1",
        "https://llm-proxy.example.com@evil.example/v1",
        "https://llm-proxy.example.com/v1#frag",
        "https://llm-proxy.example.com:0/v1",
        "https://llm-proxy.example.com:65536/v1",
        "https://llm-proxy.example.com:/v1",
        "https://llm-proxy.example.com:44x/v1",
        "https://[2001:db8::1/v1",
        "https://[fe80::1%25eth0]/v1",
        "https://[not-v6]/v1",
        "https://a..b/v1",
        "https://llm proxy.example.com/v1",
        "https://llm-proxy.example.com/v1/<x>",
        "https://llm-proxy.example.com/a%2",
        "https://llm-proxy.example.com/a%zz",
        "https://" + "a" * 64 + ".example.com/",
        "https://example.com/" + "a" * 2048,
        "https://bücher.example/",
    ],
)
def test_url_refused(url: str) -> None:
    with pytest.raises(ClaimError) as info:
        validate_claims({**BASE, "url": url})
    assert info.value.member == "url"


@pytest.mark.parametrize(
    ("member", "value"),
    [
        ("iat", True),
        ("max", False),
        ("conc", 1.0),
        ("iat", -1),
        ("exp", 2**53),
        ("tid", "a" * 65),
        ("prv", "a" * 33),
        ("key", "k\u00e9y"),
        ("key", "\ud800"),
        ("rate", {"n": 1}),
        ("rate", {"n": 1, "s": 1, "x": 1}),
        ("rate", {"n": 0, "s": 1}),
        ("conc", 10_001),
        ("models", ["m"] * 65),
        ("models", "gpt-4o"),
        ("paths", []),
        ("origins", [1]),
        ("ips", ["203.0.113.0"]),
        ("ips", ["203.0.113.0/24 "]),
        ("ips", ["fe80::/10%eth0"]),
        ("mtok", 0),
        ("mtok_mode", "CLAMP"),
        ("uid", ""),
        ("uid", "u" * 129),
        ("ext", {"rep_m": "m" * 257}),
        ("ext", []),
        ("kref", ""),
    ],
)
def test_member_refused(member: str, value: Any) -> None:
    claims = {**BASE, member: value}
    if member == "kref":
        del claims["key"]
    with pytest.raises(ClaimError):
        validate_claims(claims)


@pytest.mark.parametrize(
    ("member", "value"),
    [("models", [""]), ("paths", ["chat"]), ("origins", ["*"]), ("uid", "\u00e9\n"), ("kref", "a b")],
)
def test_section_5_1_pins_entry_formats(member: str, value: Any) -> None:
    # Rule 5.1: verifiers and minters share one rule set, so no format is left for a minter to guess.
    claims = {k: v for k, v in BASE.items() if not (member == "kref" and k == "key")}
    with pytest.raises(ClaimError):
        validate_claims({**claims, member: value})


@pytest.mark.parametrize(
    "text",
    [
        b'{"jti":"'
        + b"ab" * 16
        + b'","tid":"acme","iat":1,"exp":2,"prv":"openai","key":"k","rate":{"n":1,"n":1,"s":1}}',
        b'{"jti":"' + b"ab" * 16 + b'","tid":"acme","iat":1,"exp":NaN,"prv":"openai","key":"k"}',
        b'{"jti":"' + b"ab" * 16 + b'","tid":"acme","iat":1,"exp":2,"prv":"openai","key":"\\ud800"}',
        b'{"jti":"' + b"ab" * 16 + b'","tid":"acme","iat":1,"exp":2e0,"prv":"openai","key":"k"}',
        b'\xef\xbb\xbf{"jti":"' + b"ab" * 16 + b'","tid":"acme","iat":1,"exp":2,"prv":"openai","key":"k"}',
    ],
    ids=["nested duplicate", "NaN", "lone surrogate", "exponent", "BOM"],
)
def test_parse_refuses(text: bytes) -> None:
    with pytest.raises(ClaimError):
        parse_claims(text)


def test_parse_accepts_any_member_order_and_serialises_canonically() -> None:
    text = b'{"key":"k","prv":"openai","exp":2,"iat":1,"tid":"acme","jti":"' + b"ab" * 16 + b'"}'
    claims = parse_claims(text)
    assert serialize_claims(claims) == (
        '{"jti":"' + "ab" * 16 + '","tid":"acme","iat":1,"exp":2,"prv":"openai","key":"k"}'
    )


def test_rate_members_are_written_n_then_s() -> None:
    assert '"rate":{"n":3,"s":9}' in serialize_claims({**BASE, "rate": {"s": 9, "n": 3}})
