"""The `rai` cases of tests/vectors/ecc.json: one or more per rule E1-E7 of docs/client-config.md ("ecc files").

Each case says which loader reads the text (`loader`: "relay" for the relay, "sdk" for the SDKs, which load
the backend-side file) and whether it must `load` or `refuse` it. Rules 1, 3-5 and 8 of the same document
apply to ecc files too; a few cases show it. Every verdict is confirmed by `reference_load`, a small loader
written from the rules, before it is written. Called by generate_vectors.py.
"""

from __future__ import annotations

import copy
import json
import re

import ecc_reference as er
import ecc_vectors as ev

RELAY_DOC = {
    "version": 1,
    "server": {"scheme": "https", "host": "relay.example.com", "port": 443},
    "crypto": {
        "method": "ecc-p256",
        "tenant_id": "acme",
        "relay_key_id": "relay-acme-2026-12",
        "relay_private_key": ev.d_b64(ev.RELAY["relay-acme-2026-12"]),
        "previous_relay_keys": [{"key_id": "relay-acme-2026-06",
                                 "private_key": ev.d_b64(ev.RELAY["relay-acme-2026-06"]),
                                 "not_after": 1798000000}],
        "signers": [{"signer_id": s, "public_key": er.b64u(ev.SIGNER[s]["pub"])}
                    for s in ("acme-backend-1", "acme-backend-2")],
    },
}
BACKEND_DOC = {
    "version": 1,
    "server": {"scheme": "https", "host": "relay.example.com", "port": 443},
    "crypto": {
        "method": "ecc-p256",
        "tenant_id": "acme",
        "signer_id": "acme-backend-1",
        "signing_key": ev.d_b64(ev.SIGNER["acme-backend-1"]),
        "relay_key_id": "relay-acme-2026-12",
        "relay_public_key": er.b64u(ev.RELAY["relay-acme-2026-12"]["pub"]),
    },
}


def text(doc: dict) -> str:
    return json.dumps(doc, indent=2) + "\n"


def edit(doc: dict, path: str, value) -> str:
    """`doc` with the field at dotted `path` replaced (`...` removes it)."""
    out = copy.deepcopy(doc)
    *parents, last = path.split(".")
    node = out
    for name in parents:
        node = node[int(name)] if name.isdigit() else node[name]
    if value is ...:
        node.pop(int(last) if last.isdigit() else last)
    elif last.isdigit():
        node[int(last)] = value
    else:
        node[last] = value
    return text(out)


def R(path: str, value) -> str:
    return edit(RELAY_DOC, path, value)


def S(path: str, value) -> str:
    return edit(BACKEND_DOC, path, value)


def _pub(label: str) -> str:
    return er.b64u(er.public_bytes(ev.scalar(label)))


def bad_public_keys() -> list[tuple[str, str]]:
    """(why, base64url text) of 65-byte-looking public keys rule E4 refuses."""
    pub = ev.SIGNER["acme-backend-1"]["pub"]
    x, y = int.from_bytes(pub[1:33], "big"), int.from_bytes(pub[33:], "big")
    good = er.b64u(pub)
    std = next(k for k in (_pub(f"std-{i}") for i in range(200)) if "-" in k or "_" in k)
    unreduced, _ = ev.unreduced_point()
    last = er.ALPHABET.index(good[-1])
    assert last % 4 == 0
    return [
        ("compressed point (33 bytes)", er.b64u(bytes([2 + (y & 1)]) + pub[1:33])),
        ("point not on the curve", er.b64u(pub[:33] + ((y + 1) % er.P).to_bytes(32, "big"))),
        ("X = x + p (a valid point with an unreduced coordinate)", er.b64u(unreduced)),
        ("0x04 and 64 zero bytes", er.b64u(b"\x04" + b"\x00" * 64)),
        ("hybrid prefix 0x06/0x07", er.b64u(bytes([6 + (y & 1)]) + pub[1:])),
        ("last character with unused bits set", good[:-1] + er.ALPHABET[last + 1]),
        ("66 bytes", er.b64u(pub + b"\x00")),
        ("standard base64 alphabet", std.replace("-", "+").replace("_", "/")),
        ("padding", good + "="),
        ("swapped coordinates", er.b64u(b"\x04" + pub[33:] + pub[1:33]) if not er.on_curve((y, x)) else ""),
    ]


