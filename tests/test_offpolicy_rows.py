"""Batches that can carry off-policy rows: advantages by group id, the rollout concatenation
helper, the per-row surrogate seam of the loss, and the stacking rule of combine_rewards."""
import dataclasses
import math
from types import SimpleNamespace

import pytest
import torch

from ffr.rollouts import assemble_chosen
from ffr.trainer import FFRTrainer
from r1v.trainer.batch import PromptBatch, RolloutBatch, RowSource, concat_rollouts
from r1v.trainer.grpo_math import (
    RowContext, Surrogate, advantages_by_group, contiguous_group_ids, group_advantages, grpo_loss, surrogate_loss,
)
from r1v.trainer.grpo_trainer import Qwen2VLGRPOTrainer
from r1v.trainer.tgrpo import TGRPOTrainer
from r1v.trainer.utils import MetricStore

EPS = 1e-4


# ---------------------------------------------------------------------------- advantages by group id
def test_advantages_by_id_equal_the_per_g_grouping_for_contiguous_groups():
    gen = torch.Generator().manual_seed(0)
    r = torch.rand(12, generator=gen)
    r[4:8] = 0.5  # one degenerate group: zero advantages, never NaN
    g = 4
    grouped = r.view(-1, g)  # the R1-V formula the trainer used before group ids
    old = (r - grouped.mean(dim=1).repeat_interleave(g)) / (grouped.std(dim=1).repeat_interleave(g) + EPS)
    by_id = advantages_by_group(r, contiguous_group_ids(12, g), eps=EPS)
    assert torch.equal(by_id, old)
    assert torch.equal(group_advantages(r, g, eps=EPS), old)
    # The same groups in another row order give the same advantage per row.
    perm = torch.randperm(12, generator=gen)
    shuffled = advantages_by_group(r[perm], contiguous_group_ids(12, g)[perm], eps=EPS)
    assert torch.allclose(shuffled, old[perm], atol=1e-6)


def test_group_of_g_on_policy_rows_plus_extra_rows_hand_computed():
    # Two groups of G=4 on-policy rows, then one extra (off-policy) row joining each group.
    r = torch.tensor([1.0, 0.0, 0.0, 0.0, 2.0, 2.0, 2.0, 2.0, 1.0, 0.0])
    ids = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1, 0, 1])
    adv = advantages_by_group(r, ids, eps=EPS)
    # group 0 = {1, 0, 0, 0, 1}: mean 0.4, unbiased var (2 * 0.36 + 3 * 0.16) / 4 = 0.3
    s0 = math.sqrt(0.3) + EPS
    # group 1 = {2, 2, 2, 2, 0}: mean 1.6, unbiased var (4 * 0.16 + 2.56) / 4 = 0.8
    s1 = math.sqrt(0.8) + EPS
    expect = [0.6 / s0, -0.4 / s0, -0.4 / s0, -0.4 / s0] + [0.4 / s1] * 4 + [0.6 / s0, -1.6 / s1]
    assert adv.tolist() == pytest.approx(expect, rel=1e-5)
    # Batch scope ignores the ids.
    assert torch.equal(advantages_by_group(r, ids, scope="batch", eps=EPS), (r - r.mean()) / (r.std() + EPS))


def test_a_one_row_group_is_refused():
    with pytest.raises(ValueError, match="at least 2 rows"):
        advantages_by_group(torch.tensor([1.0, 0.0, 1.0]), torch.tensor([0, 0, 1]))


# ---------------------------------------------------------------------------- concatenation helper
def _prompts(n: int, length: int, first_token: int) -> PromptBatch:
    ids = torch.arange(first_token, first_token + n * length).view(n, length)
    return PromptBatch(ids, torch.ones_like(ids), torch.zeros_like(ids), {}, {"video": [0] * n, "image": [0] * n},
                       [{"row": first_token + i} for i in range(n)], pad_token_id=0)


