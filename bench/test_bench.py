"""Tests for the benchmark driver's own logic: parsing the tools' output, the figures derived from
/proc, the nginx configs it writes, the SSE pair and the report. No timing is asserted: these check that
the benchmark measures what it says, not how fast anything is.

Run: .venv/bin/python -m pytest bench/ (the venv scripts/test.sh makes; needs only pytest)
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import ssl
import subprocess
from pathlib import Path

import pytest

import bench
import certs
import sse

WRK_OUTPUT = """Running 10s test @ http://127.0.0.1:40123/relayapi/rt1.x/chat/completions
  1 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.21ms  310.55us  12.40ms   91.20%
    Req/Sec    53.10k     2.01k   56.33k    80.00%
  528419 requests in 10.00s, 267.05MB read
  Non-2xx or 3xx responses: 3
  Socket errors: connect 0, read 2, write 0, timeout 1
Requests/sec:  52838.14
Transfer/sec:     26.70MB
"""

OHA_OUTPUT = {
    "summary": {
        "successRate": 1.0,
        "total": 10.0,
        "slowest": 0.004,
        "fastest": 0.0001,
        "average": 0.0002,
        "requestsPerSec": 999.8,
    },
    "latencyPercentiles": {"p10": 0.0001, "p50": 0.000151, "p99": 0.000402, "p99.9": 0.001},
    "statusCodeDistribution": {"200": 9990, "401": 5},
    "errorDistribution": {"connection closed": 3},
}


def test_wrk_output_gives_counts_rate_and_errors():
    r = bench.parse_wrk(WRK_OUTPUT)
    assert (r.requests, r.seconds, r.rps) == (528419, 10.0, 52838.14)
    assert (r.non_2xx, r.socket_errors) == (3, 3)


def test_wrk_output_without_error_lines_means_no_errors():
    clean = "\n".join(
        line for line in WRK_OUTPUT.splitlines() if "Non-2xx" not in line and "Socket" not in line
    )
    r = bench.parse_wrk(clean)
    assert (r.non_2xx, r.socket_errors) == (0, 0)


def test_wrk_duration_units_are_converted_to_seconds():
    r = bench.parse_wrk(WRK_OUTPUT.replace("in 10.00s", "in 1.50m"))
    assert r.seconds == 90.0


def test_unrecognised_wrk_output_is_an_error_not_a_zero():
    with pytest.raises(ValueError, match="unrecognised"):
        bench.parse_wrk("unable to connect to 127.0.0.1:9 Connection refused\n")


def test_oha_json_gives_microsecond_percentiles_and_counts_non_2xx_as_errors():
    r = bench.parse_oha(json.dumps(OHA_OUTPUT))
    assert r.p50_us == pytest.approx(151.0)
    assert r.p99_us == pytest.approx(402.0)
    assert (r.requests, r.ok, r.errors) == (9998, 9990, 8)
    assert r.rps == pytest.approx(999.8)


def test_proc_stat_cpu_counts_from_the_last_parenthesis():
    # A command name may hold spaces and parentheses; utime=1234 and stime=56 are fields 14 and 15.
    fields = ["S", "1", "2", "3", "0", "-1", "4194560", "100", "0", "0", "0", "1234", "56", "0", "0"]
    line = "4242 (tokio (worker) 1) " + " ".join(fields) + " 20 0 1 0\n"
    assert bench.parse_proc_stat_cpu(line) == 1290


def test_proc_stat_cpu_of_this_process_is_read():
    text = Path(f"/proc/{os.getpid()}/stat").read_text()
    assert bench.parse_proc_stat_cpu(text) >= 0
    assert bench.cpu_ticks([os.getpid()]) >= bench.parse_proc_stat_cpu(text)


def test_vm_rss_is_in_bytes():
    assert bench.parse_vm_rss("Name:\tx\nVmRSS:\t   2048 kB\nVmData:\t1 kB\n") == 2 * 1024 * 1024
    with pytest.raises(ValueError, match="VmRSS"):
        bench.parse_vm_rss("Name:\tx\nState:\tZ (zombie)\n")
    assert bench.rss_bytes([os.getpid()]) > 0


def test_settings_from_env_reads_and_checks_values():
    s = bench.Settings.from_env({"BENCH_DURATION": "3", "BENCH_WARMUP": "0", "BENCH_ACCESS_LOG": "0"})
    assert (s.duration, s.warmup, s.access_log_run) == (3, 0, False)
    with pytest.raises(SystemExit, match="BENCH_RATE"):
        bench.Settings.from_env({"BENCH_RATE": "fast"})
    with pytest.raises(SystemExit, match="at least 1"):
        bench.Settings.from_env({"BENCH_SSE_STREAMS": "0"})
    assert bench.Settings.from_env({"BENCH_NICE": "0"}).nice == 0
    # The many-streams run and the wrk run can be skipped; the main SSE run cannot.
    s = bench.Settings.from_env({"BENCH_SSE_MANY": "0", "BENCH_THROUGHPUT": "0"})
    assert (s.sse_many, s.throughput) == (0, False)
    assert bench.Settings().sse_many == 10000
    with pytest.raises(SystemExit, match="BENCH_NICE"):
        bench.Settings.from_env({"BENCH_NICE": "-30"})


def test_ratio_refuses_missing_or_zero_baselines():
    assert bench.ratio(3.0, 2.0) == 1.5
    assert bench.ratio(None, 2.0) is None
    assert bench.ratio(1.0, 0.0) is None


def test_median_rows_takes_the_median_of_numbers_only():
    rows = [{"target": "relay", "rps": 10.0, "x": None}, {"target": "relay", "rps": 30.0, "x": None}]
    rows.append({"target": "relay", "rps": 20.0, "x": None})
    assert bench.median_rows(rows) == {"target": "relay", "rps": 20.0, "x": None}


@pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx is not installed")
@pytest.mark.parametrize(
    "which", ["upstream", "proxy", "proxy-log", "proxy-many", "upstream-tls", "proxy-tls"]
)
def test_generated_nginx_configs_pass_nginx_t(tmp_path, which):
    tls = certs.make(tmp_path) if which.endswith("-tls") else None
    conf = {
        "upstream": lambda: bench.upstream_nginx_conf(tmp_path, 18081),
        "proxy": lambda: bench.proxy_nginx_conf(tmp_path, 18082, 18081, 18083, access_log=False),
        "proxy-log": lambda: bench.proxy_nginx_conf(tmp_path, 18082, 18081, 18083, access_log=True),
        "proxy-many": lambda: bench.proxy_nginx_conf(tmp_path, 18082, 18081, 18083, False, streams=10000),
        "upstream-tls": lambda: bench.upstream_nginx_conf(tmp_path, 18081, tls),
        "proxy-tls": lambda: bench.proxy_nginx_conf(tmp_path, 18082, 18081, 18083, False, tls=tls),
    }[which]()
    path = tmp_path / "t.conf"
    path.write_text(conf)
    r = subprocess.run(
        ["nginx", "-t", "-p", str(tmp_path), "-c", str(path), "-g", "error_log stderr;"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert r.returncode == 0, r.stderr


def test_relay_config_disables_limiters_and_points_at_both_upstreams():
    c = bench.relay_config(1111, 2222, access_log=True, store={"type": "memory"})
    assert c["rate_limit"]["requests_per_second"] == 0
    assert c["rate_limit"]["ip_limit"]["requests_per_second"] == 0
    assert c["providers"]["openai"]["base_url"] == "http://127.0.0.1:1111/v1"
    assert c["providers"]["anthropic"]["base_url"] == "http://127.0.0.1:2222"
    assert c["log"]["access"] is True
    assert c["store"] == {"type": "memory"}


def test_a_tls_run_points_both_proxies_at_https_upstreams_they_verify(tmp_path):
    tls = certs.make(tmp_path)
    c = bench.relay_config(1111, 2222, access_log=False, store={"type": "memory"}, tls=tls)
    assert c["providers"]["openai"]["base_url"] == "https://127.0.0.1:1111/v1"
    assert c["providers"]["anthropic"]["base_url"] == "https://127.0.0.1:2222"
    assert c["providers"][bench.STREAM_PROVIDER]["base_url"] == "https://127.0.0.1:2222/v1"
    assert c["upstream"]["extra_ca_file"] == str(tls.ca)
    assert "extra_ca_file" not in bench.relay_config(1, 2, access_log=False, store={})["upstream"]
    conf = bench.proxy_nginx_conf(tmp_path, 1, 2, 3, access_log=False, tls=tls)
    # Both locations: HTTPS, the chain and the name checked against the run's CA, sessions reused.
    assert conf.count("proxy_pass https://") == 2
    assert "proxy_pass http://" not in conf
    assert conf.count("proxy_ssl_verify on;") == 2
    assert conf.count(f"proxy_ssl_trusted_certificate {tls.ca};") == 2
    assert conf.count("proxy_ssl_session_reuse on;") == 2
    assert "ssl_certificate_key" in bench.upstream_nginx_conf(tmp_path, 1, tls)
    assert "proxy_ssl" not in bench.proxy_nginx_conf(tmp_path, 1, 2, 3, access_log=False)
    assert bench.Settings.from_env({"BENCH_TLS": "1"}).tls
    assert not bench.Settings.from_env({}).tls


def test_the_bench_ca_verifies_the_tls_upstream_by_its_address_and_nothing_else_does(tmp_path):
    """A real handshake: the SSE upstream serving the generated chain, the client trusting only the
    generated CA and checking the name 127.0.0.1, as the relay and nginx do."""
    tls = certs.make(tmp_path)
    trusted = ssl.create_default_context(cafile=str(tls.ca))
    stranger = ssl.create_default_context()

    async def run(client: ssl.SSLContext):
        server = await sse.start_upstream(
            0, events=2, interval=0.001, tls=sse.server_tls(str(tls.chain), str(tls.key))
        )
        port = server.sockets[0].getsockname()[1]
        async with server:
            return await sse.hold_streams("127.0.0.1", port, "/v1/messages", 3, lambda: 1, tls=client)

    res = asyncio.run(run(trusted))
    assert res.complete == 3, res.errors
    assert [s.events for s in res.streams] == [2] * 3
    # The system's roots do not know the bench CA: the handshake fails rather than being skipped.
    res = asyncio.run(run(stranger))
    assert res.complete == 0
    assert all("CERTIFICATE_VERIFY_FAILED" in (s.error or "") for s in res.streams), res.errors


def test_proxies_are_sized_for_the_streams_they_hold(tmp_path):
    # Two descriptors per proxied stream (client and provider), plus the proxy's own.
    assert bench.streams_within(20000) == (20000 - bench.FD_RESERVE) // 2
    assert bench.streams_within(10) == 0
    # The relay gets twice the slots it needs: it reclaims idle connections when 10 % are left.
    c = bench.relay_config(1, 2, access_log=False, store={}, streams=10000)
    assert c["server"]["max_connections"] == c["server"]["max_connections_per_ip"] == 20000
    assert bench.relay_config(1, 2, access_log=False, store={})["server"]["max_connections"] == 8192
    # nginx counts both legs of a stream.
    conf = bench.proxy_nginx_conf(tmp_path, 1, 2, 3, access_log=False, streams=10000)
    assert f"worker_connections {20000 + bench.NGINX_SPARE_CONNECTIONS};" in conf
    assert "worker_connections 8192;" in bench.proxy_nginx_conf(tmp_path, 1, 2, 3, access_log=False)


def test_relay_stores_come_from_the_environment_and_name_the_targets():
    assert bench.Settings().relay_stores == ("sqlite", "memory")
    s = bench.Settings.from_env({"BENCH_RELAY_STORES": "memory"})
    assert [bench.relay_kind(x) for x in s.relay_stores] == ["relay-memory"]
    assert bench.relay_kind("sqlite") == "relay"
    with pytest.raises(SystemExit, match="BENCH_RELAY_STORES"):
        bench.Settings.from_env({"BENCH_RELAY_STORES": "redis"})


def test_sse_pair_delivers_every_event_and_samples_memory_while_all_streams_are_open():
    async def run():
        server = await sse.start_upstream(0, events=4, interval=0.001)
        port = server.sockets[0].getsockname()[1]
        samples = []

        def sample():
            samples.append(bench.rss_bytes([os.getpid()]))
            return samples[-1]

        async with server:
            res = await sse.hold_streams("127.0.0.1", port, "/v1/messages", 6, sample)
        return res, samples

    res, samples = asyncio.run(run())
    assert res.complete == 6, res.errors
    assert [s.events for s in res.streams] == [4] * 6
    # One sample per event the slowest stream gets once all six have started: events 1 to 4.
    assert len(samples) == 4
    assert res.rss_open == max(samples)


def test_sse_client_samples_nothing_when_the_first_stream_ends_before_the_last_begins():
    async def run():
        first_closed = asyncio.Event()
        connections = [0]

        async def serve(reader, writer):
            connections[0] += 1
            first = connections[0] == 1
            await sse.read_head(reader)
            if not first:
                await first_closed.wait()
            writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
            for i in range(2):
                writer.write(sse.chunk(sse.event_payload(i)))
            writer.write(sse.chunk(b"data: [DONE]\n\n") + b"0\r\n\r\n")
            await writer.drain()
            if first:
                # The client closes once it has read the whole stream: only then do the others answer.
                await reader.read()
                first_closed.set()
            writer.close()

        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            return await sse.hold_streams("127.0.0.1", port, "/x", 3, lambda: 1)

    res = asyncio.run(run())
    assert res.complete == 3, res.errors
    assert res.never_all_open
    assert res.rss_open == 0


def test_sse_client_reports_a_refused_stream_instead_of_counting_it():
    async def run():
        async def refuse(reader, writer):
            await sse.read_head(reader)
            writer.write(b"HTTP/1.1 401 Unauthorized\r\ncontent-length: 0\r\n\r\n")
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(refuse, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            return await sse.hold_streams("127.0.0.1", port, "/x", 2, lambda: 1)

    res = asyncio.run(run())
    assert res.complete == 0
    assert res.rss_open == 0
    assert all("401" in e for e in res.errors)


def report_meta(**kw) -> dict:
    """What `main` puts in a report's heading, with placeholder values."""
    meta = {
        "date": "d",
        "machine": "m",
        "nginx": "1.22",
        "commit": "c",
        "load_before": "0",
        "load_after": "0",
    }
    meta.update(kw)
    return meta


