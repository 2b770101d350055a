"""Pure tensor math of GRPO (paper Eq. 1-2, 9-11), shared by the GRPO and FFR trainers.

Every function here is side-effect free and works on CPU tensors, so the loss can
be checked against hand-computed values. Shapes use N = number of rollouts in the
batch and C = completion length (padded). A group is the set of rows that share a
group id (:func:`advantages_by_group`); plain GRPO has B groups of G rows, group-major
(rows g*G .. g*G+G-1 are one group), and variants may add rows to a group.

The loss is :func:`surrogate_loss` over a :class:`Surrogate` whose pieces (ratio,
shaping, clip) a variant replaces one at a time; :func:`grpo_loss` is the default pieces.
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


def contiguous_group_ids(n: int, group_size: int, device=None) -> torch.Tensor:
    """Group ids (n,) long of the plain GRPO layout: rows g*G .. g*G+G-1 form group g."""
    if n % group_size:
        raise ValueError(f"rewards must be 1-D with a multiple of {group_size} entries, got ({n},)")
    return torch.arange(n, device=device) // group_size


def group_stats(values: torch.Tensor, group_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-group (mean, unbiased std) of ``values`` (N,), grouped by ``group_ids`` (N,) long.

    Returns (inverse (N,) long: the group index of each row, mean (K,), std (K,)), groups in
    ascending id order. A group of one row has std NaN. Ids laid out as contiguous groups of
    equal size take the (K, G)-view reduction that R1-V uses, so plain GRPO keeps its exact
    floating-point values; any other layout reduces each group on its own.
    NaN values (an unscored row, e.g. a failed judge call) are left out of their group's
    statistics: a group with fewer than two non-NaN values has std NaN, with none also mean NaN.
    """
    if values.dim() != 1 or group_ids.shape != values.shape:
        raise ValueError(f"values and group_ids must be 1-D of one length, got {tuple(values.shape)} and "
                         f"{tuple(group_ids.shape)}")
    ids = group_ids.to(values.device)
    _, inverse, counts = torch.unique(ids, return_inverse=True, return_counts=True)
    size = int(counts[0])
    n = values.numel()
    scored = ~torch.isnan(values)
    if bool(scored.all()) and bool((counts == size).all()) and \
            torch.equal(inverse, torch.arange(n, device=ids.device) // size):
        grouped = values.view(-1, size)
        return inverse, grouped.mean(dim=1), grouped.std(dim=1)
    mean = values.new_empty(counts.numel())
    std = values.new_empty(counts.numel())
    for k in range(counts.numel()):
        member = values[(inverse == k) & scored]
        mean[k] = member.mean()
        std[k] = member.std() if member.numel() >= 2 else float("nan")  # torch warns on one value
    return inverse, mean, std


def group_advantages(rewards: torch.Tensor, group_size: int, scope: str = "group", eps: float = 1e-4,
                     reduce_sum: Optional[Callable[[torch.Tensor], torch.Tensor]] = None) -> torch.Tensor:
    """Standardised advantages of the plain GRPO layout: :func:`advantages_by_group` with
    rewards (N,), N = B * group_size, group-major (group g = rows g*G .. g*G+G-1)."""
    if rewards.dim() != 1:
        raise ValueError(f"rewards must be 1-D with a multiple of {group_size} entries, got {tuple(rewards.shape)}")
    ids = contiguous_group_ids(rewards.numel(), group_size, rewards.device)
    return advantages_by_group(rewards, ids, scope, eps, reduce_sum)


def advantages_by_group(rewards: torch.Tensor, group_ids: Optional[torch.Tensor], scope: str = "group",
                        eps: float = 1e-4,
                        reduce_sum: Optional[Callable[[torch.Tensor], torch.Tensor]] = None) -> torch.Tensor:
    """Standardised advantages A_i = (r_i - mean) / (std + eps) (paper Eq. 2 / Eq. 9).

    rewards: (N,); group_ids: (N,) long, rows with one id form a group of any size >= 2
    (e.g. G on-policy rollouts plus k off-policy rows of the same prompt). ``scope='group'``
    standardises within each group (R1-V); ``'batch'`` uses the statistics of the global
    batch and ignores the ids: ``reduce_sum`` (e.g. :func:`all_reduce_sum`, a collective every
    rank must reach) sums the count, the sum and then the squared deviations over ranks, so
    every rank gets the mean and std of all ranks' rewards (TRL's batch scaling); None means
    this process holds the whole batch. std is the unbiased estimator, as in R1-V. Equal
    rewards get zero advantages (never NaN). Returns (N,).

    A NaN reward marks a row that could not be scored (a failed judge call): it is left out of
    the mean and std of its group (or batch) and gets advantage 0, so it adds no policy
    gradient; the other rows are standardised among themselves. A group with fewer than two
    scored rows gets advantage 0 on every row (no std to standardise by).
    """
    if rewards.dim() != 1:
        raise ValueError(f"rewards must be 1-D, got {tuple(rewards.shape)}")
    if scope == "group":
        if group_ids is None:
            raise ValueError("group-scope advantages need the rollouts' group ids")
        if int(torch.unique(group_ids, return_counts=True)[1].min()) < 2:  # no unbiased std of one row
            raise ValueError("every group needs at least 2 rows for a group-scope advantage")
        inverse, mean_k, std_k = group_stats(rewards, group_ids)
        mean, std = mean_k[inverse], std_k[inverse]
    elif scope == "batch":
        scored = rewards[~torch.isnan(rewards)]
        mean, std = _global_mean_std(scored, reduce_sum or (lambda t: t))
    else:
        raise ValueError(f"unknown advantage scope {scope!r} (expected 'group' or 'batch')")
    advantages = (rewards - mean) / (std + eps)
    if bool(torch.isnan(rewards).any()):
        # NaN here comes from an unscored row or from a group without two scored rows.
        advantages = torch.where(torch.isnan(advantages), torch.zeros_like(advantages), advantages)
    return advantages


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
    # count >= group_size >= 2 (GRPOConfig checks it) unless rows were unscored (NaN): then NaN, made 0 by the caller
    std = torch.sqrt(sq_dev / (count - 1))
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


class RowContext:
    """Per-row facts a surrogate piece may read (all optional; the default pieces read none).

    source: (N,) long, the ``RowSource`` code of each row (on-policy, patched, teacher trace, replay).
    behaviour_logps: (N, C) log-probs of each completion token under the policy that produced
        it, for rows whose source is not on-policy; other rows hold 0 there.
    """

    # A plain class, not a dataclass: this module must stay loadable from its file alone, and
    # dataclasses look their module up in sys.modules to read string annotations.
    def __init__(self, source: Optional[torch.Tensor] = None, behaviour_logps: Optional[torch.Tensor] = None):
        self.source = source
        self.behaviour_logps = behaviour_logps


class Surrogate:
    """The per-token policy objective of GRPO as three replaceable pieces (paper Eq. 10).

    For every token: rho = ``ratio(...)``, s = ``shape(rho, rows)``, c = ``clip(s, rows)``, and
    the objective is min(s * A, c * A). Each piece maps (N, C) tensors to an (N, C) tensor and
    may treat rows differently by ``rows.source``. A variant subclasses this and overrides ONE
    piece (e.g. no clipping on off-policy rows, a shaping f(rho) = rho / (rho + gamma), or a
    ratio against ``rows.behaviour_logps``), so the rest of the loss - masking, KL, loss_type
    normalisation and the logged statistics - stays the base trainer's. The defaults are
    R1-V's: rho = pi_theta / pi_old, no shaping, clip to [1 - epsilon_low, 1 + epsilon_high].
    """

    def __init__(self, epsilon_low: float, epsilon_high: float):
        self.epsilon_low = epsilon_low
        self.epsilon_high = epsilon_high

    def ratio(self, per_token_logps: torch.Tensor, old_per_token_logps: Optional[torch.Tensor],
              rows: RowContext) -> torch.Tensor:
        """Importance ratio (N, C); pi_old = pi_theta.detach() when old log-probs are None (ratio 1)."""
        old = per_token_logps.detach() if old_per_token_logps is None else old_per_token_logps
        return torch.exp(per_token_logps - old)

    def shape(self, ratio: torch.Tensor, rows: RowContext) -> torch.Tensor:
        """The ratio as it enters the objective (N, C); identity for GRPO."""
        return ratio

    def clip(self, shaped: torch.Tensor, rows: RowContext) -> torch.Tensor:
        """The clipped branch of the min (N, C); returning ``shaped`` on a row disables clipping there."""
        return torch.clamp(shaped, 1 - self.epsilon_low, 1 + self.epsilon_high)

    def row_weights(self, rows: RowContext) -> Optional[torch.Tensor]:
        """Weight (N,) of each row's policy term, or None for 1 everywhere (GRPO).

        A weighted sum of per-row terms such as L_on + lambda * L_off (RePO) needs this outside
        the min: scaling inside ``shape`` would also scale the clip range's reference point.
        """
        return None

    def penalty_rows(self, rows: RowContext) -> Optional[torch.Tensor]:
        """Mask (N,) in {0, 1} of the rows that pay the KL penalty, or None for every row (GRPO)."""
        return None


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
    """Clipped GRPO surrogate with a k3 KL penalty (paper Eq. 10-11): :func:`surrogate_loss`
    with the default pieces of :class:`Surrogate` (epsilon_low, epsilon_high)."""
    return surrogate_loss(per_token_logps, old_per_token_logps, ref_per_token_logps, advantages, completion_mask,
                          beta, Surrogate(epsilon_low, epsilon_high), loss_type=loss_type,
                          max_completion_length=max_completion_length)


def surrogate_loss(
    per_token_logps: torch.Tensor,
    old_per_token_logps: torch.Tensor | None,
    ref_per_token_logps: torch.Tensor | None,
    advantages: torch.Tensor,
    completion_mask: torch.Tensor,
    beta: float,
    surrogate: Surrogate,
    rows: Optional[RowContext] = None,
    loss_type: str = "grpo",
    max_completion_length: Optional[int] = None,
) -> LossOutput:
    """Loss -(min(s*A, c*A) - beta*KL) of ``surrogate``'s pieces, reduced per ``loss_type``.

    per_token_logps: (N, C) log pi_theta of the sampled tokens (with grad).
    old_per_token_logps: (N, C) log pi_old, or None when each batch is used for one
        step only - then pi_old = pi_theta.detach() and the ratio is exactly 1 (R1-V).
    ref_per_token_logps: (N, C) log pi_ref, or None when beta == 0.
    advantages: (N,), completion_mask: (N, C) in {0, 1}; rows: per-row facts for the pieces.
    loss_type 'grpo' averages each sequence over its own tokens, then over sequences
    (R1-V); 'bnpo' averages over all tokens of the batch; 'dr_grpo' (TRL's Dr. GRPO) sums
    over all tokens and divides by the constant N * max_completion_length (required then).
    ``surrogate.row_weights`` scales each row's policy term and ``surrogate.penalty_rows`` keeps
    the KL on some rows only (both None by default: GRPO).
    Statistics: clip_fraction = share of tokens where the clipped branch is the active,
    smaller term; ratio_mean = mean of the unshaped ratio; kl = per-token mean of the k3 KL
    (rows outside ``penalty_rows`` count as 0).
    """
    if loss_type == "dr_grpo" and (max_completion_length is None or max_completion_length < 1):
        raise ValueError(f"loss_type 'dr_grpo' needs max_completion_length >= 1, got {max_completion_length!r}")
    rows = rows if rows is not None else RowContext()
    mask = completion_mask.to(per_token_logps.dtype)
    ratio = surrogate.ratio(per_token_logps, old_per_token_logps, rows)
    shaped = surrogate.shape(ratio, rows)
    clipped = surrogate.clip(shaped, rows)
    adv = advantages.unsqueeze(1)
    per_token_loss = -torch.min(shaped * adv, clipped * adv)
    weights = surrogate.row_weights(rows)
    if weights is not None:
        per_token_loss = per_token_loss * weights.to(per_token_loss.dtype).unsqueeze(1)
    kl = None
    kl_mask = mask
    if beta != 0.0:
        if ref_per_token_logps is None:
            raise ValueError("beta != 0 needs reference log-probs")
        kl = k3_kl(per_token_logps, ref_per_token_logps)
        penalised = surrogate.penalty_rows(rows)
        if penalised is not None:
            kl_mask = mask * penalised.to(mask.dtype).unsqueeze(1)
            kl = kl * penalised.to(kl.dtype).unsqueeze(1)
        per_token_loss = per_token_loss + beta * kl
    loss = masked_mean(per_token_loss, mask, loss_type, max_completion_length)
    # A token is clipped when the clip moved the ratio to the smaller side of the min: down for
    # A > 0, up for A < 0 (for the default clip: rho > 1 + eps_high, resp. rho < 1 - eps_low).
    is_clipped = ((clipped < shaped) & (adv > 0)) | ((clipped > shaped) & (adv < 0))
    with torch.no_grad():
        # The logged KL is a per-token mean under every loss_type (dr_grpo's constant would
        # make it depend on max_completion_length).
        stats_kl = masked_mean(kl, kl_mask, "bnpo" if loss_type == "dr_grpo" else loss_type).detach() \
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
