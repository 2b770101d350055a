"""LongVideoBench: raw json / parquet rows / Video-R1, lmms-eval prompt and parser (seeded fallback)."""
from __future__ import annotations

import json
import os

import pytest

from eval.benchmarks import longvideobench as lvb
from eval.benchmarks.base import LoadError
from eval.fixtures import write_fixtures

R1_MC = " Please provide only the single option letter (e.g., A, B, C, D, etc.) within the <answer> </answer> tags."


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return write_fixtures(str(tmp_path_factory.mktemp("fx")), names=["longvideobench"])["longvideobench"]["root"]


@pytest.fixture(scope="module")
def samples(root):
    return {s.id: s for s in lvb.load(root)}


def test_official_load(samples, root):
    s = samples["86CxyhFV9MI_0"]
    assert s.answer == "B" and s.options[1] == "B. run away countless times" and len(s.options) == 4
    assert s.media_path == os.path.join(root, "videos/86CxyhFV9MI.mp4")
    assert s.categories == {"duration_group": "600", "question_category": "T3O", "level": "L2-Relation",
                            "topic_category": "NP-News-Programs"}
    assert len(samples["9PD3ciudpIE_0"].options) == 5


def test_video_r1_and_parquet_rows(root, samples):
    r1 = lvb.load(root, fmt="video-r1")
    assert [s.id for s in r1] == ["1", "2"] and r1[0].options == samples["86CxyhFV9MI_0"].options
    assert r1[0].categories == {}
    row = {"id": "x_1", "video_id": "x", "video_path": "x.mp4", "question": "q", "option0": "a", "option1": "b",
           "option2": "c", "option3": "N/A", "option4": "N/A", "correct_choice": 2, "duration_group": 15,
           "question_category": "E2O"}
    s = lvb.load_records([row], root="/data")[0]
    assert s.options == ["A. a", "B. b", "C. c"] and s.answer == "C" and s.media_path == "/data/videos/x.mp4"


def test_bad_records_named(root):
    with open(os.path.join(root, "lvb_val.json")) as fh:
        recs = json.load(fh)
    test_split = {k: v for k, v in recs[0].items() if k != "correct_choice"}
    with pytest.raises(LoadError) as err:
        lvb.load_records([test_split, {**recs[1], "correct_choice": 5}])
    assert [i for i, _ in err.value.problems] == ["86CxyhFV9MI_0", "9PD3ciudpIE_0"]


def test_prompt_snapshots(samples):
    s = samples["86CxyhFV9MI_0"]
    assert lvb.build_prompt(s, "official") == (
        "In the video, which subtitles appear at the same time as the man with black hair on stage?\n"
        "A. promisc has come to an end\nB. run away countless times\nC. front of our crown\nD. captain of the godson\n"
        "Answer with the option's letter from the given choices directly.\n")
    r1 = lvb.build_prompt(s)
    assert r1.startswith("In the video, which subtitles appear at the same time as the man with black hair on "
                         "stage?Options:\nA. promisc has come to an end\n") and r1.endswith(R1_MC)


@pytest.mark.parametrize("response,parsed", [
    ("B", "B"), ("Answer: C", "A"), ("The best answer is C", "C"), ("(C) front of our crown", "C"),
    ("The answer is D.", "D"), ("E", "E")])
def test_lmms_parser(samples, response, parsed):
    assert lvb.parse_official(response, samples["86CxyhFV9MI_0"]) == parsed


def test_fallback_is_seeded_by_item(samples):
    s = samples["86CxyhFV9MI_0"]
    picks = {lvb.parse_official(text, s) for text in ("", "no capital letters here at all, none, really, none at all")}
    assert picks == {lvb.fallback_letter(s)} and lvb.fallback_letter(s) in "ABCD"
    letters = {lvb.fallback_letter(t) for t in samples.values()}
    assert letters <= set("ABCDE")


@pytest.mark.parametrize("pred,official,video_r1", [
    ("<answer>B</answer>", 1.0, 1.0), ("<answer>B. run away</answer>", 1.0, 0.0), ("<answer>Answer: B</answer>", 0.0, 0.0),
    ("<answer>b</answer>", None, 0.0)])
def test_scoring_tables(samples, pred, official, video_r1):
    s = samples["86CxyhFV9MI_0"]
    expected = official if official is not None else float(lvb.fallback_letter(s) == "B")
    assert lvb.score(pred, s, "official") == expected
    assert lvb.score(pred, s, "video-r1") == video_r1


def test_aggregate_duration_groups(samples):
    rows = [{"id": s.id, "score": sc, "categories": s.categories} for s, sc in zip(samples.values(), [1.0, 0.0])]
    out = lvb.aggregate(rows)
    assert out["overall"] == 50.0 and out["categories"]["duration_group"] == {"15": 0.0, "600": 100.0}
    assert out["categories"]["question_category"] == {"S2A": 0.0, "T3O": 100.0}
