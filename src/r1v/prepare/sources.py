"""Converters from each release's annotation format to the Video-R1 record schema (``r1v.data``).

Release formats (read from the releases' own repositories and dataset cards):

* **Video-R1** (``tulerfeng/Video-R1``; HF ``Video-R1/Video-R1-data``): ``Video-R1-260k.json``
  (RL) and ``Video-R1-COT-165k.json`` (SFT) are JSON lists already in the schema used here:
  ``problem_id`` (int), ``problem``, ``data_type`` ("video" | "image"), ``problem_type``,
  ``options`` (["A. ...", ...]), ``process`` (COT file only, ``<think>...</think>``),
  ``solution`` (``<answer>X</answer>``), ``path`` (``./<folder>/...`` under the data folder,
  e.g. ``./LLaVA-Video-178K/...``, ``./Math/...``) and ``data_source``. Converted as is; only
  ids and paths are rewritten.
* **Video-Holmes** (``TencentARC/Video-Holmes``; HF ``TencentARC/Video-Holmes``):
  ``train_Video-Holmes.json`` (233 films, 1,551 questions) has the layout of the test file:
  a JSON list of ``{"video ID", "Question ID", "Question Type", "Question", "Options":
  {"A": ..., ... "F": ...}, "Answer": "A", "Explanation"}``; videos are
  ``<root>/videos/<video ID>.mp4`` (``--video-dir`` for another folder, e.g. lmms-eval's
  ``videos_cropped``). Original id ``<video ID>_<Question ID>`` (as ``eval.benchmarks.videoholmes``).
* **Video-Thinker** (``shijian2001/Video-Thinker``, Video-Thinker-10K): its trainer descends
  from the R1-V / Video-R1 code base, whose records are the Video-R1 schema above (the
  structured trace with ``<time>``/``<caption>``/``<think>`` tags lives in ``process``). The
  release's RL file could not be inspected here, so the converter accepts that shape and,
  for question-answer files, ``{"id", "video"|"video_path"|"path", "question", "options"
  (list or {letter: text}), "answer"}``; any other shape is an error naming the item.

A converter yields ``Converted(key, record, media)``; ``convert`` resolves media, rewrites ids
(``problem_id = "<source>:<key>"``, ``original_id = key``) and paths, and validates.
"""
from __future__ import annotations

import logging
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from tqdm import tqdm

from r1v.data import validate_record
from r1v.jsonl import write_jsonl_atomic
from r1v.prepare.common import (
    MissingMediaError, PrepareReport, check_on_missing, is_done, item_keys, read_items,
    relative_media_path, report_path,
)

logger = logging.getLogger(__name__)

LETTERS = string.ascii_uppercase
DUPLICATE_IDS = ("error", "rename")
SCHEMA_KEYS = ("problem", "data_type", "problem_type", "options", "solution")


@dataclass
class Converted:
    """One release item in the schema: ``record`` lacks ids and ``path``; ``media`` is release-relative."""

    key: str
    record: dict
    media: str


def _text(value, what: str) -> str:
    """``value`` as a question / answer / option text: a non-empty string (a number is written out).

    null, a dict or a list is an error: ``str()`` would turn them into "None" or a repr that then
    passes every later check as if it were the release's text.
    """
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{what} must be a non-empty string, got {value!r:.80}")
    return value


