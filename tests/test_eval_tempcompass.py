"""TempCompass: four task formats, the release's rules, judge fallbacks and captioning, aggregation."""
from __future__ import annotations

import pytest

from eval.benchmarks import tempcompass as tc
from eval.benchmarks import tempcompass_rules as rules
from eval.benchmarks.base import LoadError
from eval.fixtures import write_fixtures

R1_MC = " Please provide only the single option letter (e.g., A, B, C, D, etc.) within the <answer> </answer> tags."
V = "1034419625"


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return write_fixtures(str(tmp_path_factory.mktemp("fx")), names=["tempcompass"])["tempcompass"]["root"]


@pytest.fixture(scope="module")
def samples(root):
    return {s.id: s for s in tc.load(root)}


class StubJudge:
    def __init__(self, *replies):
        self.replies, self.calls = list(replies), []

    def complete(self, messages, **kw):
        self.calls.append((messages, kw))
        return self.replies.pop(0) if len(self.replies) > 1 else self.replies[0]


def test_official_load_all_tasks(samples):
    assert sorted(samples) == sorted([f"multi-choice/{V}/action/0", f"multi-choice/{V}/speed/0", f"yes_no/{V}/action/0",
                                      f"yes_no/{V}/action/1", f"caption_matching/{V}/action/0",
                                      f"caption_matching/{V}/speed/0", f"captioning/{V}/action/0"])
    mc = samples[f"multi-choice/{V}/action/0"]
    assert mc.question == "What is the man doing in the video?" and mc.answer == "A"
    assert mc.options == ["A. dunking a basketball", "B. dribbling a basketball", "C. passing a basketball"]
    assert mc.categories == {"task": "multi-choice", "dim": "action", "aspect": "fine-grained action"}
    yn = samples[f"yes_no/{V}/action/1"]
    assert (yn.options, yn.answer, yn.extra["raw_answer"]) == (["A. yes", "B. no"], "B", "no")
    cm = samples[f"caption_matching/{V}/speed/0"]
    assert cm.options == ["A. The video is in time-lapse.", "B. The video is in slow motion."] and cm.answer == "B"
    cap = samples[f"captioning/{V}/action/0"]
    assert cap.problem_type == "free-form" and cap.extra["mc_answer"] == "A. dunking a basketball"
    assert cap.extra["mc_question"].startswith("What is the man doing in the video?\nA. dunking")


def test_subsets_and_video_r1(root):
    assert len(tc.load(root, subset="yes_no")) == 2
    r1 = tc.load(root, fmt="video-r1")
    assert len(r1) == 1 and r1[0].categories == {"task": "multi-choice", "dim": "action"}


def test_hf_rows_and_errors():
    rows = [{"video_id": V, "dim": "action", "question": "Is he dunking?", "answer": "yes"},
            {"video_id": V, "dim": "action", "question": "Is he passing?", "answer": "no"}]
    assert [s.id for s in tc.load_records(rows, subset="yes_no")] == [f"yes_no/{V}/action/0", f"yes_no/{V}/action/1"]
    with pytest.raises(ValueError, match="subset"):
        tc.load_records(rows)
    bad = [{**rows[0], "answer": "maybe"}, {"video_id": V, "dim": "action", "question": "Caption:", "answer": "x"}]
    with pytest.raises(LoadError) as err:
        tc.load_records(bad[:1], subset="yes_no")
    assert err.value.problems[0][0] == f"{V}/action#0"
    with pytest.raises(LoadError, match="mc_question"):
        tc.load_records(bad[1:], subset="captioning")


