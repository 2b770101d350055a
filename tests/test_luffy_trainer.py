"""LuffyTrainer end to end on the tiny Qwen2.5-VL and synthetic videos (CPU), with a trace JSONL
in the output format of r1v.teacher_traces; one 2-rank DeepSpeed ZeRO-3 run."""
import json
import math
from pathlib import Path

import pytest
import torch

from r1v.data import load_records
from r1v.trainer.batch import RowSource
from r1v.trainer.luffy import LuffyConfig, LuffyTrainer
from r1v.vision import VisionConfig
from zero3_launch import launch_zero3

WORKER = str(Path(__file__).parent / "dist" / "luffy_zero3_worker.py")

VISION = VisionConfig(max_frames=4, video_max_pixels=3136, video_min_pixels=3136, image_max_pixels=12544)
TRACE = "<think>The circle moves 12 times.</think>"


def digit_reward(completions, **_):
    """Dense toy reward (share of digit characters) so advantages are non-zero from step one."""
    return [sum(ch.isdigit() for ch in c) / max(len(c), 1) for c in completions]


def _records(synthetic_dir):
    return [r for r in load_records(synthetic_dir / "train.jsonl") if r["data_type"] == "video"]


def write_traces(path, records, skip=()):
    """One SFT record per training record (as r1v.teacher_traces writes them), except those in ``skip``."""
    with open(path, "w") as f:
        for rec in records:
            if rec["problem_id"] not in skip:
                f.write(json.dumps({**rec, "process": TRACE, "teacher_model": "toy"}) + "\n")
    return str(path)


def _trainer(ckpt, records, tmp_path, traces, **kw):
    base = dict(output_dir=str(tmp_path / "out"), num_generations=4, max_completion_length=24,
                per_device_train_batch_size=1, max_steps=2, logging_steps=1, save_strategy="no", report_to="none",
                use_cpu=True, learning_rate=1e-3, seed=0, dataloader_num_workers=0, log_completions=False,
                luffy_traces=traces)
    base.update(kw)
    return LuffyTrainer(ckpt, [digit_reward, "format"], LuffyConfig(**base), records, vision_config=VISION,
                        torch_dtype="float32")


def test_trace_rows_join_their_group_and_a_missing_trace_is_counted(tiny_qwen25_ckpt, synthetic_dir, tmp_path):
    records = _records(synthetic_dir)
    traces = write_traces(tmp_path / "traces.jsonl", records, skip={records[1]["problem_id"]})
    trainer = _trainer(tiny_qwen25_ckpt, records, tmp_path, traces)
    rollouts = trainer.generate_and_score(records[:2])
    # G = 4: 3 sampled rows per prompt, then the one trace of prompt 0 (prompt 1 has none).
    assert rollouts.group_ids.tolist() == [0, 0, 0, 1, 1, 1, 0]
    assert rollouts.source.tolist() == [int(RowSource.ON_POLICY)] * 6 + [int(RowSource.TEACHER)]
    assert trainer.metrics.state()["luffy/missing_traces"] == (1.0, 1)
    tok = trainer.processing_class.tokenizer
    expect = tok(f"{TRACE}\n{records[0]['solution']}", add_special_tokens=False)["input_ids"]
    expect = expect + [tok.convert_tokens_to_ids("<|im_end|>")]
    n = int(rollouts.completion_mask[6].sum())
    assert rollouts.completion_ids[6, :n].tolist() == expect
    assert rollouts.completions_text[6] == f"{TRACE}\n{records[0]['solution']}"
    # Scored by the same rewards: the trace is well formed and carries digits.
    assert rollouts.rewards[6].tolist() == pytest.approx([digit_reward([rollouts.completions_text[6]])[0], 1.0])
    assert torch.equal(rollouts.behaviour_logps[6], torch.zeros(rollouts.completion_ids.shape[1]))
    # Mixed advantages: prompt 0 standardised over its 4 rows, prompt 1 over its 3.
    r = rollouts.reward
    for rows in ([0, 1, 2, 6], [3, 4, 5]):
        sel = r[rows]
        assert rollouts.advantages[rows].tolist() == pytest.approx(((sel - sel.mean()) / (sel.std() + 1e-4)).tolist(),
                                                                   abs=1e-5)
    assert trainer.generated_tokens == int(rollouts.completion_mask[:6].sum())  # traces are not sampled tokens
    # The base reward and length metrics describe the sampled rows only; the trace has its own.
    state = trainer.metrics.state()
    assert state["reward"][1] == 6 and state["reward"][0] == pytest.approx(float(r[:6].sum()), rel=1e-5)
    assert state["completion_length"][0] == pytest.approx(float(rollouts.completion_mask[:6].sum()))
    assert state["luffy/trace_length"] == (float(len(expect)), 1)
    assert state["luffy/teacher_reward"][0] == pytest.approx(float(r[6]), rel=1e-5)


