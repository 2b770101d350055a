"""Fingerprints that keep ``eval.run`` from resuming onto predictions made from other inputs.

Two kinds, both compared before anything is generated:

- **checkpoint** (``run_config.json``, key ``checkpoint_fingerprint``): the SHA-256 of every
  top-level ``*.json`` / ``*.jinja`` file of the checkpoint folder (config, weights index,
  tokenizer, processor, chat template) and the size and mtime of every weight file
  (``*.safetensors``, ``*.bin``, ``*.pt``, ``*.pth``). Hashing the weights themselves would cost
  minutes on a 7B checkpoint; a rewrite changes their mtime.
- **inputs of each row** (``predictions.jsonl``, key ``inputs``): the SHA-256 of the benchmark
  sample (question, options, answer, media path, categories, ...) and the size and mtime of its
  media file. Rows are checked one by one, so a resume with another ``--max-samples`` still
  reuses the rows whose inputs are unchanged.

A mismatch is reported naming what changed; ``eval.run --restart`` discards the earlier results.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
HASHED_SUFFIXES = (".json", ".jinja")


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _stat(path: str | Path) -> list[int] | None:
    """[size, mtime_ns] of a file, or None when it is missing."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return [st.st_size, st.st_mtime_ns]


def checkpoint_fingerprint(folder: str) -> dict[str, object]:
    """{file name: sha256 (configs) or [size, mtime_ns] (weights)} of a checkpoint folder's top level.

    {} when `folder` is not a directory (loading the model reports that, clearly, later).
    """
    root = Path(folder)
    if not root.is_dir():
        return {}
    out: dict[str, object] = {}
    for path in sorted(root.iterdir()):
        if not path.is_file():
            continue
        if path.name.endswith(HASHED_SUFFIXES):
            out[path.name] = _sha256_file(path)
        elif path.name.endswith(WEIGHT_SUFFIXES):
            out[path.name] = _stat(path)
    return out


def checkpoint_changes(old: dict | None, new: dict) -> list[str]:
    """Human-readable differences between two checkpoint fingerprints ([] when equal)."""
    if old is None:
        return ["no checkpoint fingerprint recorded (written by an older eval.run)"]
    changes = []
    for name in sorted(set(old) | set(new)):
        if name not in new:
            changes.append(f"{name} removed")
        elif name not in old:
            changes.append(f"{name} added")
        elif old[name] != new[name]:
            changes.append(f"{name} {'contents' if isinstance(new[name], str) else 'size/mtime'} changed")
    return changes


def sample_inputs(sample) -> dict[str, object]:
    """``inputs`` of a predictions row: {"sample": sha256 of the sample, "media": [size, mtime_ns] | None}."""
    text = json.dumps(dataclasses.asdict(sample), sort_keys=True, ensure_ascii=False, default=str)
    media = _stat(sample.media_path) if sample.media_path else None
    return {"sample": hashlib.sha256(text.encode()).hexdigest(), "media": media}


def stale_rows(samples: list, done: dict[str, dict]) -> list[tuple[str, str]]:
    """(id, what changed) for each row on disk whose sample's inputs differ from now."""
    stale = []
    for sample in samples:
        row = done.get(sample.id)
        if row is None or sample.media_path is None:
            continue
        old, new = row.get("inputs"), sample_inputs(sample)
        if old is None:
            stale.append((sample.id, "row has no input fingerprint (written by an older eval.run)"))
        elif old.get("sample") != new["sample"]:
            stale.append((sample.id, "benchmark record changed (question, options, answer or media path)"))
        elif old.get("media") != new["media"]:
            stale.append((sample.id, f"media file {sample.media_path} changed (size/mtime)"))
    return stale