def test_prompt_snapshots(samples):
    assert tc.build_prompt(samples[f"multi-choice/{V}/action/0"], "official") == (
        "What is the man doing in the video?\nA. dunking a basketball\nB. dribbling a basketball\n"
        "C. passing a basketball\nPlease directly give the best option:")
    assert tc.build_prompt(samples[f"yes_no/{V}/action/0"], "official") == (
        "Is the man dunking a basketball?\nPlease answer yes or no:")
    assert tc.build_prompt(samples[f"caption_matching/{V}/action/0"], "official") == (
        "Which caption matches the video better?\nCaption A: A man is dunking a basketball.\n"
        "Caption B: The man is shooting a basketball.\nPlease directly give the best option:")
    assert tc.build_prompt(samples[f"captioning/{V}/action/0"], "official").endswith("Generated Caption:")
    r1 = tc.build_prompt(samples[f"yes_no/{V}/action/0"])
    assert r1.startswith("Is the man dunking a basketball?Options:\nA. yes\nB. no\n\n") and r1.endswith(R1_MC)


@pytest.mark.parametrize("pred,official,video_r1", [
    ("A. dunking a basketball", 1.0, 0.0), ("A", 1.0, 1.0), ("<answer>A</answer>", 1.0, 1.0), ("B", 0.0, 0.0),
    ("A. dunk", 1.0, 0.0), ("A) x", 1.0, 0.0), ("A</s>", 1.0, 0.0), ("(A)", None, 0.0), ("a", None, 0.0),
    ("The answer is A", None, 0.0),
    ("<answer>A</answer> or <answer>B</answer>", 0.0, 1.0),  # video-r1: first tag (Video-R1 re.search)
    ("<answer>B</answer> no: <answer>A</answer>", 1.0, 0.0)])
def test_multi_choice_tables(samples, pred, official, video_r1):
    s = samples[f"multi-choice/{V}/action/0"]
    assert tc.score(pred, s, "official") == official
    assert tc.score(pred, s, "video-r1") == video_r1


@pytest.mark.parametrize("pred,expected", [("Yes, he is.", 1.0), ("no", 0.0), ("Nope", 0.0), ("Not sure", 0.0),
                                           ("Maybe", None), ("<answer>yes</answer>", 1.0)])
def test_yes_no_rule(samples, pred, expected):
    assert tc.score(pred, samples[f"yes_no/{V}/action/0"], "official") == expected


@pytest.mark.parametrize("pred,expected", [
    ("Caption A", 1.0), ("Caption A.", 1.0), ("A man is dunking a basketball.", 1.0),
    ("(A) A man is dunking a basketball.", 1.0), ("Caption B: The man is shooting a basketball.", 0.0),
    ("Caption A: A man is dunking a basketball.", 1.0),
    # Bare labels: the release also matches each label without its "Caption " word.
    ("A", 1.0), ("A.", 1.0), ("<answer>A.</answer>", 1.0), ("B", 0.0), ("B.", 0.0), ("Caption B.", 0.0),
    ("(A)", None), ("a", None), ("A)", None), ("C", None)])
def test_caption_matching_rule(samples, pred, expected):
    judge = StubJudge("Correct")
    assert tc.score(pred, samples[f"caption_matching/{V}/action/0"], "official") == expected
    # Items the rule decides never reach the judge.
    tc.score(pred, samples[f"caption_matching/{V}/action/0"], "official", judge)
    assert len(judge.calls) == (expected is None)


@pytest.mark.parametrize("pred,expected", [
    ("Option 2", 1.0), ("Option 1", 0.0), ("Option 2.", 1.0), ("2", 1.0), ("2.", 1.0), ("1", 0.0), ("1.", 0.0),
    ("Option 2: The video is in slow motion.", 1.0), ("The video is in time-lapse.", 0.0), ("2)", None),
    ("3", None), ("Option 3", None)])
def test_caption_matching_numbered_options(samples, pred, expected):
    # Gold "Option 2: ..." is matched by its line, its label, its caption and its label's number.
    assert tc.score(pred, samples[f"caption_matching/{V}/speed/0"], "official") == expected


@pytest.mark.parametrize("pred,expected", [("Sentence B", 1.0), ("Sentence B.", 1.0), ("B", 1.0), ("B.", 1.0),
                                           ("Sentence A", 0.0), ("A.", 0.0), ("Sentence", None)])
