"""Prediction files of ``eval.run``: crash-safe appends, torn-line recovery, rank shards, merging.

Layout inside a benchmark's output folder:
- ``predictions.jsonl``: one JSON object per line (one row per sample, key ``id``).
- ``predictions.rank{r}.jsonl``: what rank ``r`` appends while a data-parallel run is in flight;
  :func:`merge_predictions` folds the shards into ``predictions.jsonl`` and deletes them.

Every batch is appended with one ``os.write`` on an O_APPEND descriptor and fsync'd, so a killed
run loses at most the batch in flight and leaves at worst one torn (newline-less) last line,
which readers drop and the next writer cuts off before appending.
"""
from __future__ import annotations

import glob
import json
import logging
import os
from pathlib import Path

logger = logging.getLogger(__name__)

PREDICTIONS = "predictions.jsonl"


def shard(items: list, rank: int, world: int) -> list:
    """The part of ``items`` that rank ``rank`` of ``world`` processes: ``items[rank::world]``."""
    if not 0 <= rank < world:
        raise ValueError(f"rank {rank} outside world of size {world}")
    return items[rank::world]


def rank_file(bench_dir: Path, rank: int, world: int) -> Path:
    """Where a rank appends: ``predictions.jsonl`` when alone, ``predictions.rank{r}.jsonl`` otherwise."""
    return bench_dir / (PREDICTIONS if world == 1 else f"predictions.rank{rank}.jsonl")


def read_rows(path: Path) -> list[dict]:
    """Rows of a predictions file. A last line without its newline is a torn write: dropped, logged.

    A malformed line anywhere else is corruption and raises ValueError naming ``path:line``.
    """
    if not path.exists():
        return []
    lines = path.read_bytes().split(b"\n")
    if lines[-1]:
        logger.warning("%s: dropping a torn last line (%d bytes)", path, len(lines[-1]))
    rows = []
    for n, line in enumerate(lines[:-1], 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}:{n}: corrupt predictions line ({exc})") from exc
    return rows


def prediction_files(bench_dir: Path) -> list[Path]:
    """The merged file first, then rank shards in rank order."""
    shards = sorted(glob.glob(str(bench_dir / "predictions.rank*.jsonl")),
                    key=lambda p: int(p.rsplit("rank", 1)[1].split(".")[0]))
    return [bench_dir / PREDICTIONS] + [Path(p) for p in shards]


def read_done(bench_dir: Path) -> dict[str, dict]:
    """{id: row} over all prediction files of a benchmark; a duplicated id keeps its first row."""
    done: dict[str, dict] = {}
    for path in prediction_files(bench_dir):
        for row in read_rows(path):
            if row["id"] in done:
                logger.warning("%s: duplicate id %s ignored", path, row["id"])
                continue
            done[row["id"]] = row
    return done


class PredictionWriter:
    """Appends batches of rows to one file; each batch is one ``os.write`` then fsync."""

    def __init__(self, path: Path):
        self.path = path
        self._drop_torn_tail()
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def _drop_torn_tail(self) -> None:
        """Cut a partial last line so the next append starts on a fresh line."""
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):
            os.truncate(self.path, data.rfind(b"\n") + 1)

    def write(self, rows: list[dict]) -> None:
        """Append ``rows`` as JSON lines in one write, then fsync; a short write raises OSError."""
        data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode()
        written = os.write(self.fd, data)
        if written != len(data):
            raise OSError(f"{self.path}: short write ({written} of {len(data)} bytes)")
        os.fsync(self.fd)

    def close(self) -> None:
        """Close the descriptor (every batch is already on disk)."""
        os.close(self.fd)


def atomic_write_text(path: Path, text: str) -> None:
    """Write via a temporary file and ``os.replace`` (readers never see a partial file)."""
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def merge_predictions(bench_dir: Path, order: list[str]) -> list[dict]:
    """Merge all prediction files into ``predictions.jsonl`` and delete the rank shards.

    Rows are written in ``order`` (the benchmark's sample ids); rows of ids outside ``order``
    (an earlier run with another --max-samples) are kept after them. Returns the rows of
    ``order`` that exist, in that order.
    """
    done = read_done(bench_dir)
    current = [done[i] for i in order if i in done]
    wanted = set(order)
    others = [r for i, r in done.items() if i not in wanted]
    atomic_write_text(bench_dir / PREDICTIONS,
                      "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in current + others))
    for path in prediction_files(bench_dir)[1:]:
        path.unlink()
    return current
