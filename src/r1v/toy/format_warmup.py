"""Format warm-up for tiny random-weight checkpoints: teach the answer format, not the task.

A random-weight student never writes ``<think>..</think>\\n<answer>..</answer>``, so every GRPO
reward is 0, every group advantage is 0 and the tiny demo's training has no signal at all.
``warm_up_format`` turns the student into a (very weak) SFT model in ~12 s of one CPU thread: teacher
forcing on prompts built exactly as the GRPO trainer builds them (``r1v.prompts.build_prompt_text``
+ ``r1v.inputs.encode_prompts`` on synthetic items generated on the fly, sampled and sized by the
same ``VisionConfig`` policy), with the loss on the response tokens only.

Each target response is ``<think>{phrase}</think>\\n<answer>{answer}</answer><|im_end|>`` where
the phrase is a short thought taken from the R1 prompt's own suggestions ("let me think", "wait",
...) and the answer is deliberately *uninformed*: a uniformly random option letter of the item
for multiple choice, and for the other problem types the gold answer of a random warm-up item of
the same type (the type's answer marginal). So the student learns the format and the answer
shape, and its accuracy starts near chance: GRPO then sees rewards that vary within a group.

Targets are kept within ``max_response_tokens`` (end-of-turn token included) so that a sampled
response fits the demo's completion budget instead of being cut before ``</answer>``.
Deterministic for a given (model weights, seed); the caller's random streams are left untouched.
"""
from __future__ import annotations

import json
import logging
import random
import tempfile
import time
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import torch

from r1v.inputs import encode_prompts, patch_factor_of
from r1v.prompts import build_prompt_text
from r1v.rollout import per_token_logps
from r1v.toy.synthetic import generate_dataset
from r1v.trainer.batch import PromptBatch, RolloutBatch
from r1v.vision import VisionConfig, load_image, load_video

logger = logging.getLogger(__name__)

__all__ = ["THINK_PHRASES", "WARMUP_VISION", "DATA_SEED_OFFSET", "warm_up_format", "format_target"]

# Short thoughts in the wording the R1 reasoning prompt asks for; short so the whole response
# fits a 24-token completion budget with the tiny tokenizer.
THINK_PHRASES = (
    "Let me think.", "Hmm, wait.", "Oh, I see.", "Let's break it down.", "Let me look again.",
    "Hmm, let me think.", "Wait, let me check.", "Let me see.",
)  # fmt: skip

# The tiny demo's sampling policy (local_scripts/configs/demo_tiny.yaml): 4 frames of 56x56 at
# 2 fps, images of 56x56 to 112x112. Small visuals keep the warm-up fast on one CPU thread.
WARMUP_VISION = VisionConfig(
    fps=2.0, min_frames=4, max_frames=4, video_min_pixels=3136, video_max_pixels=3136,
    image_min_pixels=3136, image_max_pixels=12544,
)  # fmt: skip

# Warm-up items are generated with seed + this offset, away from the small seeds datasets use,
# so the student is not warmed up on the very items it is later trained or tested on.
DATA_SEED_OFFSET = 10_000


def format_target(phrase: str, answer: str) -> str:
    """The response text taught by the warm-up (without the end-of-turn token)."""
    return f"<think>{phrase}</think>\n<answer>{answer}</answer>"


def _load_items(data_dir: Path, n_items: int, seed: int, cfg: VisionConfig) -> tuple[list[dict], list]:
    """Generate ``n_items`` synthetic items in ``data_dir``; return (records, decoded visuals)."""
    # 64x48 frames at 4 fps: the cheapest clips the generator allows; they are resized to the
    # sampling policy's size anyway, exactly as the trainer resizes the real 112x84 ones.
    jsonl = generate_dataset(data_dir, n_items=n_items, seed=seed, fps=4, duration_s=(2.0, 3.0), size=(64, 48))
    records, visuals = [], []
    with open(jsonl, encoding="utf-8") as fh:
        for line in fh:
            rec = json.loads(line)
            path = data_dir / rec["path"]
            visuals.append(load_image(path, cfg) if rec["data_type"] == "image" else load_video(path, cfg))
            records.append(rec)
    return records, visuals


def _answer_of(solution: str) -> str:
    """The text inside ``<answer>..</answer>`` of a synthetic record's solution."""
    return solution.removeprefix("<answer>").removesuffix("</answer>")


