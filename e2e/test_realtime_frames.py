"""Frame-level behaviour of the relay's WebSocket sessions, from a raw socket client (RFC 6455 frames
written by hand) against the release binary and `mock_realtime.py`: fragmented messages with control
frames between fragments, frames the relay must refuse (oversized: 1009; unmasked, bad close code: 1002),
either side vanishing without a close frame, a peer that stops reading while the other keeps sending (the
relay's resident memory stays bounded), and a slow provider session that does not hold up another one.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import struct
import time
from typing import Optional

import pytest

from relayapi import RelayAPIClient

from .harness import REAL_KEY, Relay
from .mock_realtime import FLOOD_CHUNK, FLOOD_MESSAGES, SLOW_SECS, MockRealtime
from .realtime_support import MODEL, rss_kib, trust_test_ca

#: Seconds any single read of these tests may wait.
READ_TIMEOUT_SECS = 10.0
#: Growth of the relay's resident memory allowed while a stalled peer is pushed `PUSH_BYTES`.
RSS_BOUND_KIB = 24 * 1024
PUSH_BYTES = 50 * 1024 * 1024
PUSH_FRAME = 256 * 1024


class Raw:
    """A WebSocket client socket whose every byte the test writes itself."""

    def __init__(self, sdk: RelayAPIClient, model: str = MODEL, token: Optional[str] = None) -> None:
        self.token = token or sdk.create_token(api_key=REAL_KEY, max_calls=None)
        host, port = sdk.origin.split("//", 1)[1].rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=READ_TIMEOUT_SECS)
        if sdk.origin.startswith("https:"):
            self.sock = trust_test_ca().wrap_socket(self.sock, server_hostname=host)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                f"GET /relayapi/{self.token}/realtime?model={model} HTTP/1.1\r\nhost: {host}\r\n"
                "upgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-version: 13\r\n"
                f"sec-websocket-key: {key}\r\n\r\n"
            ).encode()
        )
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            got = self.sock.recv(65536)
            assert got, f"closed during the handshake: {self.buf!r}"
            self.buf += got
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 101 "), head

    def send_frame(self, op: int, payload: bytes, *, fin: bool = True, mask: bool = True) -> None:
        self.sock.sendall(frame(op, payload, fin=fin, mask=mask))

    def send_text(self, text: str) -> None:
        self.send_frame(0x1, text.encode())

    def _need(self, n: int) -> bytes:
        while len(self.buf) < n:
            got = self.sock.recv(1 << 20)
            if not got:
                raise EOFError(f"closed with {len(self.buf)} of {n} bytes")
            self.buf += got
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_frame(self) -> tuple[bool, int, bytes]:
        """(fin, opcode, payload) of the next server frame, which must be unmasked."""
        b0, b1 = self._need(2)
        assert b1 & 0x80 == 0, "a server frame was masked"
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", self._need(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", self._need(8))[0]
        return bool(b0 & 0x80), b0 & 0x0F, self._need(n)

    def read_message(self) -> tuple[int, bytes]:
        """The next data message (fragments joined) or control frame, as (opcode, payload)."""
        parts: list[bytes] = []
        first = 0
        while True:
            fin, op, payload = self.read_frame()
            if op >= 0x8:
                return op, payload
            first = first or op
            parts.append(payload)
            if fin:
                return first, b"".join(parts)

    def read_json(self) -> dict[str, object]:
        op, payload = self.read_message()
        assert op == 0x1, (op, payload[:200])
        return json.loads(payload)  # type: ignore[no-any-return]

    def read_close(self) -> int:
        """The code of the close frame that comes next (data before it skipped)."""
        while True:
            op, payload = self.read_message()
            if op == 0x8:
                return int(struct.unpack("!H", payload[:2])[0])

    def ends(self) -> str:
        """How the relay ends the connection from here: `close:<code>` or `eof` without a close frame."""
        try:
            return f"close:{self.read_close()}"
        except EOFError:
            return "eof"

    def close(self) -> None:
        self.sock.close()


def frame(op: int, payload: bytes, *, fin: bool = True, mask: bool = True) -> bytes:
    head = bytes([(0x80 if fin else 0) | op])
    m = 0x80 if mask else 0
    n = len(payload)
    if n < 126:
        head += bytes([m | n])
    elif n < 1 << 16:
        head += bytes([m | 126]) + struct.pack("!H", n)
    else:
        head += bytes([m | 127]) + struct.pack("!Q", n)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def wait_for(cond: object, timeout: float = READ_TIMEOUT_SECS) -> None:
    deadline = time.monotonic() + timeout
    while not cond():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


def test_fragments_and_control_frames_between_them(rt: MockRealtime, rt_sdk: RelayAPIClient) -> None:
    c = Raw(rt_sdk)
    assert c.read_json()["type"] == "session.created"
    text = json.dumps({"type": "conversation.item.create", "n": "x" * 300})
    data = text.encode()
    c.send_frame(0x1, data[:100], fin=False)
    c.send_frame(0x9, b"between")  # a ping between fragments
    c.send_frame(0x0, data[100:200], fin=False)
    c.send_frame(0xA, b"unsolicited")  # a pong too
    c.send_frame(0x0, data[200:], fin=True)
    # The provider's pong for the ping comes back through the relay, then the reassembled echo.
    assert c.read_message() == (0xA, b"between")
    assert c.read_json() == {"type": "echo", "of": text}
    assert rt.received(0) == [text]
    c.close()


def test_an_oversized_frame_is_closed_with_1009(rt: MockRealtime, rt_sdk: RelayAPIClient) -> None:
    c = Raw(rt_sdk)
    assert c.read_json()["type"] == "session.created"
    # Only the head of a 17 MiB frame: the relay must refuse it from the head alone.
    c.sock.sendall(bytes([0x82, 0x80 | 127]) + struct.pack("!Q", 17 * 1024 * 1024) + os.urandom(4))
    assert c.ends() == "close:1009"
    c.close()
    assert rt.received(0) == []


def test_an_unmasked_client_frame_is_closed_with_1002(rt: MockRealtime, rt_sdk: RelayAPIClient) -> None:
    c = Raw(rt_sdk)
    assert c.read_json()["type"] == "session.created"
    c.send_frame(0x1, b'{"type":"x"}', mask=False)
    assert c.ends() == "close:1002"
    c.close()
    assert rt.received(0) == []


def test_an_invalid_close_code_is_closed_with_1002(rt: MockRealtime, rt_sdk: RelayAPIClient) -> None:
    c = Raw(rt_sdk)
    assert c.read_json()["type"] == "session.created"
    c.send_frame(0x8, struct.pack("!H", 1005))  # 1005 may never be sent (RFC 6455 §7.4.1)
    assert c.ends() == "close:1002"
    c.close()


def test_a_clean_close_is_passed_both_ways(rt: MockRealtime, rt_sdk: RelayAPIClient) -> None:
    c = Raw(rt_sdk)
    assert c.read_json()["type"] == "session.created"
    c.send_frame(0x8, struct.pack("!H", 1000) + b"bye")
    assert c.ends() == "close:1000"
    wait_for(lambda: rt.close_codes().get(0) is not None)
    assert rt.close_codes()[0] == 1000
    c.close()


def test_a_client_that_vanishes_ends_the_provider_session(rt: MockRealtime, rt_sdk: RelayAPIClient) -> None:
    c = Raw(rt_sdk)
    assert c.read_json()["type"] == "session.created"
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    c.close()  # a reset, no close frame
    wait_for(lambda: rt.close_codes().get(0) is not None)
    # The provider is told with a close frame too, not left with an abnormal 1006.
    assert rt.close_codes()[0] == 1001


def test_a_provider_that_vanishes_ends_the_client_session(rt: MockRealtime, rt_sdk: RelayAPIClient) -> None:
    c = Raw(rt_sdk, model="drop-1")
    assert c.read_json()["type"] == "session.created"
    c.send_text('{"type":"anything"}')
    started = time.monotonic()
    end = c.ends()
    assert time.monotonic() - started < 5
    # Told with a close frame (a browser would otherwise see an abnormal 1006 and no reason).
    assert end == "close:1011", end
    c.close()


@pytest.mark.parametrize("scheme", ["plain", "tls"])
def test_a_client_that_stops_reading_keeps_the_relay_bounded(
    request: pytest.FixtureRequest, rt: MockRealtime, scheme: str
) -> None:
    """The provider pushes FLOOD_MESSAGES x 1 MiB audio deltas; the client reads none of them for a while,
    then everything arrives (over TLS too: nothing may stay behind in the relay's TLS buffer)."""
    rt_relay: Relay = request.getfixturevalue("rt_relay" if scheme == "plain" else "rt_tls_relay")
    rt_sdk = RelayAPIClient(rt_relay.rai_for_client(), timeout=30)
    c = Raw(rt_sdk, model="flood-1")
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    assert c.read_json()["type"] == "session.created"
    before = rss_kib(rt_relay.proc.pid)
    c.send_text('{"type":"response.create"}')
    peak = before
    for _ in range(20):
        time.sleep(0.05)
        peak = max(peak, rss_kib(rt_relay.proc.pid))
    assert peak - before < RSS_BOUND_KIB, (before, peak)
    # The session is only held up, not broken: everything arrives once the client reads again.
    got = 0
    for _ in range(FLOOD_MESSAGES):
        op, payload = c.read_message()
        assert op == 0x1
        got += len(payload)
        peak = max(peak, rss_kib(rt_relay.proc.pid))
    assert got > FLOOD_MESSAGES * FLOOD_CHUNK
    assert peak - before < RSS_BOUND_KIB, (before, peak)
    c.close()


def test_a_provider_that_stops_reading_keeps_the_relay_bounded(
    rt: MockRealtime, rt_relay: Relay, rt_sdk: RelayAPIClient
) -> None:
    """The client pushes up to PUSH_BYTES to a provider that reads nothing: the relay stops reading too."""
    c = Raw(rt_sdk, model="deaf-1")
    assert c.read_json()["type"] == "session.created"
    before = rss_kib(rt_relay.proc.pid)
    one = frame(0x2, os.urandom(PUSH_FRAME))
    sent = 0
    c.sock.settimeout(1.0)
    peak = before
    try:
        while sent < PUSH_BYTES:
            c.sock.sendall(one)
            sent += len(one)
            peak = max(peak, rss_kib(rt_relay.proc.pid))
    except (socket.timeout, OSError):
        pass  # the relay stopped reading: back-pressure reached the client
    peak = max(peak, rss_kib(rt_relay.proc.pid))
    assert sent < PUSH_BYTES, "50 MiB went somewhere although the provider read nothing"
    assert peak - before < RSS_BOUND_KIB, (before, peak, sent)
    c.close()


def test_a_slow_provider_session_does_not_hold_up_another(rt: MockRealtime, rt_sdk: RelayAPIClient) -> None:
    slow = Raw(rt_sdk, model="slow-1")
    assert slow.read_json()["type"] == "session.created"
    slow.send_text('{"type":"response.create"}')
    started = time.monotonic()
    fast = Raw(rt_sdk)
    assert fast.read_json()["type"] == "session.created"
    fast.send_text('{"type":"response.create"}')
    while fast.read_json()["type"] != "response.done":
        pass
    assert time.monotonic() - started < SLOW_SECS / 2
    while slow.read_json()["type"] != "response.done":
        pass
    assert time.monotonic() - started >= SLOW_SECS
    fast.close()
    slow.close()
