"""The release binary as a user on a VPS gets it (issue 2): one static file and a config.json, nothing else.

Each start copies only the binary (RELAYAPI_BIN, built by `bash scripts/build-static.sh`) and a config.json
into an empty directory and runs it there without arguments, the way the deploy guide does. The
upstream is named by host name (`localhost`), so a call only gets through if the static binary resolves
names without glibc's NSS modules.
"""

from __future__ import annotations

import json
import pathlib
import shutil
import signal
import socket
import stat
import subprocess
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from relayapi import RelayAPIClient

from .checks import assert_clean_upstream, only_request, wait_until_waiting
from .clients import openai_client
from .harness import (
    REAL_KEY,
    REPO_ROOT,
    SHUTDOWN_TIMEOUT_SECS,
    STARTUP_TIMEOUT_SECS,
    MockUpstream,
    RelayProcess,
    headers_of,
    relay_binary,
    relay_config,
    relay_env,
)

#: Fresh ports tried when another process takes the probed one before the relay binds it.
PORT_ATTEMPTS = 3
HELLO = [{"role": "user", "content": "hello from the vps"}]


def _free_port() -> int:
    # The generated default.rai records the configured port and a .rai cannot say "port 0", so the
    # relay needs a real port up front; another process may still take it before the relay binds.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _unpack(directory: pathlib.Path, mock_port: int, *, host: str, port: int) -> pathlib.Path:
    """`directory` holding only a copy of the binary and a config.json; returns the binary's path."""
    cfg: dict[str, Any] = relay_config(mock_port)
    cfg["server"].update({"host": host, "port": port})
    cfg["providers"]["openai"]["base_url"] = f"http://localhost:{mock_port}/v1"
    repo_config = REPO_ROOT / "config.json"
    if repo_config.is_file():
        # The store a user gets by default (a SQLite file next to config.json), statically linked too.
        cfg["store"] = json.loads(repo_config.read_text(encoding="utf-8"))["store"]
    directory.mkdir()
    binary = directory / "relayapi"
    shutil.copy2(relay_binary(), binary)
    (directory / "config.json").write_text(json.dumps(cfg, indent=2), encoding="utf-8")
    return binary


class Unpacked:
    """A relay started without arguments from a directory that held only the binary and config.json."""

    def __init__(self, root: pathlib.Path, mock_port: int) -> None:
        for attempt in range(PORT_ATTEMPTS):
            self.dir = root / f"vps-{attempt}"
            self.port = _free_port()
            binary = _unpack(self.dir, mock_port, host="127.0.0.1", port=self.port)
            self.files_before_start = sorted(p.name for p in self.dir.iterdir())
            self.process = RelayProcess([str(binary)], cwd=self.dir, env=relay_env())
            try:
                self.process.entry("listening")
                return
            except RuntimeError:
                self.process.stop()
                if "cannot listen" not in self.process.tail() or attempt == PORT_ATTEMPTS - 1:
                    raise

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.process.stop()


@pytest.fixture(scope="module")
def vps(mock: MockUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Unpacked]:
    relay = Unpacked(tmp_path_factory.mktemp("static"), mock.port)
    try:
        yield relay
    finally:
        relay.stop()


def test_release_binary_is_statically_linked() -> None:
    ldd = shutil.which("ldd")
    assert ldd is not None, "ldd (Debian package libc-bin) is needed to inspect the binary"
    result = subprocess.run(
        [ldd, str(relay_binary())], capture_output=True, text=True, timeout=30, check=False
    )
    out = result.stdout + result.stderr
    assert "=>" not in out, (
        f"{relay_binary()} is dynamically linked (build it with scripts/build-static.sh):\n{out}"
    )
    assert "statically linked" in out or "not a dynamic executable" in out, out


