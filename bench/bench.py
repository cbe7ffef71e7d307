"""Benchmark the relay against nginx on this machine and print one table of ratios.

Layout (see ../shared/PERFORMANCE.md): the proxy under test is pinned alone to core 0; the load
generators (wrk, oha, the SSE client), the JSON upstream (nginx `return 200`) and the SSE upstream
(bench/sse.py) share core 1. Each proxy gets one core: nginx runs one worker, the relay runs tokio with
one worker thread. Every figure is measured for the direct upstream, nginx and the relay in the same run,
and the relay is reported as a ratio against nginx, because absolute figures drift between machines.

Spend limits (docs/budgets.md) are measured as more relay rows: the same store with tokens that carry a
token budget, an end-user daily quota or a money budget, minted with the Python SDK (sdk/python/src),
next to unbudgeted tokens, so the cost of metering reads as a difference between rows of one run.

Run through bench/run.sh, which installs the tools and builds the relay. Durations come from the
environment (see `Settings.from_env`).
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))
# The Python SDK from this checkout (its one dependency is pyca/cryptography): tokens are minted the way a
# customer's backend mints them.
sys.path.insert(0, str(ROOT / "sdk" / "python" / "src"))
from relayapi import RelayAPIClient  # noqa: E402

import certs  # noqa: E402  (sibling modules, found through the path set just above)
import sse  # noqa: E402

PROXY_CORE = "0"
LOAD_CORE = "1"
# Not a real key: the upstreams never check it, and it must not look like one (no `sk-` prefix).
FAKE_KEY = "test-key-123"
REQUEST_BODY = '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}'
# A small non-streaming chat completion, as the provider would answer it.
RESPONSE_BODY = (
    '{"id":"chatcmpl-bench","object":"chat.completion","created":1,"model":"gpt-4o-mini",'
    '"choices":[{"index":0,"message":{"role":"assistant","content":"hello from the bench upstream"},'
    '"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":5,"total_tokens":6}}'
)
CLK_TCK = os.sysconf("SC_CLK_TCK")
# Stores the bench can run the relay with; redis would need a server of its own and is left out.
RELAY_STORES = ("sqlite", "memory")
LABELS = {
    "direct": "direct upstream",
    "nginx": "nginx",
    "relay": "relay, sqlite store (default)",
    "relay-memory": "relay, memory store",
}
# Spend limits a relay row's tokens carry ("none": no budget, the tokens every release had). Each is large
# enough never to run out during a run, so every call is reserved, metered and settled, never refused.
BUDGETS = ("none", "tok", "uq", "cost")
BUDGET_LABELS = {"tok": "token budget", "uq": "user daily quota", "cost": "money budget"}
NEVER_RUNS_OUT = 10**15
BENCH_USER = "bench-user"
# The relay's provider for streamed chat: an OpenAI-compatible API served by bench/sse.py (the built-in
# openai provider points at the JSON upstream).
STREAM_PROVIDER = "openai-stream"
# Prices per million tokens in micro-units (docs/budgets.md §2): what a money budget needs; gpt-4o-mini's
# list price, so the arithmetic is the production one.
PRICE = {"input": 150000, "output": 600000, "cached_input": 75000}
# How long a freshly started server may take to accept connections.
START_TIMEOUT_S = 20.0
# Connections each proxy accepts at least (the relay's `max_connections`, nginx's `worker_connections`).
MIN_PROXY_CONNECTIONS = 8192
# Descriptors a proxy holds besides its streams' sockets (listener, epoll, logs, the SQLite files) and
# the bench process besides its clients' sockets. A proxied stream takes two: client and provider.
FD_RESERVE = 64
# nginx's `worker_connections` beyond two per stream. With only `FD_RESERVE` more, nginx said "20000
# worker_connections are not enough, reusing connections" and reset about 600 of 9,968 new connections
# although it never held that many descriptors; the open-files limit still bounds what it can open.
NGINX_SPARE_CONNECTIONS = 4096
# The pace of the many-streams run: slow, so that the streams started first are still open when the
# last of ten thousand connects (the client and the upstream share one core), and few events, so the
# run is about holding streams, not moving events.
MANY_EVENTS = 10
MANY_INTERVAL_MS = 3000
# Longest time the client may take to open every stream, on top of a stream's own duration.
SSE_RAMP_ALLOWANCE_S = 60.0


@dataclass
class Settings:
    duration: int = 10
    warmup: int = 2
    latency_duration: int = 10
    rate: int = 1000
    connections: int = 64
    latency_connections: int = 16
    sse_streams: int = 200
    sse_events: int = 20
    sse_interval_ms: int = 50
    # Streams of the separate many-streams run (RSS per stream only, its own pace); 0 skips it.
    sse_many: int = 10000
    rounds: int = 1
    # The closed-loop wrk run (throughput and CPU per request); 0 skips it.
    throughput: bool = True
    access_log_run: bool = True
    # Relay usage stores to measure, each as its own row: sqlite is what a default config runs.
    relay_stores: tuple[str, ...] = ("sqlite", "memory")
    # Spend limits to measure per store, each as its own row ("none" = the unbudgeted tokens).
    budgets: tuple[str, ...] = BUDGETS
    # The open-loop oha run (p50/p99 at a fixed rate); 0 skips it, and oha is then not needed.
    latency: bool = True
    # The open-loop run at half the direct path's maximum rate (issue 10: a proxy should sustain it
    # without saturating its core); needs oha too. 0 skips it.
    half_rate: bool = True
    # The production case: every upstream speaks HTTPS with a certificate both proxies verify
    # (bench/certs.py), nginx reusing TLS sessions (`proxy_ssl_session_reuse`), the relay with its
    # defaults. Off by default: plain upstreams isolate the proxy's own cost.
    tls: bool = False
    relay_bin: Path = ROOT / "target" / "release" / "relayapi"
    # Another relay binary measured in the same run, unbudgeted, one row per store (e.g. a build from
    # before a change, to see what the change cost); it gets the config without `budgets`.
    baseline_bin: Path | None = None
    # Niceness for everything the bench runs. On a machine shared with builds and tests, a proxy at
    # the default priority gets preempted for whole timeslices, which shows up as milliseconds of p99
    # that belong to somebody else's compiler; raising priority (root only) keeps "the proxy alone on
    # its core" closer to true for both proxies alike.
    nice: int = -10

    @classmethod
    def from_env(cls, env: dict[str, str]) -> Settings:
        s = cls()
        ints = {
            "BENCH_DURATION": "duration",
            "BENCH_WARMUP": "warmup",
            "BENCH_LATENCY_DURATION": "latency_duration",
            "BENCH_RATE": "rate",
            "BENCH_CONNECTIONS": "connections",
            "BENCH_LATENCY_CONNECTIONS": "latency_connections",
            "BENCH_SSE_STREAMS": "sse_streams",
            "BENCH_SSE_EVENTS": "sse_events",
            "BENCH_SSE_INTERVAL_MS": "sse_interval_ms",
            "BENCH_SSE_MANY": "sse_many",
            "BENCH_ROUNDS": "rounds",
        }
        # Settings where 0 means "skip" rather than nothing to measure.
        may_be_zero = ("warmup", "sse_many")
        for var, attr in ints.items():
            if var in env:
                try:
                    value = int(env[var])
                except ValueError:
                    raise SystemExit(f"{var}={env[var]!r}: expected a whole number") from None
                if value < (0 if attr in may_be_zero else 1):
                    raise SystemExit(f"{var}={value}: must be at least 1 (0 allowed only to skip)")
                setattr(s, attr, value)
        if "BENCH_ACCESS_LOG" in env:
            s.access_log_run = switched_on(env["BENCH_ACCESS_LOG"])
        if "BENCH_RELAY_STORES" in env:
            stores = tuple(x.strip() for x in env["BENCH_RELAY_STORES"].split(",") if x.strip())
            unknown = [x for x in stores if x not in RELAY_STORES]
            if not stores or unknown:
                raise SystemExit(
                    f"BENCH_RELAY_STORES={env['BENCH_RELAY_STORES']!r}: expected a comma-separated "
                    f"list of {', '.join(RELAY_STORES)}"
                )
            s.relay_stores = stores
        if "BENCH_BUDGETS" in env:
            budgets = tuple(x.strip() for x in env["BENCH_BUDGETS"].split(",") if x.strip())
            unknown = [x for x in budgets if x not in BUDGETS]
            if not budgets or unknown:
                raise SystemExit(
                    f"BENCH_BUDGETS={env['BENCH_BUDGETS']!r}: expected a comma-separated list of "
                    f"{', '.join(BUDGETS)}"
                )
            s.budgets = budgets
        if "BENCH_LATENCY" in env:
            s.latency = switched_on(env["BENCH_LATENCY"])
        if "BENCH_HALF_RATE" in env:
            s.half_rate = switched_on(env["BENCH_HALF_RATE"])
        if "BENCH_TLS" in env:
            s.tls = switched_on(env["BENCH_TLS"])
        if "BENCH_THROUGHPUT" in env:
            s.throughput = switched_on(env["BENCH_THROUGHPUT"])
        if "BENCH_NICE" in env:
            try:
                s.nice = int(env["BENCH_NICE"])
            except ValueError:
                raise SystemExit(f"BENCH_NICE={env['BENCH_NICE']!r}: expected -20 to 19") from None
            if not -20 <= s.nice <= 19:
                raise SystemExit(f"BENCH_NICE={s.nice}: expected -20 to 19")
        if "RELAY_BIN" in env:
            s.relay_bin = Path(env["RELAY_BIN"])
        if env.get("RELAY_BASELINE_BIN"):
            s.baseline_bin = Path(env["RELAY_BASELINE_BIN"])
        return s


# ------------------------------------------------------------------------------------------------
# Parsing tool output (pure functions, tested in test_bench.py)
# ------------------------------------------------------------------------------------------------


@dataclass
class WrkResult:
    requests: int
    seconds: float
    rps: float
    non_2xx: int
    socket_errors: int


def parse_wrk(text: str) -> WrkResult:
    m = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)\b", text)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    if not m or not rps:
        raise ValueError(f"unrecognised wrk output:\n{text}")
    scale = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}[m.group(3)]
    non = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    return WrkResult(
        requests=int(m.group(1)),
        seconds=float(m.group(2)) * scale,
        rps=float(rps.group(1)),
        non_2xx=int(non.group(1)) if non else 0,
        socket_errors=sum(int(x) for x in sock.groups()) if sock else 0,
    )


@dataclass
class OhaResult:
    requests: int
    ok: int
    errors: int
    rps: float
    p50_us: float
    p99_us: float


def parse_oha(text: str) -> OhaResult:
    """oha's `--output-format json` report: latencies in seconds, status counts as a map."""
    d = json.loads(text)
    pct = d["latencyPercentiles"]
    codes = {int(k): int(v) for k, v in (d.get("statusCodeDistribution") or {}).items()}
    errors = sum(int(v) for v in (d.get("errorDistribution") or {}).values())
    ok = sum(v for k, v in codes.items() if 200 <= k < 300)
    return OhaResult(
        requests=sum(codes.values()) + errors,
        ok=ok,
        errors=errors + sum(codes.values()) - ok,
        rps=float(d["summary"]["requestsPerSec"]),
        p50_us=float(pct["p50"]) * 1e6,
        p99_us=float(pct["p99"]) * 1e6,
    )


