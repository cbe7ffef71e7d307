"""Regenerate the token format v1 test vectors (docs/token-format.md).

An independent implementation of the spec on top of Python's `cryptography` package; the SDKs and the relay
are tested against its output. Deterministic: every key, salt and token id comes from a fixed seed, so
running it twice gives the same files. The ecc method (section 10) lives in ecc_reference.py (its
cryptography), ecc_vectors.py (token cases) and ecc_rai_vectors.py (file cases); it needs cryptography >= 47
(for cryptography.hazmat.primitives.hpke, which opens every ecc token a second way).
Run: python3 tests/vectors/generate_vectors.py
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
    "models", "paths", "origins", "ips", "mtok", "mtok_mode", "uid", "bud", "uq", "ssec",
]
BUD_ORDER = ["tok", "cost"]
QUOTA_ORDER = ["w", "calls", "tok", "cost"]


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
    """The section 5 serialisation; unknown members (only in refusal cases) go last, in insertion order."""
    ordered = OrderedDict((k, claims[k]) for k in ORDER if k in claims)
    ordered.update((k, v) for k, v in claims.items() if k not in ORDER)
    rate = ordered.get("rate")
    if isinstance(rate, dict) and set(rate) == {"n", "s"}:
        ordered["rate"] = OrderedDict((("n", rate["n"]), ("s", rate["s"])))
    bud = ordered.get("bud")
    if isinstance(bud, dict) and set(bud) <= set(BUD_ORDER):
        ordered["bud"] = OrderedDict((k, bud[k]) for k in BUD_ORDER if k in bud)
    uq = ordered.get("uq")
    if isinstance(uq, list) and all(isinstance(q, dict) and set(q) <= set(QUOTA_ORDER) for q in uq):
        # Members in rule 5.1.21 order; the entries themselves keep the order they were given.
        ordered["uq"] = [OrderedDict((k, q[k]) for k in QUOTA_ORDER if k in q) for q in uq]
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
        ("escaping: quote, backslash, slash, space and non-ASCII in strings", "k1", base_claims(
            5, uid='u"\\/ 42', ext={"rep_m": "qwen-max-é漢字😀"}, prv="dashscope")),
        ("other tenant key", "globex", base_claims(6, tid="globex-corp", prv="gemini", exp=NOW + 60)),
        ("large integers up to 2^53-1", "k1", base_claims(7, max=2**53 - 1, exp=NOW + 31_536_000)),
        ("spend limits: token budget and three user quotas", "k1", base_claims(
            8, uid="user-42", bud={"tok": 200_000, "cost": 1_000_000},
            uq=[{"w": "day", "calls": 50, "tok": 200_000, "cost": 1_000_000},
                {"w": "month", "cost": 20_000_000}, {"w": "all", "tok": 2**53 - 1}])),
        ("spend limits: money budget only, one monthly call quota, server-side key", "k2-2026.rotated",
         base_claims(9, key=None, kref="openai-main", uid="u7", bud={"cost": 5000},
                     uq=[{"w": "month", "calls": 1000}])),
        ("realtime session cap after the user quotas", "k1", base_claims(
            10, models=["gpt-realtime"], uid="voice-7", uq=[{"w": "day", "calls": 20}], ssec=900)),
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


#: The relay's default `token.max_lifetime` (30 days); verify.json applies it unless a case says otherwise.
DEFAULT_MAX_LIFETIME = 30 * 24 * 3600
ONE_YEAR = 31_536_000


def verify_cases(gen: list[dict]) -> list[dict]:
    out = []
    for g in gen:
        c = g["claims"]
        # Every case states the lifetime cap; long-lived vectors get a cap that admits them.
        cap = max(DEFAULT_MAX_LIFETIME, c["exp"] - c["iat"])
        out.append({"desc": g["desc"] + ": valid at issue time", "token": g["token"], "now": c["iat"],
                    "max_lifetime": cap, "result": "ok", "claims": c})
        out.append({"desc": g["desc"] + ": valid one second before expiry", "token": g["token"],
                    "now": c["exp"] - 1, "max_lifetime": cap, "result": "ok", "claims": c})
        out.append({"desc": g["desc"] + ": expired at exp", "token": g["token"], "now": c["exp"],
                    "max_lifetime": cap, "result": "expired"})
    g = gen[0]
    out.append({"desc": "issued in the future beyond any leeway", "token": g["token"],
                "now": g["claims"]["iat"] - 3600, "max_lifetime": DEFAULT_MAX_LIFETIME,
                "result": "not_yet_valid"})
    # Section 7 steps 7-9 run in order; the first failing check is the result.
    long_lived = next(x for x in gen if x["claims"]["exp"] - x["claims"]["iat"] == ONE_YEAR)
    lc = long_lived["claims"]
    out.append({"desc": "365-day token under the default 30-day max_lifetime", "token": long_lived["token"],
                "now": lc["iat"], "max_lifetime": DEFAULT_MAX_LIFETIME, "result": "lifetime_too_long"})
    out.append({"desc": "lifetime exactly max_lifetime is allowed", "token": long_lived["token"],
                "now": lc["iat"], "max_lifetime": ONE_YEAR, "result": "ok", "claims": lc})
    out.append({"desc": "lifetime one second over max_lifetime", "token": long_lived["token"],
                "now": lc["iat"], "max_lifetime": ONE_YEAR - 1, "result": "lifetime_too_long"})
    out.append({"desc": "expired and too long-lived: expired is checked first", "token": long_lived["token"],
                "now": lc["exp"], "max_lifetime": DEFAULT_MAX_LIFETIME, "result": "expired"})
    out.append({"desc": "not yet valid and too long-lived: not_yet_valid is checked first",
                "token": long_lived["token"], "now": lc["iat"] - 3600, "max_lifetime": DEFAULT_MAX_LIFETIME,
                "result": "not_yet_valid"})
    # Members in a different order are still accepted by verifiers.
    c = base_claims(20)
    reordered = json.dumps(dict(reversed(list(c.items()))), separators=(",", ":"))
    out.append({"desc": "claims members in non-canonical order are accepted", "now": NOW,
                "max_lifetime": DEFAULT_MAX_LIFETIME, "result": "ok",
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
    # A fresh salt for every sealed case: one salt under one key would reuse a (key, nonce) pair.
    salts = (det(f"salt-inv-{i}", 16) for i in range(1000))

    def flip(data: bytes, idx: int) -> bytes:
        b = bytearray(data)
        b[idx] ^= 0x01
        return bytes(b)

    def sealed(claims_text: str, kid: str = "k1", **kw) -> str:
        return seal(KEY[kid]["key"] if kid in KEY else k1, kid, next(salts), claims_text.encode(), **kw)

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
        ("unknown key id", seal(k1, "k9", next(salts), cj.encode())),
        ("right kid, wrong key", seal(KEY["globex"]["key"], "k1", next(salts), cj.encode())),
        ("claims are not JSON", sealed("not json")),
        ("claims are not UTF-8", seal(k1, "k1", next(salts), b'{"jti":"\xff"}')),
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
        ("empty bud object", sealed(canonical({**c, "bud": {}}))),
        ("bud with an unknown member", sealed(canonical({**c, "bud": {"tok": 1, "calls": 1}}))),
        ("uq without uid", sealed(canonical({**c, "uq": [{"w": "day", "calls": 5}]}))),
        ("uq with a window twice", sealed(canonical({**c, "uid": "u1", "uq": [
            {"w": "day", "calls": 5}, {"w": "day", "tok": 5}]}))),
        ("ssec zero", sealed(canonical({**c, "ssec": 0}))),
        ("ssec over one day", sealed(canonical({**c, "ssec": 86_401}))),
        ("over-long token text", "rt1." + "A" * 4100),
    ]
    return [{"desc": d, "token": t, "now": NOW} for d, t in cases]


# ---- conformance.json ---------------------------------------------------------------------------------

MAX_SAFE = 2**53 - 1
ONE_YEAR_S = 31_536_000
VALID_RAI = {
    "version": 1,
    "server": {"scheme": "https", "host": "relay.example.com", "port": 8443, "base_path": "/relayapi/"},
    "crypto": {
        "method": "aes-256-gcm-hkdf-sha256",
        "key_id": "k1",
        "key": b64u(det("key-k1", 32)),
        "tenant_id": "acme",
        "previous_keys": [{"key_id": "k0", "key": b64u(det("key-k0", 32))}],
    },
}


def conf_claims(**over) -> dict:
    """The base claims of every conformance token case, with members replaced (None removes)."""
    c = {
        "jti": det("conf-jti", 16).hex(),
        "tid": "acme",
        "iat": NOW,
        "exp": NOW + 3600,
        "prv": "openai",
        "key": "test-key-conformance",
        "max": 100,
    }
    c.update(over)
    return {k: v for k, v in c.items() if v is not None}


def splice(extra: str) -> str:
    """The base claims' canonical JSON with raw text spliced in before the closing brace."""
    return canonical(conf_claims())[:-1] + "," + extra + "}"


