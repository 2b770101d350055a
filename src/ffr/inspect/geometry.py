"""Box and frame-range arithmetic of the patch inspector (pure functions, no I/O).

Boxes are placed on thumbnails in percent of the frame's width and height, so they
stay correct at any display size: left = 100 * x0, top = 100 * y0, width =
100 * (x1 - x0), height = 100 * (y1 - y0), each rounded to 2 decimals, from the
region in relative coordinates (`ffr.patch.Region.to_relative`; a pixel box needs
the size of the frames the student saw).

A region with a frame index is drawn on that frame only. A region without one
applies to the key frames (`ffr.patch.Region`): it is drawn on every frame of the
key-frame range, or on every frame when the patch has no range.
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Optional, Sequence

from ffr.patch import EvidencePatch, KeyFrameRange, Region


@dataclass(frozen=True)
class Box:
    """One region drawn on one frame: `region` is its index in patch.spatial_regions; percent geometry."""

    region: int
    left: float
    top: float
    width: float
    height: float
    whole_clip: bool  # the region named no frame (drawn on each key frame)


@dataclass
class FrameMark:
    """What one thumbnail shows besides the picture: key-range membership and its boxes."""

    index: int
    in_key_range: bool
    boxes: list[Box] = field(default_factory=list)


def box_percent(region: Region, frame_size: Optional[tuple[int, int]]) -> Optional[tuple[float, float, float, float]]:
    """(left, top, width, height) in percent of the frame, or None for a pixel box without frame_size."""
    if region.coords == "pixel" and frame_size is None:
        return None
    x0, y0, x1, y1 = region.to_relative(frame_size).box
    return (round(100 * x0, 2), round(100 * y0, 2), round(100 * (x1 - x0), 2), round(100 * (y1 - y0), 2))


def frame_marks(patch: Optional[EvidencePatch], n_frames: int,
                frame_size: Optional[tuple[int, int]] = None) -> list[FrameMark]:
    """Marks of the n_frames thumbnails of one request (see the module docstring).

    Frame indices beyond n_frames (an invalid patch) mark nothing; `out_of_range` lists them.
    """
    marks = [FrameMark(i, False) for i in range(n_frames)]
    if patch is None:
        return marks
    key = patch.key_frames
    if key is not None:
        for i in range(key.start, min(key.end, n_frames - 1) + 1):
            marks[i].in_key_range = True
    for k, region in enumerate(patch.spatial_regions):
        geometry = box_percent(region, frame_size)
        if geometry is None:
            continue
        if region.frame is not None:
            targets = [region.frame] if region.frame < n_frames else []
        elif key is not None:
            targets = [i for i in range(key.start, key.end + 1) if i < n_frames]
        else:
            targets = list(range(n_frames))
        for i in targets:
            marks[i].boxes.append(Box(k, *geometry, whole_clip=region.frame is None))
    return marks


def out_of_range(patch: Optional[EvidencePatch], n_frames: int) -> list[str]:
    """Human-readable list of the patch's frame indices that are not < n_frames."""
    if patch is None:
        return []
    bad = []
    if patch.key_frames is not None and patch.key_frames.end >= n_frames:
        bad.append(f"key_frames end {patch.key_frames.end}")
    bad += [f"spatial_regions[{k}].frame {r.frame}" for k, r in enumerate(patch.spatial_regions)
            if r.frame is not None and r.frame >= n_frames]
    return bad


def key_range_label(key: Optional[KeyFrameRange], timestamps: Sequence[float]) -> str:
    """'frames 1-2 (0.50-1.00 s)'; indices beyond the logged frames are named as such."""
    if key is None:
        return "none"
    n = len(timestamps)
    if key.end >= n:
        return f"frames {key.start}\u2013{key.end} (beyond the {n} frames shown)"
    if key.start == key.end:
        return f"frame {key.start} ({timestamps[key.start]:.2f} s)"
    return f"frames {key.start}\u2013{key.end} ({timestamps[key.start]:.2f}\u2013{timestamps[key.end]:.2f} s)"


def nearest_frames(wanted: Sequence[float], decoded: Sequence[float]) -> list[int]:
    """For each wanted time, the index of the nearest decoded time (ties: the earlier one).

    `decoded` must be ascending and non-empty; `ffr.inspect.frames` uses this because
    `r1v.vision.load_frames_at` collapses duplicate frames, so its clip can be shorter
    than the logged timestamps.
    """
    if not decoded:
        raise ValueError("nearest_frames: no decoded frames")
    out = []
    for t in wanted:
        j = bisect.bisect_left(decoded, t)
        if j == len(decoded) or (j > 0 and t - decoded[j - 1] <= decoded[j] - t):
            j -= 1
        out.append(j)
    return out
