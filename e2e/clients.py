"""The official provider SDKs, configured the way a frontend would: only a relay URL (and maybe a token).

Retries are off so every assertion sees the relay's first answer, and timeouts are bounded.
"""

from __future__ import annotations

import anthropic
import openai

TIMEOUT_SECS = 30


def openai_client(base_url: str, api_key: str = "unused") -> openai.OpenAI:
    return openai.OpenAI(base_url=base_url, api_key=api_key, max_retries=0, timeout=TIMEOUT_SECS)


def anthropic_client(base_url: str, api_key: str = "unused") -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=base_url, api_key=api_key, max_retries=0, timeout=TIMEOUT_SECS)
