"""Issue 11 §3: the README's "try it with no provider key and no internet" path, as a new user runs it.

``examples/mock_provider.py`` stands in for OpenAI and Anthropic; the relay runs with
``examples/mock_provider.config.json`` (its port changed to the mock's), the repository's ``default.rai``
(its port changed to a free one) and ``--dev``; the test waits for the ``listening`` line, mints with the
Python SDK and calls through the official SDKs, as README.md's "Try it by hand" section does.
"""

from __future__ import annotations

import json
import pathlib
import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest

from relayapi import RelayAPIClient

from .clients import anthropic_client, openai_client
from .harness import (
    REPO_ROOT,
    RelayProcess,
    _read_line_with_timeout,
    _stop,
    relay_binary,
    relay_env,
)
from .harness import (
    _log_entry as _entry,
)

EXAMPLES = REPO_ROOT / "examples"
HELLO = [{"role": "user", "content": "Hi"}]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def mock_provider() -> Iterator[int]:
    proc = subprocess.Popen(
        [sys.executable, str(EXAMPLES / "mock_provider.py"), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        line = _read_line_with_timeout(proc.stdout, 20)
        assert line is not None
        assert line.startswith("mock provider listening on http://127.0.0.1:"), line
        yield int(line.rsplit(":", 1)[1])
    finally:
        _stop(proc)


@pytest.fixture(scope="module")
def try_it(
    mock_provider: int, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[RelayProcess, str]]:
    workdir: pathlib.Path = tmp_path_factory.mktemp("try-it")
    documented = (EXAMPLES / "mock_provider.config.json").read_text(encoding="utf-8")
    assert "127.0.0.1:9999" in documented  # the port the README's text uses
    config = json.loads(documented.replace("127.0.0.1:9999", f"127.0.0.1:{mock_provider}"))
    port = _free_port()
    config["server"] = {"port": port}
    (workdir / "config.json").write_text(json.dumps(config), encoding="utf-8")
    rai = json.loads((REPO_ROOT / "default.rai").read_text(encoding="utf-8"))
    rai["server"]["port"] = port
    (workdir / "default.rai").write_text(json.dumps(rai), encoding="utf-8")
    relay = RelayProcess(
        [str(relay_binary()), "--config", "config.json", "--rai", "default.rai", "--dev"],
        cwd=workdir,
        env=relay_env(),
    )
    try:
        relay.entry("listening")
        yield relay, str(workdir / "default.rai")
    finally:
        relay.stop()


def test_the_start_line_says_what_a_new_user_is_running(
    try_it: tuple[RelayProcess, str], mock_provider: int
) -> None:
    relay, _ = try_it
    line = relay.entry("listening")
    assert line["config"] == "config.json"
    assert line["rai"] == "default.rai"
    assert line["published_dev_key"] is True
    assert line["provider_overrides"]["openai"] == f"http://127.0.0.1:{mock_provider}/v1"
    assert line["store"] == "memory"  # --dev
    warnings = [e for e in map(_entry, relay.tail(200).splitlines()) if e and e.get("level") == "warn"]
    assert any("published development key" in e["msg"] for e in warnings), warnings


def test_openai_through_the_relay_with_no_key_and_no_internet(try_it: tuple[RelayProcess, str]) -> None:
    _, rai = try_it
    url = RelayAPIClient(rai).generate_url(api_key="any-key-works-with-the-mock", max_calls=3)
    ai = openai_client(url)
    reply = ai.chat.completions.create(model="gpt-4o-mini", messages=HELLO)  # type: ignore[arg-type]
    assert reply.choices[0].message.content == "echo: Hi"
    stream = ai.chat.completions.create(model="gpt-4o-mini", messages=HELLO, stream=True)  # type: ignore[arg-type]
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "echo: Hi"


def test_anthropic_through_the_relay(try_it: tuple[RelayProcess, str]) -> None:
    _, rai = try_it
    url = RelayAPIClient(rai).generate_url(api_key="any", provider="anthropic", max_calls=1)
    reply = anthropic_client(url).messages.create(model="claude-test", max_tokens=16, messages=HELLO)  # type: ignore[arg-type]
    assert reply.content[0].text == "echo: Hi"  # type: ignore[union-attr]
