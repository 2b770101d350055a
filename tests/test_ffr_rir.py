"""RIR math (paper Eq. 4, 7, 8, 9) against hand-computed values, plus the FFR step metrics."""
import itertools
import math

import pytest
import torch

from ffr.rir import (ADVANTAGE_EPS, RIRResult, choose_rollouts, compute_rir, first_pass_correct,
                     group_advantages, rir_count_keys, rir_counts, rir_metrics, rir_metrics_from_counts,
                     rir_scalar)

NAN = float("nan")
T, F = True, False


def b(*values):
    return torch.tensor(values, dtype=torch.bool)


def f(*values):
    return torch.tensor(values, dtype=torch.float32)


# Two prompts (B=2), G=4, group-major. Prompt 0 mixes every case; prompt 1 is all correct.
#   idx0: first pass correct                       -> unassisted
#   idx1: failed, patch, patched correct (1 > 0)   -> patched
#   idx2: failed, patch, patched wrong (0 == 0)    -> tie -> unassisted
#   idx3: failed, teacher gave no patch            -> unassisted
REWARDS = f(1, 0, 0, 0, 1, 1, 1, 1)
FIRST = b(T, F, F, F, T, T, T, T)
PATCHED = f(NAN, 1, 0, NAN, NAN, NAN, NAN, NAN)
HAS_PATCH = b(F, T, T, F, F, F, F, F)
FMT = f(1, 1, 0, 1, 1, 1, 1, 1)
PATCHED_FMT = f(NAN, 1, 1, NAN, NAN, NAN, NAN, NAN)


def test_first_pass_correct_binary_and_graded():
    assert first_pass_correct(f(1, 0, 1, 0)).tolist() == [T, F, T, F]
    # threshold 1.0: only perfect graded rewards count; float noise below 1 is tolerated.
    graded = f(1.0, 0.9999999, 0.9, 0.5)
    assert first_pass_correct(graded).tolist() == [T, T, F, F]
    assert first_pass_correct(graded, threshold=0.85).tolist() == [T, T, T, F]
    with pytest.raises(ValueError, match="threshold"):
        first_pass_correct(graded, threshold=0.0)
    with pytest.raises(ValueError, match="rewards"):
        first_pass_correct(f(1, NAN))


def test_choose_rollouts_cases_and_tie():
    chosen = choose_rollouts(FIRST, REWARDS, PATCHED, HAS_PATCH, patch_tax=0.3)
    assert chosen.tolist() == [F, T, F, F, F, F, F, F]


def test_choose_rollouts_rejects_patch_on_correct_rollout():
    with pytest.raises(ValueError, match="has_patch: rollout index 0"):
        choose_rollouts(b(T, F), f(1, 0), f(1, 1), b(T, T), patch_tax=0.3)


def test_choose_rollouts_rejects_nan_in_used_patched_reward():
    with pytest.raises(ValueError, match="patched_rewards: non-finite value at rollout index 1"):
        choose_rollouts(b(F, F), f(0, 0), f(1, NAN), b(T, T), patch_tax=0.3)


def test_rir_scalar_binary_hand_computed():
    chosen = choose_rollouts(FIRST, REWARDS, PATCHED, HAS_PATCH, patch_tax=0.3)
    s = rir_scalar(REWARDS, PATCHED, chosen, FMT, PATCHED_FMT, patch_tax=0.3, format_weight=1.0)
    expected = [
        2.0,  # c=1: 1 + 1 * fmt(o_0)=1
        1.7,  # patched: (1 - 0.3) * 1 + 1 * fmt(o~_1)=1
        0.0,  # tie keeps o_2: 0 + fmt(o_2)=0 (the patched format 1 is NOT used)
        1.0,  # no patch: 0 + fmt(o_3)=1
        2.0, 2.0, 2.0, 2.0,
    ]
    assert s.tolist() == pytest.approx(expected, abs=1e-6)
    assert s.dtype == torch.float32


@pytest.mark.parametrize("lam", [0.0, 0.3, 0.7, 1.0])
def test_rir_scalar_equals_paper_formula_for_every_binary_case(lam):
    """Eq. 7-8 on binary rewards: o~ chosen iff c = 0 and r~ = 1 (every lambda, the lambda = 1
    ablation included), s = c + (1-c)(1-lam) r~ + w fmt(o^), over every valid combination."""
    w = 0.5
    for c, has, rt, fm, pfm in itertools.product((0, 1), (0, 1), (0, 1), (0, 1), (0, 1)):
        if c and has:
            continue  # correct rollouts are never patched
        r_t = rt if has else 0  # a missing patch behaves like a failed repair in Eq. 8
        first = b(bool(c))
        chosen = choose_rollouts(first, f(c), f(rt if has else NAN), b(bool(has)), patch_tax=lam)
        s = rir_scalar(f(c), f(rt if has else NAN), chosen, f(fm), f(pfm), patch_tax=lam, format_weight=w)
        assert bool(chosen) == bool(not c and has and rt), (c, has, rt)  # Eq. 7: r~ > r
        fmt_chosen = pfm if bool(chosen) else fm
        paper = c + (1 - c) * (1 - lam) * r_t + w * fmt_chosen
        assert s.item() == pytest.approx(paper), (c, has, rt, fm, pfm)


