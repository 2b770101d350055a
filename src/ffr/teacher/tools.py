"""The teacher's video tools over the ORIGINAL video: select_frames, select_time_range, zoom.

A `VideoToolbox` belongs to one request item. Frame indices are 0-based indices into the
frames the student saw (`item.timestamps`), re-decoded from the file at those times with the
training frame policy (`r1v.vision`), so "frame 13" means the same picture to the teacher,
the student and the patch renderer. An image item is one frame (index 0).

Every tool returns a `ToolResult` (a text header and labelled images) or raises
`ToolError` with a message the model can act on; the caller sends that back as an
"Execution error: ..." text and counts the call against the budget. Decoding is
synchronous (run it in a worker thread); decoded student frames are shared across the
items of one video by an LRU bounded in bytes of decoded pixels (a step sends up to G failed
rollouts of one video; the bound is in bytes because one entry can be 4 frames or 400).
`configure_frame_cache` sets that bound (the service's ``--frame-cache-mb``).
"""
from __future__ import annotations

import base64
import io
import math
import os
import threading
from collections import OrderedDict
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from r1v.vision import FRAME_EXTS, VisionConfig, load_frames_at, load_image

MAX_FRAMES_PER_CALL = 8
MIN_CROP_PX = 28
ZOOM_PADDING = 0.1
ZOOM_MIN_LONG_SIDE = 256
DEFAULT_FRAME_CACHE_BYTES = 512 * 1024 * 1024


class ToolError(ValueError):
    """A tool call the model got wrong (bad arguments, out-of-range index)."""


@dataclass
class ToolResult:
    """What a tool returns: `text` (header) and `images` as (label, PIL image) pairs."""

    text: str
    images: list[tuple[str, Image.Image]] = field(default_factory=list)


def image_data_url(image: Image.Image, quality: int = 90) -> str:
    """JPEG data URL of an RGB image (the part format every OpenAI-compatible server accepts)."""
    buf = io.BytesIO()
    image.convert("RGB").save(buf, format="JPEG", quality=quality)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def frames_bytes(frames: list[Image.Image]) -> int:
    """Decoded size of `frames`: width x height x bands bytes each."""
    return sum(img.width * img.height * len(img.getbands()) for img in frames)


class _ClipCache:
    """LRU of decoded student frames keyed by (path, mtime, size, times, policy), at most `max_bytes`.

    Least recently used entries are evicted until the decoded bytes held fit `max_bytes`; an
    entry larger than the whole budget is returned to its caller but not kept. Single-flight:
    concurrent requests for one key (the G failed rollouts of a video arrive together) wait
    for one decode instead of decoding the same frames G times.
    """

    def __init__(self, max_bytes: int):
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
        self.max_bytes = max_bytes
        self.bytes = 0
        self._data: OrderedDict[tuple, tuple[list[Image.Image], int]] = OrderedDict()
        self._pending: dict[tuple, Future] = {}
        self._lock = threading.Lock()

    def get_or_load(self, key: tuple, load) -> list[Image.Image]:
        with self._lock:
            if key in self._data:
                self._data.move_to_end(key)
                return self._data[key][0]
            waiting = self._pending.get(key)
            if waiting is None:
                self._pending[key] = mine = Future()
        if waiting is not None:
            return waiting.result()
        try:
            frames = load()
        except BaseException as exc:
            with self._lock:
                self._pending.pop(key, None)
            mine.set_exception(exc)
            raise
        size = frames_bytes(frames)
        with self._lock:
            self._pending.pop(key, None)
            if size <= self.max_bytes:
                self._data[key] = (frames, size)
                self.bytes += size
                while self.bytes > self.max_bytes:
                    _old, (_frames, old_size) = self._data.popitem(last=False)
                    self.bytes -= old_size
        mine.set_result(frames)
        return frames

    def __len__(self) -> int:
        return len(self._data)


_CLIPS = _ClipCache(DEFAULT_FRAME_CACHE_BYTES)


def configure_frame_cache(max_bytes: int) -> None:
    """Replace the process's frame cache by an empty one bounded by `max_bytes` (0: no caching)."""
    global _CLIPS
    _CLIPS = _ClipCache(max_bytes)


