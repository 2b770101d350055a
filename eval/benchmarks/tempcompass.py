"""TempCompass (llyx97/TempCompass): temporal perception, four task formats.

Official layout (``root``): ``questions/{multi-choice,yes_no,caption_matching,captioning}.json``
(``{video_id: {dim: [{"question", "answer", ...}]}}``), optional ``meta_info.json`` (adds the
fine-grained ``aspect`` category) and ``videos/<video_id>.mp4``. :func:`load_records` takes the HF
per-item rows ``{video_id, dim, question, answer[, mc_question, mc_answer]}`` with ``subset`` =
the task. Captioning items need their MC question: from ``mc_question``/``mc_answer`` or, when
loading files, from ``multi-choice.json[video_id][dim][0]`` (as ``eval_captioning.py`` does).
Video-R1 layout: ``root/eval_tempcompass.json`` (MC only in the Video-R1 family; a ``dim`` field
is used when present). Sample ids: ``<task>/<video_id>/<dim>/<k>``.

Items as samples: multi-choice -> options parsed from the question's ``"A. .."`` lines;
yes_no -> MC with options ``["A. yes", "B. no"]`` (video-r1 rendering; the official prompt uses the
raw question); caption_matching -> MC with the captions as options (``Caption A``/``Option 1``/
``Sentence A`` labels mapped to A, B by position); captioning -> ``free-form``.

Protocols:
- ``video-r1``: R1 template, exact letter. Captioning has no rule-based score in any protocol:
  both protocols grade it with the release's captioning judge on the ``<answer>`` content.
- ``official``: the release's per-task prompt suffix and rules (``tempcompass_rules``); items the
  rules cannot decide go to the optional judge, else score None. Captioning: judge only; an
  empty judge reply rates -1 as in the release (it lowers the sum).
Aggregation: micro over scored items (the release reports each task separately: use ``subset``
or the ``task`` breakdown; there is no official cross-task number); breakdowns by task, dim and
aspect.
"""
from __future__ import annotations

import logging
import os
import re

from eval.benchmarks import base
from eval.benchmarks import tempcompass_rules as rules
from eval.benchmarks.base import EvalSample

logger = logging.getLogger(__name__)

NAME = "tempcompass"
SUBSETS = ["multi-choice", "yes_no", "caption_matching", "captioning"]
GROUPS = ("task", "dim", "aspect")
ANSWER_PROMPT = {"multi-choice": "\nPlease directly give the best option:", "yes_no": "\nPlease answer yes or no:",
                 "caption_matching": "\nPlease directly give the best option:", "captioning": ""}
_MC_LINE = re.compile(r"^([A-Z])\. (.*)$")


# ---------------------------------------------------------------- item -> sample
def split_mc_question(question: str) -> tuple[str, list[str]]:
    """``"stem\\nA. x\\nB. y"`` -> (``"stem"``, [``"x"``, ``"y"``]); options are the trailing lines."""
    lines = question.split("\n")
    start = len(lines)
    while start > 0 and _MC_LINE.match(lines[start - 1]):
        start -= 1
    texts = [_MC_LINE.match(line).group(2) for line in lines[start:]]
    letters = [_MC_LINE.match(line).group(1) for line in lines[start:]]
    if len(texts) < 2 or letters != [base.letter(i) for i in range(len(texts))]:
        raise ValueError("question does not end with 'A. ..' option lines")
    return "\n".join(lines[:start]), texts


