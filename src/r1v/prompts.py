"""The Video-R1 reasoning prompt, shared by GRPO training and the default ("video-r1") evaluation.

A prompt is ``QUESTION_TEMPLATE.format(Question=question) + TYPE_TEMPLATE[problem_type]`` where,
for multiple choice, ``question = problem + "Options:\\n" + "".join(option + "\\n")``. There is
deliberately NO newline between the problem and ``"Options:"``: that is what Video-R1 renders
(BENCHMARKS.md §0.2, §1.4), and matching it keeps our numbers comparable with theirs.

The text returned is the user turn only; the chat template and the visual are added by
``r1v.inputs.encode_prompts``.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping

logger = logging.getLogger(__name__)

__all__ = [
    "QUESTION_TEMPLATE", "TYPE_TEMPLATE", "PROBLEM_TYPES", "type_instruction",
    "build_question_text", "build_prompt_text",
]

# Protocol constant: Video-R1 `src/eval_bench.py` (tulerfeng/Video-R1 @ 59d65c34), as rendered
# in BENCHMARKS.md §1.4. Its training script words the tags "<think> </think>"; we use the
# evaluation wording for training too, so the student is trained on the prompt it is scored with.
# The missing full stop after "thought expressions" is in the original.
QUESTION_TEMPLATE = (
    "{Question}\n"
    "Please think about this question as if you were a human pondering deeply. "
    "Engage in an internal dialogue using expressions such as 'let me think', 'wait', 'Hmm', "
    "'oh, I see', 'let's break it down', etc, or other natural language thought expressions "
    "It's encouraged to include self-reflection or verification in the reasoning process. "
    "Provide your detailed reasoning between the <think> and </think> tags, and then give your "
    "final answer between the <answer> and </answer> tags."
)

# Protocol constant: Video-R1 per-problem-type answer instruction (same source). Each starts
# with a space because it is appended directly after QUESTION_TEMPLATE.
TYPE_TEMPLATE: dict[str, str] = {
    "multiple choice": (
        " Please provide only the single option letter (e.g., A, B, C, D, etc.) "
        "within the <answer> </answer> tags."
    ),
    "numerical": " Please provide the numerical value (e.g., 42 or 3.14) within the <answer> </answer> tags.",
    "OCR": (
        " Please transcribe text from the image/video clearly and provide your text answer "
        "within the <answer> </answer> tags."
    ),
    "free-form": " Please provide your text answer within the <answer> </answer> tags.",
    "regression": " Please provide the numerical value (e.g., 42 or 3.14) within the <answer> </answer> tags.",
}

PROBLEM_TYPES: tuple[str, ...] = tuple(TYPE_TEMPLATE)


def _item_name(sample: Mapping) -> str:
    return f"problem_id={sample.get('problem_id', '<missing>')!r}"


def type_instruction(problem_type: str) -> str:
    """The answer instruction appended for ``problem_type``; ValueError naming an unknown type."""
    try:
        return TYPE_TEMPLATE[problem_type]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown problem_type {problem_type!r}; expected one of {list(PROBLEM_TYPES)}"
        ) from None


def _field(sample: Mapping, key: str):
    if key not in sample:
        raise ValueError(f"sample {_item_name(sample)} has no {key!r} field")
    return sample[key]


def build_question_text(sample: Mapping) -> str:
    """The question as Video-R1 renders it: the problem, plus options for multiple choice.

    Multiple choice: ``problem + "Options:\\n" + "A. red\\nB. blue\\n"`` (options verbatim, each
    followed by a newline). Other types: the problem alone (options, if any, are ignored, as in
    Video-R1). Raises ValueError naming the item for an unknown type, a missing/non-string
    problem, or a multiple-choice item without options.
    """
    problem_type = _field(sample, "problem_type")
    if not isinstance(problem_type, str) or problem_type not in TYPE_TEMPLATE:
        raise ValueError(f"sample {_item_name(sample)}: unknown problem_type {problem_type!r}; "
                         f"expected one of {list(PROBLEM_TYPES)}")
    problem = _field(sample, "problem")
    if not isinstance(problem, str):
        raise ValueError(f"sample {_item_name(sample)}: 'problem' must be a string, got {type(problem).__name__}")
    if problem_type != "multiple choice":
        return problem
    options = sample.get("options") or []
    if not options or not all(isinstance(opt, str) for opt in options):
        raise ValueError(
            f"sample {_item_name(sample)}: multiple choice needs a non-empty list of option strings, got {options!r}"
        )
    return problem + "Options:\n" + "".join(opt + "\n" for opt in options)


def build_prompt_text(sample: Mapping) -> str:
    """Full user text: ``QUESTION_TEMPLATE`` filled with :func:`build_question_text` + type instruction."""
    question = build_question_text(sample)
    return QUESTION_TEMPLATE.format(Question=question) + TYPE_TEMPLATE[sample["problem_type"]]
