"""The mock upstream's answers for Anthropic messages, OpenAI's Responses API and Gemini, with usage.

Standard library only; ``mock_upstream.py`` routes to these functions and hands them its request handler
(for its plumbing: markers, gates, the usage record, chunked writes). The event sequences follow the
providers' documented streams closely enough that the official SDKs parse them and that a relay metering
usage meets the report where the provider puts it: Anthropic in ``message_start`` then cumulative in
``message_delta``, Responses in ``response.completed``, Gemini in the ``usageMetadata`` of every element,
cumulative.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

from mock_usage import echo_words, last_user_text

#: ``/v1beta/models/{model}:{method}`` (also ``/v1`` and ``/v1alpha``), the Gemini methods served.
GEMINI_PATH = re.compile(r"/v1(?:beta|alpha)?/models/([^/:]+):(generateContent|streamGenerateContent)")


def messages(h: Any, body: dict[str, Any]) -> None:
    """``POST /v1/messages``: one text block echoing the last user text; streamed with ``"stream": true``."""
    model = body.get("model", "")
    text = last_user_text(body)
    h._delay(text)
    if h._failed("anthropic", text):
        return
    words = echo_words(text)
    usage = h._usage("anthropic", body, text, len(words))
    if not body.get("stream"):
        answer: dict[str, Any] = {
            "id": "msg_mock",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [{"type": "text", "text": "".join(words)}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
        }
        if usage is not None:
            answer["usage"] = usage.anthropic()
        h._send_json(200, answer)
        return
    h._start_stream()
    start: dict[str, Any] = {
        "id": "msg_mock",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
    }
    if usage is not None:
        # Anthropic reports the input and a first output count up front, then cumulative output.
        start["usage"] = usage.anthropic(output=min(1, usage.output))
    h._event({"type": "message_start", "message": start}, "message_start")
    h._wait_gate(text)
    block = {
        "type": "content_block_start",
        "index": 0,
        "content_block": {"type": "text", "text": ""},
    }
    h._event(block, "content_block_start")
    h._event({"type": "ping"}, "ping")
    for word in words:
        delta = {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "text_delta", "text": word},
        }
        h._event(delta, "content_block_delta")
    h._event({"type": "content_block_stop", "index": 0}, "content_block_stop")
    done: dict[str, Any] = {
        "type": "message_delta",
        "delta": {"stop_reason": "end_turn", "stop_sequence": None},
    }
    if usage is not None:
        done["usage"] = {"output_tokens": usage.output}
    h._event(done, "message_delta")
    h._event({"type": "message_stop"}, "message_stop", last=True)
    h._end_stream(text)


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

    def event(kind: str, last: bool = False, **fields: Any) -> None:
        h._event({"type": kind, "sequence_number": next(seq), **fields}, kind, last=last)

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
    event(
        "response.completed",
        last=True,
        response=response("completed", [item], usage and usage.openai_responses()),
    )
    h._end_stream(text)


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
            h._chunk(f"data: {data}\r\n\r\n".encode(), last=last)
        else:
            h._chunk((("[" if i == 0 else ",\r\n") + data + ("]" if last else "")).encode(), last=last)
        if i == 0:
            h._wait_gate(text)
    h._end_stream(text)
