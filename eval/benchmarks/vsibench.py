"""VSI-Bench (nyu-visionx/VSI-Bench): visual-spatial intelligence, 5130 test items.

Official layout (``root``): ``test.jsonl`` (or ``test.json``, a list) with fields ``id,
dataset, scene_name, question_type, question, options (list|null), ground_truth`` and videos
``<dataset>/<scene_name>.mp4``. Video-R1 layout: ``root/eval_vsibench.json``; its MC items are
``multiple choice`` and its numeric-answer (NA) items ``regression`` (issues #54/#121); the task
is read from ``original_question_type`` when present.

Subsets: the 10 raw ``question_type`` values (a filter).

Protocols:
- ``video-r1``: R1 prompt; MC exact letter; NA float32 MRA with strict ``<`` (r1v.answers).
  Overall = (micro MC accuracy + micro NA MRA) / 2 (Video-R1 issue #121); if a run holds only
  one of the two kinds, the overall is that kind's mean.
- ``official`` (thinking-in-space ``utils.py``): the ``<answer>`` content is taken first, then
  ``fuzzy_matching`` = first space-separated token with trailing dots removed; MC case-insensitive
  equality; NA float64 MRA with inclusive ``<=``; an unparseable NA prediction scores 0.0.
  Overall = macro mean of 8 task scores, where Relative Direction is the mean of its three
  sub-level means; a missing sub-level counts 0 and the merged column is always present, as in
  the release's ``pop(..., 0.)`` (so a subset run without those items averages in a 0).
"""
from __future__ import annotations

import logging
import os

from eval.benchmarks import base
from eval.benchmarks.base import EvalSample

logger = logging.getLogger(__name__)

NAME = "vsibench"
MCA_TYPES = ["object_rel_direction_easy", "object_rel_direction_medium", "object_rel_direction_hard",
             "object_rel_distance", "route_planning", "obj_appearance_order"]
NA_TYPES = ["object_abs_distance", "object_counting", "object_size_estimation", "room_size_estimation"]
SUBSETS = MCA_TYPES + NA_TYPES
REL_DIR = ("object_rel_direction_easy", "object_rel_direction_medium", "object_rel_direction_hard")
# The 8 reported columns (paper order).
TASKS = ["object_counting", "object_abs_distance", "object_size_estimation", "room_size_estimation",
         "object_rel_distance", "object_rel_direction", "route_planning", "obj_appearance_order"]

# thinking-in-space vsibench_doc_to_text defaults.
PRE_PROMPT = "These are frames of a video."
NA_POST_PROMPT = "Please answer the question using a single word or phrase."
MCA_POST_PROMPT = "Answer with the option's letter from the given choices directly."


def task_of(question_type: str) -> str:
    """Reported task: the three relative-direction levels merge into ``object_rel_direction``."""
    return "object_rel_direction" if question_type in REL_DIR else question_type


# ---------------------------------------------------------------- loading
def _official(rec: dict, root: str | None) -> EvalSample:
    qtype = rec["question_type"]
    if qtype not in SUBSETS:
        raise ValueError(f"unknown question_type {qtype!r}")
    options = rec.get("options") or []
    if qtype in MCA_TYPES and not options:
        raise ValueError(f"multiple-choice type {qtype} without options")
    rel = f"{rec['dataset']}/{rec['scene_name']}.mp4"
    return EvalSample(
        id=str(rec["id"]), benchmark=NAME, media_path=base.resolve_media(rel, root), data_type="video",
        question=rec["question"], options=list(options), answer=str(rec["ground_truth"]),
        problem_type=base.MC if qtype in MCA_TYPES else "regression",
        categories={"task": task_of(qtype), "question_type": qtype},
        extra={"format": "official", "question_type": qtype})


def _video_r1(rec: dict, root: str | None) -> EvalSample:
    qtype = rec.get("original_question_type") or rec.get("question_type")
    cats = {"task": task_of(qtype), "question_type": qtype} if qtype in SUBSETS else {}
    return base.video_r1_sample(NAME, rec, root, cats, {"question_type": qtype if cats else None})


def _id_of(rec: dict, i: int) -> str:
    return str(rec["id"] if "id" in rec else rec["problem_id"])


def _converter(fmt: str, subset: str | None, root: str | None):
    base.check_format(fmt)
    base.check_subset(NAME, subset, SUBSETS)

    def convert(rec: dict, i: int) -> list[EvalSample]:
        s = _official(rec, root) if fmt == "official" else _video_r1(rec, root)
        return [s] if subset is None or s.extra["question_type"] == subset else []
    return convert


