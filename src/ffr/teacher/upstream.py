"""The teacher's side of the upstream HTTP exchange: bounded replies, named faults, sane counts.

- `capped_http_client(max_reply_bytes)`: the SDK's async HTTP client with a transport that
  stops reading a reply body once it exceeds `max_reply_bytes` (declared by Content-Length
  or streamed) and raises `ReplyTooLarge`. It asks for ``Accept-Encoding: identity`` so
  the bytes counted are the bytes decoded (a compressed reply cannot expand past the cap).
  `ReplyTooLarge` is an ``openai.OpenAIError``, which the SDK propagates as is, without
  retrying: asking again would read the same oversized reply again.
- `api_error_type(exc)`: the item's ``error_type`` for an endpoint fault.
- `refusal_names(exc, what)`: whether a 400/422 refusal is about `what` (``tools`` or
  ``response_format``), so that only such a refusal changes how the backend talks to the
  server, never e.g. one item's context-length error.
- `usage_count(value, name)`: a token count from the endpoint's ``usage``; anything but a
  non-negative int (``"many"``, -1, 1.5, None) is logged as unknown and counted as 0.
"""
from __future__ import annotations

import logging
import re
from typing import Any

import httpx2
import openai

from ffr.redact import redact

logger = logging.getLogger(__name__)

DEFAULT_MAX_REPLY_BYTES = 1024 * 1024  # a patch is ~1 KB; 16k tokens of reasoning ~64 KB
UPSTREAM_CONNECTION_LIMITS = httpx2.Limits(max_connections=1000, max_keepalive_connections=100)  # the SDK's


class ReplyTooLarge(openai.OpenAIError):
    """An upstream reply body exceeded the configured byte cap; the item fails as reply_too_large."""

    def __init__(self, limit: int, seen: int | None = None):
        what = f"{seen} bytes (declared)" if seen is not None else f"more than {limit} bytes"
        super().__init__(f"upstream reply of {what} exceeds --max-reply-bytes {limit}")
        self.limit = limit


class _CappedStream(httpx2.AsyncByteStream):
    """A response body that raises `ReplyTooLarge` as soon as more than `limit` bytes arrived."""

    def __init__(self, inner: httpx2.AsyncByteStream, limit: int):
        self._inner, self._limit = inner, limit

    async def __aiter__(self):
        seen = 0
        async for chunk in self._inner:
            seen += len(chunk)
            if seen > self._limit:
                raise ReplyTooLarge(self._limit)
            yield chunk

    async def aclose(self) -> None:
        await self._inner.aclose()


class _CappedTransport(httpx2.AsyncHTTPTransport):
    def __init__(self, limit: int, **kwargs: Any):
        super().__init__(**kwargs)
        self._limit = limit

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        response = await super().handle_async_request(request)
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self._limit:
            await response.aclose()  # do not read a body already known to be too large
            raise ReplyTooLarge(self._limit, int(declared))
        response.stream = _CappedStream(response.stream, self._limit)
        return response


def capped_http_client(max_reply_bytes: int) -> httpx2.AsyncClient:
    """The SDK's default async client (its timeouts, limits, redirects) reading at most `max_reply_bytes`."""
    if max_reply_bytes < 1:
        raise ValueError(f"max_reply_bytes must be >= 1, got {max_reply_bytes}")
    # A transport of our own replaces the client's default one, and with it the SDK's connection
    # limits, so the transport gets them explicitly.
    transport = _CappedTransport(max_reply_bytes, limits=UPSTREAM_CONNECTION_LIMITS)
    return openai.DefaultAsyncHttpxClient(transport=transport, headers={"Accept-Encoding": "identity"})


def api_error_type(exc: openai.OpenAIError) -> str:
    """error_type of an endpoint fault (after the SDK's own retries)."""
    if isinstance(exc, ReplyTooLarge):
        return "reply_too_large"
    if isinstance(exc, openai.APITimeoutError):
        return "api_timeout"
    if isinstance(exc, openai.APIConnectionError):
        return "api_connection"
    if isinstance(exc, (openai.AuthenticationError, openai.PermissionDeniedError)):
        return "api_auth"
    if isinstance(exc, openai.RateLimitError):
        return "api_rate_limit"
    if isinstance(exc, openai.APIStatusError):
        return f"api_http_{exc.status_code}"
    if isinstance(exc, openai.APIResponseValidationError):
        return "upstream_bad_reply"
    return "api_error"


def fault_detail(exc: BaseException, limit: int = 300) -> str:
    """A short, redacted description of an upstream fault for the item's detail."""
    return redact(f"{type(exc).__name__}: {exc}")[:limit]


# A refusal "names" a feature when its text mentions it and is not about the prompt's size:
# "maximum context length ... (messages + tools)" is one item's problem, not the server's.
_FEATURE = {"tools": re.compile(r"\btools?\b|tool_choice|tool[ _-]call", re.IGNORECASE),
            "response_format": re.compile(r"response_format|json_schema|json_object|structured output",
                                          re.IGNORECASE)}
_SIZE = re.compile(r"context|too long|too many tokens|max_tokens|maximum .*length", re.IGNORECASE)


def refusal_names(exc: openai.APIStatusError, what: str) -> bool:
    """True iff the 400/422 refusal `exc` is about the request feature `what` (see above)."""
    text = f"{exc.message} {getattr(exc, 'body', '')}"
    return bool(_FEATURE[what].search(text)) and not _SIZE.search(text)


def usage_count(value: Any, name: str) -> int:
    """`value` when it is a non-negative int; otherwise log it as unknown and count 0."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if value is not None:
        logger.warning("upstream usage.%s is %r, not a token count; recorded as unknown (0)",
                       name, str(value)[:40])
    return 0