def _ident(value, what: str) -> str:
    """An id as a string: a non-empty string or an integer (null would become the id "None")."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{what} must be a non-empty string or an integer, got {value!r:.80}")
    return value


def _require(item: dict, *keys: str) -> None:
    missing = [k for k in keys if k not in item]
    if missing:
        raise ValueError(f"missing field(s) {missing}; has {sorted(item)}")


def _schema_record(item: dict, default_source: str) -> Converted:
    """A record already in the Video-R1 schema: every field kept, ``path`` moved to ``media``."""
    _require(item, "problem_id", "path", *SCHEMA_KEYS)
    record = {k: v for k, v in item.items() if k not in ("problem_id", "path", "original_id")}
    record["options"] = [_text(o, f"options[{i}]") for i, o in enumerate(item.get("options") or [])]
    record["problem"] = _text(item["problem"], "problem")
    record.setdefault("data_source", default_source)
    return Converted(_ident(item["problem_id"], "problem_id"), record, _text(item["path"], "path"))


def video_r1_items(items: list, video_dir: str = "") -> Iterator[Converted]:
    """Video-R1-260k / COT-165k items (see the module docstring)."""
    for item in items:
        yield _schema_record(item, "Video-R1")


def video_holmes_items(items: list, video_dir: str = "videos") -> Iterator[Converted]:
    """``train_Video-Holmes.json`` items -> 6-way multiple choice on ``<video_dir>/<video ID>.mp4``."""
    for item in items:
        _require(item, "video ID", "Question ID", "Question", "Options", "Answer")
        options = item["Options"]
        if not isinstance(options, dict) or list(options) != list(LETTERS[:len(options)]) or len(options) < 2:
            raise ValueError(f"Options must be a dict keyed A, B, ...; got {options!r}")
        if item["Answer"] not in options:
            raise ValueError(f"Answer {item['Answer']!r} is not an option key {list(options)}")
        record = {
            "problem": _text(item["Question"], "Question"), "data_type": "video", "problem_type": "multiple choice",
            "options": [f"{k}. {_text(v, f'Options[{k!r}]')}" for k, v in options.items()],
            "solution": f"<answer>{item['Answer']}</answer>", "data_source": "Video-Holmes",
        }
        if item.get("Question Type"):
            record["question_type"] = item["Question Type"]
        video = _ident(item["video ID"], "video ID")
        media = f"{video_dir}/{video}.mp4" if video_dir else f"{video}.mp4"
        yield Converted(f"{video}_{_ident(item['Question ID'], 'Question ID')}", record, media)


def _first(item: dict, names: tuple[str, ...], what: str):
    for name in names:
        if item.get(name) not in (None, ""):
            return item[name]
    raise ValueError(f"no {what} field (looked for {list(names)}); has {sorted(item)}")


def _letter_answer(answer: str, options: list[str]) -> str:
    """The option letter of ``answer``: a letter, ``"B. text"``, ``"(B)"`` or the option text itself."""
    text = answer.strip().strip("()").strip()
    n = len(options)
    if len(text) == 1 and text.upper() in LETTERS[:n]:
        return text.upper()
    if len(text) > 2 and text[0].upper() in LETTERS[:n] and text[1] in ".):":
        return text[0].upper()
    bare = [o.split(". ", 1)[1] if len(o) > 3 and o[1:3] == ". " else o for o in options]
    if answer.strip() in bare:
        return LETTERS[bare.index(answer.strip())]
    raise ValueError(f"answer {answer!r} matches no option of {options!r}")


def _qa_record(item: dict, index: int) -> Converted:
    """A question-answer item (Video-Thinker's QA shape) -> multiple choice or free-form."""
    media = _text(_first(item, ("video", "video_path", "path"), "video"), "video")
    question = _text(_first(item, ("question", "problem"), "question"), "question")
    answer = _text(_first(item, ("answer", "solution"), "answer"), "answer")
    raw = item.get("options") or []
    if isinstance(raw, dict):
        options = [f"{k}. {_text(v, f'options[{k!r}]')}" for k, v in raw.items()]
    elif isinstance(raw, list):
        texts = [_text(o, f"options[{i}]") for i, o in enumerate(raw)]
        options = [o if len(o) > 2 and o[0] in LETTERS and o[1:3] == ". " else f"{LETTERS[i]}. {o}"
                   for i, o in enumerate(texts)]
    else:
        raise ValueError(f"options must be a list or a dict, got {type(raw).__name__}")
    record = {"problem": question, "data_type": "video",
              "problem_type": "multiple choice" if options else "free-form", "options": options,
              "solution": f"<answer>{_letter_answer(answer, options) if options else answer}</answer>",
              "data_source": str(item.get("data_source") or item.get("source") or "Video-Thinker")}
    if item.get("process"):
        record["process"] = item["process"]
    names = [n for n in ("id", "qid", "question_id") if n in item]
    key = _ident(item[names[0]], names[0]) if names else str(index)  # no id field: the item's position
    return Converted(key, record, media)


def video_thinker_items(items: list, video_dir: str = "") -> Iterator[Converted]:
    """Video-Thinker RL items in either shape of the module docstring."""
    for index, item in enumerate(items):
        if isinstance(item, dict) and "problem" in item and "solution" in item:
            yield _schema_record(item, "Video-Thinker")
        else:
            yield _qa_record(item, index)


# subcommand -> (source name used in ids and mixtures, item converter, default video folder)
CONVERTERS: dict[str, tuple[str, Callable[..., Iterator[Converted]], str]] = {
    "video-r1": ("video_r1", video_r1_items, ""),
    "video-thinker": ("video_thinker", video_thinker_items, ""),
    "video-holmes": ("video_holmes", video_holmes_items, "videos"),
}


def _convert_all(items: list, convert: Callable, video_dir: str, src: Path) -> list[Converted]:
    out = []
    iterator = convert(items, video_dir)
    for index in tqdm(range(len(items)), desc=f"convert {src.name}", unit="item"):
        item = items[index]
        if not isinstance(item, dict):
            raise ValueError(f"{src}[item {index}]: expected a JSON object, got {type(item).__name__}")
        try:
            out.append(next(iterator))
        except (ValueError, TypeError, AttributeError) as exc:
            raise ValueError(f"{src}[item {index}]: {exc}") from exc
    return out


def _unique_keys(converted: list[Converted], src: Path, duplicate_ids: str, report: PrepareReport) -> list[str]:
    """The items' keys; a repeated id is an error listing them (``duplicate_ids="error"``), or with
    ``"rename"`` gets ``#k`` (``item_keys``), logged and listed in the report's notes."""
    if duplicate_ids not in DUPLICATE_IDS:
        raise ValueError(f"duplicate_ids must be one of {DUPLICATE_IDS}, got {duplicate_ids!r}")
    where: dict[str, list[int]] = {}
    for i, c in enumerate(converted):
        where.setdefault(c.key, []).append(i)
    repeated = {k: v for k, v in where.items() if len(v) > 1}
    if repeated and duplicate_ids == "error":
        shown = "; ".join(f"{k!r} at items {v}" for k, v in list(repeated.items())[:20])
        raise ValueError(f"{src}: {len(repeated)} id(s) repeated: {shown} (pass --duplicate-ids rename to "
                         f"keep them all as <id>#1, <id>#2, ...)")
    if repeated:
        logger.warning("%s: %d repeated id(s) renamed <id>#k: %s", src, len(repeated), sorted(repeated)[:20])
        report.notes["renamed_duplicate_ids"] = sorted(repeated)
    return item_keys([{"original_id": c.key} for c in converted])


def _check_inside(converted: list[Converted], keys: list[str], root: Path, src: Path) -> None:
    """Every media path must resolve (symlinks and ``..`` followed) inside the release folder ``root``:
    anything else is not the release's file and is refused, listing the items."""
    base = root.resolve()
    outside = []
    for item, key in zip(converted, keys):
        media = Path(item.media)
        resolved = (media if media.is_absolute() else root / media).resolve()
        if not resolved.is_relative_to(base):
            outside.append(f"{key}: {item.media} -> {resolved}")
    if outside:
        more = f" (+{len(outside) - 20} more)" if len(outside) > 20 else ""
        raise ValueError(f"{src}: {len(outside)} media path(s) resolve outside the release folder {base}: "
                         + "; ".join(outside[:20]) + more)


def convert(subcommand: str, src, out, media_root=None, on_missing: str = "error",
            video_dir: str | None = None, force: bool = False, duplicate_ids: str = "error") -> PrepareReport:
    """Convert release file ``src`` to schema JSONL ``out`` (paths relative to ``out``'s folder).

    media_root: where the release's media paths resolve (default: ``src``'s folder); a media path
    resolving outside it (``..``, a symlink, an absolute path) is refused. An empty release, a
    release with no writable record, and repeated ids (unless ``duplicate_ids="rename"``) are
    errors. A finished output (``out`` and its ``.report.json``) is kept unless ``force``.
    Missing media raise MissingMediaError (the report is still written) or, with
    ``on_missing="skip"``, are left out and listed in the report.
    """
    if subcommand not in CONVERTERS:
        raise ValueError(f"unknown source {subcommand!r}; expected one of {sorted(CONVERTERS)}")
    check_on_missing(on_missing)
    src, out = Path(src), Path(out)
    if not force and is_done(out, report_path(out)):
        logger.info("%s already converted (%s); pass --force to redo", src, out)
        return PrepareReport(step=subcommand, inputs=[str(src)], output=str(out), notes={"skipped": "done"})
    source, fn, default_dir = CONVERTERS[subcommand]
    root = Path(media_root) if media_root is not None else src.parent
    items = read_items(src)
    if not items:
        raise ValueError(f"{src}: the release holds no items; nothing to convert")
    converted = _convert_all(items, fn, default_dir if video_dir is None else video_dir, src)
    report = PrepareReport(step=subcommand, inputs=[str(src)], output=str(out), n_read=len(items),
                           notes={"source": source, "media_root": str(root)})
    keys = _unique_keys(converted, src, duplicate_ids, report)
    _check_inside(converted, keys, root, src)
    records = []
    for item, key in zip(converted, keys):
        media = Path(item.media)
        media = media if media.is_absolute() else root / media
        if not media.is_file():
            report.missing_media.append({"id": key, "path": str(media)})
            continue
        record = {"problem_id": f"{source}:{key}", "original_id": key, **item.record,
                  "path": relative_media_path(media, out)}
        try:
            validate_record(record)
        except ValueError as exc:
            raise ValueError(f"{src} (original id {key!r}): {exc}") from exc
        records.append(record)
    if report.missing_media and on_missing == "error":
        report.save(report_path(out))
        raise MissingMediaError(str(src), [(m["id"], m["path"]) for m in report.missing_media])
    if not records:
        raise ValueError(f"{src}: no record to write ({len(report.missing_media)} of {len(items)} items have "
                         f"missing media)")
    report.n_written = write_jsonl_atomic(records, out)
    report.save(report_path(out))
    logger.info(report.summary())
    return report
