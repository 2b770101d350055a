"""SFT (``python -m r1v.sft``): assistant-only labels, the GRPO prompt layout, and a run that lowers the loss."""
import json
import math
import shutil

import pytest
import torch
from transformers import AutoProcessor

from r1v import sft
from r1v.inputs import encode_prompts
from r1v.prompts import build_prompt_text
from r1v.sft_data import IGNORE_INDEX, SFTCollator, sft_target
from r1v.vision import VisionConfig, load_video

VISION = VisionConfig(max_frames=4, video_max_pixels=3136, video_min_pixels=3136, image_max_pixels=12544)
VISION_FLAGS = ["--max_frames", "4", "--video_max_pixels", "3136", "--video_min_pixels", "3136", "--max_pixels", "12544"]


def with_process(rec: dict, i: int) -> dict:
    """A Video-R1 CoT record: the synthetic item plus a short reasoning ``process``."""
    return {**rec, "process": f"<think>Let me think. Item {i}, wait.</think>"}


def sft_records(synthetic_dir, kinds=("video", "image")) -> list[dict]:
    rows = [json.loads(line) for line in (synthetic_dir / "train.jsonl").read_text().splitlines()]
    return [with_process(r, i) for i, r in enumerate(rows) if r["data_type"] in kinds]


def absolute(records, synthetic_dir):
    return [{**r, "path": str(synthetic_dir / r["path"])} for r in records]


@pytest.fixture(scope="module")
def processor(tiny_qwen25_ckpt):
    return AutoProcessor.from_pretrained(tiny_qwen25_ckpt)


def test_target_is_process_newline_solution_and_bad_records_are_named():
    rec = {"problem_id": 7, "process": " <think>a</think>\n", "solution": "<answer>B</answer>"}
    assert sft_target(rec) == "<think>a</think>\n<answer>B</answer>"
    assert sft_target({**rec, "solution": "B"}) == "<think>a</think>\n<answer>B</answer>"
    with pytest.raises(ValueError, match="problem_id=7.*process"):
        sft_target({**rec, "process": None})
    with pytest.raises(ValueError, match="problem_id=7.*<think>"):
        sft_target({**rec, "process": "no tags"})


def test_labels_cover_exactly_the_assistant_tokens(processor, synthetic_dir):
    videos = absolute(sft_records(synthetic_dir, ("video",)), synthetic_dir)
    images = absolute(sft_records(synthetic_dir, ("image",)), synthetic_dir)
    # Targets of different lengths, so both left (prompt) and right (target) padding occur.
    batch_records = [videos[0], {**videos[1], "process": "<think>" + "Hmm, let me look again. " * 6 + "</think>"}]
    collator = SFTCollator(processor, VISION)
    for records in (batch_records, images[:2]):
        batch = collator(records)
        ids, labels, mm, att = batch["input_ids"], batch["labels"], batch["mm_token_type_ids"], batch["attention_mask"]
        assert labels.shape == ids.shape == mm.shape == att.shape
        eos = processor.tokenizer.convert_tokens_to_ids("<|im_end|>")
        for i, rec in enumerate(records):
            target = processor.tokenizer(sft_target(rec), add_special_tokens=False)["input_ids"] + [eos]
            cols = (labels[i] != IGNORE_INDEX).nonzero().flatten()
            # One contiguous span, equal to the target tokens, right after the generation prompt.
            assert cols.tolist() == list(range(int(cols[0]), int(cols[0]) + len(target)))
            assert labels[i, cols].tolist() == ids[i, cols].tolist() == target
            assert processor.tokenizer.decode(ids[i, : int(cols[0])]).endswith("<|im_start|>assistant\n")
            # Everything else is -100: vision tokens, prompt text, both paddings.
            rest = torch.ones_like(labels[i], dtype=torch.bool)
            rest[cols] = False
            assert (labels[i, rest] == IGNORE_INDEX).all()
            assert (mm[i, cols] == 0).all() and (att[i, cols] == 1).all()
        assert ((mm != 0) <= (labels == IGNORE_INDEX)).all() and ((att == 0) <= (labels == IGNORE_INDEX)).all()
        assert (mm != 0).any() and (att == 0).any()
        assert batch["sft_stats"] == {"skipped_media": 0, "skipped_too_long": 0}
    assert "pixel_values_videos" in collator(batch_records) and "pixel_values" in collator(images[:2])


