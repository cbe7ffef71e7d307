"""What the mock upstream reads from a request (the last user text, its markers) and the usage it reports.

Standard library only (the mock imports it as a sibling module). Usage follows one deterministic rule,
written in each provider's own format, so that a test can compute the exact figures of any call from what
it sent:

- **input** = ``INPUT_TOKENS_PER_ENTRY`` (10) for every input entry: each chat / Anthropic message, each
  Responses ``input`` item (a plain string is one), each Gemini ``contents`` entry, each embeddings input,
  plus one entry for a separate system prompt (Anthropic ``system``, Responses ``instructions``, Gemini
  ``systemInstruction``); or exactly N with ``[in:N]`` in the last user text. Markers there add cache
  traffic on top: ``[cached:N]`` adds N input tokens read from a prompt cache, ``[cache_write:N]``
  (Anthropic only) N written to one.
- **output** = ``[out:N]`` from the last user text (default: the number of words of the echoed reply),
  capped by the request's output ceiling when it names one (``max_completion_tokens``, ``max_tokens``,
  ``max_output_tokens``, ``generationConfig.maxOutputTokens``; the smallest if several).

Provider conventions kept exactly: OpenAI's ``prompt_tokens`` and Gemini's ``promptTokenCount`` include
the cached tokens, Anthropic's ``input_tokens`` excludes both cache counts. Normalised (every input token,
cached or not, in ``input``), a call's usage is :meth:`Usage.normalised`, which the mock also records next
to the request so a test can sum what the upstream reported.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Optional

#: Input tokens reported for every message / input entry of a request.
INPUT_TOKENS_PER_ENTRY = 10

_OUT = re.compile(r"\[out:([0-9]{1,9})\]")
_IN = re.compile(r"\[in:([0-9]{1,9})\]")
_CACHED = re.compile(r"\[cached:([0-9]{1,9})\]")
_CACHE_WRITE = re.compile(r"\[cache_write:([0-9]{1,9})\]")


def _marker(pattern: re.Pattern[str], text: str) -> Optional[int]:
    m = pattern.search(text)
    return int(m.group(1)) if m else None


def _count(value: Any) -> int:
    if isinstance(value, list):
        return len(value)
    return 0 if value is None else 1


def _int(value: Any) -> Optional[int]:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def input_entries(family: str, body: dict[str, Any]) -> int:
    """How many input entries ``body`` names, the way ``family`` spells them."""
    if family in ("chat", "anthropic"):
        return _count(body.get("messages")) + (1 if family == "anthropic" and body.get("system") else 0)
    if family == "responses":
        return _count(body.get("input")) + (1 if body.get("instructions") else 0)
    if family == "gemini":
        system = body.get("systemInstruction") or body.get("system_instruction")
        return _count(body.get("contents")) + (1 if system else 0)
    if family == "embeddings":
        return _count(body.get("input"))
    raise ValueError(f"unknown family {family}")


def output_ceiling(family: str, body: dict[str, Any]) -> Optional[int]:
    """The smallest output ceiling the request names, or None."""
    if family == "gemini":
        config = body.get("generationConfig") or body.get("generation_config") or {}
        names: tuple[Any, ...] = (config.get("maxOutputTokens"), config.get("max_output_tokens"))
    else:
        names = (body.get("max_completion_tokens"), body.get("max_tokens"), body.get("max_output_tokens"))
    found = [v for v in (_int(n) for n in names) if v is not None]
    return min(found) if found else None


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def last_user_text(body: dict[str, Any]) -> str:
    """The last user text of a chat, Anthropic, Responses (``input``) or Gemini (``contents``) body."""
    if isinstance(body.get("input"), str):
        return str(body["input"])
    for message in reversed(body.get("messages") or body.get("input") or []):
        if isinstance(message, dict) and message.get("role", "user") == "user":
            return _text_of(message.get("content"))
    for entry in reversed(body.get("contents") or []):
        if isinstance(entry, dict) and entry.get("role", "user") == "user":
            return _text_of(entry.get("parts"))
    return ""


def echo_words(text: str) -> list[str]:
    reply = f"echo: {text}"
    parts = reply.split(" ")
    return [p if i == 0 else " " + p for i, p in enumerate(parts)]


@dataclass(frozen=True)
class Usage:
    """One call's usage: fresh input, cache reads, cache writes and output tokens."""

    fresh: int
    cached: int
    cache_write: int
    output: int

    @classmethod
    def of(cls, family: str, body: dict[str, Any], text: str, default_output: int) -> Usage:
        """The usage of a request of ``family`` whose last user text is ``text``."""
        wanted = _marker(_OUT, text)
        output = default_output if wanted is None else wanted
        ceiling = output_ceiling(family, body)
        if ceiling is not None:
            output = min(output, ceiling)
        write = _marker(_CACHE_WRITE, text) if family == "anthropic" else None
        fresh = _marker(_IN, text)
        return cls(
            fresh=INPUT_TOKENS_PER_ENTRY * input_entries(family, body) if fresh is None else fresh,
            cached=_marker(_CACHED, text) or 0,
            cache_write=write or 0,
            output=output,
        )

    def normalised(self) -> dict[str, int]:
        """Every input token in ``input`` (the relay's convention), cache reads also in ``cached_input``."""
        return {
            "input": self.fresh + self.cached + self.cache_write,
            "output": self.output,
            "cached_input": self.cached,
            "cache_write": self.cache_write,
        }

    def openai_chat(self) -> dict[str, Any]:
        prompt = self.fresh + self.cached
        return {
            "prompt_tokens": prompt,
            "completion_tokens": self.output,
            "total_tokens": prompt + self.output,
            "prompt_tokens_details": {"cached_tokens": self.cached, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
        }

    def openai_embeddings(self) -> dict[str, Any]:
        return {"prompt_tokens": self.fresh, "total_tokens": self.fresh}

    def openai_responses(self) -> dict[str, Any]:
        prompt = self.fresh + self.cached
        return {
            "input_tokens": prompt,
            "input_tokens_details": {"cached_tokens": self.cached},
            "output_tokens": self.output,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": prompt + self.output,
        }

    def anthropic(self, output: Optional[int] = None) -> dict[str, Any]:
        return {
            "input_tokens": self.fresh,
            "cache_creation_input_tokens": self.cache_write,
            "cache_read_input_tokens": self.cached,
            "output_tokens": self.output if output is None else output,
        }

    def gemini(self, output: Optional[int] = None) -> dict[str, Any]:
        prompt = self.fresh + self.cached
        out = self.output if output is None else output
        meta = {"promptTokenCount": prompt, "candidatesTokenCount": out, "totalTokenCount": prompt + out}
        if self.cached:
            meta["cachedContentTokenCount"] = self.cached
        return meta
