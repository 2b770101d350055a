"""Helpers of the FFR trainer: distributed limits, assembly of chosen rollouts (Eq. 7, 10), frames,
teacher requests (shared with ``ffr.mine``)."""
from __future__ import annotations

from typing import Optional

import torch
from PIL import Image
from pydantic import ValidationError

from ffr.teacher.schema import PatchRequestItem
from r1v.answers import extract_answer
from r1v.prompts import build_question_text
from r1v.trainer.batch import RolloutBatch, concat_rollouts


def check_distributed_limits(args, num_processes: int, zero_stage: int) -> None:
    """Refuse FFR settings that would hang or desynchronise a multi-rank run (ValueError naming the field)."""
    if num_processes == 1:
        return
    if args.teacher_step_deadline_s >= args.ddp_timeout:
        # Ranks without failures wait in the all-reduce while others wait on the teacher.
        raise ValueError(f"teacher_step_deadline_s ({args.teacher_step_deadline_s}) must be below ddp_timeout "
                         f"({args.ddp_timeout}): the other ranks wait in a collective for the teacher round")
    if args.ffr_extra_visual != "none" and zero_stage == 3:
        raise ValueError("ffr_extra_visual adds image inputs beside the video in some ranks' forwards only, which "
                         "desynchronises ZeRO-3 parameter gathers; use ZeRO-2 (local_scripts/zero2.json) or "
                         "ffr_extra_visual none")


def assemble_chosen(first: RolloutBatch, second: Optional[RolloutBatch], rows: list[int]) -> RolloutBatch:
    """Rows of ``first`` (index < N) or ``second`` (index N + j), each with its OWN prompt (Eq. 10).

    ``concat_rollouts`` then ``select``: completions are right-padded to the longer of the
    two rounds (mask 0 on padding) and every per-row field of the chosen rollout (rewards,
    validity, group id, source) comes along. With no second round (or no row taken from it)
    ``first`` is returned as is.
    """
    n = len(first.completions_text)
    if second is None or all(r < n for r in rows):
        return first
    return concat_rollouts(first, second).select(rows)


def gold_answer(record: dict) -> str:
    """The extracted gold answer (option letter, number or text) of a record's solution."""
    return extract_answer(record["solution"])


def build_request_item(record: dict, sample_id: str, timestamps, student_response: str,
                       use_gt: bool) -> PatchRequestItem:
    """The teacher request for one failed rollout of `record` (Eq. 5; no gold answer when not `use_gt`).

    timestamps: seconds of the frames the student saw ([] for an image). Raises
    ValueError naming the problem_id when the record cannot make a valid request.
    """
    try:
        return PatchRequestItem(
            sample_id=sample_id, video_path=record["path"], timestamps=[float(t) for t in timestamps],
            question=build_question_text(record), options=list(record.get("options") or []),
            problem_type=record["problem_type"], student_response=student_response,
            gold_answer=gold_answer(record) if use_gt else None, evidence=record.get("evidence"))
    except ValidationError as err:
        raise ValueError(f"problem_id={record.get('problem_id')!r}: cannot build a teacher request: {err}") from err


def frame_size(visual) -> tuple[int, int]:
    """(width, height) of a VideoClip's frames or of an image."""
    if hasattr(visual, "frames"):
        return int(visual.frames.shape[-1]), int(visual.frames.shape[-2])
    return visual.size


def frames_as_images(visual) -> list[Image.Image]:
    """The student's frames as PIL images (an image is one frame)."""
    if not hasattr(visual, "frames"):
        return [visual]
    return [Image.fromarray(f.permute(1, 2, 0).contiguous().numpy()) for f in visual.frames]


def spread(indices: range, k: int) -> list[int]:
    """At most ``k`` indices evenly spread over ``indices`` (both ends kept)."""
    if len(indices) <= k:
        return list(indices)
    if k == 1:
        return [indices[len(indices) // 2]]
    return [indices[round(j * (len(indices) - 1) / (k - 1))] for j in range(k)]
