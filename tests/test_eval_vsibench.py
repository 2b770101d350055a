"""VSI-Bench: loading, prompts, official vs Video-R1 MC/MRA scoring, both overall definitions."""
from __future__ import annotations

import json
import os

import pytest

from eval.benchmarks import vsibench
from eval.benchmarks.base import LoadError
from eval.fixtures import write_fixtures

R1_THINK = (
    "\nPlease think about this question as if you were a human pondering deeply. Engage in an internal dialogue "
    "using expressions such as 'let me think', 'wait', 'Hmm', 'oh, I see', 'let's break it down', etc, or other "
    "natural language thought expressions It's encouraged to include self-reflection or verification in the "
    "reasoning process. Provide your detailed reasoning between the <think> and </think> tags, and then give "
    "your final answer between the <answer> and </answer> tags.")
R1_NUM = " Please provide the numerical value (e.g., 42 or 3.14) within the <answer> </answer> tags."


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return write_fixtures(str(tmp_path_factory.mktemp("fx")), names=["vsibench"])["vsibench"]["root"]


@pytest.fixture(scope="module")
def samples(root):
    return {s.id: s for s in vsibench.load(root)}


def test_official_load(samples, root):
    assert list(samples) == ["1", "2", "3", "4"]
    mc, na = samples["1"], samples["2"]
    assert mc.options == ["A. table", "B. sofa", "C. stool", "D. tv"] and mc.problem_type == "multiple choice"
    assert mc.media_path == os.path.join(root, "arkitscenes/41069025.mp4")
    assert (na.problem_type, na.options, na.answer) == ("regression", [], "4")
    assert samples["3"].categories == {"task": "object_rel_direction", "question_type": "object_rel_direction_easy"}
    assert [s.id for s in vsibench.load(root, subset="object_counting")] == ["2"]


def test_video_r1_load(root, samples):
    r1 = {s.id: s for s in vsibench.load(root, fmt="video-r1")}
    assert r1["2"].problem_type == "regression" and r1["2"].answer == "4"
    assert r1["3"].categories == samples["3"].categories and r1["1"].options == samples["1"].options


def test_malformed_records_reported_by_id(root):
    with open(os.path.join(root, "test.jsonl")) as fh:
        rows = [json.loads(line) for line in fh]
    bad = [{**rows[0], "id": 11, "question_type": "object_height"}, {**rows[0], "id": 12, "options": None},
           {k: v for k, v in rows[1].items() if k != "scene_name"}]
    with pytest.raises(LoadError) as err:
        vsibench.load_records(bad)
    assert [i for i, _ in err.value.problems] == ["11", "12", "2"]


def test_prompt_snapshots(samples):
    assert vsibench.build_prompt(samples["1"], "official") == (
        "These are frames of a video.\nMeasuring from the closest point of each object, which of these objects "
        "(table, sofa, stool, tv) is the closest to the stove?\nOptions:\nA. table\nB. sofa\nC. stool\nD. tv\n"
        "Answer with the option's letter from the given choices directly.")
    assert vsibench.build_prompt(samples["2"], "official") == (
        "These are frames of a video.\nHow many chair(s) are in this room?\n"
        "Please answer the question using a single word or phrase.")
    assert vsibench.build_prompt(samples["2"]) == "How many chair(s) are in this room?" + R1_THINK + R1_NUM


@pytest.mark.parametrize("pred,official,video_r1", [
    ("<answer>A</answer>", 1.0, 1.0), ("a", 1.0, 0.0), ("A. table", 1.0, 0.0), ("The answer is A", 0.0, 0.0),
    ("<answer>B</answer>", 0.0, 0.0), ("", 0.0, 0.0)])
def test_mc_scoring_tables(samples, pred, official, video_r1):
    assert vsibench.score(pred, samples["1"], "official") == official
    assert vsibench.score(pred, samples["1"], "video-r1") == video_r1


@pytest.mark.parametrize("pred,official,video_r1", [
    ("<answer>4</answer>", 1.0, 1.0), ("3", 0.6, 0.5),             # rel 0.25: inclusive vs strict threshold 0.75
    ("3 meters", 0.6, 0.0), ("four", 0.0, 0.0), ("<answer>4.8</answer>", 0.7, 0.6), ("9", 0.0, 0.0)])
def test_na_mra_tables(samples, pred, official, video_r1):
    assert vsibench.score(pred, samples["2"], "official") == pytest.approx(official)
    assert vsibench.score(pred, samples["2"], "video-r1") == pytest.approx(video_r1)


def test_fuzzy_matching_is_the_first_space_token():
    assert vsibench.fuzzy_matching("3.5. meters") == "3.5"
    assert vsibench.fuzzy_matching("B.") == "B"


def _row(sample, score):
    return {"id": sample.id, "score": score, "categories": sample.categories, "problem_type": sample.problem_type}


def test_overall_definitions_differ(samples):
    s = samples
    rows = [_row(s["1"], 0.0), _row(s["2"], 1.0), _row(s["3"], 1.0), _row(s["4"], 0.5)]
    r1 = vsibench.aggregate(rows, "video-r1")
    assert r1["overall"] == pytest.approx((50.0 + 75.0) / 2)
    assert r1["categories"]["kind"] == {"mc_accuracy": 50.0, "na_mra": 75.0}
    off = vsibench.aggregate(rows, "official")
    # tasks: rel_distance 0, counting 1, room size .5, rel_direction (1 + 0 + 0) / 3
    assert off["categories"]["task"] == pytest.approx({"object_rel_distance": 0.0, "object_counting": 100.0,
                                                       "room_size_estimation": 50.0,
                                                       "object_rel_direction": 100 / 3})
    assert off["overall"] == pytest.approx((0 + 100 + 50 + 100 / 3) / 4)
    assert off["n"] == 4 and off["n_unjudged"] == 0


def test_official_overall_always_includes_rel_direction(samples):
    out = vsibench.aggregate([_row(samples["2"], 1.0)], "official")
    assert out["categories"]["task"] == {"object_counting": 100.0, "object_rel_direction": 0.0}
    assert out["overall"] == 50.0
    assert vsibench.aggregate([_row(samples["2"], 1.0)], "video-r1")["overall"] == 100.0
