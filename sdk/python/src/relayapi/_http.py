"""The SDK's small HTTP layer on the standard library (urllib) and its SSE reader.

It owns turning relay answers into Python values and errors: JSON bodies into dicts, error statuses into
:class:`~relayapi.errors.APIError`, 2xx answers it cannot read into
:class:`~relayapi.errors.BadResponseError`, network failures into
:class:`~relayapi.errors.RelayConnectionError`. The timeout is per wait (connect, each read), never for
the whole answer, as in the JS SDK.
Which URL and headers to send is the client's business.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from typing import Any, Optional

from .errors import APIError, BadResponseError, RelayConnectionError

__all__ = ["Transport", "iter_sse", "open_stream", "read_json"]

#: Longest error body read into an APIError; a misbehaving server must not make us buffer gigabytes.
MAX_ERROR_BODY_BYTES = 64 * 1024
#: Longest single SSE line accepted; OpenAI chunks are a few KiB, so this only stops a runaway stream.
MAX_SSE_LINE_BYTES = 8 * 1024 * 1024


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    # The relay never redirects. Following one would resend the token (and admin signatures) to wherever
    # the Location header points, so a 3xx surfaces as an APIError instead.
    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[no-untyped-def]
        return None


class Transport:
    """Sends one request and returns the open response, or raises the SDK's errors."""

    def __init__(self, *, timeout: float) -> None:
        self.timeout = timeout
        self._opener = urllib.request.build_opener(_NoRedirect)

    def send(
        self, method: str, url: str, *, headers: Mapping[str, str], body: Optional[bytes] = None
    ) -> http.client.HTTPResponse:
        request = urllib.request.Request(url, data=body, headers=dict(headers), method=method)  # noqa: S310
        try:
            return self._opener.open(request, timeout=self.timeout)  # type: ignore[no-any-return]
        except urllib.error.HTTPError as exc:
            raise _api_error(exc.code, exc.headers, exc) from None
        except urllib.error.URLError as exc:
            raise RelayConnectionError(
                f"cannot reach the relay at {url.split('?')[0]}: {exc.reason}"
            ) from exc
        except (OSError, http.client.HTTPException) as exc:
            raise RelayConnectionError(f"request to the relay failed: {exc!r}") from exc


def _api_error(status: int, headers: Any, fp: Any) -> APIError:
    try:
        raw = fp.read(MAX_ERROR_BODY_BYTES)
    except (OSError, http.client.HTTPException):
        raw = b""
    finally:
        fp.close()
    text = raw.decode("utf-8", "replace")
    code: Optional[str] = None
    error_type: Optional[str] = None
    message = text.strip()[:500] or http.client.responses.get(status, "error")
    body: Any = text
    with contextlib.suppress(ValueError):
        body = json.loads(text)
    # OpenAI-style {"error": {"message", "type", "code"}}; Anthropic puts the kind in error.type.
    err = body.get("error") if isinstance(body, dict) else None
    if isinstance(err, dict):
        message = str(err.get("message") or message)
        error_type = err.get("type") if isinstance(err.get("type"), str) else None
        code = err.get("code") if isinstance(err.get("code"), str) else error_type
    hdrs = {k.lower(): v for k, v in headers.items()} if headers is not None else {}
    return APIError(status, code, message, error_type=error_type, headers=hdrs, body=body)


def read_json(response: http.client.HTTPResponse) -> Any:
    """Read a whole successful response as JSON, closing it."""
    try:
        with response:
            raw = response.read()
    except (OSError, http.client.HTTPException) as exc:
        raise RelayConnectionError(f"connection broke while reading the answer: {exc!r}") from exc
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise BadResponseError("the answer is not JSON", status=response.status, body=raw[:500]) from exc


def open_stream(response: http.client.HTTPResponse) -> Iterator[dict[str, Any]]:
    """Check that a successful answer is an event stream and return the iterator of its events."""
    kind = response.headers.get("Content-Type", "")
    if not kind.lower().startswith("text/event-stream"):
        response.close()
        raise BadResponseError(f'expected an event stream, got "{kind}"', status=response.status)
    return iter_sse(response)


def iter_sse(response: http.client.HTTPResponse) -> Iterator[dict[str, Any]]:
    """Yield the JSON ``data`` of each server-sent event as it arrives, until ``[DONE]`` or end of stream.

    Follows the SSE rules that matter for provider streams: ``data:`` lines of one event are joined with
    newlines, a blank line ends an event, ``:`` lines are comments, ``event:`` names are ignored (the JSON
    carries its own ``type``). An event whose JSON is an error object raises :class:`APIError`.
    """
    with response:
        data: list[str] = []
        while True:
            try:
                line = response.readline(MAX_SSE_LINE_BYTES + 1)
            except (OSError, http.client.HTTPException) as exc:
                raise RelayConnectionError(f"stream broke: {exc!r}") from exc
            if len(line) > MAX_SSE_LINE_BYTES:
                raise RelayConnectionError("stream line too long")
            # http.client's chunked readline swallows a missing final chunk and reports a clean end; only
            # a fully read chunked body resets chunk_left to None.
            if not line and response.chunked and response.chunk_left is not None:
                raise RelayConnectionError("stream broke before its end")
            if not line or line in (b"\n", b"\r\n", b"\r"):
                if data:
                    payload = "\n".join(data)
                    data = []
                    if payload.strip() == "[DONE]":
                        return
                    yield _event_json(response.status, payload)
                if not line:
                    return
                continue
            text = line.decode("utf-8").rstrip("\r\n")
            name, _, value = text.partition(":")
            if name == "data":
                data.append(value[1:] if value.startswith(" ") else value)


def _event_json(status: int, payload: str) -> dict[str, Any]:
    try:
        event = json.loads(payload)
    except ValueError as exc:
        raise BadResponseError("a stream event is not JSON", status=status, body=payload[:500]) from exc
    if not isinstance(event, dict):
        raise BadResponseError("a stream event is not a JSON object", status=status, body=event)
    err = event.get("error")
    if isinstance(err, dict) and ("choices" not in event):
        code = err.get("code") if isinstance(err.get("code"), str) else err.get("type")
        raise APIError(status, code, str(err.get("message") or "error in stream"), body=event)
    return event