def row(target: str, **kw) -> dict:
    base = {
        "target": target,
        "rps": 50000.0,
        "cpu_us": 20.0,
        "cpu_us_at_rate": 40.0,
        "p50_us": 100.0,
        "p99_us": 200.0,
        "rss_per_stream": 16 * 1024.0,
        "sse_complete": 200,
        "sse_seconds": 1.1,
        "sse_errors": [],
        "non_2xx": 0,
        "socket_errors": 0,
        "lat_errors": 0,
    }
    base.update(kw)
    return base


def test_report_gives_relay_over_nginx_ratios_and_added_latency_over_direct():
    rows = {
        "direct": row("direct", p50_us=50.0, p99_us=100.0, rss_per_stream=None),
        "nginx": row("nginx", rps=60000.0, cpu_us=15.0, p50_us=130.0, p99_us=180.0),
        "relay": row("relay", rps=45000.0, cpu_us=20.0, p50_us=170.0, p99_us=260.0),
    }
    meta = report_meta()
    text = bench.build_report(rows, {}, bench.Settings(), meta)
    ratio_line = next(line for line in text.splitlines() if line.startswith("| **relay, sqlite"))
    # 45000/60000, 20/15, added p50 (170-50)/(130-50), added p99 (260-100)/(180-100), RSS 16/16.
    assert "**0.75×**" in ratio_line
    assert "**1.33×**" in ratio_line
    assert "**1.50× / 2.00×**" in ratio_line
    assert ratio_line.count("1.00×") == 2
    assert "+80 / +80 µs" in text
    assert "Problems" not in text
    assert "Access log ON" not in text


