"""Teacher service: endpoints over a real uvicorn socket on 127.0.0.1 (auth, size
limits, path confinement, per-item statuses, leak gate, stats) and the CLI."""
from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from ffr.patch import EvidencePatch, evidence_to_patch
from ffr.teacher.backend_args import BACKENDS
from ffr.teacher.backends import AnnotationBackend, Proposal, TeacherBackend
from ffr.teacher.schema import PatchRequestItem, PatchResponse
from ffr.teacher.service import confine_path, create_app, serve_in_thread
from serving import wait_for_port_file, wait_until_up

REPO = Path(__file__).resolve().parents[1]
EVIDENCE = {"time_span": [1.0, 2.0], "region": [0.1, 0.1, 0.4, 0.5], "error_type": "spatial",
            "markers": ["when the cube stops"], "guidance": "Look at the region where the objects meet."}
TIMESTAMPS = [0.0, 0.5, 1.0, 1.5, 2.0, 2.5]
LEAKY = EvidencePatch(error_types=["spatial"], guidance="The answer is B, the blue sphere.")
# Leaks in disguise (lower-case letter, Cyrillic capital ve for B, spelled word): the gates fold text first.
DISGUISED = [EvidencePatch(error_types=["spatial"], guidance="go with b once the cube stops."),
             EvidencePatch(error_types=["spatial"], guidance="Option В fits the motion best."),
             EvidencePatch(error_types=["spatial"], guidance="Follow the b-l-u-e sphere after the cube stops.")]
# Per-item timeout of the shared service: every normal item must be answered within it, so it
# leaves a loaded 2-core machine room (0.3 s did not); a "slow" item never finishes by itself.
ITEM_TIMEOUT_S = 2.0
SLOW_RELEASE = threading.Event()  # a "slow" sync proposal waits on it; set at module teardown


class ScriptedBackend(TeacherBackend):
    """Behaviour chosen by the sample_id prefix: boom / slow / leak / disguise-<k> / none / turns / anything else."""

    name = "scripted"

    def propose(self, item: PatchRequestItem):
        kind = item.sample_id.split("-")[0]
        if kind == "boom":
            raise RuntimeError("teacher model crashed")
        if kind == "slow":  # blocks its worker thread until released (threads cannot be cancelled)
            SLOW_RELEASE.wait(timeout=120)
        if kind == "leak":
            return LEAKY
        if kind == "disguise":
            return DISGUISED[int(item.sample_id.split("-")[1])]
        if kind == "none":
            return None
        if kind == "turns":
            return Proposal(patch=evidence_to_patch(EVIDENCE, item.timestamps), turns=3, detail="tool loop")
        assert os.path.isabs(item.video_path)  # the backend sees the resolved path
        return evidence_to_patch(EVIDENCE, item.timestamps)

    def ready(self) -> bool:
        return True


class AsyncSlowBackend(ScriptedBackend):
    name = "async-slow"

    async def propose(self, item: PatchRequestItem):
        await asyncio.sleep(120.0 if item.sample_id.startswith("slow") else 0.0)  # cancelled at the deadline
        return evidence_to_patch(EVIDENCE, item.timestamps)

    def ready(self) -> bool:
        return False


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> dict[str, Path]:
    """root/{a.mp4, sub/, link_out.mp4 -> ../outside/secret.mp4, link_in.mp4 -> a.mp4}; outside/secret.mp4."""
    base = tmp_path_factory.mktemp("teacher")
    root, outside = base / "root", base / "outside"
    (root / "sub").mkdir(parents=True)
    outside.mkdir()
    (root / "a.mp4").write_bytes(b"video")
    (outside / "secret.mp4").write_bytes(b"secret")
    (root / "link_out.mp4").symlink_to(outside / "secret.mp4")
    (root / "link_in.mp4").symlink_to(root / "a.mp4")
    return {"root": root, "outside": outside}


@pytest.fixture(scope="module")
def url(tree):
    app = create_app(ScriptedBackend(), str(tree["root"]), max_items=8, max_body_bytes=64_000,
                     item_timeout_s=ITEM_TIMEOUT_S)
    try:
        with serve_in_thread(app) as base:
            yield base
    finally:
        SLOW_RELEASE.set()


def item(sid: str, path: str = "a.mp4", gold: str | None = "B", evidence: dict | None = EVIDENCE,
         response: str | None = None) -> dict:
    """A request item; its response names `sid`, so items differ in content (cache key) unless given one."""
    return PatchRequestItem(sample_id=sid, video_path=path, timestamps=TIMESTAMPS, question="Which object moves?",
                            options=["A. the red cube", "B. the blue sphere"], problem_type="multiple choice",
                            student_response=response or f"<answer>A</answer> ({sid})", gold_answer=gold,
                            evidence=evidence).model_dump(mode="json")


