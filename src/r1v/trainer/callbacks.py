"""Trainer callbacks: a local JSONL metrics log next to the run's other outputs."""
from __future__ import annotations

import json
import logging
import math
import os

from transformers import TrainerCallback

logger = logging.getLogger(__name__)


def truncate_jsonl_after_step(path: str, step: int) -> int:
    """Drop the rows of a metrics JSONL whose ``step`` exceeds ``step``; returns how many were dropped.

    The file is rewritten through a temporary file and ``os.replace``, so a kill leaves either
    the old or the new file. A line that is not a JSON object with a step (e.g. the torn last
    line of a killed run) is dropped too.
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
        tmp = f"{path}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write("".join(line + "\n" for line in keep))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    return dropped


class JsonlLogCallback(TrainerCallback):
    """Append every ``on_log`` dict (with the global step) to ``output_dir/metrics.jsonl`` on rank 0.

    One JSON object per line, flushed at once, so a crashed run keeps every logged step.
    Non-finite floats are written as null (JSON has no NaN). At train start, rows past the
    starting step (a resumed checkpoint's, or 0 for a fresh run) are dropped: they belong to
    a run that went further before it was killed, and the resumed run logs those steps again.
    """

    def __init__(self, filename: str = "metrics.jsonl"):
        self.filename = filename

    def on_train_begin(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        path = os.path.join(args.output_dir, self.filename)
        dropped = truncate_jsonl_after_step(path, state.global_step)
        if dropped:
            logger.warning("%s: dropped %d row(s) after step %d (logged by an earlier run past this start)",
                           path, dropped, state.global_step)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        os.makedirs(args.output_dir, exist_ok=True)
        row = {"step": state.global_step}
        for k, v in logs.items():
            row[k] = None if isinstance(v, float) and not math.isfinite(v) else v
        with open(os.path.join(args.output_dir, self.filename), "a") as f:
            f.write(json.dumps(row) + "\n")
