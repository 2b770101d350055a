"""Table-driven tests of r1v.rewards (per-type accuracy, format, batch contract) and r1v.prompts."""
import pytest

from r1v.prompts import (
    PROBLEM_TYPES,
    QUESTION_TEMPLATE,
    TYPE_TEMPLATE,
    build_prompt_text,
    build_question_text,
    type_instruction,
)
from r1v.rewards import ACCURACY_BY_TYPE, REWARD_FUNCS, accuracy_reward, format_reward

GOOD = "<think>let me think</think>\n<answer>{}</answer>"


def _sol(x):
    return f"<answer>{x}</answer>"


@pytest.mark.parametrize("completion, solution, problem_type, expected", [
    # multiple choice: exact, case-sensitive, whitespace-stripped
    (GOOD.format("B"), _sol("B"), "multiple choice", 1.0),
    (GOOD.format(" B \n"), _sol("B"), "multiple choice", 1.0),
    (GOOD.format("b"), _sol("B"), "multiple choice", 0.0),
    (GOOD.format("B."), _sol("B"), "multiple choice", 0.0),
    (GOOD.format("(B)"), _sol("B"), "multiple choice", 0.0),
    (GOOD.format("B) red"), _sol("B"), "multiple choice", 0.0),
    ("<answer>A</answer> no wait <answer>B</answer>", _sol("B"), "multiple choice", 0.0),  # first pair counts
    ("B", _sol("B"), "multiple choice", 1.0),                 # untagged: whole text (format reward is 0)
    ("The answer is B", _sol("B"), "multiple choice", 0.0),
    # numerical: Video-R1 rule
    (GOOD.format("42"), _sol("42"), "numerical", 1.0),
    (GOOD.format("3.141"), _sol("3.14"), "numerical", 1.0),
    (GOOD.format("4.0"), _sol("4"), "numerical", 0.0),
    (GOOD.format("1,000"), _sol("1000.0"), "numerical", 1.0),
    (GOOD.format("42 apples"), _sol("42"), "numerical", 0.0),
    (GOOD.format("-7"), _sol("-7"), "numerical", 1.0),
    # regression: Video-R1 MRA
    (GOOD.format("2.4"), _sol("2"), "regression", 0.6),
    (GOOD.format("2"), _sol("2"), "regression", 1.0),
    (GOOD.format("3 meters"), _sol("3"), "regression", 0.0),
    (GOOD.format("0"), _sol("0"), "regression", 1.0),
    (GOOD.format("1e1"), _sol("10"), "regression", 1.0),
    # OCR: 1 - WER
    (GOOD.format("STOP HERE"), _sol("STOP HERE"), "OCR", 1.0),
    (GOOD.format("STOP THERE"), _sol("STOP HERE"), "OCR", 0.5),
    (GOOD.format(""), _sol("STOP HERE"), "OCR", 0.0),
    # free-form: mean ROUGE-1/2/L F1
    (GOOD.format("a man rides a horse"), _sol("a man rides a horse"), "free-form", 1.0),
    (GOOD.format("Paris"), _sol("Paris"), "free-form", 2 / 3),
    (GOOD.format("zebra"), _sol("a man rides a horse"), "free-form", 0.0),
])
def test_accuracy_reward(completion, solution, problem_type, expected):
    assert accuracy_reward(completion, solution, problem_type) == pytest.approx(expected)


GARBAGE = ["", "   ", "no tags at all", "<answer>", "</answer><answer>", "<think>" * 1000,
           "x" * 300_000, "<answer>" + "9" * 5000 + "</answer>", "\x00\uffff"]


@pytest.mark.parametrize("problem_type, solution", [
    ("multiple choice", _sol("B")), ("numerical", _sol("3")), ("regression", _sol("2.5")),
    ("OCR", _sol("STOP HERE")), ("free-form", _sol("a man rides a horse")),
])
@pytest.mark.parametrize("completion", GARBAGE, ids=range(len(GARBAGE)))
def test_garbage_scores_zero(completion, problem_type, solution):
    assert accuracy_reward(completion, solution, problem_type) == 0.0
    assert format_reward(completion) == 0.0


@pytest.mark.parametrize("problem_type", ["multiple-choice", "open-ended", "", None, "Regression"])
def test_unknown_problem_type_raises(problem_type):
    with pytest.raises(ValueError, match="unknown problem_type") as err:
        accuracy_reward(GOOD.format("B"), _sol("B"), problem_type)
    assert repr(problem_type) in str(err.value)


@pytest.mark.parametrize("completion, expected", [
    (GOOD.format("B"), 1.0), ("<think>x</think><answer>B</answer>", 1.0),
    ("<answer>B</answer>", 0.0), (GOOD.format("B") + "\n", 0.0), ("", 0.0),
])
def test_format_reward(completion, expected):
    assert format_reward(completion) == expected


def test_non_string_completion_raises_type_error():
    with pytest.raises(TypeError, match="completion"):
        accuracy_reward([{"content": "B"}], _sol("B"), "multiple choice")
    with pytest.raises(TypeError, match="completion"):
        format_reward(None)


