"""T-GRPO under real DeepSpeed ZeRO-3 with 2 CPU ranks over image and video batches: the shuffled round never hangs.

One coordinated 4-step run covers, by step, (video, video), (image, image) (what the shipped
single-modality sampler yields) and the cross-rank mixes (video, image), (image, video), where
the image rank must make the dummy generate. A negative run without the all-reduce and the dummy
must hang or fail: it proves the positive run would expose a missing coordination.
"""
import json
from pathlib import Path

import pytest

pytest.importorskip("deepspeed")

from zero3_launch import assert_divergence_caught, launch_zero3  # noqa: E402

WORKER = str(Path(__file__).parent / "dist" / "tgrpo_zero3_worker.py")
PATTERN = [("video", "video"), ("image", "image"), ("video", "image"), ("image", "video")]  # mirrors the worker
pytestmark = pytest.mark.slow


def test_image_and_video_batches_keep_ranks_in_step(tiny_qwen25_ckpt, synthetic_dir, tmp_path):
    res = launch_zero3(WORKER, [tiny_qwen25_ckpt, str(synthetic_dir / "train.jsonl"), str(tmp_path), "coordinated"],
                       timeout_s=240)
    assert not res.timed_out and res.returncode == 0, res.output[-4000:]
    print(f"coordinated 2-rank ZeRO-3 T-GRPO run, {len(PATTERN)} steps: {res.elapsed_s:.1f} s wall")
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    for r, rank in enumerate(ranks):
        kinds = [kind for _, kind, _ in rank["steps"]]
        assert kinds == [pair[r] for pair in PATTERN], f"rank {r} saw {kinds}"
        expected = [("shuffled" if pair[r] == "video" else "dummy") if "video" in pair else None for pair in PATTERN]
        assert [call for _, _, call in rank["steps"]] == expected, f"rank {r}"
        assert len(rank["losses"]) == len(PATTERN) and all(abs(x) < 1e3 for x in rank["losses"])
    assert ranks[0]["calls"] == {"shuffled": 2, "dummy": 1} and ranks[1]["calls"] == {"shuffled": 2, "dummy": 1}
    logged = [h for h in ranks[0]["log"] if "loss" in h]
    assert all("tgrpo/len_bonus" in h for h in logged)
    assert ["tgrpo/temporal_applied" in h for h in logged] == [True, False, True, True]


def test_uncoordinated_shuffled_round_is_caught(tiny_qwen25_ckpt, synthetic_dir, tmp_path):
    """Without the all-reduce and the dummy generate, the video rank's lone generate at step 2 must hang or fail."""
    res = launch_zero3(WORKER, [tiny_qwen25_ckpt, str(synthetic_dir / "train.jsonl"), str(tmp_path),
                                "uncoordinated"], timeout_s=300, settle_after=tmp_path / "diverging")
    assert_divergence_caught(res, tmp_path)
