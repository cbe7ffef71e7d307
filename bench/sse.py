"""Server-sent events for the benchmark: a tiny provider that streams N events M ms apart, and a client
that holds many streams open through a proxy while the caller samples the proxy's memory and times
every event (time to the first one, the gap between two, and how long each took from the provider).

Both sides speak raw HTTP/1.1 over asyncio so that neither needs a third-party package and neither
buffers a whole stream: the point is to keep hundreds of streams open at once on a shared core.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import re
import ssl
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

# Big enough that a burst of a few hundred connects does not overflow into SYN retries (asyncio's
# default is 100), which would show up as one-second stalls unrelated to the proxy under test.
LISTEN_BACKLOG = 4096
# A request head larger than this is not one of ours; stop reading instead of growing a buffer.
MAX_HEAD_BYTES = 65536


# The usage a real provider reports for one of these streams (20 parts of a short answer).
STREAM_USAGE = {"prompt_tokens": 9, "completion_tokens": 20, "total_tokens": 29}
# Response header that tells the client the provider was asked for usage: the relay asks only for a
# metered (budgeted) stream, so the bench can check that a budget row really went through the meter.
USAGE_ASKED_HEADER = b"x-bench-usage-asked"
# Each event carries the provider's CLOCK_MONOTONIC (shared by every process on the machine) in µs, so
# the client can tell how long the event spent between the provider and itself.
SENT_AT = re.compile(rb'"bench_sent_us":(\d+)')


def event_payload(i: int, sent_us: int = 0) -> bytes:
    """One SSE event shaped like an OpenAI chat completion chunk (about 220 bytes on the wire)."""
    chunk = {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "bench-model",
        "choices": [{"index": 0, "delta": {"content": f"part{i} "}, "finish_reason": None}],
        "bench_sent_us": sent_us,
    }
    return b"data: " + json.dumps(chunk, separators=(",", ":")).encode() + b"\n\n"


def usage_payload() -> bytes:
    """The usage-only chunk OpenAI sends last when asked with `stream_options.include_usage`: empty
    `choices`, the whole call's `usage`."""
    chunk = {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "bench-model",
        "choices": [],
        "usage": STREAM_USAGE,
    }
    return b"data: " + json.dumps(chunk, separators=(",", ":")).encode() + b"\n\n"


def wants_usage(body: bytes) -> bool:
    """Whether a chat request asks for the usage chunk, as OpenAI reads it."""
    try:
        d = json.loads(body)
    except ValueError:
        return False
    opts = d.get("stream_options") if isinstance(d, dict) else None
    return isinstance(opts, dict) and opts.get("include_usage") is True


def now_us() -> int:
    return time.monotonic_ns() // 1000


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


async def read_head(reader: asyncio.StreamReader) -> bytes | None:
    """Read one request or response head; None on a clean EOF before any byte."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as e:
        if e.partial:
            raise ConnectionError("connection closed inside a head") from e
        return None
    except asyncio.LimitOverrunError as e:
        raise ConnectionError("head too large") from e
    return head


def header_value(head: bytes, name: bytes) -> bytes | None:
    for line in head.split(b"\r\n")[1:]:
        k, sep, v = line.partition(b":")
        if sep and k.strip().lower() == name:
            return v.strip()
    return None


# ------------------------------------------------------------------------------------------------
# Upstream
# ------------------------------------------------------------------------------------------------


async def serve_stream(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    events: int,
    interval: float,
) -> None:
    try:
        while True:
            head = await read_head(reader)
            if head is None:
                return
            length = int(header_value(head, b"content-length") or b"0")
            body = await reader.readexactly(length) if length else b""
            usage = wants_usage(body)
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                b"cache-control: no-cache\r\ntransfer-encoding: chunked\r\n"
                + (USAGE_ASKED_HEADER + b": 1\r\n" if usage else b"")
                + b"\r\n"
                + chunk(event_payload(0, now_us()))
            )
            await writer.drain()
            for i in range(1, events):
                await asyncio.sleep(interval)
                writer.write(chunk(event_payload(i, now_us())))
                await writer.drain()
            # As OpenAI does: the usage chunk right after the last part, then the end marker.
            tail = chunk(usage_payload()) if usage else b""
            writer.write(tail + chunk(b"data: [DONE]\n\n") + b"0\r\n\r\n")
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError, ValueError):
        pass
    finally:
        writer.close()


async def start_upstream(
    port: int, events: int, interval: float, host: str = "127.0.0.1", tls: ssl.SSLContext | None = None
) -> asyncio.Server:
    """The SSE upstream on `host:port`; HTTPS with `tls` (a server context), as providers are."""
    return await asyncio.start_server(
        lambda r, w: serve_stream(r, w, events, interval),
        host,
        port,
        backlog=LISTEN_BACKLOG,
        limit=MAX_HEAD_BYTES,
        ssl=tls,
    )


def server_tls(chain: str, key: str) -> ssl.SSLContext:
    """A server context sending `chain` (leaf first) with `key`; session tickets on, as OpenSSL's default."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(chain, key)
    return ctx