def test_report_has_a_ratio_row_per_relay_variant_and_the_access_log_cost():
    rows = {
        "direct": row("direct", rss_per_stream=None),
        "nginx": row("nginx", cpu_us=10.0),
        "relay": row("relay", cpu_us=30.0),
        "relay-memory": row("relay-memory", cpu_us=12.0),
    }
    logs = {"nginx": row("nginx + log", cpu_us=14.0), "relay": row("relay + log", cpu_us=33.0)}
    meta = report_meta()
    lines = bench.build_report(rows, logs, bench.Settings(), meta).splitlines()
    # Each table has its ratio rows: two in the main one, one in the access-log one (the open-loop
    # tables that follow each have their own, checked elsewhere).
    open_off = next(i for i, line in enumerate(lines) if line.startswith("Open loop, access log off"))
    log_start = next(i for i, line in enumerate(lines) if line.startswith("Access log ON"))
    open_on = next(i for i, line in enumerate(lines) if line.startswith("Open loop, access log ON"))
    ratios = [line for line in lines[:open_off] if line.startswith("| **relay")]
    ratios += [line for line in lines[log_start:open_on] if line.startswith("| **relay")]
    assert len(ratios) == 3
    assert "**3.00×**" in ratios[0]
    assert "**1.20×**" in ratios[1]
    # Log cost: 14 - 10 for nginx, 33 - 30 for the relay.
    assert any(line.startswith("| nginx + access log") and "+4.0 µs" in line for line in lines)
    assert any(line.startswith("| relay, sqlite") and "+3.0 µs" in line for line in lines)


