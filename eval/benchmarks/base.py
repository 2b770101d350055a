"""Shared pieces of the eight benchmark modules.

Every benchmark module (``eval/benchmarks/<name>.py``) exposes the same
module-level names, described by :class:`Benchmark`:

- ``NAME``, ``SUBSETS``
- ``load(root, fmt="official", subset=None, on_error="raise") -> list[EvalSample]``
- ``load_records(records, fmt="official", subset=None, root=None) -> list[EvalSample]``
- ``build_prompt(sample, protocol="video-r1") -> str``
- ``score(prediction, sample, protocol="video-r1", judge=None) -> float | None``
- ``aggregate(rows, protocol="video-r1") -> dict``

Two protocols exist everywhere (BENCHMARKS.md §0):

- ``"video-r1"`` (default): one R1 reasoning prompt (``r1v.prompts``), the
  first ``<answer>`` content (Video-R1's ``re.search``), exact option letter /
  Video-R1 numeric and MRA rules (``r1v.rewards.ACCURACY_BY_TYPE``), micro accuracy.
- ``"official"``: each benchmark's own rule-based scorer, quirk for quirk.
  LLM-judged parts go through ``judge`` (``eval.judge.OpenAIJudge``); without
  one the item scores ``None`` (reported as unjudged, never guessed).

Loading problems (malformed record, missing video) are collected and reported
by item id: ``on_error="raise"`` raises :class:`LoadError` listing them all,
``"skip"`` logs them and drops the items, ``"keep"`` logs them and keeps
items whose only problem is a missing video with ``media_path=None``.
"""
from __future__ import annotations

import json
import logging
import os
import string
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Protocol

logger = logging.getLogger(__name__)

PROTOCOLS = ("video-r1", "official")
FORMATS = ("official", "video-r1")
ON_ERROR = ("raise", "skip", "keep")
LETTERS = string.ascii_uppercase
MC = "multiple choice"


@dataclass
class EvalSample:
    """One benchmark item, normalised across benchmarks and source formats."""

    id: str
    benchmark: str
    media_path: str | None
    data_type: str
    question: str
    options: list[str]
    answer: str
    problem_type: str
    categories: dict[str, str] = field(default_factory=dict)
    extra: dict = field(default_factory=dict)


class Benchmark(Protocol):
    """The module-level interface every benchmark module provides."""

    NAME: str
    SUBSETS: list[str] | None

    def load(self, root: str, fmt: str = "official", subset: str | None = None,
             on_error: str = "raise") -> list[EvalSample]: ...

    def load_records(self, records: list[dict], fmt: str = "official", subset: str | None = None,
                     root: str | None = None) -> list[EvalSample]: ...

    def build_prompt(self, sample: EvalSample, protocol: str = "video-r1") -> str: ...

    def score(self, prediction: str, sample: EvalSample, protocol: str = "video-r1",
              judge=None) -> float | None: ...

    def aggregate(self, rows: list[dict], protocol: str = "video-r1") -> dict: ...


class LoadError(ValueError):
    """Raised when records cannot be turned into samples; ``problems`` is [(item_id, reason)]."""

    def __init__(self, benchmark: str, problems: list[tuple[str, str]]):
        self.benchmark = benchmark
        self.problems = problems
        shown = "; ".join(f"{i}: {r}" for i, r in problems[:20])
        more = f" (+{len(problems) - 20} more)" if len(problems) > 20 else ""
        super().__init__(f"{benchmark}: {len(problems)} bad item(s): {shown}{more}")


# ---------------------------------------------------------------- checks
def check_protocol(protocol: str) -> None:
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; expected one of {PROTOCOLS}")


def check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; expected one of {FORMATS}")


def check_subset(benchmark: str, subset: str | None, subsets: list[str] | None) -> None:
    if subset is not None and (subsets is None or subset not in subsets):
        raise ValueError(f"{benchmark}: unknown subset {subset!r}; known: {subsets}")


# ---------------------------------------------------------------- options
def letter(index: int) -> str:
    """0 -> "A", 1 -> "B", ..."""
    return LETTERS[index]


def render_options(texts: Iterable[str], sep: str = ". ") -> list[str]:
    """["red", "blue"] -> ["A. red", "B. blue"]."""
    return [f"{letter(i)}{sep}{t}" for i, t in enumerate(texts)]


