"""Rollout generation with HF ``generate``, safe under DeepSpeed ZeRO-3.

Under ZeRO-3 every forward all-gathers parameter shards, so all ranks must call
``generate`` the same number of times. ``gather_weights=True`` gathers the full
weights once per generation phase and drops ZeRO's per-module hooks while decoding
(no all-gather per layer and token); with several ranks ``synced_gpus=True`` is
always set, so ranks that finish early keep stepping forwards until the slowest
rank is done (DeepSpeed's start-of-forward hook stays active even when gathered).
Sampling parameters are always passed explicitly: Qwen checkpoints ship a
near-greedy ``generation_config`` that would silently kill rollout diversity.
"""
from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import Iterator

import torch
from transformers import GenerationConfig

logger = logging.getLogger(__name__)


@dataclass
class SamplingParams:
    """Explicit decoding settings for rollouts (TRL / R1-V names)."""

    max_new_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    repetition_penalty: float = 1.0
    num_return_sequences: int = 1
    do_sample: bool = True

    def to_generation_config(self, pad_token_id: int, eos_token_ids: list[int], suppress_ids: list[int]) -> GenerationConfig:
        return GenerationConfig(
            do_sample=self.do_sample,
            temperature=self.temperature if self.do_sample else None,
            top_p=self.top_p if self.do_sample else None,
            top_k=self.top_k if self.do_sample else None,
            repetition_penalty=self.repetition_penalty,
            max_new_tokens=self.max_new_tokens,
            num_return_sequences=self.num_return_sequences,
            pad_token_id=pad_token_id,
            eos_token_id=eos_token_ids,
            suppress_tokens=list(suppress_ids) or None,
        )


def is_deepspeed_zero3(model) -> bool:
    """True when ``model`` is a DeepSpeed engine running ZeRO stage 3."""
    return hasattr(model, "zero_optimization_stage") and model.zero_optimization_stage() == 3


@contextlib.contextmanager
def unwrapped_for_generation(model, accelerator, gather_weights: bool = True) -> Iterator[torch.nn.Module]:
    """Yield the bare model for ``generate``; under ZeRO-3 optionally gather its weights once.

    Entering this context is itself a collective under ZeRO-3: every rank must enter it
    the same number of times.
    """
    unwrapped = accelerator.unwrap_model(model)
    if is_deepspeed_zero3(model) and gather_weights:
        from deepspeed.runtime.zero.stage3 import unwrap_model_for_generation

        with unwrap_model_for_generation(model):
            yield unwrapped
    else:
        yield unwrapped


def generate_rollouts(
    model,
    accelerator,
    prompt_inputs: dict[str, torch.Tensor],
    params: SamplingParams,
    pad_token_id: int,
    eos_token_ids: list[int],
    suppress_ids: list[int],
    gather_weights: bool = True,
) -> torch.Tensor:
    """Sample ``params.num_return_sequences`` completions per prompt row.

    prompt_inputs: model kwargs of R left-padded prompts (input_ids (R, L), visual tensors...).
    Returns completion ids (R * num_return_sequences, C), prompt-major (group-major), padded
    with ``pad_token_id`` after each row's end.
    """
    gen_config = params.to_generation_config(pad_token_id, eos_token_ids, suppress_ids)
    zero3 = is_deepspeed_zero3(model)
    with unwrapped_for_generation(model, accelerator, gather_weights) as unwrapped:
        was_training = unwrapped.training
        unwrapped.eval()
        with torch.no_grad():
            out = unwrapped.generate(
                **prompt_inputs,
                generation_config=gen_config,
                # Ranks must step together under multi-rank ZeRO-3 even with gathered weights: DeepSpeed
                # keeps its start-of-forward hook then, which may run a collective on every forward, so a
                # rank that finished early (or a 1-token dummy) must keep making forwards until all are done.
                synced_gpus=zero3 and accelerator.num_processes > 1,
            )
        if was_training:
            unwrapped.train()
    prompt_len = prompt_inputs["input_ids"].shape[1]
    return out[:, prompt_len:]


def dummy_generate(model, accelerator, dummy_inputs: dict[str, torch.Tensor], pad_token_id: int,
                   eos_token_ids: list[int], suppress_ids: list[int], gather_weights: bool = True) -> None:
    """One-token ``generate`` whose only purpose is to match another rank's generate call.

    ``dummy_inputs`` must carry a tiny video or image for a VL model: a text-only dummy
    skips the vision tower, whose ZeRO-3 gather would then run on other ranks only.
    """
    params = SamplingParams(max_new_tokens=1, do_sample=False)
    generate_rollouts(model, accelerator, dummy_inputs, params, pad_token_id, eos_token_ids, suppress_ids, gather_weights)


def per_token_logps(model, forward_inputs: dict[str, torch.Tensor], completion_ids: torch.Tensor,
                    temperature: float = 1.0) -> torch.Tensor:
    """log p of each completion token under ``model``: returns (N, C) fp32.

    forward_inputs: prompt+completion kwargs (``RolloutBatch.forward_inputs``);
    completion_ids: (N, C). Only the last C+1 positions' logits are materialised
    (``logits_to_keep``): a 152k vocabulary over thousands of prompt tokens in fp32
    would be gigabytes. Logits are divided by the sampling temperature so the
    log-probs are those of the distribution the rollouts were drawn from (a no-op at
    the paper's temperature 1.0).
    """
    from r1v.trainer.grpo_math import selective_log_softmax

    completion_len = completion_ids.shape[1]
    out = model(**forward_inputs, logits_to_keep=completion_len + 1, use_cache=False)
    logits = out.logits[:, :-1, :]  # position t predicts token t+1
    return selective_log_softmax(logits / temperature, completion_ids)
