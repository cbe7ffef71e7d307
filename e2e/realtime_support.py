"""Shared pieces of the realtime tests: the mock realtime provider and relays pointed at it (plain and TLS),
the official `openai` SDK's realtime client configured as a frontend would (relay base URL, relay token as
its API key), and the relay process's memory as the kernel reports it."""

from __future__ import annotations

import pathlib
import ssl
from typing import Any, Optional

import openai

from relayapi import RelayAPIClient

from .budget_support import RELAY_CONFIG
from .clients import TIMEOUT_SECS
from .harness import REPO_ROOT, Relay
from .mock_realtime import MockRealtime

CERTS = REPO_ROOT / "tests" / "certs"
MODEL = "gpt-realtime"
#: The relay's idle timeout for these sessions: long enough for every test, short enough that a session a
#: test left open cannot outlive the module by much.
READ_IDLE_SECS = 20


def start_relay(workdir: pathlib.Path, rt: MockRealtime, tls: Optional[dict[str, Any]] = None) -> Relay:
    """A relay whose OpenAI and Gemini providers are the mock realtime server, with spend limits on."""
    config: dict[str, Any] = {
        **RELAY_CONFIG,
        # Sessions a test leaves open must not hold the module's teardown for long.
        "server": {**RELAY_CONFIG["server"], "shutdown_grace": 2},
        "providers": {
            "openai": {"base_url": f"{rt.base}/v1"},
            "gemini": {"base_url": rt.base},
        },
        "upstream": {"read_idle_timeout": READ_IDLE_SECS, "response_header_timeout": 20},
    }
    return Relay(workdir, rt.port, tls=tls, config=config)


def trust_test_ca() -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(CERTS / "ca.pem"))


def realtime_client(sdk: RelayAPIClient, token: str) -> openai.OpenAI:
    """The official SDK as a frontend sets it up: the relay's base URL, the relay token as its API key."""
    return openai.OpenAI(base_url=sdk.relay_base_url, api_key=token, max_retries=0, timeout=TIMEOUT_SECS)


def connect_options(sdk: RelayAPIClient) -> dict[str, Any]:
    """The websockets options a TLS relay needs (the test CA), none for plain HTTP."""
    # Generous: the suite shares two cores with builds; a hang still fails, only later.
    options: dict[str, Any] = {"open_timeout": TIMEOUT_SECS, "close_timeout": 5}
    if sdk.relay_base_url.startswith("https:"):
        options["ssl"] = trust_test_ca()
    return options


def rss_kib(pid: int) -> int:
    """Resident memory of a process, KiB (`VmRSS` of /proc/PID/status)."""
    for line in pathlib.Path(f"/proc/{pid}/status").read_text(encoding="utf-8").splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")