def _to_images(frames) -> list[Image.Image]:
    """(T, 3, H, W) uint8 tensor -> list of PIL RGB images."""
    return [Image.fromarray(np.ascontiguousarray(f.permute(1, 2, 0).numpy())) for f in frames]


def is_image_path(path: str) -> bool:
    return path.lower().endswith(FRAME_EXTS)


class VideoToolbox:
    """Tools over one item's media. `path` must already be confined and resolved by the service."""

    def __init__(self, path: str, timestamps: list[float], vision: VisionConfig, coords: str = "relative"):
        self.path = path
        self.timestamps = list(timestamps)
        self.vision = vision
        self.coords = coords
        self.is_image = is_image_path(path) or not self.timestamps

    # ------------------------------------------------------------------ frames the student saw
    def student_frames(self) -> list[Image.Image]:
        """The student's frames (index = frame index); one image for an image item."""
        st = os.stat(self.path)
        v = self.vision
        policy = (v.video_min_pixels, v.video_max_pixels, v.image_min_pixels, v.image_max_pixels, v.patch_factor)
        key = (self.path, st.st_mtime_ns, st.st_size, tuple(self.timestamps), self.is_image, policy)
        return _CLIPS.get_or_load(key, self._decode_student)

    def _decode_student(self) -> list[Image.Image]:
        if self.is_image:
            return [load_image(self.path, self.vision)]
        clip = load_frames_at(self.path, self.timestamps, self.vision)
        if len(clip.timestamps) != len(self.timestamps):
            raise ValueError(f"{self.path}: the student's {len(self.timestamps)} frame times map to "
                             f"{len(clip.timestamps)} distinct frames; timestamps do not match this video")
        return _to_images(clip.frames)

    def labelled_student_frames(self) -> list[tuple[str, Image.Image]]:
        from ffr.teacher.prompts import frame_label

        frames = self.student_frames()
        times = self.timestamps if not self.is_image else [None]
        return [(frame_label(i, t), img) for i, (t, img) in enumerate(zip(times, frames))]

    # ------------------------------------------------------------------ tools
    def run(self, name: str, arguments: dict) -> ToolResult:
        """Dispatch one call; raises ToolError for an unknown tool or bad arguments."""
        tools = {"select_frames": self.select_frames, "select_time_range": self.select_time_range,
                 "zoom": self.zoom}
        if name not in tools:
            raise ToolError(f"unknown tool {name!r}; available: {sorted(tools)}")
        if not isinstance(arguments, dict):
            raise ToolError(f"{name}: arguments must be a JSON object, got {type(arguments).__name__}")
        try:
            return tools[name](**arguments)
        except TypeError as exc:
            raise ToolError(f"{name}: bad arguments {sorted(arguments)}: {exc}") from exc

    def _frame_index(self, value, n: int, what: str) -> int:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
            raise ToolError(f"{what} must be an integer, got {value!r}")
        if not 0 <= int(value) < n:
            raise ToolError(f"{what} {int(value)} is out of range: valid frame indices are 0-{n - 1}")
        return int(value)

    def select_frames(self, indices) -> ToolResult:
        frames = self.student_frames()
        if not isinstance(indices, list) or not indices:
            raise ToolError("select_frames: indices must be a non-empty list of frame indices")
        if len(indices) > MAX_FRAMES_PER_CALL:
            raise ToolError(f"select_frames: at most {MAX_FRAMES_PER_CALL} indices per call, got {len(indices)}")
        picked = sorted({self._frame_index(i, len(frames), "select_frames: index") for i in indices})
        labelled = self.labelled_student_frames()
        return ToolResult(f"Frames {', '.join(map(str, picked))} of the student's frames:",
                          [labelled[i] for i in picked])

    def select_time_range(self, start_s, end_s, n=4) -> ToolResult:
        if self.is_image:
            raise ToolError("select_time_range: the input is a single image, not a video")
        try:
            start, end, count = float(start_s), float(end_s), int(n)
        except (TypeError, ValueError) as exc:
            raise ToolError(f"select_time_range: start_s, end_s must be numbers and n an integer ({exc})") from exc
        if not (math.isfinite(start) and math.isfinite(end)) or start < 0 or end <= start:
            raise ToolError(f"select_time_range: need 0 <= start_s < end_s, got {start_s}, {end_s}")
        if not 1 <= count <= MAX_FRAMES_PER_CALL:
            raise ToolError(f"select_time_range: n must be 1-{MAX_FRAMES_PER_CALL}, got {n}")
        times = [float(t) for t in np.linspace(start, end, count)]
        clip = load_frames_at(self.path, times, self.vision)
        if start > clip.duration_s:
            raise ToolError(f"select_time_range: start_s {start} is past the video's end ({clip.duration_s:.1f} s)")
        labelled = [(f"t={t:.2f}s:", img) for t, img in zip(clip.timestamps, _to_images(clip.frames))]
        return ToolResult(f"{len(labelled)} frames between {start:.2f} s and {min(end, clip.duration_s):.2f} s:",
                          labelled)

    def zoom(self, frame_index, bbox) -> ToolResult:
        frames = self.student_frames()
        index = self._frame_index(frame_index, len(frames), "zoom: frame_index")
        box = to_relative_box(bbox, self.coords)
        image = frames[index]
        crop_box = padded_pixel_box(box, image.width, image.height)
        crop = image.crop(crop_box)
        if max(crop.size) < ZOOM_MIN_LONG_SIDE:
            scale = ZOOM_MIN_LONG_SIDE / max(crop.size)
            crop = crop.resize((max(1, round(crop.width * scale)), max(1, round(crop.height * scale))),
                               Image.Resampling.BICUBIC)
        x0, y0, x1, y1 = crop_box
        return ToolResult(f"Zoom on frame {index}, pixels x {x0}-{x1}, y {y0}-{y1} of {image.width}x{image.height}:",
                          [(f"Frame {index} (zoomed):", crop)])