def post(base: str, items: list, **kw) -> requests.Response:
    return requests.post(f"{base}/patch", json={"items": items}, timeout=10, **kw)


def statuses(resp: requests.Response) -> list[tuple[str, str | None]]:
    assert resp.status_code == 200, resp.text
    return [(r.status, r.error_type) for r in PatchResponse.model_validate(resp.json()).results]


def test_health_and_ready(url):
    assert requests.get(f"{url}/health", timeout=5).json() == {"status": "alive"}
    assert requests.get(f"{url}/ready", timeout=5).json() == {"ready": True, "backend": "scripted"}


def test_one_bad_item_never_fails_the_batch(url, tree):
    bad_schema = item("bad-schema")
    del bad_schema["question"]
    batch = [item("good-1"), bad_schema, {"no": "id"}, item("boom-1"), item("slow-1"), item("none-1"),
             item("turns-1"), item("outside-1", path=str(tree["outside"] / "secret.mp4"))]
    t0 = time.monotonic()
    resp = post(url, batch)
    elapsed = time.monotonic() - t0
    assert statuses(resp) == [("ok", None), ("error", "invalid_item"), ("error", "invalid_item"),
                              ("error", "backend"), ("timeout", "item_timeout"), ("skipped", None), ("ok", None),
                              ("error", "path_outside_root")]
    results = PatchResponse.model_validate(resp.json()).results
    assert [r.sample_id for r in results[:3]] == ["good-1", "bad-schema", "item[2]"]
    assert "question" in results[1].detail and "RuntimeError: teacher model crashed" in results[3].detail
    assert results[0].patch == evidence_to_patch(EVIDENCE, TIMESTAMPS)
    assert results[6].turns == 3 and results[6].detail == "tool loop"
    assert ITEM_TIMEOUT_S <= elapsed < ITEM_TIMEOUT_S + 10.0  # the slow item is cut at item_timeout_s, not awaited


@pytest.mark.parametrize("path,kind", [
    ("a.mp4", None), ("sub/../a.mp4", None), ("link_in.mp4", None),
    ("../outside/secret.mp4", "path_outside_root"), ("sub/../../outside/secret.mp4", "path_outside_root"),
    ("link_out.mp4", "path_outside_root"), ("missing.mp4", "path_not_found"), ("sub", "path_not_found"),
])
def test_path_confinement(url, tree, path, kind):
    expected = ("ok", None) if kind is None else ("error", kind)
    assert statuses(post(url, [item("p", path=path)])) == [expected]
    absolute = str(tree["root"]) + "/" + path  # the same path given absolute, unresolved
    assert statuses(post(url, [item("p", path=absolute)])) == [expected]


def test_confine_path_returns_resolved_file(tree):
    root = os.path.realpath(tree["root"])
    assert confine_path("link_in.mp4", root) == os.path.join(root, "a.mp4")
    with pytest.raises(ValueError, match="outside the allowed root"):
        confine_path("link_out.mp4", root)


def test_leak_gate_uses_gold_answer_only_when_given(url):
    resp = post(url, [item("leak-1"), item("leak-2", gold=None), item("leak-3", gold="<answer>B</answer>")])
    assert statuses(resp) == [("leak", "leak"), ("ok", None), ("error", "invalid_item")]
    leak = PatchResponse.model_validate(resp.json()).results[0]
    assert leak.patch is None and leak.detail


def test_leak_gate_sees_through_disguises(url):
    resp = post(url, [item(f"disguise-{k}") for k in range(len(DISGUISED))])
    assert statuses(resp) == [("leak", "leak")] * len(DISGUISED)
    details = [r.detail for r in PatchResponse.model_validate(resp.json()).results]
    assert all("gold option letter B" in d for d in details[:2]) and "gold answer text" in details[2]


def test_size_limits_and_bad_envelope(url):
    assert post(url, [item(f"i{k}") for k in range(9)]).status_code == 413  # max_items = 8
    big = item("big")
    big["student_response"] = "x" * 70_000  # body above max_body_bytes = 64,000
    assert post(url, [big]).status_code == 413
    chunks = (b'{"items": [' + b" " * 30_000 for _ in range(3))  # chunked: no content-length
    resp = requests.post(f"{url}/patch", data=chunks, headers={"Content-Type": "application/json"}, timeout=10)
    assert resp.status_code == 413
    assert requests.post(f"{url}/patch", data=b"{not json", timeout=10).status_code == 400
    assert requests.post(f"{url}/patch", json={"items": {}}, timeout=10).status_code == 400
    assert requests.post(f"{url}/patch", json={"items": [], "extra": 1}, timeout=10).status_code == 400
    assert requests.post(f"{url}/patch", json={"items": [], "deadline_s": -1}, timeout=10).status_code == 400


