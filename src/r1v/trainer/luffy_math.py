"""The maths of LUFFY (Yan et al., 2025, "Learning to Reason under Off-Policy Guidance"), on tensors.

Facts from the released code (ElliottYan/LUFFY, ``luffy/verl/verl/mix_src/``):

* advantages (``mix_trainer.py`` / ``mix_core_alg.py``): estimator ``grpo`` standardises each
  prompt's reward over its mixed group (on-policy rollouts and teacher traces together);
  ``grpo_split`` takes the group's mean and std from its on-policy rows only and applies them
  to every row, a zero std replaced by 1 (so a lone correct trace in an all-wrong group gets
  advantage 1, not 1 / eps). ``grpo_use_std`` switches the division by the std on or off.
* per-token loss (``compute_token_on_off_policy_loss``): on-policy tokens -A * rho with
  rho = pi_theta / pi_old, clipped as PPO unless ``loss_remove_clip``; off-policy (prefix)
  tokens -A * f(pi_theta(o_t)) with f(p) = p / (p + gamma), gamma = 0.1 (``p_div_p_0.1``):
  the teacher's probability is taken as 1, so the ratio is pi_theta itself, never clipped.

:class:`LuffySurrogate` expresses that loss as pieces of ``r1v.trainer.grpo_math.Surrogate``.
"""
from __future__ import annotations

from typing import Optional

import torch

from r1v.trainer.batch import RowSource
from r1v.trainer.grpo_math import RowContext, Surrogate, group_stats

ADVANTAGE_MODES = ("mixed", "split")


def shaped_probability(p: torch.Tensor, gamma: float) -> torch.Tensor:
    """LUFFY's policy shaping f(p) = p / (p + gamma) (paper Eq. 7), elementwise.

    Its derivative gamma / (p + gamma)^2 is largest at small p: a low-probability teacher
    token gets a larger gradient than under the plain ratio, which is the paper's point.
    """
    return p / (p + gamma)


def luffy_advantages(reward: torch.Tensor, group_ids: torch.Tensor, on_policy: torch.Tensor, mode: str = "mixed",
                     use_std: bool = True, eps: float = 1e-4) -> torch.Tensor:
    """Advantages (N,) of LUFFY's groups (on-policy rollouts plus teacher traces of one prompt).

    reward: (N,) scalar rewards; group_ids: (N,) long, one id per prompt; on_policy: (N,) bool,
    True for rows sampled from the current policy.
    ``mode='mixed'`` (LUFFY's ``grpo``; paper Eq. 3): mean and unbiased std over every row of
    the group, A = (r - mean) / (std + eps) - with ``use_std`` this is exactly the base
    trainer's group advantage, equal rewards giving 0.
    ``mode='split'`` (``grpo_split``): mean and std over the group's on-policy rows only
    (at least 2 per group), applied to all its rows; a zero std is replaced by 1, as the
    released code does. ``use_std=False`` (the released script's ``grpo_use_std=False``):
    A = r - mean, no division.
    """
    if mode not in ADVANTAGE_MODES:
        raise ValueError(f"unknown LUFFY advantage mode {mode!r} (expected one of {ADVANTAGE_MODES})")
    if reward.dim() != 1 or group_ids.shape != reward.shape or on_policy.shape != reward.shape:
        raise ValueError(f"reward, group_ids and on_policy must be 1-D of one length, got {tuple(reward.shape)}, "
                         f"{tuple(group_ids.shape)}, {tuple(on_policy.shape)}")
    ids = group_ids.to(reward.device)
    on = on_policy.to(reward.device).bool()
    if mode == "mixed":
        if int(torch.unique(ids, return_counts=True)[1].min()) < 2:
            raise ValueError("every group needs at least 2 rows for a group advantage")
        inverse, mean_k, std_k = group_stats(reward, ids)
        mean, std = mean_k[inverse], std_k[inverse]
        return (reward - mean) / (std + eps) if use_std else reward - mean
    groups, inverse = torch.unique(ids, return_inverse=True)
    on_ids = ids[on]
    counts = torch.stack([(on_ids == g).sum() for g in groups]) if groups.numel() else torch.zeros(0)
    if groups.numel() and int(counts.min()) < 2:
        raise ValueError("split advantages need at least 2 on-policy rows in every group")
    on_inverse, mean_k, std_k = group_stats(reward[on], on_ids)
    # group_stats orders groups by ascending id, as torch.unique above does: index k is group k.
    std_k = torch.where(std_k == 0, torch.ones_like(std_k), std_k)
    mean, std = mean_k[inverse], std_k[inverse]
    return (reward - mean) / (std + eps) if use_std else reward - mean


class LuffySurrogate(Surrogate):
    """The per-token objective of LUFFY: GRPO's pieces on every row but teacher traces.

    On TEACHER rows (``rows.source``): ratio = pi_theta / pi_teacher with the teacher's
    log-probs read from ``rows.behaviour_logps`` (LUFFY takes the teacher probability as 1,
    so the trainer stores 0 there and the ratio is pi_theta); shape = f(ratio) =
    ratio / (ratio + gamma); clip = none. The objective min(s * A, c * A) is then
    A * f(pi_theta). Other rows: the base ratio and identity shaping, clipped to
    [1 - epsilon_low, 1 + epsilon_high] unless ``clip_on_policy`` is False (the released
    script's ``loss_remove_clip=True``). All pieces map (N, C) tensors to (N, C).
    """

    def __init__(self, epsilon_low: float, epsilon_high: float, gamma: float = 0.1, clip_on_policy: bool = True):
        super().__init__(epsilon_low, epsilon_high)
        self.gamma = gamma
        self.clip_on_policy = clip_on_policy

    @staticmethod
    def teacher_rows(rows: RowContext) -> Optional[torch.Tensor]:
        """(N, 1) bool mask of teacher-trace rows, or None when no source is given."""
        if rows.source is None:
            return None
        return (rows.source == int(RowSource.TEACHER)).unsqueeze(1)

    def ratio(self, per_token_logps: torch.Tensor, old_per_token_logps: Optional[torch.Tensor],
              rows: RowContext) -> torch.Tensor:
        base = super().ratio(per_token_logps, old_per_token_logps, rows)
        teacher = self.teacher_rows(rows)
        if teacher is None or not bool(teacher.any()):
            return base
        if rows.behaviour_logps is None:
            raise ValueError("teacher rows need behaviour_logps (0 where the teacher probability is taken as 1)")
        behaviour = rows.behaviour_logps.to(per_token_logps.device, per_token_logps.dtype)
        return torch.where(teacher, torch.exp(per_token_logps - behaviour), base)

    def shape(self, ratio: torch.Tensor, rows: RowContext) -> torch.Tensor:
        teacher = self.teacher_rows(rows)
        if teacher is None:
            return ratio
        return torch.where(teacher, shaped_probability(ratio, self.gamma), ratio)

    def clip(self, shaped: torch.Tensor, rows: RowContext) -> torch.Tensor:
        if not self.clip_on_policy:
            return shaped
        clipped = super().clip(shaped, rows)
        teacher = self.teacher_rows(rows)
        return clipped if teacher is None else torch.where(teacher, shaped, clipped)


def token_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Entropy (N, C) of the categorical distributions of ``logits`` (N, C, V), in fp32, row by row
    so the (C, V) fp32 softmax never exists for the whole batch at once."""
    out = []
    for row in logits:
        logp = torch.log_softmax(row.float(), dim=-1)
        out.append(-(logp.exp() * logp).sum(dim=-1))
    return torch.stack(out)