def bad_private_keys() -> list[tuple[str, str]]:
    key = ev.d_b64(ev.SIGNER["acme-backend-1"])
    last = er.ALPHABET.index(key[-1])
    assert last % 4 == 0
    return [
        ("scalar 0", er.b64u(b"\x00" * 32)),
        ("scalar n (the group order)", er.b64u(er.N.to_bytes(32, "big"))),
        ("scalar 2^256 - 1", er.b64u(b"\xff" * 32)),
        ("31 bytes", er.b64u(ev.SIGNER["acme-backend-1"]["d"].to_bytes(32, "big")[1:])),
        ("33 bytes", er.b64u(b"\x00" + ev.SIGNER["acme-backend-1"]["d"].to_bytes(32, "big"))),
        ("padding", key + "="),
        ("last character with unused bits set", key[:-1] + er.ALPHABET[last + 1]),
    ]


def cases() -> list[dict]:
    relay, backend = text(RELAY_DOC), text(BACKEND_DOC)
    rc, bc = RELAY_DOC["crypto"], BACKEND_DOC["crypto"]
    L, X = "load", "refuse"
    out: list[tuple[str, str, str, str, str]] = [
        # E1: a file is one side or the other, each loader takes only its own side.
        ("E1", "relay", "the documented relay-side file", L, relay),
        ("E1", "sdk", "the documented backend-side file", L, backend),
        ("E1", "relay", "relay-side file without previous_relay_keys", L, R("crypto.previous_relay_keys", ...)),
        ("E1", "relay", "a backend-side file given to the relay", X, backend),
        ("E1", "sdk", "a relay-side file given to an SDK", X, relay),
        ("E1", "relay", "both relay_private_key and signing_key", X, R("crypto.signing_key", bc["signing_key"])),
        ("E1", "sdk", "both signing_key and relay_private_key", X, S("crypto.relay_private_key",
                                                                     rc["relay_private_key"])),
        ("E1", "relay", "relay-side file without signers", X, R("crypto.signers", ...)),
        ("E1", "relay", "relay-side file without relay_key_id", X, R("crypto.relay_key_id", ...)),
        ("E1", "sdk", "backend-side file without relay_public_key", X, S("crypto.relay_public_key", ...)),
        ("E1", "sdk", "backend-side file without signer_id", X, S("crypto.signer_id", ...)),
        ("E1", "relay", "relay-side file with relay_public_key (a backend-side field)", X,
         R("crypto.relay_public_key", bc["relay_public_key"])),
        ("E1", "sdk", "backend-side file with signers (a relay-side field)", X,
         S("crypto.signers", rc["signers"])),
        ("E1", "sdk", "backend-side file with previous_relay_keys", X,
         S("crypto.previous_relay_keys", rc["previous_relay_keys"])),
        ("E1", "relay", "symmetric field key in an ecc file", X, R("crypto.key", bc["signing_key"])),
        ("E1", "sdk", "symmetric field key_id in an ecc file", X, S("crypto.key_id", "k1")),
        ("E1", "relay", "unknown method ecc-p384", X, R("crypto.method", "ecc-p384")),
        ("E1", "sdk", "ecc fields under the symmetric method", X, S("crypto.method", "aes-256-gcm-hkdf-sha256")),
        ("E1", "relay", "null previous_relay_keys is not \"none\"", X, R("crypto.previous_relay_keys", None)),
        ("E1", "relay", "unknown field in crypto", X, R("crypto.comment", "x")),
        # E2: ids.
        ("E2", "relay", "ids of 32 characters", L, edit(json.loads(R("crypto.relay_key_id", "r" * 32)),
                                                        "crypto.signers.0.signer_id", "s" * 32)),
        ("E2", "relay", "relay_key_id of 33 characters", X, R("crypto.relay_key_id", "r" * 33)),
        ("E2", "relay", "signer_id with a space", X, R("crypto.signers.0.signer_id", "acme backend")),
        ("E2", "relay", "empty signer_id", X, R("crypto.signers.0.signer_id", "")),
        ("E2", "relay", "two signers with the same id", X, R("crypto.signers.1.signer_id", "acme-backend-1")),
        ("E2", "relay", "a signer_id equal to relay_key_id", X, R("crypto.signers.0.signer_id",
                                                                  "relay-acme-2026-12")),
        ("E2", "relay", "a previous key_id equal to relay_key_id", X,
         R("crypto.previous_relay_keys.0.key_id", "relay-acme-2026-12")),
        ("E2", "relay", "a previous key_id equal to a signer_id", X,
         R("crypto.previous_relay_keys.0.key_id", "acme-backend-2")),
        ("E2", "sdk", "signer_id equal to relay_key_id", X, S("crypto.signer_id", "relay-acme-2026-12")),
        ("E2", "sdk", "relay_key_id with a slash", X, S("crypto.relay_key_id", "relay/acme")),
        ("E2", "sdk", "signer_id of 33 characters", X, S("crypto.signer_id", "s" * 33)),
        # E3: private keys.
        ("E3", "relay", "relay_private_key n - 1 (the largest scalar)", L,
         R("crypto.relay_private_key", er.b64u((er.N - 1).to_bytes(32, "big")))),
        ("E3", "sdk", "signing_key 1 (the smallest scalar)", L,
         S("crypto.signing_key", er.b64u((1).to_bytes(32, "big")))),
        *[("E3", "relay", f"relay_private_key: {why}", X, R("crypto.relay_private_key", v))
          for why, v in bad_private_keys()],
        *[("E3", "sdk", f"signing_key: {why}", X, S("crypto.signing_key", v)) for why, v in bad_private_keys()],
        ("E3", "relay", "previous private_key: scalar 0", X,
         R("crypto.previous_relay_keys.0.private_key", er.b64u(b"\x00" * 32))),
        # E4: public keys.
        *[("E4", "relay", f"signer public_key: {why}", X, R("crypto.signers.0.public_key", v))
          for why, v in bad_public_keys() if v],
        *[("E4", "sdk", f"relay_public_key: {why}", X, S("crypto.relay_public_key", v))
          for why, v in bad_public_keys()[:6] if v],
        # E5: lists.
        ("E5", "relay", "16 signers", L, R("crypto.signers", [
            {"signer_id": f"backend-{i}", "public_key": _pub(f"many-{i}")} for i in range(16)])),
        ("E5", "relay", "17 signers", X, R("crypto.signers", [
            {"signer_id": f"backend-{i}", "public_key": _pub(f"many-{i}")} for i in range(17)])),
        ("E5", "relay", "no signers (empty list)", X, R("crypto.signers", [])),
        ("E5", "relay", "signers as an object", X, R("crypto.signers", rc["signers"][0])),
        ("E5", "relay", "signer without public_key", X, R("crypto.signers.0.public_key", ...)),
        ("E5", "relay", "signer without signer_id", X, R("crypto.signers.0.signer_id", ...)),
        ("E5", "relay", "unknown field in a signer", X, R("crypto.signers.0.note", "laptop")),
        ("E5", "relay", "16 previous relay keys", L, R("crypto.previous_relay_keys", [
            {"key_id": f"old-{i}", "private_key": er.b64u(ev.scalar(f"old-{i}").to_bytes(32, "big"))}
            for i in range(16)])),
        ("E5", "relay", "17 previous relay keys", X, R("crypto.previous_relay_keys", [
            {"key_id": f"old-{i}", "private_key": er.b64u(ev.scalar(f"old-{i}").to_bytes(32, "big"))}
            for i in range(17)])),
        ("E5", "relay", "previous relay key without private_key", X,
         R("crypto.previous_relay_keys.0.private_key", ...)),
        ("E5", "relay", "previous relay key with a public_key field", X,
         R("crypto.previous_relay_keys.0.public_key", bc["relay_public_key"])),
        # E6: windows.
        ("E6", "relay", "relay key and signers with windows", L, text({**RELAY_DOC, "crypto": {
            **rc, "not_before": 1790000000, "not_after": 1800000000,
            "signers": [{**rc["signers"][0], "not_after": 1795000000},
                        {**rc["signers"][1], "not_before": 1790000000}]}})),
        ("E6", "sdk", "signing key with a window", L, text({**BACKEND_DOC, "crypto": {
            **bc, "not_before": 1790000000, "not_after": 1800000000}})),
        ("E6", "relay", "signer with not_after equal to not_before", X, R("crypto.signers.0", {
            **rc["signers"][0], "not_before": 1790000000, "not_after": 1790000000})),
        ("E6", "relay", "previous relay key with not_after before not_before", X,
         R("crypto.previous_relay_keys.0", {**rc["previous_relay_keys"][0], "not_before": 1799000000})),
        ("E6", "relay", "relay key not_after of 2^53", X, R("crypto.not_after", 2**53)),
        ("E6", "sdk", "signing key with not_after equal to not_before", X, text({**BACKEND_DOC, "crypto": {
            **bc, "not_before": 1790000000, "not_after": 1790000000}})),
        ("E6", "sdk", "not_before as a string", X, S("crypto.not_before", "1790000000")),
        ("E6", "sdk", "null not_after is not \"open\"", X, S("crypto.not_after", None)),
        ("E6", "relay", "signer not_after with a fraction", X, R("crypto.signers.0.not_after", 1790000000.5)),
        # E7: a signing key never doubles as a decryption key.
        ("E7", "relay", "a signer's public key is the relay key's public key", X,
         R("crypto.signers.0.public_key", er.b64u(ev.RELAY["relay-acme-2026-12"]["pub"]))),
        ("E7", "relay", "a signer's public key is a previous relay key's public key", X,
         R("crypto.signers.1.public_key", er.b64u(ev.RELAY["relay-acme-2026-06"]["pub"]))),
        ("E7", "sdk", "relay_public_key is the signing key's own public key", X,
         S("crypto.relay_public_key", er.b64u(ev.SIGNER["acme-backend-1"]["pub"]))),
        # Rules 1, 3-5 and 8 hold for ecc files as for symmetric ones.
        ("C1", "sdk", "byte-order mark", X, "\ufeff" + backend),
        ("C1", "relay", "duplicate field in crypto after unescaping", X, relay.replace(
            '"tenant_id": "acme",', '"tenant_id": "acme", "\\u0074enant_id": "acme",')),
        ("C3", "sdk", "host with an underscore", X, S("server.host", "relay_1.example.com")),
        ("C4", "relay", "port 0", X, R("server.port", 0)),
        ("C5", "sdk", "base_path without the trailing slash", X, S("server.base_path", "/relayapi")),
        ("C8", "relay", "tenant id with a space", X, R("crypto.tenant_id", "ac me")),
    ]
    return [{"rule": r, "loader": lo, "desc": d, "verdict": v, "rai": t} for r, lo, d, v, t in out]


