"""The examples run as documented: provider key from the environment, config path from RELAYAPI_RAI."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

from relayapi import RelayAPIClient

from .support import rai_dict

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"


def _run(script: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "RELAYAPI_RAI")}
    return subprocess.run(
        [sys.executable, str(EXAMPLES / script)],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_url_generation_prints_urls_with_verifiable_tokens(tmp_path: pathlib.Path) -> None:
    rai = tmp_path / "example.rai"
    rai.write_text(json.dumps(rai_dict(port=9443, scheme="https")), encoding="utf-8")
    result = _run("url_generation.py", {"OPENAI_API_KEY": "test-key-123", "RELAYAPI_RAI": str(rai)})
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    base = next(line for line in lines if line.startswith("base URL"))
    token = base.rsplit("/", 1)[1]
    claims = RelayAPIClient(str(rai)).decode_token(token)
    assert (claims["key"], claims["max"], claims["models"]) == ("test-key-123", 20, ["gpt-4o-mini", "gpt-4o"])
    assert any(line.endswith(f"{token}/embeddings") for line in lines)
    assert any(f"/relayapi/chat/completions?token={token}" in line for line in lines)
    assert all("https://127.0.0.1:9443/relayapi/" in line for line in lines if "URL:" in line)


def test_examples_refuse_to_run_without_a_key() -> None:
    for script in ("url_generation.py", "chat.py"):
        result = _run(script, {})
        assert result.returncode == 2
        assert "OPENAI_API_KEY" in result.stderr


def test_url_generation_reports_a_bad_config(tmp_path: pathlib.Path) -> None:
    result = _run(
        "url_generation.py", {"OPENAI_API_KEY": "test-key-123", "RELAYAPI_RAI": str(tmp_path / "missing.rai")}
    )
    assert result.returncode == 1
    assert "missing.rai" in result.stderr
