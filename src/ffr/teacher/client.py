"""HTTP client the training ranks use to ask the teacher service for patches.

`TeacherClient.request_patches(items)` returns one `PatchResult` per item, in
order, and never raises for teacher faults: every transport or server fault
becomes a result with status ``error`` or ``timeout`` and an `error_type`:

=================  =========  =====================================================
error_type         status     cause (retried?)
=================  =========  =====================================================
connection         error      refused / reset / DNS / connect timeout (retried)
transport          error      other `requests` failure mid-response (retried)
http_5xx           error      server answered 5xx (retried)
http_429           error      server throttled us (retried)
http_4xx           error      401 / 413 / 400 ...: our request is wrong (not retried)
bad_json           error      body is not JSON (not retried)
schema             error      JSON is not a `PatchResponse` aligned with the request
call_timeout       timeout    one call exceeded `timeout_s` (not retried: the server
                              may still be working on it; retrying doubles its load)
deadline           timeout    the step deadline passed before an answer
breaker_open       error      circuit breaker open; no call was made
=================  =========  =====================================================

Server-side per-item statuses (ok, leak, skipped, error/invalid_item, ...)
pass through unchanged. The step deadline (`step_deadline_s`) bounds the
wall time of one `request_patches` call: each HTTP call's timeout is capped
by what is left, and items not answered by then come back as timeouts.

Thread-safety: one client may be shared by threads; sessions are per worker
thread, and metrics, cache and breaker are guarded by locks.
"""
from __future__ import annotations

import logging
import math
import random
import threading
import time
from collections import Counter, deque
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Callable, NamedTuple

import requests
from pydantic import ValidationError

from ffr.redact import register_secret
from ffr.teacher.cache import ResultCache
from ffr.teacher.schema import STATUSES, PatchRequestItem, PatchResponse, PatchResult, failure, percentile

logger = logging.getLogger(__name__)

# Per-item cost fields of `PatchResult` summed into `teacher/<name>` metrics.
COST_FIELDS = ("tokens_in", "tokens_out", "model_calls", "images", "regenerated")
RETRYABLE = frozenset({"connection", "transport", "http_5xx", "http_429"})
AUTH_REFUSED = frozenset({401, 403})


class ReadyProbe(NamedTuple):
    """Outcome of one ``GET /ready``.

    status: the HTTP status, or None when no answer came (refused, reset, timed out).
    ``auth_refused`` (401 / 403: a wrong or missing key) is a configuration error that
    retrying cannot fix; anything else not ready may be a teacher still starting up.
    """

    ready: bool
    status: int | None
    detail: str

    @property
    def auth_refused(self) -> bool:
        return self.status in AUTH_REFUSED


class CircuitBreaker:
    """Consecutive-failure breaker: closed -> open (cooldown) -> half-open (one probe).

    `failures` consecutive failed HTTP attempts open it; while open, `allow()`
    is False until `cooldown_s` has passed; then exactly one caller is let
    through as a probe: success closes the breaker, failure re-opens it.
    ``failures=0`` disables the breaker. `clock` (``time.monotonic``) is the time source; a test
    passes its own to step past the cooldown without sleeping.
    """

    def __init__(self, failures: int, cooldown_s: float, clock: Callable[[], float] = time.monotonic):
        self.failures = failures
        self.cooldown_s = cooldown_s
        self.clock = clock
        self.state = "closed"
        self._consecutive = 0
        self._opened_at = 0.0
        self._probing = False
        self._lock = threading.Lock()

    def allow(self) -> bool:
        with self._lock:
            if self.failures <= 0 or self.state == "closed":
                return True
            if self.state == "open" and self.clock() - self._opened_at >= self.cooldown_s:
                self.state = "half_open"
            if self.state == "half_open" and not self._probing:
                self._probing = True
                return True
            return False

    def record(self, ok: bool) -> None:
        with self._lock:
            self._probing = False
            if ok:
                self.state, self._consecutive = "closed", 0
                return
            self._consecutive += 1
            if self.failures > 0 and (self.state == "half_open" or self._consecutive >= self.failures):
                if self.state != "open":
                    logger.warning("teacher circuit breaker opens after %d consecutive failures", self._consecutive)
                self.state, self._opened_at = "open", self.clock()


