"""FFRTrainer on the tiny Qwen2.5-VL (CPU, one process): FFR off = GRPO, chosen rollouts (Eq. 7-10),
request building, no-GT leak gate, extra visual context, coordination without a process group,
and the `python -m ffr.train` entry point (key redaction, patch log, Fig. 4 plot)."""
import json
from pathlib import Path

import pytest
import torch

from ffr.coordination import all_reduce_max, any_rank, second_round_plan
from ffr.patch import EVIDENCE_HEADER, EvidencePatch
from ffr.teacher.backends import AnnotationBackend
from ffr.teacher.client import ReadyProbe
from ffr.teacher.schema import PatchResult
from ffr.teacher.service import create_app, serve_in_thread
from ffr.train import FFRGRPOConfig, main as ffr_main, redact_argv
from ffr.trainer import FFRTrainer, check_distributed_limits
from r1v.config import GRPOConfig
from r1v.data import load_records
from r1v.rollout import per_token_logps
from r1v.trainer.batch import RolloutBatch
from r1v.trainer.grpo_math import group_advantages
from r1v.trainer.grpo_trainer import Qwen2VLGRPOTrainer
from r1v.vision import VisionConfig

VISION = VisionConfig(max_frames=4, video_max_pixels=3136, video_min_pixels=3136, image_max_pixels=12544,
                      image_min_pixels=3136)
TINY = dict(num_generations=4, max_completion_length=8, per_device_train_batch_size=2, logging_steps=1,
            save_strategy="no", report_to="none", learning_rate=1e-3, use_cpu=True, seed=0, dataloader_num_workers=0,
            log_completions=False)


def digit_reward(completions, **_):
    """Dense toy reward so that GRPO losses are non-zero."""
    return [sum(ch.isdigit() for ch in c) / max(len(c), 1) for c in completions]


class FixingFFRTrainer(FFRTrainer):
    """Test double of the reward only: every patched rollout answers correctly, every first-pass one fails."""

    def score_completions(self, rollouts):
        out = super().score_completions(rollouts)
        patched = torch.tensor([bool(m.get("ffr_patched")) for m in rollouts.prompts.meta], device=out.device)
        out[:, self.reward_names.index("accuracy")] = patched.to(out.dtype)
        return out


class FakeTeacher:
    """Stands in for TeacherClient: answers every item with ``patch`` and records the items."""

    url = "http://fake-teacher"

    def __init__(self, patch):
        self.patch, self.items = patch, []

    def request_patches(self, items):
        self.items += items
        return [PatchResult(sample_id=it.sample_id, status="ok", patch=self.patch) for it in items]

    def snapshot(self, reset=False):
        return {"teacher/requests": 0.0, "teacher/items": float(len(self.items))}

    def ready(self):
        return True

    def probe_ready(self):
        return ReadyProbe(True, 200, "ready")


@pytest.fixture(scope="module")
def records(synthetic_dir):
    return load_records(synthetic_dir / "train.jsonl")


@pytest.fixture(scope="module")
def two_videos(records):
    """A multiple-choice video with evidence, and a video whose evidence is removed (the teacher skips it)."""
    videos = [r for r in records if r["data_type"] == "video" and r.get("evidence")
              and r["problem_type"] == "multiple choice"]
    return [videos[0], {**videos[1], "evidence": None}]


def ffr_args(tmp_path, **kw):
    return FFRGRPOConfig(output_dir=str(tmp_path / "out"), ffr_enable=True, teacher_url="http://127.0.0.1:9", **TINY,
                         **kw)


def test_ffr_off_equals_grpo_trainer(tiny_qwen25_ckpt, records, tmp_path):
    rewards = ["accuracy", "format", digit_reward]
    runs = {}
    for name, cls, args in [
        ("grpo", Qwen2VLGRPOTrainer, GRPOConfig(output_dir=str(tmp_path / "grpo"), max_steps=3, **TINY)),
        ("ffr_off", FFRTrainer, FFRGRPOConfig(output_dir=str(tmp_path / "ffr"), max_steps=3, **TINY)),
    ]:
        trainer = cls(tiny_qwen25_ckpt, rewards, args, records, vision_config=VISION, torch_dtype="float32")
        trainer.train()
        runs[name] = [(h["loss"], h["grad_norm"], h["reward"]) for h in trainer.state.log_history if "loss" in h]
        if name == "ffr_off":
            assert trainer.teacher is None and not trainer.ffr_calls
            assert not any(k.startswith(("ffr/", "teacher/")) for h in trainer.state.log_history for k in h)
    assert len(runs["grpo"]) == 3 and any(loss != 0.0 for loss, _, _ in runs["grpo"])
    assert runs["ffr_off"] == runs["grpo"]


