"""LVBench: per-video records -> one sample per QA, polish_answer quirks, multi-label aggregation."""
from __future__ import annotations

import os

import pytest

from eval.benchmarks import lvbench
from eval.benchmarks.base import LoadError
from eval.fixtures import write_fixtures

R1_MC = " Please provide only the single option letter (e.g., A, B, C, D, etc.) within the <answer> </answer> tags."
QA = {"uid": "55", "question": "What year appears in the opening caption of the video?\n(A) 1636\n(B) 1366\n(C) 1363\n"
      "(D) 1633", "answer": "D", "question_type": ["key information retrieval"], "time_reference": "00:15-00:19"}


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return write_fixtures(str(tmp_path_factory.mktemp("fx")), names=["lvbench"])["lvbench"]["root"]


@pytest.fixture(scope="module")
def samples(root):
    return {s.id: s for s in lvbench.load(root)}


def test_one_sample_per_question(samples, root):
    assert list(samples) == ["55", "56", "901"]
    s = samples["55"]
    assert s.question == "What year appears in the opening caption of the video?"
    assert s.options == ["A. 1636", "B. 1366", "C. 1363", "D. 1633"] and s.answer == "D"
    assert s.media_path == os.path.join(root, "videos/Cm73ma6Ibcs.mp4")
    assert samples["56"].categories == {"question_type": "reasoning|event understanding", "video_type": "cartoon"}
    assert samples["901"].categories["video_type"] == "sport"


def test_load_records_per_video_and_flattened_rows():
    video = {"key": "k1", "type": "tv", "qa": [QA, {**QA, "uid": "56"}]}
    assert [s.id for s in lvbench.load_records([video], root="/d")] == ["55", "56"]
    flat = {**QA, "key": "k1", "type": "tv", "video_path": "flat/k1.mp4"}
    s = lvbench.load_records([flat], root="/d")[0]
    assert s.media_path == "/d/flat/k1.mp4" and s.extra["time_reference"] == "00:15-00:19"


def test_bad_questions_named_by_video_and_uid():
    bad = {"key": "k2", "type": "tv", "qa": [{**QA, "uid": "77", "question": "no options here"}]}
    wrong = {"key": "k3", "type": "tv", "qa": [{**QA, "uid": "78", "answer": "E"}]}
    with pytest.raises(LoadError) as err:
        lvbench.load_records([bad, wrong])
    assert [i for i, _ in err.value.problems] == ["k2", "k3"]
    assert "uid=77" in err.value.problems[0][1] and "uid=78" in err.value.problems[1][1]
    with pytest.raises(LoadError, match="55: duplicate id"):
        lvbench.load_records([{"key": "a", "qa": [QA]}, {"key": "b", "qa": [QA]}])


def test_prompt_snapshots(samples):
    s = samples["55"]
    assert lvbench.build_prompt(s, "official") == (
        "What year appears in the opening caption of the video?\n(A) 1636\n(B) 1366\n(C) 1363\n(D) 1633\n"
        "Answer the question with the option letter")
    r1 = lvbench.build_prompt(s)
    assert r1.startswith("What year appears in the opening caption of the video?Options:\nA. 1636\nB. 1366\n"
                         "C. 1363\nD. 1633\n\n") and r1.endswith(R1_MC)


@pytest.mark.parametrize("text,polished", [("(D) 1633", "D"), ("D. 1633", "D"), ("The answer is D", "T"),
                                           ("(d)", "d"), ("D", "D"), ("", ""), ("  (B)", "B"), ("<answer>D", "<")])
def test_polish_answer(text, polished):
    assert lvbench.polish_answer(text) == polished


@pytest.mark.parametrize("pred,official,video_r1", [
    ("<answer>D</answer>", 1.0, 1.0), ("<answer>(D) 1633</answer>", 1.0, 0.0), ("The answer is D", 0.0, 0.0),
    ("<answer>d</answer>", 0.0, 0.0), ("D. 1633", 1.0, 0.0)])
def test_scoring_tables(samples, pred, official, video_r1):
    assert lvbench.score(pred, samples["55"], "official") == official
    assert lvbench.score(pred, samples["55"], "video-r1") == video_r1


def test_aggregate_counts_each_tag(samples):
    rows = [{"id": s.id, "score": sc, "categories": s.categories} for s, sc in zip(samples.values(), [1.0, 0.0, 1.0])]
    out = lvbench.aggregate(rows, "official")
    assert out["overall"] == pytest.approx(200 / 3) and out["n"] == 3
    assert out["categories"]["question_type"] == {"event understanding": 0.0, "key information retrieval": 100.0,
                                                  "reasoning": 0.0, "temporal grounding": 100.0}
    assert out["categories"]["video_type"] == {"cartoon": 50.0, "sport": 100.0}
