"""TeacherClient against local servers that misbehave on purpose (127.0.0.1 only).

A stdlib HTTP server plays the teacher with a scripted behaviour per call
(ok, 500, 429, 401, garbage, wrong schema, misaligned, slow); each test checks
the per-item statuses, the error kinds, the metrics, and that the call comes
back within a bounded time. One test runs the client against the real service.
"""
from __future__ import annotations

import json
import sys
import threading
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import pytest

from ffr.patch import evidence_to_patch
from ffr.teacher.backends import AnnotationBackend
from ffr.teacher.client import TeacherClient
from ffr.teacher.schema import PatchRequestItem, PatchResult
from ffr.teacher.service import create_app, serve_in_thread
from serving import refused_port

EVIDENCE = {"time_span": [1.0, 3.0], "region": [0.1, 0.2, 0.5, 0.6], "error_type": "temporal",
            "markers": ["the moment of contact"], "guidance": "Re-examine the order of the two events."}
TIMESTAMPS = [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5]
# How long a scripted "slow" answer takes. Far longer than any deadline or timeout it is used
# against, so a bound like `elapsed < SLOW_S / 2` shows the client did not wait for it, with
# seconds of slack for a loaded machine (handler threads are daemons: nobody waits for them).
SLOW_S = 10.0


def make_item(sid: str, response: str | None = None, path: str = "/videos/a.mp4") -> PatchRequestItem:
    return PatchRequestItem(sample_id=sid, video_path=path, timestamps=TIMESTAMPS, question="What happens first?",
                            options=["A. red", "B. blue"], problem_type="multiple choice",
                            student_response=response if response is not None else f"<answer>A</answer> {sid}",
                            gold_answer="B", evidence=EVIDENCE)


def ok_body(payload: dict) -> dict:
    patch = evidence_to_patch(EVIDENCE, TIMESTAMPS, use_gt=True)
    return {"results": [PatchResult(sample_id=it["sample_id"], status="ok", patch=patch, latency_s=0.01)
                        .model_dump(mode="json") for it in payload["items"]]}


class ScriptedTeacher(ThreadingHTTPServer):
    """Answers POST /patch per `script` (one entry per call; the last entry repeats)."""

    daemon_threads = True
    block_on_close = False
    request_queue_size = 64  # concurrent chunks must never hit a full accept backlog (a refused connection)

    def __init__(self, script: list[str]):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.script = list(script)
        self.hits = 0
        self.inflight = 0
        self.max_inflight = 0
        self.lock = threading.Lock()
        self._barrier: threading.Barrier | None = None

    def barrier(self, parties: int) -> threading.Barrier:
        with self.lock:
            if self._barrier is None:
                self._barrier = threading.Barrier(parties)
            return self._barrier

    def handle_error(self, request, client_address) -> None:
        # A client that timed out closes its socket; our late reply then hits a
        # broken pipe, which is the expected outcome here, not a server fault.
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)

    def next_action(self) -> str:
        with self.lock:
            self.hits += 1
            self.inflight += 1
            self.max_inflight = max(self.max_inflight, self.inflight)
            return self.script.pop(0) if len(self.script) > 1 else self.script[0]


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep test output quiet
        pass

    def do_POST(self) -> None:  # noqa: N802 (stdlib naming)
        server: ScriptedTeacher = self.server  # type: ignore[assignment]
        payload = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        action = server.next_action()
        try:
            self._act(action, payload)
        finally:
            with server.lock:
                server.inflight -= 1

    def _act(self, action: str, payload: dict) -> None:
        if action.startswith("sleep:"):  # sleep, then answer ok
            time.sleep(float(action.split(":")[1]))
            action = "ok"
        if action == "slow_ids":  # only chunks holding a "slow*" item are slow
            if any(it["sample_id"].startswith("slow") for it in payload["items"]):
                time.sleep(SLOW_S)
            action = "ok"
        if action.startswith("barrier:"):  # answer ok once that many calls are in flight at once
            try:
                self.server.barrier(int(action.split(":")[1])).wait(timeout=SLOW_S)
            except threading.BrokenBarrierError:
                action = "599"  # they never were: the calls were not concurrent
            else:
                action = "ok"
        bodies = {
            "ok": (200, json.dumps(ok_body(payload))),
            "garbage": (200, "<html>proxy error</html>"),
            "schema": (200, json.dumps({"answers": []})),
            "misaligned": (200, json.dumps({"results": ok_body(payload)["results"][::-1] + [
                {"sample_id": "extra", "status": "skipped"}]})),
            "ok_without_patch": (200, json.dumps({"results": [{"sample_id": it["sample_id"], "status": "ok"}
                                                              for it in payload["items"]]})),
        }
        code, body = bodies.get(action, (int(action) if action.isdigit() else 599, "scripted failure"))
        data = body.encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@contextmanager
