"""A thread-safe LRU of ``ok`` patch results, keyed by ``PatchRequestItem.content_key()``.

Shared by the service (one cache per process) and the client (one per training rank):
the same question, video, frames, response and gold answer get the same patch back
without asking the backend again. Only ``ok`` results are stored; a capacity of 0
disables the cache.

With `path`, the cache is persistent (the service's ``--cache-file``, filled ahead of
training by ``python -m ffr.mine``): every stored result is appended to the file as
one JSON line ``{"key": ..., "namespace": ..., "result": {...}}`` and the file is read
back at start, so a restarted service answers from it. `namespace` names who made the
results (the service uses the backend's ``cache_namespace``, e.g. teacher model and
prompt version): entries of another namespace are not loaded, so a service restarted
with another teacher never serves the old teacher's patches. `get` / `put` may name another
`namespace` than the one given at construction (a backend whose namespace changes while it
runs, e.g. the ``openai`` backend after falling back to text actions): entries are kept per
namespace, so a result made one way never answers for the other; only entries of the
construction namespace are read back from the file. A torn last line (a process killed mid-write) is
dropped with a warning and cut off the file before the next append; a malformed line
anywhere else is corruption and raises ValueError naming ``path:line``. The file keeps
every entry ever stored; only the newest `capacity` of them are held in memory.
"""
from __future__ import annotations

import json
import logging
import os
import threading
from collections import OrderedDict
from pathlib import Path

from pydantic import ValidationError

from ffr.teacher.schema import PatchResult
from r1v.data import iter_json_records
from r1v.jsonl import append_jsonl, repair_torn_tail

logger = logging.getLogger(__name__)


class ResultCache:
    """LRU map content key -> PatchResult (status ok only); safe to share between threads."""

    def __init__(self, capacity: int, path: str | os.PathLike | None = None, namespace: str = ""):
        if capacity < 0:
            raise ValueError(f"cache capacity must be >= 0, got {capacity}")
        self.capacity = capacity
        self.path = Path(path) if path is not None else None
        self.namespace = namespace
        self._data: OrderedDict[tuple[str, str], PatchResult] = OrderedDict()
        self._lock = threading.Lock()
        self.loaded = 0  # entries read back from `path` at start
        self.foreign = 0  # entries of `path` left out: another namespace
        if self.path is not None:
            self._load()

    def get(self, key: str, namespace: str | None = None) -> PatchResult | None:
        """The result stored for `key` in `namespace` (default: the cache's own), else None."""
        full = (self.namespace if namespace is None else namespace, key)
        with self._lock:
            hit = self._data.get(full)
            if hit is not None:
                self._data.move_to_end(full)
            return hit

    def put(self, key: str, result: PatchResult, namespace: str | None = None) -> None:
        """Store an ok `result` for `key` in `namespace` (default: the cache's own); others are ignored."""
        if self.capacity == 0 or result.status != "ok":
            return
        ns = self.namespace if namespace is None else namespace
        with self._lock:
            known = self._data.get((ns, key)) == result
            self._remember((ns, key), result)
            if self.path is not None and not known:
                # One write on an O_APPEND descriptor: concurrent writers never interleave a line.
                append_jsonl(self.path, [{"key": key, "namespace": ns, "result": result.model_dump(mode="json")}])

    def __len__(self) -> int:
        return len(self._data)

    # --------------------------------------------------------------- internals
    def _remember(self, key: tuple[str, str], result: PatchResult) -> None:
        self._data[key] = result
        self._data.move_to_end(key)
        while len(self._data) > self.capacity:
            self._data.popitem(last=False)

    def _load(self) -> None:
        if not self.path.exists():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            return
        repair_torn_tail(self.path)
        for where, entry in iter_json_records(self.path, lines=True):
            if isinstance(entry, json.JSONDecodeError):
                raise ValueError(f"{where}: corrupt cache line (JSONDecodeError: {entry})") from entry
            try:
                key, result = entry["key"], PatchResult.model_validate(entry["result"])
            except (ValueError, KeyError, TypeError, ValidationError) as exc:
                raise ValueError(f"{where}: corrupt cache line ({type(exc).__name__}: {exc})") from exc
            if not isinstance(key, str) or result.status != "ok":
                raise ValueError(f"{where}: corrupt cache line (needs a str key and an ok result)")
            if entry.get("namespace", "") != self.namespace:
                self.foreign += 1
                continue
            if self.capacity:
                self._remember((self.namespace, key), result)
            self.loaded += 1
        logger.info("%s: %d cached results loaded (%d kept in memory), %d of other namespaces left out",
                    self.path, self.loaded, len(self._data), self.foreign)
