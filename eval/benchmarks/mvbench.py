"""MVBench (OpenGVLab/MVBench): 20 temporal tasks x 200 MC items.

Official layout (``root``, the HF dataset): ``json/<task>.json`` (list of ``{"video",
"question", "candidates", "answer" (the TEXT of the right candidate), "start"?, "end"?}``) and
unzipped sources under ``video/<source dir>/`` (table below, from the release notebook).
``episodic_reasoning`` points at a FRAME FOLDER (``tvqa/frames_fps3_hq/<clip>``, 3 fps):
its samples carry ``extra["media_kind"] = "frames"``. Bounded tasks keep ``start``/``end`` in
``extra["bound"]``; the Video-R1 author evaluated on unclipped videos (issue #94), so the bound
is informational. Video-R1 layout: ``root/eval_mvbench.json`` (unread upstream; the task is taken
from a ``task`` or ``original_question_type`` field when it names one of the 20 tasks).
Sample ids: ``<task>_<index in the task file>``. Subsets: the 20 task names.

Protocols:
- ``video-r1``: R1 template with ``"A. .."`` options; exact letter.
- ``official`` (Ask-Anything ``mvbench.ipynb``): system prompt + ``"Question: ..\\nOptions:\\n(A) ..``
  ``\\nOnly give the best option."``, assistant prefix ``"Best option:("``; the prediction is
  ``"(" + first line`` of the ``<answer>`` content, scored by ``check_ans``: lowercased first
  space token ``p`` is correct iff ``p.replace('.', '') in "(x)"`` or ``"(x)" in p``. These are
  substring tests, so an EMPTY output (``"("``) is correct, as in the release.
Aggregation: micro accuracy (= mean over the 20 tasks at 200 each), plus per task.
"""
from __future__ import annotations

import logging
import os

from eval.benchmarks import base
from eval.benchmarks.base import EvalSample

logger = logging.getLogger(__name__)

NAME = "mvbench"
# task -> (source dir under video/, media kind, bounded)
TASKS = {
    "action_sequence": ("star/Charades_v1_480", "video", True),
    "action_prediction": ("star/Charades_v1_480", "video", True),
    "action_antonym": ("ssv2_video", "video", False),
    "fine_grained_action": ("Moments_in_Time_Raw/videos", "video", False),
    "unexpected_action": ("FunQA_test/test", "video", False),
    "object_existence": ("clevrer/video_validation", "video", False),
    "object_interaction": ("star/Charades_v1_480", "video", True),
    "object_shuffle": ("perception/videos", "video", False),
    "moving_direction": ("clevrer/video_validation", "video", False),
    "action_localization": ("sta/sta_video", "video", True),
    "scene_transition": ("scene_qa/video", "video", False),
    "action_count": ("perception/videos", "video", False),
    "moving_count": ("clevrer/video_validation", "video", False),
    "moving_attribute": ("clevrer/video_validation", "video", False),
    "state_change": ("perception/videos", "video", False),
    "fine_grained_pose": ("nturgbd", "video", False),
    "character_order": ("perception/videos", "video", False),
    "egocentric_navigation": ("vlnqa", "video", False),
    "episodic_reasoning": ("tvqa/frames_fps3_hq", "frames", True),
    "counterfactual_inference": ("clevrer/video_validation", "video", False),
}
SUBSETS = list(TASKS)
FRAMES_FPS = 3.0

# mvbench.ipynb prompt pieces.
SYSTEM_PROMPT = (
    "Carefully watch the video and pay attention to the cause and sequence of events, the detail and "
    "movement of objects, and the action and pose of persons. Based on your observations, select the best "
    "option that accurately addresses the question.\n")
QUESTION_PROMPT = "\nOnly give the best option."
ASSISTANT_PREFIX = "Best option:("


# ---------------------------------------------------------------- loading
def _official(rec: dict, task: str, index: int, root: str | None) -> EvalSample:
    cands = rec["candidates"]
    if not isinstance(cands, list) or not cands or not all(isinstance(c, str) for c in cands):
        raise TypeError("candidates must be a non-empty list of strings")
    if rec["answer"] not in cands:
        raise ValueError(f"answer {rec['answer']!r} is not one of the candidates")
    source, kind, bounded = TASKS[task]
    extra = {"format": "official", "task": task, "candidates": list(cands), "answer_text": rec["answer"]}
    if kind == "frames":
        extra.update(media_kind="frames", fps=FRAMES_FPS)
    if bounded and "start" in rec and "end" in rec:
        extra["bound"] = (float(rec["start"]), float(rec["end"]))
    return EvalSample(
        id=f"{task}_{index}", benchmark=NAME, media_path=base.resolve_media(f"video/{source}/{rec['video']}", root),
        data_type="video", question=rec["question"], options=base.render_options(cands),
        answer=base.letter(cands.index(rec["answer"])), problem_type=base.MC,
        categories={"task": task}, extra=extra)


