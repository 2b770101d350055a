"""The evidence patch: schema, coordinate converters, and rendering into the student prompt.

A patch is structured (paper App. A.2, layer 3): error types, a key-frame *range*
(never one "answer frame", paper Sec. 3.2), short temporal markers, spatial
regions with a declared coordinate system, and one guidance sentence. No other
free text reaches the student.

Frame indices are 0-based indices into the frames the student was shown
(`VideoClip.timestamps`), so the renderer can translate them to seconds.

Placement of the evidence block (`render_patch`): the block goes *before* the
question text, separated by a blank line, and the question text is appended
verbatim. The paper (Eq. 6, App. D.1) only says the patch is added context with
the question unchanged; we put it first because (1) the answer-format
instruction at the end of the prompt stays the last thing the student reads, so
the format reward (part of the RIR scalar) is not disturbed, (2) the function
then works the same whether it is given the bare question or the full templated
prompt, and (3) the chat template puts the video first, so the hints sit
between the frames they point at and the question.
"""
from __future__ import annotations

import bisect
import logging
import math
import re
from typing import Annotated, Any, Literal, Optional, Sequence

from pydantic import (AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator,
                      model_validator)

logger = logging.getLogger(__name__)

ErrorType = Literal["temporal", "spatial", "misconception"]
CoordSystem = Literal["relative", "pixel", "norm1000"]
MAX_MARKERS = 5
MAX_MARKER_CHARS = 80
MAX_REGIONS = 4
MAX_GUIDANCE_CHARS = 200
EVIDENCE_HEADER = "Evidence to re-examine before answering:"
# Short gloss of each error type for the student (paper Table 6, "Description").
ERROR_FOCUS = {
    "temporal": "order or timing of events",
    "spatial": "what the frames show",
    "misconception": "what the question asks",
}
# no-GT annotation patches: answer-independent guidance per error type (see evidence_to_patch).
NO_GT_GUIDANCE = {
    "temporal": "Re-watch the relevant part of the video and work out the order of the events before answering.",
    "spatial": "Look closely at what the relevant frames show before answering.",
    "misconception": "Re-read the question and make sure your answer addresses exactly what it asks.",
}
_SENTENCE_BREAK = re.compile(r"[.!?]\s+[A-Z]")
_TIME_TOL = 1e-6


def _clean_line(text: str, limit: int) -> str:
    """Strip; reject empty, multi-line or over-long text (error names the limit)."""
    text = text.strip()
    if not text:
        raise ValueError("must not be empty")
    if any(ch in text for ch in "\r\n\t") or not text.isprintable():
        raise ValueError("must be a single line without control characters")
    if len(text) > limit:
        raise ValueError(f"must be at most {limit} characters, got {len(text)}")
    return text


def _marker(text: str) -> str:
    return _clean_line(text, MAX_MARKER_CHARS)


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class KeyFrameRange(_Frozen):
    """Inclusive range [start, end] of 0-based indices into the student's sampled frames.

    Also accepts a list of indices such as [13, 14, 15] (the paper's case-study
    format) and keeps its span [min, max].
    """

    start: int = Field(ge=0)
    end: int = Field(ge=0)

    @model_validator(mode="before")
    @classmethod
    def _from_list(cls, data: Any) -> Any:
        if isinstance(data, (list, tuple)):
            if not data or not all(isinstance(i, int) and not isinstance(i, bool) for i in data):
                raise ValueError("a key-frame list must hold at least one int frame index")
            return {"start": min(data), "end": max(data)}
        return data

    @model_validator(mode="after")
    def _ordered(self) -> "KeyFrameRange":
        if self.start > self.end:
            raise ValueError(f"start ({self.start}) must be <= end ({self.end})")
        return self


def norm1000_to_relative(box: Sequence[float]) -> tuple[float, float, float, float]:
    """[x0, y0, x1, y1] on GLM's 0-1000 grid -> relative 0-1 coordinates."""
    x0, y0, x1, y1 = box
    return (x0 / 1000.0, y0 / 1000.0, x1 / 1000.0, y1 / 1000.0)


def pixel_to_relative(box: Sequence[float], width: int, height: int) -> tuple[float, float, float, float]:
    """[x0, y0, x1, y1] in pixels of a width x height frame -> relative, clipped to [0, 1]."""
    if width <= 0 or height <= 0:
        raise ValueError(f"frame_size: width and height must be positive, got {(width, height)}")
    x0, y0, x1, y1 = box
    clip = lambda v: min(max(v, 0.0), 1.0)  # noqa: E731 - a box may overhang the frame by a pixel
    return (clip(x0 / width), clip(y0 / height), clip(x1 / width), clip(y1 / height))