def test_a_long_trace_is_cut_at_max_completion_length(tiny_qwen25_ckpt, synthetic_dir, tmp_path):
    records = _records(synthetic_dir)
    trainer = _trainer(tiny_qwen25_ckpt, records, tmp_path, write_traces(tmp_path / "t.jsonl", records),
                       max_completion_length=5)
    rollouts = trainer.generate_and_score(records[:1])
    assert rollouts.completion_ids.shape[1] == 5 and int(rollouts.completion_mask[3].sum()) == 5
    assert trainer.metrics.state()["luffy/truncated_traces"] == (1.0, 1)


def test_two_steps_train_with_released_script_options(tiny_qwen25_ckpt, synthetic_dir, tmp_path):
    records = _records(synthetic_dir)
    traces = write_traces(tmp_path / "traces.jsonl", records, skip={records[0]["problem_id"]})
    trainer = _trainer(tiny_qwen25_ckpt, records, tmp_path, traces, luffy_advantage="split",
                       luffy_std_normalize=False, luffy_clip_on_policy=False, luffy_entropy_coeff=0.001)
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
    trainer.train()
    assert any(not torch.equal(p, before[n]) for n, p in trainer.model.named_parameters() if p.requires_grad)
    logs = [h for h in trainer.state.log_history if "loss" in h]
    assert len(logs) == 2 and all(math.isfinite(h["loss"]) for h in logs)
    for key in ("luffy/missing_traces", "luffy/entropy", "luffy/trace_length", "clip_ratio"):
        assert key in logs[0], key
    assert all(h["clip_ratio"] == 0.0 for h in logs)


def test_entropy_bonus_equals_the_token_mean_entropy_of_the_loss_forward(tiny_qwen25_ckpt, synthetic_dir, tmp_path):
    records = _records(synthetic_dir)
    trainer = _trainer(tiny_qwen25_ckpt, records, tmp_path, write_traces(tmp_path / "t.jsonl", records))
    torch.manual_seed(0)
    rollouts = trainer.generate_and_score(records[:1])
    trainer.model.train()
    plain = trainer.compute_loss(trainer.model, rollouts)
    trainer.args.luffy_entropy_coeff = 0.5
    with_bonus = trainer.compute_loss(trainer.model, rollouts)
    with torch.no_grad():  # independent: full logits, softmax entropy, token mean over the completion mask
        c = rollouts.completion_ids.shape[1]
        logits = trainer.model(**rollouts.forward_inputs()).logits[:, -c - 1:-1].float()
        logp = torch.log_softmax(logits, -1)
        ent = -(logp.exp() * logp).sum(-1)
        mask = rollouts.completion_mask.float()
        expect = (ent * mask).sum() / mask.sum()
    assert (plain - with_bonus).item() == pytest.approx(0.5 * expect.item(), rel=1e-4)


def test_trainer_refuses_a_config_without_traces(tiny_qwen25_ckpt, synthetic_dir, tmp_path):
    with pytest.raises(ValueError, match="luffy_traces"):
        _trainer(tiny_qwen25_ckpt, _records(synthetic_dir), tmp_path, None)


@pytest.mark.slow
def test_zero3_ranks_with_and_without_traces_keep_in_step(tiny_qwen25_ckpt, synthetic_dir, tmp_path):
    """2 CPU ranks under ZeRO-3: at step 1 only rank 0's prompt has a trace (4 rows against 3), entropy bonus on."""
    pytest.importorskip("deepspeed")
    videos = _records(synthetic_dir)
    traces = write_traces(tmp_path / "traces.jsonl", videos, skip={videos[1]["problem_id"]})
    res = launch_zero3(WORKER, [tiny_qwen25_ckpt, str(synthetic_dir / "train.jsonl"), traces, str(tmp_path)],
                       timeout_s=240)
    assert not res.timed_out and res.returncode == 0, res.output[-4000:]
    print(f"2-rank ZeRO-3 LUFFY run, 2 steps: {res.elapsed_s:.1f} s wall")
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    # Step 1: rank 0 has 3 sampled rows + 1 trace, rank 1 (no trace) 3 rows; step 2: both 4.
    assert ranks[0]["rows"] == [[4, 1], [4, 1]] and ranks[1]["rows"] == [[3, 0], [4, 1]]
    assert ranks[0]["losses"] == pytest.approx(ranks[1]["losses"]) and len(ranks[0]["losses"]) == 2
    logged = [h for h in ranks[0]["log"] if "loss" in h]
    # Merged over the two ranks: one missing trace of two prompts at step 1, none at step 2.
    assert [h["luffy/missing_traces"] for h in logged] == pytest.approx([0.5, 0.0])
    assert all("luffy/entropy" in h for h in logged)
