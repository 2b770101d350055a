"""Pure tensor math of GRPO (paper Eq. 1-2, 9-11), shared by the GRPO and FFR trainers.

Every function here is side-effect free and works on CPU tensors, so the loss can
be checked against hand-computed values. Shapes use N = number of rollouts in the
batch (B prompts x G generations, group-major: rows g*G .. g*G+G-1 are one group)
and C = completion length (padded).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch
import torch.distributed as dist

LOSS_TYPES = ("grpo", "bnpo", "dr_grpo")


def completion_mask_from_eos(completion_ids: torch.Tensor, eos_token_ids: list[int]) -> torch.Tensor:
    """Mask (N, C) that keeps tokens up to and including the first EOS of each row.

    Rows without an EOS keep all C tokens (truncated rollouts still train, as in R1-V).
    """
    is_eos = torch.zeros_like(completion_ids, dtype=torch.bool)
    for eos in eos_token_ids:
        is_eos |= completion_ids == eos
    n, c = completion_ids.shape
    first_eos = torch.full((n,), c, dtype=torch.long, device=completion_ids.device)
    has_eos = is_eos.any(dim=1)
    first_eos[has_eos] = is_eos.int().argmax(dim=1)[has_eos]
    positions = torch.arange(c, device=completion_ids.device).expand(n, c)
    return (positions <= first_eos.unsqueeze(1)).to(torch.long)


def selective_log_softmax(logits: torch.Tensor, token_ids: torch.Tensor) -> torch.Tensor:
    """log p(token) for each position: logits (N, C, V), token_ids (N, C) -> (N, C) in fp32.

    Rows are processed one at a time so the (C, V) fp32 log-softmax of a 152k vocabulary
    never exists for the whole batch at once.
    """
    out = []
    for row_logits, row_ids in zip(logits, token_ids):
        logp = torch.log_softmax(row_logits.float(), dim=-1)
        out.append(logp.gather(-1, row_ids.unsqueeze(-1)).squeeze(-1))
    return torch.stack(out)


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum of ``t`` over every rank of the default process group (``t`` itself when there is
    none or it has one rank). Returns a new tensor; every rank must call it (a collective)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return t.clone()
    out = t.clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out


def group_advantages(rewards: torch.Tensor, group_size: int, scope: str = "group", eps: float = 1e-4,
                     reduce_sum: Optional[Callable[[torch.Tensor], torch.Tensor]] = None) -> torch.Tensor:
    """Standardised advantages A_i = (r_i - mean) / (std + eps) (paper Eq. 2 / Eq. 9).

    rewards: (N,) with N = B * group_size, group-major. ``scope='group'`` standardises
    within each group of G (R1-V); ``'batch'`` uses the statistics of the global batch:
    ``reduce_sum`` (e.g. :func:`all_reduce_sum`, a collective every rank must reach)
    sums the count, the sum and then the squared deviations over ranks, so every rank
    gets the mean and std of all ranks' rewards (TRL's batch scaling); None means this
    process holds the whole batch. std is the unbiased estimator, as in R1-V. Equal
    rewards get zero advantages (never NaN).
    """
    if rewards.dim() != 1 or rewards.numel() % group_size:
        raise ValueError(f"rewards must be 1-D with a multiple of {group_size} entries, got {tuple(rewards.shape)}")
    if scope == "group":
        grouped = rewards.view(-1, group_size)
        mean = grouped.mean(dim=1).repeat_interleave(group_size)
        std = grouped.std(dim=1).repeat_interleave(group_size)
    elif scope == "batch":
        mean, std = _global_mean_std(rewards, reduce_sum or (lambda t: t))
    else:
        raise ValueError(f"unknown advantage scope {scope!r} (expected 'group' or 'batch')")
    return (rewards - mean) / (std + eps)


def _global_mean_std(rewards: torch.Tensor, reduce_sum: Callable[[torch.Tensor], torch.Tensor]):
    """(mean, unbiased std) of the rewards of all ranks, as 0-d tensors of ``rewards.dtype``.

    Two passes (sum, then squared deviations from the global mean) in float64, not the
    one-pass sum of squares, which cancels catastrophically when the std is small.
    """
    x = rewards.double()
    count_sum = reduce_sum(torch.stack([x.new_tensor(float(x.numel())), x.sum()]))
    count, total = count_sum[0], count_sum[1]
    mean = total / count
    sq_dev = reduce_sum(((x - mean) ** 2).sum().reshape(1))[0]
    std = torch.sqrt(sq_dev / (count - 1))  # count >= group_size >= 2 (GRPOConfig checks it)
    return mean.to(rewards.dtype), std.to(rewards.dtype)


def k3_kl(per_token_logps: torch.Tensor, ref_per_token_logps: torch.Tensor) -> torch.Tensor:
    """Per-token k3 estimator of KL(pi_theta || pi_ref): exp(d) - d - 1, d = ref - logp (Eq. 11)."""
    d = ref_per_token_logps - per_token_logps
    return torch.exp(d) - d - 1


@dataclass
class LossOutput:
    """Loss and the statistics the trainer logs; all scalars are detached except ``loss``."""

    loss: torch.Tensor
    kl: torch.Tensor | None
    clip_fraction: torch.Tensor
    ratio_mean: torch.Tensor


def grpo_loss(
    per_token_logps: torch.Tensor,
    old_per_token_logps: torch.Tensor | None,
    ref_per_token_logps: torch.Tensor | None,
    advantages: torch.Tensor,
    completion_mask: torch.Tensor,
    beta: float,
    epsilon_low: float,
    epsilon_high: float,
    loss_type: str = "grpo",
    max_completion_length: Optional[int] = None,
) -> LossOutput:
    """Clipped GRPO surrogate with a k3 KL penalty (paper Eq. 10-11).

    per_token_logps: (N, C) log pi_theta of the sampled tokens (with grad).
    old_per_token_logps: (N, C) log pi_old, or None when each batch is used for one
        step only - then pi_old = pi_theta.detach() and the ratio is exactly 1 (R1-V).
    ref_per_token_logps: (N, C) log pi_ref, or None when beta == 0.
    advantages: (N,), completion_mask: (N, C) in {0, 1}.
    loss_type 'grpo' averages each sequence over its own tokens, then over sequences
    (R1-V); 'bnpo' averages over all tokens of the batch; 'dr_grpo' (TRL's Dr. GRPO) sums
    over all tokens and divides by the constant N * max_completion_length (required then).
    Returns the loss to minimise, J negated: -(min(rho*A, clip(rho)*A) - beta*KL).
    """
    if loss_type == "dr_grpo" and (max_completion_length is None or max_completion_length < 1):
        raise ValueError(f"loss_type 'dr_grpo' needs max_completion_length >= 1, got {max_completion_length!r}")
    mask = completion_mask.to(per_token_logps.dtype)
    old = per_token_logps.detach() if old_per_token_logps is None else old_per_token_logps
    ratio = torch.exp(per_token_logps - old)
    clipped = torch.clamp(ratio, 1 - epsilon_low, 1 + epsilon_high)
    adv = advantages.unsqueeze(1)
    per_token_loss = -torch.min(ratio * adv, clipped * adv)
    kl = None
    if beta != 0.0:
        if ref_per_token_logps is None:
            raise ValueError("beta != 0 needs reference log-probs")
        kl = k3_kl(per_token_logps, ref_per_token_logps)
        per_token_loss = per_token_loss + beta * kl
    loss = masked_mean(per_token_loss, mask, loss_type, max_completion_length)
    # A token is clipped when the clipped branch is the active minimum and differs from rho*A.
    is_clipped = ((ratio < 1 - epsilon_low) & (adv < 0)) | ((ratio > 1 + epsilon_high) & (adv > 0))
    with torch.no_grad():
        # The logged KL is a per-token mean under every loss_type (dr_grpo's constant would
        # make it depend on max_completion_length).
        stats_kl = masked_mean(kl, mask, "bnpo" if loss_type == "dr_grpo" else loss_type).detach() \
            if kl is not None else None
        clip_fraction = masked_mean(is_clipped.to(mask.dtype), mask, "bnpo").detach()
        ratio_mean = masked_mean(ratio.detach(), mask, "bnpo")
    return LossOutput(loss=loss, kl=stats_kl, clip_fraction=clip_fraction, ratio_mean=ratio_mean)


def masked_mean(values: torch.Tensor, mask: torch.Tensor, loss_type: str,
                max_completion_length: Optional[int] = None) -> torch.Tensor:
    """Mean of ``values`` (N, C) over ``mask`` per ``loss_type`` (see :func:`grpo_loss`);
    'dr_grpo' divides the masked sum by N * max_completion_length."""
    if loss_type == "grpo":
        per_seq = (values * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
        return per_seq.mean()
    if loss_type == "bnpo":
        return (values * mask).sum() / mask.sum().clamp(min=1.0)
    if loss_type == "dr_grpo":
        if max_completion_length is None:
            raise ValueError("loss_type 'dr_grpo' needs max_completion_length")
        return (values * mask).sum() / (values.shape[0] * max_completion_length)
    raise ValueError(f"unknown loss_type {loss_type!r} (expected one of {LOSS_TYPES})")
