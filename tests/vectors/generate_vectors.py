"""Regenerate the token format v1 test vectors (docs/token-format.md).

An independent implementation of the spec on top of Python's `cryptography` package; the SDKs and the relay
are tested against its output. Deterministic: every key, salt and token id comes from a fixed seed, so
running it twice gives the same files. Run: python3 tests/vectors/generate_vectors.py
"""

from __future__ import annotations

import base64
import hashlib
import json
import pathlib
from collections import OrderedDict

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

HERE = pathlib.Path(__file__).resolve().parent
INFO = b"relayapi token v1"
ORDER = [
    "jti", "tid", "iat", "exp", "prv", "key", "kref", "url", "max", "ext", "rate", "conc",
    "models", "paths", "origins", "ips", "mtok", "mtok_mode", "uid",
]


def det(label: str, n: int) -> bytes:
    """Deterministic pseudo-random bytes for the vectors (never use for real tokens)."""
    out = b""
    i = 0
    while len(out) < n:
        out += hashlib.sha256(f"relayapi-vectors/{label}/{i}".encode()).digest()
        i += 1
    return out[:n]


def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def canonical(claims: dict) -> str:
    unknown = set(claims) - set(ORDER)
    assert not unknown, unknown
    ordered = OrderedDict((k, claims[k]) for k in ORDER if k in claims)
    if "rate" in ordered:
        ordered["rate"] = OrderedDict((("n", ordered["rate"]["n"]), ("s", ordered["rate"]["s"])))
    return json.dumps(ordered, separators=(",", ":"), ensure_ascii=False)


def seal(key: bytes, kid: str, salt: bytes, plaintext: bytes, version: int = 1, mode: int = 1) -> str:
    kid_b = kid.encode()
    header = bytes([version, mode, len(kid_b)]) + kid_b + salt
    okm = HKDF(algorithm=hashes.SHA256(), length=44, salt=salt, info=INFO).derive(key)
    ct = AESGCM(okm[:32]).encrypt(okm[32:], plaintext, header)
    return "rt1." + b64u(header + ct)


KEYS = [
    {"kid": "k1", "tenant": "acme", "key": det("key-k1", 32)},
    {"kid": "k2-2026.rotated", "tenant": "acme", "key": det("key-k2", 32)},
    {"kid": "globex", "tenant": "globex-corp", "key": det("key-globex", 32)},
]
KEY = {k["kid"]: k for k in KEYS}
NOW = 1_790_000_000  # 2026-09-21T14:13:20Z


def base_claims(i: int, **over) -> dict:
    c = {
        "jti": det(f"jti-{i}", 16).hex(),
        "tid": "acme",
        "iat": NOW,
        "exp": NOW + 3600,
        "prv": "openai",
        "key": "test-key-" + det(f"apikey-{i}", 12).hex(),
        "max": 100,
    }
    c.update(over)
    return {k: v for k, v in c.items() if v is not None}


def generate_cases() -> list[dict]:
    cases = [
        ("minimal openai token, key k1", "k1", base_claims(0)),
        ("unlimited calls (no max)", "k1", base_claims(1, max=None)),
        ("anthropic with forced model", "k1",
         base_claims(2, prv="anthropic", ext={"rep_m": "claude-sonnet-4-5"})),
        ("server-side key reference instead of key", "k2-2026.rotated",
         base_claims(3, key=None, kref="openai-main", prv="deepseek")),
        ("every optional limit", "k1", base_claims(
            4, url="https://llm-proxy.example.com/v1", max=5, ext={"rep_m": "gpt-4o-mini"},
            rate={"n": 10, "s": 60}, conc=2, models=["gpt-4o-mini", "gpt-4o"],
            paths=["/chat/completions", "/embeddings"], origins=["https://app.example.com"],
            ips=["203.0.113.0/24", "2001:db8::/32"], mtok=512, mtok_mode="reject", uid="user-42")),
        ("escaping: quote, backslash, control chars and non-ASCII in strings", "k1", base_claims(
            5, uid="u\"\\\n\t\x01\x1f/é漢字😀", ext={"rep_m": "qwen-max"}, prv="dashscope")),
        ("other tenant key", "globex", base_claims(6, tid="globex-corp", prv="gemini", exp=NOW + 60)),
        ("large integers up to 2^53-1", "k1", base_claims(7, max=2**53 - 1, exp=NOW + 31_536_000)),
    ]
    out = []
    for i, (desc, kid, claims) in enumerate(cases):
        salt = det(f"salt-{i}", 16)
        cj = canonical(claims)
        out.append({
            "desc": desc,
            "kid": kid,
            "salt": salt.hex(),
            "claims": claims,
            "claims_json": cj,
            "token": seal(KEY[kid]["key"], kid, salt, cj.encode()),
        })
    return out


