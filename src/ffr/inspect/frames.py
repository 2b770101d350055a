"""Thumbnails of the frames the student saw, re-decoded from the videos at the logged times.

`FrameStore.prefetch` decodes each video once (all the times any request of it needs, in
one `r1v.vision.load_frames_at` call, resized by the run's frame policy so the frame
size is the one the student saw), writes one JPEG per decoded frame into the report's
files folder and remembers, per (video, times), the thumbnail paths and the frame size.
Thumbnails are capped at `max_side` pixels on their longer side; identical frames
asked for by several requests are written once.
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional

from PIL import Image

from ffr.inspect import config_value
from ffr.inspect.geometry import nearest_frames
from r1v.vision import FRAME_EXTS, VisionConfig, load_frames_at, load_image

logger = logging.getLogger(__name__)

JPEG_QUALITY = 80


@dataclass
class Thumbs:
    """Thumbnails of one request: urls (relative to the page; one per logged time) or an error.

    size: (width, height) of the frames the student saw (None when the video could not be read).
    """

    urls: list[str]
    size: Optional[tuple[int, int]]
    error: Optional[str] = None


class FrameStore:
    """Decodes, writes and looks up thumbnails; `folder` is written, `url_prefix` is how the page names it."""

    def __init__(self, folder: Path, url_prefix: str, cfg: VisionConfig, max_side: int = 192):
        self.folder, self.url_prefix, self.cfg, self.max_side = Path(folder), url_prefix, cfg, max_side
        self._decoded: dict[str, tuple[list[float], list[str], tuple[int, int]]] = {}
        self._errors: dict[str, str] = {}
        self.written = 0

    def prefetch(self, requests: Iterable[tuple[str, list[float]]]) -> None:
        """Decode every video of `requests` ((video_path, timestamps) pairs) once; errors are kept per video."""
        wanted: dict[str, set[float]] = {}
        for path, times in requests:
            if isinstance(path, str) and path:
                wanted.setdefault(path, set()).update(float(t) for t in times)
        self.folder.mkdir(parents=True, exist_ok=True)
        for path, times in wanted.items():
            try:
                self._decoded[path] = self._decode(path, sorted(times))
            except (OSError, ValueError) as exc:  # one unreadable video must not stop the report
                self._errors[path] = str(exc)
                logger.warning("no thumbnails for %s: %s", path, exc)

    def thumbs(self, path, timestamps: list[float]) -> Thumbs:
        """Thumbnails of one request (prefetch first); an error when the video was not decoded."""
        if not isinstance(path, str) or not path:
            return Thumbs([], None, "no video path logged")
        if path in self._errors:
            return Thumbs([], None, self._errors[path])
        if path not in self._decoded:
            return Thumbs([], None, "frames not decoded (--no-frames)")
        times, urls, size = self._decoded[path]
        if not timestamps:  # an image item: its one picture
            return Thumbs(urls[:1], size)
        return Thumbs([urls[j] for j in nearest_frames(timestamps, times)], size)

    def _decode(self, path: str, times: list[float]) -> tuple[list[float], list[str], tuple[int, int]]:
        stem = hashlib.sha1(path.encode("utf-8")).hexdigest()[:12]
        if not times or Path(path).suffix.lower() in FRAME_EXTS:
            image = load_image(path, self.cfg)
            return [0.0], [self._write(image, f"{stem}_img.jpg")], image.size
        clip = load_frames_at(path, times, self.cfg)
        frames = clip.frames.permute(0, 2, 3, 1).numpy()
        size = (int(clip.frames.shape[-1]), int(clip.frames.shape[-2]))
        urls = [self._write(Image.fromarray(f), f"{stem}_{i}.jpg") for f, i in zip(frames, clip.frame_indices)]
        return list(clip.timestamps), urls, size

    def _write(self, image: Image.Image, name: str) -> str:
        image = image.convert("RGB")
        if max(image.size) > self.max_side:
            image.thumbnail((self.max_side, self.max_side))
        image.save(self.folder / name, format="JPEG", quality=JPEG_QUALITY)
        self.written += 1
        return f"{self.url_prefix}/{name}"


def vision_config(run_config: dict) -> VisionConfig:
    """The run's frame policy from run_config.json (any section holding the fields); defaults otherwise."""
    fields = {}
    for name in ("fps", "min_frames", "max_frames", "video_min_pixels", "video_max_pixels", "image_min_pixels",
                 "image_max_pixels", "patch_factor"):
        value = config_value(run_config, name)
        if value is not None:
            fields[name] = value
    try:
        return VisionConfig(**fields)
    except (TypeError, ValueError) as exc:
        logger.warning("run_config.json frame policy unusable (%s); using defaults", exc)
        return VisionConfig()
