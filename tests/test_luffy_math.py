"""LUFFY's maths against hand-computed values: off-policy shaping (loss and gradient), split vs
mixed advantages with and without std, the no-clip option, entropy, config checks and trace files."""
import json
import math

import pytest
import torch

from r1v.trainer.batch import RowSource
from r1v.trainer.grpo_math import RowContext, Surrogate, advantages_by_group, surrogate_loss
from r1v.trainer.luffy import LuffyConfig, load_traces
from r1v.trainer.luffy_math import LuffySurrogate, luffy_advantages, shaped_probability, token_entropy

EPS = 1e-4
ON, TEACHER = int(RowSource.ON_POLICY), int(RowSource.TEACHER)


# ---------------------------------------------------------------------------- off-policy shaping
def test_shaping_values_and_derivative():
    p = torch.tensor([0.1, 0.4, 1.0], requires_grad=True)
    f = shaped_probability(p, 0.1)
    assert f.tolist() == pytest.approx([0.5, 0.8, 1 / 1.1])
    (grad,) = torch.autograd.grad(f.sum(), p)
    # d/dp p / (p + g) = g / (p + g)^2: 0.1 / 0.04, 0.1 / 0.25, 0.1 / 1.21
    assert grad.tolist() == pytest.approx([2.5, 0.4, 0.1 / 1.21])


def _two_rows():
    """Row 0 on-policy with ratios (1.5, 0.5) to pi_old = 0.5; row 1 a teacher trace with pi_theta (0.1, 0.4)."""
    old = torch.log(torch.tensor([[0.5, 0.5], [0.9, 0.9]]))  # row 1's old log-probs must be ignored
    logps = torch.log(torch.tensor([[0.75, 0.25], [0.1, 0.4]])).requires_grad_()
    rows = RowContext(torch.tensor([ON, TEACHER]), torch.zeros(2, 2))  # teacher probability taken as 1
    return logps, old, rows


@pytest.mark.parametrize("clip_on_policy, on_terms, on_grad", [
    (True, (1.2, 0.5), (0.0, -0.125)),  # token 0 clipped at 1 + 0.2: no gradient
    (False, (1.5, 0.5), (-0.375, -0.125)),  # the released script's loss_remove_clip
])
def test_luffy_loss_and_gradient_hand_computed(clip_on_policy, on_terms, on_grad):
    logps, old, rows = _two_rows()
    adv = torch.tensor([1.0, -2.0])
    out = surrogate_loss(logps, old, None, adv, torch.ones(2, 2), 0.0, LuffySurrogate(0.2, 0.2, 0.1, clip_on_policy),
                         rows)
    # Row 0: -A * mean(on_terms). Row 1: -A * mean(f(0.1), f(0.4)) = 2 * mean(0.5, 0.8) = 1.3. 'grpo': mean of rows.
    on_loss = -sum(on_terms) / 2
    assert out.loss.item() == pytest.approx((on_loss + 1.3) / 2, rel=1e-6)
    (grad,) = torch.autograd.grad(out.loss, logps)
    # Teacher token: d/dlogp (-A f(p)) / (N * C) = 2 * g p / (p + g)^2 / 4 = 0.5 * (0.25, 0.16).
    assert grad[1].tolist() == pytest.approx([0.125, 0.08])
    # On-policy token: -A * rho / 4 where unclipped (d rho / d logp = rho).
    assert grad[0].tolist() == pytest.approx(list(on_grad))
    assert out.clip_fraction.item() == pytest.approx(0.25 if clip_on_policy else 0.0)


def test_teacher_ratio_is_pi_theta_without_old_logps():
    logps, _, rows = _two_rows()
    pieces = LuffySurrogate(0.2, 0.2, 0.1)
    ratio = pieces.ratio(logps, None, rows)
    assert ratio[0].tolist() == pytest.approx([1.0, 1.0])  # on-policy, one iteration: pi_old = pi_theta
    assert ratio[1].tolist() == pytest.approx([0.1, 0.4])
    # A teacher trace with known log-probs: the ratio is pi_theta / pi_teacher.
    known = RowContext(rows.source, torch.log(torch.tensor([[1.0, 1.0], [0.5, 0.8]])))
    assert pieces.ratio(logps, None, known)[1].tolist() == pytest.approx([0.2, 0.5])
    with pytest.raises(ValueError, match="behaviour_logps"):
        pieces.ratio(logps, None, RowContext(rows.source, None))


def test_without_teacher_rows_luffy_pieces_are_grpo_exactly():
    gen = torch.Generator().manual_seed(0)
    logps = (torch.randn(3, 4, generator=gen) * 0.3 - 1).requires_grad_()
    old = logps.detach() + torch.randn(3, 4, generator=gen) * 0.3
    adv, mask = torch.tensor([1.0, -0.5, 0.3]), torch.ones(3, 4)
    rows = RowContext(torch.full((3,), ON), torch.zeros(3, 4))
    a = surrogate_loss(logps, old, None, adv, mask, 0.0, Surrogate(0.2, 0.28), rows)
    b = surrogate_loss(logps, old, None, adv, mask, 0.0, LuffySurrogate(0.2, 0.28, 0.1), rows)
    assert torch.equal(a.loss, b.loss) and torch.equal(a.clip_fraction, b.clip_fraction)
    assert a.clip_fraction > 0