def parse_proc_stat_cpu(text: str) -> int:
    """utime + stime in clock ticks from /proc/PID/stat (fields 14 and 15; the command name may
    contain spaces and parentheses, so count from the last ')')."""
    rest = text[text.rindex(")") + 2 :].split()
    return int(rest[11]) + int(rest[12])


def parse_vm_rss(text: str) -> int:
    """VmRSS from /proc/PID/status, in bytes."""
    m = re.search(r"^VmRSS:\s+(\d+) kB", text, re.M)
    if not m:
        raise ValueError("no VmRSS line (is the process a zombie?)")
    return int(m.group(1)) * 1024


def switched_on(value: str) -> bool:
    """An on/off environment setting: "0", "", "no" and "false" mean off, anything else on."""
    return value not in ("0", "", "no", "false")


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return a / b


# ------------------------------------------------------------------------------------------------
# Processes
# ------------------------------------------------------------------------------------------------


def children_of(pid: int) -> list[int]:
    kids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        if int(stat[stat.rindex(")") + 2 :].split()[1]) == pid:
            kids.append(int(entry))
    return kids


def cpu_ticks(pids: list[int]) -> int:
    return sum(parse_proc_stat_cpu(Path(f"/proc/{p}/stat").read_text()) for p in pids)


def cpu_ns(pids: list[int]) -> int:
    """CPU time in nanoseconds of every live thread of `pids` (/proc/PID/task/TID/schedstat, first
    field): exact where clock ticks (10 ms) are too coarse for a one-second SSE run. Time of a thread
    that exits in between is lost, so this is for short windows over long-lived threads."""
    total = 0
    for p in pids:
        for task in Path(f"/proc/{p}/task").iterdir():
            try:
                total += int((task / "schedstat").read_text().split()[0])
            except (OSError, ValueError, IndexError):
                continue
    return total


def rss_bytes(pids: list[int]) -> int:
    return sum(parse_vm_rss(Path(f"/proc/{p}/status").read_text()) for p in pids)


