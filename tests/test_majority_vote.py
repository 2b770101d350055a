"""TTRL majority-vote reward (r1v.rewards.majority_vote_rewards) against hand-computed labels."""
import pytest

from r1v.rewards import (
    GROUP_REWARD_FUNCS, ON_POLICY_SOURCE, REWARD_FUNCS, answers_match, majority_label, majority_vote_rewards, vote_answer,
)
from r1v.trainer.batch import RowSource


def _a(x: str) -> str:
    return f"<think>t</think><answer>{x}</answer>"


def _columns(n_groups, size, problem_type="multiple choice", gold="B", sources=None):
    n = n_groups * size
    return dict(group_id=[i // size for i in range(n)], row_source=sources or [0] * n,
                problem_type=[problem_type] * n, solution=[f"<answer>{gold}</answer>"] * n)


def test_on_policy_literal_is_the_trainer_code():
    assert ON_POLICY_SOURCE == int(RowSource.ON_POLICY)
    assert REWARD_FUNCS["majority_vote"] is GROUP_REWARD_FUNCS["majority_vote"] is majority_vote_rewards


@pytest.mark.parametrize("completion, expected", [
    (_a("B"), "B"), ("B", None), ("<answer></answer>", None), ("<answer>  </answer>", None),
    ("<answer>A</answer> then <answer>C</answer>", "A"), ("<answer>A", None),
])
def test_vote_answer_uses_the_first_tag_and_abstains_without_one(completion, expected):
    assert vote_answer(completion) == expected


def test_majority_label_counts_ties_to_first_and_ignores_abstentions():
    assert majority_label(["A", "B", "B", "A", None], "multiple choice") == ("A", 2)  # tie: A seen first
    assert majority_label([None, "C", "B", "B"], "multiple choice") == ("B", 2)
    assert majority_label([None, None], "multiple choice") == (None, 0)
    assert majority_label([], "OCR") == (None, 0)


def test_numerical_answers_vote_by_the_numeric_rule():
    # "3.00" and "3.001" round to 3.0 with a decimal marker; "3" has none, so it is another answer.
    assert majority_label(["3", "3.00", "3.001", "4.5"], "numerical") == ("3.00", 2)
    assert answers_match("1,000", "1000", "numerical") is False  # a comma is a decimal marker in the rule
    assert answers_match(" b ", "b", "free-form") and not answers_match("b", "B", "multiple choice")
    with pytest.raises(ValueError, match="unknown problem_type"):
        answers_match("a", "a", "essay")


def test_rewards_and_metrics_hand_computed():
    completions = [_a("B"), _a("B"), _a("A"), "no tags",      # group 0: label B (2 of 4), gold B
                   _a("C"), _a("D"), _a("D"), _a("C"),        # group 1: tie C/D -> C, gold B
                   "", "<answer></answer>", "x", "y"]         # group 2: nobody answered
    out = majority_vote_rewards(completions, **_columns(3, 4))
    assert list(out) == [1.0, 1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0]
    assert out.metrics["rewards/majority_label_acc"] == (0.5, 2)  # group 0 right, group 1 wrong
    assert out.metrics["rewards/majority_vote_share"] == (pytest.approx((2 / 4 + 2 / 4 + 0) / 3), 3)
    assert out.metrics["rewards/majority_no_label"] == (pytest.approx(1 / 3), 3)


def test_only_on_policy_rows_vote_but_every_row_is_scored():
    # Rows 3 and 4 are a teacher trace and a replayed row of the same group: they do not vote.
    completions = [_a("A"), _a("B"), _a("A"), _a("B"), _a("B")]
    sources = [0, 0, 0, int(RowSource.TEACHER), int(RowSource.REPLAY)]
    cols = dict(group_id=[7] * 5, row_source=sources, problem_type=["multiple choice"] * 5,
                solution=["<answer>A</answer>"] * 5)
    out = majority_vote_rewards(completions, **cols)
    assert list(out) == [1.0, 0.0, 1.0, 0.0, 0.0]
    assert out.metrics["rewards/majority_vote_share"] == (pytest.approx(2 / 3), 1)
    assert out.metrics["rewards/majority_label_acc"] == (1.0, 1)


def test_numerical_group_rewards():
    completions = [_a("12.5"), _a("12.50"), _a("13"), _a("12.5")]
    out = majority_vote_rewards(completions, **_columns(1, 4, problem_type="numerical", gold="12.5"))
    assert list(out) == [1.0, 1.0, 0.0, 1.0]
    assert out.metrics["rewards/majority_label_acc"] == (1.0, 1)


def test_errors_name_the_missing_column_and_mixed_types():
    cols = _columns(1, 2)
    del cols["group_id"]
    with pytest.raises(ValueError, match="group_id"):
        majority_vote_rewards([_a("A"), _a("B")], **cols)
    cols = _columns(1, 2)
    cols["problem_type"] = ["multiple choice", "numerical"]
    with pytest.raises(ValueError, match="mixes problem types"):
        majority_vote_rewards([_a("A"), _a("B")], **cols)


def test_groups_are_found_by_id_not_by_position():
    # Interleaved rows of two groups (a layout variants produce when they append rows to groups).
    completions = [_a("A"), _a("C"), _a("A"), _a("D"), _a("B"), _a("D")]
    cols = dict(group_id=[0, 1, 0, 1, 0, 1], row_source=[0] * 6, problem_type=["multiple choice"] * 6,
                solution=["<answer>A</answer>", "<answer>C</answer>"] * 3)
    out = majority_vote_rewards(completions, **cols)
    assert list(out) == [1.0, 0.0, 1.0, 1.0, 0.0, 1.0]  # labels: A (group 0), D (group 1)
    assert out.metrics["rewards/majority_label_acc"] == (0.5, 2)


def test_regression_votes_by_number_and_group_without_voters_has_no_label():
    out = majority_vote_rewards([_a("2.50"), _a("2.5"), _a("3.0")],
                                **_columns(1, 3, problem_type="regression", gold="2.5"))
    assert list(out) == [1.0, 1.0, 0.0] and out.metrics["rewards/majority_label_acc"] == (1.0, 1)
    teacher_only = _columns(1, 2, sources=[int(RowSource.TEACHER)] * 2)
    out = majority_vote_rewards([_a("B"), _a("B")], **teacher_only)
    assert list(out) == [0.0, 0.0] and out.metrics["rewards/majority_no_label"] == (1.0, 1)
    assert "rewards/majority_label_acc" not in out.metrics
