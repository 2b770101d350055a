"""Checkpoint folders that are either complete or absent, and choosing one to resume from.

A checkpoint is written into ``output_dir/.tmp-checkpoint-N/checkpoint-N`` and renamed to
``output_dir/checkpoint-N`` only once every rank has finished writing it, so a run killed
mid-save leaves a staging folder (ignored by resume and by the Trainer's rotation, whose
patterns match ``checkpoint-*`` only) instead of a truncated ``checkpoint-N``.

Resume (``resume_from_checkpoint=True``) takes the newest *valid* ``checkpoint-N``:
folders from older code or copied by hand may still be incomplete, and each one skipped
is logged with the reason. A checkpoint named explicitly must be valid (no fallback).
"""
from __future__ import annotations

import json
import logging
import os
import re
import shutil
import struct
from typing import Optional, Union

from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, rotate_checkpoints

logger = logging.getLogger(__name__)

STAGING_PREFIX = ".tmp-"
_CHECKPOINT_NAME = re.compile(rf"^{PREFIX_CHECKPOINT_DIR}-(\d+)$")
_SAFETENSORS = "model.safetensors"
_SAFETENSORS_INDEX = "model.safetensors.index.json"
_LEGACY_WEIGHTS = ("pytorch_model.bin", "pytorch_model.bin.index.json")


def staging_root(run_dir: str, step: int) -> str:
    """The folder a checkpoint of ``step`` is written under before it is published."""
    return os.path.join(run_dir, f"{STAGING_PREFIX}{PREFIX_CHECKPOINT_DIR}-{step}")


def publish_checkpoint(staging: str, final: str) -> None:
    """Move a fully written checkpoint from ``staging`` to ``final`` (a rename on one filesystem).

    An existing ``final`` (the same step saved by an earlier, resumed-over run) is moved
    aside first and deleted after the new folder is in place.
    """
    old = None
    if os.path.exists(final):
        old = os.path.join(os.path.dirname(final), f"{STAGING_PREFIX}old-{os.path.basename(final)}")
        shutil.rmtree(old, ignore_errors=True)
        os.rename(final, old)
    os.rename(staging, final)
    if old is not None:
        shutil.rmtree(old)