def test_rir_scalar_graded_rewards():
    # Numerical MRA rewards; threshold 1.0 so every rollout failed and was patched.
    r = f(0.9, 0.5, 0.5, 0.2, 0.7)
    r_t = f(0.95, 0.5, 0.8, 0.1, 1.0)
    first = first_pass_correct(r)
    assert first.tolist() == [F, F, F, F, F]
    chosen = choose_rollouts(first, r, r_t, b(T, T, T, T, T), patch_tax=0.3)
    # 0.7 * 0.95 = 0.665 < 0.9: the repair would earn less than no repair, keep o_i;
    # 0.5 == 0.5 tie; 0.7 * 0.8 = 0.56 >= 0.5; 0.1 < 0.2; 0.7 * 1.0 = 0.7 == 0.7 (repair, no loss).
    assert chosen.tolist() == [F, F, T, F, T]
    s = rir_scalar(r, r_t, chosen, f(0, 0, 0, 0, 0), f(0, 0, 0, 0, 0), patch_tax=0.3, format_weight=1.0)
    assert s.tolist() == pytest.approx([0.9, 0.5, 0.56, 0.2, 0.7], abs=1e-6)


GRID = [i / 20 for i in range(21)]  # 0.00, 0.05, ..., 1.00


@pytest.mark.parametrize("lam", [0.0, 0.1, 0.3, 0.5, 0.7, 1.0])
def test_rir_graded_is_monotone_in_the_repair_and_never_below_no_repair(lam):
    """Over a grid of r, r~: the accuracy part of s equals max(r, (1 - lam) r~) for a failed,
    patched rollout, so it never falls below r and never decreases as r~ grows (a better repair
    never earns less than a worse one)."""
    pairs = [(r, rt) for r in GRID[:-1] for rt in GRID]  # r < 1: failed at threshold 1.0
    r = torch.tensor([p[0] for p in pairs])
    r_t = torch.tensor([p[1] for p in pairs])
    n = len(pairs)
    zeros = torch.zeros(n)
    res = compute_rir(r, first_pass_correct(r), r_t, torch.ones(n, dtype=torch.bool), zeros, zeros,
                      group_size=n, patch_tax=lam, format_weight=0.0)
    s = res.scalars
    assert bool((s >= r).all()), [(pairs[i], s[i].item()) for i in (s < r).nonzero().flatten().tolist()]
    expected = torch.maximum(r, (1.0 - lam) * r_t)
    assert torch.allclose(s, expected, atol=1e-6)
    by_r = s.view(len(GRID) - 1, len(GRID))  # rows: r fixed; columns: r~ ascending
    assert bool((by_r[:, 1:] >= by_r[:, :-1]).all())
    # A repair is chosen only if it beats r (Eq. 7) and, taxed, does not lose to it.
    assert not bool((res.chosen_is_patched & ((r_t <= r) | ((1.0 - lam) * r_t < r))).any())


def test_choose_rollouts_validates_patch_tax():
    with pytest.raises(ValueError, match="patch_tax: must lie in"):
        choose_rollouts(b(F), f(0), f(1), b(T), patch_tax=-0.1)


def test_rir_scalar_graded_with_lower_threshold():
    r = f(0.9, 0.5, 0.2)
    first = first_pass_correct(r, threshold=0.85)  # 0.9 counts as correct and is not sent
    r_t = f(NAN, 0.6, 0.6)
    chosen = choose_rollouts(first, r, r_t, b(F, T, T), patch_tax=0.5)
    # idx1: (1 - 0.5) * 0.6 = 0.3 < 0.5 keeps o_1; idx2: 0.3 >= 0.2 takes the repair
    assert chosen.tolist() == [F, F, T]
    s = rir_scalar(r, r_t, chosen, f(1, 1, 1), f(NAN, 0, 0), patch_tax=0.5, format_weight=0.5)
    # idx0: 0.9 + 0.5 * 1 = 1.4 ; idx1: 0.5 + 0.5 * fmt(o_1)=1 = 1.0 ; idx2: 0.3 + 0.5 * fmt(o~_2)=0 = 0.3
    assert s.tolist() == pytest.approx([1.4, 1.0, 0.3], abs=1e-6)