def test_open_loop_tables_give_p99_cpu_and_how_busy_half_the_direct_rate_keeps_each_proxy():
    half = {"half_rate": 25000, "half_p99_us": 400.0, "half_errors": 0}
    rows = {
        "direct": row("direct", rss_per_stream=None),
        "nginx": row("nginx", **half, half_rps=25000.0, half_busy=0.5),
        "relay": row("relay", **half, half_rps=24000.0, half_busy=1.0, p99_us=300.0),
    }
    logs = {
        "nginx": row("nginx + access log", **half, half_rps=25000.0, half_busy=0.6),
        "relay": row("relay + access log", **half, half_rps=25000.0, half_busy=0.9),
    }
    meta = report_meta()
    lines = bench.build_report(rows, logs, bench.Settings(), meta).splitlines()
    off = lines.index("Open loop, access log off (oha, latency-corrected):")
    on = next(i for i, line in enumerate(lines) if line.startswith("Open loop, access log ON"))
    assert "at 25000/s (half the direct max)" in lines[off + 2]
    # The direct upstream is not a proxy: it has no row there.
    assert not any(line.startswith("| direct") for line in lines[off:on])
    off_ratio = next(line for line in lines[off:on] if line.startswith("| **relay"))
    # p99 300/200, core busy 1.0/0.5.
    assert "**1.50×**" in off_ratio
    assert "**2.00×**" in off_ratio
    # With the log: the same p99 (a ratio of one), core busy 0.9/0.6.
    on_ratio = next(line for line in lines[on:] if line.startswith("| **relay"))
    assert "**1.00×**" in on_ratio
    assert "**1.50×**" in on_ratio
    relay_on = next(line for line in lines[on:] if line.startswith("| relay + access log |"))
    assert "| 90 % |" in relay_on


