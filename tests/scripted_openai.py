"""A scripted OpenAI-compatible chat server on loopback, for teacher tests.

`scripted_openai(script)` serves ``GET /v1/models`` and ``POST /v1/chat/completions``
and yields ``(base_url, server)``; the base URL ends in ``/v1`` like a real endpoint's.
`script(request_json, call_index)` returns a `Reply` (or a list of replies is
played in order, the last one repeating). Every request body is kept in
``server.requests`` so a test can assert what the teacher sent (roles, image
parts, tools, response_format).
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Optional, Union

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse

from ffr.teacher.service import serve_in_thread


@dataclass
class Reply:
    """One scripted answer: a chat message (content / reasoning / tool calls) or an HTTP error.

    tool_calls: [(name, arguments)] where arguments is a dict (sent as a JSON string, the
    OpenAI shape), a str (sent verbatim, e.g. malformed JSON), or ``("object", dict)`` to
    send a JSON object (the GLM API's shape). `filler` > 0 appends that many "x" to the
    content, streamed in chunks without a Content-Length (never built in memory here).
    `usage` values are sent as given, junk included (e.g. ``("many", None)``).
    """

    content: Optional[str] = None
    reasoning: Optional[str] = None
    tool_calls: list = field(default_factory=list)
    status: int = 200
    body: Optional[str] = None
    delay_s: float = 0.0
    usage: tuple = (100, 20)
    finish_reason: Optional[str] = None
    filler: int = 0


def tool_call(name: str, **arguments: Any) -> tuple[str, dict]:
    return (name, arguments)


class ScriptedServer:
    """Holds the script and the recorded requests (thread-safe counter)."""

    def __init__(self, script: Union[Callable[[dict, int], Reply], list[Reply]], model: str = "scripted-teacher"):
        self.script = script
        self.model = model
        self.requests: list[dict] = []
        self.auth: list[str] = []  # the Authorization header of each request, in order
        self.inflight = 0  # requests being answered now (a delayed reply counts while it waits)
        self.max_inflight = 0  # the most at once: how far a client fans out, without timing it
        self._lock = threading.Lock()

    def enter(self) -> None:
        with self._lock:
            self.inflight += 1
            self.max_inflight = max(self.max_inflight, self.inflight)

    def leave(self) -> None:
        with self._lock:
            self.inflight -= 1

    def next_reply(self, body: dict) -> Reply:
        with self._lock:
            index = len(self.requests)
            self.requests.append(body)
        if callable(self.script):
            return self.script(body, index)
        return self.script[min(index, len(self.script) - 1)]

    def completion(self, reply: Reply) -> dict:
        message: dict[str, Any] = {"role": "assistant", "content": reply.content}
        if reply.reasoning is not None:
            message["reasoning_content"] = reply.reasoning
        if reply.tool_calls:
            message["tool_calls"] = [_tool_call_json(k, name, args) for k, (name, args) in enumerate(reply.tool_calls)]
        finish = reply.finish_reason or ("tool_calls" if reply.tool_calls else "stop")
        prompt_tokens, completion_tokens = reply.usage
        counts = all(isinstance(n, int) for n in reply.usage)
        return {
            "id": f"chatcmpl-{len(self.requests)}", "object": "chat.completion", "created": int(time.time()),
            "model": self.model,
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens if counts else None},
        }


def _tool_call_json(k: int, name: str, args: Any) -> dict:
    if isinstance(args, tuple) and args and args[0] == "object":
        arguments: Any = args[1]
    elif isinstance(args, str):
        arguments = args
    else:
        arguments = json.dumps(args)
    return {"id": f"call_{k}", "type": "function", "function": {"name": name, "arguments": arguments}}


async def _filled(completion: dict, filler: int, chunk: int = 1 << 16):
    """The completion's JSON with `filler` bytes of "x" appended to its content, chunk by chunk."""
    completion["choices"][0]["message"]["content"] = (completion["choices"][0]["message"]["content"] or "") + "\0"
    head, tail = json.dumps(completion).split("\\u0000", 1)
    yield head.encode()
    block = b"x" * chunk
    for start in range(0, filler, chunk):
        yield block[:min(chunk, filler - start)]
    yield tail.encode()


def build_app(server: ScriptedServer) -> FastAPI:
    app = FastAPI()

    @app.get("/v1/models")
    async def models() -> dict:
        return {"object": "list", "data": [{"id": server.model, "object": "model", "owned_by": "tests"}]}

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        body = json.loads(await request.body())
        server.auth.append(request.headers.get("authorization", ""))
        reply = server.next_reply(body)
        if reply.delay_s:
            server.enter()
            try:
                await asyncio.sleep(reply.delay_s)
            finally:
                server.leave()
        if reply.status != 200:
            return PlainTextResponse(reply.body or "scripted failure", status_code=reply.status)
        if reply.body is not None:
            return PlainTextResponse(reply.body, media_type="application/json")
        if reply.filler:
            return StreamingResponse(_filled(server.completion(reply), reply.filler), media_type="application/json")
        return JSONResponse(server.completion(reply))

    return app


@contextlib.contextmanager
def scripted_openai(script, model: str = "scripted-teacher") -> Iterator[tuple[str, ScriptedServer]]:
    """Run a scripted server; yields (base_url ending in /v1, server)."""
    server = ScriptedServer(script, model=model)
    with serve_in_thread(build_app(server)) as url:
        yield f"{url}/v1", server