def test_rir_scalar_validates_arguments():
    one = f(1)
    with pytest.raises(ValueError, match="patch_tax"):
        rir_scalar(one, one, b(F), one, one, patch_tax=1.5)
    with pytest.raises(ValueError, match="format_weight"):
        rir_scalar(one, one, b(F), one, one, format_weight=-1.0)
    with pytest.raises(ValueError, match="format_rewards: expected length 1, got 2"):
        rir_scalar(one, one, b(F), f(1, 1), one)


def test_group_advantages_hand_computed():
    s = f(2.0, 1.7, 0.0, 1.0, 2.0, 2.0, 2.0, 2.0)
    adv = group_advantages(s, group_size=4)
    # group 0: mean = 4.7 / 4 = 1.175; deviations 0.825, 0.525, -1.175, -0.175
    # squares sum = 0.680625 + 0.275625 + 1.380625 + 0.030625 = 2.3675
    # unbiased std = sqrt(2.3675 / 3) = 0.8883505; A = dev / (std + 1e-4)
    std0 = math.sqrt(2.3675 / 3)
    expected0 = [d / (std0 + ADVANTAGE_EPS) for d in (0.825, 0.525, -1.175, -0.175)]
    assert expected0 == pytest.approx([0.928583, 0.590917, -1.322527, -0.196972], abs=1e-5)
    assert adv[:4].tolist() == pytest.approx(expected0, abs=1e-5)
    # group 1: all equal -> std 0 -> 0 / 1e-4 = 0, no NaN
    assert adv[4:].tolist() == [0.0, 0.0, 0.0, 0.0]


def test_group_advantages_batch_scope_hand_computed():
    s = f(2.0, 1.7, 0.0, 1.0, 2.0, 2.0, 2.0, 2.0)
    adv = group_advantages(s, group_size=4, scope="batch")
    # mean = 12.7 / 8 = 1.5875; squared deviations: 5 * 0.4125^2 = 0.85078125, 0.1125^2 = 0.01265625,
    # 1.5875^2 = 2.52015625, 0.5875^2 = 0.34515625; sum = 3.72875; unbiased std = sqrt(3.72875 / 7) = 0.7298483
    std = math.sqrt(3.72875 / 7)
    expected = [(v - 1.5875) / (std + ADVANTAGE_EPS) for v in (2.0, 1.7, 0.0, 1.0, 2.0, 2.0, 2.0, 2.0)]
    assert adv.tolist() == pytest.approx(expected, abs=1e-5)
    assert adv[4].item() == pytest.approx(0.565109, abs=1e-5)  # all-correct group is no longer zero


def test_group_advantages_degenerate_and_errors():
    assert group_advantages(torch.zeros(6), group_size=3).tolist() == [0.0] * 6
    assert group_advantages(torch.full((4,), 0.7), group_size=2, scope="batch").tolist() == [0.0] * 4
    with pytest.raises(ValueError, match="group_size"):
        group_advantages(f(1, 2), group_size=1)
    with pytest.raises(ValueError, match="multiple of group_size"):
        group_advantages(f(1, 2, 3), group_size=2)
    with pytest.raises(ValueError, match="scope"):
        group_advantages(f(1, 2), group_size=2, scope="global")
    with pytest.raises(ValueError, match="expected a 1-D tensor"):
        group_advantages(torch.zeros(2, 2), group_size=2)


def test_compute_rir_end_to_end():
    res = compute_rir(REWARDS, FIRST, PATCHED, HAS_PATCH, FMT, PATCHED_FMT, group_size=4)
    assert isinstance(res, RIRResult)
    assert res.chosen_is_patched.tolist() == [F, T, F, F, F, F, F, F]
    assert res.scalars.tolist() == pytest.approx([2.0, 1.7, 0.0, 1.0, 2.0, 2.0, 2.0, 2.0], abs=1e-6)
    assert res.advantages[:4].tolist() == pytest.approx([0.928583, 0.590917, -1.322527, -0.196972], abs=1e-5)
    assert not torch.isnan(res.advantages).any()


def test_vanilla_grpo_is_the_no_teacher_case():
    # No patches at all: s = r + w * fmt, as in vanilla GRPO (Eq. 1-2).
    r, fmt = f(1, 0, 0, 1), f(1, 1, 0, 0)
    res = compute_rir(r, first_pass_correct(r), torch.full((4,), NAN), b(F, F, F, F), fmt,
                      torch.full((4,), NAN), group_size=4, format_weight=1.0)
    assert res.scalars.tolist() == [2.0, 1.0, 0.0, 1.0]
    assert not res.chosen_is_patched.any()


