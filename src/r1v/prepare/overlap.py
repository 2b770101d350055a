"""Train/eval overlap check: drop training items whose video or question appears in an eval set.

The check matches against plain evaluation items (``EvalItem``: a label, a media path, a
question), grouped in named sets. An evaluation set is given as ``PATH`` or
``NAME[:SUBSET]=PATH`` and turned into items by a loader (``EvalSetLoader``):

* a bare ``PATH`` is read here (``load_plain_eval_set``): a JSON list or JSONL whose items
  name their video by ``path``, ``video``, ``video_path``, ``video ID``, ``video_id`` or
  ``video_name`` and their question by ``problem``, ``question`` or ``Question``;
* ``NAME`` a benchmark (``videoholmes``, ``mmvu``, ...): only the benchmark modules know their
  official formats, and they live in the evaluation package, which depends on this one and
  not the other way round; ``eval.registry.load_eval_set`` reads both kinds of spec, and the
  ``python -m r1v.prepare`` command passes it in.

A training item is removed (first rule that matches, recorded as its ``reason``):

* ``video``: its media file stem (file name without extension; a YouTube id for Video-Holmes)
  equals the stem of an eval item's video. Case is kept: YouTube ids are case-sensitive. A
  shared stem usually is the same clip (CLEVRER and Perception Test clips reappear in MVBench);
  a short generic stem (``1``) could also collide by chance, so read the report's matches.
* ``content``: its media file has the same bytes (SHA-256) as an eval media file present on
  disk. Only files of equal size are hashed, which keeps the check cheap.
* ``question``: its normalised question (lower case, runs of non-alphanumerics -> one space)
  equals an eval item's, for questions of at least ``min_question_words`` words.
"""
from __future__ import annotations

import hashlib
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from tqdm import tqdm

from r1v.prepare.common import read_items

logger = logging.getLogger(__name__)

MEDIA_FIELDS = ("path", "video", "video_path", "video ID", "video_id", "video_name")
QUESTION_FIELDS = ("problem", "question", "Question")
_NON_ALNUM = re.compile(r"[^0-9a-z]+")
_HASH_CHUNK = 1 << 20


def normalise_question(text: str) -> str:
    """Lower case, every run of non-alphanumeric characters -> one space, stripped."""
    return _NON_ALNUM.sub(" ", str(text).lower()).strip()


def media_stem(path: str) -> str:
    """File name without its last extension (``a/b/fH6bbNJJfqk.mp4`` -> ``fH6bbNJJfqk``)."""
    return Path(str(path).rstrip("/")).stem


@dataclass
class EvalItem:
    """One evaluation item as the check sees it: no benchmark format, just what can overlap."""

    label: str  # "<set>:<item id>"
    media: str | None
    question: str


@dataclass
class EvalIndex:
    """Lookup tables over all evaluation items."""

    stems: dict[str, str] = field(default_factory=dict)
    questions: dict[str, str] = field(default_factory=dict)
    by_size: dict[int, list[tuple[str, str]]] = field(default_factory=dict)  # size -> [(file, label)]
    n_items: int = 0
    sets: list[str] = field(default_factory=list)


EvalSetLoader = Callable[[str], tuple[str, list[EvalItem]]]  # spec -> (set name, items)


def parse_spec(spec: str) -> tuple[str | None, str | None, Path]:
    """(benchmark name or None, subset or None, path) of a ``PATH`` / ``NAME[:SUBSET]=PATH`` spec."""
    name, sep, path = spec.partition("=")
    if not sep:
        return None, None, Path(spec)
    bench, _, subset = name.partition(":")
    return bench, subset or None, Path(path)


def plain_eval_items(items: list, set_name: str, where: Path) -> list[EvalItem]:
    """Eval items of a generic JSON/JSONL file's ``items`` (fields found by name, see the module docstring)."""
    out = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise ValueError(f"{where}[item {i}]: expected a JSON object, got {type(item).__name__}")
        media = next((str(item[k]) for k in MEDIA_FIELDS if item.get(k)), None)
        question = next((str(item[k]) for k in QUESTION_FIELDS if item.get(k)), None)
        if media is None and question is None:
            raise ValueError(f"{where}[item {i}]: no video ({list(MEDIA_FIELDS)}) or question "
                             f"({list(QUESTION_FIELDS)}) field; has {sorted(item)}")
        if media is not None and not os.path.isabs(media) and "/" in media:
            media = str(where.parent / media)
        item_id = item.get("problem_id", item.get("id", i))
        out.append(EvalItem(f"{set_name}:{item_id}", media, question or ""))
    return out


