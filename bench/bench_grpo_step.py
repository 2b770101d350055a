"""Time the GRPO trainer's stages on one device: tiny shapes (CPU smoke) or Qwen2.5-VL-7B shapes (GPU).

    python bench/bench_grpo_step.py --shapes 7b --steps 3 --out results.json

The model has random weights (no download): the tiny checkpoint's tokenizer and processor,
with the text/vision sizes of Qwen2.5-VL-7B when ``--shapes 7b``. Data are synthetic videos
long enough for ``--frames`` frames at 2 fps, at 128*28*28 pixels per frame (the paper's
setting). Reports the trainer's own ``timing_s/*`` per step, tokens, and peak GPU memory.
Optimizer: SGD, so the numbers are the rollout / log-prob / backward cost, not AdamW state.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor

from r1v.config import GRPOConfig
from r1v.data import load_records
from r1v.toy.synthetic import generate_dataset
from r1v.toy.tiny import build_tiny_checkpoint
from r1v.trainer.grpo_trainer import Qwen2VLGRPOTrainer
from r1v.vision import VisionConfig

# Qwen2.5-VL-7B-Instruct sizes (config.json of the release).
SEVEN_B_TEXT = dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28, head_dim=128,
                    num_key_value_heads=4, vocab_size=152064,
                    rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": [16, 24, 24]})
SEVEN_B_VISION = dict(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, out_hidden_size=3584,
                      window_size=112, fullatt_block_indexes=[7, 15, 23, 31])


def build_model(ckpt: Path, shapes: str, dtype: torch.dtype, device: str):
    """Random-weight model: the tiny checkpoint as is, or its config with 7B sizes."""
    if shapes == "tiny":
        return AutoModelForImageTextToText.from_pretrained(ckpt, dtype=dtype).to(device)
    config = AutoConfig.from_pretrained(ckpt)
    d = config.to_dict()
    d["text_config"].update(SEVEN_B_TEXT)
    d["text_config"].pop("layer_types", None)  # re-derived for 28 layers
    d["vision_config"].update(SEVEN_B_VISION)
    config = type(config)(**d)
    with torch.device(device):
        return AutoModelForImageTextToText.from_config(config, dtype=dtype)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shapes", choices=["tiny", "7b"], default="tiny")
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--num-generations", type=int, default=8)
    p.add_argument("--max-new-tokens", type=int, default=128)
    p.add_argument("--beta", type=float, default=0.04)
    p.add_argument("--out", default=None, help="write the results as JSON here")
    args = p.parse_args(argv)
    cuda = torch.cuda.is_available()
    device, dtype = ("cuda", torch.bfloat16) if cuda else ("cpu", torch.float32)
    work = Path(tempfile.mkdtemp(prefix="bench_grpo_"))
    ckpt = build_tiny_checkpoint(work / "ckpt", arch="qwen2_5_vl")
    seconds = args.frames / 2 + 0.5  # 2 fps sampling needs frames/2 seconds of video
    data = generate_dataset(work / "data", n_items=4 * args.steps, seed=0, duration_s=(seconds, seconds + 1),
                            include_images=False, include_other_types=False)
    records = load_records(data)
    t0 = time.perf_counter()
    model = build_model(ckpt, args.shapes, dtype, device)
    ref = build_model(ckpt, args.shapes, dtype, device) if args.beta else None
    build_s = time.perf_counter() - t0
    cfg = GRPOConfig(output_dir=str(work / "out"), num_generations=args.num_generations,
                     max_completion_length=args.max_new_tokens, per_device_train_batch_size=1, max_steps=args.steps,
                     logging_steps=1, save_strategy="no", report_to="none", learning_rate=1e-6, optim="sgd",
                     beta=args.beta, bf16=cuda, use_cpu=not cuda, activation_checkpointing=args.shapes == "7b",
                     log_completions=False)
    vision = VisionConfig(max_frames=args.frames)
    trainer = Qwen2VLGRPOTrainer(model, ["accuracy", "format"], cfg, records, ref_model=ref,
                                 processing_class=AutoProcessor.from_pretrained(ckpt), vision_config=vision)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    trainer.train()
    wall = time.perf_counter() - t0
    steps = [h for h in trainer.state.log_history if "loss" in h]
    result = {
        "shapes": args.shapes, "device": torch.cuda.get_device_name() if cuda else "cpu",
        "params_b": sum(p.numel() for p in model.parameters()) / 1e9, "model_build_s": build_s,
        "train_wall_s": wall, "num_generations": args.num_generations, "max_new_tokens": args.max_new_tokens,
        "frames": args.frames, "peak_gpu_gb": torch.cuda.max_memory_allocated() / 2**30 if cuda else None,
        "per_step": [{k: v for k, v in h.items() if k.startswith("timing_s/") or k in ("step", "completion_length")}
                     for h in steps],
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
