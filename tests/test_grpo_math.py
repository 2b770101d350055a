"""GRPO math against hand-computed values (paper Eq. 2, 9-11)."""
import math
import os

import pytest
import torch

from r1v.trainer.grpo_math import (
    all_reduce_sum, completion_mask_from_eos, group_advantages, grpo_loss, k3_kl, masked_mean, selective_log_softmax,
)


def test_completion_mask_stops_after_first_eos():
    ids = torch.tensor([[5, 9, 7, 9, 3], [1, 2, 3, 4, 5], [9, 1, 1, 1, 1]])
    mask = completion_mask_from_eos(ids, eos_token_ids=[9])
    assert mask.tolist() == [[1, 1, 0, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]]


def test_completion_mask_several_eos_ids():
    ids = torch.tensor([[5, 8, 9], [9, 8, 1]])
    assert completion_mask_from_eos(ids, [8, 9]).tolist() == [[1, 1, 0], [1, 0, 0]]


def test_group_advantages_hand_computed():
    r = torch.tensor([1.0, 0.0, 0.0, 1.0, 2.0, 2.0, 2.0, 2.0])
    adv = group_advantages(r, group_size=4, eps=1e-4)
    # group 1: mean 0.5, unbiased std sqrt(1/3) = 0.577350
    std = math.sqrt(1 / 3)
    expect = [0.5 / (std + 1e-4), -0.5 / (std + 1e-4)] * 1
    assert adv[0].item() == pytest.approx(expect[0], rel=1e-6)
    assert adv[1].item() == pytest.approx(expect[1], rel=1e-6)
    # group 2: all equal -> zero advantage, never NaN
    assert adv[4:].tolist() == [0.0, 0.0, 0.0, 0.0]


def test_batch_scope_uses_whole_batch():
    r = torch.tensor([0.0, 1.0, 2.0, 3.0])
    adv = group_advantages(r, group_size=2, scope="batch", eps=0.0)
    std = torch.tensor([0.0, 1.0, 2.0, 3.0]).std().item()  # 1.290994
    assert adv.tolist() == pytest.approx([(x - 1.5) / std for x in [0, 1, 2, 3]], rel=1e-6)


def test_group_advantages_rejects_bad_shape():
    with pytest.raises(ValueError):
        group_advantages(torch.zeros(5), group_size=2)
    with pytest.raises(ValueError):
        group_advantages(torch.zeros(4), group_size=2, scope="nope")


def test_selective_log_softmax_matches_full():
    torch.manual_seed(0)
    logits = torch.randn(3, 4, 11)
    ids = torch.randint(0, 11, (3, 4))
    full = torch.log_softmax(logits, -1).gather(-1, ids.unsqueeze(-1)).squeeze(-1)
    assert torch.allclose(selective_log_softmax(logits, ids), full, atol=1e-6)


def test_k3_kl_values():
    logp = torch.tensor([[-1.0, -2.0]])
    ref = torch.tensor([[-1.5, -2.0]])
    d = -0.5
    assert k3_kl(logp, ref)[0, 0].item() == pytest.approx(math.exp(d) - d - 1, rel=1e-6)
    assert k3_kl(logp, ref)[0, 1].item() == 0.0


def _fixed_batch():
    logp = torch.tensor([[-1.0, -0.5, -2.0], [-0.2, -0.3, -0.4]], dtype=torch.float64)
    old = torch.tensor([[-1.5, -0.5, -1.0], [-0.2, -0.6, -0.4]], dtype=torch.float64)
    ref = torch.tensor([[-1.2, -0.7, -2.0], [-0.1, -0.3, -0.9]], dtype=torch.float64)
    adv = torch.tensor([1.0, -2.0], dtype=torch.float64)
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]], dtype=torch.float64)
    return logp, old, ref, adv, mask


def _hand_loss(loss_type, beta, eps):
    """Eq. 11 written out with Python floats, token by token."""
    logp, old, ref, adv, mask = (t.tolist() for t in _fixed_batch())
    per_seq, all_tok = [], []
    for i in range(2):
        toks = []
        for t in range(3):
            if not mask[i][t]:
                continue
            rho = math.exp(logp[i][t] - old[i][t])
            clipped = min(max(rho, 1 - eps), 1 + eps)
            surrogate = min(rho * adv[i], clipped * adv[i])
            d = ref[i][t] - logp[i][t]
            kl = math.exp(d) - d - 1
            toks.append(-(surrogate - beta * kl))
        per_seq.append(sum(toks) / len(toks))
        all_tok += toks
    return sum(per_seq) / len(per_seq) if loss_type == "grpo" else sum(all_tok) / len(all_tok)


