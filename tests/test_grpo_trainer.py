"""The GRPO trainer end to end on the tiny Qwen2.5-VL and synthetic videos (CPU)."""
import json
import math
import os

import pytest
import torch

from r1v.config import GRPOConfig
from r1v.data import load_records
from r1v.trainer.grpo_trainer import Qwen2VLGRPOTrainer
from r1v.vision import VisionConfig

VISION = VisionConfig(max_frames=4, video_max_pixels=3136, video_min_pixels=3136, image_max_pixels=12544)


def digit_reward(completions, **_):
    """Dense toy reward: share of characters that are digits (non-zero advantages from step one)."""
    return [sum(ch.isdigit() for ch in c) / max(len(c), 1) for c in completions]


def vowel_reward(completions, **_):
    """Dense trivial task: share of characters that are lowercase vowels (a random policy scores ~0.1-0.2)."""
    return [sum(ch in "aeiou" for ch in c) / max(len(c), 1) for c in completions]


def _args(tmp_path, **kw):
    base = dict(output_dir=str(tmp_path / "out"), num_generations=4, max_completion_length=8, per_device_train_batch_size=1,
                max_steps=2, logging_steps=1, save_steps=2, report_to="none", use_cpu=True, learning_rate=1e-3,
                beta=0.04, seed=0, dataloader_num_workers=0)
    base.update(kw)
    return GRPOConfig(**base)


def _records(synthetic_dir, n=None, kind="video"):
    recs = [r for r in load_records(synthetic_dir / "train.jsonl") if kind is None or r["data_type"] == kind]
    return recs[:n] if n else recs


def _trainer(ckpt, records, args, rewards=(digit_reward, "format"), **kw):
    from r1v.trainer.callbacks import JsonlLogCallback

    return Qwen2VLGRPOTrainer(ckpt, list(rewards), args, records, vision_config=VISION, torch_dtype="float32",
                              callbacks=[JsonlLogCallback()], **kw)


def test_two_steps_update_every_parameter_log_and_checkpoint(tiny_qwen25_ckpt, synthetic_dir, tmp_path):
    args = _args(tmp_path)
    trainer = _trainer(tiny_qwen25_ckpt, _records(synthetic_dir), args)
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
    trainer.train()
    unchanged = [n for n, p in trainer.model.named_parameters() if p.requires_grad and torch.equal(p, before[n])]
    assert not unchanged, f"parameters not updated: {unchanged[:5]}"
    logs = [h for h in trainer.state.log_history if "loss" in h]
    assert len(logs) == 2 and all(math.isfinite(h["loss"]) for h in logs)
    for key in ("rewards/digit_reward", "rewards/format", "reward", "reward_std", "frac_reward_zero_std",
                "completion_length", "kl", "clip_ratio", "timing_s/generate", "timing_s/policy_forward"):
        assert key in logs[0], key
    out = tmp_path / "out"
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines if "loss" in x] == [1, 2]
    dumps = sorted(os.listdir(out / "completions"))
    assert dumps and json.loads((out / "completions" / dumps[0]).read_text().splitlines()[0])["completion"] is not None
    ckpt = out / "checkpoint-2"
    assert (ckpt / "model.safetensors").exists() and (ckpt / "trainer_state.json").exists()
    assert (ckpt / "optimizer.pt").exists() and (ckpt / "tokenizer_config.json").exists()


def test_resume_from_checkpoint_continues_steps(tiny_qwen25_ckpt, synthetic_dir, tmp_path):
    records = _records(synthetic_dir)
    first = _trainer(tiny_qwen25_ckpt, records, _args(tmp_path, max_steps=2, save_steps=2))
    first.train()
    saved = {n: p.detach().clone() for n, p in first.model.named_parameters()}
    resumed = _trainer(tiny_qwen25_ckpt, records, _args(tmp_path, max_steps=3, save_steps=3))
    resumed.train(resume_from_checkpoint=str(tmp_path / "out" / "checkpoint-2"))
    assert resumed.state.global_step == 3
    steps = [h["step"] for h in resumed.state.log_history if "loss" in h]
    assert steps[-1] == 3 and 1 not in steps[len(steps) - 1:]
    # The resumed run started from the checkpoint's weights, not from the base checkpoint.
    base = _trainer(tiny_qwen25_ckpt, records, _args(tmp_path / "b"))
    name = "model.language_model.layers.0.self_attn.q_proj.weight"
    ref = dict(base.model.named_parameters())[name]
    assert not torch.equal(saved[name], ref)
    assert (tmp_path / "out" / "checkpoint-3").exists()