def option_text(option: str) -> str:
    """"A. red" -> "red" (the rendered letter prefix removed; other text unchanged)."""
    if len(option) >= 3 and option[0] in LETTERS and option[1] == "." and option[2] == " ":
        return option[3:]
    return option


def option_map(sample: EvalSample) -> dict[str, str]:
    """{"A": "red", ...} from the rendered options of a sample."""
    return {letter(i): option_text(o) for i, o in enumerate(sample.options)}


# ---------------------------------------------------------------- files
def read_json(path: str) -> Any:
    with open(path, encoding="utf-8") as fh:
        try:
            return json.load(fh)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: invalid JSON ({exc})") from exc


def read_jsonl(path: str) -> list[dict]:
    rows = []
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{n}: invalid JSON line ({exc})") from exc
    return rows


def resolve_media(path: str | None, root: str | None) -> str | None:
    """Absolute path of a media file: absolute paths are kept, relative ones join ``root``.

    Without ``root`` a relative path is returned unchanged (in-memory records).
    """
    if not path:
        return None
    if os.path.isabs(path) or root is None:
        return path
    return os.path.abspath(os.path.join(root, path))


# ---------------------------------------------------------------- conversion
ConvertFn = Callable[[dict, int], list[EvalSample]]


def convert_records(benchmark: str, records: Iterable[dict], convert: ConvertFn,
                    id_of: Callable[[dict, int], str]) -> tuple[list[EvalSample], list[tuple[str, str]]]:
    """Apply ``convert(record, index)`` to each record; collect malformed ones by id.

    A record is malformed when its conversion raises KeyError/TypeError/ValueError/
    AttributeError/IndexError (missing field, wrong type, bad letter ...). Such
    errors are turned into ``(item_id, reason)`` problems, never ignored.
    """
    samples: list[EvalSample] = []
    problems: list[tuple[str, str]] = []
    for i, rec in enumerate(records):
        try:
            if not isinstance(rec, dict):
                raise TypeError(f"record is {type(rec).__name__}, not a dict")
            samples.extend(convert(rec, i))
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
            rid = _safe_id(id_of, rec, i)
            problems.append((rid, f"malformed record: {type(exc).__name__}: {exc}"))
    return samples, problems


def _safe_id(id_of: Callable[[dict, int], str], rec: Any, i: int) -> str:
    if isinstance(rec, dict):
        try:
            return str(id_of(rec, i))
        except (KeyError, TypeError, ValueError, IndexError):
            pass  # the id itself is what is missing: fall back to the position below
    return f"record#{i}"


def records_or_raise(benchmark: str, records: Iterable[dict], convert: ConvertFn,
                     id_of: Callable[[dict, int], str]) -> list[EvalSample]:
    """``convert_records`` that raises :class:`LoadError` listing every malformed record."""
    samples, problems = convert_records(benchmark, records, convert, id_of)
    if problems:
        raise LoadError(benchmark, problems)
    return samples


def finish_load(benchmark: str, samples: list[EvalSample], problems: list[tuple[str, str]],
                on_error: str) -> list[EvalSample]:
    """Check media files exist, then apply the ``on_error`` policy to all problems."""
    if on_error not in ON_ERROR:
        raise ValueError(f"on_error must be one of {ON_ERROR}, got {on_error!r}")
    missing = []
    for s in samples:
        if not media_exists(s):
            missing.append(s)
            problems.append((s.id, f"missing {s.data_type} file: {s.media_path}"))
    if problems and on_error == "raise":
        raise LoadError(benchmark, problems)
    if problems:
        logger.warning("%s: %d problem(s) at load: %s", benchmark, len(problems),
                       "; ".join(f"{i}: {r}" for i, r in problems))
    if on_error == "skip":
        bad = {id(s) for s in missing}
        return [s for s in samples if id(s) not in bad]
    for s in missing:
        s.media_path = None
    return samples


def media_exists(sample: EvalSample) -> bool:
    """A file, or a folder for samples whose ``extra["media_kind"]`` is ``"frames"``."""
    if sample.media_path is None:
        return False
    if sample.extra.get("media_kind") == "frames":
        return os.path.isdir(sample.media_path)
    return os.path.isfile(sample.media_path)


