"""Trainer callbacks: a local JSONL metrics log next to the run's other outputs."""
from __future__ import annotations

import json
import math
import os

from transformers import TrainerCallback


class JsonlLogCallback(TrainerCallback):
    """Append every ``on_log`` dict (with the global step) to ``output_dir/metrics.jsonl`` on rank 0.

    One JSON object per line, flushed at once, so a crashed run keeps every logged step.
    Non-finite floats are written as null (JSON has no NaN).
    """

    def __init__(self, filename: str = "metrics.jsonl"):
        self.filename = filename

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        os.makedirs(args.output_dir, exist_ok=True)
        row = {"step": state.global_step}
        for k, v in logs.items():
            row[k] = None if isinstance(v, float) and not math.isfinite(v) else v
        with open(os.path.join(args.output_dir, self.filename), "a") as f:
            f.write(json.dumps(row) + "\n")