async def _serve_forever(port: int, events: int, interval: float, tls: ssl.SSLContext | None) -> None:
    server = await start_upstream(port, events, interval, tls=tls)
    # The orchestrator reads the bound port from this line (port 0 picks a free one).
    print(f"listening {server.sockets[0].getsockname()[1]}", flush=True)
    async with server:
        await server.serve_forever()


# ------------------------------------------------------------------------------------------------
# Client
# ------------------------------------------------------------------------------------------------


@dataclass
class StreamResult:
    status: int = 0
    events: int = 0
    done: bool = False
    error: str | None = None
    # Whether the provider said it was asked for usage (USAGE_ASKED_HEADER passed on by the proxy).
    usage_asked: bool = False
    # Seconds from writing the request to the first event.
    first_event_s: float | None = None
    # Seconds between consecutive events, as the client received them.
    gaps_s: list[float] = field(default_factory=list)
    # Seconds from the provider writing each event to the client reading it.
    lags_s: list[float] = field(default_factory=list)
    sent_at: float = 0.0
    last_at: float = 0.0

    def saw_event(self, event: bytes) -> None:
        now = time.monotonic()
        self.events += 1
        if self.events == 1:
            self.first_event_s = now - self.sent_at
        else:
            self.gaps_s.append(now - self.last_at)
        self.last_at = now
        m = SENT_AT.search(event)
        if m:
            self.lags_s.append(max(0, now_us() - int(m.group(1))) / 1e6)


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


@dataclass
class LoadResult:
    streams: list[StreamResult] = field(default_factory=list)
    # Proxy RSS in bytes sampled while every stream was open (the largest sample).
    rss_open: int = 0
    seconds: float = 0.0
    # Whether the first stream ended before the last one began: the streams were then never all open
    # at once, nothing was sampled, and the memory figure is missing rather than understated.
    never_all_open: bool = False

    @property
    def complete(self) -> int:
        """Streams that got a 200, every event and the final `[DONE]`."""
        return sum(1 for s in self.streams if s.status == 200 and s.done)

    @property
    def errors(self) -> list[str]:
        return [s.error or f"status {s.status}" for s in self.streams if not s.done]

    def timing_ms(self) -> dict[str, float | None]:
        """Time to the first event (over streams), gap between events and provider-to-client lag (over
        every event of every stream), p50 and p99, in milliseconds."""
        ttfe = [s.first_event_s for s in self.streams if s.first_event_s is not None]
        gaps = [g for s in self.streams for g in s.gaps_s]
        lags = [x for s in self.streams for x in s.lags_s]
        out: dict[str, float | None] = {}
        for name, values in (("ttfe", ttfe), ("gap", gaps), ("lag", lags)):
            for q in (50, 99):
                v = percentile(values, q)
                out[f"sse_{name}_p{q}_ms"] = None if v is None else v * 1e3
        return out


async def read_chunked_events(reader: asyncio.StreamReader, res: StreamResult, on_event) -> None:
    """Count SSE events in a chunked body until its last chunk (RFC 9112 §7.1)."""
    pending = b""
    while True:
        size_line = await reader.readuntil(b"\r\n")
        size = int(size_line.split(b";")[0].strip(), 16)
        if size == 0:
            await reader.readuntil(b"\r\n")
            return
        pending += (await reader.readexactly(size + 2))[:-2]
        while b"\n\n" in pending:
            event, pending = pending.split(b"\n\n", 1)
            if event.startswith(b"data: [DONE]"):
                res.done = True
            elif event.startswith(b"data:"):
                res.saw_event(event)
                on_event(res)


