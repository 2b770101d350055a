"""The patch log: one JSON line per teacher request, defined once for every writer and reader.

Writers: ``FFRTrainer.write_patch_log`` (``OUTPUT/patch_log/rank{r}.jsonl``, one line per
failed rollout sent to the teacher, ``step`` = the global step when the rollouts were generated,
i.e. optimizer steps completed before; 0 for the first batch) and ``python -m ffr.mine``
(``step`` null, ``outcome`` "mined" / "no_patch", plus ``mine_key`` and ``source``).
Readers: ``python -m ffr.audit``, ``ffr.mine``'s resume, and anything that inspects patches.

A line holds the request (question, options, problem type, the extracted gold answer, also in
no-GT mode, video path, frame times, student response), the teacher's answer (status,
error type, detail, patch, its diagnosis and leak source, cost) and what became of it
(outcome, rewards, whether the patched rollout was chosen). ``PatchLogRecord`` is that line.

Old lines still load: a field added later has a default (``regenerated`` 0,
``patch_error_types`` [], ``leak_source`` / ``mine_key`` / ``source`` null), and the request
fields are optional on lines without a patch, which the audit counts but never re-checks.
A line with a patch must carry the whole request (the audit re-runs the leak gates on it).
Unknown keys are refused, so a writer and this model cannot drift apart silently.
"""
from __future__ import annotations

import json
import os
from itertools import chain
from pathlib import Path
from typing import Callable, Iterable, Iterator, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from ffr.patch import EvidencePatch
from r1v.data import iter_json_records
from r1v.jsonl import truncate_jsonl_after_step

# What a line with a patch must carry so the leak gates can run on it again offline.
REQUEST_KEYS = ("question", "options", "problem_type", "gold_answer", "timestamps")


PATCH_LOG_DIR = "patch_log"


class BadLine(ValueError):
    """A patch-log line that cannot be used; the message starts with its 'file:line'."""


class PatchLogRecord(BaseModel):
    """One patch-log line (see the module docstring); ``where`` is its 'file:line' when read from a file."""

    model_config = ConfigDict(extra="forbid")

    # Which request: the training step (null for mined lines) and ids.
    step: Optional[int] = None
    sample_id: Optional[str] = None
    problem_id: Union[int, str, None] = None
    # The request as the teacher saw it (gold_answer also in no-GT mode, for the audit).
    question: Optional[str] = None
    options: Optional[list[str]] = None
    problem_type: Optional[str] = None
    gold_answer: Optional[str] = None
    video_path: Optional[str] = None
    timestamps: Optional[list[float]] = None
    student_response: Optional[str] = None
    student_answer: Optional[str] = None
    # The teacher's answer.
    status: str
    error_type: Optional[str] = None
    detail: Optional[str] = None
    patch: Optional[EvidencePatch] = None
    # What the patched second round made of it (trainer lines; mined lines have no second round).
    patched_answer: Optional[str] = None
    first_reward: Optional[float] = None
    patched_reward: Optional[float] = None
    chosen_patched: bool = False
    outcome: Optional[str] = None
    # The teacher's bookkeeping.
    teacher_model: Optional[str] = None
    prompt_version: Optional[str] = None
    tokens_in: int = Field(default=0, ge=0)
    tokens_out: int = Field(default=0, ge=0)
    regenerated: int = Field(default=0, ge=0)
    patch_error_types: list[str] = Field(default_factory=list)
    leak_source: Optional[str] = None
    # Mined lines only: the resume key (hash of problem_id, response, GT mode) and the dump row it came from.
    mine_key: Optional[str] = None
    source: Optional[str] = None

    _where: str = PrivateAttr(default="")

    @model_validator(mode="before")
    @classmethod
    def _patch_needs_request(cls, data):
        if isinstance(data, dict) and data.get("patch") is not None:
            missing = [k for k in REQUEST_KEYS if k not in data]
            if missing:
                raise ValueError(f"a patch line needs {missing} (written by an older trainer?)")
        return data

    @property
    def where(self) -> str:
        """'file:line' of a record read by `read_patch_log`, else ''."""
        return self._where

    def to_json(self) -> dict:
        """The line as a JSON object (every field, defaults included)."""
        return self.model_dump(mode="json")


def _error_text(exc: ValidationError) -> str:
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"])
    msg = err["msg"].removeprefix("Value error, ")
    return f"{loc}: {msg}" if loc else msg


def parse_record(row: object, where: str) -> PatchLogRecord:
    """Validate one parsed line; raises BadLine naming `where`."""
    if isinstance(row, json.JSONDecodeError):
        raise BadLine(f"{where}: not JSON ({row.msg}, column {row.colno})")
    if not isinstance(row, dict):
        raise BadLine(f"{where}: expected a JSON object, got {type(row).__name__}")
    try:
        record = PatchLogRecord.model_validate(row)
    except ValidationError as exc:
        raise BadLine(f"{where}: {_error_text(exc)}") from exc
    record._where = where
    return record


def read_patch_log(paths: Union[str, os.PathLike, Iterable[Union[str, os.PathLike]]],
                   on_bad: Optional[Callable[[BadLine], None]] = None) -> Iterator[PatchLogRecord]:
    """Every record of one patch-log file or several, in file and line order; blank lines are skipped.

    A bad line (not UTF-8, not JSON, nested too deeply, not a valid record) raises BadLine
    naming 'file:line', or, with `on_bad`, is passed to it and skipped. An unreadable file
    raises BadLine naming the file (never skipped: a wrong path is not a bad line).
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    for path in map(Path, paths):
        try:
            rows = iter_json_records(path, lines=True)
            first = next(rows, None)  # the file is read here: its OSError is not a bad line
        except OSError as exc:
            raise BadLine(f"{path}: cannot read ({exc.strerror or exc})") from exc
        if first is None:
            continue
        for where, row in chain([first], rows):
            try:
                record = parse_record(row, where)
            except BadLine as exc:
                if on_bad is None:
                    raise
                on_bad(exc)
                continue
            yield record


def patch_log_path(output_dir: Union[str, os.PathLike], rank: int) -> Path:
    """The training run's patch log of process ``rank``: ``output_dir/patch_log/rank{rank}.jsonl``."""
    return Path(output_dir) / PATCH_LOG_DIR / f"rank{rank}.jsonl"


def truncate_patch_logs(output_dir: Union[str, os.PathLike], start_step: int, rank: int, world_size: int) -> int:
    """On a (re)start at ``start_step``: drop the lines whose ``step`` is ``start_step`` or later.

    A line's step is the global step when its rollouts were generated, i.e. before that
    optimizer step: a run resumed from ``checkpoint-N`` generates step N's batch again, so the
    lines of steps >= N belong to the killed run. Each rank truncates its own file, before it
    writes to it, so no rank rewrites a file another rank is appending to; rank 0 also truncates
    the files of ranks >= ``world_size`` (a killed run with more processes), which nobody writes
    now. Returns the number of lines dropped.
    """
    ranks = [rank]
    if rank == 0:
        folder = Path(output_dir) / PATCH_LOG_DIR
        others = (p.stem.removeprefix("rank") for p in folder.glob("rank*.jsonl")) if folder.is_dir() else ()
        ranks += sorted(int(r) for r in others if r.isdigit() and int(r) >= world_size)
    return sum(truncate_jsonl_after_step(patch_log_path(output_dir, r), start_step - 1) for r in ranks)
