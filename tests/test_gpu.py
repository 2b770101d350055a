"""GPU tier: the same trainer and evaluation code paths on CUDA in bf16 (skipped without CUDA)."""
import math

import pytest
import torch

from r1v.config import GRPOConfig
from r1v.data import load_records
from r1v.trainer.grpo_trainer import Qwen2VLGRPOTrainer
from r1v.vision import VisionConfig

pytestmark = pytest.mark.gpu


def test_grpo_steps_on_cuda_bf16(tiny_qwen25_ckpt, synthetic_dir, tmp_path):
    args = GRPOConfig(output_dir=str(tmp_path), num_generations=4, max_completion_length=16, per_device_train_batch_size=2,
                      max_steps=2, logging_steps=1, save_strategy="no", report_to="none", learning_rate=1e-3,
                      beta=0.04, bf16=True, seed=0)
    vision = VisionConfig(max_frames=4, video_max_pixels=3136, video_min_pixels=3136)
    records = [r for r in load_records(synthetic_dir / "train.jsonl") if r["data_type"] == "video"]
    trainer = Qwen2VLGRPOTrainer(tiny_qwen25_ckpt, ["accuracy", "format"], args, records, vision_config=vision,
                                 torch_dtype="bfloat16")
    assert next(trainer.model.parameters()).device.type == "cuda"
    trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert len(losses) == 2 and all(math.isfinite(x) for x in losses)
    assert torch.cuda.max_memory_allocated() > 0
