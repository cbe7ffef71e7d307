"""Runs under the real ``relayapi-sdk==1.0.0`` (installed apart, see ``compat_v0_support.py``): reads one
JSON request on stdin, answers one JSON document on stdout.

The published SDK and this repository's SDK are both the top-level package ``relayapi``, so the original
runs in its own process with only its own install on ``sys.path``. Actions:

- ``mint``: ``TokenGenerator.create_token`` + ``encrypt_token`` (exactly what ``RelayAPIClient.create_token``
  does, keeping the ``id``), and the SDK's URLs for that token (with and without an endpoint);
  ``age_days`` mints as if the clock were that many days behind (a real SDK token that has expired);
- ``chat``: ``RelayAPIClient.chat_completions`` (the SDK's own HTTP call);
- ``variants``: tokens under the file's key that fail in different ways (padding, JSON, claims), built
  with pycryptodome as the SDK does, for the no-oracle test.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime, timedelta
from typing import Any

from Crypto.Cipher import AES
from Crypto.Random import get_random_bytes
from Crypto.Util.Padding import pad

import relayapi.token as sdk_token
from relayapi import RelayAPIClient, TokenGenerator


def _aged(days: int) -> type[datetime]:
    class Aged(datetime):
        @classmethod
        def now(cls, tz: Any = None) -> Any:
            return datetime.now(tz) - timedelta(days=days)

    return Aged


def _seal(gen: TokenGenerator, plaintext: bytes, padded: bool = True) -> str:
    import base64

    iv = get_random_bytes(16)
    data = pad(plaintext, 16) if padded else plaintext
    blob = iv + AES.new(gen.key, AES.MODE_CBC, iv).encrypt(data)
    return base64.urlsafe_b64encode(blob).decode().rstrip("=")


def main() -> None:
    req = json.load(sys.stdin)
    rai = req["rai"]
    out: dict[str, Any] = {}
    if req["action"] == "mint":
        if req.get("age_days"):
            sdk_token.datetime = _aged(req["age_days"])  # type: ignore[misc]
        gen = TokenGenerator(rai)
        data = gen.create_token(
            api_key=req["api_key"],
            max_calls=req.get("max_calls", 100),
            expire_days=req.get("expire_days", 1),
            provider=req.get("provider", "openai"),
        )
        token = gen.encrypt_token(data)
        client = RelayAPIClient(rai)
        out = {
            "token": token,
            "id": data["id"],
            "rai_hash": gen.hash,
            "url_chat": client.generate_api_url_with_token(token, "chat_completions"),
            "url_base": client.generate_api_url_with_token(token),
        }
    elif req["action"] == "chat":
        client = RelayAPIClient(rai)
        out = client.chat_completions(req["token"], [{"role": "user", "content": "hi"}], model="gpt-4o-mini")
    elif req["action"] == "variants":
        gen = TokenGenerator(rai)
        claims = gen.create_token(api_key="sk-x", max_calls=3, provider="openai")
        good = json.dumps(claims, separators=(",", ":"))
        body = good.encode()
        # Whole blocks with a last byte of 0: never valid PKCS#7.
        bad_pad = body + b"\0" * (16 - len(body) % 16) if len(body) % 16 else body[:-1] + b"\0"
        out = {
            "padding": _seal(gen, bad_pad, padded=False),
            "json": _seal(gen, b'{"id":"token-1","api_key":'),
            "claims_provider": _seal(gen, good.replace('"openai"', '"anthropic"').encode()),
            "claims_expired": gen.encrypt_token(gen.create_token(api_key="sk-x", expire_days=-1)),
            "good": _seal(gen, body),
        }
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
