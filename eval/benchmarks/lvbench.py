"""LVBench (THUDM/LVBench): extreme long video understanding, 1549 MC items on 103 videos.

Official layout (``root``): ``video_info.meta.jsonl``, one line per video
``{"key", "type", "video_info", "qa": [{"uid", "question", "answer", "question_type": [..],
"time_reference"}]}``; each ``qa`` entry becomes one sample with id ``uid``. The question text
holds the stem plus ``(A) ..`` to ``(D) ..`` lines. Videos: ``videos/<key>.mp4`` (the release's
download script names files by shard, so the project expects them renamed by key), or the
record's ``video_path`` when present (lmms-eval's flattened rows, which hold one QA per row and
are accepted as well). No Video-R1-eval json exists for LVBench; ``fmt="video-r1"`` reads
project-converted Video-R1 items from ``root/eval_lvbench.json``.

Categories: ``video_type`` (6) and ``question_type``, which is MULTI-LABEL: the tags are joined
with ``|`` in ``categories["question_type"]`` and every tag is counted (official rule).

Protocols:
- ``video-r1``: R1 template with the stem as question and options ``"A. .."``; exact letter.
- ``official``: lmms-eval prompt ``question + "\\nAnswer the question with the option letter"``;
  scoring by the release's ``polish_answer`` on the ``<answer>`` content: text before ``)``, after
  ``(``, first space token, its FIRST CHARACTER; equality with the GT letter (case-sensitive).
  ``"The answer is D"`` -> ``T`` (wrong), ``"(d)"`` -> ``d`` (wrong).
Aggregation: micro accuracy; per tag accuracy counting an item once per tag; per video type.
"""
from __future__ import annotations

import logging
import os
import re

from eval.benchmarks import base
from eval.benchmarks.base import EvalSample

logger = logging.getLogger(__name__)

NAME = "lvbench"
SUBSETS = None
TAG_SEP = "|"
CATEGORIES = {"key information retrieval": "KIR", "event understanding": "EU", "summarization": "Sum",
              "entity recognition": "ER", "reasoning": "Rea", "temporal grounding": "TG"}
OFFICIAL_SUFFIX = "\nAnswer the question with the option letter"
_OPTION_LINE = re.compile(r"^\(([A-Z])\)\s?(.*)$")


def split_question(question: str) -> tuple[str, list[str]]:
    """``"stem\\n(A) x\\n(B) y"`` -> (``"stem"``, [``"x"``, ``"y"``]); letters must run A, B, ..."""
    stem, texts = [], []
    for line in question.split("\n"):
        match = _OPTION_LINE.match(line.strip())
        if match and match.group(1) == base.letter(len(texts)):
            texts.append(match.group(2).strip())
        elif texts:
            raise ValueError(f"text after the options: {line!r}")
        else:
            stem.append(line)
    if len(texts) < 2:
        raise ValueError("question does not hold '(A) ..' option lines")
    return "\n".join(stem).strip(), texts


# ---------------------------------------------------------------- loading
def _qa_sample(qa: dict, video: dict, root: str | None) -> EvalSample:
    stem, texts = split_question(qa["question"])
    answer = qa["answer"]
    if answer not in [base.letter(i) for i in range(len(texts))]:
        raise ValueError(f"answer {answer!r} is not an option letter")
    tags = qa["question_type"]
    if isinstance(tags, str):
        tags = [tags]
    if not isinstance(tags, list) or not tags:
        raise TypeError("question_type must be a non-empty list")
    rel = video.get("video_path") or f"videos/{video['key']}.mp4"
    cats = {"question_type": TAG_SEP.join(tags)}
    if video.get("type"):
        cats["video_type"] = video["type"]
    return EvalSample(
        id=str(qa["uid"]), benchmark=NAME, media_path=base.resolve_media(rel, root), data_type="video",
        question=stem, options=base.render_options(texts), answer=answer, problem_type=base.MC,
        categories=cats, extra={"format": "official", "raw_question": qa["question"], "tags": list(tags),
                                "time_reference": qa.get("time_reference"), "key": video.get("key")})


