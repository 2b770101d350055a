"""Leak review of a backend's proposal: rule gates, optional blind judge, up to N regenerations.

The service hands every proposed patch of an item with a gold answer to `LeakGuard.review`:
1. the rule gates (`ffr.leakage.patch_leaks`) run on every patch;
2. if they pass and a `BlindJudge` is configured, the blind test runs (multiple choice);
3. a leak found by either is sent back to the backend (`TeacherBackend.revise`, the offending
   span quoted), and the revised patch is reviewed again by both, up to `regenerate` times
   (the service's ``--regenerate-leaks N``, default 1: the paper's "regenerate once, else
   drop"); a leak after the last regeneration, or a backend that cannot revise, drops the
   patch (status ``leak``). With N = 0 a leaky patch is dropped at once.
The outcome reports which check caught the leak (``gate`` / ``judge``), how many
regenerations ran, and the judge's cost, so /stats and the patch log can count leaks per
source and per error type (paper Table 5 and App. A.3).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Optional

from ffr.leakage import patch_leaks
from ffr.teacher.backends import Proposal, TeacherBackend, Usage
from ffr.teacher.schema import PatchRequestItem

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Review:
    """The proposal that stands (`proposal`), why it leaks (`leak`, None when clean) and bookkeeping."""

    proposal: Proposal
    leak: Optional[str] = None
    source: Optional[str] = None
    error_types: tuple[str, ...] = ()
    regenerated: int = 0
    judge_usage: Usage = Usage()


class LeakGuard:
    """Gates + judge + regeneration for one service (see the module docstring)."""

    def __init__(self, backend: TeacherBackend, judge=None, regenerate: int = 1):
        if regenerate < 0:
            raise ValueError(f"regenerate must be >= 0, got {regenerate}")
        self.backend, self.judge, self.regenerate = backend, judge, regenerate

    async def review(self, item: PatchRequestItem, proposal: Proposal) -> Review:
        """Review `proposal` (its patch is not None, `item.gold_answer` is set).

        Raises ValueError for malformed gold / options / problem_type (the item's fault) and
        lets the judge's transport errors propagate (the service turns both into statuses).
        """
        judge_usage, regenerated = Usage(), 0
        while True:
            leak, source, cost = await self._check(item, proposal)
            judge_usage = judge_usage + cost
            types = tuple(proposal.patch.error_types)
            if leak is None:
                return Review(proposal, None, None, types, regenerated, judge_usage)
            if regenerated >= self.regenerate:
                return Review(proposal, leak, source, types, regenerated, judge_usage)
            revised = await self.backend.revise(item, proposal, leak)
            if revised is None:
                return Review(proposal, leak, source, types, regenerated, judge_usage)
            regenerated += 1
            logger.info("item %s: leaky patch (%s: %s) regenerated", item.sample_id, source, leak)
            if revised.patch is None:  # the revision failed outright: the leaky patch is still dropped
                return Review(revised, leak, source, types, regenerated, judge_usage)
            proposal = revised

    async def _check(self, item: PatchRequestItem, proposal: Proposal) -> tuple[Optional[str], Optional[str], Usage]:
        reason = patch_leaks(proposal.patch, item.gold_answer, item.options, item.problem_type)
        if reason:
            return reason, "gate", Usage()
        if self.judge is None:
            return None, None, Usage()
        verdict = await self.judge.check(item, proposal.patch)
        if verdict is None:
            return None, None, Usage()
        cost = Usage(model_calls=verdict.model_calls, tokens_in=verdict.tokens_in, tokens_out=verdict.tokens_out)
        return (verdict.reason if verdict.leak else None), ("judge" if verdict.leak else None), cost
