"""The public surface against sdk/api.json, the manifest the JS SDK's tests check too.

Every operation, its positional arguments, keyword-only options and defaults, the token options, the
constants, the exports and the error classes with their codes must be exactly what the manifest says, so
the two SDKs cannot drift apart without a test failing on one side.
"""

from __future__ import annotations

import inspect
import json
import pathlib
import re
import warnings
from typing import Any

import pytest

import relayapi
from relayapi import errors, options

from .support import rai_dict

_NO_DEFAULT = object()


def _find_manifest() -> pathlib.Path:
    for parent in pathlib.Path(__file__).resolve().parents:
        if (parent / "api.json").is_file() and (parent / "python").is_dir():
            return parent / "api.json"
    raise RuntimeError("sdk/api.json not found above " + __file__)


MANIFEST_PATH = _find_manifest()
MANIFEST: dict[str, Any] = json.loads(MANIFEST_PATH.read_text(encoding="utf-8"))
CLASSES: dict[str, Any] = MANIFEST["classes"]


def _expected(params: list[dict[str, Any]]) -> list[tuple[str, Any]]:
    return [(p["name"], p.get("default", _NO_DEFAULT)) for p in params]


def _actual(fn: Any, kinds: set[Any]) -> list[tuple[str, Any]]:
    sig = inspect.signature(fn)
    return [
        (p.name, _NO_DEFAULT if p.default is inspect.Parameter.empty else p.default)
        for p in sig.parameters.values()
        if p.kind in kinds and p.name != "self"
    ]


POSITIONAL = {inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.POSITIONAL_ONLY}
KEYWORD = {inspect.Parameter.KEYWORD_ONLY}


def _var_keyword(fn: Any) -> str | None:
    for p in inspect.signature(fn).parameters.values():
        if p.kind is inspect.Parameter.VAR_KEYWORD:
            return p.name
    return None


@pytest.mark.parametrize(
    ("cls_name", "method"),
    [(c, m) for c, spec in CLASSES.items() for m in ["__init__", *spec["methods"]]],
)
def test_every_operation_has_the_manifest_signature(cls_name: str, method: str) -> None:
    spec = CLASSES[cls_name]
    op = spec["constructor"] if method == "__init__" else spec["methods"][method]
    fn = getattr(getattr(relayapi, cls_name), method)
    # Methods defined on the class itself, not only inherited ones, must match too.
    assert _actual(fn, POSITIONAL) == _expected(op["args"])
    assert _actual(fn, KEYWORD) == _expected(op["options"])
    if op.get("token_options"):
        assert _var_keyword(fn) == "options"
        assert "Unpack[TokenOptions]" in str(inspect.signature(fn).parameters["options"].annotation)
    elif op.get("extra_body"):
        assert _var_keyword(fn) == "body"
    else:
        assert _var_keyword(fn) is None


@pytest.mark.parametrize("cls_name", list(CLASSES))
def test_no_public_member_outside_the_manifest(cls_name: str) -> None:
    spec = CLASSES[cls_name]
    cls = getattr(relayapi, cls_name)
    listed = set(spec["methods"]) | set(spec["properties"])
    parent = spec.get("extends")
    while parent:
        listed |= set(CLASSES[parent]["methods"]) | set(CLASSES[parent]["properties"])
        parent = CLASSES[parent].get("extends")
    deprecated = {
        k.split(".", 1)[1] for k in MANIFEST["deprecated"]["python"] if k.startswith(cls_name + ".")
    }
    python_only = {
        k.split(".", 1)[1]
        for k in MANIFEST["language_only"]["python"]
        if k.split(".", 1)[0] in {cls_name, spec.get("extends")}
    }
    public = {n for n in dir(cls) if not n.startswith("_")}
    public |= {n for n in vars(cls(rai_dict())) if not n.startswith("_")}
    assert public == listed | deprecated | python_only
    for prop in spec["properties"]:
        assert isinstance(inspect.getattr_static(cls, prop), property)


def test_token_options_are_the_manifest_list_with_its_defaults() -> None:
    declared = list(options.TokenOptions.__annotations__)
    assert declared == [o["name"] for o in MANIFEST["token_options"]]
    resolved = options.resolve({})
    assert resolved == {o["name"]: o["default"] for o in MANIFEST["token_options"]}


def test_constants_and_exports() -> None:
    for name, value in MANIFEST["constants"].items():
        assert getattr(relayapi, name) == value, name
    errors_ = {e["name"] for e in MANIFEST["errors"]}
    expected = set(MANIFEST["constants"]) | set(CLASSES) | errors_ | {"__version__"}
    expected |= {k for k in MANIFEST["language_only"]["python"] if "." not in k}
    assert set(relayapi.__all__) == expected
    assert relayapi.__version__ == MANIFEST["packages"]["version"]


def test_package_identity_matches_the_manifest() -> None:
    pyproject = (MANIFEST_PATH.parent / "python" / "pyproject.toml").read_text(encoding="utf-8")
    assert (
        re.search(r'^name = "([^"]+)"', pyproject, re.M)[1] == MANIFEST["packages"]["python"]["distribution"]
    )  # type: ignore[index]
    assert re.search(r'^version = "([^"]+)"', pyproject, re.M)[1] == MANIFEST["packages"]["version"]  # type: ignore[index]
    assert relayapi.__name__ == MANIFEST["packages"]["python"]["import"]


@pytest.mark.parametrize("entry", MANIFEST["errors"], ids=lambda e: e["name"])
def test_error_classes_and_codes(entry: dict[str, Any]) -> None:
    cls = getattr(relayapi, entry["name"])
    assert cls.code == entry["code"]
    assert cls is getattr(errors, entry["name"])
    if entry["extends"] is None:
        assert cls.__bases__ == (Exception,)
    else:
        assert cls.__bases__[0] is getattr(relayapi, entry["extends"])


def test_error_codes_are_distinct() -> None:
    codes = [e["code"] for e in MANIFEST["errors"]]
    assert len(codes) == len(set(codes))


def test_api_error_fields() -> None:
    [entry] = [e for e in MANIFEST["errors"] if e["name"] == "APIError"]
    err = relayapi.APIError(429, "rate_limited", "slow down", headers={"X-Should-Retry": "false"})
    assert {f: getattr(err, f) for f in entry["fields"]} == {
        "status": 429,
        "error_code": "rate_limited",
        "error_type": None,
        "headers": {"x-should-retry": "false"},
        "body": None,
        "should_retry": False,
    }
    assert err.code == "ERR_API"


def test_deprecated_names_still_work_and_warn() -> None:
    client = relayapi.RelayAPIClient(rai_dict())
    token = client.create_token(api_key="test-key-123")
    with pytest.warns(DeprecationWarning, match="url_for_token"):
        assert client.generate_api_url_with_token(token) == client.url_for_token(token)
    with pytest.warns(DeprecationWarning, match="query_url_for_token"):
        assert client.generate_query_url(token) == client.query_url_for_token(token)
    with pytest.warns(DeprecationWarning, match="generate_url"):
        url = client.generate_api_url(api_key="test-key-123")
    assert url.endswith("/chat/completions")
    for name in ("RaiConfig", "RaiKey", "load_config"):
        with pytest.warns(DeprecationWarning, match="relayapi.config"):
            assert getattr(relayapi, name) is getattr(relayapi.config, name)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert relayapi.DEFAULT_TIMEOUT_SECONDS == 600
