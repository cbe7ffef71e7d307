"""Tests for the WebSocket benchmark's own pieces (bench/ws.py): its frames, its echo upstream and the
nginx config it writes. No timing is asserted.

Run: .venv/bin/python -m pytest bench/
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

import ws


def test_accept_is_rfc_6455s_example() -> None:
    # RFC 6455 §1.3.
    assert ws.accept_for(b"dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536])
@pytest.mark.parametrize("masked", [False, True])
def test_frames_read_back_as_written(size: int, masked: bool) -> None:
    payload = os.urandom(size)

    async def roundtrip() -> tuple[int, bytes]:
        r = asyncio.StreamReader()
        r.feed_data(ws.frame(payload, 0x2, os.urandom(4) if masked else None))
        r.feed_eof()
        return await ws.read_frame(r)

    assert asyncio.run(roundtrip()) == (0x2, payload)


def test_the_echo_upstream_echoes_through_a_real_socket() -> None:
    async def run() -> None:
        server = await asyncio.start_server(ws.upstream_session, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            r, w = await ws.open_session(port, "/v1/realtime?model=m")
            await ws.echo_once(r, w)
            w.write(ws.frame(b"\x03\xe8", 0x8, os.urandom(4)))
            assert await ws.read_frame(r) == (0x8, b"\x03\xe8")
            w.close()

    asyncio.run(run())


def test_nginx_passes_the_upgrade_on(tmp_path: Path) -> None:
    conf = ws.nginx_ws_conf(tmp_path, 8080, 9090)
    assert "proxy_http_version 1.1;" in conf
    assert "proxy_set_header Upgrade $http_upgrade;" in conf
    assert 'proxy_set_header Connection "upgrade";' in conf
    assert "proxy_pass http://127.0.0.1:9090/v1/$1$is_args$args;" in conf
