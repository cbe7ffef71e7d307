"""The mock upstream's answers for OpenAI's Responses API and Gemini, plain and streamed, with usage.

Standard library only; ``mock_upstream.py`` routes to these functions and hands them its request handler
(for its plumbing: markers, gates, the usage record, chunked writes). The event sequences follow the
providers' documented streams closely enough that the official SDKs parse them and that a relay metering
usage meets the report where the provider puts it: Responses in ``response.completed``, Gemini in the
``usageMetadata`` of every element, cumulative.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

from mock_usage import echo_words, last_user_text

#: ``/v1beta/models/{model}:{method}`` (also ``/v1`` and ``/v1alpha``), the Gemini methods served.
GEMINI_PATH = re.compile(r"/v1(?:beta|alpha)?/models/([^/:]+):(generateContent|streamGenerateContent)")


def responses(h: Any, body: dict[str, Any]) -> None:
    """``POST /v1/responses``: one output message echoing the input; streamed with ``"stream": true``."""
    text = last_user_text(body)
    h._delay(text)
    if h._failed("responses", text):
        return
    words = echo_words(text)
    full = "".join(words)

    def response(status: str, output: list[Any], usage: Any) -> dict[str, Any]:
        return {
            "id": "resp_mock",
            "object": "response",
            "created_at": int(time.time()),
            "status": status,
            "model": body.get("model", ""),
            "output": output,
            "parallel_tool_calls": True,
            "tool_choice": "auto",
            "tools": [],
            "error": None,
            "incomplete_details": None,
            "instructions": body.get("instructions"),
            "max_output_tokens": body.get("max_output_tokens"),
            "metadata": {},
            "usage": usage,
        }

    part = {"type": "output_text", "text": full, "annotations": []}
    item = {
        "id": "msg_mock",
        "type": "message",
        "status": "completed",
        "role": "assistant",
        "content": [part],
    }
    if not body.get("stream"):
        usage = h._usage("responses", body, text, len(words))
        answer = response("completed", [item], None if usage is None else usage.openai_responses())
        if usage is None:
            del answer["usage"]
        h._send_json(200, answer)
        return
    h._start_stream()
    seq = iter(range(1 << 30))

    def event(kind: str, **fields: Any) -> None:
        h._event({"type": kind, "sequence_number": next(seq), **fields}, kind)

    where = {"item_id": "msg_mock", "output_index": 0, "content_index": 0}
    event("response.created", response=response("in_progress", [], None))
    event("response.in_progress", response=response("in_progress", [], None))
    h._wait_gate(text)
    event("response.output_item.added", output_index=0, item={**item, "status": "in_progress", "content": []})
    event("response.content_part.added", **where, part={**part, "text": ""})
    for word in words:
        event("response.output_text.delta", **where, delta=word, logprobs=[])
    event("response.output_text.done", **where, text=full, logprobs=[])
    event("response.content_part.done", **where, part=part)
    event("response.output_item.done", output_index=0, item=item)
    usage = h._usage("responses", body, text, len(words))
    event("response.completed", response=response("completed", [item], usage and usage.openai_responses()))
    h._end_stream()


def gemini(h: Any, model: str, method: str, body: dict[str, Any]) -> None:
    """``generateContent`` or ``streamGenerateContent`` (SSE with ``?alt=sse``, else a JSON array)."""
    text = last_user_text(body)
    h._delay(text)
    if h._failed("gemini", text):
        return
    words = echo_words(text)
    usage = h._usage("gemini", body, text, len(words))

    def element(parts: list[str], output: int, last: bool) -> dict[str, Any]:
        candidate: dict[str, Any] = {
            "content": {"role": "model", "parts": [{"text": p} for p in parts]},
            "index": 0,
        }
        if last:
            candidate["finishReason"] = "STOP"
        out: dict[str, Any] = {"candidates": [candidate], "modelVersion": model}
        if usage is not None:
            out["usageMetadata"] = usage.gemini(output=output)
        return out

    if method == "generateContent":
        h._send_json(200, element(["".join(words)], usage.output if usage else 0, True))
        return
    sse = "alt=sse" in h.path.partition("?")[2].split("&")
    h._start_stream("text/event-stream" if sse else "application/json")
    total = usage.output if usage else 0
    for i, word in enumerate(words):
        last = i == len(words) - 1
        # Gemini's counts are cumulative: each element reports the output so far.
        data = json.dumps(element([word], total * (i + 1) // len(words), last))
        if sse:
            h._chunk(f"data: {data}\r\n\r\n".encode())
        else:
            h._chunk((("[" if i == 0 else ",\r\n") + data + ("]" if last else "")).encode())
        if i == 0:
            h._wait_gate(text)
    h._end_stream()
