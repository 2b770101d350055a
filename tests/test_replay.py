"""RePO's maths on fixed tensors: the five retrieval strategies, the FIFO and its checkpoint state,
split vs mixed advantages, and L = L_on + lambda * L_off with the ratio against stored behaviour
log-probs (every expected value written out by hand)."""
import io
import itertools
import math
import random

import pytest
import torch

from r1v.trainer.batch import RowSource
from r1v.trainer.grpo_math import RowContext, surrogate_loss
from r1v.trainer.replay import ReplayConfig, ReplaySurrogate, replay_advantages
from r1v.trainer.replay_buffer import ReplayBuffer, ReplayEntry, select_entries

EPS = 1e-4


def _entry(name: str, reward: float, length: int = 2) -> ReplayEntry:
    return ReplayEntry(torch.arange(length), torch.full((length,), -reward - 0.5), torch.tensor([reward, 0.0]),
                       reward, name)


# Oldest first; rewards chosen with ties (1.0 twice) so tie rules show.
FIXED = [_entry(f"e{i}", r) for i, r in enumerate([0.2, 1.0, 0.5, 1.0, 0.0])]
names = lambda entries: [e.text for e in entries]


# ---------------------------------------------------------------------------- strategies on a fixed buffer
def test_all_and_recent_k():
    assert names(select_entries(FIXED, "all", k=0)) == ["e0", "e1", "e2", "e3", "e4"]
    assert names(select_entries(FIXED, "recent_k", k=2)) == ["e3", "e4"]


def test_highest_k_keeps_the_older_of_equal_rewards_first():
    assert names(select_entries(FIXED, "highest_k", k=3)) == ["e1", "e3", "e2"]
    assert names(select_entries(FIXED, "highest_k", k=1)) == ["e1"]


def test_max_variance_k_hand_computed():
    # k=2: {0.0, 1.0} has population variance 0.25, the largest; e1 is the older 1.0.
    assert names(select_entries(FIXED, "max_variance_k", k=2)) == ["e4", "e1"]
    # k=3: candidates {1,1,.5} var .0556, {0,1,1} var .2222, {0,.2,1} var .1867, {0,.2,.5} var .0422.
    assert names(select_entries(FIXED, "max_variance_k", k=3)) == ["e4", "e1", "e3"]


def _brute_force(rewards: list[float], k: int) -> tuple[float, float]:
    """RePO's exhaustive search: max population variance, ties to the larger sum."""
    best = max(((_var([rewards[j] for j in s]), sum(rewards[j] for j in s))
                for s in itertools.combinations(range(len(rewards)), k)))
    return best


def _var(values):
    m = sum(values) / len(values)
    return sum((v - m) ** 2 for v in values) / len(values)


def test_max_variance_k_matches_the_exhaustive_search():
    rng = random.Random(0)
    for trial in range(200):
        n = rng.randint(2, 9)
        binary = trial % 2 == 0  # binary rewards: many ties, RePO's usual case
        rewards = [float(rng.randint(0, 1)) if binary else round(rng.uniform(0, 2), 2) for _ in range(n)]
        k = rng.randint(1, n)
        got = select_entries([_entry(str(i), r) for i, r in enumerate(rewards)], "max_variance_k", k)
        assert len({e.text for e in got}) == k
        picked = [e.reward for e in got]
        assert (_var(picked), sum(picked)) == pytest.approx(_brute_force(rewards, k), abs=1e-12), (rewards, k)


def test_random_k_draws_distinct_entries_reproducibly():
    draw = lambda seed: names(select_entries(FIXED, "random_k", 3, torch.Generator().manual_seed(seed)))
    assert draw(1) == draw(1) and len(set(draw(1))) == 3
    assert len({tuple(draw(s)) for s in range(10)}) > 1


def test_unknown_strategy_and_bad_k_are_refused():
    with pytest.raises(ValueError, match="unknown replay strategy"):
        select_entries(FIXED, "topk", 2)
    with pytest.raises(ValueError, match="cannot retrieve 6"):
        select_entries(FIXED, "highest_k", 6)