def raise_open_files_limit() -> int:
    """Raise this process's soft limit on open files to its hard limit (every server the bench starts
    inherits it) and return it: ten thousand streams take twenty thousand descriptors in a proxy."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    return soft


def streams_within(open_files: int) -> int:
    """The most streams a proxy can hold with `open_files` descriptors: two sockets per stream."""
    return max(0, (open_files - FD_RESERVE) // 2)


def proxy_connections(streams: int) -> int:
    """Client connections the relay accepts to hold `streams` streams: twice as many, since it starts
    closing idle keep-alive connections once fewer than 10 % of its slots are free."""
    return max(MIN_PROXY_CONNECTIONS, 2 * streams)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with status {proc.returncode} while starting")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on 127.0.0.1:{port} within {START_TIMEOUT_S}s")


class Server:
    """A process this run started; `pids()` lists the processes whose CPU and memory it counts."""

    def __init__(self, name: str, proc: subprocess.Popen, port: int, with_children: bool):
        self.name, self.proc, self.port, self.with_children = name, proc, port, with_children

    def pids(self) -> list[int]:
        return [self.proc.pid] + (children_of(self.proc.pid) if self.with_children else [])

    def stop(self) -> None:
        if self.proc.poll() is None:
            # nginx's master stops its workers on TERM; the relay drains (nothing is in flight here).
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def nginx_common(work: Path, name: str, connections: int = MIN_PROXY_CONNECTIONS) -> str:
    temp = work / f"{name}-temp"
    temp.mkdir(exist_ok=True)
    # Workers of a root master drop to `nobody` and could not write the temp dirs made here.
    user = "user root;\n" if os.geteuid() == 0 else ""
    return f"""{user}worker_processes 1;
pid {work}/{name}.pid;
error_log {work}/{name}-error.log warn;
events {{ worker_connections {connections}; }}
"""


def nginx_http_common(work: Path, name: str) -> str:
    temp = work / f"{name}-temp"
    # keepalive_requests defaults to 1000, which would make both sides reconnect during a run.
    return f"""
    client_body_temp_path {temp}/body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
    keepalive_requests 1000000;
    keepalive_timeout 75s;
"""


def upstream_nginx_conf(work: Path, port: int, tls: certs.UpstreamTls | None = None) -> str:
    # nginx's defaults otherwise: TLS 1.2 and 1.3, session tickets on, a session cache off.
    listen = (
        f"listen 127.0.0.1:{port} ssl backlog=4096;\n"
        f"        ssl_certificate {tls.chain};\n        ssl_certificate_key {tls.key};"
        if tls
        else f"listen 127.0.0.1:{port} backlog=4096;"
    )
    return (
        nginx_common(work, "upstream")
        + "http {"
        + nginx_http_common(work, "upstream")
        + f"""
    access_log off;
    server {{
        {listen}
        location / {{
            default_type application/json;
            return 200 '{RESPONSE_BODY}';
        }}
    }}
}}
"""
    )


def proxy_nginx_conf(
    work: Path,
    port: int,
    up_port: int,
    sse_port: int,
    access_log: bool,
    streams: int = 0,
    tls: certs.UpstreamTls | None = None,
) -> str:
    log = f"access_log {work}/nginx-access.log;" if access_log else "access_log off;"
    scheme = "https" if tls else "http"
    # With TLS upstreams nginx verifies the chain and name as the relay does, and reuses sessions.
    verify = (
        f"""
            proxy_ssl_verify on;
            proxy_ssl_trusted_certificate {tls.ca};
            proxy_ssl_name {certs.HOST};
            proxy_ssl_session_reuse on;"""
        if tls
        else ""
    )
    # nginx counts the provider's connection of each stream as well as the client's, and wants room
    # beyond both: with exactly that many it reset new connections while ten thousand streams opened.
    connections = max(MIN_PROXY_CONNECTIONS, 2 * streams + NGINX_SPARE_CONNECTIONS)
    # The same routing the relay does: drop the token segment, map the rest onto the provider's base
    # URL, replace the client's Authorization with the provider key. Events must not wait in buffers.
    return (
        nginx_common(work, "proxy", connections)
        + "http {"
        + nginx_http_common(work, "proxy")
        + f"""
    {log}
    upstream api {{ server 127.0.0.1:{up_port}; keepalive 64; keepalive_requests 1000000; }}
    upstream sse {{ server 127.0.0.1:{sse_port}; keepalive 64; }}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location ~ ^/relayapi/[^/]+(/v1/messages)$ {{
            proxy_pass {scheme}://sse$1;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Authorization "";
            proxy_set_header x-api-key "{FAKE_KEY}";
            proxy_buffering off;{verify}
        }}
        location ~ ^/relayapi/[^/]+/(.*)$ {{
            proxy_pass {scheme}://api/v1/$1$is_args$args;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Authorization "Bearer {FAKE_KEY}";{verify}
        }}
    }}
}}
"""
    )


# Suffix of the rows measured with `Settings.baseline_bin`.
BASELINE = "@baseline"


def relay_kind(store: str, budget: str = "none") -> str:
    """The target name for the relay with a given store and spend limit: the default store is plain
    "relay", a budget is a suffix ("relay-memory+tok")."""
    base = "relay" if store == "sqlite" else f"relay-{store}"
    return base if budget == "none" else f"{base}+{budget}"


def kind_parts(kind: str) -> tuple[str, str]:
    """(store target, budget) of a relay target name; the inverse of `relay_kind`. A baseline row
    ("relay@baseline") is its store's target with no budget."""
    base, _, budget = kind.removesuffix(BASELINE).partition("+")
    return base, budget or "none"


def label(kind: str) -> str:
    base, budget = kind_parts(kind)
    text = LABELS.get(base, base)
    if kind.endswith(BASELINE):
        return f"{text}, baseline binary"
    return text if budget == "none" else f"{text}, {BUDGET_LABELS.get(budget, budget)}"


def token_options(budget: str) -> dict:
    """SDK `create_token` options for one spend-limit variant (docs/budgets.md §1)."""
    if budget == "tok":
        return {"budget_tokens": NEVER_RUNS_OUT}
    if budget == "uq":
        return {"user_id": BENCH_USER, "user_quotas": [{"window": "day", "tokens": NEVER_RUNS_OUT}]}
    if budget == "cost":
        return {"budget_cost": NEVER_RUNS_OUT}
    return {}


def relay_config(
    up_port: int,
    sse_port: int,
    access_log: bool,
    store: dict,
    prices: bool = True,
    streams: int = 0,
    tls: certs.UpstreamTls | None = None,
) -> dict:
    """The relay's config.json, for holding `streams` SSE streams at once; `prices=False` leaves out
    `budgets`, which a relay from before spend limits refuses as an unknown field; `tls`: the upstreams
    speak HTTPS with a certificate from this CA."""
    connections = proxy_connections(streams)
    scheme = "https" if tls else "http"
    cfg = {
        # Every client of the bench is 127.0.0.1: the per-address connection cap (128 by default) would
        # refuse the SSE run's 200 streams, and nginx has no such cap either.
        "server": {
            "host": "127.0.0.1",
            "port": 0,
            "max_connections": connections,
            "max_connections_per_ip": connections,
        },
        # Limiters off: the comparison is the proxy path, and nginx has none configured either.
        "rate_limit": {
            "requests_per_second": 0,
            "burst": 0,
            "ip_limit": {"requests_per_second": 0, "burst": 0},
        },
        "providers": {
            "openai": {"base_url": f"{scheme}://127.0.0.1:{up_port}/v1"},
            "anthropic": {"base_url": f"{scheme}://127.0.0.1:{sse_port}"},
            STREAM_PROVIDER: {
                "base_url": f"{scheme}://127.0.0.1:{sse_port}/v1",
                "auth": "bearer",
                "family": "openai",
            },
        },
        "upstream": {"pool_max_idle_per_host": 64, **({"extra_ca_file": str(tls.ca)} if tls else {})},
        "log": {"access": access_log},
        "store": store,
    }
    if prices:
        # The models both upstreams answer for, priced: a money budget refuses an unpriced model.
        prices_of = {"openai": {"gpt-4o-mini": PRICE}, STREAM_PROVIDER: {"bench-model": PRICE}}
        cfg["budgets"] = {"prices": prices_of}
    return cfg


