"""Real DeepSpeed ZeRO-3 GRPO steps with 2 CPU processes (gloo), and proof that a hang is visible."""
import json
from pathlib import Path

import pytest

from zero3_launch import assert_divergence_caught, launch_zero3

WORKER = str(Path(__file__).parent / "dist" / "zero3_worker.py")
pytestmark = pytest.mark.slow


def test_zero3_two_ranks_train(tiny_qwen25_ckpt, synthetic_dir, tmp_path):
    res = launch_zero3(WORKER, [tiny_qwen25_ckpt, str(synthetic_dir / "train.jsonl"), str(tmp_path), "train", "3"],
                       timeout_s=400)
    assert not res.timed_out and res.returncode == 0, res.output[-4000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    for r in ranks:
        assert r["steps"] == 3 and len(r["losses"]) == 3
        assert all(isinstance(x, float) for x in r["losses"])
        assert r["after"] != r["before"]  # the sharded weights were updated
    # Both ranks gathered the same full model after training.
    assert ranks[0]["after"] == pytest.approx(ranks[1]["after"], rel=1e-9)
    assert ranks[0]["losses"] == pytest.approx(ranks[1]["losses"])  # losses are reduced across ranks
    assert any("timing_s/generate" in h for h in ranks[0]["log"])


def test_zero3_uncoordinated_generate_is_caught(tiny_qwen25_ckpt, synthetic_dir, tmp_path):
    """One rank makes an extra generate: the job must not finish (deadlock killed, or an error)."""
    res = launch_zero3(WORKER, [tiny_qwen25_ckpt, str(synthetic_dir / "train.jsonl"), str(tmp_path),
                                "extra_generate", "3"], timeout_s=300, settle_after=tmp_path / "diverging")
    # It used to be killed 90 s after launch, whether or not it had reached the extra generate:
    # a slow start counted as a caught hang. Now the marker must exist and the job had 30 s after it.
    assert_divergence_caught(res, tmp_path)
