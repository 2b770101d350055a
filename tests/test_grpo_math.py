"""GRPO math against hand-computed values (paper Eq. 2, 9-11)."""
import math

import pytest
import torch

from r1v.trainer.grpo_math import (
    completion_mask_from_eos, group_advantages, grpo_loss, k3_kl, masked_mean, selective_log_softmax,
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
