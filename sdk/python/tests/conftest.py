"""Fixtures shared by the SDK tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from relayapi import RelayAPIClient

from .fake_relay import FakeRelay
from .support import rai_dict


@pytest.fixture
def client() -> RelayAPIClient:
    """A client minting with vector key k1 and still accepting the rotated k2 (tenant acme)."""
    return RelayAPIClient(rai_dict("k1", previous=("k2-2026.rotated",)))


@pytest.fixture
def fake_relay() -> Iterator[FakeRelay]:
    relay = FakeRelay().start()
    try:
        yield relay
    finally:
        relay.stop()


@pytest.fixture
def relay_client(fake_relay: FakeRelay) -> RelayAPIClient:
    """A client whose `.rai` points at the fake relay."""
    return RelayAPIClient(rai_dict("k1", port=fake_relay.port), timeout=10)


@pytest.fixture
def relay_client_factory(fake_relay: FakeRelay) -> Callable[..., RelayAPIClient]:
    """Clients pointing at the fake relay, with the options given (e.g. a short ``timeout``)."""
    return lambda **options: RelayAPIClient(rai_dict("k1", port=fake_relay.port), **options)
