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
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from r1v.answers import (
    extract_answer,
    format_ok,
    mean_relative_accuracy,
    numbers_equal,
    parse_number_strict,
    rouge_score,
    wer_accuracy,
)

logger = logging.getLogger(__name__)

__all__ = [
    "ACCURACY_BY_TYPE", "REWARD_FUNCS", "accuracy_reward", "format_reward",
    "accuracy_rewards", "format_rewards",
]


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


# Trainer entry point: name -> fn(completions, **columns) -> list[float]. Metric names are
# logged as rewards/<name> by the trainer.
REWARD_FUNCS: dict[str, Callable[..., list[float]]] = {
    "accuracy": accuracy_rewards,
    "format": format_rewards,
}
