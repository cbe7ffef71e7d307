"""WebSocket sessions through the relay and through nginx's WebSocket proxy, side by side in one run.

Two figures per proxy (issue 14 §3), each against the same local echo upstream (this file run with
`--upstream`, on the load core):

- memory per idle session: the proxy's RSS with `BENCH_WS_SESSIONS` (1,000) sessions open and idle,
  minus its RSS before they were opened, divided by the sessions;
- CPU per echoed message: the proxy's CPU time (every thread's schedstat) over `BENCH_WS_SECONDS` of
  `BENCH_WS_CLIENTS` sessions each sending a 128-byte text message and waiting for its echo, divided
  by the messages echoed (each message crosses the proxy twice: to the upstream and back).

The proxy runs alone on core 0 (nginx `worker_processes 1`, the relay with one tokio worker); the
client and the upstream share core 1. nginx is configured as its documentation says for WebSocket:
`proxy_http_version 1.1` with the `Upgrade` and `Connection` headers passed on. Run with
`bench/run.sh ws` or, once the release relay is built, `taskset -c 1 .venv/bin/python bench/ws.py`.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import struct
import subprocess
import sys
import time

import bench as hb  # bench/bench.py: processes, nginx helpers, machine facts

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
# 128 bytes, about a small realtime event.
MESSAGE = b'{"type":"input_text","text":"' + b"x" * 96 + b'"}'


def accept_for(key: bytes) -> str:
    # RFC 6455 §4.2.2 fixes SHA-1 here; it is a handshake check, not a security function.
    return base64.b64encode(hashlib.sha1(key + GUID).digest()).decode()  # noqa: S324


def frame(payload: bytes, opcode: int = 0x1, mask: bytes | None = None) -> bytes:
    """One final frame; masked when `mask` is given (a client's frames must be)."""
    head = bytes([0x80 | opcode])
    bit = 0x80 if mask else 0
    n = len(payload)
    if n < 126:
        head += bytes([bit | n])
    elif n < 1 << 16:
        head += bytes([bit | 126]) + struct.pack("!H", n)
    else:
        head += bytes([bit | 127]) + struct.pack("!Q", n)
    if not mask:
        return head + payload
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


async def read_frame(r: asyncio.StreamReader) -> tuple[int, bytes]:
    """(opcode, unmasked payload) of the next frame."""
    b0, b1 = await r.readexactly(2)
    n = b1 & 0x7F
    if n == 126:
        (n,) = struct.unpack("!H", await r.readexactly(2))
    elif n == 127:
        (n,) = struct.unpack("!Q", await r.readexactly(8))
    mask = await r.readexactly(4) if b1 & 0x80 else None
    payload = await r.readexactly(n)
    if mask:
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return b0 & 0x0F, payload


# ---- the echo upstream ------------------------------------------------------------------------------


async def upstream_session(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    try:
        head = await r.readuntil(b"\r\n\r\n")
        key = next(
            line.split(b":", 1)[1].strip()
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"sec-websocket-key:")
        )
        w.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            + f"Sec-WebSocket-Accept: {accept_for(key)}\r\n\r\n".encode()
        )
        while True:
            op, payload = await read_frame(r)
            if op == 0x8:
                w.write(frame(payload[:2], 0x8))
                await w.drain()
                break
            if op in (0x1, 0x2):
                w.write(frame(payload, op))
                await w.drain()
    except (asyncio.IncompleteReadError, ConnectionError, StopIteration):
        pass
    finally:
        w.close()


async def serve_upstream() -> None:
    server = await asyncio.start_server(upstream_session, "127.0.0.1", 0, backlog=4096)
    print(f"listening {server.sockets[0].getsockname()[1]}", flush=True)
    async with server:
        await server.serve_forever()


# ---- the client -------------------------------------------------------------------------------------


async def open_session(port: int, path: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    r, w = await asyncio.open_connection("127.0.0.1", port)
    key = base64.b64encode(os.urandom(16))
    w.write(
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key.decode()}\r\n\r\n".encode()
    )
    head = await r.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 101") or accept_for(key).encode() not in head:
        raise RuntimeError(f"upgrade refused: {head[:200]!r}")
    return r, w