def test_an_sse_only_run_has_no_open_loop_table():
    skipped = {"rps": None, "cpu_us": None, "cpu_us_at_rate": None, "p50_us": None, "p99_us": None}
    rows = {k: row(k, **skipped) for k in ("direct", "nginx", "relay")}
    meta = report_meta()
    text = bench.build_report(rows, {}, bench.Settings(latency=False, half_rate=False), meta)
    assert "Open loop" not in text
    assert "RSS per open SSE stream" in text


def test_half_rate_errors_are_flagged():
    rows = {"direct": row("direct", rss_per_stream=None), "nginx": row("nginx"), "relay": row("relay")}
    rows["relay"]["half_errors"] = 12
    meta = report_meta()
    assert "relay: half_errors = 12" in bench.build_report(rows, {}, bench.Settings(), meta)


def test_report_has_the_many_streams_table_and_flags_its_problems():
    rows = {"direct": row("direct", rss_per_stream=None), "nginx": row("nginx"), "relay": row("relay")}
    many = {
        "nginx": row("nginx", rss_per_stream=16 * 1024.0, sse_complete=9968, sse_seconds=40.0),
        "relay-memory": row(
            "relay-memory", rss_per_stream=20 * 1024.0, sse_complete=9000, sse_seconds=41.0, sse_errors=["x"]
        ),
    }
    many["relay-memory"]["sse_never_all_open"] = True
    meta = report_meta(sse_many_note=" (10,000 asked: limited)")
    s = bench.Settings(sse_many=9968)
    text = bench.build_report(rows, {}, s, meta, many)
    assert "with 9,968 streams held at once" in text
    assert "(10,000 asked: limited):" in text
    line = next(x for x in text.splitlines() if x.startswith("| relay, memory store |"))
    assert "| 20.0 KiB | **1.25×** | 9000/9968, 41.0 s |" in line
    assert "relay-memory: SSE failures ['x'] (9968 streams)" in text
    assert "relay-memory: the first stream ended before the last began" in text
    assert "Many streams" not in bench.build_report(rows, {}, s, meta)


