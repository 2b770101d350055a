"""One rank of a 2-process DeepSpeed ZeRO-3 LUFFY run on CPU (launched by tests/test_luffy_trainer.py).

usage: luffy_zero3_worker.py CKPT DATA_JSONL TRACES_JSONL OUT_DIR
The data order is forced so that at step 1 rank 0's prompt has a teacher trace and rank 1's has
none (3 rows against 4: the ranks' batches differ in size), and at step 2 both have one. Traces
add rows but no generate call, so the ranks must stay in lock-step. The entropy bonus is on, so
the output-head hook runs under ZeRO-3 too. Each rank writes OUT_DIR/rank{r}.json: per step the
rows and teacher rows it trained on, its losses and the log history.
"""
import json
import os
import sys

from ds_cpu import DS_CONFIG, finish  # first import: one thread, no shm-op build
from torch.utils.data import Sampler  # noqa: E402

from r1v.data import load_records  # noqa: E402
from r1v.trainer.batch import RowSource  # noqa: E402
from r1v.trainer.luffy import LuffyConfig, LuffyTrainer  # noqa: E402
from r1v.vision import VisionConfig  # noqa: E402

# Record indices (among the video records) per step and rank; the test's trace file leaves out index 1.
ORDER = [(0, 1), (2, 3)]


def digit_reward(completions, **_):
    """Dense toy reward (share of digit characters) so advantages and updates are non-zero."""
    return [sum(ch.isdigit() for ch in c) / max(len(c), 1) for c in completions]


class FixedOrder(Sampler):
    """Global order: step s gives rank r record ORDER[s][r] (batches of 1)."""

    def __iter__(self):
        return iter([i for pair in ORDER for i in pair])

    def __len__(self):
        return 2 * len(ORDER)


class RecordingLuffy(LuffyTrainer):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.rows: list = []  # per generated batch: [rows, teacher rows]

    def _get_train_sampler(self, train_dataset=None):
        return FixedOrder()

    def generate_completions(self, prompts):
        rollouts = super().generate_completions(prompts)
        self.rows.append([len(rollouts.completions_text), int((rollouts.source == int(RowSource.TEACHER)).sum())])
        return rollouts


def main():
    ckpt, data, traces, out_dir = sys.argv[1:5]
    args = LuffyConfig(
        output_dir=out_dir, deepspeed=DS_CONFIG, num_generations=4, max_completion_length=16,
        per_device_train_batch_size=1, max_steps=len(ORDER), logging_steps=1, save_strategy="no", report_to="none",
        learning_rate=1e-3, use_cpu=True, ddp_timeout=60, seed=0, dataloader_num_workers=0, log_completions=False,
        luffy_traces=traces, luffy_entropy_coeff=0.001,
    )
    vision = VisionConfig(max_frames=4, video_max_pixels=3136, video_min_pixels=3136, image_max_pixels=12544)
    records = [r for r in load_records(data) if r["data_type"] == "video"]
    trainer = RecordingLuffy(ckpt, [digit_reward, "format"], args, records, vision_config=vision,
                             torch_dtype="float32")
    trainer.train()
    rank = trainer.accelerator.process_index
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
        json.dump({"rank": rank, "rows": trainer.rows, "losses": losses, "log": trainer.state.log_history}, f)


if __name__ == "__main__":
    main()
    finish()
