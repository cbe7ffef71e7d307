"""The ecc method's cryptography for the vector generator (docs/token-format.md section 10).

A second implementation of section 10, independent of the SDKs and the relay, on pyca/cryptography's
primitives (ECDH by our own arithmetic cross-checked with cryptography's keys, ECDSA, HMAC, AES-GCM) plus a
little P-256 arithmetic of its own for what a library refuses to build (points off the curve, signatures
with a chosen nonce). Its HPKE seal is checked against the RFC 9180 vectors in hpke-rfc9180.json, and its
reference verifier opens tokens with cryptography's own HPKE (cryptography.hazmat.primitives.hpke,
cryptography >= 47) and checks signatures with cryptography's ECDSA, so a sealing mistake cannot hide in
both directions at once. The cases themselves are in ecc_vectors.py.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import pathlib

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hpke as c_hpke
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat


HERE = pathlib.Path(__file__).resolve().parent

# ---- P-256 (FIPS 186-5 / SEC 2) ---------------------------------------------------------------------------

P = 0xFFFFFFFF00000001000000000000000000000000FFFFFFFFFFFFFFFFFFFFFFFF
N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
B = 0x5AC635D8AA3A93E7B3EBBD55769886BC651D06B0CC53B0F63BCE3C3E27D2604B
G = (
    0x6B17D1F2E12C4247F8BCE6E563A440F277037D812DEB33A0F4A13945D898C296,
    0x4FE342E2FE1A7F9B8EE7EB4A7C0F9E162BCE33576B315ECECBB6406837BF51F5,
)


def on_curve(pt: tuple[int, int]) -> bool:
    x, y = pt
    return 0 <= x < P and 0 <= y < P and (y * y - (x * x * x - 3 * x + B)) % P == 0


def _add(a, b):
    """Affine addition on y^2 = x^3 - 3x + b; None is the point at infinity. The formulas never use `b`,
    which is what lets the generator multiply points that are not on the curve (invalid-curve cases)."""
    if a is None:
        return b
    if b is None:
        return a
    (x1, y1), (x2, y2) = a, b
    if x1 % P == x2 % P:
        if (y1 + y2) % P == 0:
            return None
        lam = (3 * x1 * x1 - 3) * pow(2 * y1, -1, P) % P
    else:
        lam = (y2 - y1) * pow(x2 - x1, -1, P) % P
    x3 = (lam * lam - x1 - x2) % P
    return (x3, (lam * (x1 - x3) - y1) % P)


def mul(k: int, pt):
    out = None
    while k:
        if k & 1:
            out = _add(out, pt)
        pt = _add(pt, pt)
        k >>= 1
    return out


def point_bytes(pt: tuple[int, int]) -> bytes:
    return b"\x04" + pt[0].to_bytes(32, "big") + pt[1].to_bytes(32, "big")


def public_bytes(d: int) -> bytes:
    """SerializePublicKey(d * G), computed by cryptography (and checked against our own arithmetic)."""
    key = ec.derive_private_key(d, ec.SECP256R1())
    out = key.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    assert out == point_bytes(mul(d, G))
    return out

# ---- HPKE, RFC 9180 base mode on primitives ---------------------------------------------------------------

KEM_ID, KDF_ID = 0x0010, 0x0001
AEAD_KEY_LEN = {1: 16, 2: 32}


def _extract(salt: bytes, ikm: bytes) -> bytes:
    return hmac.new(salt or b"\x00" * 32, ikm, hashlib.sha256).digest()


def _expand(prk: bytes, info: bytes, length: int) -> bytes:
    out, block, i = b"", b"", 1
    while len(out) < length:
        block = hmac.new(prk, block + info + bytes([i]), hashlib.sha256).digest()
        out += block
        i += 1
    return out[:length]


def _labeled_extract(suite: bytes, salt: bytes, label: bytes, ikm: bytes) -> bytes:
    return _extract(salt, b"HPKE-v1" + suite + label + ikm)


def _labeled_expand(suite: bytes, prk: bytes, label: bytes, info: bytes, length: int) -> bytes:
    return _expand(prk, length.to_bytes(2, "big") + b"HPKE-v1" + suite + label + info, length)


KEM_SUITE = b"KEM" + KEM_ID.to_bytes(2, "big")


def hpke_suite(aead_id: int) -> bytes:
    return b"HPKE" + KEM_ID.to_bytes(2, "big") + KDF_ID.to_bytes(2, "big") + aead_id.to_bytes(2, "big")


def derive_key_pair(ikm: bytes) -> tuple[int, bytes]:
    """RFC 9180 section 7.1.3 for P-256: the candidate loop with bitmask 0xff."""
    prk = _labeled_extract(KEM_SUITE, b"", b"dkp_prk", ikm)
    for counter in range(256):
        sk = int.from_bytes(_labeled_expand(KEM_SUITE, prk, b"candidate", bytes([counter]), 32), "big")
        if 0 < sk < N:
            return sk, public_bytes(sk)
    raise AssertionError("DeriveKeyPair failed")


def shared_secret(dh: bytes, kem_context: bytes) -> bytes:
    prk = _labeled_extract(KEM_SUITE, b"", b"eae_prk", dh)
    return _labeled_expand(KEM_SUITE, prk, b"shared_secret", kem_context, 32)


def key_schedule(ss: bytes, info: bytes, aead_id: int) -> dict[str, bytes]:
    suite = hpke_suite(aead_id)
    ctx = b"\x00" + _labeled_extract(suite, b"", b"psk_id_hash", b"") + _labeled_extract(
        suite, b"", b"info_hash", info)
    secret = _labeled_extract(suite, ss, b"secret", b"")
    return {
        "key_schedule_context": ctx,
        "secret": secret,
        "key": _labeled_expand(suite, secret, b"key", ctx, AEAD_KEY_LEN[aead_id]),
        "base_nonce": _labeled_expand(suite, secret, b"base_nonce", ctx, 12),
    }


def seal_base(pk_r: bytes, ikm_e: bytes, info: bytes, aad: bytes, pt: bytes, aead_id: int = 2,
              seq: int = 0) -> tuple[bytes, bytes, dict]:
    """SealBase with the ephemeral key DeriveKeyPair(ikm_e); returns (enc, ct, intermediate values)."""
    sk_e, enc = derive_key_pair(ikm_e)
    pk_pt = (int.from_bytes(pk_r[1:33], "big"), int.from_bytes(pk_r[33:], "big"))
    dh = mul(sk_e, pk_pt)[0].to_bytes(32, "big")
    ss = shared_secret(dh, enc + pk_r)
    ks = key_schedule(ss, info, aead_id)
    nonce = (int.from_bytes(ks["base_nonce"], "big") ^ seq).to_bytes(12, "big")
    ct = AESGCM(ks["key"]).encrypt(nonce, pt, aad)
    return enc, ct, {"skEm": sk_e.to_bytes(32, "big"), "shared_secret": ss, **ks}


def check_rfc9180() -> int:
    """Our HPKE against every value of hpke-rfc9180.json; cryptography's HPKE opens each AES-256 case."""
    doc = json.loads((HERE / "hpke-rfc9180.json").read_text(encoding="utf-8"))
    for v in doc["vectors"]:
        h = bytes.fromhex
        assert (v["mode"], v["kem_id"], v["kdf_id"]) == (0, KEM_ID, KDF_ID)
        sk_r, pk_r = derive_key_pair(h(v["ikmR"]))
        assert sk_r.to_bytes(32, "big") == h(v["skRm"]) and pk_r == h(v["pkRm"]), v["name"]
        for e in v["encryptions"]:
            enc, ct, mid = seal_base(pk_r, h(v["ikmE"]), h(v["info"]), h(e["aad"]), h(e["pt"]),
                                     v["aead_id"], e["sequence_number"])
            assert enc == h(v["enc"]) == h(v["pkEm"]) and mid["skEm"] == h(v["skEm"]), v["name"]
            for name in ("shared_secret", "key_schedule_context", "secret", "key", "base_nonce"):
                assert mid[name] == h(v[name]), (v["name"], name)
            assert ct == h(e["ct"]), (v["name"], e["sequence_number"])
        if v["aead_id"] == 2:
            # cryptography's single-shot API opens sequence number 0 only.
            e = v["encryptions"][0]
            assert h(e["aad"]) != b""  # the vectors use an aad; our tokens do not, so seal one without
            enc, ct, _ = seal_base(pk_r, h(v["ikmE"]), h(v["info"]), b"", h(e["pt"]))
            assert cryptography_open(sk_r, enc + ct, h(v["info"])) == h(e["pt"])
    return len(doc["vectors"])


