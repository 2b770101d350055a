"""FFR under real DeepSpeed ZeRO-3 with 2 CPU ranks: rank-asymmetric second rounds never hang.

One coordinated 20-step run covers the three cases by step (step % 3): only rank 0 has
patched prompts, neither has, both have. A negative run without the all-reduce and the
dummy generate must hang or fail: it proves the positive run would expose a missing
coordination. The teacher service (annotation backend) runs in this process.
"""
import json
from pathlib import Path

import pytest

pytest.importorskip("deepspeed")

from ffr.teacher.backends import AnnotationBackend  # noqa: E402
from ffr.teacher.service import create_app, serve_in_thread  # noqa: E402
from zero3_launch import assert_divergence_caught, launch_zero3  # noqa: E402

WORKER = str(Path(__file__).parent / "dist" / "ffr_zero3_worker.py")
STEPS = 20
PATTERN = [{0}, set(), {0, 1}]  # ranks with patched prompts at step % 3 (mirrors the worker)
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def teacher_url(synthetic_dir):
    with serve_in_thread(create_app(AnnotationBackend(), str(synthetic_dir))) as url:
        yield url


def test_rank_asymmetric_second_rounds_do_not_hang(tiny_qwen25_ckpt, synthetic_dir, teacher_url, tmp_path):
    res = launch_zero3(WORKER, [tiny_qwen25_ckpt, str(synthetic_dir / "train.jsonl"), str(tmp_path), teacher_url,
                                "coordinated", str(STEPS)], timeout_s=300)
    assert not res.timed_out and res.returncode == 0, res.output[-4000:]
    print(f"coordinated 2-rank ZeRO-3 FFR run, {STEPS} steps: {res.elapsed_s:.1f} s wall")
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    for r, rank in enumerate(ranks):
        assert rank["steps"] == STEPS
        second = {step: kind for step, kind in rank["calls"] if kind != "first"}
        expected = {s: ("generate" if r in PATTERN[s % 3] else "dummy") for s in range(STEPS) if PATTERN[s % 3]}
        assert second == expected, f"rank {r}"
        assert [s for s, kind in rank["calls"] if kind == "first"] == list(range(STEPS))
        assert all(abs(loss) < 1e3 for loss in rank["losses"]) and len(rank["losses"]) == STEPS
    # Same collective sequence on both ranks: one first pass per step, one second round where any rank needs it.
    signature = [[(s, kind != "first") for s, kind in rank["calls"]] for rank in ranks]
    assert signature[0] == signature[1]
    assert ranks[0]["ffr_calls"] == {"generate": 13} and ranks[1]["ffr_calls"] == {"generate": 6, "dummy": 7}
    # Rank 0's logged metrics are merged over both ranks: per step the share of ranks that generated.
    logged = {h["step"]: h for h in ranks[0]["log"] if "ffr/second_round_generate" in h}
    for step in range(STEPS):
        row, pattern = logged[step + 1], PATTERN[step % 3]
        assert row["ffr/second_round_generate"] == pytest.approx(len(pattern) / 2)
        assert row["ffr/second_round_dummy"] == pytest.approx(0.5 if len(pattern) == 1 else 0.0)
        assert row["ffr/intervention_ratio"] == pytest.approx(1.0)  # a random student fails every rollout
    for r in (0, 1):
        lines = (tmp_path / "patch_log" / f"rank{r}.jsonl").read_text().splitlines()
        assert len(lines) == STEPS * 4  # G = 4 failed rollouts per step, one line per teacher request
        statuses = {(row["step"], row["status"]) for row in map(json.loads, lines)}
        assert all(status == ("ok" if r in PATTERN[step % 3] else "skipped") for step, status in statuses)


def test_uncoordinated_second_round_is_caught(tiny_qwen25_ckpt, synthetic_dir, teacher_url, tmp_path):
    """Without the all-reduce and dummy generate, rank 0's lone generate at step 0 must hang or fail."""
    res = launch_zero3(WORKER, [tiny_qwen25_ckpt, str(synthetic_dir / "train.jsonl"), str(tmp_path), teacher_url,
                                "uncoordinated", "3"], timeout_s=300, settle_after=tmp_path / "diverging")
    assert_divergence_caught(res, tmp_path)
