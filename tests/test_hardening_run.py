"""Runs that must not end quietly wrong: resume past a torn checkpoint, metrics after resume,
runs that would train on nothing or on placeholders, skipped rollouts in the reward metrics."""
import json
import shutil
from types import SimpleNamespace

import pytest
import torch

from r1v.data import load_records
from r1v.grpo import main
from r1v.trainer.grpo_trainer import Qwen2VLGRPOTrainer
from r1v.trainer.utils import MetricStore, StageTimer

DEMO = "local_scripts/configs/demo_tiny.yaml"


def run_tiny(ckpt, data, out, *flags):
    main(["--config", DEMO, "--model_name_or_path", ckpt, "--dataset_name", str(data), "--output_dir", str(out),
          "--max_completion_length", "8", *flags])


def metric_steps(out):
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    return [r["step"] for r in rows if "loss" in r]


def test_resume_skips_incomplete_checkpoint_and_truncates_metrics(tiny_qwen25_ckpt, synthetic_dir, tmp_path, caplog):
    out = tmp_path / "run"
    data = synthetic_dir / "train.jsonl"
    run_tiny(tiny_qwen25_ckpt, data, out, "--max_steps", "2", "--save_steps", "2")
    assert sorted(p.name for p in out.iterdir() if "checkpoint" in p.name) == ["checkpoint-2"]  # no staging left
    first_rows = (out / "metrics.jsonl").read_text()
    # A run killed while saving step 4 with a non-atomic save: checkpoint-4 exists with torn weights,
    # and metrics.jsonl holds its steps 3-4 (plus a torn last line).
    torn = out / "checkpoint-4"
    shutil.copytree(out / "checkpoint-2", torn)
    weights = torn / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with open(out / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"step": 3, "loss": 1.0}) + "\n" + json.dumps({"step": 4, "loss": 1.0}) + "\n{\"st")

    run_tiny(tiny_qwen25_ckpt, data, out, "--max_steps", "4", "--save_steps", "4", "--resume_from_checkpoint", "true")
    assert "not resuming from" in caplog.text and "checkpoint-4" in caplog.text
    assert metric_steps(out) == [1, 2, 3, 4]  # no duplicate steps from the killed run
    assert (out / "metrics.jsonl").read_text().startswith(first_rows)  # resumed at step 2, not restarted
    state = json.loads((out / "checkpoint-4" / "trainer_state.json").read_text())
    assert state["global_step"] == 4

    from r1v.trainer.checkpoints import checkpoint_problem

    assert checkpoint_problem(str(out / "checkpoint-4"), need_optimizer=True) is None
    torn = tmp_path / "torn"
    shutil.copytree(out / "checkpoint-4", torn)
    (torn / "model.safetensors").write_bytes((torn / "model.safetensors").read_bytes()[:-10])
    assert "truncated" in checkpoint_problem(str(torn), need_optimizer=True)
    (torn / "optimizer.pt").unlink()
    (torn / "model.safetensors").unlink()
    shutil.copy(out / "checkpoint-4" / "model.safetensors", torn)
    assert checkpoint_problem(str(torn), need_optimizer=True) == "optimizer.pt missing"
    assert checkpoint_problem(str(torn), need_optimizer=False) is None


def test_resume_drops_metrics_rows_of_the_killed_run(tiny_qwen25_ckpt, synthetic_dir, tmp_path):
    out = tmp_path / "run"
    run_tiny(tiny_qwen25_ckpt, synthetic_dir / "train.jsonl", out, "--max_steps", "1", "--save_steps", "1")
    with open(out / "metrics.jsonl", "a") as f:  # the killed run had logged steps 2-3 after checkpoint-1
        f.write(json.dumps({"step": 2, "loss": 9.0}) + "\n" + json.dumps({"step": 3, "loss": 9.0}) + "\n")
    run_tiny(tiny_qwen25_ckpt, synthetic_dir / "train.jsonl", out, "--max_steps", "2", "--save_steps", "2",
             "--resume_from_checkpoint", "true")
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "loss" in r] == [1, 2] and all(r.get("loss") != 9.0 for r in rows)


def test_named_incomplete_checkpoint_is_refused(tmp_path):
    from r1v.trainer.checkpoints import checkpoint_problem, newest_valid_checkpoint, resolve_resume

    folder = tmp_path / "checkpoint-3"
    folder.mkdir()
    (folder / "trainer_state.json").write_text(json.dumps({"global_step": 3}))
    assert checkpoint_problem(str(folder), need_optimizer=False) == "no model weights"
    with pytest.raises(ValueError, match="no valid checkpoint-N.*checkpoint-3 \\(no model weights\\)"):
        newest_valid_checkpoint(str(tmp_path), need_optimizer=False)
    with pytest.raises(ValueError, match="checkpoint-3 is incomplete"):
        resolve_resume(str(folder), str(tmp_path), need_optimizer=False)


def test_truncate_metrics_is_by_step(tmp_path):
    from r1v.trainer.callbacks import truncate_jsonl_after_step

    path = tmp_path / "m.jsonl"
    path.write_text("".join(json.dumps({"step": s, "x": s}) + "\n" for s in (1, 2, 3, 2, 5)))
    assert truncate_jsonl_after_step(str(path), 2) == 2
    assert [json.loads(x)["step"] for x in path.read_text().splitlines()] == [1, 2, 2]
    assert truncate_jsonl_after_step(str(path), 2) == 0 and truncate_jsonl_after_step(str(tmp_path / "no"), 0) == 0


