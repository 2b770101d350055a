"""VideoMMMU (lmms-lab/VideoMMMU): knowledge acquisition from lecture videos, 3 tracks x 300.

Official layout (``root``): the release's ``data/{perception,comprehension,adaptation}_video.json``
(``{"Perception": {"0": record, ...}}``; a plain list or ``{"0": record}`` dict is accepted too)
and videos ``<Discipline>/<id>.mp4`` with the lmms-eval folders Art, Business, Science, Medicine,
Humanities, Engineering (one video per id serves all three tracks; the Adaptation question image
is its last frame). Video-R1 layout: ``root/eval_videommmu.json`` (900 items; MC with ``"A. .."``
options, numeric open items as ``numerical``). Video-R1 records carry no track: a track breakdown
or a ``subset`` needs a ``track`` field in the records.

Records: ``id`` = ``<split>_<Subject>_<n>`` (the same id appears once per track, so sample ids
are ``<Track>/<id>``). Perception/Comprehension records in the GitHub json lack
``question_type``; items with options are treated as ``multiple-choice`` (the HF rows carry it).

Protocols:
- ``video-r1``: R1 prompt with ``<image 1>`` removed from the question (as in Video-R1's json);
  MC exact letter; open items with a numeric answer are ``numerical`` (decimal-marker + round-2
  rule), other open items ``free-form``.
- ``official`` (the VideoMMMU lmms-eval fork, MMMU-derived): the ``<answer>`` content is taken
  first; MC parsed by :func:`parse_multi_choice` (``X.``/``X:`` > ``(X)`` > ``X `` > option text,
  last occurrence wins, ``"No Answere Found"`` otherwise); open items by
  :func:`parse_open_response` + :func:`eval_open` (floats rounded to 2). An empty response is
  the release's ``"API Error"`` and is dropped from the denominator: score None (unjudged).
Aggregation: micro over scored items (= mean of the 3 tracks when they have equal size), with
track / discipline / subject breakdowns.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import re

from eval.benchmarks import base
from eval.benchmarks.base import EvalSample

logger = logging.getLogger(__name__)

NAME = "videommmu"
SUBSETS = ["Perception", "Comprehension", "Adaptation"]
GROUPS = ("track", "discipline", "subject")

# MMMU DOMAIN_CAT2SUB_CAT (reported disciplines) and lmms-eval get_cache_dir (video folders).
DOMAINS = {
    "Art and Design": (["Art", "Art_Theory", "Design", "Music"], "Art"),
    "Business": (["Accounting", "Economics", "Finance", "Manage", "Marketing"], "Business"),
    "Science": (["Biology", "Chemistry", "Geography", "Math", "Physics"], "Science"),
    "Health and Medicine": (["Basic_Medical_Science", "Clinical_Medicine", "Diagnostics_and_Laboratory_Medicine",
                             "Pharmacy", "Public_Health"], "Medicine"),
    "Humanities and Social Science": (["History", "Literature", "Sociology", "Psychology"], "Humanities"),
    "Tech and Engineering": (["Agriculture", "Architecture_and_Engineering", "Computer_Science", "Electronics",
                              "Energy_and_Power", "Materials", "Mechanical_Engineering"], "Engineering"),
}
SUBJECT_DOMAIN = {s: d for d, (subjects, _) in DOMAINS.items() for s in subjects}
DOMAIN_FOLDER = {d: folder for d, (_, folder) in DOMAINS.items()}

# Prompt pieces of the official fork (identical in VLMEvalKit's VideoMMMU).
PRE_PROMPT = "You should watch and learn the video content. Then apply what you learned to "
PERCEPTION_AND_COMPREHENSION_PROMPT = "\nPlease ignore the Quiz question in last frame of the video."
MCQ_PROMPT = ("answer the following multi-choice question. The image for this question is at the end of "
              "the video.\n")
OPEN_ENDED_PROMPT = ("answer the following open-ended question. The image for this question is at the end "
                     "of the video.\n")
NO_ANSWER = "No Answere Found"  # sic, the release's sentinel
API_ERROR = "API Error"


def subject_of(item_id: str) -> str:
    """``validation_Clinical_Medicine_3`` -> ``Clinical_Medicine`` (lmms-eval extract_subset_name)."""
    match = re.match(r"^[^_]+_(.+?)_\d+$", item_id)
    if not match:
        raise ValueError(f"id {item_id!r} is not <split>_<Subject>_<n>")
    return match.group(1)


def _categories(item_id: str) -> dict[str, str]:
    subject = subject_of(item_id)
    if subject not in SUBJECT_DOMAIN:
        raise ValueError(f"unknown subject {subject!r}")
    return {"subject": subject, "discipline": SUBJECT_DOMAIN[subject]}


def _is_number(text: str) -> bool:
    try:
        float(text.replace(",", ""))
        return True
    except ValueError:
        return False


# ---------------------------------------------------------------- loading
def _official(rec: dict, track: str, root: str | None) -> EvalSample:
    raw_options = rec.get("options") or []
    qtype = rec.get("question_type") or ("multiple-choice" if raw_options else "open")
    cats = {**_categories(rec["id"]), "track": track}
    if qtype == "multiple-choice":
        if rec["answer"] not in [base.letter(i) for i in range(len(raw_options))]:
            raise ValueError(f"MC answer {rec['answer']!r} is not the letter of one of {len(raw_options)} options")
        texts = [base.option_text(o) if o.startswith(f"{base.letter(i)}.") else o for i, o in enumerate(raw_options)]
        options, ptype = base.render_options(texts), base.MC
    else:
        options, ptype = [], "numerical" if _is_number(str(rec["answer"])) else "free-form"
    rel = f"{DOMAIN_FOLDER[cats['discipline']]}/{rec['id']}.mp4"
    return EvalSample(
        id=f"{track}/{rec['id']}", benchmark=NAME, media_path=base.resolve_media(rel, root), data_type="video",
        question=rec["question"], options=options, answer=str(rec["answer"]), problem_type=ptype,
        categories=cats, extra={"format": "official", "question_type": qtype, "track": track,
                                "item_id": rec["id"]})


def _video_r1(rec: dict, subset: str | None, root: str | None) -> EvalSample:
    item_id = os.path.splitext(os.path.basename(str(rec["path"])))[0]
    track = rec.get("track")
    if subset is not None and track is None:
        raise ValueError("record has no 'track' field, so it cannot be filtered by subset")
    cats = {**_categories(item_id), **({"track": track} if track else {})}
    qtype = rec.get("original_question_type") or ("multiple-choice" if rec.get("options") else "open")
    return base.video_r1_sample(NAME, rec, root, cats, {"question_type": qtype, "track": track,
                                                        "item_id": item_id})


def _id_of(rec: dict, i: int) -> str:
    return str(rec.get("id", rec.get("problem_id")))


def _split_records(obj, track: str) -> list[dict]:
    """The release's ``{"<Track>": {"0": rec}}`` (or ``{"0": rec}`` / list) -> list of records."""
    if isinstance(obj, dict) and track in obj:
        obj = obj[track]
    if isinstance(obj, dict):
        obj = list(obj.values())
    if not isinstance(obj, list):
        raise ValueError(f"{track}: expected a list or dict of records, got {type(obj).__name__}")
    return obj


