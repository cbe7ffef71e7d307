"""A local stand-in for the OpenAI and Anthropic APIs, run as its own process by the end-to-end suite.

Standard library only. It listens on 127.0.0.1 (port from ``--port``, 0 = any free port), prints one JSON
line ``{"port": N}`` on stdout once it accepts connections, and then serves:

- OpenAI: ``POST /v1/chat/completions`` (plain and ``"stream": true``), ``POST /v1/embeddings`` (float and
  base64 encodings), ``POST /v1/images/generations``, ``GET /v1/models``.
- Anthropic: ``POST /v1/messages`` (plain and ``"stream": true``).

Every request outside ``/_control/`` is recorded (method, path, headers in order, body) and can be read
back with ``GET /_control/requests``; ``POST /_control/reset`` clears the record and the gates.

Markers in the last user message steer a request, so a test can script one call without global state:

- ``[gate:NAME]``: a streamed answer sends its first event, then waits until the test calls
  ``POST /_control/release/NAME`` (at most 30 s). ``GET /_control/gates/NAME`` answers
  ``{"waiting": true}`` while it waits, which proves events reach the client while the mock is producing.
- ``[delay:SECONDS]``: sleep that long (at most 10 s) before answering, so parallel calls overlap.

Answers echo the request's ``model`` and the last user text, so tests can see what the relay forwarded.
"""

from __future__ import annotations

import argparse
import base64
import json
import re
import struct
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Optional

#: Longest wait at a gate; a test that forgets to release must not hang the suite.
GATE_TIMEOUT_SECS = 30.0
#: Longest accepted ``[delay:...]``.
MAX_DELAY_SECS = 10.0
#: Largest request body the mock reads; the suite never sends more.
MAX_BODY_BYTES = 8 * 1024 * 1024

_GATE = re.compile(r"\[gate:([A-Za-z0-9_-]{1,64})\]")
_DELAY = re.compile(r"\[delay:([0-9]+(?:\.[0-9]+)?)\]")