class _Metrics:
    """Cumulative client counters; `snapshot(reset=True)` gives per-interval values."""

    def __init__(self, window: int = 4096):
        self._lock = threading.Lock()
        self._window = window
        self.reset()

    def reset(self) -> None:
        self.calls = 0
        self.retries = 0
        self.cache_lookups = 0
        self.cache_hits = 0
        self.status: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.latencies: deque[float] = deque(maxlen=self._window)
        self.cost: Counter[str] = Counter()  # what model-backed teachers report per item (cache hits: 0)

    def add(self, **counts: float) -> None:
        with self._lock:
            for name, value in counts.items():
                setattr(self, name, getattr(self, name) + value)

    def latency(self, latency_s: float) -> None:
        """Wall time of one answered HTTP call (any status code)."""
        with self._lock:
            self.latencies.append(latency_s)

    def results(self, results: list[PatchResult]) -> None:
        with self._lock:
            for r in results:
                self.status[r.status] += 1
                if r.error_type and r.status != "leak":
                    self.errors[r.error_type] += 1
                if r.latency_s > 0:  # a cache hit (ours or the service's) cost nothing this time
                    for name in COST_FIELDS:
                        self.cost[name] += getattr(r, name)

    def snapshot(self, reset: bool, breaker_state: str, prices: tuple[float, float] = (0.0, 0.0)) -> dict[str, float]:
        with self._lock:
            lat = list(self.latencies)
            out: dict[str, float] = {
                "teacher/requests": float(self.calls),
                "teacher/retries": float(self.retries),
                "teacher/items": float(sum(self.status.values())),
                "teacher/latency_s_p50": percentile(lat, 50),
                "teacher/latency_s_p95": percentile(lat, 95),
                "teacher/cache_hit_rate": self.cache_hits / self.cache_lookups if self.cache_lookups else 0.0,
                "teacher/breaker_open": 0.0 if breaker_state == "closed" else 1.0,
            }
            out.update({f"teacher/status/{s}": float(self.status[s]) for s in STATUSES})
            out.update({f"teacher/errors/{k}": float(v) for k, v in sorted(self.errors.items())})
            out.update({f"teacher/{name}": float(self.cost[name]) for name in COST_FIELDS})
            if any(prices):
                spent = self.cost["tokens_in"] * prices[0] + self.cost["tokens_out"] * prices[1]
                out["teacher/cost_usd"] = spent / 1e6
            if reset:
                self.reset()
            return out


