"""The ecc method through the public client: tokens minted by the SDK opened by an independent HPKE
(cryptography's) and checked with an independent ECDSA verifier, admin calls signed with ECDSA, and what a
backend-side file refuses to do."""

from __future__ import annotations

import base64
import hashlib
import json
import time
from typing import Any

import pytest
from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from relayapi import ConfigError, InvalidArgumentError, RelayAPIClient
from relayapi._b64 import decode as b64decode
from relayapi._hpke import P256_ORDER, seal_base

from .fake_relay import FakeRelay, Recorded, Reply
from .support import ECC_RELAY_KEYS, ECC_SIGNERS, ecc_backend_dict, rai_dict

hpke = pytest.importorskip(
    "cryptography.hazmat.primitives.hpke", reason="cryptography >= 47 brings the independent HPKE"
)

RKID, SKID = "relay-acme-2026-12", "acme-backend-1"


def _relay_private_key(rkid: str = RKID) -> ec.EllipticCurvePrivateKey:
    raw = b64decode(ECC_RELAY_KEYS[rkid]["private_key"])
    assert raw is not None
    return ec.derive_private_key(int.from_bytes(raw, "big"), ec.SECP256R1())


def _signer_public_key(skid: str = SKID) -> ec.EllipticCurvePublicKey:
    raw = b64decode(ECC_SIGNERS[skid]["public_key"])
    assert raw is not None
    return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), raw)


def _verify_r_s(public_key: ec.EllipticCurvePublicKey, sig: bytes, message: bytes) -> None:
    """Section 10.1's signature rules, then cryptography's ECDSA verification (raises InvalidSignature)."""
    assert len(sig) == 64
    r, s = int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big")
    assert 1 <= r < P256_ORDER, "r out of range"
    assert 1 <= s <= (P256_ORDER - 1) // 2, "s out of range or high"
    public_key.verify(encode_dss_signature(r, s), message, ec.ECDSA(hashes.SHA256()))


def open_like_the_relay(token: str, rkid: str = RKID, skid: str = SKID) -> dict[str, Any]:
    """Section 10.4 with cryptography's HPKE and ECDSA, none of the SDK's own crypto."""
    assert token.startswith("rt1.")
    blob = base64.urlsafe_b64decode(token[4:] + "=" * (-len(token[4:]) % 4))
    rl = blob[2]
    sl = blob[3 + rl]
    header_len = 4 + rl + sl
    header = blob[:header_len]
    assert header == bytes((1, 2, rl)) + rkid.encode() + bytes((sl,)) + skid.encode()
    suite = hpke.Suite(hpke.KEM.P256, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM)
    plaintext = suite.decrypt(blob[header_len:], _relay_private_key(rkid), info=header)
    sig, claims = plaintext[:64], plaintext[64:]
    _verify_r_s(_signer_public_key(skid), sig, header + claims)
    return json.loads(claims)  # type: ignore[no-any-return]


def test_sdk_minted_tokens_open_with_an_independent_hpke_and_verify() -> None:
    client = RelayAPIClient(ecc_backend_dict())
    for i in range(20):
        minted = client.create_token_with_claims(api_key=f"sk-test-{i}", max_calls=3, user_id="u1")
        assert open_like_the_relay(minted.token) == minted.claims
        assert minted.claims["tid"] == "acme"
        assert minted.claims["key"] == f"sk-test-{i}"


def test_any_changed_byte_fails_the_independent_open() -> None:
    token = RelayAPIClient(ecc_backend_dict()).create_token(api_key="sk-test")
    blob = bytearray(base64.urlsafe_b64decode(token[4:] + "=" * (-len(token[4:]) % 4)))
    for idx in (1, 5, len(blob) - 100, len(blob) - 1):
        changed = bytearray(blob)
        changed[idx] ^= 0x01
        text = "rt1." + base64.urlsafe_b64encode(bytes(changed)).rstrip(b"=").decode()
        with pytest.raises((AssertionError, InvalidTag, InvalidSignature)):
            open_like_the_relay(text)