class State:
    """What the mock remembers: recorded requests and the gates streams wait on."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests: list[dict[str, Any]] = []
        self.gates: dict[str, threading.Event] = {}
        self.waiting: dict[str, bool] = {}

    def record(self, entry: dict[str, Any]) -> None:
        with self.lock:
            self.requests.append(entry)

    def gate(self, name: str) -> threading.Event:
        with self.lock:
            return self.gates.setdefault(name, threading.Event())

    def reset(self) -> None:
        with self.lock:
            self.requests.clear()
            for event in self.gates.values():
                event.set()  # free any stream still parked from an earlier test
            self.gates.clear()
            self.waiting.clear()


STATE = State()


def _last_user_text(body: dict[str, Any]) -> str:
    for message in reversed(body.get("messages") or []):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def _words(text: str) -> list[str]:
    reply = f"echo: {text}"
    parts = reply.split(" ")
    return [p if i == 0 else " " + p for i, p in enumerate(parts)]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "mock-upstream/1"

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the suite reads the record instead

    # -- plumbing ------------------------------------------------------------------------------------

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return bytes(out)
                out += self.rfile.read(size)
                self.rfile.readline()
                if len(out) > MAX_BODY_BYTES:
                    raise ValueError("body too large")
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            raise ValueError("body too large")
        return self.rfile.read(length) if length else b""

    def _send_json(self, status: int, obj: Any, headers: Optional[dict[str, str]] = None) -> None:
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _start_stream(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _end_stream(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _event(self, data: Any, event: Optional[str] = None) -> None:
        text = data if isinstance(data, str) else json.dumps(data)
        frame = (f"event: {event}\n" if event else "") + f"data: {text}\n\n"
        self._chunk(frame.encode())

    def _wait_gate(self, text: str) -> None:
        m = _GATE.search(text)
        if not m:
            return
        name = m.group(1)
        event = STATE.gate(name)
        with STATE.lock:
            STATE.waiting[name] = True
        try:
            event.wait(GATE_TIMEOUT_SECS)
        finally:
            with STATE.lock:
                STATE.waiting[name] = False

    @staticmethod
    def _delay(text: str) -> None:
        m = _DELAY.search(text)
        if m:
            time.sleep(min(float(m.group(1)), MAX_DELAY_SECS))

    # -- dispatch ------------------------------------------------------------------------------------

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        try:
            raw = self._read_body()
        except ValueError:
            self._send_json(400, {"error": {"message": "bad body", "type": "invalid_request_error"}})
            self.close_connection = True
            return
        path = self.path.split("?")[0]
        if path.startswith("/_control/"):
            self._control(path)
            return
        STATE.record(
            {
                "method": self.command,
                "path": self.path,
                "headers": [[k, v] for k, v in self.headers.items()],
                "body": raw.decode("utf-8", "replace"),
            }
        )
        body: dict[str, Any] = {}
        if raw:
            try:
                parsed = json.loads(raw)
            except ValueError:
                self._send_json(
                    400,
                    {
                        "error": {
                            "message": "body is not JSON",
                            "type": "invalid_request_error",
                        }
                    },
                )
                return
            body = parsed if isinstance(parsed, dict) else {}
        route = {
            ("POST", "/v1/chat/completions"): self._chat,
            ("POST", "/v1/embeddings"): self._embeddings,
            ("POST", "/v1/images/generations"): self._images,
            ("GET", "/v1/models"): self._models,
            ("POST", "/v1/messages"): self._messages,
        }.get((self.command, path))
        if route is None:
            self._send_json(
                404,
                {
                    "error": {
                        "message": f"no route {self.command} {path}",
                        "type": "not_found",
                    }
                },
            )
            return
        route(body)

    def _control(self, path: str) -> None:
        if self.command == "GET" and path == "/_control/requests":
            with STATE.lock:
                self._send_json(200, list(STATE.requests))
        elif self.command == "POST" and path == "/_control/reset":
            STATE.reset()
            self._send_json(200, {"ok": True})
        elif self.command == "POST" and path.startswith("/_control/release/"):
            STATE.gate(path.rsplit("/", 1)[1]).set()
            self._send_json(200, {"ok": True})
        elif self.command == "GET" and path.startswith("/_control/gates/"):
            with STATE.lock:
                waiting = STATE.waiting.get(path.rsplit("/", 1)[1], False)
            self._send_json(200, {"waiting": waiting})
        else:
            self._send_json(404, {"error": {"message": "unknown control path"}})

    # -- OpenAI ----------------------------------------------------------------------------------------

    def _chat(self, body: dict[str, Any]) -> None:
        model = body.get("model", "")
        text = _last_user_text(body)
        self._delay(text)
        created = int(time.time())
        if not body.get("stream"):
            content = "".join(_words(text))
            self._send_json(
                200,
                {
                    "id": "chatcmpl-mock",
                    "object": "chat.completion",
                    "created": created,
                    "model": model,
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": content},
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": {
                        "prompt_tokens": 3,
                        "completion_tokens": 3,
                        "total_tokens": 6,
                    },
                },
            )
            return
        self._start_stream()

        def chunk(delta: dict[str, Any], finish: Optional[str] = None) -> dict[str, Any]:
            return {
                "id": "chatcmpl-mock",
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }

        self._event(chunk({"role": "assistant", "content": ""}))
        self._wait_gate(text)
        for word in _words(text):
            self._event(chunk({"content": word}))
        self._event(chunk({}, "stop"))
        self._event("[DONE]")
        self._end_stream()

    def _embeddings(self, body: dict[str, Any]) -> None:
        inputs = body.get("input")
        items = inputs if isinstance(inputs, list) else [inputs]
        data = []
        for i, item in enumerate(items):
            vector = [float(len(str(item))), float(i), 0.5]
            if body.get("encoding_format") == "base64":
                packed = struct.pack(f"<{len(vector)}f", *vector)
                embedding: Any = base64.b64encode(packed).decode()
            else:
                embedding = vector
            data.append({"object": "embedding", "index": i, "embedding": embedding})
        self._send_json(
            200,
            {
                "object": "list",
                "data": data,
                "model": body.get("model", ""),
                "usage": {"prompt_tokens": len(items), "total_tokens": len(items)},
            },
        )

    def _images(self, body: dict[str, Any]) -> None:
        n = body.get("n") or 1
        if body.get("response_format") == "b64_json":
            items = [{"b64_json": base64.b64encode(b"mock-png").decode()} for _ in range(n)]
        else:
            items = [{"url": f"https://images.mock.invalid/{i}.png"} for i in range(n)]
        self._send_json(200, {"created": int(time.time()), "data": items})

    def _models(self, _body: dict[str, Any]) -> None:
        self._send_json(
            200,
            {
                "object": "list",
                "data": [
                    {
                        "id": "gpt-4o-mini",
                        "object": "model",
                        "created": 0,
                        "owned_by": "mock",
                    }
                ],
            },
        )

    # -- Anthropic -------------------------------------------------------------------------------------

    def _messages(self, body: dict[str, Any]) -> None:
        model = body.get("model", "")
        text = _last_user_text(body)
        self._delay(text)
        words = _words(text)
        usage = {"input_tokens": 3, "output_tokens": len(words)}
        if not body.get("stream"):
            self._send_json(
                200,
                {
                    "id": "msg_mock",
                    "type": "message",
                    "role": "assistant",
                    "model": model,
                    "content": [{"type": "text", "text": "".join(words)}],
                    "stop_reason": "end_turn",
                    "stop_sequence": None,
                    "usage": usage,
                },
            )
            return
        self._start_stream()
        start = {
            "id": "msg_mock",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 3, "output_tokens": 1},
        }
        self._event({"type": "message_start", "message": start}, "message_start")
        self._wait_gate(text)
        block = {
            "type": "content_block_start",
            "index": 0,
            "content_block": {"type": "text", "text": ""},
        }
        self._event(block, "content_block_start")
        self._event({"type": "ping"}, "ping")
        for word in words:
            delta = {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": word},
            }
            self._event(delta, "content_block_delta")
        self._event({"type": "content_block_stop", "index": 0}, "content_block_stop")
        done = {"stop_reason": "end_turn", "stop_sequence": None}
        self._event(
            {
                "type": "message_delta",
                "delta": done,
                "usage": {"output_tokens": len(words)},
            },
            "message_delta",
        )
        self._event({"type": "message_stop"}, "message_stop")
        self._end_stream()


class Server(ThreadingHTTPServer):
    daemon_threads = True
    # Parallel tests open dozens of connections at once; the default backlog of 5 would drop some.
    request_queue_size = 256


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    server = Server(("127.0.0.1", args.port), Handler)
    print(json.dumps({"port": server.server_address[1]}), flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
