"""The ecc method end to end (issue 13 §1): the relay loads a relay-side ecc file, the Python SDK (and the
JS SDK, with node) mints from a backend-side one, and the official openai SDK calls through the relay.
Also: a token signed by a key the relay does not list gets the same 401 bytes as garbage, usage and revoke
go through the SDK's ECDSA-signed admin calls, and a signer retired by a reload stops working at once while
the other signer keeps working."""

from __future__ import annotations

import base64
import http.client
import json
import os
import pathlib
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from relayapi import APIError, ConfigError, RelayAPIClient

from .checks import assert_clean_upstream, only_request
from .clients import openai_client
from .harness import REAL_KEY, REPO_ROOT, MockUpstream, Relay, relay_binary

HELLO = [{"role": "user", "content": "hello"}]
#: Seconds to wait for the relay to log a reload.
RELOAD_TIMEOUT_SECS = 20.0
JS_SDK = REPO_ROOT / "sdk" / "js" / "src" / "index.js"


def _b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _new_key() -> tuple[str, str]:
    """A fresh P-256 key pair as the files spell it: (private scalar, 43 chars; SEC1 point, 87 chars)."""
    key = ec.generate_private_key(ec.SECP256R1())
    private = key.private_numbers().private_value.to_bytes(32, "big")
    public = key.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    return _b64u(private), _b64u(public)


def _reload(relay: Relay) -> None:
    """SIGHUP, then wait until the relay logs one more "keys reloaded" line."""
    before = sum(1 for line in list(relay.log) if '"keys reloaded"' in line)
    relay.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + RELOAD_TIMEOUT_SECS
    while sum(1 for line in list(relay.log) if '"keys reloaded"' in line) <= before:
        assert time.monotonic() < deadline, "no reload logged:\n" + relay.process.tail()
        time.sleep(0.05)


def _ecc_files() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """A relay-side file (one relay key, two signers) and a backend-side file for each signer, as
    docs/client-config.md ("ecc files") spells them, with fresh keys."""
    relay_private, relay_public = _new_key()
    signers = {name: _new_key() for name in ("ecc-e2e-backend-1", "ecc-e2e-backend-2")}
    server = {"scheme": "http", "host": "127.0.0.1", "port": 8080, "base_path": "/relayapi/"}
    relay_side = {
        "version": 1,
        "server": server,
        "crypto": {
            "method": "ecc-p256",
            "tenant_id": "ecc-e2e",
            "relay_key_id": "ecc-e2e-relay-1",
            "relay_private_key": relay_private,
            "signers": [{"signer_id": name, "public_key": pub} for name, (_, pub) in signers.items()],
        },
    }
    backends = [
        {
            "version": 1,
            "server": server,
            "crypto": {
                "method": "ecc-p256",
                "tenant_id": "ecc-e2e",
                "signer_id": name,
                "signing_key": private,
                "relay_key_id": "ecc-e2e-relay-1",
                "relay_public_key": relay_public,
            },
        }
        for name, (private, _) in signers.items()
    ]
    return relay_side, backends[0], backends[1]


class EccSetup:
    """A relay serving an ecc relay-side file with two signers, and a backend-side file for each."""

    def __init__(self, workdir: pathlib.Path, mock_port: int) -> None:
        relay_side, backend, backend2 = _ecc_files()
        self.relay_side = relay_side
        self.relay = Relay(workdir, mock_port, rai=relay_side)
        for doc in (backend, backend2):
            doc["server"] = {**doc["server"], "port": self.relay.port}
        self.backend, self.backend2 = backend, backend2
        self.backend_path = workdir / "backend.rai"
        self.backend_path.write_text(json.dumps(backend, indent=2), encoding="utf-8")

    def write_relay_side(self, doc: dict[str, Any]) -> None:
        """Replace the relay's file the safe way (write aside, rename over), reload (SIGHUP) and wait for
        the relay to log the reload."""
        aside = self.relay.rai_path.with_suffix(".new")
        aside.write_text(json.dumps(doc, indent=2), encoding="utf-8")
        aside.replace(self.relay.rai_path)
        _reload(self.relay)


@pytest.fixture(scope="module")
def ecc(mock: MockUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EccSetup]:
    setup = EccSetup(tmp_path_factory.mktemp("ecc-relay"), mock.port)
    try:
        yield setup
    finally:
        setup.relay.stop()


def _chat(base_url: str) -> Any:
    return openai_client(base_url).chat.completions.create(model="gpt-4o-mini", messages=HELLO)


_PER_ANSWER = {"date", "x-request-id"}