# ---------------------------------------------------------------------------- advantages
# Group 0: on-policy rewards (0, 0, 0) + a correct trace; group 1: (1, 0, 1) + a correct trace.
REWARD = torch.tensor([0.0, 0.0, 0.0, 1.0, 0.0, 1.0, 1.0, 1.0])
IDS = torch.tensor([0, 0, 0, 1, 1, 1, 0, 1])
ON_MASK = torch.tensor([True] * 6 + [False] * 2)
S = 0.5 + EPS  # both mixed groups: unbiased std of {0, 0, 0, 1} = {1, 0, 1, 1} = 0.5
R3 = math.sqrt(1 / 3) + EPS  # std of {1, 0, 1}


@pytest.mark.parametrize("mode, use_std, expect", [
    ("mixed", True, [-0.25 / S] * 3 + [0.25 / S, -0.75 / S, 0.25 / S] + [0.75 / S, 0.25 / S]),
    ("mixed", False, [-0.25] * 3 + [0.25, -0.75, 0.25] + [0.75, 0.25]),
    # Split: group 0's on-policy std is 0 and replaced by 1, so its trace gets (1 - 0) / (1 + eps).
    ("split", True, [0.0] * 3 + [(1 / 3) / R3, -(2 / 3) / R3, (1 / 3) / R3] + [1 / (1 + EPS), (1 / 3) / R3]),
    ("split", False, [0.0] * 3 + [1 / 3, -2 / 3, 1 / 3] + [1.0, 1 / 3]),
])
def test_split_and_mixed_advantages_hand_computed(mode, use_std, expect):
    adv = luffy_advantages(REWARD, IDS, ON_MASK, mode, use_std, EPS)
    assert adv.tolist() == pytest.approx(expect, rel=1e-5, abs=1e-7)


def test_mixed_with_std_is_the_base_group_advantage():
    assert torch.equal(luffy_advantages(REWARD, IDS, ON_MASK, "mixed", True, EPS),
                       advantages_by_group(REWARD, IDS, eps=EPS))


def test_split_needs_two_on_policy_rows_per_group_and_a_known_mode():
    with pytest.raises(ValueError, match="2 on-policy rows"):
        luffy_advantages(REWARD, IDS, torch.tensor([True, False, False] + [True] * 3 + [False] * 2), "split")
    with pytest.raises(ValueError, match="unknown LUFFY advantage mode"):
        luffy_advantages(REWARD, IDS, ON_MASK, "batch")


# ---------------------------------------------------------------------------- entropy
def test_token_entropy_hand_computed():
    logits = torch.tensor([[[0.0, 0.0, 0.0, 0.0], [0.0, math.log(3.0), -1e9, -1e9]]])
    # Uniform over 4: log 4. (1/4, 3/4): -(0.25 log 0.25 + 0.75 log 0.75).
    expect = [math.log(4.0), -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))]
    assert token_entropy(logits)[0].tolist() == pytest.approx(expect, rel=1e-6)


# ---------------------------------------------------------------------------- config and trace files
def test_config_defaults_follow_the_paper_and_bad_values_are_refused(tmp_path):
    cfg = LuffyConfig(output_dir=str(tmp_path), use_cpu=True)
    assert (cfg.luffy_num_traces, cfg.luffy_gamma, cfg.luffy_advantage) == (1, 0.1, "mixed")
    assert cfg.luffy_std_normalize and cfg.luffy_clip_on_policy and cfg.beta == 0.0 and cfg.luffy_entropy_coeff == 0
    for bad, match in [({"luffy_num_traces": 7}, "on-policy rows must be >= 2"), ({"luffy_gamma": 0.0}, "luffy_gamma"),
                       ({"luffy_advantage": "batch"}, "luffy_advantage"),
                       ({"advantage_scope": "batch"}, "advantage_scope"),
                       ({"luffy_entropy_coeff": float("nan")}, "luffy_entropy_coeff")]:
        with pytest.raises(ValueError, match=match):
            LuffyConfig(output_dir=str(tmp_path), use_cpu=True, **bad)


def _trace(pid, think="<think>look</think>", solution="<answer>A</answer>"):
    return {"problem_id": pid, "problem": "q", "process": think, "solution": solution, "teacher_model": "t"}


def test_load_traces_reads_teacher_trace_records(tmp_path):
    path = tmp_path / "traces.jsonl"
    rows = [_trace("a"), _trace(7, solution="B"), _trace("a", think="<think>again</think>")]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    traces = load_traces(str(path))
    # The SFT target: process, newline, solution (a bare solution wrapped in <answer> tags).
    assert traces == {"a": ["<think>look</think>\n<answer>A</answer>", "<think>again</think>\n<answer>A</answer>"],
                      "7": ["<think>look</think>\n<answer>B</answer>"]}
    path.write_text(json.dumps({"process": "<think>x</think>", "solution": "A"}) + "\n")
    with pytest.raises(ValueError, match="needs a problem_id"):
        load_traces(str(path))
    path.write_text(json.dumps(_trace("b", think="no tags")) + "\n")
    with pytest.raises(ValueError, match="problem_id='b'"):
        load_traces(str(path))
    path.write_text("")
    with pytest.raises(ValueError, match="no teacher trace"):
        load_traces(str(path))