def _mc_fields(task: str, item: dict) -> tuple[str, list[str], str, str]:
    """(question, option texts, gold letter, problem type) for one item of ``task``."""
    q, a = item["question"], item["answer"]
    if task == "multi-choice":
        stem, texts = split_mc_question(q)
        letter = a[0]
        if a[1:2] != "." or letter not in [base.letter(i) for i in range(len(texts))]:
            raise ValueError(f"answer {a!r} is not 'X. text' for an option X")
        return stem, texts, letter, base.MC
    if task == "yes_no":
        if a not in ("yes", "no"):
            raise ValueError(f"yes_no answer {a!r} is not 'yes'/'no'")
        return q, ["yes", "no"], "A" if a == "yes" else "B", base.MC
    if task == "caption_matching":
        lines = q.split("\n")
        options = lines[1:]
        if len(options) < 2 or any(": " not in o for o in options) or a not in options:
            raise ValueError("caption_matching answer must be one of the 'Label: caption' lines")
        return lines[0], [o.split(": ", 1)[1] for o in options], base.letter(options.index(a)), base.MC
    for key in ("mc_question", "mc_answer"):
        if not item.get(key):
            raise KeyError(key)
    return q, [], a, "free-form"


def item_sample(task: str, item: dict, video_id: str, dim: str, k: int, root: str | None,
                aspect: str | None = None) -> EvalSample:
    question, texts, gold, ptype = _mc_fields(task, item)
    cats = {"task": task, "dim": dim, **({"aspect": aspect} if aspect else {})}
    extra = {"format": "official", "task": task, "raw_question": item["question"], "raw_answer": item["answer"]}
    if task == "captioning":
        extra.update(mc_question=item["mc_question"], mc_answer=item["mc_answer"])
    return EvalSample(
        id=f"{task}/{video_id}/{dim}/{k}", benchmark=NAME,
        media_path=base.resolve_media(f"videos/{video_id}.mp4", root), data_type="video", question=question,
        options=base.render_options(texts), answer=gold, problem_type=ptype, categories=cats, extra=extra)


def _aspect(meta: dict | None, video_id: str, dim: str) -> str | None:
    """``meta_info[id]["eval_dim"][dim]["type"]`` (``order`` has no sub-type), as ``print_result``."""
    if meta is None:
        return None
    return "order" if dim == "order" else meta[video_id]["eval_dim"][dim]["type"]


# ---------------------------------------------------------------- loading
def _video_r1(rec: dict, root: str | None) -> EvalSample:
    dim = rec.get("dim")
    cats = {"task": "multi-choice", **({"dim": dim} if dim else {})}
    return base.video_r1_sample(NAME, rec, root, cats, {"task": "multi-choice"})


def _row_id(rec: dict, i: int) -> str:
    if "problem_id" in rec:
        return str(rec["problem_id"])
    return f"{rec.get('video_id', '?')}/{rec.get('dim', '?')}#{i}"


def load_records(records: list[dict], fmt: str = "official", subset: str | None = None,
                 root: str | None = None) -> list[EvalSample]:
    """HF rows of one task (``subset`` required for official) or Video-R1 items -> samples."""
    base.check_format(fmt)
    base.check_subset(NAME, subset, SUBSETS)
    if fmt == "video-r1":
        if subset not in (None, "multi-choice"):
            raise ValueError("tempcompass: Video-R1 records are multi-choice only")
        return base.records_or_raise(NAME, records, lambda r, i: [_video_r1(r, root)], _row_id)
    if subset is None:
        raise ValueError("tempcompass: official records need subset= one of " + ", ".join(SUBSETS))
    seen: dict[tuple, int] = {}

    def convert(rec: dict, i: int) -> list[EvalSample]:
        key = (rec["video_id"], rec["dim"])
        k = seen[key] = seen.get(key, -1) + 1
        return [item_sample(subset, rec, rec["video_id"], rec["dim"], k, root)]
    return base.records_or_raise(NAME, records, convert, _row_id)


def _task_items(root: str, task: str, meta: dict | None, mc: dict | None, problems: list) -> list[EvalSample]:
    data = base.read_json(os.path.join(root, "questions", f"{task}.json"))
    out = []
    for video_id, dims in data.items():
        for dim, items in dims.items():
            for k, item in enumerate(items):
                sid = f"{task}/{video_id}/{dim}/{k}"
                try:
                    if task == "captioning" and "mc_question" not in item:
                        first = mc[video_id][dim][0]
                        item = {**item, "mc_question": first["question"], "mc_answer": first["answer"]}
                    out.append(item_sample(task, item, video_id, dim, k, root, _aspect(meta, video_id, dim)))
                except (KeyError, TypeError, ValueError, IndexError) as exc:
                    problems.append((sid, f"malformed record: {type(exc).__name__}: {exc}"))
    return out