def _corrupt_copy(synthetic_dir, tmp_path):
    """The synthetic records with every video and image replaced by bytes no decoder accepts."""
    rows = []
    for i, rec in enumerate(load_records(synthetic_dir / "train.jsonl")):
        junk = tmp_path / "media" / f"{i}{'.mp4' if rec['data_type'] == 'video' else '.png'}"
        junk.parent.mkdir(exist_ok=True)
        junk.write_bytes(b"not a media file" * 8)
        rows.append({**{k: v for k, v in rec.items() if k != "rel_path"}, "path": str(junk)})
    data = tmp_path / "corrupt.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return data


@pytest.mark.parametrize("case", ["corrupt_media", "too_long"])
def test_run_on_placeholders_stops_with_an_error(tiny_qwen25_ckpt, synthetic_dir, tmp_path, case):
    if case == "corrupt_media":
        data, extra = _corrupt_copy(synthetic_dir, tmp_path), []
    else:
        data, extra = synthetic_dir / "train.jsonl", ["--max_prompt_length", "16"]
    # Defaults: more than half of the prompts skipped for 3 generated batches in a row stops the run.
    with pytest.raises(RuntimeError, match="skipped_prompts_max_frac=0.5 for 3 batches in a row"):
        run_tiny(tiny_qwen25_ckpt, data, tmp_path / "run", "--max_steps", "4", *extra)
    assert metric_steps(tmp_path / "run") == [1, 2]  # stopped while generating the third batch


def test_skip_monitor_counts_consecutive_batches():
    from r1v.trainer.utils import SkipMonitor

    monitor = SkipMonitor(max_frac=0.5, patience=2)
    assert monitor.update(3, 4) is None and monitor.update(2, 4) is None  # 0.5 is not more than 0.5
    assert monitor.update(4, 4) is None and "4 of 4 prompts" in monitor.update(4, 4)
    assert SkipMonitor(1.0, 1).update(4, 4) is None


def test_empty_data_is_refused(tiny_qwen25_ckpt, synthetic_dir, tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(ValueError, match="empty.jsonl: no training record"):
        run_tiny(tiny_qwen25_ckpt, empty, tmp_path / "a", "--max_steps", "1")
    one = tmp_path / "one.jsonl"
    one.write_text((synthetic_dir / "train.jsonl").read_text().splitlines()[0] + "\n")
    one_media = json.loads(one.read_text())["path"]
    (tmp_path / one_media).parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(synthetic_dir / one_media, tmp_path / one_media)
    with pytest.raises(ValueError, match=r"\(1 records\) fills no global batch of 2 prompts"):
        run_tiny(tiny_qwen25_ckpt, one, tmp_path / "b", "--max_steps", "1")


def test_skipped_rollouts_are_left_out_of_reward_metrics():
    g = 2
    # Two prompts x G=2: prompt 0 valid (rewards 1, 0), prompt 1 skipped (placeholder rows score 0).
    rollouts = SimpleNamespace(
        extras={"reward": torch.tensor([1.0, 0.0, 0.0, 0.0])},
        rewards=torch.tensor([[1.0], [0.0], [0.0], [0.0]]),
        valid=torch.tensor([True, True, False, False]),
        completion_mask=torch.tensor([[1, 1, 0], [1, 0, 0], [0, 0, 0], [0, 0, 0]]),
        completion_ids=torch.zeros(4, 3, dtype=torch.long),
        completions_text=["a", "b", "", ""],
        prompts=SimpleNamespace(meta=[{"record": {"problem_id": i // g}, "prompt_text": "p"} for i in range(4)]),
    )
    fake = SimpleNamespace(num_generations=g, reward_names=["accuracy"], metrics=MetricStore(), timer=StageTimer(),
                           args=SimpleNamespace(num_completions_to_print=0), eos_token_ids=[7])
    Qwen2VLGRPOTrainer.record_rollout_metrics(fake, rollouts)
    got = {k: s / c for k, (s, c) in fake.metrics.state().items()}
    assert got["rewards/accuracy"] == pytest.approx(0.5) and got["reward"] == pytest.approx(0.5)
    assert got["reward_std"] == pytest.approx(2 ** -0.5) and got["frac_reward_zero_std"] == 0.0
    assert got["completion_length"] == pytest.approx(1.5)


def test_a_completion_ending_at_the_last_column_is_not_truncated():
    # Row 0 ends with EOS (7) exactly at the last column, row 1 is cut without one, row 2 stops early.
    ids = torch.tensor([[5, 6, 7], [5, 6, 6], [7, 0, 0]])
    mask = torch.tensor([[1, 1, 1], [1, 1, 1], [1, 0, 0]])
    rollouts = SimpleNamespace(
        extras={"reward": torch.tensor([1.0, 0.0, 1.0])}, rewards=torch.tensor([[1.0], [0.0], [1.0]]),
        valid=torch.tensor([True, True, True]), completion_mask=mask, completion_ids=ids,
        completions_text=["a", "b", "c"],
        prompts=SimpleNamespace(meta=[{"record": {"problem_id": 0}, "prompt_text": "p"}] * 3),
    )
    fake = SimpleNamespace(num_generations=3, reward_names=["accuracy"], metrics=MetricStore(), timer=StageTimer(),
                           args=SimpleNamespace(num_completions_to_print=0), eos_token_ids=[7])
    Qwen2VLGRPOTrainer.record_rollout_metrics(fake, rollouts)
    got = {k: s / c for k, (s, c) in fake.metrics.state().items()}
    assert got["completions/truncated_frac"] == pytest.approx(1 / 3)