def filler_models(target_len: int) -> dict:
    """Valid claims whose k1 token is exactly `target_len` characters (or the next reachable length)."""
    for last in range(1, 257):
        models = ["m" * 256] * 11 + ["m" * last]
        c = conf_claims(models=models)
        n = 3 + 2 + 16 + len(canonical(c).encode()) + 16
        if 4 + (4 * n + 2) // 3 >= target_len:
            return c
    raise AssertionError("filler too short")


def token_rules() -> list[tuple]:
    """(rule, desc, verdict, claims-or-None, plaintext) for every rule of sections 3, 5.1, 6 and 7.1."""
    V, X = "valid", "invalid"
    base = conf_claims()
    cj = canonical(base)
    cases: list[tuple] = []

    def claims_case(rule, desc, verdict, **over):
        c = conf_claims(**over)
        cases.append((rule, desc, verdict, c, canonical(c)))

    def raw(rule, desc, verdict, text, claims=None):
        cases.append((rule, desc, verdict, claims, text))

    # 7.1 JSON rules.
    raw("J1", "byte-order mark before the claims", X, "\ufeff" + cj)
    raw("J1", "claims are not UTF-8 (an overlong encoding of '/')", X, cj[:-1].encode() + b',"uid":"\xc0\xaf"}')
    raw("J2", "insignificant whitespace (space, tab, LF, CR) is accepted", V,
        "{\n\t" + ",\r\n ".join(f'"{k}" : {json.dumps(v)}' for k, v in base.items()) + " \n}", base)
    raw("J2", "form feed is not JSON whitespace", X, cj[:-1] + "\f}")
    raw("J2", "no-break space is not JSON whitespace", X, cj[:-1] + "\u00a0}")
    raw("J2", "trailing comma", X, cj[:-1] + ",}")
    raw("J2", "comment", X, cj[:-1] + "/* x */}")
    raw("J2", "trailing data after the object", X, cj + "{}")
    raw("J2", "a JSON string instead of an object", X, json.dumps(cj))
    raw("J3", "escaped member name is the member it spells", V,
        cj.replace('"max":100', '"\\u006dax":100'), base)
    raw("J3", "duplicate member after unescaping", X, splice('"\\u006dax":1000'))
    raw("J3", "duplicate member inside rate after unescaping", X, splice('"rate":{"n":1,"s":60,"\\u006e":2}'))
    raw("J3", "duplicate member inside ext", X, splice('"ext":{"rep_m":"a","rep_m":"b"}'))
    raw("J4", "lone high surrogate escape in a text value", X, splice('"ext":{"rep_m":"a\\ud800"}'))
    raw("J4", "lone low surrogate escape in a text value", X, splice('"ext":{"rep_m":"\\udc00a"}'))
    raw("J4", "lone surrogate escape in a member name", X, splice('"\\ud800":1'))
    raw("J4", "paired surrogate escapes are one scalar value", V, splice('"ext":{"rep_m":"\\ud83d\\ude00"}'),
        conf_claims(ext={"rep_m": "😀"}))
    raw("J4", "escaped solidus and \\u escapes are accepted", V,
        splice('"paths":["\\/chat\\/completions","\\u002fembeddings"]'),
        conf_claims(paths=["/chat/completions", "/embeddings"]))
    raw("J5", "negative zero is not an integer", X, cj.replace(f'"iat":{NOW}', '"iat":-0'))
    raw("J5", "fraction", X, cj.replace('"max":100', '"max":100.0'))
    raw("J5", "exponent", X, cj.replace('"max":100', '"max":1e2'))
    raw("J5", "NaN", X, cj.replace('"max":100', '"max":NaN'))
    raw("J5", "leading zero", X, cj.replace('"max":100', '"max":0100'))
    raw("J6", "17 levels of nesting", X, splice('"models":' + "[" * 16 + '"m"' + "]" * 16))
    raw("J6", "1400 levels of nesting (must not exhaust a recursive parser)", X,
        splice('"models":' + "[" * 1400 + "]" * 1400))
    raw("J6", "unterminated deep nesting", X, cj[:-1] + ',"models":' + "[" * 2500)
    raw("J7", "members in reverse order, rate as s then n", V,
        json.dumps(dict(reversed(list({**base, "rate": {"s": 60, "n": 10}}.items()))),
                   separators=(",", ":")), conf_claims(rate={"n": 10, "s": 60}))

    # 5.1 value rules.
    raw("5.1.1", "null max is not absent", X, cj.replace('"max":100', '"max":null'))
    raw("5.1.1", "null kref next to key", X, splice('"kref":null'))
    raw("5.1.1", "null rep_m", X, splice('"ext":{"rep_m":null}'))
    raw("5.1.1", "null models", X, splice('"models":null'))
    claims_case("5.1.3", "text with non-ASCII: length counts scalar values (256 emoji)", V,
                ext={"rep_m": "😀" * 256})
    claims_case("5.1.3", "text of 257 scalar values", X, ext={"rep_m": "é" * 257})
    claims_case("5.1.3", "text with a C0 control character", X, ext={"rep_m": "gpt\u0001"})
    claims_case("5.1.3", "text with DEL", X, models=["gpt\u007f"])
    claims_case("5.1.3", "text with a C1 control character (U+0085)", X, models=["gpt\u0085"])
    claims_case("5.1.3", "text with U+00A0 (not a control character)", V, models=["gpt\u00a04o"])
    claims_case("5.1.4", "iat zero is the lower bound", V, iat=0, exp=3600)
    claims_case("5.1.4", "exp at 2^53-1", V, iat=MAX_SAFE - 1, exp=MAX_SAFE)
    claims_case("5.1.4", "exp above 2^53-1", X, iat=MAX_SAFE - 1, exp=MAX_SAFE + 1)
    claims_case("5.1.4", "exp equal to iat", X, exp=NOW)
    claims_case("5.1.4", "max at 2^53-1", V, max=MAX_SAFE)
    claims_case("5.1.4", "max 2^53", X, max=MAX_SAFE + 1)
    claims_case("5.1.4", "max zero", X, max=0)
    claims_case("5.1.4", "rate at its bounds", V, rate={"n": ONE_YEAR_S, "s": 1})
    claims_case("5.1.4", "rate.s over one year", X, rate={"n": 1, "s": ONE_YEAR_S + 1})
    claims_case("5.1.4", "rate.n zero", X, rate={"n": 0, "s": 60})
    claims_case("5.1.4", "conc 10000", V, conc=10000)
    claims_case("5.1.4", "conc 10001", X, conc=10001)
    claims_case("5.1.4", "conc zero", X, conc=0)
    claims_case("5.1.4", "mtok 1", V, mtok=1)
    claims_case("5.1.4", "mtok zero", X, mtok=0)
    claims_case("5.1.4", "mtok 2^53", X, mtok=MAX_SAFE + 1)
    claims_case("5.1.4", "iat as a string", X, iat=str(NOW))
    claims_case("5.1.4", "max as a boolean", X, max=True)
    claims_case("5.1.5", "jti in upper case", X, jti=base["jti"].upper())
    claims_case("5.1.5", "jti of 31 characters", X, jti=base["jti"][:31])
    # The tenant binding belongs to the key, not to the claims alone, so this case has no minter side.
    raw("5.1.6", "tid of another tenant", X, canonical(conf_claims(tid="globex-corp")))
    claims_case("5.1.7", "provider name not in the table still verifies", V, prv="my-provider_2")
    claims_case("5.1.7", "provider name in upper case", X, prv="OpenAI")
    claims_case("5.1.7", "provider name of 33 characters", X, prv="p" * 33)
    claims_case("5.1.8", "key with a space (printable ASCII)", V, key="sk test 42")
    claims_case("5.1.8", "key of 1024 characters", V, key="k" * 1024)
    claims_case("5.1.8", "key of 1025 characters", X, key="k" * 1025)
    claims_case("5.1.8", "empty key", X, key="")
    claims_case("5.1.8", "key with a tab", X, key="sk\ttest")
    claims_case("5.1.8", "key with non-ASCII", X, key="sk-é")
    claims_case("5.1.9", "kref identifier", V, key=None, kref="openai-main.v2_1")
    claims_case("5.1.9", "kref of 64 characters", V, key=None, kref="k" * 64)
    claims_case("5.1.9", "kref of 65 characters", X, key=None, kref="k" * 65)
    claims_case("5.1.9", "kref with a space", X, key=None, kref="openai main")
    claims_case("5.1.9", "empty kref", X, key=None, kref="")
    claims_case("5.1.9", "both key and kref", X, kref="openai-main")
    claims_case("5.1.9", "neither key nor kref", X, key=None)
    long_url = "https://example.com/" + "a" * (2048 - len("https://example.com/"))
    for url, verdict, why in [
        ("https://example.com", V, "host only"),
        ("https://example.com:8443/v1/", V, "port and path"),
        ("https://Example.COM/v1", V, "host in mixed case"),
        ("https://[2001:db8::1]:443/v1", V, "bracketed IPv6 host"),
        ("https://10.0.0.1/", V, "IPv4 host"),
        ("https://my_host.example.com/v1/%2F", V, "underscore label and a complete escape"),
        ("https://example.com/v1?api-version=2024-06-01", V, "query"),
        (long_url, V, "2048 bytes"),
        (long_url + "a", X, "2049 bytes"),
        ("http://example.com/v1", X, "not https"),
        ("HTTPS://example.com", X, "scheme in upper case"),
        ("https://", X, "no host"),
        ("https:example.com", X, "no authority"),
        ("https://user@example.com/", X, "user info"),
        ("https://example.com:0/", X, "port 0"),
        ("https://example.com:65536", X, "port 65536"),
        ("https://example.com:/", X, "empty port"),
        ("https://example.com/v1#frag", X, "fragment"),
        ("https://exa mple.com", X, "space"),
        ("https://example.com/%zz", X, "broken escape"),
        ("https://example.com/%4", X, "truncated escape"),
        ("https://[::1", X, "unclosed bracket"),
        ("https://[fe80::1%25eth0]/", X, "IPv6 zone id"),
        ("https://a..b.example/", X, "empty label"),
        ("https://example.com/é", X, "non-ASCII"),
    ]:
        claims_case("5.1.10", f"url: {why}", verdict, url=url)
    claims_case("5.1.11", "ext with rep_m", V, ext={"rep_m": "gpt-4o-mini"})
    claims_case("5.1.11", "empty ext object", X, ext={})
    claims_case("5.1.11", "ext with an unknown member", X, ext={"rep_m": "x", "other": "y"})
    claims_case("5.1.11", "empty rep_m", X, ext={"rep_m": ""})
    claims_case("5.1.11", "ext as an array", X, ext=["gpt-4o"])
    claims_case("5.1.12", "rate without s", X, rate={"n": 10})
    claims_case("5.1.12", "rate with an extra member", X, rate={"n": 10, "s": 60, "b": 1})
    claims_case("5.1.12", "rate as an array", X, rate=[10, 60])
    claims_case("5.1.13", "64 models", V, models=[f"m{i}" for i in range(64)])
    claims_case("5.1.13", "65 models", X, models=[f"m{i}" for i in range(65)])
    claims_case("5.1.13", "empty model name", X, models=[""])
    claims_case("5.1.13", "models entry not a string", X, models=["gpt-4o", 4])
    claims_case("5.1.13", "empty models array", X, models=[])
    for path, verdict, why in [
        ("/chat/completions", V, "endpoint"),
        ("/", V, "root"),
        ("/v1/models/gemini-2.0:generateContent", V, "colon and dots"),
        ("chat/completions", X, "no leading slash"),
        ("/chat/completions?x=1", X, "query"),
        ("/a#b", X, "fragment"),
        ("/a b", X, "space"),
        ("/é", X, "non-ASCII"),
        ("", X, "empty"),
    ]:
        claims_case("5.1.14", f"paths: {why}", verdict, paths=[path])
    claims_case("5.1.19", "repeated entries change nothing", V, paths=["/embeddings", "/embeddings"])
    for origin, verdict, why in [
        ("https://app.example.com", V, "https origin"),
        ("http://localhost:3000", V, "http with port"),
        ("https://[2001:db8::1]:8443", V, "IPv6 origin"),
        ("https://my_app.example.com", V, "underscore label"),
        ("https://App.example.com", X, "upper case host"),
        ("HTTPS://app.example.com", X, "upper case scheme"),
        ("https://app.example.com/", X, "trailing slash"),
        ("https://app.example.com/path", X, "path"),
        ("https://app.example.com:443", X, "default https port"),
        ("http://app.example.com:80", X, "default http port"),
        ("https://app.example.com:0443", X, "port with a leading zero"),
        ("https://app.example.com:0", X, "port 0"),
        ("https://app.example.com:65536", X, "port 65536"),
        ("https://[2001:DB8::1]", X, "IPv6 not in RFC 5952 form"),
        ("ftp://app.example.com", X, "scheme other than http and https"),
        ("null", X, "the opaque origin null"),
        ("*", X, "wildcard"),
        ("https://a..example.com", X, "empty label"),
    ]:
        claims_case("5.1.15", f"origins: {why}", verdict, origins=[origin])
    for cidr, verdict, why in [
        ("203.0.113.0/24", V, "IPv4 range"),
        ("0.0.0.0/0", V, "every IPv4 address"),
        ("10.0.0.1/32", V, "one IPv4 address"),
        ("2001:db8::/32", V, "IPv6 range"),
        ("::/0", V, "every IPv6 address"),
        ("2001:db8::1/128", V, "one IPv6 address"),
        ("2001:db8:0:0:1::/80", V, "longest zero run compressed"),
        ("2001:db8::1:0:0:1/128", V, "first of two equal zero runs compressed"),
        ("2001:db8:0:1:1:1:1:1/128", V, "single zero group not compressed"),
        ("::102:304/128", V, "low addresses in hex, not dotted"),
        ("2001:DB8::/32", X, "upper-case hex"),
        ("2001:0db8::/32", X, "leading zero in a group"),
        ("2001:db8:0:0:0:0:0:0/32", X, "zero groups not compressed"),
        ("2001:db8:0:0:1::1/128", X, "second of two equal zero runs compressed"),
        ("2001:db8::1:1:1:1:1/128", X, "single zero group compressed"),
        ("::1.2.3.4/128", X, "embedded dotted quad"),
        ("203.0.113.7/24", X, "host bits set"),
        ("2001:db8::1/32", X, "IPv6 host bits set"),
        ("10.0.0.0/08", X, "prefix with a leading zero"),
        ("010.0.0.0/8", X, "octet with a leading zero"),
        ("10.0.0.1", X, "bare address"),
        ("10.0.0.0/33", X, "IPv4 prefix over 32"),
        ("::/129", X, "IPv6 prefix over 128"),
        ("10.0.0.0/+8", X, "signed prefix"),
        ("10.0.0.0/", X, "empty prefix"),
        ("fe80::%eth0/64", X, "zone id"),
        ("[2001:db8::]/32", X, "brackets"),
        ("::ffff:10.0.0.0/104", X, "IPv4-mapped, dotted"),
        ("::ffff:a00:0/104", X, "IPv4-mapped, hex"),
        ("10.0.0.300/8", X, "octet over 255"),
        (" 10.0.0.0/8", X, "leading space"),
    ]:
        claims_case("5.1.16", f"ips: {why}", verdict, ips=[cidr])
    claims_case("5.1.17", "mtok_mode with mtok", V, mtok=256, mtok_mode="clamp")
    claims_case("5.1.17", "mtok_mode without mtok", X, mtok_mode="reject")
    claims_case("5.1.17", "mtok_mode in upper case", X, mtok=256, mtok_mode="Clamp")
    claims_case("5.1.18", "uid printable ASCII with space and quotes", V, uid='user "42" \\ /')
    claims_case("5.1.18", "uid of 128 characters", V, uid="u" * 128)
    claims_case("5.1.18", "uid of 129 characters", X, uid="u" * 129)
    claims_case("5.1.18", "empty uid", X, uid="")
    claims_case("5.1.18", "uid with a line feed", X, uid="u1\nfake log line")
    claims_case("5.1.18", "uid with non-ASCII", X, uid="ユーザー")
    claims_case("5.1", "unknown member", X, future_limit=1)

    # 5.1.20 and 5.1.21: the spend limits (docs/budgets.md section 1).
    day = {"w": "day", "calls": 50}
    claims_case("5.1.20", "bud with tok and cost", V, bud={"tok": 200_000, "cost": 1_000_000})
    claims_case("5.1.20", "bud with tok only", V, bud={"tok": 1})
    claims_case("5.1.20", "bud with cost only", V, bud={"cost": 1})
    raw("5.1.20", "bud members in either order: cost before tok", V,
        splice('"bud":{"cost":7,"tok":9}'), conf_claims(bud={"tok": 9, "cost": 7}))
    claims_case("5.1.20", "empty bud object", X, bud={})
    claims_case("5.1.20", "bud with an unknown member", X, bud={"tok": 1, "calls": 1})
    claims_case("5.1.20", "bud as an array", X, bud=[1, 2])
    claims_case("5.1.20", "bud as an integer", X, bud=1000)
    raw("5.1.1", "null bud", X, splice('"bud":null'))
    raw("5.1.1", "null bud.tok next to cost", X, splice('"bud":{"tok":null,"cost":5}'))
    raw("J3", "duplicate member inside bud", X, splice('"bud":{"tok":1,"tok":2}'))
    claims_case("5.1.4", "bud.tok at 2^53-1", V, bud={"tok": MAX_SAFE})
    claims_case("5.1.4", "bud.tok 2^53", X, bud={"tok": MAX_SAFE + 1})
    claims_case("5.1.4", "bud.cost zero", X, bud={"cost": 0})
    claims_case("5.1.4", "bud.cost as a string", X, bud={"cost": "5"})
    raw("J5", "bud.tok as a fraction", X, splice('"bud":{"tok":1.0}'))
    claims_case("5.1.21", "one daily call quota", V, uid="user-1", uq=[day])
    claims_case("5.1.21", "quota with calls, tok and cost", V, uid="user-1",
                uq=[{"w": "all", "calls": 1, "tok": 2, "cost": 3}])
    claims_case("5.1.21", "three windows kept in the order given (month, all, day)", V, uid="user-1",
                uq=[{"w": "month", "tok": 5}, {"w": "all", "cost": 9}, {"w": "day", "calls": 1}])
    raw("5.1.21", "quota members in any order: cost, tok, w", V,
        splice('"uid":"user-1","uq":[{"cost":3,"tok":2,"w":"day"}]'),
        conf_claims(uid="user-1", uq=[{"w": "day", "tok": 2, "cost": 3}]))
    claims_case("5.1.21", "uq without uid", X, uq=[day])
    claims_case("5.1.21", "empty uq array", X, uid="user-1", uq=[])
    claims_case("5.1.21", "four quotas", X, uid="user-1",
                uq=[day, {"w": "month", "calls": 1}, {"w": "all", "calls": 1}, {"w": "day", "tok": 1}])
    claims_case("5.1.21", "the same window twice", X, uid="user-1", uq=[day, {"w": "day", "tok": 1000}])
    claims_case("5.1.21", "window in upper case", X, uid="user-1", uq=[{"w": "Day", "calls": 1}])
    claims_case("5.1.21", "unknown window week", X, uid="user-1", uq=[{"w": "week", "calls": 1}])
    claims_case("5.1.21", "window as an integer", X, uid="user-1", uq=[{"w": 1, "calls": 1}])
    claims_case("5.1.21", "quota without w", X, uid="user-1", uq=[{"calls": 1}])
    claims_case("5.1.21", "quota with a window and no limit", X, uid="user-1", uq=[{"w": "day"}])
    claims_case("5.1.21", "quota with an unknown member", X, uid="user-1", uq=[{**day, "max": 1}])
    claims_case("5.1.21", "quota as an array", X, uid="user-1", uq=[["day", 50]])
    claims_case("5.1.21", "uq as an object", X, uid="user-1", uq=day)
    raw("5.1.1", "null uq", X, splice('"uid":"user-1","uq":null'))
    raw("5.1.1", "null calls in a quota", X, splice('"uid":"user-1","uq":[{"w":"day","calls":null,"tok":5}]'))
    raw("J3", "duplicate w inside a quota", X, splice('"uid":"user-1","uq":[{"w":"day","calls":1,"w":"all"}]'))
    claims_case("5.1.4", "quota tok at 2^53-1", V, uid="user-1", uq=[{"w": "day", "tok": MAX_SAFE}])
    claims_case("5.1.4", "quota cost 2^53", X, uid="user-1", uq=[{"w": "day", "cost": MAX_SAFE + 1}])
    claims_case("5.1.4", "quota calls zero", X, uid="user-1", uq=[{"w": "day", "calls": 0}])

    # Section 3 and section 6 step 8: the 4096-byte limit binds minters too.
    at = filler_models(4096)
    cases.append(("3", "token of exactly 4096 bytes", V, at, canonical(at)))
    over = filler_models(4097)
    cases.append(("6.8", "claims whose token would exceed 4096 bytes: minters refuse", X, over, canonical(over)))

    # 5.1.22, added after the rest so that earlier cases keep their salts.
    claims_case("5.1.22", "ssec 1", V, ssec=1)
    claims_case("5.1.22", "ssec one day", V, ssec=86_400)
    claims_case("5.1.22", "ssec after uq in canonical order", V, uid="user-1",
                uq=[{"w": "day", "calls": 1}], ssec=600)
    raw("J7", "ssec before jti is accepted by verifiers", V,
        '{"ssec":600,' + canonical(conf_claims())[1:], conf_claims(ssec=600))
    claims_case("5.1.22", "ssec zero", X, ssec=0)
    claims_case("5.1.22", "ssec over one day", X, ssec=86_401)
    claims_case("5.1.22", "ssec as a string", X, ssec="600")
    # JSON has one number type: a minter given 600.0 sees 600, so this case is the verifier's alone.
    raw("5.1.22", "ssec as a float", X, splice('"ssec":600.0'))
    claims_case("5.1.22", "ssec negative", X, ssec=-1)
    raw("5.1.1", "null ssec", X, splice('"ssec":null'))
    raw("J3", "ssec twice", X, splice('"ssec":600,"ssec":60'))
    return cases


