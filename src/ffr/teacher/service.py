"""Teacher HTTP service: FastAPI app around a `TeacherBackend`.

Endpoints (all but /health need ``Authorization: Bearer <key>`` when a key is set):
- ``GET /health``: the process is alive.
- ``GET /ready``: ``backend.ready()``; 503 when not ready.
- ``GET /stats``: request and item counts by status, latency p50/p95, leak rate,
  cache hits (see `ServiceStats.snapshot`).
- ``POST /patch``: a `PatchRequest` in, a `PatchResponse` out (same order).

Guarantees of ``/patch``: one bad item never fails the batch (invalid item,
video path outside the allowed root, backend exception, per-item timeout,
leaky patch all become that item's status); the whole request is refused only
for transport-level reasons (401 bad key, 413 too many items or too large a
body, 400 body not a JSON object with an ``items`` list).

CLI: ``python -m ffr.teacher.service --backend annotation --allowed-root DIR``.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import hmac
import inspect
import json
import logging
import os
import socket
import threading
import time
from collections import Counter, deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import uvicorn
from fastapi import FastAPI, HTTPException, Request
from pydantic import ValidationError

from ffr.leakage import patch_leaks
from ffr.teacher.backends import BACKENDS, Proposal, TeacherBackend
from ffr.teacher.cache import ResultCache
from ffr.teacher.schema import (STATUSES, PatchRequestItem, PatchResponse, PatchResult,
                                failure, percentile)

logger = logging.getLogger(__name__)

DEFAULT_MAX_ITEMS = 256
DEFAULT_MAX_BODY_BYTES = 8 * 1024 * 1024
DEFAULT_ITEM_TIMEOUT_S = 120.0


class PathRejected(ValueError):
    """A video path the service refuses; `kind` becomes the item's error_type."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


def confine_path(video_path: str, root: str) -> str:
    """Resolve `video_path` (relative paths are taken under `root`) and confine it.

    `root` must already be a real path. Symlinks and ``..`` are resolved
    before the check, so a link inside the root pointing outside is refused.
    Returns the resolved path of an existing regular file.
    """
    joined = video_path if os.path.isabs(video_path) else os.path.join(root, video_path)
    real = os.path.realpath(joined)
    if os.path.commonpath([real, root]) != root:
        raise PathRejected("path_outside_root", f"video path {video_path!r} resolves outside the allowed root")
    if not os.path.isfile(real):
        raise PathRejected("path_not_found", f"video path {video_path!r} is not an existing file")
    return real


class ServiceStats:
    """Counters behind ``GET /stats``; touched only on the event loop thread.

    Latency percentiles cover the last `window` items that reached the backend
    (cache hits and rejected items are excluded: they would hide its speed).
    `leak_rate` = leak / (ok + leak): the share of proposed patches dropped.
    """

    def __init__(self, backend_name: str, window: int = 4096):
        self.backend_name = backend_name
        self.requests = 0
        self.rejected: Counter[int] = Counter()
        self.status: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.cache_hits = 0
        self.item_latencies: deque[float] = deque(maxlen=window)
        self.request_latencies: deque[float] = deque(maxlen=window)

    def record_item(self, result: PatchResult, cached: bool) -> None:
        self.status[result.status] += 1
        if result.error_type and result.status != "leak":
            self.errors[result.error_type] += 1
        if cached:
            self.cache_hits += 1
        elif result.latency_s > 0:
            self.item_latencies.append(result.latency_s)

    def record_request(self, latency_s: float) -> None:
        self.requests += 1
        self.request_latencies.append(latency_s)

    def record_rejected(self, http_status: int) -> None:
        self.rejected[http_status] += 1

    def snapshot(self) -> dict:
        items = sum(self.status.values())
        proposed = self.status["ok"] + self.status["leak"]
        lat = list(self.item_latencies)
        return {
            "backend": self.backend_name,
            "requests": self.requests,
            "rejected": {str(code): n for code, n in sorted(self.rejected.items())},
            "items": items,
            "status": {s: self.status[s] for s in STATUSES},
            "errors": dict(sorted(self.errors.items())),
            "latency_s_p50": percentile(lat, 50),
            "latency_s_p95": percentile(lat, 95),
            "request_latency_s_p95": percentile(list(self.request_latencies), 95),
            "leak_rate": self.status["leak"] / proposed if proposed else 0.0,
            "cache_hits": self.cache_hits,
            "cache_hit_rate": self.cache_hits / items if items else 0.0,
        }


