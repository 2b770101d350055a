"""Trainer callbacks: a local JSONL metrics log next to the run's other outputs."""
from __future__ import annotations

import logging
import math
import os

from transformers import TrainerCallback

from r1v.jsonl import append_jsonl, truncate_jsonl_after_step

__all__ = ["JsonlLogCallback", "truncate_jsonl_after_step"]

logger = logging.getLogger(__name__)


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
        append_jsonl(os.path.join(args.output_dir, self.filename), [row])