def cryptography_open(sk_r: int, enc_ct: bytes, info: bytes) -> bytes:
    suite = c_hpke.Suite(c_hpke.KEM.P256, c_hpke.KDF.HKDF_SHA256, c_hpke.AEAD.AES_256_GCM)
    return suite.decrypt(enc_ct, ec.derive_private_key(sk_r, ec.SECP256R1()), info=info)


# ---- ECDSA P-256 SHA-256, fixed r || s, low S -------------------------------------------------------------

HALF_N = (N - 1) // 2


def sign_rfc6979(d: int, msg: bytes) -> tuple[bytes, bool]:
    """(low-S signature, whether RFC 6979 gave a high S that was replaced by n - s)."""
    key = ec.derive_private_key(d, ec.SECP256R1())
    r, s = decode_dss_signature(key.sign(msg, ec.ECDSA(hashes.SHA256(), deterministic_signing=True)))
    high = s > HALF_N
    return r.to_bytes(32, "big") + (N - s if high else s).to_bytes(32, "big"), high


def sign_with_k(d: int, msg: bytes, k: int) -> bytes:
    """A textbook ECDSA signature with a chosen nonce, low S (a minter with random nonces)."""
    e = int.from_bytes(hashlib.sha256(msg).digest(), "big")
    r = mul(k, G)[0] % N
    s = pow(k, -1, N) * (e + r * d) % N
    s = min(s, N - s)
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def sig_valid(pub: bytes, msg: bytes, sig: bytes) -> bool:
    """Section 10.4 step 5 on the signature: ranges, low S, then cryptography's ECDSA verification."""
    r, s = int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:64], "big")
    if not (1 <= r < N and 1 <= s <= HALF_N):
        return False
    key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), pub)
    try:
        key.verify(encode_dss_signature(r, s), msg, ec.ECDSA(hashes.SHA256()))
    except Exception:  # InvalidSignature
        return False
    return True


