"""Video-Holmes (TencentARC/Video-Holmes): complex video reasoning on short films, 1837 MC items.

Official layout (``root`` = the release's ``Benchmark/``): ``test_Video-Holmes.json`` (list of
``{"video ID", "Question ID", "Question Type", "Question", "Options": {A..F}, "Answer",
"Explanation"}``) and ``videos/<video ID>.mp4``. ``Question ID`` restarts per video, so sample ids
are ``<video ID>_<Question ID>``. Video-R1 layout (Video-RTS ``eval_videoholmes.json``):
``root/eval_videoholmes.json``; the type is its ``original_question_type``.

Protocols:
- ``video-r1``: R1 template with ``"A. .."`` options; exact letter.
- ``official`` (``evaluate.py``): the release's prompt; the LAST ``<answer>\\s*(.*?)\\s*</answer>``
  match (else the whole, unstripped output), then for X in A..F the first with ``'X '``,
  ``'X:'`` or ``'[X'`` in it, else the first X contained at all, else ``WRONG``. Case-sensitive
  with a first-letter bias: ``"<answer>Based on the clues, F</answer>"`` -> B.
Aggregation: micro accuracy, plus accuracy per question type (7).
"""
from __future__ import annotations

import logging
import os
import re

from eval.benchmarks import base
from eval.benchmarks.base import EvalSample

logger = logging.getLogger(__name__)

NAME = "videoholmes"
SUBSETS = None
QUESTION_TYPES = ["SR", "IMC", "TCI", "TA", "MHR", "PAR", "CTI"]
GROUPS = ("question_type",)
OFFICIAL_LETTERS = "ABCDEF"

# evaluate.py question prompt.
OFFICIAL_PROMPT = (
    "Based on the given video, reason and answer the single-choice question. Provide your reasoning "
    "between the <think> and </think> tags, and then give your final answer between the <answer> and "
    "</answer> tags. The question is: {question}. The options are: {options}. Your answer:")
_ANSWER = re.compile(r"<answer>\s*(.*?)\s*</answer>", re.DOTALL)


# ---------------------------------------------------------------- loading
def _official(rec: dict, root: str | None) -> EvalSample:
    options = rec["Options"]
    if not isinstance(options, dict) or not options:
        raise TypeError("Options must be a non-empty dict")
    if list(options) != list(OFFICIAL_LETTERS[:len(options)]):
        raise ValueError(f"option keys {list(options)} are not A, B, ...")
    if rec["Answer"] not in options:
        raise ValueError(f"Answer {rec['Answer']!r} is not an option key")
    qtype = rec["Question Type"]
    return EvalSample(
        id=f"{rec['video ID']}_{rec['Question ID']}", benchmark=NAME,
        media_path=base.resolve_media(f"videos/{rec['video ID']}.mp4", root), data_type="video",
        question=rec["Question"], options=[f"{k}. {v}" for k, v in options.items()], answer=rec["Answer"],
        problem_type=base.MC, categories={"question_type": qtype},
        extra={"format": "official", "choices": dict(options), "video_id": rec["video ID"]})


def _video_r1(rec: dict, root: str | None) -> EvalSample:
    qtype = rec.get("original_question_type")
    return base.video_r1_sample(NAME, rec, root, {"question_type": qtype} if qtype else {})


def _id_of(rec: dict, i: int) -> str:
    if "problem_id" in rec:
        return str(rec["problem_id"])
    return f"{rec['video ID']}_{rec['Question ID']}"


def load_records(records: list[dict], fmt: str = "official", subset: str | None = None,
                 root: str | None = None) -> list[EvalSample]:
    """In-memory records (official test json items or Video-R1 items) -> samples."""
    base.check_format(fmt)
    base.check_subset(NAME, subset, SUBSETS)
    convert = _official if fmt == "official" else _video_r1
    return base.records_or_raise(NAME, records, lambda r, i: [convert(r, root)], _id_of)


def load(root: str, fmt: str = "official", subset: str | None = None, on_error: str = "raise") -> list[EvalSample]:
    """Read ``test_Video-Holmes.json`` (official) or ``eval_videoholmes.json`` (video-r1) under ``root``."""
    base.check_format(fmt)
    base.check_subset(NAME, subset, SUBSETS)
    name = "test_Video-Holmes.json" if fmt == "official" else "eval_videoholmes.json"
    convert = _official if fmt == "official" else _video_r1
    samples, problems = base.convert_records(NAME, base.read_json(os.path.join(root, name)),
                                             lambda r, i: [convert(r, root)], _id_of)
    base.check_unique_ids(NAME, samples)
    return base.finish_load(NAME, samples, problems, on_error)


# ---------------------------------------------------------------- prompts
def build_prompt(sample: EvalSample, protocol: str = "video-r1") -> str:
    """``video-r1``: R1 template. ``official``: the release's single-choice prompt."""
    base.check_protocol(protocol)
    if protocol == "video-r1":
        return base.video_r1_prompt(sample)
    options = ", ".join(f"{k}: {v}" for k, v in base.option_map(sample).items())
    return OFFICIAL_PROMPT.format(question=sample.question, options=options)


# ---------------------------------------------------------------- scoring
def parse_official(prediction: str) -> str:
    """The release's letter rule (see module doc); returns a letter or ``"WRONG"``."""
    matches = _ANSWER.findall(prediction)
    choice = matches[-1].strip() if matches else prediction
    for x in OFFICIAL_LETTERS:
        if f"{x} " in choice or f"{x}:" in choice or f"[{x}" in choice:
            return x
    for x in OFFICIAL_LETTERS:
        if x in choice:
            return x
    return "WRONG"


def score(prediction: str, sample: EvalSample, protocol: str = "video-r1", judge=None) -> float:
    """1.0/0.0 under either protocol (no judge)."""
    base.check_protocol(protocol)
    if protocol == "video-r1":
        return base.video_r1_score(prediction, sample)
    return 1.0 if parse_official(prediction) == sample.answer else 0.0


def aggregate(rows: list[dict], protocol: str = "video-r1") -> dict:
    """Micro accuracy (0-100) with per-type accuracy; identical rule under both protocols."""
    base.check_protocol(protocol)
    return base.micro_aggregate(rows, GROUPS)
