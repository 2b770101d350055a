"""Shared pieces of the preparation steps: reports, atomic writes, media checks, item keys.

Outputs are written to ``<name>.tmp`` and renamed, so an interrupted run never leaves a
half-written file behind, and a finished output is recognised (and skipped) on the next run.
Missing media are collected over the whole input and reported together: by default they are
an error (``MissingMediaError`` lists them); with ``on_missing="skip"`` the items are left out
and listed in the report, never dropped silently.
"""
from __future__ import annotations

import json
import logging
import os
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from r1v.data import json_records
from r1v.jsonl import replace_atomically

logger = logging.getLogger(__name__)

ON_MISSING = ("error", "skip")
REPORT_SUFFIX = ".report.json"


class MissingMediaError(FileNotFoundError):
    """Media files referenced by items do not exist; ``missing`` is [(item id, path)]."""

    def __init__(self, where: str, missing: list[tuple[str, str]]):
        self.missing = missing
        shown = "; ".join(f"{i}: {p}" for i, p in missing[:20])
        more = f" (+{len(missing) - 20} more)" if len(missing) > 20 else ""
        super().__init__(f"{where}: {len(missing)} missing media file(s): {shown}{more} "
                         f"(pass --on-missing skip to leave these items out and list them in the report)")


@dataclass
class PrepareReport:
    """What one preparation step read, wrote and left out (written next to its output)."""

    step: str
    inputs: list[str] = field(default_factory=list)
    output: str = ""
    n_read: int = 0
    n_written: int = 0
    missing_media: list[dict] = field(default_factory=list)  # {"id", "path"}
    removed: list[dict] = field(default_factory=list)  # overlap removals, see r1v.prepare.overlap
    notes: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> str:
        reasons = Counter(r["reason"] for r in self.removed)
        parts = [f"{self.step}: read {self.n_read}, wrote {self.n_written} -> {self.output}",
                 f"missing media {len(self.missing_media)}"]
        if self.removed:
            parts.append("overlap removed " + ", ".join(f"{k} {v}" for k, v in sorted(reasons.items())))
        return "; ".join(parts)

    def save(self, path: str | Path) -> None:
        write_json_atomic(asdict(self), path)


def check_on_missing(value: str) -> str:
    if value not in ON_MISSING:
        raise ValueError(f"on_missing must be one of {ON_MISSING}, got {value!r}")
    return value


def report_path(out: str | Path) -> Path:
    out = Path(out)
    return out.with_name(out.name + REPORT_SUFFIX)


def is_done(*outputs: str | Path) -> bool:
    """True when every output exists (a finished earlier run; partial runs leave only .tmp files)."""
    return all(Path(p).is_file() for p in outputs)


def write_json_atomic(obj: Any, path: str | Path) -> None:
    replace_atomically(path, lambda fh: json.dump(obj, fh, ensure_ascii=False, indent=1))


def read_items(path: str | Path) -> list[Any]:
    """Items of a JSON list or JSONL file (first non-blank character '[' means a JSON list).

    Raises ValueError naming the file and line for invalid JSON, FileNotFoundError when absent.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"file not found: {path}")
    return [item for _, item in json_records(path)]


def relative_media_path(media: str | Path, out_file: str | Path) -> str:
    """``media`` (absolute or relative to the cwd) relative to the folder of ``out_file``."""
    return os.path.relpath(os.path.abspath(media), os.path.abspath(Path(out_file).parent))


def item_keys(records: list[dict]) -> list[str]:
    """A stable identity per record of one source file: its ``original_id`` (else ``problem_id``).

    Ids repeated within the file get ``#k`` (k-th repeat, file order), so every key is unique
    and the same file always gives the same keys; a manifest names items by these keys.
    """
    base = [str(r.get("original_id", r.get("problem_id"))) for r in records]
    counts = Counter(base)
    seen: Counter = Counter()
    keys = []
    for key in base:
        if counts[key] > 1:
            seen[key] += 1
            key = f"{key}#{seen[key]}"
        keys.append(key)
    return keys
