"""Guards that keep a broken teacher from silently turning an FFR run into vanilla GRPO.

The teacher client never raises for teacher faults (a failed request means "no patch" for
that rollout, so one bad step cannot stop training). The flip side: a teacher that refuses
the run's key, or that is down for good, would leave every rollout unassisted while the run
exits 0. Two checks close that gap:

- at start, :func:`check_teacher_at_start`: a ``/ready`` answered 401 / 403 (wrong or
  missing key) stops the run with an error naming the URL and the status. A teacher that
  does not answer, or answers 503, may still be loading its model, so that only warns (the
  run starts; rollouts train unassisted until it answers) and the second check bounds how
  long that may last;
- during training, :class:`FailedRoundGuard`: a teacher round (one per generated batch)
  *fails* when, over all ranks, at least one request ended in ``error`` / ``timeout`` and
  not one ``ok`` patch arrived. After ``teacher_max_failed_steps`` failed rounds in a row,
  ``teacher_on_failed_steps='error'`` raises :class:`TeacherUnavailableError`, ``'warn'``
  logs a warning (then again every ``teacher_max_failed_steps`` rounds). A round with a
  patch, or answered without any error (e.g. only ``skipped`` items), resets the count; a
  round without requests (every rollout correct) leaves it unchanged.

Both decisions come from one all-reduce MAX (``ffr.coordination``), so every rank reaches
the same verdict at the same step: the ranks raise together, none is left waiting in a
collective. Contract as in ``ffr.coordination``: call on every rank, once per generated
batch, after this rank's teacher round has returned.
"""
from __future__ import annotations

import logging
from collections import Counter

from ffr.coordination import Device, all_reduce_max, any_rank
from ffr.teacher.schema import PatchResult

logger = logging.getLogger(__name__)

# What a rank saw in one teacher round, ordered so that MAX over ranks gives the round's verdict.
IDLE, ANSWERED, FAILED, PATCHED = 0, 1, 2, 3
FAILURE_STATUSES = ("error", "timeout")


class TeacherUnavailableError(RuntimeError):
    """The teacher cannot serve this run: credentials refused at start, or failed rounds in a row."""


def check_teacher_at_start(teacher, device: Device = None, is_main_process: bool = True) -> None:
    """Probe ``/ready`` on every rank; raise if any rank was refused with 401 / 403, else maybe warn.

    teacher: a ``TeacherClient`` (anything with ``url`` and ``probe_ready()``).
    Collective: every rank must call it once, at start.
    """
    probe = teacher.probe_ready()
    if any_rank(probe.auth_refused, device):
        seen = probe.detail if probe.auth_refused else "refused on another rank"
        raise TeacherUnavailableError(
            f"teacher at {teacher.url}/ready refused this run's credentials ({seen}); check teacher_api_key / "
            "teacher_api_key_file against the service's --api-key-file")
    if not probe.ready and is_main_process:
        logger.warning("teacher at %s is not ready (%s); failed rollouts train unassisted until it answers "
                       "(teacher_max_failed_steps bounds how long)", teacher.url, probe.detail)


def round_state(results: list[PatchResult]) -> int:
    """This rank's view of one teacher round: PATCHED > FAILED > ANSWERED > IDLE (see module docstring)."""
    statuses = {r.status for r in results}
    if "ok" in statuses:
        return PATCHED
    if statuses & set(FAILURE_STATUSES):
        return FAILED
    return ANSWERED if results else IDLE


class FailedRoundGuard:
    """Counts consecutive failed teacher rounds (agreed over ranks) and acts at ``max_failed``.

    max_failed: teacher_max_failed_steps (0 disables: no collective, no counting).
    action: teacher_on_failed_steps, 'error' or 'warn'.
    """

    def __init__(self, max_failed: int, action: str, url: str):
        if action not in ("error", "warn"):
            raise ValueError(f"teacher_on_failed_steps: must be 'error' or 'warn' (got {action!r})")
        self.max_failed, self.action, self.url = max_failed, action, url
        self.consecutive = 0

    def update(self, results: list[PatchResult], device: Device = None) -> int:
        """Fold one round's results in; returns the consecutive failed-round count (same on every rank).

        Raises TeacherUnavailableError when the count reaches ``max_failed`` in 'error' mode.
        """
        if self.max_failed == 0:
            return 0
        verdict = all_reduce_max(round_state(results), device)
        if verdict == IDLE:
            return self.consecutive
        self.consecutive = self.consecutive + 1 if verdict == FAILED else 0
        if self.consecutive and self.consecutive % self.max_failed == 0:
            message = (f"no patch from the teacher at {self.url} for {self.consecutive} consecutive teacher "
                       f"rounds with teacher errors ({_describe(results)}); every failed rollout trains "
                       "unassisted, i.e. this is vanilla GRPO")
            if self.action == "error":
                raise TeacherUnavailableError(f"{message}. Fix the teacher, or set teacher_on_failed_steps=warn "
                                              "or teacher_max_failed_steps=0 to train on regardless")
            logger.warning("%s (teacher_on_failed_steps=warn: training on)", message)
        return self.consecutive


def _describe(results: list[PatchResult]) -> str:
    """This rank's failure kinds in the last round and one example detail, for the error message."""
    failed = [r for r in results if r.status in FAILURE_STATUSES]
    if not failed:
        return "none on this rank; see the other ranks' logs"
    kinds = Counter(r.error_type or r.status for r in failed)
    example = (failed[0].detail or "")[:200]
    return f"this rank, last round: {dict(kinds)}; e.g. {example!r}"
