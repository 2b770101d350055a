"""Majority-vote and judge rewards inside the GRPO trainer: short runs on the tiny Qwen2.5-VL (CPU).

The tiny random model writes no answer tags, so a test subclass replaces the decoded texts of
each group with fixed answers after generation; rewards are computed from those texts, and
the loss still runs on the generated tokens.
"""
import math

import pytest
import torch

from r1v.answers import extract_answer
from r1v.judge_reward import JudgeReward
from r1v.trainer.grpo_trainer import Qwen2VLGRPOTrainer
from scripted_openai import Reply, scripted_openai
from test_grpo_trainer import VISION, _args, _records


def _wrong(gold: str) -> str:
    return "A" if gold != "A" else "B"


class ScriptedTextsTrainer(Qwen2VLGRPOTrainer):
    """Each group of 4 answers [gold, gold, wrong, untagged]: texts only, tokens untouched."""

    def generate_completions(self, prompts):
        rollouts = super().generate_completions(prompts)
        texts = []
        for k, meta in enumerate(rollouts.prompts.meta):
            gold = extract_answer(meta["record"]["solution"])
            texts.append([f"<answer>{gold}</answer>", f"<answer>{gold}</answer>",
                          f"<answer>{_wrong(gold)}</answer>", "no answer"][k % 4])
        rollouts.completions_text = texts
        return rollouts


def _trainer(ckpt, records, args, rewards):
    return ScriptedTextsTrainer(ckpt, rewards, args, records, vision_config=VISION, torch_dtype="float32")


def test_majority_vote_run_logs_rewards_and_metrics(tiny_qwen25_ckpt, synthetic_dir, tmp_path):
    args = _args(tmp_path, max_steps=2, save_strategy="no", per_device_train_batch_size=2)
    trainer = _trainer(tiny_qwen25_ckpt, _records(synthetic_dir), args, ["majority_vote", "format"])
    rollouts = trainer.generate_and_score(_records(synthetic_dir, n=2))
    # Label = gold (2 of 4 votes) in both groups: rows 0, 1 match it, row 2 does not, row 3 abstains.
    assert rollouts.rewards[:, 0].tolist() == [1.0, 1.0, 0.0, 0.0] * 2
    state = trainer.metrics.state()
    assert state["rewards/majority_label_acc"] == (2.0, 2) and state["rewards/majority_vote_share"] == (1.0, 2)
    trainer.metrics.clear()
    trainer.train()
    logs = [h for h in trainer.state.log_history if "loss" in h]
    assert len(logs) == 2 and all(math.isfinite(h["loss"]) for h in logs)
    for h in logs:
        assert h["rewards/majority_vote"] == 0.5 and h["rewards/majority_label_acc"] == 1.0
        assert h["rewards/majority_vote_share"] == 0.5 and h["rewards/majority_no_label"] == 0.0


def test_judge_run_nan_rows_get_zero_advantage_and_metrics_are_logged(tiny_qwen25_ckpt, synthetic_dir, tmp_path):
    def script(body, _):
        user = body["messages"][1]["content"]
        if "Student answer: no answer" in user:
            return Reply(status=500)  # the untagged row's request fails on every try
        return Reply(content="Score: 0.6" if "Student answer: A" in user else '{"score": 0.9}', usage=(50, 4))

    records = [r for r in _records(synthetic_dir) if extract_answer(r["solution"]) != "A"][:2]
    with scripted_openai(script) as (url, server):
        judge = JudgeReward(url, "scripted-teacher", max_retries=1, backoff_s=0.0)
        args = _args(tmp_path, max_steps=2, save_strategy="no")
        trainer = _trainer(tiny_qwen25_ckpt, records, args, [judge, "format"])
        rollouts = trainer.generate_and_score(records[:1])
        r = rollouts.rewards[:, 0]
        assert r[:3].tolist() == pytest.approx([0.9, 0.9, 0.6]) and math.isnan(r[3])
        # Advantages over the three scored rows; the unscored row adds no gradient.
        scored = torch.tensor([0.9, 0.9, 0.6])
        expect = (scored - scored.mean()) / (scored.std() + 1e-4)
        assert rollouts.advantages[:3].tolist() == pytest.approx(expect.tolist(), rel=1e-5)
        assert rollouts.advantages[3].item() == 0.0
        trainer.metrics.clear()
        trainer.train()
    logs = [h for h in trainer.state.log_history if "loss" in h]
    assert len(logs) == 2 and all(math.isfinite(h["loss"]) for h in logs)
    for h in logs:
        assert h["rewards/judge"] == pytest.approx(0.8) and math.isfinite(h["reward"])
        assert h["rewards/judge_failed"] == 1.0 and h["judge/tokens_in"] >= 0.0
        assert "judge/tokens_out" in h and "judge/requests" in h
    # The record judged before training is served from the cache; the other costs 2 requests of
    # 50 prompt tokens; the failing row is asked again (2 tries) at every step: 4 + 2 + 2 * 2.
    assert sum(h["judge/tokens_in"] for h in logs) == 100.0 and len(server.requests) == 10
    assert sum(h["judge/cache_hits"] for h in logs) == 3.0


def test_judge_entry_point_trains_with_the_judge_from_flags(tiny_qwen25_ckpt, synthetic_dir, tmp_path):
    import json

    from r1v.judge_grpo import main

    key = tmp_path / "judge.key"
    key.write_text("sk-entry-point-judge-key\n")
    out = tmp_path / "run"
    with scripted_openai([Reply(content="0.5")]) as (url, server):
        main(["--config", "local_scripts/configs/demo_tiny.yaml", "--model_name_or_path", tiny_qwen25_ckpt,
              "--dataset_name", str(synthetic_dir / "train.jsonl"), "--output_dir", str(out), "--max_steps", "1",
              "--save_strategy", "no", "--max_completion_length", "8", "--reward_funcs", "judge", "format",
              "--judge-base-url", url, "--judge-model", "scripted-teacher", "--judge-api-key-file", str(key),
              "--judge_price_in_per_mtok", "1.0"])
    assert server.requests and set(server.auth) == {"Bearer sk-entry-point-judge-key"}
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    step = next(r for r in rows if "loss" in r)
    assert "rewards/judge" in step and "judge/cost_usd" in step and "rewards/judge_failed" in step
    resolved = (out / "run_config.json").read_text()
    assert json.loads(resolved)["GRPOScriptArguments"]["reward_funcs"] == ["judge", "format"]
    assert "sk-entry-point-judge-key" not in resolved
    with pytest.raises(ValueError, match="must name 'judge'"):
        main(["--output_dir", str(tmp_path / "o"), "--use_cpu", "true", "--judge-base-url", url, "--judge-model", "m"])