def _raw_answer(relay: Relay, token: str) -> tuple[int, list[tuple[str, str]], bytes]:
    """The relay's whole answer to a chat call with this token: status, headers, body, less the two headers
    that differ on every answer by design (Date and the request's own X-Request-Id)."""
    conn = http.client.HTTPConnection("127.0.0.1", relay.port, timeout=30)
    try:
        body = json.dumps({"model": "gpt-4o-mini", "messages": HELLO})
        conn.request("POST", f"/relayapi/{token}/chat/completions", body=body,
                     headers={"Content-Type": "application/json"})  # fmt: skip
        resp = conn.getresponse()
        headers = [(k.lower(), v) for k, v in resp.getheaders() if k.lower() not in _PER_ANSWER]
        return resp.status, headers, resp.read()
    finally:
        conn.close()


def test_python_minted_ecc_token_through_the_official_openai_sdk(ecc: EccSetup, mock: MockUpstream) -> None:
    client = RelayAPIClient(ecc.backend_path, timeout=30)
    token, claims = client.create_token_with_claims(api_key=REAL_KEY, max_calls=3)
    assert claims["tid"] == "ecc-e2e"
    reply = _chat(client.url_for_token(token))
    assert reply.choices[0].message.content
    assert_clean_upstream(only_request(mock), token, provider="openai")


def test_a_token_signed_by_an_unlisted_key_gets_the_garbage_answer(ecc: EccSetup, mock: MockUpstream) -> None:
    # A stranger who knows every public value (relay key, signer id) and signs with a key of their own.
    stranger = json.loads(json.dumps(ecc.backend))
    stranger["crypto"]["signing_key"] = _new_key()[0]
    forged = RelayAPIClient(stranger).create_token(api_key=REAL_KEY)
    # The same token sealed to a relay key nobody loaded, and plain garbage.
    elsewhere = json.loads(json.dumps(ecc.backend))
    elsewhere["crypto"]["relay_public_key"] = _new_key()[1]
    sealed_elsewhere = RelayAPIClient(elsewhere).create_token(api_key=REAL_KEY)
    answers = [_raw_answer(ecc.relay, t) for t in (forged, sealed_elsewhere, "rt1." + "A" * 200)]
    status, _, body = answers[0]
    assert status == 401
    assert json.loads(body)["error"]["code"] == "invalid_token"
    # No oracle: status, headers and body are the same bytes for all of them.
    assert answers[1] == answers[0]
    assert answers[2] == answers[0]
    assert mock.requests() == []


def test_usage_and_revoke_through_the_ecdsa_signed_admin_calls(ecc: EccSetup, mock: MockUpstream) -> None:
    client = RelayAPIClient(ecc.backend_path, timeout=30)
    token, claims = client.create_token_with_claims(api_key=REAL_KEY, max_calls=5)
    _chat(client.url_for_token(token))
    usage = client.get_usage(claims["jti"])
    assert usage["tenant_id"] == "ecc-e2e"
    assert usage["calls_used"] == 1
    assert usage["max_calls"] == 5
    assert client.revoke(claims["jti"])["revoked"] is True
    with pytest.raises(openai.AuthenticationError) as info:
        _chat(client.url_for_token(token))
    assert info.value.code == "token_revoked"
    assert len(mock.requests()) == 1


def test_an_admin_request_signed_by_an_unlisted_key_is_refused(ecc: EccSetup) -> None:
    stranger = json.loads(json.dumps(ecc.backend))
    stranger["crypto"]["signing_key"] = _new_key()[0]
    with pytest.raises(APIError) as info:
        RelayAPIClient(stranger, timeout=30).get_usage("0" * 32)
    assert info.value.status == 401
    assert info.value.error_code == "invalid_admin_signature"


def test_a_signer_retired_by_a_reload_stops_at_once(ecc: EccSetup, mock: MockUpstream) -> None:
    first = RelayAPIClient(ecc.backend_path, timeout=30)
    second = RelayAPIClient(ecc.backend2, timeout=30)
    # Minted before the reload: the retirement must also end tokens the relay has already cached.
    cached = second.create_token(api_key=REAL_KEY, max_calls=10)
    _chat(second.url_for_token(cached))
    retired = json.loads(json.dumps(ecc.relay_side))
    retired["crypto"]["signers"][1]["not_after"] = int(time.time()) - 1
    ecc.write_relay_side(retired)
    garbage = _raw_answer(ecc.relay, "rt1." + "A" * 200)
    assert _raw_answer(ecc.relay, cached) == garbage
    assert _raw_answer(ecc.relay, second.create_token(api_key=REAL_KEY)) == garbage
    # The other signer of the same file is untouched.
    _chat(first.generate_url(api_key=REAL_KEY))
    assert len(mock.requests()) == 2