def test_chosen_rollouts_train_under_their_own_prompt(tiny_qwen25_ckpt, synthetic_dir, two_videos, tmp_path):
    with serve_in_thread(create_app(AnnotationBackend(), str(synthetic_dir))) as url:
        args = FFRGRPOConfig(output_dir=str(tmp_path / "out"), ffr_enable=True, teacher_url=url, **TINY)
        trainer = FixingFFRTrainer(tiny_qwen25_ckpt, ["accuracy", "format"], args, two_videos,
                                   vision_config=VISION, torch_dtype="float32")
        rollouts = trainer.generate_and_score(two_videos)
    info, n = rollouts.extras["ffr"], 8
    # Rows 0-3: first video (patched by the annotation teacher, fixed, chosen); rows 4-7: skipped.
    assert info["requested"].tolist() == [True] * n
    assert info["chosen"].tolist() == [True] * 4 + [False] * 4
    assert trainer.ffr_calls == {"generate": 1}
    for i in range(n):
        text = rollouts.prompts.meta[i]["prompt_text"]
        if i < 4:
            assert text.startswith(EVIDENCE_HEADER) and "- Key frames: frames" in text
            assert rollouts.completions_text[i] == info["second_texts"][i]
        else:
            assert EVIDENCE_HEADER not in text and rollouts.completions_text[i] == info["first_texts"][i]
    # Eq. 8 by hand: repaired rollouts earn (1 - 0.3) * 1, unassisted failures 0; plus the format reward.
    fmt = rollouts.rewards[:, 1].cpu()
    expected = torch.tensor([0.7] * 4 + [0.0] * 4) + fmt
    assert torch.allclose(rollouts.extras["reward"].cpu(), expected)
    assert torch.allclose(rollouts.advantages, group_advantages(expected, 4))
    # Eq. 10: the stored reference log-probs of a chosen row are taken under its patched prompt.
    row, mask = 0, rollouts.completion_mask[0].bool()
    ids = rollouts.completion_ids[row:row + 1]
    original = trainer.build_prompts(two_videos[:1])
    with torch.no_grad():
        under = {name: per_token_logps(trainer.ref_model, RolloutBatch(p, ids, rollouts.completion_mask[row:row + 1],
                                                                       [""]).forward_inputs(), ids)[0]
                 for name, p in (("patched", rollouts.prompts.select([row])), ("original", original))}
    stored = rollouts.ref_per_token_logps[row]
    assert torch.allclose(stored[mask], under["patched"][mask], atol=1e-4)
    assert not torch.allclose(stored[mask], under["original"][mask], atol=1e-2)
    state = trainer.metrics.state()
    assert state["ffr/intervention_ratio"] == (8.0, 8) and state["ffr/fix_rate"] == (4.0, 4)
    assert state["ffr/chosen_patched_frac"] == (4.0, 8) and state["ffr/outcome/patched"] == (4.0, 1)


@pytest.mark.parametrize("use_gt", [True, False])
def test_requests_and_no_gt_leak_gate(tiny_qwen25_ckpt, two_videos, tmp_path, use_gt):
    video = two_videos[0]
    gold = video["solution"].removeprefix("<answer>").removesuffix("</answer>")
    leaky = EvidencePatch(error_types=["spatial"], guidance=f"The answer is {gold}.")
    teacher = FakeTeacher(leaky)
    trainer = FFRTrainer(tiny_qwen25_ckpt, ["accuracy", "format"], ffr_args(tmp_path, ffr_use_gt=use_gt),
                         [video], vision_config=VISION, torch_dtype="float32", teacher_client=teacher)
    rollouts = trainer.generate_and_score([video])
    assert len(teacher.items) == 4  # a random student fails all G rollouts
    item = teacher.items[0]
    assert item.gold_answer == (gold if use_gt else None) and item.video_path == video["path"]
    assert item.options == video["options"] and item.evidence == video["evidence"] and len(item.timestamps) == 4
    assert len({it.sample_id for it in teacher.items}) == 4
    state = trainer.metrics.state()
    if use_gt:  # the service's leak gate is trusted with GT; the patch is used
        assert trainer.ffr_calls == {"generate": 1} and state["ffr/outcome/patched"] == (4.0, 1)
    else:  # no-GT: the trainer gates leaks itself, so nothing is regenerated
        assert not trainer.ffr_calls and state["ffr/outcome/leak_local"] == (4.0, 1)
        assert not rollouts.extras["ffr"]["has_patch"].any()