# Metrics scenario (N=8):
#   requested: idx1,2,3,4,5 (5); has_patch: idx1,2,4,5 (4); fixed: idx1,4 (2); chosen patched: idx1,4 (2)
M_FIRST = b(T, F, F, F, F, F, T, T)
M_REQUESTED = b(F, T, T, T, T, T, F, F)
M_HAS = b(F, T, T, F, T, T, F, F)
M_PCORRECT = b(F, T, F, F, T, F, F, F)
M_CHOSEN = b(F, T, F, F, T, F, F, F)
M_TYPES = [None, ["temporal"], ["spatial"], None, ["spatial", "misconception"], ["misconception"], None, None]


def test_rir_metrics_hand_computed():
    m = rir_metrics(M_FIRST, M_REQUESTED, M_HAS, M_PCORRECT, M_CHOSEN, M_TYPES)
    assert m == pytest.approx({
        "ffr/intervention_ratio": 5 / 8,   # sent to the teacher / all rollouts
        "ffr/patch_coverage": 4 / 5,       # usable patches / requests
        "ffr/fix_rate": 2 / 4,             # fixed / patched
        "ffr/chosen_patched_frac": 2 / 8,
        "ffr/fix_rate/temporal": 1 / 1,    # idx1 fixed
        "ffr/fix_rate/spatial": 1 / 2,     # idx2 not fixed, idx4 fixed
        "ffr/fix_rate/misconception": 1 / 2,  # idx4 fixed (multi-label), idx5 not
    })


def test_rir_counts_sum_across_ranks_and_zero_denominators():
    halves = [rir_counts(M_FIRST[s], M_REQUESTED[s], M_HAS[s], M_PCORRECT[s], M_CHOSEN[s], M_TYPES[s])
              for s in (slice(0, 4), slice(4, 8))]
    for c in halves:
        assert list(c) == rir_count_keys()  # same keys, same order on every rank
    summed = {k: halves[0][k] + halves[1][k] for k in rir_count_keys()}
    whole = rir_counts(M_FIRST, M_REQUESTED, M_HAS, M_PCORRECT, M_CHOSEN, M_TYPES)
    assert summed == whole
    # First half has no misconception patch: its per-type fix rate is undefined and left out.
    first = rir_metrics_from_counts(halves[0])
    assert "ffr/fix_rate/misconception" not in first
    assert first["ffr/fix_rate/spatial"] == 0.0
    none = rir_metrics(b(T, T), b(F, F), b(F, F), b(F, F), b(F, F), [None, None])
    assert none == {"ffr/intervention_ratio": 0.0, "ffr/chosen_patched_frac": 0.0}


def test_rir_counts_validates_subset_chain_and_types():
    with pytest.raises(ValueError, match="requested: rollout index 0"):
        rir_counts(b(T), b(T), b(F), b(F), b(F), [None])
    with pytest.raises(ValueError, match="chosen_is_patched: rollout index 0"):
        rir_counts(b(F), b(T), b(F), b(F), b(T), [None])
    with pytest.raises(ValueError, match="unknown type 'causal'"):
        rir_counts(b(F), b(T), b(T), b(F), b(F), [["causal"]])
    with pytest.raises(ValueError, match="has a patch but no error type"):
        rir_counts(b(F), b(T), b(T), b(F), b(F), [[]])
    with pytest.raises(ValueError, match="error_types: expected 1 entries"):
        rir_counts(b(F), b(T), b(T), b(F), b(F), [])
    with pytest.raises(ValueError, match="missing keys"):
        rir_metrics_from_counts({"n_rollouts": 1.0})


def _load_trainer_grpo_math():
    """The trainer's grpo_math module, loaded from its file so the trainer package (and
    transformers) is not imported: the module itself depends on torch only."""
    import importlib.util
    from pathlib import Path

    import r1v

    path = Path(r1v.__file__).parent / "trainer" / "grpo_math.py"
    spec = importlib.util.spec_from_file_location("_grpo_math_for_ffr_test", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("scope", ["group", "batch"])
def test_advantages_match_the_grpo_trainer_convention(scope):
    """FFR and vanilla GRPO advantages must share one std convention (unbiased, eps 1e-4)."""
    grpo_math = _load_trainer_grpo_math()
    gen = torch.Generator().manual_seed(0)
    s = torch.rand(24, generator=gen) * 2
    s[8:16] = 0.5  # one degenerate group
    ours = group_advantages(s, group_size=8, scope=scope)
    theirs = grpo_math.group_advantages(s, group_size=8, scope=scope, eps=ADVANTAGE_EPS)
    assert torch.allclose(ours, theirs, atol=1e-6)