# ---------------------------------------------------------------------------- the FIFO and its state
def test_fifo_drops_the_oldest_and_replays_only_from_min_cache():
    buf = ReplayBuffer(max_size=3, min_to_replay=2, strategy="recent_k", num_replays=5)
    buf.push("p", _entry("a", 0.0))
    assert buf.retrieve("p") == [] and buf.retrieve("unseen") == []
    buf.push_all([("p", _entry(x, 0.0)) for x in "bcd"])
    assert names(buf.fifos["p"]) == ["b", "c", "d"] and buf.pushed["p"] == 4
    assert names(buf.retrieve("p")) == ["b", "c", "d"]  # k = min(len 3, num_replays 5)
    buf.strategy = "all"
    assert names(buf.retrieve("p")) == ["b", "c", "d"]


def test_state_dict_round_trip_through_a_file():
    buf = ReplayBuffer(max_size=4, min_to_replay=2, strategy="random_k", num_replays=2, seed=7)
    buf.push_all([(key, _entry(f"{key}{i}", i / 5)) for i in range(6) for key in ("p", "q")])
    raw = io.BytesIO()
    torch.save(buf.state_dict(), raw)
    raw.seek(0)
    back = ReplayBuffer(max_size=4, min_to_replay=2, strategy="random_k", num_replays=2, seed=7)
    back.load_state_dict(torch.load(raw, weights_only=True))
    assert back.digest() == buf.digest() and len(back) == 8
    assert names(back.retrieve("p")) == names(buf.retrieve("p"))  # random_k: same draw after a restore
    other = ReplayBuffer(max_size=5, min_to_replay=2, strategy="random_k", num_replays=2)
    with pytest.raises(ValueError, match="replay_max_cache"):
        other.load_state_dict(buf.state_dict())
    buf.push("p", _entry("new", 0.0))
    assert buf.digest() != back.digest()


# ---------------------------------------------------------------------------- advantages
REWARDS = torch.tensor([1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.0, 1.0, 0.0])
GROUPS = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 1, 1])
SOURCE = torch.tensor([0] * 8 + [int(RowSource.REPLAY)] * 5)


def test_split_advantages_hand_computed():
    adv = replay_advantages(REWARDS, GROUPS, SOURCE, "split", EPS)
    s_on0 = math.sqrt(1 / 3) + EPS  # {1, 0, 0, 1}: mean .5, unbiased var 1/3
    s_on1 = math.sqrt(0.25) + EPS  # {0, 0, 0, 1}: mean .25, unbiased var (3 * 1/16 + 9/16) / 3 = 1/4
    s_off0 = math.sqrt(1 / 3) + EPS  # replayed {1, 1, 0}: mean 2/3, unbiased var (2/9 + 4/9) / 2 = 1/3
    s_off1 = math.sqrt(0.5) + EPS  # replayed {1, 0}: mean .5, unbiased var .5
    expect = [0.5 / s_on0, -0.5 / s_on0, -0.5 / s_on0, 0.5 / s_on0,
              -0.25 / s_on1, -0.25 / s_on1, -0.25 / s_on1, 0.75 / s_on1,
              (1 / 3) / s_off0, (1 / 3) / s_off0, (-2 / 3) / s_off0, 0.5 / s_off1, -0.5 / s_off1]
    assert adv.tolist() == pytest.approx(expect, rel=1e-6)


def test_mixed_advantages_hand_computed():
    adv = replay_advantages(REWARDS, GROUPS, SOURCE, "mixed", EPS)
    # group 0 = {1, 0, 0, 1, 1, 1, 0}: mean 4/7, unbiased var (4 * 9/49 + 3 * 16/49) / 6 = 2/7
    m0, s0 = 4 / 7, math.sqrt(2 / 7) + EPS
    # group 1 = {0, 0, 0, 1, 1, 0}: mean 1/3, unbiased var (4 * 1/9 + 2 * 4/9) / 5 = 4/15
    m1, s1 = 1 / 3, math.sqrt(4 / 15) + EPS
    expect = [(r - (m0 if g == 0 else m1)) / (s0 if g == 0 else s1) for r, g in zip(REWARDS.tolist(), GROUPS.tolist())]
    assert adv.tolist() == pytest.approx(expect, rel=1e-6)


# ---------------------------------------------------------------------------- L_on + lambda * L_off
def _loss_inputs():
    # Rows 0, 1 on-policy, row 2 replayed. Columns: 2 tokens; row 2's second token is padding.
    logps = torch.tensor([[-1.0, -2.0], [-0.5, -0.7], [-1.0, -3.0]], requires_grad=True)
    behaviour = torch.tensor([[0.0, 0.0], [0.0, 0.0], [-1.0 - math.log(1.5), -9.0]])  # row 2 token 0: rho = 1.5
    mask = torch.tensor([[1, 1], [1, 1], [1, 0]])
    advantages = torch.tensor([0.5, -1.0, 2.0])
    source = torch.tensor([0, 0, int(RowSource.REPLAY)])
    return logps, behaviour, mask, advantages, source


