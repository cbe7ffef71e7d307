"""A pretend AI provider on 127.0.0.1, for trying the relay with no provider key and no internet.

Standard library only. It answers the calls the quick start makes, in the providers' own shapes:

- OpenAI: ``POST /v1/chat/completions`` (plain and ``"stream": true``), ``GET /v1/models``;
- Anthropic: ``POST /v1/messages`` (plain).

Replies echo the last user message (``"echo: Hi"``), so a first run shows the request went through the
relay and back. It only listens on loopback and accepts any API key: it is a stand-in, never a provider.

    python3 examples/mock_provider.py            # port 9999; --port N to change it
    relayapi --config examples/mock_provider.config.json --dev   # the relay, pointed at it

Once it accepts connections it prints one line, ``mock provider listening on http://127.0.0.1:9999``,
so a script can wait for that line instead of sleeping.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Optional

#: Largest request body read; the quick start sends a few hundred bytes.
MAX_BODY_BYTES = 1024 * 1024
DEFAULT_PORT = 9999


def last_user_text(body: dict[str, Any]) -> str:
    """The text of the last user message (string or content-block form), or ``""``."""
    for message in reversed(body.get("messages") or []):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                return " ".join(b.get("text", "") for b in content if isinstance(b, dict))
    return ""


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "mock-provider"

    def log_message(self, format: str, *args: Any) -> None:
        sys.stderr.write(f"mock provider: {self.command} {self.path}\n")

    def _send(self, status: int, obj: Any) -> None:
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> Optional[dict[str, Any]]:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            self._send(
                413,
                {
                    "error": {
                        "message": "body too large",
                        "type": "invalid_request_error",
                    }
                },
            )
            return None
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            body = None
        if not isinstance(body, dict):
            self._send(
                400,
                {
                    "error": {
                        "message": "expected a JSON object",
                        "type": "invalid_request_error",
                    }
                },
            )
            return None
        return body

    def do_GET(self) -> None:
        if self.path == "/v1/models":
            self._send(
                200,
                {"object": "list", "data": [{"id": "mock-model", "object": "model"}]},
            )
        else:
            self._send(
                404,
                {"error": {"message": f"no route {self.path}", "type": "not_found"}},
            )

    def do_POST(self) -> None:
        body = self._body()
        if body is None:
            return
        if self.path == "/v1/chat/completions":
            self._chat(body)
        elif self.path == "/v1/messages":
            self._messages(body)
        else:
            self._send(
                404,
                {"error": {"message": f"no route {self.path}", "type": "not_found"}},
            )

    def _chat(self, body: dict[str, Any]) -> None:
        text = "echo: " + last_user_text(body)
        model = str(body.get("model") or "mock-model")
        base = {"id": "chatcmpl-mock", "created": int(time.time()), "model": model}
        if not body.get("stream"):
            self._send(
                200,
                {
                    **base,
                    "object": "chat.completion",
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": text},
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": {
                        "prompt_tokens": 1,
                        "completion_tokens": 2,
                        "total_tokens": 3,
                    },
                },
            )
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        pieces = [{"role": "assistant", "content": ""}] + [{"content": w} for w in text.split(" ")]
        for i, delta in enumerate(pieces):
            if i > 1:
                delta = {"content": " " + delta["content"]}
            chunk = {
                **base,
                "object": "chat.completion.chunk",
                "choices": [{"index": 0, "delta": delta}],
            }
            self._event(json.dumps(chunk))
        end = {
            **base,
            "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
        }
        self._event(json.dumps(end))
        self._event("[DONE]")
        self.wfile.write(b"0\r\n\r\n")

    def _event(self, data: str) -> None:
        frame = f"data: {data}\n\n".encode()
        self.wfile.write(b"%x\r\n%s\r\n" % (len(frame), frame))
        self.wfile.flush()

    def _messages(self, body: dict[str, Any]) -> None:
        self._send(
            200,
            {
                "id": "msg_mock",
                "type": "message",
                "role": "assistant",
                "model": str(body.get("model") or "mock-model"),
                "content": [{"type": "text", "text": "echo: " + last_user_text(body)}],
                "stop_reason": "end_turn",
                "usage": {"input_tokens": 1, "output_tokens": 2},
            },
        )


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help="port on 127.0.0.1 (0 = any free port)",
    )
    args = parser.parse_args(argv)
    # Loopback only: this server takes any key and answers anything.
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    print(
        f"mock provider listening on http://127.0.0.1:{server.server_address[1]}",
        flush=True,
    )
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