class _TargetSampler:
    """Draws (phrase, answer) targets that fit the token budget; see the module docstring."""

    def __init__(self, records: list[dict], tokenizer, max_response_tokens: int, rng: random.Random):
        self.tokenizer, self.budget, self.rng = tokenizer, max_response_tokens, rng
        self._lengths: dict[str, int] = {}
        shortest = min(THINK_PHRASES, key=self.n_tokens_phrase)
        pools: dict[str, set[str]] = defaultdict(set)
        for rec in records:
            if rec["problem_type"] != "multiple choice":
                answer = _answer_of(rec["solution"])
                if self.n_tokens(format_target(shortest, answer)) <= self.budget:
                    pools[rec["problem_type"]].add(answer)
        # Sorted: set order depends on string hashing, which varies between processes.
        self.pools = {t: sorted(p) for t, p in pools.items()}

    def n_tokens_phrase(self, phrase: str) -> int:
        """Tokens of a response with ``phrase`` and an empty answer."""
        return self.n_tokens(format_target(phrase, ""))

    def n_tokens(self, text: str) -> int:
        """Tokens of a response text plus its end-of-turn token (memoised: called every draw)."""
        if text not in self._lengths:
            self._lengths[text] = len(self.tokenizer(text, add_special_tokens=False)["input_ids"]) + 1
        return self._lengths[text]

    def usable(self, rec: dict) -> bool:
        if rec["problem_type"] == "multiple choice":
            return bool(rec.get("options"))
        return bool(self.pools.get(rec["problem_type"]))

    def __call__(self, rec: dict) -> str:
        if rec["problem_type"] == "multiple choice":
            answer = self.rng.choice([opt.split(".", 1)[0].strip() for opt in rec["options"]])
        else:
            answer = self.rng.choice(self.pools[rec["problem_type"]])
        phrases = [p for p in THINK_PHRASES if self.n_tokens(format_target(p, answer)) <= self.budget]
        return format_target(self.rng.choice(phrases), answer)