def _safetensors_problem(path: str) -> Optional[str]:
    """None if ``path`` is a whole safetensors file (header parses, data as long as it says)."""
    if not os.path.isfile(path):
        return f"{os.path.basename(path)} is missing"
    size = os.path.getsize(path)
    try:
        with open(path, "rb") as f:
            (header_len,) = struct.unpack("<Q", f.read(8))
            if 8 + header_len > size:
                return f"{os.path.basename(path)} is truncated (header)"
            header = json.loads(f.read(header_len))
    except (struct.error, ValueError, UnicodeDecodeError) as err:
        return f"{os.path.basename(path)} is unreadable ({err})"
    try:
        end = max((t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"), default=0)
    except (AttributeError, KeyError, IndexError, TypeError) as err:
        return f"{os.path.basename(path)} has a malformed header ({err!r})"
    if 8 + header_len + end > size:
        return f"{os.path.basename(path)} is truncated ({size} of {8 + header_len + end} bytes)"
    return None


def _weights_problem(folder: str) -> Optional[str]:
    """None if the folder holds model weights: safetensors (single or sharded), legacy .bin, or DeepSpeed state."""
    index = os.path.join(folder, _SAFETENSORS_INDEX)
    if os.path.isfile(index):
        try:
            with open(index) as f:
                shards = sorted(set(json.load(f)["weight_map"].values()))
        except (ValueError, KeyError, AttributeError) as err:
            return f"{_SAFETENSORS_INDEX} is unreadable ({err})"
        problems = [p for p in (_safetensors_problem(os.path.join(folder, s)) for s in shards) if p]
        return problems[0] if problems else None
    if os.path.isfile(os.path.join(folder, _SAFETENSORS)):
        return _safetensors_problem(os.path.join(folder, _SAFETENSORS))
    if any(os.path.isfile(os.path.join(folder, name)) for name in _LEGACY_WEIGHTS) or _deepspeed_tag(folder):
        return None
    return "no model weights"


def _deepspeed_tag(folder: str) -> Optional[str]:
    """The DeepSpeed state folder named by ``latest``, if both exist."""
    latest = os.path.join(folder, "latest")
    if not os.path.isfile(latest):
        return None
    with open(latest) as f:
        tag = f.read().strip()
    return tag if tag and os.path.isdir(os.path.join(folder, tag)) else None


def checkpoint_problem(folder: str, need_optimizer: bool) -> Optional[str]:
    """Why ``folder`` cannot be resumed from, or None when it can.

    Checks: trainer_state.json parses and has global_step; model weights are whole; with
    ``need_optimizer`` (the run saved optimizer state), optimizer and scheduler state exist
    (``optimizer.pt`` + ``scheduler.pt``, or a DeepSpeed ``latest`` folder).
    """
    state_path = os.path.join(folder, "trainer_state.json")
    try:
        with open(state_path) as f:
            if not isinstance(json.load(f).get("global_step"), int):
                return "trainer_state.json has no global_step"
    except FileNotFoundError:
        return "trainer_state.json is missing"
    except (ValueError, AttributeError) as err:
        return f"trainer_state.json is unreadable ({err})"
    problem = _weights_problem(folder)
    if problem:
        return problem
    if need_optimizer and not _deepspeed_tag(folder):
        missing = [n for n in ("optimizer.pt", "scheduler.pt") if not os.path.isfile(os.path.join(folder, n))]
        if missing:
            return f"{' and '.join(missing)} missing"
    return None


def newest_valid_checkpoint(output_dir: str, need_optimizer: bool) -> str:
    """Path of the newest resumable ``checkpoint-N`` in ``output_dir``; each skipped one is logged.

    Raises ValueError when there is none (naming every folder skipped and why).
    """
    found = sorted(
        ((int(m.group(1)), name) for name in (os.listdir(output_dir) if os.path.isdir(output_dir) else [])
         if (m := _CHECKPOINT_NAME.match(name)) and os.path.isdir(os.path.join(output_dir, name))),
        reverse=True,
    )
    skipped = []
    for _, name in found:
        folder = os.path.join(output_dir, name)
        problem = checkpoint_problem(folder, need_optimizer)
        if problem is None:
            return folder
        logger.warning("not resuming from %s: incomplete checkpoint (%s); trying an older one", folder, problem)
        skipped.append(f"{name} ({problem})")
    detail = f"; skipped: {', '.join(skipped)}" if skipped else ""
    raise ValueError(f"resume_from_checkpoint: no valid checkpoint-N in {output_dir}{detail}")


def resolve_resume(value: Union[str, bool, None], output_dir: str, need_optimizer: bool) -> Optional[str]:
    """The checkpoint folder to resume from: None (fresh start), the newest valid one (True), or a
    named folder, which must be valid (ValueError naming what is wrong)."""
    if value is None or value is False:
        return None
    if value is True:
        return newest_valid_checkpoint(output_dir, need_optimizer)
    if not os.path.isdir(value):
        raise ValueError(f"resume_from_checkpoint: {value} is not a folder")
    problem = checkpoint_problem(value, need_optimizer)
    if problem:
        raise ValueError(f"resume_from_checkpoint: {value} is incomplete ({problem})")
    return value


class AtomicCheckpointMixin:
    """For a ``transformers.Trainer`` subclass (listed before ``Trainer``): atomic checkpoint
    folders and resume from the newest complete one (see the module docstring)."""

    _staging_dir: Optional[str] = None  # set while a checkpoint is being written

    def train(self, resume_from_checkpoint=None, trial=None, **kwargs):
        """``Trainer.train``; ``resume_from_checkpoint=True`` takes the newest *complete* checkpoint
        (incomplete ones are skipped with a warning); a named one must be complete."""
        resume = resolve_resume(resume_from_checkpoint, self.args.output_dir, not self.args.save_only_model)
        return super().train(resume_from_checkpoint=resume, trial=trial, **kwargs)

    def _get_output_dir(self, trial) -> str:
        return self._staging_dir or super()._get_output_dir(trial)

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model=None) -> None:
        """Restore the model weights of ``checkpoint-N`` (the resume path without DeepSpeed / FSDP).

        ``save_pretrained`` writes the checkpoint's keys in the released checkpoints' layout
        (``model.layers.*``, ``visual.*``), which ``from_pretrained`` maps onto the module tree;
        the Trainer's own loader reads them with a plain ``load_state_dict(strict=False)`` and so
        restored only the weights whose names coincide (``lm_head``), silently resuming from the
        base model. Loading through ``from_pretrained`` applies the mapping; every weight must match.
        """
        target = self.accelerator.unwrap_model(model if model is not None else self.model)
        dtype = next(target.parameters()).dtype
        loaded = type(target).from_pretrained(resume_from_checkpoint, dtype=dtype)
        target.load_state_dict(loaded.state_dict(), strict=True)
        logger.info("restored the model weights of %s", resume_from_checkpoint)

    def _save_checkpoint(self, model, trial) -> None:
        """The Trainer's checkpoint, written under a staging folder and renamed to ``checkpoint-N``
        once every rank has finished, so a kill mid-save never leaves a truncated ``checkpoint-N``."""
        run_dir = super()._get_output_dir(trial)
        name = f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
        staging = staging_root(run_dir, self.state.global_step)
        if self.args.should_save and os.path.exists(staging):
            logger.warning("removing %s, left by a run killed while saving", staging)
            shutil.rmtree(staging)
        self.accelerator.wait_for_everyone()
        self._staging_dir = staging
        try:
            super()._save_checkpoint(model, trial)
        finally:
            self._staging_dir = None
        self.accelerator.wait_for_everyone()  # every rank's shard is written before the rename
        if self.args.should_save:
            publish_checkpoint(os.path.join(staging, name), os.path.join(run_dir, name))
            shutil.rmtree(staging)
            # The Trainer rotated inside the staging folder; rotate the real ones now.
            rotate_checkpoints(output_dir=run_dir, save_total_limit=self.args.save_total_limit,
                               best_model_checkpoint=self.state.best_model_checkpoint, use_mtime=True)
        self.accelerator.wait_for_everyone()
