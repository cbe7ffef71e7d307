"""A real ``redis-server`` child for the suite, on a free 127.0.0.1 port with persistence off.

The same setup as the Rust store tests (``tests/store_support``): nothing is skipped when the binary is
missing; the test fails and says how to install it.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time

from .harness import SHUTDOWN_TIMEOUT_SECS, STARTUP_TIMEOUT_SECS


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    def __init__(self) -> None:
        self.port = _free_port()
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError(
                "cannot run redis-server: the two-relay tests need a real server; install it with "
                "`apt-get install redis-server` (scripts/test.sh does)"
            )
        args = ["--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        self.proc = subprocess.Popen([binary, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + STARTUP_TIMEOUT_SECS
        while not self._answers_ping():
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.stop()
                raise RuntimeError(f"redis-server did not answer on port {self.port}")
            time.sleep(0.02)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _answers_ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(SHUTDOWN_TIMEOUT_SECS)