def _rollouts(n: int, c: int, seed: int, source: RowSource, behaviour: bool) -> RolloutBatch:
    gen = torch.Generator().manual_seed(seed)
    rand = lambda *shape: torch.rand(*shape, generator=gen)
    batch = RolloutBatch(
        prompts=_prompts(n, 2 + seed, 100 * (seed + 1)),
        completion_ids=torch.randint(1, 50, (n, c), generator=gen), completion_mask=torch.ones(n, c, dtype=torch.long),
        completions_text=[f"text {seed}.{i}" for i in range(n)], rewards=rand(n, 2), advantages=rand(n),
        old_per_token_logps=rand(n, c), ref_per_token_logps=rand(n, c), valid=torch.ones(n, dtype=torch.bool),
        group_ids=torch.arange(n) // 2, source=torch.full((n,), int(source)),
        behaviour_logps=rand(n, c) if behaviour else None,
    )
    batch.reward = rand(n)
    return batch


def _every_field(batch: RolloutBatch) -> dict:
    names = [f.name for f in dataclasses.fields(RolloutBatch) if f.name != "extras"] + ["reward"]
    return {name: getattr(batch, name) for name in names}


def test_concat_rollouts_keeps_every_field():
    a = _rollouts(4, 3, seed=0, source=RowSource.ON_POLICY, behaviour=False)
    b = _rollouts(2, 5, seed=1, source=RowSource.TEACHER, behaviour=True)
    a.extras["variant_a"] = {"batch": "level"}
    out = concat_rollouts(a, b)
    fields = _every_field(out)
    assert all(v is not None for v in fields.values()), [k for k, v in fields.items() if v is None]
    pad = lambda t, value: torch.nn.functional.pad(t, (0, 5 - t.shape[1]), value=value)
    for name, value in fields.items():
        left, right = getattr(a, name), getattr(b, name)
        if name == "prompts":
            assert torch.equal(value.input_ids, a.prompts.concat(b.prompts).input_ids)
            assert value.meta == a.prompts.meta + b.prompts.meta
        elif name == "completions_text":
            assert value == left + right
        elif name == "behaviour_logps":  # rows without behaviour log-probs hold 0
            assert torch.equal(value, torch.cat([torch.zeros(4, 5), right]))
        elif value.dim() == 2 and name != "rewards":  # per-token: right-padded to the longer completion
            assert torch.equal(value, torch.cat([pad(left, 0), right])), name
        else:
            assert torch.equal(value, torch.cat([left, right])), name
    assert out.source.tolist() == [0] * 4 + [int(RowSource.TEACHER)] * 2
    assert out.extras["variant_a"] is a.extras["variant_a"]

    picked = out.select([5, 0, 0])
    for name, value in _every_field(picked).items():
        whole = getattr(out, name)
        if name == "prompts":
            assert torch.equal(value.input_ids, whole.input_ids[[5, 0, 0]])
        elif name == "completions_text":
            assert value == [whole[5], whole[0], whole[0]]
        else:
            assert torch.equal(value, whole[[5, 0, 0]]), name


def test_concat_rollouts_refuses_a_field_set_on_one_side_only():
    a = _rollouts(2, 3, seed=0, source=RowSource.ON_POLICY, behaviour=False)
    b = _rollouts(2, 3, seed=1, source=RowSource.REPLAY, behaviour=False)
    b.rewards = None
    with pytest.raises(ValueError, match="'rewards' is set on some batches only"):
        concat_rollouts(a, b)
    b = _rollouts(2, 3, seed=1, source=RowSource.REPLAY, behaviour=False)
    a.extras["x"], b.extras["x"] = [1], [1]
    with pytest.raises(ValueError, match=r"extras\['x'\] differs"):
        concat_rollouts(a, b)


def test_ffr_assembly_keeps_group_ids_and_marks_patched_rows():
    first = _rollouts(4, 3, seed=0, source=RowSource.ON_POLICY, behaviour=False)
    second = _rollouts(1, 4, seed=1, source=RowSource.PATCHED, behaviour=False)
    second.group_ids = first.group_ids[[2]]  # the patched rollout repairs first-pass row 2
    chosen = assemble_chosen(first, second, [0, 1, 4, 3])
    assert chosen.group_ids.tolist() == first.group_ids.tolist()
    assert chosen.source.tolist() == [0, 0, int(RowSource.PATCHED), 0]
    assert chosen.completions_text == first.completions_text[:2] + second.completions_text + first.completions_text[3:]
    assert assemble_chosen(first, second, [0, 1, 2, 3]) is first


