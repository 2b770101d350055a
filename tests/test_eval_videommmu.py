"""VideoMMMU: track files, Video-R1 json, per-track prompts, MMMU-style parsers, aggregation."""
from __future__ import annotations

import dataclasses
import os

import pytest

from eval.benchmarks import videommmu
from eval.benchmarks.base import LoadError
from eval.fixtures import write_fixtures

R1_MC = " Please provide only the single option letter (e.g., A, B, C, D, etc.) within the <answer> </answer> tags."
SUGAR = "\nA. aldose\nB. ketose\nC. glucose\nD. fructose\nE. ribose\nF. xylose\nG. arabinose\nH. mannose\nI. galactose\nJ. sucrose"


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return write_fixtures(str(tmp_path_factory.mktemp("fx")), names=["videommmu"])["videommmu"]["root"]


@pytest.fixture(scope="module")
def samples(root):
    return {s.id: s for s in videommmu.load(root)}


def test_official_load_all_tracks(samples, root):
    assert list(samples) == ["Perception/dev_Biology_3", "Comprehension/dev_Biology_3", "Adaptation/dev_Biology_3",
                             "Adaptation/validation_Chemistry_13"]
    p = samples["Perception/dev_Biology_3"]
    assert p.media_path == os.path.join(root, "Science/dev_Biology_3.mp4") and len(p.options) == 10
    assert p.categories == {"subject": "Biology", "discipline": "Science", "track": "Perception"}
    assert p.extra["question_type"] == "multiple-choice"  # GitHub P/C records lack question_type
    op = samples["Adaptation/validation_Chemistry_13"]
    assert (op.problem_type, op.options, op.answer) == ("numerical", [], "12.97")
    assert [s.id for s in videommmu.load(root, subset="Comprehension")] == ["Comprehension/dev_Biology_3"]


def test_video_r1_load_and_track_filter(root):
    r1 = videommmu.load(root, fmt="video-r1")
    assert [s.id for s in r1] == ["1", "2", "3", "4"] and r1[3].problem_type == "numerical"
    assert [s.id for s in videommmu.load(root, fmt="video-r1", subset="Adaptation")] == ["3", "4"]
    rec = {"problem_id": 5, "problem": "q", "problem_type": "multiple choice", "options": ["A. x", "B. y"],
           "solution": "<answer>A</answer>", "path": "video_mmmu_video/test_Physics_2.mp4"}
    s = videommmu.load_records([rec], fmt="video-r1")[0]
    assert s.categories == {"subject": "Physics", "discipline": "Science"}
    with pytest.raises(LoadError, match="5: .*no 'track'"):
        videommmu.load_records([rec], fmt="video-r1", subset="Perception")


def test_official_records_need_a_track_and_bad_items_are_named():
    rec = {"id": "dev_Art_1", "question": "q", "options": ["a", "b"], "answer": "C", "question_type": "multiple-choice"}
    with pytest.raises(ValueError, match="subset"):
        videommmu.load_records([rec])
    with pytest.raises(LoadError) as err:
        videommmu.load_records([rec, {**rec, "id": "dev_Cooking_1", "answer": "A"}], subset="Adaptation")
    assert [i for i, _ in err.value.problems] == ["dev_Art_1", "dev_Cooking_1"]


def test_prompt_snapshots(samples):
    assert videommmu.build_prompt(samples["Perception/dev_Biology_3"], "official") == (
        "Which sugar is named in the lecture?" + SUGAR + "\nPlease ignore the Quiz question in last frame of the video.")
    assert videommmu.build_prompt(samples["Adaptation/dev_Biology_3"], "official") == (
        "You should watch and learn the video content. Then apply what you learned to answer the following "
        "multi-choice question. The image for this question is at the end of the video.\n"
        "<image 1> What kind of sugar is this, aldose or ketose?" + SUGAR)
    assert videommmu.build_prompt(samples["Adaptation/validation_Chemistry_13"], "official").startswith(
        "You should watch and learn the video content. Then apply what you learned to answer the following "
        "open-ended question. The image for this question is at the end of the video.\nSolution A is")
    r1 = videommmu.build_prompt(samples["Adaptation/dev_Biology_3"])
    assert r1.startswith(" What kind of sugar is this, aldose or ketose?Options:\nA. aldose\n")  # <image 1> removed
    assert r1.endswith(R1_MC)


@pytest.mark.parametrize("response,parsed", [
    ("A", "A"), ("The answer is B.", "B"), ("A. aldose, B. ketose", "B"),            # last "X." wins
    ("I think it is ketose because of the carbonyl", "I"),                            # "I " is an option letter
    ("the sugar is clearly a ketose form here", "B"),                                 # option-text match (>5 tokens)
    ("(C) glucose", "C"), ("nothing", videommmu.NO_ANSWER), ("", videommmu.API_ERROR)])
def test_multi_choice_parser(samples, response, parsed):
    index2ans = {s[0]: s[3:] for s in samples["Perception/dev_Biology_3"].options}
    assert videommmu.parse_multi_choice(response, index2ans) == parsed


@pytest.mark.parametrize("pred,official,video_r1", [
    ("<answer>C</answer>", 1.0, 1.0), ("<answer>C. glucose</answer>", 1.0, 0.0), ("<answer>c</answer>", 0.0, 0.0),
    ("<answer></answer>", None, 0.0), ("nothing at all", 0.0, 0.0)])
def test_mc_scoring_tables(samples, pred, official, video_r1):
    s = samples["Perception/dev_Biology_3"]
    assert videommmu.score(pred, s, "official") == official
    assert videommmu.score(pred, s, "video-r1") == video_r1


@pytest.mark.parametrize("pred,official,video_r1", [
    ("<answer>12.97</answer>", 1.0, 1.0), ("The mass is 12.97 g", 1.0, 0.0), ("<answer>12.970</answer>", 1.0, 1.0),
    ("<answer>13</answer>", 0.0, 0.0), ("<answer>1,2.97</answer>", 1.0, 1.0), ("", None, 0.0)])
def test_open_scoring_tables(samples, pred, official, video_r1):
    s = samples["Adaptation/validation_Chemistry_13"]
    assert videommmu.score(pred, s, "official") == official
    assert videommmu.score(pred, s, "video-r1") == video_r1


def test_open_parser_rounds_gold_to_two_decimals(samples):
    s = dataclasses.replace(samples["Adaptation/validation_Chemistry_13"], answer="0.286")
    assert videommmu.score("about 0.29", s, "official") == 1.0
    assert videommmu.score("about 0.29", s, "video-r1") == 0.0       # untagged text is not a number
    assert videommmu.score("<answer>0.29</answer>", s, "video-r1") == 1.0
    # key sub-responses: the tail after the last indicator on each line, plus the numbers in them
    assert set(videommmu.parse_open_response("So the total is 4\nthus x = 5")) == {4.0, 5.0}
    assert set(videommmu.parse_open_response("It is blue")) == {"blue"}
    assert videommmu.normalize_str(" B ") == [" b", "b "]


def test_aggregate_drops_api_errors_and_breaks_down_by_track(samples):
    scores = [1.0, 0.0, None, 1.0]
    rows = [{"id": s.id, "score": sc, "categories": s.categories} for s, sc in zip(samples.values(), scores)]
    out = videommmu.aggregate(rows, "official")
    assert out["overall"] == pytest.approx(200 / 3) and (out["n"], out["n_unjudged"]) == (3, 1)
    assert out["categories"]["track"] == {"Adaptation": 100.0, "Comprehension": 0.0, "Perception": 100.0}
    assert out["categories"]["discipline"] == {"Science": pytest.approx(200 / 3)}