def test_reward_funcs_dispatch_per_sample():
    completions = [GOOD.format("B"), GOOD.format("4.0"), GOOD.format("2.4"), "junk", GOOD.format("STOP THERE")]
    columns = {
        "solution": [_sol("B"), _sol("4"), _sol("2"), _sol("A"), _sol("STOP HERE")],
        "problem_type": ["multiple choice", "numerical", "regression", "multiple choice", "OCR"],
        "problem_id": [1, 2, 3, 4, 5],          # extra columns are ignored
    }
    assert set(REWARD_FUNCS) == {"accuracy", "format", "majority_vote"}
    acc = REWARD_FUNCS["accuracy"](completions, **columns)
    fmt = REWARD_FUNCS["format"](completions, **columns)
    assert acc == pytest.approx([1.0, 0.0, 0.6, 0.0, 0.5])
    assert fmt == [1.0, 1.0, 1.0, 0.0, 1.0]
    assert all(isinstance(v, float) for v in acc + fmt)
    assert REWARD_FUNCS["accuracy"]([], solution=[], problem_type=[]) == []


def test_reward_funcs_errors_name_column_and_index():
    with pytest.raises(ValueError, match="'solution'"):
        REWARD_FUNCS["accuracy"](["x"], problem_type=["OCR"])
    with pytest.raises(ValueError, match="'problem_type' has 1 entries for 2"):
        REWARD_FUNCS["accuracy"](["x", "y"], solution=["a", "b"], problem_type=["OCR"])
    with pytest.raises(ValueError, match="completion 1: unknown problem_type 'essay'"):
        REWARD_FUNCS["accuracy"](["x", "y"], solution=["a", "b"], problem_type=["OCR", "essay"])
    with pytest.raises(TypeError, match="completion 0"):
        REWARD_FUNCS["format"]([b"<think>"])


def test_accuracy_table_matches_prompt_types():
    assert set(ACCURACY_BY_TYPE) == set(TYPE_TEMPLATE) == set(PROBLEM_TYPES)
    for fn in ACCURACY_BY_TYPE.values():
        assert 0.0 <= fn("", "x") <= 1.0


# ------------------------------------------------------------------ prompts
MC = {"problem_id": 7, "problem": "Which process is shown in the animation?", "problem_type": "multiple choice",
      "options": ["A. Isothermal compression", "B. Adiabatic compression"], "solution": "<answer>A</answer>"}

# BENCHMARKS.md §1.4, the Video-R1 rendering (shortened to two options).
MC_RENDERED = (
    "Which process is shown in the animation?Options:\nA. Isothermal compression\nB. Adiabatic compression\n"
    "\nPlease think about this question as if you were a human pondering deeply. Engage in an internal dialogue "
    "using expressions such as 'let me think', 'wait', 'Hmm', 'oh, I see', 'let's break it down', etc, or other "
    "natural language thought expressions It's encouraged to include self-reflection or verification in the "
    "reasoning process. Provide your detailed reasoning between the <think> and </think> tags, and then give your "
    "final answer between the <answer> and </answer> tags. Please provide only the single option letter "
    "(e.g., A, B, C, D, etc.) within the <answer> </answer> tags."
)


def test_build_prompt_text_matches_video_r1_rendering():
    assert build_question_text(MC) == (
        "Which process is shown in the animation?Options:\nA. Isothermal compression\nB. Adiabatic compression\n")
    assert build_prompt_text(MC) == MC_RENDERED


@pytest.mark.parametrize("problem_type, suffix", [
    ("numerical", " Please provide the numerical value (e.g., 42 or 3.14) within the <answer> </answer> tags."),
    ("regression", " Please provide the numerical value (e.g., 42 or 3.14) within the <answer> </answer> tags."),
    ("OCR", " Please transcribe text from the image/video clearly and provide your text answer within the "
            "<answer> </answer> tags."),
    ("free-form", " Please provide your text answer within the <answer> </answer> tags."),
])
def test_non_mc_prompt_is_problem_plus_suffix(problem_type, suffix):
    sample = {"problem_id": 3, "problem": "How many {chairs}?", "problem_type": problem_type, "options": ["A. x"]}
    assert build_question_text(sample) == "How many {chairs}?"      # options ignored, braces kept
    assert build_prompt_text(sample) == QUESTION_TEMPLATE.format(Question="How many {chairs}?") + suffix
    assert type_instruction(problem_type) == suffix


@pytest.mark.parametrize("sample, message", [
    ({**MC, "problem_type": "essay"}, "problem_id=7: unknown problem_type 'essay'"),
    ({**MC, "options": []}, "problem_id=7: multiple choice needs"),
    ({**MC, "options": None}, "problem_id=7: multiple choice needs"),
    ({k: v for k, v in MC.items() if k != "problem"}, "problem_id=7 has no 'problem'"),
    ({k: v for k, v in MC.items() if k != "problem_type"}, "has no 'problem_type'"),
    ({**MC, "problem": None}, "'problem' must be a string"),
])
def test_build_question_text_errors_name_the_item(sample, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        build_prompt_text(sample)


def test_type_instruction_unknown():
    with pytest.raises(ValueError, match="unknown problem_type 'yes/no'"):
        type_instruction("yes/no")


def test_accuracy_takes_the_first_answer_pair_like_r1v_and_video_r1():
    """R1-V's and Video-R1's rewards use re.search: a completion with two answer tags scores its first."""
    from r1v.rewards import accuracy_reward

    two = "<think>x</think><answer>A</answer> wait <answer>B</answer>"
    assert accuracy_reward(two, "<answer>A</answer>", "multiple choice") == 1.0
    assert accuracy_reward(two, "<answer>B</answer>", "multiple choice") == 0.0