def scripted(script: list[str]):
    server = ScriptedTeacher(script)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield server, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def client(url: str, **kw) -> TeacherClient:
    opts = dict(timeout_s=2.0, step_deadline_s=5.0, max_concurrency=1, max_retries=0, backoff_s=0.01,
                breaker_failures=100, breaker_cooldown_s=0.3, cache=False)
    opts.update(kw)
    return TeacherClient(url, **opts)


def timed(c: TeacherClient, items: list[PatchRequestItem]) -> tuple[list[PatchResult], float]:
    t0 = time.monotonic()
    out = c.request_patches(items)
    return out, time.monotonic() - t0


def kinds(results: list[PatchResult]) -> list[tuple[str, str | None]]:
    return [(r.status, r.error_type) for r in results]


def test_refused_port_gives_connection_errors_after_retries():
    with refused_port() as port, client(f"http://127.0.0.1:{port}", max_retries=2) as c:
        out, elapsed = timed(c, [make_item("a"), make_item("b")])
        m = c.snapshot()
    assert kinds(out) == [("error", "connection")] * 2
    assert [r.sample_id for r in out] == ["a", "b"] and all(r.patch is None for r in out)
    assert m["teacher/requests"] == 3 and m["teacher/retries"] == 2
    assert m["teacher/errors/connection"] == 2 and m["teacher/status/error"] == 2
    assert elapsed < 2.0


def test_slow_server_times_out_without_retry():
    with scripted([f"sleep:{SLOW_S}"]) as (server, url), client(url, timeout_s=0.25, max_retries=3) as c:
        out, elapsed = timed(c, [make_item("a")])
        assert server.hits == 1  # a timed-out call is not repeated
    assert kinds(out) == [("timeout", "call_timeout")]
    assert 0.25 <= elapsed < SLOW_S / 2  # cut at the call timeout, not awaited
    assert c.snapshot()["teacher/errors/call_timeout"] == 1


def test_500_then_ok_is_retried():
    with scripted(["500", "ok"]) as (server, url), client(url, max_retries=2) as c:
        out, elapsed = timed(c, [make_item("a"), make_item("b")])
        assert server.hits == 2
        m = c.snapshot()
    assert kinds(out) == [("ok", None)] * 2 and all(r.patch is not None for r in out)
    assert m["teacher/retries"] == 1 and m["teacher/requests"] == 2 and m["teacher/status/ok"] == 2
    assert m["teacher/latency_s_p95"] >= m["teacher/latency_s_p50"] > 0
    assert elapsed < 2.0


def test_429_retried_but_4xx_not():
    with scripted(["429", "ok"]) as (server, url), client(url, max_retries=1) as c:
        assert kinds(c.request_patches([make_item("a")])) == [("ok", None)]
        assert server.hits == 2
    with scripted(["401"]) as (server, url), client(url, max_retries=3) as c:
        out = c.request_patches([make_item("a")])
        assert server.hits == 1
    assert kinds(out) == [("error", "http_4xx")] and "401" in out[0].detail


@pytest.mark.parametrize("action,kind", [("garbage", "bad_json"), ("schema", "schema"),
                                         ("misaligned", "schema"), ("ok_without_patch", "schema")])
def test_malformed_answers_become_errors(action, kind):
    with scripted([action]) as (server, url), client(url, max_retries=2) as c:
        out, elapsed = timed(c, [make_item("a"), make_item("b")])
        assert server.hits == 1  # a broken answer is not retried
    assert kinds(out) == [("error", kind)] * 2
    assert c.snapshot()[f"teacher/errors/{kind}"] == 2
    assert elapsed < 2.0