def test_prompt_part_is_the_grpo_prompt(processor, synthetic_dir):
    """The SFT prompt tokens equal what GRPO encodes for the same record (text, frames, template)."""
    rec = absolute(sft_records(synthetic_dir, ("video",)), synthetic_dir)[0]
    batch = SFTCollator(processor, VISION)([rec])
    grpo = encode_prompts(processor, [build_prompt_text(rec)], [load_video(rec["path"], VISION)], vision_cfg=VISION)
    p = grpo["input_ids"].shape[1]
    assert batch["input_ids"][0, :p].tolist() == grpo["input_ids"][0].tolist()
    assert batch["mm_token_type_ids"][0, :p].tolist() == grpo["mm_token_type_ids"][0].tolist()
    assert torch.equal(batch["pixel_values_videos"], grpo["pixel_values_videos"])
    assert torch.equal(batch["second_per_grid_ts"], grpo["second_per_grid_ts"])


def test_broken_media_and_too_long_rows_carry_no_loss(processor, synthetic_dir, tmp_path):
    videos = absolute(sft_records(synthetic_dir, ("video",)), synthetic_dir)
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video")
    records = [{**videos[0], "path": str(bad)}, videos[1]]
    batch = SFTCollator(processor, VISION)(records)
    assert batch["sft_stats"] == {"skipped_media": 1, "skipped_too_long": 0}
    assert (batch["labels"][0] == IGNORE_INDEX).all() and (batch["labels"][1] != IGNORE_INDEX).any()
    assert batch["video_grid_thw"].shape[0] == 2  # the placeholder still runs the vision tower
    long_row = SFTCollator(processor, VISION, max_length=60)(videos[:1])
    assert long_row["sft_stats"]["skipped_too_long"] == 1 and (long_row["labels"] == IGNORE_INDEX).all()


def test_cli_rejects_records_without_process(tiny_qwen25_ckpt, synthetic_dir, tmp_path):
    data = tmp_path / "nocot.jsonl"
    rows = [json.loads(line) for line in (synthetic_dir / "train.jsonl").read_text().splitlines()][:2]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    argv = ["--model_name_or_path", tiny_qwen25_ckpt, "--dataset_name", str(data), "--data_root", str(synthetic_dir),
            "--output_dir", str(tmp_path / "out"), "--use_cpu", "true", "--report_to", "none"]
    with pytest.raises(ValueError, match=f"problem_id={rows[0]['problem_id']!r}.*process"):
        sft.main(argv)