def test_on_policy_rows_skip_extra_rows():
    batch = _rollouts(6, 2, seed=0, source=RowSource.ON_POLICY, behaviour=False)
    batch.group_ids = torch.tensor([0, 0, 1, 1, 1, 0])
    batch.source = torch.tensor([0, 0, 0, 0, int(RowSource.REPLAY), int(RowSource.TEACHER)])
    assert batch.on_policy_rows(2).tolist() == [[0, 1], [2, 3]]
    with pytest.raises(ValueError, match="expected 3"):
        batch.on_policy_rows(3)


# ---------------------------------------------------------------------------- surrogate seam
def _loss_inputs():
    gen = torch.Generator().manual_seed(3)
    logps = (torch.randn(4, 5, generator=gen) * 0.3 - 1.0).requires_grad_()
    old = logps.detach() + torch.randn(4, 5, generator=gen) * 0.3  # ratios well outside [0.8, 1.2]
    ref = logps.detach() + torch.randn(4, 5, generator=gen) * 0.1
    adv = torch.tensor([1.0, -1.0, 0.5, -0.5])
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 1, 1, 1, 0], [1, 0, 0, 0, 0]])
    return logps, old, ref, adv, mask


@pytest.mark.parametrize("loss_type", ["grpo", "bnpo", "dr_grpo"])
@pytest.mark.parametrize("with_old", [True, False])
def test_default_surrogate_reproduces_grpo_loss_exactly(loss_type, with_old):
    logps, old, ref, adv, mask = _loss_inputs()
    old = old if with_old else None
    a = grpo_loss(logps, old, ref, adv, mask, 0.04, 0.2, 0.28, loss_type, max_completion_length=5)
    (ga,) = torch.autograd.grad(a.loss, logps)
    rows = RowContext(torch.tensor([0, 1, 2, 3]), torch.zeros(4, 5))  # the default pieces ignore rows
    b = surrogate_loss(logps, old, ref, adv, mask, 0.04, Surrogate(0.2, 0.28), rows, loss_type,
                       max_completion_length=5)
    (gb,) = torch.autograd.grad(b.loss, logps)
    assert torch.equal(a.loss, b.loss) and torch.equal(ga, gb)
    assert torch.equal(a.kl, b.kl) and torch.equal(a.clip_fraction, b.clip_fraction)
    assert torch.equal(a.ratio_mean, b.ratio_mean)
    if with_old:
        assert a.clip_fraction > 0  # the clip is active somewhere, so the comparison covers it


class NoClipOffPolicy(Surrogate):
    """One replaced piece: rows that are not on-policy are never clipped."""

    def clip(self, shaped, rows):
        off = (rows.source != int(RowSource.ON_POLICY)).unsqueeze(1)
        return torch.where(off, shaped, super().clip(shaped, rows))


def test_a_replaced_piece_gives_the_hand_computed_loss():
    # Both rows: ratios (1.5, 0.5), A = +1, eps 0.2. Row 0 on-policy: min(1.5, 1.2) = 1.2, min(0.5, 0.8) = 0.5.
    # Row 1 a teacher trace, unclipped: 1.5 and 0.5. 'grpo' loss = -mean(mean(1.2, 0.5), mean(1.5, 0.5)) = -0.925.
    old = torch.log(torch.tensor([[2.0, 2.0], [2.0, 2.0]]))
    logps = (old + torch.log(torch.tensor([[1.5, 0.5], [1.5, 0.5]]))).requires_grad_()
    rows = RowContext(torch.tensor([int(RowSource.ON_POLICY), int(RowSource.TEACHER)]))
    out = surrogate_loss(logps, old, None, torch.tensor([1.0, 1.0]), torch.ones(2, 2), 0.0, NoClipOffPolicy(0.2, 0.2),
                         rows)
    assert out.loss.item() == pytest.approx(-0.925, rel=1e-6)
    assert out.clip_fraction.item() == pytest.approx(0.25)  # only row 0's first token
    assert out.ratio_mean.item() == pytest.approx(1.0)
    # d loss / d logp = -A * rho / (N * C) on unclipped tokens (d rho / d logp = rho), 0 on the clipped one.
    (grad,) = torch.autograd.grad(out.loss, logps)
    assert grad.tolist() == [pytest.approx([0.0, -0.125]), pytest.approx([-0.375, -0.125])]
    # The default pieces clip row 1 too: -mean(mean(1.2, 0.5), mean(1.2, 0.5)) = -0.85.
    default = surrogate_loss(logps, old, None, torch.tensor([1.0, 1.0]), torch.ones(2, 2), 0.0, Surrogate(0.2, 0.2),
                             rows)
    assert default.loss.item() == pytest.approx(-0.85, rel=1e-6)


