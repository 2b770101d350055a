"""Robust Improvement Reward (RIR): the pure tensor math of FFR (paper Sec. 3.2).

Conventions shared by every function here:

* A batch holds B prompts with G rollouts each. Every per-rollout tensor is 1-D
  of length N = B*G in **group-major** order: rollout g of prompt b sits at index
  ``b*G + g`` (the order `generate(num_return_sequences=G)` produces).
* ``rewards`` r_i is the accuracy reward of first-pass rollout o_i, in [0, 1];
  binary (Eq. 3) or graded (numerical MRA, OCR 1-WER, free-form ROUGE).
* ``patched_rewards`` r~_i is the accuracy reward of the patched rollout o~_i
  (Eq. 6); it is read only where ``has_patch`` is true (a patch arrived and the
  second-round rollout exists). Elsewhere any value (NaN included) is ignored.
* ``format_rewards`` / ``patched_format_rewards`` are the format rewards of o_i
  and o~_i, read the same way.

Graded rewards. Eq. 4 reads c_i = 1[r_i >= threshold]; the default threshold 1.0
is the paper's binary rule. Eq. 8 is implemented in its "chosen rollout" form
(see `rir_scalar`), which uses the graded value of the chosen rollout.

Choice rule (Eq. 7, monotone form). The patched rollout is chosen iff

    c_i = 0,  a patch exists,  r~_i > r_i  and  (1 - lambda) * r~_i >= r_i,

so its accuracy term is max(r_i, (1 - lambda) r~_i): a better repair never earns
less than a worse one, and no repair earns less than keeping o_i. Read literally
on graded rewards, Eq. 7 (r~_i > r_i alone) would pick a repair at 0.95 over an
unassisted 0.9 and pay it 0.7 * 0.95 = 0.665 < 0.9. On binary rewards the rule is
exactly Eq. 7-8 for every lambda in [0, 1]: a repair is chosen iff r_i = 0 and
r~_i = 1 (the second condition holds then, as 1 - lambda >= 0), including the
lambda = 1 ablation (paper Fig. 7), where the chosen repair earns 0 accuracy.
Ties r~_i == r_i keep the unassisted rollout (paper App. D.2).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal, Optional, Sequence

import torch

from r1v.trainer import grpo_math

logger = logging.getLogger(__name__)

ERROR_TYPES = ("temporal", "spatial", "misconception")
# R1-V standardises with (r - mean) / (std + 1e-4), std unbiased (torch default).
ADVANTAGE_EPS = 1e-4
# Graded rewards are floats (ROUGE, MRA); allow rounding noise at the threshold.
_THRESHOLD_TOL = 1e-6


def _check_1d(name: str, t: torch.Tensor, n: Optional[int] = None) -> None:
    if not isinstance(t, torch.Tensor) or t.dim() != 1:
        raise ValueError(f"{name}: expected a 1-D tensor of length B*G, got "
                         f"{tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__}")
    if n is not None and t.numel() != n:
        raise ValueError(f"{name}: expected length {n}, got {t.numel()}")


def _check_finite(name: str, t: torch.Tensor, mask: Optional[torch.Tensor] = None) -> None:
    bad = ~torch.isfinite(t)
    if mask is not None:
        bad &= mask
    if bool(bad.any()):
        raise ValueError(f"{name}: non-finite value at rollout index {int(bad.nonzero()[0])}")


def first_pass_correct(rewards: torch.Tensor, threshold: float = 1.0) -> torch.Tensor:
    """Eq. 4: c_i = 1[R(o_i, y) = 1], generalised to c_i = 1[r_i >= threshold].

    rewards: (N,) float in [0, 1]. threshold in (0, 1]; 1.0 (default) is the
    paper's binary rule, under which a graded reward counts as correct only when
    perfect (so e.g. an MRA of 0.9 is sent to the teacher). A tolerance of 1e-6
    absorbs float noise. Returns (N,) bool.
    """
    _check_1d("rewards", rewards)
    _check_finite("rewards", rewards)
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold: must lie in (0, 1], got {threshold}")
    return rewards >= threshold - _THRESHOLD_TOL


def choose_rollouts(first_correct: torch.Tensor, rewards: torch.Tensor,
                    patched_rewards: torch.Tensor, has_patch: torch.Tensor, *, patch_tax: float) -> torch.Tensor:
    """Eq. 7 (monotone form): o^_i = o~_i iff c_i = 0, r~_i > r_i and (1 - lambda) r~_i >= r_i.

    patch_tax is lambda of Eq. 8 (the value `rir_scalar` gets): a repair is chosen
    only if its taxed reward is at least the unassisted one (see the module
    docstring; identical to Eq. 7 on binary rewards). Ties (r~_i == r_i) keep the
    unassisted rollout (paper App. D.2); a failed rollout without a patch
    (teacher error, timeout, leak) keeps o_i.
    All inputs (N,); first_correct and has_patch bool. has_patch must be false
    wherever first_correct is true (only failures are sent to the teacher).
    Returns chosen_is_patched: (N,) bool.
    """
    _check_1d("first_correct", first_correct)
    n = first_correct.numel()
    for name, t in (("rewards", rewards), ("patched_rewards", patched_rewards), ("has_patch", has_patch)):
        _check_1d(name, t, n)
    if first_correct.dtype != torch.bool or has_patch.dtype != torch.bool:
        raise ValueError("first_correct / has_patch: expected bool tensors")
    both = first_correct & has_patch
    if bool(both.any()):
        raise ValueError(f"has_patch: rollout index {int(both.nonzero()[0])} is first-pass correct "
                         "but has a patch; only failed rollouts are repaired")
    _check_patch_tax(patch_tax)
    _check_finite("rewards", rewards)
    _check_finite("patched_rewards", patched_rewards, has_patch)
    # NaN in unpatched slots compares False, and is masked by has_patch anyway.
    patched = torch.where(has_patch, patched_rewards, rewards).float()
    r = rewards.float()
    # The taxed value is computed exactly as rir_scalar computes it, so a chosen
    # repair's accuracy term is >= r_i in float arithmetic too.
    taxed = (1.0 - patch_tax) * patched
    return (~first_correct) & has_patch & (patched > r) & (taxed >= r)


def _check_patch_tax(patch_tax: float) -> None:
    if not 0.0 <= patch_tax <= 1.0:
        raise ValueError(f"patch_tax: must lie in [0, 1], got {patch_tax}")


def rir_scalar(rewards: torch.Tensor, patched_rewards: torch.Tensor, chosen_is_patched: torch.Tensor,
               format_rewards: torch.Tensor, patched_format_rewards: torch.Tensor,
               patch_tax: float = 0.3, format_weight: float = 1.0) -> torch.Tensor:
    """Eq. 8 (RIR, strict repair with patch tax lambda), chosen-rollout form.

        s_i = (1 - p_i) * r_i + p_i * (1 - lambda) * r~_i + w_fmt * f(o^_i),
        p_i = chosen_is_patched_i,  f(o^_i) = p_i ? f(o~_i) : f(o_i).

    For binary rewards this equals the paper's s_i = c_i + (1 - c_i)(1 - lambda) r~_i
    + w_fmt f(o^_i): p_i = 1 implies c_i = 0, r~_i = 1; p_i = 0 means c_i = 1
    (s = 1) or c_i = 0 with r~_i = 0 / no patch (s = 0). For graded rewards the
    graded value of the chosen rollout replaces c_i (unassisted) or r~_i (repaired);
    with p_i from `choose_rollouts` (same lambda) the accuracy term is
    max(r_i, (1 - lambda) r~_i) for a patched failure, never below r_i.
    All tensors (N,); returns s: (N,) float32.
    """
    _check_1d("chosen_is_patched", chosen_is_patched)
    n = chosen_is_patched.numel()
    for name, t in (("rewards", rewards), ("patched_rewards", patched_rewards),
                    ("format_rewards", format_rewards), ("patched_format_rewards", patched_format_rewards)):
        _check_1d(name, t, n)
    _check_patch_tax(patch_tax)
    if format_weight < 0.0:
        raise ValueError(f"format_weight: must be >= 0, got {format_weight}")
    p = chosen_is_patched.to(torch.bool)
    _check_finite("rewards", rewards)
    _check_finite("format_rewards", format_rewards)
    _check_finite("patched_rewards", patched_rewards, p)
    _check_finite("patched_format_rewards", patched_format_rewards, p)
    # torch.where (not arithmetic blending) so NaN in unused patched slots never leaks in.
    accuracy = torch.where(p, (1.0 - patch_tax) * patched_rewards.float(), rewards.float())
    fmt = torch.where(p, patched_format_rewards.float(), format_rewards.float())
    return accuracy + format_weight * fmt


def group_advantages(scalars: torch.Tensor, group_size: int,
                     scope: Literal["group", "batch"] = "group", eps: float = ADVANTAGE_EPS) -> torch.Tensor:
    """Eq. 9: A^_i = (s_i - mean_j s_j) / (std_j s_j + eps).

    scalars: (N,) with N = B*G, group-major. scope "group" takes mean/std over the
    G rollouts of each prompt (paper); "batch" over all N. The arithmetic is the
    GRPO trainer's own (`r1v.trainer.grpo_math.group_advantages`: unbiased std,
    eps = 1e-4, R1-V), so vanilla GRPO and FFR advantages are on the same scale;
    this wrapper adds FFR's stricter input checks (1-D, finite, G >= 2). A group
    whose scalars are all equal gets zero advantages (0 / eps), never NaN.
    Returns (N,) float32.
    """
    _check_1d("scalars", scalars)
    _check_finite("scalars", scalars)
    n = scalars.numel()
    if group_size < 2:
        raise ValueError(f"group_size: unbiased std needs at least 2 rollouts per group, got {group_size}")
    if n == 0 or n % group_size:
        raise ValueError(f"scalars: length {n} is not a positive multiple of group_size {group_size}")
    if scope not in ("group", "batch"):
        raise ValueError(f"scope: must be 'group' or 'batch', got {scope!r}")
    return grpo_math.group_advantages(scalars.float(), group_size, scope, eps)


@dataclass
class RIRResult:
    """Per-rollout outputs of one FFR step; every field is (N,) group-major.

    first_correct: c_i (Eq. 4). chosen_is_patched: p_i (Eq. 7; the loss uses the
    patched prompt and completion where true). scalars: s_i (Eq. 8).
    advantages: A^_i (Eq. 9).
    """

    first_correct: torch.Tensor
    chosen_is_patched: torch.Tensor
    scalars: torch.Tensor
    advantages: torch.Tensor


def compute_rir(rewards: torch.Tensor, first_correct: torch.Tensor, patched_rewards: torch.Tensor,
                has_patch: torch.Tensor, format_rewards: torch.Tensor, patched_format_rewards: torch.Tensor,
                group_size: int, patch_tax: float = 0.3, format_weight: float = 1.0,
                scope: Literal["group", "batch"] = "group", eps: float = ADVANTAGE_EPS) -> RIRResult:
    """Eq. 7 -> 8 -> 9 in one call. `first_correct` is the mask computed with
    `first_pass_correct` before the teacher round (it decided who was sent)."""
    chosen = choose_rollouts(first_correct, rewards, patched_rewards, has_patch, patch_tax=patch_tax)
    s = rir_scalar(rewards, patched_rewards, chosen, format_rewards, patched_format_rewards,
                   patch_tax=patch_tax, format_weight=format_weight)
    adv = group_advantages(s, group_size, scope=scope, eps=eps)
    return RIRResult(first_correct=first_correct, chosen_is_patched=chosen, scalars=s, advantages=adv)


def rir_count_keys() -> list[str]:
    """The fixed, ordered key list of `rir_counts` (same on every rank, for all-reduce)."""
    keys = ["n_rollouts", "n_requested", "n_patched", "n_fixed", "n_chosen_patched"]
    for et in ERROR_TYPES:
        keys += [f"n_patched/{et}", f"n_fixed/{et}"]
    return keys


def rir_counts(first_correct: torch.Tensor, requested: torch.Tensor, has_patch: torch.Tensor,
               patched_correct: torch.Tensor, chosen_is_patched: torch.Tensor,
               error_types: Sequence[Optional[Sequence[str]]]) -> dict[str, float]:
    """Raw counts of one step on one rank; sum them across ranks, then `rir_metrics_from_counts`.

    requested: (N,) bool, rollouts whose patch was asked of the teacher (subset of
    ~first_correct). has_patch: (N,) bool, a usable patch came back and the
    second round ran (subset of requested). patched_correct: (N,) bool,
    `first_pass_correct(patched_rewards)`, read where has_patch. error_types:
    N entries, the patch's error types where has_patch, else None; a patch with
    several types counts once under each of them.
    Always returns every key of `rir_count_keys()`, in that order.
    """
    _check_1d("first_correct", first_correct)
    n = first_correct.numel()
    for name, t in (("requested", requested), ("has_patch", has_patch),
                    ("patched_correct", patched_correct), ("chosen_is_patched", chosen_is_patched)):
        _check_1d(name, t, n)
        if t.dtype != torch.bool:
            raise ValueError(f"{name}: expected a bool tensor")
    if len(error_types) != n:
        raise ValueError(f"error_types: expected {n} entries, got {len(error_types)}")
    for name, sub, sup in (("requested", requested, ~first_correct), ("has_patch", has_patch, requested),
                           ("chosen_is_patched", chosen_is_patched, has_patch)):
        stray = sub & ~sup
        if bool(stray.any()):
            raise ValueError(f"{name}: rollout index {int(stray.nonzero()[0])} violates the subset "
                             "chain chosen_is_patched <= has_patch <= requested <= ~first_correct")
    fixed = has_patch & patched_correct
    counts = dict.fromkeys(rir_count_keys(), 0.0)
    counts.update(n_rollouts=float(n), n_requested=float(requested.sum()), n_patched=float(has_patch.sum()),
                  n_fixed=float(fixed.sum()), n_chosen_patched=float(chosen_is_patched.sum()))
    for i in has_patch.nonzero().flatten().tolist():
        types = error_types[i]
        if not types:
            raise ValueError(f"error_types: rollout index {i} has a patch but no error type")
        for et in set(types):
            if et not in ERROR_TYPES:
                raise ValueError(f"error_types: rollout index {i} has unknown type {et!r}")
            counts[f"n_patched/{et}"] += 1.0
            counts[f"n_fixed/{et}"] += float(bool(fixed[i]))
    return counts


def rir_metrics_from_counts(counts: dict[str, float]) -> dict[str, float]:
    """Ratios from (possibly all-reduced) counts.

    ffr/intervention_ratio = n_requested / n_rollouts: the fraction of all
      rollouts that failed the first pass and were sent to the teacher (paper
      Fig. 4), whether or not a patch came back.
    ffr/patch_coverage = n_patched / n_requested: requests that yielded a usable patch.
    ffr/fix_rate = n_fixed / n_patched: patched attempts whose second-round answer
      is correct (paper Table 10); ffr/fix_rate/<type> the same per error type.
    ffr/chosen_patched_frac = n_chosen_patched / n_rollouts.
    A ratio whose denominator is zero is left out (it is undefined, not zero).
    """
    missing = [k for k in rir_count_keys() if k not in counts]
    if missing:
        raise ValueError(f"counts: missing keys {missing}")

    def ratio(num: str, den: str) -> Optional[float]:
        return counts[num] / counts[den] if counts[den] > 0 else None

    pairs = {"ffr/intervention_ratio": ("n_requested", "n_rollouts"),
             "ffr/patch_coverage": ("n_patched", "n_requested"),
             "ffr/fix_rate": ("n_fixed", "n_patched"),
             "ffr/chosen_patched_frac": ("n_chosen_patched", "n_rollouts")}
    for et in ERROR_TYPES:
        pairs[f"ffr/fix_rate/{et}"] = (f"n_fixed/{et}", f"n_patched/{et}")
    out = {}
    for key, (num, den) in pairs.items():
        value = ratio(num, den)
        if value is not None:
            out[key] = value
    return out


def rir_metrics(first_correct: torch.Tensor, requested: torch.Tensor, has_patch: torch.Tensor,
                patched_correct: torch.Tensor, chosen_is_patched: torch.Tensor,
                error_types: Sequence[Optional[Sequence[str]]]) -> dict[str, float]:
    """Single-process convenience: `rir_metrics_from_counts(rir_counts(...))`."""
    return rir_metrics_from_counts(rir_counts(first_correct, requested, has_patch, patched_correct,
                                              chosen_is_patched, error_types))
