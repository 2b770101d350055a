"""LongVideoBench (longvideobench/LongVideoBench): referring reasoning in long videos, val = 1337 MC.

Official layout (``root``): ``lvb_val.json`` (list of raw records: ``id, video_id, video_path,
question, candidates, correct_choice, duration_group, question_category, topic_category, level,
...``) and ``videos/<video_path>``. Parquet-style rows (``option0..option4`` with ``"N/A"`` for
absent options) are accepted by :func:`load_records` too. Video-R1 layout (Video-RTS
``eval_lvb.json``): ``root/eval_lvb.json``; it carries no duration group or category. The test
split has no ground truth and cannot be scored here. Subtitles are not used (video-only task,
as lmms-eval ``longvideobench_val_v``).

Protocols:
- ``video-r1``: R1 template with ``"A. .."`` options; exact letter.
- ``official`` (lmms-eval ``longvideobench_val_v``, the benchmark's own harness): prompt
  ``"{question}\\nA. ..\\n...\\nAnswer with the option's letter from the given choices directly.\\n"``;
  the ``<answer>`` content is taken first, answer prefixes ("The best answer is", ...) are
  removed, then the FIRST ``[ABCDE]`` anywhere wins (so ``"Answer: C"`` -> A). When nothing
  parses (or a >10-word reply has no such letter) lmms-eval picks ``random.choice`` unseeded; we
  reproduce the fallback SEEDED by the item id, so a rerun gives the same number.
Aggregation: micro accuracy (the release's "Overall" counts each item in both groupings, which
equals micro accuracy), plus duration_group / question_category / level / topic breakdowns.
"""
from __future__ import annotations

import logging
import os
import random
import re

from eval.benchmarks import base
from eval.benchmarks.base import EvalSample

logger = logging.getLogger(__name__)

NAME = "longvideobench"
SUBSETS = None
GROUPS = ("duration_group", "question_category", "level", "topic_category")
POST_PROMPT = "Answer with the option's letter from the given choices directly.\n"
ANSWER_PREFIXES = ["The best answer is", "The correct answer is", "The answer is", "The answer",
                   "The best option is", "The correct option is", "Best answer:", "Best option:"]
FALLBACK_SEED = "longvideobench"


# ---------------------------------------------------------------- loading
def _candidates(rec: dict) -> list[str]:
    if "candidates" in rec:
        cands = rec["candidates"]
    else:  # parquet rows: option0..option4, "N/A" when absent (lmms-eval stops at the first N/A)
        cands = []
        for i in range(5):
            opt = rec.get(f"option{i}", "N/A")
            if opt == "N/A":
                break
            cands.append(opt)
    if not isinstance(cands, list) or not cands or not all(isinstance(c, str) for c in cands):
        raise TypeError("candidates must be a non-empty list of strings")
    return cands


def _official(rec: dict, root: str | None) -> EvalSample:
    cands = _candidates(rec)
    correct = rec["correct_choice"]
    if not isinstance(correct, int) or not 0 <= correct < len(cands):
        raise ValueError(f"correct_choice {correct!r} out of range for {len(cands)} candidates")
    cats = {g: str(rec[g]) for g in GROUPS if rec.get(g) is not None}
    return EvalSample(
        id=str(rec["id"]), benchmark=NAME, media_path=base.resolve_media(f"videos/{rec['video_path']}", root),
        data_type="video", question=rec["question"], options=base.render_options(cands),
        answer=base.letter(correct), problem_type=base.MC, categories=cats,
        extra={"format": "official", "duration": rec.get("duration"), "video_id": rec.get("video_id")})


def _video_r1(rec: dict, root: str | None) -> EvalSample:
    return base.video_r1_sample(NAME, rec, root)


def _id_of(rec: dict, i: int) -> str:
    return str(rec["id"] if "id" in rec else rec["problem_id"])


def load_records(records: list[dict], fmt: str = "official", subset: str | None = None,
                 root: str | None = None) -> list[EvalSample]:
    """In-memory records (raw json / parquet rows, or Video-R1 items) -> samples."""
    base.check_format(fmt)
    base.check_subset(NAME, subset, SUBSETS)
    convert = _official if fmt == "official" else _video_r1
    return base.records_or_raise(NAME, records, lambda r, i: [convert(r, root)], _id_of)


def load(root: str, fmt: str = "official", subset: str | None = None, on_error: str = "raise") -> list[EvalSample]:
    """Read ``lvb_val.json`` (official) or ``eval_lvb.json`` (video-r1) under ``root``."""
    base.check_format(fmt)
    base.check_subset(NAME, subset, SUBSETS)
    name = "lvb_val.json" if fmt == "official" else "eval_lvb.json"
    convert = _official if fmt == "official" else _video_r1
    samples, problems = base.convert_records(NAME, base.read_json(os.path.join(root, name)),
                                             lambda r, i: [convert(r, root)], _id_of)
    return base.finish_load(NAME, samples, problems, on_error)


# ---------------------------------------------------------------- prompts
def build_prompt(sample: EvalSample, protocol: str = "video-r1") -> str:
    """``video-r1``: R1 template. ``official``: lmms-eval ``longvideobench_val_v`` text."""
    base.check_protocol(protocol)
    if protocol == "video-r1":
        return base.video_r1_prompt(sample)
    return f"{sample.question}\n" + "\n".join(sample.options) + f"\n{POST_PROMPT}"


# ---------------------------------------------------------------- scoring
def fallback_letter(sample: EvalSample) -> str:
    """The seeded stand-in for lmms-eval's unseeded ``random.choice(all_choices)``."""
    rng = random.Random(f"{FALLBACK_SEED}:{sample.id}")
    return rng.choice([base.letter(i) for i in range(len(sample.options))])


def parse_official(response: str, sample: EvalSample) -> str:
    """lmms-eval ``parse_multi_choice_response`` with the seeded fallback (see module doc)."""
    s = response.strip()
    for prefix in ANSWER_PREFIXES:
        s = s.replace(prefix, "")
    match = re.search(r"[ABCDE]", s)
    if match is None:  # covers the ">10 words and no letter" branch too: both fall back
        return fallback_letter(sample)
    return match.group(0)


def score(prediction: str, sample: EvalSample, protocol: str = "video-r1", judge=None) -> float:
    """1.0/0.0 under either protocol (no judge)."""
    from r1v.answers import extract_answer

    base.check_protocol(protocol)
    if protocol == "video-r1":
        return base.video_r1_score(prediction, sample)
    return 1.0 if parse_official(extract_answer(prediction), sample) == sample.answer else 0.0


def aggregate(rows: list[dict], protocol: str = "video-r1") -> dict:
    """Micro accuracy (0-100) with duration-group / category breakdowns (both protocols)."""
    base.check_protocol(protocol)
    return base.micro_aggregate(rows, GROUPS)