def _official(rec: dict, root: str | None) -> list[EvalSample]:
    if "qa" not in rec:  # a flattened row: the QA fields and the video fields together
        return [_qa_sample(rec, rec, root)]
    if not isinstance(rec["qa"], list):
        raise TypeError("qa must be a list")
    out = []
    for n, qa in enumerate(rec["qa"]):
        try:
            out.append(_qa_sample(qa, rec, root))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            uid = qa.get("uid", f"#{n}") if isinstance(qa, dict) else f"#{n}"
            raise ValueError(f"qa uid={uid}: {type(exc).__name__}: {exc}") from exc
    return out


def _id_of(rec: dict, i: int) -> str:
    for key in ("key", "uid", "problem_id"):
        if key in rec:
            return str(rec[key])
    raise KeyError("key")


def _converter(fmt: str, root: str | None):
    if fmt == "official":
        return lambda r, i: _official(r, root)
    return lambda r, i: [base.video_r1_sample(NAME, r, root)]


def load_records(records: list[dict], fmt: str = "official", subset: str | None = None,
                 root: str | None = None) -> list[EvalSample]:
    """Per-video records (one sample per ``qa`` entry), flattened rows, or Video-R1 items."""
    base.check_format(fmt)
    base.check_subset(NAME, subset, SUBSETS)
    samples = base.records_or_raise(NAME, records, _converter(fmt, root), _id_of)
    base.check_unique_ids(NAME, samples)
    return samples


def load(root: str, fmt: str = "official", subset: str | None = None, on_error: str = "raise") -> list[EvalSample]:
    """Read ``video_info.meta.jsonl`` (official) or ``eval_lvbench.json`` (video-r1) under ``root``."""
    base.check_format(fmt)
    base.check_subset(NAME, subset, SUBSETS)
    if fmt == "official":
        records = base.read_jsonl(os.path.join(root, "video_info.meta.jsonl"))
    else:
        records = base.read_json(os.path.join(root, "eval_lvbench.json"))
    samples, problems = base.convert_records(NAME, records, _converter(fmt, root), _id_of)
    base.check_unique_ids(NAME, samples)
    return base.finish_load(NAME, samples, problems, on_error)


# ---------------------------------------------------------------- prompts
def build_prompt(sample: EvalSample, protocol: str = "video-r1") -> str:
    """``video-r1``: R1 template. ``official``: lmms-eval's raw question + option-letter instruction."""
    base.check_protocol(protocol)
    if protocol == "video-r1":
        return base.video_r1_prompt(sample)
    raw = sample.extra.get("raw_question") or (
        sample.question + "\n" + "\n".join(f"({k}) {v}" for k, v in base.option_map(sample).items()))
    return raw + OFFICIAL_SUFFIX


# ---------------------------------------------------------------- scoring
def polish_answer(answer: str) -> str:
    """The release's ``polish_answer`` (lvbench/utils/answer_util.py), rule for rule."""
    answer = answer.strip().split(")")[0].strip()
    if "(" in answer:
        answer = answer.split("(")[1].strip()
    answer = answer.split(" ")[0]
    return answer[0] if answer else answer


def score(prediction: str, sample: EvalSample, protocol: str = "video-r1", judge=None) -> float:
    """1.0/0.0 under either protocol (no judge)."""
    from r1v.answers import extract_answer

    base.check_protocol(protocol)
    if protocol == "video-r1":
        return base.video_r1_score(prediction, sample)
    return 1.0 if polish_answer(extract_answer(prediction)) == sample.answer else 0.0


def aggregate(rows: list[dict], protocol: str = "video-r1") -> dict:
    """Micro accuracy (0-100); ``question_type`` per tag (multi-label), ``video_type`` per video."""
    base.check_protocol(protocol)
    ok = base.judged(rows)
    per_tag: dict[str, list[float]] = {}
    for r in ok:
        for tag in (r.get("categories") or {}).get("question_type", "").split(TAG_SEP):
            if tag:
                per_tag.setdefault(tag, []).append(float(r["score"]))
    cats = base.breakdown(rows, ("video_type",))
    if per_tag:
        cats["question_type"] = {t: base.mean_pct(v) for t, v in sorted(per_tag.items())}
    return {"overall": base.mean_pct([float(r["score"]) for r in ok]), "n": len(ok),
            "n_unjudged": len(rows) - len(ok), "categories": cats}