def load_plain_eval_set(spec: str) -> tuple[str, list[EvalItem]]:
    """(file name, items) of a bare ``PATH`` spec; a ``NAME=PATH`` spec is refused (it needs the
    benchmark's reader, ``eval.registry.load_eval_set``). Errors name the file."""
    bench, _, path = parse_spec(spec)
    if bench is not None:
        raise ValueError(f"eval set {spec!r}: benchmark {bench!r} needs the benchmark loader "
                         "(eval.registry.load_eval_set); this loader reads bare JSON/JSONL paths only")
    return path.name, plain_eval_items(read_items(path), path.name, path)


def build_index(specs: list[str], load: EvalSetLoader = load_plain_eval_set) -> EvalIndex:
    """Index every eval item of ``specs`` (each read by ``load``) by video stem, normalised question
    and media size."""
    index = EvalIndex()
    for spec in specs:
        name, items = load(spec)
        index.sets.append(name)
        index.n_items += len(items)
        for item in items:
            if item.media:
                index.stems.setdefault(media_stem(item.media), item.label)
                if os.path.isfile(item.media):
                    index.by_size.setdefault(os.path.getsize(item.media), []).append((item.media, item.label))
            if item.question:
                index.questions.setdefault(normalise_question(item.question), item.label)
        logger.info("eval set %s: %d items", name, len(items))
    return index


class _Hasher:
    """SHA-256 of files, computed once each."""

    def __init__(self):
        self.cache: dict[str, str] = {}

    def __call__(self, path: str) -> str:
        key = os.path.abspath(path)
        if key not in self.cache:
            digest = hashlib.sha256()
            with open(key, "rb") as fh:
                for chunk in iter(lambda: fh.read(_HASH_CHUNK), b""):
                    digest.update(chunk)
            self.cache[key] = digest.hexdigest()
        return self.cache[key]


def _match(rec: dict, index: EvalIndex, hasher: _Hasher, content_hash: bool,
           min_question_words: int) -> tuple[str, str] | None:
    media = rec.get("path", "")
    label = index.stems.get(media_stem(media)) if media else None
    if label:
        return "video", label
    if content_hash and media and os.path.isfile(media):
        for other, label in index.by_size.get(os.path.getsize(media), []):
            if hasher(media) == hasher(other):
                return "content", label
    question = normalise_question(rec.get("problem", ""))
    if question and len(question.split()) >= min_question_words and question in index.questions:
        return "question", index.questions[question]
    return None


def filter_overlap(records: list[dict], index: EvalIndex, content_hash: bool = True,
                   min_question_words: int = 1, source: str = "") -> tuple[list[dict], list[dict]]:
    """Split ``records`` (absolute ``path``) into (kept, removed); removed rows name the match.

    Each removed row: ``{"source", "problem_id", "original_id", "path", "reason", "match"}``
    with ``reason`` in {"video", "content", "question"} and ``match`` the eval item label.
    """
    hasher = _Hasher()
    kept, removed = [], []
    for rec in tqdm(records, desc=f"overlap {source}".strip(), unit="item", disable=not records):
        hit = _match(rec, index, hasher, content_hash, min_question_words)
        if hit is None:
            kept.append(rec)
            continue
        removed.append({"source": source, "problem_id": rec.get("problem_id"),
                        "original_id": rec.get("original_id", rec.get("problem_id")),
                        "path": rec.get("rel_path", rec.get("path")), "reason": hit[0], "match": hit[1]})
    if removed:
        logger.warning("%s: removed %d of %d item(s) overlapping the eval sets %s",
                       source or "data", len(removed), len(records), index.sets)
    return kept, removed
