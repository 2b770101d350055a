"""The tiny student can see: a trivial visual question (which colour fills the screen) is learned
well above chance within a fixed small budget, through the real SFT entry point and the real
held-out generation. This guards the whole visual path (decoding, resizing, placeholders, M-RoPE,
the vision tower) against regressions: with the video unreadable the student stays at chance."""
from __future__ import annotations

import json

import numpy as np
import pytest

from r1v.toy.draw import encode_mp4
from r1v.toy.heldout import HeldOut
from r1v.toy.tiny import TinySize, build_tiny_model, save_tiny_checkpoint
from r1v.toy.world import COLOURS, OPTIONS, ToyWorld, render
from r1v.vision import VisionConfig

WORLD = ToyWorld()
VISION = VisionConfig(fps=2.0, min_frames=4, max_frames=4, video_min_pixels=112 * 112, video_max_pixels=112 * 112)


def _screen_items(root, name: str, n: int, seed: int) -> list[dict]:
    """Whole-screen colour items (multiple choice over the fixed palette order)."""
    rng = np.random.default_rng(seed)
    records = []
    for i in range(n):
        colour = int(rng.integers(0, len(COLOURS)))
        board = np.full((WORLD.grid, WORLD.grid), colour)
        rel = f"videos/{name}_{i:03d}.mp4"
        encode_mp4(render([(board, None)] * WORLD.n_frames, WORLD, rng), root / rel, WORLD.fps)
        records.append({"problem_id": f"{name}-{i}", "problem": "What colour fills the screen?", "data_type": "video",
                        "problem_type": "multiple choice", "options": list(OPTIONS),
                        "solution": f"<answer>{'ABCD'[colour]}</answer>", "path": rel,
                        "process": "<think>Let me look.</think>"})
    return records


@pytest.mark.slow
def test_tiny_student_learns_whole_screen_colour(tmp_path):
    from r1v.sft import main as sft_main
    from transformers import AutoModelForImageTextToText, AutoProcessor

    train = _screen_items(tmp_path, "train", 64, seed=1)
    test = _screen_items(tmp_path, "test", 40, seed=2)
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in train))
    model, processor = build_tiny_model("qwen2_5_vl", seed=0, size=TinySize(hidden=64, layers=2))
    init = save_tiny_checkpoint(model, processor, tmp_path / "init")
    held = HeldOut(test, tmp_path, VISION)
    assert held.evaluate(model, processor)["accuracy"] == 0.0  # a random student writes no answer at all
    sft_main(["--model_name_or_path", str(init), "--dataset_name", str(tmp_path / "train.jsonl"),
              "--output_dir", str(tmp_path / "sft"), "--max_steps", "40", "--per_device_train_batch_size", "16",
              "--learning_rate", "3e-3", "--lr_scheduler_type", "constant", "--warmup_steps", "0",
              "--use_cpu", "true", "--torch_dtype", "float32", "--report_to", "none", "--save_strategy", "no",
              "--disable_tqdm", "true", "--seed", "0", "--fps", "2", "--max_frames", "4", "--min_frames", "4",
              "--video_max_pixels", "12544", "--video_min_pixels", "12544"])
    trained = AutoModelForImageTextToText.from_pretrained(tmp_path / "sft")
    result = held.evaluate(trained, AutoProcessor.from_pretrained(tmp_path / "sft"))
    assert result["format"] == 1.0
    # Chance is 25% (a student that learned the format but not the video sits there).
    assert result["accuracy"] >= 0.8, result