class TeacherClient:
    """Batched, bounded, fault-tolerant client of ``POST /patch`` (see module docstring).

    Items are split into at most `max_concurrency` contiguous chunks (each at
    most `max_items_per_call` items) sent concurrently. Failed calls are
    retried up to `max_retries` times with exponential backoff and jitter
    (``backoff_s * 2**attempt``, scaled by a factor in [0.5, 1]). With
    `cache`, ok results are kept by item content (all fields but sample_id).
    """

    def __init__(self, url: str, api_key: str | None = None, timeout_s: float = 60.0,
                 step_deadline_s: float = 180.0, max_concurrency: int = 8, max_retries: int = 2,
                 backoff_s: float = 0.5, breaker_failures: int = 5, breaker_cooldown_s: float = 30.0,
                 cache: bool = True, *, max_items_per_call: int = 64, cache_size: int = 8192,
                 price_in_per_mtok: float = 0.0, price_out_per_mtok: float = 0.0):
        if timeout_s <= 0 or step_deadline_s <= 0:
            raise ValueError(f"timeout_s and step_deadline_s must be > 0, got {timeout_s}, {step_deadline_s}")
        if max_concurrency < 1 or max_items_per_call < 1 or max_retries < 0 or backoff_s < 0:
            raise ValueError("need max_concurrency >= 1, max_items_per_call >= 1, max_retries >= 0, backoff_s >= 0")
        if breaker_failures < 0 or breaker_cooldown_s < 0:
            raise ValueError("breaker_failures and breaker_cooldown_s must be >= 0")
        if price_in_per_mtok < 0 or price_out_per_mtok < 0:
            raise ValueError("token prices must be >= 0")
        self.prices = (float(price_in_per_mtok), float(price_out_per_mtok))
        self.url = url.rstrip("/")
        self.timeout_s, self.step_deadline_s = float(timeout_s), float(step_deadline_s)
        self.max_concurrency, self.max_items_per_call = max_concurrency, max_items_per_call
        self.max_retries, self.backoff_s = max_retries, float(backoff_s)
        self.breaker = CircuitBreaker(breaker_failures, breaker_cooldown_s)
        self.metrics = _Metrics()
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        register_secret(api_key)  # a detail or log line that echoes it is masked (ffr.redact)
        self._cache = ResultCache(cache_size) if cache else None
        self._local = threading.local()
        self._sessions: list[requests.Session] = []
        self._sessions_lock = threading.Lock()
        self._executor = ThreadPoolExecutor(max_workers=max_concurrency, thread_name_prefix="teacher-client")

    @classmethod
    def from_args(cls, args) -> TeacherClient:
        """Build from a config object with the ``teacher_*`` fields of the FFR arguments."""
        return cls(args.teacher_url, api_key=args.teacher_api_key, timeout_s=args.teacher_timeout_s,
                   step_deadline_s=args.teacher_step_deadline_s, max_concurrency=args.teacher_max_concurrency,
                   max_retries=args.teacher_max_retries, backoff_s=args.teacher_backoff_s,
                   breaker_failures=args.teacher_breaker_failures,
                   breaker_cooldown_s=args.teacher_breaker_cooldown_s, cache=args.teacher_cache,
                   price_in_per_mtok=args.teacher_price_in_per_mtok,
                   price_out_per_mtok=args.teacher_price_out_per_mtok)

    # ------------------------------------------------------------------ public
    def request_patches(self, items: list[PatchRequestItem]) -> list[PatchResult]:
        """One result per item, same order; returns within about `step_deadline_s`.

        Raises TypeError (naming the index) only for a caller bug: an item that
        is not a `PatchRequestItem`.
        """
        for i, item in enumerate(items):
            if not isinstance(item, PatchRequestItem):
                raise TypeError(f"items[{i}]: expected a PatchRequestItem, got {type(item).__name__}")
        deadline = time.monotonic() + self.step_deadline_s
        results: list[PatchResult | None] = [self._cached(item) for item in items]
        pending = [i for i, r in enumerate(results) if r is None]
        futures = {self._executor.submit(self._call_chunk, [items[i] for i in chunk], deadline): chunk
                   for chunk in self._chunks(pending)}
        done, late = wait(futures, timeout=max(0.0, deadline - time.monotonic()))
        for fut in done:
            for i, res in zip(futures[fut], fut.result()):
                results[i] = res
        for fut in late:
            fut.cancel()  # queued chunks never start; running ones end by their capped timeout
            for i in futures[fut]:
                results[i] = failure(items[i].sample_id, "timeout", "deadline",
                                     f"no answer within the step deadline of {self.step_deadline_s:.3g}s")
        final = [r for r in results if r is not None]
        self.metrics.results(final)
        return final

    def snapshot(self, reset: bool = False) -> dict[str, float]:
        """``teacher/*`` metrics (counts since creation or the last reset); ``teacher/cost_usd`` with prices."""
        return self.metrics.snapshot(reset, self.breaker.state, self.prices)

    def ready(self, timeout_s: float = 5.0) -> bool:
        """True iff ``GET /ready`` answers 200 within `timeout_s`; never raises for network faults."""
        return self.probe_ready(timeout_s).ready

    def probe_ready(self, timeout_s: float = 5.0) -> ReadyProbe:
        """``GET /ready`` once: ready or not, the HTTP status (None: no answer) and why; never raises
        for network faults."""
        try:
            resp = self._session().get(f"{self.url}/ready", headers=self._headers, timeout=timeout_s)
        except requests.RequestException as exc:
            logger.info("teacher not ready at %s: %s", self.url, exc)
            return ReadyProbe(False, None, f"no answer: {type(exc).__name__}: {exc}")
        ready = resp.ok
        return ReadyProbe(ready, resp.status_code, "ready" if ready else f"HTTP {resp.status_code}: {resp.text[:200]}")

    def close(self) -> None:
        """Stop worker threads and close pooled connections."""
        self._executor.shutdown(wait=False, cancel_futures=True)
        with self._sessions_lock:
            for s in self._sessions:
                s.close()
            self._sessions.clear()

    def __enter__(self) -> TeacherClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --------------------------------------------------------------- internals
    def _chunks(self, indices: list[int]) -> list[list[int]]:
        if not indices:
            return []
        n = len(indices)
        n_chunks = max(min(self.max_concurrency, n), math.ceil(n / self.max_items_per_call))
        size = math.ceil(n / n_chunks)
        return [indices[k:k + size] for k in range(0, n, size)]

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            # Proxy / netrc settings from the environment must not reroute the
            # ranks' calls to the teacher (no environment variable changes behaviour).
            session.trust_env = False
            self._local.session = session
            with self._sessions_lock:
                self._sessions.append(session)
        return session

    def _cached(self, item: PatchRequestItem) -> PatchResult | None:
        if self._cache is None:
            return None
        hit = self._cache.get(item.content_key())
        self.metrics.add(cache_lookups=1, cache_hits=int(hit is not None))
        return None if hit is None else hit.model_copy(update={"sample_id": item.sample_id, "latency_s": 0.0})

    def _store(self, items: list[PatchRequestItem], results: list[PatchResult]) -> None:
        if self._cache is None:
            return
        for item, res in zip(items, results):
            self._cache.put(item.content_key(), res)

    def _call_chunk(self, items: list[PatchRequestItem], deadline: float) -> list[PatchResult]:
        """Send one chunk with retries; always returns len(items) results."""
        attempt = 0
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return self._fail_all(items, "timeout", "deadline", "step deadline passed before the call")
            if not self.breaker.allow():
                return self._fail_all(items, "error", "breaker_open", "circuit breaker open; call not made")
            outcome = self._attempt(items, remaining)
            self.breaker.record(ok=not isinstance(outcome, tuple))
            if not isinstance(outcome, tuple):
                self._store(items, outcome)
                return outcome
            status, kind, detail = outcome
            delay = self.backoff_s * (2 ** attempt) * random.uniform(0.5, 1.0)
            if kind not in RETRYABLE or attempt >= self.max_retries or time.monotonic() + delay >= deadline:
                return self._fail_all(items, status, kind, detail)
            logger.info("teacher call failed (%s: %s); retry %d in %.3fs", kind, detail, attempt + 1, delay)
            time.sleep(delay)
            attempt += 1
            self.metrics.add(retries=1)

    def _attempt(self, items: list[PatchRequestItem], remaining: float):
        """One HTTP call: the aligned results, or a fault ``(status, error_type, detail)``."""
        timeout = min(self.timeout_s, remaining)
        # The server gets a slightly shorter budget than our read timeout, so it
        # answers (fast items ok, slow ones "timeout") before we give up on it.
        server_budget = timeout - min(0.1 * timeout, 1.0)
        payload = {"items": [it.model_dump(mode="json") for it in items], "deadline_s": server_budget}
        started = time.monotonic()
        self.metrics.add(calls=1)
        try:
            resp = self._session().post(f"{self.url}/patch", json=payload, headers=self._headers, timeout=timeout)
        except requests.ConnectTimeout as exc:
            return "error", "connection", f"connect timeout: {exc}"
        except requests.Timeout:
            kind = "deadline" if timeout < self.timeout_s else "call_timeout"
            return "timeout", kind, f"no response within {timeout:.3g}s"
        except requests.ConnectionError as exc:
            return "error", "connection", str(exc)
        except requests.RequestException as exc:
            return "error", "transport", f"{type(exc).__name__}: {exc}"
        self.metrics.latency(time.monotonic() - started)
        return _parse_response(resp, items)

    @staticmethod
    def _fail_all(items: list[PatchRequestItem], status: str, kind: str, detail: str) -> list[PatchResult]:
        return [failure(it.sample_id, status, kind, detail) for it in items]


def _parse_response(resp: requests.Response, items: list[PatchRequestItem]):
    """Aligned results from a response, or a fault tuple (see `TeacherClient._attempt`)."""
    if resp.status_code != 200:
        kind = "http_429" if resp.status_code == 429 else "http_5xx" if resp.status_code >= 500 else "http_4xx"
        return "error", kind, f"HTTP {resp.status_code}: {resp.text[:200]}"
    try:
        data = resp.json()
    except ValueError as exc:
        return "error", "bad_json", f"response is not JSON ({exc}): {resp.text[:100]!r}"
    try:
        parsed = PatchResponse.model_validate(data)
    except ValidationError as exc:
        return "error", "schema", f"response is not a PatchResponse: {exc.errors()[0]['msg']}"
    got = [r.sample_id for r in parsed.results]
    want = [it.sample_id for it in items]
    if got != want:
        return "error", "schema", f"results for {got[:5]} do not match requested items {want[:5]}"
    return parsed.results