def test_num_iterations_two_reuses_batch_and_clip_is_live(tiny_qwen25_ckpt, synthetic_dir, tmp_path):
    args = _args(tmp_path, max_steps=4, num_iterations=2, learning_rate=5e-2, beta=0.0, save_strategy="no", epsilon=0.05)
    trainer = _trainer(tiny_qwen25_ckpt, _records(synthetic_dir), args)
    calls = []
    original = trainer.generate_and_score
    trainer.generate_and_score = lambda recs: calls.append(len(recs)) or original(recs)
    trainer.train()
    assert len(calls) == 2  # 4 optimizer steps, one generation per 2
    logs = [h for h in trainer.state.log_history if "loss" in h]
    # Steps 1 and 3 see fresh batches (ratio exactly 1); steps 2 and 4 reuse them after an update.
    assert logs[0]["ratio_mean"] == pytest.approx(1.0, abs=1e-6)
    assert abs(logs[1]["ratio_mean"] - 1.0) > 1e-4
    assert max(h["clip_ratio"] for h in logs[1::2]) > 0.0


@pytest.mark.parametrize("loss_type", ["grpo", "dr_grpo"])
def test_compute_loss_equals_formula_on_fixed_batch(tiny_qwen25_ckpt, synthetic_dir, tmp_path, loss_type):
    torch.manual_seed(0)
    trainer = _trainer(tiny_qwen25_ckpt, _records(synthetic_dir), _args(tmp_path, loss_type=loss_type))
    rollouts = trainer.generate_and_score(_records(synthetic_dir, n=1))
    trainer.model.train()
    loss = trainer.compute_loss(trainer.model, rollouts)
    # Independent recomputation: full logits, then the Eq. 11 formula token by token.
    with torch.no_grad():
        logits = trainer.model(**rollouts.forward_inputs()).logits
        c = rollouts.completion_ids.shape[1]
        logp = torch.log_softmax(logits[:, -c - 1:-1].float(), -1).gather(-1, rollouts.completion_ids.unsqueeze(-1)).squeeze(-1)
        ref = rollouts.ref_per_token_logps
        mask = rollouts.completion_mask.float()
        adv = rollouts.advantages.unsqueeze(1)
        kl = torch.exp(ref - logp) - (ref - logp) - 1
        per_tok = -(adv - 0.04 * kl)  # ratio == 1 with a single iteration
        if loss_type == "grpo":
            expect = ((per_tok * mask).sum(1) / mask.sum(1)).mean()
        else:  # Dr. GRPO: constant normaliser rows x max_completion_length (8 in _args)
            expect = (per_tok * mask).sum() / (mask.shape[0] * 8)
    assert abs(loss.item() - expect.item()) < 1e-6
    # The advantages are the group-standardised rewards (Eq. 2).
    r = rollouts.extras["reward"]
    assert torch.allclose(rollouts.advantages, (r - r.mean()) / (r.std() + 1e-4), atol=1e-6)


def test_forward_inputs_carry_mm_token_type_ids_and_visuals(tiny_qwen25_ckpt, synthetic_dir, tmp_path):
    trainer = _trainer(tiny_qwen25_ckpt, _records(synthetic_dir), _args(tmp_path))
    prompts = trainer.build_prompts(_records(synthetic_dir, n=2))
    assert (prompts.mm_token_type_ids == 2).any(dim=1).all()  # every row has video tokens
    rollouts = trainer.generate_completions(prompts)
    fwd = rollouts.forward_inputs()
    n, c = rollouts.completion_ids.shape
    assert n == 8 and fwd["mm_token_type_ids"].shape == fwd["input_ids"].shape
    assert (fwd["mm_token_type_ids"][:, -c:] == 0).all()
    assert fwd["video_grid_thw"].shape[0] == 8
    assert not any(t in rollouts.completion_ids for t in trainer.suppress_ids)