def verify_cases(gen: list[dict]) -> list[dict]:
    out = []
    for g in gen:
        c = g["claims"]
        out.append({"desc": g["desc"] + ": valid at issue time", "token": g["token"], "now": c["iat"],
                    "result": "ok", "claims": c})
        out.append({"desc": g["desc"] + ": valid one second before expiry", "token": g["token"],
                    "now": c["exp"] - 1, "result": "ok", "claims": c})
        out.append({"desc": g["desc"] + ": expired at exp", "token": g["token"], "now": c["exp"],
                    "result": "expired"})
    g = gen[0]
    out.append({"desc": "issued in the future beyond any leeway", "token": g["token"],
                "now": g["claims"]["iat"] - 3600, "result": "not_yet_valid"})
    # Members in a different order are still accepted by verifiers.
    c = base_claims(20)
    reordered = json.dumps(dict(reversed(list(c.items()))), separators=(",", ":"))
    out.append({"desc": "claims members in non-canonical order are accepted", "now": NOW, "result": "ok",
                "token": seal(KEY["k1"]["key"], "k1", det("salt-20", 16), reordered.encode()), "claims": c})
    return out


ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def noncanonical(gen: list[dict]) -> str:
    """A valid token whose last base64url character has an unused bit set: lenient decoders accept it."""
    for g in gen:
        text = g["token"][4:]
        if len(text) % 4 in (2, 3):
            idx = ALPHABET.index(text[-1])
            assert idx % 2 == 0
            return "rt1." + text[:-1] + ALPHABET[idx + 1]
    raise AssertionError("no token with a partial final quantum")


