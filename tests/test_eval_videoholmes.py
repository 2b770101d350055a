"""Video-Holmes: loading, the release's prompt and letter rule (first-letter bias), aggregation by type."""
from __future__ import annotations

import json
import os

import pytest

from eval.benchmarks import videoholmes
from eval.benchmarks.base import LoadError
from eval.fixtures import write_fixtures

R1_MC = " Please provide only the single option letter (e.g., A, B, C, D, etc.) within the <answer> </answer> tags."


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return write_fixtures(str(tmp_path_factory.mktemp("fx")), names=["videoholmes"])["videoholmes"]["root"]


@pytest.fixture(scope="module")
def samples(root):
    return {s.id: s for s in videoholmes.load(root)}


def test_official_load(samples, root):
    assert list(samples) == ["fH6bbNJJfqk_1", "fH6bbNJJfqk_2", "mHNG7qZEeek_1"]
    s = samples["fH6bbNJJfqk_1"]
    assert s.options[0] == "A. neighbor" and s.options[5] == "F. friend" and s.answer == "F"
    assert s.media_path == os.path.join(root, "videos/fH6bbNJJfqk.mp4") and s.categories == {"question_type": "SR"}


def test_video_r1_load(root, samples):
    r1 = videoholmes.load(root, fmt="video-r1")
    assert [s.id for s in r1] == ["1", "2", "3"]
    assert [s.categories for s in r1] == [s.categories for s in samples.values()]
    assert r1[1].options == samples["fH6bbNJJfqk_2"].options


def test_bad_records_and_duplicates_are_named(root):
    with open(os.path.join(root, "test_Video-Holmes.json")) as fh:
        recs = json.load(fh)
    with pytest.raises(LoadError) as err:
        videoholmes.load_records([{**recs[0], "Answer": "G"}, {**recs[1], "Options": {"B": "x", "A": "y"}}])
    assert [i for i, _ in err.value.problems] == ["fH6bbNJJfqk_1", "fH6bbNJJfqk_2"]
    path = os.path.join(root, "test_Video-Holmes.json")
    try:
        with open(path, "w") as fh:
            json.dump(recs + recs[:1], fh)
        with pytest.raises(LoadError, match="fH6bbNJJfqk_1: duplicate id"):
            videoholmes.load(root)
    finally:
        with open(path, "w") as fh:
            json.dump(recs, fh)


def test_prompt_snapshots(samples):
    s = samples["fH6bbNJJfqk_1"]
    assert videoholmes.build_prompt(s, "official") == (
        "Based on the given video, reason and answer the single-choice question. Provide your reasoning between the "
        "<think> and </think> tags, and then give your final answer between the <answer> and </answer> tags. The "
        "question is: What is the relationship between the man with a black beard and Benjamin?. The options are: "
        "A: neighbor, B: colleague, C: brother, D: Doctors and patients, E: stranger, F: friend. Your answer:")
    r1 = videoholmes.build_prompt(s)
    assert r1.startswith("What is the relationship between the man with a black beard and Benjamin?Options:\n"
                         "A. neighbor\nB. colleague\nC. brother\nD. Doctors and patients\nE. stranger\nF. friend\n\n")
    assert r1.endswith(R1_MC)


@pytest.mark.parametrize("pred,parsed", [
    ("<think>..</think><answer>F</answer>", "F"), ("<answer>Based on the clues, F</answer>", "B"),
    ("A careful look shows the answer is F", "A"), ("<answer>f</answer>", "WRONG"), ("<answer>E: stranger</answer>", "E"),
    ("<answer>A</answer> wait <answer> C </answer>", "C"), ("F ", "F"), ("[F]", "F"), ("", "WRONG")])
def test_official_letter_rule(pred, parsed):
    assert videoholmes.parse_official(pred) == parsed


@pytest.mark.parametrize("pred,official,video_r1", [
    ("<answer>F</answer>", 1.0, 1.0), ("<answer>F. friend</answer>", 1.0, 0.0), ("<answer>Based on clues, F</answer>",
                                                                                  0.0, 0.0),
    ("<answer>[F]</answer>", 1.0, 0.0), ("<answer>f</answer>", 0.0, 0.0),
    # Several answer tags: Video-R1's eval_bench.py reads the first (re.search), Video-Holmes' the last.
    ("<answer>F</answer> wait <answer>A</answer>", 0.0, 1.0), ("<answer>A</answer> no, <answer>F</answer>", 1.0, 0.0)])
def test_scoring_tables(samples, pred, official, video_r1):
    s = samples["fH6bbNJJfqk_1"]
    assert videoholmes.score(pred, s, "official") == official
    assert videoholmes.score(pred, s, "video-r1") == video_r1


def test_aggregate_by_question_type(samples):
    rows = [{"id": s.id, "score": sc, "categories": s.categories} for s, sc in zip(samples.values(), [1.0, 0.0, 1.0])]
    out = videoholmes.aggregate(rows)
    assert out["overall"] == pytest.approx(200 / 3) and out["n"] == 3
    assert out["categories"] == {"question_type": {"CTI": 100.0, "IMC": 0.0, "SR": 100.0}}
