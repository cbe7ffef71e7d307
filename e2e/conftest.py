"""Fixtures: one mock upstream and one relay for the whole suite (the mock reset between tests), a relay
with spend limits per module of budget tests, and a mock realtime provider with its relay per module of
realtime tests."""

from __future__ import annotations

import pathlib
from collections.abc import Iterator

import pytest

from relayapi import RelayAPIClient

from .budget_support import RELAY_CONFIG
from .harness import MockUpstream, Relay
from .mock_realtime import MockRealtime
from .realtime_support import CERTS, start_relay


@pytest.fixture(scope="session")
def mock() -> Iterator[MockUpstream]:
    upstream = MockUpstream()
    try:
        yield upstream
    finally:
        upstream.stop()


@pytest.fixture(scope="session")
def relay(mock: MockUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Relay]:
    workdir: pathlib.Path = tmp_path_factory.mktemp("relay")
    server = Relay(workdir, mock.port)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(autouse=True)
def _fresh_mock(request: pytest.FixtureRequest) -> None:
    # Only tests that use the mock pay for a reset; each then sees only its own upstream requests.
    if "mock" in request.fixturenames:
        request.getfixturevalue("mock").reset()


@pytest.fixture(scope="session")
def sdk(relay: Relay) -> RelayAPIClient:
    """The Python SDK configured with the relay's own `.rai` (same key, the relay's real port)."""
    return RelayAPIClient(relay.rai_for_client(), timeout=30)


@pytest.fixture(scope="module")
def brelay(mock: MockUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Relay]:
    """A relay with spend limits configured (`budget_support.RELAY_CONFIG`), its access log kept; one per
    module of budget tests."""
    workdir: pathlib.Path = tmp_path_factory.mktemp("budget-relay")
    server = Relay(workdir, mock.port, config=RELAY_CONFIG, access_log=True)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def bsdk(brelay: Relay) -> RelayAPIClient:
    """The Python SDK for `brelay`."""
    return RelayAPIClient(brelay.rai_for_client(), timeout=30)


@pytest.fixture(scope="module")
def rt() -> Iterator[MockRealtime]:
    server = MockRealtime()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(autouse=True)
def _fresh_rt(request: pytest.FixtureRequest) -> None:
    # As for the mock: only tests of the realtime provider pay for its reset.
    if "rt" in request.fixturenames:
        request.getfixturevalue("rt").reset()


@pytest.fixture(scope="module")
def rt_relay(rt: MockRealtime, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Relay]:
    server = start_relay(tmp_path_factory.mktemp("rt-relay"), rt)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def rt_sdk(rt_relay: Relay) -> RelayAPIClient:
    return RelayAPIClient(rt_relay.rai_for_client(), timeout=30)


@pytest.fixture(scope="module")
def rt_tls_sdk(rt_tls_relay: Relay) -> RelayAPIClient:
    return RelayAPIClient(rt_tls_relay.rai_for_client(), timeout=30)


@pytest.fixture(scope="module")
def rt_tls_relay(rt: MockRealtime, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Relay]:
    """A relay like `rt_relay` serving TLS itself (the test certificate for 127.0.0.1)."""
    tls = {"cert_file": str(CERTS / "server.pem"), "key_file": str(CERTS / "server.key")}
    server = start_relay(tmp_path_factory.mktemp("rt-tls-relay"), rt, tls=tls)
    try:
        yield server
    finally:
        server.stop()
