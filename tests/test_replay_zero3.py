"""The replay trainer under real DeepSpeed ZeRO-3 with 2 CPU ranks: the buffer, built from the
rollouts of both ranks gathered and pushed in rank order, is identical on every rank; replayed
rows (extra rows in the loss forward) keep the ranks in step; the checkpoint holds the buffer."""
import json
from pathlib import Path

import pytest
import torch

pytest.importorskip("deepspeed")

from zero3_launch import launch_zero3  # noqa: E402

from r1v.trainer.replay import BUFFER_FILE  # noqa: E402
from r1v.trainer.replay_buffer import ReplayBuffer  # noqa: E402

WORKER = str(Path(__file__).parent / "dist" / "replay_zero3_worker.py")
pytestmark = pytest.mark.slow


def test_buffer_is_identical_on_both_ranks_and_checkpointed(tiny_qwen25_ckpt, synthetic_dir, tmp_path):
    res = launch_zero3(WORKER, [tiny_qwen25_ckpt, str(synthetic_dir / "train.jsonl"), str(tmp_path)], timeout_s=300)
    assert not res.timed_out and res.returncode == 0, res.output[-4000:]
    print(f"2-rank ZeRO-3 replay run, 2 steps: {res.elapsed_s:.1f} s wall")
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    # Two prompts, each seen once per step (one per rank): 8 pushed, FIFOs of 4 kept.
    for r in ranks:
        assert r["sizes"] == [4, 4] and r["pushed"] == [8, 8]
        assert r["replayed"] == [0, 2]  # step 1: empty buffer; step 2: k = 2 rows of the rank's prompt
        assert len(r["losses"]) == 2
    assert ranks[0]["digest"] == ranks[1]["digest"]
    saved = ReplayBuffer(max_size=4, min_to_replay=4, strategy="max_variance_k", num_replays=2)
    saved.load_state_dict(torch.load(tmp_path / "checkpoint-2" / BUFFER_FILE, weights_only=True))
    assert saved.digest() == ranks[0]["digest"]
