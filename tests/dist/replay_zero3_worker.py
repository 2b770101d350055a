"""One rank of a 2-process DeepSpeed ZeRO-3 replay (RePO) run on CPU (launched by tests/test_replay_zero3.py).

usage: replay_zero3_worker.py CKPT DATA_JSONL OUT_DIR
Two video records, one per rank per step: step 1 fills both prompts' FIFOs from both ranks'
gathered rollouts, step 2 replays on both ranks, and step 2 saves a checkpoint with the buffer.
Each rank writes OUT_DIR/rank{r}.json: the buffer's digest and sizes, the replayed rows per step,
the losses.
"""
import json
import os
import sys

from ds_cpu import DS_CONFIG, finish  # first import: one thread, no shm-op build

from r1v.data import load_records  # noqa: E402
from r1v.trainer.batch import RowSource  # noqa: E402
from r1v.trainer.replay import ReplayConfig, ReplayTrainer  # noqa: E402
from r1v.vision import VisionConfig  # noqa: E402


def digit_reward(completions, **_):
    """Dense toy reward (share of digit characters) so advantages and updates are non-zero."""
    return [sum(ch.isdigit() for ch in c) / max(len(c), 1) for c in completions]


class CountingReplay(ReplayTrainer):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.replayed: list[int] = []  # replayed rows of this rank, per generated batch

    def generate_completions(self, prompts):
        rollouts = super().generate_completions(prompts)
        self.replayed.append(int((rollouts.source == int(RowSource.REPLAY)).sum()))
        return rollouts


def main():
    ckpt, data, out_dir = sys.argv[1:4]
    args = ReplayConfig(
        output_dir=out_dir, deepspeed=DS_CONFIG, num_generations=4, max_completion_length=8,
        per_device_train_batch_size=1, max_steps=2, logging_steps=1, save_steps=2, report_to="none",
        learning_rate=1e-3, beta=0.04, use_cpu=True, ddp_timeout=60, seed=0, dataloader_num_workers=0,
        log_completions=False, replay_strategy="max_variance_k", replay_k=2, replay_min_cache=4, replay_max_cache=4,
    )
    vision = VisionConfig(max_frames=4, video_max_pixels=3136, video_min_pixels=3136, image_max_pixels=12544)
    records = [r for r in load_records(data) if r["data_type"] == "video"][:2]
    trainer = CountingReplay(ckpt, [digit_reward, "format"], args, records, vision_config=vision,
                             torch_dtype="float32")
    trainer.train()
    rank = trainer.accelerator.process_index
    buf = trainer.replay_buffer
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
        json.dump({"rank": rank, "digest": buf.digest(), "sizes": sorted(len(q) for q in buf.fifos.values()),
                   "pushed": sorted(buf.pushed.values()), "replayed": trainer.replayed,
                   "losses": [h["loss"] for h in trainer.state.log_history if "loss" in h]}, f)


if __name__ == "__main__":
    main()
    finish()
