"""Wire schema of the teacher service (`POST /patch`), shared by service and client.

One request carries a batch of failed student rollouts; the response carries
one `PatchResult` per request item, in the same order. Every per-item outcome
is a status, never an HTTP error, so one bad item cannot fail the batch:

- ``ok``      : `patch` holds an `EvidencePatch` that passed the leakage gate.
- ``leak``    : the teacher's patch revealed the gold answer; it was dropped.
- ``timeout`` : no patch within the per-item timeout or the step deadline.
- ``error``   : invalid item, path outside the allowed root, backend failure,
                or (client side) a transport fault; `error_type` names the kind.
- ``skipped`` : the backend had nothing to offer (e.g. no evidence annotation).

Only ``ok`` results carry a patch; the trainer treats every other status as
"no patch" for that rollout.
"""
from __future__ import annotations

import hashlib
import json
import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ffr.patch import EvidencePatch

Status = Literal["ok", "leak", "timeout", "error", "skipped"]
STATUSES: tuple[str, ...] = ("ok", "leak", "timeout", "error", "skipped")


class PatchRequestItem(BaseModel):
    """One failed rollout sent to the teacher.

    `timestamps` are the times (seconds) of the frames the student saw, so the
    teacher can cite key frames as indices into the student's own frames.
    `gold_answer` is None in the no-GT mode (paper Eq. 5, reduced package).
    `evidence` holds annotations carried by the data (used by the annotation
    backend; model backends may ignore it).
    """

    model_config = ConfigDict(extra="forbid")

    sample_id: str = Field(min_length=1)
    video_path: str = Field(min_length=1)
    timestamps: list[float]
    question: str
    options: list[str] = Field(default_factory=list)
    problem_type: str
    student_response: str
    gold_answer: str | None = None
    evidence: dict | None = None

    def content_key(self) -> str:
        """SHA-256 of every field except `sample_id`: equal keys ask the same question.

        Used by the client and service caches; the id is excluded because many
        rollouts of one step (different ids) can carry identical content.
        """
        payload = self.model_dump(mode="json", exclude={"sample_id"})
        blob = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class PatchRequest(BaseModel):
    """A batch of items; `deadline_s` (seconds from receipt) caps every item's timeout."""

    model_config = ConfigDict(extra="forbid")

    items: list[PatchRequestItem]
    deadline_s: float | None = Field(default=None, gt=0)


class PatchResult(BaseModel):
    """Outcome for one item. `patch` is set iff `status == "ok"`.

    `turns` counts teacher model turns spent (0 for backends without a model);
    `latency_s` is the time spent on this item (0.0 for cache hits). A model
    backend also fills `teacher_model`, `prompt_version`, `model_calls` (chat
    requests, judge calls included), `images` sent, `tokens_in` / `tokens_out`
    (the endpoint's `usage`) and `regenerated` (leak-feedback retries).
    """

    model_config = ConfigDict(extra="forbid")

    sample_id: str
    status: Status
    patch: EvidencePatch | None = None
    error_type: str | None = None
    detail: str | None = None
    turns: int = Field(default=0, ge=0)
    latency_s: float = Field(default=0.0, ge=0)
    # Model-backed teachers also report what the answer cost and which prompt made it.
    teacher_model: str | None = None
    prompt_version: str | None = None
    model_calls: int = Field(default=0, ge=0)
    images: int = Field(default=0, ge=0)
    tokens_in: int = Field(default=0, ge=0)
    tokens_out: int = Field(default=0, ge=0)
    regenerated: int = Field(default=0, ge=0)
    # The teacher's diagnosis (error types of the proposed patch; set for ok and leak results) and,
    # for a leak, which check caught it ("gate" or "judge"): /stats and the audit count leaks by both.
    patch_error_types: list[str] = Field(default_factory=list)
    leak_source: str | None = None

    @model_validator(mode="after")
    def _patch_iff_ok(self) -> PatchResult:
        if (self.status == "ok") != (self.patch is not None):
            raise ValueError(f"result {self.sample_id!r}: status {self.status!r} "
                             f"{'needs' if self.status == 'ok' else 'must not carry'} a patch")
        return self


class PatchResponse(BaseModel):
    """Results aligned with the request's items (same length, same order)."""

    model_config = ConfigDict(extra="forbid")

    results: list[PatchResult]


def failure(sample_id: str, status: Status, error_type: str, detail: str,
            latency_s: float = 0.0) -> PatchResult:
    """A patch-less result; used by both sides to turn a fault into a status."""
    return PatchResult(sample_id=sample_id, status=status, patch=None,
                       error_type=error_type, detail=detail, latency_s=max(0.0, latency_s))


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in [0, 100]) of `values`; 0.0 when empty."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(q / 100.0 * len(ordered))))
    return float(ordered[rank - 1])