def test_cli_exits_2_naming_the_problem(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        sft.parse_args(["--dataset_name", "x.jsonl", "--output_dir", str(tmp_path)])
    assert exc.value.code == 2 and "--model_name_or_path is required" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        sft.parse_args(["--model_name_or_path", "m", "--max_lenght", "5"])
    assert "max_lenght" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        sft.parse_args(["--model_name_or_path", "m", "--output_dir", str(tmp_path), "--max_length", "0"])
    assert "max_length" in capsys.readouterr().err


@pytest.mark.parametrize("flags, match", [(["--max_steps", "0"], "max_steps: must be a positive number"),
                                          (["--max_steps", "-3"], "max_steps: must be a positive number"),
                                          (["--num_train_epochs", "0"], "num_train_epochs: must be > 0"),
                                          (["--num_train_epochs", "nan"], "num_train_epochs: must be > 0")])
def test_cli_refuses_a_run_that_trains_nothing(tmp_path, capsys, flags, match):
    """The GRPO rule: max_steps 0 used to run one step at lr 0, save and exit 0."""
    with pytest.raises(SystemExit) as exc:
        sft.parse_args(["--model_name_or_path", "m", "--dataset_name", "x.jsonl", "--output_dir", str(tmp_path),
                        "--use_cpu", "true", *flags])
    assert exc.value.code == 2 and match in capsys.readouterr().err


def test_sft_run_lowers_the_loss(tiny_qwen25_ckpt, synthetic_dir, tmp_path):
    """24 steps on a fixed set of 4 videos (batches of 2): the loss falls well below its start."""
    data = tmp_path / "cot.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in sft_records(synthetic_dir, ("video",))[:4]))
    out = tmp_path / "out"
    argv = ["--model_name_or_path", tiny_qwen25_ckpt, "--dataset_name", str(data), "--data_root", str(synthetic_dir),
            "--output_dir", str(out), "--max_steps", "24", "--per_device_train_batch_size", "2",
            "--learning_rate", "3e-3", "--lr_scheduler_type", "constant", "--logging_steps", "1",
            "--save_strategy", "no", "--report_to", "none", "--use_cpu", "true", "--torch_dtype", "float32",
            "--seed", "0", "--dataloader_num_workers", "0", *VISION_FLAGS]
    trainer = sft.run(sft.parse_args(argv))
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert len(losses) == 24 and all(math.isfinite(x) for x in losses)
    first, last = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
    print(f"SFT loss {first:.3f} -> {last:.3f}")
    assert last < 0.5 * first, losses
    logged = [h for h in trainer.state.log_history if "sft/target_tokens" in h]
    assert logged and logged[0]["data/skipped_media"] == 0.0
    config = json.loads((out / "run_config.json").read_text())
    assert config["SFTConfig"]["max_steps"] == 24 and config["SFTScriptArguments"]["max_frames"] == 4
    assert (out / "model.safetensors").exists() and (out / "metrics.jsonl").exists()


def test_sft_checkpoints_are_atomic_and_resume_skips_a_torn_one(tiny_qwen25_ckpt, synthetic_dir, tmp_path,
                                                                  monkeypatch, caplog):
    """SFT saves like GRPO: under .tmp-checkpoint-N, renamed once complete; resume takes the newest complete one."""
    from r1v.trainer import checkpoints

    data = tmp_path / "cot.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in sft_records(synthetic_dir, ("video",))[:4]))
    out = tmp_path / "out"

    def argv(steps, *flags):
        return ["--model_name_or_path", tiny_qwen25_ckpt, "--dataset_name", str(data), "--data_root",
                str(synthetic_dir), "--output_dir", str(out), "--max_steps", str(steps), "--save_steps", str(steps),
                "--per_device_train_batch_size", "2", "--report_to", "none", "--use_cpu", "true", "--torch_dtype",
                "float32", "--seed", "0", "--dataloader_num_workers", "0", *VISION_FLAGS, *flags]

    published, publish = [], checkpoints.publish_checkpoint
    monkeypatch.setattr(checkpoints, "publish_checkpoint", lambda staging, final: (published.append((staging, final)),
                                                                                    publish(staging, final)))
    sft.run(sft.parse_args(argv(1)))
    assert published == [(str(out / ".tmp-checkpoint-1" / "checkpoint-1"), str(out / "checkpoint-1"))]
    assert sorted(p.name for p in out.iterdir() if "checkpoint" in p.name) == ["checkpoint-1"]  # no staging left
    # A run killed while saving step 2 without the atomic save: checkpoint-2 with torn weights.
    torn = out / "checkpoint-2"
    shutil.copytree(out / "checkpoint-1", torn)
    weights = torn / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    trainer = sft.run(sft.parse_args(argv(2, "--resume_from_checkpoint", "true")))
    assert trainer.state.global_step == 2 and "not resuming from" in caplog.text and str(torn) in caplog.text
    assert checkpoints.checkpoint_problem(str(out / "checkpoint-2"), need_optimizer=True) is None


def test_loss_equals_the_models_own_label_loss(tiny_qwen25_ckpt, synthetic_dir, tmp_path):
    """The logits_to_keep slice gives the same mean token NLL as the full forward with ``labels``."""
    from r1v.trainer.sft_trainer import Qwen2VLSFTTrainer

    records = absolute(sft_records(synthetic_dir, ("video",))[:2], synthetic_dir)
    args = sft.SFTConfig(output_dir=str(tmp_path), use_cpu=True, report_to="none", max_steps=1)
    trainer = Qwen2VLSFTTrainer(tiny_qwen25_ckpt, args, records, vision_config=VISION, torch_dtype="float32")
    batch = trainer.data_collator(records)
    with torch.no_grad():
        ours = trainer.compute_loss(trainer.model, batch)
        inputs = {k: v for k, v in batch.items() if k != "sft_stats"}
        reference = trainer.model(**inputs).loss
    assert ours.item() == pytest.approx(reference.item(), rel=1e-5)