class Bench:
    def __init__(self, settings: Settings):
        self.s = settings
        self.work = Path(tempfile.mkdtemp(prefix="relay-bench-"))
        self.started: list[Server] = []
        self._up: Server | None = None
        self._sse_up: Server | None = None
        # The SSE upstream of the many-streams run, at its own slow pace.
        self._sse_many_up: Server | None = None
        # (provider, budget) -> token.
        self.tokens: dict[tuple[str, str], str] = {}
        self.db_seq = 0
        self.tls = certs.make(self.work) if settings.tls else None
        # Requests per second of the half-rate run: half the direct path's maximum, set by the first
        # direct run.
        self.half_rate: int | None = None

    @property
    def up(self) -> Server:
        """The JSON upstream (nginx `return 200`)."""
        if self._up is None:
            raise RuntimeError("start_upstreams() first")
        return self._up

    @property
    def sse_up(self) -> Server:
        """The SSE upstream (bench/sse.py)."""
        if self._sse_up is None:
            raise RuntimeError("start_upstreams() first")
        return self._sse_up

    @property
    def sse_many_up(self) -> Server:
        """The SSE upstream of the many-streams run (bench/sse.py at `MANY_EVENTS`, `MANY_INTERVAL_MS`)."""
        if self._sse_many_up is None:
            raise RuntimeError("start_upstreams() with sse_many set first")
        return self._sse_many_up

    # -- lifecycle ------------------------------------------------------------------------------

    def spawn(self, name: str, argv: list[str], core: str, port: int, with_children=False, **kw) -> Server:
        proc = subprocess.Popen(["taskset", "-c", core, *argv], **kw)
        srv = Server(name, proc, port, with_children)
        self.started.append(srv)
        return srv

    def stop(self, srv: Server) -> None:
        srv.stop()
        if srv in self.started:
            self.started.remove(srv)

    def close(self) -> None:
        for srv in reversed(self.started):
            srv.stop()
        self.started.clear()
        shutil.rmtree(self.work, ignore_errors=True)

    def start_nginx(self, name: str, conf: str, core: str, port: int) -> Server:
        path = self.work / f"{name}.conf"
        path.write_text(conf)
        srv = self.spawn(
            name,
            ["nginx", "-p", str(self.work), "-c", str(path), "-g", "daemon off;"],
            core,
            port,
            with_children=True,
            stdout=subprocess.DEVNULL,
            stderr=open(self.work / f"{name}-stderr.log", "wb"),  # noqa: SIM115 (owned by Popen)
        )
        wait_port(port, srv.proc, name)
        return srv

    def start_upstreams(self) -> None:
        up_port = free_port()
        self._up = self.start_nginx(
            "upstream", upstream_nginx_conf(self.work, up_port, self.tls), LOAD_CORE, up_port
        )
        self._sse_up = self.start_sse_upstream("sse-upstream", self.s.sse_events, self.s.sse_interval_ms)
        if self.s.sse_many:
            self._sse_many_up = self.start_sse_upstream("sse-many-upstream", MANY_EVENTS, MANY_INTERVAL_MS)

    def start_sse_upstream(self, name: str, events: int, interval_ms: int) -> Server:
        argv = [sys.executable, str(BENCH / "sse.py"), "--events", str(events)]
        argv += ["--interval-ms", str(interval_ms)]
        if self.tls:
            argv += ["--tls-chain", str(self.tls.chain), "--tls-key", str(self.tls.key)]
        srv = self.spawn(name, argv, LOAD_CORE, 0, stdout=subprocess.PIPE, text=True)
        line = srv.proc.stdout.readline()
        if not line.startswith("listening "):
            raise RuntimeError(f"{name} did not start: {line!r}")
        srv.port = int(line.split()[1])
        return srv

    def make_tokens(self) -> None:
        rai = self.work / "bench.rai"
        subprocess.run(
            [
                str(self.s.relay_bin),
                "gen-rai",
                "--tenant",
                "bench",
                "--key-id",
                "bench-key",
                "--out",
                str(rai),
            ],
            check=True,
        )
        # Unlimited calls, a day's lifetime, each spend-limit variant as its own token.
        client = RelayAPIClient(str(rai))
        for provider in ("openai", STREAM_PROVIDER):
            for budget in ("none", *self.s.budgets):
                self.tokens[(provider, budget)] = client.create_token(
                    api_key=FAKE_KEY,
                    provider=provider,
                    max_calls=None,
                    expire_seconds=86400,
                    **token_options(budget),
                )

    def start_proxy(self, kind: str, access_log: bool, many: bool = False) -> Server:
        """A fresh proxy of `kind`; `many`: sized for the many-streams run and streaming from its
        upstream."""
        sse_port = self.sse_many_up.port if many else self.sse_up.port
        streams = self.s.sse_many if many else self.s.sse_streams
        if kind == "nginx":
            port = free_port()
            conf = proxy_nginx_conf(self.work, port, self.up.port, sse_port, access_log, streams, self.tls)
            return self.start_nginx("proxy", conf, PROXY_CORE, port)
        base = kind_parts(kind)[0]
        if base == "relay":
            # A fresh database each start, on the same disk as the rest of the run.
            self.db_seq += 1
            store = {"type": "sqlite", "path": str(self.work / f"usage-{self.db_seq}.db")}
        else:
            store = {"type": base.removeprefix("relay-")}
        baseline = kind.endswith(BASELINE)
        binary = self.s.baseline_bin if baseline and self.s.baseline_bin else self.s.relay_bin
        cfg = self.work / "relay.json"
        config = relay_config(
            self.up.port, sse_port, access_log, store, prices=not baseline, streams=streams, tls=self.tls
        )
        cfg.write_text(json.dumps(config))
        err_path = self.work / "relay-stderr.log"
        # The relay's access log goes to stdout: to a file, so its cost is a real write.
        out = open(self.work / "relay-access.log", "wb") if access_log else subprocess.DEVNULL  # noqa: SIM115
        srv = self.spawn(
            "relay",
            [str(binary), "--config", str(cfg), "--rai", str(self.work / "bench.rai")],
            PROXY_CORE,
            0,
            stdout=out,
            stderr=open(err_path, "wb"),  # noqa: SIM115 (owned by Popen)
            # One runtime worker: tokio would size itself from the affinity mask anyway; say it.
            env={**os.environ, "TOKIO_WORKER_THREADS": "1"},
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while srv.port == 0:
            if srv.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"relay did not start:\n{err_path.read_text()}")
            for line in err_path.read_text().splitlines():
                if '"listening"' in line:
                    srv.port = int(json.loads(line)["addr"].rsplit(":", 1)[1])
            time.sleep(0.05)
        wait_port(srv.port, srv.proc, "relay")
        return srv

    # -- targets --------------------------------------------------------------------------------

    def json_url(self, kind: str, port: int) -> str:
        if kind == "direct":
            return f"{'https' if self.tls else 'http'}://127.0.0.1:{port}/v1/chat/completions"
        token = self.tokens[("openai", kind_parts(kind)[1])]
        return f"http://127.0.0.1:{port}/relayapi/{token}/chat/completions"

    def sse_path(self, kind: str) -> str:
        """A streamed chat call. nginx routes `/v1/messages` to the SSE upstream (its JSON location
        goes to the other upstream); the relay gets an OpenAI-compatible `/chat/completions`, the call
        it meters, and forwards it to the same upstream, which ignores the path."""
        if kind == "direct":
            return "/v1/chat/completions"
        if kind == "nginx":
            return f"/relayapi/{self.tokens[('openai', 'none')]}/v1/messages"
        token = self.tokens[(STREAM_PROVIDER, kind_parts(kind)[1])]
        return f"/relayapi/{token}/chat/completions"

    def client_tls(self) -> ssl.SSLContext | None:
        """A client context trusting the run's CA, for talking to a TLS upstream directly."""
        if not self.tls:
            return None
        return ssl.create_default_context(cafile=str(self.tls.ca))

    def preflight(self, kind: str, port: int) -> None:
        """One JSON request must come back as the upstream's body: a run of 401s would otherwise be
        measured as a fast proxy."""
        req = urllib.request.Request(
            self.json_url(kind, port),
            data=REQUEST_BODY.encode(),
            headers={"content-type": "application/json", "authorization": "Bearer unused"},
        )
        try:
            with urllib.request.urlopen(req, timeout=10, context=self.client_tls()) as r:
                body = r.read().decode()
        except urllib.error.HTTPError as e:
            raise RuntimeError(f"{kind}: preflight got {e.code}: {e.read().decode()}") from e
        if body != RESPONSE_BODY:
            raise RuntimeError(f"{kind}: preflight body differs from the upstream's: {body!r}")

    # -- measurements ---------------------------------------------------------------------------

    def wrk(self, url: str, seconds: int) -> WrkResult:
        argv = ["taskset", "-c", LOAD_CORE, "wrk", "-t1", f"-c{self.s.connections}"]
        argv += [f"-d{seconds}s", "-s", str(BENCH / "post.lua"), url]
        out = subprocess.run(argv, check=True, capture_output=True, text=True)
        return parse_wrk(out.stdout)

    def oha(self, url: str, rate: int, connections: int) -> OhaResult:
        argv = ["taskset", "-c", LOAD_CORE, "oha", "--no-tui", "--output-format", "json"]
        argv += ["-z", f"{self.s.latency_duration}s", "-q", str(rate)]
        argv += ["-c", str(connections), "--latency-correction", "-w"]
        if self.tls and url.startswith("https:"):
            # The direct row on a TLS upstream: the generator's own check of the bench CA adds nothing.
            argv.append("--insecure")
        argv += ["-m", "POST", "-T", "application/json", "-d", REQUEST_BODY]
        argv += ["-H", "authorization: Bearer unused", url]
        out = subprocess.run(argv, check=True, capture_output=True, text=True)
        return parse_oha(out.stdout)

    def measure_sse(self, kind: str, port: int, srv: Server, many: bool = False) -> dict:
        """Hold the run's streams open through `srv` (`many`: the many-streams run's, at its pace)."""
        streams, events, interval_ms = (
            (self.s.sse_many, MANY_EVENTS, MANY_INTERVAL_MS)
            if many
            else (self.s.sse_streams, self.s.sse_events, self.s.sse_interval_ms)
        )
        idle = rss_bytes(srv.pids())
        c0 = cpu_ns(srv.pids())
        res = asyncio.run(
            sse.hold_streams(
                "127.0.0.1",
                port,
                self.sse_path(kind),
                streams,
                lambda: rss_bytes(srv.pids()),
                timeout=SSE_RAMP_ALLOWANCE_S + events * interval_ms / 1000,
                # Direct streams go to the upstream itself, HTTPS in a TLS run.
                tls=self.client_tls() if kind == "direct" else None,
            )
        )
        c1 = cpu_ns(srv.pids())
        per_stream = None
        if kind != "direct" and res.rss_open:
            per_stream = (res.rss_open - idle) / streams
        return {
            "sse_complete": res.complete,
            "sse_seconds": res.seconds,
            "sse_rss_idle": idle,
            "sse_rss_open": res.rss_open,
            "rss_per_stream": per_stream,
            "sse_cpu_us": (c1 - c0) / 1e3 / streams,
            **res.timing_ms(),
            # Streams whose provider was asked for usage: every one for a budgeted relay row (the relay
            # asks), none otherwise; anything else means the row did not measure what it says.
            "sse_usage_asked": sum(1 for x in res.streams if x.usage_asked),
            # Streams that got another number of events than the provider sent: a usage chunk the relay
            # asked for and failed to take out, or lost events.
            "sse_wrong_count": sum(1 for x in res.streams if x.done and x.events != events),
            "sse_never_all_open": res.never_all_open,
            "sse_errors": sorted(set(res.errors))[:5],
        }

    def measure_throughput(self, url: str, srv: Server) -> dict:
        if self.s.warmup:
            self.wrk(url, self.s.warmup)
        c0 = cpu_ticks(srv.pids())
        w = self.wrk(url, self.s.duration)
        c1 = cpu_ticks(srv.pids())
        return {
            "rps": w.rps,
            "requests": w.requests,
            "non_2xx": w.non_2xx,
            "socket_errors": w.socket_errors,
            "cpu_us": (c1 - c0) / CLK_TCK * 1e6 / w.requests if w.requests else None,
        }

    def measure_latency(self, url: str, srv: Server) -> dict:
        c0 = cpu_ticks(srv.pids())
        o = self.oha(url, self.s.rate, self.s.latency_connections)
        c1 = cpu_ticks(srv.pids())
        return {
            "p50_us": o.p50_us,
            "p99_us": o.p99_us,
            "lat_rps": o.rps,
            "lat_errors": o.errors,
            "cpu_us_at_rate": (c1 - c0) / CLK_TCK * 1e6 / o.requests if o.requests else None,
        }

    def measure_half_rate(self, url: str, srv: Server) -> dict:
        """Open loop at half the direct path's maximum rate: the rate the proxy kept up, how busy its
        core was (CPU seconds per second of the run; every proxy is pinned to one core, so 100 % is
        saturated) and p99. The load generator has a core of its own, as in the closed-loop run; oha
        gets as many connections as wrk, so it is the proxy, not a lack of connections, that falls
        behind."""
        if not self.half_rate:
            return {}
        c0 = cpu_ticks(srv.pids())
        o = self.oha(url, self.half_rate, self.s.connections)
        c1 = cpu_ticks(srv.pids())
        return {
            "half_rate": self.half_rate,
            "half_rps": o.rps,
            "half_busy": (c1 - c0) / CLK_TCK / self.s.latency_duration,
            "half_p99_us": o.p99_us,
            "half_errors": o.errors,
        }

    def measure(self, kind: str) -> dict:
        """Everything for one target, on a freshly started proxy so the SSE memory figure is not
        flattered by memory freed by earlier runs."""
        srv = self.up if kind == "direct" else self.start_proxy(kind, access_log=False)
        try:
            port = srv.port if kind != "direct" else self.up.port
            self.preflight(kind, port)
            out: dict = {"target": label(kind)}
            # Direct streams come from the SSE upstream itself; its memory is not a proxy's.
            sse_srv = self.sse_up if kind == "direct" else srv
            out.update(self.measure_sse(kind, port if kind != "direct" else sse_srv.port, sse_srv))
            url = self.json_url(kind, port)
            if self.s.throughput:
                out.update(self.measure_throughput(url, srv))
            else:
                out.update({"rps": None, "requests": 0, "non_2xx": 0, "socket_errors": 0, "cpu_us": None})
            if kind == "direct" and self.s.half_rate and self.half_rate is None and out["rps"]:
                # Fixed from the first round's direct run, so every round and target is asked the same.
                self.half_rate = int(out["rps"] / 2)
            if self.s.latency:
                out.update(self.measure_latency(url, srv))
            else:
                out.update({"p50_us": None, "p99_us": None, "lat_rps": None, "lat_errors": 0})
                out["cpu_us_at_rate"] = None
            if kind != "direct":
                out.update(self.measure_half_rate(url, srv))
            return out
        finally:
            if kind != "direct":
                self.stop(srv)

    def measure_many(self, kind: str) -> dict:
        """RSS per stream with `sse_many` streams open at once, on a freshly started proxy."""
        srv = self.start_proxy(kind, access_log=False, many=True)
        try:
            self.preflight(kind, srv.port)
            out = {"target": label(kind)}
            out.update(self.measure_sse(kind, srv.port, srv, many=True))
            return out
        finally:
            self.stop(srv)

    def measure_access_log(self, kind: str) -> dict:
        srv = self.start_proxy(kind, access_log=True)
        try:
            self.preflight(kind, srv.port)
            out = {"target": f"{label(kind)} + access log"}
            url = self.json_url(kind, srv.port)
            out.update(self.measure_throughput(url, srv))
            # With the log on is how the relay runs by default, so the open-loop figures are taken
            # here too, against nginx with its log on.
            if self.s.latency:
                out.update(self.measure_latency(url, srv))
            out.update(self.measure_half_rate(url, srv))
            return out
        finally:
            self.stop(srv)


