"""The per-item pipeline of the teacher service and its statistics.

`PatchHandler.handle` turns one raw request item into a `PatchResult`, never raising for
item-level faults: validate -> bound the frame count (``too_many_frames``) -> confine the path
-> cache (namespaced by the backend's `cache_namespace`, read at each lookup and store, since
it can change while the service runs) -> backend proposal (timed) -> leak review
(`guard.LeakGuard`: gates, optional blind judge, up to ``--regenerate-leaks`` regenerations)
-> result with the backend's cost fields. Every result's ``detail`` passes `ffr.redact.redact`
(`_redacted`) in `handle`, the one exit of the pipeline, and before the cache stores it, so no
configured secret reaches a client, a patch log or the cache file.
`ServiceStats` holds the counters behind ``GET /stats``.
"""
from __future__ import annotations

import asyncio
import inspect
import logging
import os
import time
from collections import Counter, deque
from concurrent.futures import ThreadPoolExecutor

from pydantic import ValidationError

from ffr.redact import redact
from ffr.teacher.backends import Proposal, TeacherBackend
from ffr.teacher.cache import ResultCache
from ffr.teacher.guard import LeakGuard
from ffr.teacher.schema import STATUSES, PatchRequestItem, PatchResult, failure, percentile

logger = logging.getLogger(__name__)

DEFAULT_MAX_TIMESTAMPS = 400  # frame times per item; a training policy samples tens


