"""The `openai` teacher backend against a REAL OpenAI-compatible server: `transformers serve`.

transformers' own server runs the tiny random-weight Qwen2.5-VL checkpoint on the CPU, accepts
image parts as data URLs and the `tools` field, and reports `usage`. Whatever the tiny model
says must become a per-item status through the whole loop (frames in, tool turns, re-ask),
never a crash or a hang, and its tokens must be counted.
"""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from serving import ADDRESS_IN_USE, free_port, wait_until_up

from ffr.teacher.openai_backend import OpenAITeacher, OpenAITeacherConfig
from ffr.teacher.schema import STATUSES, PatchRequestItem, PatchResponse
from ffr.teacher.service import create_app, serve_in_thread
from r1v.data import load_records
from r1v.vision import VisionConfig, load_video

VISION = VisionConfig(max_frames=4, video_max_pixels=3136, video_min_pixels=3136, image_max_pixels=12544,
                      image_min_pixels=3136)
START_TIMEOUT_S = 180


@pytest.fixture(scope="module")
def served_model(tiny_qwen25_ckpt, tmp_path_factory):
    """`transformers serve CKPT` on a free loopback port; yields (base_url, model id)."""
    cli = Path(sys.executable).with_name("transformers")
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    # `transformers serve` cannot report a port it picked, so it gets one that was free a moment ago;
    # only if something took that port before it bound it (EADDRINUSE) is it started again elsewhere.
    for attempt in range(3):
        port = free_port()
        with open(log, "w") as out:
            proc = subprocess.Popen([str(cli), "serve", tiny_qwen25_ckpt, "--host", "127.0.0.1", "--port", str(port)],
                                    stdout=out, stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{port}/v1"
        try:
            wait_until_up(proc, f"{base}/models", START_TIMEOUT_S, "transformers serve")
            break
        except RuntimeError as exc:
            text = log.read_text()
            if proc.poll() is not None and ADDRESS_IN_USE in text.lower() and attempt < 2:
                continue
            proc.kill()
            proc.wait()
            raise RuntimeError(f"{exc}: {text[-2000:]}") from exc
    try:
        yield base, tiny_qwen25_ckpt
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def items_from(synthetic_dir: Path) -> list[dict]:
    """Four failed rollouts: video with and without gold, another problem type, and an image."""
    records = load_records(synthetic_dir / "train.jsonl")
    video = [r for r in records if r["data_type"] == "video"]
    image = [r for r in records if r["data_type"] == "image"]
    chosen = [(video[0], True), (video[1], False), (video[2], True), (image[0], True)]
    out = []
    for k, (rec, with_gt) in enumerate(chosen):
        stamps = load_video(rec["path"], VISION).timestamps if rec["data_type"] == "video" else []
        gold = rec["solution"].replace("<answer>", "").replace("</answer>", "").strip()
        out.append(PatchRequestItem(
            sample_id=f"real-{k}", video_path=rec["path"], timestamps=stamps, question=rec["problem"],
            options=rec.get("options") or [], problem_type=rec["problem_type"],
            student_response="<think>guess</think><answer>Z</answer>", gold_answer=gold if with_gt else None,
        ).model_dump(mode="json"))
    return out


@pytest.mark.slow
def test_tiny_model_through_the_whole_loop(served_model, synthetic_dir):
    base_url, model = served_model
    teacher = OpenAITeacher(OpenAITeacherConfig(base_url=base_url, model=model, max_tokens=24, max_turns=3,
                                                temperature=1.0, vision=VISION, sdk_max_retries=0))
    assert teacher.ready()
    app = create_app(teacher, str(synthetic_dir), item_timeout_s=90, cache_size=0)
    items = items_from(synthetic_dir)
    with serve_in_thread(app) as url:
        started = time.monotonic()
        resp = requests.post(f"{url}/patch", json={"items": items}, timeout=120)
        elapsed = time.monotonic() - started
        stats = requests.get(f"{url}/stats", timeout=5).json()
    assert resp.status_code == 200, resp.text
    results = PatchResponse.model_validate(resp.json()).results
    assert [r.sample_id for r in results] == [it["sample_id"] for it in items]
    for r in results:
        print(f"{r.sample_id}: status={r.status} error_type={r.error_type} turns={r.turns} "
              f"calls={r.model_calls} images={r.images} tokens={r.tokens_in}/{r.tokens_out} "
              f"latency={r.latency_s:.2f}s")
    print(f"batch of {len(items)} items in {elapsed:.1f}s; /stats cost {stats['cost']}")
    assert all(r.status in STATUSES for r in results)
    assert all(r.status != "timeout" for r in results)  # the loop ends by itself, well within the budget
    reached = [r for r in results if r.model_calls > 0]
    assert len(reached) == len(items)
    assert all(r.tokens_in > 0 and r.tokens_out > 0 and r.images >= 1 for r in reached)
    assert stats["cost"]["tokens_in"] == sum(r.tokens_in for r in results)