def _video_r1(rec: dict, root: str | None) -> EvalSample:
    task = rec.get("task") or rec.get("original_question_type")
    cats = {"task": task} if task in TASKS else {}
    s = base.video_r1_sample(NAME, rec, root, cats, {"task": cats.get("task")})
    if cats and TASKS[task][1] == "frames":
        s.extra.update(media_kind="frames", fps=FRAMES_FPS)
    return s


def _id_of(rec: dict, i: int) -> str:
    return str(rec["problem_id"]) if "problem_id" in rec else f"#{i}"


def load_records(records: list[dict], fmt: str = "official", subset: str | None = None,
                 root: str | None = None) -> list[EvalSample]:
    """Official records need ``subset`` (the task file they come from); Video-R1 items do not."""
    base.check_format(fmt)
    base.check_subset(NAME, subset, SUBSETS)
    if fmt == "official":
        if subset is None:
            raise ValueError("mvbench: official records need subset= the task name")
        return base.records_or_raise(NAME, records, lambda r, i: [_official(r, subset, i, root)],
                                     lambda r, i: f"{subset}_{i}")

    def convert(rec: dict, i: int) -> list[EvalSample]:
        s = _video_r1(rec, root)
        return [s] if subset is None or s.extra["task"] == subset else []
    return base.records_or_raise(NAME, records, convert, _id_of)


def load(root: str, fmt: str = "official", subset: str | None = None, on_error: str = "raise") -> list[EvalSample]:
    """Official: ``json/<task>.json`` for each task (or one with ``subset``); video-r1: ``eval_mvbench.json``."""
    base.check_format(fmt)
    base.check_subset(NAME, subset, SUBSETS)
    if fmt == "video-r1":
        samples, problems = base.convert_records(
            NAME, base.read_json(os.path.join(root, "eval_mvbench.json")),
            lambda r, i: [s for s in [_video_r1(r, root)] if subset is None or s.extra["task"] == subset], _id_of)
        return base.finish_load(NAME, samples, problems, on_error)
    samples, problems = [], []
    for task in [subset] if subset else SUBSETS:
        records = base.read_json(os.path.join(root, "json", f"{task}.json"))
        got, bad = base.convert_records(NAME, records, lambda r, i, t=task: [_official(r, t, i, root)],
                                        lambda r, i, t=task: f"{t}_{i}")
        samples += got
        problems += bad
    return base.finish_load(NAME, samples, problems, on_error)


# ---------------------------------------------------------------- prompts
def official_question(sample: EvalSample) -> str:
    """The notebook's ``qa_template`` question: ``Question: ..\\nOptions:\\n(A) ..`` (no trailing newline)."""
    lines = [f"Question: {sample.question}", "Options:"]
    lines += [f"({k}) {v}" for k, v in base.option_map(sample).items()]
    return "\n".join(lines)


def build_prompt(sample: EvalSample, protocol: str = "video-r1") -> str:
    """``video-r1``: R1 template. ``official``: system prompt + question + instruction as one user
    text; the notebook's assistant prefix is :data:`ASSISTANT_PREFIX` (optional for scoring)."""
    base.check_protocol(protocol)
    if protocol == "video-r1":
        return base.video_r1_prompt(sample)
    return SYSTEM_PROMPT + official_question(sample) + QUESTION_PROMPT


# ---------------------------------------------------------------- scoring
def check_ans(pred: str, gt: str) -> bool:
    """The notebook's ``check_ans`` (substring tests on the first space-separated token)."""
    pred_option = pred.lower().split(" ")[0]
    gt_option = gt.lower().split(" ")[0]
    return pred_option.replace(".", "") in gt_option or gt_option in pred_option


def official_prediction(prediction: str) -> str:
    """``"(" + first line`` of the ``<answer>`` content (the notebook's ``return_prompt``)."""
    from r1v.answers import extract_answer

    return "(" + extract_answer(prediction).strip().split("\n")[0]


def score(prediction: str, sample: EvalSample, protocol: str = "video-r1", judge=None) -> float:
    """1.0/0.0 under either protocol (no judge)."""
    base.check_protocol(protocol)
    if protocol == "video-r1":
        return base.video_r1_score(prediction, sample)
    gt = f"({sample.answer}) {base.option_map(sample)[sample.answer]}"
    return 1.0 if check_ans(official_prediction(prediction), gt) else 0.0


def aggregate(rows: list[dict], protocol: str = "video-r1") -> dict:
    """Micro accuracy (0-100) and per-task accuracy (both protocols)."""
    base.check_protocol(protocol)
    return base.micro_aggregate(rows, ("task",))