async def idle_sessions(port: int, path: str, n: int, pids: list[int]) -> dict:
    before = hb.rss_bytes(pids)
    gate = asyncio.Semaphore(64)

    async def one() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        async with gate:
            return await open_session(port, path)

    sessions = await asyncio.gather(*(one() for _ in range(n)))
    # Every session has proven a round trip: the proxy holds both legs of each.
    await asyncio.gather(*(echo_once(r, w) for r, w in sessions))
    during = 0
    for _ in range(5):
        await asyncio.sleep(0.2)
        during = max(during, hb.rss_bytes(pids))
    for _, w in sessions:
        w.write(frame(struct.pack("!H", 1000), 0x8, os.urandom(4)))
    await asyncio.gather(*(close_session(r, w) for r, w in sessions))
    return {"sessions": n, "rss_before": before, "rss_open": during, "rss_per_session": (during - before) / n}


async def echo_once(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    w.write(frame(MESSAGE, 0x1, os.urandom(4)))
    op, payload = await read_frame(r)
    if op != 0x1 or payload != MESSAGE:
        raise RuntimeError(f"bad echo: opcode {op}, {len(payload)} bytes")


async def close_session(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    try:
        while (await read_frame(r))[0] != 0x8:
            pass
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    w.close()


async def echo_rate(port: int, path: str, clients: int, seconds: float, pids: list[int]) -> dict:
    sessions = [await open_session(port, path) for _ in range(clients)]
    for r, w in sessions:
        await echo_once(r, w)
    stop = time.monotonic() + seconds
    counts = [0] * clients

    async def loop(i: int, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        mask = os.urandom(4)
        out = frame(MESSAGE, 0x1, mask)
        while time.monotonic() < stop:
            w.write(out)
            op, payload = await read_frame(r)
            if op != 0x1 or payload != MESSAGE:
                raise RuntimeError("bad echo")
            counts[i] += 1

    cpu0, t0 = hb.cpu_ns(pids), time.monotonic()
    await asyncio.gather(*(loop(i, r, w) for i, (r, w) in enumerate(sessions)))
    cpu1, t1 = hb.cpu_ns(pids), time.monotonic()
    for _, w in sessions:
        w.write(frame(struct.pack("!H", 1000), 0x8, os.urandom(4)))
    await asyncio.gather(*(close_session(r, w) for r, w in sessions))
    messages = sum(counts)
    return {
        "messages": messages,
        "msg_per_s": messages / (t1 - t0),
        "cpu_ns_per_msg": (cpu1 - cpu0) / messages,
    }


# ---- the proxies ------------------------------------------------------------------------------------


def nginx_ws_conf(work, port: int, up_port: int) -> str:
    return (
        hb.nginx_common(work, "ws-proxy")
        + "http {"
        + hb.nginx_http_common(work, "ws-proxy")
        + f"""
    access_log off;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location ~ ^/relayapi/[^/]+/(.*)$ {{
            proxy_pass http://127.0.0.1:{up_port}/v1/$1$is_args$args;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection "upgrade";
            proxy_set_header Authorization "Bearer {hb.FAKE_KEY}";
            proxy_read_timeout 3600s;
            proxy_send_timeout 3600s;
        }}
    }}
}}
"""
    )


def start_relay(b: hb.Bench, up_port: int) -> hb.Server:
    cfg = {
        "server": {"host": "127.0.0.1", "port": 0, "max_connections": 8192, "max_connections_per_ip": 8192},
        "rate_limit": {
            "requests_per_second": 0,
            "burst": 0,
            "ip_limit": {"requests_per_second": 0, "burst": 0},
        },
        "providers": {"openai": {"base_url": f"http://127.0.0.1:{up_port}/v1"}},
        "upstream": {"read_idle_timeout": 3600},
        "log": {"access": False},
        "store": {"type": "memory"},
    }
    path = b.work / "ws-relay.json"
    path.write_text(json.dumps(cfg))
    err = b.work / "ws-relay-stderr.log"
    srv = b.spawn(
        "relay",
        [str(b.s.relay_bin), "--config", str(path), "--rai", str(b.work / "bench.rai")],
        hb.PROXY_CORE,
        0,
        stdout=subprocess.DEVNULL,
        stderr=open(err, "wb"),  # noqa: SIM115 (owned by Popen)
        env={**os.environ, "TOKIO_WORKER_THREADS": "1"},
    )
    deadline = time.monotonic() + hb.START_TIMEOUT_S
    while srv.port == 0:
        if srv.proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"relay did not start:\n{err.read_text()}")
        for line in err.read_text().splitlines():
            if '"listening"' in line:
                srv.port = int(json.loads(line)["addr"].rsplit(":", 1)[1])
        time.sleep(0.05)
    hb.wait_port(srv.port, srv.proc, "relay")
    return srv


def measure(
    kind: str, b: hb.Bench, up_port: int, token: str, sessions: int, clients: int, seconds: float
) -> dict:
    if kind == "nginx":
        port = hb.free_port()
        srv = b.start_nginx("ws-proxy", nginx_ws_conf(b.work, port, up_port), hb.PROXY_CORE, port)
    else:
        srv = start_relay(b, up_port)
    path = f"/relayapi/{token}/realtime?model=gpt-realtime"
    try:
        pids = srv.pids()
        row = asyncio.run(idle_sessions(srv.port, path, sessions, pids))
        row |= asyncio.run(echo_rate(srv.port, path, clients, seconds, pids))
        return row
    finally:
        b.stop(srv)


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--upstream":
        asyncio.run(serve_upstream())
        return 0
    s = hb.Settings.from_env(dict(os.environ))
    sessions = int(os.environ.get("BENCH_WS_SESSIONS", "1000"))
    clients = int(os.environ.get("BENCH_WS_CLIENTS", "16"))
    seconds = float(os.environ.get("BENCH_WS_SECONDS", "10"))
    rounds = int(os.environ.get("BENCH_ROUNDS", "1"))
    meta = hb.machine_meta() | {"load_before": hb.load_avg()}
    b = hb.Bench(s)
    rows: dict[str, list[dict]] = {"nginx": [], "relay": []}
    try:
        up = b.spawn(
            "ws-upstream",
            [sys.executable, __file__, "--upstream"],
            hb.LOAD_CORE,
            0,
            stdout=subprocess.PIPE,
            text=True,
        )
        line = up.proc.stdout.readline()
        if not line.startswith("listening "):
            raise RuntimeError(f"echo upstream did not start: {line!r}")
        up.port = int(line.split()[1])
        subprocess.run(
            [
                str(s.relay_bin),
                "gen-rai",
                "--tenant",
                "bench",
                "--key-id",
                "bench-key",
                "--out",
                str(b.work / "bench.rai"),
            ],
            check=True,
        )
        token = hb.RelayAPIClient(str(b.work / "bench.rai")).create_token(
            api_key=hb.FAKE_KEY, max_calls=None, expire_seconds=86400
        )
        for i in range(rounds):
            for kind, done in rows.items():
                print(f"round {i + 1}/{rounds}: {kind}", file=sys.stderr, flush=True)
                done.append(measure(kind, b, up.port, token, sessions, clients, seconds))
    finally:
        b.close()
    meta["load_after"] = hb.load_avg()
    med = {k: hb.median_rows(v) for k, v in rows.items()}
    print(report(med, meta, sessions, clients, seconds))
    return 0


def report(rows: dict[str, dict], meta: dict, sessions: int, clients: int, seconds: float) -> str:
    n, r = rows["nginx"], rows["relay"]
    lines = [
        f"WebSocket proxying, {meta['date']}, {meta['machine']}",
        f"nginx {meta['nginx']}, relay {meta['commit']}",
        f"load average before {meta['load_before']}, after {meta['load_after']}",
        "",
        (
            f"| proxy | RSS per idle session ({sessions} open) | echo msg/s ({clients} clients, "
            f"{seconds:.0f} s) | CPU per echoed message |"
        ),
        "|---|---|---|---|",
    ]
    for name, row in (("nginx (proxy_http_version 1.1, Upgrade)", n), ("relay", r)):
        lines.append(
            f"| {name} | {row['rss_per_session'] / 1024:.1f} KiB | {row['msg_per_s']:.0f} "
            f"| {row['cpu_ns_per_msg'] / 1000:.1f} µs |"
        )
    lines.append(
        f"| relay / nginx | {hb.fmt_ratio(hb.ratio(r['rss_per_session'], n['rss_per_session']))} | "
        f"{hb.fmt_ratio(hb.ratio(r['msg_per_s'], n['msg_per_s']))} | "
        f"{hb.fmt_ratio(hb.ratio(r['cpu_ns_per_msg'], n['cpu_ns_per_msg']))} |"
    )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