# ---- tokens ------------------------------------------------------------------------------------------------

ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64u(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def header(rkid: str, skid: str, version: int = 1, mode: int = 2) -> bytes:
    r, s = rkid.encode(), skid.encode()
    return bytes([version, mode, len(r)]) + r + bytes([len(s)]) + s


def seal(hdr: bytes, pt: bytes, pk_r: bytes, ikm_e: bytes, *, info: bytes | None = None, aad: bytes = b"",
         aead_id: int = 2, seq: int = 0) -> str:
    """Section 10.3 steps 6-7 (the knobs build the invalid cases: other info, aad, AEAD or sequence)."""
    enc, ct, _ = seal_base(pk_r, ikm_e, hdr if info is None else info, aad, pt, aead_id, seq)
    return "rt1." + b64u(hdr + enc + ct)


def seal_to_point(hdr: bytes, pt: bytes, d_r: int, pk_r: bytes, enc: bytes, point,
                  kem_context: bytes | None = None) -> str:
    """A token whose enc is any byte string. The generator holds the relay's private key, so it computes the
    DH a lenient verifier would compute from `point` (on the curve or not) and seals with it: such a token
    opens for a verifier that skips the point checks, so only the encoding of enc is wrong."""
    dh = mul(d_r, point)[0].to_bytes(32, "big")
    ss = shared_secret(dh, kem_context if kem_context is not None else enc + pk_r)
    ks = key_schedule(ss, hdr, 2)
    return "rt1." + b64u(hdr + enc + AESGCM(ks["key"]).encrypt(ks["base_nonce"], pt, b""))


def reference_verify(token: str, ring: dict) -> tuple[str, dict | None]:
    """Section 10.4 with a verdict per step: ("ok", claims) or (step, None) at the first step that refuses.

    `ring` maps each tenant to (relay keys, signers) as one relay-side file holds them, each key a dict with
    "id", "d" (relay keys) and "pub". Claims are checked only as far as the vectors need (JSON object, no
    duplicate or unknown member, tenant): section 5.1 is the symmetric vectors' business."""
    if len(token) > 4096 or not token.startswith("rt1."):
        return "1", None
    text = token[4:]
    if any(c not in ALPHABET for c in text) or len(text) % 4 == 1 or b64u(unb64u(text)) != text:
        return "1", None
    b = unb64u(text)
    if len(b) < 4 or b[0] != 1 or b[1] != 2:
        return "2", None
    rl = b[2]
    if not 1 <= rl <= 32 or len(b) < 4 + rl:
        return "2", None
    sl = b[3 + rl]
    hl = 4 + rl + sl
    if not 1 <= sl <= 32 or len(b) < hl + 65 + 64 + 16:
        return "2", None
    hdr, enc, ct = b[:hl], b[hl:hl + 65], b[hl + 65:]
    rkid, skid = hdr[3:3 + rl], hdr[4 + rl:hl]
    found = [(t, r, s) for t, (rs, ss) in ring.items() for r in rs for s in ss
             if r["id"].encode() == rkid and s["id"].encode() == skid]
    if not found:
        return "3", None
    tenant, relay, signer = found[0]
    if enc[0] != 4 or not on_curve((int.from_bytes(enc[1:33], "big"), int.from_bytes(enc[33:], "big"))):
        return "4", None
    try:
        pt = cryptography_open(relay["d"], enc + ct, hdr)
    except Exception:  # cryptography raises its own error for every failure to open
        return "4", None
    if len(pt) < 64 or not sig_valid(signer["pub"], hdr + pt[64:], pt[:64]):
        return "5", None
    try:
        claims = json.loads(pt[64:].decode("utf-8"), object_pairs_hook=_no_duplicates)
    except (ValueError, UnicodeDecodeError):
        return "6", None
    if not isinstance(claims, dict) or claims.get("tid") != tenant:
        return "6", None
    return "ok", claims


def _no_duplicates(pairs: list) -> dict:
    names = [k for k, _ in pairs]
    if len(names) != len(set(names)):
        raise ValueError("duplicate member")
    return dict(pairs)