class _PatchHandler:
    """Per-item pipeline: validate -> confine path -> cache -> backend (timed) -> leak gate.

    All methods run on the event loop thread, so the cache and stats need no
    lock; only a synchronous backend's `propose` runs in a worker thread.
    """

    def __init__(self, backend: TeacherBackend, root: str, cache_size: int, max_workers: int,
                 stats: ServiceStats):
        self.backend = backend
        self.root = root
        self.cache = ResultCache(cache_size)
        self.stats = stats
        self.is_async = inspect.iscoroutinefunction(backend.propose)
        # A sync propose that times out keeps its worker until it returns
        # (threads cannot be cancelled); a dedicated pool bounds that damage.
        self.executor = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="teacher-backend")

    async def handle(self, index: int, raw: object, deadline: float) -> PatchResult:
        """Outcome for the `index`-th raw item; never raises for item-level faults."""
        started = time.monotonic()
        result, cached = await self._outcome(index, raw, deadline, started)
        self.stats.record_item(result, cached=cached)
        return result

    async def _outcome(self, index: int, raw: object, deadline: float,
                       started: float) -> tuple[PatchResult, bool]:
        sid = _raw_sample_id(raw, index)
        try:
            item = PatchRequestItem.model_validate(raw)
        except ValidationError as exc:
            return failure(sid, "error", "invalid_item", _short(exc)), False
        try:
            real_path = confine_path(item.video_path, self.root)
        except PathRejected as exc:
            return failure(sid, "error", exc.kind, str(exc)), False
        key = item.content_key()
        hit = self.cache.get(key)
        if hit is not None:
            return hit.model_copy(update={"sample_id": sid, "latency_s": 0.0}), True
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return failure(sid, "timeout", "item_timeout", "request deadline already passed"), False
        result = await self._propose(item.model_copy(update={"video_path": real_path}), remaining, started)
        if result.status == "ok":
            self.cache.put(key, result)
        return result, False

    async def _propose(self, item: PatchRequestItem, timeout_s: float, started: float) -> PatchResult:
        sid = item.sample_id
        try:
            out = await asyncio.wait_for(self._call_backend(item), timeout=timeout_s)
        except asyncio.TimeoutError:
            return failure(sid, "timeout", "item_timeout", f"no patch within {timeout_s:.3g}s",
                           time.monotonic() - started)
        except Exception as exc:  # the backend's fault becomes this item's status, logged with traceback
            logger.warning("backend failed on item %s", sid, exc_info=True)
            return failure(sid, "error", "backend", f"{type(exc).__name__}: {exc}", time.monotonic() - started)
        proposal = out if isinstance(out, Proposal) else Proposal(patch=out)
        latency = time.monotonic() - started
        if proposal.patch is None:
            return PatchResult(sample_id=sid, status="skipped", detail=proposal.detail or "backend proposed no patch",
                               turns=proposal.turns, latency_s=latency)
        if item.gold_answer is not None:
            try:
                reason = patch_leaks(proposal.patch, item.gold_answer, item.options, item.problem_type)
            except ValueError as exc:  # malformed gold / options / problem_type: this item's fault
                return failure(sid, "error", "invalid_item", f"leak check: {exc}", latency)
            if reason:
                logger.info("dropped leaky patch for item %s: %s", sid, reason)
                return PatchResult(sample_id=sid, status="leak", error_type="leak", detail=reason,
                                   turns=proposal.turns, latency_s=latency)
        return PatchResult(sample_id=sid, status="ok", patch=proposal.patch, detail=proposal.detail,
                           turns=proposal.turns, latency_s=latency)

    async def _call_backend(self, item: PatchRequestItem):
        if self.is_async:
            return await self.backend.propose(item)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, self.backend.propose, item)


def _raw_sample_id(raw: object, index: int) -> str:
    """The item's sample_id when readable, else a positional name, for error reports."""
    if isinstance(raw, dict) and isinstance(raw.get("sample_id"), str) and raw["sample_id"]:
        return raw["sample_id"]
    return f"item[{index}]"


def _short(exc: ValidationError) -> str:
    """First few pydantic errors as ``loc: msg`` (the full dump can be huge)."""
    parts = [f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}" for err in exc.errors()[:5]]
    return "; ".join(parts)


