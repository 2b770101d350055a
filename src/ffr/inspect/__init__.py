"""Patch inspector: one static HTML page showing what the teacher did for each request of a run.

    python -m ffr.inspect RUN_DIR [--out report.html] [--no-frames] [--thumb-size 192]
    python -m ffr.inspect mined.jsonl other/patch_log/rank0.jsonl --out report.html

Inputs: a training ``output_dir`` (its ``patch_log/rank*.jsonl``, ``metrics.jsonl`` for
Fig. 4 and ``run_config.json`` for the frame policy and ``ffr_visual_context``), or any
patch-log JSONL files (the trainer's, ``ffr.mine`` output, ``ffr.audit`` inputs), or a mix.

Output: ``report.html`` plus a sibling folder ``report_files/`` holding the frame
thumbnails (JPEG, re-decoded from the videos at the logged timestamps) and the Fig. 4 PNG.
Nothing is fetched from a server or CDN; opening the file in a browser is enough.

This module holds the reading side: `read_lines` is the one place that turns log lines
into `LogLine` objects, each parsed as the one patch-log record (`ffr.patch_log`) and
audited by `ffr.audit`. The page is built by `ffr.inspect.page.build_report`.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional

from ffr.audit import Entry, audit_record
from ffr.patch_log import BadLine, parse_record

# Outcome classes the page filters by. The trainer's outcomes map onto them as follows:
# fixed -> fixed; improved / not_fixed -> not_fixed (the patched answer was still wrong);
# no_patch / invalid_patch -> no_patch; a service leak drop or leak_local -> leak;
# mined (ffr.mine: a patch, no second round) -> mined.
OUTCOME_CLASSES = ("fixed", "not_fixed", "no_patch", "leak", "mined")
_CLASS_OF = {"fixed": "fixed", "improved": "not_fixed", "not_fixed": "not_fixed", "mined": "mined",
             "leak_local": "leak"}


@dataclass
class LogLine:
    """One patch-log line as the page uses it.

    where: 'file:line'. row: the decoded JSON object (None when the line is not a JSON
    object). entry: the audit's view of the line (rule gates already run), None when the
    audit rejects it; `problem` then says why (shown on the card, the line is still listed).
    """

    where: str
    row: Optional[dict]
    entry: Optional[Entry]
    problem: Optional[str] = None

    @property
    def audit_leak(self) -> Optional[str]:
        """The audit's leak reason for this line (service drop, local gate or offline gate), or None."""
        return self.entry.leak_reason if self.entry is not None else None

    @property
    def outcome_class(self) -> str:
        """One of OUTCOME_CLASSES (see the mapping above)."""
        row = self.row or {}
        if row.get("status") == "leak":
            return "leak"
        return _CLASS_OF.get(row.get("outcome"), "no_patch")

    @property
    def error_types(self) -> list[str]:
        """The patch's error types; for a dropped (leaking) patch, the teacher's diagnosis."""
        row = self.row or {}
        patch = row.get("patch")
        if isinstance(patch, dict) and isinstance(patch.get("error_types"), list):
            return [str(t) for t in patch["error_types"]]
        return [str(t) for t in row.get("patch_error_types") or []]


def read_lines(paths: Iterable[str | Path]) -> list[LogLine]:
    """Every non-blank line of the patch-log files `paths`, in file order.

    Never raises for a bad line: a line the audit rejects keeps its row (when it is a
    JSON object) with `problem` set, so the inspector can still show it. Raises OSError
    for an unreadable file.
    """
    out = []
    for path in map(Path, paths):
        for n, raw in enumerate(path.read_bytes().split(b"\n"), 1):
            if not raw.strip():
                continue
            where = f"{path}:{n}"
            text = raw.decode("utf-8", errors="replace")
            try:
                out.append(_audited(text, where))
            except BadLine as exc:
                out.append(LogLine(where, _json_object(text), None, str(exc)))
    return out


def log_times(row: Optional[dict]) -> list[float]:
    """The line's frame times in seconds; [] when absent or not a list of numbers (a bad line)."""
    try:
        return [float(t) for t in (row or {}).get("timestamps") or []]
    except (TypeError, ValueError):
        return []


def _audited(text: str, where: str) -> LogLine:
    row = _json_object(text)
    if row is None:
        raise BadLine(f"{where}: not a JSON object")
    return LogLine(where, row, audit_record(parse_record(row, where)))


def _json_object(text: str) -> Optional[dict]:
    try:
        row = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return row if isinstance(row, dict) else None


@dataclass
class RunInputs:
    """Where a report's material comes from: log files, the metrics file and the run config."""

    logs: list[Path]
    metrics: Optional[Path]
    run_config: dict


def find_inputs(inputs: list[str]) -> RunInputs:
    """Resolve CLI inputs: a folder is a run's output_dir (patch_log/rank*.jsonl, metrics.jsonl,
    run_config.json; a folder of *.jsonl files also works), a file is a patch log.

    Raises ValueError naming the input when a folder holds no log or a file does not exist.
    """
    logs: list[Path] = []
    metrics, config = None, {}
    for item in map(Path, inputs):
        if item.is_dir():
            found = sorted((item / "patch_log").glob("rank*.jsonl")) or sorted(item.glob("*.jsonl"))
            found = [p for p in found if p.name != "metrics.jsonl"]
            if not found:
                raise ValueError(f"{item}: no patch_log/rank*.jsonl (was the run trained with ffr_patch_log?)")
            logs += found
            if metrics is None and (item / "metrics.jsonl").is_file():
                metrics = item / "metrics.jsonl"
            if not config and (item / "run_config.json").is_file():
                config = json.loads((item / "run_config.json").read_text(encoding="utf-8"))
        elif item.is_file():
            logs.append(item)
        else:
            raise ValueError(f"{item}: no such file or folder")
    return RunInputs(logs, metrics, config)


def config_value(run_config: dict, name: str, default=None):
    """A field of run_config.json, whichever config section holds it (first found)."""
    for section in run_config.values():
        if isinstance(section, dict) and name in section:
            return section[name]
    return default
