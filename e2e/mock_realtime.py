"""A local stand-in for OpenAI Realtime and Gemini Live WebSocket sessions, for the end-to-end suite.

It runs the ``websockets`` server on 127.0.0.1 (OS-chosen port) in a thread of the test process, so a test
reads what it recorded directly. Every handshake is recorded (path with query, headers in order, the
subprotocols offered) before it is answered; the server offers no extension (``compression=None``).

OpenAI Realtime (any path ending ``/realtime``): ``session.created`` on open; ``response.create`` is answered
with ``response.created``, two ``response.output_text.delta``, one ``response.output_audio.delta`` and
``response.done`` whose ``usage`` is ``USAGE`` (realtime member names: ``input_token_details``); any other
text message is echoed back as ``{"type": "echo", "of": <message>}``. The ``model`` in the query steers it:

- ``slow-*``: waits ``SLOW_SECS`` before each answer (another session must not wait with it).
- ``flood-*``: on ``response.create`` sends ``FLOOD_MESSAGES`` audio deltas of ``FLOOD_CHUNK`` bytes each as
  fast as the relay takes them (a client that stops reading must not make the relay buffer them).
- ``deaf-*``: after ``session.created`` never reads again (a provider that stops reading).
- ``drop-*``: on any message closes its TCP connection without a close frame.

Gemini Live (any path ending ``BidiGenerateContent``): ``setup`` is answered with ``setupComplete``;
``clientContent`` with two ``serverContent.modelTurn`` parts and a ``turnComplete`` message that carries
``usageMetadata`` (Live's member names: ``responseTokenCount``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import Iterator
from typing import Any, Optional
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request

#: What every OpenAI `response.done` reports, in the Realtime API's shape.
USAGE: dict[str, Any] = {
    "total_tokens": 57,
    "input_tokens": 40,
    "output_tokens": 17,
    "input_token_details": {
        "text_tokens": 30,
        "audio_tokens": 10,
        "image_tokens": 0,
        "cached_tokens": 8,
        "cached_tokens_details": {"text_tokens": 8, "audio_tokens": 0, "image_tokens": 0},
    },
    "output_token_details": {"text_tokens": 5, "audio_tokens": 12},
}
#: What every Gemini Live turn reports.
GEMINI_USAGE: dict[str, Any] = {
    "promptTokenCount": 21,
    "responseTokenCount": 9,
    "totalTokenCount": 30,
    "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 21}],
    "responseTokensDetails": [{"modality": "TEXT", "tokenCount": 9}],
}
SLOW_SECS = 2.0
FLOOD_MESSAGES = 64
FLOOD_CHUNK = 1024 * 1024
#: Seconds to wait for the server thread to start.
START_TIMEOUT_SECS = 10.0


class Handshake:
    """One upgrade request as the mock saw it, and what became of its session."""

    def __init__(self, request: Request) -> None:
        #: Messages the session received, in order.
        self.received: list[str] = []
        #: How its connection closed: the close code received, 1006 for none; None while open.
        self.close_code: Optional[int] = None
        self.path = request.path
        self.headers: list[tuple[str, str]] = list(request.headers.raw_items())
        self.protocols = [
            p.strip()
            for v in request.headers.get_all("Sec-WebSocket-Protocol")
            for p in v.split(",")
            if p.strip()
        ]

    def header(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def model(self) -> str:
        return parse_qs(urlsplit(self.path).query).get("model", [""])[0]


class MockRealtime:
    """The server, its thread and its record."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._handshakes: list[Handshake] = []
        #: The handshake of each connection not yet served, by the connection's id. A session keeps
        #: its own record, so one that ends after a reset cannot write into a later test's.
        self._pending: dict[int, Handshake] = {}
        self._ready = threading.Event()
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._server: Optional[Server] = None
        self._stopped: Optional[asyncio.Event] = None
        self.port = 0
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT_SECS):
            raise RuntimeError("mock realtime server did not start")
        self.base = f"http://127.0.0.1:{self.port}"

    # -- what a test reads -------------------------------------------------------------------------

    def handshakes(self) -> list[Handshake]:
        with self._lock:
            return list(self._handshakes)

    def received(self, session: int) -> list[str]:
        """The messages session `session` (the index of its handshake) received, in order."""
        with self._lock:
            return list(self._handshakes[session].received)

    def close_codes(self) -> dict[int, int]:
        with self._lock:
            return {i: h.close_code for i, h in enumerate(self._handshakes) if h.close_code is not None}

    def reset(self) -> None:
        with self._lock:
            self._handshakes.clear()

    def stop(self) -> None:
        if self._loop is not None and self._stopped is not None:
            self._loop.call_soon_threadsafe(self._stopped.set)
        self._thread.join(START_TIMEOUT_SECS)

    # -- the server --------------------------------------------------------------------------------

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        async with serve(
            self._session,
            "127.0.0.1",
            0,
            compression=None,
            max_size=None,
            max_queue=4,
            process_request=self._record,
            select_subprotocol=_choose_realtime,
            ping_interval=None,
            # Sessions a test left open (a deaf provider's) must not hold the shutdown.
            close_timeout=1,
        ) as server:
            self._server = server
            self.port = next(iter(server.sockets)).getsockname()[1]
            self._ready.set()
            await self._stopped.wait()

    def _record(self, conn: ServerConnection, request: Request) -> None:
        with self._lock:
            handshake = Handshake(request)
            self._pending[id(conn)] = handshake
            self._handshakes.append(handshake)

    def _keep(self, session: Handshake, message: str) -> None:
        with self._lock:
            session.received.append(message)

    async def _session(self, conn: ServerConnection) -> None:
        assert conn.request is not None
        with self._lock:
            session = self._pending.pop(id(conn))
        path = urlsplit(conn.request.path).path
        try:
            with contextlib.suppress(ConnectionClosed):
                if path.endswith("BidiGenerateContent"):
                    await self._gemini(conn, session)
                else:
                    await self._openai(conn, session)
        finally:
            with self._lock:
                session.close_code = conn.close_code if conn.close_code is not None else 1006

    async def _openai(self, conn: ServerConnection, session: Handshake) -> None:
        assert conn.request is not None
        model = parse_qs(urlsplit(conn.request.path).query).get("model", [""])[0]
        await conn.send(json.dumps({"type": "session.created", "session": {"model": model}}))
        if model.startswith("deaf-"):
            await conn.wait_closed()
            return
        async for raw in conn:
            text = raw if isinstance(raw, str) else raw.decode("utf-8", "replace")
            self._keep(session, text)
            if model.startswith("drop-"):
                assert conn.transport is not None
                conn.transport.abort()
                return
            if model.startswith("slow-"):
                await asyncio.sleep(SLOW_SECS)
            try:
                event = json.loads(text)
            except ValueError:
                event = {}
            if not isinstance(event, dict) or event.get("type") != "response.create":
                await conn.send(json.dumps({"type": "echo", "of": text}))
                continue
            if model.startswith("flood-"):
                chunk = "A" * FLOOD_CHUNK
                for _ in range(FLOOD_MESSAGES):
                    await conn.send(json.dumps({"type": "response.output_audio.delta", "delta": chunk}))
                continue
            for event in _openai_response(len(session.received)):
                await conn.send(json.dumps(event))

    async def _gemini(self, conn: ServerConnection, session: Handshake) -> None:
        async for raw in conn:
            text = raw if isinstance(raw, str) else raw.decode("utf-8", "replace")
            self._keep(session, text)
            message = json.loads(text)
            if "setup" in message:
                await conn.send(json.dumps({"setupComplete": {}}))
            elif "clientContent" in message:
                for part in ("Hello", " from Live"):
                    await conn.send(json.dumps({"serverContent": {"modelTurn": {"parts": [{"text": part}]}}}))
                await conn.send(
                    json.dumps({"serverContent": {"turnComplete": True}, "usageMetadata": GEMINI_USAGE})
                )


def _openai_response(n: int) -> Iterator[dict[str, Any]]:
    rid = f"resp_mock_{n}"
    yield {"type": "response.created", "response": {"id": rid, "status": "in_progress", "usage": None}}
    for piece in ("Hello", " from the mock"):
        yield {"type": "response.output_text.delta", "response_id": rid, "delta": piece}
    yield {"type": "response.output_audio.delta", "response_id": rid, "delta": "AAAAAAAA"}
    yield {"type": "response.done", "response": {"id": rid, "status": "completed", "usage": USAGE}}


def _choose_realtime(_conn: ServerConnection, offered: list[str]) -> Optional[str]:
    # OpenAI's browser client offers `realtime` (and its key entry, which must never arrive here).
    return "realtime" if "realtime" in offered else None
