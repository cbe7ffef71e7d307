"""The abuse mix: hostile token holders and strangers attack the relay while valid clients call it at a
steady rate. Prints (and saves under bench/results/) the valid clients' success rate and latency, the
relay's peak memory and its log volume, so the README's security bounds are measured, not assumed.

Every client is on loopback; distinct 127.0.0.x source addresses stand for distinct clients. What runs,
all at once, for `ABUSE_SECONDS` (default 30):

- valid: `ABUSE_VALID_CLIENTS` addresses (127.0.0.20 on), each one POST a second with a good token
  (inside the default per-address limit of 2 requests/s), a new connection per call;
- junk: 10 addresses (127.0.0.2-11) sending garbage tokens as fast as they can on keep-alive connections;
- idle: one address (127.0.0.50) opening as many idle connections as the relay accepts;
- big bodies: 5 addresses (127.0.0.60-64) posting 32 MiB bodies `{"model":"m","x":[0,0,...]}` with a
  token whose policy reads the body (and which allows 10 calls a minute, as a page's token would), and
  with a used-up token;
- drip: 5 addresses (127.0.0.70-74), 4 connections each, announcing 32 MiB and sending a byte every 2 s.

The relay runs with the repository's default limits (config.json's values, usage in memory) against a
local JSON upstream started here. Run: `python3 bench/abuse.py` after `cargo build --release`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
FAKE_KEY = "abuse-test-key-0001"
BIG_BODY_BYTES = 32 * 1024 * 1024
UPSTREAM_BODY = b'{"id":"x","object":"chat.completion","choices":[],"usage":{"total_tokens":1}}'
# How long a started server may take to listen.
START_TIMEOUT_S = 20.0


@dataclass
class Settings:
    seconds: int = 30
    valid_clients: int = 4
    idle_target: int = 6000
    relay_bin: Path = ROOT / "target" / "release" / "relayapi"

    @staticmethod
    def from_env() -> Settings:
        s = Settings()
        s.seconds = int(os.environ.get("ABUSE_SECONDS", s.seconds))
        s.valid_clients = int(os.environ.get("ABUSE_VALID_CLIENTS", s.valid_clients))
        s.idle_target = int(os.environ.get("ABUSE_IDLE_CONNECTIONS", s.idle_target))
        s.relay_bin = Path(os.environ.get("RELAY_BIN", s.relay_bin))
        return s


@dataclass
class Tally:
    """What one group of clients saw."""

    sent: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    errors: int = 0
    latencies_ms: list[float] = field(default_factory=list)

    def status(self, code: int | None) -> None:
        key = str(code) if code is not None else "no answer"
        self.statuses[key] = self.statuses.get(key, 0) + 1


def percentile(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile (p in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(p / 100 * len(ordered))))
    return ordered[rank - 1]


def success_rate(t: Tally) -> float | None:
    if t.sent == 0:
        return None
    ok = sum(n for code, n in t.statuses.items() if code.startswith("2"))
    return ok / t.sent


def parse_vm_hwm(status_text: str) -> int | None:
    """Peak resident set size in bytes from /proc/<pid>/status."""
    for line in status_text.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return None


def content_length(head: bytes) -> int:
    """The Content-Length of a message head; 0 when it has none."""
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value.strip())
    return 0


def status_of(head: bytes) -> int | None:
    """The status code of a response head, or None when it is not one."""
    parts = head.split(b" ", 2)
    if len(parts) >= 2 and parts[0].startswith(b"HTTP/1.") and parts[1].isdigit():
        return int(parts[1])
    return None


# -- the local upstream ---------------------------------------------------------------------------


async def upstream_conn(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = content_length(head)
            if length:
                await reader.readexactly(length)
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
                % (len(UPSTREAM_BODY), UPSTREAM_BODY)
            )
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
        pass
    except asyncio.CancelledError:
        # The run is over and the loop is closing: the relay's idle pooled connections end here.
        return
    finally:
        writer.close()


# -- clients --------------------------------------------------------------------------------------


async def one_request(
    port: int, source: str, request: bytes, timeout: float = 10.0
) -> tuple[int | None, float]:
    started = time.monotonic()
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0)), timeout
    )
    try:
        writer.write(request)
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
        return status_of(head), (time.monotonic() - started) * 1000
    finally:
        writer.close()


def post_head(path: str, length: int) -> bytes:
    """The head of a JSON POST announcing `length` body bytes."""
    return (
        f"POST {path} HTTP/1.1\r\nHost: relay\r\ncontent-type: application/json\r\n"
        f"content-length: {length}\r\n\r\n"
    ).encode()


def post(path: str, body: bytes) -> bytes:
    return post_head(path, len(body)) + body


async def valid_client(port: int, source: str, token: str, until: float, t: Tally) -> None:
    body = b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}'
    req = post(f"/relayapi/{token}/chat/completions", body)
    next_at = time.monotonic()
    while next_at < until:
        await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        next_at += 1.0
        t.sent += 1
        try:
            code, ms = await one_request(port, source, req)
            t.status(code)
            t.latencies_ms.append(ms)
        except (OSError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            t.errors += 1
            t.status(None)


async def junk_client(port: int, source: str, until: float, t: Tally) -> None:
    req = post("/relayapi/rt1.AAAAjunkjunkjunkjunk/chat/completions", b"{}")
    while time.monotonic() < until:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
        except OSError:
            t.errors += 1
            await asyncio.sleep(0.05)
            continue
        try:
            while time.monotonic() < until:
                writer.write(req)
                await writer.drain()
                t.sent += 1
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
                t.status(status_of(head))
                await reader.readexactly(content_length(head))
                if b"connection: close" in head.lower():
                    break
        except (OSError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            t.errors += 1
        finally:
            writer.close()


async def still_open(reader: asyncio.StreamReader) -> bool:
    """True when the relay has neither closed this idle connection nor answered on it (a connection
    over the per-address cap gets a short 429 and is closed)."""
    try:
        await asyncio.wait_for(reader.read(1), 0.2)
    except TimeoutError:
        return True
    except OSError:
        return False
    return False


async def idle_client(port: int, source: str, target: int, until: float, t: Tally) -> None:
    held: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    while len(held) < target and time.monotonic() < until:
        try:
            opening = asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
            conn = await asyncio.wait_for(opening, 2)
            held.append(conn)
            t.sent += 1
        except (OSError, TimeoutError):
            t.errors += 1
            await asyncio.sleep(0.01)
    await asyncio.sleep(max(0.0, until - time.monotonic()))
    # How many of the connections the kernel accepted the relay still keeps open: its per-address cap.
    alive = await asyncio.gather(*(still_open(r) for r, _ in held))
    t.statuses["open_at_end"] = sum(alive)
    for _, w in held:
        w.close()


async def big_body_client(port: int, source: str, token: str, until: float, t: Tally) -> None:
    prefix = b'{"model":"m","x":['
    body = prefix + b"0," * ((BIG_BODY_BYTES - len(prefix) - 3) // 2) + b"0]}"
    head = post_head(f"/relayapi/{token}/chat/completions", len(body))
    while time.monotonic() < until:
        t.sent += 1
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
        except OSError:
            t.errors += 1
            await asyncio.sleep(0.1)
            continue
        try:
            writer.write(head)
            view = memoryview(body)
            for i in range(0, len(body), 1 << 20):
                writer.write(view[i : i + (1 << 20)])
                await asyncio.wait_for(writer.drain(), 30)
            resp = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
            t.status(status_of(resp))
        except (OSError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            # The relay answering early and closing is a success for it; count what we saw.
            t.errors += 1
        finally:
            writer.close()


async def drip_client(port: int, source: str, token: str, until: float, t: Tally) -> None:
    head = post_head(f"/relayapi/{token}/chat/completions", BIG_BODY_BYTES) + b"{"
    while time.monotonic() < until:
        t.sent += 1
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
        except OSError:
            t.errors += 1
            await asyncio.sleep(0.5)
            continue
        try:
            writer.write(head)
            await writer.drain()
            while time.monotonic() < until:
                with contextlib.suppress(TimeoutError):
                    resp = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 2)
                    t.status(status_of(resp))
                    break
                writer.write(b" ")
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            t.errors += 1
        finally:
            writer.close()


# -- orchestration --------------------------------------------------------------------------------


def mint(relay_bin: Path, rai: Path, *extra: str) -> str:
    out = subprocess.run(
        [str(relay_bin), "mint", "--rai", str(rai), "--provider", "openai", "--key-env", "ABUSE_KEY", *extra],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "ABUSE_KEY": FAKE_KEY},
    )
    return out.stdout.strip()


async def wait_listening(port: int) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            _, w = await asyncio.open_connection("127.0.0.1", port)
            w.close()
            return
        except OSError:
            await asyncio.sleep(0.05)
    raise RuntimeError(f"nothing listening on {port}")


def relay_config(port: int, up_port: int) -> dict:
    # The repository's config.json (its limits are the defaults a user starts with), pointed at the
    # local upstream, with usage kept in memory.
    cfg = json.loads((ROOT / "config.json").read_text())
    cfg["server"]["port"] = port
    cfg["providers"] = {"openai": {"base_url": f"http://127.0.0.1:{up_port}/v1"}}
    cfg["store"] = {"type": "memory"}
    return cfg


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def run(s: Settings) -> dict:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    work = Path(tempfile.mkdtemp(prefix="relay-abuse-"))
    upstream = await asyncio.start_server(upstream_conn, "127.0.0.1", 0)
    up_port = upstream.sockets[0].getsockname()[1]
    port = free_port()
    rai = work / "abuse.rai"
    subprocess.run(
        [str(s.relay_bin), "gen-rai", "--tenant", "abuse", "--port", str(port), "--out", str(rai)],
        check=True,
        capture_output=True,
    )
    good = mint(s.relay_bin, rai, "--max-calls", "0", "--expire-seconds", "3600")
    # The attackers hold what a page hands every visitor: a token whose policy reads the body and that
    # carries its own rate limit, and one whose calls are used up.
    inspected = mint(s.relay_bin, rai, "--max-calls", "0", "--model", "gpt-4o-mini", "--rate", "10/60")
    used_up = mint(s.relay_bin, rai, "--max-calls", "1", "--model", "gpt-4o-mini")
    (work / "config.json").write_text(json.dumps(relay_config(port, up_port)))
    log_path = work / "access.log"
    with open(log_path, "wb") as log_out, open(work / "relay.err", "wb") as log_err:
        relay = subprocess.Popen(
            [str(s.relay_bin), "--config", str(work / "config.json"), "--rai", str(rai)],
            stdout=log_out,
            stderr=log_err,
            preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard)),  # noqa: PLW1509
        )
    try:
        await wait_listening(port)
        # Spend the used-up token's only call.
        await one_request(port, "127.0.0.99", post(f"/relayapi/{used_up}/chat/completions", b"{}"))
        baseline = parse_vm_hwm(Path(f"/proc/{relay.pid}/status").read_text())
        until = time.monotonic() + s.seconds
        groups = {name: Tally() for name in ("valid", "junk", "idle", "big_body", "drip")}
        tasks = [
            valid_client(port, f"127.0.0.{20 + i}", good, until, groups["valid"])
            for i in range(s.valid_clients)
        ]
        tasks += [junk_client(port, f"127.0.0.{2 + i}", until, groups["junk"]) for i in range(10)]
        tasks.append(idle_client(port, "127.0.0.50", s.idle_target, until, groups["idle"]))
        for i in range(5):
            for tok in (inspected, used_up):
                tasks.append(big_body_client(port, f"127.0.0.{60 + i}", tok, until, groups["big_body"]))
            for _ in range(4):
                tasks.append(drip_client(port, f"127.0.0.{70 + i}", inspected, until, groups["drip"]))
        await asyncio.gather(*tasks)
        peak = parse_vm_hwm(Path(f"/proc/{relay.pid}/status").read_text())
    finally:
        relay.terminate()
        try:
            relay.wait(timeout=40)
        except subprocess.TimeoutExpired:
            relay.kill()
        upstream.close()
    log_lines = sum(1 for _ in open(log_path, "rb"))  # noqa: SIM115
    valid = groups["valid"]
    return {
        "when": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "seconds": s.seconds,
        "valid_success_rate": success_rate(valid),
        "valid_p50_ms": percentile(valid.latencies_ms, 50),
        "valid_p99_ms": percentile(valid.latencies_ms, 99),
        "relay_rss_start_mib": (baseline or 0) / 2**20,
        "relay_peak_rss_mib": (peak or 0) / 2**20,
        "access_log_lines": log_lines,
        "groups": {name: asdict(t) | {"latencies_ms": None} for name, t in groups.items()},
    }


def report(r: dict) -> str:
    def f(v: float | None, spec: str) -> str:
        return "–" if v is None else format(v, spec)

    lines = [
        f"abuse mix, {r['seconds']} s, {r['when']}",
        (
            f"valid clients: success {f(r['valid_success_rate'], '.1%')}, "
            f"p50 {f(r['valid_p50_ms'], '.1f')} ms, p99 {f(r['valid_p99_ms'], '.1f')} ms"
        ),
        f"relay RSS: {r['relay_rss_start_mib']:.1f} MiB at start, peak {r['relay_peak_rss_mib']:.1f} MiB",
        f"access log: {r['access_log_lines']} lines",
    ]
    for name, g in r["groups"].items():
        lines.append(f"  {name:9} sent {g['sent']:7}  errors {g['errors']:6}  answers {g['statuses']}")
    return "\n".join(lines)


def main() -> int:
    s = Settings.from_env()
    if not s.relay_bin.exists():
        hint = "run `cargo build --release` first"
        print(f"abuse.py: no relay binary at {s.relay_bin}; {hint}", file=sys.stderr)
        return 2
    r = asyncio.run(run(s))
    text = report(r)
    print(text)
    out = BENCH / "results"
    out.mkdir(exist_ok=True)
    stamp = r["when"].replace(":", "")
    (out / f"abuse-{stamp}.json").write_text(json.dumps(r, indent=2))
    (out / f"abuse-{stamp}.txt").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