# ---- a reference loader: every verdict above is checked against the rules as written ----------------------

_ID = re.compile(r"[A-Za-z0-9._-]{1,32}")
_TENANT = re.compile(r"[A-Za-z0-9._-]{1,64}")
_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_SEGMENT = re.compile(r"[A-Za-z0-9._~!$&'()*+,;=:@-]+")
MAX_WINDOW = 2**53 - 1


class Refused(Exception):
    pass


def _strict_json(text: str):
    def pairs(items):
        names = [k for k, _ in items]
        if len(names) != len(set(names)):
            raise Refused("duplicate member")
        return dict(items)

    def no_float(_):
        raise Refused("not an integer")

    if text.startswith("\ufeff") or len(text.encode()) > 65536:
        raise Refused("rule 1")
    try:
        return json.loads(text, object_pairs_hook=pairs, parse_float=no_float, parse_constant=no_float)
    except ValueError as exc:
        raise Refused("rule 1") from exc


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _exactly(obj, required: set, optional: set = frozenset()) -> dict:
    if not isinstance(obj, dict) or not required <= set(obj) <= required | optional:
        raise Refused("shape")
    return obj


def _check_server(server) -> None:
    _exactly(server, {"host", "port"}, {"scheme", "base_path"})
    if server.get("scheme", "http") not in ("http", "https"):
        raise Refused("scheme")
    host = server["host"]
    labels = host.split(".") if isinstance(host, str) else [""]
    if not all(_LABEL.fullmatch(label) for label in labels) or len(host) > 253:
        raise Refused("rule 3")
    if not _is_int(server["port"]) or not 1 <= server["port"] <= 65535:
        raise Refused("rule 4")
    bp = server.get("base_path", "/relayapi/")
    segs = bp.split("/") if isinstance(bp, str) else ["x"]
    if not isinstance(bp, str) or len(bp) > 128 or segs[0] != "" or segs[-1] != "" or any(
            not _SEGMENT.fullmatch(s) or s in (".", "..") for s in segs[1:-1]):
        raise Refused("rule 5")


