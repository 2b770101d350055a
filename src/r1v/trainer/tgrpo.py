"""``TGRPOTrainer``: Video-R1's T-GRPO (temporal GRPO) as two stage overrides of the GRPO trainer.

Video-R1 (Feng et al., 2025; ``src/r1-v/src/open_r1/trainer/grpo_trainer.py``) contrasts rollouts
on ordered frames with rollouts on shuffled frames, so a video question is rewarded more when
the model does better with the frames in order:

``generate_completions``: the base G rollouts per prompt, then, for video prompts, one more
``generate`` call with the same prompts whose frames are randomly permuted (a permutation other
than the identity; timestamps and fps unchanged, so only the content order changes), sampling
``shuffled_num_generations`` (Video-R1: G // 2) rollouts each. The shuffled rollouts are scored
with the same reward functions and only their accuracy is kept: they never enter the loss.

``combine_rewards``: the base weighted sum, plus
  * temporal bonus (``temporal_bonus``, Video-R1 0.3), per prompt: when the mean accuracy of its G
    ordered rollouts is >= ``temporal_ratio`` (0.8) x the mean accuracy of its shuffled rollouts,
    every ordered rollout with accuracy > ``accuracy_threshold`` (0.1) gets the bonus, added to
    its accuracy reward (so it is scaled by the accuracy's reward weight). Video-R1 runs one
    prompt per device and takes these means over the device's batch; here they are per prompt,
    which is the same for one prompt per device. Image prompts get no temporal bonus.
  * length control (``len_control``, Video-R1's option), per prompt: when more than one rollout
    has accuracy > ``accuracy_threshold``, each of those whose completion length (tokens, end of
    turn included) lies in [``len_control_min_tokens``, ``len_control_max_tokens``] (320, 512)
    gets ``len_control_bonus`` (0.2). Applies to image and video prompts. Accuracies here are
    the plain ones, without the temporal bonus, as in Video-R1.

Distributed rule (ZeRO-3): every global batch is single-modality (the base sampler groups by
``data_type``), so all ranks agree whether the shuffled round happens. The ranks still agree
explicitly (a max over ranks of "I have video prompts"): if any rank has them, a rank without
any makes a 1-token dummy ``generate`` carrying a tiny video (Video-R1 makes such a dummy call
for image batches), so the number of ``generate`` calls matches on every rank for any sampler.
"""
from __future__ import annotations

import dataclasses
import logging
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Optional

import torch

from r1v.config import GRPOConfig
from r1v.rollout import generate_rollouts
from r1v.trainer.batch import PromptBatch, RolloutBatch
from r1v.trainer.grpo_trainer import Qwen2VLGRPOTrainer
from r1v.vision import VideoClip

logger = logging.getLogger(__name__)


