"""The cases of tests/vectors/ecc.json (docs/token-format.md section 10.5), built on ecc_reference.py.

Every generated or verify token is opened by the reference verifier (cryptography's HPKE and ECDSA) and
must come out with its claims; every invalid token names the step of section 10.4 (`fails_at`) that must
refuse it, and the reference verifier must refuse it at exactly that step, so the steps before it pass and
only the named defect fails. Each sealed token has its own ikm_e, so no (key, nonce) pair encrypts two
plaintexts anywhere in the vectors. Called by generate_vectors.py.
"""

from __future__ import annotations

import json

from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

import ecc_reference as er
import generate_vectors as gv

NOW = gv.NOW

# ---- keys --------------------------------------------------------------------------------------------------


def scalar(label: str) -> int:
    return int.from_bytes(gv.det(f"ecc-{label}", 32), "big") % (er.N - 1) + 1


def _key(kid: str, tenant: str) -> dict:
    d = scalar(kid)
    return {"id": kid, "tenant": tenant, "d": d, "pub": er.public_bytes(d)}


RELAY_KEYS = [_key(k, t) for k, t in [
    ("relay-acme-2026-12", "acme"), ("relay-acme-2026-06", "acme"), ("relay-globex", "globex-corp")]]
SIGNERS = [_key(k, t) for k, t in [
    ("acme-backend-1", "acme"), ("acme-backend-2", "acme"), ("globex-backend", "globex-corp")]]
RELAY = {k["id"]: k for k in RELAY_KEYS}
SIGNER = {k["id"]: k for k in SIGNERS}
#: Keys that no relay-side file lists: a stranger's signing key, a relay key of another deployment.
STRANGER = _key("stranger", "acme")
ELSEWHERE = _key("relay-elsewhere", "acme")
#: One relay-side file per tenant, as verify and invalid cases are evaluated (the first relay key current).
RING = {t: ([k for k in RELAY_KEYS if k["tenant"] == t], [k for k in SIGNERS if k["tenant"] == t])
        for t in ("acme", "globex-corp")}


def d_b64(k: dict) -> str:
    return er.b64u(k["d"].to_bytes(32, "big"))


def keys_doc() -> dict:
    return {
        "relay_keys": [{"key_id": k["id"], "tenant": k["tenant"], "private_key": d_b64(k),
                        "public_key": er.b64u(k["pub"])} for k in RELAY_KEYS],
        "signers": [{"signer_id": k["id"], "tenant": k["tenant"], "signing_key": d_b64(k),
                     "public_key": er.b64u(k["pub"])} for k in SIGNERS],
    }


# ---- minting -----------------------------------------------------------------------------------------------

_ikm_counter = iter(range(10_000))


def fresh_ikm() -> bytes:
    return gv.det(f"ecc-ikm-{next(_ikm_counter)}", 32)


def mint(rkid: str, skid: str, claims: bytes, *, signer: dict | None = None, relay: dict | None = None,
         sig: bytes | None = None, signed_header: bytes | None = None, hdr: bytes | None = None,
         **seal_kw) -> str:
    """Section 10.3; every keyword replaces one ingredient, to build a token with exactly one defect."""
    hdr = hdr if hdr is not None else er.header(rkid, skid)
    if sig is None:
        key = signer or SIGNER[skid]
        sig, _ = er.sign_rfc6979(key["d"], (signed_header if signed_header is not None else hdr) + claims)
    pk_r = (relay or RELAY.get(rkid) or ELSEWHERE)["pub"]
    return er.seal(hdr, sig + claims, pk_r, fresh_ikm(), **seal_kw)


