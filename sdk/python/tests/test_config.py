"""Loading `.rai` configs: every bad field fails at load time with a ConfigError naming it."""

from __future__ import annotations

import base64
import copy
import json
import pathlib
from typing import Any, Callable

import pytest

from relayapi import ConfigError, RelayAPIClient, TokenGenerator
from relayapi.config import RaiConfig, load_config

from .support import KEY_BY_KID, rai_dict

K1 = KEY_BY_KID["k1"]["key"]
_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
# 43 characters carry 258 bits for 256: the last character's two low bits are unused and must be zero.
K1_NONCANONICAL = K1[:-1] + _ALPHABET[_ALPHABET.index(K1[-1]) + 1]


def test_loads_a_dict() -> None:
    cfg = load_config(rai_dict("k1", previous=("k2-2026.rotated",), scheme="https", base_path="/r/"))
    assert (cfg.scheme, cfg.host, cfg.port, cfg.base_path) == ("https", "127.0.0.1", 8080, "/r/")
    assert cfg.tenant_id == "acme"
    assert cfg.key.key_id == "k1"
    assert len(cfg.key.key) == 32
    assert [k.key_id for k in cfg.all_keys] == ["k1", "k2-2026.rotated"]


def test_defaults_for_optional_fields() -> None:
    cfg = load_config(rai_dict())
    assert cfg.scheme == "http"
    assert cfg.base_path == "/relayapi/"
    assert cfg.previous_keys == ()


@pytest.mark.parametrize("as_path", [str, pathlib.Path], ids=["str", "PathLike"])
def test_loads_a_file(tmp_path: pathlib.Path, as_path: Callable[[Any], Any]) -> None:
    f = tmp_path / "default.rai"
    f.write_text(json.dumps(rai_dict("globex")), encoding="utf-8")
    gen = TokenGenerator(as_path(f))
    assert gen.config.tenant_id == "globex-corp"
    assert RelayAPIClient(as_path(f)).config == gen.config


def test_a_loaded_config_passes_through() -> None:
    cfg = load_config(rai_dict())
    assert load_config(cfg) is cfg
    assert isinstance(TokenGenerator(cfg).config, RaiConfig)


def test_repr_never_shows_key_bytes() -> None:
    cfg = load_config(rai_dict())
    assert repr(cfg.key.key) not in repr(cfg)
    assert "key_id='k1'" in repr(cfg)


def _with(path: str, value: Any, *, delete: bool = False) -> dict[str, Any]:
    data = copy.deepcopy(rai_dict("k1", previous=("k2-2026.rotated",)))
    node: Any = data
    parts = path.split(".")
    for p in parts[:-1]:
        node = node[int(p)] if isinstance(node, list) else node[p]
    last: Any = int(parts[-1]) if isinstance(node, list) else parts[-1]
    if delete:
        del node[last]
    else:
        node[last] = value
    return data


BAD_FIELDS = [
    ("version", 2, "version"),
    ("version", "1", "version"),
    ("version", True, "version"),
    ("server.scheme", "ftp", "server.scheme"),
    ("server.host", "", "server.host"),
    ("server.host", "relay.example.com/path", "server.host"),
    ("server.host", "user@relay.example.com", "server.host"),
    ("server.host", "::1::2", "server.host"),
    ("server.host", "fe80::1%eth0", "server.host"),
    ("server.host", 127, "server.host"),
    ("server.port", 0, "server.port"),
    ("server.port", 65536, "server.port"),
    ("server.port", "8080", "server.port"),
    ("server.port", True, "server.port"),
    ("server.base_path", "relayapi/", "server.base_path"),
    ("server.base_path", "/relayapi", "server.base_path"),
    ("server.base_path", "/relay api/", "server.base_path"),
    ("server.base_path", "/a//b/", "server.base_path"),
    ("server.base_path", "/%2e%2e/", "server.base_path"),
    ("crypto.method", "aes", "crypto.method"),
    ("crypto.key_id", "", "crypto.key_id"),
    ("crypto.key_id", "k" * 33, "crypto.key_id"),
    ("crypto.key_id", "k 1", "crypto.key_id"),
    ("crypto.key", K1[:-1], "crypto.key"),
    ("crypto.key", K1 + "=", "crypto.key"),
    ("crypto.key", K1 + "A", "crypto.key"),
    ("crypto.key", "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", "crypto.key"),
    # Last character with an unused bit set: decodes to the same bytes, but is not canonical.
    ("crypto.key", K1_NONCANONICAL, "crypto.key"),
    ("crypto.key", K1.replace("_", "/"), "crypto.key"),
    ("crypto.tenant_id", "", "crypto.tenant_id"),
    ("crypto.tenant_id", "a" * 65, "crypto.tenant_id"),
    ("crypto.tenant_id", "acme corp", "crypto.tenant_id"),
    ("crypto.previous_keys", {"key_id": "x"}, "crypto.previous_keys"),
    ("crypto.previous_keys.0.key", "short", "crypto.previous_keys[0].key"),
    ("crypto.previous_keys.0.key_id", "k1", "crypto.previous_keys[0].key_id"),
    ("crypto.previous_keys.0.tenant_id", "acme", "crypto.previous_keys[0].tenant_id"),
    ("crypto.aes_key", "x", "crypto.aes_key"),
    ("server.hostname", "x", "server.hostname"),
    ("extra", 1, "extra"),
    ("server", "http://127.0.0.1:8080", "server"),
    ("crypto.not_before", -1, "crypto.not_before"),
    ("crypto.not_after", 2**53, "crypto.not_after"),
    ("crypto.not_after", 1.5, "crypto.not_after"),
    ("crypto.not_after", "1790000000", "crypto.not_after"),
    ("crypto.not_after", None, "crypto.not_after"),
    ("crypto.not_after", True, "crypto.not_after"),
    ("crypto.previous_keys.0.not_before", "x", "crypto.previous_keys[0].not_before"),
    ("server.not_after", 1, "server.not_after"),
]