def _node_mint(node: str, backend_path: pathlib.Path) -> str:
    script = (
        f"import {{ RelayAPIClient }} from {json.dumps(JS_SDK.as_uri())};\n"
        f"const client = new RelayAPIClient({json.dumps(str(backend_path))});\n"
        "const options = { apiKey: process.env.E2E_KEY, maxCalls: 2 };\n"
        "const { token, claims } = client.createTokenWithClaims(options);\n"
        "process.stdout.write(JSON.stringify({ token, url: client.urlForToken(token), jti: claims.jti }));\n"
    )
    result = subprocess.run(
        [node, "--input-type=module", "-e", script],
        capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "E2E_KEY": REAL_KEY},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout


def _run_gen_rai(*args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(relay_binary()), "gen-rai", "--method", "ecc", "--host", "127.0.0.1", "--tenant", "gen-e2e",
         *args],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result


def test_the_documented_gen_rai_flow(mock: MockUpstream, tmp_path: pathlib.Path) -> None:
    """docs/client-config.md "Who holds what": the operator writes both files; a tenant that keeps its key
    to itself writes only its backend-side file and hands over the printed signers entry."""
    relay_path, backend_path = tmp_path / "relay.rai", tmp_path / "backend.rai"
    _run_gen_rai("--out", str(relay_path), "--backend-out", str(backend_path))
    for path in (relay_path, backend_path):
        assert path.stat().st_mode & 0o777 == 0o600, path
    relay_side = json.loads(relay_path.read_text(encoding="utf-8"))
    backend = json.loads(backend_path.read_text(encoding="utf-8"))
    # Each side holds only its half.
    assert "signing_key" not in relay_side["crypto"]
    assert "relay_private_key" not in backend["crypto"]
    assert backend["crypto"]["signing_key"] not in relay_path.read_text(encoding="utf-8")
    # The tenant's own backend: given the relay key's id and public half, gen-rai writes the backend-side
    # file and prints the entry for the operator (no secret in it).
    own_path = tmp_path / "own-backend.rai"
    printed = _run_gen_rai(
        "--relay-key-id", backend["crypto"]["relay_key_id"],
        "--relay-public-key", backend["crypto"]["relay_public_key"],
        "--signer-id", "tenant-own-1", "--backend-out", str(own_path),
    ).stdout  # fmt: skip
    entry = json.loads(printed)
    assert set(entry) == {"signer_id", "public_key"}
    assert entry["signer_id"] == "tenant-own-1"
    assert json.loads(own_path.read_text(encoding="utf-8"))["crypto"]["signing_key"] not in printed

    workdir = tmp_path / "relay"
    workdir.mkdir()
    relay = Relay(workdir, mock.port, rai=relay_side)
    try:
        # The SDK loads the generated backend-side file as written; the relay's URL comes from relay.base.
        operator_made = RelayAPIClient(backend_path, timeout=30)
        tenant_made = RelayAPIClient(own_path, timeout=30)
        _chat(f"{relay.base}/relayapi/{operator_made.create_token(api_key=REAL_KEY)}")
        before_entry = tenant_made.create_token(api_key=REAL_KEY)
        with pytest.raises(openai.AuthenticationError) as info:
            _chat(f"{relay.base}/relayapi/{before_entry}")
        assert info.value.code == "invalid_token"
        relay_side["crypto"]["signers"].append(entry)
        aside = relay.rai_path.with_suffix(".new")
        aside.write_text(json.dumps(relay_side, indent=2), encoding="utf-8")
        aside.replace(relay.rai_path)
        _reload(relay)
        _chat(f"{relay.base}/relayapi/{tenant_made.create_token(api_key=REAL_KEY)}")
        assert len(mock.requests()) == 2
        # The SDK refuses the relay-side file, saying which file to use.
        with pytest.raises(ConfigError) as refused:
            RelayAPIClient(relay_path)
        assert str(relay_path) in str(refused.value)
        assert "backend-side" in str(refused.value)
    finally:
        relay.stop()


NODE = shutil.which("node")


@pytest.mark.skipif(NODE is None, reason="node is not installed")
def test_js_minted_ecc_token_through_the_official_openai_sdk(ecc: EccSetup, mock: MockUpstream) -> None:
    assert NODE is not None
    out = json.loads(_node_mint(NODE, ecc.backend_path))
    assert out["token"].startswith("rt1.")
    reply = _chat(out["url"])
    assert reply.choices[0].message.content
    assert_clean_upstream(only_request(mock), out["token"], provider="openai")
    # The Python SDK's admin calls see the JS-minted token by its id.
    usage = RelayAPIClient(ecc.backend_path, timeout=30).get_usage(out["jti"])
    assert usage["calls_used"] == 1
    assert usage["max_calls"] == 2