def load_records(records: list[dict], fmt: str = "official", subset: str | None = None,
                 root: str | None = None) -> list[EvalSample]:
    """Official records need ``subset`` (the track they belong to); Video-R1 records do not."""
    base.check_format(fmt)
    base.check_subset(NAME, subset, SUBSETS)
    if fmt == "official":
        if subset is None:
            raise ValueError("videommmu: official records need subset= one of " + ", ".join(SUBSETS))
        return base.records_or_raise(NAME, records, lambda r, i: [_official(r, subset, root)], _id_of)

    def convert(rec: dict, i: int) -> list[EvalSample]:
        s = _video_r1(rec, subset, root)
        return [s] if subset is None or s.extra["track"] == subset else []
    return base.records_or_raise(NAME, records, convert, _id_of)


def _track_file(root: str, track: str) -> str:
    name = f"{track.lower()}_video.json"
    nested = os.path.join(root, "data", name)
    return nested if os.path.isfile(nested) else os.path.join(root, name)


def load(root: str, fmt: str = "official", subset: str | None = None, on_error: str = "raise") -> list[EvalSample]:
    """Official: the three (or one, with ``subset``) track files; video-r1: ``eval_videommmu.json``."""
    base.check_format(fmt)
    base.check_subset(NAME, subset, SUBSETS)
    samples, problems = [], []
    if fmt == "official":
        for track in [subset] if subset else SUBSETS:
            recs = _split_records(base.read_json(_track_file(root, track)), track)
            got, bad = base.convert_records(NAME, recs, lambda r, i, t=track: [_official(r, t, root)], _id_of)
            samples += got
            problems += [(f"{track}/{i}", why) for i, why in bad]
    else:
        recs = base.read_json(os.path.join(root, "eval_videommmu.json"))
        samples, problems = base.convert_records(
            NAME, recs, lambda r, i: [s for s in [_video_r1(r, subset, root)]
                                      if subset is None or s.extra["track"] == subset], _id_of)
    return base.finish_load(NAME, samples, problems, on_error)