@pytest.mark.parametrize(
    ("path", "value", "field"), BAD_FIELDS, ids=[f"{p}={v!r}"[:60] for p, v, _ in BAD_FIELDS]
)
def test_bad_field_is_named(path: str, value: Any, field: str) -> None:
    with pytest.raises(ConfigError) as info:
        RelayAPIClient(_with(path, value))
    assert info.value.field == field
    assert field in str(info.value)


def test_unused_bit_case_really_decodes_to_the_same_bytes() -> None:
    # Guards the non-canonical case above: a lenient decoder would have accepted it as the same key.
    assert K1_NONCANONICAL != K1
    assert base64.urlsafe_b64decode(K1_NONCANONICAL + "=") == base64.urlsafe_b64decode(K1 + "=")


@pytest.mark.parametrize(
    "path", ["version", "server", "server.host", "server.port", "crypto", "crypto.method", "crypto.key_id",
             "crypto.key", "crypto.tenant_id", "crypto.previous_keys.0.key"],
)  # fmt: skip
def test_missing_required_field_is_named(path: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(_with(path, None, delete=True))
    assert info.value.field == path.replace(".0.", "[0].")


def test_ipv6_host_is_bracketed_once() -> None:
    assert load_config(rai_dict(host="::1")).host == "[::1]"
    # The file holds the bare address (docs/client-config.md rule 3); brackets are for URLs only.
    with pytest.raises(ConfigError):
        load_config(rai_dict(host="[2001:db8::7]"))


def test_missing_file(tmp_path: pathlib.Path) -> None:
    with pytest.raises(ConfigError) as info:
        TokenGenerator(tmp_path / "nope.rai")
    assert info.value.field == "<file>"
    assert "nope.rai" in str(info.value)


@pytest.mark.parametrize(
    "text",
    ["{not json", "[1, 2]", '{"version": 1, "version": 1, "server": {}, "crypto": {}}', "\ufeff{}"],
    ids=["syntax", "array", "duplicate member", "BOM"],
)
def test_unparsable_file(tmp_path: pathlib.Path, text: str) -> None:
    f = tmp_path / "bad.rai"
    f.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(f)
    assert info.value.field == "<file>"


def test_wrong_source_type() -> None:
    with pytest.raises(ConfigError):
        load_config(42)  # type: ignore[arg-type]


def test_key_windows_are_read_and_old_files_stay_open() -> None:
    data = _with("crypto.not_before", 100)
    data["crypto"]["not_after"] = 200
    data["crypto"]["previous_keys"][0]["not_after"] = 150
    cfg = load_config(data)
    assert (cfg.key.not_before, cfg.key.not_after) == (100, 200)
    assert (cfg.previous_keys[0].not_before, cfg.previous_keys[0].not_after) == (None, 150)
    assert [cfg.key.in_force(t) for t in (99, 100, 199, 200)] == [False, True, True, False]
    old = load_config(rai_dict())
    assert (old.key.not_before, old.key.not_after) == (None, None)
    assert old.key.in_force(0)
    assert old.key.in_force(2**53 - 1)


@pytest.mark.parametrize(("not_before", "not_after"), [(5, 5), (6, 5)])
def test_an_empty_window_is_refused(not_before: int, not_after: int) -> None:
    data = _with("crypto.not_before", not_before)
    data["crypto"]["not_after"] = not_after
    with pytest.raises(ConfigError) as info:
        load_config(data)
    assert info.value.field == "crypto.not_after"
