"""LUFFY under real DeepSpeed ZeRO-3 with 2 CPU ranks: ranks whose prompts have and lack a teacher
trace (batches of different sizes) train in lock-step, entropy bonus on."""
import json
from pathlib import Path

import pytest

pytest.importorskip("deepspeed")

from test_luffy_trainer import write_traces  # noqa: E402
from zero3_launch import launch_zero3  # noqa: E402

from r1v.data import load_records  # noqa: E402

WORKER = str(Path(__file__).parent / "dist" / "luffy_zero3_worker.py")
pytestmark = pytest.mark.slow


def test_ranks_with_and_without_traces_keep_in_step(tiny_qwen25_ckpt, synthetic_dir, tmp_path):
    videos = [r for r in load_records(synthetic_dir / "train.jsonl") if r["data_type"] == "video"]
    traces = write_traces(tmp_path / "traces.jsonl", videos, skip={videos[1]["problem_id"]})
    res = launch_zero3(WORKER, [tiny_qwen25_ckpt, str(synthetic_dir / "train.jsonl"), traces, str(tmp_path)],
                       timeout_s=240)
    assert not res.timed_out and res.returncode == 0, res.output[-4000:]
    print(f"2-rank ZeRO-3 LUFFY run, 2 steps: {res.elapsed_s:.1f} s wall")
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    # Step 1: rank 0 has 3 sampled rows + 1 trace, rank 1 (no trace) 3 rows; step 2: both 4.
    assert ranks[0]["rows"] == [[4, 1], [4, 1]] and ranks[1]["rows"] == [[3, 0], [4, 1]]
    assert ranks[0]["losses"] == pytest.approx(ranks[1]["losses"]) and len(ranks[0]["losses"]) == 2
    logged = [h for h in ranks[0]["log"] if "loss" in h]
    # Merged over the two ranks: one missing trace of two prompts at step 1, none at step 2.
    assert [h["luffy/missing_traces"] for h in logged] == pytest.approx([0.5, 0.0])
    assert all("luffy/entropy" in h for h in logged)