# ---------------------------------------------------------------- prompts
def build_prompt(sample: EvalSample, protocol: str = "video-r1") -> str:
    """``video-r1``: R1 template (no ``<image 1>``). ``official``: the fork's per-track prompt."""
    base.check_protocol(protocol)
    if protocol == "video-r1":
        q = sample.question.replace("<image 1>", "")
        return base.video_r1_prompt(dataclasses.replace(sample, question=q))
    options = "\n".join(sample.options)
    if sample.extra.get("track") != "Adaptation":
        return f"{sample.question}\n{options}{PERCEPTION_AND_COMPREHENSION_PROMPT}"
    if sample.problem_type == base.MC:
        return f"{PRE_PROMPT}{MCQ_PROMPT}{sample.question}\n{options}"
    return f"{PRE_PROMPT}{OPEN_ENDED_PROMPT}{sample.question}"


# ---------------------------------------------------------------- official parsers
def _last_of(candidates: list[str], response: str, pattern: str) -> str:
    """The candidate whose ``pattern`` occurs last (ties -> earliest candidate, like np.argmax)."""
    positions = [response.rfind(pattern.format(c)) for c in candidates]
    return candidates[positions.index(max(positions))]


def parse_multi_choice(response: str, index2ans: dict[str, str]) -> str:
    """The fork's ``parse_multi_choice_response``: a letter, ``API_ERROR`` or ``NO_ANSWER``."""
    if response in ("", API_ERROR):
        return API_ERROR
    for ch in [",", ".", "!", "?", ";", ":", "'"]:
        response = response.strip(ch)
    response = f" {response} "
    choices = list(index2ans)
    with_period = [c for c in choices if f"{c}." in response]
    with_colon = [c for c in choices if f"{c}:" in response]
    candidates = with_period + with_colon  # duplicates kept, as in the release
    with_brack = False
    if not candidates:
        candidates = [c for c in choices if f"({c})" in response]
        with_brack = bool(candidates)
    if not candidates:
        candidates = [c for c in choices if f"{c} " in response]
    by_content = False
    if not candidates and len(response.split()) > 5:
        candidates = [c for c, text in index2ans.items() if text.lower() in response.lower()]
        by_content = bool(candidates)
    if not candidates:
        return NO_ANSWER
    if len(candidates) == 1:
        return candidates[0]
    if by_content:
        low = response.lower()
        positions = [low.rfind(index2ans[c].lower()) for c in candidates]
        return candidates[positions.index(max(positions))]
    pattern = "{}." if with_period else "{}:" if with_colon else "({})" if with_brack else " {} "
    return _last_of(candidates, response, pattern)