def test_caption_matching_sentence_labels(pred, expected):
    question = ("Which sentence better captures the essence of the video?\nSentence A: The man is moving from "
                "left to right.\nSentence B: The man is moving from right to left.")
    answer = "Sentence B: The man is moving from right to left."
    assert rules.caption_matching_rule(pred, question, answer) == expected


def test_caption_matching_one_word_labels_do_not_crash():
    # Labels without a second word: a bare label still decides; the release's label[1] lookup has nothing to equal.
    question = "Which one?\nX: red car.\nY: blue car."
    assert rules.caption_matching_rule("X", question, "X: red car.") == 1.0
    assert rules.caption_matching_rule("Y.", question, "X: red car.") == 0.0


def test_judge_fallback_for_undecided_items(samples):
    s = samples[f"multi-choice/{V}/action/0"]
    judge = StubJudge("Correct")
    assert tc.score("(A)", s, "official", judge) == 1.0
    (messages, kw), = judge.calls
    assert messages[0] == {"role": "system", "content": "You are an AI assistant for question answering."}
    assert messages[1]["content"] == (
        rules.MULTI_CHOICE_JUDGE + "\nMulti-Choice Question:\nWhat is the man doing in the video?\n"
        "A. dunking a basketball\nB. dribbling a basketball\nC. passing a basketball\n"
        "Ground-Truth Answer: A. dunking a basketball\nModel Prediction: (A)")
    assert kw == {"max_tokens": 128, "temperature": 1.0}
    assert tc.score("(A)", s, "official", StubJudge("The prediction is Incorrect.")) == 0.0
    garbage = StubJudge("I cannot tell")
    assert tc.score("(A)", s, "official", garbage) == 0.0 and len(garbage.calls) == rules.JUDGE_MAX_TRIES
    assert tc.score("A", s, "official", garbage) == 1.0 and len(garbage.calls) == rules.JUDGE_MAX_TRIES


@pytest.mark.parametrize("reply,expected", [("Reasoning: he dunks.\nAnswer: A. dunking a basketball", 1.0),
                                            ("Reasoning: x\nAnswer: B. dribbling a basketball", 0.0),
                                            ("Answer: A. dunking or B. dribbling", 0.0),
                                            ("Answer: None of the choices are correct", 0.0), ("", -1.0)])
def test_captioning_judge(samples, reply, expected):
    s = samples[f"captioning/{V}/action/0"]
    judge = StubJudge(reply)
    assert tc.score("<answer>A man dunks a basketball.</answer>", s, "official", judge) == expected
    user = judge.calls[0][0][1]["content"]
    assert user.startswith(rules.CAPTION_EVALUATION) and user.endswith(
        "\nVideo Description:A man dunks a basketball.\nMulti-Choice Question:\nWhat is the man doing in the video?\n"
        "A. dunking a basketball\nB. dribbling a basketball\nC. passing a basketball\n")
    assert tc.score("<answer>x</answer>", s, "video-r1", StubJudge(reply)) == expected
    assert tc.score("<answer>x</answer>", s, "video-r1") is None


def test_aggregate_by_task_and_dim(samples):
    scores = {"multi-choice": 1.0, "yes_no": 0.0, "caption_matching": 1.0, "captioning": -1.0}
    rows = [{"id": s.id, "score": scores[s.categories["task"]], "categories": s.categories} for s in samples.values()]
    rows[0]["score"] = None
    out = tc.aggregate(rows, "official")
    assert (out["n"], out["n_unjudged"]) == (6, 1)
    assert out["overall"] == pytest.approx(100 * (1 + 0 + 0 + 1 + 1 - 1) / 6)
    assert out["categories"]["task"] == {"caption_matching": 100.0, "captioning": -100.0, "multi-choice": 100.0,
                                         "yes_no": 0.0}
    assert set(out["categories"]["aspect"]) == {"fine-grained action", "absolute speed"}