def invalid_cases(gen: list[dict]) -> list[dict]:
    good = gen[0]["token"]
    blob = base64.urlsafe_b64decode(good[4:] + "=" * (-len(good[4:]) % 4))
    k1 = KEY["k1"]["key"]
    salt = det("salt-inv", 16)

    def flip(data: bytes, idx: int) -> bytes:
        b = bytearray(data)
        b[idx] ^= 0x01
        return bytes(b)

    def sealed(claims_text: str, kid: str = "k1", **kw) -> str:
        return seal(KEY[kid]["key"] if kid in KEY else k1, kid, salt, claims_text.encode(), **kw)

    c = base_claims(30)
    cj = canonical(c)
    hdr_len = 3 + 2 + 16  # kid "k1"
    cases = [
        ("empty string", ""),
        ("prefix only", "rt1."),
        ("missing prefix", good[4:]),
        ("wrong prefix rt2.", "rt2." + good[4:]),
        ("upper-case prefix", "RT1." + good[4:]),
        ("standard base64 alphabet (+ and /) is not base64url", "rt1." + good[4:].replace("-", "+").replace("_", "/")
         if ("-" in good or "_" in good) else "rt1.+/" + good[6:]),
        ("base64 padding is not allowed", good + "="),
        ("character outside the alphabet", good[:20] + "*" + good[21:]),
        ("whitespace inside the token", good[:20] + " " + good[20:]),
        ("non-canonical base64 (unused bits set)", noncanonical(gen)),
        ("truncated to the header", "rt1." + b64u(blob[:hdr_len])),
        ("truncated by one byte (tag too short)", "rt1." + b64u(blob[:-1])),
        ("tag flipped", "rt1." + b64u(flip(blob, len(blob) - 1))),
        ("ciphertext flipped", "rt1." + b64u(flip(blob, hdr_len + 3))),
        ("salt flipped (header is associated data)", "rt1." + b64u(flip(blob, 6))),
        ("version byte 2 (header rewritten)", "rt1." + b64u(bytes([2]) + blob[1:])),
        ("version byte 2 with a valid tag", sealed(cj, version=2)),
        ("mode byte 2 with a valid tag", sealed(cj, mode=2)),
        ("kid_len zero", "rt1." + b64u(bytes([1, 1, 0]) + blob[5:])),
        ("kid_len larger than the blob", "rt1." + b64u(bytes([1, 1, 200]) + blob[3:])),
        ("unknown key id", seal(k1, "k9", salt, cj.encode())),
        ("right kid, wrong key", seal(KEY["globex"]["key"], "k1", salt, cj.encode())),
        ("claims are not JSON", sealed("not json")),
        ("claims are not UTF-8", seal(k1, "k1", salt, b'{"jti":"\xff"}')),
        ("claims are a JSON array", sealed("[]")),
        ("claims with trailing data", sealed(cj + " x")),
        ("unknown claim member", sealed(cj[:-1] + ',"future_limit":1}')),
        ("duplicate claim member", sealed(cj[:-1] + ',"max":1000}')),
        ("missing jti", sealed(canonical({k: v for k, v in c.items() if k != "jti"}))),
        ("missing exp", sealed(canonical({k: v for k, v in c.items() if k != "exp"}))),
        ("jti not 32 lowercase hex", sealed(canonical({**c, "jti": c["jti"].upper()}))),
        ("both key and kref", sealed(canonical({**c, "kref": "main"}))),
        ("neither key nor kref", sealed(canonical({k: v for k, v in c.items() if k != "key"}))),
        ("iat as a string", sealed(canonical({**c, "iat": str(c["iat"])}))),
        ("exp as a float", sealed(cj.replace(f'"exp":{c["exp"]}', f'"exp":{c["exp"]}.0'))),
        ("negative max", sealed(canonical({**c, "max": -1}))),
        ("max zero", sealed(canonical({**c, "max": 0}))),
        ("exp not after iat", sealed(canonical({**c, "exp": c["iat"]}))),
        ("tenant does not match the key's tenant", sealed(canonical({**c, "tid": "globex-corp"}))),
        ("provider name with upper case", sealed(canonical({**c, "prv": "OpenAI"}))),
        ("ext with an unknown member", sealed(canonical({**c, "ext": {"rep_m": "x", "other": 1}}))),
        ("mtok_mode not clamp or reject", sealed(canonical({**c, "mtok": 10, "mtok_mode": "ignore"}))),
        ("empty models array", sealed(canonical({**c, "models": []}))),
        ("ips entry not a CIDR", sealed(canonical({**c, "ips": ["10.0.0.300/8"]}))),
        ("url not https", sealed(canonical({**c, "url": "http://example.com/v1"}))),
        ("over-long token text", "rt1." + "A" * 4100),
    ]
    return [{"desc": d, "token": t, "now": NOW} for d, t in cases]


def main() -> None:
    gen = generate_cases()
    files = {
        "keys.json": [{"kid": k["kid"], "tenant": k["tenant"], "key": b64u(k["key"])} for k in KEYS],
        "generate.json": gen,
        "verify.json": verify_cases(gen),
        "invalid.json": invalid_cases(gen),
    }
    for name, data in files.items():
        (HERE / name).write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        print(f"wrote {name}: {len(data)} entries")


if __name__ == "__main__":
    main()
