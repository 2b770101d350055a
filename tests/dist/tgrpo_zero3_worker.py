"""One rank of a 2-process DeepSpeed ZeRO-3 T-GRPO run on CPU (launched by tests/test_tgrpo_zero3.py).

usage: tgrpo_zero3_worker.py CKPT DATA_JSONL OUT_DIR MODE
The data order is forced so that, per step, the ranks see (video, video), (image, image),
(video, image), (image, video): the first two are what the shipped single-modality sampler
produces, the last two are cross-rank mixes that only the all-reduce + dummy generate survive.
MODE 'coordinated': TGRPOTrainer as shipped. MODE 'uncoordinated': each rank decides the
shuffled round alone (no all-reduce, no dummy), so at step 2 only one rank generates: the run
must hang or fail, which proves the coordinated run would expose a missing coordination.
Each rank writes OUT_DIR/rank{r}.json (per step: modality and shuffled-round calls; losses; log);
in 'uncoordinated' mode the video rank of step 2 first writes OUT_DIR/diverging.
"""
import json
import os
import sys

from ds_cpu import DS_CONFIG, finish  # first import: one thread, no shm-op build
from torch.utils.data import Sampler  # noqa: E402

from r1v.data import load_records  # noqa: E402
from r1v.trainer.tgrpo import TGRPOConfig, TGRPOTrainer  # noqa: E402
from r1v.vision import VideoClip, VisionConfig  # noqa: E402

PATTERN = [("video", "video"), ("image", "image"), ("video", "image"), ("image", "video")]


def digit_reward(completions, **_):
    """Dense toy reward (share of digit characters) so advantages and updates are non-zero."""
    return [sum(ch.isdigit() for ch in c) / max(len(c), 1) for c in completions]


class FixedOrder(Sampler):
    """Global order: step s gives rank r the next record of modality PATTERN[s][r] (batches of 1)."""

    def __init__(self, records):
        pools = {kind: [i for i, r in enumerate(records) if r["data_type"] == kind] for kind in ("video", "image")}
        self.order = [pools[kind][s % len(pools[kind])] for s, pair in enumerate(PATTERN) for kind in pair]

    def __iter__(self):
        return iter(self.order)

    def __len__(self):
        return len(self.order)


class RecordingTGRPO(TGRPOTrainer):
    def __init__(self, *args, out_dir: str, coordinated: bool, **kwargs):
        super().__init__(*args, **kwargs)
        self.out_dir, self.coordinated = out_dir, coordinated
        self.steps: list = []  # per generated batch: [step, modality, shuffled-round call or None]

    def _get_train_sampler(self, train_dataset=None):
        return FixedOrder(self.train_dataset.records)

    def generate_completions(self, prompts):
        kind = "video" if isinstance(prompts.meta[0]["visual"], VideoClip) else "image"
        before = dict(self.tgrpo_calls)
        self.steps.append([self.state.global_step, kind, None])
        if not self.coordinated and kind == "video" and PATTERN[self.state.global_step % 4][0] != \
                PATTERN[self.state.global_step % 4][1]:
            with open(os.path.join(self.out_dir, "diverging"), "w") as f:
                f.write(str(self.state.global_step))
        rollouts = super().generate_completions(prompts)
        made = [k for k in self.tgrpo_calls if self.tgrpo_calls[k] != before.get(k, 0)]
        self.steps[-1][2] = made[0] if made else None
        return rollouts

    def any_rank(self, flag):
        return super().any_rank(flag) if self.coordinated else flag  # 'uncoordinated': deliberately local


def main():
    ckpt, data, out_dir, mode = sys.argv[1:5]
    args = TGRPOConfig(
        output_dir=out_dir, deepspeed=DS_CONFIG, num_generations=4, max_completion_length=8,
        per_device_train_batch_size=1, max_steps=len(PATTERN), logging_steps=1, save_strategy="no",
        report_to="none", learning_rate=1e-3, beta=0.04, use_cpu=True, ddp_timeout=60 if mode == "coordinated" else 20,
        seed=0, dataloader_num_workers=0, log_completions=False, len_control=True, len_control_min_tokens=1,
        len_control_max_tokens=8,
    )
    vision = VisionConfig(max_frames=4, video_max_pixels=3136, video_min_pixels=3136, image_max_pixels=12544)
    records = load_records(data)
    trainer = RecordingTGRPO(ckpt, ["accuracy", "format", digit_reward], args, records, vision_config=vision,
                             torch_dtype="float32", out_dir=out_dir, coordinated=mode == "coordinated")
    trainer.train()
    rank = trainer.accelerator.process_index
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
        json.dump({"rank": rank, "steps": trainer.steps, "calls": dict(trainer.tgrpo_calls), "losses": losses,
                   "log": trainer.state.log_history}, f)


if __name__ == "__main__":
    main()
    finish()