@pytest.mark.parametrize("loss_type", ["grpo", "bnpo"])
def test_loss_equals_hand_formula_with_active_clip(loss_type):
    logp, old, ref, adv, mask = _fixed_batch()
    out = grpo_loss(logp, old, ref, adv, mask, beta=0.04, epsilon_low=0.2, epsilon_high=0.2, loss_type=loss_type)
    assert out.loss.item() == pytest.approx(_hand_loss(loss_type, 0.04, 0.2), abs=1e-6)
    # token (0,0): rho = e^0.5 = 1.65 > 1.2 with A > 0 -> clipped; token (1,1): rho = e^0.3 = 1.35, A < 0 -> not clipped
    # token (0,1) rho=1 -> not clipped; row 1 tokens 0,2: rho=1. So 1 of 5 masked tokens is clipped.
    assert out.clip_fraction.item() == pytest.approx(1 / 5)


def test_loss_fp32_matches_to_1e6():
    logp, old, ref, adv, mask = (t.float() for t in _fixed_batch())
    out = grpo_loss(logp, old, ref, adv, mask, beta=0.04, epsilon_low=0.2, epsilon_high=0.2)
    assert abs(out.loss.item() - _hand_loss("grpo", 0.04, 0.2)) < 1e-6


def test_single_iteration_ratio_is_one_and_gradient_is_advantage_weighted():
    # R1-V: old = logp.detach(), so the loss value is -A (+ beta KL) but d loss / d logp = -A / |o|.
    logp = torch.tensor([[-1.0, -2.0], [-0.5, -0.5]], requires_grad=True)
    adv = torch.tensor([2.0, -1.0])
    mask = torch.ones(2, 2)
    out = grpo_loss(logp, None, None, adv, mask, beta=0.0, epsilon_low=0.2, epsilon_high=0.2)
    assert out.loss.item() == pytest.approx(-(2.0 - 1.0) / 2)
    out.loss.backward()
    assert logp.grad.tolist() == [[-0.5, -0.5], [0.25, 0.25]]
    assert out.ratio_mean.item() == 1.0 and out.kl is None


def test_beta_needs_reference():
    logp, old, _, adv, mask = _fixed_batch()
    with pytest.raises(ValueError):
        grpo_loss(logp, old, None, adv, mask, beta=0.1, epsilon_low=0.2, epsilon_high=0.2)


def test_masked_mean_empty_row_is_safe():
    v = torch.tensor([[1.0, 2.0], [5.0, 5.0]])
    m = torch.tensor([[1.0, 1.0], [0.0, 0.0]])
    assert masked_mean(v, m, "grpo").item() == pytest.approx((1.5 + 0.0) / 2)
    assert masked_mean(v, m, "bnpo").item() == pytest.approx(1.5)


def test_dr_grpo_equals_hand_formula():
    """TRL's Dr. GRPO: masked token sum over the constant N * max_completion_length (not the token count)."""
    logp, old, ref, adv, mask = _fixed_batch()
    beta, eps, l_max = 0.04, 0.2, 7
    m, lp, o, rf, a = mask.tolist(), logp.tolist(), old.tolist(), ref.tolist(), adv.tolist()
    total = 0.0
    for i in range(2):
        for t in range(3):
            if m[i][t]:
                rho = math.exp(lp[i][t] - o[i][t])
                surrogate = min(rho * a[i], min(max(rho, 1 - eps), 1 + eps) * a[i])
                d = rf[i][t] - lp[i][t]
                total += -(surrogate - beta * (math.exp(d) - d - 1))
    out = grpo_loss(logp, old, ref, adv, mask, beta=beta, epsilon_low=eps, epsilon_high=eps, loss_type="dr_grpo",
                    max_completion_length=l_max)
    assert out.loss.item() == pytest.approx(total / (2 * l_max), abs=1e-9)
    # The normaliser is a constant: the same token losses give the same value as 'bnpo' rescaled.
    bnpo = grpo_loss(logp, old, ref, adv, mask, beta=beta, epsilon_low=eps, epsilon_high=eps, loss_type="bnpo")
    assert out.loss.item() == pytest.approx(bnpo.loss.item() * mask.sum().item() / (2 * l_max), abs=1e-9)
    assert out.kl.item() == pytest.approx(bnpo.kl.item())  # logged KL stays a per-token mean


def test_dr_grpo_gradient_is_length_independent():
    # Sequence-mean losses give each token of a short row more weight; Dr. GRPO does not.
    logp = torch.zeros(2, 4, requires_grad=True)
    mask = torch.tensor([[1.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0]])
    out = grpo_loss(logp, None, None, torch.tensor([1.0, 1.0]), mask, beta=0.0, epsilon_low=0.2, epsilon_high=0.2,
                    loss_type="dr_grpo", max_completion_length=4)
    out.loss.backward()
    assert logp.grad.tolist() == [[-0.125, 0.0, 0.0, 0.0], [-0.125] * 4]


def test_dr_grpo_needs_max_completion_length():
    logp, old, ref, adv, mask = _fixed_batch()
    with pytest.raises(ValueError, match="max_completion_length"):
        grpo_loss(logp, old, ref, adv, mask, beta=0.04, epsilon_low=0.2, epsilon_high=0.2, loss_type="dr_grpo")
    with pytest.raises(ValueError, match="unknown loss_type"):
        masked_mean(logp, mask, "sum")