# ------------------------------------------------------------------------------------------------
# Report
# ------------------------------------------------------------------------------------------------


def median_rows(rounds: list[dict]) -> dict:
    """Per-figure median over rounds; non-numeric fields from the last round."""
    out = dict(rounds[-1])
    for k, v in out.items():
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            vals = [r[k] for r in rounds if isinstance(r.get(k), (int, float))]
            out[k] = statistics.median(vals)
    return out


def fmt(v: float | None, spec: str = ".0f", unit: str = "") -> str:
    return "—" if v is None else f"{v:{spec}}{unit}"


def fmt_ratio(v: float | None) -> str:
    return "—" if v is None else f"{v:.2f}×"


def versus(r: dict, n: dict, key: str) -> str:
    """`r[key] / n[key]` as a ratio cell, "—" when either is missing."""
    return fmt_ratio(ratio(r.get(key), n.get(key)))


def diff(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def meter_report(rows: dict[str, dict]) -> list[str]:
    """The spend-limit table: every relay row against nginx, and its CPU figures against the same
    store's unbudgeted row, so the cost of metering reads directly."""
    n = rows["nginx"]
    relays = [k for k in rows if k.startswith("relay")]
    lines = [
        "",
        (
            "Spend limits: the cost of metering. Ratios are relay / nginx in this run; Δ is the row's CPU "
            "minus the same store's unbudgeted row (for an unbudgeted row: minus the baseline binary's, "
            "when RELAY_BASELINE_BIN was measured); SSE: CPU per stream (schedstat), time to the first "
            "event, gap between events as the client got them, lag from the provider writing an event to "
            "the client reading it:"
        ),
        "",
        (
            "| target | max req/s | CPU/req at max | Δ CPU/req | SSE CPU per stream | Δ SSE CPU | "
            "first event p50 | event gap p50 / p99 | event lag p50 / p99 |"
        ),
        "|---|---|---|---|---|---|---|---|---|",
        (
            f"| nginx (absolute) | {fmt(n['rps'])} | {fmt(n['cpu_us'], '.1f', ' µs')} | | "
            f"{fmt(n.get('sse_cpu_us'), '.0f', ' µs')} | | {fmt(n.get('sse_ttfe_p50_ms'), '.2f', ' ms')} | "
            f"{fmt(n.get('sse_gap_p50_ms'), '.2f')} / {fmt(n.get('sse_gap_p99_ms'), '.2f', ' ms')} | "
            f"{fmt(n.get('sse_lag_p50_ms'), '.2f')} / {fmt(n.get('sse_lag_p99_ms'), '.2f', ' ms')} |"
        ),
    ]
    for k in relays:
        r = rows[k]
        store, budget = kind_parts(k)
        # A budgeted row against its store's unbudgeted row; an unbudgeted row against the baseline
        # binary's, when one was measured.
        base = {} if k.endswith(BASELINE) else rows.get(store if budget != "none" else store + BASELINE, {})
        d_cpu = diff(r["cpu_us"], base.get("cpu_us"))
        d_sse = diff(r.get("sse_cpu_us"), base.get("sse_cpu_us"))
        lines.append(
            f"| {label(k)} | {fmt_ratio(ratio(r['rps'], n['rps']))} | "
            f"{fmt_ratio(ratio(r['cpu_us'], n['cpu_us']))} | {fmt(d_cpu, '+.1f', ' µs')} | "
            f"{versus(r, n, 'sse_cpu_us')} | {fmt(d_sse, '+.0f', ' µs')} | "
            f"{versus(r, n, 'sse_ttfe_p50_ms')} | "
            f"{versus(r, n, 'sse_gap_p50_ms')} / "
            f"{versus(r, n, 'sse_gap_p99_ms')} | "
            f"{versus(r, n, 'sse_lag_p50_ms')} / "
            f"{versus(r, n, 'sse_lag_p99_ms')} |"
        )
    return lines


def open_loop_report(rows: dict[str, dict], s: Settings, title: str) -> list[str]:
    """The open-loop figures of one run (the log-off rows or the access-log rows): p99 and CPU at the
    fixed rate, then the half-rate run, with relay / nginx ratios."""
    n = rows.get("nginx")
    # Skipped runs (BENCH_LATENCY=0, BENCH_HALF_RATE=0) leave their keys at None: no table of dashes.
    if n is None or not any(
        r.get("half_rps") is not None or r.get("p99_us") is not None for r in rows.values()
    ):
        return []
    half = next((r["half_rate"] for r in rows.values() if r.get("half_rate")), None)
    lines = [
        "",
        title,
        "",
        (
            f"| target | p50 / p99 at {s.rate}/s | CPU/req at {s.rate}/s | "
            f"at {fmt(half)}/s (half the direct max): kept up | core busy | p99 |"
        ),
        "|---|---|---|---|---|---|",
    ]
    for row in rows.values():
        lines.append(
            f"| {row['target']} | {fmt(row.get('p50_us'))} / {fmt(row.get('p99_us'))} µs | "
            f"{fmt(row.get('cpu_us_at_rate'), '.1f', ' µs')} | {fmt(row.get('half_rps'))}/s | "
            f"{fmt(None if row.get('half_busy') is None else row['half_busy'] * 100, '.0f', ' %')} | "
            f"{fmt(row.get('half_p99_us'))} µs |"
        )
    for k in (k for k in rows if k.startswith("relay")):
        r = rows[k]
        lines.append(
            f"| **{r['target']} / nginx** | {versus(r, n, 'p50_us')} / "
            f"**{versus(r, n, 'p99_us')}** | "
            f"**{versus(r, n, 'cpu_us_at_rate')}** | "
            f"{versus(r, n, 'half_rps')} | "
            f"**{versus(r, n, 'half_busy')}** | "
            f"{versus(r, n, 'half_p99_us')} |"
        )
    return lines


def many_report(many: dict[str, dict], s: Settings, meta: dict) -> list[str]:
    """The many-streams table: RSS per stream with `sse_many` streams open, and relay / nginx."""
    n = many.get("nginx", {})
    lines = [
        "",
        (
            f"Many streams: RSS per open SSE stream with {s.sse_many:,} streams held at once, each proxy "
            f"started fresh for it; {MANY_EVENTS} events {MANY_INTERVAL_MS} ms apart"
            f"{meta.get('sse_many_note', '')}:"
        ),
        "",
        "| target | RSS per open SSE stream | relay / nginx | streams done, wall |",
        "|---|---|---|---|",
    ]
    for k, row in many.items():
        per = row["rss_per_stream"]
        rss = "—" if per is None else f"{per / 1024:.1f} KiB"
        versus = "" if k == "nginx" else f"**{fmt_ratio(ratio(per, n.get('rss_per_stream')))}**"
        lines.append(
            f"| {label(k)} | {rss} | {versus} | {fmt(row['sse_complete'])}/{s.sse_many}, "
            f"{row['sse_seconds']:.1f} s |"
        )
    return lines


def sse_problems(row: dict, streams: int) -> list[str]:
    """What went wrong in a row's SSE run of `streams` streams."""
    out = []
    if "sse_complete" in row and row["sse_complete"] < streams:
        out.append(f"{row['target']}: SSE failures {row['sse_errors']}")
    if row.get("sse_wrong_count"):
        out.append(f"{row['target']}: {row['sse_wrong_count']:.0f} streams with a wrong event count")
    if row.get("sse_never_all_open"):
        out.append(
            f"{row['target']}: the first stream ended before the last began, so RSS was not sampled "
            "with every stream open"
        )
    return out


def build_report(
    rows: dict[str, dict], logs: dict[str, dict], s: Settings, meta: dict, many: dict[str, dict] | None = None
) -> str:
    """Markdown: one row per target, then one ratio row (relay / nginx) per relay variant; the
    metering, many-streams and access-log tables after it."""
    d, n = rows["direct"], rows["nginx"]
    proxies = [k for k in rows if k != "direct"]
    relays = [k for k in proxies if k.startswith("relay")]
    for k in proxies:
        rows[k]["added_p50_us"] = diff(rows[k]["p50_us"], d["p50_us"])
        rows[k]["added_p99_us"] = diff(rows[k]["p99_us"], d["p99_us"])
    kib = 1024
    lines = [
        f"# Relay vs nginx — {meta['date']}",
        "",
        (
            f"Machine: {meta['machine']}. Proxy pinned to core {PROXY_CORE} alone (1 core each: nginx "
            f"1 worker, relay 1 tokio worker plus its store thread); wrk/oha/upstreams on core "
            f"{LOAD_CORE}. nginx {meta['nginx']}, relay {meta['commit']}. Load average before/after: "
            f"{meta['load_before']} / {meta['load_after']}. Rounds: {s.rounds} (median). "
            f"Niceness: {meta.get('nice', '?')}. Upstreams: "
            + (
                "HTTPS (BENCH_TLS=1: ECDSA P-256 chain verified by both proxies, nginx with "
                "`proxy_ssl_session_reuse`)."
                if s.tls
                else "plain HTTP."
            )
        ),
        "",
        (
            f"| target | max req/s (wrk -c{s.connections}, {s.duration}s) | CPU/req at max | "
            f"CPU/req at {s.rate}/s | p50 / p99 at {s.rate}/s | added p50 / p99 | "
            f"RSS per open SSE stream | SSE {s.sse_streams}×{s.sse_events} done, wall |"
        ),
        "|---|---|---|---|---|---|---|---|",
    ]
    for k, row in rows.items():
        added = (
            "(baseline)"
            if k == "direct"
            else f"{fmt(row['added_p50_us'], '+.0f')} / {fmt(row['added_p99_us'], '+.0f')} µs"
        )
        per = row["rss_per_stream"]
        rss = "—" if per is None else f"{per / kib:.1f} KiB"
        lines.append(
            f"| {label(k)} | {fmt(row['rps'])} | {fmt(row['cpu_us'], '.1f', ' µs')} | "
            f"{fmt(row['cpu_us_at_rate'], '.1f', ' µs')} | "
            f"{fmt(row['p50_us'])} / {fmt(row['p99_us'])} µs | {added} | {rss} | "
            f"{fmt(row['sse_complete'])}/{s.sse_streams}, {row['sse_seconds']:.2f} s |"
        )
    for k in relays:
        r = rows[k]
        lines.append(
            f"| **{label(k)} / nginx** | **{fmt_ratio(ratio(r['rps'], n['rps']))}** | "
            f"**{fmt_ratio(ratio(r['cpu_us'], n['cpu_us']))}** | "
            f"**{fmt_ratio(ratio(r['cpu_us_at_rate'], n['cpu_us_at_rate']))}** | "
            f"{fmt_ratio(ratio(r['p50_us'], n['p50_us']))} / "
            f"{fmt_ratio(ratio(r['p99_us'], n['p99_us']))} | "
            f"**{fmt_ratio(ratio(r['added_p50_us'], n['added_p50_us']))} / "
            f"{fmt_ratio(ratio(r['added_p99_us'], n['added_p99_us']))}** | "
            f"**{fmt_ratio(ratio(r['rss_per_stream'], n['rss_per_stream']))}** | |"
        )
    lines += [
        "",
        (
            "Direct row: CPU is the upstream nginx's own (it shares core 1 with the load generator); "
            "SSE memory is not measured for it (no proxy in between)."
        ),
    ]
    proxies_only = {k: v for k, v in rows.items() if k != "direct"}
    lines += open_loop_report(proxies_only, s, "Open loop, access log off (oha, latency-corrected):")
    if "sse_ttfe_p50_ms" in n:
        lines += meter_report(rows)
    if many:
        lines += many_report(many, s, meta)
    if logs:
        lines += [
            "",
            "Access log ON (to a file), separate run; cost = CPU/req with the log minus without:",
            "",
            "| target | max req/s | CPU/req at max | access log cost per request |",
            "|---|---|---|---|",
        ]
        for k, row in logs.items():
            cost = None if rows.get(k) is None else row["cpu_us"] - rows[k]["cpu_us"]
            lines.append(
                f"| {label(k)} + access log | {fmt(row['rps'])} | "
                f"{fmt(row['cpu_us'], '.1f', ' µs')} | {fmt(cost, '+.1f', ' µs')} |"
            )
        ln = logs.get("nginx")
        for k in (k for k in logs if k.startswith("relay")):
            lr = logs[k]
            lines.append(
                f"| **{label(k)} / nginx** | **{fmt_ratio(ratio(lr['rps'], ln and ln['rps']))}** | "
                f"**{fmt_ratio(ratio(lr['cpu_us'], ln and ln['cpu_us']))}** | |"
            )
        lines += open_loop_report(
            logs, s, "Open loop, access log ON (the relay's default configuration is SQLite + log):"
        )
    problems = []
    for row in [*rows.values(), *logs.values()]:
        for key in ("non_2xx", "socket_errors", "lat_errors", "half_errors"):
            if row.get(key):
                problems.append(f"{row['target']}: {key} = {row[key]:.0f}")
        problems += sse_problems(row, s.sse_streams)
    for row in (many or {}).values():
        problems += [f"{p} ({s.sse_many} streams)" for p in sse_problems(row, s.sse_many)]
    for k, row in rows.items():
        # A budgeted relay must ask the provider for usage on every stream; nothing else may.
        want = s.sse_streams if k.startswith("relay") and kind_parts(k)[1] != "none" else 0
        if "sse_usage_asked" in row and row["sse_usage_asked"] != want:
            asked = f"{row['sse_usage_asked']:.0f}"
            problems.append(f"{row['target']}: usage asked on {asked} streams, not {want}")
    if problems:
        lines += ["", "**Problems (figures above are suspect):**", *[f"- {p}" for p in problems]]
    return "\n".join(lines) + "\n"


def machine_meta() -> dict:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    nginx = subprocess.run(["nginx", "-v"], check=False, capture_output=True, text=True).stderr.strip()
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], check=False, capture_output=True, text=True
    ).stdout.strip()
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{os.cpu_count()} × {cpu}, Linux {platform.release()}",
        "nginx": nginx.split("/", 1)[-1],
        "commit": commit or "unknown",
    }