@pytest.mark.parametrize("mode, images", [("dense_frames", 3), ("region_crops", 1)])
def test_extra_visual_context(tiny_qwen25_ckpt, two_videos, tmp_path, mode, images):
    patch = EvidencePatch(error_types=["spatial"], key_frames=[0, 2], guidance="Look at the marked area closely.",
                          spatial_regions=[{"box": [0.1, 0.2, 0.6, 0.7], "coords": "relative"}])
    trainer = FixingFFRTrainer(tiny_qwen25_ckpt, ["accuracy", "format"],
                               ffr_args(tmp_path, ffr_extra_visual=mode, ffr_extra_visual_max_images=3),
                               two_videos[:1], vision_config=VISION, torch_dtype="float32",
                               teacher_client=FakeTeacher(patch))
    rollouts = trainer.generate_and_score(two_videos[:1])
    assert rollouts.extras["ffr"]["chosen"].all()
    assert rollouts.prompts.row_counts["image"] == [images] * 4 and rollouts.prompts.row_counts["video"] == [1] * 4
    assert rollouts.prompts.visual["image_grid_thw"].shape[0] == 4 * images
    assert rollouts.ref_per_token_logps.shape == rollouts.completion_ids.shape


def test_coordination_without_a_process_group():
    assert all_reduce_max(3) == 3 and any_rank(True) and not any_rank(False)
    assert second_round_plan(True) == "generate" and second_round_plan(False) is None
    with pytest.raises(TypeError, match="expected an int"):
        all_reduce_max(0.5)


def test_distributed_limits_are_checked(tmp_path):
    args = ffr_args(tmp_path, ddp_timeout=60, teacher_step_deadline_s=120.0)
    check_distributed_limits(args, num_processes=1, zero_stage=3)  # one process: nothing to desynchronise
    with pytest.raises(ValueError, match=r"^teacher_step_deadline_s \(120.0\) must be below ddp_timeout \(60\)"):
        check_distributed_limits(args, num_processes=2, zero_stage=3)
    args = ffr_args(tmp_path, ffr_extra_visual="dense_frames")
    check_distributed_limits(args, num_processes=8, zero_stage=2)
    with pytest.raises(ValueError, match="^ffr_extra_visual adds image inputs"):
        check_distributed_limits(args, num_processes=8, zero_stage=3)


def test_ffr_off_rejects_non_ffr_config_and_ffr_needs_accuracy(tiny_qwen25_ckpt, records, tmp_path):
    with pytest.raises(TypeError, match="FFRGRPOConfig"):
        FFRTrainer(tiny_qwen25_ckpt, ["accuracy"], GRPOConfig(output_dir=str(tmp_path), **TINY), records)
    with pytest.raises(ValueError, match="reward function named 'accuracy'"):
        FFRTrainer(tiny_qwen25_ckpt, ["format"], ffr_args(tmp_path), records)