@dataclass
class TGRPOArguments:
    """T-GRPO switches (Video-R1 names ``temporal`` and ``len_control``; the constants are Video-R1's)."""

    temporal: bool = field(
        default=True,
        metadata={"help": "T-GRPO: extra rollouts on shuffled frames for video prompts and the temporal bonus "
                          "(Video-R1 --temporal). False: plain GRPO rollouts."},
    )
    temporal_bonus: float = field(
        default=0.3, metadata={"help": "Added to the accuracy reward of correct ordered rollouts when the rule holds."}
    )
    temporal_ratio: float = field(
        default=0.8,
        metadata={"help": "The rule: mean ordered accuracy >= temporal_ratio x mean shuffled accuracy (per prompt)."},
    )
    shuffled_num_generations: Optional[int] = field(
        default=None, metadata={"help": "Rollouts per prompt on shuffled frames (default: num_generations // 2)."}
    )
    accuracy_threshold: float = field(
        default=0.1,
        metadata={"help": "A rollout counts as correct for both bonuses when its accuracy reward exceeds this."},
    )
    len_control: bool = field(
        default=False,
        metadata={"help": "Video-R1's length-control bonus: correct rollouts of a moderate length earn "
                          "len_control_bonus when more than one rollout of the group is correct."},
    )
    len_control_bonus: float = field(default=0.2, metadata={"help": "Length-control bonus (Video-R1: 0.2)."})
    len_control_min_tokens: int = field(
        default=320, metadata={"help": "Shortest completion (tokens) that earns the length bonus (Video-R1: 320)."}
    )
    len_control_max_tokens: int = field(
        default=512, metadata={"help": "Longest completion (tokens) that earns the length bonus (Video-R1: 512)."}
    )

    def __post_init__(self) -> None:
        if self.shuffled_num_generations is None:
            self.shuffled_num_generations = max(1, getattr(self, "num_generations", 2) // 2)
        if self.shuffled_num_generations < 1:
            raise ValueError(f"shuffled_num_generations: must be >= 1 (got {self.shuffled_num_generations})")
        for name in ("temporal_bonus", "temporal_ratio", "len_control_bonus"):
            if not 0 <= getattr(self, name) < math.inf:  # also rejects NaN and inf
                raise ValueError(f"{name}: must be a finite number >= 0 (got {getattr(self, name)!r})")
        # Accuracy rewards lie in [0, 1] and "correct" is accuracy > threshold: a threshold outside
        # [0, 1) (or NaN, which every comparison fails) would make every or no rollout correct.
        if not 0 <= self.accuracy_threshold < 1:
            raise ValueError(f"accuracy_threshold: must lie in [0, 1) (got {self.accuracy_threshold!r})")
        if not 0 <= self.len_control_min_tokens <= self.len_control_max_tokens:
            raise ValueError(f"len_control_min_tokens/len_control_max_tokens: need 0 <= min <= max "
                             f"(got {self.len_control_min_tokens}, {self.len_control_max_tokens})")
        parent = getattr(super(), "__post_init__", None)
        if parent is not None:
            parent()


@dataclass
class TGRPOConfig(TGRPOArguments, GRPOConfig):
    """``GRPOConfig`` plus the T-GRPO fields (``TGRPOArguments`` first: it validates, then chains)."""


def temporal_bonus(ordered_acc: torch.Tensor, shuffled_acc: torch.Tensor, bonus: float = 0.3, ratio: float = 0.8,
                   threshold: float = 0.1) -> tuple[torch.Tensor, torch.Tensor]:
    """Video-R1's temporal bonus per prompt.

    ordered_acc: (B, G) accuracy of the ordered rollouts; shuffled_acc: (B, Gs) of the shuffled ones.
    Returns (bonus (B, G) float, applied (B,) bool): applied[b] = mean(ordered_acc[b]) >=
    ratio * mean(shuffled_acc[b]); bonus[b, i] = ``bonus`` where applied[b] and ordered_acc[b, i] > threshold.
    """
    applied = ordered_acc.float().mean(dim=1) >= ratio * shuffled_acc.float().mean(dim=1)
    earns = (ordered_acc > threshold) & applied.unsqueeze(1)
    return bonus * earns.float(), applied


def length_bonus(acc: torch.Tensor, lengths: torch.Tensor, bonus: float = 0.2, min_tokens: int = 320,
                 max_tokens: int = 512, threshold: float = 0.1) -> torch.Tensor:
    """Video-R1's length-control bonus per prompt: acc, lengths (B, G) -> bonus (B, G).

    A rollout earns ``bonus`` when its accuracy > threshold, min_tokens <= length <= max_tokens,
    and more than one rollout of its group has accuracy > threshold.
    """
    correct = acc > threshold
    several = correct.sum(dim=1, keepdim=True) > 1
    in_range = (lengths >= min_tokens) & (lengths <= max_tokens)
    return bonus * (correct & in_range & several).float()


def shuffle_clip(clip: VideoClip, generator: torch.Generator) -> VideoClip:
    """The clip with its frames in a random order other than the original (timestamps, fps kept)."""
    n = clip.frames.shape[0]
    if n < 2:
        raise ValueError(f"video {clip.path}: cannot shuffle {n} frame(s)")
    perm = torch.randperm(n, generator=generator)
    while torch.equal(perm, torch.arange(n)):  # the identity would make the contrast meaningless
        perm = torch.randperm(n, generator=generator)
    return dataclasses.replace(clip, frames=clip.frames[perm])


class TGRPOTrainer(Qwen2VLGRPOTrainer):
    """Qwen2VLGRPOTrainer with T-GRPO; ``args`` must mix in ``TGRPOArguments`` (``TGRPOConfig``).

    Needs a reward function named "accuracy" when ``temporal`` or ``len_control`` is on.
    """

    def __init__(self, model, reward_funcs, args, train_dataset, **kwargs):
        missing = [f.name for f in dataclasses.fields(TGRPOArguments) if not hasattr(args, f.name)]
        if missing:
            raise TypeError(f"TGRPOTrainer needs a config with the T-GRPO fields (TGRPOConfig); missing {missing[:3]}")
        names = self._resolve_rewards(reward_funcs)[1]
        if (args.temporal or args.len_control) and "accuracy" not in names:
            raise ValueError(f"temporal / len_control need a reward function named 'accuracy'; got {names}")
        super().__init__(model, reward_funcs, args, train_dataset, **kwargs)
        self._acc = names.index("accuracy") if "accuracy" in names else None
        self._shuffled_sampling = dataclasses.replace(self.sampling, num_return_sequences=args.shuffled_num_generations)
        self.tgrpo_calls: Counter[str] = Counter()  # shuffled-round generate calls: 'shuffled' / 'dummy'

    # ------------------------------------------------------------------ stage 2: generate
    def generate_completions(self, prompts: PromptBatch) -> RolloutBatch:
        """The ordered rollouts (B*G rows); for video prompts the shuffled accuracies go to ``extras['tgrpo']``."""
        ordered = super().generate_completions(prompts)
        if not self.args.temporal:
            return ordered
        rows = [i for i, m in enumerate(prompts.meta) if isinstance(m.get("visual"), VideoClip)]
        if not self.any_rank(bool(rows)):
            return ordered
        if not rows:
            self.tgrpo_calls["dummy"] += 1
            self.run_dummy_generate()
            return ordered
        shuffled = self.shuffled_rollouts(prompts, rows)
        acc = shuffled.rewards[:, self._acc].float().cpu().view(len(rows), -1)
        ordered.extras["tgrpo"] = {"video_rows": rows, "shuffled_acc": acc}
        return ordered

    def any_rank(self, flag: bool) -> bool:
        """True when ``flag`` holds on some rank (collective: every rank calls it once per generated batch)."""
        if self.accelerator.num_processes == 1:
            return flag
        t = torch.tensor([int(flag)], dtype=torch.long, device=self.accelerator.device)
        return bool(self.accelerator.gather(t).max().item())

    def shuffled_rollouts(self, prompts: PromptBatch, rows: list[int]) -> RolloutBatch:
        """``shuffled_num_generations`` scored rollouts per video prompt in ``rows``, frames permuted (one generate)."""
        # Own stream per (seed, generated batch, rank): reproducible, and the sampling RNG is left alone.
        gen = torch.Generator().manual_seed(
            (self.args.seed * 1_000_003 + self._micro_step) * 1_009 + self.accelerator.process_index)
        metas = [prompts.meta[i] for i in rows]
        visuals = [shuffle_clip(m["visual"], gen) for m in metas]
        batch = self.encode([m["prompt_text"] for m in metas], visuals,
                            [{**m, "visual": v, "tgrpo_shuffled": True} for m, v in zip(metas, visuals)])
        self.tgrpo_calls["shuffled"] += 1
        ids = generate_rollouts(self.model_wrapped, self.accelerator, batch.model_inputs(), self._shuffled_sampling,
                                self.pad_token_id, self.eos_token_ids, self.suppress_ids,
                                gather_weights=self.args.ds3_gather_for_generation)
        per_prompt = self._shuffled_sampling.num_return_sequences
        expanded = batch.select(torch.arange(len(rows)).repeat_interleave(per_prompt))
        shuffled = self.make_rollouts(expanded, ids, group_ids=torch.tensor(rows).repeat_interleave(per_prompt))
        shuffled.rewards = self.score_completions(shuffled)
        return shuffled

    # ------------------------------------------------------------------ stage 3: reward
    def combine_rewards(self, rollouts: RolloutBatch, columns: Optional[list[int]] = None) -> torch.Tensor:
        """Weighted sum (base) + accuracy weight x temporal bonus + length bonus; see the module docstring.

        The bonuses are paid on the G on-policy rollouts of each group (``on_policy_rows``; group k
        in ascending id order is prompt row k, which ``extras['tgrpo']['video_rows']`` indexes);
        other rows get the base sum only. Both bonuses belong to the accuracy reward, so they are
        left out when ``columns`` is given without it.
        """
        reward = super().combine_rewards(rollouts, columns)
        if self._acc is None or (columns is not None and self._acc not in columns):
            return reward
        g = self.num_generations
        idx = rollouts.on_policy_rows(g)
        acc = rollouts.rewards[:, self._acc].float().cpu()[idx]
        extra = torch.zeros_like(acc)
        info = rollouts.extras.get("tgrpo")
        if info is not None:
            rows = info["video_rows"]
            bonus, applied = temporal_bonus(acc[rows], info["shuffled_acc"], self.args.temporal_bonus,
                                            self.args.temporal_ratio, self.args.accuracy_threshold)
            extra[rows] += float(self.reward_weights[self._acc]) * bonus
            # Metrics over the prompts that were not skipped (a placeholder scores 0 ordered and shuffled).
            valid = rollouts.valid.cpu()[idx].all(dim=1)[rows]
            n = int(valid.sum())
            if n:
                self.metrics.add("tgrpo/temporal_applied", applied[valid].float().mean().item(), n)
                self.metrics.add("tgrpo/ordered_accuracy", acc[rows][valid].mean().item(), n)
                self.metrics.add("tgrpo/shuffled_accuracy", info["shuffled_acc"][valid].mean().item(), n)
                self.metrics.add("tgrpo/temporal_bonus", bonus[valid].mean().item(), n)
        if self.args.len_control:
            lengths = rollouts.completion_mask.sum(dim=1).cpu()[idx]
            bonus = length_bonus(acc, lengths, self.args.len_control_bonus, self.args.len_control_min_tokens,
                                 self.args.len_control_max_tokens, self.args.accuracy_threshold)
            extra += bonus
            self.metrics.add("tgrpo/len_bonus", bonus.mean().item())
        per_row = torch.zeros(reward.shape[0])
        per_row[idx.flatten()] = extra.flatten()
        return reward + per_row.to(reward.device)