async def _read_limited(request: Request, max_bytes: int) -> bytes:
    """Read the body, refusing (413) as soon as it exceeds `max_bytes`, declared or streamed."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise HTTPException(413, f"body of {declared} bytes exceeds the limit of {max_bytes}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise HTTPException(413, f"body exceeds the limit of {max_bytes} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _parse_envelope(body: bytes, max_items: int) -> tuple[list, float | None]:
    """Split a raw body into (raw items, deadline_s); items are validated one by one later."""
    try:
        payload = json.loads(body)
    except ValueError as exc:
        raise HTTPException(400, f"body is not JSON: {exc}") from exc
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
               max_workers: int = 16) -> FastAPI:
    """Build the service app. `allowed_root` must be an existing directory.

    `item_timeout_s` bounds each item (a request's `deadline_s` can only
    shorten it); `cache_size` ok results are kept by content (0 disables);
    `max_workers` threads run a synchronous backend.
    """
    root = os.path.realpath(allowed_root)
    if not os.path.isdir(root):
        raise ValueError(f"allowed_root {allowed_root!r} is not a directory")
    if max_items < 1 or max_body_bytes < 1 or item_timeout_s <= 0:
        raise ValueError("max_items, max_body_bytes and item_timeout_s must be positive")
    stats = ServiceStats(backend_name=backend.name)
    handler = _PatchHandler(backend, root, cache_size, max_workers, stats)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI):
        yield
        handler.executor.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(title="FFR teacher", lifespan=lifespan)
    app.state.stats = stats

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
            raw_items, deadline_s = _parse_envelope(await _read_limited(request, max_body_bytes), max_items)
        except HTTPException as exc:
            stats.record_rejected(exc.status_code)
            raise
        budget = item_timeout_s if deadline_s is None else min(item_timeout_s, float(deadline_s))
        results = await asyncio.gather(*(handler.handle(i, raw, received + budget)
                                         for i, raw in enumerate(raw_items)))
        stats.record_request(time.monotonic() - received)
        return PatchResponse(results=list(results)).model_dump(mode="json")

    return app


@contextlib.contextmanager
def serve_in_thread(app: FastAPI, host: str = "127.0.0.1", port: int = 0,
                    start_timeout_s: float = 10.0) -> Iterator[str]:
    """Run `app` under uvicorn in a daemon thread; yields its base URL.

    Binds the socket before starting (``port=0`` picks a free port without a
    race), waits until uvicorn reports started, and stops it on exit. Used by
    tests and by the CPU demo to run the teacher in-process.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    bound_port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=2))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True, name="teacher-uvicorn")
    thread.start()
    try:
        until = time.monotonic() + start_timeout_s
        while not server.started:
            if not thread.is_alive() or time.monotonic() > until:
                raise RuntimeError(f"teacher service did not start on {host}:{bound_port}")
            time.sleep(0.01)
        yield f"http://{host}:{bound_port}"
    finally:
        server.should_exit = True
        thread.join(timeout=start_timeout_s)
        sock.close()


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m ffr.teacher.service", description="FFR teacher patch service")
    p.add_argument("--backend", choices=sorted(BACKENDS), default="annotation")
    p.add_argument("--host", default="127.0.0.1", help="bind address (loopback by default)")
    p.add_argument("--port", type=int, default=8399)
    p.add_argument("--allowed-root", required=True, help="only videos under this directory are served")
    p.add_argument("--api-key-file", default=None, help="file holding the bearer token clients must send")
    p.add_argument("--max-items", type=int, default=DEFAULT_MAX_ITEMS)
    p.add_argument("--max-body-bytes", type=int, default=DEFAULT_MAX_BODY_BYTES)
    p.add_argument("--item-timeout-s", type=float, default=DEFAULT_ITEM_TIMEOUT_S)
    p.add_argument("--cache-size", type=int, default=4096)
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    return p.parse_args(argv)


def _read_api_key(path: str | None) -> str | None:
    if path is None:
        return None
    with open(path, encoding="utf-8") as fh:
        key = fh.read().strip()
    if not key:
        raise SystemExit(f"api key file {path!r} is empty")
    return key


def main(argv: list[str] | None = None) -> None:
    args = _parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    api_key = _read_api_key(args.api_key_file)
    if api_key is None and args.host not in ("127.0.0.1", "localhost", "::1"):
        logger.warning("serving on %s without an API key: anyone who can reach it can use the teacher", args.host)
    app = create_app(BACKENDS[args.backend](), args.allowed_root, api_key=api_key, max_items=args.max_items,
                     max_body_bytes=args.max_body_bytes, item_timeout_s=args.item_timeout_s,
                     cache_size=args.cache_size)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)


if __name__ == "__main__":
    main()
