"""Process management for the end-to-end suite: the mock upstream and the release relay binary.

Both run as real child processes on 127.0.0.1 with OS-chosen ports; nothing here talks to any other
address. Every wait is bounded so a broken build fails the suite instead of hanging it.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import secrets
import subprocess
import sys
import threading
import time
import urllib.request
from collections import deque
from typing import Any, Callable, Optional

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
#: Seconds to wait for a child process to report its listening address.
STARTUP_TIMEOUT_SECS = 30.0
#: Seconds to wait for a child to exit after SIGTERM before it is killed.
SHUTDOWN_TIMEOUT_SECS = 10.0

#: The provider key the relay injects. Fake on purpose; it only ever reaches the mock.
REAL_KEY = "test-upstream-key-e2e-4711"
#: A server-side key (config.json `api_keys`) referenced by tokens through `kref`.
SERVER_KEY_NAME = "e2e-main"
SERVER_KEY_ENV = "E2E_SERVER_KEY"
SERVER_KEY = "test-server-side-key-e2e-0815"


def relay_binary() -> pathlib.Path:
    return pathlib.Path(os.environ.get("RELAYAPI_BIN") or REPO_ROOT / "target" / "release" / "relayapi")


def _child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.upper().endswith(("_PROXY",))}
    env.update(extra)
    return env


def relay_env() -> dict[str, str]:
    """The environment a relay started with `relay_config` needs (the server-side key it names)."""
    return _child_env(**{SERVER_KEY_ENV: SERVER_KEY})


class MockUpstream:
    """``e2e/mock_upstream.py`` as a child process, with its control endpoint wrapped."""

    def __init__(self) -> None:
        script = pathlib.Path(__file__).with_name("mock_upstream.py")
        self.proc = subprocess.Popen(
            [sys.executable, str(script), "--port", "0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_child_env(),
        )
        line = _read_line_with_timeout(self.proc.stdout, STARTUP_TIMEOUT_SECS)
        if not line:
            self.stop()
            raise RuntimeError(
                "mock upstream did not start: " + (self.proc.stderr.read() if self.proc.stderr else "")
            )
        self.port = int(json.loads(line)["port"])
        self.base = f"http://127.0.0.1:{self.port}"

    def _control(self, method: str, path: str) -> Any:
        req = urllib.request.Request(self.base + path, method=method, data=b"" if method == "POST" else None)
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())

    def requests(self) -> list[dict[str, Any]]:
        """Every request the mock received since the last reset, oldest first."""
        return self._control("GET", "/_control/requests")  # type: ignore[no-any-return]

    def reset(self) -> None:
        self._control("POST", "/_control/reset")

    def release(self, gate: str) -> None:
        self._control("POST", f"/_control/release/{gate}")

    def waiting_at(self, gate: str) -> bool:
        return bool(self._control("GET", f"/_control/gates/{gate}")["waiting"])

    def gate_count(self, gate: str) -> int:
        """How many answers are parked at `gate` right now."""
        return int(self._control("GET", f"/_control/gates/{gate}")["count"])

    def stop(self) -> None:
        _stop(self.proc)


def headers_of(recorded: dict[str, Any]) -> dict[str, list[str]]:
    """Recorded headers by lower-case name (a list per name, so duplicates stay visible)."""
    out: dict[str, list[str]] = {}
    for name, value in recorded["headers"]:
        out.setdefault(name.lower(), []).append(value)
    return out


def write_rai(path: pathlib.Path, *, port: int = 8080, scheme: str = "http") -> dict[str, Any]:
    """A fresh `.rai` with a random tenant key; returns the dict (the relay reads the file)."""
    rai = {
        "version": 1,
        "server": {
            "scheme": scheme,
            "host": "127.0.0.1",
            "port": port,
            "base_path": "/relayapi/",
        },
        "crypto": {
            "method": "aes-256-gcm-hkdf-sha256",
            "key_id": "e2e-1",
            "key": _b64u(secrets.token_bytes(32)),
            "tenant_id": "e2e",
        },
    }
    path.write_text(json.dumps(rai, indent=2), encoding="utf-8")
    return rai


def _b64u(data: bytes) -> str:
    import base64

    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


# The relay contract's config, used when the repository has no config.json to start from.
_CONTRACT_CONFIG: dict[str, Any] = {
    "server": {
        "host": "127.0.0.1", "port": 0, "read_timeout": 30, "write_timeout": 30, "idle_timeout": 60,
        "max_header_bytes": 16384, "max_headers": 100, "max_uri_bytes": 8192, "max_body_bytes": 33554432,
        "max_connections": 4096, "shutdown_grace": 30,
    },
    "rate_limit": {"requests_per_second": 0, "burst": 20,
                   "ip_limit": {"requests_per_second": 0, "burst": 4, "max_tracked_ips": 100000}},
    "token": {"clock_skew": 60, "max_lifetime": 2592000},
    "providers": {},
    "api_keys": {},
    "upstream": {
        "connect_timeout": 10, "handshake_timeout": 10, "response_header_timeout": 300,
        "read_idle_timeout": 300, "pool_idle_timeout": 90, "pool_max_idle_per_host": 64,
        "extra_ca_file": None, "allowed_base_urls": [],
    },
    "trusted_proxies": [],
    "cors": {"allowed_origins": ["*"], "max_age": 600},
    "store": {"type": "memory"},
}  # fmt: skip


def relay_config(mock_port: int) -> dict[str, Any]:
    """The repository's config.json (so new settings are picked up) with the suite's overrides."""
    base = REPO_ROOT / "config.json"
    cfg = (
        json.loads(base.read_text(encoding="utf-8"))
        if base.is_file()
        else json.loads(json.dumps(_CONTRACT_CONFIG))
    )
    cfg["server"].update({"host": "127.0.0.1", "port": 0})
    # The suite fires bursts of parallel calls from one IP; the global and per-IP limiters are not under
    # test here (0 disables them).
    cfg["rate_limit"]["requests_per_second"] = 0
    cfg["rate_limit"].setdefault("ip_limit", {})["requests_per_second"] = 0
    cfg["token"]["clock_skew"] = 60
    cfg["providers"] = {
        "openai": {"base_url": f"http://127.0.0.1:{mock_port}/v1"},
        "anthropic": {"base_url": f"http://127.0.0.1:{mock_port}"},
        "gemini": {"base_url": f"http://127.0.0.1:{mock_port}"},
    }
    cfg["api_keys"] = {SERVER_KEY_NAME: {"env": SERVER_KEY_ENV}}
    cfg["store"] = {"type": "memory"}
    return cfg


class RelayProcess:
    """A relay binary run as a child with any arguments and working directory, its stderr kept.

    A thread reads stderr for the child's whole life (a full pipe would block its logging); `entry`
    waits for one of its JSON log lines by `msg`. With `access_log`, stdout (the access log) is kept
    too, in `access`, and `access_entry` waits for a line.
    """

    def __init__(
        self, argv: list[str], *, cwd: pathlib.Path, env: dict[str, str], access_log: bool = False
    ) -> None:
        self.log: deque[str] = deque(maxlen=20000)
        self.access: deque[str] = deque(maxlen=20000)
        self._changed = threading.Condition()
        self._stderr_closed = False
        self.proc = subprocess.Popen(
            argv,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if access_log else subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        threading.Thread(target=self._drain, daemon=True).start()
        if access_log:
            threading.Thread(target=self._drain_access, daemon=True).start()

    def _drain_access(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._changed:
                self.access.append(line.rstrip("\n"))
                self._changed.notify_all()

    def access_entry(
        self, match: Callable[[dict[str, Any]], bool], timeout: float = STARTUP_TIMEOUT_SECS
    ) -> dict[str, Any]:
        """The first access-log line for which `match` is true, waiting up to `timeout` seconds."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for line in self.access:
                    found = _log_entry(line)
                    if found is not None and match(found):
                        return found
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise RuntimeError(f"no matching access line; last ones:\n{list(self.access)[-5:]}")
                self._changed.wait(remaining)

    def _drain(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self._changed:
                self.log.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._stderr_closed = True
            self._changed.notify_all()

    def entry(self, msg: str, timeout: float = STARTUP_TIMEOUT_SECS) -> dict[str, Any]:
        """The first JSON log line whose `msg` is `msg`, waiting up to `timeout` seconds for it.

        Raises RuntimeError with the exit code and the log's tail when the child closes stderr (it
        exited) or the time is up first.
        """
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for line in self.log:
                    found = _log_entry(line)
                    if found is not None and found.get("msg") == msg:
                        return found
                remaining = deadline - time.monotonic()
                if self._stderr_closed or remaining <= 0:
                    break
                self._changed.wait(remaining)
        if self._stderr_closed:
            # Closed stderr means the child is exiting: wait briefly so the message has its exit code.
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(SHUTDOWN_TIMEOUT_SECS)
        raise RuntimeError(f"relay did not log {msg!r}; exit code {self.proc.poll()}; stderr:\n{self.tail()}")

    def tail(self, lines: int = 30) -> str:
        with self._changed:
            return "\n".join(list(self.log)[-lines:])

    def stop(self) -> None:
        _stop(self.proc)


def _log_entry(line: str) -> Optional[dict[str, Any]]:
    try:
        entry = json.loads(line)
    except ValueError:
        return None
    return entry if isinstance(entry, dict) else None


class Relay:
    """The release binary serving a temporary config, its stderr log lines kept for assertions.

    With `tls` (the config's `tls` section) it serves HTTPS and its `.rai` says `"scheme": "https"`.
    `config` overrides members of top-level sections of the suite's config (`store`, `budgets`...);
    `rai` reuses the tenant key of another relay (a restart, or a second relay on a shared store);
    `access_log` keeps the access log (see `RelayProcess`).
    """

    def __init__(
        self,
        workdir: pathlib.Path,
        mock_port: int,
        *,
        tls: Optional[dict[str, Any]] = None,
        config: Optional[dict[str, Any]] = None,
        rai: Optional[dict[str, Any]] = None,
        access_log: bool = False,
    ) -> None:
        binary = relay_binary()
        if not binary.is_file():
            raise RuntimeError(
                f"{binary} not found: run `cargo build --release` at the repository root first"
            )
        self.scheme = "http" if tls is None else "https"
        self.workdir = workdir
        self.rai_path = workdir / "e2e.rai"
        if rai is None:
            self.rai = write_rai(self.rai_path, scheme=self.scheme)
        else:
            self.rai = json.loads(json.dumps(rai))
            self.rai_path.write_text(json.dumps(self.rai, indent=2), encoding="utf-8")
        self.config_path = workdir / "config.json"
        cfg = relay_config(mock_port)
        if tls is not None:
            cfg["tls"] = tls
        for section, value in (config or {}).items():
            # A section is merged member by member, so an override names only what it changes.
            base_section = cfg.get(section)
            merged = isinstance(value, dict) and isinstance(base_section, dict)
            cfg[section] = {**base_section, **value} if merged else value
        self.config_path.write_text(json.dumps(cfg, indent=2), encoding="utf-8")
        self.process = RelayProcess(
            [str(binary), "--config", str(self.config_path), "--rai", str(self.rai_path)],
            cwd=workdir,
            env=relay_env(),
            access_log=access_log,
        )
        self.proc = self.process.proc
        self.log = self.process.log
        try:
            self.addr = str(self.process.entry("listening")["addr"])
        except RuntimeError:
            self.stop()
            raise
        self.port = int(self.addr.rsplit(":", 1)[1])
        self.base = f"{self.scheme}://127.0.0.1:{self.port}"

    def rai_for_client(self) -> dict[str, Any]:
        """The `.rai` the relay loaded, with the port it actually listens on (it was started on port 0)."""
        rai = json.loads(json.dumps(self.rai))
        rai["server"]["port"] = self.port
        return rai

    def stop(self) -> None:
        _stop(self.proc)

    def kill(self) -> None:
        """SIGKILL, as a crash: nothing in the relay runs after it."""
        self.proc.kill()
        self.proc.wait(SHUTDOWN_TIMEOUT_SECS)


def _stop(proc: subprocess.Popen[Any]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(SHUTDOWN_TIMEOUT_SECS)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(SHUTDOWN_TIMEOUT_SECS)


def _read_line_with_timeout(stream: Any, timeout: float) -> Optional[str]:
    box: list[str] = []
    t = threading.Thread(target=lambda: box.append(stream.readline()), daemon=True)
    t.start()
    t.join(timeout)
    return box[0] if box and box[0] else None
