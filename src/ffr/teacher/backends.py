"""Teacher backends: what turns one failed rollout into an evidence patch.

A backend only proposes; the service around it does path confinement,
timeouts, the leakage gate, caching and statistics. So a backend may raise on
a bad item (the service turns the exception into an ``error`` result for that
item alone) and must not check leakage itself.

`propose` may be a plain method (the service runs it in a worker thread) or an
``async def`` (awaited on the event loop). It returns:
- an `EvidencePatch` (status ``ok`` unless the leakage gate drops it),
- a `Proposal` when the backend also reports model turns or a note,
- None when it has nothing to offer (status ``skipped``).
"""
from __future__ import annotations

import abc
import logging
from dataclasses import dataclass

from ffr.patch import EvidencePatch, evidence_to_patch
from ffr.teacher.schema import PatchRequestItem

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Proposal:
    """A backend answer with bookkeeping: `turns` model turns spent, optional `detail`."""

    patch: EvidencePatch | None
    turns: int = 0
    detail: str | None = None


class TeacherBackend(abc.ABC):
    """Interface every teacher backend implements (see the module docstring)."""

    #: registry name, also reported by the service's /stats
    name: str = "abstract"

    @abc.abstractmethod
    def propose(self, item: PatchRequestItem) -> EvidencePatch | Proposal | None:
        """Propose a patch for one failed rollout; may be ``async def``."""

    @abc.abstractmethod
    def ready(self) -> bool:
        """True when the backend can serve now (model endpoint reachable, etc.)."""


class AnnotationBackend(TeacherBackend):
    """Deterministic backend: the patch comes from evidence annotations in the data.

    No model is called, so `turns` is 0 and the result depends only on the
    item. The no-GT mode is signalled by ``item.gold_answer is None``: the patch
    is then built with ``use_gt=False`` (the teacher must not use what it would
    only know from the gold answer). Items without evidence are skipped.
    Malformed evidence raises (from `evidence_to_patch`), which the service
    reports as an ``error`` for that item.
    """

    name = "annotation"

    def propose(self, item: PatchRequestItem) -> EvidencePatch | None:
        if not item.evidence:
            logger.debug("item %s carries no evidence annotation; skipping", item.sample_id)
            return None
        use_gt = item.gold_answer is not None
        return evidence_to_patch(item.evidence, item.timestamps, use_gt=use_gt)

    def ready(self) -> bool:
        return True


#: name -> backend class; the service CLI builds ``BACKENDS[name]()``.
BACKENDS: dict[str, type[TeacherBackend]] = {
    AnnotationBackend.name: AnnotationBackend,
}
