"""Instructions per proxied request, the relay against nginx, counted by valgrind's callgrind.

Wall-clock CPU time per request (bench/bench.py) needs a quiet machine; instruction counts do not: the
same binary serving the same requests executes the same instructions whatever else the cores run. So
each proxy is started under `valgrind --tool=callgrind`, served `warmup` keep-alive requests (pools
filled, caches and statements warm), its counters zeroed (`callgrind_control -z`), served `requests`
more, and dumped (`callgrind_control -d`): the dump's total over `requests` is the proxy's user-space
instructions per request, every thread included (the relay's runtime worker, its SQLite thread and its
log writer; nginx runs one process, `master_process off`). Kernel work (the loopback TCP stack) is not
counted; `INSTR_SYSCALLS=1` adds a second pass that counts system calls per request with `strace -c -f`.

The request, upstream and routing are bench.py's: `POST .../chat/completions` with a small JSON body to
nginx `proxy_pass` (upstream keepalive) and to the relay with a token in the path, both forwarding to
the same nginx `return 200` upstream, which answers a chat completion with `usage`. The client is this
script (asyncio, `connections` keep-alive connections, each sending its next request when the previous
answer is complete); every answer must be a 200 with the upstream's exact body.

Targets (INSTR_TARGETS, comma-separated): `nginx` and `nginx+log` (nginx without and with its access
log), `relay` (the default configuration: SQLite store, access log on), `relay-nolog` (SQLite, log off),
`relay-memory` (memory store, log off), `relay-memory+log`. Each relay target is compared with the nginx
target of the same access-log setting. `RELAY_BASELINE_BIN` adds the same relay targets for another
binary (`...@baseline`). Keep the dumps with INSTR_KEEP=<dir> to read them with `callgrind_annotate`.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))
import bench  # noqa: E402  (the sibling driver: configs, token minting, the upstream)

DEFAULT_TARGETS = ("nginx", "nginx+log", "relay", "relay-memory")
RELAY_TARGETS = {
    # target: (store, access log)
    "relay": ("sqlite", True),
    "relay-nolog": ("sqlite", False),
    "relay-memory": ("memory", False),
    "relay-memory+log": ("memory", True),
}
# How long a server under valgrind may take to start (it runs tens of times slower).
START_TIMEOUT_S = 120.0


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SystemExit(f"{name}={raw!r}: expected a whole number") from None
    if value < 1:
        raise SystemExit(f"{name}={value}: must be at least 1")
    return value


def request_bytes(path: str, port: int) -> bytes:
    """What wrk sends with bench/post.lua."""
    body = bench.REQUEST_BODY.encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer unused\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def read_answer(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One HTTP/1.1 answer: its status and body (Content-Length or chunked)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    if "content-length" in headers:
        return status, await reader.readexactly(int(headers["content-length"]))
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = b""
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                return status, body
            body += await reader.readexactly(size)
            await reader.readexactly(2)
    raise RuntimeError(f"answer without a length: {head!r}")


async def drive(port: int, path: str, connections: int, total: int) -> None:
    """`total` requests over `connections` keep-alive connections; raises on any wrong answer."""
    req = request_bytes(path, port)
    expected = bench.RESPONSE_BODY.encode()
    share = [total // connections + (1 if i < total % connections else 0) for i in range(connections)]

    async def one(n: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for _ in range(n):
                writer.write(req)
                status, body = await read_answer(reader)
                if status != 200 or body != expected:
                    raise RuntimeError(f"answer {status}: {body[:200]!r}")
        finally:
            writer.close()

    await asyncio.gather(*(one(n) for n in share if n))


class Instr:
    def __init__(self) -> None:
        self.requests = env_int("INSTR_REQUESTS", 20000)
        self.warmup = env_int("INSTR_WARMUP", 2000)
        self.connections = env_int("INSTR_CONNECTIONS", 16)
        raw = os.environ.get("INSTR_TARGETS", ",".join(DEFAULT_TARGETS))
        self.targets = [t.strip() for t in raw.split(",") if t.strip()]
        for t in self.targets:
            if t not in ("nginx", "nginx+log") and t not in RELAY_TARGETS:
                known = ", ".join(["nginx", "nginx+log", *RELAY_TARGETS])
                raise SystemExit(f"INSTR_TARGETS: unknown target {t!r} (known: {known})")
        self.syscalls = bench.switched_on(os.environ.get("INSTR_SYSCALLS", "0"))
        self.relay_bin = Path(os.environ.get("RELAY_BIN", ROOT / "target" / "release" / "relayapi"))
        base = os.environ.get("RELAY_BASELINE_BIN")
        self.baseline_bin = Path(base) if base else None
        keep = os.environ.get("INSTR_KEEP")
        self.keep = Path(keep) if keep else None
        self.b = bench.Bench(bench.Settings(relay_bin=self.relay_bin, budgets=("none",)))
        self.work = self.b.work

    # -- servers ----------------------------------------------------------------------------------

    def start(self, target: str, binary: Path, wrap: list[str]) -> tuple[subprocess.Popen, int]:
        """Start one proxy under `wrap` (valgrind or strace, or nothing); returns it and its port."""
        log_dir = self.work / "logs"
        log_dir.mkdir(exist_ok=True)
        stderr = open(log_dir / f"{target}.stderr", "wb")  # noqa: SIM115 (owned by Popen)
        if target.startswith("nginx"):
            port = bench.free_port()
            log = "+log" in target
            conf = bench.proxy_nginx_conf(self.work, port, self.b.up.port, self.b.sse_up.port, log)
            path = self.work / "proxy.conf"
            path.write_text(conf)
            argv = ["nginx", "-p", str(self.work), "-c", str(path), "-g", "daemon off; master_process off;"]
            proc = subprocess.Popen([*wrap, *argv], stdout=subprocess.DEVNULL, stderr=stderr)
            self.wait_port(port, proc)
            return proc, port
        store, log = RELAY_TARGETS[target.removesuffix(bench.BASELINE)]
        if store == "sqlite":
            self.b.db_seq += 1
            store_cfg = {"type": "sqlite", "path": str(self.work / f"usage-{self.b.db_seq}.db")}
        else:
            store_cfg = {"type": store}
        cfg = self.work / "relay.json"
        config = bench.relay_config(self.b.up.port, self.b.sse_up.port, log, store_cfg, prices=False)
        cfg.write_text(json.dumps(config))
        out = open(self.work / "relay-access.log", "wb") if log else subprocess.DEVNULL  # noqa: SIM115
        err_path = log_dir / f"{target}.relay-stderr"
        proc = subprocess.Popen(
            [*wrap, str(binary), "--config", str(cfg), "--rai", str(self.work / "bench.rai")],
            stdout=out,
            stderr=open(err_path, "wb"),  # noqa: SIM115 (owned by Popen)
            env={**os.environ, "TOKIO_WORKER_THREADS": "1"},
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{target} did not start:\n{err_path.read_text()}")
            for line in err_path.read_text().splitlines():
                if '"listening"' in line:
                    port = int(json.loads(line)["addr"].rsplit(":", 1)[1])
                    self.wait_port(port, proc)
                    return proc, port
            time.sleep(0.1)

    @staticmethod
    def wait_port(port: int, proc: subprocess.Popen) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"exited with {proc.returncode} before listening on {port}")
            try:
                with bench.socket.create_connection(("127.0.0.1", port), timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"nothing listening on {port}")

    @staticmethod
    def stop(proc: subprocess.Popen) -> None:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def run_client(self, port: int, total: int) -> None:
        # nginx drops the token segment as the relay does, so both get the same path.
        path = f"/relayapi/{self.b.tokens[('openai', 'none')]}/chat/completions"
        asyncio.run(drive(port, path, self.connections, total))

    # -- measurements -----------------------------------------------------------------------------

    def instructions(self, target: str, binary: Path) -> int:
        """Instructions (Ir) per request over the measured requests, every thread of the proxy."""
        out = self.work / f"callgrind-{target}"
        out.mkdir(exist_ok=True)
        wrap = [
            "valgrind",
            "--tool=callgrind",
            f"--callgrind-out-file={out}/callgrind.out.%p",
            f"--log-file={out}/valgrind.log",
        ]
        proc, port = self.start(target, binary, wrap)
        try:
            self.run_client(port, self.warmup)
            subprocess.run(["callgrind_control", "-z", str(proc.pid)], check=True, capture_output=True)
            self.run_client(port, self.requests)
            subprocess.run(["callgrind_control", "-d", str(proc.pid)], check=True, capture_output=True)
        finally:
            self.stop(proc)
        dumps = sorted(out.glob(f"callgrind.out.{proc.pid}.*"))
        if not dumps:
            raise RuntimeError(f"{target}: no callgrind dump in {out}")
        text = dumps[-1].read_text(errors="replace")
        m = re.search(r"^(?:summary|totals): (\d+)", text, re.MULTILINE)
        if not m:
            raise RuntimeError(f"{target}: no totals in {dumps[-1]}")
        if self.keep:
            self.keep.mkdir(parents=True, exist_ok=True)
            shutil.copy(dumps[-1], self.keep / f"callgrind.{target}.out")
        return int(m.group(1)) // self.requests

    def syscalls_per_request(self, target: str, binary: Path) -> float:
        """System calls per request (strace -c -f attached after the warm-up, every thread)."""
        proc, port = self.start(target, binary, [])
        summary = self.work / f"strace-{target}.txt"
        try:
            self.run_client(port, self.warmup)
            tracer = subprocess.Popen(
                ["strace", "-c", "-f", "-o", str(summary), "-p", str(proc.pid)],
                stderr=subprocess.DEVNULL,
            )
            time.sleep(1.0)  # strace attaches to every thread before the measured requests start
            self.run_client(port, self.requests)
            tracer.send_signal(signal.SIGINT)
            tracer.wait(timeout=60)
        finally:
            self.stop(proc)
        totals = [ln for ln in summary.read_text().splitlines() if ln.strip().endswith("total")]
        if not totals:
            raise RuntimeError(f"{target}: no strace summary")
        # "% time, seconds, usecs/call, calls, [errors,] total": calls is the fourth column.
        return int(totals[-1].split()[3]) / self.requests

    def run(self) -> None:
        self.b.start_upstreams()
        self.b.make_tokens()
        runs: list[tuple[str, Path]] = [
            (t, self.relay_bin if not t.startswith("nginx") else Path("nginx")) for t in self.targets
        ]
        if self.baseline_bin:
            runs += [(f"{t}{bench.BASELINE}", self.baseline_bin) for t in self.targets if t in RELAY_TARGETS]
        results: dict[str, dict] = {}
        for target, binary in runs:
            print(f"# {target} ...", file=sys.stderr, flush=True)
            results[target] = {"ir": self.instructions(target, binary)}
            if self.syscalls:
                results[target]["syscalls"] = self.syscalls_per_request(target, binary)
        self.report(results)

    def report(self, results: dict[str, dict]) -> None:
        print(
            f"\n{self.requests} requests after {self.warmup} of warm-up, {self.connections} connections, "
            f"instructions per request (callgrind, user space, every thread)\n"
        )
        cols = "| target | instructions/request | × nginx (same access-log setting) |"
        sep = "|---|---|---|"
        if self.syscalls:
            cols += " syscalls/request |"
            sep += "---|"
        print(cols)
        print(sep)
        for target, r in results.items():
            base = target.removesuffix(bench.BASELINE)
            ref = "nginx+log" if base.endswith("+log") or base == "relay" else "nginx"
            ratio = ""
            if not target.startswith("nginx") and ref in results:
                ratio = f"{r['ir'] / results[ref]['ir']:.2f}×"
            row = f"| {target} | {r['ir']:,} | {ratio} |"
            if self.syscalls:
                row += f" {r['syscalls']:.2f} |"
            print(row)

    def close(self) -> None:
        self.b.close()


def main() -> None:
    for tool in ("valgrind", "callgrind_control", "nginx"):
        if shutil.which(tool) is None:
            raise SystemExit(f"bench/instructions.py: {tool} not found (bench/instructions.sh installs it)")
    run = Instr()
    try:
        run.run()
    finally:
        run.close()


if __name__ == "__main__":
    main()