class FakeClock:
    """A monotonic clock that moves only when told to (the breaker's cooldown, without sleeping)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_breaker_opens_then_half_open_probe_recovers():
    # The breaker reads a fake clock: on a loaded machine, real time between two calls could pass
    # the cooldown and let a probe through where the test expects the breaker still open.
    clock = FakeClock()
    with scripted(["500"]) as (server, url), client(url, breaker_failures=2, breaker_cooldown_s=30.0) as c:
        c.breaker.clock = clock
        for _ in range(2):
            assert kinds(c.request_patches([make_item("a")])) == [("error", "http_5xx")]
        assert c.breaker.state == "open" and c.snapshot()["teacher/breaker_open"] == 1.0
        out, elapsed = timed(c, [make_item("a"), make_item("b")])
        # no call made, nothing waited for: well under the 2 s call timeout a real call could take
        assert kinds(out) == [("error", "breaker_open")] * 2 and server.hits == 2 and elapsed < 1.0
        clock.now += 29.9  # cooldown not over yet: still open
        assert kinds(c.request_patches([make_item("a")])) == [("error", "breaker_open")] and server.hits == 2
        clock.now += 0.1  # cooldown over: one probe goes through, fails, re-opens at once
        assert kinds(c.request_patches([make_item("a")])) == [("error", "http_5xx")] and server.hits == 3
        assert kinds(c.request_patches([make_item("a")])) == [("error", "breaker_open")] and server.hits == 3
        server.script = ["ok"]
        clock.now += 30.0
        assert kinds(c.request_patches([make_item("a")])) == [("ok", None)]
        assert c.breaker.state == "closed" and server.hits == 4
        m = c.snapshot()
    assert m["teacher/errors/breaker_open"] == 4 and m["teacher/errors/http_5xx"] == 3
    assert m["teacher/breaker_open"] == 0.0


def test_step_deadline_across_concurrent_chunks():
    # The fast chunk must be answered within the deadline: 2 s leaves a loaded machine room (0.6 s did not).
    items = [make_item("fast0"), make_item("fast1"), make_item("slow0"), make_item("slow1")]
    with scripted(["slow_ids"]) as (_, url), client(url, max_concurrency=2, timeout_s=SLOW_S,
                                                     step_deadline_s=2.0) as c:
        out, elapsed = timed(c, items)
    assert [r.sample_id for r in out] == ["fast0", "fast1", "slow0", "slow1"]
    assert kinds(out) == [("ok", None)] * 2 + [("timeout", "deadline")] * 2
    assert 2.0 <= elapsed < SLOW_S / 2  # cut at the step deadline, the slow chunk not awaited


def test_deadline_cancels_queued_chunks():
    items = [make_item(f"slow{i}") for i in range(3)]
    with scripted(["slow_ids"]) as (server, url), client(url, max_concurrency=1, max_items_per_call=1,
                                                          timeout_s=SLOW_S, step_deadline_s=0.4) as c:
        out, elapsed = timed(c, items)
        assert server.hits == 1  # the two queued chunks were never sent
    assert kinds(out) == [("timeout", "deadline")] * 3
    assert 0.4 <= elapsed < SLOW_S / 2  # neither the slow call nor the queued ones awaited


def test_call_cut_by_step_deadline_is_labelled_deadline():
    # A worker whose call timeout was capped by the step deadline labels its own
    # timeout "deadline" (not "call_timeout"), whichever thread notices first.
    with scripted(["slow_ids"]) as (_, url), client(url, timeout_s=SLOW_S) as c:
        out = c._call_chunk([make_item("slow0")], deadline=time.monotonic() + 0.3)
    assert kinds(out) == [("timeout", "deadline")]


def test_chunks_are_sent_concurrently():
    # Each call is answered only once all four are in flight at the same moment (a barrier), so
    # concurrency is shown without timing it: calls sent one by one would break the barrier and
    # fail (599). This used to time four 0.4 s calls against a 1.4 s bound.
    items = [make_item(f"i{k}") for k in range(8)]
    with scripted(["barrier:4"]) as (server, url), client(url, max_concurrency=4, timeout_s=2 * SLOW_S,
                                                          step_deadline_s=2 * SLOW_S) as c:
        out = c.request_patches(items)
        assert server.hits == 4 and server.max_inflight == 4
    assert [r.sample_id for r in out] == [f"i{k}" for k in range(8)]
    assert all(r.status == "ok" for r in out), kinds(out)


def test_cache_serves_identical_content_under_new_id():
    with scripted(["ok"]) as (server, url), client(url, cache=True) as c:
        first = c.request_patches([make_item("a", response="same")])
        second = c.request_patches([make_item("b", response="same"), make_item("c", response="other")])
        assert server.hits == 2
        m = c.snapshot(reset=True)
        assert c.snapshot()["teacher/requests"] == 0  # reset cleared the counters
    assert first[0].status == second[0].status == "ok" and second[0].sample_id == "b"
    assert second[0].patch == first[0].patch and second[0].latency_s == 0.0
    assert m["teacher/cache_hit_rate"] == pytest.approx(1 / 3)
    with scripted(["ok"]) as (server, url), client(url, cache=False) as c:
        c.request_patches([make_item("a", response="same")])
        c.request_patches([make_item("b", response="same")])
        assert server.hits == 2 and c.snapshot()["teacher/cache_hit_rate"] == 0.0


def test_against_real_service(tmp_path):
    video = tmp_path / "v.mp4"
    video.write_bytes(b"not decoded by the annotation backend")
    no_evidence = make_item("c", path=str(video)).model_copy(update={"evidence": None})
    items = [make_item("a", path=str(video)), make_item("b", path=str(tmp_path / ".." / "x.mp4")), no_evidence]
    app = create_app(AnnotationBackend(), str(tmp_path), api_key="k3y")
    with serve_in_thread(app) as url:
        with client(url, api_key="k3y", cache=True) as c:
            assert c.ready()
            out = c.request_patches(items)
        with client(url, api_key="wrong") as bad:
            assert not bad.ready()
            assert kinds(bad.request_patches(items[:1])) == [("error", "http_4xx")]
    assert kinds(out) == [("ok", None), ("error", "path_outside_root"), ("skipped", None)]
    assert out[0].patch == evidence_to_patch(EVIDENCE, TIMESTAMPS, use_gt=True)


def test_from_args_and_validation():
    args = SimpleNamespace(teacher_url="http://127.0.0.1:1/", teacher_api_key=None, teacher_timeout_s=3.0,
                           teacher_step_deadline_s=9.0, teacher_max_concurrency=3, teacher_max_retries=1,
                           teacher_backoff_s=0.1, teacher_breaker_failures=4, teacher_breaker_cooldown_s=2.0,
                           teacher_cache=False, teacher_price_in_per_mtok=2.5, teacher_price_out_per_mtok=10.0)
    with TeacherClient.from_args(args) as c:
        assert c.prices == (2.5, 10.0)
        assert (c.url, c.timeout_s, c.step_deadline_s, c.max_concurrency) == ("http://127.0.0.1:1", 3.0, 9.0, 3)
        assert (c.max_retries, c.backoff_s, c.breaker.failures, c.breaker.cooldown_s) == (1, 0.1, 4, 2.0)
        assert c.request_patches([]) == []
        with pytest.raises(TypeError, match=r"items\[1\]"):
            c.request_patches([make_item("a"), {"sample_id": "b"}])
    with pytest.raises(ValueError, match="timeout_s"):
        TeacherClient("http://127.0.0.1:1", timeout_s=0)


def test_result_cache_is_lru_of_ok_results_only():
    from ffr.patch import EvidencePatch
    from ffr.teacher.cache import ResultCache
    from ffr.teacher.schema import PatchResult

    patch = EvidencePatch(error_types=["temporal"], key_frames={"start": 1, "end": 2}, guidance="Look again.")
    ok = lambda sid: PatchResult(sample_id=sid, status="ok", patch=patch, turns=1, latency_s=0.1)
    cache = ResultCache(2)
    cache.put("a", ok("a"))
    cache.put("b", ok("b"))
    assert cache.get("a").sample_id == "a"  # "a" is now the most recent
    cache.put("c", ok("c"))  # evicts "b", the least recently used
    assert cache.get("b") is None and cache.get("a") is not None and len(cache) == 2
    cache.put("d", PatchResult(sample_id="d", status="error", patch=None, turns=0, latency_s=0.0))
    assert cache.get("d") is None
    off = ResultCache(0)
    off.put("a", ok("a"))
    assert off.get("a") is None
