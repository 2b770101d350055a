"""Evaluation sets for the train/eval overlap check (``r1v.prepare.overlap``), read by the benchmarks.

``r1v.prepare.overlap`` matches training items against plain ``EvalItem`` s (label, media,
question) and reads bare JSON/JSONL paths itself; the official annotation formats are known
only to the benchmark modules here, so this module turns a ``NAME[:SUBSET]=PATH`` spec into
items. The dependency points down: evaluation uses the core package, never the reverse.

A ``NAME=PATH`` spec: ``NAME`` a benchmark of ``eval.registry`` (``videoholmes``, ``mmvu``, ...),
``PATH`` one of its annotation files (official or Video-R1-eval format, told apart by
``problem_id``), read by that benchmark's own ``load_records`` (``SUBSET`` where the benchmark
needs one).
"""
from __future__ import annotations

from eval.registry import get_benchmark
from r1v.prepare.common import read_items
from r1v.prepare.overlap import EvalItem, load_plain_eval_set, parse_spec


def load_eval_set(spec: str) -> tuple[str, list[EvalItem]]:
    """(set name, items) of a ``PATH`` or ``NAME[:SUBSET]=PATH`` spec (an ``EvalSetLoader``);
    ValueError / FileNotFoundError name the file."""
    bench, subset, path = parse_spec(spec)
    if bench is None:
        return load_plain_eval_set(spec)
    module = get_benchmark(bench)
    items = read_items(path)
    fmt = "video-r1" if items and isinstance(items[0], dict) and "problem_id" in items[0] else "official"
    try:
        samples = module.load_records(items, fmt=fmt, subset=subset, root=str(path.parent))
    except ValueError as exc:
        raise ValueError(f"{path}: cannot read as {bench} ({fmt} format): {exc}") from exc
    name = bench if subset is None else f"{bench}:{subset}"
    return name, [EvalItem(f"{name}:{s.id}", s.media_path, s.question) for s in samples]