def test_corrupt_video_is_skipped_with_metric(tiny_qwen25_ckpt, synthetic_dir, tmp_path):
    recs = _records(synthetic_dir, n=2)
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video")
    recs[1] = {**recs[1], "path": str(bad), "problem_id": "broken"}
    trainer = _trainer(tiny_qwen25_ckpt, recs, _args(tmp_path))
    rollouts = trainer.generate_and_score(recs)
    assert rollouts.valid.tolist() == [True] * 4 + [False] * 4
    assert rollouts.completion_mask[4:].sum() == 0 and rollouts.rewards[4:].abs().sum() == 0
    assert trainer.metrics.state()["data/skipped_media"] == (1.0, 1)


def test_learning_check_reward_rises(tiny_qwen25_ckpt, synthetic_dir, tmp_path):
    """On a trivial dense reward the mean reward of the last steps clearly beats the first (gradient sign)."""
    args = _args(tmp_path, max_steps=30, num_generations=8, max_completion_length=6, learning_rate=1e-2, beta=0.0,
                 save_strategy="no", temperature=1.0, top_p=1.0, lr_scheduler_type="constant")
    trainer = _trainer(tiny_qwen25_ckpt, _records(synthetic_dir), args, rewards=(vowel_reward,))
    trainer.train()
    rewards = [h["reward"] for h in trainer.state.log_history if "reward" in h]
    first, last = sum(rewards[:5]) / 5, sum(rewards[-5:]) / 5
    assert last > first + 0.2, rewards


def test_too_long_prompt_is_skipped_with_metric(tiny_qwen25_ckpt, synthetic_dir, tmp_path):
    recs = _records(synthetic_dir, n=2)
    recs[0] = {**recs[0], "problem": recs[0]["problem"] + " padding words" * 200, "problem_id": "long"}
    trainer = _trainer(tiny_qwen25_ckpt, recs, _args(tmp_path, max_prompt_length=400))
    prompts = trainer.build_prompts(recs)
    assert [m["valid"] for m in prompts.meta] == [False, True]
    assert prompts.attention_mask.sum(dim=1).max().item() <= 400
    assert trainer.metrics.state()["data/skipped_too_long"] == (1.0, 1)


def test_qwen3_vl_student_trains_on_videos_and_images(synthetic_dir, tmp_path):
    from r1v.toy.tiny import build_tiny_checkpoint

    ckpt = str(build_tiny_checkpoint(tmp_path / "q3", arch="qwen3_vl"))
    records = _records(synthetic_dir, kind=None)
    trainer = _trainer(ckpt, records, _args(tmp_path, max_steps=2, per_device_train_batch_size=2, save_strategy="no"))
    assert trainer.vision_config.patch_factor == 32  # taken from the Qwen3-VL processor
    trainer.train()
    logs = [h for h in trainer.state.log_history if "loss" in h]
    assert len(logs) == 2 and all(math.isfinite(h["loss"]) and math.isfinite(h["kl"]) for h in logs)


def test_resume_starts_from_every_weight_of_the_checkpoint(tiny_qwen25_ckpt, synthetic_dir, tmp_path):
    from transformers import TrainerCallback

    records = _records(synthetic_dir)
    first = _trainer(tiny_qwen25_ckpt, records, _args(tmp_path, max_steps=2, save_steps=2))
    first.train()
    saved = {n: p.detach().clone() for n, p in first.model.named_parameters()}
    loaded = {}

    class Snapshot(TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, **kwargs):
            loaded.update({n: p.detach().clone() for n, p in model.named_parameters()})

    resumed = _trainer(tiny_qwen25_ckpt, records, _args(tmp_path, max_steps=3, save_steps=3))
    resumed.add_callback(Snapshot())
    resumed.train(resume_from_checkpoint=str(tmp_path / "out" / "checkpoint-2"))
    differ = [n for n in saved if not torch.equal(saved[n], loaded[n])]
    assert not differ, f"{len(differ)} of {len(saved)} weights not restored, e.g. {differ[:3]}"