class Region(_Frozen):
    """A box [x0, y0, x1, y1] (x0 < x1, y0 < y1) in a declared coordinate system.

    frame: 0-based index of the sampled frame it refers to, or None (the region
    applies to the key frames / the whole clip).
    """

    frame: Optional[int] = Field(default=None, ge=0)
    box: tuple[float, float, float, float]
    coords: CoordSystem

    @model_validator(mode="after")
    def _valid_box(self) -> "Region":
        x0, y0, x1, y1 = self.box
        if not all(math.isfinite(v) for v in self.box):
            raise ValueError(f"box {list(self.box)} must hold finite numbers")
        if not (x0 < x1 and y0 < y1):
            raise ValueError(f"box {list(self.box)} must satisfy x0 < x1 and y0 < y1")
        upper = {"relative": 1.0, "norm1000": 1000.0, "pixel": math.inf}[self.coords]
        if min(self.box) < 0 or max(self.box) > upper:
            raise ValueError(f"box {list(self.box)} lies outside [0, {upper}] for coords {self.coords!r}")
        return self

    def to_relative(self, frame_size: Optional[tuple[int, int]] = None) -> "Region":
        """The same region in relative coordinates; pixel boxes need frame_size (width, height)."""
        if self.coords == "relative":
            return self
        if self.coords == "norm1000":
            box = norm1000_to_relative(self.box)
        else:
            if frame_size is None:
                raise ValueError("spatial_regions: pixel coordinates need frame_size (width, height)")
            box = pixel_to_relative(self.box, *frame_size)
        return Region(frame=self.frame, box=box, coords="relative")