def load_records(records: list[dict], fmt: str = "official", subset: str | None = None,
                 root: str | None = None) -> list[EvalSample]:
    """In-memory records (HF ``test`` rows or Video-R1 items) -> samples."""
    return base.records_or_raise(NAME, records, _converter(fmt, subset, root), _id_of)


def _read_official(root: str) -> list[dict]:
    jsonl = os.path.join(root, "test.jsonl")
    if os.path.isfile(jsonl):
        return base.read_jsonl(jsonl)
    return base.read_json(os.path.join(root, "test.json"))


def load(root: str, fmt: str = "official", subset: str | None = None, on_error: str = "raise") -> list[EvalSample]:
    """Read ``test.jsonl`` (official) or ``eval_vsibench.json`` (video-r1) under ``root``."""
    records = _read_official(root) if fmt == "official" else base.read_json(os.path.join(root, "eval_vsibench.json"))
    samples, problems = base.convert_records(NAME, records, _converter(fmt, subset, root), _id_of)
    return base.finish_load(NAME, samples, problems, on_error)


# ---------------------------------------------------------------- prompts
def build_prompt(sample: EvalSample, protocol: str = "video-r1") -> str:
    """``video-r1``: R1 template. ``official``: thinking-in-space ``vsibench_doc_to_text``."""
    base.check_protocol(protocol)
    if protocol == "video-r1":
        return base.video_r1_prompt(sample)
    if sample.problem_type == base.MC:
        options = "Options:\n" + "\n".join(sample.options)
        return "\n".join([PRE_PROMPT, sample.question, options, MCA_POST_PROMPT])
    return PRE_PROMPT + "\n" + sample.question + "\n" + NA_POST_PROMPT


# ---------------------------------------------------------------- scoring
def fuzzy_matching(pred: str) -> str:
    """thinking-in-space: the first ``' '``-separated token, trailing dots removed."""
    return pred.split(" ")[0].rstrip(".").strip()


def _to_float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:  # the release maps any failed float() to None and then scores 0
        return None


def official_score(prediction: str, sample: EvalSample) -> float:
    from r1v.answers import extract_answer, mean_relative_accuracy

    pred = fuzzy_matching(extract_answer(prediction))
    if sample.problem_type == base.MC:
        return 1.0 if pred.lower() == sample.answer.lower() else 0.0
    value, gt = _to_float(pred), _to_float(sample.answer)
    if value is None or gt is None:
        return 0.0
    return float(mean_relative_accuracy(value, gt, protocol="official"))


def score(prediction: str, sample: EvalSample, protocol: str = "video-r1", judge=None) -> float:
    """MC: 1.0/0.0; NA: MRA in [0, 1] under the protocol's MRA rule. No judge is ever used."""
    base.check_protocol(protocol)
    if protocol == "video-r1":
        return base.video_r1_score(prediction, sample)
    return official_score(prediction, sample)


# ---------------------------------------------------------------- aggregation
def _is_mc(row: dict) -> bool:
    return row.get("problem_type") == base.MC


def _task_means_official(rows: list[dict]) -> dict[str, float]:
    """The release's aggregation: per-question-type mean, then rel-direction merged (0-1 scale)."""
    per_type = {k: sum(v) / len(v) for k, v in base.group_scores(rows, "question_type").items()}
    out = {t: per_type[t] for t in TASKS if t in per_type}
    # Quirk kept: the release always adds the merged column (absent levels count 0), so a run
    # without relative-direction items still averages in a 0 for it.
    out["object_rel_direction"] = sum(per_type.get(t, 0.0) for t in REL_DIR) / 3.0
    return out


def aggregate(rows: list[dict], protocol: str = "video-r1") -> dict:
    """Overall (0-100) per protocol; ``categories["task"]`` follows the protocol's task rule."""
    base.check_protocol(protocol)
    ok = base.judged(rows)
    cats = base.breakdown(rows, ("question_type",))
    if protocol == "official":
        tasks = _task_means_official(rows)
        cats["task"] = {t: 100.0 * v for t, v in tasks.items()}
        overall = 100.0 * sum(tasks.values()) / len(tasks) if tasks else 0.0
    else:
        cats.update(base.breakdown(rows, ("task",)))
        mc = [float(r["score"]) for r in ok if _is_mc(r)]
        na = [float(r["score"]) for r in ok if not _is_mc(r)]
        parts = [base.mean_pct(x) for x in (mc, na) if x]
        overall = sum(parts) / len(parts) if parts else 0.0
        cats["kind"] = {k: base.mean_pct(v) for k, v in (("mc_accuracy", mc), ("na_mra", na)) if v}
    return {"overall": overall, "n": len(ok), "n_unjudged": len(rows) - len(ok), "categories": cats}
