"""Teacher HTTP service: FastAPI app around a `TeacherBackend`.

Endpoints (all but /health need ``Authorization: Bearer <key>`` when a key is set; there is
no /docs, /redoc or /openapi.json, which would describe the service to anyone unauthenticated):
- ``GET /health``: the process is alive.
- ``GET /ready``: ``backend.ready()``; 503 when not ready.
- ``GET /stats``: request and item counts by status, latency p50/p95, leak rate,
  cache hits (see `ServiceStats.snapshot`).
- ``POST /patch``: a `PatchRequest` in, a `PatchResponse` out (same order).

Guarantees of ``/patch``: one bad item never fails the batch (invalid item,
video path outside the allowed root or unusable, e.g. with a NUL byte, backend
exception, per-item timeout, leaky patch all become that item's status); the
whole request is refused only for transport-level reasons (401 bad key, 413 too
many items or too large a body, 400 body not a JSON object with an ``items``
list or nested too deeply, 408 body not received within the read timeout).
Connections are bounded (``ffr.teacher.server``): idle keep-alive, a request
head read timeout, and a cap on open connections.

CLI: ``python -m ffr.teacher.service --backend annotation --allowed-root DIR``. Binding an
address other than loopback needs ``--api-key-file`` (or an explicit ``--insecure-no-key``).
Every key the service reads (``--api-key-file``, ``--upstream-api-key-file``,
``--judge-api-key-file``) goes through `ffr.endpoint.read_key_file`, which registers it with
`ffr.redact`, so its detail fields and log lines never carry one.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import hmac
import json
import logging
import os
import socket
import time

import uvicorn
from fastapi import FastAPI, HTTPException, Request

from ffr.endpoint import KeyFileError, read_key_file
from ffr.redact import register_secret
from ffr.teacher.backend_args import add_backend_args, build_backend, build_service_judge
from ffr.teacher.backends import TeacherBackend
from ffr.teacher.cache import ResultCache
from ffr.teacher.guard import LeakGuard
# confine_path / PathRejected are re-exported: callers and tests import them from the service.
from ffr.teacher.handler import (DEFAULT_MAX_TIMESTAMPS, PatchHandler, PathRejected, ServiceStats,  # noqa: F401
                                 confine_path)
from ffr.teacher.schema import PatchResponse
# serve_in_thread is re-exported: tests and the CPU demo run the service in-process from here.
from ffr.teacher.server import (DEFAULT_KEEP_ALIVE_S, DEFAULT_MAX_CONNECTIONS,  # noqa: F401
                                DEFAULT_READ_TIMEOUT_S, MAX_JSON_DEPTH, json_too_deep, serve_in_thread,
                                server_settings)

logger = logging.getLogger(__name__)

DEFAULT_MAX_ITEMS = 256
DEFAULT_MAX_BODY_BYTES = 8 * 1024 * 1024
DEFAULT_ITEM_TIMEOUT_S = 120.0
LOOPBACK = ("127.0.0.1", "localhost", "::1")


async def _read_limited(request: Request, max_bytes: int, timeout_s: float) -> bytes:
    """Read the body, refusing (413) as soon as it exceeds `max_bytes`, declared or streamed.

    A body not complete within `timeout_s` (a stalled or trickling client) gets 408 and the
    connection is closed, so it cannot hold a connection slot for ever.
    """
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise HTTPException(413, f"body of {declared} bytes exceeds the limit of {max_bytes}")
    chunks, size = [], 0

    async def read() -> None:
        nonlocal size
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_bytes:
                raise HTTPException(413, f"body exceeds the limit of {max_bytes} bytes")
            chunks.append(chunk)

    try:
        await asyncio.wait_for(read(), timeout=timeout_s)
    except asyncio.TimeoutError:
        raise HTTPException(408, f"request body not received within {timeout_s:.3g}s",
                            headers={"Connection": "close"}) from None
    return b"".join(chunks)


def _parse_envelope(body: bytes, max_items: int) -> tuple[list, float | None]:
    """Split a raw body into (raw items, deadline_s); items are validated one by one later."""
    try:
        payload = json.loads(body)
    except ValueError as exc:
        raise HTTPException(400, f"body is not JSON: {exc}") from exc
    except RecursionError as exc:  # nesting deeper than the decoder's stack: the client's fault, not ours
        raise HTTPException(400, "body JSON nests too deeply to decode") from exc
    if json_too_deep(payload):  # later recursive code (validation, hashing) must never see such depth
        raise HTTPException(400, f"body JSON nests deeper than {MAX_JSON_DEPTH} levels")
    if not isinstance(payload, dict) or not isinstance(payload.get("items"), list):
        raise HTTPException(400, "body must be a JSON object with an 'items' list")
    unknown = sorted(set(payload) - {"items", "deadline_s"})
    if unknown:
        raise HTTPException(400, f"unknown request fields: {unknown}")
    items = payload["items"]
    if len(items) > max_items:
        raise HTTPException(413, f"{len(items)} items exceed the limit of {max_items} per request")
    deadline = payload.get("deadline_s")
    if deadline is not None and (isinstance(deadline, bool) or not isinstance(deadline, (int, float))
                                 or deadline <= 0):
        raise HTTPException(400, f"deadline_s must be a positive number, got {deadline!r}")
    return items, deadline


def create_app(backend: TeacherBackend, allowed_root: str, api_key: str | None = None,
               max_items: int = DEFAULT_MAX_ITEMS, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
               item_timeout_s: float = DEFAULT_ITEM_TIMEOUT_S, *, cache_size: int = 4096,
               max_workers: int = 16, read_timeout_s: float = DEFAULT_READ_TIMEOUT_S,
               cache_file: str | None = None, judge=None, regenerate_leaks: int = 1,
               max_timestamps: int = DEFAULT_MAX_TIMESTAMPS) -> FastAPI:
    """Build the service app. `allowed_root` must be an existing directory.

    `item_timeout_s` bounds each item (a request's `deadline_s` can only
    shorten it); `cache_size` ok results are kept by content (0 disables);
    `max_workers` threads run a synchronous backend; `read_timeout_s` bounds
    the arrival of a request's head and of its body (``ffr.teacher.server``);
    `cache_file` makes the cache persistent (`ResultCache`), namespaced by the
    backend's ``cache_namespace`` (default: its name). `judge` (a
    `ffr.teacher.judge.BlindJudge`) adds the blind test to the rule gates;
    `regenerate_leaks` times a leaky patch goes back to the backend (`LeakGuard`);
    `max_timestamps` frame times per item (more: the item's ``too_many_frames`` error).
    `api_key` is registered with `ffr.redact`.
    """
    register_secret(api_key)
    root = os.path.realpath(allowed_root)
    if not os.path.isdir(root):
        raise ValueError(f"allowed_root {allowed_root!r} is not a directory")
    if max_items < 1 or max_body_bytes < 1 or item_timeout_s <= 0 or read_timeout_s <= 0:
        raise ValueError("max_items, max_body_bytes, item_timeout_s and read_timeout_s must be positive")
    stats = ServiceStats(backend_name=backend.name)
    guard = LeakGuard(backend, judge=judge, regenerate=regenerate_leaks)
    handler = PatchHandler(backend, root, cache_size, max_workers, stats, guard=guard, max_timestamps=max_timestamps)
    if cache_file is not None:  # persistent cache: results survive restarts (ffr.mine fills it ahead)
        namespace = getattr(backend, "cache_namespace", None) or backend.name
        handler.cache = ResultCache(cache_size, path=cache_file, namespace=namespace)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI):
        yield
        handler.executor.shutdown(wait=False, cancel_futures=True)

    # No generated docs: /docs, /redoc and /openapi.json would answer without the key.
    app = FastAPI(title="FFR teacher", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.stats = stats
    app.state.read_timeout_s = read_timeout_s  # server_settings gives the request head the same bound

    def authorize(request: Request) -> None:
        if api_key is None:
            return
        given = request.headers.get("authorization", "")
        scheme, _, token = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), api_key.encode()):
            stats.record_rejected(401)
            raise HTTPException(401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"})

    @app.get("/health")
    async def health() -> dict:
        return {"status": "alive"}

    @app.get("/ready")
    async def ready(request: Request) -> dict:
        authorize(request)
        ok = bool(await asyncio.get_running_loop().run_in_executor(handler.executor, backend.ready))
        if not ok:
            raise HTTPException(503, f"backend {backend.name!r} is not ready")
        return {"ready": True, "backend": backend.name}

    @app.get("/stats")
    async def get_stats(request: Request) -> dict:
        authorize(request)
        return stats.snapshot()

    @app.post("/patch")
    async def patch(request: Request) -> dict:
        authorize(request)
        received = time.monotonic()
        try:
            body = await _read_limited(request, max_body_bytes, read_timeout_s)
            raw_items, deadline_s = _parse_envelope(body, max_items)
        except HTTPException as exc:
            stats.record_rejected(exc.status_code)
            raise
        budget = item_timeout_s if deadline_s is None else min(item_timeout_s, float(deadline_s))
        results = await asyncio.gather(*(handler.handle(i, raw, received + budget)
                                         for i, raw in enumerate(raw_items)))
        stats.record_request(time.monotonic() - received)
        return PatchResponse(results=list(results)).model_dump(mode="json")

    return app


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m ffr.teacher.service", description="FFR teacher patch service")
    p.add_argument("--host", default="127.0.0.1",
                   help="bind address (loopback by default; any other needs --api-key-file or --insecure-no-key)")
    p.add_argument("--insecure-no-key", action="store_true",
                   help="allow a non-loopback --host without --api-key-file: anyone who reaches it can use the "
                        "teacher (and its upstream key's budget)")
    p.add_argument("--port", type=int, default=8399, help="0: a free port the OS picks (see --port-file)")
    p.add_argument("--port-file", default=None,
                   help="once listening, write the bound port to this file (with --port 0 the only race-free way "
                        "for a launcher to learn a free port: nothing else can take it between choice and bind)")
    p.add_argument("--allowed-root", required=True, help="only videos under this directory are served")
    p.add_argument("--api-key-file", default=None, help="file holding the bearer token clients must send")
    p.add_argument("--max-items", type=int, default=DEFAULT_MAX_ITEMS)
    p.add_argument("--max-body-bytes", type=int, default=DEFAULT_MAX_BODY_BYTES)
    p.add_argument("--item-timeout-s", type=float, default=DEFAULT_ITEM_TIMEOUT_S)
    p.add_argument("--max-timestamps", type=int, default=DEFAULT_MAX_TIMESTAMPS,
                   help="frame times per item; an item with more is refused as too_many_frames")
    p.add_argument("--cache-size", type=int, default=4096)
    p.add_argument("--cache-file", default=None,
                   help="JSONL file that makes the result cache persistent (reloaded at start; see ffr.mine)")
    p.add_argument("--read-timeout-s", type=float, default=DEFAULT_READ_TIMEOUT_S,
                   help="a request's head, and then its body, must arrive within this many seconds")
    p.add_argument("--keep-alive-s", type=float, default=DEFAULT_KEEP_ALIVE_S,
                   help="close a kept-alive connection after this many idle seconds")
    p.add_argument("--max-connections", type=int, default=DEFAULT_MAX_CONNECTIONS,
                   help="answer 503 beyond this many open connections")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    add_backend_args(p)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = _parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        api_key = read_key_file(args.api_key_file, "--api-key-file") if args.api_key_file else None
    except KeyFileError as exc:
        raise SystemExit(str(exc)) from exc
    if api_key is None and args.host not in LOOPBACK:
        if not args.insecure_no_key:
            raise SystemExit(f"refusing to serve on {args.host} without --api-key-file: anyone who can reach it "
                             "could use the teacher (pass --insecure-no-key to do so anyway)")
        logger.warning("serving on %s without an API key (--insecure-no-key)", args.host)
    backend = build_backend(args)
    app = create_app(backend, args.allowed_root, api_key=api_key, max_items=args.max_items,
                     max_body_bytes=args.max_body_bytes, item_timeout_s=args.item_timeout_s,
                     cache_size=args.cache_size, read_timeout_s=args.read_timeout_s, cache_file=args.cache_file,
                     judge=build_service_judge(args), regenerate_leaks=args.regenerate_leaks,
                     max_timestamps=args.max_timestamps)
    settings = server_settings(app, args.keep_alive_s, args.max_connections)
    if args.port_file is None:
        uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, **settings)
        return
    sock = listening_socket(args.host, args.port)
    write_port_file(args.port_file, sock.getsockname()[1])
    server = uvicorn.Server(uvicorn.Config(app, host=args.host, port=args.port, log_level=args.log_level,
                                           **settings))
    server.run(sockets=[sock])
    if not server.started:
        raise SystemExit(3)  # uvicorn.run's exit status for a failed start-up


def listening_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to (host, port) and listening; port 0 binds a port the OS picks."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family, backlog=2048)  # uvicorn's default backlog


def write_port_file(path: str, port: int) -> None:
    """Write `port` to `path` atomically: a reader never sees an empty or partial file."""
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(f"{port}\n")
    os.replace(tmp, path)


if __name__ == "__main__":
    main()
