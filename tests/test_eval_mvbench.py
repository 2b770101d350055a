"""MVBench: 20 task files, frame folders, the notebook prompt and check_ans quirks (empty = correct)."""
from __future__ import annotations

import os
import shutil

import pytest

from eval.benchmarks import mvbench
from eval.benchmarks.base import LoadError
from eval.fixtures import write_fixtures

R1_MC = " Please provide only the single option letter (e.g., A, B, C, D, etc.) within the <answer> </answer> tags."
REC = {"video": "ZS9XR.mp4", "question": "What happened after the person took the food?",
       "candidates": ["Ate the medicine.", "Tidied up the blanket.", "Put down the cup/glass/bottle.", "Took the box."],
       "answer": "Ate the medicine.", "start": 11.2, "end": 25.9}


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return write_fixtures(str(tmp_path_factory.mktemp("fx")), names=["mvbench"])["mvbench"]["root"]


@pytest.fixture(scope="module")
def samples(root):
    return {s.id: s for s in mvbench.load(root)}


def test_all_twenty_tasks_load(samples, root):
    assert len(samples) == 20 and {s.categories["task"] for s in samples.values()} == set(mvbench.SUBSETS)
    s = samples["action_sequence_0"]
    assert s.answer == "B" and s.extra["bound"] == (0.2, 1.8)
    assert s.media_path == os.path.join(root, "video/star/Charades_v1_480/clip_0.mp4")
    ep = samples["episodic_reasoning_0"]
    assert ep.extra["media_kind"] == "frames" and os.path.isdir(ep.media_path) and ep.extra["fps"] == 3.0
    assert "bound" not in samples["action_antonym_0"].extra
    assert [s.id for s in mvbench.load(root, subset="moving_count")] == ["moving_count_0"]


def test_video_r1_load(root):
    r1 = mvbench.load(root, fmt="video-r1")
    assert len(r1) == 20 and r1[0].categories == {"task": "action_sequence"}
    assert [s.id for s in mvbench.load(root, fmt="video-r1", subset="state_change")] == ["15"]


def test_load_records_needs_task_and_names_bad_items():
    s = mvbench.load_records([REC], subset="action_prediction", root="/mv")[0]
    assert (s.id, s.answer, s.media_path) == ("action_prediction_0", "A", "/mv/video/star/Charades_v1_480/ZS9XR.mp4")
    with pytest.raises(ValueError, match="subset"):
        mvbench.load_records([REC])
    with pytest.raises(LoadError) as err:
        mvbench.load_records([REC, {**REC, "answer": "Ate the pizza."}], subset="action_antonym")
    assert [i for i, _ in err.value.problems] == ["action_antonym_1"]


def test_missing_frame_folder_is_reported(tmp_path):
    root = write_fixtures(str(tmp_path), names=["mvbench"])["mvbench"]["root"]
    shutil.rmtree(os.path.join(root, "video/tvqa/frames_fps3_hq/clip_18"))
    with pytest.raises(LoadError, match="episodic_reasoning_0: missing video"):
        mvbench.load(root)
    assert len(mvbench.load(root, on_error="skip")) == 19


def test_prompt_snapshots():
    s = mvbench.load_records([REC], subset="action_sequence")[0]
    assert mvbench.build_prompt(s, "official") == (
        "Carefully watch the video and pay attention to the cause and sequence of events, the detail and movement of "
        "objects, and the action and pose of persons. Based on your observations, select the best option that "
        "accurately addresses the question.\nQuestion: What happened after the person took the food?\nOptions:\n"
        "(A) Ate the medicine.\n(B) Tidied up the blanket.\n(C) Put down the cup/glass/bottle.\n(D) Took the box.\n"
        "Only give the best option.")
    assert mvbench.ASSISTANT_PREFIX == "Best option:("
    r1 = mvbench.build_prompt(s)
    assert r1.startswith("What happened after the person took the food?Options:\nA. Ate the medicine.\n"
                         "B. Tidied up the blanket.\n") and r1.endswith(R1_MC)


@pytest.mark.parametrize("pred,official,video_r1", [
    ("", 1.0, 0.0),                            # "(" is a substring of "(b)": the release counts it correct
    ("B", 1.0, 1.0), ("<answer>B</answer>", 1.0, 1.0), ("B) Tidied up the blanket.", 1.0, 0.0),
    ("(B) Tidied", 1.0, 0.0), ("b.", 1.0, 0.0), ("A", 0.0, 0.0), ("Best option: B", 0.0, 0.0),
    ("<answer>C</answer>", 0.0, 0.0), ("B\nbecause A", 1.0, 0.0)])
def test_scoring_tables(samples, pred, official, video_r1):
    s = samples["action_sequence_0"]
    assert mvbench.score(pred, s, "official") == official
    assert mvbench.score(pred, s, "video-r1") == video_r1


def test_check_ans_is_substring_based():
    gt = "(A) Ate the medicine."
    assert mvbench.check_ans("(", gt) and mvbench.check_ans("(a.", gt) and mvbench.check_ans("a", gt)
    assert not mvbench.check_ans("(b)", gt)


def test_aggregate_per_task(samples):
    rows = [{"id": s.id, "score": float(i % 2 == 0), "categories": s.categories}
            for i, s in enumerate(samples.values())]
    out = mvbench.aggregate(rows)
    assert out["overall"] == 50.0 and out["n"] == 20 and len(out["categories"]["task"]) == 20
    assert out["categories"]["task"]["action_sequence"] == 100.0
