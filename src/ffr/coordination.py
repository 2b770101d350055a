"""Rank coordination for FFR's second round (paper Sec. 3.2, Eq. 6) under ZeRO-3: all ranks generate, or none.

Under DeepSpeed ZeRO-3 every forward all-gathers parameter shards, so every rank
must call ``generate`` and every forward the same number of times, in the same
order. In FFR only some ranks may have failed rollouts with a usable patch; the
ranks therefore agree, with one all-reduce(MAX), whether *any* rank needs the
second-round ``generate``. If so, every rank makes exactly one such call: a real
batched one where it has patched prompts, a minimal dummy one where it has none.

Contract for callers (what keeps the job from hanging):
- call these functions on every rank, the same number of times, in the same order;
- never call them while a teacher HTTP request of this rank is still pending (the
  teacher round completes, bounded by its step deadline, before the all-reduce);
- with one process, or without ``torch.distributed`` initialised, they are local
  no-ops that return the rank's own value.
"""
from __future__ import annotations

import logging
from typing import Optional, Union

import torch
import torch.distributed as dist

logger = logging.getLogger(__name__)

Device = Union[str, torch.device, None]


def is_distributed() -> bool:
    """True when a process group with more than one rank is initialised."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _collective_device(device: Device) -> torch.device:
    """Device for a collective tensor: ``device`` if given, else CUDA for NCCL and CPU otherwise."""
    if device is not None:
        return torch.device(device)
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_reduce_max(value: int, device: Device = None) -> int:
    """Maximum of an integer over all ranks (collective; local value when not distributed).

    device: where the one-element tensor lives; must suit the process group's backend
    (a CUDA device for NCCL). Default: picked from the backend.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"all_reduce_max: expected an int, got {type(value).__name__}")
    if not is_distributed():
        return value
    t = torch.tensor([value], dtype=torch.long, device=_collective_device(device))
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return int(t.item())


def any_rank(flag: bool, device: Device = None) -> bool:
    """True iff ``flag`` is true on at least one rank (collective; local flag when not distributed)."""
    return all_reduce_max(int(bool(flag)), device) > 0


def second_round_plan(has_patched_rows: bool, device: Device = None) -> Optional[str]:
    """What this rank does in the second round: ``'generate'``, ``'dummy'`` or None (no rank needs it).

    has_patched_rows: this rank has at least one patched prompt to generate for.
    Collective: every rank must call it once per generated batch, after its teacher round.
    """
    if not any_rank(has_patched_rows, device):
        return None
    return "generate" if has_patched_rows else "dummy"
