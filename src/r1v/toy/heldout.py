"""Greedy held-out accuracy of a student on Video-R1 records, scored by the project's own reward.

``HeldOut(records, data_dir, vision_cfg)`` decodes every item's frames once; ``evaluate(model,
processor)`` then encodes the prompts exactly as the trainer does (``r1v.prompts`` +
``r1v.inputs.encode_prompts``), decodes greedily with explicit settings (a checkpoint's saved
generation defaults are never merged in) and scores each completion with
``r1v.rewards.accuracy_reward`` — the same answer module the RL rewards and the benchmark scorers
use. Used by the toy experiment to measure the warm start and every run's progress.
"""
from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import torch
from transformers import GenerationConfig

from r1v.answers import format_ok
from r1v.inputs import encode_prompts, patch_factor_of
from r1v.prompts import build_prompt_text
from r1v.rewards import accuracy_reward
from r1v.rollout import SamplingParams
from r1v.vision import VisionConfig, load_video

logger = logging.getLogger(__name__)


class HeldOut:
    """A fixed evaluation set: records plus their decoded clips (decoded once, reused every evaluation)."""

    def __init__(self, records: list[dict], data_dir: str | Path, vision_cfg: VisionConfig):
        if not records:
            raise ValueError("held-out set is empty")
        self.records = records
        self.vision_cfg = vision_cfg
        self.clips = [load_video(Path(data_dir) / rec["path"], vision_cfg) for rec in records]
        self.texts = [build_prompt_text(rec) for rec in records]

    @torch.no_grad()
    def evaluate(self, model, processor, batch_size: int = 50, max_new_tokens: int = 32) -> dict:
        """Greedy accuracy: ``{"accuracy", "format", "n", "by_scenario": {scenario: accuracy},
        "generated_tokens"}``; the model's train/eval mode is restored."""
        cfg = replace(self.vision_cfg, patch_factor=patch_factor_of(processor))
        tokenizer = processor.tokenizer
        eos = [tokenizer.convert_tokens_to_ids("<|im_end|>"), tokenizer.pad_token_id]
        gen = SamplingParams(max_new_tokens=max_new_tokens, do_sample=False).to_generation_config(
            tokenizer.pad_token_id, eos, [])
        device = next(model.parameters()).device
        was_training, saved_config = model.training, model.generation_config
        # transformers fills unset decoding fields from the model's own generation config (the real
        # checkpoints' near-greedy sampling defaults): keep only its token ids while evaluating.
        model.generation_config = GenerationConfig(
            **{k: getattr(saved_config, k, None) for k in ("bos_token_id", "eos_token_id", "pad_token_id")})
        model.eval()
        scores, formats, tokens = [], [], 0
        try:
            for start in range(0, len(self.records), batch_size):
                end = start + batch_size
                inputs = encode_prompts(processor, self.texts[start:end], self.clips[start:end], vision_cfg=cfg)
                inputs = {k: v.to(device) for k, v in inputs.items()}
                out = model.generate(**inputs, generation_config=gen)[:, inputs["input_ids"].shape[1]:]
                tokens += int((out != tokenizer.pad_token_id).sum())
                for rec, text in zip(self.records[start:end], tokenizer.batch_decode(out, skip_special_tokens=True)):
                    scores.append(accuracy_reward(text, rec["solution"], rec["problem_type"]))
                    formats.append(float(format_ok(text)))
        finally:
            model.train(was_training)
            model.generation_config = saved_config
        by = defaultdict(list)
        for rec, s in zip(self.records, scores):
            by[rec.get("data_source", "all")].append(s)
        return {
            "accuracy": sum(scores) / len(scores),
            "format": sum(formats) / len(formats),
            "n": len(scores),
            "by_scenario": {k.split("/")[-1]: sum(v) / len(v) for k, v in sorted(by.items())},
            "generated_tokens": tokens,
        }