def test_trainer_surrogate_uses_the_configured_epsilons():
    fake = SimpleNamespace(args=SimpleNamespace(epsilon=0.2, epsilon_high=0.28))
    pieces = Qwen2VLGRPOTrainer.surrogate(fake)
    assert type(pieces) is Surrogate and (pieces.epsilon_low, pieces.epsilon_high) == (0.2, 0.28)


# ---------------------------------------------------------------------------- stacking rule
class _RecordsColumns(Qwen2VLGRPOTrainer):
    """A variant below FFR in the method order: records what reaches it through super()."""

    def combine_rewards(self, rollouts, columns=None):
        self.seen_columns = columns
        return super().combine_rewards(rollouts, columns)


class _Stacked(FFRTrainer, _RecordsColumns):
    pass


def test_ffr_combine_rewards_passes_its_other_columns_down_the_chain():
    trainer = object.__new__(_Stacked)  # the stage only needs these attributes
    trainer.ffr_enabled, trainer._acc, trainer._fmt, trainer._others = True, 0, 1, [2]
    trainer.reward_weights = torch.tensor([1.0, 1.0, 0.5])
    trainer.args = SimpleNamespace(ffr_patch_tax=0.3, ffr_format_weight=1.0)
    batch = _rollouts(2, 2, seed=0, source=RowSource.ON_POLICY, behaviour=False)
    batch.rewards = torch.tensor([[1.0, 1.0, 0.4], [0.0, 0.0, 0.8]])
    no = torch.zeros(2, dtype=torch.bool)
    batch.extras["ffr"] = {"first_acc": torch.tensor([1.0, 0.0]), "patched_acc": torch.full((2,), float("nan")),
                           "chosen": no, "first_fmt": torch.tensor([1.0, 0.0]),
                           "patched_fmt": torch.full((2,), float("nan"))}
    reward = trainer.combine_rewards(batch)
    assert trainer.seen_columns == [2]
    assert reward.tolist() == pytest.approx([1.0 + 1.0 + 0.2, 0.0 + 0.0 + 0.4])


def test_tgrpo_bonus_is_paid_on_the_on_policy_rows_of_each_group():
    def trainer():
        t = object.__new__(TGRPOTrainer)
        t._acc, t.num_generations, t.metrics = 0, 2, MetricStore()
        t.reward_weights = torch.tensor([1.0])
        t.args = SimpleNamespace(temporal_bonus=0.3, temporal_ratio=0.8, accuracy_threshold=0.1, len_control=False)
        return t

    plain = _rollouts(4, 2, seed=0, source=RowSource.ON_POLICY, behaviour=False)
    plain.rewards = torch.tensor([[1.0], [0.0], [1.0], [0.0]])
    plain.extras["tgrpo"] = {"video_rows": [0, 1], "shuffled_acc": torch.tensor([[0.0], [1.0]])}
    base = trainer().combine_rewards(plain)
    # Ordered mean 0.5 each: >= 0.8 x 0 for prompt 0 (bonus on its correct rollout), < 0.8 x 1 for prompt 1.
    assert base.tolist() == pytest.approx([1.3, 0.0, 1.0, 0.0])
    extra = _rollouts(2, 2, seed=1, source=RowSource.TEACHER, behaviour=False)
    extra.rewards, extra.group_ids = torch.tensor([[1.0], [1.0]]), torch.tensor([1, 0])
    extra.reward = None
    plain.reward = None
    mixed = concat_rollouts(plain, extra)
    assert trainer().combine_rewards(mixed).tolist() == pytest.approx(base.tolist() + [1.0, 1.0])
