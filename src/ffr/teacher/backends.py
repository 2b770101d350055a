"""Teacher backends: what turns one failed rollout into an evidence patch.

A backend only proposes; the service around it does path confinement,
timeouts, the leakage gate, caching and statistics. So a backend may raise on
a bad item (the service turns the exception into an ``error`` result for that
item alone) and must not check leakage itself.

`propose` may be a plain method (the service runs it in a worker thread) or an
``async def`` (awaited on the event loop). It returns:
- an `EvidencePatch` (status ``ok`` unless the leakage gate drops it),
- a `Proposal` when the backend also reports model turns, cost, a note or a named error,
- None when it has nothing to offer (status ``skipped``).
"""
from __future__ import annotations

import abc
import argparse
import logging
from dataclasses import dataclass
from typing import Any

from ffr.patch import EvidencePatch, evidence_to_patch
from ffr.teacher.schema import PatchRequestItem

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Usage:
    """What a model-backed proposal cost: chat requests, images sent, endpoint-reported tokens."""

    model_calls: int = 0
    images: int = 0
    tokens_in: int = 0
    tokens_out: int = 0

    def __add__(self, other: "Usage") -> "Usage":
        return Usage(self.model_calls + other.model_calls, self.images + other.images,
                     self.tokens_in + other.tokens_in, self.tokens_out + other.tokens_out)


@dataclass(frozen=True)
class Proposal:
    """A backend answer with bookkeeping.

    `turns` model turns spent, optional `detail`; `error_type` set (and `patch` None) when
    the backend failed on this item in a way it can name (the item's status becomes
    ``error`` with that type); `usage` what it cost (cumulative over revisions); `state`
    is opaque backend state that `revise` continues from (e.g. the conversation).
    """

    patch: EvidencePatch | None
    turns: int = 0
    detail: str | None = None
    error_type: str | None = None
    usage: Usage = Usage()
    state: Any = None


class TeacherBackend(abc.ABC):
    """Interface every teacher backend implements (see the module docstring)."""

    #: registry name, also reported by the service's /stats
    name: str = "abstract"
    #: the model behind the backend and the prompt version, recorded with every result (None: no model)
    model_name: str | None = None
    prompt_version: str | None = None

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "TeacherBackend":
        """This backend configured from the service CLI's parsed flags (`ffr.teacher.backend_args`).

        The default suits a backend without settings. One with settings overrides it and raises
        ValueError (or `ffr.endpoint.KeyFileError`) with a one-line reason naming the flag.
        """
        return cls()

    @property
    def cache_namespace(self) -> str:
        """Namespace of the service's result cache: results of another model or prompt never match."""
        return self.name

    @abc.abstractmethod
    def propose(self, item: PatchRequestItem) -> EvidencePatch | Proposal | None:
        """Propose a patch for one failed rollout; may be ``async def``."""

    @abc.abstractmethod
    def ready(self) -> bool:
        """True when the backend can serve now (model endpoint reachable, etc.)."""

    async def revise(self, item: PatchRequestItem, proposal: Proposal, reason: str) -> Proposal | None:
        """A new proposal after `proposal`'s patch failed a leak check for `reason`; None: cannot revise.

        The service calls it up to ``--regenerate-leaks`` times per item (default 1, the paper's
        "regenerate once, else drop"), each time on the latest leaky proposal; backends
        without a model keep this default.
        """
        return None


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

