"""Small pieces the GRPO trainer builds on: dataset wrapper, sampler, timers, DeepSpeed ref model."""
from __future__ import annotations

import contextlib
import copy
import json
import logging
import os
import time
from collections import defaultdict
from typing import Any, Iterator, Optional

import torch
from torch.utils.data import Dataset, Sampler
from transformers import AutoModelForImageTextToText

from r1v.trainer.grpo_math import group_stats

logger = logging.getLogger(__name__)


class RecordDataset(Dataset):
    """A list of Video-R1 records as a map-style dataset (items stay plain dicts)."""

    def __init__(self, records: list[dict]):
        self.records = list(records)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> dict:
        return self.records[i]


def identity_collator(batch: list[dict]) -> list[dict]:
    """Keep a batch as the list of records: prompts are encoded by the trainer's prompt stage."""
    return batch


class RepeatBlockSampler(Sampler[int]):
    """Yield the dataset order in blocks of ``block_size`` indices, each block ``repeats`` times.

    With ``num_iterations`` = mu > 1 one generated batch serves mu optimizer steps. The
    block is the global batch of one optimizer step (per-device batch x world size x
    gradient accumulation), so after DataLoader sharding every rank sees its own
    prompts again mu times in a row and no rank ever sees another rank's prompts.
    ``groups`` (e.g. each record's ``data_type``) makes every block single-group: under
    ZeRO-3 a rank whose batch mixed images and videos would call the vision tower
    twice while another rank calls it once, and their parameter gathers would deadlock.
    The order depends only on ``seed`` and the epoch, so all ranks agree; a group's
    incomplete last block is dropped.
    """

    def __init__(self, num_items: int, block_size: int, repeats: int, shuffle: bool = True, seed: int = 0,
                 groups: Optional[list] = None):
        if block_size < 1 or repeats < 1:
            raise ValueError("block_size and repeats must be >= 1")
        if groups is not None and len(groups) != num_items:
            raise ValueError(f"{len(groups)} group labels for {num_items} items")
        self.num_items, self.block_size, self.repeats = num_items, block_size, repeats
        self.shuffle, self.seed, self.epoch = shuffle, seed, 0
        self.groups = groups

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _blocks(self) -> list[list[int]]:
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(self.num_items, generator=g).tolist() if self.shuffle else list(range(self.num_items))
        by_group: dict = {}
        for i in order:
            by_group.setdefault(None if self.groups is None else self.groups[i], []).append(i)
        blocks = [members[s : s + self.block_size] for members in by_group.values()
                  for s in range(0, len(members) // self.block_size * self.block_size, self.block_size)]
        if self.shuffle and len(by_group) > 1:  # interleave the groups' blocks
            blocks = [blocks[j] for j in torch.randperm(len(blocks), generator=g).tolist()]
        return blocks

    def __iter__(self) -> Iterator[int]:
        for block in self._blocks():
            for _ in range(self.repeats):
                yield from block

    def __len__(self) -> int:
        return len(self._blocks()) * self.block_size * self.repeats


class StageTimer:
    """Wall time per named stage, reported as ``timing_s/<stage>``."""

    def __init__(self):
        self.totals: dict[str, float] = defaultdict(float)

    @contextlib.contextmanager
    def __call__(self, stage: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.totals[stage] += time.perf_counter() - start

    def pop(self) -> dict[str, float]:
        out = {f"timing_s/{k}": v for k, v in self.totals.items()}
        self.totals.clear()
        return out


class SkipMonitor:
    """Stops a run whose prompts are mostly skipped (undecodable media, over-long prompts).

    A generated batch is over the limit when more than ``max_frac`` of its prompts, summed
    over all ranks, were skipped; ``patience`` such batches in a row raise RuntimeError.
    """

    def __init__(self, max_frac: float, patience: int):
        self.max_frac, self.patience, self.streak = max_frac, patience, 0

    def update(self, skipped: int, total: int) -> Optional[str]:
        """Record one batch's global counts; the error message once the run must stop, else None."""
        over = total > 0 and skipped / total > self.max_frac
        self.streak = self.streak + 1 if over else 0
        if self.streak < self.patience:
            return None
        return (f"{skipped} of {total} prompts of the last generated batch were skipped (undecodable media or "
                f"prompt over max_prompt_length; the warnings above name each problem_id), more than "
                f"skipped_prompts_max_frac={self.max_frac} for {self.streak} batches in a row "
                f"(skipped_prompts_patience={self.patience}): the run is training on placeholders")

    def check(self, accelerator, skipped: int, total: int) -> None:
        """:meth:`update` with this rank's counts summed over all ranks (a collective every rank
        must reach), so every rank raises the same RuntimeError at the same batch."""
        counts = torch.tensor([skipped, total], dtype=torch.long, device=accelerator.device)
        if accelerator.num_processes > 1:
            counts = accelerator.reduce(counts, reduction="sum")
        error = self.update(int(counts[0]), int(counts[1]))
        if error:
            raise RuntimeError(error)


class MetricStore:
    """Running (sum, count) per metric name between two logging steps."""

    def __init__(self):
        self.sums: dict[str, float] = defaultdict(float)
        self.counts: dict[str, int] = defaultdict(int)

    def add(self, name: str, value: float, count: int = 1) -> None:
        """Add ``value`` as the mean of ``count`` observations."""
        self.sums[name] += float(value) * count
        self.counts[name] += count

    def add_many(self, values: dict[str, float]) -> None:
        for k, v in values.items():
            self.add(k, v)

    def state(self) -> dict[str, tuple[float, int]]:
        return {k: (self.sums[k], self.counts[k]) for k in self.sums}

    def clear(self) -> None:
        self.sums.clear()
        self.counts.clear()


def completion_ended(completion_ids: torch.Tensor, completion_mask: torch.Tensor, eos_token_ids: list[int]) -> torch.Tensor:
    """(N,) bool: rows whose kept tokens (mask (N, C)) include an end-of-sequence token, i.e. not truncated.

    A row can end exactly at the last column, so the length alone cannot tell a finished row from a cut one.
    """
    eos = torch.tensor(eos_token_ids, device=completion_ids.device)
    return (torch.isin(completion_ids, eos) & completion_mask.bool()).any(dim=1)


def rollout_reward_metrics(reward: torch.Tensor, rewards: torch.Tensor, valid: torch.Tensor,
                           completion_mask: torch.Tensor, group_ids: torch.Tensor,
                           reward_names: list[str], ended: torch.Tensor) -> list[tuple[str, float, int]]:
    """(name, mean, weight) of the reward and length statistics of one generated batch.

    reward: (N,) scalar reward; rewards: (N, F) per function; valid: (N,) bool;
    completion_mask: (N, C); group_ids: (N,) long; ended: (N,) bool, the row produced its
    end-of-sequence token (``completion_ended``); the others count as truncated. Skipped prompts (placeholders,
    valid=False) score 0 by construction: they would drag the reward means down and count as
    zero-std groups, so every statistic excludes them (a group counts only when all its rows are valid).
    NaN rewards (unscored rows, e.g. a failed judge call) are left out of the reward means, and
    a group without two scored rows out of the std statistics.
    """
    out: list[tuple[str, float, int]] = []
    valid = valid.to(reward.device)
    n_valid = int(valid.sum())
    if n_valid:
        for j, name in enumerate(reward_names):
            out.extend(_scored_mean(f"rewards/{name}", rewards[valid, j].float()))
        out.extend(_scored_mean("reward", reward[valid].float()))
        lengths = completion_mask.sum(dim=1).float()[valid]
        out.append(("completion_length", lengths.mean().item(), n_valid))
        truncated = (~ended.to(valid.device)[valid]).float()
        out.append(("completions/truncated_frac", truncated.mean().item(), n_valid))
    inverse, _, std = group_stats(reward, group_ids)
    invalid_rows = torch.zeros(std.numel(), device=reward.device).index_add_(0, inverse, (~valid).float())
    group_valid = (invalid_rows == 0) & ~torch.isnan(std)
    if group_valid.any():
        group_std = std[group_valid]
        n_groups = int(group_valid.sum())
        out.append(("reward_std", group_std.mean().item(), n_groups))
        out.append(("frac_reward_zero_std", (group_std < 1e-6).float().mean().item(), n_groups))
    return out


def _scored_mean(name: str, values: torch.Tensor) -> list[tuple[str, float, int]]:
    """[(name, mean of the non-NaN values, their count)], or [] when every value is NaN."""
    scored = values[~torch.isnan(values)]
    return [(name, scored.mean().item(), scored.numel())] if scored.numel() else []


def completion_samples(meta: list[dict], texts: list[str], reward: torch.Tensor, rewards: torch.Tensor,
                       reward_names: list[str], limit: int) -> list[dict]:
    """The first ``limit`` rollouts as JSON-ready rows: problem id, prompt, completion, scalar
    reward (N,) and each function's reward (N, F) as ``rewards/<name>``."""
    return [
        {"problem_id": m["record"].get("problem_id"), "prompt": m["prompt_text"], "completion": text,
         "reward": float(r), **{f"rewards/{n}": float(rewards[i, j]) for j, n in enumerate(reward_names)}}
        for i, (m, text, r) in enumerate(zip(meta, texts, reward.tolist()))
    ][:limit]


def write_jsonl(path: str, rows: list[dict]) -> None:
    """Write ``rows`` to ``path`` (one JSON object a line), creating its folder."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")


def merge_metric_states(states: list[dict[str, tuple[float, int]]]) -> dict[str, float]:
    """Means over all ranks' (sum, count) states; keys may differ between ranks."""
    sums: dict[str, float] = defaultdict(float)
    counts: dict[str, int] = defaultdict(int)
    for state in states:
        for k, (s, c) in state.items():
            sums[k] += s
            counts[k] += c
    return {k: sums[k] / counts[k] for k in sums if counts[k] > 0}


def prepare_deepspeed_reference(model: torch.nn.Module, accelerator) -> Any:
    """Wrap a frozen reference model in a DeepSpeed inference engine matching the run's ZeRO stage.

    Under ZeRO-3 the reference is sharded like the policy (it would not fit otherwise on
    a 7B run); under other stages it is kept whole (stage 0), with no optimizer.
    """
    import deepspeed

    ds_config = copy.deepcopy(accelerator.state.deepspeed_plugin.deepspeed_config)
    stage = ds_config.get("zero_optimization", {}).get("stage", 0)
    ds_config.pop("optimizer", None)
    ds_config.pop("scheduler", None)
    if stage != 3:
        ds_config["zero_optimization"] = {"stage": 0}
    engine, *_ = deepspeed.initialize(model=model, config=ds_config)
    engine.eval()
    return engine


def gather_object_list(accelerator, obj: Any) -> list[Any]:
    """All ranks' ``obj`` (collective: every rank must call it)."""
    if accelerator.num_processes == 1:
        return [obj]
    from accelerate.utils import gather_object

    return gather_object([obj])


_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32, "auto": "auto"}


def load_student(path: str, torch_dtype: str = "bfloat16", attn_implementation: str = "sdpa"):
    """Load a Qwen2.5-VL / Qwen3-VL checkpoint by folder or hub id (GRPO, T-GRPO and SFT students)."""
    if torch_dtype not in _DTYPES:
        raise ValueError(f"torch_dtype must be one of {sorted(_DTYPES)}, got {torch_dtype!r}")
    return AutoModelForImageTextToText.from_pretrained(
        path, dtype=_DTYPES[torch_dtype], attn_implementation=attn_implementation
    )


def prepare_student(model, torch_dtype: str, attn_implementation: str, freeze_vision_tower: bool,
                    activation_checkpointing: bool):
    """(model, model id): load a path / hub id, freeze the vision tower if asked, no KV cache under
    activation checkpointing. Shared by the GRPO, T-GRPO and SFT trainers."""
    model_id = model if isinstance(model, str) else model.config._name_or_path
    if isinstance(model, str):
        model = load_student(model, torch_dtype, attn_implementation)
    if freeze_vision_tower:
        model.model.visual.requires_grad_(False)
    if activation_checkpointing:
        model.config.use_cache = False
    return model, model_id
