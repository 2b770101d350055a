"""A thread-safe LRU of ``ok`` patch results, keyed by ``PatchRequestItem.content_key()``.

Shared by the service (one cache per process) and the client (one per training rank):
the same question, video, frames, response and gold answer get the same patch back
without asking the backend again. Only ``ok`` results are stored; a capacity of 0
disables the cache.
"""
from __future__ import annotations

import threading
from collections import OrderedDict

from ffr.teacher.schema import PatchResult


class ResultCache:
    """LRU map content key -> PatchResult (status ok only); safe to share between threads."""

    def __init__(self, capacity: int):
        if capacity < 0:
            raise ValueError(f"cache capacity must be >= 0, got {capacity}")
        self.capacity = capacity
        self._data: OrderedDict[str, PatchResult] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> PatchResult | None:
        with self._lock:
            hit = self._data.get(key)
            if hit is not None:
                self._data.move_to_end(key)
            return hit

    def put(self, key: str, result: PatchResult) -> None:
        if self.capacity == 0 or result.status != "ok":
            return
        with self._lock:
            self._data[key] = result
            self._data.move_to_end(key)
            while len(self._data) > self.capacity:
                self._data.popitem(last=False)

    def __len__(self) -> int:
        return len(self._data)
