"""A tiny stdlib HTTP server on 127.0.0.1 that records what the SDK sends and answers as scripted.

Only for the SDK's own unit tests; the real relay is exercised by the e2e suite.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Optional, Union


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Reply:
    status: int = 200
    #: Default: application/json for a bytes body, text/event-stream for a streamed one.
    headers: Optional[dict[str, str]] = None
    #: bytes are sent with Content-Length; an iterable is sent chunked, one chunk per item, flushed each.
    body: Union[bytes, Iterable[bytes]] = b"{}"
    #: Close the connection without the terminating chunk (a stream that breaks mid-way).
    truncate: bool = False


Route = Callable[[Recorded], Reply]


class FakeRelay:
    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.routes: dict[tuple[str, str], Route] = {}
        relay = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                rec = Recorded(
                    method=self.command,
                    path=self.path,
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=self.rfile.read(length) if length else b"",
                )
                relay.requests.append(rec)
                route = relay.routes.get((self.command, self.path.split("?")[0]))
                reply = route(rec) if route else Reply(404, body=b'{"error":{"code":"not_found"}}')
                self.send_response(reply.status)
                default = "application/json" if isinstance(reply.body, bytes) else "text/event-stream"
                headers = {"Content-Type": default} if reply.headers is None else reply.headers
                for k, v in headers.items():
                    self.send_header(k, v)
                if isinstance(reply.body, bytes):
                    self.send_header("Content-Length", str(len(reply.body)))
                    self.end_headers()
                    self.wfile.write(reply.body)
                    return
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for chunk in reply.body:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    self.wfile.flush()
                if reply.truncate:
                    self.close_connection = True
                    return
                self.wfile.write(b"0\r\n\r\n")

            do_GET = _handle  # noqa: N815
            do_POST = _handle  # noqa: N815

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    def start(self) -> FakeRelay:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def route(self, method: str, path: str, reply: Union[Reply, Route]) -> None:
        self.routes[(method, path)] = reply if callable(reply) else (lambda _rec, r=reply: r)


def sse(*events: str, done: bool = True, gate: Optional[threading.Event] = None) -> Iterator[bytes]:
    """Yield SSE frames; if ``gate`` is given, wait for it after the first frame (max 10 s)."""
    for i, e in enumerate(events):
        yield f"data: {e}\n\n".encode()
        if i == 0 and gate is not None:
            gate.wait(10)
    if done:
        yield b"data: [DONE]\n\n"