async def one_stream(
    host: str,
    port: int,
    path: str,
    headers: dict[str, str],
    body: bytes,
    res: StreamResult,
    on_event,
    tls: ssl.SSLContext | None = None,
) -> None:
    writer = None
    try:
        reader, writer = await asyncio.open_connection(host, port, limit=MAX_HEAD_BYTES, ssl=tls)
        extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        res.sent_at = time.monotonic()
        writer.write(
            f"POST {path} HTTP/1.1\r\nhost: {host}:{port}\r\ncontent-type: application/json\r\n"
            f"accept: text/event-stream\r\ncontent-length: {len(body)}\r\n{extra}\r\n".encode()
            + body
        )
        await writer.drain()
        head = await read_head(reader)
        if head is None:
            raise ConnectionError("closed before a response")
        res.status = int(head.split(b" ", 2)[1])
        if res.status != 200:
            res.error = f"status {res.status}: {head.splitlines()[0].decode(errors='replace')}"
            return
        res.usage_asked = header_value(head, USAGE_ASKED_HEADER) == b"1"
        te = (header_value(head, b"transfer-encoding") or b"").lower()
        if b"chunked" not in te:
            raise ConnectionError("expected a chunked event stream")
        await read_chunked_events(reader, res, on_event)
    except (OSError, ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as e:
        res.error = f"{type(e).__name__}: {e}"
    finally:
        if writer is not None:
            writer.close()


async def hold_streams(
    host: str,
    port: int,
    path: str,
    streams: int,
    sample_rss: Callable[[], int],
    headers: dict[str, str] | None = None,
    timeout: float = 60.0,
    tls: ssl.SSLContext | None = None,
) -> LoadResult:
    """Open `streams` event streams at once and read them to the end. Once every stream has delivered
    its first event (so all are open end to end, unless one has already ended: see
    `LoadResult.never_all_open`), `sample_rss` is called then and at every later event milestone; the
    largest value is kept. `tls`: a client context, to hold them directly on an HTTPS upstream."""
    body = b'{"model":"bench-model","stream":true,"messages":[{"role":"user","content":"hi"}]}'
    out = LoadResult(streams=[StreamResult() for _ in range(streams)])
    # Streams by the number of events they have seen, so the slowest stream's count is known without
    # a pass over every stream at each event (10,000 streams times their events would take minutes).
    at_count: Counter[int] = Counter({0: streams})
    # Events seen by the slowest stream; a sample is taken each time it moves on.
    floor = [0]
    ended = [0]

    def on_event(res: StreamResult) -> None:
        at_count[res.events - 1] -= 1
        at_count[res.events] += 1
        if at_count[floor[0]] > 0 or out.never_all_open:
            return
        if floor[0] == 0 and ended[0] > 0:
            out.never_all_open = True
            return
        while at_count[floor[0]] == 0:
            floor[0] += 1
        out.rss_open = max(out.rss_open, sample_rss())

    async def one(res: StreamResult) -> None:
        try:
            await one_stream(host, port, path, headers or {}, body, res, on_event, tls)
        finally:
            ended[0] += 1

    t0 = time.monotonic()
    await asyncio.wait_for(asyncio.gather(*(one(res) for res in out.streams)), timeout)
    out.seconds = time.monotonic() - t0
    return out


def main() -> None:
    p = argparse.ArgumentParser(description="SSE upstream for the relay benchmark")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--events", type=int, default=20)
    p.add_argument("--interval-ms", type=int, default=50)
    p.add_argument("--tls-chain", help="serve HTTPS with this certificate chain (PEM, leaf first)")
    p.add_argument("--tls-key", help="the private key of --tls-chain (PEM)")
    a = p.parse_args()
    if (a.tls_chain is None) != (a.tls_key is None):
        p.error("--tls-chain and --tls-key go together")
    tls = server_tls(a.tls_chain, a.tls_key) if a.tls_chain else None
    # Ctrl-C in a terminal is the normal way to stop it by hand.
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve_forever(a.port, a.events, a.interval_ms / 1000, tls))


if __name__ == "__main__":
    main()