def _completion_batch(tokenizer, texts: list[str], eos_id: int, pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded completion ids (B, C) ending in ``eos_id``, and their 0/1 mask (B, C)."""
    rows = [tokenizer(t, add_special_tokens=False)["input_ids"] + [eos_id] for t in texts]
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        mask[i, : len(row)] = 1
    return ids, mask


def _drop_empty_visuals(inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Remove a modality's tensors when the selected rows hold none of its visuals.

    ``PromptBatch.select`` keeps zero-row tensors for such a modality; the vision tower fails
    on an empty grid, so they must not reach the forward.
    """
    out = dict(inputs)
    modalities = {"video_grid_thw": ("pixel_values_videos", "second_per_grid_ts"), "image_grid_thw": ("pixel_values",)}
    for grid, keys in modalities.items():
        if grid in out and out[grid].shape[0] == 0:
            for key in (grid, *keys):
                out.pop(key, None)
    return out


def _trim_left_padding(prompts: PromptBatch) -> PromptBatch:
    """Drop leading columns that are padding in every row (selected rows keep the full batch width)."""
    used = prompts.attention_mask.bool().any(dim=0).nonzero()
    first = int(used[0]) if len(used) else 0
    if first == 0:
        return prompts
    return replace(prompts, input_ids=prompts.input_ids[:, first:], attention_mask=prompts.attention_mask[:, first:],
                   mm_token_type_ids=prompts.mm_token_type_ids[:, first:])


def _train_steps(model, prompts: PromptBatch, records, sampler, tokenizer, steps, batch_size, lr, rng) -> list[float]:
    """``steps`` AdamW updates of the mean response-token NLL; returns the loss of each step."""
    eos_id, pad_id = tokenizer.convert_tokens_to_ids("<|im_end|>"), tokenizer.pad_token_id
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    losses = []
    order: list[int] = []
    for _ in range(steps):
        if len(order) < batch_size:  # epochs over a fresh shuffle: every item is seen equally often
            order += rng.sample(range(len(records)), len(records))
        rows, order = order[:batch_size], order[batch_size:]
        ids, mask = _completion_batch(tokenizer, [sampler(records[r]) for r in rows], eos_id, pad_id)
        # The trainer's own prompt+completion layout (left-padded prompt, right-padded completion).
        batch = RolloutBatch(_trim_left_padding(prompts.select(rows)), ids, mask, [])
        logps = per_token_logps(model, _drop_empty_visuals(batch.forward_inputs()), ids)
        loss = -(logps * mask).sum() / mask.sum()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    return losses


def _prepare(processor, n_items: int, seed: int, cfg: VisionConfig, max_response_tokens: int, rng: random.Random):
    """Generate and encode the warm-up items: returns (records, PromptBatch of their prompts, sampler).

    Items whose problem type has no answer within the token budget are left out.
    """
    with tempfile.TemporaryDirectory(prefix="r1v-warmup-") as tmp:
        records, visuals = _load_items(Path(tmp), n_items, seed + DATA_SEED_OFFSET, cfg)
    sampler = _TargetSampler(records, processor.tokenizer, max_response_tokens, rng)
    keep = [i for i, rec in enumerate(records) if sampler.usable(rec)]
    if not keep:
        raise ValueError(f"no warm-up item has an answer within max_response_tokens={max_response_tokens}")
    records, visuals = [records[i] for i in keep], [visuals[i] for i in keep]
    # One encode for all items, as the trainer encodes a batch; steps then select rows of it.
    encoded = encode_prompts(processor, [build_prompt_text(r) for r in records], visuals, vision_cfg=cfg)
    is_image = [rec["data_type"] == "image" for rec in records]
    counts = {"video": [int(not x) for x in is_image], "image": [int(x) for x in is_image]}
    prompts = PromptBatch.from_encoded(encoded, counts, [], processor.tokenizer.pad_token_id)
    return records, prompts, sampler


def warm_up_format(
    model,
    processor,
    steps: int = 120,
    seed: int = 0,
    n_items: int = 38,
    batch_size: int = 8,
    lr: float = 4e-3,
    max_response_tokens: int = 24,
    vision_cfg: VisionConfig | None = None,
) -> dict[str, float]:
    """Teach ``model`` (in place) the ``<think>..</think>\\n<answer>..</answer>`` format.

    Args:
        model: a Qwen2.5-VL / Qwen3-VL ``...ForConditionalGeneration`` (fp32, on CPU or a device).
        processor: its processor (tokenizer with ``<|im_end|>``, chat template, visual processors).
        steps: AdamW updates; each uses ``batch_size`` items with freshly drawn targets.
        seed: seeds the synthetic items (``seed + DATA_SEED_OFFSET``), the targets and the order.
        n_items: synthetic items generated for the warm-up (38 = two cycles of every scenario).
        lr: AdamW learning rate (no weight decay, no schedule).
        max_response_tokens: budget of a target response, end-of-turn token included.
        vision_cfg: sampling policy of the visuals; defaults to ``WARMUP_VISION`` with the
            processor's patch factor.

    Returns:
        stats: ``steps``, ``n_items`` (usable items), ``loss_first``, ``loss_last`` (mean of the
        last 10 steps), ``seconds`` / ``cpu_seconds`` (wall / process CPU time, data generation
        included).
    """
    if steps < 1 or batch_size < 1 or n_items < 1:
        raise ValueError(f"warm_up_format needs steps, batch_size, n_items >= 1; got {steps}, {batch_size}, {n_items}")
    start, cpu_start = time.perf_counter(), time.process_time()
    cfg = replace(vision_cfg or WARMUP_VISION, patch_factor=patch_factor_of(processor))
    rng = random.Random(seed)
    records, prompts, sampler = _prepare(processor, n_items, seed, cfg, max_response_tokens, rng)
    prompts = prompts.to(next(model.parameters()).device)
    tokenizer = processor.tokenizer

    was_training = model.training
    # The format does not depend on what is seen, so the vision tower stays as built: no
    # backward through it (about a quarter of a step's time) and its random features unchanged.
    frozen = [p for name, p in model.named_parameters() if ".visual." in f".{name}" and p.requires_grad]
    model.train()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        try:
            for p in frozen:
                p.requires_grad_(False)
            losses = _train_steps(model, prompts, records, sampler, tokenizer, steps, batch_size, lr, rng)
        finally:
            for p in frozen:
                p.requires_grad_(True)
            model.train(was_training)
    stats = {
        "steps": float(steps),
        "n_items": float(len(records)),
        "loss_first": losses[0],
        "loss_last": sum(losses[-10:]) / len(losses[-10:]),
        "seconds": time.perf_counter() - start,
        "cpu_seconds": time.process_time() - cpu_start,
    }
    logger.info("format warm-up: %d steps on %d items, loss %.3f -> %.3f in %.1f s", steps, len(records),
                stats["loss_first"], stats["loss_last"], stats["seconds"])
    return stats