def test_sdk_hpke_seal_opens_with_cryptography() -> None:
    # The SDK's own HPKE against cryptography's, with info and aad of every shape.
    sk = _relay_private_key()
    suite = hpke.Suite(hpke.KEM.P256, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM)
    for n in (0, 1, 64, 1000):
        info = bytes(range(n % 256))[: n % 40]
        pt = hashlib.sha256(str(n).encode()).digest() * (n // 32 + 1)
        sealed = seal_base(sk.public_key(), info, b"", pt, ikm_e=hashlib.sha256(b"ikm%d" % n).digest())
        assert suite.decrypt(sealed, sk, info=info) == pt


def test_every_token_has_fresh_randomness() -> None:
    client = RelayAPIClient(ecc_backend_dict())
    tokens = [client.create_token_with_claims(api_key="sk-test") for _ in range(50)]
    assert len({t.token for t in tokens}) == 50
    assert len({t.claims["jti"] for t in tokens}) == 50
    # The encapsulated key (the ephemeral public key) differs every time: ikm_e is drawn per token.
    header_len = 4 + len(RKID) + len(SKID)
    encs = {(b64decode(t.token[4:]) or b"")[header_len : header_len + 65] for t in tokens}
    assert len(encs) == 50
    assert all(len(e) == 65 and e[0] == 4 for e in encs)


def test_the_method_follows_from_the_rai() -> None:
    ecc = RelayAPIClient(ecc_backend_dict()).create_token(api_key="sk-test")
    sym = RelayAPIClient(rai_dict("k1")).create_token(api_key="sk-test")
    assert b64decode(ecc[4:])[:2] == b"\x01\x02"  # type: ignore[index]
    assert b64decode(sym[4:])[:2] == b"\x01\x01"  # type: ignore[index]


def test_create_token_with_claims_on_a_symmetric_rai_returns_what_the_token_carries() -> None:
    client = RelayAPIClient(rai_dict("k1"))
    minted = client.create_token_with_claims(api_key="sk-test", max_calls=7)
    token, claims = minted
    assert client.decode_token(token) == claims
    assert claims["max"] == 7


def test_a_backend_side_file_cannot_open_tokens() -> None:
    client = RelayAPIClient(ecc_backend_dict())
    token = client.create_token(api_key="sk-test")
    for call in (client.decode_token, client.verify_token):
        with pytest.raises(InvalidArgumentError) as info:
            call(token)
        assert info.value.param == "token"
        assert "create_token_with_claims" in str(info.value)


@pytest.mark.parametrize(
    ("window", "field"),
    [
        ({"not_before": 4_000_000_000}, "crypto.not_before"),
        ({"not_after": 1_000_000_000}, "crypto.not_after"),
    ],
)
def test_no_minting_outside_the_signing_keys_window(window: dict[str, int], field: str) -> None:
    client = RelayAPIClient(ecc_backend_dict(**window))
    with pytest.raises(ConfigError) as info:
        client.create_token(api_key="sk-test")
    assert info.value.field == field


def test_minting_inside_the_window() -> None:
    now = int(time.time())
    client = RelayAPIClient(ecc_backend_dict(not_before=now - 10, not_after=now + 3600))
    assert open_like_the_relay(client.create_token(api_key="sk-test"))["key"] == "sk-test"


def test_the_token_length_limit_binds_ecc_tokens() -> None:
    client = RelayAPIClient(ecc_backend_dict())
    with pytest.raises(InvalidArgumentError) as info:
        client.create_token(api_key="sk-test", allowed_models=["m" * 256] * 20)
    assert info.value.param == "token"


# ---- admin calls, signed with ECDSA (docs/admin-api.md, "ecc tenants") -------------------------------------

USAGE = {"token_id": "0" * 32, "tenant_id": "acme", "calls_used": 0, "revoked": False}


def _check_ecdsa_signed(rec: Recorded, method: str, path: str, body: bytes) -> None:
    scheme, _, params = rec.headers["authorization"].partition(" ")
    assert scheme == "RelayAPI-ECDSA-P256-SHA256"
    fields = dict(p.split("=", 1) for p in params.split(","))
    assert set(fields) == {"kid", "ts", "sig"}
    assert fields["kid"] == SKID
    ts = int(fields["ts"])
    assert abs(ts - time.time()) <= 5
    assert (rec.method, rec.path, rec.body) == (method, path, body)
    sig = b64decode(fields["sig"])
    assert sig is not None
    message = f"{method}\n{path}\n{ts}\n{hashlib.sha256(body).hexdigest()}".encode()
    _verify_r_s(_signer_public_key(), sig, message)


def test_admin_calls_are_signed_with_the_signing_key(fake_relay: FakeRelay) -> None:
    client = RelayAPIClient(ecc_backend_dict(port=fake_relay.port), timeout=10)
    minted = client.create_token_with_claims(api_key="sk-test")
    jti = minted.claims["jti"]
    fake_relay.route("GET", f"/admin/v1/tokens/{jti}", Reply(body=json.dumps(USAGE).encode()))
    fake_relay.route("POST", f"/admin/v1/tokens/{jti}/revoke", Reply(body=json.dumps(USAGE).encode()))
    fake_relay.route("POST", "/admin/v1/revoke-before", Reply(body=b'{"tenant_id":"acme"}'))
    assert client.get_usage(jti) == USAGE
    assert client.revoke(jti) == USAGE
    now = int(time.time())
    client.revoke_before(now)
    get, revoke, before = fake_relay.requests
    _check_ecdsa_signed(get, "GET", f"/admin/v1/tokens/{jti}", b"")
    _check_ecdsa_signed(revoke, "POST", f"/admin/v1/tokens/{jti}/revoke", b"")
    _check_ecdsa_signed(before, "POST", "/admin/v1/revoke-before", b'{"before":%d}' % now)


def test_admin_calls_refuse_a_token_text_before_sending(fake_relay: FakeRelay) -> None:
    client = RelayAPIClient(ecc_backend_dict(port=fake_relay.port), timeout=10)
    token = client.create_token(api_key="sk-test")
    for call in (client.get_usage, client.revoke):
        with pytest.raises(InvalidArgumentError) as info:
            call(token)
        assert info.value.param == "token"
    assert fake_relay.requests == []