class EvidencePatch(_Frozen):
    """The teacher's evidence patch p_i (paper Eq. 5, App. A.2)."""

    error_types: list[ErrorType] = Field(min_length=1, max_length=3)
    key_frames: Optional[KeyFrameRange] = None
    temporal_markers: list[Annotated[str, AfterValidator(_marker)]] = Field(
        default_factory=list, max_length=MAX_MARKERS)
    spatial_regions: list[Region] = Field(default_factory=list, max_length=MAX_REGIONS)
    guidance: str

    @field_validator("error_types")
    @classmethod
    def _unique_types(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError(f"error types must be unique, got {value}")
        return value

    @field_validator("guidance")
    @classmethod
    def _one_sentence(cls, value: str) -> str:
        value = _clean_line(value, MAX_GUIDANCE_CHARS)
        if _SENTENCE_BREAK.search(value):
            raise ValueError("must be one sentence")
        return value


def check_patch_frames(patch: EvidencePatch, n_frames: int) -> None:
    """Raise ValueError (naming the field) if a frame index is not < n_frames."""
    if patch.key_frames is not None and patch.key_frames.end >= n_frames:
        raise ValueError(f"key_frames: end index {patch.key_frames.end} is out of range for "
                         f"{n_frames} sampled frames")
    for k, region in enumerate(patch.spatial_regions):
        if region.frame is not None and region.frame >= n_frames:
            raise ValueError(f"spatial_regions[{k}].frame: index {region.frame} is out of range for "
                             f"{n_frames} sampled frames")


def normalize_regions(patch: EvidencePatch, frame_size: Optional[tuple[int, int]] = None) -> EvidencePatch:
    """A copy of `patch` whose regions are all relative (pixel boxes need frame_size)."""
    regions = [r.to_relative(frame_size) for r in patch.spatial_regions]
    return patch.model_copy(update={"spatial_regions": regions})


def _fmt_seconds(t: float) -> str:
    return f"{t:.1f} s"


def _render_frames(key_frames: KeyFrameRange, timestamps: Sequence[float]) -> str:
    start, end = key_frames.start, key_frames.end
    if start == end:
        return f"frame {start} ({_fmt_seconds(timestamps[start])})"
    return (f"frames {start}\u2013{end} "
            f"({_fmt_seconds(timestamps[start])} \u2013 {_fmt_seconds(timestamps[end])})")


def _render_region(region: Region, timestamps: Sequence[float]) -> str:
    x0, y0, x1, y1 = (round(v * 100) for v in region.box)
    where = f"x {x0}\u2013{x1}%, y {y0}\u2013{y1}%"
    if region.frame is None:
        return where
    return f"frame {region.frame} ({_fmt_seconds(timestamps[region.frame])}): {where}"


def render_evidence_block(patch: EvidencePatch, timestamps: Sequence[float], visual_context: bool = True,
                          frame_size: Optional[tuple[int, int]] = None) -> str:
    """The evidence block alone (no trailing newline); see `render_patch`."""
    check_patch_frames(patch, len(timestamps))
    focus = "; ".join(f"{et} ({ERROR_FOCUS[et]})" for et in patch.error_types)
    lines = [EVIDENCE_HEADER, f"- Error focus: {focus}"]
    if visual_context and patch.key_frames is not None:
        lines.append(f"- Key frames: {_render_frames(patch.key_frames, timestamps)}")
    if patch.temporal_markers:
        lines.append("- Temporal markers: " + "; ".join(f'"{m}"' for m in patch.temporal_markers))
    if visual_context and patch.spatial_regions:
        regions = [_render_region(r.to_relative(frame_size), timestamps) for r in patch.spatial_regions]
        lines.append("- Regions (percent of width / height): " + "; ".join(regions))
    lines.append(f"- Guidance: {patch.guidance}")
    return "\n".join(lines)


def render_patch(question_text: str, patch: EvidencePatch, timestamps: Sequence[float],
                 visual_context: bool = True, frame_size: Optional[tuple[int, int]] = None) -> str:
    """The student's second-round prompt text: evidence block, blank line, question text verbatim.

    timestamps: seconds of each frame the student saw (index = frame index); key
    frames are shown with their times. visual_context False (paper ablation "no
    visual context") drops the key-frame and region lines, keeping error focus,
    temporal markers and guidance. frame_size (width, height) is needed only for
    pixel-coordinate regions. Raises ValueError for empty question text or frame
    indices beyond the sampled frames.
    """
    if not isinstance(question_text, str) or not question_text.strip():
        raise ValueError("question_text: must be a non-empty string")
    block = render_evidence_block(patch, timestamps, visual_context, frame_size)
    return f"{block}\n\n{question_text}"


def _check_timestamps(timestamps: Sequence[float]) -> list[float]:
    ts = [float(t) for t in timestamps]
    if not ts:
        raise ValueError("timestamps: need at least one sampled frame")
    if not all(math.isfinite(t) for t in ts) or any(b <= a for a, b in zip(ts, ts[1:])):
        raise ValueError(f"timestamps: must be finite and strictly increasing, got {ts}")
    return ts


def span_to_frame_range(time_span: Sequence[float], timestamps: Sequence[float]) -> KeyFrameRange:
    """Smallest range of sampled frames whose times cover [t0, t1] seconds.

    start = last frame at or before t0 (else the first frame), end = first frame
    at or after t1 (else the last frame), so an event shorter than the sampling
    step still gets the two frames around it. A range that would be one frame is
    widened by one neighbour on each side (paper Sec. 3.2: a range, never a
    single "answer frame").
    """
    ts = _check_timestamps(timestamps)
    if len(time_span) != 2:
        raise ValueError(f"evidence.time_span: expected [t0, t1] seconds, got {time_span!r}")
    t0, t1 = float(time_span[0]), float(time_span[1])
    if not (math.isfinite(t0) and math.isfinite(t1)) or t0 < 0 or t0 > t1:
        raise ValueError(f"evidence.time_span: expected 0 <= t0 <= t1, got {list(time_span)}")
    if t0 > ts[-1] or t1 < ts[0]:
        logger.warning("evidence.time_span %s lies outside the sampled frames (%.2f-%.2f s); clamping",
                       list(time_span), ts[0], ts[-1])
    start = max(bisect.bisect_right(ts, t0 + _TIME_TOL) - 1, 0)
    end = min(bisect.bisect_left(ts, t1 - _TIME_TOL), len(ts) - 1)
    start = min(start, end)
    if start == end:
        start, end = max(start - 1, 0), min(end + 1, len(ts) - 1)
    return KeyFrameRange(start=start, end=end)


def evidence_to_patch(evidence: dict, timestamps: Sequence[float], use_gt: bool = True) -> EvidencePatch:
    """Build a patch from a sample's `evidence` annotation (data contract: time_span
    [t0, t1] seconds, region [x0, y0, x1, y1] relative or None, error_type,
    markers, guidance).

    use_gt True: every annotated field is used (the annotator knew the answer,
    like the paper's teacher with GT).
    use_gt False (paper ablation "no GT reference"): the patch may only hold what
    a teacher could find from video, question and the student's response. We
    keep `error_type` (a property of the question's scenario) and the key-frame
    range from `time_span` (where the asked-about event happens, which is
    localisable from the question). We drop `region`, `markers` and `guidance`:
    they were written by looking at the answer-bearing content (the region boxes
    the answer object, the markers and guidance describe the answer event), and
    the guidance becomes a fixed answer-independent sentence per error type
    (`NO_GT_GUIDANCE`).
    Raises ValueError naming the evidence field on malformed input.
    """
    if not isinstance(evidence, dict):
        raise ValueError(f"evidence: expected a dict, got {type(evidence).__name__}")
    for key in ("time_span", "error_type", "guidance"):
        if key not in evidence:
            raise ValueError(f"evidence.{key}: missing")
    error_type = evidence["error_type"]
    if error_type not in ERROR_FOCUS:
        raise ValueError(f"evidence.error_type: must be one of {list(ERROR_FOCUS)}, got {error_type!r}")
    key_frames = span_to_frame_range(evidence["time_span"], timestamps)
    if not use_gt:
        return EvidencePatch(error_types=[error_type], key_frames=key_frames,
                             guidance=NO_GT_GUIDANCE[error_type])
    markers = evidence.get("markers") or []
    if not isinstance(markers, list):
        raise ValueError(f"evidence.markers: expected a list of strings, got {type(markers).__name__}")
    region = evidence.get("region")
    try:
        regions = [] if region is None else [Region(frame=None, box=region, coords="relative")]
    except ValidationError as exc:
        raise ValueError(f"evidence.region: {exc}") from exc
    try:
        return EvidencePatch(error_types=[error_type], key_frames=key_frames, temporal_markers=markers,
                             spatial_regions=regions, guidance=evidence["guidance"])
    except ValidationError as exc:
        # Patch field names map to evidence keys: temporal_markers <- markers, guidance <- guidance.
        raise ValueError(f"evidence (markers / guidance): {exc}") from exc