class PathRejected(ValueError):
    """A video path the service refuses; `kind` becomes the item's error_type."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


def confine_path(video_path: str, root: str) -> str:
    """Resolve `video_path` (relative paths are taken under `root`) and confine it.

    `root` must already be a real path. Symlinks and ``..`` are resolved
    before the check, so a link inside the root pointing outside is refused.
    Returns the resolved path of an existing regular file. A path the OS cannot
    take (a NUL byte, a name too long) is refused as ``invalid_path``, never raised
    as a bare ValueError / OSError, so it stays that item's fault.
    """
    if "\x00" in video_path:
        raise PathRejected("invalid_path", f"video path {video_path!r} contains a NUL byte")
    joined = video_path if os.path.isabs(video_path) else os.path.join(root, video_path)
    try:
        real = os.path.realpath(joined)
    except (ValueError, OSError) as exc:
        raise PathRejected("invalid_path", f"video path {video_path!r} cannot be resolved: {exc}") from exc
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
        self.cost: Counter[str] = Counter()  # model_calls, images, tokens_in, tokens_out, regenerated
        self.leaks_by_source: Counter[str] = Counter()  # gate / judge
        self.leaks_by_error_type: Counter[str] = Counter()  # the teacher's diagnosis of the leaky patch
        self.ok_by_error_type: Counter[str] = Counter()

    def record_item(self, result: PatchResult, cached: bool) -> None:
        self.status[result.status] += 1
        if result.error_type and result.status != "leak":
            self.errors[result.error_type] += 1
        if cached:
            self.cache_hits += 1
            return
        if result.latency_s > 0:
            self.item_latencies.append(result.latency_s)
        for name in ("model_calls", "images", "tokens_in", "tokens_out", "regenerated"):
            self.cost[name] += getattr(result, name)
        if result.status == "leak":
            self.leaks_by_source[result.leak_source or "gate"] += 1
            self.leaks_by_error_type.update(result.patch_error_types)
        elif result.status == "ok":
            self.ok_by_error_type.update(result.patch_error_types)

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
            "cost": {k: self.cost[k] for k in ("model_calls", "images", "tokens_in", "tokens_out", "regenerated")},
            "leaks_by_source": dict(sorted(self.leaks_by_source.items())),
            "leaks_by_error_type": dict(sorted(self.leaks_by_error_type.items())),
            "ok_by_error_type": dict(sorted(self.ok_by_error_type.items())),
        }


class PatchHandler:
    """Per-item pipeline: validate -> confine path -> cache -> backend (timed) -> leak gate.

    All methods run on the event loop thread, so the cache and stats need no
    lock; only a synchronous backend's `propose` runs in a worker thread.
    """

    def __init__(self, backend: TeacherBackend, root: str, cache_size: int, max_workers: int,
                 stats: ServiceStats, guard: LeakGuard | None = None,
                 max_timestamps: int = DEFAULT_MAX_TIMESTAMPS):
        if max_timestamps < 1:
            raise ValueError(f"max_timestamps must be >= 1, got {max_timestamps}")
        self.backend = backend
        self.max_timestamps = max_timestamps
        self.guard = guard or LeakGuard(backend)
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
        result = _redacted(result)
        self.stats.record_item(result, cached=cached)
        return result

    async def _outcome(self, index: int, raw: object, deadline: float,
                       started: float) -> tuple[PatchResult, bool]:
        sid = _raw_sample_id(raw, index)
        try:
            item = PatchRequestItem.model_validate(raw)
        except ValidationError as exc:
            return failure(sid, "error", "invalid_item", _short(exc)), False
        if len(item.timestamps) > self.max_timestamps:  # each one is a decoded frame held in memory
            return failure(sid, "error", "too_many_frames",
                           f"{len(item.timestamps)} timestamps exceed the limit of {self.max_timestamps} "
                           "frames per item (--max-timestamps)"), False
        try:
            real_path = confine_path(item.video_path, self.root)
        except PathRejected as exc:
            return failure(sid, "error", exc.kind, str(exc)), False
        key = item.content_key()
        hit = self.cache.get(key, self._namespace())
        if hit is not None:
            return hit.model_copy(update={"sample_id": sid, "latency_s": 0.0}), True
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return failure(sid, "timeout", "item_timeout", "request deadline already passed"), False
        result = _redacted(await self._propose(item.model_copy(update={"video_path": real_path}), remaining,
                                               started))  # before the cache file sees it
        if result.status == "ok":  # the namespace after the proposal: the protocol that made it
            self.cache.put(key, result, self._namespace())
        return result, False

    def _namespace(self) -> str:
        return getattr(self.backend, "cache_namespace", None) or self.backend.name

    async def _propose(self, item: PatchRequestItem, timeout_s: float, started: float) -> PatchResult:
        """Backend proposal and leak review under one per-item timeout."""
        sid = item.sample_id
        try:
            return await asyncio.wait_for(self._proposal_result(item, started), timeout=timeout_s)
        except asyncio.TimeoutError:
            return failure(sid, "timeout", "item_timeout", f"no patch within {timeout_s:.3g}s",
                           time.monotonic() - started)
        except Exception as exc:  # the backend's (or judge's) fault becomes this item's status, logged
            logger.warning("backend failed on item %s", sid, exc_info=True)
            return failure(sid, "error", "backend", f"{type(exc).__name__}: {exc}", time.monotonic() - started)

    async def _proposal_result(self, item: PatchRequestItem, started: float) -> PatchResult:
        out = await self._call_backend(item)
        proposal = out if isinstance(out, Proposal) else Proposal(patch=out)
        if proposal.patch is None or item.gold_answer is None:
            return self._result(item, proposal, started)
        try:
            review = await self.guard.review(item, proposal)
        except ValueError as exc:  # malformed gold / options / problem_type: this item's fault
            return self._result(item, proposal, started, status="error", error_type="invalid_item",
                                detail=f"leak check: {exc}")
        extra = {"regenerated": review.regenerated, "judge": review.judge_usage}
        if review.leak is None:
            return self._result(item, review.proposal, started, **extra)
        logger.info("dropped leaky patch for item %s (%s): %s", item.sample_id, review.source, review.leak)
        return self._result(item, review.proposal, started, status="leak", error_type="leak", detail=review.leak,
                            leak_source=review.source, error_types=list(review.error_types), **extra)

    def _result(self, item: PatchRequestItem, proposal: Proposal, started: float, status: str | None = None,
                error_type: str | None = None, detail: str | None = None, leak_source: str | None = None,
                error_types: list[str] | None = None, regenerated: int = 0, judge=None) -> PatchResult:
        """The item's result with the backend's cost fields; status from the proposal unless given."""
        usage = proposal.usage if judge is None else proposal.usage + judge
        if status is None:
            if proposal.error_type:
                status, error_type = "error", proposal.error_type
            elif proposal.patch is None:
                status = "skipped"
            else:
                status = "ok"
        patch = proposal.patch if status == "ok" else None
        if error_types is None:
            error_types = list(patch.error_types) if patch is not None else []
        if status == "skipped" and detail is None:
            detail = proposal.detail or "backend proposed no patch"
        return PatchResult(sample_id=item.sample_id, status=status, patch=patch, error_type=error_type,
                           detail=detail if detail is not None else proposal.detail, turns=proposal.turns,
                           latency_s=time.monotonic() - started, teacher_model=self.backend.model_name,
                           prompt_version=self.backend.prompt_version, model_calls=usage.model_calls,
                           images=usage.images, tokens_in=usage.tokens_in, tokens_out=usage.tokens_out,
                           regenerated=regenerated, leak_source=leak_source, patch_error_types=error_types)

    async def _call_backend(self, item: PatchRequestItem):
        if self.is_async:
            return await self.backend.propose(item)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, self.backend.propose, item)


def _redacted(result: PatchResult) -> PatchResult:
    """`result` with configured secrets masked in its detail (`ffr.redact`)."""
    if not result.detail:
        return result
    clean = redact(result.detail)
    return result if clean == result.detail else result.model_copy(update={"detail": clean})


def _raw_sample_id(raw: object, index: int) -> str:
    """The item's sample_id when readable, else a positional name, for error reports."""
    if isinstance(raw, dict) and isinstance(raw.get("sample_id"), str) and raw["sample_id"]:
        return raw["sample_id"]
    return f"item[{index}]"


def _short(exc: ValidationError) -> str:
    """First few pydantic errors as ``loc: msg`` (the full dump can be huge)."""
    parts = [f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}" for err in exc.errors()[:5]]
    return "; ".join(parts)
