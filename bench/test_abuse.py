"""Tests for the abuse driver's own logic (bench/abuse.py): the figures it derives and the config it
runs the relay with, plus its local upstream over a real socket. No timing is asserted."""

from __future__ import annotations

import asyncio
import json

import abuse


def test_percentile_is_nearest_rank():
    values = [float(v) for v in range(1, 101)]
    assert abuse.percentile(values, 50) == 50.0
    assert abuse.percentile(values, 99) == 99.0
    assert abuse.percentile(values, 100) == 100.0
    assert abuse.percentile([7.0], 99) == 7.0
    assert abuse.percentile([], 99) is None


def test_success_rate_counts_2xx_of_sent():
    t = abuse.Tally(sent=4)
    for code in (200, 201, 429, None):
        t.status(code)
    assert abuse.success_rate(t) == 0.5
    assert t.statuses == {"200": 1, "201": 1, "429": 1, "no answer": 1}
    assert abuse.success_rate(abuse.Tally()) is None


def test_vm_hwm_and_status_parsing():
    status = "Name:\trelayapi\nVmPeak:\t  9000 kB\nVmHWM:\t    6144 kB\nVmRSS:\t 5000 kB\n"
    assert abuse.parse_vm_hwm(status) == 6144 * 1024
    assert abuse.parse_vm_hwm("Name: x\n") is None
    assert abuse.status_of(b"HTTP/1.1 429 Too Many Requests\r\n\r\n") == 429
    assert abuse.status_of(b"garbage") is None


def test_relay_config_keeps_the_repository_limits():
    shipped = json.loads((abuse.ROOT / "config.json").read_text())
    cfg = abuse.relay_config(1234, 5678)
    assert cfg["server"]["port"] == 1234
    assert cfg["rate_limit"] == shipped["rate_limit"], "the abuse mix must run against the default limits"
    assert cfg["providers"]["openai"]["base_url"] == "http://127.0.0.1:5678/v1"
    assert cfg["store"] == {"type": "memory"}


def test_local_upstream_answers_keep_alive_requests():
    async def go() -> list[int | None]:
        server = await asyncio.start_server(abuse.upstream_conn, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        codes = []
        for _ in range(2):
            writer.write(abuse.post("/v1/chat/completions", b'{"a":1}'))
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
            codes.append(abuse.status_of(head))
            await reader.readexactly(len(abuse.UPSTREAM_BODY))
        writer.close()
        server.close()
        return codes

    assert asyncio.run(go()) == [200, 200]