def test_stats_count_statuses_cache_and_leaks(tree):
    app = create_app(ScriptedBackend(), str(tree["root"]), item_timeout_s=5.0)
    with serve_in_thread(app) as base:
        post(base, [item("good-1", response="same"), item("good-2"), item("leak-1"), item("none-1"),
                    item("p", path="nope.mp4")])
        post(base, [item("good-3", response="same")])  # same content as good-1: served from the cache
        post(base, [item(str(k)) for k in range(300)])  # above the default max_items: rejected
        stats = requests.get(f"{base}/stats", timeout=5).json()
    assert stats["requests"] == 2 and stats["items"] == 6 and stats["rejected"] == {"413": 1}
    assert stats["status"] == {"ok": 3, "leak": 1, "timeout": 0, "error": 1, "skipped": 1}
    assert stats["errors"] == {"path_not_found": 1}
    assert stats["cache_hits"] == 1 and stats["leak_rate"] == pytest.approx(1 / 4)
    assert stats["latency_s_p95"] >= stats["latency_s_p50"] > 0


def test_request_deadline_and_async_backend(tree):
    app = create_app(AsyncSlowBackend(), str(tree["root"]), item_timeout_s=30.0, cache_size=0)
    with serve_in_thread(app) as base:
        assert requests.get(f"{base}/ready", timeout=5).status_code == 503
        t0 = time.monotonic()
        resp = requests.post(f"{base}/patch", json={"items": [item("fast"), item("slow")], "deadline_s": 2.0},
                             timeout=60)
        assert 2.0 <= time.monotonic() - t0 < 12.0  # the slow item is cut at the request deadline, not awaited
    assert statuses(resp) == [("ok", None), ("timeout", "item_timeout")]


def test_api_key(tree):
    app = create_app(ScriptedBackend(), str(tree["root"]), api_key="s3cret")
    with serve_in_thread(app) as base:
        assert requests.get(f"{base}/health", timeout=5).status_code == 200  # liveness stays open
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}):
            assert requests.get(f"{base}/stats", headers=headers, timeout=5).status_code == 401
            assert post(base, [item("good-1")], headers=headers).status_code == 401
        ok = {"Authorization": "Bearer s3cret"}
        assert statuses(post(base, [item("good-1")], headers=ok)) == [("ok", None)]
        assert requests.get(f"{base}/stats", headers=ok, timeout=5).json()["rejected"] == {"401": 6}


def test_annotation_backend_modes():
    backend = BACKENDS["annotation"]()
    assert isinstance(backend, AnnotationBackend) and backend.ready()
    with_gt = PatchRequestItem.model_validate(item("a", gold="B"))
    no_gt = with_gt.model_copy(update={"gold_answer": None})
    assert backend.propose(with_gt) == evidence_to_patch(EVIDENCE, TIMESTAMPS, use_gt=True)
    assert backend.propose(no_gt) == evidence_to_patch(EVIDENCE, TIMESTAMPS, use_gt=False)
    assert backend.propose(no_gt) != backend.propose(with_gt)
    assert backend.propose(with_gt.model_copy(update={"evidence": None})) is None
    with pytest.raises(ValueError, match="error_type"):
        backend.propose(with_gt.model_copy(update={"evidence": {**EVIDENCE, "error_type": "bogus"}}))


def test_serve_script_starts_cli(tree, tmp_path):
    key_file = tmp_path / "key"
    key_file.write_text("k3y\n")
    port_file = tmp_path / "port"
    env = {**os.environ, "PYTHON": sys.executable, "TEACHER_PORT": "0",  # the service picks a free port itself
           "TEACHER_ALLOWED_ROOT": str(tree["root"]), "TEACHER_API_KEY_FILE": str(key_file)}
    proc = subprocess.Popen(["bash", str(REPO / "local_scripts" / "serve_teacher.sh"), "--log-level", "warning",
                             "--port-file", str(port_file)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        base = f"http://127.0.0.1:{wait_for_port_file(proc, port_file, what='teacher service')}"
        wait_until_up(proc, f"{base}/health", what="teacher service")
        assert requests.get(f"{base}/ready", timeout=5).status_code == 401
        ready = requests.get(f"{base}/ready", headers={"Authorization": "Bearer k3y"}, timeout=5)
        assert ready.json() == {"ready": True, "backend": "annotation"}
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=10)
    # uvicorn shuts down gracefully, then re-raises the SIGTERM it caught
    assert proc.returncode == -signal.SIGTERM, err
    assert "Traceback" not in err
