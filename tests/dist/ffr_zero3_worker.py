"""One rank of a 2-process DeepSpeed ZeRO-3 FFR run on CPU (launched by tests/test_ffr_zero3.py with torchrun).

usage: ffr_zero3_worker.py CKPT DATA_JSONL OUT_DIR TEACHER_URL MODE STEPS
MODE 'coordinated': FFRTrainer as shipped. Which ranks get usable patches changes with the
    step (step % 3): 0 -> rank 0 only, 1 -> neither, 2 -> both. Every failed rollout is sent
    to the real teacher service; on a rank that must have none this step, the answers are
    replaced by 'skipped' (a deterministic stand-in for a teacher with nothing to offer).
MODE 'uncoordinated': the same, but each rank decides its second round alone (no all-reduce,
    no dummy generate). Rank 0 then makes an extra generate at step 0; the run must hang or
    fail, which proves the coordinated run would have exposed a missing coordination.
Each rank writes OUT_DIR/rank{r}.json (second-round calls per step, losses, log); in
'uncoordinated' mode rank 0 first writes OUT_DIR/diverging once it starts the unmatched call.
"""
import json
import os
import sys

from ds_cpu import DS_CONFIG, finish  # first import: one thread, no shm-op build
from ffr.teacher.schema import failure  # noqa: E402
from ffr.train import FFRGRPOConfig  # noqa: E402
from ffr.trainer import FFRTrainer  # noqa: E402
from r1v.data import load_records  # noqa: E402
from r1v.vision import VisionConfig  # noqa: E402


def ranks_with_patches(step: int) -> set:
    """Ranks whose failed rollouts get usable patches at this step (covers one / neither / both)."""
    return [{0}, set(), {0, 1}][step % 3]


def digit_reward(completions, **_):
    """Dense toy reward (share of digit characters) so advantages and updates are non-zero."""
    return [sum(ch.isdigit() for ch in c) / max(len(c), 1) for c in completions]


class PatternFFRTrainer(FFRTrainer):
    """FFRTrainer whose patch availability per rank follows ``ranks_with_patches``; logs its generate calls."""

    def __init__(self, *args, out_dir: str, coordinated: bool, **kwargs):
        super().__init__(*args, **kwargs)
        self.out_dir, self.coordinated = out_dir, coordinated
        self.calls: list = []  # [step, 'first' | 'generate' | 'dummy']

    @property
    def rank(self) -> int:
        return self.accelerator.process_index

    def request_patches(self, items):
        results = super().request_patches(items)  # the real HTTP round trip
        if self.rank in ranks_with_patches(self.state.global_step):
            return results
        return [failure(r.sample_id, "skipped", "rank_pattern", "no patch for this rank at this step")
                for r in results]

    def generate_completions(self, prompts):
        self.calls.append([self.state.global_step, "first"])
        return super().generate_completions(prompts)

    def second_round_plan(self, has_patched_rows):
        if self.coordinated:
            return super().second_round_plan(has_patched_rows)
        if has_patched_rows and ranks_with_patches(self.state.global_step) == {self.rank}:
            # Only this rank will generate now: the marker tells the test the divergence was reached.
            with open(os.path.join(self.out_dir, "diverging"), "w") as f:
                f.write(str(self.state.global_step))
        return "generate" if has_patched_rows else None  # deliberately no all-reduce, no dummy

    def generate_second_round(self, batch):
        self.calls.append([self.state.global_step, "generate"])
        return super().generate_second_round(batch)

    def run_dummy_generate(self):
        self.calls.append([self.state.global_step, "dummy"])
        super().run_dummy_generate()


def main():
    ckpt, data, out_dir, url, mode, steps = sys.argv[1:7]
    args = FFRGRPOConfig(
        output_dir=out_dir, deepspeed=DS_CONFIG, num_generations=4, max_completion_length=8,
        per_device_train_batch_size=1, max_steps=int(steps), logging_steps=1, save_strategy="no", report_to="none",
        learning_rate=1e-3, beta=0.04, use_cpu=True, ddp_timeout=60, seed=0, dataloader_num_workers=0,
        log_completions=False, ffr_enable=True, teacher_url=url, teacher_timeout_s=10.0,
        teacher_step_deadline_s=20.0, ffr_patch_log=True,
    )
    vision = VisionConfig(max_frames=4, video_max_pixels=3136, video_min_pixels=3136, image_max_pixels=12544)
    records = [r for r in load_records(data) if r["data_type"] == "video" and r.get("evidence")]
    trainer = PatternFFRTrainer(ckpt, ["accuracy", "format", digit_reward], args, records, vision_config=vision,
                                torch_dtype="float32", out_dir=out_dir, coordinated=mode == "coordinated")
    trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    with open(os.path.join(out_dir, f"rank{trainer.rank}.json"), "w") as f:
        json.dump({"rank": trainer.rank, "steps": trainer.state.global_step, "calls": trainer.calls,
                   "ffr_calls": dict(trainer.ffr_calls), "losses": losses, "log": trainer.state.log_history}, f)


if __name__ == "__main__":
    main()
    finish()