# Global-batch advantages: 3 groups of G=4 split unevenly over 2 ranks (8 + 4 rollouts).
_GLOBAL_REWARDS = [1.0, 0.0, 0.5, 1.0, 0.0, 0.0, 0.25, 1.0, 2.0, 2.0, 1.5, 0.0]
_RANK_SLICES = [(0, 8), (8, 12)]


def test_batch_scope_single_process_matches_torch_std():
    r = torch.tensor(_GLOBAL_REWARDS)
    ours = group_advantages(r, group_size=4, scope="batch", eps=1e-4, reduce_sum=all_reduce_sum)
    assert torch.allclose(ours, (r - r.mean()) / (r.std() + 1e-4), atol=1e-6)


def _batch_scope_worker(rank: int, init_file: str, out_dir: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        lo, hi = _RANK_SLICES[rank]
        local = torch.tensor(_GLOBAL_REWARDS[lo:hi])
        adv = group_advantages(local, group_size=4, scope="batch", eps=1e-4, reduce_sum=all_reduce_sum)
        torch.save(adv, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_batch_scope_uses_the_global_batch_across_ranks(tmp_path):
    """Two gloo processes holding 8 and 4 rollouts get the advantages of the 12-rollout batch."""
    import torch.multiprocessing as mp

    mp.spawn(_batch_scope_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    got = torch.cat([torch.load(tmp_path / f"rank{k}.pt") for k in range(2)])
    whole = torch.tensor(_GLOBAL_REWARDS)
    expected = (whole - whole.mean()) / (whole.std() + 1e-4)
    assert torch.allclose(got, expected, atol=1e-6)
    # Per-rank statistics (the old behaviour) give different advantages on both ranks.
    per_rank = torch.cat([group_advantages(whole[lo:hi], 4, "batch") for lo, hi in _RANK_SLICES])
    assert not torch.allclose(per_rank, expected, atol=1e-3)


def test_nan_rewards_are_left_out_of_group_statistics():
    from r1v.trainer.grpo_math import advantages_by_group

    nan = float("nan")
    r = torch.tensor([1.0, nan, 0.0, 0.0, nan, nan, 3.0, nan, nan, nan, 2.0, 5.0])
    ids = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2])
    adv = advantages_by_group(r, ids, eps=1e-4)
    # group 0 scores {1, 0, 0}: mean 1/3, unbiased std sqrt(1/3); the NaN row gets 0.
    std = math.sqrt(1 / 3)
    assert adv[:4].tolist() == pytest.approx([(2 / 3) / (std + 1e-4), 0.0, (-1 / 3) / (std + 1e-4),
                                              (-1 / 3) / (std + 1e-4)], rel=1e-6)
    assert adv[4:8].tolist() == [0.0] * 4  # one scored row: no std, no advantage
    # group 2 scores {2, 5}: mean 3.5, std sqrt(4.5).
    s2 = math.sqrt(4.5)
    assert adv[8:].tolist() == pytest.approx([0.0, 0.0, -1.5 / (s2 + 1e-4), 1.5 / (s2 + 1e-4)], rel=1e-6)
    # Without NaN the values are unchanged: the scored rows alone give the same advantages.
    alone = advantages_by_group(torch.tensor([1.0, 0.0, 0.0]), torch.tensor([0, 0, 0]), eps=1e-4)
    assert adv[[0, 2, 3]].tolist() == pytest.approx(alone.tolist(), rel=1e-7)


def test_nan_rewards_batch_scope_and_all_nan_group():
    from r1v.trainer.grpo_math import advantages_by_group

    nan = float("nan")
    r = torch.tensor([0.0, nan, 1.0, 2.0])
    adv = advantages_by_group(r, torch.tensor([0, 0, 1, 1]), scope="batch", eps=0.0)
    assert adv.tolist() == pytest.approx([-1.0, 0.0, 0.0, 1.0])  # mean 1, std 1 over {0, 1, 2}
    all_nan = advantages_by_group(torch.tensor([nan, nan, 1.0, 0.0]), torch.tensor([0, 0, 1, 1]))
    assert all_nan[:2].tolist() == [0.0, 0.0] and not torch.isnan(all_nan).any()


def test_reward_metrics_skip_nan_rows():
    from r1v.trainer.utils import rollout_reward_metrics

    nan = float("nan")
    rewards = torch.tensor([[1.0, 1.0], [nan, 1.0], [0.0, 0.0], [0.0, 1.0]])
    reward = rewards.sum(dim=1)  # [2, nan, 0, 1]
    out = {name: (value, n) for name, value, n in rollout_reward_metrics(
        reward, rewards, torch.ones(4, dtype=torch.bool), torch.ones(4, 3), torch.tensor([0, 0, 1, 1]),
        ["judge", "format"], torch.ones(4, dtype=torch.bool))}
    assert out["rewards/judge"] == (pytest.approx(1 / 3), 3) and out["rewards/format"] == (0.75, 4)
    assert out["reward"] == (1.0, 3)
    assert out["reward_std"] == (pytest.approx(math.sqrt(0.5)), 1)  # group 0 has one scored row: left out
