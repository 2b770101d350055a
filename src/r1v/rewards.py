"""Rule-based rewards for GRPO, dispatched per sample on ``problem_type`` (Video-R1 rules).

Accuracy, on the extracted answers (``r1v.answers.extract_answer(occurrence="first")``: the
first ``<answer>`` pair, else the whole completion, as R1-V's and Video-R1's rewards and
Video-R1's evaluation take it with ``re.search``):

- multiple choice: ``pred.strip() == gold.strip()``, case-sensitive, so "b", "B." and "(B)"
  all score 0 against "B" (Video-R1 exact match). Values {0, 1}.
- numerical: ``answers.numbers_equal`` (decimal markers agree, then ``round(x, 2)`` equality).
  Values {0, 1}.
- regression: ``answers.mean_relative_accuracy`` (video-r1 protocol) on strictly parsed
  numbers; unparseable -> 0. Graded, [0, 1] in steps of 0.1.
- OCR: ``answers.wer_accuracy`` = clip(1 - WER). Graded, [0, 1].
- free-form: ``answers.rouge_score`` = mean of ROUGE-1/2/L F1. Graded, [0, 1].

Regression: Video-R1's training script rewards ``1 - clip(relative error)``
(``answers.relative_accuracy``) while its evaluation uses MRA; we reward MRA so training
optimises the number that is reported.

FFR's Robust Improvement Reward (paper Sec. 3.2, Eq. 8; ``ffr.rir``) takes these values as they are: for the
graded types the graded accuracy stands in for c_i and r~_i; for multiple choice and numerical
they are the 0/1 correctness.

Garbage completions (empty, untagged, huge) score 0.0 through the rules themselves; nothing
here swallows exceptions. Unknown problem types raise ValueError naming the type.

Group-level rewards (``GROUP_REWARD_FUNCS``, also listed in ``REWARD_FUNCS``) score a row
against the other rows of its group: they read the per-row ``group_id`` and ``row_source``
columns the trainer adds beside the records' fields. ``majority_vote`` is TTRL's label-free
reward (Zuo et al., 2025): the label of a group is the most common answer of its on-policy
rollouts, and a rollout scores 1 when its answer matches that label.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Optional

from r1v.answers import (
    extract_answer,
    extract_answer_strict,
    format_ok,
    mean_relative_accuracy,
    numbers_equal,
    parse_number_strict,
    rouge_score,
    wer_accuracy,
)

logger = logging.getLogger(__name__)

__all__ = [
    "ACCURACY_BY_TYPE", "GROUP_REWARD_FUNCS", "REWARD_FUNCS", "RewardValues", "accuracy_reward", "format_reward",
    "accuracy_rewards", "format_rewards", "majority_label", "majority_vote_rewards",
]

# ``RowSource.ON_POLICY`` of ``r1v.trainer.batch``; a literal keeps this module free of torch.
ON_POLICY_SOURCE = 0


class RewardValues(list):
    """One reward per completion (a list of floats) plus metrics for the trainer to log.

    metrics: name -> (mean, weight); the trainer logs each as ``weight`` observations of
    ``mean``, so its averages over batches and ranks are weighted by ``weight``.
    """

    def __init__(self, values, metrics: Optional[dict[str, tuple[float, int]]] = None):
        super().__init__(values)
        self.metrics = dict(metrics or {})


def multiple_choice_accuracy(pred: str, gold: str) -> float:
    """1.0 iff the stripped answer equals the stripped gold letter exactly (case-sensitive)."""
    return 1.0 if pred.strip() == gold.strip() else 0.0


def numerical_accuracy(pred: str, gold: str) -> float:
    """1.0 iff ``answers.numbers_equal(pred, gold)``."""
    return 1.0 if numbers_equal(pred, gold) else 0.0


def regression_accuracy(pred: str, gold: str) -> float:
    """Video-R1 MRA of strictly parsed numbers (``"3 meters"`` does not parse: 0.0)."""
    p, g = parse_number_strict(pred), parse_number_strict(gold)
    if p is None or g is None:
        return 0.0
    return mean_relative_accuracy(p, g, protocol="video-r1")


def ocr_accuracy(pred: str, gold: str) -> float:
    """``answers.wer_accuracy(pred, gold)``: 1 - WER against the gold transcript, clipped."""
    return wer_accuracy(pred, gold)


def free_form_accuracy(pred: str, gold: str) -> float:
    """``answers.rouge_score(pred, gold)``: mean ROUGE-1/2/L F1."""
    return rouge_score(pred, gold)


# Per-type accuracy on EXTRACTED answers: fn(pred_answer, gold_answer) -> float in [0, 1].
# Benchmark scorers of the "video-r1" protocol use this same table.
ACCURACY_BY_TYPE: dict[str, Callable[[str, str], float]] = {
    "multiple choice": multiple_choice_accuracy,
    "numerical": numerical_accuracy,
    "regression": regression_accuracy,
    "OCR": ocr_accuracy,
    "free-form": free_form_accuracy,
}


def _accuracy_fn(problem_type: str) -> Callable[[str, str], float]:
    fn = ACCURACY_BY_TYPE.get(problem_type) if isinstance(problem_type, str) else None
    if fn is None:
        raise ValueError(f"unknown problem_type {problem_type!r}; expected one of {list(ACCURACY_BY_TYPE)}")
    return fn


def _require_str(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a string, got {type(value).__name__}")
    return value


def accuracy_reward(completion: str, solution: str, problem_type: str) -> float:
    """Accuracy in [0, 1] of one completion against ``solution`` (``"<answer>X</answer>"``).

    Both sides go through ``extract_answer`` (an untagged solution is used whole); the
    completion's FIRST answer pair counts, as in R1-V's and Video-R1's ``re.search``.
    """
    fn = _accuracy_fn(problem_type)
    pred = extract_answer(_require_str(completion, "completion"), occurrence="first")
    gold = extract_answer(_require_str(solution, "solution"))
    return float(fn(pred, gold))


def format_reward(completion: str) -> float:
    """1.0 iff ``answers.format_ok(completion)`` (whole text is ``<think>..</think>\\s*<answer>..</answer>``)."""
    return 1.0 if format_ok(_require_str(completion, "completion")) else 0.0


def _column(columns: dict, name: str, n: int) -> Sequence:
    if name not in columns:
        raise ValueError(f"reward needs column {name!r}; got columns {sorted(columns)}")
    values = columns[name]
    if len(values) != n:
        raise ValueError(f"column {name!r} has {len(values)} entries for {n} completions")
    return values


def accuracy_rewards(completions: list[str], **columns) -> list[float]:
    """Batch accuracy: one reward per completion, using ``columns["solution"][i]`` and
    ``columns["problem_type"][i]`` of the SAME index (types may differ within a batch).
    Other columns are ignored. Errors name the offending index.
    """
    solutions = _column(columns, "solution", len(completions))
    types = _column(columns, "problem_type", len(completions))
    rewards = []
    for i, (completion, solution, problem_type) in enumerate(zip(completions, solutions, types)):
        try:
            rewards.append(accuracy_reward(completion, solution, problem_type))
        except (TypeError, ValueError) as err:
            raise type(err)(f"completion {i}: {err}") from err
    return rewards


def format_rewards(completions: list[str], **columns) -> list[float]:
    """Batch format reward: ``format_reward`` of each completion; ``columns`` are ignored."""
    rewards = []
    for i, completion in enumerate(completions):
        if not isinstance(completion, str):
            raise TypeError(f"completion {i}: must be a string, got {type(completion).__name__}")
        rewards.append(format_reward(completion))
    return rewards


def vote_answer(completion: str) -> Optional[str]:
    """The answer a completion votes with: the content of its first ``<answer>`` pair (as the
    accuracy reward reads it), or None when there is no complete pair or the content is empty.

    TTRL's extractor returns "" for an unanswered rollout and "" then votes like any answer
    (BASELINES.md); here such a rollout abstains and never matches.
    """
    if extract_answer_strict(completion) is None:
        return None
    return extract_answer(completion, occurrence="first") or None


def answers_match(pred: str, other: str, problem_type: str) -> bool:
    """Whether two extracted answers agree: ``numbers_equal`` for numerical and regression
    answers (the project's numeric rule), else exact equality of the stripped strings."""
    _accuracy_fn(problem_type)  # unknown types raise
    if problem_type in ("numerical", "regression"):
        return numbers_equal(pred, other)
    return pred.strip() == other.strip()


def majority_label(answers: Sequence[Optional[str]], problem_type: str) -> tuple[Optional[str], int]:
    """(label, votes): the most common answer of ``answers`` under ``answers_match``.

    None entries abstain. Each answer joins the first earlier answer it matches, so the
    label is written as its first occurrence; a tie goes to the answer seen first
    (``Counter.most_common`` order, as in TTRL). No vote at all gives (None, 0).
    """
    clusters: list[list] = []  # [first spelling, votes], in order of first appearance
    for answer in answers:
        if answer is None:
            continue
        for cluster in clusters:
            if answers_match(answer, cluster[0], problem_type):
                cluster[1] += 1
                break
        else:
            clusters.append([answer, 1])
    if not clusters:
        return None, 0
    best = max(clusters, key=lambda c: c[1])  # max keeps the first of equal counts
    return best[0], best[1]


def majority_vote_rewards(completions: list[str], **columns) -> RewardValues:
    """TTRL reward: 1.0 when a row's answer matches its group's majority label, else 0.0.

    Needs the columns ``group_id``, ``row_source`` (set by the trainer) and ``problem_type``
    (one type per group); ``solution`` is read only for the metric. Only on-policy rows
    vote; every row of the group, on- or off-policy, is scored against the label. A row
    without an answer (``vote_answer`` is None) scores 0; a group where nobody answered has
    no label and all its rows score 0. Metrics (one observation per group):
    ``rewards/majority_label_acc``: share of labelled groups whose label matches the gold
    answer; ``rewards/majority_vote_share``: votes for the label / on-policy rows of the
    group (0 without a label); ``rewards/majority_no_label``: share of groups without a label.
    """
    n = len(completions)
    group_ids = _column(columns, "group_id", n)
    sources = _column(columns, "row_source", n)
    types = _column(columns, "problem_type", n)
    solutions = _column(columns, "solution", n)
    answers = [vote_answer(_require_str(c, f"completion {i}")) for i, c in enumerate(completions)]
    groups: dict = {}
    for i, gid in enumerate(group_ids):
        groups.setdefault(gid, []).append(i)
    rewards = [0.0] * n
    label_correct, shares, no_label = [], [], 0
    for gid, rows in groups.items():
        problem_type = types[rows[0]]
        if any(types[i] != problem_type for i in rows):
            raise ValueError(f"group {gid!r} mixes problem types {sorted({str(types[i]) for i in rows})}")
        voters = [i for i in rows if sources[i] == ON_POLICY_SOURCE]
        label, votes = majority_label([answers[i] for i in voters], problem_type)
        shares.append(votes / len(voters) if voters else 0.0)
        if label is None:
            no_label += 1
            continue
        gold = extract_answer(_require_str(solutions[rows[0]], f"solution of group {gid!r}"))
        label_correct.append(1.0 if answers_match(label, gold, problem_type) else 0.0)
        for i in rows:
            if answers[i] is not None and answers_match(answers[i], label, problem_type):
                rewards[i] = 1.0
    metrics = {}
    if groups:
        metrics["rewards/majority_vote_share"] = (sum(shares) / len(shares), len(shares))
        metrics["rewards/majority_no_label"] = (no_label / len(groups), len(groups))
    if label_correct:
        metrics["rewards/majority_label_acc"] = (sum(label_correct) / len(label_correct), len(label_correct))
    return RewardValues(rewards, metrics)


# Rewards that score a row against its group (they read the group_id / row_source columns).
GROUP_REWARD_FUNCS: dict[str, Callable[..., list[float]]] = {
    "majority_vote": majority_vote_rewards,
}

# Trainer entry point: name -> fn(completions, **columns) -> list[float]. Metric names are
# logged as rewards/<name> by the trainer.
REWARD_FUNCS: dict[str, Callable[..., list[float]]] = {
    "accuracy": accuracy_rewards,
    "format": format_rewards,
    **GROUP_REWARD_FUNCS,
}