def test_first_start_writes_a_private_default_rai_and_serves(vps: Unpacked) -> None:
    assert vps.files_before_start == ["config.json", "relayapi"]
    generated = vps.process.entry("generated a new client config")
    rai_path = vps.dir / str(generated["path"])
    assert rai_path.resolve() == (vps.dir / "default.rai").resolve()
    assert stat.S_IMODE(rai_path.stat().st_mode) == 0o600
    rai = json.loads(rai_path.read_text(encoding="utf-8"))
    assert (rai["server"]["scheme"], rai["server"]["port"]) == ("http", vps.port)
    with urllib.request.urlopen(vps.base + "/health", timeout=10) as resp:
        assert resp.status == 200
        assert json.loads(resp.read())["status"] == "ok"


def test_generated_rai_mints_tokens_for_an_upstream_named_by_host_name(
    mock: MockUpstream, vps: Unpacked
) -> None:
    sdk = RelayAPIClient(vps.dir / "default.rai", timeout=30)
    base_url = sdk.generate_url(api_key=REAL_KEY, max_calls=5)
    assert base_url.startswith(f"{vps.base}/relayapi/")
    with openai_client(base_url) as client:
        reply = client.chat.completions.create(model="gpt-4o-mini", messages=HELLO)
    assert reply.choices[0].message.content == "echo: hello from the vps"
    seen = only_request(mock)
    # The relay connected by the configured name, resolved by the binary itself.
    assert headers_of(seen)["host"] == [f"localhost:{mock.port}"]
    assert_clean_upstream(seen, base_url.rsplit("/", 1)[1], provider="openai")


def test_published_dev_key_on_all_interfaces_refuses_to_start(
    mock: MockUpstream, tmp_path: pathlib.Path
) -> None:
    directory = tmp_path / "vps"
    binary = _unpack(directory, mock.port, host="0.0.0.0", port=_free_port())  # noqa: S104 (never bound)
    published = (REPO_ROOT / "default.rai").read_text(encoding="utf-8")
    (directory / "default.rai").write_text(published, encoding="utf-8")
    result = subprocess.run(
        [str(binary)],
        cwd=directory,
        env=relay_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=STARTUP_TIMEOUT_SECS,
        check=False,
    )
    assert result.returncode != 0
    assert "gen-rai" in result.stderr, result.stderr
    assert '"msg":"listening"' not in result.stderr
    assert (directory / "default.rai").read_text(encoding="utf-8") == published


def test_sigterm_lets_an_open_stream_finish_then_exits_0(mock: MockUpstream, tmp_path: pathlib.Path) -> None:
    relay = Unpacked(tmp_path, mock.port)
    try:
        sdk = RelayAPIClient(relay.dir / "default.rai", timeout=30)
        gate = uuid.uuid4().hex
        with openai_client(sdk.generate_url(api_key=REAL_KEY, max_calls=5)) as client:
            stream = client.chat.completions.create(
                model="gpt-4o-mini",
                messages=[{"role": "user", "content": f"drain me [gate:{gate}]"}],
                stream=True,
            )
            events = iter(stream)
            try:
                assert next(events).choices[0].delta.role == "assistant"
                wait_until_waiting(mock, gate)
                relay.process.proc.send_signal(signal.SIGTERM)
                relay.process.entry("shutting down", timeout=SHUTDOWN_TIMEOUT_SECS)
                # The listener is closed at once; only the stream already in flight is waited for.
                with pytest.raises(ConnectionRefusedError):
                    socket.create_connection(("127.0.0.1", relay.port), timeout=5).close()
                assert relay.process.proc.poll() is None, "the relay exited with a stream open"
            finally:
                mock.release(gate)
            rest = "".join(c.choices[0].delta.content or "" for c in events if c.choices)
        assert rest == f"echo: drain me [gate:{gate}]"
        assert relay.process.proc.wait(SHUTDOWN_TIMEOUT_SECS) == 0
        assert relay.process.entry("stopped")["drained"] is True
    finally:
        relay.stop()
