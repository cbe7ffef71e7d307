"""Strict unpadded base64url (RFC 4648 section 5), shared by tokens, keys and admin signatures.

Python's decoders are lenient: they accept padding, skip or translate stray characters and ignore
non-zero unused bits. Token format v1 requires rejecting all of that, so decoding re-encodes and compares.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Optional

_ALPHABET = re.compile(r"[A-Za-z0-9_-]*")


def encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def decode(text: str) -> Optional[bytes]:
    """Return the bytes of canonical unpadded base64url ``text``, or ``None`` for anything else."""
    if not _ALPHABET.fullmatch(text) or len(text) % 4 == 1:
        return None
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return None
    # Non-canonical input (unused low bits set in the last character) decodes to the same bytes as its
    # canonical twin; re-encoding exposes it.
    if encode(data) != text:
        return None
    return data
