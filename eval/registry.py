"""Name -> benchmark module. A plain dict; each module follows ``eval.benchmarks.base.Benchmark``.

Also the evaluation sets of the train/eval overlap check (``load_eval_set``): ``r1v.prepare.overlap``
matches training items against plain ``EvalItem`` s (label, media, question) and reads bare
JSON/JSONL paths itself, but only the benchmark modules here know their official annotation
formats. So a ``NAME[:SUBSET]=PATH`` spec is read here, and ``python -m r1v.prepare`` passes
``load_eval_set`` in: evaluation depends on the core package, never the reverse.
"""
from __future__ import annotations

from types import ModuleType

from r1v.prepare.common import read_items
from r1v.prepare.overlap import EvalItem, load_plain_eval_set, parse_spec

from eval.benchmarks import (longvideobench, lvbench, mmvu, mvbench, tempcompass, videoholmes,
                             videommmu, vsibench)

BENCHMARKS: dict[str, ModuleType] = {
    "mmvu": mmvu,
    "vsibench": vsibench,
    "videommmu": videommmu,
    "videoholmes": videoholmes,
    "longvideobench": longvideobench,
    "lvbench": lvbench,
    "mvbench": mvbench,
    "tempcompass": tempcompass,
}


def get_benchmark(name: str) -> ModuleType:
    """The module registered under ``name``; unknown names raise ValueError listing the known ones."""
    try:
        return BENCHMARKS[name]
    except KeyError:
        raise ValueError(f"unknown benchmark {name!r}; known: {sorted(BENCHMARKS)}") from None


def load_eval_set(spec: str) -> tuple[str, list[EvalItem]]:
    """(set name, items) of a ``PATH`` or ``NAME[:SUBSET]=PATH`` spec (an ``r1v.prepare.overlap.EvalSetLoader``).

    ``NAME``: a benchmark above; ``PATH``: one of its annotation files (official or Video-R1-eval
    format, told apart by ``problem_id``), read by the benchmark's own ``load_records`` (``SUBSET``
    where the benchmark needs one). A bare ``PATH`` is read by ``load_plain_eval_set``.
    ValueError / FileNotFoundError name the file.
    """
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