def generate_cases() -> list[dict]:
    base = gv.base_claims
    wanted = [
        ("minimal openai token", "relay-acme-2026-12", "acme-backend-1", base(100)),
        ("every optional limit, second signer of the tenant", "relay-acme-2026-12", "acme-backend-2", base(
            101, url="https://llm-proxy.example.com/v1", max=5, ext={"rep_m": "gpt-4o-mini"},
            rate={"n": 10, "s": 60}, conc=2, models=["gpt-4o-mini", "gpt-4o"],
            paths=["/chat/completions", "/embeddings"], origins=["https://app.example.com"],
            ips=["203.0.113.0/24", "2001:db8::/32"], mtok=512, mtok_mode="reject", uid="user-42")),
        ("sealed to the tenant's previous relay key", "relay-acme-2026-06", "acme-backend-1",
         base(102, prv="anthropic", ext={"rep_m": "claude-sonnet-4-5"})),
        ("other tenant", "relay-globex", "globex-backend", base(103, tid="globex-corp", prv="gemini",
                                                                  exp=NOW + 60)),
        ("server-side key reference and spend limits", "relay-acme-2026-12", "acme-backend-1", base(
            104, key=None, kref="openai-main", uid="u7", bud={"tok": 200_000, "cost": 1_000_000},
            uq=[{"w": "day", "calls": 50}, {"w": "all", "cost": 20_000_000}])),
        ("escaping and non-ASCII in strings", "relay-acme-2026-12", "acme-backend-2", base(
            105, uid='u"\\/ 42', ext={"rep_m": "qwen-max-é漢字😀"}, prv="dashscope")),
        ("one-year token, 2^53-1 calls", "relay-acme-2026-12", "acme-backend-1",
         base(106, max=2**53 - 1, exp=NOW + gv.ONE_YEAR)),
    ]
    # One case whose RFC 6979 signature has a high S, so a minter's normalisation to n - s is pinned too.
    for i in range(107, 400):
        c = base(i)
        if er.sign_rfc6979(SIGNER["acme-backend-1"]["d"],
                           er.header("relay-acme-2026-12", "acme-backend-1") + gv.canonical(c).encode())[1]:
            wanted.append(("RFC 6979 gives a high S here: the minter replaces s by n - s",
                           "relay-acme-2026-12", "acme-backend-1", c))
            break
    out = []
    for desc, rkid, skid, claims in wanted:
        cj = gv.canonical(claims).encode()
        hdr = er.header(rkid, skid)
        sig, high = er.sign_rfc6979(SIGNER[skid]["d"], hdr + cj)
        assert high or not desc.startswith("RFC 6979 gives a high S"), desc
        ikm = fresh_ikm()
        enc, ct, _ = er.seal_base(RELAY[rkid]["pub"], ikm, hdr, b"", sig + cj)
        token = "rt1." + er.b64u(hdr + enc + ct)
        assert er.reference_verify(token, RING) == ("ok", claims), desc
        assert len(token) == 4 + -(-4 * (2 + 1 + len(rkid) + 1 + len(skid) + 65 + 64 + len(cj) + 16) // 3)
        out.append({"desc": desc, "rkid": rkid, "skid": skid, "ikm_e": ikm.hex(), "now": claims["iat"],
                    "claims": claims, "claims_json": cj.decode(), "header": hdr.hex(), "sig": sig.hex(),
                    "enc": enc.hex(), "token": token})
    return out


def verify_cases(gen: list[dict]) -> list[dict]:
    out = []
    for g in gen:
        c = g["claims"]
        cap = max(gv.DEFAULT_MAX_LIFETIME, c["exp"] - c["iat"])
        for desc, now, result in [("valid at issue time", c["iat"], "ok"),
                                  ("valid one second before expiry", c["exp"] - 1, "ok"),
                                  ("expired at exp", c["exp"], "expired")]:
            case = {"desc": f"{g['desc']}: {desc}", "token": g["token"], "now": now, "max_lifetime": cap,
                    "result": result}
            if result == "ok":
                case["claims"] = c
            out.append(case)
    first = gen[0]
    out.append({"desc": "issued in the future beyond any leeway", "token": first["token"],
                "now": first["claims"]["iat"] - 3600, "max_lifetime": gv.DEFAULT_MAX_LIFETIME,
                "result": "not_yet_valid"})
    long_lived = next(g for g in gen if g["claims"]["exp"] - g["claims"]["iat"] == gv.ONE_YEAR)
    out.append({"desc": "365-day token under the default 30-day max_lifetime", "token": long_lived["token"],
                "now": long_lived["claims"]["iat"], "max_lifetime": gv.DEFAULT_MAX_LIFETIME,
                "result": "lifetime_too_long"})
    # A signer may draw its nonce at random (section 10.1): any low-S signature verifies.
    c = gv.base_claims(120)
    cj = gv.canonical(c).encode()
    hdr = er.header("relay-acme-2026-12", "acme-backend-1")
    k = scalar("random-nonce")
    sig = er.sign_with_k(SIGNER["acme-backend-1"]["d"], hdr + cj, k)
    assert sig != er.sign_rfc6979(SIGNER["acme-backend-1"]["d"], hdr + cj)[0]
    out.append({"desc": "signature with a random (not RFC 6979) nonce", "now": NOW,
                "max_lifetime": gv.DEFAULT_MAX_LIFETIME, "result": "ok", "claims": c,
                "token": mint("relay-acme-2026-12", "acme-backend-1", cj, sig=sig)})
    c = gv.base_claims(121)
    reordered = json.dumps(dict(reversed(list(c.items()))), separators=(",", ":")).encode()
    out.append({"desc": "claims members in non-canonical order are accepted", "now": NOW,
                "max_lifetime": gv.DEFAULT_MAX_LIFETIME, "result": "ok", "claims": c,
                "token": mint("relay-acme-2026-12", "acme-backend-2", reordered)})
    for case in out:
        verdict, claims = er.reference_verify(case["token"], RING)
        assert verdict == "ok" and claims == ("claims" in case and case["claims"] or claims), case["desc"]
    return out


# ---- invalid tokens ----------------------------------------------------------------------------------------


def _flip(data: bytes, idx: int, bit: int = 0x01) -> bytes:
    b = bytearray(data)
    b[idx] ^= bit
    return bytes(b)


def _sqrt(v: int) -> int | None:
    r = pow(v, (er.P + 1) // 4, er.P)  # P = 3 mod 4
    return r if r * r % er.P == v % er.P else None


def unreduced_point() -> tuple[bytes, tuple[int, int]]:
    """A point (x, y) on the curve with x small, spelled with X = x + p: a parser that reduces coordinates
    modulo p reads a valid point, section 10.4 step 4 refuses X >= p."""
    for x in range(1, 1000):
        y = _sqrt((x**3 - 3 * x + er.B) % er.P)
        if y is not None:
            assert er.on_curve((x, y)) and x + er.P < 2**256
            return b"\x04" + (x + er.P).to_bytes(32, "big") + y.to_bytes(32, "big"), (x, y)
    raise AssertionError("no small x")


def invalid_cases() -> list[dict]:
    rk, sk = "relay-acme-2026-12", "acme-backend-1"
    relay = RELAY[rk]
    c = gv.base_claims(130)
    cj = gv.canonical(c).encode()
    hdr = er.header(rk, sk)
    good = mint(rk, sk, cj)
    b = er.unb64u(good[4:])
    hl = len(hdr)
    sig, _ = er.sign_rfc6979(SIGNER[sk]["d"], hdr + cj)
    r_int, s_int = int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big")
    i32 = lambda v: v.to_bytes(32, "big")  # noqa: E731
    enc_pt = lambda e: (int.from_bytes(e[1:33], "big"), int.from_bytes(e[33:], "big"))  # noqa: E731
    sk_e = er.derive_key_pair(fresh_ikm())[0]
    e_pt = er.mul(sk_e, er.G)
    off_curve = (e_pt[0], (e_pt[1] + 1) % er.P)
    assert not er.on_curve(off_curve)
    compressed = bytes([2 + (e_pt[1] & 1)]) + i32(e_pt[0])
    unreduced, small_pt = unreduced_point()
    text = good[4:]
    noncanon = next("rt1." + t[:-1] + er.ALPHABET[er.ALPHABET.index(t[-1]) + 1]
                    for t in (mint(rk, sk, cj[:-1] + b" " * i + b"}")[4:] for i in range(4))
                    if len(t) % 4 in (2, 3))
    cases = [
        ("1", "empty string", ""),
        ("2", "prefix only (an empty blob)", "rt1."),
        ("1", "upper-case prefix", "RT1." + text),
        ("1", "base64 padding is not allowed", good + "=" * (-len(text) % 4 or 4)),
        ("1", "character outside the alphabet", good[:30] + "*" + good[31:]),
        ("1", "non-canonical base64 (unused bits set)", noncanon),
        ("1", "over-long token text", "rt1." + "A" * 4100),
        ("2", "version byte 2, signed and sealed with it", mint(rk, sk, cj, hdr=er.header(rk, sk, version=2))),
        ("2", "mode byte 0x01 on an ecc blob", "rt1." + er.b64u(b[:1] + b"\x01" + b[2:])),
        ("2", "mode byte 0x03, signed and sealed with it", mint(rk, sk, cj, hdr=er.header(rk, sk, mode=3))),
        ("2", "rkid_len zero", "rt1." + er.b64u(bytes([1, 2, 0]) + b[3 + len(rk):])),
        ("2", "skid_len zero", "rt1." + er.b64u(hdr[:3 + len(rk)] + b"\x00" + b[hl:])),
        ("2", "rkid of 33 bytes, signed and sealed with it",
         mint("r" * 33, sk, cj, relay=relay, hdr=er.header("r" * 33, sk))),
        ("2", "skid_len larger than the blob", "rt1." + er.b64u(hdr[:3 + len(rk)] + b"\xff" + b[hl:])),
        ("2", "truncated inside enc", "rt1." + er.b64u(b[:hl + 40])),
        ("2", "ciphertext shorter than a signature and a tag", "rt1." + er.b64u(b[:hl + 65 + 64 + 15])),
        ("3", "unknown rkid (sealed to a relay key no file lists)",
         mint("relay-elsewhere", sk, cj, relay=ELSEWHERE)),
        ("3", "unknown skid (signed by a key no file lists)", mint(rk, "stranger", cj, signer=STRANGER)),
        ("3", "signer of another tenant (globex's signer, acme's relay key)",
         mint(rk, "globex-backend", cj)),
        ("3", "relay key of another tenant (globex's relay key, acme's signer)",
         mint("relay-globex", sk, cj, signer=SIGNER[sk])),
        ("3", "rkid in another case", mint(rk.upper(), sk, cj, relay=relay, hdr=er.header(rk.upper(), sk))),
        ("4", "enc not on the curve (the DH a lenient verifier would compute, sealed)",
         er.seal_to_point(hdr, sig + cj, relay["d"], relay["pub"], er.point_bytes(off_curve), off_curve)),
        ("4", "enc with X = x + p (a valid point with an unreduced coordinate, sealed)",
         er.seal_to_point(hdr, sig + cj, relay["d"], relay["pub"], unreduced, small_pt)),
        ("4", "enc with the hybrid prefix 0x06/0x07 (a valid point otherwise, sealed)",
         er.seal_to_point(hdr, sig + cj, relay["d"], relay["pub"], bytes([6 + (e_pt[1] & 1)]) +
                          er.point_bytes(e_pt)[1:], e_pt)),
        ("4", "enc compressed (33 bytes, sealed with the compressed kem_context)",
         er.seal_to_point(hdr, sig + cj, relay["d"], relay["pub"], compressed, e_pt,
                          kem_context=compressed + relay["pub"])),
        ("4", "enc is the point at infinity spelled 0x00 and 64 zero bytes",
         "rt1." + er.b64u(hdr + b"\x00" * 65 + b[hl + 65:])),
        ("4", "enc is 0x04 and 64 zero bytes ((0, 0) is not on the curve)",
         "rt1." + er.b64u(hdr + b"\x04" + b"\x00" * 64 + b[hl + 65:])),
        ("4", "enc altered (last byte of Y)", "rt1." + er.b64u(_flip(b, hl + 64))),
        ("4", "header altered to name the tenant's other signer (HPKE info no longer matches)",
         "rt1." + er.b64u(er.header(rk, "acme-backend-2") + b[hl:])),
        ("4", "ciphertext altered", "rt1." + er.b64u(_flip(b, hl + 65 + 10))),
        ("4", "tag altered", "rt1." + er.b64u(_flip(b, len(b) - 1))),
        ("4", "right rkid, sealed to another relay key", mint(rk, sk, cj, relay=ELSEWHERE)),
        ("4", "sealed with AES-128-GCM (aead_id 1) instead of AES-256-GCM", mint(rk, sk, cj, aead_id=1)),
        ("4", "sealed with a non-empty aad", mint(rk, sk, cj, aad=b"relayapi")),
        ("4", "sealed with an empty info instead of the header", mint(rk, sk, cj, info=b"")),
        ("4", "sealed with sequence number 1 (nonce base_nonce xor 1)", mint(rk, sk, cj, seq=1)),
        ("4", "kem_context in the wrong order (pkR || enc)",
         er.seal_to_point(hdr, sig + cj, relay["d"], relay["pub"], er.point_bytes(e_pt), e_pt,
                          kem_context=relay["pub"] + er.point_bytes(e_pt))),
        ("5", "wrong signer: skid names a listed signer, signed by a stranger's key",
         mint(rk, sk, cj, signer=STRANGER)),
        ("5", "signature over the claims only, without the header", mint(rk, sk, cj, signed_header=b"")),
        ("5", "signature over other claims", mint(rk, sk, cj, sig=er.sign_rfc6979(
            SIGNER[sk]["d"], hdr + gv.canonical(gv.base_claims(131)).encode())[0])),
        ("5", "signature made for another relay key (token moved between relay keys)",
         mint(rk, sk, cj, signed_header=er.header("relay-acme-2026-06", sk))),
        ("5", "high S (n - s: the same signature in its other spelling)",
         mint(rk, sk, cj, sig=sig[:32] + i32(er.N - s_int))),
        ("5", "r = 0", mint(rk, sk, cj, sig=i32(0) + sig[32:])),
        ("5", "s = 0", mint(rk, sk, cj, sig=sig[:32] + i32(0))),
        ("5", "r = n", mint(rk, sk, cj, sig=i32(er.N) + sig[32:])),
        ("5", "r = n + 1", mint(rk, sk, cj, sig=i32(er.N + 1) + sig[32:])),
        ("5", "r and s swapped", mint(rk, sk, cj, sig=sig[32:] + sig[:32])),
        ("5", "signature in DER form instead of r || s", mint(rk, sk, cj, sig=encode_dss_signature(r_int, s_int))),
        ("2", "a sealed plaintext of 63 bytes (shorter than a signature)", er.seal(hdr, sig[:63], relay["pub"], fresh_ikm())),
        ("6", "claims empty (plaintext is the signature alone)", mint(rk, sk, b"")),
        ("6", "claims are not JSON", mint(rk, sk, b"not json")),
        ("6", "claims of another tenant", mint(rk, sk, gv.canonical({**c, "tid": "globex-corp"}).encode())),
        ("6", "duplicate claim member", mint(rk, sk, cj[:-1] + b',"max":1000}')),
        ("6", "claims are not UTF-8", mint(rk, sk, b'{"jti":"\xff"}')),
    ]
    out = []
    for step, desc, token in cases:
        got = er.reference_verify(token, RING)[0]
        assert got == step, (desc, got, step)
        out.append({"desc": desc, "fails_at": f"10.4.{step}", "token": token, "now": NOW})
    return out