def load_avg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> int:
    s = Settings.from_env(dict(os.environ))
    if os.cpu_count() is None or os.cpu_count() < 2:
        print("this benchmark needs two cores (proxy on one, load on the other)", file=sys.stderr)
        return 2
    for tool in ("nginx", "wrk", "taskset", *(("oha",) if s.latency else ())):
        if shutil.which(tool) is None:
            print(f"{tool} is not installed; run bench/run.sh", file=sys.stderr)
            return 2
    if not s.relay_bin.exists():
        print(f"{s.relay_bin} is missing; run bench/run.sh", file=sys.stderr)
        return 2
    if s.baseline_bin and not s.baseline_bin.exists():
        print(f"RELAY_BASELINE_BIN={s.baseline_bin} is missing", file=sys.stderr)
        return 2
    meta = machine_meta()
    # Every stream is a socket in the client (this process) and the upstream, two in the proxy.
    open_files = raise_open_files_limit()
    fit = streams_within(open_files)
    if s.sse_streams > fit:
        print(
            f"BENCH_SSE_STREAMS={s.sse_streams} needs {2 * s.sse_streams + FD_RESERVE} open files per "
            f"proxy; the limit here is {open_files} (ulimit -Hn)",
            file=sys.stderr,
        )
        return 2
    if s.sse_many > fit:
        meta["sse_many_note"] = (
            f" ({s.sse_many:,} asked: the hard limit of {open_files:,} open files allows no more, at "
            "two per proxied stream)"
        )
        s.sse_many = fit
    try:
        # Absolute, not relative: inherited by every process the bench starts.
        os.nice(s.nice - os.nice(0))
        meta["nice"] = str(os.nice(0))
    except PermissionError:
        meta["nice"] = f"{os.nice(0)} (not allowed to set {s.nice})"
    meta["load_before"] = load_avg()
    b = Bench(s)
    # Stores inner: a budgeted row sits next to the other store's, and every row of a round is taken
    # within a few minutes of nginx's.
    relays = [relay_kind(x, budget) for budget in s.budgets for x in s.relay_stores]
    if s.baseline_bin:
        relays += [relay_kind(x) + BASELINE for x in s.relay_stores]
    rounds: dict[str, list[dict]] = {k: [] for k in ("direct", "nginx", *relays)}
    # The access-log run covers every unbudgeted relay row: SQLite with the log on is the default
    # configuration users run, and the memory store's row shows the log's own cost best (the SQLite
    # store's run-to-run spread is larger than a log line).
    plain = [k for k in relays if kind_parts(k)[1] == "none"] or relays
    log_rounds: dict[str, list[dict]] = {k: [] for k in ("nginx", *plain)}
    # The many-streams run: nginx and the same rows, memory only.
    many_rounds: dict[str, list[dict]] = {k: [] for k in ("nginx", *plain)} if s.sse_many else {}
    try:
        b.start_upstreams()
        b.make_tokens()
        for i in range(s.rounds):
            for kind, done in rounds.items():
                print(f"round {i + 1}/{s.rounds}: {kind}", file=sys.stderr, flush=True)
                done.append(b.measure(kind))
            if s.access_log_run:
                for kind, done in log_rounds.items():
                    print(f"round {i + 1}/{s.rounds}: {kind} + access log", file=sys.stderr)
                    done.append(b.measure_access_log(kind))
            for kind, done in many_rounds.items():
                print(f"round {i + 1}/{s.rounds}: {kind}, {s.sse_many} streams", file=sys.stderr, flush=True)
                done.append(b.measure_many(kind))
    finally:
        b.close()
    meta["load_after"] = load_avg()
    rows = {k: median_rows(v) for k, v in rounds.items()}
    logs = {k: median_rows(v) for k, v in log_rounds.items() if v}
    many = {k: median_rows(v) for k, v in many_rounds.items() if v}
    report = build_report(rows, logs, s, meta, many)
    print(report)
    results = BENCH / "results"
    results.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    (results / f"{stamp}.md").write_text(report)
    (results / f"{stamp}.json").write_text(
        json.dumps(
            {
                "meta": meta,
                "settings": {**asdict(s), "relay_bin": str(s.relay_bin), "baseline_bin": str(s.baseline_bin)},
            }
            | {"rows": rows, "access_log": logs, "rounds": rounds, "access_log_rounds": log_rounds}
            | {"many_streams": many, "many_streams_rounds": many_rounds},
            indent=2,
        )
    )
    print(f"saved bench/results/{stamp}.md and .json", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