def to_relative_box(bbox, coords: str) -> tuple[float, float, float, float]:
    """A model's [x0, y0, x1, y1] in the declared system -> relative floats; ToolError if malformed.

    GLM-style 0-1000 boxes are accepted even when `coords` is "relative" (any value above 1),
    since models trained on that grid use it whatever the prompt says.
    """
    if not isinstance(bbox, (list, tuple)) or len(bbox) != 4:
        raise ToolError(f"bbox must be [x0, y0, x1, y1], got {bbox!r}")
    try:
        values = [float(v) for v in bbox]
    except (TypeError, ValueError) as exc:
        raise ToolError(f"bbox must hold numbers, got {bbox!r}") from exc
    if not all(math.isfinite(v) for v in values) or min(values) < 0:
        raise ToolError(f"bbox must hold finite non-negative numbers, got {bbox!r}")
    scale = 1000.0 if coords == "norm1000" or max(values) > 1.0 else 1.0
    if max(values) > scale:
        raise ToolError(f"bbox {bbox!r} exceeds the {'0-1000' if scale > 1 else '0-1'} grid")
    x0, y0, x1, y1 = (v / scale for v in values)
    if not (x0 < x1 and y0 < y1):
        raise ToolError(f"bbox {bbox!r} must satisfy x0 < x1 and y0 < y1")
    return x0, y0, x1, y1


def padded_pixel_box(box, width: int, height: int) -> tuple[int, int, int, int]:
    """Relative box -> pixel crop with `ZOOM_PADDING` per side, at least `MIN_CROP_PX` a side."""
    x0, y0, x1, y1 = box
    pad_x, pad_y = (x1 - x0) * ZOOM_PADDING, (y1 - y0) * ZOOM_PADDING

    def span(lo: float, hi: float, size: int) -> tuple[int, int]:
        a, b = max(0, math.floor(lo * size)), min(size, math.ceil(hi * size))
        need = min(MIN_CROP_PX, size)
        if b - a < need:  # grow around the centre, then shift inside the frame
            centre = (a + b) / 2
            a = int(max(0, min(size - need, round(centre - need / 2))))
            b = a + need
        return a, b

    left, right = span(x0 - pad_x, x1 + pad_x, width)
    top, bottom = span(y0 - pad_y, y1 + pad_y, height)
    return left, top, right, bottom