def test_report_flags_errors_so_a_run_of_failures_is_not_read_as_fast():
    rows = {
        "direct": row("direct", rss_per_stream=None),
        "nginx": row("nginx"),
        "relay": row("relay", non_2xx=500, sse_complete=150, sse_errors=["status 401"]),
    }
    logs = {"nginx": row("nginx + access log"), "relay": row("relay + access log", socket_errors=7)}
    meta = report_meta()
    text = bench.build_report(rows, logs, bench.Settings(), meta)
    assert "relay: non_2xx = 500" in text
    assert "relay: SSE failures ['status 401']" in text
    assert "relay + access log: socket_errors = 7" in text
    assert "Access log ON" in text


def test_budget_rows_come_from_the_environment_and_name_their_store_and_limit():
    assert bench.Settings().budgets == ("none", "tok", "uq", "cost")
    s = bench.Settings.from_env({"BENCH_BUDGETS": "none,uq", "BENCH_LATENCY": "0"})
    assert (s.budgets, s.latency) == (("none", "uq"), False)
    with pytest.raises(SystemExit, match="BENCH_BUDGETS"):
        bench.Settings.from_env({"BENCH_BUDGETS": "calls"})
    assert bench.relay_kind("sqlite", "tok") == "relay+tok"
    assert bench.relay_kind("memory", "none") == "relay-memory"
    assert bench.kind_parts("relay-memory+uq") == ("relay-memory", "uq")
    assert bench.kind_parts("relay") == ("relay", "none")
    assert bench.label("relay+cost") == "relay, sqlite store (default), money budget"


def test_bench_tokens_carry_the_spend_claims_each_row_is_named_after():
    client = bench.RelayAPIClient(str(bench.ROOT / "default.rai"))

    def claims(budget: str) -> dict:
        opts = bench.token_options(budget)
        token = client.create_token(api_key="k", provider="openai", max_calls=None, **opts)
        return client.decode_token(token)

    plain = claims("none")
    assert "bud" not in plain
    assert "uq" not in plain
    assert claims("tok")["bud"] == {"tok": bench.NEVER_RUNS_OUT}
    assert claims("cost")["bud"] == {"cost": bench.NEVER_RUNS_OUT}
    uq = claims("uq")
    assert uq["uid"] == bench.BENCH_USER
    assert uq["uq"] == [{"w": "day", "tok": bench.NEVER_RUNS_OUT}]


def test_relay_config_prices_the_models_a_money_budget_is_charged_for():
    c = bench.relay_config(1111, 2222, access_log=False, store={"type": "memory"})
    stream = c["providers"][bench.STREAM_PROVIDER]
    assert stream == {"base_url": "http://127.0.0.1:2222/v1", "auth": "bearer", "family": "openai"}
    prices = c["budgets"]["prices"]
    # The model of the JSON request and of the streamed one, under the provider each token names.
    assert json.loads(bench.REQUEST_BODY)["model"] in prices["openai"]
    assert "bench-model" in prices[bench.STREAM_PROVIDER]


