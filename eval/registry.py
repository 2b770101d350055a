"""Name -> benchmark module. A plain dict; each module follows ``eval.benchmarks.base.Benchmark``."""
from __future__ import annotations

from types import ModuleType

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
