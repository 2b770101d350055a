"""MMVU: loading (official + Video-R1), prompts, scoring under both protocols, aggregation."""
from __future__ import annotations

import json
import os

import pytest

from eval.benchmarks import mmvu
from eval.benchmarks.base import LoadError
from eval.fixtures import write_fixtures

R1_THINK = (
    "\nPlease think about this question as if you were a human pondering deeply. Engage in an internal dialogue "
    "using expressions such as 'let me think', 'wait', 'Hmm', 'oh, I see', 'let's break it down', etc, or other "
    "natural language thought expressions It's encouraged to include self-reflection or verification in the "
    "reasoning process. Provide your detailed reasoning between the <think> and </think> tags, and then give "
    "your final answer between the <answer> and </answer> tags.")
R1_MC = " Please provide only the single option letter (e.g., A, B, C, D, etc.) within the <answer> </answer> tags."
Q1 = ("Assume that 2.24 liters of gas fully participates in the reaction shown in the video. How many grams of "
      "precipitate are produced approximately?")


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return write_fixtures(str(tmp_path_factory.mktemp("fx")), names=["mmvu"])["mmvu"]["root"]


@pytest.fixture(scope="module")
def samples(root):
    return {s.id: s for s in mmvu.load(root)}


class StubJudge:
    def __init__(self, reply):
        self.reply, self.calls = reply, []

    def complete(self, messages, **kw):
        self.calls.append((messages, kw))
        return self.reply


def test_official_load(samples, root):
    assert list(samples) == ["validation_1", "validation_2", "validation_3", "validation_4"]
    s = samples["validation_1"]
    assert s.options == ["A. 10.0", "B. 5.0", "C. 12.0", "D. 15.0", "E. 20.0"] and s.answer == "A"
    assert s.media_path == os.path.join(root, "videos/Chemistry/0.mp4") and s.problem_type == "multiple choice"
    assert s.categories == {"subject": "Chemistry", "discipline": "Science", "question_type": "multiple-choice"}
    assert samples["validation_3"].categories["discipline"] == "Healthcare"
    open_item = samples["validation_4"]
    assert (open_item.problem_type, open_item.options, open_item.answer) == ("free-form", [], "Dolly Zoom")
    assert len(mmvu.load(root, subset="multiple-choice")) == 3 and len(mmvu.load(root, subset="open-ended")) == 1


def test_video_r1_load_matches_official_mc_items(root, samples):
    r1 = mmvu.load(root, fmt="video-r1")
    assert [s.id for s in r1] == ["1", "2", "3"]
    assert r1[0].options == samples["validation_1"].options and r1[0].answer == "A"
    assert r1[0].categories == samples["validation_1"].categories


def test_load_records_in_memory_and_errors_by_id(root):
    with open(os.path.join(root, "validation.json")) as fh:
        records = json.load(fh)
    s = mmvu.load_records(records[:1])[0]
    assert s.media_path == "videos/Chemistry/0.mp4"
    bad = [{**records[0], "id": "validation_9", "answer": "F"}, {k: v for k, v in records[1].items() if k != "choices"}]
    with pytest.raises(LoadError) as err:
        mmvu.load_records(bad)
    assert [i for i, _ in err.value.problems] == ["validation_9", "validation_2"]


def test_missing_video_is_reported_by_id(tmp_path):
    root = write_fixtures(str(tmp_path), names=["mmvu"])["mmvu"]["root"]
    os.remove(os.path.join(root, "videos/Art/1.mp4"))
    with pytest.raises(LoadError, match="validation_2: missing video"):
        mmvu.load(root)
    assert [s.id for s in mmvu.load(root, on_error="skip")] == ["validation_1", "validation_3", "validation_4"]


def test_prompt_snapshots(samples):
    s = samples["validation_1"]
    assert mmvu.build_prompt(s, "official") == (
        f"\nQuestion: {Q1}\nA: 10.0\nB: 5.0\nC: 12.0\nD: 15.0\nE: 20.0\n\nAnswer the given multiple-choice question "
        "step by step. Begin by explaining your reasoning process clearly. Conclude by stating the final answer "
        "using the following format: 'Therefore, the final answer is: $LETTER' (without quotes), where $LETTER is "
        "one of the options. Think step by\nstep before answering.")
    assert mmvu.build_prompt(s) == (f"{Q1}Options:\nA. 10.0\nB. 5.0\nC. 12.0\nD. 15.0\nE. 20.0\n" + R1_THINK + R1_MC)
    assert mmvu.build_prompt(samples["validation_4"], "official") == (
        "\nQuestion: What camera technique is used?\n\nAnswer the given question step by step. Begin by explaining "
        "your reasoning process clearly. Conclude by stating the final answer using the following format: 'Therefore, "
        "the final answer is: 'Answer: $ANSWER' (without quotes), where $ANSWER is the final answer of the question. "
        "Think step by step\nbefore answering.")


@pytest.mark.parametrize("pred,expected", [("<think>hmm</think><answer>A</answer>", 1.0), ("<answer>a</answer>", 0.0),
                                           ("<answer>A.</answer>", 0.0), ("A", 1.0), ("The answer is A", 0.0),
                                           ("<answer>B</answer>", 0.0)])
def test_video_r1_scoring_is_exact_letter(samples, pred, expected):
    assert mmvu.score(pred, samples["validation_1"]) == expected


def test_official_needs_a_judge(samples):
    assert mmvu.score("<answer>A</answer>", samples["validation_1"], "official") is None


@pytest.mark.parametrize("reply,expected", [('{"extracted_answer": "A", "correct": true}', 1.0),
                                            ('```json\n{"extracted_answer": "B", "correct": false}\n```', 0.0),
                                            ('extracted_answer: A, "correct": True', 1.0), ("no idea", 0.0)])
def test_official_judge_request_and_reply_parsing(samples, reply, expected):
    judge = StubJudge(reply)
    assert mmvu.score("Therefore, the final answer is: A", samples["validation_1"], "official", judge) == expected
    (messages, kw), = judge.calls
    assert messages[0] == {"role": "system", "content": mmvu.JUDGE_MC_INSTRUCTION}
    assert messages[1]["content"] == (
        f"Question: {Q1}\n\nOptions:\nA: 10.0\nB: 5.0\nC: 12.0\nD: 15.0\nE: 20.0\n\nGround Truth Answer: A\n\n"
        "Model Response to the Question: Therefore, the final answer is: A")
    assert kw == {"max_tokens": 128, "json_mode": True}


def test_open_ended_judge_uses_open_instruction(samples):
    judge = StubJudge('{"extracted_answer": "dolly zoom", "correct": true}')
    assert mmvu.score("It is a dolly zoom.", samples["validation_4"], "official", judge) == 1.0
    system, user = judge.calls[0][0]
    assert system["content"] == mmvu.JUDGE_OPEN_INSTRUCTION and "exact same technique" in system["content"]
    assert user["content"].startswith("Question: What camera technique is used?\n\nGround Truth Answer: Dolly Zoom")


def test_aggregate_micro_with_disciplines(samples):
    rows = [{"id": s.id, "score": sc, "categories": s.categories, "problem_type": s.problem_type}
            for s, sc in zip(samples.values(), [1.0, 0.0, 1.0, None])]
    out = mmvu.aggregate(rows, "official")
    assert out["overall"] == pytest.approx(200 / 3) and out["n"] == 3 and out["n_unjudged"] == 1
    assert out["categories"]["discipline"] == {"Healthcare": 100.0, "Humanities & Social Science": 0.0,
                                               "Science": 100.0}