def test_sse_upstream_reports_usage_only_when_asked_and_the_client_times_every_event():
    async def run(body: bytes):
        server = await sse.start_upstream(0, events=3, interval=0.02)
        port = server.sockets[0].getsockname()[1]
        async with server:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(
                b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-length: %d\r\n\r\n%s"
                % (len(body), body)
            )
            await writer.drain()
            head = await sse.read_head(reader)
            res = sse.StreamResult(status=200)
            await sse.read_chunked_events(reader, res, lambda r: None)
            writer.close()
        return head, res

    asked = b'{"model":"m","stream":true,"stream_options":{"include_usage":true}}'
    head, res = asyncio.run(run(asked))
    assert sse.header_value(head, sse.USAGE_ASKED_HEADER) == b"1"
    # Three parts, then the usage-only chunk (no provider timestamp, so no lag), then [DONE].
    assert (res.events, res.done, len(res.lags_s)) == (4, True, 3)
    head, res = asyncio.run(run(b'{"model":"m","stream":true}'))
    assert sse.header_value(head, sse.USAGE_ASKED_HEADER) is None
    assert (res.events, res.done, len(res.gaps_s)) == (3, True, 2)
    # The gaps are the provider's pace (20 ms), never negative; lags are small and non-negative.
    assert all(0.01 < g < 1.0 for g in res.gaps_s)
    assert all(0 <= x < 1.0 for x in res.lags_s)
    assert sse.wants_usage(b'{"stream_options":{"include_usage":false}}') is False
    assert sse.wants_usage(b"not json") is False


def test_percentiles_are_nearest_rank():
    values = [float(x) for x in range(1, 101)]
    assert sse.percentile(values, 50) == 50.0
    assert sse.percentile(values, 99) == 99.0
    assert sse.percentile([7.0], 99) == 7.0
    assert sse.percentile([], 50) is None


def test_report_has_the_metering_table_against_nginx_and_the_unbudgeted_row():
    timing = {
        "sse_cpu_us": 200.0,
        "sse_ttfe_p50_ms": 2.0,
        "sse_gap_p50_ms": 50.0,
        "sse_gap_p99_ms": 52.0,
        "sse_lag_p50_ms": 0.5,
        "sse_lag_p99_ms": 1.0,
        "sse_usage_asked": 0,
    }
    rows = {
        "direct": row("direct", rss_per_stream=None, **timing),
        "nginx": row("nginx", cpu_us=20.0, **timing),
        "relay": row("relay", cpu_us=30.0, **{**timing, "sse_cpu_us": 300.0}),
        "relay+tok": row("relay+tok", cpu_us=33.0, **{**timing, "sse_cpu_us": 340.0, "sse_usage_asked": 200}),
        "relay+uq": row("relay+uq", cpu_us=34.0, **timing),
    }
    meta = report_meta()
    text = bench.build_report(rows, {}, bench.Settings(), meta)
    # The metering table comes after the main one: the last line of the row.
    name = "| relay, sqlite store (default), token budget |"
    tok = [line for line in text.splitlines() if line.startswith(name)][-1]
    # CPU 33/20, +3 µs over the unbudgeted row; SSE CPU 340/200, +40 µs.
    assert "| 1.65× | +3.0 µs | 1.70× | +40 µs |" in tok
    assert "| nginx (absolute) |" in text
    # The quota row's provider was never asked for usage: the row did not go through the meter.
    assert "relay+uq: usage asked on 0 streams, not 200" in text
    assert "relay+tok: usage asked" not in text


def test_a_baseline_binary_gets_unbudgeted_rows_and_a_config_it_can_read():
    s = bench.Settings.from_env({"RELAY_BASELINE_BIN": "old/relayapi"})
    assert s.baseline_bin == Path("old/relayapi")
    assert bench.Settings.from_env({}).baseline_bin is None
    assert bench.kind_parts("relay-memory@baseline") == ("relay-memory", "none")
    assert bench.label("relay@baseline") == "relay, sqlite store (default), baseline binary"
    assert "budgets" not in bench.relay_config(1, 2, access_log=False, store={}, prices=False)
    rows = {
        "direct": row("direct", rss_per_stream=None, sse_ttfe_p50_ms=1.0),
        "nginx": row("nginx", cpu_us=20.0, sse_ttfe_p50_ms=1.0),
        "relay": row("relay", cpu_us=30.0),
        "relay@baseline": row("relay@baseline", cpu_us=26.0),
    }
    meta = report_meta()
    lines = bench.build_report(rows, {}, bench.Settings(), meta).splitlines()
    # The unbudgeted row against the baseline binary: 30 - 26.
    plain = [line for line in lines if line.startswith("| relay, sqlite store (default) |")][-1]
    assert "| 1.50× | +4.0 µs |" in plain
    old = [line for line in lines if line.startswith("| relay, sqlite store (default), baseline")][-1]
    assert "| 1.30× | — |" in old