def conformance_token_cases() -> list[dict]:
    out = []
    for i, (rule, desc, verdict, claims, plaintext) in enumerate(token_rules()):
        data = plaintext if isinstance(plaintext, bytes) else plaintext.encode("utf-8", "surrogatepass")
        salt = det(f"conf-salt-{i}", 16)
        case: dict = {"rule": rule, "desc": desc, "verdict": verdict}
        try:
            text = data.decode("utf-8")
            case["plaintext"] = text
        except UnicodeDecodeError:
            case["plaintext_hex"] = data.hex()
        case["salt"] = salt.hex()
        case["token"] = seal(KEY["k1"]["key"], "k1", salt, data)
        if claims is not None:
            case["claims"] = claims
            if verdict == "valid":
                case["canonical"] = canonical(claims)
        token_len = len(case["token"])
        assert (token_len <= 4096) == (rule != "6.8"), (desc, token_len)
        out.append(case)
    assert [len(c["token"]) for c in out if c["rule"] == "3"] == [4096]
    return out


def rai_text(doc: dict) -> str:
    return json.dumps(doc, indent=2) + "\n"


def rai_with(path: str, value) -> str:
    """VALID_RAI with the field at dotted `path` replaced (`...` removes it)."""
    doc = json.loads(json.dumps(VALID_RAI))
    *parents, last = path.split(".")
    node = doc
    for name in parents:
        node = node[int(name)] if name.isdigit() else node[name]
    if value is ...:
        del node[last]
    elif last.isdigit():
        node[int(last)] = value
    else:
        node[last] = value
    return rai_text(doc)


