"""One rank of a 2-process DeepSpeed ZeRO-3 GRPO run on CPU (launched by tests with torchrun).

usage: zero3_worker.py CKPT DATA_JSONL OUT_DIR MODE [STEPS]
MODE: 'train' (plain GRPO steps) or 'extra_generate' (rank 1 makes one uncoordinated extra
generate call per step, after writing OUT_DIR/diverging; the run must fail or hang - that
proves a test can see a hang).
Each rank writes OUT_DIR/rank{r}.json with its per-step losses and parameter checksums.
"""
import json
import os
import sys

from ds_cpu import DS_CONFIG, finish  # first import: one thread, no shm-op build
from r1v.config import GRPOConfig  # noqa: E402
from r1v.data import load_records  # noqa: E402
from r1v.trainer.grpo_trainer import Qwen2VLGRPOTrainer  # noqa: E402
from r1v.vision import VisionConfig  # noqa: E402


def digit_reward(completions, **_):
    """Dense toy reward (share of characters that are digits) so advantages are non-zero."""
    return [sum(ch.isdigit() for ch in c) / max(len(c), 1) for c in completions]


class ExtraGenerateTrainer(Qwen2VLGRPOTrainer):
    def generate_completions(self, prompts):
        if self.accelerator.process_index == 1:
            # The marker tells the test the divergence was reached (and when: see zero3_launch).
            with open(os.path.join(self.args.output_dir, "diverging"), "w") as f:
                f.write(str(self.state.global_step))
            self.run_dummy_generate()  # deliberately uncoordinated
        return super().generate_completions(prompts)


def main():
    ckpt, data, out_dir, mode = sys.argv[1:5]
    steps = int(sys.argv[5]) if len(sys.argv) > 5 else 2
    args = GRPOConfig(
        output_dir=out_dir, deepspeed=DS_CONFIG, num_generations=4, max_completion_length=8,
        per_device_train_batch_size=1, max_steps=steps, logging_steps=1, save_strategy="no", report_to="none",
        learning_rate=1e-3, beta=0.04, use_cpu=True, ddp_timeout=60, seed=0, dataloader_num_workers=0,
    )
    vision = VisionConfig(max_frames=4, video_max_pixels=3136, video_min_pixels=3136, image_max_pixels=12544)
    records = [r for r in load_records(data) if r["data_type"] == "video"]
    cls = ExtraGenerateTrainer if mode == "extra_generate" else Qwen2VLGRPOTrainer
    trainer = cls(ckpt, [digit_reward, "format"], args, records, vision_config=vision, torch_dtype="float32")
    import deepspeed

    def checksum():
        total = 0.0
        for p in trainer.model.parameters():
            with deepspeed.zero.GatheredParameters([p]):
                total += float(p.detach().double().abs().sum())
        return total

    before = checksum()
    trainer.train()
    after = checksum()
    rank = trainer.accelerator.process_index
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
        json.dump({"rank": rank, "losses": losses, "before": before, "after": after,
                   "steps": trainer.state.global_step, "log": trainer.state.log_history}, f)


if __name__ == "__main__":
    main()
    finish()