def _window(entry: dict) -> None:
    for name in ("not_before", "not_after"):
        if name in entry and (not _is_int(entry[name]) or not 0 <= entry[name] <= MAX_WINDOW):
            raise Refused("rule 10")
    if "not_before" in entry and "not_after" in entry and entry["not_after"] <= entry["not_before"]:
        raise Refused("empty window")


def _private(text) -> bytes:
    raw = er.unb64u(text) if isinstance(text, str) and all(c in er.ALPHABET for c in text) else b""
    if len(raw) != 32 or er.b64u(raw) != text or not 1 <= int.from_bytes(raw, "big") < er.N:
        raise Refused("E3")
    return er.public_bytes(int.from_bytes(raw, "big"))


def _public(text) -> bytes:
    ok = isinstance(text, str) and len(text) % 4 != 1 and all(c in er.ALPHABET for c in text)
    raw = er.unb64u(text) if ok else b""
    if len(raw) != 65 or er.b64u(raw) != text or raw[0] != 4:
        raise Refused("E4")
    if not er.on_curve((int.from_bytes(raw[1:33], "big"), int.from_bytes(raw[33:], "big"))):
        raise Refused("E4")
    return raw


def reference_load(text: str, loader: str) -> None:
    """Raises Refused unless a `loader` ("relay" or "sdk") must load `text` (docs/client-config.md)."""
    doc = _exactly(_strict_json(text), {"version", "server", "crypto"})
    if doc["version"] != 1 or not _is_int(doc["version"]):
        raise Refused("version")
    _check_server(doc["server"])
    crypto = doc["crypto"]
    if not isinstance(crypto, dict) or crypto.get("method") != "ecc-p256":
        raise Refused("not an ecc file")
    relay_side = "relay_private_key" in crypto
    if relay_side == ("signing_key" in crypto) or relay_side != (loader == "relay"):
        raise Refused("E1")
    if not isinstance(crypto.get("tenant_id"), str) or not _TENANT.fullmatch(crypto["tenant_id"]):
        raise Refused("rule 8")
    _window(crypto)
    if relay_side:
        _exactly(crypto, {"method", "tenant_id", "relay_key_id", "relay_private_key", "signers"},
                 {"previous_relay_keys", "not_before", "not_after"})
        previous = crypto.get("previous_relay_keys", [])
        signers = crypto["signers"]
        if not isinstance(previous, list) or len(previous) > 16 or not isinstance(signers, list) or not (
                1 <= len(signers) <= 16):
            raise Refused("E5")
        ids = [crypto["relay_key_id"]]
        relay_pubs = [_private(crypto["relay_private_key"])]
        for p in previous:
            _exactly(p, {"key_id", "private_key"}, {"not_before", "not_after"})
            _window(p)
            ids.append(p["key_id"])
            relay_pubs.append(_private(p["private_key"]))
        for s in signers:
            _exactly(s, {"signer_id", "public_key"}, {"not_before", "not_after"})
            _window(s)
            ids.append(s["signer_id"])
            if _public(s["public_key"]) in relay_pubs:
                raise Refused("E7")
    else:
        _exactly(crypto, {"method", "tenant_id", "signer_id", "signing_key", "relay_key_id",
                          "relay_public_key"}, {"not_before", "not_after"})
        ids = [crypto["signer_id"], crypto["relay_key_id"]]
        if _private(crypto["signing_key"]) == _public(crypto["relay_public_key"]):
            raise Refused("E7")
    if not all(isinstance(i, str) and _ID.fullmatch(i) for i in ids) or len(set(ids)) != len(ids):
        raise Refused("E2")


def checked_cases() -> list[dict]:
    """cases(), each verdict confirmed by reference_load."""
    out = cases()
    for c in out:
        try:
            reference_load(c["rai"], c["loader"])
            got = "load"
        except Refused:
            got = "refuse"
        assert got == c["verdict"], (c["rule"], c["loader"], c["desc"])
    return out
