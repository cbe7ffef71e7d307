"""A local stand-in for the OpenAI, Anthropic and Gemini APIs, run as its own process by the end-to-end suite.

Standard library only. It listens on 127.0.0.1 (port from ``--port``, 0 = any free port), prints one JSON
line ``{"port": N}`` on stdout once it accepts connections, and then serves:

- OpenAI: ``POST /v1/chat/completions`` (plain and ``"stream": true``), ``POST /v1/responses`` (plain and
  streamed), ``POST /v1/embeddings`` (float and base64 encodings), ``POST /v1/images/generations``,
  ``GET /v1/models``.
- Anthropic: ``POST /v1/messages`` (plain and ``"stream": true``).
- Gemini: ``POST /v1beta/models/{model}:generateContent`` and ``:streamGenerateContent`` (SSE with
  ``?alt=sse``, otherwise one JSON array sent element by element), in ``mock_families.py``.

Every answer reports usage the way its provider does (``mock_usage.py`` holds the rule that makes the
figures derivable from the request): OpenAI chat streams carry the usage-only chunk (``"choices": []``)
only when the request asks with ``stream_options.include_usage``, as OpenAI does.

Every request outside ``/_control/`` is recorded (method, path, headers in order, body, and ``reported``:
the usage the mock reported for it, normalised as ``mock_usage.Usage.normalised``, or null) and can be
read back with ``GET /_control/requests``; ``POST /_control/reset`` clears the record and the gates.

Markers in the last user message steer a request, so a test can script one call without global state:

- ``[gate:NAME]``: a streamed answer sends its first event, then waits until the test calls
  ``POST /_control/release/NAME`` (at most 30 s). ``GET /_control/gates/NAME`` answers
  ``{"waiting": true}`` while it waits, which proves events reach the client while the mock is producing.
- ``[delay:SECONDS]``: sleep that long (at most 10 s) before answering, so parallel calls overlap.
- ``[linger:SECONDS]``: a streamed answer sends its last event, then waits that long (at most 10 s)
  before ending the chunked body, the way a provider's final bytes can trail its last event. Without it
  the last event and the body's terminator leave in one write.
- ``[out:N]``, ``[cached:N]``, ``[cache_write:N]``: the usage to report (``mock_usage.py``).
- ``[nousage]``: a 2xx answer without any usage report.
- ``[status:NNN]``: answer that 4xx/5xx status with the provider's error shape and no usage.

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

import mock_families
from mock_usage import Usage, echo_words, last_user_text

#: Longest wait at a gate; a test that forgets to release must not hang the suite.
GATE_TIMEOUT_SECS = 30.0
#: Longest accepted ``[delay:...]``.
MAX_DELAY_SECS = 10.0
#: Largest request body the mock reads; the suite never sends more.
MAX_BODY_BYTES = 8 * 1024 * 1024

_GATE = re.compile(r"\[gate:([A-Za-z0-9_-]{1,64})\]")
_DELAY = re.compile(r"\[delay:([0-9]+(?:\.[0-9]+)?)\]")
_LINGER = re.compile(r"\[linger:([0-9]+(?:\.[0-9]+)?)\]")
_STATUS = re.compile(r"\[status:([45][0-9][0-9])\]")
_NO_USAGE = "[nousage]"


class State:
    """What the mock remembers: recorded requests and the gates streams wait on."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests: list[dict[str, Any]] = []
        self.gates: dict[str, threading.Event] = {}
        self.waiting: dict[str, int] = {}

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

    def _start_stream(self, content_type: str = "text/event-stream") -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def _chunk(self, data: bytes, *, last: bool = False) -> None:
        framed = b"%x\r\n%s\r\n" % (len(data), data)
        if last:
            # The last event goes out with the body's terminator in one write (see _end_stream).
            self._last = framed
            return
        self.wfile.write(framed)
        self.wfile.flush()

    def _end_stream(self, text: str = "") -> None:
        last, self._last = getattr(self, "_last", b""), b""
        if _LINGER.search(text):
            # `[linger:S]`: the last event is out, the body's terminator follows S seconds later.
            self.wfile.write(last)
            self.wfile.flush()
            self._delay(text, _LINGER)
            last = b""
        self.wfile.write(last + b"0\r\n\r\n")
        self.wfile.flush()

    def _event(self, data: Any, event: Optional[str] = None, *, last: bool = False) -> None:
        text = data if isinstance(data, str) else json.dumps(data)
        frame = (f"event: {event}\n" if event else "") + f"data: {text}\n\n"
        self._chunk(frame.encode(), last=last)

    def _wait_gate(self, text: str) -> None:
        m = _GATE.search(text)
        if not m:
            return
        name = m.group(1)
        event = STATE.gate(name)
        with STATE.lock:
            STATE.waiting[name] = STATE.waiting.get(name, 0) + 1
        try:
            event.wait(GATE_TIMEOUT_SECS)
        finally:
            with STATE.lock:
                STATE.waiting[name] -= 1

    @staticmethod
    def _delay(text: str, marker: re.Pattern[str] = _DELAY) -> None:
        m = marker.search(text)
        if m:
            time.sleep(min(float(m.group(1)), MAX_DELAY_SECS))

    def _usage(self, family: str, body: dict[str, Any], text: str, default_output: int) -> Optional[Usage]:
        """The usage this answer reports (None for ``[nousage]``), recorded next to the request."""
        usage = None if _NO_USAGE in text else Usage.of(family, body, text, default_output)
        self.report(usage)
        return usage

    def report(self, usage: Optional[Usage]) -> None:
        with STATE.lock:
            self._entry["reported"] = None if usage is None else usage.normalised()

    def _failed(self, family: str, text: str) -> bool:
        """Answer ``[status:NNN]`` with the family's error shape; True when it did."""
        m = _STATUS.search(text)
        if not m:
            return False
        status = int(m.group(1))
        message = f"mock error {status}"
        if family == "anthropic":
            error: Any = {"type": "error", "error": {"type": "api_error", "message": message}}
        elif family == "gemini":
            error = {"error": {"code": status, "message": message, "status": "INTERNAL"}}
        else:
            error = {"error": {"message": message, "type": "server_error", "param": None, "code": None}}
        self._send_json(status, error)
        return True

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
        self._entry: dict[str, Any] = {
            "method": self.command,
            "path": self.path,
            "headers": [[k, v] for k, v in self.headers.items()],
            "body": raw.decode("utf-8", "replace"),
            "reported": None,
        }
        STATE.record(self._entry)
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
            ("POST", "/v1/responses"): lambda b: mock_families.responses(self, b),
            ("POST", "/v1/embeddings"): self._embeddings,
            ("POST", "/v1/images/generations"): self._images,
            ("GET", "/v1/models"): self._models,
            ("POST", "/v1/messages"): lambda b: mock_families.messages(self, b),
        }.get((self.command, path))
        gemini = mock_families.GEMINI_PATH.fullmatch(path)
        if route is None and gemini and self.command == "POST":
            route = lambda b: mock_families.gemini(self, gemini.group(1), gemini.group(2), b)  # noqa: E731
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
                self._send_json(200, [dict(r) for r in STATE.requests])
        elif self.command == "POST" and path == "/_control/reset":
            STATE.reset()
            self._send_json(200, {"ok": True})
        elif self.command == "POST" and path.startswith("/_control/release/"):
            STATE.gate(path.rsplit("/", 1)[1]).set()
            self._send_json(200, {"ok": True})
        elif self.command == "GET" and path.startswith("/_control/gates/"):
            with STATE.lock:
                count = STATE.waiting.get(path.rsplit("/", 1)[1], 0)
            self._send_json(200, {"waiting": count > 0, "count": count})
        else:
            self._send_json(404, {"error": {"message": "unknown control path"}})

    # -- OpenAI ----------------------------------------------------------------------------------------

    def _chat(self, body: dict[str, Any]) -> None:
        model = body.get("model", "")
        text = last_user_text(body)
        self._delay(text)
        if self._failed("chat", text):
            return
        created = int(time.time())
        words = echo_words(text)
        if not body.get("stream"):
            answer: dict[str, Any] = {
                "id": "chatcmpl-mock",
                "object": "chat.completion",
                "created": created,
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": "".join(words)},
                        "finish_reason": "stop",
                    }
                ],
            }
            usage = self._usage("chat", body, text, len(words))
            if usage is not None:
                answer["usage"] = usage.openai_chat()
            self._send_json(200, answer)
            return
        options = body.get("stream_options")
        # OpenAI streams usage only when asked, and then also marks every other chunk "usage": null.
        with_usage = isinstance(options, dict) and options.get("include_usage") is True
        self._start_stream()

        def chunk(delta: dict[str, Any], finish: Optional[str] = None) -> dict[str, Any]:
            out: dict[str, Any] = {
                "id": "chatcmpl-mock",
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }
            if with_usage:
                out["usage"] = None
            return out

        self._event(chunk({"role": "assistant", "content": ""}))
        self._wait_gate(text)
        for word in words:
            self._event(chunk({"content": word}))
        self._event(chunk({}, "stop"))
        usage = self._usage("chat", body, text, len(words)) if with_usage else None
        if usage is not None:
            last = {**chunk({}), "choices": [], "usage": usage.openai_chat()}
            self._event(last)
        self._event("[DONE]", last=True)
        self._end_stream(text)

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
        usage = self._usage("embeddings", body, "", 0)
        answer: dict[str, Any] = {"object": "list", "data": data, "model": body.get("model", "")}
        if usage is not None:
            answer["usage"] = usage.openai_embeddings()
        self._send_json(200, answer)

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