def check_unique_ids(benchmark: str, samples: list[EvalSample]) -> None:
    seen: set[str] = set()
    dups = []
    for s in samples:
        if s.id in seen:
            dups.append(s.id)
        seen.add(s.id)
    if dups:
        raise LoadError(benchmark, [(d, "duplicate id") for d in dups])


# ---------------------------------------------------------------- Video-R1 records
def video_r1_id(rec: dict, i: int) -> str:
    return str(rec["problem_id"])


def video_r1_sample(benchmark: str, rec: dict, root: str | None,
                    categories: dict[str, str] | None = None, extra: dict | None = None) -> EvalSample:
    """One Video-R1-eval record (contract 1 schema) -> EvalSample.

    The gold answer is the content of the record's ``<answer>`` tag.
    """
    from r1v.answers import extract_answer  # the project's one answer parser

    for key in ("problem_id", "problem", "problem_type", "solution", "path"):
        if key not in rec:
            raise KeyError(key)
    options = rec.get("options") or []
    if not isinstance(options, list) or not all(isinstance(o, str) for o in options):
        raise TypeError("options must be a list of strings or null")
    answer = extract_answer(str(rec["solution"]))
    if not answer:
        raise ValueError(f"empty gold answer in solution {rec['solution']!r}")
    return EvalSample(
        id=str(rec["problem_id"]), benchmark=benchmark,
        media_path=resolve_media(rec["path"], root), data_type=rec.get("data_type", "video"),
        question=str(rec["problem"]), options=list(options), answer=answer,
        problem_type=str(rec["problem_type"]), categories=dict(categories or {}),
        extra={"format": "video-r1", **(extra or {})})


# ---------------------------------------------------------------- Video-R1 protocol
def video_r1_prompt(sample: EvalSample) -> str:
    """The Video-R1 eval prompt: R1 template + per-problem-type suffix (r1v.prompts)."""
    from r1v.prompts import build_prompt_text

    return build_prompt_text({"problem": sample.question, "options": sample.options,
                              "problem_type": sample.problem_type})


def video_r1_score(prediction: str, sample: EvalSample) -> float:
    """Video-R1 scoring: the reward's per-type accuracy rule on the FIRST ``<answer>`` content.

    Video-R1's ``eval_bench.py`` reads the answer with ``re.search`` (first tag pair), so an
    output with several answer tags is scored on its first one (whole output without a tag).
    """
    from r1v.answers import extract_answer
    from r1v.rewards import ACCURACY_BY_TYPE

    rule = ACCURACY_BY_TYPE.get(sample.problem_type)
    if rule is None:
        raise ValueError(f"{sample.id}: unknown problem_type {sample.problem_type!r}; "
                         f"expected one of {list(ACCURACY_BY_TYPE)}")
    return float(rule(extract_answer(prediction, occurrence="first"), sample.answer))


# ---------------------------------------------------------------- aggregation
def mean_pct(values: list[float]) -> float:
    """Mean ×100 (0.0 for an empty list, so empty groups never crash a report)."""
    return 100.0 * sum(values) / len(values) if values else 0.0


def judged(rows: list[dict]) -> list[dict]:
    return [r for r in rows if r.get("score") is not None]


def group_scores(rows: list[dict], group: str) -> dict[str, list[float]]:
    """{category value: [scores]} over judged rows having ``categories[group]``."""
    out: dict[str, list[float]] = {}
    for r in judged(rows):
        value = (r.get("categories") or {}).get(group)
        if value is not None:
            out.setdefault(str(value), []).append(float(r["score"]))
    return out


def breakdown(rows: list[dict], groups: Iterable[str]) -> dict[str, dict[str, float]]:
    """{group: {value: accuracy 0-100}} for each requested group present in the rows."""
    out = {}
    for g in groups:
        scores = group_scores(rows, g)
        if scores:
            out[g] = {v: mean_pct(s) for v, s in sorted(scores.items())}
    return out


def micro_aggregate(rows: list[dict], groups: Iterable[str]) -> dict:
    """Micro accuracy over judged rows plus per-group breakdowns."""
    ok = judged(rows)
    return {"overall": mean_pct([float(r["score"]) for r in ok]), "n": len(ok),
            "n_unjudged": len(rows) - len(ok), "categories": breakdown(rows, groups)}