@pytest.mark.parametrize("coef", [1.0, 0.3])
def test_l_on_plus_lambda_l_off_hand_computed(coef):
    logps, behaviour, mask, adv, source = _loss_inputs()
    out = surrogate_loss(logps, None, None, adv, mask, 0.0, ReplaySurrogate(0.2, 0.2, coef),
                         RowContext(source, behaviour), "grpo")
    # On-policy rows: rho = 1, each row's token mean is -A. Replayed row: rho = 1.5 > 1.2 with A > 0 -> clipped: -1.2 A.
    l_on = (-0.5 + 1.0) / 3
    l_off = (-1.2 * 2.0) / 3  # RePO divides both parts by all rows of the batch
    assert out.loss.item() == pytest.approx(l_on + coef * l_off, rel=1e-6)
    assert out.clip_fraction.item() == pytest.approx(1 / 5)  # 1 of 5 unmasked tokens
    out.loss.backward()
    assert logps.grad[2].abs().sum() == 0  # the clipped token gives no gradient; the pad token none either


def test_unclipped_replay_token_ratio_uses_behaviour_logps():
    logps, behaviour, mask, adv, source = _loss_inputs()
    behaviour[2, 0] = -1.0 - math.log(1.1)  # rho = 1.1, inside the clip range
    out = surrogate_loss(logps, None, None, adv, mask, 0.0, ReplaySurrogate(0.2, 0.2, 0.5),
                         RowContext(source, behaviour), "grpo")
    assert out.loss.item() == pytest.approx((-0.5 + 1.0) / 3 + 0.5 * (-1.1 * 2.0) / 3, rel=1e-6)
    out.loss.backward()
    # d/dlogp of -lambda * rho * A / 3 = -lambda * rho * A / 3
    assert logps.grad[2, 0].item() == pytest.approx(-0.5 * 1.1 * 2.0 / 3, rel=1e-5)


def test_kl_is_paid_by_on_policy_rows_only():
    logps, behaviour, mask, adv, source = _loss_inputs()
    ref = logps.detach() - 0.1  # d = ref - logp = -0.1 on every token: k3 = e^-0.1 + 0.1 - 1
    k3 = math.exp(-0.1) + 0.1 - 1
    beta = 0.5
    out = surrogate_loss(logps, None, ref, adv, mask, beta, ReplaySurrogate(0.2, 0.2, 1.0),
                         RowContext(source, behaviour), "grpo")
    no_kl = (-0.5 + 1.0) / 3 + (-1.2 * 2.0) / 3
    assert out.loss.item() == pytest.approx(no_kl + beta * 2 * k3 / 3, rel=1e-6)
    out.loss.backward()
    assert logps.grad[2].abs().sum() == 0  # no KL gradient reaches the replayed row


# ---------------------------------------------------------------------------- config
@pytest.mark.parametrize("kw, match", [
    ({"replay_strategy": "topk"}, "replay_strategy"),
    ({"replay_min_cache": 17}, "replay_min_cache"),
    ({"replay_k": 1}, "split"),
    ({"replay_adv_norm": "both"}, "replay_adv_norm"),
    ({"replay_coef": -1.0}, "replay_coef"),
    ({"advantage_scope": "batch"}, "advantage_scope"),
])
def test_config_rejects_bad_replay_fields(tmp_path, kw, match):
    with pytest.raises(ValueError, match=match):
        ReplayConfig(output_dir=str(tmp_path), use_cpu=True, report_to="none", **kw)


def test_config_defaults_are_repos_script(tmp_path):
    cfg = ReplayConfig(output_dir=str(tmp_path), use_cpu=True, report_to="none")
    assert (cfg.replay_strategy, cfg.replay_k, cfg.replay_min_cache, cfg.replay_max_cache, cfg.replay_adv_norm,
            cfg.replay_coef) == ("highest_k", 8, 16, 16, "split", 1.0)
    assert ReplayConfig(output_dir=str(tmp_path), use_cpu=True, report_to="none", replay_k=1,
                        replay_adv_norm="mixed").replay_k == 1
