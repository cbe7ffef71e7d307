"""The published ``relayapi-sdk==1.0.0`` (the original RelayAPI's SDK) for the compat-v0 tests.

It is installed apart (``scripts/test.sh``: ``pip install --target .venv/relayapi-sdk-1.0.0``) because it
and this repository's SDK are both the top-level package ``relayapi``; ``compat_v0_mint.py`` runs it in a
child process (`python -S`) with only that directory on its path.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import secrets
import subprocess
import sys
from typing import Any

from .harness import REPO_ROOT

#: Where scripts/test.sh installs the published SDK (overridable for other layouts).
SDK_DIR = pathlib.Path(os.environ.get("RELAYAPI_SDK_V0_DIR") or REPO_ROOT / ".venv" / "relayapi-sdk-1.0.0")
#: Seconds the original SDK's process may take.
CHILD_TIMEOUT_SECS = 60


def write_original_rai(path: pathlib.Path, port: int) -> dict[str, Any]:
    """An original-format `.rai` (what relayapi-sdk 1.0.0 reads) with a fresh AES-256 key."""
    rai = {
        "server": {"host": "http://127.0.0.1", "port": port, "base_path": "/relayapi/"},
        "crypto": {"method": "aes", "aes_key": secrets.token_hex(32), "aes_iv_seed": secrets.token_hex(8)},
    }
    path.write_text(json.dumps(rai), encoding="utf-8")
    return rai


def run_sdk(rai: dict[str, Any], action: str, **args: Any) -> Any:
    """One action of ``compat_v0_mint.py`` under the published SDK; its JSON answer."""
    if not (SDK_DIR / "relayapi" / "token.py").is_file():
        raise RuntimeError(
            f"relayapi-sdk 1.0.0 not found in {SDK_DIR}: "
            f"run `.venv/bin/pip install --target {SDK_DIR} relayapi-sdk==1.0.0` (scripts/test.sh does)"
        )
    script = pathlib.Path(__file__).with_name("compat_v0_mint.py")
    done = subprocess.run(
        [sys.executable, "-S", str(script)],
        input=json.dumps({"rai": rai, "action": action, **args}),
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT_SECS,
        env={"PYTHONPATH": str(SDK_DIR), "PATH": os.environ.get("PATH", "")},
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"relayapi-sdk 1.0.0 failed: {done.stderr}")
    return json.loads(done.stdout)


def jti(tenant: str, token_id: str) -> str:
    """The relay's token id for a v0 token (docs/compat-v0.md): from the SDK's ``id``."""
    ts = token_id.removeprefix("token-")
    data = b"relayapi compat-v0 jti\0" + tenant.encode() + b"\0" + ts.encode()
    return hashlib.sha256(data).hexdigest()[:32]


def tenant_secret(aes_key_hex: str) -> bytes:
    """``HKDF-SHA256(aes_key, salt="", info="relayapi compat-v0 tenant key")``: the v0 tenant's admin
    signing key stands where a v1 tenant key would (docs/compat-v0.md)."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    return HKDF(algorithm=hashes.SHA256(), length=32, salt=b"", info=b"relayapi compat-v0 tenant key").derive(
        bytes.fromhex(aes_key_hex)
    )