def load(root: str, fmt: str = "official", subset: str | None = None, on_error: str = "raise") -> list[EvalSample]:
    """Official: ``questions/<task>.json`` for each task (or one); video-r1: ``eval_tempcompass.json``."""
    base.check_format(fmt)
    base.check_subset(NAME, subset, SUBSETS)
    if fmt == "video-r1":
        records = base.read_json(os.path.join(root, "eval_tempcompass.json"))
        samples, problems = base.convert_records(NAME, records, lambda r, i: [_video_r1(r, root)], _row_id)
        return base.finish_load(NAME, samples, problems, on_error)
    meta_path = os.path.join(root, "meta_info.json")
    meta = base.read_json(meta_path) if os.path.isfile(meta_path) else None
    tasks = [subset] if subset else SUBSETS
    mc = base.read_json(os.path.join(root, "questions", "multi-choice.json")) if "captioning" in tasks else None
    samples, problems = [], []
    for task in tasks:
        samples += _task_items(root, task, meta, mc, problems)
    return base.finish_load(NAME, samples, problems, on_error)


# ---------------------------------------------------------------- prompts
def build_prompt(sample: EvalSample, protocol: str = "video-r1") -> str:
    """``video-r1``: R1 template. ``official``: raw question + the task's answer prompt."""
    base.check_protocol(protocol)
    if protocol == "video-r1":
        return base.video_r1_prompt(sample)
    task = sample.extra.get("task", "multi-choice")
    raw = sample.extra.get("raw_question") or (sample.question + "\n" + "\n".join(sample.options))
    return raw + ANSWER_PROMPT[task]


# ---------------------------------------------------------------- scoring
def _captioning_score(prediction: str, sample: EvalSample, judge) -> float | None:
    from r1v.answers import extract_answer

    if judge is None:
        return None
    caption = rules.clean(extract_answer(prediction))
    reply = judge.complete(rules.captioning_messages(caption, sample.extra["mc_question"]),
                           max_tokens=rules.JUDGE_MAX_TOKENS, temperature=rules.JUDGE_TEMPERATURE)
    return rules.captioning_rating(reply.strip(), sample.extra["mc_answer"])


def official_score(prediction: str, sample: EvalSample, judge=None) -> float | None:
    from r1v.answers import extract_answer

    task = sample.extra.get("task", "multi-choice")
    if task == "captioning":
        return _captioning_score(prediction, sample, judge)
    pred = rules.clean(extract_answer(prediction))
    question = sample.extra.get("raw_question") or sample.question + "\n" + "\n".join(sample.options)
    answer = sample.extra.get("raw_answer") or next(o for o in sample.options if o[0] == sample.answer)
    if task == "multi-choice":
        rating = rules.multi_choice_rule(pred, answer)
    elif task == "yes_no":
        rating = rules.yes_no_rule(pred, answer)
    else:
        rating = rules.caption_matching_rule(pred, question, answer)
    if rating is not None:
        return rating
    if judge is None:
        return None
    return rules.judged_rating(judge, rules.judge_messages(task, question, answer, pred))


def score(prediction: str, sample: EvalSample, protocol: str = "video-r1", judge=None) -> float | None:
    """1.0/0.0 (captioning may rate -1); None when an LLM judge is needed and none is given."""
    base.check_protocol(protocol)
    if sample.extra.get("task") == "captioning":
        return _captioning_score(prediction, sample, judge)
    if protocol == "video-r1":
        return base.video_r1_score(prediction, sample)
    return official_score(prediction, sample, judge)


def aggregate(rows: list[dict], protocol: str = "video-r1") -> dict:
    """Micro mean (0-100) of scored items (-1 ratings count as -1, as in ``print_result``)."""
    base.check_protocol(protocol)
    return base.micro_aggregate(rows, GROUPS)