def test_entry_point_redacts_key_and_writes_logs(tiny_qwen25_ckpt, synthetic_dir, tmp_path, monkeypatch):
    secret = "s3cret-teacher-token"
    out = tmp_path / "run"
    app = create_app(AnnotationBackend(), str(synthetic_dir), api_key=secret)
    with serve_in_thread(app) as url:
        data = str(synthetic_dir / "train.jsonl")
        argv = ["--config", "local_scripts/configs/demo_tiny.yaml", "--dataset_name", data,
                "--model_name_or_path", tiny_qwen25_ckpt, "--output_dir", str(out), "--max_steps", "2",
                "--save_strategy", "no", "--max_completion_length", "8", "--ffr_enable", "true",
                "--teacher_url", url, "--teacher_api_key", secret, "--ffr_patch_log", "true"]
        monkeypatch.chdir(Path(__file__).parents[1])
        monkeypatch.setattr("sys.argv", ["ffr.train", *argv])
        ffr_main(argv)
        stats = app.state.stats.snapshot()
    assert stats["rejected"] == {} and stats["status"]["ok"] > 0  # the key reached the client
    run_config = (out / "run_config.json").read_text()
    assert secret not in run_config and json.loads(run_config)["FFRGRPOConfig"]["teacher_api_key"] == "***"
    assert secret not in " ".join(json.loads(run_config)["argv"])
    assert (out / "model.safetensors").exists()
    lines = [json.loads(x) for x in (out / "patch_log" / "rank0.jsonl").read_text().splitlines()]
    assert lines and {"step", "sample_id", "student_answer", "patch", "patched_answer", "outcome"} <= set(lines[0])
    assert {x["outcome"] for x in lines} <= {"fixed", "improved", "not_fixed", "no_patch"}
    assert {"question", "options", "problem_type", "gold_answer", "video_path", "timestamps", "student_response",
            "teacher_model", "prompt_version", "tokens_in", "tokens_out"} <= set(lines[0])
    import contextlib
    import io

    from ffr.audit import main as audit_main

    with contextlib.redirect_stdout(io.StringIO()) as tables:  # the audit reads the trainer's log as is
        assert audit_main([str(out / "patch_log" / "rank0.jsonl"), "--out", str(tmp_path / "audit")]) == 0
    assert "| Overall |" in tables.getvalue() and (tmp_path / "audit" / "table5_leakage.csv").exists()
    from ffr.plot import plot_intervention, read_series

    series = read_series(out / "metrics.jsonl")
    assert [s for s, _ in series["intervention"]] == [1, 2] and len(series["accuracy"]) == 2
    png = plot_intervention(out / "metrics.jsonl", tmp_path / "fig4.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_redact_argv_and_plot_errors(tmp_path):
    argv = ["x", "--teacher_api_key", "abc", "--teacher_api_key=def", "--teacher_url", "http://h"]
    assert redact_argv(argv) == ["x", "--teacher_api_key", "***", "--teacher_api_key=***", "--teacher_url", "http://h"]
    from ffr.plot import moving_average, read_series

    assert moving_average([1.0, 3.0, 5.0, 7.0], 2) == [1.0, 2.0, 4.0, 6.0]
    bad = tmp_path / "metrics.jsonl"
    bad.write_text('{"step": 1, "loss": 0.1}\n')
    with pytest.raises(ValueError, match="no line holds 'ffr/intervention_ratio'"):
        read_series(bad)
    bad.write_text('{"step": 1}\n{oops\n')
    with pytest.raises(ValueError, match=r"metrics.jsonl:2: invalid JSON"):
        read_series(bad)


def test_resume_truncates_the_patch_log_to_the_resumed_step(tiny_qwen25_ckpt, synthetic_dir, tmp_path, monkeypatch):
    """Like metrics.jsonl: lines of steps past the checkpoint were written by the killed run, whose
    steps the resumed run asks the teacher about again; they must not be counted twice."""
    out = tmp_path / "run"
    app = create_app(AnnotationBackend(), str(synthetic_dir))
    monkeypatch.chdir(Path(__file__).parents[1])

    def train(*flags):
        argv = ["--config", "local_scripts/configs/demo_tiny.yaml", "--dataset_name",
                str(synthetic_dir / "train.jsonl"), "--model_name_or_path", tiny_qwen25_ckpt, "--output_dir",
                str(out), "--max_completion_length", "8", "--ffr_enable", "true", "--teacher_url", url,
                "--ffr_patch_log", "true", *flags]
        monkeypatch.setattr("sys.argv", ["ffr.train", *argv])
        ffr_main(argv)

    with serve_in_thread(app) as url:
        train("--max_steps", "1", "--save_steps", "1")
        log = out / "patch_log" / "rank0.jsonl"
        first = log.read_text()
        # A line's step is the global step its rollouts were generated at: 0 for the first batch.
        assert first and {json.loads(x)["step"] for x in first.splitlines()} == {0}
        # The killed run had gone on to generate steps 1-2 (a torn last line included), with 2 ranks.
        killed = json.loads(first.splitlines()[0])
        with open(log, "a") as fh:
            for step in (1, 2):
                fh.write(json.dumps({**killed, "step": step, "sample_id": "killed-run"}) + "\n")
            fh.write('{"step": 3, "sam')
        (out / "patch_log" / "rank1.jsonl").write_text(json.dumps({**killed, "step": 1}) + "\n")
        train("--max_steps", "2", "--save_steps", "2", "--resume_from_checkpoint", "true")
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    assert log.read_text().startswith(first)  # resumed at step 1: the lines of step 0 are kept as they were
    assert [x["step"] for x in lines] == sorted(x["step"] for x in lines) and {x["step"] for x in lines} == {0, 1}
    assert all(x["sample_id"] != "killed-run" for x in lines)
    assert (out / "patch_log" / "rank1.jsonl").read_text() == ""  # no rank 1 in this run to redo it
