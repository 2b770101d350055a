"""Writing JSONL files: appends, torn-tail repair and atomic rewrites, one way for every writer.

Reading is ``r1v.data.iter_json_records`` / ``json_records`` (one reader, naming bad lines as
``file:line``); this module is its writing side. Every append-only log of the project (the
teacher's result cache, mined patch logs, teacher traces and their attempts, the trainers'
metrics and patch logs) goes through it, so they all survive a kill the same way:

* ``append_jsonl`` writes a batch of rows in ONE ``write`` on an ``O_APPEND`` descriptor:
  writers sharing a file (threads, or processes) never interleave inside a line, and a kill
  leaves at worst one torn, newline-less last line;
* ``repair_torn_tail`` cuts that last line off (with a warning) before the next append, so
  the next row does not get glued to half a row;
* ``write_jsonl_atomic`` / ``replace_atomically`` rewrite a whole file through a temporary
  file, ``fsync`` and ``os.replace``: a kill leaves the old file or the new one, never a mix;
* ``truncate_jsonl_after_step`` drops the rows a resumed run will log again.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Callable, Iterable, TextIO

logger = logging.getLogger(__name__)

PathLike = str | os.PathLike


def dumps_line(row: Any) -> str:
    """One JSONL line (newline included); non-ASCII text is kept as is, not escaped."""
    return json.dumps(row, ensure_ascii=False) + "\n"


def append_jsonl(path: PathLike, rows: Iterable[Any], fsync: bool = False) -> int:
    """Append ``rows`` to ``path`` (created when absent) in one write; returns the row count.

    fsync: also flush the file to disk before returning (logs a rerun resumes from, where a
    power loss must not take back rows already acknowledged). Nothing is written for no rows.
    """
    lines = [dumps_line(r) for r in rows]
    if not lines:
        return 0
    blob = "".join(lines).encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        written = os.write(fd, blob)
        if written != len(blob):  # a regular file takes the whole write unless the disk is full
            raise OSError(f"{path}: short write ({written} of {len(blob)} bytes)")
        if fsync:
            os.fsync(fd)
    finally:
        os.close(fd)
    return len(lines)


def repair_torn_tail(path: PathLike) -> int:
    """Cut a last line that has no newline (a write interrupted by a kill); returns the bytes cut.

    A missing or empty file is left alone. The cut is logged as a warning, since it drops one
    row the interrupted run had started to write.
    """
    path = Path(path)
    if not path.is_file():
        return 0
    data = path.read_bytes()
    if not data or data.endswith(b"\n"):
        return 0
    keep = data.rfind(b"\n") + 1
    logger.warning("%s: dropping a torn last line (%d bytes) left by an interrupted write", path, len(data) - keep)
    os.truncate(path, keep)
    return len(data) - keep


def replace_atomically(path: PathLike, write: Callable[[TextIO], None]) -> None:
    """Write ``path`` through ``write(fh)`` on a temporary sibling, fsync it and rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        write(fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def write_jsonl_atomic(rows: Iterable[Any], path: PathLike) -> int:
    """Replace ``path`` with ``rows`` as JSONL (see ``replace_atomically``); returns the row count."""
    count = 0

    def write(fh: TextIO) -> None:
        nonlocal count
        for row in rows:
            fh.write(dumps_line(row))
            count += 1

    replace_atomically(path, write)
    return count


def truncate_jsonl_after_step(path: PathLike, step: int) -> int:
    """Drop the rows of a step-keyed JSONL whose ``step`` exceeds ``step``; returns how many were dropped.

    Used on resume: rows past the resumed step were logged by a run that went further before it
    was killed, and the resumed run logs those steps again. A line that is not a JSON object with
    an integer step (e.g. the torn last line of a killed run) is dropped too. Kept lines are
    copied byte for byte; the file is rewritten atomically, and only when something is dropped.
    """
    if not os.path.isfile(path):
        return 0
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    keep = []
    for line in lines:
        try:
            row = json.loads(line)
        except ValueError:  # torn write of a killed run
            continue
        if isinstance(row, dict) and isinstance(row.get("step"), int) and row["step"] <= step:
            keep.append(line)
    dropped = len(lines) - len(keep)
    if dropped:
        replace_atomically(path, lambda fh: fh.write("".join(line + "\n" for line in keep)))
    return dropped