_NUM_COMMAS = re.compile(r"-?\b\d{1,3}(?:,\d{3})+\b")
_NUM_SCI = re.compile(r"-?\d+(?:\.\d+)?[eE][+-]?\d+")
_NUM_SIMPLE = re.compile(r"-?(?:\d+\.\d+|\.\d+|\d+\b)(?![eE][+-]?\d+)(?![,\d])")
_KEY_INDICATORS = ["could be ", "so ", "is ", "thus ", "therefore ", "final ", "answer ", "result ", "are ",
                   "in total ", "total ", "identify ", "recognize ", "calculated as ", "counted as ",
                   "measured as ", "observed as ", "concluded as ", "found to be ", "equals ",
                   "determined to be ", "number of ", "value is ", "adds up to ", "have ", "has "]
_TRIVIAL = {":", ",", ".", "!", "?", ";", "'"}


def normalize_str(text: str) -> list:
    """MMMU ``normalize_str``: a number -> [round(float, 2)]; text -> lowercased (1 char padded)."""
    text = text.strip()
    if _is_number(text):
        return [round(float(text.replace(",", "")), 2)]
    text = text.lower()
    return [" " + text, text + " "] if len(text) == 1 else [text]


def _key_subresponses(response: str) -> list[str]:
    response = response.strip().strip(".").lower()
    # The split's (?=[A-Z]) never fires after lower(): only newlines split (release behaviour).
    parts = re.split(r"\.\s(?=[A-Z])|\n", response)
    keys = []
    for index, part in enumerate(parts):
        indicators = _KEY_INDICATORS + (["="] if index == len(parts) - 1 else [])
        shortest = None
        for ind in indicators:
            if ind in part:
                tail = part.split(ind)[-1].strip()
                if not shortest or len(tail) < len(shortest):
                    shortest = tail
        if shortest and shortest.strip() not in _TRIVIAL:
            keys.append(shortest)
    return keys or [response]


def parse_open_response(response: str):
    """MMMU ``parse_open_response``: list of normalised candidates, or ``API_ERROR`` when empty."""
    if response in ("", API_ERROR):
        return API_ERROR
    keys = _key_subresponses(response)
    preds = list(keys)
    for k in keys:
        preds += _NUM_COMMAS.findall(k) + _NUM_SCI.findall(k) + _NUM_SIMPLE.findall(k)
    out = []
    for p in preds:
        out.extend(normalize_str(p))
    return list(dict.fromkeys(out))  # the release uses set(); order does not affect eval_open


def eval_open(gold: str, preds: list) -> bool:
    """MMMU ``eval_open``: a float equal to a gold float, or a gold string inside a pred string."""
    golds = normalize_str(gold)
    for p in preds:
        if isinstance(p, str):
            if any(isinstance(g, str) and g in p for g in golds):
                return True
        elif p in golds:
            return True
    return False


def official_score(prediction: str, sample: EvalSample) -> float | None:
    from r1v.answers import extract_answer

    response = extract_answer(prediction)
    if sample.extra.get("question_type") == "multiple-choice" or sample.problem_type == base.MC:
        parsed = parse_multi_choice(response, base.option_map(sample))
        return None if parsed == API_ERROR else float(parsed == sample.answer)
    preds = parse_open_response(response)
    return None if preds == API_ERROR else float(eval_open(sample.answer, preds))


def score(prediction: str, sample: EvalSample, protocol: str = "video-r1", judge=None) -> float | None:
    """1.0/0.0; ``official`` returns None for an empty answer (the release's dropped "API Error")."""
    base.check_protocol(protocol)
    if protocol == "video-r1":
        return base.video_r1_score(prediction, sample)
    return official_score(prediction, sample)


def aggregate(rows: list[dict], protocol: str = "video-r1") -> dict:
    """Micro accuracy (0-100) over scored items with track / discipline / subject breakdowns."""
    base.check_protocol(protocol)
    return base.micro_aggregate(rows, GROUPS)