def conformance_rai_cases() -> list[dict]:
    L, R = "load", "refuse"
    std = next(k for k in (b64u(det(f"key-std-{i}", 32)) for i in range(100)) if "-" in k or "_" in k)
    good = rai_text(VALID_RAI)
    key = VALID_RAI["crypto"]["key"]
    cases = [
        ("C1", "the documented shape", L, good),
        ("C1", "compact JSON", L, json.dumps(VALID_RAI, separators=(",", ":"))),
        ("C1", "byte-order mark", R, "\ufeff" + good),
        ("C1", "duplicate top-level field", R, good.replace('"version": 1,', '"version": 1, "version": 1,')),
        ("C1", "duplicate field after unescaping", R,
         good.replace('"port": 8443,', '"port": 8443, "\\u0070ort": 8443,')),
        ("C1", "trailing comma", R, good.replace('"base_path": "/relayapi/"', '"base_path": "/relayapi/",')),
        ("C1", "version as 1.0", R, good.replace('"version": 1,', '"version": 1.0,')),
        ("C1", "65536 bytes (padded with whitespace)", L, good[:-2] + " " * (65536 - len(good)) + "}\n"),
        ("C1", "65537 bytes (padded with whitespace)", R, good[:-2] + " " * (65537 - len(good)) + "}\n"),
        ("C1", "3000 levels of nesting", R, good.replace('"version": 1,', '"x": ' + "[" * 1500 + "]" * 1500
                                                          + ', "version": 1,')),
        ("C2", "unknown top-level field", R, rai_with("comment", "hi")),
        ("C2", "unknown field in server", R, rai_with("server.timeout", 5)),
        ("C2", "unknown field in crypto", R, rai_with("crypto.algorithm", "aes")),
        ("C2", "unknown field in a previous key", R, rai_with("crypto.previous_keys.0.note", "old")),
        ("C2", "previous key without key", R, rai_with("crypto.previous_keys.0.key", ...)),
        ("C2", "previous key as a string", R, rai_with("crypto.previous_keys.0", key)),
        ("C2", "null scheme is not the default", R, rai_with("server.scheme", None)),
        ("C2", "scheme in upper case", R, rai_with("server.scheme", "HTTPS")),
        ("C2", "no scheme and no base_path: defaults", L,
         rai_text({**VALID_RAI, "server": {"host": "relay.example.com", "port": 8080}})),
        ("C3", "host in mixed case", L, rai_with("server.host", "Relay.Example.com")),
        ("C3", "IDN in ASCII form", L, rai_with("server.host", "xn--bcher-kva.example")),
        ("C3", "IPv4 host", L, rai_with("server.host", "10.0.0.1")),
        ("C3", "IPv6 host without brackets", L, rai_with("server.host", "2001:db8::1")),
        ("C3", "IPv6 host in brackets", R, rai_with("server.host", "[2001:db8::1]")),
        ("C3", "IPv6 zone id", R, rai_with("server.host", "fe80::1%eth0")),
        ("C3", "IPv4 octet with a leading zero", R, rai_with("server.host", "010.0.0.1")),
        ("C3", "numeric name that is not an IPv4 address", R, rai_with("server.host", "1.2.3")),
        ("C3", "underscore", R, rai_with("server.host", "relay_1.example.com")),
        ("C3", "empty label", R, rai_with("server.host", "relay..example.com")),
        ("C3", "trailing dot", R, rai_with("server.host", "relay.example.com.")),
        ("C3", "label starting with a hyphen", R, rai_with("server.host", "-relay.example.com")),
        ("C3", "label ending with a hyphen", R, rai_with("server.host", "relay-.example.com")),
        ("C3", "label of 64 characters", R, rai_with("server.host", "a" * 64 + ".example")),
        ("C3", "name of 254 characters", R, rai_with("server.host", ".".join(["a" * 63] * 4)[:252] + ".a")),
        ("C3", "host with a port", R, rai_with("server.host", "relay.example.com:8443")),
        ("C3", "empty host", R, rai_with("server.host", "")),
        ("C4", "port 65535", L, rai_with("server.port", 65535)),
        ("C4", "port 0", R, rai_with("server.port", 0)),
        ("C4", "port 65536", R, rai_with("server.port", 65536)),
        ("C4", "port as a string", R, rai_with("server.port", "8443")),
        ("C5", "base_path /", L, rai_with("server.base_path", "/")),
        ("C5", "base_path with two segments", L, rai_with("server.base_path", "/api/relay-1.v2~x/")),
        ("C5", "base_path of 128 characters", L, rai_with("server.base_path", "/" + "a" * 126 + "/")),
        ("C5", "base_path of 129 characters", R, rai_with("server.base_path", "/" + "a" * 127 + "/")),
        ("C5", "base_path without the leading slash", R, rai_with("server.base_path", "relayapi/")),
        ("C5", "base_path without the trailing slash", R, rai_with("server.base_path", "/relayapi")),
        ("C5", "empty segment", R, rai_with("server.base_path", "/a//b/")),
        ("C5", "dot segment", R, rai_with("server.base_path", "/a/./")),
        ("C5", "dot-dot segment", R, rai_with("server.base_path", "/../")),
        ("C5", "percent escape", R, rai_with("server.base_path", "/a%20b/")),
        ("C5", "space", R, rai_with("server.base_path", "/a b/")),
        ("C5", "question mark", R, rai_with("server.base_path", "/a?b/")),
        ("C6", "previous key id equal to the current one", R, rai_with("crypto.previous_keys.0.key_id", "k1")),
        ("C6", "key id of 33 characters", R, rai_with("crypto.key_id", "k" * 33)),
        ("C7", "key with a non-canonical last character", R,
         rai_with("crypto.key", key[:-1] + ALPHABET[ALPHABET.index(key[-1]) ^ 1])),
        ("C7", "key with padding", R, rai_with("crypto.key", key + "=")),
        ("C7", "key in the standard base64 alphabet", R,
         rai_with("crypto.key", std.replace("-", "+").replace("_", "/"))),
        ("C7", "key of 31 bytes", R, rai_with("crypto.key", b64u(det("key-k1", 31)))),
        ("C7", "key of 33 bytes", R, rai_with("crypto.key", b64u(det("key-k1", 33)))),
        ("C8", "tenant id with a space", R, rai_with("crypto.tenant_id", "ac me")),
        ("C9", "16 previous keys", L, rai_with("crypto.previous_keys", [
            {"key_id": f"old-{i}", "key": b64u(det(f"key-old-{i}", 32))} for i in range(16)])),
        ("C9", "17 previous keys", R, rai_with("crypto.previous_keys", [
            {"key_id": f"old-{i}", "key": b64u(det(f"key-old-{i}", 32))} for i in range(17)])),
        ("C9", "previous_keys not an array", R, rai_with("crypto.previous_keys", {"key_id": "k0"})),
        ("C10", "current key with a window", L,
         rai_text({**VALID_RAI, "crypto": {**VALID_RAI["crypto"], "not_before": 1790000000,
                                            "not_after": 1800000000}})),
        ("C10", "previous key retired (not_after only)", L,
         rai_with("crypto.previous_keys.0.not_after", 1790000000)),
        ("C10", "previous key not yet valid (not_before only)", L,
         rai_with("crypto.previous_keys.0.not_before", 1800000000)),
        ("C10", "widest window: 0 to 2^53-1", L,
         rai_text({**VALID_RAI, "crypto": {**VALID_RAI["crypto"], "not_before": 0,
                                            "not_after": 2**53 - 1}})),
        ("C10", "not_after equal to not_before", R,
         rai_text({**VALID_RAI, "crypto": {**VALID_RAI["crypto"], "not_before": 1790000000,
                                            "not_after": 1790000000}})),
        ("C10", "previous key with not_after before not_before", R,
         rai_with("crypto.previous_keys.0", {**VALID_RAI["crypto"]["previous_keys"][0],
                                              "not_before": 1800000000, "not_after": 1790000000})),
        ("C10", "not_after of 2^53", R, rai_with("crypto.not_after", 2**53)),
        ("C10", "negative not_before", R, rai_with("crypto.not_before", -1)),
        ("C10", "not_after with a fraction", R, rai_with("crypto.not_after", 1790000000.5)),
        ("C10", "not_after in exponent form", R,
         good.replace('"tenant_id": "acme",', '"tenant_id": "acme", "not_after": 1.79e9,')),
        ("C10", "not_before as a string", R, rai_with("crypto.not_before", "1790000000")),
        ("C10", "null not_after is not \"open\"", R, rai_with("crypto.not_after", None)),
        ("C10", "not_after in server is unknown", R, rai_with("server.not_after", 1790000000)),
    ]
    assert ALPHABET.index(key[-1]) % 4 == 0
    return [{"rule": r, "desc": d, "verdict": v, "rai": t} for r, d, v, t in cases]


def ecc_file() -> dict:
    """ecc.json (section 10.5), after checking our HPKE against hpke-rfc9180.json (ecc_reference.py)."""
    import ecc_rai_vectors
    import ecc_reference
    import ecc_vectors

    print(f"checked hpke-rfc9180.json: {ecc_reference.check_rfc9180()} suites")
    gen = ecc_vectors.generate_cases()
    return {
        "keys": ecc_vectors.keys_doc(),
        "generate": gen,
        "verify": ecc_vectors.verify_cases(gen),
        "invalid": ecc_vectors.invalid_cases(),
        "rai": ecc_rai_vectors.checked_cases(),
    }


def main() -> None:
    gen = generate_cases()
    files = {
        "keys.json": [{"kid": k["kid"], "tenant": k["tenant"], "key": b64u(k["key"])} for k in KEYS],
        "generate.json": gen,
        "verify.json": verify_cases(gen),
        "invalid.json": invalid_cases(gen),
        "conformance.json": {"tokens": conformance_token_cases(), "rai": conformance_rai_cases()},
        "ecc.json": ecc_file(),
    }
    for name, data in files.items():
        (HERE / name).write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        print(f"wrote {name}: {len(data)} entries")


if __name__ == "__main__":
    main()
